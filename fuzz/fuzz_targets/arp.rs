//! ARP: `new_checked` / `parse` never panic; accepted packets re-emit to
//! the same 28 bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::arp::{ArpRepr, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = ArpRepr::parse(&p) else { return };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
    assert_eq!(&out[..], &data[..out.len()]);
});
