//! Kernel-socket servers the benchmarks compare xdpstack against, written
//! for the comparison: same batching ideas, same core pinning, no stack of
//! our own.

pub mod kernel_tcp;
pub mod kernel_udp;
