//! Whole frames: `frame::parse` never panics on any bytes, and frames it
//! accepts as TCP or UDP over IPv4 re-emit to frames that parse the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::checksum::ChecksumOffsets;
use xdpstack::wire::frame::{self, Frame, L4};
use xdpstack::wire::TcpRepr;
fuzz_target!(|data: &[u8]| {
    let _ = ChecksumOffsets::for_ipv4(data, 14);
    let Ok(f) = frame::parse(data) else { return };
    let mut out = vec![0u8; data.len() + 64];
    let n = match f {
        Frame::Ipv4(eth, ip, L4::Tcp(t)) => frame::emit_ipv4_tcp(&mut out, &eth, &ip, &t),
        Frame::Ipv4(eth, ip, L4::Udp(u)) => frame::emit_ipv4_udp(&mut out, &eth, &ip, &u),
        Frame::Arp(eth, a) => frame::emit_arp(&mut out, &eth, &a),
        _ => return,
    };
    // Re-emitted options may take a few bytes more than a compact input
    // layout; a frame already at the 64 KiB limit then no longer fits.
    let Ok(n) = n else { return };
    let g = frame::parse(&out[..n]).expect("emitted frame parses");
    match (f, g) {
        (Frame::Ipv4(e1, i1, L4::Tcp(t1)), Frame::Ipv4(e2, i2, L4::Tcp(t2))) => {
            assert_eq!(e1, e2);
            assert_eq!(
                (i1.src_addr, i1.dst_addr, i1.hop_limit),
                (i2.src_addr, i2.dst_addr, i2.hop_limit)
            );
            assert_eq!(
                TcpRepr {
                    options: t1.options.fitted(),
                    ..t1
                },
                t2
            );
        }
        (Frame::Ipv4(e1, _, L4::Udp(u1)), Frame::Ipv4(e2, _, L4::Udp(u2))) => {
            assert_eq!(e1, e2);
            assert_eq!(u1, u2);
        }
        (a @ Frame::Arp(..), b) => assert_eq!(a, b),
        (a, b) => panic!("{a:?} re-parsed as {b:?}"),
    }
});
