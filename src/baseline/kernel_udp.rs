//! A UDP echo server on an ordinary kernel socket, batched with
//! `recvmmsg`/`sendmmsg`: the kernel's best case for the echo benchmark.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::xdp::mmsg::MmsgBatch;

/// What the echo server runs on.
#[derive(Debug, Clone)]
pub struct KernelEchoConfig {
    pub bind: SocketAddr,
    /// Core to pin the serving thread to.
    pub core: Option<usize>,
    /// Datagrams per `recvmmsg`/`sendmmsg`.
    pub batch: usize,
    /// Largest datagram echoed whole (longer ones are cut and counted).
    pub max_datagram: usize,
}

impl KernelEchoConfig {
    pub fn new(bind: SocketAddr) -> KernelEchoConfig {
        KernelEchoConfig {
            bind,
            core: None,
            batch: 32,
            max_datagram: 9216,
        }
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelEchoStats {
    pub received: u64,
    pub echoed: u64,
    pub truncated: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub batches: u64,
}

/// Bind `cfg.bind` and serve until `stop` is set. The calling thread serves
/// (pinned to `cfg.core` if given); `ready` is called with the bound address
/// once the socket is open.
pub fn run_with(
    cfg: &KernelEchoConfig,
    stop: &AtomicBool,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<KernelEchoStats> {
    if let Some(c) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let sock = UdpSocket::bind(cfg.bind)?;
    // The timeout bounds how long a stop request waits.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    ready(sock.local_addr()?);
    let mut batch = MmsgBatch::new(cfg.batch, cfg.max_datagram);
    let mut stats = KernelEchoStats::default();
    while !stop.load(Ordering::Relaxed) {
        let n = batch.recv(&sock)?;
        if n == 0 {
            continue;
        }
        stats.batches += 1;
        stats.received += n as u64;
        stats.truncated += batch.truncated() as u64;
        match batch.echo(&sock) {
            Ok(sent) => stats.echoed += sent as u64,
            // A full socket buffer or an unreachable peer loses replies,
            // as UDP may; the server keeps going.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stats)
}

/// [`run_with`] without a readiness callback.
pub fn run(cfg: &KernelEchoConfig, stop: &AtomicBool) -> io::Result<KernelEchoStats> {
    run_with(cfg, stop, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn echoes_byte_exact_on_loopback() {
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let cfg = KernelEchoConfig::new("127.0.0.1:0".parse().unwrap());
                run_with(&cfg, &stop, |a| tx.send(a).unwrap())
            });
            let server = rx.recv().unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = vec![0u8; 2048];
            for len in [1usize, 512, 1472] {
                let msg: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
                client.send_to(&msg, server).unwrap();
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(from, server);
                assert_eq!(&buf[..n], &msg[..]);
            }
            stop.store(true, Ordering::Relaxed);
            let stats = h.join().unwrap().unwrap();
            assert_eq!(stats.received, 3);
            assert_eq!(stats.echoed, 3);
        });
    }
}
