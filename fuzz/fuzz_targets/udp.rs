//! UDP: `new_checked` / `parse` never panic; accepted datagrams re-emit to
//! a datagram that parses, checksum verified, to the same `UdpRepr`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use xdpstack::wire::udp::{Packet, UdpRepr};
use xdpstack::wire::Ipv4Address;

const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    let _ = UdpRepr::parse(&p, SRC, DST);
    let Ok(repr) = UdpRepr::parse_unverified(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]), SRC, DST);
    let q = Packet::new_checked(&out[..]).expect("emitted datagram checks");
    assert_eq!(UdpRepr::parse(&q, SRC, DST), Ok(repr));
});
