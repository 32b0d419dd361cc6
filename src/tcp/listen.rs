//! Passive open: a listening port with its SYN queue (connections in
//! SYN-RECEIVED) and accept queue (established, not yet taken by the
//! application), both bounded (RFC 9293 §3.10.7.2, the LISTEN state).
//!
//! The listener owns the embryonic connections and their SYN-ACK
//! retransmissions; a connection leaves it through [`Listener::accept`].

use super::connection::Connection;
use super::input::reset_for;
use super::isn::IsnKey;
use super::state::State;
use super::{Config, DropReason, FourTuple};
use crate::time::Instant;
use crate::wire::tcp::{TcpFlags, TcpOptions, TcpRepr};
use crate::wire::SeqNumber;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;

/// Listener counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerCounters {
    pub syns: u64,
    pub accepted: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Embryonic connections that timed out or were reset.
    pub embryonic_dropped: u64,
    pub resets_sent: u64,
}

/// A listening socket.
#[derive(Debug)]
pub struct Listener {
    cfg: Config,
    local: SocketAddrV4,
    key: IsnKey,
    syn_backlog: usize,
    accept_backlog: usize,
    /// Ordered so that output order is deterministic.
    syn_queue: BTreeMap<FourTuple, Connection>,
    accept_queue: VecDeque<Connection>,
    /// RSTs to send: (remote, SEQ, ACK).
    resets: VecDeque<(SocketAddrV4, SeqNumber, Option<SeqNumber>)>,
    counters: ListenerCounters,
}

impl Listener {
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
            syn_queue: BTreeMap::new(),
            accept_queue: VecDeque::new(),
            resets: VecDeque::new(),
            counters: ListenerCounters::default(),
        }
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

    /// A segment from `remote` to this listener's port, for a 4-tuple with
    /// no established connection.
    pub fn on_segment(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        seg: &TcpRepr<'_>,
    ) -> Result<(), DropReason> {
        let tuple = self.tuple(remote);
        if let Some(conn) = self.syn_queue.get_mut(&tuple) {
            if seg.flags.ack() && !seg.flags.rst() && self.accept_queue.len() >= self.accept_backlog
            {
                // Like Linux: keep the embryo and let the peer retransmit.
                return self.drop(DropReason::AcceptQueueFull);
            }
            let r = conn.on_segment(now, seg);
            self.settle(tuple);
            return r;
        }
        let f = seg.flags;
        // RFC 9293 §3.10.7.2: RST is ignored, ACK is answered with RST.
        if f.rst() {
            return self.drop(DropReason::ListenNotSyn);
        }
        if f.ack() {
            let r = reset_for(seg);
            self.resets.push_back((remote, r.seq, r.ack));
            return self.drop(DropReason::ListenNotSyn);
        }
        if !f.syn() {
            return self.drop(DropReason::ListenNotSyn);
        }
        if self.syn_queue.len() >= self.syn_backlog {
            return self.drop(DropReason::SynQueueFull);
        }
        self.counters.syns += 1;
        let conn = Connection::accept_syn(self.cfg.clone(), tuple, now, &self.key, seg);
        self.syn_queue.insert(tuple, conn);
        Ok(())
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
                        self.resets.push_back((tuple.remote, r.seq, r.ack));
                    }
                    self.counters.embryonic_dropped += 1;
                }
            }
            _ => {
                if let Some(c) = self.syn_queue.remove(&tuple) {
                    self.counters.accepted += 1;
                    self.accept_queue.push_back(c);
                }
            }
        }
    }

    /// The oldest established connection, if any.
    pub fn accept(&mut self) -> Option<Connection> {
        self.accept_queue.pop_front()
    }

    /// Earliest deadline of the embryonic connections.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.syn_queue
            .values()
            .filter_map(|c| c.poll_timeout())
            .min()
    }

    /// Segments to send: RSTs and the SYN-ACKs (and their retransmissions)
    /// of the SYN queue. `emit` gets the remote address and the segment.
    pub fn poll_transmit<F>(&mut self, now: Instant, mut emit: F) -> usize
    where
        F: FnMut(SocketAddrV4, &TcpRepr<'_>) -> bool,
    {
        let mut sent = 0;
        while let Some(&(remote, seq, ack)) = self.resets.front() {
            let mut flags = TcpFlags::RST;
            if ack.is_some() {
                flags |= TcpFlags::ACK;
            }
            let repr = TcpRepr {
                src_port: self.local.port(),
                dst_port: remote.port(),
                seq_number: seq,
                ack_number: ack.unwrap_or(SeqNumber(0)),
                flags: TcpFlags(flags),
                window: 0,
                urgent_pointer: 0,
                options: TcpOptions::default(),
                payload: &[],
            };
            if !emit(remote, &repr) {
                return sent;
            }
            self.resets.pop_front();
            self.counters.resets_sent += 1;
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
        sent
    }
}
