//! Segment input: RFC 9293 §3.10.7 event processing for SYN-SENT and the
//! synchronized states, with the RFC 5961 checks, PAWS (RFC 7323 §5) and the
//! ACK, window, urgent, text and FIN steps.
//!
//! Input never transmits: replies (ACKs, challenge ACKs, RSTs) are flagged
//! for the next `poll_transmit`.

use super::app::{Deliver, SendHalf};
use super::congestion::Controller;
use super::connection::{CloseReason, Connection, PendingRst};
use super::state::State;
use super::timers::TimerKind;
use super::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::tcp::TcpRepr;
use crate::wire::SeqNumber;

/// RFC 7323 §5.5: TS.Recent older than 24 days is no longer trusted.
const PAWS_IDLE_MS: u64 = 24 * 24 * 3600 * 1000;

impl Connection {
    /// Process one segment for this connection's 4-tuple. `Err` says why it
    /// was dropped (also counted); replies are queued for `poll_transmit`.
    pub fn on_segment(&mut self, now: Instant, seg: &TcpRepr<'_>) -> Result<(), DropReason> {
        self.on_segment_deliver(now, seg, None)
    }

    /// [`Connection::on_segment`] with zero-copy delivery: in-order text
    /// that finds nothing buffered ahead of it is offered to `deliver`
    /// straight from the segment (the frame it arrived in), together with
    /// the send side; only what `deliver` leaves (returns less than the
    /// length) is copied into the receive buffer. `deliver` is the
    /// application's read, so pass it only once the application may read.
    pub fn on_segment_deliver(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        deliver: Option<&mut Deliver<'_>>,
    ) -> Result<(), DropReason> {
        self.counters.segments_in += 1;
        let r = match self.state {
            State::Closed | State::Listen => {
                // RFC 9293 §3.10.7.1.
                if !seg.flags.rst() {
                    self.pending_rst = Some(reset_for(seg));
                }
                Err(DropReason::Closed)
            }
            State::SynSent => self.rcv_syn_sent(now, seg),
            _ => self.rcv_synchronized(now, seg, deliver),
        };
        if let Err(reason) = r {
            self.counters.drop(reason);
        }
        r
    }

    /// RFC 9293 §3.10.7.3.
    fn rcv_syn_sent(&mut self, now: Instant, seg: &TcpRepr<'_>) -> Result<(), DropReason> {
        let f = seg.flags;
        // First: the ACK must acknowledge our SYN and nothing more.
        if f.ack() && (seg.ack_number <= self.tcb.iss || seg.ack_number > self.tcb.snd_max) {
            if !f.rst() {
                self.pending_rst = Some(PendingRst {
                    seq: seg.ack_number,
                    ack: None,
                });
            }
            return Err(DropReason::BadHandshakeAck);
        }
        // Second: RST is accepted only with an acceptable ACK (RFC 5961 §3.2).
        if f.rst() {
            if f.ack() {
                self.close_with(now, CloseReason::Refused);
                return Ok(());
            }
            return Err(DropReason::RstOutOfWindow);
        }
        // Fourth: SYN.
        if !f.syn() {
            return Err(DropReason::NoSynInSynSent);
        }
        self.take_syn(now, seg);
        if f.ack() {
            self.tcb.snd_una = seg.ack_number;
            self.tcb.snd_nxt = self.tcb.snd_nxt.max(seg.ack_number);
            self.handshake_rtt(now, seg);
            self.timers.clear(TimerKind::Retransmit);
            self.retries = 0;
            self.set_state(now, State::Established);
            self.ack_now = true;
            if self.fin_queued {
                self.set_state(now, State::FinWait1);
            }
        } else {
            // Simultaneous open: answer with SYN-ACK from the same ISS.
            self.tcb.snd_nxt = self.tcb.iss;
            self.set_state(now, State::SynReceived);
        }
        Ok(())
    }

    /// One RTT sample from the handshake: the echoed TSval, or the SYN's
    /// send time when it was never retransmitted (Karn).
    fn handshake_rtt(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if let Some(r) = self.ts_rtt(now, seg) {
            self.rtt.on_sample(r);
        } else if let (Some(t0), 0) = (self.syn_sent_at, self.retries) {
            self.rtt.on_sample(now - t0);
        }
    }

    /// RTT from an echoed timestamp (RFC 7323 §4).
    fn ts_rtt(&self, now: Instant, seg: &TcpRepr<'_>) -> Option<Duration> {
        if !self.tcb.ts_enabled {
            return None;
        }
        let ts = seg.options.timestamps?;
        if ts.tsecr == 0 {
            return None;
        }
        if let Some(r) = self.rexmit_tsval {
            if (ts.tsecr.wrapping_sub(r) as i32) < 0 {
                return None;
            }
        }
        let ms = self.ts_now(now).wrapping_sub(ts.tsecr);
        // An echo from the future or older than the maximum RTO is bogus.
        if ms as u64 > self.cfg.max_rto.as_millis() as u64 {
            return None;
        }
        Some(Duration::from_millis(ms as u64))
    }

    /// Send a challenge ACK unless the per-second budget is spent
    /// (RFC 5961 §7).
    fn challenge_ack(&mut self, now: Instant) {
        let sec = now.total_micros() / 1_000_000;
        if self.challenge.0 != sec {
            self.challenge = (sec, 0);
        }
        if self.challenge.1 < self.cfg.challenge_ack_limit {
            self.challenge.1 += 1;
            self.counters.challenge_acks += 1;
            self.ack_now = true;
        } else {
            self.counters.challenge_acks_limited += 1;
        }
    }

    /// RFC 9293 §3.10.7.4, SYN-RECEIVED through TIME-WAIT.
    fn rcv_synchronized(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        deliver: Option<&mut Deliver<'_>>,
    ) -> Result<(), DropReason> {
        let f = seg.flags;
        let seq = seg.seq_number;

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost.
        if self.state == State::SynReceived && f.syn() && !f.ack() && seq == self.tcb.irs {
            self.tcb.snd_nxt = self.tcb.iss;
            return Ok(());
        }

        // PAWS (RFC 7323 §5.3 R1): an older timestamp means an old duplicate.
        if let (true, false, Some(ts)) = (self.tcb.ts_enabled, f.rst(), seg.options.timestamps) {
            let older = (ts.tsval.wrapping_sub(self.tcb.ts_recent) as i32) < 0;
            let fresh = now.total_millis().saturating_sub(self.tcb.ts_recent_age_ms) < PAWS_IDLE_MS;
            if older && fresh {
                self.ack_now = true;
                // An old duplicate: tell the sender (RFC 2883 §4, as Linux).
                self.note_duplicate(seq, seg.payload.len());
                return Err(DropReason::Paws);
            }
        }

        // First: sequence number acceptability (RFC 9293 §3.10.7.4 table).
        let rcv_nxt = self.tcb.rcv_nxt;
        let wnd = self.tcb.rcv_adv - rcv_nxt;
        let len = seg.segment_len();
        let in_wnd = |s: SeqNumber| s >= rcv_nxt && s < rcv_nxt + wnd;
        // A segment without text may also sit exactly on the right edge: a
        // sender whose SND.NXT is past our window ACKs from the window's
        // end (Linux does so, and accepts the same).
        let mut acceptable = match (len, wnd) {
            (0, _) => seq >= rcv_nxt && seq <= rcv_nxt + wnd,
            (_, 0) => false,
            (_, _) => in_wnd(seq) || in_wnd(seq + (len - 1)),
        };
        // A zero window still takes the ACK, URG and RST of a segment at
        // RCV.NXT (RFC 9293 §3.10.7.4); its text is dropped below.
        let mut strip_text = false;
        if !acceptable && wnd == 0 && seq == rcv_nxt {
            acceptable = true;
            strip_text = true;
        }
        if !acceptable {
            if f.rst() {
                return Err(DropReason::RstOutOfWindow);
            }
            if self.state == State::TimeWait && f.fin() {
                // A retransmitted FIN restarts the 2*MSL wait.
                self.timers
                    .set(TimerKind::Close, now + self.cfg.msl.saturating_mul(2));
            }
            // Answer with a duplicate ACK, but at most one per 500 ms for
            // segments without data so two ends cannot ping-pong ACKs
            // (as Linux's out-of-window rate limit).
            let limited = len == 0
                && self
                    .oow_ack_at
                    .is_some_and(|t| now - t < Duration::from_millis(500));
            if !limited {
                self.oow_ack_at = Some(now);
                self.ack_now = true;
            }
            self.note_duplicate(seq, seg.payload.len());
            return Err(DropReason::OutOfWindow);
        }

        // RFC 7323 §4.3: remember the timestamp to echo.
        if let (true, Some(ts)) = (self.tcb.ts_enabled, seg.options.timestamps) {
            if (ts.tsval.wrapping_sub(self.tcb.ts_recent) as i32) >= 0
                && seq <= self.tcb.last_ack_sent
            {
                self.tcb.ts_recent = ts.tsval;
                self.tcb.ts_recent_age_ms = now.total_millis();
            }
        }

        // Second: RST (RFC 5961 §3.2: only an exact match resets).
        if f.rst() && self.state == State::TimeWait {
            // RFC 1337: no TIME-WAIT assassination.
            return Err(DropReason::RstOutOfWindow);
        }
        if f.rst() {
            if seq == rcv_nxt {
                let reason = match self.state {
                    State::SynReceived if !self.passive => CloseReason::Refused,
                    // Both directions were already closed: no error for the
                    // user (RFC 9293 §3.10.7.4, CLOSING / LAST-ACK).
                    State::Closing | State::LastAck => CloseReason::Normal,
                    _ => CloseReason::Reset,
                };
                self.close_with(now, reason);
                return Ok(());
            }
            self.challenge_ack(now);
            return Err(DropReason::RstChallenged);
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4.2).
        if f.syn() {
            self.challenge_ack(now);
            return Err(DropReason::SynChallenged);
        }

        // Fifth: ACK.
        if !f.ack() {
            return Err(DropReason::NoAck);
        }
        let ack = seg.ack_number;
        // SYN-RECEIVED: only SND.UNA < SEG.ACK <= SND.NXT completes the
        // handshake; anything else is answered with <SEQ=SEG.ACK><CTL=RST>.
        if self.state == State::SynReceived && (ack <= self.tcb.snd_una || ack > self.tcb.snd_max) {
            self.pending_rst = Some(PendingRst {
                seq: ack,
                ack: None,
            });
            return Err(DropReason::BadHandshakeAck);
        }
        // RFC 5961 §5.2: SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        if ack > self.tcb.snd_max {
            self.challenge_ack(now);
            return Err(DropReason::AckUnsent);
        }
        if ack < self.tcb.snd_una - self.tcb.max_snd_wnd.min(1 << 30) {
            self.challenge_ack(now);
            return Err(DropReason::AckTooOld);
        }
        self.restart_keepalive(now);
        if self.state == State::SynReceived {
            self.handshake_rtt(now, seg);
            self.set_state(now, State::Established);
            self.tcb.snd_wnd = (seg.window as usize) << self.tcb.snd_wnd_shift;
            self.tcb.max_snd_wnd = self.tcb.max_snd_wnd.max(self.tcb.snd_wnd);
            self.tcb.snd_wl1 = seq;
            self.tcb.snd_wl2 = ack;
            if self.fin_queued {
                self.set_state(now, State::FinWait1);
            }
        }
        self.process_ack(now, seg);
        if self.state == State::Closed {
            return Ok(());
        }

        // Sixth: URG, reported to the application; the data stays inline.
        if f.urg() && self.state.can_receive_data() {
            let up = seq + seg.urgent_pointer as usize;
            self.tcb.rcv_up = Some(match self.tcb.rcv_up {
                Some(old) => old.max(up),
                None => up,
            });
        }

        // Seventh and eighth: text and FIN.
        if self.state.can_receive_data() && !strip_text {
            self.process_text(now, seg, deliver)?;
        } else if strip_text && !seg.payload.is_empty() {
            // Text refused by a zero window is an unacceptable segment:
            // answer with an ACK (RFC 9293 §3.10.7.4), which tells a
            // sender probing with data that the window is still shut.
            self.ack_now = true;
        }
        Ok(())
    }

    /// ACK processing for the synchronized states (RFC 9293 §3.10.7.4
    /// fifth, RFC 5681 §3.2, RFC 6582, RFC 6298 §5).
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let ack = seg.ack_number;
        let mss = self.eff_mss();
        let window = (seg.window as usize) << self.tcb.snd_wnd_shift;
        let dsack = self.loss_on_ack_start(seg);
        let una_before = self.tcb.snd_una;

        if ack > self.tcb.snd_una {
            let flight_before = self.tcb.snd_max - self.tcb.snd_una;
            let mut acked = ack - self.tcb.snd_una;
            if self.tcb.snd_una == self.tcb.iss {
                acked -= 1; // the SYN
            }
            if self.fin_queued && ack > self.data_end() {
                self.fin_acked = true;
            }
            let data_acked = acked.min(self.snd_buf.len());
            self.snd_buf.consume(data_acked);
            self.tcb.snd_una = ack;
            if self.tcb.snd_nxt < ack {
                self.tcb.snd_nxt = ack;
            }
            // RTT (RFC 7323 §4 with timestamps, else one timed segment).
            if let Some(r) = self.ts_rtt(now, seg) {
                self.rtt.on_sample(r);
            } else if let Some((end, t0)) = self.rtt_timing {
                if ack >= end {
                    self.rtt.on_sample(now - t0);
                    self.rtt_timing = None;
                }
            }
            self.rtt.reset_backoff();
            self.retries = 0;
            self.dup_acks = 0;
            match self.recovery {
                Some(point) if ack >= point => {
                    let flight = self.tcb.snd_max - ack;
                    self.cc.on_recovery_exit(flight, mss);
                    self.recovery = None;
                }
                Some(_) if self.loss.sack_recovery => {
                    // SACK recovery: NextSeg picks what to resend (`loss`).
                }
                Some(_) => {
                    // Partial ACK: the next hole is lost too (RFC 6582 §3.2).
                    self.cc.on_partial_ack(data_acked, mss);
                    self.retransmit_head = true;
                }
                None => self.cc.on_ack(now, data_acked, flight_before, mss),
            }
            // RFC 6298 §5.2/§5.3.
            if self.tcb.snd_una >= self.tcb.snd_max {
                self.timers.clear(TimerKind::Retransmit);
                self.rexmit_tsval = None;
            } else {
                self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
            }
        } else if ack == self.tcb.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && window == self.tcb.snd_wnd
            && self.tcb.snd_max > self.tcb.snd_una
        {
            // A duplicate ACK (RFC 5681 §2 definition).
            self.dup_acks += 1;
            // With SACK blocks arriving, RACK detects losses (`loss`);
            // the duplicate count is for peers without SACK.
            let sacking = self.tcb.sack_enabled && !self.loss.sb.ranges().is_empty();
            if self.recovery.is_some() {
                if !self.loss.sack_recovery {
                    self.cc.on_dup_ack_in_recovery(mss);
                }
            } else if self.dup_acks == 3 && ack > self.recover && !sacking {
                // RFC 6582 §3.2 step 2: fast retransmit, enter recovery.
                let flight = self.tcb.snd_max - self.tcb.snd_una;
                self.recover = self.tcb.snd_max;
                self.begin_reduction();
                self.recovery = Some(self.tcb.snd_max);
                self.cc.on_congestion_event(now, flight, mss);
                self.retransmit_head = true;
                self.rtt_timing = None;
                self.counters.fast_retransmits += 1;
            }
        }

        self.loss_on_ack_end(now, seg, self.tcb.snd_una > una_before, dsack);

        // Window update (RFC 9293 §3.10.7.4: SND.WL1/SND.WL2 guard).
        let t = &mut self.tcb;
        if t.snd_wl1 < seg.seq_number || (t.snd_wl1 == seg.seq_number && t.snd_wl2 <= ack) {
            t.snd_wnd = window;
            t.max_snd_wnd = t.max_snd_wnd.max(window);
            t.snd_wl1 = seg.seq_number;
            t.snd_wl2 = ack;
            self.probes_unanswered = 0;
            if window > 0 {
                self.timers.clear(TimerKind::Persist);
                self.persist_backoff = 0;
            }
        }

        if self.fin_acked {
            match self.state {
                State::FinWait1 => self.set_state(now, State::FinWait2),
                State::Closing => self.set_state(now, State::TimeWait),
                State::LastAck => self.close_with(now, CloseReason::Normal),
                _ => {}
            }
        }
    }

    /// Text and FIN (RFC 9293 §3.10.7.4 seventh and eighth).
    fn process_text(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        deliver: Option<&mut Deliver<'_>>,
    ) -> Result<(), DropReason> {
        let rcv_nxt = self.tcb.rcv_nxt;
        let mut seq = seg.seq_number;
        let mut data = seg.payload;
        let mut fin = seg.flags.fin();
        // Trim what was already received.
        if seq < rcv_nxt {
            self.note_duplicate(seq, data.len());
            let cut = rcv_nxt - seq;
            if cut > data.len() {
                // Everything, the FIN included, is old.
                data = &[];
                fin = false;
            } else {
                data = &data[cut..];
            }
            seq = rcv_nxt;
        }
        // Nothing exists past a FIN already seen (a peer that says otherwise
        // is broken or hostile; the first FIN wins).
        if let Some(f) = self.rcv_fin_seq {
            let keep = f - seq;
            if data.len() >= keep {
                data = &data[..keep];
                fin = false;
            }
        }
        // Trim to what the buffer can hold.
        let room = self.rcv_buf.window() - (seq - rcv_nxt).min(self.rcv_buf.window());
        if data.len() > room {
            // Text past the buffer is not taken: ACK at once, so the sender
            // learns where the window ends instead of waiting for its
            // retransmission timeout (RFC 9293 §3.10.7.4 seventh).
            self.ack_now = true;
            data = &data[..room];
            fin = false;
        }

        if !data.is_empty() {
            self.rcv_mss = self.rcv_mss.max(data.len().min(self.cfg.mss as usize));
            let had_gap = self.rcv_buf.has_out_of_order();
            let off = self.rcv_buf.next_off() + (seq - rcv_nxt) as u64;
            // Zero copy: next in order, nothing unread before it, and no
            // urgent mark to keep in the stream.
            let mut direct = 0;
            if let Some(deliver) = deliver {
                if seq == rcv_nxt
                    && self.rcv_buf.is_empty()
                    && !had_gap
                    && !self.app_closed
                    && self.tcb.rcv_up.is_none()
                {
                    let open = self.send_open();
                    let mut tx = SendHalf::new(&mut self.snd_buf, open);
                    direct = deliver(data, &mut tx).min(data.len());
                    self.rcv_buf.skip(direct);
                }
            }
            let rest = if direct < data.len() {
                self.rcv_buf.insert(off + direct as u64, &data[direct..])
            } else {
                Ok(0)
            };
            match rest {
                Ok(grown) => {
                    let grown = grown + direct;
                    self.tcb.rcv_nxt += grown;
                    if grown == 0 || had_gap {
                        // Out of order, or filling a hole: ACK at once
                        // (RFC 5681 §4.2).
                        self.ack_now = true;
                    } else {
                        self.unacked_bytes += grown;
                        // At least every second full-sized segment (RFC 5681
                        // §4.2), and at once when the window is nearly shut.
                        if self.unacked_bytes >= 2 * self.rcv_mss
                            || self.rcv_buf.window() < self.rcv_mss
                        {
                            self.ack_now = true;
                        } else {
                            self.timers
                                .set_if_idle(TimerKind::DelayedAck, now + self.cfg.ack_delay);
                        }
                    }
                }
                Err(_) => {
                    self.ack_now = true;
                    return Err(DropReason::ReassemblyFull);
                }
            }
            if self.app_closed {
                // Nobody will read it: reset, as Linux does for data that
                // reaches a closed socket.
                self.rcv_buf.consume(usize::MAX);
                self.abort(now);
                return Ok(());
            }
        }

        if fin && self.rcv_fin_seq.is_none() {
            self.rcv_fin_seq = Some(seq + data.len());
        }
        if let Some(fin_seq) = self.rcv_fin_seq {
            if fin_seq == self.tcb.rcv_nxt && !self.fin_received {
                self.tcb.rcv_nxt += 1;
                self.fin_received = true;
                self.ack_now = true;
                match self.state {
                    State::SynReceived | State::Established => {
                        self.set_state(now, State::CloseWait)
                    }
                    State::FinWait1 if self.fin_acked => self.set_state(now, State::TimeWait),
                    State::FinWait1 => self.set_state(now, State::Closing),
                    State::FinWait2 => self.set_state(now, State::TimeWait),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The reset answering `seg` when no connection wants it (RFC 9293
/// §3.10.7.1): SEQ = SEG.ACK if it had ACK, else SEQ = 0 with
/// ACK = SEG.SEQ + SEG.LEN.
pub(super) fn reset_for(seg: &TcpRepr<'_>) -> PendingRst {
    if seg.flags.ack() {
        PendingRst {
            seq: seg.ack_number,
            ack: None,
        }
    } else {
        PendingRst {
            seq: SeqNumber(0),
            ack: Some(seg.seq_number + seg.segment_len()),
        }
    }
}
