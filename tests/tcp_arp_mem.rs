//! An active open in dedicated mode to a peer whose MAC no cache knows, on
//! the in-memory link with a virtual clock: the shard sends an ARP request,
//! holds the SYN in the neighbour cache's queue and sends it to the MAC of
//! the reply; without a reply the held SYNs are dropped and counted after
//! the last request, and the next retransmission asks again. With several
//! shards, a reply that lands on another shard's queue is shared.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdpstack::api::tcp::{ConnId, TcpHandler};
use xdpstack::icmp::AddressMode;
use xdpstack::neighbor::{Route, RoutingTable};
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryFrame, MemoryLink};
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::ports::{PortConfig, PortService};
use xdpstack::shard::{DropReason, Shard, ShardConfig};
use xdpstack::shard_tcp::{ShardTcp, TcpShardConfig};
use xdpstack::tcp::{IsnKey, SendHalf};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::frame::{emit_arp, parse, Frame, L4};
use xdpstack::wire::{ArpOperation, ArpRepr, EthernetAddress, EthernetRepr};

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

struct Sink;

impl TcpHandler for Sink {
    fn on_data(&mut self, _: Instant, _: ConnId, data: &[u8], _: &mut SendHalf<'_>) -> usize {
        data.len()
    }
}

fn shard() -> Shard<MemoryFrame> {
    let mut c = ShardConfig::new(AddressMode::Dedicated, OUR_IP, OUR_MAC, 1500);
    c.routes = RoutingTable::new(vec![Route {
        prefix: Ipv4Addr::new(10, 9, 0, 0),
        prefix_len: 24,
        gateway: None,
        metric: 0,
    }]);
    let mut s = Shard::new(c, Instant::ZERO);
    let ports = PortService::new(PortConfig::new(1)).unwrap().shared();
    let mut tcp = ShardTcp::new(
        TcpShardConfig::new(OUR_IP, OUR_MAC, 1500),
        IsnKey::random(),
        Some(ports),
        Instant::ZERO,
    );
    tcp.add_handler(Box::new(Sink));
    s.set_tcp(tcp);
    s
}

/// A [`shard`] that started an active open to `PEER_IP` at time zero.
fn connecting_shard() -> Shard<MemoryFrame> {
    let mut s = shard();
    s.tcp_mut()
        .connect(Instant::ZERO, SocketAddrV4::new(PEER_IP, 80), 0, None)
        .unwrap();
    s
}

fn step(s: &mut Shard<MemoryFrame>, link: &mut MemoryLink, now: Instant) {
    let mut rx = Vec::new();
    link.recv_batch(now, &mut rx, 64);
    s.process(now, link, &mut rx);
    s.poll(now, link);
    s.flush(now, link);
}

/// What the peer received: (ARP requests for PEER_IP, TCP SYNs with their
/// destination MAC).
fn received(peer: &mut MemoryLink, now: Instant) -> (usize, Vec<[u8; 6]>) {
    let mut v = Vec::new();
    peer.recv_batch(now, &mut v, 64);
    let (mut arp, mut syns) = (0, Vec::new());
    for f in v {
        match parse(f.data()) {
            Ok(Frame::Arp(_, a)) => {
                assert_eq!(a.operation, ArpOperation::Request);
                assert_eq!(Ipv4Addr::from(a.target_protocol_addr), PEER_IP);
                arp += 1;
            }
            Ok(Frame::Ipv4(eth, _, L4::Tcp(seg))) => {
                assert!(seg.flags.syn() && !seg.flags.ack(), "{seg:?}");
                syns.push(eth.dst_addr.0);
            }
            other => panic!("unexpected frame {other:?}"),
        }
        peer.release(f);
    }
    (arp, syns)
}

#[test]
fn syn_waits_for_the_arp_reply() {
    let (mut link, mut peer) = pair(MemoryConfig::default());
    let mut s = connecting_shard();
    let mut now = Instant::ZERO;
    step(&mut s, &mut link, now);
    now += Duration::from_millis(1);
    assert_eq!(received(&mut peer, now), (1, vec![]), "ARP, no SYN yet");
    assert_eq!(s.waiting_for(PEER_IP), 1);
    inject_arp_reply(&mut peer, now);
    now += Duration::from_millis(1);
    step(&mut s, &mut link, now);
    now += Duration::from_millis(1);
    assert_eq!(received(&mut peer, now), (0, vec![PEER_MAC]));
    assert_eq!(s.waiting_for(PEER_IP), 0);
    // Later segments (the SYN's retransmission here) go straight out.
    now += Duration::from_millis(1100);
    step(&mut s, &mut link, now);
    now += Duration::from_millis(1);
    assert_eq!(received(&mut peer, now), (0, vec![PEER_MAC]));
    let st = s.stats();
    assert_eq!(st.neighbor.resolved, 1);
    assert_eq!(st.shard.dropped(DropReason::Neighbor), 0);
}

/// The peer's ARP reply to the stack's request, sent on `peer`.
fn inject_arp_reply(peer: &mut MemoryLink, now: Instant) {
    let mut b = vec![0u8; 128];
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_IP.into(),
        target_hardware_addr: EthernetAddress(OUR_MAC),
        target_protocol_addr: OUR_IP.into(),
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(OUR_MAC),
        ethertype: 0x0806,
        vlan: None,
    };
    let n = emit_arp(&mut b, &eth, &reply).unwrap();
    let mut f = peer.alloc_tx().unwrap();
    f.set_len(n);
    f.data_mut().copy_from_slice(&b[..n]);
    peer.send_batch(now, &mut vec![f]);
}

#[test]
fn held_syns_are_dropped_and_counted_when_nobody_answers() {
    let (mut link, mut peer) = pair(MemoryConfig::default());
    let mut s = connecting_shard();
    let mut now = Instant::ZERO;
    let (mut arps, mut syns) = (0, 0);
    // 10 ms steps for 3.5 s: requests at 0, 1 and 2 s, failure at 3 s
    // (the SYN of 0 s and its retransmission of 1 s waited); the second
    // retransmission, due at 3 s too, starts a new resolution.
    while now < Instant::ZERO + Duration::from_millis(3500) {
        step(&mut s, &mut link, now);
        now += Duration::from_millis(10);
        let (a, sy) = received(&mut peer, now);
        arps += a;
        syns += sy.len();
    }
    assert_eq!(syns, 0, "no SYN leaves without a MAC");
    let st = s.stats();
    assert_eq!(arps, 4, "{st:?}");
    assert_eq!(st.neighbor.resolution_failed, 1, "{st:?}");
    assert_eq!(st.shard.dropped(DropReason::Neighbor), 2, "{st:?}");
    assert_eq!(s.waiting_for(PEER_IP), 1, "{st:?}");
    assert_eq!(link.outstanding(), 1, "only the held SYN's frame is out");
}

#[test]
fn an_arp_reply_on_another_shards_queue_reaches_the_asking_shard() {
    use std::sync::{Arc, Mutex};
    // Two shards, each on its own queue (link); shard 1 opens, the peer's
    // reply arrives on queue 0 (as a NIC puts ARP, which RSS does not hash).
    let (mut link0, mut peer0) = pair(MemoryConfig::default());
    let (mut link1, mut peer1) = pair(MemoryConfig::default());
    let (mut s0, mut s1) = (shard(), connecting_shard());
    let to_s1: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let q = to_s1.clone();
    s0.set_tcp_forward(Box::new(move |f: &[u8]| q.lock().unwrap().push(f.to_vec())));
    s1.set_tcp_forward(Box::new(|_: &[u8]| {}));
    let mut now = Instant::ZERO;
    step(&mut s1, &mut link1, now);
    now += Duration::from_millis(1);
    assert_eq!(received(&mut peer1, now), (1, vec![]));
    inject_arp_reply(&mut peer0, now);
    now += Duration::from_millis(1);
    step(&mut s0, &mut link0, now);
    let forwarded: Vec<Vec<u8>> = std::mem::take(&mut *to_s1.lock().unwrap());
    assert_eq!(forwarded.len(), 1, "the reply is shared");
    for f in &forwarded {
        s1.process_forwarded_tcp(now, f);
    }
    step(&mut s1, &mut link1, now);
    now += Duration::from_millis(1);
    assert_eq!(received(&mut peer1, now), (0, vec![PEER_MAC]));
    // Shard 0 was not resolving the peer: it learnt nothing from the
    // reply, and answered nothing.
    assert_eq!(s0.stats().neighbor.resolved, 0);
    assert_eq!(received(&mut peer0, now), (0, vec![]));
    assert_eq!(s1.stats().neighbor.resolved, 1);
}
