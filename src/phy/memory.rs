//! An in-memory pair of links for tests and simulations.
//!
//! [`pair`] returns two ends joined by one bounded queue each way. A frame
//! sent at `now` is serialised at the configured bandwidth behind the frames
//! already on the wire, then travels for the configured delay; it becomes
//! receivable at `now >= t` for that delivery time `t`. Nothing reads a
//! clock and nothing is random, so a run is a function of its inputs;
//! [`MemoryLink::next_delivery`] tells a simulation where to jump its
//! virtual clock next.
//!
//! Frames are plain `Vec<u8>` buffers moved (not copied) from the sender to
//! the receiver. Each end bounds how many frames the application may hold at
//! once (as a UMEM would) and counts them, so a test can prove that every
//! frame handed out came back through `send_batch` or `release`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FrameBuf, Link};
use crate::time::{Duration, Instant};

/// Configuration of both directions of a pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryConfig {
    /// Frames in flight per direction; more are tail-dropped.
    pub queue_frames: usize,
    /// Largest frame, Ethernet header included.
    pub max_frame_len: usize,
    /// Frames each end's application may hold at once (allocated for
    /// transmission or received and not yet sent or released).
    pub frames_per_end: usize,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Serialisation rate in bytes per second; `None` for unlimited.
    pub bandwidth: Option<u64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            queue_frames: 1024,
            max_frame_len: 1514,
            frames_per_end: 4096,
            delay: Duration::ZERO,
            bandwidth: None,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Frames accepted onto the wire, and their bytes.
    pub sent_frames: u64,
    pub sent_bytes: u64,
    /// Frames handed to the receiving application, and their bytes.
    pub delivered_frames: u64,
    pub delivered_bytes: u64,
    /// Frames tail-dropped because `queue_frames` were in flight.
    pub dropped_queue_full: u64,
}

/// A frame of the in-memory link.
#[derive(Debug)]
pub struct MemoryFrame {
    buf: Vec<u8>,
    capacity: usize,
}

impl FrameBuf for MemoryFrame {
    fn data(&self) -> &[u8] {
        &self.buf
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    fn set_len(&mut self, len: usize) {
        self.buf.resize(len.min(self.capacity), 0);
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

struct Channel {
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// When the wire finishes serialising the last accepted frame.
    busy_until: Instant,
    stats: ChannelStats,
}

impl Channel {
    fn new() -> Self {
        Channel {
            queue: VecDeque::new(),
            busy_until: Instant::ZERO,
            stats: ChannelStats::default(),
        }
    }
}

struct Shared {
    /// `channels[i]` carries frames sent by end `i`.
    channels: [Channel; 2],
}

/// One end of an in-memory pair.
pub struct MemoryLink {
    shared: Arc<Mutex<Shared>>,
    end: usize,
    config: MemoryConfig,
    /// Frames the application holds right now.
    outstanding: usize,
    /// Spare buffers, reused so steady-state traffic does not allocate.
    pool: Vec<Vec<u8>>,
}

/// Two links joined back to back.
pub fn pair(config: MemoryConfig) -> (MemoryLink, MemoryLink) {
    let shared = Arc::new(Mutex::new(Shared {
        channels: [Channel::new(), Channel::new()],
    }));
    let end = |end| MemoryLink {
        shared: shared.clone(),
        end,
        config,
        outstanding: 0,
        pool: Vec::new(),
    };
    (end(0), end(1))
}

impl MemoryLink {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means a test already panicked; its state is still
        // consistent (every update is a few field writes), so keep going.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivery time of the next frame headed to this end, receivable or
    /// not; `None` when nothing is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.lock().channels[1 - self.end]
            .queue
            .front()
            .map(|f| f.0)
    }

    /// Frames in flight towards this end.
    pub fn in_flight(&self) -> usize {
        self.lock().channels[1 - self.end].queue.len()
    }

    /// Counters of the direction this end sends on.
    pub fn tx_stats(&self) -> ChannelStats {
        self.lock().channels[self.end].stats
    }

    /// Counters of the direction this end receives on.
    pub fn rx_stats(&self) -> ChannelStats {
        self.lock().channels[1 - self.end].stats
    }

    /// Frames the application holds (allocated or received, not yet sent
    /// or released); zero when nothing leaked.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < self.config.frames_per_end {
            buf.clear();
            self.pool.push(buf);
        }
    }
}

impl Link for MemoryLink {
    type Frame = MemoryFrame;

    fn recv_batch(&mut self, now: Instant, out: &mut Vec<MemoryFrame>, max: usize) -> usize {
        let room = self.config.frames_per_end - self.outstanding;
        let max = max.min(room);
        let capacity = self.config.max_frame_len;
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let channel = &mut shared.channels[1 - self.end];
        let mut n = 0;
        while n < max {
            match channel.queue.front() {
                Some((t, _)) if *t <= now => {}
                _ => break,
            }
            let Some((_, buf)) = channel.queue.pop_front() else {
                break;
            };
            channel.stats.delivered_frames += 1;
            channel.stats.delivered_bytes += buf.len() as u64;
            out.push(MemoryFrame { buf, capacity });
            n += 1;
        }
        drop(shared);
        self.outstanding += n;
        n
    }

    fn alloc_tx(&mut self) -> Option<MemoryFrame> {
        if self.outstanding >= self.config.frames_per_end {
            return None;
        }
        self.outstanding += 1;
        let capacity = self.config.max_frame_len;
        let buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity));
        Some(MemoryFrame { buf, capacity })
    }

    fn send_batch(&mut self, now: Instant, frames: &mut Vec<MemoryFrame>) {
        let config = self.config;
        let mut dropped = Vec::new();
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let channel = &mut shared.channels[self.end];
            for frame in frames.drain(..) {
                self.outstanding -= 1;
                if channel.queue.len() >= config.queue_frames {
                    channel.stats.dropped_queue_full += 1;
                    dropped.push(frame.buf);
                    continue;
                }
                let len = frame.buf.len() as u64;
                let start = now.max(channel.busy_until);
                let on_wire = match config.bandwidth {
                    Some(bps) if bps > 0 => Duration::from_micros((len * 1_000_000).div_ceil(bps)),
                    _ => Duration::ZERO,
                };
                channel.busy_until = start + on_wire;
                channel.stats.sent_frames += 1;
                channel.stats.sent_bytes += len;
                channel
                    .queue
                    .push_back((channel.busy_until + config.delay, frame.buf));
            }
        }
        for buf in dropped {
            self.recycle(buf);
        }
    }

    fn release(&mut self, frame: MemoryFrame) {
        self.outstanding -= 1;
        self.recycle(frame.buf);
    }

    fn max_frame_len(&self) -> usize {
        self.config.max_frame_len
    }

    fn poll_at(&self) -> Option<Instant> {
        self.next_delivery()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(link: &mut MemoryLink, now: Instant, bytes: &[u8]) {
        let mut f = link.alloc_tx().expect("free frame");
        f.set_len(bytes.len());
        f.data_mut().copy_from_slice(bytes);
        link.send_batch(now, &mut vec![f]);
    }

    #[test]
    fn frames_cross_in_order_after_delay() {
        let cfg = MemoryConfig {
            delay: Duration::from_millis(5),
            ..MemoryConfig::default()
        };
        let (mut a, mut b) = pair(cfg);
        send(&mut a, Instant::ZERO, b"one");
        send(&mut a, Instant::from_millis(1), b"two");
        let mut out = Vec::new();
        assert_eq!(b.recv_batch(Instant::from_millis(4), &mut out, 8), 0);
        assert_eq!(b.next_delivery(), Some(Instant::from_millis(5)));
        assert_eq!(b.recv_batch(Instant::from_millis(6), &mut out, 8), 2);
        assert_eq!(out[0].data(), b"one");
        assert_eq!(out[1].data(), b"two");
        for f in out.drain(..) {
            b.release(f);
        }
        assert_eq!(b.outstanding(), 0);
        assert_eq!(a.outstanding(), 0);
        assert_eq!(a.tx_stats().sent_frames, 2);
        assert_eq!(b.rx_stats().delivered_bytes, 6);
        assert_eq!(b.next_delivery(), None);
    }

    #[test]
    fn bandwidth_serialises_frames() {
        // 1000 bytes per second: a 10-byte frame takes 10 ms on the wire.
        let cfg = MemoryConfig {
            bandwidth: Some(1000),
            ..MemoryConfig::default()
        };
        let (mut a, b) = pair(cfg);
        send(&mut a, Instant::ZERO, &[0; 10]);
        send(&mut a, Instant::ZERO, &[0; 10]);
        assert_eq!(b.next_delivery(), Some(Instant::from_millis(10)));
        let mut b = b;
        let mut out = Vec::new();
        assert_eq!(b.recv_batch(Instant::from_millis(10), &mut out, 8), 1);
        assert_eq!(b.next_delivery(), Some(Instant::from_millis(20)));
        b.release(out.pop().unwrap());
    }

    #[test]
    fn full_queue_tail_drops_and_pool_is_bounded() {
        let cfg = MemoryConfig {
            queue_frames: 2,
            frames_per_end: 3,
            ..MemoryConfig::default()
        };
        let (mut a, _b) = pair(cfg);
        for _ in 0..3 {
            send(&mut a, Instant::ZERO, b"x");
        }
        assert_eq!(a.tx_stats().dropped_queue_full, 1);
        assert_eq!(a.tx_stats().sent_frames, 2);
        let held: Vec<_> = (0..3).map(|_| a.alloc_tx().unwrap()).collect();
        assert!(a.alloc_tx().is_none());
        for f in held {
            a.release(f);
        }
        assert_eq!(a.outstanding(), 0);
    }
}
