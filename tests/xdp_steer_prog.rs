//! The steering program's parser and map contract, frame by frame, with
//! `BPF_PROG_TEST_RUN`: every verdict and every counter is checked. An
//! AF_XDP socket on a veth queue fills `xsks_map[0]` (a redirect needs a
//! live socket); no traffic flows. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;

use etherparse::PacketBuilder;
use xdpstack::xdp::loader::{Program, Verdict};
use xdpstack::xdp::maps::{Counter, SteerCounters};
use xdpstack::xdp::{Proto, XdpLink, XsConfig, XskConfig};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/veth.sh");

struct Topo(String);

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "destroy", &self.0])
            .status();
    }
}

fn topo() -> Topo {
    let name = format!("xdp{}s", std::process::id() % 1_000_000);
    let out = Command::new("bash")
        .args([SCRIPT, "create", &name])
        .output()
        .expect("run scripts/veth.sh");
    let t = Topo(name);
    assert!(
        out.status.success(),
        "creating the veth topology failed (needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t
}

const US: [u8; 4] = [10, 0, 0, 1];
const PEER: [u8; 4] = [10, 0, 0, 2];

fn udp(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(PEER, dst, 64)
        .udp(40000, dport)
        .write(&mut v, b"payload")
        .unwrap();
    v
}

fn tcp(dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(PEER, US, 64)
        .tcp(40000, dport, 1, 1000)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn icmp(dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(PEER, dst, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut v, b"ping")
        .unwrap();
    v
}

fn arp(target: [u8; 4]) -> Vec<u8> {
    let mut v = vec![0xff; 6];
    v.extend_from_slice(&[4; 6]);
    v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&[4; 6]);
    v.extend_from_slice(&PEER);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&target);
    v
}

fn vlan(mut f: Vec<u8>) -> Vec<u8> {
    let tag = [0x81, 0x00, 0x00, 0x07];
    f.splice(12..12, tag);
    f
}

fn with_ip_options(mut f: Vec<u8>) -> Vec<u8> {
    f.splice(34..34, [1, 1, 1, 0]); // NOP NOP NOP EOL
    f[14] = 0x46;
    let tl = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&tl.to_be_bytes());
    f
}

fn frag(mut f: Vec<u8>, flags_offset: u16) -> Vec<u8> {
    f[20..22].copy_from_slice(&flags_offset.to_be_bytes());
    f
}

fn ipv6_udp() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([1; 16], [2; 16], 64)
        .udp(40000, 5000)
        .write(&mut v, b"x")
        .unwrap();
    v
}

#[derive(Default)]
struct Expect {
    steered: u64,
    passed: u64,
    malformed: u64,
    no_xsk: u64,
}

fn run(p: &Program, e: &mut Expect, name: &str, frame: &[u8], want: Verdict, counter: Counter) {
    let got = p
        .test_run(frame)
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    assert_eq!(got, want, "{name}");
    match counter {
        Counter::Steered => e.steered += 1,
        Counter::Passed => e.passed += 1,
        Counter::Malformed => e.malformed += 1,
        Counter::NoXsk => e.no_xsk += 1,
    }
    let c = p.maps().counters().unwrap();
    let want_c = SteerCounters {
        steered: e.steered,
        passed: e.passed,
        malformed: e.malformed,
        no_xsk: e.no_xsk,
    };
    assert_eq!(c, want_c, "counters after {name}");
}

#[test]
fn steering_program_verdicts_and_counters() {
    let t = topo();
    let p = Program::load().expect("load");
    let maps = p.maps().clone();
    let _xsk = XdpLink::open(&XskConfig::new(&format!("{}h", t.0), 0), Some(&maps)).expect("xsk");
    maps.add_port(Proto::Udp, 5000).unwrap();
    maps.add_port(Proto::Tcp, 6000).unwrap();
    let mut e = Expect::default();
    use Counter::*;
    use Verdict::*;

    // Shared mode: only owned (protocol, port) pairs.
    run(&p, &mut e, "udp owned", &udp(US, 5000), Redirect, Steered);
    run(&p, &mut e, "udp other port", &udp(US, 5001), Pass, Passed);
    run(&p, &mut e, "tcp owned", &tcp(6000), Redirect, Steered);
    run(&p, &mut e, "tcp on a udp port", &tcp(5000), Pass, Passed);
    run(
        &p,
        &mut e,
        "udp on a tcp port",
        &udp(US, 6000),
        Pass,
        Passed,
    );
    run(
        &p,
        &mut e,
        "any address, owned port",
        &udp(PEER, 5000),
        Redirect,
        Steered,
    );
    run(
        &p,
        &mut e,
        "vlan udp owned",
        &vlan(udp(US, 5000)),
        Redirect,
        Steered,
    );
    run(
        &p,
        &mut e,
        "vlan udp other",
        &vlan(udp(US, 5001)),
        Pass,
        Passed,
    );
    run(
        &p,
        &mut e,
        "ip options",
        &with_ip_options(udp(US, 5000)),
        Redirect,
        Steered,
    );
    run(
        &p,
        &mut e,
        "first fragment",
        &frag(udp(US, 5000), 0x2000),
        Redirect,
        Steered,
    );
    run(
        &p,
        &mut e,
        "later fragment",
        &frag(udp(US, 5000), 0x0001),
        Pass,
        Passed,
    );
    run(&p, &mut e, "icmp", &icmp(US), Pass, Passed);
    run(&p, &mut e, "arp", &arp(US), Pass, Passed);
    run(&p, &mut e, "ipv6", &ipv6_udp(), Pass, Passed);
    // (The kernel refuses test runs shorter than an Ethernet header.)
    run(
        &p,
        &mut e,
        "ethernet only",
        &udp(US, 5000)[..14],
        Pass,
        Malformed,
    );
    run(
        &p,
        &mut e,
        "ip truncated",
        &udp(US, 5000)[..30],
        Pass,
        Malformed,
    );
    run(
        &p,
        &mut e,
        "ports truncated",
        &udp(US, 5000)[..36],
        Pass,
        Malformed,
    );
    let mut bad_ihl = udp(US, 5000);
    bad_ihl[14] = 0x44;
    run(&p, &mut e, "ihl < 5", &bad_ihl, Pass, Malformed);
    run(
        &p,
        &mut e,
        "vlan truncated",
        &vlan(udp(US, 5000))[..16],
        Pass,
        Malformed,
    );

    // Removing the port gives it back.
    maps.remove_port(Proto::Udp, 5000).unwrap();
    assert!(!maps.has_port(Proto::Udp, 5000).unwrap());
    run(&p, &mut e, "udp removed", &udp(US, 5000), Pass, Passed);
    maps.add_port(Proto::Udp, 5000).unwrap();

    // Shared mode with the TCP ephemeral range: TCP to any port of the
    // range is steered without a map entry, its bounds included; UDP is not.
    maps.set_config(XsConfig::shared_with_tcp_ephemeral(61000..=61010))
        .unwrap();
    assert_eq!(maps.config().unwrap().tcp_ephemeral_hi, 61010);
    assert!(!maps.has_port(Proto::Tcp, 61000).unwrap());
    run(&p, &mut e, "tcp range low", &tcp(61000), Redirect, Steered);
    run(&p, &mut e, "tcp range high", &tcp(61010), Redirect, Steered);
    run(&p, &mut e, "tcp below range", &tcp(60999), Pass, Passed);
    run(&p, &mut e, "tcp above range", &tcp(61011), Pass, Passed);
    run(&p, &mut e, "udp in range", &udp(US, 61005), Pass, Passed);
    run(
        &p,
        &mut e,
        "tcp owned with range",
        &tcp(6000),
        Redirect,
        Steered,
    );
    maps.set_config(XsConfig::SHARED).unwrap();
    run(&p, &mut e, "range cleared", &tcp(61005), Pass, Passed);

    // Dedicated mode: everything for the address, ARP and ICMP included;
    // nothing for other addresses, owned ports or not.
    maps.set_config(XsConfig::dedicated(Ipv4Addr::from(US)))
        .unwrap();
    assert_eq!(
        maps.config().unwrap().dedicated_ip(),
        Some(Ipv4Addr::from(US))
    );
    run(&p, &mut e, "ded arp for us", &arp(US), Redirect, Steered);
    run(&p, &mut e, "ded arp for other", &arp(PEER), Pass, Passed);
    run(
        &p,
        &mut e,
        "ded arp truncated",
        &arp(US)[..30],
        Pass,
        Malformed,
    );
    run(&p, &mut e, "ded icmp to us", &icmp(US), Redirect, Steered);
    run(
        &p,
        &mut e,
        "ded any udp port",
        &udp(US, 1),
        Redirect,
        Steered,
    );
    run(
        &p,
        &mut e,
        "ded other address",
        &udp(PEER, 5000),
        Pass,
        Passed,
    );
    maps.set_config(XsConfig::SHARED).unwrap();
    run(&p, &mut e, "shared again", &arp(US), Pass, Passed);

    // Ours, but no socket on the queue: the kernel gets it, counted.
    maps.clear_xsk(0).unwrap();
    run(&p, &mut e, "no xsk", &udp(US, 5000), Pass, NoXsk);
}
