//! Checksums against references: the fast path against the RFC 1071 scalar
//! sum and the `internet-checksum` crate at random lengths and start
//! offsets, RFC 1624 updates against recomputation, and the batch
//! finaliser against frames emitted one by one. The exhaustive sweep over
//! every length 0..=4096 lives in the unit tests of `wire::checksum`.

use proptest::prelude::*;
use xdpstack::wire::checksum::{self, ChecksumJob, ChecksumOffsets};
use xdpstack::wire::frame;
use xdpstack::wire::{
    EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Address, Ipv4Repr, SeqNumber, TcpFlags,
    TcpOptions, TcpRepr, Timestamps, UdpRepr,
};

fn eth() -> EthernetRepr {
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ethertype: 0,
        vlan: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fast_equals_scalar_and_internet_checksum(data in prop::collection::vec(any::<u8>(), 0..10_000),
                                                start in 0usize..64) {
        let d = &data[start.min(data.len())..];
        let want = checksum::sum_scalar(d);
        prop_assert_eq!(checksum::sum(d), want);
        prop_assert_eq!(checksum::sum_portable(d), want);
        prop_assert_eq!(checksum::checksum(d).to_be_bytes(), internet_checksum::checksum(d));
    }

    #[test]
    fn split_sums_combine(data in prop::collection::vec(any::<u8>(), 0..3000), cut in any::<usize>()) {
        // Summing two even-length-aligned parts and adding them equals the whole.
        let cut = (cut % (data.len() + 1)) & !1;
        let (a, b) = data.split_at(cut);
        prop_assert_eq!(checksum::add(checksum::sum(a), checksum::sum(b)), checksum::sum_scalar(&data));
    }

    #[test]
    fn rfc1624_update_equals_recompute(data in prop::collection::vec(any::<u8>(), 8..200),
                                       at in any::<usize>(), new16 in any::<u16>(), new32 in any::<u32>()) {
        let mut d = data.clone();
        if d.len() % 2 == 1 { d.pop(); }
        let at = (at % (d.len() / 2)) * 2;
        let c = checksum::checksum(&d);
        let old16 = u16::from_be_bytes([d[at], d[at + 1]]);
        let mut e = d.clone();
        e[at..at + 2].copy_from_slice(&new16.to_be_bytes());
        // The updated field verifies (0x0000 and 0xffff are the same
        // one's-complement number, so compare by verification).
        let upd = checksum::update16(c, old16, new16);
        prop_assert_eq!(checksum::add(upd, checksum::sum(&e)), 0xffff);
        if at + 4 <= d.len() {
            let old32 = u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
            let mut e = d.clone();
            e[at..at + 4].copy_from_slice(&new32.to_be_bytes());
            let upd = checksum::update32(c, old32, new32);
            prop_assert_eq!(checksum::add(upd, checksum::sum(&e)), 0xffff);
        }
    }

    #[test]
    fn batch_equals_per_frame_emit(sizes in prop::collection::vec((0usize..1500, 0u8..3), 1..40)) {
        let src = Ipv4Address::new(10, 1, 0, 1);
        let dst = Ipv4Address::new(10, 1, 0, 2);
        let ip = Ipv4Repr::new(src, dst, 0, 0);
        let mut want = Vec::new();
        for (i, &(n, kind)) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            let mut buf = vec![0u8; 1600];
            let len = match kind {
                0 => {
                    let t = TcpRepr {
                        src_port: 1000 + i as u16, dst_port: 80,
                        seq_number: SeqNumber(i as u32 * 1000), ack_number: SeqNumber(7),
                        flags: TcpFlags(TcpFlags::ACK), window: 100, urgent_pointer: 0,
                        options: TcpOptions { timestamps: Some(Timestamps { tsval: 1, tsecr: 2 }),
                                              ..TcpOptions::default() },
                        payload: &payload,
                    };
                    frame::emit_ipv4_tcp(&mut buf, &eth(), &ip, &t).unwrap()
                }
                1 => {
                    let u = UdpRepr { src_port: 9, dst_port: i as u16, payload: &payload };
                    frame::emit_ipv4_udp(&mut buf, &eth(), &ip, &u).unwrap()
                }
                _ => {
                    let m = Icmpv4Repr::EchoReply { ident: 3, seq_no: i as u16, data: &payload };
                    frame::emit_ipv4_icmp(&mut buf, &eth(), &ip, &m).unwrap()
                }
            };
            buf.truncate(len);
            want.push(buf);
        }
        // Scramble every checksum field, then finalise the whole batch.
        let mut got: Vec<Vec<u8>> = want.clone();
        let offsets: Vec<ChecksumOffsets> =
            got.iter().map(|f| ChecksumOffsets::for_ipv4(f, 14).unwrap()).collect();
        for (f, o) in got.iter_mut().zip(&offsets) {
            f[24] ^= 0x5a;
            f[o.l4_field] ^= 0xa5;
        }
        let mut jobs: Vec<ChecksumJob> = got
            .iter_mut()
            .zip(&offsets)
            .map(|(f, o)| ChecksumJob { frame: &mut f[..], offsets: *o })
            .collect();
        prop_assert_eq!(checksum::finalize_batch(&mut jobs), 0);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn pseudo_header_matches_manual_sum() {
    let src = Ipv4Address::new(192, 0, 2, 1);
    let dst = Ipv4Address::new(198, 51, 100, 7);
    let bytes = [192, 0, 2, 1, 198, 51, 100, 7, 0, 6, 0x05, 0xdc];
    assert_eq!(
        checksum::pseudo_header_v4(src, dst, 6, 1500),
        checksum::sum_scalar(&bytes)
    );
}

#[test]
fn batch_rejects_offsets_outside_the_frame() {
    let mut f = vec![0u8; 60];
    let before = f.clone();
    let bad = [
        ChecksumOffsets {
            ipv4: None,
            l4_start: 10,
            l4_end: 61,
            l4_field: 12,
            pseudo: 0,
            zero_is_ffff: false,
        },
        ChecksumOffsets {
            ipv4: None,
            l4_start: 20,
            l4_end: 30,
            l4_field: 29,
            pseudo: 0,
            zero_is_ffff: false,
        },
        ChecksumOffsets {
            ipv4: Some(50),
            l4_start: 0,
            l4_end: 10,
            l4_field: 2,
            pseudo: 0,
            zero_is_ffff: false,
        },
    ];
    for o in bad {
        let mut jobs = [ChecksumJob {
            frame: &mut f[..],
            offsets: o,
        }];
        assert_eq!(checksum::finalize_batch(&mut jobs), 1, "{o:?}");
    }
    assert_eq!(f, before, "rejected jobs are left untouched");
}

#[test]
fn offsets_for_non_ipv4_or_unknown_protocol_fail() {
    assert!(ChecksumOffsets::for_ipv4(&[0u8; 10], 0).is_err());
    let mut ip = vec![0u8; 40];
    Ipv4Repr::new(
        Ipv4Address::new(1, 1, 1, 1),
        Ipv4Address::new(2, 2, 2, 2),
        47,
        20,
    )
    .emit(&mut xdpstack::wire::ipv4::Packet::new_unchecked(
        &mut ip[..],
    ));
    assert_eq!(
        ChecksumOffsets::for_ipv4(&ip, 0),
        Err(xdpstack::wire::WireError::Unsupported)
    );
}
