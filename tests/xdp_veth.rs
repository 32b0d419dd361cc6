//! AF_XDP on a real veth pair, with the Linux kernel in a network namespace
//! as the peer. Needs root; every test builds and removes its own uniquely
//! named topology with `scripts/veth.sh` and fails loudly if it cannot.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xdpstack::phy::FrameBuf;
use xdpstack::xdp::loader::{self, attach_netlink_for_test, query, AttachMode, AttachedMode};
use xdpstack::xdp::reflector::{self, ReflectorConfig, ReflectorReport};
use xdpstack::xdp::{LoadError, PollMode, Proto, Steering, XdpLink, XskConfig};

mod common;
use common::{stdout_ok, Topo};

/// Send each argument after the first two as one UDP datagram to
/// argv[1]:argv[2].
const PY_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in sys.argv[3:]:
    s.sendto(p.encode(), (sys.argv[1], int(sys.argv[2])))
print("SENT")
"#;

/// One ICMP echo to argv[1]; prints PONG on a reply within 2 s.
const PY_PING: &str = r#"
import socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst = sys.argv[1]
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r.settimeout(2)
p = struct.pack("!BBHHH", 8, 0, 0, 0x5878, 1) + b"xdpstack-ping"
p = p[:2] + struct.pack("!H", csum(p)) + p[4:]
r.sendto(p, (dst, 0))
end = time.time() + 2
while time.time() < end:
    d, a = r.recvfrom(2048)
    ihl = (d[0] & 15) * 4
    if a[0] == dst and d[ihl] == 0 and d[ihl + 4:ihl + 6] == b"\x58\x78":
        print("PONG"); sys.exit(0)
sys.exit(1)
"#;

/// Echo client: sends datagrams of each length in argv[3:] to
/// argv[1]:argv[2] and checks each reply is byte-exact.
const PY_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
dst = (sys.argv[1], int(sys.argv[2]))
for n in map(int, sys.argv[3:]):
    msg = bytes((i * 7 + n) & 0xff for i in range(n))
    for attempt in range(3):
        s.sendto(msg, dst)
        try:
            d, a = s.recvfrom(65535)
            break
        except socket.timeout:
            continue
    else:
        print("TIMEOUT", n); sys.exit(1)
    if a != dst or d != msg:
        print("MISMATCH", n, len(d), a); sys.exit(1)
    print("OK", n)
"#;

/// UDP destination port of an Ethernet/IPv4/UDP frame and its payload.
fn udp_of(frame: &[u8]) -> Option<(u16, &[u8])> {
    if frame.len() < 42 || frame[12..14] != [8, 0] || frame[23] != 17 {
        return None;
    }
    let ihl = (frame[14] & 15) as usize * 4;
    let udp = frame.get(14 + ihl..)?;
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    Some((dport, udp.get(8..len)?))
}

/// Receives on `link` for up to 3 s, handing each frame's bytes to
/// `frame`, until a batch in which `frame` said it is done.
fn receive_until(link: &mut XdpLink, mut frame: impl FnMut(&[u8]) -> bool) {
    let mut frames = Vec::new();
    let mut done = false;
    let end = Instant::now() + Duration::from_secs(3);
    while !done && Instant::now() < end {
        link.receive(&mut frames, 64);
        for f in frames.drain(..) {
            done |= frame(f.data());
            drop(f); // back to the pool through the orphan list
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the reflector with `cfg` while `clients` runs (if the reflector
/// got ready within 10 s, else `None`), then stops it; returns what
/// `clients` returned and the reflector's report.
fn with_reflector<R>(
    cfg: &ReflectorConfig,
    clients: impl FnOnce() -> R,
) -> (Option<R>, ReflectorReport) {
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let h = s.spawn(|| reflector::run_with(cfg, &stop, |m| tx.send(m).unwrap()));
        let ready = rx.recv_timeout(Duration::from_secs(10));
        let out = ready.ok().map(|_| clients());
        stop.store(true, Ordering::Relaxed);
        (out, h.join().unwrap().expect("reflector run"))
    })
}

fn check_loader(mode: AttachMode, expect: AttachedMode) {
    let t = Topo::new("xdp", &[]);
    let ifindex = loader::ifindex(t.host_if()).unwrap();
    assert_eq!(query(ifindex).unwrap(), Default::default());
    let s = Steering::attach(t.host_if(), mode).expect("attach");
    assert_eq!(s.mode(), expect);
    let q = query(ifindex).unwrap();
    let id = s.prog_id();
    assert_ne!(id, 0);
    match expect {
        AttachedMode::Native => assert_eq!((q.native, q.generic), (id, 0)),
        AttachedMode::Generic => assert_eq!((q.native, q.generic), (0, id)),
    }
    assert_eq!(loader::prog_name(id).as_deref(), Some(loader::PROG_NAME));
    // A second instance on the same interface is refused, not stacked.
    assert_eq!(
        Steering::attach(t.host_if(), mode).unwrap_err(),
        LoadError::Busy
    );
    s.detach().unwrap();
    assert_eq!(query(ifindex).unwrap(), Default::default());
    s.detach().expect("detach is idempotent");
    // The maps outlive the attachment.
    s.maps().add_port(Proto::Udp, 9).unwrap();
    assert!(s.maps().has_port(Proto::Udp, 9).unwrap());
    drop(s);
}

#[test]
fn loader_attaches_and_detaches_native() {
    check_loader(AttachMode::Native, AttachedMode::Native);
}

#[test]
fn loader_attaches_and_detaches_generic() {
    check_loader(AttachMode::Generic, AttachedMode::Generic);
}

#[test]
fn loader_auto_prefers_native_on_veth() {
    check_loader(AttachMode::Auto, AttachedMode::Native);
}

/// Whether `fd` has O_CLOEXEC, from the flags /proc reports (octal).
fn close_on_exec(fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    flags & libc::O_CLOEXEC as u32 != 0
}

fn check_steering(mode: AttachMode) {
    let t = Topo::new("xdp", &[]);
    let steering = Steering::attach(t.host_if(), mode).expect("attach");
    let maps = steering.maps().clone();
    let mut link = XdpLink::open(&XskConfig::new(t.host_if(), 0), Some(&maps)).expect("xsk");
    assert!(
        close_on_exec(link.as_fd().as_raw_fd()),
        "a spawned child must not inherit the socket and keep it alive"
    );
    let (ours, theirs) = (7001u16, 7002u16);
    maps.add_port(Proto::Udp, ours).unwrap();
    let kernel_sock = UdpSocket::bind((t.host_ip(), theirs)).unwrap();
    kernel_sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    t.py_ok(
        PY_SEND,
        &[t.host_ip(), &ours.to_string(), "steer-a", "steer-b"],
    );
    t.py_ok(PY_SEND, &[t.host_ip(), &theirs.to_string(), "kernel-c"]);

    // The kernel port still reaches the kernel.
    let mut buf = [0u8; 256];
    let (n, _) = kernel_sock
        .recv_from(&mut buf)
        .expect("kernel port reached");
    assert_eq!(&buf[..n], b"kernel-c");
    // Ping still answered by the kernel.
    assert!(t.py_ok(PY_PING, &[t.host_ip()]).contains("PONG"));

    // The steered port arrives in the XSK, payload intact.
    let mut got: Vec<Vec<u8>> = Vec::new();
    receive_until(&mut link, |frame| {
        if let Some((dport, payload)) = udp_of(frame) {
            assert_eq!(dport, ours, "only the owned port is steered");
            got.push(payload.to_vec());
        }
        got.len() >= 2
    });
    assert_eq!(got, [b"steer-a".to_vec(), b"steer-b".to_vec()]);
    let c = maps.counters().unwrap();
    assert!(c.steered >= 2, "{c:?}");
    assert!(c.passed >= 1, "{c:?}");
    let st = link.stats();
    assert!(st.rx_frames >= 2, "{st:?}");

    // A closed socket leaves xsks_map (the kernel removes it): owned
    // traffic falls back to the kernel, counted as no_xsk.
    drop(link);
    let back = UdpSocket::bind((t.host_ip(), ours)).unwrap();
    back.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    t.py_ok(PY_SEND, &[t.host_ip(), &ours.to_string(), "orphaned"]);
    let (n, _) = back.recv_from(&mut buf).expect("no socket: kernel gets it");
    assert_eq!(&buf[..n], b"orphaned");
    assert!(maps.counters().unwrap().no_xsk >= 1);

    // Giving the port back hands it to the kernel for good.
    maps.remove_port(Proto::Udp, ours).unwrap();
    t.py_ok(PY_SEND, &[t.host_ip(), &ours.to_string(), "returned"]);
    let (n, _) = back
        .recv_from(&mut buf)
        .expect("port returned to the kernel");
    assert_eq!(&buf[..n], b"returned");
}

#[test]
fn steered_port_reaches_xsk_rest_reaches_kernel_generic() {
    check_steering(AttachMode::Generic);
}

#[test]
fn steered_port_reaches_xsk_rest_reaches_kernel_native() {
    check_steering(AttachMode::Native);
}

fn check_reflector(mode: AttachMode, poll: PollMode) {
    let t = Topo::new("xdp", &[]);
    let port = 7100u16;
    let cfg = ReflectorConfig {
        attach: mode,
        poll,
        ..ReflectorConfig::new(t.host_if(), port)
    };
    let (out, report) = with_reflector(&cfg, || {
        t.py(
            PY_ECHO,
            &[t.host_ip(), &port.to_string(), "1", "512", "1472"],
        )
    });
    let stats = report.total;
    let out = stdout_ok(&out.expect("reflector ready"));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK")).count(),
        3,
        "{out}"
    );
    assert!(stats.reflected >= 3, "{stats:?}");
    assert_eq!(stats.xsk.kick_errors, 0, "{stats:?}");
    assert_eq!(
        query(loader::ifindex(t.host_if()).unwrap()).unwrap(),
        Default::default(),
        "the reflector detaches on return"
    );
}

#[test]
fn reflector_echoes_byte_exact_generic() {
    check_reflector(AttachMode::Generic, PollMode::Busy);
}

#[test]
fn reflector_echoes_byte_exact_native() {
    check_reflector(AttachMode::Native, PollMode::Busy);
}

#[test]
fn reflector_echoes_byte_exact_wakeup_mode() {
    check_reflector(AttachMode::Generic, PollMode::Wakeup);
}

/// Receives argv[2] datagrams on argv[1]:7200 (prints `ready` first), then
/// prints each payload on a line.
const PY_SINK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((sys.argv[1], 7200))
s.settimeout(3)
print("ready", flush=True)
got = []
try:
    while len(got) < int(sys.argv[2]):
        got.append(s.recv(2048).decode())
except socket.timeout:
    pass
print("\n".join(got))
"#;

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

/// Frames built in UMEM with `alloc_tx` reach the kernel peer; many kicks'
/// worth (32 each) and more completions than one ring read (256) in one
/// batch.
#[test]
fn xsk_transmits_frames_built_in_umem() {
    use xdpstack::phy::Link;
    let t = Topo::new("xdp", &[]);
    let n = 600usize;
    let (mut sink, mut out) = t.py_server(None, PY_SINK, &[t.get("PEER_IP"), &n.to_string()]);

    let mut link = XdpLink::open(&XskConfig::new(t.host_if(), 0), None).expect("xsk");
    let now = xdpstack::time::Instant::ZERO;
    let free_before = link.free_frames();
    let mut batch = Vec::new();
    for i in 0..n {
        let mut f = link.alloc_tx().expect("free frame");
        let payload = format!("built-{i}");
        let b =
            etherparse::PacketBuilder::ethernet2(mac(t.get("HOST_MAC")), mac(t.get("PEER_MAC")))
                .ipv4(ip(t.host_ip()), ip(t.get("PEER_IP")), 64)
                .udp(7201, 7200);
        let len = b.size(payload.len());
        assert!(len <= f.capacity());
        f.set_len(len);
        let mut w = &mut f.data_mut()[..];
        b.write(&mut w, payload.as_bytes()).unwrap();
        batch.push(f);
    }
    link.send_batch(now, &mut batch);
    assert!(batch.is_empty());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    sink.wait().unwrap();
    let got: Vec<&str> = rest.lines().filter(|l| !l.is_empty()).collect();
    let want: Vec<String> = (0..n).map(|i| format!("built-{i}")).collect();
    assert_eq!(got, want);
    let st = link.stats();
    assert_eq!(st.tx_frames, n as u64, "{st:?}");
    assert_eq!(st.tx_ring_full, 0, "{st:?}");
    // Every frame comes back from the completion ring.
    let end = Instant::now() + Duration::from_secs(2);
    while link.free_frames() != free_before && Instant::now() < end {
        link.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(link.free_frames(), free_before, "{:?}", link.stats());
}

/// Echo client pinned to CPU argv[4]: argv[3] datagrams to argv[1]:argv[2],
/// prints how many came back.
const PY_PINNED_ECHO: &str = r#"
import os, socket, sys
os.sched_setaffinity(0, {int(sys.argv[4])})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
dst = (sys.argv[1], int(sys.argv[2]))
ok = 0
for i in range(int(sys.argv[3])):
    s.sendto(b"q%d" % i, dst)
    try:
        d, a = s.recvfrom(2048)
        ok += d == b"q%d" % i
    except socket.timeout:
        pass
print(ok)
"#;

/// Two queues, two reflector threads: in native mode the RX queue is the
/// peer's TX queue, which XPS pins to the sending CPU, so clients on two
/// CPUs land on two queues and both are served.
#[test]
fn reflector_serves_two_queues_native() {
    // --xps pins the peer's TX queue i to CPU i.
    let t = Topo::new("xdp", &["--queues", "2", "--xps"]);
    let port = 7300u16;
    let cfg = ReflectorConfig {
        attach: AttachMode::Native,
        poll: PollMode::Wakeup,
        queues: vec![(0, None), (1, None)],
        ..ReflectorConfig::new(t.host_if(), port)
    };
    let (outs, report) = with_reflector(&cfg, || {
        ["0", "1"].map(|cpu| t.py(PY_PINNED_ECHO, &[t.host_ip(), &port.to_string(), "20", cpu]))
    });
    for o in outs.expect("reflector ready") {
        assert_eq!(stdout_ok(&o).trim(), "20", "every datagram echoed");
    }
    assert_eq!(report.total.reflected, 40, "{report:?}");
    for (q, st) in &report.per_queue {
        assert_eq!(st.reflected, 20, "queue {q}: {report:?}");
    }
}

#[test]
fn stale_netlink_program_is_replaced() {
    let t = Topo::new("xdp", &[]);
    let ifindex = loader::ifindex(t.host_if()).unwrap();
    // A program attached by netlink outlives whoever attached it.
    let stale = attach_netlink_for_test(ifindex, AttachedMode::Generic).unwrap();
    assert_eq!(query(ifindex).unwrap().generic, stale);
    let s = Steering::attach(t.host_if(), AttachMode::Native).expect("replaces the stale one");
    let q = query(ifindex).unwrap();
    assert_eq!((q.native, q.generic), (s.prog_id(), 0));
    assert_ne!(s.prog_id(), stale);
}

/// Environment variable naming the interface for the helper process.
const CHILD_ENV: &str = "XDPSTACK_TEST_CHILD_IFACE";

#[test]
#[ignore = "helper process of stale_attachment_after_kill_9; run by that test"]
fn child_hold_attachment() {
    // An entry point of its parent test, not a test: nothing to do when run
    // directly (e.g. `--include-ignored`).
    let Ok(iface) = std::env::var(CHILD_ENV) else {
        eprintln!("helper process entry point: run by stale_attachment_after_kill_9 only");
        return;
    };
    let s = Steering::attach(&iface, AttachMode::Generic).expect("child attach");
    println!("ATTACHED {}", s.prog_id());
    std::thread::sleep(Duration::from_secs(30));
    panic!("child was not killed");
}

#[test]
fn stale_attachment_after_kill_9() {
    let t = Topo::new("xdp", &[]);
    let ifindex = loader::ifindex(t.host_if()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_hold_attachment",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, t.host_if())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut id = 0u32;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("ATTACHED ") {
            id = v.trim().parse().unwrap();
            break;
        }
    }
    assert_ne!(id, 0, "child did not attach");
    assert_eq!(query(ifindex).unwrap().generic, id);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The next start works and owns the interface.
    let s = Steering::attach(t.host_if(), AttachMode::Generic).expect("attach after kill -9");
    let q = query(ifindex).unwrap();
    assert_eq!((q.native, q.generic), (0, s.prog_id()));
    assert_ne!(s.prog_id(), id);
}

/// Dedicated-address mode on real traffic: the peer's ARP request for the
/// stack's own address lands in the XSK (nobody answers it here), while the
/// interface's kernel address keeps answering ping.
#[test]
fn dedicated_address_arp_reaches_xsk() {
    let t = Topo::new("xdp", &[]);
    let steering = Steering::attach(t.host_if(), AttachMode::Generic).expect("attach");
    let maps = steering.maps().clone();
    let mut link = XdpLink::open(&XskConfig::new(t.host_if(), 0), Some(&maps)).expect("xsk");
    let ours: std::net::Ipv4Addr = {
        let mut o = ip(t.host_ip());
        o[3] = 3;
        o.into()
    };
    maps.set_config(xdpstack::xdp::XsConfig::dedicated(ours))
        .unwrap();
    // The datagram itself cannot leave the peer (no ARP answer); its ARP
    // request is what we are after.
    let _ = t.py(PY_SEND, &[&ours.to_string(), "9", "x"]);
    assert!(t.py_ok(PY_PING, &[t.host_ip()]).contains("PONG"));
    let mut seen = false;
    receive_until(&mut link, |d| {
        seen |= d.len() >= 42 && d[12..14] == [8, 6] && d[38..42] == ours.octets();
        seen
    });
    assert!(
        seen,
        "ARP request for the dedicated address reached the XSK"
    );
    assert!(maps.counters().unwrap().steered >= 1);
}
