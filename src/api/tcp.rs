//! The TCP application APIs.
//!
//! [`TcpHandler`] is the run-to-completion style: one handler per listening
//! port and worker, called inside the worker by the shard's TCP half
//! ([`crate::shard_tcp`]) with each connection's events. Received bytes are
//! handed to [`TcpHandler::on_data`] as a slice borrowed from the
//! connection's receive buffer (no copy), together with the send side
//! ([`SendHalf`]) so an answer can be queued from them directly; the bytes
//! the handler reports as used are released from the buffer, the rest are
//! offered again on the next event (e.g. once acknowledgements free send
//! space). Per-connection state, when a handler needs it, lives in the
//! handler, keyed by [`ConnId`] (slot indices are small and reused, so a
//! `Vec` indexed by [`ConnId::slot`] works).

use crate::tcp::{CloseReason, Connection, FourTuple, SendError, SendHalf, State};
use crate::time::Instant;
use std::io;

/// A connection of one shard: its slab slot and the slot's generation (a
/// stale id never reaches a newer connection in the same slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// A connection as a handler sees it outside `on_data`.
#[derive(Debug)]
pub struct TcpConn<'a> {
    pub(crate) id: ConnId,
    pub(crate) conn: &'a mut Connection,
    pub(crate) now: Instant,
    pub(crate) timer: &'a mut Option<Instant>,
}

impl TcpConn<'_> {
    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn tuple(&self) -> FourTuple {
        self.conn.tuple()
    }

    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Queue bytes for sending; returns how many fit in the send buffer.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.conn.send(data)
    }

    /// Room in the send buffer (0 once the write side is shut down).
    pub fn send_free(&mut self) -> usize {
        self.conn.split().1.free()
    }

    /// Bytes queued and not yet acknowledged by the peer.
    pub fn send_queue(&self) -> usize {
        self.conn.send_queue()
    }

    /// Bytes received and not yet used.
    pub fn recv_queue(&self) -> usize {
        self.conn.recv_queue()
    }

    /// FIN after the queued data; receiving continues.
    pub fn shutdown_write(&mut self) {
        self.conn.shutdown_write(self.now);
    }

    /// Close both directions (RST if received data is left unread).
    pub fn close(&mut self) {
        self.conn.close(self.now);
    }

    /// Reset the connection.
    pub fn abort(&mut self) {
        self.conn.abort(self.now);
    }

    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.conn.set_nodelay(nodelay);
    }

    /// Call [`TcpHandler::on_timer`] for this connection at `at` (replaces
    /// an earlier one); `None` cancels.
    pub fn set_timer(&mut self, at: Option<Instant>) {
        *self.timer = at;
    }
}

/// A run-to-completion TCP application (see the module docs). Every
/// method runs inside the worker; none may block.
pub trait TcpHandler: Send {
    /// A passive open completed (the connection is ESTABLISHED).
    fn on_accept(&mut self, _now: Instant, _conn: &mut TcpConn<'_>) {}

    /// An active open completed.
    fn on_connect(&mut self, _now: Instant, _conn: &mut TcpConn<'_>) {}

    /// Received bytes, borrowed from the receive buffer. Returns how many
    /// were used; the rest are offered again later. `tx` queues bytes for
    /// sending on the same connection.
    fn on_data(&mut self, now: Instant, id: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize;

    /// Called after each event while the connection may send: room may
    /// have opened in the send buffer.
    fn on_writable(&mut self, _now: Instant, _conn: &mut TcpConn<'_>) {}

    /// The peer sent FIN and every byte before it has been used. The
    /// default closes this side too.
    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        conn.close();
    }

    /// The timer set with [`TcpConn::set_timer`] expired.
    fn on_timer(&mut self, _now: Instant, _conn: &mut TcpConn<'_>) {}

    /// The connection is over for the application (TIME-WAIT or CLOSED);
    /// `reason` is `None` while TIME-WAIT still runs.
    fn on_close(&mut self, _now: Instant, _id: ConnId, _reason: Option<CloseReason>) {}
}

/// The `io::ErrorKind` of an engine error, for the std::net-like handles.
pub fn close_reason_kind(r: CloseReason) -> io::ErrorKind {
    match r {
        CloseReason::Normal => io::ErrorKind::NotConnected,
        CloseReason::Refused => io::ErrorKind::ConnectionRefused,
        CloseReason::Reset => io::ErrorKind::ConnectionReset,
        CloseReason::TimedOut => io::ErrorKind::TimedOut,
        CloseReason::Aborted => io::ErrorKind::ConnectionAborted,
    }
}

/// The `io::ErrorKind` of a refused send.
pub fn send_error_kind(e: SendError) -> io::ErrorKind {
    match e {
        SendError::Closed => io::ErrorKind::BrokenPipe,
        SendError::Broken(r) => close_reason_kind(r),
    }
}
