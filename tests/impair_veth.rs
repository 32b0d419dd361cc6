//! The impairment program on a real veth pair between two network
//! namespaces created for each test: nothing lost at 0%, nothing passes at
//! 100%, about the configured fraction dropped / duplicated / corrupted, ARP
//! and ICMP untouched, corrupted datagrams refused by the kernel's checksum
//! check, and a kernel TCP transfer byte-exact through all three.
//!
//! Needs root (namespaces, BPF). Namespaces are named after this process and
//! a counter, and deleted on drop, also when a test fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use xdpstack::xdp::impair::{self, ImpairConfig, ImpairCounters, ImpairGuard};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `a` and `b` joined by veth `va` (10.X.Y.1) — `vb` (10.X.Y.2).
struct Pair {
    a: String,
    b: String,
    addr_a: String,
    addr_b: String,
}

impl Pair {
    fn new() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("tcp-aux-{pid}-{n}");
        let p = Pair {
            a: format!("{tag}-a"),
            b: format!("{tag}-b"),
            addr_a: format!("10.{}.{}.1", 100 + (pid % 100), n % 250),
            addr_b: format!("10.{}.{}.2", 100 + (pid % 100), n % 250),
        };
        // Registered for deletion before anything can fail.
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        ip(&[
            "-n", &p.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &p.b,
        ]);
        for (ns, dev, addr) in [(&p.a, "va", &p.addr_a), (&p.b, "vb", &p.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            // Full checksums from the kernel's UDP sender, so a corrupted
            // datagram is detectable (see src/xdp/impair.rs).
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"])
                .output()
                .expect("ethtool runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        p
    }

    fn sock_b(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.addr_b).parse().unwrap()
    }

    /// A UDP socket in `ns`, bound to `addr:0`.
    fn udp(&self, ns: &str, addr: &str) -> UdpSocket {
        let bind: SocketAddr = format!("{addr}:0").parse().unwrap();
        impair::run_in_netns(ns, move || UdpSocket::bind(bind).unwrap()).unwrap()
    }

    /// One counter of `/proc/net/snmp` in `ns`, e.g. ("Udp", "InCsumErrors").
    fn snmp(&self, ns: &str, proto: &str, field: &str) -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{proto}:")))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 2, "{proto} rows in /proc/net/snmp");
        let i = rows[0].iter().position(|h| *h == field).expect("field");
        rows[1][i].parse().unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Send `n` numbered datagrams from `a` to `b`, paced so no queue on the way
/// overflows; returns the sequence numbers `b` received (duplicates kept).
fn udp_burst(p: &Pair, n: u32) -> Vec<u32> {
    let rx = p.udp(&p.b, &p.addr_b);
    let tx = p.udp(&p.a, &p.addr_a);
    let to = rx.local_addr().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let mut payload = [0u8; 200];
    for i in 0..n {
        payload[..4].copy_from_slice(&i.to_le_bytes());
        tx.send_to(&payload, to).unwrap();
        // Drain as we go: at most 20 datagrams in flight.
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_micros(200));
            rx.set_nonblocking(true).unwrap();
            while let Ok(k) = rx.recv(&mut buf) {
                got.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
                assert_eq!(k, payload.len());
            }
            rx.set_nonblocking(false).unwrap();
        }
    }
    while let Ok(k) = rx.recv(&mut buf) {
        assert_eq!(k, payload.len());
        got.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
    }
    got
}

fn attach_a_egress(p: &Pair, cfg: ImpairConfig) -> ImpairGuard {
    impair::attach_in_netns(&p.a, "va", true, &cfg).unwrap()
}

const N: u32 = 2000;

#[test]
fn zero_percent_loses_nothing() {
    let p = Pair::new();
    let g = attach_a_egress(&p, ImpairConfig::default());
    let got = udp_burst(&p, N);
    assert_eq!(got.len(), N as usize);
    let c = g.counters().unwrap();
    assert_eq!(c.seen, u64::from(N), "{c:?}");
    assert_eq!((c.dropped, c.duplicated, c.corrupted), (0, 0, 0));
}

#[test]
fn full_drop_passes_no_udp_but_arp_and_icmp() {
    let p = Pair::new();
    let g = attach_a_egress(&p, ImpairConfig::drop(1.0));
    let got = udp_burst(&p, N);
    assert!(got.is_empty(), "{} datagrams passed", got.len());
    let c = g.counters().unwrap();
    assert_eq!(c.dropped, u64::from(N), "{c:?}");
    // ARP resolved the peer: it is never impaired.
    assert!(c.ignored >= 1, "{c:?}");
    let neigh = Command::new("ip")
        .args(["-n", &p.a, "neigh", "show", &p.addr_b])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(neigh.contains("lladdr"), "no ARP entry: {neigh}");
    // UDP-only: TCP passes untouched.
    g.set_config(&ImpairConfig {
        tcp: false,
        ..ImpairConfig::drop(1.0)
    })
    .unwrap();
    assert!(udp_burst(&p, 50).is_empty());
    assert_eq!(tcp_exchange(&p, b"through"), b"through");
    // Reconfigured while attached: everything passes again.
    g.set_config(&ImpairConfig::default()).unwrap();
    assert_eq!(udp_burst(&p, 100).len(), 100);
    // Detached: full drop no longer applies.
    g.set_config(&ImpairConfig::drop(1.0)).unwrap();
    drop(g);
    assert_eq!(udp_burst(&p, 50).len(), 50);
}

/// Connect from `a` to `b`, send `msg`, get it echoed back.
fn tcp_exchange(p: &Pair, msg: &[u8]) -> Vec<u8> {
    let bind = p.sock_b(0);
    let l = impair::run_in_netns(&p.b, move || TcpListener::bind(bind).unwrap()).unwrap();
    let to = l.local_addr().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).unwrap();
            c.write_all(&buf[..n]).unwrap();
        });
        let mut c = impair::run_in_netns(&p.a, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap()
        })
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        back
    })
}

#[test]
fn twenty_percent_drop_loses_about_a_fifth() {
    let p = Pair::new();
    let g = attach_a_egress(&p, ImpairConfig::drop(0.2));
    let got = udp_burst(&p, N);
    let lost = N as usize - got.len();
    let c = g.counters().unwrap();
    // Binomial: mean 400, sd 18; the band is over five sd wide each side.
    assert!((300..=500).contains(&lost), "lost {lost} of {N}");
    assert_eq!(c.dropped, lost as u64, "{c:?}");
}

#[test]
fn duplicates_arrive_twice_on_egress_and_ingress() {
    for egress in [true, false] {
        let p = Pair::new();
        let cfg = ImpairConfig {
            duplicate_ppm: impair::ppm(0.3),
            ..ImpairConfig::default()
        };
        // Egress of a, or ingress of b: the same path.
        let (ns, dev) = if egress { (&p.a, "va") } else { (&p.b, "vb") };
        let g = impair::attach_in_netns(ns, dev, egress, &cfg).unwrap();
        let got = udp_burst(&p, N);
        let c = g.counters().unwrap();
        let extra = got.len() - N as usize;
        assert!(
            (450..=750).contains(&extra),
            "egress {egress}: {extra} extra, {c:?}"
        );
        assert_eq!(c.duplicated, extra as u64, "egress {egress}: {c:?}");
        // Every duplicate came through the hook again, untouched.
        assert_eq!(c.duplicates_seen, c.duplicated, "egress {egress}: {c:?}");
        assert_eq!(c.seen, u64::from(N), "egress {egress}: {c:?}");
        let mut uniq = got.clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), N as usize);
    }
}

#[test]
fn corrupted_datagrams_fail_the_kernels_checksum() {
    let p = Pair::new();
    let g = attach_a_egress(
        &p,
        ImpairConfig {
            corrupt_ppm: impair::ppm(0.25),
            ..ImpairConfig::default()
        },
    );
    let errors_before = p.snmp(&p.b, "Udp", "InCsumErrors");
    let got = udp_burst(&p, N);
    let c = g.counters().unwrap();
    let errors = p.snmp(&p.b, "Udp", "InCsumErrors") - errors_before;
    let missing = N as usize - got.len();
    assert!((350..=650).contains(&missing), "{missing} missing, {c:?}");
    assert_eq!(c.corrupted, missing as u64, "{c:?}");
    assert_eq!(errors, c.corrupted, "kernel checksum errors vs corrupted");
}

fn fnv(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn kernel_tcp_is_byte_exact_through_drop_duplicate_corrupt() {
    let p = Pair::new();
    let cfg = ImpairConfig {
        drop_ppm: impair::ppm(0.03),
        duplicate_ppm: impair::ppm(0.02),
        corrupt_ppm: impair::ppm(0.02),
        udp: false,
        ..ImpairConfig::default()
    };
    // One impairment decision per segment: TCP keeps software GSO even with
    // the feature off, so cap a GSO packet at one segment instead.
    for (ns, dev) in [(&p.a, "va"), (&p.b, "vb")] {
        ip(&["-n", ns, "link", "set", dev, "gso_max_segs", "1"]);
    }
    // Both directions: data one way, ACKs the other.
    let ga = impair::attach_in_netns(&p.a, "va", true, &cfg).unwrap();
    let gb = impair::attach_in_netns(&p.b, "vb", true, &cfg).unwrap();
    let csum_before = p.snmp(&p.b, "Tcp", "InCsumErrors");
    let bind = p.sock_b(0);
    let listener = impair::run_in_netns(&p.b, move || TcpListener::bind(bind).unwrap()).unwrap();
    let to = listener.local_addr().unwrap();
    let len = 4 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i * 131 + i / 4099) as u8).collect();
    let want = fnv(&data, 0xcbf2_9ce4_8422_2325);
    let started = Instant::now();
    let got = std::thread::scope(|s| {
        let server = s.spawn(|| {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut h = 0xcbf2_9ce4_8422_2325;
            let mut n = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                let k = c.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                h = fnv(&buf[..k], h);
                n += k;
            }
            (n, h)
        });
        let mut c = impair::run_in_netns(&p.a, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(10)).unwrap()
        })
        .unwrap();
        c.write_all(&data).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        server.join().unwrap()
    });
    let (ca, cb) = (ga.counters().unwrap(), gb.counters().unwrap());
    assert_eq!(
        got,
        (len, want),
        "received bytes differ; a: {ca:?} b: {cb:?}"
    );
    // The impairments really happened, and the kernel caught every
    // corrupted segment by its checksum.
    let check = |c: &ImpairCounters| c.dropped > 0 && c.duplicated > 0 && c.corrupted > 0;
    assert!(check(&ca), "a: {ca:?}");
    let csum = p.snmp(&p.b, "Tcp", "InCsumErrors") - csum_before;
    assert_eq!(
        csum, ca.corrupted,
        "b's checksum errors vs a's corruptions; a: {ca:?}"
    );
    eprintln!("4 MiB in {:?}; a: {ca:?}; b: {cb:?}", started.elapsed());
}
