//! The UDP, ARP and ICMP cores driven by real frames through the wire layer:
//! frames built with `wire::frame`, parsed with the wire views, decided by
//! the cores, answers emitted and parsed back (and cross-checked with
//! etherparse, an independent parser).

use std::net::{Ipv4Addr, SocketAddrV4};

use xdpstack::icmp::{self, AddressMode, EchoRequest, ErrorContext};
use xdpstack::neighbor::{Action, ArpPacket, NeighborCache, NeighborConfig, Resolution};
use xdpstack::time::Instant;
use xdpstack::udp::{Checksum, DropReason, RxDatagram, RxDecision, UdpConfig, UdpTable};
use xdpstack::wire::{
    self, ethernet, frame, icmpv4, ipv4, EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Repr,
    UdpRepr,
};

const US: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);
const US_MAC: [u8; 6] = [2, 0, 0, 0, 7, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 7, 2];

fn eth(src: [u8; 6], dst: [u8; 6]) -> EthernetRepr {
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: 0,
        vlan: None,
    }
}

fn udp_frame(payload: &[u8], dst_port: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let ip = Ipv4Repr::new(PEER.into(), US.into(), 0, 0);
    let udp = UdpRepr {
        src_port: 40000,
        dst_port,
        payload,
    };
    let n = frame::emit_ipv4_udp(&mut buf, &eth(PEER_MAC, US_MAC), &ip, &udp).unwrap();
    buf.truncate(n);
    buf
}

/// The worker's parse down to the IPv4 payload.
fn l3(frame: &[u8]) -> (EthernetAddress, Ipv4Repr, &[u8]) {
    let e = ethernet::Packet::new_checked(frame).unwrap();
    let dst = e.dst_addr();
    let p = ipv4::Packet::new_checked(e.payload()).unwrap();
    let ip = Ipv4Repr::parse(&p).unwrap();
    (dst, ip, p.payload())
}

/// Offset of the UDP header in an untagged frame.
const UDP_AT: usize = 14 + 20;

fn table() -> UdpTable<()> {
    UdpTable::new(UdpConfig {
        mode: AddressMode::Dedicated,
        local_addr: US,
        mtu: 1500,
        rx_queue_limit: 8,
    })
}

#[test]
fn received_frame_delivers_borrowed_payload() {
    let mut t = table();
    let s = t.bind(SocketAddrV4::new(US, 7)).unwrap();
    for size in [0usize, 1, 512, 1472] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let f = udp_frame(&payload, 7);
        let (dst, ip, l4) = l3(&f);
        let d = RxDatagram::from_wire(dst, &ip, l4);
        assert_eq!(d.src, SocketAddrV4::new(PEER, 40000));
        assert_eq!(d.checksum, Checksum::Valid);
        let RxDecision::Deliver {
            socket,
            payload_len,
        } = t.receive(&d)
        else {
            panic!("size {size} not delivered");
        };
        assert_eq!(socket, s);
        // The payload as the worker would lend it: a slice of the frame.
        assert_eq!(&l4[8..8 + payload_len], &payload[..]);
    }
}

#[test]
fn corrupted_and_malformed_frames_dropped_by_reason() {
    let mut t = table();
    t.bind(SocketAddrV4::new(US, 7)).unwrap();
    let good = udp_frame(b"hello, world", 7);

    // One flipped payload bit: bad checksum.
    let mut f = good.clone();
    let last = f.len() - 1;
    f[last] ^= 0x10;
    let (dst, ip, l4) = l3(&f);
    assert_eq!(
        t.receive(&RxDatagram::from_wire(dst, &ip, l4)),
        RxDecision::Drop(DropReason::BadChecksum)
    );

    // Length field beyond the IP payload, and below the header size.
    for bad_len in [21u16, 7, 0] {
        let mut f = good.clone();
        f[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&bad_len.to_be_bytes());
        let (dst, ip, l4) = l3(&f);
        assert_eq!(
            t.receive(&RxDatagram::from_wire(dst, &ip, l4)),
            RxDecision::Drop(DropReason::BadLength),
            "length {bad_len}"
        );
    }

    // An IP payload too short for a UDP header.
    let (dst, ip, l4) = l3(&good);
    assert_eq!(
        t.receive(&RxDatagram::from_wire(dst, &ip, &l4[..5])),
        RxDecision::Drop(DropReason::BadLength)
    );

    // Checksum field zero: accepted without verification.
    let mut f = good.clone();
    f[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&[0, 0]);
    f[last] ^= 0x10;
    let (dst, ip, l4) = l3(&f);
    let d = RxDatagram::from_wire(dst, &ip, l4);
    assert_eq!(d.checksum, Checksum::Absent);
    assert!(matches!(t.receive(&d), RxDecision::Deliver { .. }));

    let c = t.counters();
    assert_eq!(c.dropped(DropReason::BadChecksum), 1);
    assert_eq!(c.dropped(DropReason::BadLength), 4);
    assert_eq!(c.rx_no_checksum, 1);
}

#[test]
fn closed_port_answered_with_port_unreachable() {
    let mut t = table();
    let f = udp_frame(b"anyone?", 9999);
    let (dst, ip, l4) = l3(&f);
    assert_eq!(
        t.receive(&RxDatagram::from_wire(dst, &ip, l4)),
        RxDecision::PortUnreachable
    );
    // The worker quotes the datagram it received (from the IP header on).
    let original = &f[14..];
    let msg = Icmpv4Repr::dst_unreachable(icmp::types::CODE_PORT_UNREACHABLE, original).unwrap();
    let reply_ip = Ipv4Repr::new(US.into(), PEER.into(), 0, 0);
    let mut buf = vec![0u8; 600];
    let n = frame::emit_ipv4_icmp(&mut buf, &eth(US_MAC, PEER_MAC), &reply_ip, &msg).unwrap();
    let parsed = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
    match parsed.transport {
        Some(etherparse::TransportSlice::Icmpv4(icmp)) => match icmp.icmp_type() {
            etherparse::Icmpv4Type::DestinationUnreachable(h) => {
                assert_eq!(h, etherparse::icmpv4::DestUnreachableHeader::Port)
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }

    // The same datagram as a link-layer broadcast: no error.
    let mut b = f.clone();
    b[..6].copy_from_slice(&[0xff; 6]);
    let (dst, ip, l4) = l3(&b);
    assert_eq!(
        t.receive(&RxDatagram::from_wire(dst, &ip, l4)),
        RxDecision::Drop(DropReason::NoSocket)
    );
    // An ICMP error arriving is never answered with one.
    let (dst, ip, _) = l3(&buf[..n]);
    let ctx = ErrorContext::from_wire(dst, &ip, Some(icmp::types::DEST_UNREACHABLE));
    assert_eq!(
        icmp::may_send_error(AddressMode::Dedicated, PEER, &ctx),
        Err(icmp::NoErrorReason::AboutIcmpError)
    );
}

#[test]
fn sent_datagram_emits_valid_frame() {
    let mut t = table();
    let s = t
        .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353))
        .unwrap();
    let payload = vec![0xabu8; 1472];
    let tx = t
        .send_to(s, SocketAddrV4::new(PEER, 6000), payload.len())
        .unwrap();
    let mut buf = vec![0u8; 1600];
    let n = frame::emit_ipv4_udp(
        &mut buf,
        &eth(US_MAC, PEER_MAC),
        &tx.ipv4_repr(),
        &tx.udp_repr(&payload),
    )
    .unwrap();
    assert_eq!(n, 14 + 1500);
    // Independent check: etherparse accepts it and the checksum verifies.
    let p = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4");
    };
    assert_eq!(ip.header().source_addr(), US);
    assert_eq!(ip.header().destination_addr(), PEER);
    let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
        panic!("not UDP");
    };
    assert_eq!((u.source_port(), u.destination_port()), (5353, 6000));
    let expect = u
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), &payload)
        .unwrap();
    assert_eq!(u.checksum(), expect);
    assert_eq!(u.payload(), &payload[..]);
}

#[test]
fn arp_resolution_between_two_caches_over_frames() {
    let t0 = Instant::from_secs(1);
    let mut a: NeighborCache<&'static str> =
        NeighborCache::new(NeighborConfig::default(), US, US_MAC);
    let mut b: NeighborCache<&'static str> =
        NeighborCache::new(NeighborConfig::default(), PEER, PEER_MAC);
    assert_eq!(a.resolve(PEER, "first", t0), Resolution::Queued);

    // Carry one side's ARP actions as frames to the other side.
    fn carry(
        from: &mut NeighborCache<&'static str>,
        to: &mut NeighborCache<&'static str>,
        now: Instant,
        src_mac: [u8; 6],
    ) -> Vec<Action<&'static str>> {
        let mut other = Vec::new();
        while let Some(act) = from.poll_action() {
            let Some((dst, arp)) = from.arp_repr(&act) else {
                other.push(act);
                continue;
            };
            let mut buf = [0u8; 64];
            let n = frame::emit_arp(&mut buf, &eth(src_mac, dst.0), &arp).unwrap();
            let frame::Frame::Arp(_, parsed) = frame::parse(&buf[..n]).unwrap() else {
                panic!("not ARP");
            };
            to.process_arp(&ArpPacket::from(&parsed), now).unwrap();
        }
        other
    }

    assert!(carry(&mut a, &mut b, t0, US_MAC).is_empty()); // request
    assert!(carry(&mut b, &mut a, t0, PEER_MAC).is_empty()); // reply
    let released = carry(&mut a, &mut b, t0, US_MAC);
    assert_eq!(
        released,
        vec![Action::Transmit {
            dst_mac: PEER_MAC,
            packet: "first"
        }]
    );
    // B learned A from the request addressed to it.
    assert_eq!(b.lookup(US, t0), Some(US_MAC));
    assert_eq!(
        a.resolve(PEER, "second", t0),
        Resolution::Ready(PEER_MAC, "second")
    );
}

#[test]
fn echo_request_frame_answered_in_dedicated_mode() {
    let data = b"ping payload 0123456789";
    let req = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data,
    };
    let mut buf = vec![0u8; 200];
    let ip = Ipv4Repr::new(PEER.into(), US.into(), 0, 0);
    let n = frame::emit_ipv4_icmp(&mut buf, &eth(PEER_MAC, US_MAC), &ip, &req).unwrap();
    let (dst, ip, l4) = l3(&buf[..n]);
    let e = EchoRequest::from_wire(dst, &ip, l4).unwrap();
    assert_eq!(icmp::echo_decision(AddressMode::Dedicated, US, &e), Ok(()));
    assert_eq!(
        icmp::echo_decision(AddressMode::Shared, US, &e),
        Err(icmp::EchoIgnore::SharedMode)
    );
    let parsed = Icmpv4Repr::parse(&icmpv4::Packet::new_checked(l4).unwrap()).unwrap();
    let reply = icmp::echo_reply(&parsed).unwrap();
    assert_eq!(
        reply,
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data
        }
    );
    assert_eq!(icmp::echo_reply(&reply), None);

    // A corrupted request is not answered.
    let mut bad = buf[..n].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (dst, ip, l4) = l3(&bad);
    let e = EchoRequest::from_wire(dst, &ip, l4).unwrap();
    assert_eq!(
        icmp::echo_decision(AddressMode::Dedicated, US, &e),
        Err(icmp::EchoIgnore::BadChecksum)
    );
    assert!(EchoRequest::from_wire(dst, &ip, &l4[..3]).is_none());
}

mod untrusted {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes after an IPv4 header never panic the adapters or
        /// the core, and a delivered payload always lies inside them.
        #[test]
        fn arbitrary_l4_bytes_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..64),
            bcast in any::<bool>(),
            frag in any::<bool>(),
            aim in any::<bool>(),
            short_by in 0usize..3,
        ) {
            // Half the cases aim at a bound port with no checksum and a
            // length field near the real length, so deliveries happen.
            if aim && bytes.len() >= 8 {
                bytes[2..4].copy_from_slice(&53u16.to_be_bytes());
                let l = (bytes.len() - short_by).max(8) as u16;
                bytes[4..6].copy_from_slice(&l.to_be_bytes());
                bytes[6..8].copy_from_slice(&[0, 0]);
            }
            let mut t = table();
            for port in [7u16, 53, 0x0101] {
                t.bind(SocketAddrV4::new(US, port)).unwrap();
            }
            let mut ip = Ipv4Repr::new(PEER.into(), US.into(), wire::ip_protocol::UDP, bytes.len());
            if frag {
                ip.frag_offset = 8;
            }
            let dst = if bcast { EthernetAddress::BROADCAST } else { EthernetAddress(US_MAC) };
            let d = RxDatagram::from_wire(dst, &ip, &bytes);
            let decision = t.receive(&d);
            if aim && bytes.len() >= 8 && !bcast {
                prop_assert!(matches!(decision, RxDecision::Deliver { .. }), "{:?}", decision);
            }
            if let RxDecision::Deliver { payload_len, .. } = decision {
                prop_assert!(8 + payload_len <= bytes.len());
                // The length field agrees.
                prop_assert_eq!(
                    u16::from_be_bytes([bytes[4], bytes[5]]) as usize,
                    payload_len + 8
                );
            }
            if let Some(e) = EchoRequest::from_wire(dst, &ip, &bytes) {
                let _ = icmp::echo_decision(AddressMode::Dedicated, US, &e);
            }
            let ctx = ErrorContext::from_wire(dst, &ip, bytes.first().copied());
            prop_assert_eq!(ctx.non_initial_fragment, frag);
        }
    }
}
