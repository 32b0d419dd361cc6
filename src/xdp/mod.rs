//! AF_XDP: sockets, the UMEM frame pool, the BPF loader and its maps, and the
//! raw reflector used as the benchmarks' ceiling. The only module where
//! unsafe code is allowed; every block carries a `// Safety:` argument.
//!
//! - [`loader`]: load `bpf/steer.bpf.c`, attach/detach, stale-program cleanup.
//! - [`maps`]: typed access to the program's maps (ports, config, XSKs, counters).
//! - [`umem`]: the UMEM and the owned [`Frame`] token.
//! - [`socket`]: [`XdpLink`], one AF_XDP socket as a batched [`crate::phy::Link`].
//! - [`reflector`]: swap-and-send-back UDP reflector, no stack.
//! - [`signals`]: detach on SIGINT/SIGTERM (a `sigwait` thread) and on panic.
//! - [`impair`]: a tc (tcx) program that drops, duplicates and corrupts
//!   packets on a veth for the loss tests.
//! - [`ethtool`]: the RSS key and indirection table of an interface (ioctl).
//! - [`epoll`]: epoll and non-blocking TCP connect for the kernel-socket TCP
//!   baseline and load generators; here because it needs `unsafe` FFI.
//! - [`mmsg`]: batched kernel-socket UDP I/O (`recvmmsg`/`sendmmsg`) for the
//!   kernel baseline; here because it needs `unsafe` FFI.
//!
//! A worker's set-up, in order (the socket must be in `xsks_map` before
//! its port is, or the first frames pass to the kernel, counted as
//! `no_xsk`):
//!
//! ```no_run
//! use xdpstack::xdp::{AttachMode, Proto, Steering, XdpLink, XskConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let steering = Steering::attach("eth0", AttachMode::Auto)?; // one per interface
//! let mut link = XdpLink::open(&XskConfig::new("eth0", 0), Some(steering.maps()))?;
//! steering.maps().add_port(Proto::Udp, 7777)?;
//! # Ok(()) }
//! ```

pub mod epoll;
pub mod ethtool;
pub mod impair;
pub mod loader;
pub mod maps;
pub mod mmsg;
pub mod reflector;
pub mod signals;
pub mod skel;
pub mod socket;
pub mod umem;

pub use loader::{detach_all, AttachMode, AttachedMode, LoadError, Steering};
pub use maps::{Proto, SteerCounters, SteerMaps, XsConfig};
pub use socket::{PollMode, XdpLink, XskConfig, XskStats};
pub use umem::{Frame, FramePool, UmemConfig, XskError};

#[cfg(test)]
mod tests {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send::<super::XdpLink>();
        send::<super::Frame>();
        send::<super::Steering>();
        sync::<super::Steering>();
        send::<super::SteerMaps>();
        sync::<super::SteerMaps>();
    }
}
