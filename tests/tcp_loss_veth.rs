//! Bulk TCP over a lossy veth pair, xdpstack against the Linux kernel as
//! the sender, side by side in one run: the receiver is the same kernel
//! socket client in the peer namespace (`bench tcp-stream --download` as a
//! library call), the senders are `xdpstack serve --tcp-source` (CUBIC, and
//! once NewReno) and the kernel's epoll source (`baseline
//! kernel-tcp-source`, CUBIC) on the host side. The impairment program
//! (`bpf/impair.bpf.c`) sits on the peer's interface, ingress and egress,
//! so data and ACKs are both lost, duplicated and corrupted.
//!
//! Each transfer must deliver a fixed amount byte-exact (the receiver
//! checks the source pattern) within a bound (no stall); goodputs are
//! printed, never asserted. The impairment's counters must show drops, and
//! per-segment ones: TSO/GSO is off on both sides (`veth.sh --no-tso` for
//! the peer, ethtool here for the host side, where the kernel sender would
//! otherwise hand veth 64 KiB super-segments that the hook drops whole),
//! which the test checks by counting at least one hook packet per MSS of
//! data. TX checksum offload is off on the host side too, or the receiver
//! would not verify the kernel sender's checksums and would take corrupted
//! segments.
//!
//! Needs root; the topology is unique per test and removed on drop.

use std::net::{SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use xdpstack::baseline::kernel_tcp::{run_with, KernelTcpConfig, TcpService};
use xdpstack::loadgen::tcp::{run_kernel_client, TcpBenchConfig, TcpBenchKind};
use xdpstack::xdp::impair::{self, ppm, ImpairConfig, ImpairCounters, ImpairGuard};

mod common;
use common::{Server, Topo};

/// The payload of a full segment on a 1500-byte MTU with timestamps.
const MSS: u64 = 1448;
/// The longest a transfer may take before it counts as stalled.
const BOUND: Duration = Duration::from_secs(15);

fn impairment(drop: f64) -> ImpairConfig {
    ImpairConfig {
        drop_ppm: ppm(drop),
        duplicate_ppm: ppm(0.002),
        corrupt_ppm: ppm(0.002),
        tcp: true,
        udp: false,
        port: 0,
    }
}

/// Both hooks of the peer's interface.
struct Impair {
    ingress: ImpairGuard,
    egress: ImpairGuard,
}

impl Impair {
    fn attach(t: &Topo, cfg: &ImpairConfig) -> Impair {
        let peer = t.get("PEER_IF");
        Impair {
            ingress: impair::attach_in_netns(&t.name, peer, false, cfg).expect("attach ingress"),
            egress: impair::attach_in_netns(&t.name, peer, true, cfg).expect("attach egress"),
        }
    }

    fn set(&self, cfg: &ImpairConfig) {
        self.ingress.set_config(cfg).unwrap();
        self.egress.set_config(cfg).unwrap();
    }

    fn counters(&self) -> (ImpairCounters, ImpairCounters) {
        (
            self.ingress.counters().unwrap(),
            self.egress.counters().unwrap(),
        )
    }
}

/// Download `bytes` from `from` with a kernel socket in the peer namespace;
/// returns Gbit/s over the whole transfer. Fails on a wrong byte, an early
/// close, or a transfer slower than [`BOUND`].
fn download(t: &Topo, from: SocketAddrV4, bytes: u64) -> f64 {
    let mut cfg = TcpBenchConfig::new(TcpBenchKind::Stream, from);
    cfg.download = true;
    cfg.download_bytes = Some(bytes);
    cfg.duration = BOUND;
    let r = impair::run_in_netns(&t.name, move || run_kernel_client(&cfg))
        .expect("enter the namespace")
        .unwrap_or_else(|e| panic!("download from {from}: {e}"));
    assert!(r.bytes >= bytes, "{} of {bytes} bytes", r.bytes);
    r.bits_per_second() / 1e9
}

/// One transfer under the current impairment: the hook's counters must
/// show the drops and at least one packet per MSS of data (per-segment
/// impairment).
fn lossy_download(t: &Topo, imp: &Impair, from: SocketAddrV4, bytes: u64, what: &str) -> f64 {
    let (in0, out0) = imp.counters();
    let started = Instant::now();
    let gbit = download(t, from, bytes);
    let (in1, out1) = imp.counters();
    let seen = in1.seen - in0.seen;
    let dropped = (in1.dropped - in0.dropped) + (out1.dropped - out0.dropped);
    println!(
        "{what}: {bytes} bytes in {:.2}s, {gbit:.3} Gbit/s; data hook saw {seen} packets, \
         dropped {} data / {} ACK packets, duplicated {}, corrupted {}",
        started.elapsed().as_secs_f64(),
        in1.dropped - in0.dropped,
        out1.dropped - out0.dropped,
        (in1.duplicated - in0.duplicated) + (out1.duplicated - out0.duplicated),
        (in1.corrupted - in0.corrupted) + (out1.corrupted - out0.corrupted),
    );
    assert!(
        seen >= bytes / MSS,
        "{what}: {seen} packets for {bytes} bytes: segments larger than the MSS reached the hook"
    );
    assert!(dropped > 0, "{what}: nothing was dropped");
    gbit
}

/// The kernel's bulk source on the host side, in this process.
struct KernelSource {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KernelSource {
    fn start(ip: &str) -> KernelSource {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut cfg = KernelTcpConfig::new(format!("{ip}:0").parse().unwrap(), TcpService::Source);
        cfg.congestion = Some("cubic".into());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            run_with(&cfg, &flag, |a| tx.send(a).unwrap()).expect("kernel source");
        });
        let SocketAddr::V4(addr) = rx.recv().expect("kernel source listening") else {
            unreachable!()
        };
        KernelSource {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for KernelSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn topo() -> Topo {
    let t = Topo::new("tl", &["--no-tso"]);
    // The kernel sender's side: MTU-sized segments, as the stack sends,
    // and full checksums: with TX offload on, its segments cross the veth
    // with partial checksums that the receiving kernel does not verify, so
    // a corrupted one would be delivered (the pattern check catches that).
    let out = Command::new("ethtool")
        .args(["-K", t.host_if(), "tso", "off", "gso", "off", "tx", "off"])
        .output()
        .expect("ethtool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t
}

#[test]
fn lossy_download_xdpstack_and_kernel_senders_side_by_side() {
    let t = topo();
    let host_ip: std::net::Ipv4Addr = t.host_ip().parse().unwrap();
    let kernel = KernelSource::start(t.host_ip());
    let imp = Impair::attach(&t, &impairment(0.01));
    let mut table = Vec::new();

    for (cc, port) in [("cubic", 7301u16), ("newreno", 7302)] {
        let server = Server::start(
            t.host_if(),
            &["--tcp-source", &port.to_string(), "--cc", cc],
        );
        let xdp = SocketAddrV4::new(host_ip, port);
        let losses: &[(f64, u64)] = if cc == "cubic" {
            &[(0.01, 8 << 20), (0.05, 2 << 20)]
        } else {
            &[(0.01, 8 << 20)]
        };
        for &(loss, bytes) in losses {
            imp.set(&impairment(loss));
            let pct = loss * 100.0;
            let x = lossy_download(&t, &imp, xdp, bytes, &format!("xdpstack {cc} {pct}%"));
            let k = lossy_download(
                &t,
                &imp,
                kernel.addr,
                bytes,
                &format!("kernel cubic {pct}%"),
            );
            table.push((cc, pct, x, k));
        }
        let workers = server.stop();
        let accepted: u64 = workers.iter().map(|w| w["tcp_accepted"]).sum();
        assert_eq!(accepted, losses.len() as u64, "{workers:?}");
    }
    println!("sender      loss | xdpstack Gbit/s | kernel cubic Gbit/s | ratio");
    for (cc, pct, x, k) in table {
        println!("{cc:<8} {pct:>5.1}% | {x:>15.3} | {k:>19.3} | {:.2}", x / k);
    }
}
