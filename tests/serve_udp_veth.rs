//! `xdpstack serve` on a real veth pair with the Linux kernel in a network
//! namespace as the peer (python3 sockets there). Needs root; every test
//! builds and removes its own uniquely named topology with
//! `scripts/veth.sh` and fails loudly if it cannot. Counters are read from
//! the `final counters:` block the server prints on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{sum, Server, Topo};

/// Sends datagrams of the given sizes, expects each echoed byte-exact from
/// the server's address; prints "ok N".
const ECHO_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
sizes = [int(x) for x in sys.argv[3].split(",")]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = 0
for i, n in enumerate(sizes):
    msg = bytes((j * 7 + i + n) % 256 for j in range(n))
    for attempt in range(3):
        s.sendto(msg, (host, port))
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            continue
        assert addr == (host, port), addr
        assert data == msg, (n, len(data))
        ok += 1
        break
    else:
        sys.exit("no echo for %d bytes" % n)
print("ok", ok)
"#;

/// Runs `ECHO_PY` in the peer namespace with the comma-separated `sizes`
/// and asserts that every datagram came back.
fn udp_echo_ok(t: &Topo, ip: &str, port: &str, sizes: &str) {
    let out = t.py_ok(ECHO_PY, &[ip, port, sizes]);
    let want = format!("ok {}", sizes.split(',').count());
    assert!(out.contains(&want), "{out}");
}

/// ICMP echo with a raw socket (no ping binary needed): prints "reply"
/// or exits non-zero.
const PING_PY: &str = r#"
import socket, struct, sys, os, time
dst = sys.argv[1]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
ident = os.getpid() & 0xffff
for seq in range(1, 5):
    body = b"xdpstack-ping-%d" % seq
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, seq) + body
    s.sendto(pkt, (dst, 0))
    end = time.time() + 0.5
    while time.time() < end:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        t, c, ck, i, q = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if addr[0] == dst and t == 0 and i == ident and q == seq and data[ihl + 8:] == body:
            assert csum(data[ihl:]) == 0, "bad reply checksum"
            print("reply"); sys.exit(0)
sys.exit("no reply")
"#;

/// A kernel TCP echo server for one connection on (host, port) run in the
/// host namespace; the client side connects from the peer namespace.
const TCP_SERVER_PY: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(10)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(5)
d = c.recv(100); c.sendall(d[::-1]); c.close()
"#;

const TCP_CLIENT_PY: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.sendall(b"hello kernel"); print(c.recv(100).decode())
"#;

/// Crafts UDP frames on the peer interface (AF_PACKET): `bad-csum` (valid
/// lengths, wrong checksum) and `bad-len` (UDP length beyond the IP
/// payload, and below 8), each `count` times.
const CRAFT_PY: &str = r#"
import socket, struct, sys
ifname, src_mac, dst_mac, src, dst, port, kind, count = sys.argv[1:9]
count = int(count); port = int(port)
def mac(m): return bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
payload = b"crafted payload!"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
for i in range(count):
    udp_len = 8 + len(payload)
    if kind == "bad-len":
        udp_len = [8 + len(payload) + 40, 5][i % 2]
    udp = struct.pack("!HHHH", 40000 + i, port, udp_len, 0) + payload
    ck = csum(sa + da + struct.pack("!BBH", 0, 17, 8 + len(payload)) + udp)
    if kind == "bad-csum":
        ck = (ck + 1) & 0xffff or 1
    else:
        ck = 0x1234
    udp = udp[:6] + struct.pack("!H", ck) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0x4000, 64, 17, 0, sa, da)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + udp)
print("sent", count)
"#;

#[test]
fn shared_mode_echo_ping_and_kernel_tcp() {
    let t = Topo::new("sv", &[]);
    let host_ip = t.get("HOST_IP").to_string();
    let srv = Server::start(t.get("HOST_IF"), &["--udp-echo", "7001", "--stats"]);
    assert!(srv.banner.contains("Shared"), "{}", srv.banner);

    udp_echo_ok(&t, &host_ip, "7001", "1,512,1472");

    // ICMP stays with the kernel in shared mode.
    let out = t.py_ok(PING_PY, &[&host_ip]);
    assert!(out.contains("reply"), "{out}");

    // A kernel TCP server on another port of the same address still works.
    let mut tcp = Command::new("python3")
        .args(["-c", TCP_SERVER_PY, &host_ip, "7002"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kernel TCP server");
    let mut line = String::new();
    BufReader::new(tcp.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server line");
    assert!(line.contains("listening"), "{line}");
    let out = t.py_ok(TCP_CLIENT_PY, &[&host_ip, "7002"]);
    assert!(out.contains("lenrek olleh"), "{out}");
    assert!(tcp.wait().expect("tcp server").success());

    // --stats: a report per worker and the steering counters every second.
    std::thread::sleep(Duration::from_millis(1300));
    let (w, periodic) = srv.stop_with_output();
    assert!(periodic.contains("worker 0 queue 0"), "{periodic}");
    assert!(periodic.contains("steer: steered="), "{periodic}");
    assert_eq!(w.len(), 1);
    assert_eq!(sum(&w, "udp_delivered"), 3, "{w:?}");
    assert_eq!(sum(&w, "udp_replies"), 3, "{w:?}");
    assert_eq!(sum(&w, "icmp_echo_replies"), 0, "{w:?}");
}

#[test]
fn dedicated_mode_echo_ping_unreachable_and_reset() {
    let t = Topo::new("sv", &[]);
    let ip = t.spare_ip();
    let srv = Server::start(t.get("HOST_IF"), &["--ip", &ip, "--udp-echo", "7001"]);
    assert!(srv.banner.contains("Dedicated"), "{}", srv.banner);

    // The kernel peer resolves the dedicated address with ARP first.
    udp_echo_ok(&t, &ip, "7001", "1,512,1472");
    let out = t.py_ok(PING_PY, &[&ip]);
    assert!(out.contains("reply"), "{out}");

    // Closed UDP port: ICMP port unreachable makes a connected socket fail.
    let refused_udp = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.connect((sys.argv[1], 7999))
s.send(b"anyone?")
try:
    s.recv(100); print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;
    let out = t.py_ok(refused_udp, &[&ip]);
    assert!(out.contains("refused"), "{out}");
    // Closed TCP port: RST.
    let refused_tcp = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], 7998), timeout=2); print("connected")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;
    let out = t.py_ok(refused_tcp, &[&ip]);
    assert!(out.contains("refused"), "{out}");

    let w = srv.stop();
    assert_eq!(sum(&w, "udp_delivered"), 3, "{w:?}");
    assert!(sum(&w, "icmp_echo_replies") >= 1, "{w:?}");
    assert!(sum(&w, "arp_replies") >= 1, "{w:?}");
    assert!(sum(&w, "icmp_unreachable") >= 1, "{w:?}");
    assert!(sum(&w, "tcp_resets") >= 1, "{w:?}");
}

#[test]
fn bad_checksums_and_lengths_are_dropped_and_counted() {
    for dedicated in [false, true] {
        let t = Topo::new("sv", &[]);
        let ip = if dedicated {
            t.spare_ip()
        } else {
            t.get("HOST_IP").to_string()
        };
        let mut args = vec!["--udp-echo", "7001"];
        if dedicated {
            args.extend(["--ip", &ip]);
        }
        let srv = Server::start(t.get("HOST_IF"), &args);
        // Echo first: proves the path and (dedicated) resolves ARP.
        udp_echo_ok(&t, &ip, "7001", "1,512,1472");
        let (peer_if, peer_mac, host_mac, peer_ip) = (
            t.get("PEER_IF"),
            t.get("PEER_MAC"),
            t.get("HOST_MAC"),
            t.get("PEER_IP"),
        );
        for (kind, n) in [("bad-csum", "5"), ("bad-len", "6")] {
            let out = t.py_ok(
                CRAFT_PY,
                &[peer_if, peer_mac, host_mac, peer_ip, &ip, "7001", kind, n],
            );
            assert!(out.contains("sent"), "{out}");
        }
        // Still serving.
        udp_echo_ok(&t, &ip, "7001", "1,512,1472");
        let w = srv.stop();
        assert_eq!(sum(&w, "udp_drop_bad_checksum"), 5, "{w:?}");
        assert_eq!(sum(&w, "udp_drop_bad_length"), 6, "{w:?}");
        assert_eq!(sum(&w, "udp_replies"), 6, "{w:?}");
    }
}

/// Generic (SKB) attach and poll()-with-wakeup workers.
#[test]
fn dedicated_mode_generic_attach_wakeup_poll() {
    let t = Topo::new("sv", &[]);
    let ip = t.spare_ip();
    let srv = Server::start(
        t.get("HOST_IF"),
        &[
            "--ip",
            &ip,
            "--udp-echo",
            "7001",
            "--xdp-mode",
            "generic",
            "--poll",
            "wakeup",
        ],
    );
    assert!(srv.banner.contains("generic attach"), "{}", srv.banner);
    for _ in 0..4 {
        udp_echo_ok(&t, &ip, "7001", "1,512,1472,100,1000");
    }
    let w = srv.stop();
    assert_eq!(sum(&w, "udp_replies"), 20, "{w:?}");
}

/// PLATFORM.md item 8: in native mode a veth's RX queue is the peer's TX
/// queue, which XPS pins to the sending CPU; so flows sent from CPU 0 and
/// CPU 1 land on queues 0 and 1.
#[test]
fn two_queues_two_workers_echo_everything() {
    let t = Topo::new("sv", &["--queues", "2", "--xps"]);
    let host_ip = t.get("HOST_IP").to_string();
    let srv = Server::start(
        t.get("HOST_IF"),
        &[
            "--udp-echo",
            "7001",
            "--queues",
            "2",
            "--xdp-mode",
            "native",
        ],
    );
    let mut total = 0;
    for cpu in ["0", "1"] {
        let args = [host_ip.as_str(), "7001", "1,64,512,1472,200,300,400,500"];
        let out = t.py_ok_pinned(cpu, ECHO_PY, &args);
        assert!(out.contains("ok 8"), "{out}");
        total += 8;
    }
    let w = srv.stop();
    assert_eq!(w.len(), 2);
    assert_eq!(sum(&w, "udp_replies"), total, "{w:?}");
    for (i, worker) in w.iter().enumerate() {
        assert!(worker["udp_replies"] > 0, "worker {i} got nothing: {w:?}");
    }
}

#[test]
fn restart_after_kill_9() {
    let t = Topo::new("sv", &[]);
    let host_ip = t.get("HOST_IP").to_string();
    let srv = Server::start(t.get("HOST_IF"), &["--udp-echo", "7001"]);
    udp_echo_ok(&t, &host_ip, "7001", "64");
    srv.kill9();
    let srv = Server::start(t.get("HOST_IF"), &["--udp-echo", "7001"]);
    udp_echo_ok(&t, &host_ip, "7001", "1,512,1472");
    let w = srv.stop();
    assert_eq!(sum(&w, "udp_replies"), 3, "{w:?}");
}

/// The thread-side `UdpSocket` on a stack started in-process: bind by
/// number and ephemeral (outside the kernel's range), AddrInUse, and echo
/// through the worker's channels.
#[test]
fn thread_side_udp_socket_echo() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use xdpstack::api::UdpSocket;
    use xdpstack::worker::{Stack, StackConfig};

    let t = Topo::new("sv", &[]);
    let host_ip = t.get("HOST_IP").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stack = Stack::start(&StackConfig::new(t.get("HOST_IF")), stop.clone()).expect("start");
    let mut fixed = UdpSocket::bind(stack.handle(), "0.0.0.0:7020".parse().unwrap()).unwrap();
    let e = UdpSocket::bind(stack.handle(), "0.0.0.0:7020".parse().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    let mut eph = UdpSocket::bind(stack.handle(), "0.0.0.0:0".parse().unwrap()).unwrap();
    let eph_port = eph.local_addr().unwrap().port();
    assert!(stack.ephemeral_range().contains(eph_port));
    let kernel = xdpstack::ports::read_kernel_local_port_range().unwrap();
    assert!(
        !kernel.contains(eph_port),
        "{eph_port} in the kernel's range"
    );

    let stop_echo = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for sock in [&mut fixed, &mut eph] {
            let stop_echo = stop_echo.clone();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let sock = &*sock;
            s.spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop_echo.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        sock.send_to(&buf[..n], from).unwrap();
                    }
                }
            });
        }
        let port = eph_port.to_string();
        for p in ["7020", port.as_str()] {
            udp_echo_ok(&t, &host_ip, p, "1,512,1472");
        }
        stop_echo.store(true, Ordering::Relaxed);
    });
    drop(fixed);
    drop(eph);
    stop.store(true, Ordering::Relaxed);
    let (reports, _) = stack.join();
    assert_eq!(sum_reports(&reports), 6);
}

fn sum_reports(r: &[xdpstack::worker::WorkerReport]) -> u64 {
    r.iter().map(|w| w.shard.udp.rx_delivered).sum()
}

/// The load generator on xdpstack itself (`bench udp-echo --client
/// xdpstack`, attached to the peer's interface) against `serve
/// --udp-echo`: every request answered, none lost, and the server saw each.
#[test]
fn xdpstack_load_generator_against_serve() {
    let t = Topo::new("sx", &[]);
    let target = format!("{}:7001", t.get("HOST_IP"));
    let srv = Server::start(t.get("HOST_IF"), &["--udp-echo", "7001"]);
    let out = Command::new("ip")
        .args(["netns", "exec", &t.name, env!("CARGO_BIN_EXE_xdpstack")])
        .args(["bench", "udp-echo", "--target", &target, "--duration", "1"])
        .args(["--inflight", "4", "--json", "--client", "xdpstack"])
        .args(["--iface", t.get("PEER_IF")])
        .output()
        .expect("run the client");
    let json = common::stdout_ok(&out);
    let field = |k: &str| -> u64 {
        let (_, rest) = json
            .split_once(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("no {k} in {json}"));
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{k} in {json}"))
    };
    let (completed, lost) = (field("completed"), field("lost"));
    assert!(completed > 100, "{json}");
    assert_eq!(lost, 0, "{json}");
    let w = srv.stop();
    assert!(sum(&w, "udp_replies") >= completed, "{w:?}\n{json}");
}
