//! The xdpstack TCP load generator (`bench tcp-* --client xdpstack`) on a
//! real veth pair: the client on the peer interface inside the namespace,
//! against the kernel's epoll echo server and against `xdpstack serve
//! --tcp-echo` (xdpstack on both ends) on the host side. The client checks
//! every response byte and exits with an error on a wrong one. Needs root;
//! every test builds and removes its own uniquely named topology.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Server, Topo};

const BIN: &str = env!("CARGO_BIN_EXE_xdpstack");
const PORT: &str = "7001";

/// Builds the topology. The host side's offloads are off too: the
/// kernel server's segments reach the client's AF_XDP socket, which
/// needs full checksums and frames no larger than the MTU.
fn topo() -> Topo {
    let t = Topo::new("tx", &["--no-tso"]);
    let ok = Command::new("ethtool")
        .args(["-K", t.host_if(), "tx", "off", "tso", "off", "gso", "off"])
        .stdout(Stdio::null())
        .status()
        .expect("run ethtool");
    assert!(ok.success(), "ethtool on {}", t.host_if());
    t
}

/// One run of the client in the namespace; returns its JSON fields.
fn client(t: &Topo, kind: &str, conns: usize, payload: usize, extra: &[&str]) -> Run {
    client_for(t, kind, conns, payload, "0.5", extra)
}

/// [`client`] for `duration` seconds.
fn client_for(
    t: &Topo,
    kind: &str,
    conns: usize,
    payload: usize,
    duration: &str,
    extra: &[&str],
) -> Run {
    let target = format!("{}:{PORT}", t.host_ip());
    let (conns_s, payload_s) = (conns.to_string(), payload.to_string());
    let out = Command::new("ip")
        .args([
            "netns", "exec", &t.name, BIN, "bench", kind, "--target", &target,
        ])
        .args(["--connections", &conns_s, "--payload", &payload_s])
        .args(["--duration", duration, "--json", "--client", "xdpstack"])
        .args(["--iface", t.get("PEER_IF")])
        .args(extra)
        .output()
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{kind} x{conns} {extra:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in: {stdout}"));
    Run::parse(line)
}

/// How many ephemeral ports the client in the namespace has: the stack's
/// choice beside the namespace kernel's `ip_local_port_range`.
fn client_ports(t: &Topo) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &t.name, "cat"])
        .arg("/proc/sys/net/ipv4/ip_local_port_range")
        .output()
        .expect("read ip_local_port_range");
    let kernel = xdpstack::ports::parse_local_port_range(&String::from_utf8_lossy(&out.stdout))
        .expect("parse ip_local_port_range");
    u64::from(
        xdpstack::ports::choose_ephemeral_range(kernel, None)
            .expect("a range")
            .len(),
    )
}

/// The fields of one JSON report line.
struct Run {
    line: String,
    fields: HashMap<String, String>,
}

impl Run {
    fn parse(line: &str) -> Run {
        let fields = line
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .map(|(k, v)| {
                (
                    k.trim_matches('"').to_string(),
                    v.trim_matches('"').to_string(),
                )
            })
            .collect();
        Run {
            line: line.to_string(),
            fields,
        }
    }

    fn str(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {}", self.line))
    }

    fn num(&self, k: &str) -> f64 {
        self.str(k)
            .parse()
            .unwrap_or_else(|_| panic!("{k} is not a number in {}", self.line))
    }
}

/// What the runs of [`run_all`] add up to.
#[derive(Debug, Default)]
struct Totals {
    /// Connections the client opened (crr: completed ones, at least).
    connections: u64,
    /// Request bytes the server echoed in completed exchanges.
    echoed: u64,
    /// Bytes of the stream run the server acknowledged.
    streamed: u64,
}

/// rr with one and with several connections, a request spanning many
/// segments, crr with reset and with FIN closes, stream: each must
/// complete work with no error, its responses checked by the client.
fn run_all(t: &Topo) -> Totals {
    let mut totals = Totals::default();
    for (conns, payload) in [(1, 64), (8, 64), (2, 20_000)] {
        let r = client(t, "tcp-rr", conns, payload, &[]);
        assert_eq!(r.str("kind"), "tcp-rr");
        assert_eq!(r.str("client"), "xdpstack");
        assert!(r.num("completed") > 0.0, "{}", r.line);
        assert_eq!(r.num("lost"), 0.0, "{}", r.line);
        assert_eq!(r.num("inflight"), conns as f64, "{}", r.line);
        assert!(r.num("p50_us") > 0.0, "{}", r.line);
        assert!(r.num("p50_us") <= r.num("p99_us"), "{}", r.line);
        totals.connections += conns as u64;
        totals.echoed += r.num("completed") as u64 * payload as u64;
    }
    // FIN closes leave every client port in TIME-WAIT (60 s): at the rate
    // this path makes, the 3 s run uses up the client's ephemeral range
    // and goes on only by reusing ports of connections that have been in
    // TIME-WAIT for a second (with timestamps, RFC 6191).
    // The range is narrowed to 1000 ports first (the stack takes the gap
    // above the namespace kernel's range), so even a slow run on a loaded
    // machine (300 connections/s) outlasts it.
    for (conns, close, secs) in [(4, "reset", "0.5"), (2, "fin", "3")] {
        if close == "fin" {
            let ok = Command::new("ip")
                .args(["netns", "exec", &t.name, "sysctl", "-qw"])
                .arg("net.ipv4.ip_local_port_range=1024 64535")
                .status()
                .expect("sysctl");
            assert!(ok.success(), "narrowing the port range");
        }
        let r = client_for(t, "tcp-crr", conns, 64, secs, &["--crr-close", close]);
        assert_eq!(r.str("kind"), "tcp-crr");
        let completed = r.num("completed") as u64;
        // Each completed exchange was a connection opened and closed.
        assert!(completed > 0, "{close}: {}", r.line);
        assert_eq!(r.num("lost"), 0.0, "{close}: {}", r.line);
        if close == "fin" {
            // More connections than ports: some ports were used twice
            // within the TIME-WAIT period, i.e. reused after the first
            // second.
            let ports = client_ports(t);
            assert!(
                completed > ports,
                "fin: {completed} connections, {ports} ports: {}",
                r.line
            );
        }
        totals.connections += completed;
        totals.echoed += completed * 64;
    }
    let r = client(t, "tcp-stream", 2, 65536, &[]);
    assert_eq!(r.str("kind"), "tcp-stream");
    assert!(r.num("bytes") > 0.0, "{}", r.line);
    assert!(r.num("gbit_s") > 0.0, "{}", r.line);
    assert_eq!(r.num("lost"), 0.0, "{}", r.line);
    totals.connections += 2;
    totals.streamed = r.num("bytes") as u64;
    totals
}

/// `xdpstack baseline kernel-tcp-echo` on the host side, stopped on drop.
struct KernelEcho {
    child: Option<Child>,
}

impl KernelEcho {
    fn start(ip: &str) -> KernelEcho {
        let mut child = Command::new(BIN)
            .args(["baseline", "kernel-tcp-echo", "--bind"])
            .arg(format!("{ip}:{PORT}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the kernel echo server");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut line = String::new();
        while !line.starts_with("kernel TCP echo on") {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the kernel echo server did not start: {line}");
            }
        }
        child.stdout = Some(out.into_inner());
        KernelEcho { child: Some(child) }
    }

    /// SIGINT; the server's final statistics as `name -> value`.
    fn stop(mut self) -> HashMap<String, u64> {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let mut out = String::new();
        let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
        assert!(child.wait().expect("wait").success(), "{out}");
        // `KernelTcpStats { accepted: 3, closed: 3, ... }`
        let inner = out
            .split_once('{')
            .and_then(|(_, r)| r.split_once('}'))
            .unwrap_or_else(|| panic!("no statistics in: {out}"))
            .0;
        inner
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
            .collect()
    }
}

impl Drop for KernelEcho {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn xdpstack_client_against_the_kernel_echo() {
    let t = topo();
    let server = KernelEcho::start(t.host_ip());
    let totals = run_all(&t);
    let stats = server.stop();
    assert_eq!(stats["errors"], 0, "{stats:?}");
    // Every connection the client counted reached the kernel, and every
    // byte it checked was echoed by it.
    assert!(
        stats["accepted"] >= totals.connections,
        "{stats:?} {totals:?}"
    );
    assert!(stats["bytes_out"] >= totals.echoed, "{stats:?} {totals:?}");
    // The stream's measured bytes (warm-up excluded) were read by it.
    assert!(
        stats["bytes_in"] >= totals.echoed + totals.streamed,
        "{stats:?} {totals:?}"
    );
}

#[test]
fn xdpstack_on_both_ends() {
    let t = topo();
    let server = Server::start(t.host_if(), &["--tcp-echo", PORT]);
    let totals = run_all(&t);
    let workers = server.stop();
    let w = &workers[0];
    assert!(w["tcp_accepted"] >= totals.connections, "{w:?} {totals:?}");
    // The client reset or closed everything it opened: nothing is left
    // in the server's table but what still waits for a last ACK.
    assert!(
        w["tcp_closed"] + 8 >= w["tcp_accepted"],
        "connections left open: {w:?}"
    );
    assert_eq!(w["tcp_drop_no_route"], 0, "{w:?}");
}

/// The client in dedicated mode on an address the namespace's kernel does
/// not have: it resolves the server's MAC with its own ARP request and
/// answers the kernel's for its address.
#[test]
fn dedicated_client_against_the_kernel_echo() {
    let t = topo();
    let server = KernelEcho::start(t.host_ip());
    let ip = t.spare_ip();
    let mut connections = 0;
    for (kind, conns) in [("tcp-rr", 2), ("tcp-crr", 4)] {
        let r = client(&t, kind, conns, 64, &["--ip", &ip]);
        assert!(r.num("completed") > 0.0, "{}", r.line);
        assert_eq!(r.num("lost"), 0.0, "{}", r.line);
        connections += if kind == "tcp-rr" {
            conns as u64
        } else {
            r.num("completed") as u64
        };
    }
    let stats = server.stop();
    assert_eq!(stats["errors"], 0, "{stats:?}");
    assert!(stats["accepted"] >= connections, "{stats:?}");
    // The kernel learnt the client's address at the peer interface's MAC.
    let neigh = Command::new("ip")
        .args(["neigh", "show", &ip, "dev", t.host_if()])
        .output()
        .expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(
        neigh.contains(&t.get("PEER_MAC").to_lowercase()),
        "{ip}: {neigh}"
    );
}
