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

use crate::neighbor::Mac;
use crate::shard_tcp::ConnectError;
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

    /// Received bytes, borrowed from the receive buffer: the first
    /// contiguous run of them (the buffer is a ring, so a run may end
    /// before the data does; once it is used, the rest follows in the next
    /// call). Returns how many were used; the rest are offered again on the
    /// next event, so a handler that needs more than one run at once (a
    /// message split at the ring's end) keeps its own copy. `tx` queues
    /// bytes for sending on the same connection.
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

    /// The connection is over for the application: called with `None`
    /// when it enters TIME-WAIT (received bytes left unused are still
    /// offered to `on_data` until it ends), and with the reason when it is
    /// CLOSED and leaves the table (after TIME-WAIT too).
    fn on_close(&mut self, _now: Instant, _id: ConnId, _reason: Option<CloseReason>) {}

    /// Called once per worker loop iteration, before the shard transmits,
    /// with `open` for active opens of the handler's own (a client, a load
    /// generator). The default does nothing.
    fn poll(&mut self, _now: Instant, _open: &mut dyn TcpOpen) {}
}

/// Active opens from inside the worker, handed to [`TcpHandler::poll`].
pub trait TcpOpen {
    /// Opens a connection to `remote` whose events go to the polled
    /// handler: `on_connect` once established, `on_close` with the reason
    /// if it fails. The SYN leaves with this iteration's batch. `mac` is
    /// the next hop's MAC when the caller knows it (otherwise the shard's
    /// neighbour cache is asked).
    fn connect(&mut self, remote: SocketAddrV4, mac: Option<Mac>) -> Result<ConnId, ConnectError>;
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

// ---------------------------------------------------------------------
// Thread-side handles: TcpListener and TcpStream, bridged to a worker.
// ---------------------------------------------------------------------

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::time::Duration as StdDuration;

use crate::ports::Protocol;
use crate::worker::{Command, StackHandle};

/// Bytes a stream may have in flight across the thread boundary in each
/// direction (written and not yet taken by the engine; received and not
/// yet read). Beyond it the writer blocks and the worker stops reading the
/// connection, so TCP flow control pushes back on the peer.
pub const STREAM_WINDOW: usize = 256 * 1024;

/// Messages from a thread to the worker that owns the connection (inside
/// [`Command::Tcp`]).
#[derive(Debug)]
pub enum TcpCommand {
    /// Listen on `port` (already reserved); accepted streams go to
    /// `accepted`.
    Listen {
        port: u16,
        accepted: Sender<Accepted>,
        reply: Sender<Result<(), io::ErrorKind>>,
    },
    Unlisten {
        port: u16,
    },
    /// Active open; the outcome arrives on `events`.
    Connect {
        remote: SocketAddrV4,
        events: Sender<StreamEvent>,
    },
    Write {
        id: ConnId,
        data: Vec<u8>,
    },
    /// The thread read `n` bytes: room for more.
    Consumed {
        id: ConnId,
        n: usize,
    },
    ShutdownWrite {
        id: ConnId,
    },
    /// The handle is gone: close (RST if data was left unread).
    Close {
        id: ConnId,
    },
    SetNodelay {
        id: ConnId,
        on: bool,
    },
}

/// Messages from the worker to a stream.
#[derive(Debug)]
pub enum StreamEvent {
    Connected {
        id: ConnId,
        local: SocketAddrV4,
    },
    Data(Vec<u8>),
    /// `n` written bytes went into the connection's send buffer.
    Written(usize),
    /// The peer finished sending.
    Eof,
    /// The connection failed (reset, refused, timed out, aborted).
    Error(io::ErrorKind),
}

/// A connection accepted by a worker for a [`TcpListener`].
#[derive(Debug)]
pub struct Accepted {
    pub id: ConnId,
    pub worker: usize,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub events: Receiver<StreamEvent>,
}

/// One stream's state on the worker side.
#[derive(Debug)]
struct Bridged {
    generation: u32,
    events: Sender<StreamEvent>,
    /// Written bytes not yet in the send buffer.
    pending: Vec<u8>,
    pending_off: usize,
    /// Received bytes in the channel, not yet read by the thread.
    unread: usize,
    shutdown: bool,
    /// The handle was dropped: close once the pending writes are in.
    closing: bool,
}

/// The worker side of the thread-side handles: a [`TcpHandler`] owned by
/// the shard's TCP half that forwards events to stream channels and
/// applies [`TcpCommand`]s. The payload is copied once at the thread
/// boundary each way (the receive and send buffers belong to the worker).
#[derive(Debug)]
pub struct StreamBridge {
    worker: usize,
    streams: Vec<Option<Bridged>>,
    listeners: HashMap<u16, Sender<Accepted>>,
}

impl StreamBridge {
    pub fn new(worker: usize) -> StreamBridge {
        StreamBridge {
            worker,
            streams: Vec::new(),
            listeners: HashMap::new(),
        }
    }

    fn get(&mut self, id: ConnId) -> Option<&mut Bridged> {
        match self.streams.get_mut(id.slot as usize) {
            Some(Some(b)) if b.generation == id.generation => Some(b),
            _ => None,
        }
    }

    pub(crate) fn add_listener(&mut self, port: u16, accepted: Sender<Accepted>) {
        self.listeners.insert(port, accepted);
    }

    pub(crate) fn remove_listener(&mut self, port: u16) {
        self.listeners.remove(&port);
    }

    /// Attaches a new connection to `events`.
    pub(crate) fn attach(&mut self, id: ConnId, events: Sender<StreamEvent>) {
        let i = id.slot as usize;
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, || None);
        }
        self.streams[i] = Some(Bridged {
            generation: id.generation,
            events,
            pending: Vec::new(),
            pending_off: 0,
            unread: 0,
            shutdown: false,
            closing: false,
        });
    }

    /// Applies a stream command to its connection.
    pub(crate) fn apply(&mut self, conn: &mut TcpConn<'_>, cmd: TcpCommand) {
        let id = conn.id();
        let Some(b) = self.get(id) else {
            return;
        };
        match cmd {
            TcpCommand::Write { data, .. } => {
                if b.pending_off == b.pending.len() {
                    b.pending.clear();
                    b.pending_off = 0;
                }
                b.pending.extend_from_slice(&data);
            }
            TcpCommand::Consumed { n, .. } => b.unread = b.unread.saturating_sub(n),
            TcpCommand::ShutdownWrite { .. } => b.shutdown = true,
            TcpCommand::Close { .. } => {
                if b.unread > 0 {
                    // Received data the thread never read: RST, as a
                    // kernel socket does (RFC 2525 §2.17).
                    self.streams[id.slot as usize] = None;
                    conn.abort();
                    return;
                }
                // Like a kernel socket's close: what was written still goes
                // out, then FIN.
                b.shutdown = true;
                b.closing = true;
            }
            TcpCommand::SetNodelay { on, .. } => conn.set_nodelay(on),
            _ => {}
        }
        Self::flush(b, conn);
    }

    /// Moves pending writes into the send buffer; FIN once all are in.
    fn flush(b: &mut Bridged, conn: &mut TcpConn<'_>) {
        if b.pending_off < b.pending.len() {
            match conn.send(&b.pending[b.pending_off..]) {
                Ok(n) if n > 0 => {
                    b.pending_off += n;
                    let _ = b.events.send(StreamEvent::Written(n));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = b.events.send(StreamEvent::Error(send_error_kind(e)));
                    b.pending_off = b.pending.len();
                }
            }
        }
        if b.shutdown && b.pending_off == b.pending.len() {
            if b.closing {
                conn.close();
            } else {
                conn.shutdown_write();
            }
        }
    }
}

impl TcpHandler for StreamBridge {
    fn on_accept(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let t = conn.tuple();
        let Some(tx) = self.listeners.get(&t.local.port()).cloned() else {
            conn.abort();
            return;
        };
        let (etx, erx) = channel::unbounded();
        let a = Accepted {
            id: conn.id(),
            worker: self.worker,
            local: t.local,
            remote: t.remote,
            events: erx,
        };
        if tx.send(a).is_err() {
            conn.abort();
            return;
        }
        self.attach(conn.id(), etx);
    }

    fn on_connect(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let local = conn.tuple().local;
        if let Some(b) = self.get(id) {
            let _ = b.events.send(StreamEvent::Connected { id, local });
        }
    }

    fn on_data(&mut self, _now: Instant, id: ConnId, data: &[u8], _tx: &mut SendHalf<'_>) -> usize {
        let Some(b) = self.get(id) else {
            return data.len();
        };
        if b.closing {
            // The handle is gone: nobody reads.
            return data.len();
        }
        let n = data.len().min(STREAM_WINDOW.saturating_sub(b.unread));
        if n > 0 {
            b.unread += n;
            let _ = b.events.send(StreamEvent::Data(data[..n].to_vec()));
        }
        n
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        if let Some(b) = self.get(conn.id()) {
            Self::flush(b, conn);
        }
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        match self.get(conn.id()) {
            Some(b) => {
                let _ = b.events.send(StreamEvent::Eof);
            }
            None => conn.close(),
        }
    }

    fn on_close(&mut self, _now: Instant, id: ConnId, reason: Option<CloseReason>) {
        let Some(b) = self.get(id) else {
            return;
        };
        match reason {
            // TIME-WAIT: unread data may still be waiting for credit; the
            // end of the stream is reported by `on_peer_closed`.
            None => return,
            Some(CloseReason::Normal) => {
                let _ = b.events.send(StreamEvent::Eof);
            }
            Some(r) => {
                let _ = b.events.send(StreamEvent::Error(close_reason_kind(r)));
            }
        }
        self.streams[id.slot as usize] = None;
    }
}

fn kind_err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

/// A listening socket served by every worker of a stack (a SYN is served
/// by the worker whose queue it reached).
#[derive(Debug)]
pub struct TcpListener {
    handle: StackHandle,
    port: u16,
    accepted: Receiver<Accepted>,
}

impl TcpListener {
    /// Reserves `port` (0: an ephemeral one) and listens on every worker.
    pub fn bind(handle: &StackHandle, port: u16) -> io::Result<TcpListener> {
        let port = handle.reserve_port(Protocol::Tcp, port)?;
        let (tx, rx) = channel::unbounded();
        let mut replies = Vec::new();
        for w in 0..handle.workers() {
            let (rtx, rrx) = channel::bounded(1);
            let cmd = TcpCommand::Listen {
                port,
                accepted: tx.clone(),
                reply: rtx,
            };
            if let Err(e) = handle.command(w, Command::Tcp(cmd)) {
                Self::undo(handle, port);
                return Err(e);
            }
            replies.push(rrx);
        }
        for r in replies {
            match r.recv_timeout(StdDuration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(k)) => {
                    Self::undo(handle, port);
                    return Err(kind_err(k, "listen refused by a worker"));
                }
                Err(_) => {
                    Self::undo(handle, port);
                    return Err(kind_err(io::ErrorKind::TimedOut, "worker silent"));
                }
            }
        }
        Ok(TcpListener {
            handle: handle.clone(),
            port,
            accepted: rx,
        })
    }

    fn undo(handle: &StackHandle, port: u16) {
        for w in 0..handle.workers() {
            let _ = handle.command(w, Command::Tcp(TcpCommand::Unlisten { port }));
        }
        handle.release_port(Protocol::Tcp, port);
    }

    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.handle.local_ip(), self.port))
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let a = self
            .accepted
            .recv()
            .map_err(|_| kind_err(io::ErrorKind::BrokenPipe, "workers stopped"))?;
        Ok(self.stream(a))
    }

    /// [`accept`](Self::accept) without waiting: `WouldBlock` when none is
    /// ready.
    pub fn try_accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match self.accepted.try_recv() {
            Ok(a) => Ok(self.stream(a)),
            Err(channel::TryRecvError::Empty) => {
                Err(kind_err(io::ErrorKind::WouldBlock, "no connection ready"))
            }
            Err(_) => Err(kind_err(io::ErrorKind::BrokenPipe, "workers stopped")),
        }
    }

    fn stream(&self, a: Accepted) -> (TcpStream, SocketAddr) {
        let remote = SocketAddr::V4(a.remote);
        (
            TcpStream::new(
                self.handle.clone(),
                a.worker,
                a.id,
                a.local,
                a.remote,
                a.events,
            ),
            remote,
        )
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        Self::undo(&self.handle, self.port);
    }
}

/// A TCP connection for an ordinary thread, with `Read` and `Write`.
///
/// Active opens run on worker 0: its port slice and queue. (On a NIC the
/// port would be chosen so RSS steers the replies to that queue; on veth
/// in generic mode everything arrives on queue 0 anyway.)
#[derive(Debug)]
pub struct TcpStream {
    handle: StackHandle,
    worker: usize,
    id: ConnId,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    events: Receiver<StreamEvent>,
    rbuf: Vec<u8>,
    rpos: usize,
    eof: bool,
    read_shut: bool,
    error: Option<io::ErrorKind>,
    /// Written bytes the worker has not yet put into the send buffer.
    outstanding: usize,
    read_timeout: Option<StdDuration>,
    write_timeout: Option<StdDuration>,
    closed: bool,
}

impl TcpStream {
    fn new(
        handle: StackHandle,
        worker: usize,
        id: ConnId,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        events: Receiver<StreamEvent>,
    ) -> TcpStream {
        TcpStream {
            handle,
            worker,
            id,
            local,
            remote,
            events,
            rbuf: Vec::new(),
            rpos: 0,
            eof: false,
            read_shut: false,
            error: None,
            outstanding: 0,
            read_timeout: None,
            write_timeout: None,
            closed: false,
        }
    }

    /// Connects to `remote` through the stack (waits up to `timeout`).
    pub fn connect_timeout(
        handle: &StackHandle,
        remote: SocketAddrV4,
        timeout: StdDuration,
    ) -> io::Result<TcpStream> {
        Self::connect_timeout_on(handle, 0, remote, timeout)
    }

    /// [`connect_timeout`](Self::connect_timeout) from worker `worker`: the
    /// connection lives on that worker's shard and takes its local port
    /// from that shard's ephemeral slice.
    pub fn connect_timeout_on(
        handle: &StackHandle,
        worker: usize,
        remote: SocketAddrV4,
        timeout: StdDuration,
    ) -> io::Result<TcpStream> {
        let (tx, rx) = channel::unbounded();
        handle.command(
            worker,
            Command::Tcp(TcpCommand::Connect { remote, events: tx }),
        )?;
        match rx.recv_timeout(timeout) {
            Ok(StreamEvent::Connected { id, local }) => Ok(TcpStream::new(
                handle.clone(),
                worker,
                id,
                local,
                remote,
                rx,
            )),
            Ok(StreamEvent::Error(k)) => Err(kind_err(k, "connect failed")),
            Ok(_) => Err(kind_err(io::ErrorKind::Other, "unexpected event")),
            Err(RecvTimeoutError::Timeout) => {
                Err(kind_err(io::ErrorKind::TimedOut, "connect timed out"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(kind_err(io::ErrorKind::BrokenPipe, "worker stopped"))
            }
        }
    }

    /// [`connect_timeout`](Self::connect_timeout) with the SYN retry budget
    /// as the limit (about two minutes).
    pub fn connect(handle: &StackHandle, remote: SocketAddrV4) -> io::Result<TcpStream> {
        Self::connect_timeout(handle, remote, StdDuration::from_secs(130))
    }

    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.local)
    }

    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.remote)
    }

    pub fn local_ip(&self) -> Ipv4Addr {
        *self.local.ip()
    }

    /// `None` blocks forever; `Some(d)` fails reads with `TimedOut` (as
    /// `WouldBlock` on Unix sockets) after `d`.
    pub fn set_read_timeout(&mut self, d: Option<StdDuration>) -> io::Result<()> {
        if d == Some(StdDuration::ZERO) {
            return Err(kind_err(io::ErrorKind::InvalidInput, "zero timeout"));
        }
        self.read_timeout = d;
        Ok(())
    }

    pub fn set_write_timeout(&mut self, d: Option<StdDuration>) -> io::Result<()> {
        if d == Some(StdDuration::ZERO) {
            return Err(kind_err(io::ErrorKind::InvalidInput, "zero timeout"));
        }
        self.write_timeout = d;
        Ok(())
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.send(TcpCommand::SetNodelay { id: self.id, on })
    }

    /// `Write`: FIN after the written data; `Read`: later reads return 0.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.send(TcpCommand::ShutdownWrite { id: self.id })?;
        }
        Ok(())
    }

    fn send(&self, cmd: TcpCommand) -> io::Result<()> {
        self.handle.command(self.worker, Command::Tcp(cmd))
    }

    fn take(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Data(d) => {
                if self.rpos == self.rbuf.len() {
                    self.rbuf = d;
                    self.rpos = 0;
                } else {
                    self.rbuf.extend_from_slice(&d);
                }
            }
            StreamEvent::Written(n) => self.outstanding = self.outstanding.saturating_sub(n),
            StreamEvent::Eof => self.eof = true,
            StreamEvent::Error(k) => self.error = Some(k),
            StreamEvent::Connected { .. } => {}
        }
    }

    /// Waits for one event (up to `timeout`); false on timeout.
    fn wait(&mut self, timeout: Option<StdDuration>) -> io::Result<bool> {
        let ev = match timeout {
            None => self.events.recv().map_err(|_| ()),
            Some(t) => match self.events.recv_timeout(t) {
                Ok(ev) => Ok(ev),
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => Err(()),
            },
        };
        match ev {
            Ok(ev) => {
                self.take(ev);
                Ok(true)
            }
            Err(()) => {
                // The worker dropped the connection's channel.
                if self.error.is_none() && !self.eof {
                    self.error = Some(io::ErrorKind::ConnectionAborted);
                }
                self.eof = true;
                Ok(true)
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            self.take(ev);
        }
    }
}

impl io::Read for TcpStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.read_shut || out.is_empty() {
            return Ok(0);
        }
        self.drain();
        while self.rpos == self.rbuf.len() {
            if let Some(k) = self.error {
                return Err(kind_err(k, "connection failed"));
            }
            if self.eof {
                return Ok(0);
            }
            if !self.wait(self.read_timeout)? {
                return Err(kind_err(io::ErrorKind::WouldBlock, "read timed out"));
            }
        }
        let n = out.len().min(self.rbuf.len() - self.rpos);
        out[..n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
        self.rpos += n;
        self.send(TcpCommand::Consumed { id: self.id, n })?;
        Ok(n)
    }
}

impl io::Write for TcpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.drain();
        let deadline = self.write_timeout.map(|t| std::time::Instant::now() + t);
        while self.outstanding >= STREAM_WINDOW {
            if let Some(k) = self.error {
                return Err(kind_err(k, "connection failed"));
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(StdDuration::ZERO) || !self.wait(left)? {
                return Err(kind_err(io::ErrorKind::WouldBlock, "write timed out"));
            }
        }
        if let Some(k) = self.error {
            return Err(kind_err(k, "connection failed"));
        }
        let n = data.len().min(STREAM_WINDOW - self.outstanding);
        self.outstanding += n;
        self.send(TcpCommand::Write {
            id: self.id,
            data: data[..n].to_vec(),
        })?;
        Ok(n)
    }

    /// Waits until every written byte is in the connection's send buffer.
    fn flush(&mut self) -> io::Result<()> {
        while self.outstanding > 0 {
            if let Some(k) = self.error {
                return Err(kind_err(k, "connection failed"));
            }
            if !self.wait(self.write_timeout)? {
                return Err(kind_err(io::ErrorKind::WouldBlock, "flush timed out"));
            }
        }
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.send(TcpCommand::Close { id: self.id });
        }
    }
}
