//! IPv4: `new_checked` / `parse` never panic; accepted headers re-emit
//! (without options) to a header that parses to the same `Ipv4Repr`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::ipv4::{Ipv4Repr, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (p.payload(), p.is_fragment(), p.verify_checksum());
    let Ok(repr) = Ipv4Repr::parse_unverified(&p) else {
        return;
    };
    let _ = Ipv4Repr::parse(&p);
    let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
    let q = Packet::new_checked(&out[..]).expect("emitted header checks");
    assert_eq!(Ipv4Repr::parse(&q), Ok(repr));
});
