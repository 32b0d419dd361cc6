//! Ethernet: `new_checked` / `parse` never panic; accepted headers
//! re-emit to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::ethernet::{EthernetRepr, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = p.payload();
    let Ok(repr) = EthernetRepr::parse(&p) else {
        return;
    };
    let len = repr.buffer_len();
    assert_eq!(len, p.header_len());
    let mut out = vec![0u8; len];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]));
    assert_eq!(&out[..], &data[..len]);
});
