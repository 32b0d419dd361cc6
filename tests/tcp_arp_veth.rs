//! Active opens in dedicated-address mode to peers no cache knows: the
//! shard resolves the next hop with its own ARP while the SYN waits in the
//! neighbour cache's bounded queue, and a peer that never answers costs
//! counted drops and a timed-out connect, not a stuck one. The Linux kernel
//! is the peer in a namespace; needs root; each test builds and removes
//! its own uniquely named topology.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpstack::api::tcp::TcpStream;
use xdpstack::shard::DropReason;
use xdpstack::worker::{Stack, StackConfig};

mod common;
use common::Topo;

/// A kernel server: echoes one connection until the client closes.
const ECHO_ONE_PY: &str = r#"
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(4); l.settimeout(20)
print("ready", flush=True)
c, _ = l.accept(); c.settimeout(20)
while True:
    b = c.recv(65536)
    if not b: break
    c.sendall(b)
c.close()
"#;

fn dedicated_stack(t: &Topo, stop: &Arc<AtomicBool>) -> (Stack, Ipv4Addr) {
    let ip: Ipv4Addr = t.spare_ip().parse().unwrap();
    let cfg = StackConfig {
        ip: Some(ip),
        ..StackConfig::new(t.host_if())
    };
    let stack = Stack::start(&cfg, stop.clone()).expect("stack");
    std::thread::sleep(Duration::from_millis(300));
    (stack, ip)
}

/// What the peer's neighbour table holds for `ip`.
fn peer_neighbor_entry(t: &Topo, ip: Ipv4Addr) -> String {
    let neigh = Command::new("ip")
        .args(["-n", &t.name, "neigh", "show", &ip.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&neigh.stdout).to_string()
}

#[test]
fn dedicated_connect_resolves_the_peer_with_arp() {
    let t = Topo::new("ta", &["--no-tso"]);
    let peer: Ipv4Addr = t.get("PEER_IP").parse().unwrap();
    let (mut server, _) = t.py_server(None, ECHO_ONE_PY, &[t.get("PEER_IP"), "9000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (stack, ip) = dedicated_stack(&t, &stop);
    // Neither side knows the other yet.
    assert!(
        !peer_neighbor_entry(&t, ip).contains("lladdr"),
        "the peer already knows {ip}"
    );

    let started = Instant::now();
    let mut c = TcpStream::connect_timeout(
        stack.handle(),
        SocketAddrV4::new(peer, 9000),
        Duration::from_secs(5),
    )
    .expect("connect through ARP");
    let connect_took = started.elapsed();
    let data: Vec<u8> = (0..100_000usize).map(|i| (i % 253) as u8).collect();
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert!(back == data, "echo differs ({} bytes back)", back.len());
    drop(c);
    assert!(server.wait().unwrap().success());

    stop.store(true, Ordering::Relaxed);
    let (reports, _) = stack.join();
    let r = &reports[0].shard;
    eprintln!("connected in {connect_took:?}; {r:?}");
    assert!(r.shard.arp_requests >= 1, "{r:?}");
    assert!(r.neighbor.resolved >= 1, "{r:?}");
    assert_eq!(r.tcp.connected, 1);
    assert_eq!(r.shard.dropped(DropReason::Neighbor), 0, "{r:?}");
    // The peer learnt the stack's address from its request.
    let neigh = peer_neighbor_entry(&t, ip);
    assert!(neigh.contains(t.get("HOST_MAC")), "{neigh}");
}

#[test]
fn dedicated_connect_to_a_silent_address_times_out_with_counted_drops() {
    let t = Topo::new("ta", &["--no-tso"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (stack, _) = dedicated_stack(&t, &stop);
    // On the subnet, but no one has it: ARP is never answered.
    let (net, _) = t.host_ip().rsplit_once('.').unwrap();
    let silent: Ipv4Addr = format!("{net}.99").parse().unwrap();
    let started = Instant::now();
    let err = TcpStream::connect_timeout(
        stack.handle(),
        SocketAddrV4::new(silent, 9000),
        Duration::from_millis(3600),
    )
    .expect_err("nobody answers");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(3500));
    stop.store(true, Ordering::Relaxed);
    let (reports, _) = stack.join();
    let r = &reports[0].shard;
    eprintln!("{r:?}");
    // Three requests per resolution (one a second), then the waiting SYNs
    // (the first and its retransmission) are dropped and counted.
    assert!(r.shard.arp_requests >= 3, "{r:?}");
    assert!(r.neighbor.resolution_failed >= 1, "{r:?}");
    assert!(r.shard.dropped(DropReason::Neighbor) >= 1, "{r:?}");
    assert_eq!(r.tcp.connected, 0);
}
