//! Every malformed input the wire contract names is rejected with the
//! right error: truncated headers, IPv4 total length beyond the buffer or
//! below the header, IHL < 5, UDP length below 8 or beyond the IP payload,
//! TCP data offset < 5 or beyond the segment, TCP option length 0 or 1 or
//! running past the header, and bad checksums.

use xdpstack::wire::arp::{self, ArpOperation, ArpRepr};
use xdpstack::wire::ethernet::{self, EthernetAddress, EthernetRepr};
use xdpstack::wire::icmpv4::{self, Icmpv4Repr};
use xdpstack::wire::ipv4::{self, Ipv4Address, Ipv4Repr};
use xdpstack::wire::tcp::{self, TcpFlags, TcpOptions, TcpRepr};
use xdpstack::wire::udp::{self, UdpRepr};
use xdpstack::wire::{frame, SeqNumber, WireError};

const SRC: Ipv4Address = Ipv4Address::new(192, 168, 7, 1);
const DST: Ipv4Address = Ipv4Address::new(192, 168, 7, 2);

fn eth() -> EthernetRepr {
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: 0,
        vlan: None,
    }
}

fn tcp_segment(options: TcpOptions, payload: &[u8]) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: 4000,
        dst_port: 80,
        seq_number: SeqNumber(1000),
        ack_number: SeqNumber(2000),
        flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
        window: 512,
        urgent_pointer: 0,
        options,
        payload,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
    buf
}

/// A segment whose option area is exactly `opts` (padded by the caller to
/// a multiple of 4), with a valid checksum.
fn tcp_with_raw_options(opts: &[u8]) -> Vec<u8> {
    assert_eq!(opts.len() % 4, 0);
    let mut buf = vec![0u8; 20 + opts.len() + 3];
    let mut p = tcp::Packet::new_unchecked(&mut buf[..]);
    p.set_src_port(1);
    p.set_dst_port(2);
    p.set_header_len((20 + opts.len()) as u8);
    p.options_mut().copy_from_slice(opts);
    p.payload_mut().copy_from_slice(b"abc");
    p.fill_checksum(SRC, DST);
    buf
}

fn parse_tcp(b: &[u8]) -> Result<TcpRepr<'_>, WireError> {
    let p = tcp::Packet::new_checked(b)?;
    TcpRepr::parse(&p, SRC, DST)
}

fn ipv4_packet(payload_len: usize) -> Vec<u8> {
    let repr = Ipv4Repr::new(SRC, DST, 17, payload_len);
    let mut buf = vec![0u8; 20 + payload_len];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
    buf
}

#[test]
fn truncated_headers() {
    for n in 0..14 {
        assert_eq!(
            ethernet::Packet::new_checked(&[0u8; 14][..n]).err(),
            Some(WireError::Truncated)
        );
    }
    // A tagged frame needs 18 bytes.
    let mut tagged = [0u8; 18];
    tagged[12] = 0x81;
    assert_eq!(
        ethernet::Packet::new_checked(&tagged[..17]).err(),
        Some(WireError::Truncated)
    );
    assert!(ethernet::Packet::new_checked(&tagged[..]).is_ok());
    for n in 0..28 {
        assert_eq!(
            arp::Packet::new_checked(&[0u8; 28][..n]).err(),
            Some(WireError::Truncated)
        );
    }
    let ip = ipv4_packet(0);
    for n in 0..20 {
        assert_eq!(
            ipv4::Packet::new_checked(&ip[..n]).err(),
            Some(WireError::Truncated)
        );
    }
    for n in 0..8 {
        assert_eq!(
            icmpv4::Packet::new_checked(&[0u8; 8][..n]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            udp::Packet::new_checked(&[0u8; 8][..n]).err(),
            Some(WireError::Truncated)
        );
    }
    let seg = tcp_segment(TcpOptions::default(), b"");
    for n in 0..20 {
        assert_eq!(
            tcp::Packet::new_checked(&seg[..n]).err(),
            Some(WireError::Truncated)
        );
    }
}

#[test]
fn ipv4_total_length_beyond_buffer() {
    let ip = ipv4_packet(10);
    assert!(ipv4::Packet::new_checked(&ip[..]).is_ok());
    assert_eq!(
        ipv4::Packet::new_checked(&ip[..29]).err(),
        Some(WireError::Truncated)
    );
}

#[test]
fn ipv4_total_length_below_header() {
    let mut ip = ipv4_packet(10);
    let mut p = ipv4::Packet::new_unchecked(&mut ip[..]);
    p.set_total_len(19);
    p.fill_checksum();
    assert_eq!(
        ipv4::Packet::new_checked(&ip[..]).err(),
        Some(WireError::BadLength)
    );
    // With options, the header is 24 bytes; a total length of 22 is below it.
    let mut ip = ipv4_packet(10);
    let mut p = ipv4::Packet::new_unchecked(&mut ip[..]);
    p.set_header_len(24);
    p.set_total_len(22);
    assert_eq!(
        ipv4::Packet::new_checked(&ip[..]).err(),
        Some(WireError::BadLength)
    );
}

#[test]
fn ipv4_ihl_below_five() {
    for ihl in 0..5u8 {
        let mut ip = ipv4_packet(10);
        ip[0] = 0x40 | ihl;
        assert_eq!(
            ipv4::Packet::new_checked(&ip[..]).err(),
            Some(WireError::BadHeaderLen),
            "ihl {ihl}"
        );
    }
}

#[test]
fn ipv4_options_are_skipped_and_padding_cut() {
    // IHL 6 with a 4-byte option (NOP NOP NOP EOL), 5 bytes of payload,
    // then 7 bytes of Ethernet padding.
    let mut buf = [0u8; 24 + 5 + 7];
    {
        let mut p = ipv4::Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_total_len(29);
        p.set_hop_limit(9);
        p.set_protocol(17);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.set_frag(false, true, 64);
    }
    buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
    buf[24..29].copy_from_slice(b"hello");
    buf[29..].fill(0xee);
    ipv4::Packet::new_unchecked(&mut buf[..]).fill_checksum();
    let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.payload(), b"hello");
    let r = Ipv4Repr::parse(&p).unwrap();
    assert_eq!(r.payload_len, 5);
    assert_eq!(r.hop_limit, 9);
    assert!(r.is_fragment());
    assert!(p.is_fragment());
    assert_eq!(r.frag_offset, 64);
}

#[test]
fn ipv4_bad_checksum_and_version() {
    let mut ip = ipv4_packet(4);
    ip[8] ^= 1; // TTL changed, checksum not updated
    let p = ipv4::Packet::new_checked(&ip[..]).unwrap();
    assert_eq!(Ipv4Repr::parse(&p).err(), Some(WireError::BadChecksum));
    assert!(Ipv4Repr::parse_unverified(&p).is_ok());
    let mut ip = ipv4_packet(4);
    ip[0] = 0x65;
    let p = ipv4::Packet::new_checked(&ip[..]).unwrap();
    assert_eq!(Ipv4Repr::parse(&p).err(), Some(WireError::Unsupported));
}

#[test]
fn udp_length_below_eight_or_beyond_payload() {
    let payload = [7u8; 12];
    let repr = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: &payload,
    };
    let mut buf = vec![0u8; 20];
    repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
    assert!(udp::Packet::new_checked(&buf[..]).is_ok());
    for bad in [0u16, 1, 7, 21, 0xffff] {
        let mut b = buf.clone();
        udp::Packet::new_unchecked(&mut b[..]).set_len(bad);
        assert_eq!(
            udp::Packet::new_checked(&b[..]).err(),
            Some(WireError::BadLength),
            "len {bad}"
        );
    }
    // Length shorter than the IP payload is allowed: the datagram ends there.
    let mut b = buf.clone();
    let mut p = udp::Packet::new_unchecked(&mut b[..]);
    p.set_len(10);
    p.fill_checksum(SRC, DST);
    let p = udp::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(UdpRepr::parse(&p, SRC, DST).unwrap().payload, &[7, 7]);
}

#[test]
fn udp_checksum_zero_means_none_and_bad_is_rejected() {
    let repr = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: b"data",
    };
    let mut buf = vec![0u8; 12];
    repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
    let mut bad = buf.clone();
    bad[11] ^= 0x40;
    let p = udp::Packet::new_checked(&bad[..]).unwrap();
    assert_eq!(
        UdpRepr::parse(&p, SRC, DST).err(),
        Some(WireError::BadChecksum)
    );
    udp::Packet::new_unchecked(&mut bad[..]).set_checksum(0);
    let p = udp::Packet::new_checked(&bad[..]).unwrap();
    assert!(UdpRepr::parse(&p, SRC, DST).is_ok());
}

#[test]
fn udp_computed_zero_is_sent_as_ffff() {
    // Choose the payload's last word so the checksum computes to zero: the
    // sum over everything else plus that word must be 0xffff.
    let mut payload = [0x12u8, 0x34, 0, 0];
    let probe = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: &payload,
    };
    let mut buf = vec![0u8; 12];
    probe.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
    buf[6] = 0;
    buf[7] = 0;
    use xdpstack::wire::checksum;
    let rest = checksum::add(
        checksum::pseudo_header_v4(SRC, DST, 17, 12),
        checksum::sum_scalar(&buf),
    );
    payload[2..].copy_from_slice(&(!rest).to_be_bytes());
    let repr = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: &payload,
    };
    repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
    let p = udp::Packet::new_checked(&buf[..]).unwrap();
    assert_eq!(p.checksum(), 0xffff);
    assert!(UdpRepr::parse(&p, SRC, DST).is_ok());
}

#[test]
fn tcp_data_offset_below_five_or_beyond_segment() {
    let seg = tcp_segment(TcpOptions::default(), b"xy");
    for off in 0..5u8 {
        let mut b = seg.clone();
        b[12] = off << 4;
        assert_eq!(
            tcp::Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen),
            "offset {off}"
        );
    }
    // 22-byte segment: data offset 6 (24 bytes) is beyond it.
    let mut b = seg.clone();
    b[12] = 6 << 4;
    assert_eq!(
        tcp::Packet::new_checked(&b[..]).err(),
        Some(WireError::BadHeaderLen)
    );
}

#[test]
fn tcp_option_length_zero_or_one() {
    for len in [0u8, 1] {
        let b = tcp_with_raw_options(&[2, len, 0, 0]);
        assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption), "len {len}");
        // Unknown kinds too.
        let b = tcp_with_raw_options(&[99, len, 0, 0]);
        assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption), "len {len}");
    }
}

#[test]
fn tcp_option_running_past_header() {
    // Timestamps claiming 10 bytes in an 8-byte option area.
    let b = tcp_with_raw_options(&[1, 1, 8, 10, 0, 0, 0, 0]);
    assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption));
    // A kind byte with no length byte at the end of the area.
    let b = tcp_with_raw_options(&[1, 1, 1, 2]);
    assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption));
    // Unknown kind running past the header.
    let b = tcp_with_raw_options(&[77, 9, 0, 0]);
    assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption));
}

#[test]
fn tcp_option_known_kind_wrong_length() {
    for opts in [
        [2u8, 3, 0, 0], // MSS of 3 bytes
        [3, 4, 7, 0],   // window scale of 4 bytes
        [4, 3, 0, 0],   // SACK-permitted of 3 bytes
        [5, 2, 0, 0],   // SACK with no block
        [8, 4, 0, 0],   // timestamps of 4 bytes
    ] {
        let b = tcp_with_raw_options(&opts);
        assert_eq!(parse_tcp(&b).err(), Some(WireError::BadOption), "{opts:?}");
    }
}

#[test]
fn tcp_options_unknown_skipped_eol_ends_ws_clamped() {
    // Unknown kind 30 with 6 bytes, then WS 15 (clamped), then EOL and
    // garbage after it that must be ignored.
    let b = tcp_with_raw_options(&[30, 6, 9, 9, 9, 9, 3, 3, 15, 0, 0xff, 0xff]);
    let r = parse_tcp(&b).unwrap();
    assert_eq!(r.options.window_scale, Some(14));
    assert_eq!(r.options.mss, None);
    assert_eq!(r.payload, b"abc");
    // SACK with 4 blocks and a 2-byte leading NOP pad.
    let mut opts = vec![1, 1, 5, 34];
    for i in 0..8u32 {
        opts.extend_from_slice(&(i * 100).to_be_bytes());
    }
    let b = tcp_with_raw_options(&opts);
    let r = parse_tcp(&b).unwrap();
    assert_eq!(r.options.sack_count(), 4);
    assert_eq!(r.options.sack_blocks[3].unwrap().right, SeqNumber(700));
}

#[test]
fn tcp_bad_checksum() {
    let mut seg = tcp_segment(TcpOptions::default(), b"payload");
    assert!(parse_tcp(&seg).is_ok());
    let last = seg.len() - 1;
    seg[last] ^= 0x10;
    assert_eq!(parse_tcp(&seg).err(), Some(WireError::BadChecksum));
    let p = tcp::Packet::new_checked(&seg[..]).unwrap();
    assert!(TcpRepr::parse_unverified(&p).is_ok());
}

#[test]
fn tcp_emit_fits_options_into_forty_bytes() {
    let opts = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        sack_blocks: [Some(xdpstack::wire::SackBlock {
            left: SeqNumber(1),
            right: SeqNumber(2),
        }); 4],
        timestamps: Some(xdpstack::wire::Timestamps { tsval: 1, tsecr: 2 }),
    };
    let seg = tcp_segment(opts, b"");
    assert!(seg.len() <= tcp::MAX_HEADER_LEN);
    let r = parse_tcp(&seg).unwrap();
    assert_eq!(r.options.mss, Some(1460));
    assert_eq!(r.options.sack_count(), 2);
    assert_eq!(r.options, opts.fitted());
}

#[test]
fn icmp_bad_checksum_unsupported_and_bad_quote() {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 2,
        data: b"ping",
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]));
    let mut bad = buf.clone();
    bad[9] ^= 1;
    let p = icmpv4::Packet::new_checked(&bad[..]).unwrap();
    assert_eq!(Icmpv4Repr::parse(&p).err(), Some(WireError::BadChecksum));
    // Timestamp request (type 13) is not handled.
    let mut other = buf.clone();
    let mut p = icmpv4::Packet::new_unchecked(&mut other[..]);
    p.set_msg_type(13);
    p.fill_checksum();
    let p = icmpv4::Packet::new_checked(&other[..]).unwrap();
    assert_eq!(Icmpv4Repr::parse(&p).err(), Some(WireError::Unsupported));
    // Unreachable quoting 10 bytes (shorter than an IPv4 header).
    let mut unr = [0u8; 18];
    let mut p = icmpv4::Packet::new_unchecked(&mut unr[..]);
    p.set_msg_type(3);
    p.set_msg_code(3);
    p.data_mut().fill(0x45);
    p.fill_checksum();
    let p = icmpv4::Packet::new_checked(&unr[..]).unwrap();
    assert_eq!(Icmpv4Repr::parse(&p).err(), Some(WireError::Truncated));
}

#[test]
fn icmp_unreachable_quotes_header_and_eight_bytes() {
    let seg = tcp_segment(TcpOptions::default(), b"0123456789");
    let mut orig = vec![0u8; 20 + seg.len()];
    Ipv4Repr::new(SRC, DST, 6, seg.len()).emit(&mut ipv4::Packet::new_unchecked(&mut orig[..]));
    orig[20..].copy_from_slice(&seg);
    let repr = Icmpv4Repr::dst_unreachable(3, &orig).unwrap();
    assert_eq!(repr.buffer_len(), 8 + 20 + 8);
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]));
    assert_eq!(&buf[8..36], &orig[..28]);
    let p = icmpv4::Packet::new_checked(&buf[..]).unwrap();
    match Icmpv4Repr::parse(&p).unwrap() {
        Icmpv4Repr::DstUnreachable {
            code, header, data, ..
        } => {
            assert_eq!(code, 3);
            assert_eq!(header.src_addr, SRC);
            assert_eq!(header.payload_len, seg.len());
            assert_eq!(data, &seg[..8]);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn arp_other_types_unsupported() {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress([1; 6]),
        source_protocol_addr: SRC,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: DST,
    };
    let mut buf = vec![0u8; 28];
    repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
    for (i, v) in [(1usize, 6u8), (3, 0xdd), (4, 8), (5, 16), (7, 3)] {
        let mut b = buf.clone();
        b[i] = v;
        let p = arp::Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            ArpRepr::parse(&p).err(),
            Some(WireError::Unsupported),
            "byte {i}"
        );
    }
}

#[test]
fn frame_level_rejections() {
    let repr = UdpRepr {
        src_port: 1,
        dst_port: 2,
        payload: b"0123456789",
    };
    let ip = Ipv4Repr::new(SRC, DST, 0, 0);
    let mut buf = vec![0u8; 60];
    let n = frame::emit_ipv4_udp(&mut buf, &eth(), &ip, &repr).unwrap();
    assert!(frame::parse(&buf[..n]).is_ok());
    // Cut inside the UDP payload: IPv4 total length is beyond the buffer.
    assert_eq!(
        frame::parse(&buf[..n - 1]).err(),
        Some(WireError::Truncated)
    );
    // UDP length beyond the IP payload.
    let mut b = buf.clone();
    udp::Packet::new_unchecked(&mut b[34..]).set_len(19);
    assert_eq!(frame::parse(&b[..n]).err(), Some(WireError::BadLength));
    // IPv6 EtherType.
    let mut b = buf.clone();
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(frame::parse(&b[..n]).err(), Some(WireError::Unsupported));
    // A fragment comes back raw, not parsed as UDP.
    let mut b = buf.clone();
    let mut p = ipv4::Packet::new_unchecked(&mut b[14..]);
    p.set_frag(false, true, 0);
    p.fill_checksum();
    match frame::parse(&b[..n]).unwrap() {
        frame::Frame::Ipv4(_, i, frame::L4::Other(raw)) => {
            assert!(i.is_fragment());
            assert_eq!(raw.len(), 18);
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn errors_display() {
    let all = [
        WireError::Truncated,
        WireError::BadLength,
        WireError::BadHeaderLen,
        WireError::BadChecksum,
        WireError::BadOption,
        WireError::Unsupported,
    ];
    let mut seen = std::collections::HashSet::new();
    for e in all {
        let s = e.to_string();
        assert!(!s.is_empty());
        assert!(seen.insert(s), "messages are distinct");
        let _: &dyn std::error::Error = &e;
    }
}

#[test]
fn tcp_timestamps_fast_path_matches_general_parser() {
    let ts: [u8; 8] = [0, 0, 1, 2, 0xff, 0, 0, 9];
    let mut aligned = vec![1, 1, 8, 10];
    aligned.extend_from_slice(&ts);
    // Same option, trailing NOPs: not the fast-path layout.
    let mut trailing = vec![8, 10];
    trailing.extend_from_slice(&ts);
    trailing.extend_from_slice(&[1, 1]);
    let a = TcpOptions::parse(&aligned).unwrap();
    assert_eq!(a, TcpOptions::parse(&trailing).unwrap());
    assert_eq!(a.timestamps.unwrap().tsval, 0x0102);
    assert_eq!(a.timestamps.unwrap().tsecr, 0xff00_0009);
    // A truncated aligned layout is still rejected.
    assert_eq!(TcpOptions::parse(&aligned[..11]), Err(WireError::BadOption));
}
