//! The thread-side TCP handles (`TcpListener`, `TcpStream`) against two
//! worker loops joined by the in-memory link: each stack is a shard run by
//! `worker::run_loop` on its own thread, the handles talk to it through the
//! command channel, as they do on AF_XDP.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel;
use xdpstack::api::tcp::{TcpListener, TcpStream};
use xdpstack::icmp::AddressMode;
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::ports::{PortConfig, PortRange, PortService};
use xdpstack::shard::{Shard, ShardConfig};
use xdpstack::shard_tcp::{ShardTcp, TcpShardConfig};
use xdpstack::tcp::IsnKey;
use xdpstack::time::Instant;
use xdpstack::worker::{run_loop, LoopConfig, StackHandle, WorkerReport};
use xdpstack::xdp::PollMode;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);
const A_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];

struct Stack {
    handle: StackHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<WorkerReport>>,
}

impl Stack {
    fn start(ip: Ipv4Addr, mac: [u8; 6], peer: (Ipv4Addr, [u8; 6]), mut link: MemoryLink) -> Stack {
        let now = Instant::now_monotonic();
        let ports = PortService::new(PortConfig {
            ephemeral: PortRange::new(50000, 59999).unwrap(),
            shards: 1,
            key: [3, 4],
        })
        .unwrap()
        .shared();
        let mut shard: Shard<_> =
            Shard::new(ShardConfig::new(AddressMode::Dedicated, ip, mac, 1500), now);
        let tcp = ShardTcp::new(
            TcpShardConfig::new(ip, mac, 1500),
            IsnKey::random(),
            Some(ports.clone()),
            now,
        );
        shard.set_tcp(tcp);
        shard.learn_neighbor(peer.0, peer.1, now);
        let (tx, rx) = channel::unbounded();
        let handle = StackHandle::new(ip, 1500, ports, None, vec![tx]);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let cfg = LoopConfig {
                worker: 0,
                queue: 0,
                core: None,
                poll: PollMode::Busy,
                stats_every: None,
                kernel_neighbors: None,
            };
            run_loop(&cfg, &mut link, &mut shard, &rx, &s2, None)
        });
        Stack {
            handle,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> WorkerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stacks() -> (Stack, Stack) {
    let (la, lb) = pair(MemoryConfig::default());
    (
        Stack::start(A_IP, A_MAC, (B_IP, B_MAC), la),
        Stack::start(B_IP, B_MAC, (A_IP, A_MAC), lb),
    )
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

#[test]
fn stream_echo_through_listener_both_close_orders() {
    let (a, b) = stacks();
    let listener = TcpListener::bind(&a.handle, 5000).unwrap();
    assert_eq!(listener.local_addr().port(), 5000);
    // A second bind of the same port is refused.
    let again = TcpListener::bind(&a.handle, 5000).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AddrInUse);
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip(), std::net::IpAddr::V4(B_IP));
            let mut buf = vec![0u8; 10_000];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
            s.flush().unwrap();
            // Dropped: FIN after the echoed bytes.
        }
    });
    for round in 0..2 {
        let mut c = TcpStream::connect(&b.handle, SocketAddrV4::new(A_IP, 5000)).unwrap();
        c.set_nodelay(true).unwrap();
        let data = pattern(1 << 20);
        let mut got = push(&mut c, &data, round == 0);
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "round {round}: echo differs");
    }
    server.join().unwrap();
    let ra = a.stop();
    assert!(ra.shard.tcp.accepted >= 2);
    b.stop();
}

/// Writes all of `data` (interleaving reads so neither side's buffers
/// stall), then shuts down writing (`half_close`: at once; otherwise after
/// the whole echo came back); returns the echo read so far.
fn push(c: &mut TcpStream, data: &[u8], half_close: bool) -> Vec<u8> {
    let mut off = 0;
    let mut echoed = Vec::new();
    c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut buf = vec![0u8; 65536];
    while off < data.len() {
        let n = c.write(&data[off..(off + 32768).min(data.len())]).unwrap();
        off += n;
        match c.read(&mut buf) {
            Ok(n) => echoed.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    c.set_read_timeout(None).unwrap();
    if half_close {
        c.shutdown(Shutdown::Write).unwrap();
    } else {
        // Without a half-close: read the echo up to the last byte first.
        while echoed.len() < data.len() {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "early EOF");
            echoed.extend_from_slice(&buf[..n]);
        }
        c.shutdown(Shutdown::Write).unwrap();
    }
    echoed
}

#[test]
fn refused_and_timeouts() {
    let (a, b) = stacks();
    let e = TcpStream::connect(&b.handle, SocketAddrV4::new(A_IP, 5999)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    let listener = TcpListener::bind(&a.handle, 5001).unwrap();
    assert_eq!(
        listener.try_accept().unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let mut c = TcpStream::connect(&b.handle, SocketAddrV4::new(A_IP, 5001)).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    s.write_all(b"hello").unwrap();
    let n = c.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    // The server's drop with unread data resets the connection.
    c.write_all(b"unread").unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let e = c.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
}
