//! RACK-TLP loss detection (RFC 8985).
//!
//! Owns the per-segment transmit times of outstanding data, the RACK state
//! (RACK.xmit_ts, RACK.end_seq, RACK.rtt, RACK.min_RTT, RACK.fack, the
//! reordering window and its D-SACK adaptation) and the tail loss probe
//! episode (TLP.end_seq, TLP.is_retrans). It marks segments lost by time and
//! tells the caller when to arm the reordering timer and the probe timeout;
//! it never sends, never reads a clock, and does not touch the congestion
//! window: a detected loss is reported, the connection reacts.
//!
//! Memory is bounded by [`MAX_SEGMENTS`]; beyond it new transmissions are
//! folded into the last record (coarser timing for the tail, still correct
//! loss detection at record granularity).

use std::collections::VecDeque;

use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// Most per-segment records kept.
pub const MAX_SEGMENTS: usize = 1 << 16;

/// WCDelAckT: the worst-case delayed-ACK time added to the PTO when one
/// segment is in flight (RFC 8985 §7.2).
pub const WC_DEL_ACK_T: Duration = Duration::from_millis(200);

/// Added to 2 * SRTT when more than one segment is in flight: the timer and
/// scheduling slack Linux also adds (TCP_TIMEOUT_MIN, 2 ms). Without it a
/// microsecond SRTT (a veth pair, a LAN) makes the PTO fire on every pause
/// of a busy receiver, each probe a spurious retransmission.
pub const PTO_SLACK: Duration = Duration::from_millis(2);

/// PTO before any RTT sample (RFC 8985 §7.2).
pub const INITIAL_PTO: Duration = Duration::from_secs(1);

/// The reordering window persists this many recoveries after a D-SACK
/// widened it (RFC 8985 §6.2 step 4).
const REO_WND_PERSIST: u32 = 16;

/// Record lists up to this capacity are handed on for reuse.
const POOLED_RECORDS: usize = 64;

#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    start: SeqNumber,
    end: SeqNumber,
    /// Segment.xmit_ts: time of the latest (re)transmission.
    xmit_ts: Instant,
    retransmitted: bool,
    sacked: bool,
    lost: bool,
}

/// What the tail loss probe should carry (RFC 8985 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// One segment of new data, if available and the peer's window allows.
    NewData,
    /// Retransmit the highest-sequence segment sent: [seq, seq + len).
    RetransmitLast { seq: SeqNumber, len: usize },
}

/// TLP loss detection's verdict on an ACK (RFC 8985 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlpOutcome {
    /// No episode, or it is still unresolved.
    Pending,
    /// The episode ended without evidence of loss.
    NoLoss,
    /// The probe retransmission repaired a lost tail: the caller applies the
    /// congestion response (RFC 8985 §7.4.2).
    LossRepaired,
}

#[derive(Debug, Clone, Copy)]
struct TlpEpisode {
    end_seq: SeqNumber,
    is_retrans: bool,
}

#[derive(Debug, Clone)]
pub struct Rack {
    segs: VecDeque<Sent>,
    /// Records marked lost and neither resent nor SACKed since.
    lost: usize,
    /// RACK.xmit_ts / RACK.end_seq of the most recently sent delivered
    /// segment.
    xmit_ts: Option<Instant>,
    end_seq: SeqNumber,
    /// RACK.rtt: RTT of that segment.
    rtt: Duration,
    /// RACK.min_RTT.
    min_rtt: Option<Duration>,
    /// RACK.fack: highest sequence cumulatively or selectively acknowledged.
    fack: SeqNumber,
    /// RACK.reordering_seen.
    reordering_seen: bool,
    /// RACK.reo_wnd_mult, RACK.reo_wnd_persist, RACK.dsack_round.
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    dsack_round: Option<SeqNumber>,
    tlp: Option<TlpEpisode>,
}

impl Rack {
    pub fn new(snd_una: SeqNumber) -> Rack {
        Rack {
            segs: VecDeque::new(),
            lost: 0,
            xmit_ts: None,
            end_seq: snd_una,
            rtt: Duration::ZERO,
            min_rtt: None,
            fack: snd_una,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: REO_WND_PERSIST,
            dsack_round: None,
            tlp: None,
        }
    }

    /// The record list's memory for reuse by another connection, cleared;
    /// `None` if it grew large (a bulk connection's) or never allocated.
    pub(super) fn take_records(&mut self) -> Option<VecDeque<Sent>> {
        let mut segs = std::mem::take(&mut self.segs);
        self.lost = 0;
        segs.clear();
        (segs.capacity() > 0 && segs.capacity() <= POOLED_RECORDS).then_some(segs)
    }

    /// Memory from [`Rack::take_records`], used if this list has none yet.
    pub(super) fn install_records(&mut self, segs: VecDeque<Sent>) {
        if self.segs.capacity() == 0 && segs.is_empty() {
            self.segs = segs;
        }
    }

    /// RACK.min_RTT, once sampled.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// RACK.reo_wnd_mult, for inspection.
    pub fn reo_wnd_mult(&self) -> u32 {
        self.reo_wnd_mult
    }

    /// Whether reordering was observed on this connection.
    pub fn reordering_seen(&self) -> bool {
        self.reordering_seen
    }

    /// Outstanding segment records.
    pub fn outstanding(&self) -> usize {
        self.segs.len()
    }

    /// [start, end) was sent at `now` (RFC 8985 §6.1: Segment.xmit_ts).
    pub fn on_sent(&mut self, now: Instant, start: SeqNumber, end: SeqNumber) {
        if end <= start {
            return;
        }
        let last_end = self.segs.back().map(|s| s.end);
        if last_end.is_none_or(|e| start >= e) {
            if self.segs.len() >= MAX_SEGMENTS {
                if let Some(last) = self.segs.back_mut() {
                    last.end = end;
                    last.xmit_ts = now;
                    return;
                }
            }
            self.segs.push_back(Sent {
                start,
                end,
                xmit_ts: now,
                retransmitted: false,
                sacked: false,
                lost: false,
            });
            return;
        }
        // A retransmission: every record it overlaps now carries this time.
        for s in self.segs.iter_mut() {
            if s.start < end && start < s.end && !s.sacked {
                s.xmit_ts = now;
                s.retransmitted = true;
                if s.lost {
                    s.lost = false;
                    self.lost = self.lost.saturating_sub(1);
                }
            }
        }
    }

    /// The first segment marked lost and not yet retransmitted.
    pub fn next_lost(&self) -> Option<(SeqNumber, SeqNumber)> {
        if self.lost == 0 {
            return None;
        }
        self.segs
            .iter()
            .find(|s| s.lost && !s.sacked)
            .map(|s| (s.start, s.end))
    }

    /// Segments currently marked lost.
    pub fn lost_count(&self) -> usize {
        self.lost
    }

    /// Bytes at or above `from` marked lost and neither resent nor SACKed
    /// since: what the sender's Pipe must not count as in flight (see
    /// [`super::sack_scoreboard::Scoreboard::pipe_less_lost`]).
    pub fn lost_bytes_from(&self, from: SeqNumber) -> usize {
        if self.lost == 0 {
            return 0;
        }
        self.segs
            .iter()
            .filter(|s| s.lost && !s.sacked && s.end > from)
            .map(|s| s.end - s.start.max(from))
            .sum()
    }

    /// RACK_sent_after (RFC 8985 §6.2): t1/seq1 sent after t2/seq2.
    fn sent_after(t1: Instant, seq1: SeqNumber, t2: Instant, seq2: SeqNumber) -> bool {
        t1 > t2 || (t1 == t2 && seq1 > seq2)
    }

    /// Process an ACK (RFC 8985 §6.2): `snd_una` is the new cumulative ACK,
    /// `sacked` the scoreboard's SACKed ranges, `dsack` whether the ACK
    /// carried a D-SACK, `snd_nxt` SND.NXT, `in_recovery` whether fast or
    /// RTO recovery is going on, `exited_recovery` whether this ACK ended
    /// it. Returns the reordering timeout to arm, if losses may still be
    /// detected by time.
    #[allow(clippy::too_many_arguments)]
    pub fn on_ack(
        &mut self,
        now: Instant,
        snd_una: SeqNumber,
        sacked: &[(SeqNumber, SeqNumber)],
        dsack: bool,
        snd_nxt: SeqNumber,
        srtt: Duration,
        in_recovery: bool,
        exited_recovery: bool,
    ) -> Option<Duration> {
        let fack_before = self.fack;
        // Steps 1-3 over the newly delivered segments: those cumulatively
        // acknowledged leave the front; SACKed ones are found by sequence
        // (records are in sequence order), so an ACK costs what it delivers.
        // Among first transmissions only the last one sent can move RACK
        // (it is the newest and has the smallest RTT), so a long cumulative
        // ACK costs one comparison per record.
        let mut newest: Option<Sent> = None;
        while let Some(s) = self.segs.front().copied() {
            if s.end > snd_una {
                break;
            }
            self.segs.pop_front();
            if s.sacked {
                continue;
            }
            if s.lost {
                self.lost = self.lost.saturating_sub(1);
            }
            if s.retransmitted {
                self.delivered(now, &s, fack_before);
            } else {
                if s.end < fack_before {
                    self.reordering_seen = true;
                }
                if newest.is_none_or(|n| Self::sent_after(s.xmit_ts, s.end, n.xmit_ts, n.end)) {
                    newest = Some(s);
                }
            }
        }
        if let Some(s) = newest {
            self.delivered(now, &s, fack_before);
        }
        if let Some(front) = self.segs.front_mut() {
            if front.start < snd_una {
                front.start = snd_una;
            }
        }
        for &(l, r) in sacked {
            let first = self.segs.partition_point(|s| s.start < l);
            for i in first..self.segs.len() {
                let s = self.segs[i];
                if s.end > r {
                    break;
                }
                if !s.sacked {
                    self.segs[i].sacked = true;
                    if s.lost {
                        self.lost = self.lost.saturating_sub(1);
                    }
                    self.delivered(now, &s, fack_before);
                }
            }
        }
        if snd_una > self.fack {
            self.fack = snd_una;
        }

        // Step 4: reordering-window adaptation by D-SACK.
        if self.dsack_round.is_some_and(|r| snd_una >= r) {
            self.dsack_round = None;
        }
        if dsack && self.dsack_round.is_none() {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        } else if exited_recovery {
            self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
                self.reo_wnd_persist = REO_WND_PERSIST;
            }
        }

        // Step 5.
        self.detect_loss(now, srtt, in_recovery, sacked.len())
    }

    /// Steps 1-3 of RFC 8985 §6.2 for one newly delivered segment.
    fn delivered(&mut self, now: Instant, s: &Sent, fack_before: SeqNumber) {
        let rtt = now - s.xmit_ts;
        // Step 2: a retransmitted segment's RTT shorter than min_RTT means
        // the ACK was for the original: ambiguous, skip it.
        let ambiguous = s.retransmitted && self.min_rtt.is_some_and(|m| rtt < m);
        if !ambiguous {
            // Step 1: RACK.min_RTT.
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            let newer = self
                .xmit_ts
                .is_none_or(|t| Self::sent_after(s.xmit_ts, s.end, t, self.end_seq));
            if newer {
                self.rtt = rtt;
                self.xmit_ts = Some(s.xmit_ts);
                self.end_seq = s.end;
            }
        }
        // Step 3: delivered below the highest delivered sequence without
        // having been retransmitted: the network reordered it.
        if !s.retransmitted && s.end < fack_before {
            self.reordering_seen = true;
        }
        if s.end > self.fack {
            self.fack = s.end;
        }
    }

    /// SACKed outstanding segment records, counted up to `limit` (from
    /// the top, where SACKed data usually is).
    fn sacked_records(&self, limit: usize) -> usize {
        self.segs
            .iter()
            .rev()
            .filter(|s| s.sacked)
            .take(limit)
            .count()
    }

    /// RACK.reo_wnd (RFC 8985 §6.2 step 4, RACK_update_reo_wnd); the last
    /// argument is the number of SACKed segments (or blocks) known.
    pub fn reo_wnd(&self, srtt: Duration, in_recovery: bool, sacked_ranges: usize) -> Duration {
        if !self.reordering_seen
            && (in_recovery || sacked_ranges >= super::sack_scoreboard::DUP_THRESH)
        {
            return Duration::ZERO;
        }
        let min_rtt = self.min_rtt.unwrap_or(srtt);
        (min_rtt / 4 * self.reo_wnd_mult).min(srtt)
    }

    /// RACK_detect_loss (RFC 8985 §6.2 step 5): a segment sent before the
    /// most recently delivered one and outstanding for longer than
    /// RACK.rtt + RACK.reo_wnd is lost. Returns the time until the next
    /// segment would qualify (the reordering timer), if any.
    pub fn detect_loss(
        &mut self,
        now: Instant,
        srtt: Duration,
        in_recovery: bool,
        sacked_ranges: usize,
    ) -> Option<Duration> {
        let rack_ts = self.xmit_ts?;
        // RFC 8985 §6.2 step 4 counts SACKed *segments* against DupThresh:
        // one SACK block of three segments qualifies as well as three
        // blocks do. (Counting blocks only, a single hole followed by a
        // contiguous run waited a reordering window, during which new data
        // went out ahead of the retransmission.)
        let sacked = if !self.reordering_seen && !in_recovery && sacked_ranges > 0 {
            sacked_ranges.max(self.sacked_records(super::sack_scoreboard::DUP_THRESH))
        } else {
            sacked_ranges
        };
        let reo_wnd = self.reo_wnd(srtt, in_recovery, sacked);
        let mut timeout: Option<Duration> = None;
        for s in self.segs.iter_mut() {
            let before_rack = Self::sent_after(rack_ts, self.end_seq, s.xmit_ts, s.end);
            if !before_rack && !s.retransmitted {
                // First transmissions leave in sequence order, so every
                // record past this one was sent after RACK's segment too.
                break;
            }
            if s.sacked || s.lost || !before_rack {
                continue;
            }
            let deadline = s.xmit_ts + self.rtt + reo_wnd;
            if deadline <= now {
                s.lost = true;
                self.lost += 1;
            } else {
                let remaining = deadline - now;
                timeout = Some(timeout.map_or(remaining, |t| t.max(remaining)));
            }
        }
        timeout
    }

    /// The reordering timer expired (RFC 8985 §6.3).
    pub fn on_reorder_timeout(
        &mut self,
        now: Instant,
        srtt: Duration,
        in_recovery: bool,
        sacked_ranges: usize,
    ) -> Option<Duration> {
        self.detect_loss(now, srtt, in_recovery, sacked_ranges)
    }

    /// Whether a probe timeout may be armed (RFC 8985 §7.2): not in
    /// recovery, SACK in use, and no probe episode outstanding.
    pub fn may_arm_tlp(&self, in_recovery: bool, sack_enabled: bool) -> bool {
        !in_recovery && sack_enabled && self.tlp.is_none()
    }

    /// The PTO (RFC 8985 §7.2): 2 * SRTT, plus the worst-case delayed-ACK
    /// time `max_ack_delay` when one segment is in flight or [`PTO_SLACK`]
    /// otherwise, one second before any RTT sample, and never later than
    /// the pending RTO.
    pub fn pto(
        srtt: Option<Duration>,
        flight_segments: usize,
        max_ack_delay: Duration,
        rto_remaining: Option<Duration>,
    ) -> Duration {
        let pto = match srtt {
            Some(srtt) => {
                let mut p = srtt * 2;
                if flight_segments == 1 {
                    p += max_ack_delay;
                } else {
                    p += PTO_SLACK;
                }
                p
            }
            None => INITIAL_PTO,
        };
        match rto_remaining {
            Some(r) => pto.min(r),
            None => pto,
        }
    }

    /// What the probe sends when the PTO fires (RFC 8985 §7.3).
    pub fn probe(&self, new_data_allowed: bool) -> Option<Probe> {
        if new_data_allowed {
            return Some(Probe::NewData);
        }
        self.segs.back().map(|s| Probe::RetransmitLast {
            seq: s.start,
            len: s.end - s.start,
        })
    }

    /// The probe left: TLP.end_seq = SND.NXT after it (RFC 8985 §7.3).
    pub fn on_probe_sent(&mut self, snd_nxt: SeqNumber, is_retrans: bool) {
        self.tlp = Some(TlpEpisode {
            end_seq: snd_nxt,
            is_retrans,
        });
    }

    /// Whether a probe episode is outstanding.
    pub fn tlp_outstanding(&self) -> bool {
        self.tlp.is_some()
    }

    /// TLP loss detection on an ACK (RFC 8985 §7.4.2). `dsack` is the
    /// D-SACK range the ACK carried, if any.
    pub fn tlp_on_ack(
        &mut self,
        ack: SeqNumber,
        dsack: Option<(SeqNumber, SeqNumber)>,
    ) -> TlpOutcome {
        let Some(ep) = self.tlp else {
            return TlpOutcome::Pending;
        };
        // A D-SACK for the probe retransmission: both copies arrived, so the
        // original was not lost.
        if ep.is_retrans && dsack.is_some_and(|(_, r)| r == ep.end_seq) {
            self.tlp = None;
            return TlpOutcome::NoLoss;
        }
        if ack >= ep.end_seq {
            self.tlp = None;
            return if ep.is_retrans && dsack.is_none() {
                TlpOutcome::LossRepaired
            } else {
                TlpOutcome::NoLoss
            };
        }
        TlpOutcome::Pending
    }

    /// A retransmission timeout ends any probe episode; everything
    /// outstanding will be resent.
    pub fn on_rto(&mut self) {
        self.tlp = None;
        for s in self.segs.iter_mut() {
            if !s.sacked && !s.lost {
                s.lost = true;
                self.lost += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn d(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Segments 0..n sent 1 ms apart starting at t = 0.
    fn sent(n: u32) -> Rack {
        let mut r = Rack::new(s(0));
        for i in 0..n {
            r.on_sent(ms(i as u64), s(i * MSS), s((i + 1) * MSS));
        }
        r
    }

    /// The lost-record counter agrees with a recount.
    fn check_lost(r: &Rack) {
        let n = r.segs.iter().filter(|s| s.lost && !s.sacked).count();
        assert_eq!(r.lost_count(), n);
    }

    #[test]
    fn time_based_loss_marking() {
        // 10 segments sent at t = 0..9 ms; RTT 100 ms. Segment 0 is lost,
        // segment 1 is SACKed at t = 101 ms: RACK.xmit_ts = 1 ms, RACK.rtt =
        // 100 ms. No reordering seen and fewer than DupThresh SACKed ranges:
        // reo_wnd = min_RTT / 4 = 25 ms. Segment 0 is lost once
        // 0 + 100 + 25 <= now, i.e. at 125 ms; at 101 ms the timer is 24 ms.
        let mut r = sent(10);
        let sack = [(s(1000), s(2000))];
        let t = r.on_ack(ms(101), s(0), &sack, false, s(10_000), d(100), false, false);
        assert_eq!(r.min_rtt(), Some(d(100)));
        assert_eq!(t, Some(d(24)));
        assert_eq!(r.next_lost(), None);
        let t = r.on_reorder_timeout(ms(125), d(100), false, 1);
        assert_eq!(t, None);
        assert_eq!(r.next_lost(), Some((s(0), s(1000))));
        assert_eq!(r.lost_count(), 1, "segments sent after RACK.xmit_ts wait");
        check_lost(&r);
        // Retransmitting clears the mark.
        r.on_sent(ms(126), s(0), s(1000));
        assert_eq!(r.next_lost(), None);
        check_lost(&r);
    }

    #[test]
    fn recovery_uses_zero_reo_wnd_without_reordering() {
        let mut r = sent(4);
        let sack = [(s(1000), s(2000))];
        // In recovery and no reordering seen: reo_wnd = 0, so segment 0
        // (sent at 0, RACK.rtt = 100) is lost exactly at 100 ms.
        r.on_ack(ms(101), s(0), &sack, false, s(4000), d(100), true, false);
        assert_eq!(r.next_lost(), Some((s(0), s(1000))));
    }

    #[test]
    fn reordering_detected_and_dsack_widens_window() {
        let mut r = sent(4);
        // Segment 1 SACKed first, then segment 0 arrives late (cumulative):
        // delivered below RACK.fack without retransmission = reordering.
        r.on_ack(
            ms(101),
            s(0),
            &[(s(1000), s(2000))],
            false,
            s(4000),
            d(100),
            false,
            false,
        );
        assert!(!r.reordering_seen());
        r.on_ack(ms(102), s(2000), &[], false, s(4000), d(100), false, false);
        assert!(r.reordering_seen());
        // Segment 1 took 100 ms, segment 0 took 102 ms: min_RTT = 100 ms.
        assert_eq!(r.min_rtt(), Some(d(100)));
        assert_eq!(
            r.reo_wnd(d(100), true, 0),
            d(25),
            "reordering seen: min_RTT / 4"
        );
        // A D-SACK: reo_wnd_mult 2, reo_wnd = 50 ms, capped at SRTT.
        r.on_ack(ms(103), s(2000), &[], true, s(4000), d(100), false, false);
        assert_eq!(r.reo_wnd_mult(), 2);
        assert_eq!(r.reo_wnd(d(100), false, 0), d(50));
        // A second D-SACK in the same round does not widen it again.
        r.on_ack(ms(104), s(2000), &[], true, s(4000), d(100), false, false);
        assert_eq!(r.reo_wnd_mult(), 2);
        // After the round (SND.UNA >= dsack_round) it may.
        r.on_ack(ms(105), s(4000), &[], true, s(4000), d(100), false, false);
        assert_eq!(r.reo_wnd_mult(), 3);
        assert_eq!(r.reo_wnd(d(60), false, 0), d(60), "capped at SRTT");
        // 16 recoveries without D-SACK reset the multiplier.
        for _ in 0..16 {
            r.on_ack(ms(106), s(4000), &[], false, s(4000), d(100), false, true);
        }
        assert_eq!(r.reo_wnd_mult(), 1);
    }

    #[test]
    fn ambiguous_retransmission_rtt_is_ignored() {
        let mut r = sent(2);
        r.on_ack(ms(100), s(1000), &[], false, s(2000), d(100), false, false);
        assert_eq!(r.min_rtt(), Some(d(100)));
        // Segment 1 retransmitted at 150 ms; an ACK at 160 ms is 10 ms after
        // the retransmission, below min_RTT: it acknowledges the original.
        r.on_sent(ms(150), s(1000), s(2000));
        r.on_ack(ms(160), s(2000), &[], false, s(2000), d(100), false, false);
        assert_eq!(r.min_rtt(), Some(d(100)));
    }

    #[test]
    fn pto_worked_numbers() {
        // SRTT 40 ms, several segments: PTO = 80 ms + the 2 ms slack.
        assert_eq!(Rack::pto(Some(d(40)), 5, WC_DEL_ACK_T, None), d(82));
        // SRTT 50 us (a veth pair): 2.1 ms, not 100 us.
        assert_eq!(
            Rack::pto(Some(Duration::from_micros(50)), 5, WC_DEL_ACK_T, None),
            Duration::from_micros(2100)
        );
        // One segment in flight: 80 + 200 = 280 ms.
        assert_eq!(Rack::pto(Some(d(40)), 1, WC_DEL_ACK_T, None), d(280));
        // Capped by the RTO due in 250 ms.
        assert_eq!(
            Rack::pto(Some(d(40)), 1, WC_DEL_ACK_T, Some(d(250))),
            d(250)
        );
        // No sample yet: 1 s.
        assert_eq!(Rack::pto(None, 3, WC_DEL_ACK_T, None), d(1000));
    }

    #[test]
    fn probe_choice_and_tlp_loss_detection() {
        let mut r = sent(3);
        assert!(r.may_arm_tlp(false, true));
        assert!(!r.may_arm_tlp(true, true));
        assert_eq!(r.probe(true), Some(Probe::NewData));
        assert_eq!(
            r.probe(false),
            Some(Probe::RetransmitLast {
                seq: s(2000),
                len: 1000
            })
        );
        // Retransmission probe; the ACK covers it without D-SACK: the tail
        // was lost and the probe repaired it.
        r.on_sent(ms(300), s(2000), s(3000));
        r.on_probe_sent(s(3000), true);
        assert!(!r.may_arm_tlp(false, true), "one episode at a time");
        assert_eq!(r.tlp_on_ack(s(2000), None), TlpOutcome::Pending);
        assert_eq!(r.tlp_on_ack(s(3000), None), TlpOutcome::LossRepaired);
        assert!(!r.tlp_outstanding());

        // Same, but the ACK carries a D-SACK for the probe: no loss.
        let mut r = sent(3);
        r.on_probe_sent(s(3000), true);
        assert_eq!(
            r.tlp_on_ack(s(3000), Some((s(2000), s(3000)))),
            TlpOutcome::NoLoss
        );
        // A new-data probe never implies a loss by itself.
        let mut r = sent(3);
        r.on_probe_sent(s(4000), false);
        assert_eq!(r.tlp_on_ack(s(4000), None), TlpOutcome::NoLoss);
    }

    #[test]
    fn rto_marks_everything_unsacked_lost() {
        let mut r = sent(4);
        r.on_ack(
            ms(50),
            s(0),
            &[(s(2000), s(3000))],
            false,
            s(4000),
            d(100),
            false,
            false,
        );
        r.on_probe_sent(s(4000), false);
        r.on_rto();
        assert!(!r.tlp_outstanding());
        assert_eq!(r.lost_count(), 3);
        check_lost(&r);
        r.on_ack(
            ms(60),
            s(1000),
            &[(s(2000), s(4000))],
            false,
            s(4000),
            d(100),
            false,
            false,
        );
        assert_eq!(r.lost_count(), 1, "only [1000, 2000) is still missing");
        check_lost(&r);
    }

    #[test]
    fn bounded_records() {
        let mut r = Rack::new(s(0));
        for i in 0..(MAX_SEGMENTS as u32 + 10) {
            r.on_sent(ms(1), s(i * 10), s(i * 10 + 10));
        }
        assert_eq!(r.outstanding(), MAX_SEGMENTS);
    }
}
