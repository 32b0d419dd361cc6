//! Run the benchmark baselines by hand: the raw AF_XDP reflector, the kernel
//! recvmmsg/sendmmsg echo server, or a simple kernel-socket UDP echo load
//! generator (for quick side-by-side checks; the real load generator is the
//! CLI's `bench` subcommand).
//!
//! ```text
//! xdp_baselines reflector IFACE PORT [--mode auto|native|generic] [--core N] [--wakeup] [--queues N]
//! xdp_baselines kernel-echo ADDR:PORT [--core N] [--batch N]
//! xdp_baselines load ADDR:PORT [--secs S] [--payload B] [--inflight N] [--core N]
//! ```
//! Servers run for `--secs S` (or until killed) and print their counters.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpstack::baseline::kernel_udp::{self, KernelEchoConfig};
use xdpstack::xdp::reflector::{self, ReflectorConfig};
use xdpstack::xdp::PollMode;

fn opt<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .ok()
                .unwrap_or_else(|| panic!("bad value for {name}"))
        })
}

fn stop_flag(args: &[String]) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    // Stops after --secs; otherwise runs until killed (the steering link
    // dies with the process).
    if let Some(secs) = opt::<f64>(args, "--secs") {
        let s = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            s.store(true, Ordering::Relaxed);
        });
    }
    stop
}

fn load(target: SocketAddr, args: &[String]) {
    let secs: f64 = opt(args, "--secs").unwrap_or(5.0);
    let payload: usize = opt(args, "--payload").unwrap_or(64).max(16);
    let inflight: usize = opt(args, "--inflight").unwrap_or(1).max(1);
    if let Some(c) = opt::<usize>(args, "--core") {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect(target).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let epoch = Instant::now();
    let mut msg = vec![0u8; payload];
    let send = |sock: &UdpSocket, msg: &mut Vec<u8>| {
        let t = epoch.elapsed().as_nanos() as u64;
        msg[..8].copy_from_slice(&t.to_le_bytes());
        let _ = sock.send(msg);
    };
    for _ in 0..inflight {
        send(&sock, &mut msg);
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut buf = vec![0u8; 65536];
    let end = Duration::from_secs_f64(secs);
    let mut done = 0u64;
    let mut lost = 0u64;
    while epoch.elapsed() < end {
        match sock.recv(&mut buf) {
            Ok(n) if n >= 8 => {
                let sent = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let now = epoch.elapsed().as_nanos() as u64;
                let _ = hist.record(now.saturating_sub(sent).max(1));
                done += 1;
                send(&sock, &mut msg);
            }
            Ok(_) => {}
            Err(_) => {
                // Timed out: assume the window was lost and refill it.
                lost += inflight as u64;
                for _ in 0..inflight {
                    send(&sock, &mut msg);
                }
            }
        }
    }
    let el = epoch.elapsed().as_secs_f64();
    println!(
        "{{\"req_per_s\": {:.0}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"replies\": {done}, \"lost_windows\": {lost}, \"payload\": {payload}, \"inflight\": {inflight}}}",
        done as f64 / el,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.value_at_quantile(0.999) as f64 / 1000.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("reflector") => {
            let iface = &args[2];
            let port: u16 = args[3].parse().unwrap();
            let mut cfg = ReflectorConfig::new(iface, port);
            if let Some(m) = opt(&args, "--mode") {
                cfg.attach = m;
            }
            let core = opt::<usize>(&args, "--core");
            let queues: u32 = opt(&args, "--queues").unwrap_or(1);
            cfg.queues = (0..queues)
                .map(|q| (q, core.map(|c| c + q as usize)))
                .collect();
            if args.iter().any(|a| a == "--wakeup") {
                cfg.poll = PollMode::Wakeup;
            }
            let stop = stop_flag(&args);
            let r = reflector::run_with(&cfg, &stop, |m| eprintln!("reflector ready ({m:?})"));
            println!("{r:?}");
        }
        Some("kernel-echo") => {
            let mut cfg = KernelEchoConfig::new(args[2].parse().unwrap());
            cfg.cores = vec![opt(&args, "--core")];
            if let Some(b) = opt(&args, "--batch") {
                cfg.batch = b;
            }
            let stop = stop_flag(&args);
            let r = kernel_udp::run_with(&cfg, &stop, |a| eprintln!("kernel echo ready on {a}"));
            println!("{r:?}");
        }
        Some("load") => load(args[2].parse().unwrap(), &args),
        _ => eprintln!("usage: see the doc comment of examples/xdp_baselines.rs"),
    }
}
