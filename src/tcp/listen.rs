//! Passive open: a listening port with its SYN queue (connections in
//! SYN-RECEIVED) and accept queue (established, not yet taken by the
//! application), both bounded (RFC 9293 §3.10.7.2, the LISTEN state), and
//! SYN cookies (RFC 4987 §3.6) once the SYN queue is full.
//!
//! The listener owns the embryonic connections and their SYN-ACK
//! retransmissions, and the established connections not yet accepted: it
//! takes their segments and polls their output (data may arrive before the
//! application accepts). A connection leaves it through
//! [`Listener::accept`], after which its owner routes its 4-tuple to it.
//!
//! A SYN for an embryo's 4-tuple: the same ISN is the peer retransmitting
//! (answered with the SYN-ACK again); another ISN with a newer timestamp
//! replaces the embryo with a new one, so a peer that abandoned its first
//! attempt and reuses the port is answered at once (RFC 9293 §3.10.7.4,
//! see [`Connection::syn_may_restart`]); any other is answered with an ACK
//! (RFC 5961 §4.2).
//!
//! # SYN cookies
//! When the SYN queue is full, the SYN-ACK's ISS is a cookie and nothing is
//! stored: 5 bits of a 64-second counter, 2 bits of an MSS table index and
//! a 25-bit keyed MAC of the 4-tuple, the counter and the peer's ISN. An ACK
//! for an unknown tuple whose ACK-1 is a valid cookie from the last two
//! counter periods becomes a connection. Such a connection runs without
//! window scaling, SACK and timestamps (the cookie has no room for them).

use super::connection::{ConnStorage, Connection};
use super::input::reset_for;
use super::isn::IsnKey;
use super::state::State;
use super::{Config, DropReason, FourTuple};
use crate::time::Instant;
use crate::wire::tcp::{TcpFlags, TcpOptions, TcpRepr};
use crate::wire::SeqNumber;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;

/// MSS values a cookie can encode.
const COOKIE_MSS: [u16; 4] = [536, 1220, 1440, 1460];
/// Cookie counter period.
const COOKIE_PERIOD_US: u64 = 64_000_000;
const MAC_MASK: u32 = (1 << 25) - 1;

/// Listener counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerCounters {
    pub syns: u64,
    pub accepted: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Embryonic connections that timed out or were reset.
    pub embryonic_dropped: u64,
    /// Embryonic connections replaced by a newer SYN from the same peer
    /// port ([`Connection::syn_may_restart`]).
    pub embryonic_restarted: u64,
    pub resets_sent: u64,
    pub cookies_sent: u64,
    pub cookies_accepted: u64,
    pub cookies_invalid: u64,
}

/// A listening socket.
#[derive(Debug)]
pub struct Listener {
    cfg: Config,
    local: SocketAddrV4,
    key: IsnKey,
    syn_backlog: usize,
    accept_backlog: usize,
    /// Answer SYNs with cookies when the SYN queue is full.
    syn_cookies: bool,
    /// Ordered so that output order is deterministic.
    syn_queue: BTreeMap<FourTuple, Connection>,
    /// Established, in arrival order; segments for them still come here.
    accept_queue: VecDeque<(FourTuple, Connection)>,
    /// Stateless replies to send: RSTs and cookie SYN-ACKs.
    replies: VecDeque<(SocketAddrV4, TcpRepr<'static>)>,
    counters: ListenerCounters,
}

impl Listener {
    /// A listener on `local` with SYN cookies on.
    pub fn new(
        cfg: Config,
        local: SocketAddrV4,
        key: IsnKey,
        syn_backlog: usize,
        accept_backlog: usize,
    ) -> Listener {
        Listener {
            cfg,
            local,
            key,
            syn_backlog: syn_backlog.max(1),
            accept_backlog: accept_backlog.max(1),
            syn_cookies: true,
            syn_queue: BTreeMap::new(),
            accept_queue: VecDeque::new(),
            replies: VecDeque::new(),
            counters: ListenerCounters::default(),
        }
    }

    pub fn set_syn_cookies(&mut self, on: bool) {
        self.syn_cookies = on;
    }

    pub fn state(&self) -> State {
        State::Listen
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn counters(&self) -> &ListenerCounters {
        &self.counters
    }

    pub fn syn_queue_len(&self) -> usize {
        self.syn_queue.len()
    }

    pub fn accept_queue_len(&self) -> usize {
        self.accept_queue.len()
    }

    /// Whether `remote` has a connection in the SYN queue.
    pub fn has_embryonic(&self, remote: SocketAddrV4) -> bool {
        self.syn_queue.contains_key(&self.tuple(remote))
    }

    fn tuple(&self, remote: SocketAddrV4) -> FourTuple {
        FourTuple {
            local: self.local,
            remote,
        }
    }

    fn drop(&mut self, r: DropReason) -> Result<(), DropReason> {
        self.counters.drops[r as usize] += 1;
        Err(r)
    }

    fn queue_rst(&mut self, remote: SocketAddrV4, seq: SeqNumber, ack: Option<SeqNumber>) {
        let mut flags = TcpFlags::RST;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        self.replies.push_back((
            remote,
            TcpRepr {
                src_port: self.local.port(),
                dst_port: remote.port(),
                seq_number: seq,
                ack_number: ack.unwrap_or(SeqNumber(0)),
                flags: TcpFlags(flags),
                window: 0,
                urgent_pointer: 0,
                options: TcpOptions::default(),
                payload: &[],
            },
        ));
    }

    /// A segment from `remote` to this listener's port, for a 4-tuple with
    /// no established connection.
    pub fn on_segment(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        seg: &TcpRepr<'_>,
    ) -> Result<(), DropReason> {
        self.on_segment_pooled(now, remote, seg, &mut Vec::new())
    }

    /// [`Listener::on_segment`] with the memory finished connections left
    /// (see [`ConnStorage`]): a new embryo takes one (its SYN-ACK and the
    /// data that may follow the handshake's ACK at once need it). Embryos
    /// beyond the pool (a SYN flood) get none and allocate nothing until
    /// data arrives; an embryo that times out drops what it took.
    pub fn on_segment_pooled(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        seg: &TcpRepr<'_>,
        pool: &mut Vec<ConnStorage>,
    ) -> Result<(), DropReason> {
        let tuple = self.tuple(remote);
        if let Some((_, conn)) = self.accept_queue.iter_mut().find(|(t, _)| *t == tuple) {
            return conn.on_segment(now, seg);
        }
        let accept_full = self.accept_queue.len() >= self.accept_backlog;
        // A new SYN from a peer that abandoned its handshake: the embryo
        // gives way and the SYN is taken below as in LISTEN (see
        // `Connection::syn_may_restart`, RFC 9293 §3.10.7.4).
        if self
            .syn_queue
            .get(&tuple)
            .is_some_and(|c| c.syn_may_restart(seg))
        {
            if let Some(old) = self.syn_queue.remove(&tuple) {
                self.counters.embryonic_restarted += 1;
                let st = old.into_storage();
                if !st.is_empty() {
                    pool.push(st);
                }
            }
        }
        if let Some(conn) = self.syn_queue.get_mut(&tuple) {
            if seg.flags.ack() && !seg.flags.rst() && accept_full {
                // Like Linux: keep the embryo and let the peer retransmit.
                return self.drop(DropReason::AcceptQueueFull);
            }
            let r = conn.on_segment(now, seg);
            self.settle(tuple);
            return r;
        }
        let f = seg.flags;
        // RFC 9293 §3.10.7.2: RST is ignored, ACK is answered with RST
        // (unless it returns a valid SYN cookie).
        if f.rst() {
            return self.drop(DropReason::ListenNotSyn);
        }
        if f.ack() {
            if self.syn_cookies && !f.syn() {
                if let Some(mss) = self.check_cookie(now, &tuple, seg) {
                    if accept_full {
                        return self.drop(DropReason::AcceptQueueFull);
                    }
                    return self.accept_cookie(now, tuple, seg, mss);
                }
            }
            let r = reset_for(seg);
            self.queue_rst(remote, r.seq, r.ack);
            return self.drop(DropReason::ListenNotSyn);
        }
        // SYN+FIN is no connection request (Linux drops it too).
        if !f.syn() || f.fin() {
            return self.drop(DropReason::ListenNotSyn);
        }
        if self.syn_queue.len() >= self.syn_backlog {
            if self.syn_cookies {
                self.send_cookie(now, tuple, seg);
                return Ok(());
            }
            return self.drop(DropReason::SynQueueFull);
        }
        self.counters.syns += 1;
        let mut conn = Connection::accept_syn(self.cfg.clone(), tuple, now, &self.key, seg);
        if let Some(st) = pool.pop() {
            conn.install_storage(st);
        }
        self.syn_queue.insert(tuple, conn);
        Ok(())
    }

    fn cookie(&self, tuple: &FourTuple, count: u32, peer_isn: SeqNumber, mss_idx: u32) -> u32 {
        let mac = self.key.mac(tuple, count, peer_isn.0 ^ mss_idx) & MAC_MASK;
        ((count & 31) << 27) | (mss_idx << 25) | mac
    }

    /// RFC 4987 §3.6: answer the SYN with a SYN-ACK whose ISS is a cookie.
    fn send_cookie(&mut self, now: Instant, tuple: FourTuple, syn: &TcpRepr<'_>) {
        let peer_mss = syn.options.mss.unwrap_or(536).min(self.cfg.mss);
        let mss_idx = COOKIE_MSS.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32;
        let count = (now.total_micros() / COOKIE_PERIOD_US) as u32;
        let iss = self.cookie(&tuple, count, syn.seq_number, mss_idx);
        self.counters.cookies_sent += 1;
        self.replies.push_back((
            tuple.remote,
            TcpRepr {
                src_port: self.local.port(),
                dst_port: tuple.remote.port(),
                seq_number: SeqNumber(iss),
                ack_number: syn.seq_number + 1,
                flags: TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
                window: self.cfg.recv_buffer.min(0xffff) as u16,
                urgent_pointer: 0,
                options: TcpOptions {
                    mss: Some(self.cfg.mss),
                    ..TcpOptions::default()
                },
                payload: &[],
            },
        ));
    }

    /// The MSS a valid cookie in `ack` encodes.
    fn check_cookie(&mut self, now: Instant, tuple: &FourTuple, ack: &TcpRepr<'_>) -> Option<u16> {
        let cookie = (ack.ack_number - 1).0;
        let peer_isn = ack.seq_number - 1;
        let count_now = (now.total_micros() / COOKIE_PERIOD_US) as u32;
        let mss_idx = (cookie >> 25) & 3;
        for age in 0..2 {
            let count = count_now.wrapping_sub(age);
            if count & 31 == cookie >> 27 && self.cookie(tuple, count, peer_isn, mss_idx) == cookie
            {
                return Some(COOKIE_MSS[mss_idx as usize]);
            }
        }
        self.counters.cookies_invalid += 1;
        None
    }

    fn accept_cookie(
        &mut self,
        now: Instant,
        tuple: FourTuple,
        ack: &TcpRepr<'_>,
        mss: u16,
    ) -> Result<(), DropReason> {
        let mut conn = Connection::from_cookie(
            self.cfg.clone(),
            tuple,
            now,
            &self.key,
            ack.seq_number - 1,
            ack.ack_number - 1,
            mss,
        );
        let r = conn.on_segment(now, ack);
        if conn.state().is_synchronized() && conn.state() != State::SynReceived {
            self.counters.cookies_accepted += 1;
            self.counters.accepted += 1;
            self.accept_queue.push_back((tuple, conn));
        }
        r
    }

    /// Move a finished handshake to the accept queue, forget a dead one.
    fn settle(&mut self, tuple: FourTuple) {
        let Some(state) = self.syn_queue.get(&tuple).map(|c| c.state()) else {
            return;
        };
        match state {
            State::SynReceived => {}
            State::Closed => {
                if let Some(mut c) = self.syn_queue.remove(&tuple) {
                    // A pending RST (e.g. for a bad ACK) still goes out.
                    if let Some(r) = c.pending_rst.take() {
                        self.queue_rst(tuple.remote, r.seq, r.ack);
                    }
                    self.counters.embryonic_dropped += 1;
                }
            }
            _ => {
                if let Some(c) = self.syn_queue.remove(&tuple) {
                    self.counters.accepted += 1;
                    self.accept_queue.push_back((tuple, c));
                }
            }
        }
    }

    /// The oldest established connection, if any.
    pub fn accept(&mut self) -> Option<Connection> {
        self.accept_queue.pop_front().map(|(_, c)| c)
    }

    /// Earliest deadline of the connections the listener holds.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let embryos = self.syn_queue.values();
        let ready = self.accept_queue.iter().map(|(_, c)| c);
        embryos.chain(ready).filter_map(|c| c.poll_timeout()).min()
    }

    /// Segments to send: RSTs, cookie SYN-ACKs, the SYN-ACKs (and their
    /// retransmissions) of the SYN queue, and the output of established
    /// connections not yet accepted. `emit` gets the remote address and
    /// the segment and returns `false` when it has no room.
    pub fn poll_transmit<F>(&mut self, now: Instant, mut emit: F) -> usize
    where
        F: FnMut(SocketAddrV4, &TcpRepr<'_>) -> bool,
    {
        let mut sent = 0;
        while let Some((remote, repr)) = self.replies.front() {
            if !emit(*remote, repr) {
                return sent;
            }
            if repr.flags.rst() {
                self.counters.resets_sent += 1;
            }
            self.replies.pop_front();
            sent += 1;
        }
        let mut done = Vec::new();
        for (tuple, conn) in self.syn_queue.iter_mut() {
            sent += conn.poll_transmit(now, |r| emit(tuple.remote, r));
            if conn.state() != State::SynReceived {
                done.push(*tuple);
            }
        }
        for t in done {
            self.settle(t);
        }
        for (tuple, conn) in self.accept_queue.iter_mut() {
            sent += conn.poll_transmit(now, |r| emit(tuple.remote, r));
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use crate::wire::tcp::Timestamps;
    use std::net::Ipv4Addr;

    const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
    const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000);
    const ISN_A: u32 = 1_000_000;
    const ISN_B: u32 = 7_000_000;

    /// (flags, seq, ack) of what the listener sent.
    type Sent = (TcpFlags, SeqNumber, SeqNumber);

    fn listener() -> Listener {
        Listener::new(Config::default(), LOCAL, IsnKey::from_parts(1, 2), 16, 16)
    }

    fn seg(flags: u8, seq: u32, ack: u32, tsval: Option<u32>) -> TcpRepr<'static> {
        TcpRepr {
            src_port: REMOTE.port(),
            dst_port: LOCAL.port(),
            seq_number: SeqNumber(seq),
            ack_number: SeqNumber(ack),
            flags: TcpFlags(flags),
            window: 65535,
            urgent_pointer: 0,
            options: TcpOptions {
                mss: (flags & TcpFlags::SYN != 0).then_some(1460),
                timestamps: tsval.map(|tsval| Timestamps { tsval, tsecr: 0 }),
                ..TcpOptions::default()
            },
            payload: &[],
        }
    }

    fn syn(isn: u32, tsval: Option<u32>) -> TcpRepr<'static> {
        seg(TcpFlags::SYN, isn, 0, tsval)
    }

    fn output(l: &mut Listener, now: Instant) -> Vec<Sent> {
        let mut out = Vec::new();
        l.poll_transmit(now, |remote, s| {
            assert_eq!(remote, REMOTE);
            out.push((s.flags, s.seq_number, s.ack_number));
            true
        });
        out
    }

    fn is_syn_ack(f: TcpFlags) -> bool {
        f.syn() && f.ack() && !f.rst()
    }

    /// The listener with one embryo from `ISN_A` whose SYN-ACK has left;
    /// returns the SYN-ACK's ISS.
    fn with_embryo(l: &mut Listener, tsval: Option<u32>) -> SeqNumber {
        let t0 = Instant::ZERO;
        l.on_segment(t0, REMOTE, &syn(ISN_A, tsval)).unwrap();
        let out = output(l, t0);
        assert_eq!(out.len(), 1);
        assert!(is_syn_ack(out[0].0));
        assert_eq!(out[0].2, SeqNumber(ISN_A + 1));
        out[0].1
    }

    #[test]
    fn retransmitted_syn_gets_the_same_syn_ack() {
        let mut l = listener();
        let iss = with_embryo(&mut l, Some(100));
        let now = Instant::ZERO + Duration::from_millis(300);
        let _ = l.on_segment(now, REMOTE, &syn(ISN_A, Some(400)));
        let out = output(&mut l, now);
        assert_eq!(out.len(), 1);
        assert!(is_syn_ack(out[0].0));
        assert_eq!((out[0].1, out[0].2), (iss, SeqNumber(ISN_A + 1)));
        assert_eq!(l.counters().embryonic_restarted, 0);
        assert_eq!(l.syn_queue_len(), 1);
    }

    #[test]
    fn newer_syn_with_another_isn_restarts_the_handshake() {
        let mut l = listener();
        with_embryo(&mut l, Some(100));
        let now = Instant::ZERO + Duration::from_millis(20);
        l.on_segment(now, REMOTE, &syn(ISN_B, Some(120))).unwrap();
        assert_eq!(l.counters().embryonic_restarted, 1);
        assert_eq!(l.syn_queue_len(), 1);
        let out = output(&mut l, now);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(is_syn_ack(out[0].0));
        assert_eq!(out[0].2, SeqNumber(ISN_B + 1));
        // The handshake completes on the new ISN.
        let ack = seg(TcpFlags::ACK, ISN_B + 1, (out[0].1 + 1).0, Some(121));
        l.on_segment(now, REMOTE, &ack).unwrap();
        let c = l.accept().expect("established");
        assert_eq!(c.tcb().irs, SeqNumber(ISN_B));
        assert_eq!(c.state(), State::Established);
    }

    #[test]
    fn older_syn_with_another_isn_is_answered_with_an_ack() {
        let mut l = listener();
        let iss = with_embryo(&mut l, Some(100));
        let now = Instant::ZERO + Duration::from_millis(20);
        // An old duplicate: its timestamp is older than the first SYN's.
        let _ = l.on_segment(now, REMOTE, &syn(ISN_B, Some(50)));
        assert_eq!(l.counters().embryonic_restarted, 0);
        let out = output(&mut l, now);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(!out[0].0.syn() && out[0].0.ack());
        assert_eq!((out[0].1, out[0].2), (iss + 1, SeqNumber(ISN_A + 1)));
        assert_eq!(l.syn_queue_len(), 1);
    }

    #[test]
    fn syn_without_timestamps_does_not_restart() {
        let mut l = listener();
        let iss = with_embryo(&mut l, None);
        let now = Instant::ZERO + Duration::from_millis(20);
        let _ = l.on_segment(now, REMOTE, &syn(ISN_B, None));
        assert_eq!(l.counters().embryonic_restarted, 0);
        let out = output(&mut l, now);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(!out[0].0.syn() && out[0].0.ack());
        assert_eq!(out[0].2, SeqNumber(ISN_A + 1));
        assert_eq!(out[0].1, iss + 1);
        // The peer that abandoned the handshake resets the embryo
        // (<SEQ=SEG.ACK><CTL=RST>); its next SYN then opens afresh.
        let rst = seg(TcpFlags::RST, ISN_A + 1, 0, None);
        let _ = l.on_segment(now, REMOTE, &rst);
        assert_eq!(l.syn_queue_len(), 0);
        l.on_segment(now, REMOTE, &syn(ISN_B, None)).unwrap();
        let out = output(&mut l, now);
        assert!(is_syn_ack(out[0].0));
        assert_eq!(out[0].2, SeqNumber(ISN_B + 1));
    }
}
