//! Cross-check against an independent implementation (etherparse), both
//! ways and checksums included: frames built by `wire` decode to the same
//! fields in etherparse with checksums that etherparse recomputes to the
//! same values, and frames built by etherparse parse (checksums verified)
//! to the same fields in `wire`.

use etherparse::{
    ArpHardwareId, EtherType, IcmpEchoHeader, Icmpv4Type, IpNumber, LinkExtHeader, LinkHeader,
    NetHeaders, PacketBuilder, PacketHeaders, SingleVlanHeader, TcpHeader, TcpOptionElement,
    TransportHeader, VlanHeader, VlanId, VlanPcp,
};
use proptest::prelude::*;
use xdpstack::wire::frame::{self, Frame, L4};
use xdpstack::wire::{
    ArpOperation, ArpRepr, EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Address, Ipv4Repr,
    SackBlock, SeqNumber, TcpFlags, TcpOptions, TcpRepr, Timestamps, UdpRepr, VlanTag,
};

fn eth_strategy() -> impl Strategy<Value = EthernetRepr> {
    let vlan = prop::option::of(
        (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid }),
    );
    (any::<[u8; 6]>(), any::<[u8; 6]>(), vlan).prop_map(|(s, d, vlan)| EthernetRepr {
        src_addr: EthernetAddress(s),
        dst_addr: EthernetAddress(d),
        ethertype: 0,
        vlan,
    })
}

fn ip_strategy() -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u16>(),
        any::<bool>(),
        0u8..64,
        0u8..4,
    )
        .prop_map(|(s, d, ttl, ident, df, dscp, ecn)| Ipv4Repr {
            hop_limit: ttl,
            ident,
            dont_frag: df,
            dscp,
            ecn,
            ..Ipv4Repr::new(Ipv4Address(s), Ipv4Address(d), 0, 0)
        })
}

fn options_strategy() -> impl Strategy<Value = TcpOptions> {
    (
        prop::option::of(any::<u16>()),
        prop::option::of(0u8..=14),
        any::<bool>(),
        prop::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
        prop::option::of((any::<u32>(), any::<u32>())),
    )
        .prop_map(|(mss, ws, sp, blocks, ts)| {
            let mut sack_blocks = [None; 4];
            for (s, (l, r)) in sack_blocks.iter_mut().zip(blocks) {
                *s = Some(SackBlock {
                    left: SeqNumber(l),
                    right: SeqNumber(r),
                });
            }
            TcpOptions {
                mss,
                window_scale: ws,
                sack_permitted: sp,
                sack_blocks,
                timestamps: ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
            }
            .fitted()
        })
}

/// Checks etherparse's view of the link and IPv4 layers against what was
/// emitted; returns the IPv4 header for checksum recomputation.
fn check_l2_l3(
    h: &PacketHeaders,
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    proto: u8,
) -> etherparse::Ipv4Header {
    match &h.link {
        Some(LinkHeader::Ethernet2(e)) => {
            assert_eq!(e.source, eth.src_addr.0);
            assert_eq!(e.destination, eth.dst_addr.0);
        }
        other => panic!("link {other:?}"),
    }
    match (eth.vlan, h.link_exts.first()) {
        (None, None) => {}
        (Some(tag), Some(LinkExtHeader::Vlan(v))) => {
            assert_eq!(v.pcp.value(), tag.pcp);
            assert_eq!(v.drop_eligible_indicator, tag.dei);
            assert_eq!(v.vlan_id.value(), tag.vid);
        }
        other => panic!("vlan {other:?}"),
    }
    match &h.net {
        Some(NetHeaders::Ipv4(v4, _)) => {
            assert_eq!(v4.source, ip.src_addr.0);
            assert_eq!(v4.destination, ip.dst_addr.0);
            assert_eq!(v4.time_to_live, ip.hop_limit);
            assert_eq!(v4.identification, ip.ident);
            assert_eq!(v4.dont_fragment, ip.dont_frag);
            assert!(!v4.more_fragments);
            assert_eq!(v4.dscp.value(), ip.dscp);
            assert_eq!(v4.ecn.value(), ip.ecn);
            assert_eq!(v4.protocol, IpNumber(proto));
            assert_eq!(v4.header_checksum, v4.calc_header_checksum());
            v4.clone()
        }
        other => panic!("net {other:?}"),
    }
}

fn etherparse_options(t: &TcpHeader) -> TcpOptions {
    let mut o = TcpOptions::default();
    for e in t.options_iterator() {
        match e.expect("etherparse reads our options") {
            TcpOptionElement::Noop => {}
            TcpOptionElement::MaximumSegmentSize(m) => o.mss = Some(m),
            TcpOptionElement::WindowScale(w) => o.window_scale = Some(w),
            TcpOptionElement::SelectiveAcknowledgementPermitted => o.sack_permitted = true,
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                let all = std::iter::once(Some(first)).chain(rest);
                for (slot, b) in o.sack_blocks.iter_mut().zip(all) {
                    *slot = b.map(|(l, r)| SackBlock {
                        left: SeqNumber(l),
                        right: SeqNumber(r),
                    });
                }
            }
            TcpOptionElement::Timestamp(tsval, tsecr) => {
                o.timestamps = Some(Timestamps { tsval, tsecr })
            }
        }
    }
    o
}

fn to_etherparse_options(o: &TcpOptions) -> Vec<TcpOptionElement> {
    let mut v = Vec::new();
    if let Some(m) = o.mss {
        v.push(TcpOptionElement::MaximumSegmentSize(m));
    }
    if let Some(w) = o.window_scale {
        v.push(TcpOptionElement::Noop);
        v.push(TcpOptionElement::WindowScale(w));
    }
    if o.sack_permitted {
        v.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    }
    if let Some(ts) = o.timestamps {
        v.push(TcpOptionElement::Timestamp(ts.tsval, ts.tsecr));
    }
    let blocks: Vec<(u32, u32)> = o
        .sack_blocks
        .iter()
        .flatten()
        .map(|b| (b.left.0, b.right.0))
        .collect();
    if let Some((&first, rest)) = blocks.split_first() {
        let mut more = [None; 3];
        for (s, b) in more.iter_mut().zip(rest) {
            *s = Some(*b);
        }
        v.push(TcpOptionElement::SelectiveAcknowledgement(first, more));
    }
    v
}

fn builder(
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    let mut v4 =
        etherparse::Ipv4Header::new(0, ip.hop_limit, IpNumber(0), ip.src_addr.0, ip.dst_addr.0)
            .unwrap();
    v4.identification = ip.ident;
    v4.dont_fragment = ip.dont_frag;
    v4.dscp = etherparse::IpDscp::try_new(ip.dscp).unwrap();
    v4.ecn = etherparse::IpEcn::try_new(ip.ecn).unwrap();
    let headers = etherparse::IpHeaders::Ipv4(v4, Default::default());
    let b = PacketBuilder::ethernet2(eth.src_addr.0, eth.dst_addr.0);
    match eth.vlan {
        Some(tag) => b
            .vlan(VlanHeader::Single(SingleVlanHeader {
                pcp: VlanPcp::try_new(tag.pcp).unwrap(),
                drop_eligible_indicator: tag.dei,
                vlan_id: VlanId::try_new(tag.vid).unwrap(),
                ether_type: EtherType::IPV4,
            }))
            .ip(headers),
        None => b.ip(headers),
    }
}

fn expect_ipv4<'a>(
    f: Frame<'a>,
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    proto: u8,
    l4_len: usize,
) -> L4<'a> {
    match f {
        Frame::Ipv4(e, i, l4) => {
            assert_eq!(e.src_addr, eth.src_addr);
            assert_eq!(e.dst_addr, eth.dst_addr);
            assert_eq!(e.vlan, eth.vlan);
            assert_eq!(e.ethertype, 0x0800);
            assert_eq!(
                i,
                Ipv4Repr {
                    protocol: proto,
                    payload_len: l4_len,
                    ..*ip
                }
            );
            l4
        }
        other => panic!("parsed as {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tcp_ours_to_etherparse(eth in eth_strategy(), ip in ip_strategy(),
                              ports in any::<(u16, u16)>(), seq in any::<(u32, u32)>(),
                              flags in any::<u8>(), win in any::<u16>(), urg in any::<u16>(),
                              options in options_strategy(),
                              payload in prop::collection::vec(any::<u8>(), 0..400)) {
        let t = TcpRepr {
            src_port: ports.0, dst_port: ports.1,
            seq_number: SeqNumber(seq.0), ack_number: SeqNumber(seq.1),
            flags: TcpFlags(flags), window: win, urgent_pointer: urg,
            options, payload: &payload,
        };
        let mut buf = vec![0u8; frame::ipv4_tcp_len(&eth, &t)];
        frame::emit_ipv4_tcp(&mut buf, &eth, &ip, &t).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&buf).unwrap();
        let v4 = check_l2_l3(&h, &eth, &ip, 6);
        let th = match &h.transport { Some(TransportHeader::Tcp(th)) => th.clone(), o => panic!("{o:?}") };
        prop_assert_eq!(th.source_port, ports.0);
        prop_assert_eq!(th.destination_port, ports.1);
        prop_assert_eq!(th.sequence_number, seq.0);
        prop_assert_eq!(th.acknowledgment_number, seq.1);
        let f = TcpFlags(flags);
        prop_assert_eq!((th.fin, th.syn, th.rst, th.psh, th.ack, th.urg, th.ece, th.cwr),
                        (f.fin(), f.syn(), f.rst(), f.psh(), f.ack(), f.urg(), f.ece(), f.cwr()));
        prop_assert_eq!(th.window_size, win);
        prop_assert_eq!(th.urgent_pointer, urg);
        prop_assert_eq!(etherparse_options(&th), options);
        prop_assert_eq!(h.payload.slice(), &payload[..]);
        prop_assert_eq!(th.checksum, th.calc_checksum_ipv4(&v4, &payload).unwrap());
    }

    #[test]
    fn tcp_etherparse_to_ours(eth in eth_strategy(), ip in ip_strategy(),
                              ports in any::<(u16, u16)>(), seq in any::<(u32, u32)>(),
                              flags in any::<u8>(), win in any::<u16>(), urg in any::<u16>(),
                              options in options_strategy(),
                              payload in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut th = TcpHeader::new(ports.0, ports.1, seq.0, win);
        th.acknowledgment_number = seq.1;
        let f = TcpFlags(flags);
        th.fin = f.fin(); th.syn = f.syn(); th.rst = f.rst(); th.psh = f.psh();
        th.ack = f.ack(); th.urg = f.urg(); th.ece = f.ece(); th.cwr = f.cwr();
        th.urgent_pointer = urg;
        th.set_options(&to_etherparse_options(&options)).unwrap();
        let b = builder(&eth, &ip).tcp_header(th);
        let mut buf = Vec::new();
        b.write(&mut buf, &payload).unwrap();
        let parsed = frame::parse(&buf).unwrap();
        let l4_len = buf.len() - eth.buffer_len() - 20;
        match expect_ipv4(parsed, &eth, &ip, 6, l4_len) {
            L4::Tcp(t) => {
                prop_assert_eq!(t.src_port, ports.0);
                prop_assert_eq!(t.dst_port, ports.1);
                prop_assert_eq!(t.seq_number, SeqNumber(seq.0));
                prop_assert_eq!(t.ack_number, SeqNumber(seq.1));
                prop_assert_eq!(t.flags, f);
                prop_assert_eq!(t.window, win);
                prop_assert_eq!(t.urgent_pointer, urg);
                prop_assert_eq!(t.options, options);
                prop_assert_eq!(t.payload, &payload[..]);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn udp_both_ways(eth in eth_strategy(), ip in ip_strategy(), ports in any::<(u16, u16)>(),
                     payload in prop::collection::vec(any::<u8>(), 0..600)) {
        let u = UdpRepr { src_port: ports.0, dst_port: ports.1, payload: &payload };
        let mut buf = vec![0u8; frame::ipv4_udp_len(&eth, &u)];
        frame::emit_ipv4_udp(&mut buf, &eth, &ip, &u).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&buf).unwrap();
        let v4 = check_l2_l3(&h, &eth, &ip, 17);
        let uh = match &h.transport { Some(TransportHeader::Udp(uh)) => uh.clone(), o => panic!("{o:?}") };
        prop_assert_eq!((uh.source_port, uh.destination_port), ports);
        prop_assert_eq!(uh.length as usize, 8 + payload.len());
        prop_assert_eq!(uh.checksum, uh.calc_checksum_ipv4(&v4, &payload).unwrap());
        prop_assert_eq!(h.payload.slice(), &payload[..]);

        let mut theirs = Vec::new();
        builder(&eth, &ip).udp(ports.0, ports.1).write(&mut theirs, &payload).unwrap();
        prop_assert_eq!(&theirs, &buf, "byte-identical frames");
        match expect_ipv4(frame::parse(&theirs).unwrap(), &eth, &ip, 17, 8 + payload.len()) {
            L4::Udp(p) => prop_assert_eq!(p, u),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn icmp_echo_both_ways(eth in eth_strategy(), ip in ip_strategy(), req in any::<bool>(),
                           id in any::<u16>(), sq in any::<u16>(),
                           data in prop::collection::vec(any::<u8>(), 0..100)) {
        let r = if req {
            Icmpv4Repr::EchoRequest { ident: id, seq_no: sq, data: &data }
        } else {
            Icmpv4Repr::EchoReply { ident: id, seq_no: sq, data: &data }
        };
        let len = eth.buffer_len() + 20 + r.buffer_len();
        let mut buf = vec![0u8; len];
        frame::emit_ipv4_icmp(&mut buf, &eth, &ip, &r).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&buf).unwrap();
        check_l2_l3(&h, &eth, &ip, 1);
        let ih = match &h.transport { Some(TransportHeader::Icmpv4(ih)) => ih.clone(), o => panic!("{o:?}") };
        let echo = IcmpEchoHeader { id, seq: sq };
        let want = if req { Icmpv4Type::EchoRequest(echo) } else { Icmpv4Type::EchoReply(echo) };
        prop_assert_eq!(&ih.icmp_type, &want);
        prop_assert_eq!(ih.checksum, ih.icmp_type.calc_checksum(&data));

        let b = builder(&eth, &ip);
        let b = if req { b.icmpv4_echo_request(id, sq) } else { b.icmpv4_echo_reply(id, sq) };
        let mut theirs = Vec::new();
        b.write(&mut theirs, &data).unwrap();
        prop_assert_eq!(&theirs, &buf, "byte-identical frames");
        match expect_ipv4(frame::parse(&theirs).unwrap(), &eth, &ip, 1, 8 + data.len()) {
            L4::Icmp(p) => prop_assert_eq!(p, r),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn arp_both_ways(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), req in any::<bool>(),
                     sha in any::<[u8; 6]>(), spa in any::<[u8; 4]>(),
                     tha in any::<[u8; 6]>(), tpa in any::<[u8; 4]>()) {
        let eth = EthernetRepr { src_addr: EthernetAddress(src), dst_addr: EthernetAddress(dst),
                                 ethertype: 0, vlan: None };
        let a = ArpRepr {
            operation: if req { ArpOperation::Request } else { ArpOperation::Reply },
            source_hardware_addr: EthernetAddress(sha), source_protocol_addr: Ipv4Address(spa),
            target_hardware_addr: EthernetAddress(tha), target_protocol_addr: Ipv4Address(tpa),
        };
        let mut buf = vec![0u8; 42];
        prop_assert_eq!(frame::emit_arp(&mut buf, &eth, &a), Ok(42));
        let h = PacketHeaders::from_ethernet_slice(&buf).unwrap();
        let ap = match &h.net { Some(NetHeaders::Arp(ap)) => ap.clone(), o => panic!("{o:?}") };
        prop_assert_eq!(ap.hw_addr_type, ArpHardwareId::ETHERNET);
        prop_assert_eq!(ap.proto_addr_type, EtherType::IPV4);
        prop_assert_eq!(ap.operation.0, if req { 1 } else { 2 });
        prop_assert_eq!(ap.sender_hw_addr(), &sha[..]);
        prop_assert_eq!(ap.sender_protocol_addr(), &spa[..]);
        prop_assert_eq!(ap.target_hw_addr(), &tha[..]);
        prop_assert_eq!(ap.target_protocol_addr(), &tpa[..]);

        let mut theirs = Vec::new();
        PacketBuilder::ethernet2(src, dst).arp(ap).write(&mut theirs).unwrap();
        prop_assert_eq!(&theirs, &buf, "byte-identical frames");
        prop_assert_eq!(frame::parse(&theirs).unwrap(),
                        Frame::Arp(EthernetRepr { ethertype: 0x0806, ..eth }, a));
    }
}
