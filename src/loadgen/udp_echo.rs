//! UDP echo load generator on kernel sockets: keeps `inflight` requests
//! outstanding, each tagged with its slot and a generation so that a late
//! answer to a request already given up on is not mistaken for a new one.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{new_histogram, Report};

/// A request is given up on and sent again after this long.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Bytes of the tag (slot u32, generation u32) at the start of each payload.
const TAG_LEN: usize = 8;

#[derive(Debug, Clone)]
pub struct UdpEchoConfig {
    pub target: SocketAddr,
    pub bind: SocketAddr,
    pub payload: usize,
    pub inflight: usize,
    pub duration: Duration,
    /// Drop the first part of the run from the figures.
    pub warmup: Duration,
}

struct Slot {
    generation: u32,
    sent_at: Instant,
}

/// Runs the client until `cfg.duration` has passed; fails if the server never
/// answers at all.
pub fn run_kernel_client(cfg: &UdpEchoConfig) -> io::Result<Report> {
    if cfg.inflight == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "inflight must be at least 1",
        ));
    }
    if cfg.payload < TAG_LEN && cfg.inflight > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "payloads under 8 bytes cannot carry a tag: use --inflight 1",
        ));
    }
    let sock = UdpSocket::bind(cfg.bind)?;
    sock.connect(cfg.target)?;
    sock.set_read_timeout(Some(Duration::from_millis(10)))?;

    let mut hist = new_histogram();
    let mut buf = vec![0u8; cfg.payload.max(TAG_LEN)];
    let mut rx = vec![0u8; 65536];
    let start = Instant::now();
    let mut slots: Vec<Slot> = (0..cfg.inflight)
        .map(|_| Slot {
            generation: 0,
            sent_at: start,
        })
        .collect();
    for (i, slot) in slots.iter_mut().enumerate() {
        send_request(&sock, &mut buf, cfg.payload, i, slot)?;
    }

    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let (mut completed, mut lost, mut any_answer) = (0u64, 0u64, false);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match sock.recv(&mut rx) {
            Ok(n) => {
                let now = Instant::now();
                let Some(i) = match_answer(&rx[..n], cfg.payload, &slots) else {
                    continue;
                };
                any_answer = true;
                if now >= measure_from {
                    let ns = now.duration_since(slots[i].sent_at).as_nanos() as u64;
                    let _ = hist.record(ns.max(1));
                    completed += 1;
                }
                slots[i].generation = slots[i].generation.wrapping_add(1);
                send_request(&sock, &mut buf, cfg.payload, i, &mut slots[i])?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // An ICMP error from an earlier datagram; the retry below covers it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            if now.duration_since(slot.sent_at) >= RETRY_AFTER {
                lost += 1;
                slot.generation = slot.generation.wrapping_add(1);
                send_request(&sock, &mut buf, cfg.payload, i, slot)?;
            }
        }
    }
    if !any_answer {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {} during the run", cfg.target),
        ));
    }
    let elapsed = Instant::now().duration_since(measure_from);
    let mut report = Report::from_histogram("udp-echo", &hist, elapsed, completed, lost);
    report.client = "kernel".into();
    report.payload = cfg.payload;
    report.inflight = cfg.inflight;
    Ok(report)
}

fn send_request(
    sock: &UdpSocket,
    buf: &mut [u8],
    payload: usize,
    slot_index: usize,
    slot: &mut Slot,
) -> io::Result<()> {
    if payload >= TAG_LEN {
        buf[..4].copy_from_slice(&(slot_index as u32).to_le_bytes());
        buf[4..8].copy_from_slice(&slot.generation.to_le_bytes());
    }
    slot.sent_at = Instant::now();
    match sock.send(&buf[..payload]) {
        Ok(_) => Ok(()),
        // Transient: the retry timer sends it again.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The slot an answer belongs to, if it is the answer to a live request.
fn match_answer(data: &[u8], payload: usize, slots: &[Slot]) -> Option<usize> {
    if data.len() != payload {
        return None;
    }
    if payload < TAG_LEN {
        return Some(0);
    }
    let i = u32::from_le_bytes(data[..4].try_into().ok()?) as usize;
    let generation = u32::from_le_bytes(data[4..8].try_into().ok()?);
    (i < slots.len() && slots[i].generation == generation).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_against_a_local_kernel_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        server
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 2048];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut b) {
                    server.send_to(&b[..n], from).unwrap();
                }
            }
        });
        let cfg = UdpEchoConfig {
            target,
            bind: "127.0.0.1:0".parse().unwrap(),
            payload: 64,
            inflight: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(20),
        };
        let r = run_kernel_client(&cfg).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        assert!(r.completed > 100, "{}", r.summary());
        assert!(r.p50_ns > 0 && r.p50_ns <= r.p99_ns && r.p99_ns <= r.max_ns);
    }

    #[test]
    fn refuses_untaggable_pipelining() {
        let cfg = UdpEchoConfig {
            target: "127.0.0.1:9".parse().unwrap(),
            bind: "127.0.0.1:0".parse().unwrap(),
            payload: 1,
            inflight: 2,
            duration: Duration::from_millis(10),
            warmup: Duration::ZERO,
        };
        assert_eq!(
            run_kernel_client(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
