//! The hierarchical timing wheel.
//!
//! Time is counted in ticks of a configurable resolution (default 1 ms, see
//! [`DEFAULT_RESOLUTION`]). The wheel has [`LEVELS`] levels of [`SLOTS`]
//! slots; a slot of level `l` spans `64^l` ticks, so the wheel covers `2^36`
//! ticks (about 795 days at 1 ms) ahead of its current time. A timer lives in
//! the level of the highest base-64 digit in which its deadline differs from
//! the wheel's current tick, in the slot given by that digit. Each level has
//! an `occupied: u64` bitmap, so the next non-empty slot is one rotate and
//! one `trailing_zeros`. When the wheel's time reaches a slot of level
//! `l > 0`, the slot's timers are re-inserted and fall to lower levels; a
//! level-0 slot's timers are due.
//!
//! Timers live in a slab of entries with generation counters; slots hold
//! `(deadline, index, generation)` keys. Carrying the deadline in the key
//! lets a slot cascade to lower levels without touching the slab (which is
//! cold in memory when a million timers are pending); the slab is read once,
//! when a key is due. Cancelling is O(1) and lazy: it frees the entry and
//! bumps its generation, leaving a stale key that is skipped when it comes
//! due. Stale keys are swept once they
//! outnumber live timers, which keeps memory within a constant factor of the
//! live set at amortised O(1) cost per cancel.
//!
//! Deadlines are rounded up to the next tick boundary, so a timer never
//! fires before its deadline and, if the caller advances at least once per
//! tick, at most one tick after it. Deadlines beyond the wheel's range are
//! parked in the top level at the end of the current range and re-inserted
//! when it is reached.

use crate::time::{Duration, Instant};

/// Slots per level.
pub const SLOTS: usize = 64;
/// Number of levels.
pub const LEVELS: usize = 6;

/// The default tick. TCP's finest timers (delayed ACK at tens of
/// milliseconds, RTO with a 200 ms to 1 s floor, RACK reordering windows of
/// a quarter RTT) need about millisecond precision; a finer tick only adds
/// cascading work, a coarser one delays ACKs measurably on a LAN.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_millis(1);

const SLOT_BITS: u32 = 6;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Ticks covered by the whole wheel, minus one: the mask of a top-level range.
const RANGE_MASK: u64 = (1u64 << (SLOT_BITS * LEVELS as u32)) - 1;

/// Names one inserted timer; stale once the timer fired or was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

impl TimerHandle {
    /// Slab index (for tables keyed by timer).
    pub fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slab entry when the timer was inserted.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

enum State<T> {
    Live { when: u64, value: T },
    Free { next_free: u32 },
}

struct Entry<T> {
    generation: u32,
    state: State<T>,
}

const NIL: u32 = u32::MAX;

/// A slot's reference to a timer: stale once the entry's generation moved.
#[derive(Clone, Copy)]
struct Key {
    when: u64,
    index: u32,
    generation: u32,
}

impl Key {
    fn handle(self) -> TimerHandle {
        TimerHandle {
            index: self.index,
            generation: self.generation,
        }
    }
}

/// A hierarchical timing wheel holding values of type `T`.
pub struct TimerWheel<T> {
    /// Microseconds per tick.
    resolution: u64,
    /// The wheel's current tick: every slot before it has been processed.
    elapsed: u64,
    occupied: [u64; LEVELS],
    /// `LEVELS * SLOTS` lists of keys, level-major.
    slots: Vec<Vec<Key>>,
    /// A tick no later than the earliest occupied slot's start (`u64::MAX`
    /// when none), so polling between expirations costs one comparison.
    next_tick: u64,
    /// Keys due at `elapsed`, not yet handed to the caller.
    due: Vec<Key>,
    entries: Vec<Entry<T>>,
    free_head: u32,
    live: usize,
    /// Keys in `slots` and `due` whose timer was cancelled.
    stale: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel at time `now` with the default resolution.
    pub fn new(now: Instant) -> Self {
        Self::with_resolution(now, DEFAULT_RESOLUTION)
    }

    /// An empty wheel at time `now` with a tick of `resolution` (at least
    /// one microsecond).
    pub fn with_resolution(now: Instant, resolution: Duration) -> Self {
        let resolution = (resolution.as_micros() as u64).max(1);
        TimerWheel {
            resolution,
            elapsed: now.total_micros() / resolution,
            next_tick: u64::MAX,
            occupied: [0; LEVELS],
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            due: Vec::new(),
            entries: Vec::new(),
            free_head: NIL,
            live: 0,
            stale: 0,
        }
    }

    /// The tick length.
    pub fn resolution(&self) -> Duration {
        Duration::from_micros(self.resolution)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Schedule `value` at `deadline`. A deadline at or before the wheel's
    /// current time is due at the next `poll`/`advance`.
    ///
    /// # Panics
    /// If more than `u32::MAX - 1` timers are pending at once.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerHandle {
        // Round up: firing at tick `when` is never before `deadline`.
        let when = deadline.total_micros().div_ceil(self.resolution);
        let handle = self.alloc(when, value);
        self.schedule(Key {
            when,
            index: handle.index,
            generation: handle.generation,
        });
        handle
    }

    /// Cancel a pending timer, returning its value; `None` if it already
    /// fired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let entry = self.entries.get_mut(handle.index as usize)?;
        if entry.generation != handle.generation || !matches!(entry.state, State::Live { .. }) {
            return None;
        }
        let value = self.free(handle.index);
        self.stale += 1;
        if self.stale > self.live.max(1024) {
            self.sweep();
        }
        Some(value)
    }

    /// True when `handle` names a pending timer.
    pub fn is_pending(&self, handle: TimerHandle) -> bool {
        self.entries.get(handle.index as usize).is_some_and(|e| {
            e.generation == handle.generation && matches!(e.state, State::Live { .. })
        })
    }

    /// The deadline of a pending timer, rounded up to its tick.
    pub fn deadline(&self, handle: TimerHandle) -> Option<Instant> {
        let e = self.entries.get(handle.index as usize)?;
        match e.state {
            State::Live { when, .. } if e.generation == handle.generation => {
                Some(self.instant_of(when))
            }
            _ => None,
        }
    }

    /// Move a pending timer to a new deadline, keeping its value. Returns
    /// the new handle, or `None` if the timer is no longer pending.
    pub fn reschedule(&mut self, handle: TimerHandle, deadline: Instant) -> Option<TimerHandle> {
        let value = self.cancel(handle)?;
        Some(self.insert(deadline, value))
    }

    /// When the caller should next call `advance`: a time no later than the
    /// earliest pending deadline rounded up to its tick. It may be earlier
    /// (the start of a higher-level slot whose timers then move down, or a
    /// slot holding only cancelled timers); `None` when the wheel is empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.live == 0 {
            return None;
        }
        if !self.due.is_empty() {
            return Some(self.instant_of(self.elapsed));
        }
        self.next_expiration()
            .map(|(_, _, tick)| self.instant_of(tick))
    }

    /// Next timer due at `now`, or `None` once every timer due at `now` has
    /// been returned. Timers come out in tick order. `now` must not go
    /// backwards; an earlier `now` is treated as the wheel's current time.
    pub fn poll(&mut self, now: Instant) -> Option<(TimerHandle, T)> {
        let now_tick = now.total_micros() / self.resolution;
        if now_tick < self.next_tick && self.due.is_empty() {
            self.elapsed = self.elapsed.max(now_tick);
            return None;
        }
        loop {
            while let Some(key) = self.due.pop() {
                if self.key_is_live(key) {
                    return Some((key.handle(), self.free(key.index)));
                }
                self.stale = self.stale.saturating_sub(1);
            }
            match self.next_expiration() {
                Some((level, slot, tick)) if tick <= now_tick => {
                    self.process_slot(level, slot, tick)
                }
                next => {
                    self.next_tick = next.map_or(u64::MAX, |(_, _, tick)| tick);
                    self.elapsed = self.elapsed.max(now_tick);
                    return None;
                }
            }
        }
    }

    /// Fire every timer due at `now`, appending `(handle, value)` to `out`;
    /// returns how many fired.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<(TimerHandle, T)>) -> usize {
        let before = out.len();
        while let Some(fired) = self.poll(now) {
            out.push(fired);
        }
        out.len() - before
    }

    fn instant_of(&self, tick: u64) -> Instant {
        Instant::from_micros(tick.saturating_mul(self.resolution))
    }

    /// The key names a pending timer. Comparing the deadline as well keeps
    /// a stale key whose generation has wrapped around from firing another
    /// timer early.
    fn key_is_live(&self, key: Key) -> bool {
        key_is_live(&self.entries, key)
    }

    fn alloc(&mut self, when: u64, value: T) -> TimerHandle {
        self.live += 1;
        let state = State::Live { when, value };
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            if let State::Free { next_free } = entry.state {
                self.free_head = next_free;
            }
            entry.state = state;
            return TimerHandle {
                index,
                generation: entry.generation,
            };
        }
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != NIL)
            .expect("timer wheel: more than u32::MAX - 1 timers pending");
        self.entries.push(Entry {
            generation: 0,
            state,
        });
        TimerHandle {
            index,
            generation: 0,
        }
    }

    /// Free a live entry, returning its value.
    fn free(&mut self, index: u32) -> T {
        self.live -= 1;
        let entry = &mut self.entries[index as usize];
        // A new generation makes every outstanding key to this entry stale.
        entry.generation = entry.generation.wrapping_add(1);
        let old = std::mem::replace(
            &mut entry.state,
            State::Free {
                next_free: self.free_head,
            },
        );
        self.free_head = index;
        match old {
            State::Live { value, .. } => value,
            State::Free { .. } => unreachable!("freeing a free timer entry"),
        }
    }

    /// Put a key in the slot for its tick, relative to `elapsed`.
    fn schedule(&mut self, key: Key) {
        let when = key.when;
        if when <= self.elapsed {
            self.due.push(key);
            return;
        }
        // At most one full range ahead; anything later is parked at the end
        // of that range and re-inserted from there. A deadline in the next
        // top-level range wraps into the top level's slots at or behind the
        // current one.
        let place = when.min(self.elapsed.saturating_add(RANGE_MASK));
        let level = level_for(self.elapsed, place).min(LEVELS - 1);
        let shift = level as u32 * SLOT_BITS;
        let slot = ((place >> shift) & SLOT_MASK) as usize;
        // The slot's start, wrapped top-level slots included.
        self.next_tick = self.next_tick.min(place >> shift << shift);
        self.occupied[level] |= 1 << slot;
        self.slots[level * SLOTS + slot].push(key);
    }

    /// The earliest occupied slot as `(level, slot, start tick)`. A lower
    /// level's slots all come before any occupied slot of a higher level,
    /// because they lie inside the higher level's current slot.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let now_slot = ((self.elapsed >> shift) & SLOT_MASK) as u32;
            // Search from the slot after the current one: the current slot
            // is only occupied in the top level, by wrapped deadlines.
            let from = (now_slot + 1) & SLOT_MASK as u32;
            let slot = (occupied.rotate_right(from).trailing_zeros() + from) as u64 & SLOT_MASK;
            let level_bits = shift + SLOT_BITS;
            let mut start = (self.elapsed >> level_bits << level_bits) + (slot << shift);
            if start <= self.elapsed {
                if level == LEVELS - 1 {
                    // A wrapped slot: it belongs to the next top-level range.
                    start = start.saturating_add(RANGE_MASK + 1);
                } else {
                    // Unreachable while the invariants hold; processing at
                    // once is still correct because every key is re-placed
                    // by its own deadline.
                    start = self.elapsed;
                }
            }
            return Some((level, slot as usize, start));
        }
        None
    }

    /// Advance to `tick`, the start of `(level, slot)`, and move its keys to
    /// `due` or to lower levels.
    fn process_slot(&mut self, level: usize, slot: usize, tick: u64) {
        self.elapsed = tick;
        self.occupied[level] &= !(1 << slot);
        let mut keys = std::mem::take(&mut self.slots[level * SLOTS + slot]);
        // Stale keys move down too; they are dropped when due, which spares
        // a slab read per key here.
        for key in keys.drain(..) {
            self.schedule(key);
        }
        // Re-inserted keys always land in a lower level or in `due`, never
        // back here; keep the emptied list's allocation.
        debug_assert!(self.slots[level * SLOTS + slot].is_empty());
        self.slots[level * SLOTS + slot] = keys;
    }

    /// Drop every stale key.
    fn sweep(&mut self) {
        let entries = &self.entries;
        let live = |key: &Key| key_is_live(entries, *key);
        for level in 0..LEVELS {
            let mut bits = self.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let list = &mut self.slots[level * SLOTS + slot];
                list.retain(live);
                if list.is_empty() {
                    self.occupied[level] &= !(1 << slot);
                }
            }
        }
        self.due.retain(live);
        self.stale = 0;
    }
}

fn key_is_live<T>(entries: &[Entry<T>], key: Key) -> bool {
    let e = &entries[key.index as usize];
    e.generation == key.generation
        && matches!(e.state, State::Live { when, .. } if when == key.when)
}

/// The level for a deadline `when > elapsed` within the wheel's range: the
/// base-64 digit of the highest bit in which the two differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn fire_all(w: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        let mut v: Vec<u32> = out.into_iter().map(|(_, v)| v).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn levels_follow_the_highest_differing_digit() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, RANGE_MASK), LEVELS - 1);
    }

    #[test]
    fn fires_at_the_tick_never_before() {
        let mut w = TimerWheel::new(ms(0));
        w.insert(Instant::from_micros(1500), 1);
        w.insert(ms(70), 2);
        w.insert(ms(5000), 3);
        assert_eq!(
            fire_all(&mut w, Instant::from_micros(1999)),
            Vec::<u32>::new()
        );
        assert_eq!(fire_all(&mut w, ms(2)), vec![1]);
        assert_eq!(w.next_deadline().map(|t| t <= ms(70)), Some(true));
        assert_eq!(fire_all(&mut w, ms(69)), Vec::<u32>::new());
        assert_eq!(fire_all(&mut w, ms(70)), vec![2]);
        assert_eq!(fire_all(&mut w, ms(4999)), Vec::<u32>::new());
        assert_eq!(fire_all(&mut w, ms(6000)), vec![3]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn cancel_is_once_and_handles_go_stale() {
        let mut w = TimerWheel::new(ms(0));
        let a = w.insert(ms(10), 1);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        let b = w.insert(ms(10), 2);
        // The slab entry is reused with a new generation.
        assert_eq!(a.index(), b.index());
        assert_ne!(a.generation(), b.generation());
        assert!(!w.is_pending(a));
        assert_eq!(fire_all(&mut w, ms(10)), vec![2]);
        assert_eq!(w.cancel(b), None);
    }

    #[test]
    fn reschedule_keeps_the_value_and_moves_the_deadline() {
        let mut w = TimerWheel::new(ms(0));
        let a = w.insert(ms(500), 4);
        assert_eq!(w.deadline(a), Some(ms(500)));
        let b = w.reschedule(a, Instant::from_micros(20_300)).unwrap();
        assert_eq!(w.deadline(a), None);
        assert_eq!(w.deadline(b), Some(ms(21)));
        assert_eq!(w.reschedule(a, ms(1)), None);
        assert_eq!(fire_all(&mut w, ms(20)), Vec::<u32>::new());
        assert_eq!(fire_all(&mut w, ms(21)), vec![4]);
        assert_eq!(fire_all(&mut w, ms(600)), Vec::<u32>::new());
    }

    #[test]
    fn past_deadlines_fire_on_next_poll() {
        let mut w = TimerWheel::new(ms(100));
        w.insert(ms(50), 7);
        assert_eq!(w.next_deadline(), Some(ms(100)));
        assert_eq!(fire_all(&mut w, ms(100)), vec![7]);
    }

    #[test]
    fn beyond_range_is_parked_and_reinserted() {
        let res = Duration::from_micros(1);
        let mut w = TimerWheel::with_resolution(Instant::ZERO, res);
        let far = Instant::from_micros(3 * (RANGE_MASK + 1) + 17);
        w.insert(far, 9);
        let mut now = Instant::ZERO;
        let mut steps = 0;
        while let Some(t) = w.next_deadline() {
            assert!(t <= far);
            now = t;
            let fired = fire_all(&mut w, now);
            steps += 1;
            if !fired.is_empty() {
                assert_eq!(fired, vec![9]);
                break;
            }
            assert!(steps < 100);
        }
        assert_eq!(now, far);
    }

    #[test]
    fn sweep_bounds_stale_keys() {
        let mut w = TimerWheel::new(ms(0));
        let keep = w.insert(ms(3_000_000), 0);
        for i in 0..10_000 {
            let h = w.insert(ms(1_000_000 + i), 1);
            w.cancel(h);
        }
        let keys: usize = w.slots.iter().map(Vec::len).sum();
        assert!(keys <= 1026, "{keys} keys left");
        assert!(w.is_pending(keep));
        assert_eq!(fire_all(&mut w, ms(3_000_000)), vec![0]);
    }
}
