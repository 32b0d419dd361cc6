//! TCP through `xdpstack serve --tcp-echo/--http` on a real veth pair, the
//! Linux kernel in a network namespace as the peer (curl, wrk and python3
//! sockets there). Needs root; every test builds and removes its own
//! uniquely named topology with `scripts/veth.sh --no-tso` (generic-mode
//! XDP cannot take the peer's TSO super-segments) and fails loudly if it
//! cannot.

use std::io::{BufRead, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xdpstack::xdp::impair::{attach_in_netns, ppm, ImpairConfig, ImpairCounters, ImpairGuard};

mod common;
use common::{echo_through, sum, Server, Topo};

/// Echo clients. `big SIZE` / `seq COUNT SIZE` / `conc COUNT SIZE`: send
/// random bytes while reading, shut down writing, read to EOF, compare
/// SHA-256. `half SIZE`: send everything and shut down writing before
/// reading anything (the echo must keep flowing after our FIN).
const ECHO_PY: &str = r#"
import socket, sys, hashlib, os, threading
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = [int(a) for a in sys.argv[4:]]
def one(size, half=False):
    s = socket.create_connection((host, port), timeout=30)
    data = os.urandom(size)
    got = hashlib.sha256(); n = [0]
    def rd():
        while True:
            b = s.recv(1 << 20)
            if not b: break
            got.update(b); n[0] += len(b)
    if half:
        s.sendall(data); s.shutdown(socket.SHUT_WR); rd()
    else:
        t = threading.Thread(target=rd); t.start()
        s.sendall(data); s.shutdown(socket.SHUT_WR); t.join()
    s.close()
    assert n[0] == size, ("short echo", n[0], size)
    assert got.digest() == hashlib.sha256(data).digest(), "SHA-256 differs"
    return hashlib.sha256(data).hexdigest()
if mode == "big":
    print("sha", one(args[0]))
elif mode == "half":
    one(args[0], half=True); print("ok half")
elif mode == "seq":
    for i in range(args[0]): one(args[1])
    print("ok seq", args[0])
elif mode == "conc":
    errs = []
    def run():
        try: one(args[1])
        except Exception as e: errs.append(repr(e))
    ts = [threading.Thread(target=run) for _ in range(args[0])]
    [t.start() for t in ts]; [t.join() for t in ts]
    assert not errs, errs
    print("ok conc", args[0])
"#;

/// Runs `ECHO_PY` in the peer namespace and asserts it succeeded.
fn echo_py(t: &Topo, ip: &str, port: &str, args: &[&str]) -> String {
    let mut all = vec![ip, port];
    all.extend_from_slice(args);
    t.py_ok(ECHO_PY, &all)
}

/// Starts tcpdump in the peer namespace for the first SYN-ACK; the output
/// comes from [`syn_ack_options`].
fn capture_syn_ack(t: &Topo) -> Child {
    let child = Command::new("ip")
        .args([
            "netns", "exec", &t.name, "tcpdump", "-l", "-nn", "-c", "1", "-i",
        ])
        .arg(t.get("PEER_IF"))
        .arg("tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    // tcpdump needs a moment to open its socket.
    std::thread::sleep(Duration::from_millis(1000));
    child
}

fn syn_ack_options(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let mut out = String::new();
    let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
    let _ = child.wait();
    out
}

fn curl(t: &Topo, args: &[&str]) -> (String, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &t.name, "curl", "-sS", "-v", "-m", "10"])
        .args(args)
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "curl failed: {stderr}");
    (stdout, stderr)
}

fn body(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

#[test]
fn http_keep_alive_and_close_with_curl() {
    let t = Topo::new("tw", &["--no-tso"]);
    let ip = t.get("HOST_IP").to_string();
    let s = Server::start(
        t.get("HOST_IF"),
        &["--http", "8080", "--http-body", "100000"],
    );
    let url = format!("http://{ip}:8080/");
    // Two requests on one connection.
    let (out, err) = curl(&t, &[&url, &format!("{url}again")]);
    assert_eq!(out, body(100_000).repeat(2), "bodies");
    assert!(err.contains("Re-using existing connection"), "{err}");
    assert!(err.contains("Content-Length: 100000"), "{err}");
    // Connection: close is honoured: the server says so and closes.
    let (out, err) = curl(&t, &["-H", "Connection: close", &url]);
    assert_eq!(out, body(100_000));
    assert!(err.contains("< Connection: close"), "{err}");
    // HEAD: headers only.
    let (out, _) = curl(&t, &["-I", &url]);
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    let w = s.stop();
    assert!(sum(&w, "tcp_accepted") >= 3, "{w:?}");
    assert_eq!(sum(&w, "drop_tcp"), 0, "{w:?}");
}

/// Runs wrk in the peer namespace; returns its report. wrk exits 0 even
/// when requests fail, so the caller checks the report.
fn wrk(t: &Topo, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &t.name, "wrk", "-t", "1", "-d", "2s"])
        .args(args)
        .output()
        .expect("wrk (scripts/install-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number of requests in a wrk report ("N requests in 2.00s, ...").
fn wrk_requests(report: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {report}"))
}

#[test]
fn http_under_wrk_keep_alive_and_close() {
    let t = Topo::new("tk", &["--no-tso"]);
    let ip = t.get("HOST_IP").to_string();
    let s = Server::start(t.get("HOST_IF"), &["--http", "8080", "--http-body", "1000"]);
    let url = format!("http://{ip}:8080/");
    // Keep-alive: 16 connections, each with many requests.
    let keep = wrk(&t, &["-c", "16", &url]);
    // Connection: close: a connection per request.
    let close = wrk(&t, &["-c", "4", "-H", "Connection: close", &url]);
    for (name, r) in [("keep-alive", &keep), ("close", &close)] {
        // wrk prints these lines only when something went wrong.
        assert!(!r.contains("Socket errors"), "{name}: {r}");
        assert!(!r.contains("Non-2xx"), "{name}: {r}");
        assert!(wrk_requests(r) > 100, "{name}: {r}");
    }
    let w = s.stop();
    // Every closed request was its own connection.
    assert!(
        sum(&w, "tcp_accepted") >= 16 + wrk_requests(&close),
        "{w:?}\n{close}"
    );
    assert_eq!(sum(&w, "drop_tcp"), 0, "{w:?}");
}

#[test]
fn echo_bulk_sha256_and_negotiated_options() {
    let t = Topo::new("tw", &["--no-tso"]);
    let ip = t.get("HOST_IP").to_string();
    let s = Server::start(t.get("HOST_IF"), &["--tcp-echo", "7000"]);
    let cap = capture_syn_ack(&t);
    // The issue's size: 64 MiB through the echo, the same SHA-256 back.
    let started = Instant::now();
    let out = echo_py(&t, &ip, "7000", &["big", &(64 << 20).to_string()]);
    assert!(out.starts_with("sha "), "{out}");
    eprintln!("64 MiB python echo in {:?}", started.elapsed());
    // And 64 MiB from nc: the SHA-256 of what went in (stderr) and of what
    // came back (stdout).
    let started = Instant::now();
    let nc = format!(
        "head -c {} /dev/urandom | tee >(sha256sum >&2) | nc -N {ip} 7000 | sha256sum",
        64 << 20
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &t.name, "bash", "-c", &nc])
        .output()
        .expect("nc");
    let (sent, back) = (
        String::from_utf8_lossy(&out.stderr).to_string(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    );
    assert!(out.status.success(), "nc: {sent}");
    assert_eq!(sent.len(), 64 + 4, "sent: {sent}");
    assert_eq!(back, sent, "nc echo differs");
    eprintln!("64 MiB nc echo in {:?}", started.elapsed());
    let opts = syn_ack_options(cap);
    // RFC 7323 window scale and timestamps, RFC 2018 SACK-permitted.
    assert!(opts.contains("wscale"), "no window scale in {opts}");
    assert!(opts.contains("sackOK"), "no SACK-permitted in {opts}");
    assert!(opts.contains("TS val"), "no timestamps in {opts}");
    assert!(opts.contains("mss 1460"), "MSS in {opts}");
    let w = s.stop();
    assert_eq!(sum(&w, "tcp_accepted"), 2, "{w:?}");
}

#[test]
fn echo_sequential_concurrent_and_half_close() {
    let t = Topo::new("tw", &["--no-tso"]);
    let ip = t.get("HOST_IP").to_string();
    let s = Server::start(t.get("HOST_IF"), &["--tcp-echo", "7000"]);
    let started = Instant::now();
    echo_py(&t, &ip, "7000", &["seq", "200", "20000"]);
    eprintln!("200 sequential in {:?}", started.elapsed());
    let started = Instant::now();
    echo_py(&t, &ip, "7000", &["conc", "64", &(1 << 20).to_string()]);
    eprintln!("64 concurrent x 1 MiB in {:?}", started.elapsed());
    echo_py(&t, &ip, "7000", &["half", "150000"]);
    // Every server-side connection is gone (the clients closed second,
    // so the TIME-WAITs are theirs) once the last FIN was acknowledged.
    std::thread::sleep(Duration::from_millis(300));
    let w = s.stop();
    assert_eq!(sum(&w, "tcp_accepted"), 200 + 64 + 1, "{w:?}");
    assert_eq!(sum(&w, "tcp_closed"), 200 + 64 + 1, "{w:?}");
}

#[test]
fn dedicated_mode_echo_http_and_reset() {
    let t = Topo::new("tw", &["--no-tso"]);
    let ip = t.spare_ip();
    let s = Server::start(
        t.get("HOST_IF"),
        &["--ip", &ip, "--tcp-echo", "7000", "--http", "80"],
    );
    echo_py(&t, &ip, "7000", &["big", &(4 << 20).to_string()]);
    let (out, _) = curl(&t, &[&format!("http://{ip}/")]);
    assert_eq!(out, body(64));
    // A closed port is refused (RST).
    let refused = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], 7999), timeout=3)
    sys.exit("connected?")
except ConnectionRefusedError:
    print("refused")
"#;
    assert_eq!(t.py_ok(refused, &[&ip]).trim(), "refused");
    let w = s.stop();
    assert!(sum(&w, "tcp_rst_out") >= 1, "{w:?}");
}

/// Impairs the TCP segments of `port` on the peer's interface in both
/// directions: `loss` of them dropped, 0.5% duplicated and 0.5% corrupted.
/// Returns the (egress, ingress) programs; dropping them detaches.
fn impair_both_ways(t: &Topo, port: u16, loss: f64) -> (ImpairGuard, ImpairGuard) {
    // One impairment decision per segment: the peer's TCP keeps software
    // GSO with the feature off, so cap a GSO packet at one segment.
    let gso = Command::new("ip")
        .args(["-n", &t.name, "link", "set", t.get("PEER_IF")])
        .args(["gso_max_segs", "1"])
        .status()
        .expect("ip link");
    assert!(gso.success(), "gso_max_segs");
    let cfg = ImpairConfig {
        port,
        udp: false,
        drop_ppm: ppm(loss),
        duplicate_ppm: ppm(0.005),
        corrupt_ppm: ppm(0.005),
        ..ImpairConfig::default()
    };
    let egress = attach_in_netns(&t.name, t.get("PEER_IF"), true, &cfg).expect("impair egress");
    let ingress = attach_in_netns(&t.name, t.get("PEER_IF"), false, &cfg).expect("impair ingress");
    (egress, ingress)
}

/// The echo under loss on the peer's interface in both directions: `drop`
/// of the port's segments dropped, 0.5% duplicated and 0.5% corrupted
/// (the stack must catch each by its checksum). One 4 MiB transfer, then 4
/// concurrent 1 MiB ones: byte-exact (SHA-256), and a stall fails the
/// client's 30 s socket timeout. Returns the elapsed time of the transfers.
fn echo_under_loss(loss: f64) -> Duration {
    let t = Topo::new("tw", &["--no-tso"]);
    let ip = t.get("HOST_IP").to_string();
    let s = Server::start(t.get("HOST_IF"), &["--tcp-echo", "7000"]);
    let (egress, ingress) = impair_both_ways(&t, 7000, loss);
    let started = Instant::now();
    echo_py(&t, &ip, "7000", &["big", &(4 << 20).to_string()]);
    echo_py(&t, &ip, "7000", &["conc", "4", &(1 << 20).to_string()]);
    let took = started.elapsed();
    let (e, i) = injected(&egress, &ingress);
    drop((egress, ingress));
    let w = s.stop();
    // The stack's loss recovery on the connections it closed (`serve
    // --stats` prints the same counters).
    let rec: Vec<String> = [
        "tcp_rto",
        "tcp_retransmits",
        "tcp_fast_retransmits",
        "tcp_tlp_probes",
    ]
    .iter()
    .map(|k| format!("{k}={}", sum(&w, k)))
    .collect();
    eprintln!(
        "{}% loss: 8 MiB echoed in {took:?}; {}; egress {e:?}; ingress {i:?}",
        loss * 100.0,
        rec.join(" ")
    );
    assert!(sum(&w, "tcp_retransmits") > 0, "{w:?}");
    assert_eq!(sum(&w, "tcp_accepted"), 5, "{w:?}");
    // Every segment corrupted on its way to the stack failed its checksum.
    assert_eq!(sum(&w, "drop_tcp"), e.corrupted, "{w:?}");
    took
}

/// The counters of both impairment programs; fails the test unless each
/// dropped, duplicated and corrupted something.
fn injected(egress: &ImpairGuard, ingress: &ImpairGuard) -> (ImpairCounters, ImpairCounters) {
    let (e, i) = (egress.counters().unwrap(), ingress.counters().unwrap());
    for c in [&e, &i] {
        assert!(
            c.dropped > 0 && c.duplicated > 0 && c.corrupted > 0,
            "impairment not injected: egress {e:?} ingress {i:?}"
        );
    }
    (e, i)
}

#[test]
fn echo_under_one_percent_loss_each_way() {
    echo_under_loss(0.01);
}

#[test]
fn echo_under_five_percent_loss_each_way() {
    echo_under_loss(0.05);
}

/// A kernel TCP server for the stack-as-client test: the first connection
/// is echoed until the client closes (client closes first); on the second
/// the server sends `N` pattern bytes and closes first.
const KERNEL_SERVER_PY: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port)); l.listen(4); l.settimeout(20)
print("ready", flush=True)
c, _ = l.accept(); c.settimeout(20)
total = 0
while True:
    b = c.recv(65536)
    if not b: break
    c.sendall(b); total += len(b)
c.close()
c, _ = l.accept(); c.settimeout(20)
c.sendall(bytes((i * 7 + i // 256) % 256 for i in range(n)))
c.close()
print("echoed", total, flush=True)
"#;

#[test]
fn stack_as_client_to_a_kernel_server_both_close_orders() {
    stack_as_client(None);
}

/// The same two transfers with 5% of the segments dropped in each
/// direction and 0.5% duplicated and corrupted.
#[test]
fn stack_as_client_under_five_percent_loss_each_way() {
    stack_as_client(Some(0.05));
}

fn stack_as_client(loss: Option<f64>) {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use xdpstack::api::tcp::TcpStream;
    use xdpstack::worker::{Stack, StackConfig};

    let t = Topo::new("tw", &["--no-tso"]);
    let peer: Ipv4Addr = t.get("PEER_IP").parse().unwrap();
    let impair = loss.map(|loss| impair_both_ways(&t, 9000, loss));
    let started = Instant::now();
    let (mut server, mut out) = t.py_server(
        None,
        KERNEL_SERVER_PY,
        &[t.get("PEER_IP"), "9000", "2000000"],
    );
    t.add_peer_neighbor();

    let stop = Arc::new(AtomicBool::new(false));
    let stack = Stack::start(&StackConfig::new(t.get("HOST_IF")), stop.clone()).expect("stack");
    std::thread::sleep(Duration::from_millis(400));
    let remote = SocketAddrV4::new(peer, 9000);

    // Client closes first: echo of 1 MiB.
    let mut c = TcpStream::connect_timeout(stack.handle(), remote, Duration::from_secs(15))
        .expect("connect");
    let data: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    let echoed = echo_through(&mut c, &data);
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echo differs");
    drop(c);

    // Server closes first: 2 MB from the kernel.
    let mut c = TcpStream::connect_timeout(stack.handle(), remote, Duration::from_secs(15))
        .expect("connect 2");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let want: Vec<u8> = (0..2_000_000usize)
        .map(|i| ((i * 7 + i / 256) % 256) as u8)
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "download differs");
    drop(c);

    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("echoed {}", 1 << 20));
    assert!(server.wait().unwrap().success());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reports, _) = stack.join();
    let connected: u64 = reports.iter().map(|r| r.shard.tcp.connected).sum();
    assert_eq!(connected, 2);
    if let Some((egress, ingress)) = impair {
        let (e, i) = injected(&egress, &ingress);
        eprintln!(
            "stack as client, {loss:?} loss: 1 MiB echo + 2 MB download in {:?}; \
             egress {e:?}; ingress {i:?}",
            started.elapsed()
        );
    }
}

/// Two queues, two workers (native mode: the host's RX queue is the peer's
/// TX queue, pinned by XPS to the sending CPU): clients on CPU 0 and 1 each
/// push 1 MiB echoes through 8 connections; every byte comes back.
///
/// A connection lives on the worker whose queue its SYN reached. On veth
/// the peer sends from whichever CPU runs its TCP (the application's, or
/// the one that transmitted the frame it answers), and XPS picks that
/// CPU's queue, so a flow's segments reach both queues; the worker without
/// the connection hands them to the other.
#[test]
fn two_queues_two_workers_tcp_echo() {
    let t = Topo::new("tw", &["--queues", "2", "--xps"]);
    let host_ip = t.get("HOST_IP").to_string();
    let srv = Server::start(
        t.get("HOST_IF"),
        &[
            "--tcp-echo",
            "7000",
            "--queues",
            "2",
            "--xdp-mode",
            "native",
        ],
    );
    for cpu in ["0", "1"] {
        let args = [host_ip.as_str(), "7000", "conc", "8", "1048576"];
        let out = t.py_ok_pinned(cpu, ECHO_PY, &args);
        assert!(out.contains("ok conc 8"), "{out}");
    }
    let w = srv.stop();
    assert_eq!(w.len(), 2);
    assert_eq!(sum(&w, "tcp_accepted"), 16, "{w:?}");
    for (i, worker) in w.iter().enumerate() {
        assert!(worker["tcp_accepted"] > 0, "worker {i} got nothing: {w:?}");
    }
}
