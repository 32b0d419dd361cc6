//! xdpstack: a kernel-bypass TCP/UDP stack on AF_XDP.
//!
//! An XDP program (`bpf/steer.bpf.c`) steers the packets of the ports the
//! stack owns into AF_XDP sockets; everything else stays with the kernel.
//! Per-core workers each poll one socket, own a shard of the port space and
//! the connection table, and run the sans-IO UDP and TCP cores on frames that
//! stay in the UMEM. See `../shared/DESIGN.md` for the architecture.
//!
//! Unsafe code lives only in [`xdp`] (and fenced SIMD in
//! [`wire::checksum`]); every block carries a `// Safety:` argument.
#![deny(unsafe_code)]

pub mod api;
pub mod apps;
pub mod baseline;
pub mod conntable;
pub mod http;
pub mod icmp;
pub mod loadgen;
pub mod neighbor;
pub mod phy;
pub mod ports;
pub mod rss;
pub mod shard;
pub mod shard_tcp;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod udp;
pub mod wire;
pub mod worker;
#[allow(unsafe_code)]
pub mod xdp;
