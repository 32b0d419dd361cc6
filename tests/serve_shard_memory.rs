//! The shard on the in-memory link, deterministic: UDP echo (handler and
//! thread-side channel), ARP and ICMP in dedicated mode, closed-port
//! answers, drop counters, and garbage and seeded faults without panics or
//! leaked frames.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdpstack::api::udp::{Echo, RecvDatagram, UdpHandler, UdpRx, UdpSend, Verdict};
use xdpstack::icmp::AddressMode;
use xdpstack::neighbor::{Route, RoutingTable};
use xdpstack::phy::fault::{Apply, FaultConfig, FaultInjector};
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::phy::rng::Rng;
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::shard::{Binding, DropReason, Shard, ShardConfig};
use xdpstack::time::Instant;
use xdpstack::udp::DropReason as UdpDrop;
use xdpstack::wire::frame::{self, emit_arp, emit_ipv4_icmp, emit_ipv4_tcp, emit_ipv4_udp, L4};
use xdpstack::wire::{
    ArpOperation, ArpRepr, EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Repr, SeqNumber,
    TcpFlags, TcpRepr, UdpRepr,
};

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn config(mode: AddressMode) -> ShardConfig {
    let mut c = ShardConfig::new(mode, OUR_IP, OUR_MAC, 1500);
    c.routes = RoutingTable::new(vec![Route {
        prefix: Ipv4Addr::new(10, 9, 0, 0),
        prefix_len: 24,
        gateway: None,
        metric: 0,
    }]);
    c
}

fn eth(ethertype: u16) -> EthernetRepr {
    EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(OUR_MAC),
        ethertype,
        vlan: None,
    }
}

fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame_to(OUR_IP, sport, dport, payload)
}

fn udp_frame_to(dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    let ip = Ipv4Repr::new(PEER_IP.into(), dst.into(), 17, 0);
    let u = UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    let n = emit_ipv4_udp(&mut b, &eth(0x0800), &ip, &u).unwrap();
    b.truncate(n);
    b
}

/// Sends raw frames from the peer end.
fn inject(peer: &mut MemoryLink, now: Instant, frames: &[Vec<u8>]) {
    let mut batch = Vec::new();
    for f in frames {
        let mut t = peer.alloc_tx().expect("peer frame");
        t.set_len(f.len());
        t.data_mut().copy_from_slice(f);
        batch.push(t);
    }
    peer.send_batch(now, &mut batch);
}

/// What the peer received, as byte vectors (frames released).
fn collect(peer: &mut MemoryLink, now: Instant) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    peer.recv_batch(now, &mut v, 1024);
    v.into_iter()
        .map(|f| {
            let b = f.data().to_vec();
            peer.release(f);
            b
        })
        .collect()
}

/// One worker iteration.
fn step<L: Link>(shard: &mut Shard<L::Frame>, link: &mut L, now: Instant) {
    let mut rx = Vec::new();
    link.recv_batch(now, &mut rx, 64);
    shard.process(now, link, &mut rx);
    shard.poll(now, link);
    shard.flush(now, link);
}

fn echo_shard(mode: AddressMode) -> Shard<xdpstack::phy::memory::MemoryFrame> {
    let mut s = Shard::new(config(mode), Instant::ZERO);
    s.bind_udp(7, Binding::Handler(Box::new(Echo))).unwrap();
    s
}

#[test]
fn udp_echo_in_place_is_byte_exact_with_valid_checksums() {
    for mode in [AddressMode::Shared, AddressMode::Dedicated] {
        let (mut a, mut peer) = pair(MemoryConfig::default());
        let mut s = echo_shard(mode);
        let now = Instant::from_millis(1);
        let payloads: Vec<Vec<u8>> = [0usize, 1, 512, 1472]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 13 + n) as u8).collect())
            .collect();
        let frames: Vec<Vec<u8>> = payloads.iter().map(|p| udp_frame(40000, 7, p)).collect();
        inject(&mut peer, now, &frames);
        step(&mut s, &mut a, now);
        let got = collect(&mut peer, now);
        assert_eq!(got.len(), payloads.len());
        for (g, p) in got.iter().zip(&payloads) {
            let frame::Frame::Ipv4(e, ip, L4::Udp(u)) = frame::parse(g).expect("valid checksums")
            else {
                panic!("not UDP");
            };
            assert_eq!(e.src_addr.0, OUR_MAC);
            assert_eq!(e.dst_addr.0, PEER_MAC);
            assert_eq!(Ipv4Addr::from(ip.src_addr), OUR_IP);
            assert_eq!(Ipv4Addr::from(ip.dst_addr), PEER_IP);
            assert_eq!(ip.hop_limit, 64);
            assert_eq!((u.src_port, u.dst_port), (7, 40000));
            assert_eq!(u.payload, &p[..]);
        }
        let st = s.stats();
        assert_eq!(st.shard.udp_replies, 4);
        assert_eq!(a.outstanding(), 0, "no frame leaked");
    }
}

/// Rewrites the payload (uppercase) and replies with a shorter one; also
/// sends a fresh datagram from `poll` once.
struct Upper {
    sent: bool,
}

impl UdpHandler for Upper {
    fn on_datagram(&mut self, _now: Instant, rx: UdpRx<'_>, _tx: &mut dyn UdpSend) -> Verdict {
        rx.payload.make_ascii_uppercase();
        Verdict::Reply(rx.payload.len().saturating_sub(1))
    }

    fn poll(&mut self, _now: Instant, tx: &mut dyn UdpSend) {
        if !self.sent {
            self.sent = tx
                .send_to(SocketAddrV4::new(PEER_IP, 5555), b"fresh")
                .is_ok();
        }
    }
}

#[test]
fn handler_reply_and_fresh_send_have_valid_checksums() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = Shard::new(config(AddressMode::Shared), Instant::ZERO);
    s.bind_udp(9, Binding::Handler(Box::new(Upper { sent: false })))
        .unwrap();
    let now = Instant::from_millis(1);
    // The peer's first datagram teaches the shard its MAC (shared mode has
    // no ARP of its own); the fresh send goes out after that.
    inject(&mut peer, now, &[udp_frame(40001, 9, b"hello world")]);
    step(&mut s, &mut a, now);
    step(&mut s, &mut a, now);
    let got = collect(&mut peer, now);
    let mut seen = Vec::new();
    for g in &got {
        let frame::Frame::Ipv4(e, _, L4::Udp(u)) = frame::parse(g).expect("valid checksums") else {
            panic!("not UDP");
        };
        assert_eq!(e.dst_addr.0, PEER_MAC);
        seen.push((u.src_port, u.dst_port, u.payload.to_vec()));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (9, 5555, b"fresh".to_vec()),
            (9, 40001, b"HELLO WORL".to_vec())
        ]
    );
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn channel_binding_and_thread_side_send() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = Shard::new(config(AddressMode::Shared), Instant::ZERO);
    let (tx, rx) = crossbeam::channel::bounded::<RecvDatagram>(2);
    s.bind_udp(53, Binding::Channel(tx)).unwrap();
    let now = Instant::from_millis(1);
    let frames: Vec<Vec<u8>> = (0..3u8).map(|i| udp_frame(40000, 53, &[i; 10])).collect();
    inject(&mut peer, now, &frames);
    step(&mut s, &mut a, now);
    let d = rx.try_recv().unwrap();
    assert_eq!(d.src, SocketAddrV4::new(PEER_IP, 40000));
    assert_eq!(d.data, vec![0u8; 10]);
    assert_eq!(rx.try_recv().unwrap().data, vec![1u8; 10]);
    assert!(rx.try_recv().is_err(), "the third did not fit the channel");
    assert_eq!(s.stats().shard.dropped(DropReason::SocketQueueFull), 1);
    s.send_udp(
        now,
        &mut a,
        53,
        SocketAddrV4::new(PEER_IP, 40000),
        b"answer",
    )
    .unwrap();
    s.flush(now, &mut a);
    let got = collect(&mut peer, now);
    assert_eq!(got.len(), 1);
    let frame::Frame::Ipv4(_, _, L4::Udp(u)) = frame::parse(&got[0]).unwrap() else {
        panic!("not UDP");
    };
    assert_eq!(u.payload, b"answer");
    assert!(s.close_udp(53));
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn dedicated_mode_arp_icmp_unreachable_and_reset() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = echo_shard(AddressMode::Dedicated);
    let now = Instant::from_millis(1);
    let mut frames = Vec::new();
    // ARP request for our address.
    let mut b = vec![0u8; 128];
    let req = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_IP.into(),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: OUR_IP.into(),
    };
    let mut e = eth(0x0806);
    e.dst_addr = EthernetAddress::BROADCAST;
    let n = emit_arp(&mut b, &e, &req).unwrap();
    frames.push(b[..n].to_vec());
    // ICMP echo request.
    let mut b = vec![0u8; 256];
    let ip = Ipv4Repr::new(PEER_IP.into(), OUR_IP.into(), 1, 0);
    let echo = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: b"ping data",
    };
    let n = emit_ipv4_icmp(&mut b, &eth(0x0800), &ip, &echo).unwrap();
    frames.push(b[..n].to_vec());
    // UDP to a closed port.
    frames.push(udp_frame(40000, 8888, b"closed?"));
    // TCP SYN to a closed port.
    let mut b = vec![0u8; 256];
    let ip = Ipv4Repr::new(PEER_IP.into(), OUR_IP.into(), 6, 0);
    let syn = TcpRepr {
        src_port: 50000,
        dst_port: 80,
        seq_number: SeqNumber(1000),
        ack_number: SeqNumber(0),
        flags: TcpFlags(TcpFlags::SYN),
        window: 1000,
        urgent_pointer: 0,
        options: Default::default(),
        payload: &[],
    };
    let n = emit_ipv4_tcp(&mut b, &eth(0x0800), &ip, &syn).unwrap();
    frames.push(b[..n].to_vec());
    // For another address: ignored.
    frames.push(udp_frame_to(
        Ipv4Addr::new(10, 9, 0, 99),
        40000,
        7,
        b"not ours",
    ));

    inject(&mut peer, now, &frames);
    step(&mut s, &mut a, now);
    let got = collect(&mut peer, now);
    let mut kinds = Vec::new();
    for g in &got {
        match frame::parse(g).expect("valid frame") {
            frame::Frame::Arp(e, r) => {
                assert_eq!(r.operation, ArpOperation::Reply);
                assert_eq!(r.source_hardware_addr.0, OUR_MAC);
                assert_eq!(Ipv4Addr::from(r.source_protocol_addr), OUR_IP);
                assert_eq!(e.dst_addr.0, PEER_MAC);
                kinds.push("arp");
            }
            frame::Frame::Ipv4(
                _,
                _,
                L4::Icmp(Icmpv4Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                }),
            ) => {
                assert_eq!((ident, seq_no, data), (0x1234, 7, &b"ping data"[..]));
                kinds.push("echo");
            }
            frame::Frame::Ipv4(_, _, L4::Icmp(Icmpv4Repr::DstUnreachable { code, data, .. })) => {
                assert_eq!(code, 3);
                assert_eq!(&data[..4], &[0x9c, 0x40, 0x22, 0xb8]); // ports 40000 -> 8888
                kinds.push("unreachable");
            }
            frame::Frame::Ipv4(_, _, L4::Tcp(t)) => {
                assert!(t.flags.rst() && t.flags.ack());
                assert_eq!(t.seq_number, SeqNumber(0));
                assert_eq!(t.ack_number, SeqNumber(1001));
                assert_eq!((t.src_port, t.dst_port), (80, 50000));
                kinds.push("rst");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    kinds.sort();
    assert_eq!(kinds, vec!["arp", "echo", "rst", "unreachable"]);
    let st = s.stats();
    assert_eq!(st.shard.dropped(DropReason::NotForUs), 1);
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn shared_mode_leaves_arp_and_icmp_to_the_kernel() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = echo_shard(AddressMode::Shared);
    let now = Instant::from_millis(1);
    let mut b = vec![0u8; 256];
    let ip = Ipv4Repr::new(PEER_IP.into(), OUR_IP.into(), 1, 0);
    let echo = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"x",
    };
    let n = emit_ipv4_icmp(&mut b, &eth(0x0800), &ip, &echo).unwrap();
    inject(
        &mut peer,
        now,
        &[b[..n].to_vec(), udp_frame(1, 9999, b"closed")],
    );
    step(&mut s, &mut a, now);
    assert!(collect(&mut peer, now).is_empty());
    let st = s.stats();
    assert_eq!(st.shard.dropped(DropReason::Icmp), 1);
    assert_eq!(st.udp.dropped(UdpDrop::NoSocket), 1);
}

#[test]
fn bad_checksum_and_lengths_are_counted() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = echo_shard(AddressMode::Dedicated);
    let now = Instant::from_millis(1);
    let good = udp_frame(40000, 7, b"payload!");
    let mut bad_sum = good.clone();
    bad_sum[14 + 20 + 6] ^= 0x55;
    let mut long = good.clone();
    long[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&100u16.to_be_bytes());
    let mut short = good.clone();
    short[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    let mut bad_ip = good.clone();
    bad_ip[14 + 10] ^= 1;
    inject(&mut peer, now, &[bad_sum, long, short, bad_ip, good]);
    step(&mut s, &mut a, now);
    assert_eq!(collect(&mut peer, now).len(), 1, "only the good one echoed");
    let st = s.stats();
    assert_eq!(st.udp.dropped(UdpDrop::BadChecksum), 1);
    assert_eq!(st.udp.dropped(UdpDrop::BadLength), 2);
    assert_eq!(st.shard.dropped(DropReason::IpChecksum), 1);
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn garbage_never_panics_or_leaks() {
    let mut rng = Rng::new(0x5eed);
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = echo_shard(AddressMode::Dedicated);
    let templates = [udp_frame(40000, 7, b"template payload"), {
        let mut b = vec![0u8; 64];
        let n = emit_arp(
            &mut b,
            &eth(0x0806),
            &ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: EthernetAddress(PEER_MAC),
                source_protocol_addr: PEER_IP.into(),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: OUR_IP.into(),
            },
        )
        .unwrap();
        b.truncate(n);
        b
    }];
    let mut total = 0u64;
    for round in 0..200u64 {
        let now = Instant::from_millis(round);
        let mut frames = Vec::new();
        for _ in 0..16 {
            let t = &templates[(rng.next_u64() % 2) as usize];
            let mut f = t.clone();
            match rng.next_u64() % 3 {
                0 => {
                    let cut = (rng.next_u64() as usize) % (f.len() + 1);
                    f.truncate(cut);
                }
                1 => {
                    for _ in 0..4 {
                        let i = (rng.next_u64() as usize) % f.len();
                        f[i] = rng.next_u64() as u8;
                    }
                }
                _ => {
                    let n = (rng.next_u64() % 100) as usize;
                    f = (0..n).map(|_| rng.next_u64() as u8).collect();
                }
            }
            frames.push(f);
        }
        total += frames.len() as u64;
        inject(&mut peer, now, &frames);
        step(&mut s, &mut a, now);
        collect(&mut peer, now);
    }
    assert_eq!(s.stats().shard.rx_frames, total);
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn echo_through_seeded_faults() {
    for seed in 0..20u64 {
        let (a, mut peer) = pair(MemoryConfig::default());
        let faults = FaultConfig {
            drop: 0.1,
            corrupt: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            ..FaultConfig::default()
        };
        let mut link = FaultInjector::new(a, seed, faults, Apply::Rx);
        let mut s = echo_shard(AddressMode::Dedicated);
        let mut sent = 0;
        for round in 0..50u64 {
            let now = Instant::from_millis(round);
            let frames: Vec<Vec<u8>> = (0..4)
                .map(|i| udp_frame(40000 + i, 7, &[round as u8; 100]))
                .collect();
            sent += frames.len() as u64;
            inject(&mut peer, now, &frames);
            step(&mut s, &mut link, now);
            for g in collect(&mut peer, now) {
                // Whatever arrived is a well-formed echo: corrupted frames
                // were dropped, not answered with their damage.
                let frame::Frame::Ipv4(_, _, L4::Udp(u)) =
                    frame::parse(&g).expect("valid checksums")
                else {
                    panic!("not UDP");
                };
                assert_eq!(u.src_port, 7);
                assert_eq!(u.payload.len(), 100);
            }
        }
        link.release_held();
        let st = s.stats();
        assert!(st.shard.udp_replies > 0 && st.shard.udp_replies <= sent * 2);
        drop(s);
        assert_eq!(link.inner().outstanding(), 0, "seed {seed}");
    }
}

#[test]
fn dedicated_mode_resolves_with_arp_before_a_fresh_send() {
    let (mut a, mut peer) = pair(MemoryConfig::default());
    let mut s = Shard::new(config(AddressMode::Dedicated), Instant::ZERO);
    let (tx, _rx) = crossbeam::channel::bounded::<RecvDatagram>(4);
    s.bind_udp(53, Binding::Channel(tx)).unwrap();
    let now = Instant::from_millis(1);
    s.send_udp(now, &mut a, 53, SocketAddrV4::new(PEER_IP, 4000), b"queued")
        .unwrap();
    s.flush(now, &mut a);
    // First an ARP request for the peer, broadcast; the datagram waits.
    let got = collect(&mut peer, now);
    assert_eq!(got.len(), 1);
    let frame::Frame::Arp(e, req) = frame::parse(&got[0]).unwrap() else {
        panic!("expected an ARP request");
    };
    assert_eq!(e.dst_addr, EthernetAddress::BROADCAST);
    assert_eq!(req.operation, ArpOperation::Request);
    assert_eq!(Ipv4Addr::from(req.target_protocol_addr), PEER_IP);
    // The peer answers; the waiting datagram goes out to its MAC.
    let mut b = vec![0u8; 64];
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_IP.into(),
        target_hardware_addr: EthernetAddress(OUR_MAC),
        target_protocol_addr: OUR_IP.into(),
    };
    let n = emit_arp(&mut b, &eth(0x0806), &reply).unwrap();
    inject(&mut peer, now, &[b[..n].to_vec()]);
    step(&mut s, &mut a, now);
    let got = collect(&mut peer, now);
    assert_eq!(got.len(), 1);
    let frame::Frame::Ipv4(e, _, L4::Udp(u)) = frame::parse(&got[0]).expect("valid") else {
        panic!("expected the datagram");
    };
    assert_eq!(e.dst_addr.0, PEER_MAC);
    assert_eq!(u.payload, b"queued");
    assert_eq!(s.stats().shard.arp_requests, 1);
    assert_eq!(a.outstanding(), 0);
}
