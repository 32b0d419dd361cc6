//! A seeded fault injector around any link.
//!
//! [`FaultInjector`] is a link itself. Each direction it is enabled for
//! (receive and/or transmit) passes every frame through the same stages, in
//! this order, each drawing from that direction's own generator:
//!
//! 1. drop with probability `drop`;
//! 2. corrupt with probability `corrupt`: one random byte gets a random
//!    non-zero XOR, so the frame always changes;
//! 3. duplicate with probability `duplicate` (the copy needs a free frame
//!    from the inner link; without one the duplicate is skipped and counted);
//! 4. the bandwidth limit: frames are serialised at `bandwidth` bytes per
//!    second behind the frames already queued; a frame that would push the
//!    queue beyond `queue_limit` bytes is tail-dropped;
//! 5. delay with probability `delay`: extra latency uniform in
//!    `[0, max_delay]`;
//! 6. reorder with probability `reorder`: the frame is held back until
//!    `reorder_gap` later frames have passed it, or `reorder_hold` has
//!    elapsed when traffic stops.
//!
//! Same seed, same configuration and same calls give the same behaviour.
//! Held frames go out on a later `recv_batch`/`send_batch` call once due;
//! [`Link::poll_at`] says when. Dropping the injector returns every held
//! frame to the inner link, so no frame leaks.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use super::rng::Rng;
use super::{FrameBuf, Link};
use crate::time::{Duration, Instant};

/// Fault probabilities and limits for one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    pub drop: f64,
    pub corrupt: f64,
    pub duplicate: f64,
    pub reorder: f64,
    /// Frames that overtake a reordered frame.
    pub reorder_gap: u32,
    /// Longest a reordered frame waits for others to overtake it.
    pub reorder_hold: Duration,
    pub delay: f64,
    /// Largest extra latency of a delayed frame.
    pub max_delay: Duration,
    /// Bytes per second; `None` for no limit.
    pub bandwidth: Option<u64>,
    /// Bytes the bandwidth-limited queue holds before tail-dropping.
    pub queue_limit: usize,
}

impl Default for FaultConfig {
    /// No faults at all.
    fn default() -> Self {
        FaultConfig {
            drop: 0.0,
            corrupt: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_gap: 1,
            reorder_hold: Duration::from_millis(10),
            delay: 0.0,
            max_delay: Duration::from_millis(10),
            bandwidth: None,
            queue_limit: 64 * 1024,
        }
    }
}

impl FaultConfig {
    fn is_noop(&self) -> bool {
        self.drop <= 0.0
            && self.corrupt <= 0.0
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
            && self.delay <= 0.0
            && self.bandwidth.is_none()
    }
}

/// What happened to the frames of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames that entered the injector.
    pub frames_in: u64,
    /// Frames that left it (duplicates included).
    pub frames_out: u64,
    pub dropped: u64,
    pub corrupted: u64,
    pub duplicated: u64,
    /// Duplicates skipped because the inner link had no free frame.
    pub duplicate_failed: u64,
    pub reordered: u64,
    pub delayed: u64,
    /// Frames tail-dropped by the bandwidth limit's queue.
    pub dropped_queue_full: u64,
}

/// A frame waiting for its release time.
struct Timed<F> {
    at: Instant,
    seq: u64,
    /// Later frames that must go out before this one.
    overtakers: u32,
    frame: F,
}

impl<F> PartialEq for Timed<F> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<F> Eq for Timed<F> {}
impl<F> PartialOrd for Timed<F> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<F> Ord for Timed<F> {
    /// Reversed: `BinaryHeap` pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The fault state of one direction.
struct Direction<F> {
    config: FaultConfig,
    enabled: bool,
    rng: Rng,
    stats: FaultStats,
    seq: u64,
    /// Frames not yet due.
    waiting: BinaryHeap<Timed<F>>,
    /// Due frames held for reordering, waiting for overtakers.
    held: Vec<Timed<F>>,
    /// Due frames not yet handed out (a receive batch was full).
    ready: VecDeque<F>,
    /// (departure, bytes) of frames in the bandwidth queue.
    shaper: VecDeque<(Instant, usize)>,
    shaper_bytes: usize,
    busy_until: Instant,
    /// The time of the last release, when `ready` was filled.
    now: Instant,
}

impl<F: FrameBuf> Direction<F> {
    fn new(config: FaultConfig, enabled: bool, rng: Rng) -> Self {
        Direction {
            config,
            enabled: enabled && !config.is_noop(),
            rng,
            stats: FaultStats::default(),
            seq: 0,
            waiting: BinaryHeap::new(),
            held: Vec::new(),
            ready: VecDeque::new(),
            shaper: VecDeque::new(),
            shaper_bytes: 0,
            busy_until: Instant::ZERO,
            now: Instant::ZERO,
        }
    }

    /// Run one frame through the stages; it ends released or waiting.
    fn admit<L: Link<Frame = F>>(&mut self, inner: &mut L, now: Instant, mut frame: F) {
        self.stats.frames_in += 1;
        let c = self.config;
        if self.rng.chance(c.drop) {
            self.stats.dropped += 1;
            inner.release(frame);
            return;
        }
        if self.rng.chance(c.corrupt) {
            let data = frame.data_mut();
            if !data.is_empty() {
                let at = self.rng.gen_range(0..data.len() as u64) as usize;
                data[at] ^= self.rng.gen_range(1..256) as u8;
                self.stats.corrupted += 1;
            }
        }
        let copy = if self.rng.chance(c.duplicate) {
            match inner.alloc_tx() {
                Some(mut copy) => {
                    let len = frame.data().len().min(copy.capacity());
                    copy.set_len(len);
                    copy.data_mut().copy_from_slice(&frame.data()[..len]);
                    self.stats.duplicated += 1;
                    Some(copy)
                }
                None => {
                    self.stats.duplicate_failed += 1;
                    None
                }
            }
        } else {
            None
        };
        self.schedule(inner, now, frame);
        if let Some(copy) = copy {
            self.schedule(inner, now, copy);
        }
    }

    /// Stages 4 to 6 for one frame.
    fn schedule<L: Link<Frame = F>>(&mut self, inner: &mut L, now: Instant, frame: F) {
        let c = self.config;
        let mut at = now;
        if let Some(bps) = c.bandwidth.filter(|&b| b > 0) {
            while let Some(&(departure, bytes)) = self.shaper.front() {
                if departure > now {
                    break;
                }
                self.shaper.pop_front();
                self.shaper_bytes -= bytes;
            }
            let len = frame.data().len();
            if self.shaper_bytes + len > c.queue_limit {
                self.stats.dropped_queue_full += 1;
                inner.release(frame);
                return;
            }
            let on_wire = Duration::from_micros((len as u64 * 1_000_000).div_ceil(bps));
            self.busy_until = now.max(self.busy_until) + on_wire;
            self.shaper.push_back((self.busy_until, len));
            self.shaper_bytes += len;
            at = self.busy_until;
        }
        if self.rng.chance(c.delay) {
            let max = c.max_delay.as_micros() as u64;
            at += Duration::from_micros(self.rng.gen_range(0..max + 1));
            self.stats.delayed += 1;
        }
        let overtakers = if self.rng.chance(c.reorder) {
            self.stats.reordered += 1;
            c.reorder_gap.max(1)
        } else {
            0
        };
        self.seq += 1;
        self.waiting.push(Timed {
            at,
            seq: self.seq,
            overtakers,
            frame,
        });
    }

    /// Move every frame due at `now` to `ready`, in order.
    fn release_due(&mut self, now: Instant) {
        self.now = now;
        while self.waiting.peek().is_some_and(|t| t.at <= now) {
            let Some(mut t) = self.waiting.pop() else {
                break;
            };
            if t.overtakers > 0 {
                // Its hold runs from the time it would have left.
                t.at += self.config.reorder_hold;
                self.held.push(t);
                continue;
            }
            self.emit(t.frame);
        }
        // Held frames whose hold expired without enough traffic.
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].at <= now {
                let t = self.held.remove(i);
                self.emit(t.frame);
            } else {
                i += 1;
            }
        }
    }

    /// Hand out one frame, letting it overtake every held frame.
    fn emit(&mut self, frame: F) {
        self.stats.frames_out += 1;
        self.ready.push_back(frame);
        let mut i = 0;
        while i < self.held.len() {
            self.held[i].overtakers -= 1;
            if self.held[i].overtakers == 0 {
                let t = self.held.remove(i);
                self.stats.frames_out += 1;
                self.ready.push_back(t.frame);
            } else {
                i += 1;
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let waiting = self.waiting.peek().map(|t| t.at);
        let held = self.held.iter().map(|t| t.at).min();
        match (waiting, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn release_all<L: Link<Frame = F>>(&mut self, inner: &mut L) {
        for t in self.waiting.drain() {
            inner.release(t.frame);
        }
        for t in self.held.drain(..) {
            inner.release(t.frame);
        }
        for f in self.ready.drain(..) {
            inner.release(f);
        }
    }
}

/// Which directions a [`FaultInjector`] acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    Rx,
    Tx,
    Both,
}

/// A link that injects seeded faults into another.
pub struct FaultInjector<L: Link> {
    inner: L,
    rx: Direction<L::Frame>,
    tx: Direction<L::Frame>,
    scratch: Vec<L::Frame>,
}

impl<L: Link> FaultInjector<L> {
    /// Wrap `inner`, applying `config` in the directions `apply` names.
    pub fn new(inner: L, seed: u64, config: FaultConfig, apply: Apply) -> Self {
        let mut rng = Rng::new(seed);
        let rx_rng = rng.fork();
        let tx_rng = rng.fork();
        FaultInjector {
            inner,
            rx: Direction::new(config, matches!(apply, Apply::Rx | Apply::Both), rx_rng),
            tx: Direction::new(config, matches!(apply, Apply::Tx | Apply::Both), tx_rng),
            scratch: Vec::new(),
        }
    }

    pub fn rx_stats(&self) -> FaultStats {
        self.rx.stats
    }

    pub fn tx_stats(&self) -> FaultStats {
        self.tx.stats
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Frames held inside the injector (delayed, reordered, queued).
    pub fn held_frames(&self) -> usize {
        let d = |d: &Direction<L::Frame>| d.waiting.len() + d.held.len() + d.ready.len();
        d(&self.rx) + d(&self.tx)
    }

    /// Return every held frame (delayed, reordered, queued, or received and
    /// not yet handed out) to the inner link, as if dropped.
    pub fn release_held(&mut self) {
        self.rx.release_all(&mut self.inner);
        self.tx.release_all(&mut self.inner);
        self.rx.shaper.clear();
        self.rx.shaper_bytes = 0;
        self.tx.shaper.clear();
        self.tx.shaper_bytes = 0;
    }

    /// Send the transmit frames due at `now` to the inner link.
    fn flush_tx(&mut self, now: Instant) {
        if !self.tx.enabled {
            return;
        }
        self.tx.release_due(now);
        if self.tx.ready.is_empty() {
            return;
        }
        self.scratch.extend(self.tx.ready.drain(..));
        self.inner.send_batch(now, &mut self.scratch);
    }
}

impl<L: Link> Link for FaultInjector<L> {
    type Frame = L::Frame;

    fn recv_batch(&mut self, now: Instant, out: &mut Vec<L::Frame>, max: usize) -> usize {
        self.flush_tx(now);
        if !self.rx.enabled {
            let n = self.inner.recv_batch(now, out, max);
            self.rx.stats.frames_in += n as u64;
            self.rx.stats.frames_out += n as u64;
            return n;
        }
        // Only pull what this call can hand out, so frames left behind by
        // duplicates wait in the inner link rather than pile up here.
        let mut batch = std::mem::take(&mut self.scratch);
        let want = max.saturating_sub(self.rx.ready.len());
        if want > 0 {
            self.inner.recv_batch(now, &mut batch, want);
        }
        for frame in batch.drain(..) {
            self.rx.admit(&mut self.inner, now, frame);
        }
        self.scratch = batch;
        self.rx.release_due(now);
        let n = max.min(self.rx.ready.len());
        out.extend(self.rx.ready.drain(..n));
        n
    }

    fn alloc_tx(&mut self) -> Option<L::Frame> {
        self.inner.alloc_tx()
    }

    fn send_batch(&mut self, now: Instant, frames: &mut Vec<L::Frame>) {
        if !self.tx.enabled {
            self.tx.stats.frames_in += frames.len() as u64;
            self.tx.stats.frames_out += frames.len() as u64;
            self.inner.send_batch(now, frames);
            return;
        }
        for frame in frames.drain(..) {
            self.tx.admit(&mut self.inner, now, frame);
        }
        self.flush_tx(now);
    }

    fn release(&mut self, frame: L::Frame) {
        self.inner.release(frame);
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn poll_at(&self) -> Option<Instant> {
        let mut at = self.inner.poll_at();
        for t in [self.rx.next_event(), self.tx.next_event()]
            .into_iter()
            .flatten()
        {
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        if !self.rx.ready.is_empty() {
            // Due frames a full batch left behind: receivable at once.
            at = Some(self.rx.now);
        }
        at
    }
}

impl<L: Link> Drop for FaultInjector<L> {
    fn drop(&mut self) {
        self.release_held();
    }
}
