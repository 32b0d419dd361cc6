//! Active opens from two workers on a two-queue veth, the Linux kernel as
//! the server in the peer namespace: what holds for the queue a
//! connection's replies arrive on (see the README's TCP section).
//!
//! On veth the host's receive queue is the peer's transmit queue, which the
//! peer kernel picks per packet: XPS by the CPU it transmits from (pinned
//! here with `veth.sh --xps`: CPU i sends on queue i), else a hash of the
//! socket's random txhash. The peer answers a worker's segments in softirq
//! on the CPU that worker transmitted from (veth delivers on the sender's
//! CPU), so those replies come back to the worker's queue; what the peer's
//! application sends leaves from the application's CPU. With the server
//! pinned to CPU 0, worker 0's connections see only queue 0, and worker 1's
//! get part of their replies on queue 0, which worker 0 forwards. No source
//! port can change that, and veth has no RSS for the allocator to invert.
//!
//! Needs root; the topology is unique per test and removed on drop.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpstack::api::tcp::TcpStream;
use xdpstack::worker::{Stack, StackConfig};
use xdpstack::xdp::ethtool::{read_rss, RssReadError};
use xdpstack::xdp::AttachMode;

mod common;
use common::{echo_through, Topo};

/// A threaded kernel echo server: `ready`, then echoes every connection
/// until the client closes.
const ECHO_SERVER_PY: &str = r#"
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(64)
print("ready", flush=True)
def serve(c):
    while True:
        b = c.recv(1 << 16)
        if not b: break
        c.sendall(b)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn active_opens_from_two_workers_on_two_queues() {
    active_opens_from_two_workers(false);
}

/// The same with a dedicated address: each worker resolves the server
/// with its own ARP first.
#[test]
fn active_opens_from_two_workers_on_two_queues_dedicated() {
    active_opens_from_two_workers(true);
}

fn active_opens_from_two_workers(dedicated: bool) {
    const PER_WORKER: usize = 4;
    const LEN: usize = 256 << 10;
    let t = Topo::new("tq", &["--queues", "2", "--xps"]);
    // What the allocator would invert: veth has none.
    assert_eq!(
        read_rss(t.host_if()),
        Err(RssReadError::Os(libc::EOPNOTSUPP))
    );
    let peer: Ipv4Addr = t.get("PEER_IP").parse().unwrap();
    let (mut server, _) = t.py_server(Some("0"), ECHO_SERVER_PY, &[t.get("PEER_IP"), "9000"]);
    if !dedicated {
        t.add_peer_neighbor();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let cfg = StackConfig {
        queues: 2,
        cores: vec![0, 1],
        attach: AttachMode::Native,
        ip: dedicated.then(|| t.spare_ip().parse().unwrap()),
        ..StackConfig::new(t.host_if())
    };
    let stack = Stack::start(&cfg, stop.clone()).expect("stack");
    std::thread::sleep(Duration::from_millis(300));
    let remote = SocketAddrV4::new(peer, 9000);
    let started = Instant::now();
    let locals: Vec<(usize, u16)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2 * PER_WORKER)
            .map(|i| {
                let h = stack.handle().clone();
                s.spawn(move || {
                    let worker = i % 2;
                    let mut c =
                        TcpStream::connect_timeout_on(&h, worker, remote, Duration::from_secs(5))
                            .unwrap_or_else(|e| panic!("connect from worker {worker}: {e}"));
                    let data: Vec<u8> = (0..LEN).map(|k| (k * 13 + i + k / 511) as u8).collect();
                    let back = echo_through(&mut c, &data);
                    assert_eq!(back.len(), data.len(), "connection {i}");
                    assert!(back == data, "connection {i}: echo differs");
                    let port = match c.local_addr() {
                        std::net::SocketAddr::V4(a) => a.port(),
                        other => panic!("{other}"),
                    };
                    (worker, port)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = started.elapsed();
    // Each port came from its worker's slice of the ephemeral range.
    let range = stack.ephemeral_range();
    let mid = range.first() as u32 + range.len() / 2;
    for (worker, port) in &locals {
        assert_eq!(
            usize::from(u32::from(*port) >= mid),
            *worker,
            "port {port} of worker {worker} in {range}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (reports, _) = stack.join();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(reports.len(), 2);
    let tcp: Vec<_> = reports.iter().map(|r| r.shard.tcp).collect();
    eprintln!(
        "dedicated {dedicated}: {} x {} KiB echoed in {took:?}; worker 0: connected {} forwarded {}; \
         worker 1: connected {} forwarded {}",
        2 * PER_WORKER,
        LEN >> 10,
        tcp[0].connected,
        tcp[0].forwarded,
        tcp[1].connected,
        tcp[1].forwarded
    );
    // Every connection lives on the worker that opened it.
    assert_eq!(tcp[0].connected, PER_WORKER as u64, "{tcp:?}");
    assert_eq!(tcp[1].connected, PER_WORKER as u64, "{tcp:?}");
    // The server's own sends leave from CPU 0, so replies to worker 1's
    // connections reach queue 0 too and cross to worker 1.
    assert!(tcp[0].forwarded > 0, "nothing crossed: {tcp:?}");
    if dedicated {
        for r in &reports {
            assert!(r.shard.neighbor.resolved >= 1, "{r:?}");
        }
    }
}
