//! Property tests of the wire layer: emit-then-parse round trips for random
//! `Repr`s of every protocol, `emit` writing exactly `buffer_len` bytes,
//! and `new_checked` / `parse` never panicking on arbitrary bytes.

use proptest::prelude::*;
use xdpstack::wire::arp::{self, ArpOperation, ArpRepr};
use xdpstack::wire::ethernet::{self, EthernetAddress, EthernetRepr, VlanTag};
use xdpstack::wire::icmpv4::{self, Icmpv4Repr};
use xdpstack::wire::ipv4::{self, Ipv4Address, Ipv4Repr};
use xdpstack::wire::tcp::{self, SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamps};
use xdpstack::wire::udp::{self, UdpRepr};
use xdpstack::wire::{ethertype, frame, SeqNumber};

/// Byte written outside the emitted region, to check emit stays inside.
const CANARY: u8 = 0xa5;

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn ip() -> impl Strategy<Value = Ipv4Address> {
    any::<[u8; 4]>().prop_map(Ipv4Address)
}

fn eth_repr() -> impl Strategy<Value = EthernetRepr> {
    let vlan = prop::option::of(
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid }),
    );
    (mac(), mac(), any::<u16>(), vlan)
        .prop_filter("untagged 0x8100 reads as a tag", |(_, _, t, v)| {
            v.is_some() || *t != ethertype::VLAN
        })
        .prop_map(|(src_addr, dst_addr, ethertype, vlan)| EthernetRepr {
            src_addr,
            dst_addr,
            ethertype,
            vlan,
        })
}

fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    (any::<bool>(), mac(), ip(), mac(), ip()).prop_map(|(req, sha, spa, tha, tpa)| ArpRepr {
        operation: if req {
            ArpOperation::Request
        } else {
            ArpOperation::Reply
        },
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_hardware_addr: tha,
        target_protocol_addr: tpa,
    })
}

fn ipv4_repr(max_payload: usize) -> impl Strategy<Value = Ipv4Repr> {
    (
        (ip(), ip(), any::<u8>(), 0..=max_payload, any::<u8>()),
        (any::<u16>(), any::<bool>(), any::<bool>(), 0u16..8192),
        (0u8..64, 0u8..4),
    )
        .prop_map(
            |((src, dst, protocol, payload_len, ttl), (ident, df, mf, off), (dscp, ecn))| {
                Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol,
                    payload_len,
                    hop_limit: ttl,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off << 3,
                    dscp,
                    ecn,
                }
            },
        )
}

fn seq() -> impl Strategy<Value = SeqNumber> {
    any::<u32>().prop_map(SeqNumber)
}

fn tcp_options() -> impl Strategy<Value = TcpOptions> {
    let sack = (seq(), seq()).prop_map(|(left, right)| SackBlock { left, right });
    (
        prop::option::of(any::<u16>()),
        prop::option::of(0u8..=14),
        any::<bool>(),
        prop::collection::vec(sack, 0..=4),
        prop::option::of(
            (any::<u32>(), any::<u32>()).prop_map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
        ),
    )
        .prop_map(|(mss, window_scale, sack_permitted, blocks, timestamps)| {
            let mut sack_blocks = [None; 4];
            for (s, b) in sack_blocks.iter_mut().zip(blocks) {
                *s = Some(b);
            }
            TcpOptions {
                mss,
                window_scale,
                sack_permitted,
                sack_blocks,
                timestamps,
            }
        })
}

fn tcp_parts() -> impl Strategy<Value = (TcpRepr<'static>, Vec<u8>)> {
    (
        (any::<u16>(), any::<u16>(), seq(), seq(), any::<u8>()),
        (any::<u16>(), any::<u16>(), tcp_options()),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|((sp, dp, s, a, f), (win, urg, options), payload)| {
            (
                TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq_number: s,
                    ack_number: a,
                    flags: TcpFlags(f),
                    window: win,
                    urgent_pointer: urg,
                    options,
                    payload: &[],
                },
                payload,
            )
        })
}

/// Runs `emit` on a buffer of `len` bytes plus canaries after it, checks
/// the canaries are intact and returns the `len` bytes.
fn emit_within(len: usize, emit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![CANARY; len + 16];
    emit(&mut buf);
    assert!(
        buf[len..].iter().all(|&b| b == CANARY),
        "emit wrote past buffer_len"
    );
    buf.truncate(len);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ethernet_round_trip(repr in eth_repr()) {
        let len = repr.buffer_len();
        let buf = emit_within(len, |b| repr.emit(&mut ethernet::Packet::new_unchecked(b)));
        let p = ethernet::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.header_len(), len);
        prop_assert_eq!(EthernetRepr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn arp_round_trip(repr in arp_repr()) {
        let buf = emit_within(repr.buffer_len(), |b| repr.emit(&mut arp::Packet::new_unchecked(b)));
        let p = arp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ArpRepr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn ipv4_round_trip(repr in ipv4_repr(1500), pad in 0usize..40) {
        let len = repr.buffer_len();
        // Header, payload and trailing Ethernet-style padding.
        let mut buf = vec![CANARY; len + repr.payload_len + pad + 16];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        assert!(buf[len..].iter().all(|&b| b == CANARY));
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(p.payload().len(), repr.payload_len);
        let back = Ipv4Repr::parse(&p).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(back.is_fragment(), repr.more_frags || repr.frag_offset != 0);
    }

    #[test]
    fn icmp_echo_round_trip(req in any::<bool>(), ident in any::<u16>(), seq_no in any::<u16>(),
                            data in prop::collection::vec(any::<u8>(), 0..200)) {
        let repr = if req {
            Icmpv4Repr::EchoRequest { ident, seq_no, data: &data }
        } else {
            Icmpv4Repr::EchoReply { ident, seq_no, data: &data }
        };
        let len = repr.buffer_len();
        let buf = emit_within(len, |b| {
            repr.emit(&mut icmpv4::Packet::new_unchecked(&mut b[..len]))
        });
        let p = icmpv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn icmp_unreachable_round_trip(code in 0u8..16, mtu in any::<u16>(),
                                   header in ipv4_repr(1500),
                                   data in prop::collection::vec(any::<u8>(), 0..=8)) {
        let header = Ipv4Repr { payload_len: header.payload_len.max(data.len()), ..header };
        let mtu = if code == icmpv4::unreachable::FRAG_REQUIRED { mtu } else { 0 };
        let repr = Icmpv4Repr::DstUnreachable { code, mtu, header, data: &data };
        let len = repr.buffer_len();
        prop_assert_eq!(len, 8 + 20 + data.len());
        let buf = emit_within(len, |b| {
            repr.emit(&mut icmpv4::Packet::new_unchecked(&mut b[..len]))
        });
        let p = icmpv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn udp_round_trip(sp in any::<u16>(), dp in any::<u16>(), src in ip(), dst in ip(),
                      payload in prop::collection::vec(any::<u8>(), 0..600)) {
        let repr = UdpRepr { src_port: sp, dst_port: dp, payload: &payload };
        let len = repr.buffer_len();
        let buf = emit_within(len, |b| {
            repr.emit(&mut udp::Packet::new_unchecked(&mut b[..len]), src, dst)
        });
        let p = udp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_ne!(p.checksum(), 0, "a computed zero is sent as 0xffff");
        prop_assert_eq!(UdpRepr::parse(&p, src, dst).unwrap(), repr);
    }

    #[test]
    fn tcp_round_trip((repr, payload) in tcp_parts(), src in ip(), dst in ip()) {
        let repr = TcpRepr { payload: &payload, ..repr };
        let buf = emit_within(repr.buffer_len(), |b| {
            repr.emit(&mut tcp::Packet::new_unchecked(b), src, dst)
        });
        let p = tcp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.header_len() as usize % 4, 0);
        prop_assert!(p.header_len() as usize <= tcp::MAX_HEADER_LEN);
        let back = TcpRepr::parse(&p, src, dst).unwrap();
        let want = TcpRepr { options: repr.options.fitted(), ..repr };
        prop_assert_eq!(back, want);
        // Without timestamps and the SYN options, four SACK blocks fit.
        if repr.options.timestamps.is_none() && repr.options.mss.is_none()
            && repr.options.window_scale.is_none() && !repr.options.sack_permitted {
            prop_assert_eq!(back.options, repr.options);
        }
        // A wrong pseudo-header fails verification.
        let other = Ipv4Address::from_bits(src.to_bits() ^ 0x0100);
        prop_assert!(TcpRepr::parse(&p, other, dst).is_err());
    }

    #[test]
    fn whole_tcp_frame_round_trip(eth in eth_repr(), iph in ipv4_repr(0), (repr, payload) in tcp_parts()) {
        let repr = TcpRepr { payload: &payload, options: repr.options.fitted(), ..repr };
        let iph = Ipv4Repr { more_frags: false, frag_offset: 0, ..iph };
        let len = frame::ipv4_tcp_len(&eth, &repr);
        let mut emitted = None;
        let mut buf = emit_within(len, |b| {
            emitted = Some(frame::emit_ipv4_tcp(b, &eth, &iph, &repr))
        });
        prop_assert_eq!(emitted, Some(Ok(len)));
        prop_assert_eq!(frame::emit_ipv4_tcp(&mut buf[..len - 1], &eth, &iph, &repr),
                        Err(xdpstack::wire::WireError::Truncated));
        match frame::parse(&buf[..]).unwrap() {
            frame::Frame::Ipv4(e, i, frame::L4::Tcp(t)) => {
                prop_assert_eq!(e, EthernetRepr { ethertype: ethertype::IPV4, ..eth });
                prop_assert_eq!(i, Ipv4Repr { protocol: 6, payload_len: repr.buffer_len(), ..iph });
                prop_assert_eq!(t, repr);
            }
            other => prop_assert!(false, "parsed as {:?}", other),
        }
    }

    #[test]
    fn whole_udp_frame_round_trip(eth in eth_repr(), iph in ipv4_repr(0), sp in any::<u16>(),
                                  dp in any::<u16>(), payload in prop::collection::vec(any::<u8>(), 0..600),
                                  pad in 0usize..30) {
        let repr = UdpRepr { src_port: sp, dst_port: dp, payload: &payload };
        let iph = Ipv4Repr { more_frags: false, frag_offset: 0, ..iph };
        let len = frame::ipv4_udp_len(&eth, &repr);
        let mut buf = vec![0u8; len + pad];
        prop_assert_eq!(frame::emit_ipv4_udp(&mut buf, &eth, &iph, &repr), Ok(len));
        // Trailing padding (as on short Ethernet frames) is ignored.
        match frame::parse(&buf).unwrap() {
            frame::Frame::Ipv4(_, _, frame::L4::Udp(u)) => prop_assert_eq!(u, repr),
            other => prop_assert!(false, "parsed as {:?}", other),
        }
    }

    #[test]
    fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..120),
                                    src in ip(), dst in ip()) {
        parse_everything(&bytes, src, dst);
    }

    #[test]
    fn never_panics_on_mutated_frames((repr, payload) in tcp_parts(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                      cut in any::<usize>()) {
        // Random bytes rarely get past the first length checks; mutate
        // valid frames instead so the deeper paths (options) are reached.
        let repr = TcpRepr { payload: &payload, ..repr };
        let eth = EthernetRepr { src_addr: EthernetAddress([2; 6]), dst_addr: EthernetAddress([4; 6]),
                                 ethertype: 0, vlan: None };
        let iph = Ipv4Repr::new(Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2), 0, 0);
        let mut buf = vec![0u8; frame::ipv4_tcp_len(&eth, &repr)];
        let len = frame::emit_ipv4_tcp(&mut buf, &eth, &iph, &repr).unwrap();
        for (at, x) in flips {
            let i = at % len;
            buf[i] ^= x;
        }
        let cut = cut % (len + 1);
        parse_everything(&buf[..cut], iph.src_addr, iph.dst_addr);
        parse_everything(&buf[14..cut.max(14)], iph.src_addr, iph.dst_addr);
        parse_everything(&buf[34..cut.max(34)], iph.src_addr, iph.dst_addr);
    }
}

/// Runs every checked constructor and parser over `b` and touches every
/// accessor of the views that were accepted.
fn parse_everything(b: &[u8], src: Ipv4Address, dst: Ipv4Address) {
    let _ = frame::parse(b);
    if let Ok(p) = ethernet::Packet::new_checked(b) {
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.ethertype(),
            p.vlan(),
            p.payload(),
        );
        let _ = EthernetRepr::parse(&p);
    }
    if let Ok(p) = arp::Packet::new_checked(b) {
        let _ = (
            p.operation(),
            p.sender_hardware_addr(),
            p.target_protocol_addr(),
        );
        let _ = ArpRepr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked(b) {
        let _ = (
            p.payload(),
            p.verify_checksum(),
            p.is_fragment(),
            p.frag_offset(),
        );
        let _ = Ipv4Repr::parse(&p);
        let _ = Ipv4Repr::parse_unverified(&p);
    }
    if let Ok(p) = icmpv4::Packet::new_checked(b) {
        let _ = (
            p.data(),
            p.echo_ident(),
            p.echo_seq_no(),
            p.verify_checksum(),
        );
        let _ = Icmpv4Repr::parse(&p);
    }
    if let Ok(p) = udp::Packet::new_checked(b) {
        let _ = (p.payload(), p.verify_checksum(src, dst));
        let _ = UdpRepr::parse(&p, src, dst);
        let _ = UdpRepr::parse_unverified(&p);
    }
    if let Ok(p) = tcp::Packet::new_checked(b) {
        let _ = (
            p.payload(),
            p.options(),
            p.flags(),
            p.verify_checksum(src, dst),
        );
        let _ = TcpRepr::parse(&p, src, dst);
        let _ = TcpRepr::parse_unverified(&p);
    }
    let _ = TcpOptions::parse(b);
    let _ = Icmpv4Repr::dst_unreachable(3, b);
    let _ = xdpstack::wire::checksum::ChecksumOffsets::for_ipv4(b, 0);
}
