//! Differential test of the timer wheel against a `BinaryHeap` reference
//! with lazy cancellation, on random insert / cancel / advance sequences.
//!
//! The reference orders timers by their deadline rounded up to the wheel's
//! tick; after every advance the wheel must have fired exactly the timers
//! the reference pops, none before its deadline and none a tick or more
//! after it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use proptest::prelude::*;
use xdpstack::time::{Duration, Instant};
use xdpstack::timer::{TimerHandle, TimerWheel};

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Cancel(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..3_000).prop_map(Op::Insert),
        3 => (0u64..200_000).prop_map(Op::Insert),
        2 => (0u64..100_000_000).prop_map(Op::Insert),
        1 => (0u64..(1 << 40)).prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::Cancel),
        3 => (0u64..5_000).prop_map(Op::Advance),
        1 => (0u64..50_000_000).prop_map(Op::Advance),
        1 => (0u64..(1 << 39)).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    Pending,
    Fired,
    Cancelled,
}

struct Model {
    res: u64,
    now: u64,
    wheel: TimerWheel<usize>,
    handles: Vec<TimerHandle>,
    deadlines: Vec<u64>,
    states: Vec<State>,
    /// Reference queue: (deadline rounded up to a tick, id); cancelled ids
    /// are skipped when popped.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    /// Cancelled ids still in `heap`.
    cancelled_queued: usize,
}

impl Model {
    fn new(res: u64, start: u64) -> Self {
        Model {
            res,
            now: start,
            wheel: TimerWheel::with_resolution(
                Instant::from_micros(start),
                Duration::from_micros(res),
            ),
            handles: Vec::new(),
            deadlines: Vec::new(),
            states: Vec::new(),
            heap: BinaryHeap::new(),
            cancelled_queued: 0,
        }
    }

    fn insert(&mut self, delay: u64) {
        let id = self.handles.len();
        let deadline = self.now + delay;
        let h = self.wheel.insert(Instant::from_micros(deadline), id);
        self.handles.push(h);
        self.deadlines.push(deadline);
        self.states.push(State::Pending);
        self.heap
            .push(Reverse((deadline.div_ceil(self.res) * self.res, id)));
    }

    fn cancel(&mut self, pick: usize) {
        if self.handles.is_empty() {
            return;
        }
        let id = pick % self.handles.len();
        let got = self.wheel.cancel(self.handles[id]);
        match self.states[id] {
            State::Pending => {
                assert_eq!(got, Some(id), "cancel of pending timer {id}");
                self.states[id] = State::Cancelled;
                self.cancelled_queued += 1;
            }
            _ => assert_eq!(got, None, "cancel of finished timer {id}"),
        }
    }

    fn advance_to(&mut self, now: u64) {
        self.now = now;
        let mut fired = Vec::new();
        self.wheel.advance(Instant::from_micros(now), &mut fired);
        let mut fired_ids = HashSet::new();
        for (h, id) in fired {
            assert_eq!(h, self.handles[id]);
            assert!(fired_ids.insert(id), "timer {id} fired twice");
            assert_eq!(
                self.states[id],
                State::Pending,
                "timer {id} fired when not pending"
            );
            let d = self.deadlines[id];
            assert!(d <= now, "timer {id} fired early: deadline {d}, now {now}");
            self.states[id] = State::Fired;
        }
        let mut expected = HashSet::new();
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.states[id] == State::Cancelled {
                self.cancelled_queued -= 1;
            } else {
                expected.insert(id);
            }
        }
        assert_eq!(
            fired_ids, expected,
            "fired set differs from the reference at {now}"
        );
        // Never a tick or more late: the earliest pending timer (the
        // reference's top once cancelled entries are dropped) is due later.
        while let Some(&Reverse((_, id))) = self.heap.peek() {
            if self.states[id] != State::Cancelled {
                break;
            }
            self.heap.pop();
            self.cancelled_queued -= 1;
        }
        if let Some(&Reverse((_, id))) = self.heap.peek() {
            let d = self.deadlines[id];
            assert!(
                d + self.res > now,
                "timer {id} (deadline {d}) still pending at {now}"
            );
        }
        self.check_next_deadline();
    }

    /// Call right after `advance_to`, when the heap's top is pending.
    fn check_next_deadline(&self) {
        let earliest = self.heap.peek().map(|Reverse((t, _))| *t);
        let pending = self.heap.len() - self.cancelled_in_heap();
        assert_eq!(self.wheel.len(), pending);
        match (self.wheel.next_deadline(), earliest) {
            (None, None) => {}
            (Some(t), Some(e)) => {
                let t = t.total_micros();
                assert!(t <= e, "next_deadline {t} after earliest deadline {e}");
                assert!(t > self.now, "next_deadline {t} not after now {}", self.now);
            }
            (got, want) => panic!("next_deadline {got:?}, earliest pending {want:?}"),
        }
    }

    fn cancelled_in_heap(&self) -> usize {
        self.cancelled_queued
    }

    /// Jump from deadline to deadline, as a simulation would, until empty.
    fn drain(&mut self) {
        let mut steps = 0;
        while let Some(t) = self.wheel.next_deadline() {
            self.advance_to(t.total_micros().max(self.now));
            steps += 1;
            assert!(steps < 100_000, "drain does not converge");
        }
        assert!(self.states.iter().all(|s| *s != State::Pending));
        assert!(self
            .heap
            .iter()
            .all(|Reverse((_, id))| self.states[*id] == State::Cancelled));
    }
}

fn run(res: u64, start: u64, ops: &[Op]) {
    let mut m = Model::new(res, start);
    for op in ops {
        match *op {
            Op::Insert(d) => m.insert(d),
            Op::Cancel(i) => m.cancel(i),
            Op::Advance(d) => {
                let now = m.now + d;
                m.advance_to(now);
            }
        }
    }
    m.drain();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_matches_heap(
        res in prop_oneof![Just(1u64), Just(7), Just(1000)],
        start in prop_oneof![Just(0u64), 0u64..(1 << 42)],
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        run(res, start, &ops);
    }
}

#[test]
fn many_timers_with_churn() {
    // A long deterministic sequence with thousands of timers alive at once,
    // so stale-key sweeps and every level are exercised.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut m = Model::new(1000, 5_000_000);
    for _ in 0..60_000 {
        match next() % 10 {
            0..=4 => m.insert(next() % 20_000_000),
            5..=7 => m.cancel(next() as usize),
            _ => {
                let now = m.now + next() % 3_000;
                m.advance_to(now);
            }
        }
    }
    m.drain();
}

#[test]
fn deadline_at_the_end_of_the_range() {
    // Deadlines around the wheel's 2^36-tick range, from a current time just
    // before a range boundary, exercise the top level's wrap-around.
    let range = 1u64 << 36;
    for start in [range - 1, range - 2, 2 * range - 64, 5] {
        for delay in [1, 63, 64, range - 1, range, range + 1, 3 * range + 5] {
            let mut m = Model::new(1, start);
            m.insert(delay);
            m.insert(delay / 2);
            m.drain();
        }
    }
}
