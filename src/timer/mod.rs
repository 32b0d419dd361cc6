//! Timers: a hierarchical timing wheel with O(1) insert and cancel.
//!
//! This module owns the shard's timer wheel ([`TimerWheel`]). It knows
//! nothing of TCP: each connection keeps its own small table of deadlines
//! (retransmit, persist, delayed ACK, keepalive, TIME_WAIT) and the shard's
//! wheel holds one entry per connection, its earliest deadline. The wheel is
//! sans-IO like the protocol cores: it never reads a clock, the caller drives
//! it with [`TimerWheel::advance`] / [`TimerWheel::poll`] and asks
//! [`TimerWheel::next_deadline`] how long it may sleep.

mod wheel;

pub use wheel::{TimerHandle, TimerWheel, DEFAULT_RESOLUTION, LEVELS, SLOTS};
