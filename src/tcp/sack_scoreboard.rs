//! The SACK scoreboard of RFC 6675 and D-SACK detection (RFC 2883).
//!
//! Owns what the peer has selectively acknowledged above the cumulative ACK
//! (HighACK), the retransmission marks HighRxt and RescueRxt, and the rules
//! derived from them: IsLost, Pipe (SetPipe) and NextSeg. It does not own
//! the send buffer, the congestion window or timers; the connection asks it
//! what to send next and tells it what was sent.
//!
//! Memory is bounded: at most [`MAX_RANGES`] disjoint SACKed ranges are kept.
//! When a new range does not fit, the highest range is forgotten, which only
//! makes the sender more conservative (it may resend data the peer holds).
//!
//! IsLost is evaluated on byte ranges rather than per segment: every
//! unSACKed byte below the "loss boundary" is lost, where the boundary is the
//! highest point with more than (DupThresh - 1) * SMSS SACKed bytes above it,
//! or DupThresh discontiguous SACKed ranges above it (RFC 6675 §4, IsLost).
//! That makes Pipe and NextSeg O(ranges) instead of O(segments).

use crate::wire::tcp::SackBlock;
use crate::wire::SeqNumber;

/// DupThresh (RFC 6675 §2, RFC 5681).
pub const DUP_THRESH: usize = 3;

/// The most SACKed ranges remembered (a peer reports at most 4 per ACK;
/// a window of 32 holes covers heavy loss in large windows).
pub const MAX_RANGES: usize = 32;

/// A D-SACK (RFC 2883 §4): the peer received these bytes more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dsack {
    pub left: SeqNumber,
    pub right: SeqNumber,
}

/// What one ACK's SACK blocks changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackUpdate {
    /// Bytes newly marked as SACKed by this ACK.
    pub newly_sacked: usize,
    /// The first block reported a duplicate (RFC 2883).
    pub dsack: Option<Dsack>,
    /// Blocks ignored as invalid (outside HighACK..HighData, empty).
    pub invalid: u32,
}

/// What NextSeg() chose (RFC 6675 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextSeg {
    /// Retransmit `len` bytes at `seq` (rules 1 and 3).
    Retransmit { seq: SeqNumber, len: usize },
    /// Send new data (rule 2): the caller picks it from the send buffer.
    NewData,
    /// Rescue retransmission of `len` bytes at `seq` (rule 4); the caller
    /// must not treat it as moving HighRxt.
    Rescue { seq: SeqNumber, len: usize },
}

#[derive(Debug, Clone)]
pub struct Scoreboard {
    /// SACKed ranges [left, right), sorted and disjoint, all above HighACK.
    ranges: [(SeqNumber, SeqNumber); MAX_RANGES],
    len: usize,
    /// HighACK: the cumulative ACK (SND.UNA).
    high_ack: SeqNumber,
    /// HighRxt: the highest sequence number retransmitted in this recovery.
    high_rxt: SeqNumber,
    /// RescueRxt: the last rescue retransmission's recovery point.
    rescue_rxt: Option<SeqNumber>,
}

impl Scoreboard {
    pub fn new(snd_una: SeqNumber) -> Scoreboard {
        Scoreboard {
            ranges: [(snd_una, snd_una); MAX_RANGES],
            len: 0,
            high_ack: snd_una,
            high_rxt: snd_una,
            rescue_rxt: None,
        }
    }

    /// The SACKed ranges, lowest first.
    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges[..self.len]
    }

    /// HighACK.
    pub fn high_ack(&self) -> SeqNumber {
        self.high_ack
    }

    /// HighRxt.
    pub fn high_rxt(&self) -> SeqNumber {
        self.high_rxt
    }

    /// The end of the highest SACKed range (RACK.fack's SACK part), or
    /// HighACK when nothing is SACKed.
    pub fn highest_sacked(&self) -> SeqNumber {
        if self.len == 0 {
            self.high_ack
        } else {
            self.ranges[self.len - 1].1
        }
    }

    /// Total SACKed bytes above HighACK.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges().iter().map(|&(l, r)| r - l).sum()
    }

    /// SACKed bytes in [HighACK, to).
    pub fn sacked_below(&self, to: SeqNumber) -> usize {
        if to <= self.high_ack {
            return 0;
        }
        (to - self.high_ack) - self.unsacked_between(self.high_ack, to)
    }

    /// The end of the SACKed range holding `seq`, if it is SACKed.
    pub fn sacked_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.ranges()
            .iter()
            .find(|&&(l, r)| seq.in_range(l, r))
            .map(|&(_, r)| r)
    }

    /// Whether `seq` has been SACKed.
    pub fn is_sacked(&self, seq: SeqNumber) -> bool {
        self.ranges().iter().any(|&(l, r)| seq.in_range(l, r))
    }

    /// Process one incoming ACK: the cumulative `ack` and its SACK blocks in
    /// the order the peer sent them; `high_data` is SND.MAX.
    pub fn on_ack(
        &mut self,
        ack: SeqNumber,
        blocks: &[SackBlock],
        high_data: SeqNumber,
    ) -> SackUpdate {
        let mut up = SackUpdate::default();
        // RFC 2883 §4: a first block below the cumulative ACK, or contained
        // in the second block, reports a duplicate.
        if let Some(first) = blocks.first() {
            if first.left < first.right {
                let below_ack = first.right <= ack;
                let inside_second = blocks
                    .get(1)
                    .is_some_and(|s| s.left <= first.left && first.right <= s.right);
                if below_ack || inside_second {
                    up.dsack = Some(Dsack {
                        left: first.left,
                        right: first.right,
                    });
                }
            }
        }
        if ack > self.high_ack {
            self.high_ack = ack;
            if self.high_rxt < ack {
                self.high_rxt = ack;
            }
            self.trim_below(ack);
        }
        let skip = usize::from(up.dsack.is_some());
        for b in &blocks[skip.min(blocks.len())..] {
            // RFC 2018 §3: only blocks within the data sent and above the
            // cumulative ACK carry information; clip, ignore the rest.
            let left = b.left.max(self.high_ack);
            let right = b.right;
            if b.left >= b.right || right > high_data || right <= left {
                if !(b.left < b.right && b.right <= self.high_ack) {
                    up.invalid += 1;
                }
                continue;
            }
            up.newly_sacked += self.insert(left, right);
        }
        up
    }

    /// RFC 6675 §5.1: after a retransmission timeout HighRxt restarts at
    /// HighACK; the SACK information is kept (it may be reneged, so the
    /// caller's go-back-N resend stays correct either way).
    pub fn on_rto(&mut self) {
        self.high_rxt = self.high_ack;
        self.rescue_rxt = None;
    }

    /// Forget all SACK information (the peer reneged, or a new connection).
    pub fn clear(&mut self, snd_una: SeqNumber) {
        *self = Scoreboard::new(snd_una);
    }

    /// The caller retransmitted [seq, end) under rule 1 or 3.
    pub fn on_retransmit(&mut self, end: SeqNumber) {
        if end > self.high_rxt {
            self.high_rxt = end;
        }
    }

    /// The rule 4 rescue retransmission left: RescueRxt = RecoveryPoint.
    pub fn on_rescue(&mut self, recovery_point: SeqNumber) {
        self.rescue_rxt = Some(recovery_point);
    }

    /// RFC 6675 §5 step (C)/(4): the peer's SACKs say loss before any
    /// duplicate-ACK count would: IsLost(HighACK + 1).
    pub fn should_enter_recovery(&self, dup_acks: usize, mss: usize) -> bool {
        dup_acks >= DUP_THRESH || self.is_lost(self.high_ack, mss)
    }

    /// IsLost(SeqNum) (RFC 6675 §4): more than (DupThresh - 1) * SMSS bytes,
    /// or DupThresh discontiguous ranges, SACKed above `seq`.
    pub fn is_lost(&self, seq: SeqNumber, mss: usize) -> bool {
        !self.is_sacked(seq) && seq < self.loss_boundary(mss)
    }

    /// The loss boundary: unSACKed bytes below it are lost.
    fn loss_boundary(&self, mss: usize) -> SeqNumber {
        let threshold = (DUP_THRESH - 1) * mss;
        let mut above = 0usize;
        for (count, &(l, r)) in self.ranges().iter().rev().enumerate() {
            above += r - l;
            if above > threshold || count + 1 >= DUP_THRESH {
                return l;
            }
        }
        self.high_ack
    }

    /// UnSACKed bytes in [from, to), clipped to what lies above HighACK.
    fn unsacked_between(&self, from: SeqNumber, to: SeqNumber) -> usize {
        let from = from.max(self.high_ack);
        if to <= from {
            return 0;
        }
        let mut n = to - from;
        for &(l, r) in self.ranges() {
            let a = l.max(from);
            let b = r.min(to);
            if b > a {
                n -= b - a;
            }
        }
        n
    }

    /// SetPipe() (RFC 6675 §4): bytes the sender believes are in the
    /// network. An unSACKed byte counts once if it is not lost and once more
    /// if it was retransmitted (below HighRxt).
    pub fn pipe(&self, high_data: SeqNumber, mss: usize) -> usize {
        let boundary = self.loss_boundary(mss).min(high_data);
        let outstanding = self.unsacked_between(self.high_ack, high_data);
        let lost = self.unsacked_between(self.high_ack, boundary);
        let rexmitted = self.unsacked_between(self.high_ack, self.high_rxt.min(high_data));
        outstanding - lost + rexmitted
    }

    /// [`Scoreboard::pipe`] less what RACK marked lost by time (RFC 8985
    /// §6.2 step 5) and has not been resent: `rack_lost(from)` gives those
    /// bytes at or above `from`, here the IsLost() boundary, below which
    /// Pipe counts nothing lost anyway. A RACK loss often has too few
    /// SACKed bytes above it for IsLost() (one probe SACKed after a lost
    /// flight); counted in flight it would hold Pipe at cwnd and stop its
    /// own retransmission until the RTO (Linux subtracts its lost_out the
    /// same way). Resent segments keep RFC 6675's count.
    pub fn pipe_less_lost(
        &self,
        high_data: SeqNumber,
        mss: usize,
        rack_lost: impl FnOnce(SeqNumber) -> usize,
    ) -> usize {
        let boundary = self.loss_boundary(mss).min(high_data).max(self.high_ack);
        self.pipe(high_data, mss)
            .saturating_sub(rack_lost(boundary))
    }

    /// The first unSACKed hole at or above `from`, below `limit`: (start, end).
    fn first_hole(&self, from: SeqNumber, limit: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let mut start = from.max(self.high_ack);
        for &(l, r) in self.ranges() {
            if start >= limit {
                return None;
            }
            if start < l {
                return Some((start, l.min(limit)));
            }
            if start < r {
                start = r;
            }
        }
        (start < limit).then_some((start, limit))
    }

    /// NextSeg() (RFC 6675 §4). `new_data` says whether unsent data exists
    /// and the peer's window allows it. Choosing changes nothing: the
    /// caller reports what it sent ([`Scoreboard::on_retransmit`],
    /// [`Scoreboard::on_rescue`]).
    pub fn next_seg(&self, high_data: SeqNumber, new_data: bool, mss: usize) -> Option<NextSeg> {
        let highest_sacked = self.highest_sacked();
        let boundary = self.loss_boundary(mss);
        // Rule 1: the first lost, unSACKed byte above HighRxt, below the
        // highest SACKed byte.
        if let Some((s, e)) = self.first_hole(self.high_rxt, boundary.min(highest_sacked)) {
            return Some(NextSeg::Retransmit {
                seq: s,
                len: (e - s).min(mss),
            });
        }
        // Rule 2: new data.
        if new_data {
            return Some(NextSeg::NewData);
        }
        // Rule 3: an unSACKed byte above HighRxt below the highest SACKed
        // byte, even if not yet judged lost.
        if let Some((s, e)) = self.first_hole(self.high_rxt, highest_sacked) {
            return Some(NextSeg::Retransmit {
                seq: s,
                len: (e - s).min(mss),
            });
        }
        // Rule 4: one rescue retransmission per recovery, of the highest
        // outstanding unSACKed data, when HighACK passed the last rescue.
        let allowed = self.rescue_rxt.is_none_or(|r| self.high_ack > r);
        if allowed && high_data > self.high_ack {
            let top = self.top_unsacked(high_data)?;
            let start = (top - mss).max(self.high_ack);
            return Some(NextSeg::Rescue {
                seq: start,
                len: top - start,
            });
        }
        None
    }

    /// One past the highest unSACKed byte below `high_data`.
    fn top_unsacked(&self, high_data: SeqNumber) -> Option<SeqNumber> {
        let mut top = high_data;
        for &(l, r) in self.ranges().iter().rev() {
            if r >= top && l < top {
                top = l;
            }
        }
        (top > self.high_ack).then_some(top)
    }

    /// Drop SACK information at or below the cumulative ACK.
    fn trim_below(&mut self, ack: SeqNumber) {
        let mut w = 0;
        for i in 0..self.len {
            let (l, r) = self.ranges[i];
            if r <= ack {
                continue;
            }
            self.ranges[w] = (l.max(ack), r);
            w += 1;
        }
        self.len = w;
    }

    /// Merge [left, right) into the ranges; returns the bytes newly covered.
    fn insert(&mut self, left: SeqNumber, right: SeqNumber) -> usize {
        let before = self.sacked_bytes();
        let (mut l, mut r) = (left, right);
        // Collect ranges that do not touch [l, r); absorb those that do.
        let mut out = [(l, l); MAX_RANGES + 1];
        let mut n = 0;
        let mut placed = false;
        for &(a, b) in self.ranges() {
            if b < l {
                out[n] = (a, b);
                n += 1;
            } else if a > r {
                if !placed {
                    out[n] = (l, r);
                    n += 1;
                    placed = true;
                }
                out[n] = (a, b);
                n += 1;
            } else {
                l = l.min(a);
                r = r.max(b);
            }
        }
        if !placed {
            out[n] = (l, r);
            n += 1;
        }
        // Bounded memory: forget the highest ranges beyond the capacity.
        let n = n.min(MAX_RANGES);
        self.ranges[..n].copy_from_slice(&out[..n]);
        self.len = n;
        self.sacked_bytes().saturating_sub(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn blk(l: u32, r: u32) -> SackBlock {
        SackBlock {
            left: s(l),
            right: s(r),
        }
    }

    /// Ten segments 0..10000 sent; segment 0 lost, 1..=3 SACKed one by one.
    fn one_hole() -> Scoreboard {
        let mut sb = Scoreboard::new(s(0));
        let hd = s(10_000);
        sb.on_ack(s(0), &[blk(1000, 2000)], hd);
        sb.on_ack(s(0), &[blk(1000, 3000)], hd);
        sb.on_ack(s(0), &[blk(1000, 4000)], hd);
        sb
    }

    #[test]
    fn merges_and_counts_newly_sacked() {
        let mut sb = Scoreboard::new(s(0));
        let up = sb.on_ack(s(0), &[blk(3000, 4000), blk(1000, 2000)], s(10_000));
        assert_eq!(up.newly_sacked, 2000);
        assert_eq!(sb.ranges(), &[(s(1000), s(2000)), (s(3000), s(4000))]);
        let up = sb.on_ack(s(0), &[blk(1000, 4000)], s(10_000));
        assert_eq!(up.newly_sacked, 1000);
        assert_eq!(sb.ranges(), &[(s(1000), s(4000))]);
        // Cumulative ACK into the range trims it.
        sb.on_ack(s(2500), &[], s(10_000));
        assert_eq!(sb.ranges(), &[(s(2500), s(4000))]);
        assert_eq!(sb.sacked_bytes(), 1500);
        assert_eq!(sb.sacked_below(s(3000)), 500);
        assert_eq!(sb.sacked_end(s(3000)), Some(s(4000)));
        assert_eq!(sb.sacked_end(s(4000)), None);
    }

    #[test]
    fn is_lost_needs_more_than_two_segments_sacked_above() {
        let mut sb = Scoreboard::new(s(0));
        let hd = s(10_000);
        sb.on_ack(s(0), &[blk(1000, 3000)], hd);
        // 2000 bytes = (DupThresh - 1) * SMSS above: not lost yet.
        assert!(!sb.is_lost(s(0), MSS));
        assert!(!sb.should_enter_recovery(2, MSS));
        sb.on_ack(s(0), &[blk(1000, 3001)], hd);
        assert!(sb.is_lost(s(0), MSS));
        assert!(
            sb.should_enter_recovery(0, MSS),
            "SACKs alone trigger recovery"
        );
        assert!(!sb.is_lost(s(1500), MSS), "SACKed bytes are never lost");
        assert!(!sb.is_lost(s(5000), MSS), "nothing SACKed above");
    }

    #[test]
    fn is_lost_by_three_discontiguous_ranges() {
        let mut sb = Scoreboard::new(s(0));
        // Three 100-byte ranges: few bytes, but DupThresh ranges above 0.
        sb.on_ack(
            s(0),
            &[blk(1000, 1100), blk(2000, 2100), blk(3000, 3100)],
            s(4000),
        );
        assert!(sb.is_lost(s(0), MSS));
        assert!(!sb.is_lost(s(1500), MSS), "only two ranges above");
    }

    #[test]
    fn pipe_worked_example() {
        // One hole [0, 1000), 3000 SACKed, 10000 sent.
        // Outstanding unSACKed = 10000 - 3000 = 7000; lost = 1000 (the hole);
        // pipe = 7000 - 1000 + 0 = 6000.
        let mut sb = one_hole();
        assert_eq!(sb.pipe(s(10_000), MSS), 6000);
        // Retransmit the hole: it counts again (HighRxt = 1000): 7000.
        match sb.next_seg(s(10_000), true, MSS) {
            Some(NextSeg::Retransmit { seq, len }) => {
                assert_eq!((seq, len), (s(0), 1000));
                sb.on_retransmit(seq + len);
            }
            other => panic!("rule 1 expected, got {other:?}"),
        }
        assert_eq!(sb.high_rxt(), s(1000));
        assert_eq!(sb.pipe(s(10_000), MSS), 7000);
        // Next: rule 2, new data.
        assert_eq!(sb.next_seg(s(10_000), true, MSS), Some(NextSeg::NewData));
    }

    #[test]
    fn pipe_leaves_out_what_rack_marked_lost() {
        // A flight [0, 11000) lost but for its last segment, SACKed: no byte
        // is IsLost() (one SMSS SACKed above), so Pipe counts all 10000.
        let mut sb = Scoreboard::new(s(0));
        sb.on_ack(s(0), &[blk(10_000, 11_000)], s(11_000));
        assert!(!sb.is_lost(s(0), MSS));
        assert_eq!(sb.pipe(s(11_000), MSS), 10_000);
        // RACK marked [0, 10000) lost by time: none of it is in flight.
        let marked = |from: SeqNumber| 10_000usize.saturating_sub(from - s(0));
        assert_eq!(sb.pipe_less_lost(s(11_000), MSS, marked), 0);
        // Its first segment resent: no longer marked, counted as RFC 6675
        // does (the original and the retransmission).
        sb.on_retransmit(s(1000));
        let rest = |from: SeqNumber| 9000usize.saturating_sub(from.max(s(1000)) - s(1000));
        assert_eq!(sb.pipe_less_lost(s(11_000), MSS, rest), 2000);
        // The closure is asked from the IsLost() boundary on, so nothing is
        // subtracted twice: three SACKed segments make [0, 7000) IsLost().
        let mut sb = Scoreboard::new(s(0));
        sb.on_ack(s(0), &[blk(7000, 10_000)], s(10_000));
        assert_eq!(sb.pipe(s(10_000), MSS), 0);
        let asked = std::cell::Cell::new(None);
        sb.pipe_less_lost(s(10_000), MSS, |from| {
            asked.set(Some(from));
            0
        });
        assert_eq!(asked.get(), Some(s(7000)));
    }

    #[test]
    fn next_seg_rule_3_then_rule_4() {
        // Hole [0, 1000) and SACK of only [1000, 2000): not lost (1 SMSS).
        let mut sb = Scoreboard::new(s(0));
        sb.on_ack(s(0), &[blk(1000, 2000)], s(5000));
        // No new data: rule 3 retransmits the unSACKed hole below the SACK.
        assert_eq!(
            sb.next_seg(s(5000), false, MSS),
            Some(NextSeg::Retransmit {
                seq: s(0),
                len: 1000
            })
        );
        sb.on_retransmit(s(1000));
        // Nothing below the highest SACK remains: rule 4 rescues the tail
        // [4000, 5000) once.
        assert_eq!(
            sb.next_seg(s(5000), false, MSS),
            Some(NextSeg::Rescue {
                seq: s(4000),
                len: 1000
            })
        );
        // Choosing alone does not use up the rescue; sending it does.
        assert!(sb.next_seg(s(5000), false, MSS).is_some());
        sb.on_rescue(s(5000));
        assert_eq!(sb.next_seg(s(5000), false, MSS), None, "one rescue only");
        // Once HighACK passes RescueRxt another rescue is allowed.
        sb.on_ack(s(5000), &[], s(6000));
        assert_eq!(
            sb.next_seg(s(6000), false, MSS),
            None,
            "HighACK == RescueRxt"
        );
        sb.on_ack(s(5500), &[], s(6000));
        assert_eq!(
            sb.next_seg(s(6000), false, MSS),
            Some(NextSeg::Rescue {
                seq: s(5500),
                len: 500
            })
        );
        sb.on_rescue(s(6000));
        assert_eq!(sb.next_seg(s(6000), false, MSS), None);
    }

    #[test]
    fn dsack_below_ack_and_inside_second_block() {
        let mut sb = Scoreboard::new(s(0));
        sb.on_ack(s(3000), &[], s(10_000));
        // RFC 2883 §4.1.1: first block below the cumulative ACK.
        let up = sb.on_ack(s(3000), &[blk(1000, 2000)], s(10_000));
        assert_eq!(
            up.dsack,
            Some(Dsack {
                left: s(1000),
                right: s(2000)
            })
        );
        assert_eq!(up.newly_sacked, 0);
        assert_eq!(up.invalid, 0);
        // RFC 2883 §4.2.1: first block inside the second (out-of-order duplicate).
        let up = sb.on_ack(s(3000), &[blk(5000, 6000), blk(4000, 7000)], s(10_000));
        assert_eq!(
            up.dsack,
            Some(Dsack {
                left: s(5000),
                right: s(6000)
            })
        );
        assert_eq!(up.newly_sacked, 3000);
        // An ordinary first block is no D-SACK.
        let up = sb.on_ack(s(3000), &[blk(8000, 9000), blk(4000, 7000)], s(10_000));
        assert_eq!(up.dsack, None);
    }

    #[test]
    fn invalid_blocks_are_ignored() {
        let mut sb = Scoreboard::new(s(0));
        let up = sb.on_ack(
            s(0),
            &[blk(9000, 12_000), blk(5000, 4000), blk(2000, 3000)],
            s(10_000),
        );
        assert_eq!(up.invalid, 2);
        assert_eq!(sb.ranges(), &[(s(2000), s(3000))]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut sb = Scoreboard::new(s(0));
        for i in 0..(2 * MAX_RANGES as u32) {
            sb.on_ack(s(0), &[blk(i * 2000 + 1000, i * 2000 + 2000)], s(1_000_000));
        }
        assert_eq!(sb.ranges().len(), MAX_RANGES);
        // The lowest ranges (closest to the holes being repaired) are kept.
        assert_eq!(sb.ranges()[0], (s(1000), s(2000)));
    }

    #[test]
    fn works_across_sequence_wrap() {
        let base = u32::MAX - 1500;
        let mut sb = Scoreboard::new(s(base));
        let hd = s(base) + 10_000;
        sb.on_ack(
            s(base),
            &[SackBlock {
                left: s(base) + 1000,
                right: s(base) + 4000,
            }],
            hd,
        );
        assert!(sb.is_lost(s(base), MSS));
        assert_eq!(sb.pipe(hd, MSS), 6000);
    }
}
