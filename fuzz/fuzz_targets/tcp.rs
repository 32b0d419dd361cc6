//! TCP: `new_checked` / `parse` (header and options) never panic; accepted
//! segments re-emit to a segment that parses, checksum verified, to the
//! same `TcpRepr` (options as fitted into 40 bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::tcp::{Packet, TcpOptions, TcpRepr};
use xdpstack::wire::Ipv4Address;

const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    let _ = TcpOptions::parse(data);
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.payload(),
        p.options(),
        p.flags(),
        p.verify_checksum(SRC, DST),
    );
    let _ = TcpRepr::parse(&p, SRC, DST);
    let Ok(repr) = TcpRepr::parse_unverified(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]), SRC, DST);
    let q = Packet::new_checked(&out[..]).expect("emitted segment checks");
    let want = TcpRepr {
        options: repr.options.fitted(),
        ..repr
    };
    assert_eq!(TcpRepr::parse(&q, SRC, DST), Ok(want));
});
