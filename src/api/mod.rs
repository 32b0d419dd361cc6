//! What servers link against. Two styles, both over the same workers:
//!
//! - run-to-completion handlers ([`udp::UdpHandler`]): called inside the
//!   worker with the payload borrowed from the received frame; they may
//!   answer in place (no copy, no allocation) or send fresh datagrams;
//! - std::net-like handles ([`udp::UdpSocket`]) for ordinary threads,
//!   bridged to a worker through crossbeam channels. The payload is copied
//!   once at that thread boundary (a UMEM frame cannot leave its worker).
//!
//! TCP handles (`TcpListener`, `TcpStream`) come with the TCP core.

pub mod udp;

pub use udp::{Echo, UdpHandler, UdpRx, UdpSend, UdpSocket, Verdict};
