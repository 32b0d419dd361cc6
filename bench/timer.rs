//! Timer wheel against a `BinaryHeap` timer queue, side by side.
//!
//! Both queues hold `n` pending timers (1k, 100k, 1M) with deadlines spread
//! uniformly over the next 30 s at 1 ms resolution (TCP retransmit, delayed
//! ACK, keepalive and TIME_WAIT timers fall in that span). The heap queue is
//! the usual alternative: a `BinaryHeap` of `(deadline, index, generation)`
//! with a slab for O(1) lazy cancellation, sweeping stale entries once they
//! outnumber live ones (the same policy as the wheel).
//!
//! - `insert`: one insert with `n` pending (the inserted timers are cancelled
//!   again outside the timed region, in chunks).
//! - `cancel`: one cancel with `n` pending (the timers are inserted outside
//!   the timed region).
//! - `expire`: cost per fired timer in steady state: the clock advances in
//!   1 ms steps, every fired timer is re-armed 1 ms..30 s ahead so `n` stays
//!   pending. Includes the re-arm and the per-step cost of empty ticks.
//!
//! Run: `cargo bench --bench timer -- --warm-up-time 1 --measurement-time 2`

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use xdpstack::time::{Duration, Instant};
use xdpstack::timer::{TimerHandle, TimerWheel};

const SPAN_MICROS: u64 = 30_000_000;
const CHUNK: usize = 1024;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A deadline 1 ms..30 s after `now`.
    fn deadline(&mut self, now: Instant) -> Instant {
        now + Duration::from_micros(1000 + self.next() % SPAN_MICROS)
    }
}

/// The comparison: a binary heap with lazy cancellation through a slab.
struct HeapQueue {
    resolution: u64,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// (generation, value) per slot; `None` when free.
    slab: Vec<(u32, Option<u64>)>,
    free: Vec<u32>,
    live: usize,
}

#[derive(Clone, Copy)]
struct HeapHandle(u32, u32);

impl HeapQueue {
    fn new() -> Self {
        HeapQueue {
            resolution: 1000,
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    fn insert(&mut self, deadline: Instant, value: u64) -> HeapHandle {
        let when = deadline.total_micros().div_ceil(self.resolution);
        let index = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize].1 = Some(value);
                i
            }
            None => {
                self.slab.push((0, Some(value)));
                (self.slab.len() - 1) as u32
            }
        };
        let generation = self.slab[index as usize].0;
        self.heap.push(Reverse((when, index, generation)));
        self.live += 1;
        HeapHandle(index, generation)
    }

    fn cancel(&mut self, h: HeapHandle) -> Option<u64> {
        let slot = self.slab.get_mut(h.0 as usize)?;
        if slot.0 != h.1 {
            return None;
        }
        let value = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(h.0);
        self.live -= 1;
        if self.heap.len() - self.live > self.live.max(1024) {
            let slab = &self.slab;
            self.heap
                .retain(|Reverse((_, i, g))| slab[*i as usize].0 == *g);
        }
        Some(value)
    }

    fn poll(&mut self, now: Instant) -> Option<u64> {
        let now_tick = now.total_micros() / self.resolution;
        while let Some(&Reverse((when, index, generation))) = self.heap.peek() {
            if when > now_tick {
                return None;
            }
            self.heap.pop();
            let slot = &mut self.slab[index as usize];
            if slot.0 == generation {
                if let Some(v) = slot.1.take() {
                    slot.0 = slot.0.wrapping_add(1);
                    self.free.push(index);
                    self.live -= 1;
                    return Some(v);
                }
            }
        }
        None
    }
}

/// The operations the benchmark needs from either queue.
trait Queue {
    type Handle: Copy;
    fn insert(&mut self, deadline: Instant, value: u64) -> Self::Handle;
    fn cancel(&mut self, h: Self::Handle) -> Option<u64>;
    fn poll(&mut self, now: Instant) -> Option<u64>;
}

impl Queue for TimerWheel<u64> {
    type Handle = TimerHandle;
    fn insert(&mut self, deadline: Instant, value: u64) -> TimerHandle {
        TimerWheel::insert(self, deadline, value)
    }
    fn cancel(&mut self, h: TimerHandle) -> Option<u64> {
        TimerWheel::cancel(self, h)
    }
    fn poll(&mut self, now: Instant) -> Option<u64> {
        TimerWheel::poll(self, now).map(|(_, v)| v)
    }
}

impl Queue for HeapQueue {
    type Handle = HeapHandle;
    fn insert(&mut self, deadline: Instant, value: u64) -> HeapHandle {
        HeapQueue::insert(self, deadline, value)
    }
    fn cancel(&mut self, h: HeapHandle) -> Option<u64> {
        HeapQueue::cancel(self, h)
    }
    fn poll(&mut self, now: Instant) -> Option<u64> {
        HeapQueue::poll(self, now)
    }
}

const START: Instant = Instant::from_secs(1);

fn filled<Q: Queue>(mut q: Q, n: usize, rng: &mut SplitMix) -> Q {
    for i in 0..n {
        q.insert(rng.deadline(START), i as u64);
    }
    q
}

fn time_inserts<Q: Queue>(q: &mut Q, rng: &mut SplitMix, iters: u64) -> StdDuration {
    let mut total = StdDuration::ZERO;
    let mut deadlines = Vec::with_capacity(CHUNK);
    let mut handles = Vec::with_capacity(CHUNK);
    let mut left = iters;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        deadlines.clear();
        deadlines.extend((0..k).map(|_| rng.deadline(START)));
        let t = std::time::Instant::now();
        for (i, d) in deadlines.iter().enumerate() {
            handles.push(q.insert(*d, i as u64));
        }
        total += t.elapsed();
        for h in handles.drain(..) {
            black_box(q.cancel(h));
        }
        left -= k as u64;
    }
    total
}

fn time_cancels<Q: Queue>(q: &mut Q, rng: &mut SplitMix, iters: u64) -> StdDuration {
    let mut total = StdDuration::ZERO;
    let mut handles = Vec::with_capacity(CHUNK);
    let mut left = iters;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        for i in 0..k {
            handles.push(q.insert(rng.deadline(START), i as u64));
        }
        let t = std::time::Instant::now();
        for h in handles.iter() {
            black_box(q.cancel(*h));
        }
        total += t.elapsed();
        handles.clear();
        left -= k as u64;
    }
    total
}

/// Advance 1 ms at a time from `*now`, re-arming what fires, until `iters`
/// timers have fired; returns the time taken.
fn time_expiry<Q: Queue>(
    q: &mut Q,
    now: &mut Instant,
    rng: &mut SplitMix,
    iters: u64,
) -> StdDuration {
    let mut fired = 0u64;
    let t = std::time::Instant::now();
    while fired < iters {
        *now += Duration::from_millis(1);
        while let Some(v) = q.poll(*now) {
            fired += 1;
            q.insert(rng.deadline(*now), black_box(v));
        }
    }
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    for n in [1_000usize, 100_000, 1_000_000] {
        let mut group = c.benchmark_group("timer/insert");
        group.sample_size(10);
        let mut rng = SplitMix(n as u64);
        let mut wheel = filled(TimerWheel::<u64>::new(START), n, &mut rng);
        group.bench_function(BenchmarkId::new("wheel", n), |b| {
            b.iter_custom(|iters| time_inserts(&mut wheel, &mut rng, iters))
        });
        drop(wheel);
        let mut heap = filled(HeapQueue::new(), n, &mut rng);
        group.bench_function(BenchmarkId::new("heap", n), |b| {
            b.iter_custom(|iters| time_inserts(&mut heap, &mut rng, iters))
        });
        drop(heap);
        group.finish();

        let mut group = c.benchmark_group("timer/cancel");
        group.sample_size(10);
        let mut wheel = filled(TimerWheel::<u64>::new(START), n, &mut rng);
        group.bench_function(BenchmarkId::new("wheel", n), |b| {
            b.iter_custom(|iters| time_cancels(&mut wheel, &mut rng, iters))
        });
        drop(wheel);
        let mut heap = filled(HeapQueue::new(), n, &mut rng);
        group.bench_function(BenchmarkId::new("heap", n), |b| {
            b.iter_custom(|iters| time_cancels(&mut heap, &mut rng, iters))
        });
        drop(heap);
        group.finish();

        let mut group = c.benchmark_group("timer/expire");
        group.sample_size(10);
        let mut wheel = filled(
            TimerWheel::<u64>::with_resolution(START, Duration::from_millis(1)),
            n,
            &mut rng,
        );
        let mut now = START;
        group.bench_function(BenchmarkId::new("wheel", n), |b| {
            b.iter_custom(|iters| time_expiry(&mut wheel, &mut now, &mut rng, iters))
        });
        drop(wheel);
        let mut heap = filled(HeapQueue::new(), n, &mut rng);
        let mut now = START;
        group.bench_function(BenchmarkId::new("heap", n), |b| {
            b.iter_custom(|iters| time_expiry(&mut heap, &mut now, &mut rng, iters))
        });
        drop(heap);
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
