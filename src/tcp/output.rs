//! Segment output and the timers that cause it: what to send next (SYN,
//! SYN-ACK, retransmissions, new data under the send and congestion windows
//! with Nagle and sender SWS avoidance, probes, ACKs with SACK blocks and
//! timestamps), and what each transmission changes in the control block.

use super::congestion::Controller;
use super::connection::{CloseReason, Connection};
use super::input::reset_for;
use super::state::State;
use super::timers::TimerKind;
use crate::time::{Duration, Instant};
use crate::wire::tcp::{SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamps};
use crate::wire::SeqNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rst,
    /// SYN, or SYN-ACK in SYN-RECEIVED.
    Syn,
    /// Data and/or FIN; `head` is a retransmission out of line (at SND.UNA,
    /// a SACK hole or a tail probe) that leaves SND.NXT where it is.
    Data {
        head: bool,
    },
    /// Zero-window probe (SEQ = SND.UNA - 1).
    WindowProbe,
    /// Keep-alive probe (SEQ = SND.NXT - 1, RFC 9293 §3.8.4).
    Keepalive,
    Ack,
}

/// One segment decided but not yet handed out.
#[derive(Debug, Clone, Copy)]
struct Plan {
    kind: Kind,
    seq: SeqNumber,
    ack: Option<SeqNumber>,
    flags: u8,
    /// Payload as (offset from SND.UNA, length) into the send buffer.
    off: usize,
    len: usize,
    /// Window to advertise in bytes (before scaling).
    window: usize,
}

impl Connection {
    /// Run every timer that is due at `now` (RFC 6298 §5, RFC 9293 §3.8).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.take_expired(TimerKind::Close, now) {
            let reason = if self.state == State::TimeWait {
                CloseReason::Normal
            } else {
                CloseReason::TimedOut
            };
            self.close_with(now, reason);
            return;
        }
        // The loss timer first: a probe due with the RTO replaces it
        // (RFC 8985 §7.2 caps the PTO at the RTO).
        if self.timers.take_expired(TimerKind::Loss, now) {
            self.on_loss_timer(now);
        }
        if self.timers.take_expired(TimerKind::Retransmit, now) {
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.timers.take_expired(TimerKind::Persist, now) {
            if self.tcb.snd_wnd == 0 {
                // RFC 9293 §3.8.6.1: a zero window may last as long as the
                // peer acknowledges the probes; one that answers none of
                // R2's worth is gone (as Linux's tcp_probe_timer).
                if self.probes_unanswered >= self.cfg.data_retries {
                    self.close_with(now, CloseReason::TimedOut);
                    return;
                }
                self.probes_unanswered += 1;
                self.probe_pending = true;
            } else {
                // The SWS override timeout (RFC 9293 §3.8.6.2.1).
                self.force_send = true;
            }
            self.persist_backoff = self.persist_backoff.saturating_add(1);
        }
        if self.timers.take_expired(TimerKind::DelayedAck, now) {
            self.ack_now = true;
        }
        if self.timers.take_expired(TimerKind::Keepalive, now) {
            if let Some(k) = self.cfg.keepalive {
                let busy = self.tcb.snd_max > self.tcb.snd_una || !self.snd_buf.is_empty();
                if busy || !self.keepalive_state() {
                    // Data in flight has the retransmission timer to tell
                    // whether the peer lives (as Linux): wait another idle
                    // period instead of probing.
                    self.keepalive_sent = 0;
                    if self.keepalive_state() {
                        self.timers.set(TimerKind::Keepalive, now + k.idle);
                    }
                } else if self.keepalive_sent >= k.probes {
                    self.close_with(now, CloseReason::TimedOut);
                } else {
                    self.keepalive_sent += 1;
                    self.keepalive_pending = true;
                    self.timers.set(TimerKind::Keepalive, now + k.interval);
                }
            }
        }
    }

    /// Retransmission timeout (RFC 6298 §5.4-5.6, RFC 9293 §3.8.3 R1/R2).
    fn on_rto(&mut self, now: Instant) {
        let limit = match self.state {
            State::SynSent => self.cfg.syn_retries,
            State::SynReceived => self.cfg.synack_retries,
            _ => self.cfg.data_retries,
        };
        if self.retries >= limit {
            self.close_with(now, CloseReason::TimedOut);
            return;
        }
        self.retries += 1;
        self.counters.timeouts += 1;
        self.rtt.on_timeout();
        let flight = self.tcb.snd_max - self.tcb.snd_una;
        if self.state.is_synchronized() && self.state != State::SynReceived {
            let mss = self.eff_mss();
            self.begin_reduction();
            self.cc.on_rto(now, flight, mss);
        }
        self.loss_on_rto();
        // RFC 6582 §4: no fast retransmit for what was sent before the RTO.
        self.recover = self.tcb.snd_max;
        self.recovery = None;
        self.dup_acks = 0;
        self.retransmit_head = false;
        self.rtt_timing = None; // Karn
        self.tcb.snd_nxt = self.tcb.snd_una; // go back to SND.UNA
    }

    /// Hand out every segment that is ready now, in order. `emit` returns
    /// `false` when it cannot take the segment; that segment is not counted
    /// as sent and will be offered again. The payload borrows the send
    /// buffer. Returns the number of segments taken.
    pub fn poll_transmit<F>(&mut self, now: Instant, mut emit: F) -> usize
    where
        F: FnMut(&TcpRepr<'_>) -> bool,
    {
        self.handle_timeout(now);
        let mut sent = 0;
        while let Some(plan) = self.next_plan() {
            let repr = self.build(now, &plan);
            if !emit(&repr) {
                break;
            }
            self.commit(now, &plan);
            sent += 1;
        }
        self.arm_persist(now);
        sent
    }

    fn sending_state(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Option bytes of a SACK option with `n` blocks, padding included.
    fn sack_len(&self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (2 + 8 * n).div_ceil(4) * 4
        }
    }

    /// SACK blocks the next ACK carries: a D-SACK first if one is pending
    /// (RFC 2883 §4), then the out-of-order ranges (RFC 2018 §4).
    fn sack_count(&self) -> usize {
        if !self.tcb.sack_enabled {
            return 0;
        }
        let d = usize::from(self.loss.dsack_out.is_some());
        if !self.rcv_buf.has_out_of_order() {
            return d;
        }
        let max = if self.tcb.ts_enabled { 3 } else { 4 };
        let mut tmp = [(0u64, 0u64); 4];
        d + self.rcv_buf.sack_ranges(&mut tmp[..max - d])
    }

    fn plan(&self, kind: Kind, seq: SeqNumber, flags: u8) -> Plan {
        let ack = flags & TcpFlags::ACK != 0;
        Plan {
            kind,
            seq,
            ack: ack.then_some(self.tcb.rcv_nxt),
            flags,
            off: 0,
            len: 0,
            window: if kind == Kind::Syn {
                self.rcv_buf.window().min(0xffff)
            } else {
                self.advertised_window()
            },
        }
    }

    /// The window of a segment other than a SYN, in bytes from RCV.NXT.
    ///
    /// It opens only to the free buffer and only by at least the receiver
    /// SWS threshold, or when everything was read (RFC 9293 §3.8.6.2.2);
    /// otherwise it offers what is left of the window offered before. It
    /// is truncated to the scale unit (RFC 7323 §2.3: SEG.WND = RCV.WND >>
    /// Rcv.Wind.Shift), never rounded up: the edge offered before is
    /// rarely on a unit boundary once RCV.NXT has moved, and rounding it up
    /// moved the right edge past the buffer by up to 2^shift - 1 bytes with
    /// every ACK while the application was not reading. The sender then
    /// filled bytes the buffer could not hold; they were cut off, and only
    /// its retransmission timeout sent them again. Truncating retracts the
    /// window by less than one unit, as RFC 7323 §2.4 allows; segments up
    /// to the highest edge ever offered (RCV.ADV) stay acceptable (its
    /// rule 1), and that edge never passes the buffer's end.
    pub(super) fn advertised_window(&self) -> usize {
        let cur = self.tcb.rcv_adv - self.tcb.rcv_nxt;
        let free = self.rcv_buf.window();
        let wnd = if free >= cur + self.sws_threshold() || free == self.rcv_buf.capacity() {
            free
        } else {
            cur.min(free)
        };
        let shift = self.tcb.rcv_wnd_shift;
        (wnd.min(0xffff << shift) >> shift) << shift
    }

    /// Decide the next segment, if any.
    fn next_plan(&mut self) -> Option<Plan> {
        if let Some(r) = self.pending_rst {
            let mut p = self.plan(Kind::Rst, r.seq, TcpFlags::RST);
            p.window = 0;
            if let Some(a) = r.ack {
                p.flags |= TcpFlags::ACK;
                p.ack = Some(a);
            }
            return Some(p);
        }
        let iss = self.tcb.iss;
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent => {
                return (self.tcb.snd_nxt == iss).then(|| self.plan(Kind::Syn, iss, TcpFlags::SYN));
            }
            State::SynReceived => {
                if self.tcb.snd_nxt == iss {
                    return Some(self.plan(Kind::Syn, iss, TcpFlags::SYN | TcpFlags::ACK));
                }
                return self
                    .ack_now
                    .then(|| self.plan(Kind::Ack, self.ack_seq(), TcpFlags::ACK));
            }
            _ => {}
        }
        // SACK recovery (RFC 6675 §5) and the tail loss probe (RFC 8985
        // §7.3) come before new data; see `loss`.
        self.skip_sacked();
        if let Some((seq, len)) = self.sack_retransmission() {
            if let Some(p) = self.rexmit_plan(seq, len) {
                return Some(p);
            }
        }
        if self.loss.probe_pending {
            let probe = self.data_plan().or_else(|| {
                let (seq, len) = self.probe_retransmission()?;
                self.rexmit_plan(seq, len)
            });
            if probe.is_some() {
                return probe;
            }
            self.loss.probe_pending = false;
        }
        if self.retransmit_head {
            if let Some(p) = self.head_plan() {
                return Some(p);
            }
            self.retransmit_head = false;
        }
        if let Some(p) = self.data_plan() {
            return Some(p);
        }
        if self.probe_pending {
            return Some(self.plan(Kind::WindowProbe, self.tcb.snd_una - 1, TcpFlags::ACK));
        }
        if self.keepalive_pending {
            // SEQ = SND.UNA - 1 like Linux: outside the window, so the peer
            // answers with an ACK.
            return Some(self.plan(Kind::Keepalive, self.tcb.snd_una - 1, TcpFlags::ACK));
        }
        if self.ack_now {
            return Some(self.plan(Kind::Ack, self.ack_seq(), TcpFlags::ACK));
        }
        None
    }

    /// SEQ of a pure ACK: SND.MAX rather than a rewound SND.NXT (below the
    /// peer's RCV.NXT the ACK would be unacceptable and ignored), but not
    /// past the right edge of the peer's window (Linux's
    /// `tcp_acceptable_seq`).
    pub(super) fn ack_seq(&self) -> SeqNumber {
        let t = &self.tcb;
        let wnd_end = t.snd_una + t.snd_wnd;
        if t.snd_max <= wnd_end {
            t.snd_max
        } else {
            wnd_end
        }
    }

    /// Largest payload of a data segment now (MSS minus SACK option bytes).
    fn max_payload(&self) -> usize {
        self.eff_mss()
            .saturating_sub(self.sack_len(self.sack_count()))
            .max(1)
    }

    /// Is a FIN queued and not yet acknowledged?
    fn fin_pending(&self) -> bool {
        self.fin_queued && !self.fin_acked
    }

    /// One segment at SND.UNA: fast retransmit / partial ACK (RFC 6582).
    fn head_plan(&self) -> Option<Plan> {
        self.rexmit_plan(self.tcb.snd_una, usize::MAX)
    }

    /// A retransmission of at most `max` bytes at `seq` (below SND.MAX):
    /// the head of the queue, a SACK hole, or a tail probe.
    fn rexmit_plan(&self, seq: SeqNumber, max: usize) -> Option<Plan> {
        if !self.sending_state() || self.tcb.snd_max <= self.tcb.snd_una || seq >= self.tcb.snd_max
        {
            return None;
        }
        let off = seq - self.tcb.snd_una;
        let len = self.snd_buf.slice(off, self.max_payload().min(max)).len();
        let fin = self.fin_pending()
            && off + len == self.snd_buf.len()
            && self.tcb.snd_max > self.data_end();
        if len == 0 && !fin {
            return None;
        }
        let mut p = self.plan(Kind::Data { head: true }, seq, TcpFlags::ACK);
        p.off = off;
        p.len = len;
        if fin {
            p.flags |= TcpFlags::FIN;
        }
        Some(p)
    }

    /// New data (or data again after a timeout) at SND.NXT, within
    /// min(SND.WND, cwnd), with Nagle (RFC 896) and sender SWS avoidance
    /// (RFC 9293 §3.8.6.2.1).
    fn data_plan(&self) -> Option<Plan> {
        if !self.sending_state() {
            return None;
        }
        let t = &self.tcb;
        let off = t.snd_nxt - t.snd_una;
        let avail = self.snd_buf.len().saturating_sub(off);
        let fin_unsent = self.fin_pending() && t.snd_nxt <= self.data_end();
        let in_flight = t.snd_nxt - t.snd_una;
        let usable = t
            .snd_wnd
            .saturating_sub(in_flight)
            .min(self.cwnd_room(in_flight));
        let max_payload = self.max_payload();
        // Decide on what the windows allow; the segment itself may come out
        // shorter where the ring wraps (the rest follows at once).
        let want = avail.min(usable).min(max_payload);
        // Below SND.MAX this is sending again after a timeout (go-back-N):
        // that data was inside the window when it first left, so neither
        // Nagle nor sender SWS avoidance holds it (RFC 6298 §5.4, RFC 7323
        // §2.4 rule 4); held, it would wait for the persist timer.
        let resend = t.snd_nxt < t.snd_max;
        if want > 0 && want < max_payload && !self.force_send && !resend {
            let all = want == avail;
            // Nagle with Minshall's modification: hold a small segment only
            // while an earlier small segment is unacknowledged.
            let nagle_ok =
                !self.cfg.nagle || in_flight == 0 || self.snd_sml <= t.snd_una || self.fin_queued;
            let sws_ok = !all && want >= t.max_snd_wnd / 2;
            if !(sws_ok || all && nagle_ok) {
                return None;
            }
        }
        let len = self.snd_buf.slice(off, want).len();
        let is_last = len == avail;
        let fin = fin_unsent && is_last;
        if len == 0 && !fin {
            return None;
        }
        let mut p = self.plan(Kind::Data { head: false }, t.snd_nxt, TcpFlags::ACK);
        p.off = off;
        p.len = len;
        if is_last && len > 0 {
            p.flags |= TcpFlags::PSH;
        }
        if fin {
            p.flags |= TcpFlags::FIN;
        }
        Some(p)
    }

    /// The segment for `plan`, payload borrowed from the send buffer.
    fn build(&self, now: Instant, plan: &Plan) -> TcpRepr<'_> {
        let t = &self.tcb;
        let mut options = TcpOptions::default();
        let syn = plan.flags & TcpFlags::SYN != 0;
        let synack = syn && plan.flags & TcpFlags::ACK != 0;
        if syn {
            // Options only on SYN / SYN-ACK, and on the SYN-ACK only what
            // the peer offered (RFC 7323 §1.3, RFC 2018 §2).
            options.mss = Some(self.cfg.mss);
            let (ws, sack, ts) = if synack {
                (t.ws_enabled, t.sack_enabled, t.ts_enabled)
            } else {
                (self.offered_ws, self.offered_sack, self.offered_ts)
            };
            if ws {
                options.window_scale = Some(t.rcv_wnd_shift);
            }
            options.sack_permitted = sack;
            if ts {
                options.timestamps = Some(Timestamps {
                    tsval: self.ts_now(now),
                    tsecr: if synack { t.ts_recent } else { 0 },
                });
            }
        } else if plan.kind != Kind::Rst {
            if t.ts_enabled {
                options.timestamps = Some(Timestamps {
                    tsval: self.ts_now(now),
                    tsecr: t.ts_recent,
                });
            }
            let n = self.sack_count();
            if n > 0 {
                let mut first = 0;
                if let Some((left, right)) = self.loss.dsack_out {
                    options.sack_blocks[0] = Some(SackBlock { left, right });
                    first = 1;
                }
                let mut ranges = [(0u64, 0u64); 4];
                let n = if self.rcv_buf.has_out_of_order() {
                    self.rcv_buf.sack_ranges(&mut ranges[..n - first])
                } else {
                    0
                };
                let next = self.rcv_buf.next_off();
                for (slot, &(s, e)) in options.sack_blocks[first..].iter_mut().zip(&ranges[..n]) {
                    *slot = Some(SackBlock {
                        left: t.rcv_nxt + (s - next) as usize,
                        right: t.rcv_nxt + (e - next) as usize,
                    });
                }
            }
        }
        let window = if syn {
            plan.window
        } else {
            plan.window >> t.rcv_wnd_shift
        };
        TcpRepr {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq_number: plan.seq,
            ack_number: plan.ack.unwrap_or(SeqNumber(0)),
            flags: TcpFlags(plan.flags),
            window: window.min(0xffff) as u16,
            urgent_pointer: 0,
            options,
            payload: self.snd_buf.slice(plan.off, plan.len),
        }
    }

    /// Record that `plan` left (RFC 9293 §3.10 SEND processing, RFC 6298 §5.1).
    fn commit(&mut self, now: Instant, plan: &Plan) {
        self.counters.segments_out += 1;
        match plan.kind {
            Kind::Rst => {
                self.pending_rst = None;
                return;
            }
            Kind::Syn => {
                if self.syn_sent_at.is_none() {
                    self.syn_sent_at = Some(now);
                } else {
                    self.counters.retransmits += 1;
                }
                let end = self.tcb.iss + 1;
                self.tcb.snd_nxt = end;
                self.tcb.snd_max = self.tcb.snd_max.max(end);
                self.timers
                    .set_if_idle(TimerKind::Retransmit, now + self.rtt.rto());
            }
            Kind::Data { head } => {
                let fin = plan.flags & TcpFlags::FIN != 0;
                let end = plan.seq + plan.len + fin as usize;
                let retransmission = head || plan.seq < self.tcb.snd_max;
                if head || plan.seq < self.tcb.snd_max {
                    self.rexmit_tsval = Some(self.ts_now(now));
                }
                if head {
                    self.retransmit_head = false;
                    self.counters.retransmits += 1;
                    self.tcb.snd_nxt = self.tcb.snd_nxt.max(end);
                    // RFC 6298 §5.3 for the retransmission just made.
                    self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
                } else {
                    self.tcb.snd_nxt = end;
                    self.force_send = false;
                    if plan.len < self.max_payload() {
                        self.snd_sml = end;
                    }
                }
                if end > self.tcb.snd_max {
                    if plan.seq >= self.tcb.snd_max
                        && self.rtt_timing.is_none()
                        && !self.tcb.ts_enabled
                    {
                        self.rtt_timing = Some((end, now));
                    }
                    self.tcb.snd_max = end;
                } else if !head {
                    self.counters.retransmits += 1;
                }
                let flight = self.tcb.in_flight();
                self.cc.on_sent(now, plan.len, flight);
                self.loss_on_sent(now, plan.seq, end, retransmission);
                self.timers
                    .set_if_idle(TimerKind::Retransmit, now + self.rtt.rto());
            }
            Kind::WindowProbe => {
                self.probe_pending = false;
                self.counters.zero_window_probes += 1;
            }
            Kind::Keepalive => {
                self.keepalive_pending = false;
                self.counters.keepalive_probes += 1;
            }
            Kind::Ack => {}
        }
        if let Some(ack) = plan.ack {
            self.loss.dsack_out = None;
            self.ack_now = false;
            self.unacked_bytes = 0;
            self.timers.clear(TimerKind::DelayedAck);
            self.tcb.last_ack_sent = ack;
            self.tcb.rcv_wnd = plan.window;
            let edge = ack + plan.window;
            if edge > self.tcb.rcv_adv {
                self.tcb.rcv_adv = edge;
            }
        }
    }

    /// Start the persist timer when data waits but nothing is in flight to
    /// bring an ACK back (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17).
    fn arm_persist(&mut self, now: Instant) {
        if !self.sending_state() || self.timers.is_running(TimerKind::Retransmit) {
            self.timers.clear(TimerKind::Persist);
            return;
        }
        let off = self.tcb.snd_nxt - self.tcb.snd_una;
        let waiting =
            self.snd_buf.len() > off || (self.fin_pending() && self.tcb.snd_nxt <= self.data_end());
        if !waiting {
            self.timers.clear(TimerKind::Persist);
            self.persist_backoff = 0;
            return;
        }
        let base = self.rtt.rto().max(self.cfg.min_rto);
        let interval = base
            .checked_mul(1 << self.persist_backoff.min(10))
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        self.timers.set_if_idle(TimerKind::Persist, now + interval);
    }
}

/// The RST answering `seg` for which there is no connection and no listener
/// (RFC 9293 §3.10.7.1). `None` for an incoming RST: never answer one.
pub fn rst_for_unmatched(seg: &TcpRepr<'_>) -> Option<TcpRepr<'static>> {
    if seg.flags.rst() {
        return None;
    }
    let r = reset_for(seg);
    let mut flags = TcpFlags::RST;
    if r.ack.is_some() {
        flags |= TcpFlags::ACK;
    }
    Some(TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq_number: r.seq,
        ack_number: r.ack.unwrap_or(SeqNumber(0)),
        flags: TcpFlags(flags),
        window: 0,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    })
}
