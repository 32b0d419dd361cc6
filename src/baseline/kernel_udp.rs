//! A UDP echo server on an ordinary kernel socket, batched with
//! `recvmmsg`/`sendmmsg`, one `SO_REUSEPORT` socket per thread: the kernel's
//! best case for the echo benchmark.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::xdp::mmsg::{udp_bind_reuseport, MmsgBatch};

/// What the echo server runs on.
#[derive(Debug, Clone)]
pub struct KernelEchoConfig {
    pub bind: SocketAddr,
    /// One serving thread per entry, each with its own `SO_REUSEPORT`
    /// socket on the same port, pinned to the core given (if any): the
    /// kernel's counterpart of one worker per queue.
    pub cores: Vec<Option<usize>>,
    /// Datagrams per `recvmmsg`/`sendmmsg`.
    pub batch: usize,
    /// Largest datagram echoed whole (longer ones are cut and counted).
    pub max_datagram: usize,
}

impl KernelEchoConfig {
    pub fn new(bind: SocketAddr) -> KernelEchoConfig {
        KernelEchoConfig {
            bind,
            cores: vec![None],
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

fn serve(
    sock: &UdpSocket,
    core: Option<usize>,
    cfg: &KernelEchoConfig,
    stop: &AtomicBool,
) -> io::Result<KernelEchoStats> {
    if let Some(c) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let mut batch = MmsgBatch::new(cfg.batch, cfg.max_datagram);
    let mut stats = KernelEchoStats::default();
    while !stop.load(Ordering::Relaxed) {
        let n = batch.recv(sock)?;
        if n == 0 {
            continue;
        }
        stats.batches += 1;
        stats.received += n as u64;
        stats.truncated += batch.truncated() as u64;
        match batch.echo(sock) {
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

/// Bind `cfg.bind` once per entry of `cfg.cores` and serve until `stop` is
/// set; `ready` is called with the bound address once every socket is open.
/// Returns the counters summed over threads.
pub fn run_with(
    cfg: &KernelEchoConfig,
    stop: &AtomicBool,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<KernelEchoStats> {
    let first = udp_bind_reuseport(cfg.bind)?;
    // Port 0 binds: every further socket takes the port the first one got.
    let addr = first.local_addr()?;
    let mut socks = vec![first];
    for _ in 1..cfg.cores.len().max(1) {
        socks.push(udp_bind_reuseport(addr)?);
    }
    for s in &socks {
        // The timeout bounds how long a stop request waits.
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
    }
    ready(addr);
    let cores = if cfg.cores.is_empty() {
        vec![None]
    } else {
        cfg.cores.clone()
    };
    let results: Vec<io::Result<KernelEchoStats>> = std::thread::scope(|s| {
        let handles: Vec<_> = socks
            .iter()
            .zip(cores)
            .map(|(sock, core)| s.spawn(move || serve(sock, core, cfg, stop)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("echo thread panicked")))
            })
            .collect()
    });
    let mut total = KernelEchoStats::default();
    for r in results {
        let r = r?;
        total.received += r.received;
        total.echoed += r.echoed;
        total.truncated += r.truncated;
        total.batches += r.batches;
    }
    Ok(total)
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
        echo_test(1);
    }

    #[test]
    fn echoes_with_two_reuseport_threads() {
        echo_test(2);
    }

    fn echo_test(threads: usize) {
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let cfg = KernelEchoConfig {
                    cores: vec![None; threads],
                    ..KernelEchoConfig::new("127.0.0.1:0".parse().unwrap())
                };
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
