//! Deterministic bottleneck simulation for congestion control and loss
//! recovery: bulk senders push through one drop-tail link (rate, queue
//! limit, one-way delay) with seeded random loss and optional reordering;
//! ACKs come back after the same delay without loss. A virtual clock jumps
//! to the next event, so every run is reproducible from its seed.
//!
//! Checks: goodput near the Mathis et al. model at 0.1%, 1% and 5% loss,
//! SACK recovery ahead of NewReno without SACK, no retransmission-timeout
//! storm under reordering by three segments, and a Jain fairness index of at
//! least 0.9 for two flows of the same algorithm.
//!
//! `CC_SIM_TRACE=1` prints each run's figures.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use xdpstack::phy::rng::Rng;
use xdpstack::tcp::congestion::Algorithm;
use xdpstack::tcp::{Config, Connection, FourTuple, IsnKey, State};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::tcp::TcpRepr;

/// IPv4 + TCP header bytes with timestamps, for serialisation time.
const HEADER_BYTES: usize = 52;
const MSS: u16 = 1448;

#[derive(Debug, Clone, Copy)]
struct Path {
    /// Bottleneck rate, bits per second.
    rate_bps: u64,
    /// One-way propagation delay.
    delay: Duration,
    /// Drop-tail queue limit in packets.
    queue: usize,
    /// Random loss probability on the data path.
    loss: f64,
    /// Probability that a data packet is held back behind the next three.
    reorder: f64,
}

#[derive(Debug, Clone, Copy)]
struct FlowSpec {
    alg: Algorithm,
    sack: bool,
    /// When the flow opens.
    start: Instant,
}

/// A segment in flight with its payload owned.
struct InFlight {
    flow: usize,
    to_receiver: bool,
    repr: TcpRepr<'static>,
    payload: Vec<u8>,
}

struct Flow {
    spec: FlowSpec,
    tuple: FourTuple,
    key_r: IsnKey,
    snd: Option<Connection>,
    rcv: Option<Connection>,
    /// Bytes the receiving application read, and the count at warm-up end.
    delivered: u64,
    delivered_at_warmup: u64,
}

struct Sim {
    path: Path,
    rng: Rng,
    now: Instant,
    flows: Vec<Flow>,
    /// Deliveries ordered by (time, id).
    events: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    packets: Vec<Option<InFlight>>,
    next_id: u64,
    /// When the bottleneck finishes serialising what it holds.
    link_free: Instant,
    /// Departure times of queued packets (queue occupancy).
    queued: VecDeque<Instant>,
    drops_queue: u64,
    drops_random: u64,
    chunk: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct FlowResult {
    goodput_bps: f64,
    timeouts: u64,
    fast_retransmits: u64,
    retransmits: u64,
    spurious_undos: u64,
    tlp_probes: u64,
}

impl Sim {
    fn new(path: Path, specs: &[FlowSpec], seed: u64) -> Sim {
        let flows = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| Flow {
                spec: *spec,
                tuple: FourTuple {
                    local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000 + i as u16),
                    remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5001),
                },
                key_r: IsnKey::from_parts(seed, 100 + i as u64),
                snd: None,
                rcv: None,
                delivered: 0,
                delivered_at_warmup: 0,
            })
            .collect();
        Sim {
            path,
            rng: Rng::new(seed),
            now: Instant::ZERO,
            flows,
            events: BinaryHeap::new(),
            packets: Vec::new(),
            next_id: 0,
            link_free: Instant::ZERO,
            queued: VecDeque::new(),
            drops_queue: 0,
            drops_random: 0,
            chunk: vec![0x5a; 64 * 1024],
        }
    }

    fn config(spec: &FlowSpec) -> Config {
        Config {
            mss: MSS,
            sack: spec.sack,
            congestion: spec.alg,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            ..Config::default()
        }
    }

    fn schedule(&mut self, at: Instant, p: InFlight) {
        let id = self.next_id;
        self.next_id += 1;
        self.packets.push(Some(p));
        self.events.push(Reverse((at, id, self.packets.len() - 1)));
    }

    /// A segment leaves an end: ACKs travel back after the delay; data goes
    /// through random loss, the drop-tail queue and the link.
    fn send(&mut self, p: InFlight) {
        if !p.to_receiver {
            let at = self.now + self.path.delay;
            self.schedule(at, p);
            return;
        }
        if !p.payload.is_empty() && self.rng.chance(self.path.loss) {
            self.drops_random += 1;
            return;
        }
        while self.queued.front().is_some_and(|&t| t <= self.now) {
            self.queued.pop_front();
        }
        if self.queued.len() >= self.path.queue {
            self.drops_queue += 1;
            return;
        }
        let bits = ((p.payload.len() + HEADER_BYTES) * 8) as u64;
        let tx = Duration::from_nanos(bits * 1_000_000_000 / self.path.rate_bps);
        let depart = self.link_free.max(self.now) + tx;
        self.link_free = depart;
        self.queued.push_back(depart);
        let mut at = depart + self.path.delay;
        if !p.payload.is_empty() && self.rng.chance(self.path.reorder) {
            // Overtaken by the next three full-sized packets.
            let full = ((MSS as usize + HEADER_BYTES) * 8) as u64;
            at += Duration::from_nanos(full * 3_500_000_000 / self.path.rate_bps);
        }
        self.schedule(at, p);
    }

    fn open_and_feed(&mut self) {
        let now = self.now;
        for f in &mut self.flows {
            if f.snd.is_none() && now >= f.spec.start {
                let key = IsnKey::from_parts(7, f.tuple.local.port() as u64);
                f.snd = Some(Connection::connect(
                    Self::config(&f.spec),
                    f.tuple,
                    now,
                    &key,
                ));
            }
            if let Some(c) = f.snd.as_mut() {
                while c.can_send() {
                    match c.send(&self.chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            if let Some(c) = f.rcv.as_mut() {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c.recv(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    f.delivered += n as u64;
                }
            }
        }
    }

    fn transmit(&mut self) {
        let now = self.now;
        let mut out = Vec::new();
        for (i, f) in self.flows.iter_mut().enumerate() {
            for (to_receiver, conn) in [(true, f.snd.as_mut()), (false, f.rcv.as_mut())] {
                if let Some(c) = conn {
                    c.poll_transmit(now, |r| {
                        out.push(InFlight {
                            flow: i,
                            to_receiver,
                            repr: TcpRepr { payload: &[], ..*r },
                            payload: r.payload.to_vec(),
                        });
                        true
                    });
                }
            }
        }
        for p in out {
            self.send(p);
        }
    }

    fn deliver(&mut self, p: InFlight) {
        let now = self.now;
        let seg = TcpRepr {
            payload: &p.payload,
            ..p.repr
        };
        let f = &mut self.flows[p.flow];
        if p.to_receiver {
            match f.rcv.as_mut() {
                Some(c) => {
                    let _ = c.on_segment(now, &seg);
                }
                None if seg.flags.syn() && !seg.flags.ack() => {
                    let cfg = Self::config(&f.spec);
                    f.rcv = Some(Connection::accept_syn(
                        cfg,
                        f.tuple.reversed(),
                        now,
                        &f.key_r,
                        &seg,
                    ));
                }
                None => {}
            }
        } else if let Some(c) = f.snd.as_mut() {
            let _ = c.on_segment(now, &seg);
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.events.peek().map(|Reverse((at, _, _))| *at);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        for f in &self.flows {
            consider(f.snd.as_ref().and_then(|c| c.poll_timeout()));
            consider(f.rcv.as_ref().and_then(|c| c.poll_timeout()));
            if f.snd.is_none() {
                consider(Some(f.spec.start));
            }
        }
        t
    }

    /// Run until `end`; goodput counts from `warmup` on.
    fn run(&mut self, warmup: Instant, end: Instant) -> Vec<FlowResult> {
        let mut warmed = false;
        loop {
            self.open_and_feed();
            self.transmit();
            if !warmed && self.now >= warmup {
                warmed = true;
                for f in &mut self.flows {
                    f.delivered_at_warmup = f.delivered;
                }
            }
            let Some(next) = self.next_time() else { break };
            if next >= end {
                break;
            }
            self.now = next.max(self.now);
            while let Some(&Reverse((at, _, idx))) = self.events.peek() {
                if at > self.now {
                    break;
                }
                self.events.pop();
                if let Some(p) = self.packets[idx].take() {
                    self.deliver(p);
                }
            }
            // Keep the packet slab from growing without bound.
            if self.events.is_empty() {
                self.packets.clear();
            }
        }
        let secs = (end - warmup).as_secs_f64();
        let trace = std::env::var_os("CC_SIM_TRACE").is_some();
        self.flows
            .iter()
            .map(|f| {
                let c = f.snd.as_ref().expect("flow opened");
                assert!(
                    matches!(c.state(), State::Established),
                    "flow still established"
                );
                let k = c.counters();
                let r = FlowResult {
                    goodput_bps: (f.delivered - f.delivered_at_warmup) as f64 * 8.0 / secs,
                    timeouts: k.timeouts,
                    fast_retransmits: k.fast_retransmits,
                    retransmits: k.retransmits,
                    spurious_undos: k.spurious_undos,
                    tlp_probes: k.tlp_probes,
                };
                if trace {
                    println!(
                        "{} sack={} loss={} reorder={}: {:.2} Mbit/s, RTOs {}, recoveries {}, \
                         retransmits {}, undone {}, probes {} (drops: queue {} random {})",
                        f.spec.alg,
                        f.spec.sack,
                        self.path.loss,
                        self.path.reorder,
                        r.goodput_bps / 1e6,
                        r.timeouts,
                        r.fast_retransmits,
                        r.retransmits,
                        r.spurious_undos,
                        r.tlp_probes,
                        self.drops_queue,
                        self.drops_random
                    );
                }
                r
            })
            .collect()
    }
}

fn one_flow(path: Path, alg: Algorithm, sack: bool, seed: u64, secs: u64) -> FlowResult {
    let spec = FlowSpec {
        alg,
        sack,
        start: Instant::ZERO,
    };
    let mut sim = Sim::new(path, &[spec], seed);
    sim.run(Instant::from_secs(2), Instant::from_secs(2 + secs))[0]
}

/// Mathis et al. (1997): BW = (MSS / RTT) * sqrt(3/2) / sqrt(p), bits/s.
fn mathis_bps(mss: usize, rtt: Duration, p: f64) -> f64 {
    (mss as f64 * 8.0 / rtt.as_secs_f64()) * (1.5f64).sqrt() / p.sqrt()
}

/// A fast path (200 Mbit/s, 20 ms RTT, deep queue) where only random loss
/// limits the window.
fn lossy_path(loss: f64) -> Path {
    Path {
        rate_bps: 200_000_000,
        delay: Duration::from_millis(10),
        queue: 1000,
        loss,
        reorder: 0.0,
    }
}

#[test]
fn goodput_tracks_mathis_model() {
    // The Mathis model ignores timeouts and slow start, so it overestimates
    // at high loss; the stated bands (fraction of the model's figure) are:
    // 0.1% and 1%: [0.5, 1.6]; 5% (timeouts are frequent): [0.25, 1.6].
    let rtt = Duration::from_millis(20);
    for alg in [Algorithm::NewReno, Algorithm::Cubic] {
        for (p, lo) in [(0.001, 0.5), (0.01, 0.5), (0.05, 0.25)] {
            let seeds = [1u64, 2, 3];
            let mean = seeds
                .iter()
                .map(|&s| one_flow(lossy_path(p), alg, true, s, 30).goodput_bps)
                .sum::<f64>()
                / seeds.len() as f64;
            let model = mathis_bps(MSS as usize, rtt, p);
            let ratio = mean / model;
            println!(
                "{alg} p={p}: {:.2} Mbit/s, model {:.2} Mbit/s, ratio {ratio:.2}",
                mean / 1e6,
                model / 1e6
            );
            assert!(
                ratio >= lo && ratio <= 1.6,
                "{alg} at loss {p}: goodput {:.2} Mbit/s is {ratio:.2} of the model",
                mean / 1e6
            );
        }
    }
}

#[test]
fn sack_recovery_beats_newreno_without_sack() {
    // Bursts of loss: slow start overshoots a 50 Mbit/s, 80 ms RTT path
    // with a queue of 60 packets (a third of the BDP), and the drop-tail
    // queue overflows again at the end of each congestion-avoidance cycle;
    // 0.1% random loss on top. Without SACK, NewReno repairs one hole per
    // round trip (RFC 6582); with SACK, RACK and NextSeg repair them all in
    // about one. Counted from the start, 20 s per run, three seeds.
    let path = Path {
        rate_bps: 50_000_000,
        delay: Duration::from_millis(40),
        queue: 60,
        loss: 0.001,
        reorder: 0.0,
    };
    let mut with = 0.0;
    let mut without = 0.0;
    let mut rto_with = 0;
    let mut rto_without = 0;
    for seed in [11u64, 12, 13] {
        let run = |sack| {
            let spec = FlowSpec {
                alg: Algorithm::NewReno,
                sack,
                start: Instant::ZERO,
            };
            Sim::new(path, &[spec], seed).run(Instant::ZERO, Instant::from_secs(20))[0]
        };
        let w = run(true);
        let wo = run(false);
        println!("seed {seed}: SACK {w:?}\n   no SACK {wo:?}");
        with += w.goodput_bps;
        without += wo.goodput_bps;
        rto_with += w.timeouts;
        rto_without += wo.timeouts;
    }
    assert!(
        rto_with <= rto_without,
        "SACK {rto_with} RTOs vs {rto_without}"
    );
    println!(
        "SACK {:.2} Mbit/s vs no SACK {:.2} Mbit/s (sums over seeds)",
        with / 1e6,
        without / 1e6
    );
    assert!(with > without * 1.1, "SACK {with} vs no SACK {without}");
}

#[test]
fn reordering_by_three_segments_causes_no_rto_storm() {
    // 20 Mbit/s, 20 ms RTT, queue of one BDP (35 packets), no loss, 2% of
    // data packets overtaken by the next three.
    for alg in [Algorithm::NewReno, Algorithm::Cubic] {
        let path = Path {
            rate_bps: 20_000_000,
            delay: Duration::from_millis(10),
            queue: 35,
            loss: 0.0,
            reorder: 0.02,
        };
        let r = one_flow(path, alg, true, 21, 20);
        println!("{alg} reordering: {r:?}");
        assert!(
            r.timeouts <= 1,
            "{alg}: {} RTOs under reordering",
            r.timeouts
        );
        // About 680 packets are reordered in 20 s; RACK's reordering window
        // keeps most of them from being resent (counting three duplicate
        // ACKs, over 500 were).
        assert!(
            r.retransmits < 250,
            "{alg}: {} retransmissions",
            r.retransmits
        );
        assert!(
            r.fast_retransmits < 60,
            "{alg}: {} recoveries",
            r.fast_retransmits
        );
        assert!(
            r.goodput_bps > 0.5 * path.rate_bps as f64,
            "{alg}: {:.2} Mbit/s of 20",
            r.goodput_bps / 1e6
        );
    }
}

#[test]
fn two_flows_share_the_bottleneck_fairly() {
    for alg in [Algorithm::NewReno, Algorithm::Cubic] {
        let path = Path {
            rate_bps: 20_000_000,
            delay: Duration::from_millis(10),
            queue: 50,
            loss: 0.0,
            reorder: 0.0,
        };
        let specs = [
            FlowSpec {
                alg,
                sack: true,
                start: Instant::ZERO,
            },
            FlowSpec {
                alg,
                sack: true,
                start: Instant::from_millis(1500),
            },
        ];
        let mut sim = Sim::new(path, &specs, 31);
        let r = sim.run(Instant::from_secs(10), Instant::from_secs(70));
        let x: Vec<f64> = r.iter().map(|f| f.goodput_bps).collect();
        let sum: f64 = x.iter().sum();
        let sq: f64 = x.iter().map(|v| v * v).sum();
        let jain = sum * sum / (x.len() as f64 * sq);
        println!(
            "{alg} fairness: {:.2} + {:.2} Mbit/s, Jain {jain:.3}",
            x[0] / 1e6,
            x[1] / 1e6
        );
        assert!(jain >= 0.9, "{alg}: Jain index {jain:.3}");
        assert!(sum > 0.7 * path.rate_bps as f64, "{alg}: link underused");
    }
}
