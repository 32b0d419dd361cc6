//! The in-memory pair under random operation sequences: every frame sent is
//! delivered, in flight or counted as dropped; frames arrive in order, never
//! before their delivery time; the application-held frame count returns to
//! zero (nothing leaks); `next_delivery` always names the next arrival.

use proptest::prelude::*;
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryFrame, MemoryLink};
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    /// End, number of frames, length.
    Send(usize, usize, usize),
    /// End, batch size.
    Recv(usize, usize),
    /// Allocate a frame and keep it for a while.
    Hold(usize),
    /// Release the frames held by an end.
    ReleaseHeld(usize),
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 1..6usize, 0..1600usize).prop_map(|(e, n, l)| Op::Send(e, n, l)),
        3 => (0..2usize, 0..8usize).prop_map(|(e, n)| Op::Recv(e, n)),
        1 => (0..2usize).prop_map(Op::Hold),
        1 => (0..2usize).prop_map(Op::ReleaseHeld),
        2 => (0u64..2_000).prop_map(Op::Tick),
    ]
}

fn config() -> impl Strategy<Value = MemoryConfig> {
    (
        1..16usize,
        2..32usize,
        0u64..500,
        prop::option::of(10_000u64..10_000_000),
    )
        .prop_map(
            |(queue_frames, frames_per_end, delay, bandwidth)| MemoryConfig {
                queue_frames,
                frames_per_end,
                delay: Duration::from_micros(delay),
                bandwidth,
                ..MemoryConfig::default()
            },
        )
}

struct End {
    link: MemoryLink,
    held: Vec<MemoryFrame>,
    next_seq: u32,
    expect_seq: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conserves_orders_and_never_leaks(cfg in config(), ops in prop::collection::vec(op(), 1..200)) {
        let (a, b) = pair(cfg);
        let mut ends = [a, b].map(|link| End { link, held: Vec::new(), next_seq: 0, expect_seq: 0 });
        let mut now = 0u64;
        let mut rx = Vec::new();
        for op in ops {
            let t = Instant::from_micros(now);
            match op {
                Op::Send(e, n, len) => {
                    let end = &mut ends[e];
                    let mut batch = Vec::new();
                    for _ in 0..n {
                        let Some(mut f) = end.link.alloc_tx() else { break };
                        f.set_len(len.max(4));
                        prop_assert!(f.data().len() <= cfg.max_frame_len);
                        let seq = end.next_seq;
                        end.next_seq += 1;
                        f.data_mut()[..4].copy_from_slice(&seq.to_le_bytes());
                        batch.push(f);
                    }
                    let before = end.link.tx_stats();
                    let sent = batch.len() as u64;
                    end.link.send_batch(t, &mut batch);
                    prop_assert!(batch.is_empty());
                    let after = end.link.tx_stats();
                    prop_assert_eq!(
                        after.sent_frames + after.dropped_queue_full,
                        before.sent_frames + before.dropped_queue_full + sent
                    );
                }
                Op::Recv(e, max) => {
                    let next = ends[e].link.next_delivery();
                    let room = cfg.frames_per_end - ends[e].link.outstanding();
                    let n = ends[e].link.recv_batch(t, &mut rx, max);
                    prop_assert!(n <= max);
                    if n > 0 {
                        prop_assert!(next.is_some_and(|d| d <= t));
                    }
                    // Tail drops leave gaps: the sequence may skip ahead,
                    // never go back.
                    for f in rx.drain(..) {
                        let seq = u32::from_le_bytes(f.data()[..4].try_into().unwrap());
                        prop_assert!(seq >= ends[e].expect_seq, "out of order: {} < {}", seq, ends[e].expect_seq);
                        ends[e].expect_seq = seq + 1;
                        ends[e].link.release(f);
                    }
                    if let Some(d) = ends[e].link.next_delivery() {
                        // Whatever is still queued is not yet due, or the
                        // batch (or the frame budget) was full.
                        prop_assert!(d > t || n == max.min(room));
                    }
                }
                Op::Hold(e) => {
                    if let Some(f) = ends[e].link.alloc_tx() {
                        ends[e].held.push(f);
                    }
                    prop_assert!(ends[e].link.outstanding() <= cfg.frames_per_end);
                }
                Op::ReleaseHeld(e) => {
                    let end = &mut ends[e];
                    for f in end.held.drain(..) {
                        end.link.release(f);
                    }
                }
                Op::Tick(d) => now += d,
            }
        }
        // Drain: jump to each delivery time.
        for end in ends.iter_mut() {
            for f in end.held.drain(..) {
                end.link.release(f);
            }
        }
        loop {
            let next = ends.iter().filter_map(|e| e.link.next_delivery()).min();
            let Some(t) = next else { break };
            now = now.max(t.total_micros());
            for end in ends.iter_mut() {
                end.link.recv_batch(Instant::from_micros(now), &mut rx, usize::MAX);
                for f in rx.drain(..) {
                    end.link.release(f);
                }
            }
        }
        for (e, end) in ends.iter().enumerate() {
            prop_assert_eq!(end.link.outstanding(), 0, "end {} leaked", e);
            let tx = end.link.tx_stats();
            let peer_rx = ends[1 - e].link.rx_stats();
            prop_assert_eq!(tx, peer_rx);
            prop_assert_eq!(tx.sent_frames, tx.delivered_frames);
            prop_assert_eq!(tx.sent_bytes, tx.delivered_bytes);
            prop_assert_eq!(tx.sent_frames + tx.dropped_queue_full, u64::from(end.next_seq));
        }
    }
}
