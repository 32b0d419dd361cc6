//! UDP echo load generator on xdpstack itself: one AF_XDP socket (queue 0)
//! in shared mode, one shard, and a run-to-completion handler that keeps
//! `inflight` requests outstanding. Each answer is turned around in place
//! as the next request (new tag, checksums recomputed in the batched
//! pass), so the client does no allocation or copy per request.
//!
//! Payloads start with a tag (slot u32, generation u32) so that a late
//! answer to a request already given up on is not counted. Latency is
//! measured with the monotonic clock at nanosecond resolution (the stack's
//! own `Instant` has microseconds).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket as KernelUdp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use hdrhistogram::Histogram;

use super::{new_histogram, Report};
use crate::api::udp::{UdpHandler, UdpRx, UdpSend, Verdict};
use crate::icmp::AddressMode;
use crate::neighbor::read_kernel_routes;
use crate::ports::{self, FlowKey, PortConfig, PortService, Protocol};
use crate::shard::{Binding, Shard, ShardConfig};
use crate::time::Instant;
use crate::worker::{iface_ipv4, iface_mac_mtu, open_link, run_until_done, LoopConfig};
use crate::xdp::{AttachMode, PollMode, Proto, Steering, XsConfig, XskConfig};

/// A request is given up on and sent again after this long.
const RETRY_AFTER: Duration = Duration::from_millis(200);
const TAG_LEN: usize = 8;
/// Give up if nothing at all was answered by then.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often `poll` scans the slots for retries and the end of the run.
/// The worker calls `poll` every loop iteration (a few hundred ns apart
/// when busy-polling); reading the clock and scanning every slot each time
/// was the largest cost of an idle iteration, while retries are due only
/// after `RETRY_AFTER` and answers detect the end of the run themselves.
const POLL_EVERY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct XdpClientConfig {
    pub iface: String,
    pub target: SocketAddrV4,
    pub payload: usize,
    pub inflight: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub attach: AttachMode,
    pub poll: PollMode,
}

struct Slot {
    generation: u32,
    sent_at: Option<StdInstant>,
}

struct Outcome {
    hist: Histogram<u64>,
    completed: u64,
    lost: u64,
    elapsed: Duration,
    answered: bool,
}

/// The client handler: see the module docs.
struct Client {
    target: SocketAddrV4,
    payload: usize,
    slots: Vec<Slot>,
    start: StdInstant,
    measure_from: StdInstant,
    end: StdInstant,
    hist: Histogram<u64>,
    completed: u64,
    lost: u64,
    answered: bool,
    /// `poll` does nothing before this (the worker's clock).
    next_poll: Instant,
    done: Arc<AtomicBool>,
    out: Arc<Mutex<Option<Outcome>>>,
}

impl Client {
    /// Writes request `slot`'s payload (tag, then filler) into `b`.
    fn fill(&self, slot: usize, b: &mut [u8]) {
        b.fill(0x5a);
        if self.payload >= TAG_LEN {
            b[0..4].copy_from_slice(&(slot as u32).to_be_bytes());
            b[4..8].copy_from_slice(&self.slots[slot].generation.to_be_bytes());
        }
    }

    fn finish(&mut self, now: StdInstant) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.measure_from);
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(Outcome {
            hist: self.hist.clone(),
            completed: self.completed,
            lost: self.lost,
            elapsed,
            answered: self.answered,
        });
        self.done.store(true, Ordering::Relaxed);
    }
}

impl UdpHandler for Client {
    fn on_datagram(&mut self, _now: Instant, rx: UdpRx<'_>, _tx: &mut dyn UdpSend) -> Verdict {
        let t = StdInstant::now();
        if rx.src != self.target || rx.payload.len() != self.payload {
            return Verdict::Done;
        }
        let (slot, generation) = if self.payload >= TAG_LEN {
            let s = u32::from_be_bytes(rx.payload[0..4].try_into().expect("4 bytes")) as usize;
            let g = u32::from_be_bytes(rx.payload[4..8].try_into().expect("4 bytes"));
            (s, g)
        } else {
            (0, self.slots[0].generation)
        };
        let Some(s) = self.slots.get_mut(slot) else {
            return Verdict::Done;
        };
        let Some(sent) = s.sent_at else {
            return Verdict::Done;
        };
        if s.generation != generation {
            return Verdict::Done;
        }
        self.answered = true;
        if t >= self.measure_from {
            let _ = self.hist.record(t.duration_since(sent).as_nanos() as u64);
            self.completed += 1;
        }
        if t >= self.end {
            s.sent_at = None;
            self.finish(t);
            return Verdict::Done;
        }
        // The answer becomes the next request of this slot, in place; it
        // leaves with this batch's kick, after `t`, so `t` is its send time.
        s.generation = s.generation.wrapping_add(1);
        s.sent_at = Some(t);
        if self.payload >= TAG_LEN {
            rx.payload[4..8].copy_from_slice(&s.generation.to_be_bytes());
        }
        Verdict::Reply(self.payload)
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn UdpSend) {
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + POLL_EVERY;
        let t = StdInstant::now();
        if t >= self.end {
            self.finish(t);
            return;
        }
        if !self.answered && t.duration_since(self.start) > FIRST_ANSWER_TIMEOUT {
            self.finish(t);
            return;
        }
        for i in 0..self.slots.len() {
            let due = match self.slots[i].sent_at {
                None => true,
                Some(at) => t.duration_since(at) > RETRY_AFTER,
            };
            if !due {
                continue;
            }
            if self.slots[i].sent_at.is_some() {
                if self.answered {
                    self.lost += 1;
                }
                self.slots[i].generation = self.slots[i].generation.wrapping_add(1);
            }
            let this = &*self;
            let r = tx.send_with(self.target, self.payload, &mut |b| this.fill(i, b));
            match r {
                Ok(()) => self.slots[i].sent_at = Some(t),
                // No frame or no route yet: try again next iteration.
                Err(_) => {
                    self.next_poll = now;
                    return;
                }
            }
        }
    }
}

/// Asks the kernel to resolve `ip`'s MAC (shared mode: ARP is the
/// kernel's), by sending one datagram to its discard port.
pub(crate) fn prime_kernel_arp(ip: Ipv4Addr) {
    if let Ok(s) = KernelUdp::bind("0.0.0.0:0") {
        let _ = s.send_to(b"", SocketAddrV4::new(ip, 9));
    }
}

/// Runs the client until `cfg.duration` has passed (or `stop` is set).
pub fn run(cfg: &XdpClientConfig, stop: &AtomicBool) -> io::Result<Report> {
    if cfg.payload < TAG_LEN && cfg.inflight > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "payloads under 8 bytes cannot carry a tag: use --inflight 1",
        ));
    }
    let (mac, mtu) = iface_mac_mtu(&cfg.iface)?;
    let ip = iface_ipv4(&cfg.iface)?;
    let kernel_range =
        ports::read_kernel_local_port_range().unwrap_or(ports::PortRange::KERNEL_DEFAULT_LOCAL);
    let ephemeral = ports::choose_ephemeral_range(kernel_range, None)?;
    let mut ps = PortService::new(PortConfig {
        ephemeral,
        ..PortConfig::new(1)
    })?;
    let flow = FlowKey {
        local_addr: ip,
        remote_addr: *cfg.target.ip(),
        remote_port: cfg.target.port(),
    };
    let port = ps.allocate(Protocol::Udp, 0, flow)?;

    prime_kernel_arp(*cfg.target.ip());
    let steering = Steering::attach(&cfg.iface, cfg.attach).map_err(io::Error::other)?;
    let maps = steering.maps().clone();
    maps.set_config(XsConfig::SHARED)
        .map_err(io::Error::other)?;
    let xc = XskConfig {
        poll: cfg.poll,
        ..XskConfig::new(&cfg.iface, 0)
    };
    let mut link = open_link(&xc, &maps).map_err(io::Error::other)?;
    let now = Instant::now_monotonic();
    let mut scfg = ShardConfig::new(AddressMode::Shared, ip, mac, mtu);
    scfg.routes = read_kernel_routes(&cfg.iface).unwrap_or_default();
    let mut shard: Shard<crate::xdp::Frame> = Shard::new(scfg, now);

    let done = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(None));
    let start = StdInstant::now();
    let client = Client {
        target: cfg.target,
        payload: cfg.payload,
        slots: (0..cfg.inflight)
            .map(|_| Slot {
                generation: 0,
                sent_at: None,
            })
            .collect(),
        start,
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
        hist: new_histogram(),
        completed: 0,
        lost: 0,
        answered: false,
        next_poll: Instant::ZERO,
        done: done.clone(),
        out: out.clone(),
    };
    shard
        .bind_udp(port, Binding::Handler(Box::new(client)))
        .map_err(io::Error::from)?;
    maps.add_port(Proto::Udp, port).map_err(io::Error::other)?;

    let lc = LoopConfig {
        worker: 0,
        queue: 0,
        core: None,
        poll: cfg.poll,
        stats_every: None,
        kernel_neighbors: Some(cfg.iface.clone()),
    };
    run_until_done(&lc, &mut link, &mut shard, &done, stop);
    let _ = maps.remove_port(Proto::Udp, port);
    drop(link);
    let _ = steering.detach();
    let o = out
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Interrupted, "stopped"))?;
    if !o.answered {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {}", cfg.target),
        ));
    }
    let mut r = Report::from_histogram("udp-echo", &o.hist, o.elapsed, o.completed, o.lost);
    r.client = "xdpstack".into();
    r.payload = cfg.payload;
    r.inflight = cfg.inflight;
    Ok(r)
}
