//! The fault injector over the in-memory pair: determinism per seed, each
//! fault observed at about its configured rate on 10k frames, and no frame
//! leaked.
//!
//! Rates are checked against binomial bounds of about five standard
//! deviations, so a correct injector fails with negligible probability while
//! a fault applied at the wrong rate (or not at all) fails.

use std::cell::Cell;
use std::rc::Rc;

use xdpstack::phy::fault::{Apply, FaultConfig, FaultInjector, FaultStats};
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::time::{Duration, Instant};

const FRAMES: u64 = 10_000;
const FRAME_LEN: usize = 100;
/// Base one-way delay of the memory link.
const LINK_DELAY: u64 = 100;

fn payload(id: u64, sent_at: u64) -> Vec<u8> {
    let mut v = vec![0u8; FRAME_LEN];
    v[0..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&sent_at.to_le_bytes());
    // A pattern depending on every bit of the id and the send time, so any
    // corrupted byte makes the frame inconsistent.
    let mut z = id ^ sent_at.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    for (i, b) in v[16..].iter_mut().enumerate() {
        *b = z.to_le_bytes()[i % 8].wrapping_add(i as u8);
    }
    v
}

#[derive(Debug, PartialEq)]
struct Arrival {
    at: u64,
    data: Vec<u8>,
}

impl Arrival {
    fn id(&self) -> u64 {
        u64::from_le_bytes(self.data[0..8].try_into().unwrap())
    }
    fn sent_at(&self) -> u64 {
        u64::from_le_bytes(self.data[8..16].try_into().unwrap())
    }
    fn intact(&self) -> bool {
        self.data.len() == FRAME_LEN && self.data == payload(self.id(), self.sent_at())
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    arrivals: Vec<Arrival>,
    stats: FaultStats,
}

type Faulty = FaultInjector<MemoryLink>;

/// Send `FRAMES` frames from A to B, one every `gap` µs, with the faults on
/// B's receive side or A's transmit side; drain by jumping the clock to the
/// next event. Checks that no frame leaked.
fn run(seed: u64, cfg: FaultConfig, apply: Apply, gap: u64) -> Outcome {
    let mem = MemoryConfig {
        queue_frames: 2 * FRAMES as usize + 16,
        frames_per_end: 2 * FRAMES as usize + 16,
        delay: Duration::from_micros(LINK_DELAY),
        ..MemoryConfig::default()
    };
    let (a, b) = pair(mem);
    let (mut a, mut b): (Faulty, Faulty) = match apply {
        Apply::Tx => (
            FaultInjector::new(a, seed, cfg, Apply::Tx),
            FaultInjector::new(b, seed, FaultConfig::default(), Apply::Both),
        ),
        _ => (
            FaultInjector::new(a, seed, FaultConfig::default(), Apply::Both),
            FaultInjector::new(b, seed, cfg, apply),
        ),
    };
    let mut arrivals = Vec::new();
    let mut rx = Vec::new();
    let mut receive = |b: &mut Faulty, now: u64, arrivals: &mut Vec<Arrival>| {
        b.recv_batch(Instant::from_micros(now), &mut rx, 32);
        for f in rx.drain(..) {
            arrivals.push(Arrival {
                at: now,
                data: f.data().to_vec(),
            });
            b.release(f);
        }
    };
    let mut now = 0;
    for id in 0..FRAMES {
        let mut f = a.alloc_tx().expect("free frame");
        let p = payload(id, now);
        f.set_len(p.len());
        f.data_mut().copy_from_slice(&p);
        a.send_batch(Instant::from_micros(now), &mut vec![f]);
        receive(&mut b, now, &mut arrivals);
        now += gap;
    }
    let mut steps = 0;
    loop {
        let next = [a.poll_at(), b.poll_at()].into_iter().flatten().min();
        let Some(t) = next else { break };
        now = now.max(t.total_micros());
        // Let A release held transmit frames, then B receive.
        a.recv_batch(Instant::from_micros(now), &mut Vec::new(), 0);
        receive(&mut b, now, &mut arrivals);
        steps += 1;
        assert!(steps < 10 * FRAMES, "the links never go idle");
    }
    let stats = match apply {
        Apply::Tx => a.tx_stats(),
        _ => b.rx_stats(),
    };
    assert_eq!(a.held_frames() + b.held_frames(), 0);
    assert_eq!(a.inner().outstanding(), 0, "A leaked frames");
    assert_eq!(b.inner().outstanding(), 0, "B leaked frames");
    assert_eq!(stats.frames_in, FRAMES);
    assert_eq!(stats.frames_out, arrivals.len() as u64);
    Outcome { arrivals, stats }
}

/// Binomial bounds, about five standard deviations wide.
fn assert_rate(what: &str, count: u64, trials: u64, p: f64) {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    let (lo, hi) = (mean - 5.0 * sd, mean + 5.0 * sd);
    assert!(
        (count as f64) >= lo && (count as f64) <= hi,
        "{what}: {count} of {trials}, expected {mean:.0} (between {lo:.0} and {hi:.0})"
    );
}

fn only(f: impl FnOnce(&mut FaultConfig)) -> FaultConfig {
    let mut c = FaultConfig::default();
    f(&mut c);
    c
}

fn everything() -> FaultConfig {
    FaultConfig {
        drop: 0.05,
        corrupt: 0.02,
        duplicate: 0.05,
        reorder: 0.05,
        delay: 0.05,
        bandwidth: Some(4_000_000),
        queue_limit: 8 * 1024,
        ..FaultConfig::default()
    }
}

#[test]
fn same_seed_same_behaviour() {
    for apply in [Apply::Rx, Apply::Tx] {
        let a = run(7, everything(), apply, 20);
        let b = run(7, everything(), apply, 20);
        let c = run(8, everything(), apply, 20);
        assert_eq!(a, b, "{apply:?}: same seed diverged");
        assert_ne!(a.arrivals, c.arrivals, "{apply:?}: seed has no effect");
        // Every fault fired in this mixed run.
        let s = a.stats;
        for (name, n) in [
            ("dropped", s.dropped),
            ("corrupted", s.corrupted),
            ("duplicated", s.duplicated),
            ("reordered", s.reordered),
            ("delayed", s.delayed),
            ("queue drops", s.dropped_queue_full),
        ] {
            assert!(n > 0, "{apply:?}: no frame {name}");
        }
    }
}

#[test]
fn no_faults_is_transparent() {
    let out = run(1, FaultConfig::default(), Apply::Both, 10);
    assert_eq!(out.arrivals.len() as u64, FRAMES);
    for (i, a) in out.arrivals.iter().enumerate() {
        assert_eq!(a.id(), i as u64);
        assert!(a.intact());
        assert_eq!(a.at, a.sent_at() + LINK_DELAY);
    }
}

#[test]
fn drop_rate() {
    for apply in [Apply::Rx, Apply::Tx] {
        let out = run(11, only(|c| c.drop = 0.1), apply, 10);
        assert_rate("dropped", out.stats.dropped, FRAMES, 0.1);
        assert_eq!(out.arrivals.len() as u64, FRAMES - out.stats.dropped);
        assert!(out.arrivals.iter().all(Arrival::intact));
        assert!(out.arrivals.windows(2).all(|w| w[0].id() < w[1].id()));
    }
}

#[test]
fn duplicate_rate() {
    for apply in [Apply::Rx, Apply::Tx] {
        let out = run(12, only(|c| c.duplicate = 0.1), apply, 10);
        assert_rate("duplicated", out.stats.duplicated, FRAMES, 0.1);
        assert_eq!(out.stats.duplicate_failed, 0);
        let mut seen = vec![0u32; FRAMES as usize];
        for a in &out.arrivals {
            assert!(a.intact());
            seen[a.id() as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1 || n == 2));
        let twice = seen.iter().filter(|&&n| n == 2).count() as u64;
        assert_eq!(twice, out.stats.duplicated);
    }
}

#[test]
fn corrupt_rate() {
    for apply in [Apply::Rx, Apply::Tx] {
        let out = run(13, only(|c| c.corrupt = 0.1), apply, 10);
        assert_rate("corrupted", out.stats.corrupted, FRAMES, 0.1);
        assert_eq!(out.arrivals.len() as u64, FRAMES);
        let damaged = out.arrivals.iter().filter(|a| !a.intact()).count() as u64;
        assert_eq!(damaged, out.stats.corrupted);
    }
}

#[test]
fn reorder_rate() {
    for apply in [Apply::Rx, Apply::Tx] {
        let cfg = only(|c| {
            c.reorder = 0.1;
            c.reorder_gap = 2;
        });
        let out = run(14, cfg, apply, 10);
        assert_rate("reordered", out.stats.reordered, FRAMES, 0.1);
        let mut ids: Vec<u64> = out.arrivals.iter().map(Arrival::id).collect();
        // A frame is late when a higher id arrived before it.
        let mut max = None;
        let mut late = 0;
        for &id in &ids {
            if max.is_some_and(|m| id < m) {
                late += 1;
            }
            max = max.max(Some(id));
        }
        // Only the last frames can run out of overtakers and leave in order.
        assert!(late <= out.stats.reordered && late + 4 >= out.stats.reordered);
        ids.sort_unstable();
        assert_eq!(ids, (0..FRAMES).collect::<Vec<_>>());
    }
}

#[test]
fn delay_rate() {
    for apply in [Apply::Rx, Apply::Tx] {
        let cfg = only(|c| {
            c.delay = 0.1;
            c.max_delay = Duration::from_millis(5);
        });
        let out = run(15, cfg, apply, 10);
        assert_rate("delayed", out.stats.delayed, FRAMES, 0.1);
        assert_eq!(out.arrivals.len() as u64, FRAMES);
        let mut late = 0;
        for a in &out.arrivals {
            let latency = a.at - a.sent_at();
            assert!((LINK_DELAY..=LINK_DELAY + 5_000).contains(&latency));
            if latency > LINK_DELAY {
                late += 1;
            }
        }
        // An extra latency of exactly zero is possible but rare.
        assert!(late <= out.stats.delayed && late + 5 >= out.stats.delayed);
    }
}

#[test]
fn bandwidth_limit_serialises_and_tail_drops() {
    // 100-byte frames every 10 µs are 10 MB/s offered into 2 MB/s: each
    // frame takes 50 µs on the wire and the 4 kB queue overflows.
    let bps = 2_000_000;
    let cfg = only(|c| {
        c.bandwidth = Some(bps);
        c.queue_limit = 4096;
    });
    for apply in [Apply::Rx, Apply::Tx] {
        let out = run(16, cfg, apply, 10);
        let s = out.stats;
        assert!(s.dropped_queue_full > 0);
        assert_eq!(out.arrivals.len() as u64 + s.dropped_queue_full, FRAMES);
        // Roughly a fifth of the offered frames fit through.
        assert_rate("passed", out.arrivals.len() as u64, FRAMES, 0.2);
        let per_frame = (FRAME_LEN as u64 * 1_000_000).div_ceil(bps);
        for w in out.arrivals.windows(2) {
            assert!(w[0].id() < w[1].id());
            assert!(
                w[1].at >= w[0].at + per_frame,
                "frames {} and {} closer than the wire allows",
                w[0].id(),
                w[1].id()
            );
        }
        // Queueing delay never exceeds what the queue limit allows.
        let max_queue = (4096 / FRAME_LEN as u64 + 1) * per_frame;
        for a in &out.arrivals {
            assert!(a.at - a.sent_at() <= LINK_DELAY + max_queue + per_frame);
        }
    }
}

/// A link that only counts the frames it has handed out.
struct CountingLink {
    outstanding: Rc<Cell<usize>>,
}

struct Frame(Vec<u8>);

impl FrameBuf for Frame {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn set_len(&mut self, len: usize) {
        self.0.resize(len.min(64), 0);
    }
    fn capacity(&self) -> usize {
        64
    }
}

impl Link for CountingLink {
    type Frame = Frame;
    fn recv_batch(&mut self, _: Instant, _: &mut Vec<Frame>, _: usize) -> usize {
        0
    }
    fn alloc_tx(&mut self) -> Option<Frame> {
        self.outstanding.set(self.outstanding.get() + 1);
        Some(Frame(vec![1, 2, 3]))
    }
    fn send_batch(&mut self, _: Instant, frames: &mut Vec<Frame>) {
        self.outstanding.set(self.outstanding.get() - frames.len());
        frames.clear();
    }
    fn release(&mut self, _: Frame) {
        self.outstanding.set(self.outstanding.get() - 1);
    }
    fn max_frame_len(&self) -> usize {
        64
    }
}

#[test]
fn held_frames_go_back_to_the_inner_link() {
    let cfg = only(|c| {
        c.delay = 1.0;
        c.max_delay = Duration::from_secs(1);
        c.duplicate = 0.5;
        c.reorder = 0.5;
    });
    for release_explicitly in [false, true] {
        let count = Rc::new(Cell::new(0));
        let inner = CountingLink {
            outstanding: count.clone(),
        };
        let mut link = FaultInjector::new(inner, 3, cfg, Apply::Tx);
        for _ in 0..50 {
            let f = link.alloc_tx().unwrap();
            link.send_batch(Instant::ZERO, &mut vec![f]);
        }
        assert!(link.tx_stats().duplicated > 0);
        assert!(link.held_frames() > 50);
        assert_eq!(count.get(), link.held_frames());
        if release_explicitly {
            link.release_held();
            assert_eq!(link.held_frames(), 0);
            assert_eq!(count.get(), 0);
        }
        drop(link);
        assert_eq!(count.get(), 0, "frames leaked when the injector dropped");
    }
}
