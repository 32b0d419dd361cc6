//! ICMPv4: `new_checked` / `parse` never panic; accepted messages re-emit
//! to a message that parses to the same `Icmpv4Repr`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::icmpv4::{Icmpv4Repr, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = (p.data(), p.verify_checksum());
    let Ok(repr) = Icmpv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
    let q = Packet::new_checked(&out[..]).expect("emitted message checks");
    assert_eq!(Icmpv4Repr::parse(&q), Ok(repr));
});
