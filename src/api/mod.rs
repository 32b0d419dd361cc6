//! What servers link against. Two styles, both over the same workers:
//!
//! - run-to-completion handlers ([`udp::UdpHandler`]): called inside the
//!   worker with the payload borrowed from the received frame; they may
//!   answer in place (no copy, no allocation) or send fresh datagrams;
//! - std::net-like handles ([`udp::UdpSocket`]) for ordinary threads,
//!   bridged to a worker through crossbeam channels. The payload is copied
//!   once at that thread boundary (a UMEM frame cannot leave its worker).
//!
//! The same two styles for TCP in [`tcp`]: [`tcp::TcpHandler`] (received
//! bytes borrowed from the connection's receive buffer) and
//! [`tcp::TcpListener`] / [`tcp::TcpStream`] with `Read`/`Write`.

pub mod tcp;
pub mod udp;

pub use udp::{Echo, UdpHandler, UdpRx, UdpSend, UdpSocket, Verdict};
