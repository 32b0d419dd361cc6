//! The committed fuzz seeds (fuzz/seeds/<target>) are valid inputs of their
//! parser, so fuzzing starts from packets that reach the deep paths.

use std::fs;
use std::path::Path;

use xdpstack::wire::{frame, icmpv4, ipv4, tcp, udp};
use xdpstack::wire::{Icmpv4Repr, Ipv4Address, Ipv4Repr, TcpRepr, UdpRepr};

const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

#[test]
fn seeds_parse() {
    for (name, b) in seeds("frame") {
        frame::parse(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, b) in seeds("tcp") {
        let p = tcp::Packet::new_checked(&b[..]).unwrap();
        TcpRepr::parse(&p, SRC, DST).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, b) in seeds("udp") {
        let p = udp::Packet::new_checked(&b[..]).unwrap();
        UdpRepr::parse(&p, SRC, DST).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, b) in seeds("icmpv4") {
        let p = icmpv4::Packet::new_checked(&b[..]).unwrap();
        Icmpv4Repr::parse(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, b) in seeds("ipv4") {
        let p = ipv4::Packet::new_checked(&b[..]).unwrap();
        Ipv4Repr::parse(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
