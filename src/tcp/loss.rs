//! The connection's loss detection and recovery glue: it feeds the SACK
//! scoreboard (RFC 6675), RACK-TLP (RFC 8985) and the undo record (RFC 2883,
//! RFC 3522) from ACK input and segment output, and turns their answers into
//! what the connection does: enter SACK-based recovery, retransmit by
//! NextSeg, send a tail loss probe, restore a window reduced for nothing.
//!
//! Owns [`LossState`]. The duplicate-ACK NewReno path (RFC 5681 §3.2,
//! RFC 6582) stays in `input` and is what a connection without SACK, or
//! with a peer that sends no SACK blocks, runs.
//!
//! Decisions:
//! - With SACK, losses are detected by RACK (time since transmission against
//!   the RTT of the most recently delivered segment plus a reordering
//!   window), not by counting three duplicates, so reordering by a few
//!   segments does not trigger a retransmission (RFC 8985 §6).
//! - In SACK recovery the window is ssthresh and sending is clocked by
//!   Pipe (RFC 6675 §5 steps 4.2 and C); the first retransmission goes out
//!   regardless of Pipe (step 4.3).
//! - The RACK reordering timer and the PTO share one timer
//!   ([`TimerKind::Loss`]), as on Linux; the reordering timer wins.

use super::congestion::{Congestion, Controller};
use super::connection::Connection;
use super::rack::{Probe, Rack, TlpOutcome, WC_DEL_ACK_T};
use super::recovery::{limited_transmit_window, Undo};
use super::sack_scoreboard::{Dsack, NextSeg, Scoreboard};
use super::timers::TimerKind;
use crate::time::Instant;
use crate::wire::tcp::{SackBlock, TcpRepr};
use crate::wire::SeqNumber;

/// What the loss timer is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LossTimer {
    /// RACK reordering timer (RFC 8985 §6.3).
    Reorder,
    /// Tail loss probe timeout (RFC 8985 §7.2).
    Probe,
}

/// Per-connection loss-recovery state.
#[derive(Debug, Clone)]
pub(super) struct LossState {
    pub sb: Scoreboard,
    pub rack: Rack,
    pub undo: Undo,
    /// In SACK-based recovery (RFC 6675 §5).
    pub sack_recovery: bool,
    /// The first retransmission of this recovery has not left yet.
    first_rexmit: bool,
    /// The retransmission being planned is NextSeg's rule 4 rescue.
    planned_rescue: bool,
    /// The PTO fired: the next segment is a probe.
    pub probe_pending: bool,
    timer: Option<LossTimer>,
    /// In recovery when the current ACK arrived.
    was_in_recovery: bool,
    /// Receiver side: a duplicate segment to report as the first SACK block
    /// of the next ACK (RFC 2883 §4).
    pub dsack_out: Option<(SeqNumber, SeqNumber)>,
}

impl LossState {
    pub fn new(iss: SeqNumber) -> LossState {
        LossState {
            sb: Scoreboard::new(iss),
            rack: Rack::new(iss),
            undo: Undo::default(),
            sack_recovery: false,
            first_rexmit: false,
            planned_rescue: false,
            probe_pending: false,
            timer: None,
            was_in_recovery: false,
            dsack_out: None,
        }
    }
}

impl Connection {
    /// ACK processing, before SND.UNA moves: update the scoreboard from the
    /// SACK blocks (RFC 6675 §5) and undo on a D-SACK that proves every
    /// retransmission of the episode spurious (RFC 2883 §5).
    pub(super) fn loss_on_ack_start(&mut self, seg: &TcpRepr<'_>) -> Option<Dsack> {
        self.loss.was_in_recovery = self.recovery.is_some();
        if !self.tcb.sack_enabled {
            return None;
        }
        let mut blocks = [SackBlock {
            left: SeqNumber(0),
            right: SeqNumber(0),
        }; 4];
        let mut n = 0;
        for b in seg.options.sack_blocks.iter().flatten() {
            blocks[n] = *b;
            n += 1;
        }
        if self.loss.sb.high_ack() > self.tcb.snd_una {
            // SND.UNA was set behind the scoreboard (never by ACKs): resync.
            self.loss.sb.clear(self.tcb.snd_una);
        }
        let ack = seg.ack_number.min(self.tcb.snd_max);
        let up = self.loss.sb.on_ack(ack, &blocks[..n], self.tcb.snd_max);
        if let Some(d) = up.dsack {
            if let Some(saved) = self.loss.undo.on_dsack(d) {
                self.undo_reduction(saved);
            }
        }
        up.dsack
    }

    /// ACK processing, after SND.UNA moved and the NewReno bookkeeping ran:
    /// Eifel undo, RACK loss detection, TLP loss detection, entering SACK
    /// recovery and the loss timer.
    pub(super) fn loss_on_ack_end(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        advanced: bool,
        dsack: Option<Dsack>,
    ) {
        if advanced {
            if let Some(srtt) = self.rtt.srtt() {
                self.cc.on_rtt_sample(srtt);
            }
        }
        // RFC 3522 §3.2: the first ACK for retransmitted data echoing a
        // timestamp older than the retransmission answers the original.
        if advanced && self.tcb.ts_enabled {
            if let Some(ts) = seg.options.timestamps {
                if let Some(saved) = self.loss.undo.on_ack_tsecr(ts.tsecr) {
                    self.undo_reduction(saved);
                }
            }
        }
        if self.recovery.is_none() {
            self.loss.sack_recovery = false;
        }
        // An ACK that delivers nothing new (the receiving side's usual
        // case) leaves RACK as it was; its timer covers the passing time.
        let sack_news = seg.options.sack_blocks[0].is_some();
        if !self.tcb.sack_enabled || !(advanced || sack_news) {
            return;
        }
        let mss = self.eff_mss();
        let exited = self.loss.was_in_recovery && self.recovery.is_none();
        let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
        let reorder = self.loss.rack.on_ack(
            now,
            self.tcb.snd_una,
            self.loss.sb.ranges(),
            dsack.is_some(),
            self.tcb.snd_max,
            srtt,
            self.recovery.is_some(),
            exited,
        );
        // RFC 8985 §7.4.2: a probe retransmission that repaired a loss gets
        // the congestion response of a loss, without a recovery episode.
        let d = dsack.map(|d| (d.left, d.right));
        if self.loss.rack.tlp_on_ack(self.tcb.snd_una, d) == TlpOutcome::LossRepaired {
            let flight = self.tcb.snd_max - self.tcb.snd_una;
            self.begin_reduction();
            self.cc.on_congestion_event(now, flight, mss);
            self.cc.on_recovery_exit(flight, mss);
            self.counters.tlp_losses += 1;
        }
        self.maybe_enter_sack_recovery(now);
        self.arm_loss_timer(now, reorder, advanced);
    }

    /// RFC 8985 §6.2 step 5 marked a segment lost: start SACK recovery
    /// (RFC 6675 §5 step 4) unless one is on, or the lost data was sent
    /// before the last RTO or within the last episode (RFC 6582 §4,
    /// "recover": SND.UNA still below it). SND.UNA *at* `recover` means
    /// everything before it arrived and the first segment after it is the
    /// one missing: a new loss, so a new episode. (The duplicate-ACK path
    /// needs an ACK above `recover` because a duplicate ACK cannot say
    /// which segment is missing; RACK can. Waiting there would leave the
    /// hole to the retransmission timeout.)
    fn maybe_enter_sack_recovery(&mut self, now: Instant) {
        if self.recovery.is_some()
            || self.loss.rack.lost_count() == 0
            || self.tcb.snd_una < self.recover
            || !self.state.is_synchronized()
        {
            return;
        }
        let mss = self.eff_mss();
        let flight = self.tcb.snd_max - self.tcb.snd_una;
        self.begin_reduction();
        self.recover = self.tcb.snd_max;
        self.recovery = Some(self.tcb.snd_max);
        self.cc.on_congestion_event(now, flight, mss);
        self.loss.sack_recovery = true;
        self.loss.first_rexmit = true;
        self.rtt_timing = None;
        self.counters.fast_retransmits += 1;
    }

    /// The loss timer: RACK's reordering timeout first, else a PTO when
    /// RFC 8985 §7.2 allows one, else nothing.
    fn arm_loss_timer(
        &mut self,
        now: Instant,
        reorder: Option<crate::time::Duration>,
        advanced: bool,
    ) {
        if self.tcb.snd_una >= self.tcb.snd_max {
            self.loss.timer = None;
            self.timers.clear(TimerKind::Loss);
            return;
        }
        if let Some(t) = reorder {
            self.loss.timer = Some(LossTimer::Reorder);
            self.timers.set(TimerKind::Loss, now + t);
        } else if self.loss.timer == Some(LossTimer::Reorder) || advanced {
            self.loss.timer = None;
            self.timers.clear(TimerKind::Loss);
            self.arm_pto(now);
        }
    }

    /// Arm the probe timeout (RFC 8985 §7.2) if a probe may be sent.
    fn arm_pto(&mut self, now: Instant) {
        if self.loss.timer == Some(LossTimer::Reorder)
            || !self.tcb.sack_enabled
            || !self.loss.rack.may_arm_tlp(self.recovery.is_some(), true)
            || !matches!(
                self.state,
                super::State::Established | super::State::CloseWait
            )
        {
            return;
        }
        let mss = self.eff_mss();
        let flight = self.tcb.snd_max - self.tcb.snd_una;
        let rto_left = self.timers.get(TimerKind::Retransmit).map(|t| t - now);
        let pto = Rack::pto(
            self.rtt.srtt(),
            flight.div_ceil(mss),
            WC_DEL_ACK_T,
            rto_left,
        );
        self.loss.timer = Some(LossTimer::Probe);
        self.timers.set(TimerKind::Loss, now + pto);
    }

    /// The loss timer expired (RFC 8985 §6.3 and §7.3).
    pub(super) fn on_loss_timer(&mut self, now: Instant) {
        match self.loss.timer.take() {
            Some(LossTimer::Reorder) => {
                let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
                let ranges = self.loss.sb.ranges().len();
                let again =
                    self.loss
                        .rack
                        .on_reorder_timeout(now, srtt, self.recovery.is_some(), ranges);
                self.maybe_enter_sack_recovery(now);
                self.arm_loss_timer(now, again, false);
            }
            Some(LossTimer::Probe) if self.tcb.snd_una < self.tcb.snd_max => {
                self.loss.probe_pending = true;
                self.counters.tlp_probes += 1;
                // The probe goes out instead of the timeout (RFC 8985 §7.3
                // re-arms the RTO after it).
                self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
            }
            Some(LossTimer::Probe) | None => {}
        }
    }

    /// Before any window reduction: remember the controller for undo. A
    /// reduction outside recovery starts a new episode.
    pub(super) fn begin_reduction(&mut self) {
        if self.recovery.is_none() {
            self.loss.undo.clear();
        }
        self.loss.undo.on_reduction(&self.cc, self.tcb.snd_una);
    }

    /// The reduction was spurious: restore the controller and leave
    /// recovery (RFC 3522 / RFC 4015 restore cwnd and ssthresh).
    fn undo_reduction(&mut self, saved: Congestion) {
        self.cc = saved;
        self.recovery = None;
        self.loss.sack_recovery = false;
        self.retransmit_head = false;
        self.counters.spurious_undos += 1;
    }

    /// A retransmission timeout: SACK and RACK state as RFC 6675 §5.1 and
    /// RFC 8985 §6.3 ask; the window reduction itself is the caller's.
    pub(super) fn loss_on_rto(&mut self) {
        self.loss.sb.on_rto();
        self.loss.rack.on_rto();
        self.loss.sack_recovery = false;
        self.loss.probe_pending = false;
        self.loss.timer = None;
        self.timers.clear(TimerKind::Loss);
    }

    /// RFC 6675 Pipe less RACK's loss marks (see
    /// [`Scoreboard::pipe_less_lost`]).
    fn pipe(&self, mss: usize) -> usize {
        let rack = &self.loss.rack;
        self.loss
            .sb
            .pipe_less_lost(self.tcb.snd_max, mss, |from| rack.lost_bytes_from(from))
    }

    /// Room the congestion window leaves for new data: RFC 6675 §5 (C)
    /// cwnd - pipe in SACK recovery (cwnd = ssthresh, step 4.2), RFC 3042
    /// limited transmit otherwise, one segment for a tail loss probe.
    pub(super) fn cwnd_room(&self, in_flight: usize) -> usize {
        let mss = self.eff_mss();
        let room = if self.loss.sack_recovery {
            let pipe = self.pipe(mss);
            self.cc.ssthresh().saturating_sub(pipe)
        } else {
            let wnd = limited_transmit_window(
                self.cc.window(),
                self.dup_acks,
                self.recovery.is_some(),
                mss,
            );
            // Resending after a timeout skips SACKed data, which is not
            // in flight either (RFC 6675 §5.1).
            let sacked = if self.tcb.snd_nxt < self.tcb.snd_max {
                self.loss.sb.sacked_below(self.tcb.snd_nxt)
            } else {
                0
            };
            wnd.saturating_sub(in_flight.saturating_sub(sacked))
        };
        if self.loss.probe_pending {
            room.max(mss)
        } else {
            room
        }
    }

    /// Receiver side: `len` bytes at `seq` arrived although some or all of
    /// them were received before (RFC 2883 §4: report them in a D-SACK).
    pub(super) fn note_duplicate(&mut self, seq: SeqNumber, len: usize) {
        let rcv_nxt = self.tcb.rcv_nxt;
        if self.tcb.sack_enabled && len > 0 && seq < rcv_nxt {
            self.loss.dsack_out = Some((seq, (seq + len).min(rcv_nxt)));
        }
    }

    /// After a timeout SND.NXT walks back over data sent before; what the
    /// peer SACKed is not sent again (RFC 6675 §5.1).
    pub(super) fn skip_sacked(&mut self) {
        if !self.tcb.sack_enabled {
            return;
        }
        while self.tcb.snd_nxt < self.tcb.snd_max {
            match self.loss.sb.sacked_end(self.tcb.snd_nxt) {
                Some(end) => self.tcb.snd_nxt = end.min(self.tcb.snd_max),
                None => break,
            }
        }
    }

    /// The next retransmission of SACK recovery: RACK's lost segments, then
    /// NextSeg rules 1, 3 and 4 (RFC 6675 §4), while Pipe leaves room.
    pub(super) fn sack_retransmission(&mut self) -> Option<(SeqNumber, usize)> {
        self.loss.planned_rescue = false;
        if !self.loss.sack_recovery {
            return None;
        }
        let mss = self.eff_mss();
        let pipe = self.pipe(mss);
        if !self.loss.first_rexmit && self.cc.ssthresh() < pipe + mss {
            return None;
        }
        if let Some((s, e)) = self.loss.rack.next_lost() {
            if s >= self.tcb.snd_una && !self.loss.sb.is_sacked(s) {
                return Some((s, e - s));
            }
        }
        let unsent = self.snd_buf.len() > self.tcb.snd_nxt - self.tcb.snd_una;
        let new_data = unsent && self.tcb.snd_wnd > self.tcb.snd_nxt - self.tcb.snd_una;
        match self.loss.sb.next_seg(self.tcb.snd_max, new_data, mss)? {
            NextSeg::Retransmit { seq, len } => Some((seq, len)),
            NextSeg::NewData => None,
            NextSeg::Rescue { seq, len } => {
                self.loss.planned_rescue = true;
                Some((seq, len))
            }
        }
    }

    /// The tail loss probe, when new data cannot be sent: the last segment
    /// sent (RFC 8985 §7.3).
    pub(super) fn probe_retransmission(&self) -> Option<(SeqNumber, usize)> {
        match self.loss.rack.probe(false)? {
            Probe::RetransmitLast { seq, len } if seq >= self.tcb.snd_una => Some((seq, len)),
            _ => None,
        }
    }

    /// A data segment [seq, end) left; `retransmission` if any of it was
    /// sent before.
    pub(super) fn loss_on_sent(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        end: SeqNumber,
        retransmission: bool,
    ) {
        if self.tcb.sack_enabled {
            self.loss.rack.on_sent(now, seq, end);
        }
        if retransmission {
            if self.loss.sack_recovery && self.loss.planned_rescue {
                let point = self.recovery.unwrap_or(self.tcb.snd_max);
                self.loss.sb.on_rescue(point);
            } else if self.loss.sack_recovery {
                self.loss.sb.on_retransmit(end);
            }
            self.loss.first_rexmit = false;
            let tsval = self.tcb.ts_enabled.then(|| self.ts_now(now));
            self.loss.undo.on_retransmit(end - seq, tsval);
        }
        self.loss.planned_rescue = false;
        if self.loss.probe_pending {
            // RFC 8985 §7.3: remember the probe, then the RTO guards it.
            self.loss.probe_pending = false;
            self.loss
                .rack
                .on_probe_sent(self.tcb.snd_max.max(end), retransmission);
            self.timers.set(TimerKind::Retransmit, now + self.rtt.rto());
        } else if !retransmission && self.loss.timer != Some(LossTimer::Reorder) {
            // Start or restart the PTO after new data (RFC 8985 §7.2; ACKs
            // restart it too). Restarting on every segment matters: a burst
            // that starts with nothing in flight would otherwise keep the
            // PTO of its first segment, FlightSize one, with the delayed-ACK
            // allowance added, and its loss would wait for the RTO.
            self.arm_pto(now);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two connections joined by a scripted path (10 ms each way) on which
    //! a test drops or delays chosen data segments.

    use super::super::{Config, Counters, FourTuple, IsnKey};
    use super::*;
    use crate::time::Duration;
    use std::net::{Ipv4Addr, SocketAddrV4};

    const TUPLE: FourTuple = FourTuple {
        local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
        remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
    };
    const ONE_WAY: Duration = Duration::from_millis(10);

    struct Seg {
        at: Instant,
        to_b: bool,
        repr: TcpRepr<'static>,
        payload: Vec<u8>,
    }

    /// What happens to the n-th data segment (first transmissions and
    /// retransmissions counted alike) A sends.
    #[derive(Clone, Copy)]
    enum Fate {
        Deliver,
        Drop,
        Delay(Duration),
    }

    struct Net {
        now: Instant,
        a: Connection,
        b: Option<Connection>,
        wire: Vec<Seg>,
        data_sent: usize,
        fate: Box<dyn Fn(usize) -> Fate>,
        received: usize,
    }

    impl Net {
        fn new(fate: impl Fn(usize) -> Fate + 'static) -> Net {
            Net::with(
                Config {
                    congestion: super::super::congestion::Algorithm::NewReno,
                    ..Config::default()
                },
                fate,
            )
        }

        fn with(cfg: Config, fate: impl Fn(usize) -> Fate + 'static) -> Net {
            let now = Instant::from_secs(1);
            let a = Connection::connect(cfg, TUPLE, now, &IsnKey::from_parts(1, 2));
            Net {
                now,
                a,
                b: None,
                wire: Vec::new(),
                data_sent: 0,
                fate: Box::new(fate),
                received: 0,
            }
        }

        fn step(&mut self) {
            let now = self.now;
            // Deliver what is due, in time order.
            self.wire.sort_by_key(|s| s.at);
            while self.wire.first().is_some_and(|s| s.at <= now) {
                let s = self.wire.remove(0);
                let seg = TcpRepr {
                    payload: &s.payload,
                    ..s.repr
                };
                if std::env::var_os("LOSS_TRACE").is_some() {
                    println!(
                        "{:>6}us {} seq={} ack={} len={} sack={:?} | a: una={} nxt={} cwnd={} timers={:?} rto={:?}",
                        now.total_micros() - 1_000_000,
                        if s.to_b { "A->B" } else { "B->A" },
                        seg.seq_number.0,
                        seg.ack_number.0,
                        seg.payload.len(),
                        seg.options.sack_blocks,
                        self.a.tcb.snd_una.0,
                        self.a.tcb.snd_nxt.0,
                        self.a.cwnd(),
                        self.a.timers,
                        self.a.rtt.rto(),
                    );
                }
                if s.to_b {
                    match self.b.as_mut() {
                        Some(b) => {
                            let _ = b.on_segment(now, &seg);
                        }
                        None => {
                            let cfg = Config::default();
                            let key = IsnKey::from_parts(3, 4);
                            self.b = Some(Connection::accept_syn(
                                cfg,
                                TUPLE.reversed(),
                                now,
                                &key,
                                &seg,
                            ));
                        }
                    }
                } else {
                    let _ = self.a.on_segment(now, &seg);
                }
            }
            if let Some(b) = self.b.as_mut() {
                let mut buf = [0u8; 4096];
                while let Ok(n) = b.recv(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    self.received += n;
                }
            }
            let mut out = Vec::new();
            self.a.poll_transmit(now, |r| {
                out.push((true, TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
                true
            });
            if let Some(b) = self.b.as_mut() {
                b.poll_transmit(now, |r| {
                    out.push((false, TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
                    true
                });
            }
            for (to_b, repr, payload) in out {
                let mut at = now + ONE_WAY;
                if to_b && !payload.is_empty() {
                    let fate = (self.fate)(self.data_sent);
                    self.data_sent += 1;
                    match fate {
                        Fate::Deliver => {}
                        Fate::Drop => continue,
                        Fate::Delay(d) => at += d,
                    }
                }
                self.wire.push(Seg {
                    at,
                    to_b,
                    repr,
                    payload,
                });
            }
        }

        /// Run until `until`, jumping to the next event each time.
        fn run(&mut self, until: Instant) {
            loop {
                self.step();
                let mut next = self.wire.iter().map(|s| s.at).min();
                for t in [
                    self.a.poll_timeout(),
                    self.b.as_ref().and_then(|b| b.poll_timeout()),
                ]
                .into_iter()
                .flatten()
                {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
                match next {
                    Some(t) if t <= until => self.now = t.max(self.now),
                    _ => break,
                }
            }
            self.now = until;
        }

        /// Handshake, then `n` full segments written at once.
        fn start(&mut self, n: usize) -> usize {
            self.run(self.now + Duration::from_millis(100));
            assert_eq!(self.a.state(), super::super::State::Established);
            let mss = self.a.eff_mss();
            let data = vec![7u8; n * mss];
            assert_eq!(self.a.send(&data), Ok(n * mss));
            n * mss
        }

        /// `start(n)`, then run for `millis`: every byte must arrive.
        fn transfer(&mut self, n: usize, millis: u64) -> Counters {
            let total = self.start(n);
            self.run(self.now + Duration::from_millis(millis));
            assert_eq!(self.received, total);
            *self.a.counters()
        }
    }

    /// Drop the data segments `lost` picks, deliver the rest.
    fn drop_if(lost: fn(usize) -> bool) -> impl Fn(usize) -> Fate {
        move |n| if lost(n) { Fate::Drop } else { Fate::Deliver }
    }

    /// Hold back data segment `which` by `millis`, deliver the rest.
    fn delay(which: usize, millis: u64) -> impl Fn(usize) -> Fate {
        move |n| {
            if n == which {
                Fate::Delay(Duration::from_millis(millis))
            } else {
                Fate::Deliver
            }
        }
    }

    #[test]
    fn tail_loss_is_repaired_by_a_probe_not_a_timeout() {
        // Ten segments, the last one lost: nothing after it can produce
        // SACKs, so only the PTO (2 * SRTT = 40 ms, RFC 8985 §7.2) or the
        // RTO (>= 200 ms) can notice. The probe resends it.
        let mut net = Net::new(drop_if(|n| n == 9));
        let k = net.transfer(10, 300);
        assert_eq!(k.timeouts, 0, "no RTO");
        assert_eq!(k.tlp_probes, 1);
        assert_eq!(k.tlp_losses, 1, "the probe repaired a loss (RFC 8985 §7.4)");
        assert_eq!(k.retransmits, 1);
    }

    #[test]
    fn sack_hole_is_resent_once_by_rack() {
        // Segment 3 of 20 lost: RACK marks it lost one reordering window
        // after a later segment is SACKed; only it is resent.
        let mut net = Net::new(drop_if(|n| n == 3));
        let cwnd0 = net.a.cwnd();
        let k = net.transfer(20, 500);
        assert_eq!(k.timeouts, 0);
        assert_eq!(k.retransmits, 1);
        assert_eq!(k.fast_retransmits, 1, "one recovery episode");
        assert_eq!(k.spurious_undos, 0);
        assert!(
            net.a.cwnd() < cwnd0 + 20 * net.a.eff_mss(),
            "the window was reduced"
        );
    }

    #[test]
    fn reordering_within_the_window_is_not_loss() {
        // Segment 7 of the first flight of ten arrives 2 ms late, behind
        // segments 8 and 9: fewer than DupThresh SACKed segments, so RACK
        // waits its reordering window (min_RTT / 4 = 5 ms) and nothing is
        // resent.
        let mut net = Net::new(delay(7, 2));
        let k = net.transfer(20, 500);
        assert_eq!(k.retransmits, 0, "{k:?}");
        assert_eq!(k.fast_retransmits, 0);
    }

    #[test]
    fn dup_thresh_sacked_segments_in_one_block_mean_loss_at_once() {
        // Segment 3 arrives 2 ms late, behind six later segments SACKed in
        // one block. Before any reordering was seen, DupThresh SACKed
        // *segments* (not blocks) make the reordering window zero (RFC 8985
        // §6.2 step 4): segment 3 is resent at once, the late original is
        // then reported as a duplicate (D-SACK) and the reduction undone.
        let mut net = Net::new(delay(3, 2));
        let k = net.transfer(20, 500);
        assert_eq!(k.retransmits, 1, "{k:?}");
        assert_eq!(k.fast_retransmits, 1);
        assert_eq!(k.spurious_undos, 1);
    }

    #[test]
    fn late_original_is_reported_by_dsack_and_the_reduction_undone() {
        // Segment 3 arrives 40 ms late: RACK resends it first, the receiver
        // then gets the original as a duplicate and reports it in a D-SACK
        // (RFC 2883 §4); the sender restores its window (RFC 2883 §5).
        let mut net = Net::new(delay(3, 40));
        let k = net.transfer(20, 500);
        assert_eq!(k.retransmits, 1);
        assert_eq!(k.fast_retransmits, 1);
        assert_eq!(k.spurious_undos, 1);
        assert!(!net.a.loss.undo.armed());
        assert_eq!(net.a.cc.ssthresh(), usize::MAX, "ssthresh restored");
    }

    #[test]
    fn limited_transmit_reaches_three_duplicates_in_a_small_window() {
        // Without SACK and with a window of 4 segments, losing segment 1
        // leaves only two segments to produce duplicate ACKs. RFC 3042 sends
        // one new segment on each of the first two duplicates, which brings
        // the third duplicate: fast retransmit instead of a timeout.
        let cfg = Config {
            congestion: super::super::congestion::Algorithm::NewReno,
            sack: false,
            initial_window: 4,
            ..Config::default()
        };
        let mut net = Net::with(cfg, drop_if(|n| n == 1));
        let k = net.transfer(8, 500);
        assert_eq!(k.timeouts, 0, "no RTO");
        assert_eq!(k.fast_retransmits, 1);
        assert_eq!(k.retransmits, 1);
    }

    #[test]
    fn loss_at_the_recovery_point_starts_a_new_recovery() {
        // Segment 3 is lost; the recovery it starts ends with the ACK of
        // everything sent before it (SND.UNA == recover). The segment
        // right at that point is lost too: its hole is SACKed around and
        // must be repaired by a second fast recovery, not by a timeout
        // (the RFC 6582 `recover` guard concerns duplicate ACKs; a
        // RACK-detected loss above it is new, RFC 6675 §5).
        let mut net = Net::new(drop_if(|n| n == 3 || n == 15));
        let k = net.transfer(40, 1000);
        assert_eq!(k.timeouts, 0, "no RTO");
        assert_eq!(k.fast_retransmits, 2, "two recovery episodes");
        assert_eq!(k.retransmits, 2);
        // Each recovery ended with cwnd = ssthresh (RFC 6582 §3.2 step 3
        // option 2), not a collapse to the little left in flight.
        assert!(net.a.cwnd() >= net.a.cc.ssthresh(), "{}", net.a.cwnd());
    }

    #[test]
    fn probe_timeout_counts_the_whole_burst_in_flight() {
        // The first flight is acknowledged in one ACK; the whole second
        // flight (11 segments) is lost, so no ACK comes back. The PTO armed
        // as the burst left must be 2 * SRTT (RFC 8985 §7.2), not the
        // one-segment PTO with the delayed-ACK allowance that the burst's
        // first segment alone would call for (that one fires after the
        // RTO, which then does the repair at a much higher price).
        let mut net = Net::new(drop_if(|n| (10..=20).contains(&n)));
        let k = net.transfer(40, 1000);
        assert_eq!(k.timeouts, 0, "no RTO");
        assert!(k.tlp_probes >= 1);
    }
}
