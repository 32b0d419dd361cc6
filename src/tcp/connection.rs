//! The connection: control block, buffers, timers, RTT and congestion state
//! together, and the application-facing API (open, send, receive, close).
//!
//! Segment input lives in `input.rs`, segment output in `output.rs`, state
//! changes in `state.rs`.

use std::collections::VecDeque;

use super::buffer::{RecvBuffer, SendBuffer};
use super::congestion::Congestion;
use super::isn::IsnKey;
use super::loss::LossState;
use super::rack::Sent;
use super::rtt::RttEstimator;
use super::state::State;
use super::tcb::Tcb;
use super::timers::{TimerKind, TimerTable};
use super::{Config, Counters, FourTuple};
use crate::time::Instant;
use crate::wire::tcp::TcpRepr;
use crate::wire::SeqNumber;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both FINs exchanged and acknowledged.
    Normal,
    /// The peer answered the SYN with RST.
    Refused,
    /// The peer reset the connection.
    Reset,
    /// Retransmissions or keep-alive probes ran out.
    TimedOut,
    /// The application aborted it.
    Aborted,
}

/// Why `send` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The write side is shut down or the connection is closed.
    Closed,
    /// The connection was reset, timed out or aborted.
    Broken(CloseReason),
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::Closed => f.write_str("write side closed"),
            SendError::Broken(r) => write!(f, "connection broken: {r:?}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why `recv` returned no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The peer sent FIN and every byte before it has been read.
    Finished,
    /// The connection was reset, timed out or aborted.
    Broken(CloseReason),
}

impl core::fmt::Display for RecvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecvError::Finished => f.write_str("end of stream"),
            RecvError::Broken(r) => write!(f, "connection broken: {r:?}"),
        }
    }
}

impl std::error::Error for RecvError {}

/// A reset to send: RST with SEQ = `seq`, and with ACK = `ack` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PendingRst {
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
}

/// One TCP connection. See the module docs for how to drive it.
/// Memory a finished connection leaves to the next one: the first storage
/// of its send and receive rings and its RACK record list. A shard keeps a
/// bounded stack of these so connect-request-close allocates nothing per
/// connection in steady state. Grown (bulk) storage is not kept.
#[derive(Debug, Default)]
pub struct ConnStorage {
    snd: Option<Vec<u8>>,
    rcv: Option<Vec<u8>>,
    records: Option<VecDeque<Sent>>,
}

impl ConnStorage {
    /// Whether there is nothing in it worth keeping.
    pub fn is_empty(&self) -> bool {
        self.snd.is_none() && self.rcv.is_none() && self.records.is_none()
    }
}

#[derive(Debug)]
pub struct Connection {
    pub(super) cfg: Config,
    pub(super) tuple: FourTuple,
    pub(super) state: State,
    pub(super) tcb: Tcb,
    pub(super) snd_buf: SendBuffer,
    pub(super) rcv_buf: RecvBuffer,
    pub(super) timers: TimerTable,
    pub(super) rtt: RttEstimator,
    pub(super) cc: Congestion,
    /// SACK scoreboard, RACK-TLP and undo state (`loss`).
    pub(super) loss: LossState,
    pub(super) counters: Counters,
    pub(super) close_reason: Option<CloseReason>,
    /// The application shut down writing: FIN follows the buffered data.
    pub(super) fin_queued: bool,
    /// The application closed the connection: received data is discarded.
    pub(super) app_closed: bool,
    /// The peer's FIN when it arrived ahead of missing data.
    pub(super) rcv_fin_seq: Option<SeqNumber>,
    /// The peer's FIN has been received in order.
    pub(super) fin_received: bool,
    /// An ACK must go out at the next `poll_transmit`.
    pub(super) ack_now: bool,
    /// Bytes received since the last ACK (delayed ACK, RFC 5681 §4.2).
    pub(super) unacked_bytes: usize,
    /// Largest payload seen from the peer: the "full-sized segment".
    pub(super) rcv_mss: usize,
    pub(super) pending_rst: Option<PendingRst>,
    /// Retransmit one segment at SND.UNA (fast retransmit, partial ACK).
    pub(super) retransmit_head: bool,
    /// Send a zero-window probe.
    pub(super) probe_pending: bool,
    /// Send what the window allows even if below the SWS threshold.
    pub(super) force_send: bool,
    /// Send a keep-alive probe.
    pub(super) keepalive_pending: bool,
    /// Consecutive retransmission timeouts.
    pub(super) retries: u32,
    /// Zero-window probes sent since the peer last updated the window.
    pub(super) probes_unanswered: u32,
    pub(super) persist_backoff: u32,
    pub(super) keepalive_sent: u32,
    /// Duplicate ACK count (RFC 5681 §3.2).
    pub(super) dup_acks: u32,
    /// In fast recovery: the recovery point (RFC 6582 "recover").
    pub(super) recovery: Option<SeqNumber>,
    /// RFC 6582 "recover", kept after recovery ends.
    pub(super) recover: SeqNumber,
    /// The segment being timed without timestamps: (end seq, sent at).
    pub(super) rtt_timing: Option<(SeqNumber, Instant)>,
    /// Challenge ACK rate limit: (second, count in it).
    pub(super) challenge: (u64, u32),
    /// The SYN this end sent offered these.
    pub(super) offered_ws: bool,
    pub(super) offered_sack: bool,
    pub(super) offered_ts: bool,
    /// TSval of the latest retransmission: an echo older than it may come
    /// from an earlier transmission whose ACK was lost, so it is no RTT
    /// sample (Karn's rule applied to timestamps).
    pub(super) rexmit_tsval: Option<u32>,
    /// End of the last sub-MSS segment sent (Minshall's Nagle variant).
    pub(super) snd_sml: SeqNumber,
    /// Last duplicate ACK sent for an out-of-window segment.
    pub(super) oow_ack_at: Option<Instant>,
    /// Whether this connection began with a SYN from the peer.
    pub(super) passive: bool,
    /// The peer acknowledged our FIN.
    pub(super) fin_acked: bool,
    /// When the SYN or SYN-ACK first left (RTT sample without timestamps).
    pub(super) syn_sent_at: Option<Instant>,
}

/// Smallest shift that fits `buf` into the 16-bit window field (RFC 7323
/// §2.3: at most 14).
fn shift_for(buf: usize) -> u8 {
    let mut s = 0u8;
    while s < 14 && (buf >> s) > 0xffff {
        s += 1;
    }
    s
}

impl Connection {
    fn new(cfg: Config, tuple: FourTuple, iss: SeqNumber, ts_offset: u32) -> Connection {
        let mss = (cfg.mss as usize).max(64);
        let tcb = Tcb {
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            iss,
            send_mss: 536,
            ts_offset,
            rcv_wnd_shift: if cfg.window_scaling {
                shift_for(cfg.recv_buffer)
            } else {
                0
            },
            ..Tcb::default()
        };
        Connection {
            snd_buf: SendBuffer::new(cfg.send_buffer),
            rcv_buf: RecvBuffer::new(cfg.recv_buffer, cfg.max_ooo_ranges),
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            cc: Congestion::new(cfg.congestion, 536, cfg.initial_window),
            loss: LossState::new(iss),
            offered_ws: cfg.window_scaling,
            offered_sack: cfg.sack,
            offered_ts: cfg.timestamps,
            // Linux's initial estimate of the peer's segment size.
            rcv_mss: mss.min(536).min(cfg.recv_buffer / 2).max(1),
            cfg,
            tuple,
            state: State::Closed,
            tcb,
            timers: TimerTable::default(),
            counters: Counters::default(),
            close_reason: None,
            fin_queued: false,
            app_closed: false,
            rcv_fin_seq: None,
            fin_received: false,
            ack_now: false,
            unacked_bytes: 0,
            pending_rst: None,
            retransmit_head: false,
            probe_pending: false,
            force_send: false,
            keepalive_pending: false,
            retries: 0,
            probes_unanswered: 0,
            persist_backoff: 0,
            keepalive_sent: 0,
            dup_acks: 0,
            recovery: None,
            recover: iss,
            rtt_timing: None,
            challenge: (0, 0),
            passive: false,
            oow_ack_at: None,
            snd_sml: iss,
            rexmit_tsval: None,
            fin_acked: false,
            syn_sent_at: None,
        }
    }

    /// Active open (RFC 9293 §3.10.1): the SYN goes out at the next
    /// `poll_transmit`.
    pub fn connect(cfg: Config, tuple: FourTuple, now: Instant, key: &IsnKey) -> Connection {
        let iss = SeqNumber(key.isn(&tuple, now));
        let mut c = Connection::new(cfg, tuple, iss, key.ts_offset(&tuple));
        c.set_state(now, State::SynSent);
        c
    }

    /// Active open on a 4-tuple whose previous incarnation, from this end,
    /// ended early in TIME-WAIT with SND.MAX `prev_snd_max` (TIME-WAIT
    /// reuse). The ISS lies beyond that incarnation's sequence space, by
    /// more than any window it could have offered without scaling, so none
    /// of its segments still in flight can be taken for the new one's
    /// (RFC 1122 §4.2.2.13, as Linux's `tcp_twsk_unique`); the clock-driven
    /// ISS is kept when it is already past that. The TSval offset is the
    /// 4-tuple's, as before, so the new SYN's timestamp is newer than
    /// anything the old incarnation sent (RFC 6191 §2).
    pub fn connect_after(
        cfg: Config,
        tuple: FourTuple,
        now: Instant,
        key: &IsnKey,
        prev_snd_max: SeqNumber,
    ) -> Connection {
        let floor = prev_snd_max + 65537;
        let clock = SeqNumber(key.isn(&tuple, now));
        let iss = if clock > floor { clock } else { floor };
        let mut c = Connection::new(cfg, tuple, iss, key.ts_offset(&tuple));
        c.set_state(now, State::SynSent);
        c
    }

    /// Passive open from a SYN that reached a listener (RFC 9293 §3.10.7.2):
    /// the connection starts in SYN-RECEIVED and its SYN-ACK goes out at the
    /// next `poll_transmit`. `syn` must be a SYN without ACK or RST.
    pub fn accept_syn(
        cfg: Config,
        tuple: FourTuple,
        now: Instant,
        key: &IsnKey,
        syn: &TcpRepr<'_>,
    ) -> Connection {
        let iss = SeqNumber(key.isn(&tuple, now));
        let mut c = Connection::new(cfg, tuple, iss, key.ts_offset(&tuple));
        c.passive = true;
        // Answer only what the peer offered (RFC 7323 §2.2, §3.2; RFC 2018 §2).
        c.offered_ws &= syn.options.window_scale.is_some();
        c.offered_sack &= syn.options.sack_permitted;
        c.offered_ts &= syn.options.timestamps.is_some();
        c.take_syn(now, syn);
        c.set_state(now, State::SynReceived);
        c
    }

    /// The embryo of a connection whose SYN-ACK carried a SYN cookie
    /// (RFC 4987 §3.6): SYN-RECEIVED as if that SYN-ACK had been sent from
    /// this end, with ISS = the cookie and the MSS the cookie encoded.
    /// Window scaling, SACK and timestamps are off: the cookie cannot
    /// carry them.
    pub(super) fn from_cookie(
        cfg: Config,
        tuple: FourTuple,
        now: Instant,
        key: &IsnKey,
        irs: SeqNumber,
        iss: SeqNumber,
        mss: u16,
    ) -> Connection {
        let mut c = Connection::new(cfg, tuple, iss, key.ts_offset(&tuple));
        c.passive = true;
        c.offered_ws = false;
        c.offered_sack = false;
        c.offered_ts = false;
        let syn = TcpRepr {
            src_port: tuple.remote.port(),
            dst_port: tuple.local.port(),
            seq_number: irs,
            ack_number: SeqNumber(0),
            flags: crate::wire::tcp::TcpFlags(crate::wire::tcp::TcpFlags::SYN),
            window: 0,
            urgent_pointer: 0,
            options: crate::wire::tcp::TcpOptions {
                mss: Some(mss),
                ..Default::default()
            },
            payload: &[],
        };
        c.take_syn(now, &syn);
        c.tcb.snd_nxt = iss + 1;
        c.tcb.snd_max = iss + 1;
        c.tcb.rcv_adv = c.tcb.rcv_nxt + c.rcv_buf.window().min(0xffff);
        c.set_state(now, State::SynReceived);
        c
    }

    /// Record the peer's SYN: IRS, RCV.NXT, its window and options
    /// (RFC 9293 §3.10.7.2 / §3.10.7.3 fourth).
    pub(super) fn take_syn(&mut self, now: Instant, syn: &TcpRepr<'_>) {
        let t = &mut self.tcb;
        t.irs = syn.seq_number;
        t.rcv_nxt = syn.seq_number + 1;
        t.last_ack_sent = t.rcv_nxt;
        t.rcv_adv = t.rcv_nxt;
        if let Some(mss) = syn.options.mss {
            // Untrusted: keep it within sane bounds (Linux uses 88 as a floor).
            t.send_mss = mss.max(64);
        }
        match (self.offered_ws, syn.options.window_scale) {
            (true, Some(s)) => {
                t.ws_enabled = true;
                t.snd_wnd_shift = s.min(14);
            }
            _ => {
                t.ws_enabled = false;
                t.snd_wnd_shift = 0;
                t.rcv_wnd_shift = 0;
            }
        }
        t.sack_enabled = self.offered_sack && syn.options.sack_permitted;
        if let (true, Some(ts)) = (self.offered_ts, syn.options.timestamps) {
            t.ts_enabled = true;
            t.ts_recent = ts.tsval;
            t.ts_recent_age_ms = now.total_millis();
        } else {
            t.ts_enabled = false;
        }
        // The window in a SYN is never scaled (RFC 7323 §2.2).
        t.snd_wnd = syn.window as usize;
        t.max_snd_wnd = t.snd_wnd;
        t.snd_wl1 = syn.seq_number;
        t.snd_wl2 = syn.ack_number;
        let mss = self.eff_mss();
        self.cc = Congestion::new(self.cfg.congestion, mss, self.cfg.initial_window);
    }

    // ---- inspection ----

    pub fn state(&self) -> State {
        self.state
    }

    pub fn tuple(&self) -> FourTuple {
        self.tuple
    }

    pub fn tcb(&self) -> &Tcb {
        &self.tcb
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Why the connection reached CLOSED, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        use super::congestion::Controller;
        self.cc.window()
    }

    /// The earliest timer deadline; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    /// Alias of [`Connection::poll_timeout`] under the name the shard's
    /// wheel uses.
    pub fn poll_at(&self) -> Option<Instant> {
        self.poll_timeout()
    }

    /// Effective send MSS (RFC 9293 §3.7.1, RFC 6691): the peer's MSS
    /// bounded by ours, minus the timestamp option every segment carries.
    pub fn eff_mss(&self) -> usize {
        let base = (self.tcb.send_mss.min(self.cfg.mss) as usize).max(64);
        if self.tcb.ts_enabled {
            base - 12
        } else {
            base
        }
    }

    /// Bytes queued and not yet acknowledged.
    pub fn send_queue(&self) -> usize {
        self.snd_buf.len()
    }

    /// Bytes ready to read.
    pub fn recv_queue(&self) -> usize {
        self.rcv_buf.len()
    }

    /// True when `send` would accept at least one byte.
    pub fn can_send(&self) -> bool {
        self.state.can_send_data() && !self.fin_queued && self.snd_buf.free() > 0
    }

    /// Bytes readable before the urgent mark, when the peer sent urgent data
    /// not yet read past (RFC 9293 §3.9.1.3; the data itself stays inline).
    pub fn urgent_mark(&self) -> Option<usize> {
        let up = self.tcb.rcv_up?;
        let read_end = self.tcb.rcv_nxt - self.rcv_buf.len();
        if up > read_end {
            Some(up - read_end)
        } else {
            None
        }
    }

    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.cfg.nagle = !nodelay;
    }

    // ---- application calls ----

    /// Queue bytes for sending (RFC 9293 §3.10.2); returns how many were
    /// taken (0 when the buffer is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if let Some(r) = self.broken() {
            return Err(SendError::Broken(r));
        }
        if !self.state.can_send_data() || self.fin_queued {
            return Err(SendError::Closed);
        }
        Ok(self.snd_buf.enqueue(data))
    }

    fn broken(&self) -> Option<CloseReason> {
        match self.close_reason {
            Some(CloseReason::Normal) | None => None,
            Some(r) => Some(r),
        }
    }

    /// Copy received bytes out (RFC 9293 §3.10.3). `Ok(0)` means nothing is
    /// ready yet.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<usize, RecvError> {
        if self.rcv_buf.is_empty() {
            self.recv_end()?;
            return Ok(0);
        }
        let n = self.rcv_buf.read(out);
        self.after_read();
        Ok(n)
    }

    /// `Ok(())` when more data may still come; the error otherwise.
    fn recv_end(&self) -> Result<(), RecvError> {
        if let Some(r) = self.broken() {
            return Err(RecvError::Broken(r));
        }
        if self.fin_received {
            return Err(RecvError::Finished);
        }
        Ok(())
    }

    /// Readable bytes without copying, as up to two slices; release them with
    /// [`Connection::consume`].
    pub fn peek(&self) -> Result<(&[u8], &[u8]), RecvError> {
        if self.rcv_buf.is_empty() {
            self.recv_end()?;
        }
        Ok(self.rcv_buf.peek())
    }

    /// Mark `n` bytes returned by [`Connection::peek`] as read.
    pub fn consume(&mut self, n: usize) {
        self.rcv_buf.consume(n);
        self.after_read();
    }

    /// First sequence number of data: after the SYN.
    pub(super) fn data_start(&self) -> SeqNumber {
        if self.tcb.snd_una == self.tcb.iss {
            self.tcb.iss + 1
        } else {
            self.tcb.snd_una
        }
    }

    /// Sequence number just past the queued data; the FIN's number once
    /// the write side is shut down.
    pub(super) fn data_end(&self) -> SeqNumber {
        self.data_start() + self.snd_buf.len()
    }

    /// Window update on read: when reading opened the window enough that the
    /// peer should know (RFC 9293 §3.8.6.2.2, RFC 1122 §4.2.3.3).
    fn after_read(&mut self) {
        if !self.state.can_receive_data() {
            return;
        }
        let cur = self.tcb.rcv_adv - self.tcb.rcv_nxt;
        let new = self.advertised_window();
        if new > cur && new >= 2 * cur && new - cur >= self.sws_threshold() {
            self.ack_now = true;
        }
    }

    /// Shut down the write side (RFC 9293 §3.10.4 CLOSE): the FIN goes out
    /// after the queued data. Reading continues. Before the handshake has
    /// completed (SYN-SENT, SYN-RECEIVED) the FIN waits for it, so "connect,
    /// write, shut down" needs no wait; [`Connection::close`] in SYN-SENT
    /// deletes the connection instead, as RFC 9293 says.
    pub fn shutdown_write(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::SynReceived => {
                // Sent when the handshake completes.
                self.fin_queued = true;
            }
            State::Established => {
                self.fin_queued = true;
                self.set_state(now, State::FinWait1);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(now, State::LastAck);
            }
            _ => {}
        }
    }

    /// Close both directions. Like Linux (and RFC 2525 §2.17), closing
    /// with unread data aborts with RST, since the peer would otherwise
    /// believe it was delivered; otherwise writing is shut down (FIN after
    /// the queued data) and data arriving later resets the connection.
    pub fn close(&mut self, now: Instant) {
        self.app_closed = true;
        if self.state == State::SynSent {
            self.close_with(now, CloseReason::Aborted);
            return;
        }
        if !self.rcv_buf.is_empty() {
            self.rcv_buf.consume(usize::MAX);
            self.abort(now);
            return;
        }
        self.shutdown_write(now);
    }

    /// RFC 6191-style TIME-WAIT reuse: may `syn` (a SYN for this 4-tuple
    /// arriving in TIME-WAIT) start a new connection? Yes when its timestamp
    /// is newer than the last one seen, or, without timestamps, when its
    /// sequence number lies beyond RCV.NXT. The caller then drops this
    /// connection and hands the SYN to the listener.
    pub fn syn_may_reopen(&self, syn: &TcpRepr<'_>) -> bool {
        if self.state != State::TimeWait || !syn.flags.syn() || syn.flags.ack() || syn.flags.rst() {
            return false;
        }
        match (self.tcb.ts_enabled, syn.options.timestamps) {
            (true, Some(ts)) => (ts.tsval.wrapping_sub(self.tcb.ts_recent) as i32) > 0,
            (true, None) => false,
            (false, _) => syn.seq_number > self.tcb.rcv_nxt,
        }
    }

    /// May `syn`, a SYN for this 4-tuple while the connection is an
    /// embryo of a listener (SYN-RECEIVED after a passive open), abandon
    /// that handshake and start a new one?
    ///
    /// - The same ISN: no, it is the peer retransmitting its SYN (our
    ///   SYN-ACK was lost), answered with the SYN-ACK again.
    /// - Another ISN with a timestamp newer than the one the first SYN
    ///   carried (TS.Recent): yes. The peer gave up on its first attempt
    ///   and opens again from the same port (a connect that failed or was
    ///   abandoned, a port reused); the newer timestamp shows the SYN is
    ///   no old duplicate (RFC 6191 §2 and RFC 7323 §5 reasoning, as for a
    ///   SYN in TIME-WAIT). RFC 9293 §3.10.7.4 (fourth, SYN-RECEIVED)
    ///   returns a passively opened connection to LISTEN on a SYN; the
    ///   listener then takes this SYN as LISTEN does, so the peer gets its
    ///   SYN-ACK at once instead of after its SYN retransmission timeout.
    /// - Otherwise (no timestamps, or an older one): no. The embryo
    ///   answers with an ACK (RFC 5961 §4.2 challenge ACK, rate-limited;
    ///   Linux's `tcp_check_req` sends the same out-of-window ACK). A peer
    ///   that abandoned the handshake resets it in reply (RFC 9293
    ///   §3.10.7.3) and its next SYN finds the listener; a blind attacker
    ///   who cannot see that ACK cannot take the handshake over.
    pub fn syn_may_restart(&self, syn: &TcpRepr<'_>) -> bool {
        let f = syn.flags;
        if self.state != State::SynReceived
            || !self.passive
            || !f.syn()
            || f.ack()
            || f.rst()
            || f.fin()
            || syn.seq_number == self.tcb.irs
        {
            return false;
        }
        match (self.tcb.ts_enabled, syn.options.timestamps) {
            (true, Some(ts)) => (ts.tsval.wrapping_sub(self.tcb.ts_recent) as i32) > 0,
            _ => false,
        }
    }

    /// Abort (RFC 9293 §3.10.5): send RST in synchronized states, drop
    /// everything, go to CLOSED.
    /// Consumes a finished connection, keeping its reusable memory.
    pub fn into_storage(mut self) -> ConnStorage {
        ConnStorage {
            snd: self.snd_buf.take_storage(),
            rcv: self.rcv_buf.take_storage(),
            records: self.loss.rack.take_records(),
        }
    }

    /// Gives a new connection the memory of a finished one (only where it
    /// has allocated none yet).
    pub fn install_storage(&mut self, st: ConnStorage) {
        if let Some(b) = st.snd {
            let _ = self.snd_buf.install_storage(b);
        }
        if let Some(b) = st.rcv {
            let _ = self.rcv_buf.install_storage(b);
        }
        if let Some(r) = st.records {
            self.loss.rack.install_records(r);
        }
    }

    pub fn abort(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.pending_rst = Some(PendingRst {
                seq: self.ack_seq(),
                ack: None,
            });
        }
        self.close_with(now, CloseReason::Aborted);
    }

    pub(super) fn close_with(&mut self, now: Instant, reason: CloseReason) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
        }
        self.set_state(now, State::Closed);
    }

    // ---- helpers shared by input and output ----

    /// TSval clock: milliseconds plus the per-connection offset.
    pub(super) fn ts_now(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.tcb.ts_offset)
    }

    /// Receiver SWS threshold: min(RCV.BUFF/2, MSS) (RFC 9293 §3.8.6.2.2).
    pub(super) fn sws_threshold(&self) -> usize {
        (self.rcv_buf.capacity() / 2).min(self.rcv_mss.max(1))
    }

    /// (Re)start the keep-alive idle timer (RFC 9293 §3.8.4): it runs in
    /// the states where the connection can sit idle waiting for the peer.
    pub(super) fn restart_keepalive(&mut self, now: Instant) {
        self.keepalive_sent = 0;
        match self.cfg.keepalive {
            Some(k) if self.keepalive_state() => {
                self.timers.set(TimerKind::Keepalive, now + k.idle)
            }
            _ => self.timers.clear(TimerKind::Keepalive),
        }
    }

    pub(super) fn keepalive_state(&self) -> bool {
        matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
        )
    }
}
