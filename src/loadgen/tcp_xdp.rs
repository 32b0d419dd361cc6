//! TCP load generator on xdpstack itself, for `xdpstack bench tcp-*
//! --client xdpstack`: the counterpart of the kernel-socket client of
//! [`super::tcp`] (same benchmarks, same [`Report`]), so that a server can
//! be measured with xdpstack on both ends (PLATFORM.md: a kernel client
//! caps what any server can show).
//!
//! One AF_XDP socket (queue 0) in shared mode and one shard, run to
//! completion in the calling thread (pinned with `core`). The client is a
//! [`TcpHandler`] making its own active opens from [`TcpHandler::poll`]:
//!
//! - `tcp-rr`: `connections` connections, each with one request in flight;
//!   each response is checked byte for byte and the next request queued
//!   from `on_data` at once. Latency from the request's first write to the
//!   response's last byte. The clock starts once every connection is up.
//! - `tcp-crr`: `connections` lanes, each repeating connect, one
//!   request/response, close. Latency from the connect to the response's
//!   last byte. As with the kernel client, the default close is a reset
//!   ([`CrrClose::Reset`]): the connection leaves the table at once and its
//!   port goes back to the allocator, so cycling ports never meets
//!   TIME-WAIT (an orderly close keeps each port for 2*MSL, and the
//!   client's range is only the ports the kernel does not use, 4536 by
//!   default). [`CrrClose::Fin`] closes orderly, for short runs.
//! - `tcp-stream`: `connections` connections keeping their send buffers
//!   full. Throughput counts acknowledged bytes (queued minus the send
//!   queue), sampled at the start and end of the measured interval; bytes
//!   an echoing server sends back are checked and dropped.
//!
//! When the run ends, each connection is reset as soon as it is heard
//! from (up to 200 ms): one reset in SYN-SENT would leave the server a
//! half-open connection on a 4-tuple the next run soon reuses.
//!
//! Every request carries its transaction number in its first 8 bytes (when
//! it has 8), the rest is the kernel client's letter pattern; a response
//! that differs anywhere fails the run. A connection that fails (refused,
//! reset, closed by the server) is counted in `lost` and replaced.
//!
//! The target's MAC: shared mode leaves ARP to the kernel, so the client
//! makes the kernel resolve the next hop (one datagram to the discard
//! port) and reads its neighbour table before the first SYN; the worker
//! keeps seeding the shard's cache from it. In dedicated mode (`ip`) the
//! shard resolves it with its own ARP request when the first SYN waits
//! for it, and every port of the address is the client's (no per-open
//! steering update). Latency is measured with the monotonic clock at
//! nanosecond resolution.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use hdrhistogram::Histogram;

use super::tcp::{invalid, no_progress, request, CrrClose, TcpBenchConfig, TcpBenchKind};
use super::xdp_client::prime_kernel_arp;
use super::{new_histogram, Report};
use crate::api::tcp::{close_reason_kind, ConnId, TcpConn, TcpHandler, TcpOpen};
use crate::icmp::AddressMode;
use crate::neighbor::{read_kernel_neighbors, read_kernel_routes, Mac};
use crate::phy::Link;
use crate::ports::{self, PortConfig, PortService};
use crate::shard::{Shard, ShardConfig};
use crate::shard_tcp::{ShardTcp, TcpShardConfig};
use crate::tcp::{CloseReason, IsnKey, SendError, SendHalf};
use crate::time::Instant;
use crate::worker::{iface_ipv4, iface_mac_mtu, open_link, run_until_done, LoopConfig};
use crate::xdp::{AttachMode, PollMode, Steering, XsConfig, XskConfig};

/// Settings of the xdpstack TCP client.
#[derive(Debug, Clone)]
pub struct TcpXdpConfig {
    /// Interface to attach to.
    pub iface: String,
    /// Dedicated mode with this address (one the kernel does not have):
    /// the client answers and sends ARP for it itself. `None`: shared
    /// mode on the interface's address.
    pub ip: Option<Ipv4Addr>,
    /// The benchmark; `bind` and `busy_poll` do not apply (the interface's
    /// address; `poll`).
    pub bench: TcpBenchConfig,
    pub attach: AttachMode,
    pub poll: PollMode,
    /// Receive buffer of every connection, bytes.
    pub recv_buffer: usize,
    /// Print the worker's final counters to stderr.
    pub stats: bool,
}

/// The letter pattern of [`request`] repeats every this many bytes.
const PERIOD: usize = 23;
/// Bytes of a request carrying its transaction number.
const TAG_LEN: usize = 8;
/// Longest run compared or written at once.
const SPAN: usize = 64 * 1024;
/// How long the connections of `tcp-rr`/`tcp-stream` may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the kernel may take to resolve the target's MAC.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for the connections to be reset at the end.
const DRAIN: Duration = Duration::from_millis(200);
/// How often `poll` reads the clock for the end of the run (answers check
/// it themselves) and retries a refused open (no free port).
const POLL_EVERY: crate::time::Duration = crate::time::Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `tcp-rr`/`tcp-stream`: waiting for every connection.
    Setup,
    Running,
    /// Measured: every connection is reset as soon as it is heard from,
    /// then `done` is raised.
    Done,
}

/// One connection slot of the client (a crr lane has a series of them).
#[derive(Debug, Clone)]
struct Lane {
    conn: Option<ConnId>,
    /// Transaction number of the current request.
    txn: u64,
    /// Request bytes queued, response bytes received and checked.
    sent: usize,
    received: usize,
    started: StdInstant,
    /// crr: the exchange is complete; close at the next `on_writable`.
    close: bool,
    /// The response differed from the request: reset the connection.
    bad: bool,
    /// stream: bytes queued; acknowledged as last seen.
    written: u64,
    acked: u64,
    /// stream: bytes echoed back and checked.
    echoed: u64,
}

impl Lane {
    fn new(now: StdInstant) -> Lane {
        Lane {
            conn: None,
            txn: 0,
            sent: 0,
            received: 0,
            started: now,
            close: false,
            bad: false,
            written: 0,
            acked: 0,
            echoed: 0,
        }
    }
}

/// What the client hands back when the run ends.
struct Outcome {
    hist: Histogram<u64>,
    completed: u64,
    failed: u64,
    mismatched: u64,
    elapsed: Duration,
    bytes: u64,
    /// Set when the run could not start (setup failed).
    setup_error: Option<(io::ErrorKind, String)>,
    last_error: Option<(io::ErrorKind, String)>,
    /// Connections still open after draining, to reset.
    open: Vec<ConnId>,
}

/// Where the client reports: `done` ends the worker loop.
#[derive(Clone)]
struct Handle {
    done: Arc<AtomicBool>,
    out: Arc<Mutex<Option<Outcome>>>,
}

/// The client handler: see the module docs.
struct Client {
    cfg: TcpBenchConfig,
    peer_mac: Option<Mac>,
    lanes: Vec<Lane>,
    /// The lane of each connection, by [`ConnId::slot`]: (generation, lane).
    by_slot: Vec<Option<(u32, usize)>>,
    to_open: Vec<usize>,
    /// The request, its tag rewritten per transaction.
    req: Vec<u8>,
    /// The letter pattern, `SPAN + PERIOD` long.
    pattern: Vec<u8>,
    phase: Phase,
    created: StdInstant,
    measure_from: Option<StdInstant>,
    end: Option<StdInstant>,
    established: usize,
    hist: Histogram<u64>,
    completed: u64,
    failed: u64,
    mismatched: u64,
    setup_error: Option<(io::ErrorKind, String)>,
    last_error: Option<(io::ErrorKind, String)>,
    acked_total: u64,
    /// stream: acknowledged bytes and time at the start of measuring.
    base: Option<(u64, StdInstant)>,
    next_check: Instant,
    retry_open_at: Instant,
    /// When draining gives up (phase `Done`).
    drain_until: StdInstant,
    handle: Handle,
}

/// Whether `data`, found at offset `off` of a request (or of a stream when
/// `tag` is `None`), is what was sent there.
fn matches_sent(pattern: &[u8], tag: Option<u64>, mut off: usize, mut data: &[u8]) -> bool {
    if let Some(tag) = tag {
        let t = tag.to_be_bytes();
        while off < TAG_LEN {
            let Some((&b, rest)) = data.split_first() else {
                return true;
            };
            if b != t[off] {
                return false;
            }
            off += 1;
            data = rest;
        }
    }
    while !data.is_empty() {
        let n = data.len().min(pattern.len() - PERIOD);
        let s = off % PERIOD;
        if data[..n] != pattern[s..s + n] {
            return false;
        }
        off += n;
        data = &data[n..];
    }
    true
}

/// Queues what the socket takes of `lane`'s current request.
fn push_request(
    req: &mut [u8],
    lane: &mut Lane,
    mut send: impl FnMut(&[u8]) -> Result<usize, SendError>,
) -> Result<(), SendError> {
    if lane.sent >= req.len() {
        return Ok(());
    }
    if req.len() >= TAG_LEN {
        req[..TAG_LEN].copy_from_slice(&lane.txn.to_be_bytes());
    }
    lane.sent += send(&req[lane.sent..])?;
    Ok(())
}

/// Fills the send buffer with the stream pattern.
fn fill_stream(
    pattern: &[u8],
    chunk: usize,
    lane: &mut Lane,
    mut send: impl FnMut(&[u8]) -> Result<usize, SendError>,
) -> Result<(), SendError> {
    loop {
        let s = (lane.written % PERIOD as u64) as usize;
        let n = send(&pattern[s..s + chunk])?;
        if n == 0 {
            return Ok(());
        }
        lane.written += n as u64;
    }
}

fn send_failed(e: SendError) -> (io::ErrorKind, String) {
    (
        crate::api::tcp::send_error_kind(e),
        format!("sending on a connection: {e:?}"),
    )
}

impl Client {
    fn new(cfg: &TcpBenchConfig, peer_mac: Option<Mac>, handle: Handle) -> Client {
        let now = StdInstant::now();
        let (phase, measure_from, end) = match cfg.kind {
            TcpBenchKind::Crr => (
                Phase::Running,
                Some(now + cfg.warmup),
                Some(now + cfg.warmup + cfg.duration),
            ),
            _ => (Phase::Setup, None, None),
        };
        Client {
            cfg: cfg.clone(),
            peer_mac,
            lanes: vec![Lane::new(now); cfg.connections],
            by_slot: Vec::new(),
            to_open: (0..cfg.connections).rev().collect(),
            req: request(cfg.payload),
            pattern: request(SPAN + PERIOD),
            phase,
            created: now,
            measure_from,
            end,
            established: 0,
            hist: new_histogram(),
            completed: 0,
            failed: 0,
            mismatched: 0,
            setup_error: None,
            last_error: None,
            acked_total: 0,
            base: None,
            next_check: Instant::ZERO,
            retry_open_at: Instant::ZERO,
            drain_until: now,
            handle,
        }
    }

    fn tag(&self, lane: &Lane) -> Option<u64> {
        (self.cfg.payload >= TAG_LEN).then_some(lane.txn)
    }

    fn lane_of(&self, id: ConnId) -> Option<usize> {
        match self.by_slot.get(id.slot as usize) {
            Some(Some((g, lane))) if *g == id.generation => Some(*lane),
            _ => None,
        }
    }

    fn map(&mut self, id: ConnId, lane: usize) {
        let i = id.slot as usize;
        if self.by_slot.len() <= i {
            self.by_slot.resize(i + 1, None);
        }
        self.by_slot[i] = Some((id.generation, lane));
        self.lanes[lane].conn = Some(id);
    }

    /// Forgets connection `id` (it is closed or closing) and puts its lane
    /// up for a new one.
    fn release(&mut self, id: ConnId) {
        let Some(lane) = self.lane_of(id) else {
            return;
        };
        self.by_slot[id.slot as usize] = None;
        let fresh = Lane {
            txn: self.lanes[lane].txn,
            ..Lane::new(StdInstant::now())
        };
        self.lanes[lane] = fresh;
        self.to_open.push(lane);
    }

    /// A connection failed: counted; before the run started it ends the
    /// run, as a failed connect does for the kernel client.
    fn fail(&mut self, id: ConnId, err: (io::ErrorKind, String)) {
        self.release(id);
        self.failed += 1;
        if self.phase == Phase::Setup {
            self.setup_error = Some(err);
            self.finish(StdInstant::now());
        } else {
            self.last_error = Some(err);
        }
    }

    fn start_running(&mut self, t: StdInstant) {
        self.phase = Phase::Running;
        self.measure_from = Some(t + self.cfg.warmup);
        self.end = Some(t + self.cfg.warmup + self.cfg.duration);
    }

    fn finish(&mut self, t: StdInstant) {
        if self.phase == Phase::Done {
            return;
        }
        self.phase = Phase::Done;
        let (elapsed, bytes) = match (self.cfg.kind, self.base) {
            (TcpBenchKind::Stream, Some((b, at))) => (
                t.saturating_duration_since(at),
                self.acked_total.saturating_sub(b),
            ),
            (TcpBenchKind::Stream, None) => (Duration::ZERO, 0),
            _ => (
                self.measure_from
                    .map_or(Duration::ZERO, |m| t.saturating_duration_since(m)),
                0,
            ),
        };
        let o = Outcome {
            hist: std::mem::replace(&mut self.hist, new_histogram()),
            completed: self.completed,
            failed: self.failed,
            mismatched: self.mismatched,
            elapsed,
            bytes,
            setup_error: self.setup_error.take(),
            last_error: self.last_error.take(),
            open: Vec::new(),
        };
        *self.handle.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
        self.drain_until = t + DRAIN;
    }

    /// Ends draining: the connections still open go with the outcome (to
    /// be reset without waiting) and the worker loop stops.
    fn drained(&mut self) {
        let open: Vec<ConnId> = self.lanes.iter().filter_map(|l| l.conn).collect();
        if let Some(o) = self
            .handle
            .out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            o.open = open;
        }
        self.handle.done.store(true, Ordering::Relaxed);
    }

    /// Draining: resets connection `id`. A connection reset while its SYN
    /// is unanswered would leave the server a half-open one on a 4-tuple
    /// that the next run's port cycling soon reuses (its SYN is then
    /// answered for the old one and waits a whole RTO), so each is reset
    /// only once it is established.
    fn drain(&mut self, id: ConnId, conn: &mut TcpConn<'_>) {
        conn.abort();
        if let Some(lane) = self.lane_of(id) {
            self.by_slot[id.slot as usize] = None;
            self.lanes[lane].conn = None;
        }
    }

    /// A request/response exchange completed on `lane` at `t`.
    fn exchange_done(&mut self, lane: usize, t: StdInstant) {
        let l = &mut self.lanes[lane];
        if self.measure_from.is_some_and(|m| t >= m) {
            let ns = t.duration_since(l.started).as_nanos() as u64;
            let _ = self.hist.record(ns.max(1));
            self.completed += 1;
        }
        l.txn = l.txn.wrapping_add(1);
        l.sent = 0;
        l.received = 0;
        l.started = t;
    }

    fn chunk(&self) -> usize {
        self.cfg.payload.min(SPAN)
    }
}

impl TcpHandler for Client {
    fn on_connect(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let Some(li) = self.lane_of(id) else {
            conn.abort();
            return;
        };
        if self.phase == Phase::Done {
            return self.drain(id, conn);
        }
        conn.set_nodelay(true);
        let t = StdInstant::now();
        if self.phase == Phase::Setup {
            self.established += 1;
            if self.established == self.lanes.len() {
                self.start_running(t);
            }
        }
        let chunk = self.chunk();
        let lane = &mut self.lanes[li];
        let r = match self.cfg.kind {
            TcpBenchKind::Rr => {
                lane.started = t;
                push_request(&mut self.req, lane, |d| conn.send(d))
            }
            // Latency runs from the connect.
            TcpBenchKind::Crr => push_request(&mut self.req, lane, |d| conn.send(d)),
            TcpBenchKind::Stream => fill_stream(&self.pattern, chunk, lane, |d| conn.send(d)),
        };
        if let Err(e) = r {
            conn.abort();
            self.fail(id, send_failed(e));
        }
    }

    fn on_data(&mut self, _now: Instant, id: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize {
        let Some(li) = self.lane_of(id) else {
            return data.len();
        };
        if self.phase == Phase::Done || self.lanes[li].bad {
            return data.len();
        }
        if self.cfg.kind == TcpBenchKind::Stream {
            let lane = &mut self.lanes[li];
            let off = (lane.echoed % PERIOD as u64) as usize;
            if !matches_sent(&self.pattern, None, off, data) {
                lane.bad = true;
                self.mismatched += 1;
            }
            lane.echoed += data.len() as u64;
            return data.len();
        }
        let tag = self.tag(&self.lanes[li]);
        let lane = &mut self.lanes[li];
        let want = self.cfg.payload - lane.received;
        // An echo never runs ahead of the request.
        if data.len() > want
            || lane.received + data.len() > lane.sent
            || !matches_sent(&self.pattern, tag, lane.received, data)
        {
            lane.bad = true;
            self.mismatched += 1;
            return data.len();
        }
        lane.received += data.len();
        if lane.received < self.cfg.payload {
            return data.len();
        }
        let t = StdInstant::now();
        self.exchange_done(li, t);
        if self.end.is_some_and(|e| t >= e) {
            self.finish(t);
            return data.len();
        }
        match self.cfg.kind {
            TcpBenchKind::Rr => {
                let lane = &mut self.lanes[li];
                if let Err(e) = push_request(&mut self.req, lane, |d| tx.send(d)) {
                    self.last_error = Some(send_failed(e));
                }
            }
            _ => self.lanes[li].close = true,
        }
        data.len()
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let Some(li) = self.lane_of(id) else {
            return;
        };
        if self.phase == Phase::Done {
            return self.drain(id, conn);
        }
        if self.lanes[li].bad {
            conn.abort();
            let msg = format!(
                "a response from {} differed from the request",
                self.cfg.target
            );
            self.fail(id, (io::ErrorKind::InvalidData, msg));
            return;
        }
        let chunk = self.chunk();
        let lane = &mut self.lanes[li];
        let r = match self.cfg.kind {
            TcpBenchKind::Rr => push_request(&mut self.req, lane, |d| conn.send(d)),
            TcpBenchKind::Crr if lane.close => {
                match self.cfg.crr_close {
                    CrrClose::Reset => conn.abort(),
                    CrrClose::Fin => conn.close(),
                }
                self.release(id);
                return;
            }
            TcpBenchKind::Crr => push_request(&mut self.req, lane, |d| conn.send(d)),
            TcpBenchKind::Stream => {
                let acked = lane.written - conn.send_queue() as u64;
                self.acked_total += acked - lane.acked;
                lane.acked = acked;
                fill_stream(&self.pattern, chunk, lane, |d| conn.send(d))
            }
        };
        if let Err(e) = r {
            conn.abort();
            self.fail(id, send_failed(e));
        }
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let Some(li) = self.lane_of(id) else {
            conn.close();
            return;
        };
        if self.phase == Phase::Done {
            return self.drain(id, conn);
        }
        let complete = self.lanes[li].close;
        conn.abort();
        if complete {
            // The server closed first after a complete exchange: fine.
            self.release(id);
        } else {
            self.fail(
                id,
                (
                    io::ErrorKind::UnexpectedEof,
                    "the server closed a connection".into(),
                ),
            );
        }
    }

    fn on_close(&mut self, _now: Instant, id: ConnId, reason: Option<CloseReason>) {
        let Some(lane) = self.lane_of(id) else {
            return;
        };
        if self.phase == Phase::Done {
            self.by_slot[id.slot as usize] = None;
            self.lanes[lane].conn = None;
            return;
        }
        let r = reason.unwrap_or(CloseReason::Normal);
        self.fail(
            id,
            (
                close_reason_kind(r),
                format!("connection to {} ended: {r:?}", self.cfg.target),
            ),
        );
    }

    fn poll(&mut self, now: Instant, open: &mut dyn TcpOpen) {
        if self.phase == Phase::Done {
            if self.handle.done.load(Ordering::Relaxed) {
                return;
            }
            if self.lanes.iter().all(|l| l.conn.is_none())
                || (now >= self.next_check && StdInstant::now() >= self.drain_until)
            {
                self.drained();
            }
            self.next_check = now + POLL_EVERY;
            return;
        }
        if !self.to_open.is_empty() && now >= self.retry_open_at {
            while let Some(&li) = self.to_open.last() {
                self.lanes[li].started = StdInstant::now();
                match open.connect(self.cfg.target, self.peer_mac) {
                    Ok(id) => {
                        self.to_open.pop();
                        self.map(id, li);
                    }
                    Err(e) => {
                        let kind = io::Error::from(e).kind();
                        // Every port in TIME-WAIT (crr closing with FIN) is
                        // the client's own limit, not a lost transaction:
                        // the lane waits for a port.
                        if kind != io::ErrorKind::AddrNotAvailable {
                            self.failed += 1;
                        }
                        self.last_error = Some((kind, e.to_string()));
                        self.retry_open_at = now + POLL_EVERY;
                        break;
                    }
                }
            }
        }
        if now < self.next_check {
            return;
        }
        self.next_check = now + POLL_EVERY;
        let t = StdInstant::now();
        match self.phase {
            Phase::Setup if t.duration_since(self.created) > CONNECT_TIMEOUT => {
                self.setup_error = Some((
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} of {} connections to {} opened in {CONNECT_TIMEOUT:?}",
                        self.established,
                        self.lanes.len(),
                        self.cfg.target
                    ),
                ));
                self.finish(t);
            }
            Phase::Running => {
                if self.cfg.kind == TcpBenchKind::Stream
                    && self.base.is_none()
                    && self.measure_from.is_some_and(|m| t >= m)
                {
                    self.base = Some((self.acked_total, t));
                }
                if self.end.is_some_and(|e| t >= e) {
                    self.finish(t);
                }
            }
            _ => {}
        }
    }
}

fn check_config(cfg: &TcpBenchConfig) -> io::Result<()> {
    if cfg.connections == 0 {
        return Err(invalid("connections must be at least 1"));
    }
    if cfg.payload == 0 {
        return Err(invalid("payload must be at least 1 byte"));
    }
    Ok(())
}

/// Registers the client with `tcp` (it starts opening at the shard's next
/// `poll`); `peer_mac` is the next hop's MAC if known.
fn install(tcp: &mut ShardTcp, cfg: &TcpBenchConfig, peer_mac: Option<Mac>) -> Handle {
    let handle = Handle {
        done: Arc::new(AtomicBool::new(false)),
        out: Arc::new(Mutex::new(None)),
    };
    tcp.add_handler(Box::new(Client::new(cfg, peer_mac, handle.clone())));
    handle
}

/// Resets the connections the client left open and transmits the resets.
fn reset_open<L: Link>(shard: &mut Shard<L::Frame>, link: &mut L, open: &[ConnId]) {
    let now = Instant::now_monotonic();
    for &id in open {
        shard.tcp_mut().with_conn(now, id, |c| c.abort());
    }
    shard.poll(now, link);
    shard.flush(now, link);
}

/// The report of a finished run, or why it failed.
fn report(cfg: &TcpBenchConfig, o: Outcome) -> io::Result<Report> {
    if let Some((kind, msg)) = o.setup_error {
        return Err(io::Error::new(kind, msg));
    }
    if o.mismatched > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {} response(s) from {} differed from what was sent",
                cfg.kind.name(),
                o.mismatched,
                cfg.target
            ),
        ));
    }
    let progress = match cfg.kind {
        TcpBenchKind::Stream => o.bytes > 0,
        _ => o.completed > 0,
    };
    if !progress {
        return Err(match o.last_error {
            Some((kind, msg)) => io::Error::new(kind, msg),
            None => no_progress(cfg),
        });
    }
    let mut r = Report::from_histogram(cfg.kind.name(), &o.hist, o.elapsed, o.completed, o.failed);
    r.bytes = o.bytes;
    r.client = "xdpstack".into();
    r.payload = cfg.payload;
    r.inflight = cfg.connections;
    Ok(r)
}

/// The MAC of `hop` from the kernel's neighbour table on `iface`, after
/// making the kernel resolve it (shared mode: ARP is the kernel's).
fn kernel_mac(iface: &str, target: Ipv4Addr, hop: Ipv4Addr) -> io::Result<Mac> {
    let deadline = StdInstant::now() + RESOLVE_TIMEOUT;
    let mut next_prime = StdInstant::now();
    loop {
        let now = StdInstant::now();
        if now >= next_prime {
            prime_kernel_arp(target);
            next_prime = now + Duration::from_millis(500);
        }
        if let Some(&(_, mac)) = read_kernel_neighbors(iface)?
            .iter()
            .find(|(ip, _)| *ip == hop)
        {
            return Ok(mac);
        }
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::HostUnreachable,
                format!("the kernel did not resolve {hop}'s MAC on {iface}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the benchmark on xdpstack in the calling thread until it ends (or
/// `stop` is set) and reports.
pub fn run(cfg: &TcpXdpConfig, stop: &AtomicBool) -> io::Result<Report> {
    let bench = &cfg.bench;
    check_config(bench)?;
    if let Some(c) = bench.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let (mac, mtu) = iface_mac_mtu(&cfg.iface)?;
    let (mode, ip) = match cfg.ip {
        Some(ip) => (AddressMode::Dedicated, ip),
        None => (AddressMode::Shared, iface_ipv4(&cfg.iface)?),
    };
    let routes = read_kernel_routes(&cfg.iface).unwrap_or_default();
    let target_ip = *bench.target.ip();
    let hop = routes.next_hop(target_ip).unwrap_or(target_ip);
    let peer_mac = match mode {
        AddressMode::Shared => Some(kernel_mac(&cfg.iface, target_ip, hop)?),
        AddressMode::Dedicated => None,
    };

    let kernel_range =
        ports::read_kernel_local_port_range().unwrap_or(ports::PortRange::KERNEL_DEFAULT_LOCAL);
    let ephemeral = ports::choose_ephemeral_range(kernel_range, None)?;
    let ps = PortService::new(PortConfig {
        ephemeral,
        ..PortConfig::new(1)
    })?
    .shared();
    let steering = Steering::attach(&cfg.iface, cfg.attach).map_err(io::Error::other)?;
    let maps = steering.maps().clone();
    let xs = match mode {
        // Replies to the active opens: the whole ephemeral range is steered.
        AddressMode::Shared => XsConfig::shared_with_tcp_ephemeral(ephemeral.iter()),
        AddressMode::Dedicated => XsConfig::dedicated(ip),
    };
    maps.set_config(xs).map_err(io::Error::other)?;
    let xc = XskConfig {
        poll: cfg.poll,
        ..XskConfig::new(&cfg.iface, 0)
    };
    let mut link = open_link(&xc, &maps).map_err(io::Error::other)?;
    let now = Instant::now_monotonic();
    let mut scfg = ShardConfig::new(mode, ip, mac, mtu);
    scfg.routes = routes;
    let mut shard: Shard<crate::xdp::Frame> = Shard::new(scfg, now);
    if let Some(m) = peer_mac {
        shard.learn_neighbor(hop, m, now);
    }
    let mut tcp_cfg = TcpShardConfig {
        reset_unmatched: mode == AddressMode::Dedicated,
        // Every connection goes to the one target, so no more can exist
        // than ephemeral ports (which run out first, and TIME-WAIT reuse
        // waits for them); a table this small stays in cache.
        max_connections: 2 * ephemeral.iter().len(),
        ..TcpShardConfig::new(ip, mac, mtu)
    };
    tcp_cfg.tcp.recv_buffer = cfg.recv_buffer;
    let mut tcp = ShardTcp::new(tcp_cfg, IsnKey::random(), Some(ps), now);
    let handle = install(&mut tcp, bench, peer_mac);
    shard.set_tcp(tcp);

    let lc = LoopConfig {
        worker: 0,
        queue: 0,
        core: bench.core,
        poll: cfg.poll,
        stats_every: None,
        kernel_neighbors: (mode == AddressMode::Shared).then(|| cfg.iface.clone()),
    };
    let counters = run_until_done(&lc, &mut link, &mut shard, &handle.done, stop);
    if cfg.stats {
        eprintln!("xdpstack client {counters}");
    }
    let outcome = handle.out.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(o) = &outcome {
        reset_open(&mut shard, &mut link, &o.open);
        // Copy mode sends at the kick; give the resets a moment to leave.
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(link);
    let _ = steering.detach();
    let o = outcome.ok_or_else(|| io::Error::new(io::ErrorKind::Interrupted, "stopped"))?;
    report(bench, o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::TcpEcho;
    use crate::phy::memory::{pair, MemoryConfig, MemoryLink};
    use crate::phy::FrameBuf;
    use std::net::SocketAddrV4;

    #[test]
    fn pattern_check_follows_tags_and_offsets() {
        let pattern = request(SPAN + PERIOD);
        let mut req = request(100);
        req[..8].copy_from_slice(&7u64.to_be_bytes());
        assert!(matches_sent(&pattern, Some(7), 0, &req));
        assert!(!matches_sent(&pattern, Some(8), 0, &req));
        // Split anywhere, inside the tag too.
        for cut in [1, 5, 8, 9, 30, 99] {
            assert!(matches_sent(&pattern, Some(7), 0, &req[..cut]));
            assert!(matches_sent(&pattern, Some(7), cut, &req[cut..]));
        }
        let mut bad = req.clone();
        bad[50] ^= 1;
        assert!(!matches_sent(&pattern, Some(7), 0, &bad));
        assert!(!matches_sent(&pattern, Some(7), 40, &bad[40..]));
        // Stream: any offset, longer than the pattern.
        let long = request(3 * SPAN + 11);
        assert!(matches_sent(&pattern, None, 0, &long));
        assert!(matches_sent(&pattern, None, 12345, &long[12345..]));
        assert!(!matches_sent(&pattern, None, 1, &long[2..]));
    }

    const C_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);
    const S_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
    const C_MAC: Mac = [2, 0, 0, 0, 1, 1];
    const S_MAC: Mac = [2, 0, 0, 0, 1, 2];

    struct Side {
        shard: Shard<<MemoryLink as Link>::Frame>,
        link: MemoryLink,
        rx: Vec<<MemoryLink as Link>::Frame>,
    }

    impl Side {
        fn new(ip: Ipv4Addr, mac: Mac, link: MemoryLink, tcp: ShardTcp) -> Side {
            let now = Instant::now_monotonic();
            let mut shard = Shard::new(ShardConfig::new(AddressMode::Shared, ip, mac, 1500), now);
            shard.set_tcp(tcp);
            Side {
                shard,
                link,
                rx: Vec::new(),
            }
        }

        fn step(&mut self) {
            let now = Instant::now_monotonic();
            if self.link.recv_batch(now, &mut self.rx, 64) > 0 {
                self.shard.process(now, &mut self.link, &mut self.rx);
            }
            self.shard.poll(now, &mut self.link);
            self.shard.flush(now, &mut self.link);
        }
    }

    /// Both ends in dedicated mode (each answers ARP for its address) and
    /// the client not told the server's MAC: its first SYN waits for the
    /// shard's own ARP request (held in the neighbour cache).
    #[test]
    fn dedicated_mode_resolves_the_peer_itself() {
        let (a, b) = pair(MemoryConfig::default());
        let mut ctcp = tcp_half(C_IP, C_MAC, true);
        let c = cfg(TcpBenchKind::Crr, 2, 64);
        let handle = install(&mut ctcp, &c, None);
        let mut stcp = tcp_half(S_IP, S_MAC, false);
        let h = stcp.add_handler(Box::<TcpEcho>::default());
        assert!(stcp.listen(7, h));
        let side = |ip, mac, link, tcp| {
            let now = Instant::now_monotonic();
            let mut shard =
                Shard::new(ShardConfig::new(AddressMode::Dedicated, ip, mac, 1500), now);
            shard.set_tcp(tcp);
            Side {
                shard,
                link,
                rx: Vec::new(),
            }
        };
        let mut cs = side(C_IP, C_MAC, a, ctcp);
        let mut ss = side(S_IP, S_MAC, b, stcp);
        let deadline = StdInstant::now() + Duration::from_secs(20);
        while !handle.done.load(Ordering::Relaxed) {
            assert!(StdInstant::now() < deadline, "the client never finished");
            cs.step();
            ss.step();
        }
        let o = handle.out.lock().unwrap().take().unwrap();
        let r = report(&c, o).unwrap();
        assert!(r.completed > 20, "{}", r.summary());
        assert_eq!(r.lost, 0, "{}", r.summary());
        let st = cs.shard.stats();
        assert!(st.shard.arp_requests >= 1, "{}", st.to_kv());
        // The SYN waited in the neighbour cache for the reply.
        assert!(st.neighbor.resolved >= 1, "{}", st.to_kv());
    }

    fn tcp_half(ip: Ipv4Addr, mac: Mac, ports: bool) -> ShardTcp {
        let ps = ports.then(|| {
            PortService::new(PortConfig {
                ephemeral: ports::PortRange::new(61000, 65535).unwrap(),
                ..PortConfig::new(1)
            })
            .unwrap()
            .shared()
        });
        ShardTcp::new(
            TcpShardConfig {
                reset_unmatched: true,
                ..TcpShardConfig::new(ip, mac, 1500)
            },
            IsnKey::random(),
            ps,
            Instant::now_monotonic(),
        )
    }

    /// The client against `server` (None: nothing listens) over the
    /// in-memory link, both shards stepped in this thread in real time.
    fn bench_mem(
        cfg: &TcpBenchConfig,
        server: Option<Box<dyn TcpHandler>>,
    ) -> (io::Result<Report>, u64) {
        let (a, b) = pair(MemoryConfig::default());
        let mut ctcp = tcp_half(C_IP, C_MAC, true);
        let handle = install(&mut ctcp, cfg, Some(S_MAC));
        let mut stcp = tcp_half(S_IP, S_MAC, false);
        if let Some(h) = server {
            let h = stcp.add_handler(h);
            assert!(stcp.listen(cfg.target.port(), h));
        }
        let mut c = Side::new(C_IP, C_MAC, a, ctcp);
        let mut s = Side::new(S_IP, S_MAC, b, stcp);
        let deadline = StdInstant::now() + Duration::from_secs(20);
        while !handle.done.load(Ordering::Relaxed) {
            assert!(StdInstant::now() < deadline, "the client never finished");
            c.step();
            s.step();
        }
        let o = handle.out.lock().unwrap().take().unwrap();
        reset_open(&mut c.shard, &mut c.link, &o.open);
        // A reset lost to a full link queue is repaired by the server's
        // next retransmission, answered with a reset too.
        let deadline = StdInstant::now() + Duration::from_secs(3);
        while s.shard.tcp().connections() > 0 && StdInstant::now() < deadline {
            c.step();
            s.step();
        }
        let accepted = s.shard.tcp().counters().accepted;
        // Every connection is gone from the server: none is left behind.
        assert_eq!(
            s.shard.tcp().connections(),
            0,
            "server left with connections"
        );
        (report(cfg, o), accepted)
    }

    fn cfg(kind: TcpBenchKind, connections: usize, payload: usize) -> TcpBenchConfig {
        TcpBenchConfig {
            connections,
            payload,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            ..TcpBenchConfig::new(kind, SocketAddrV4::new(S_IP, 7))
        }
    }

    fn echo() -> Option<Box<dyn TcpHandler>> {
        Some(Box::<TcpEcho>::default())
    }

    #[test]
    fn rr_against_the_echo_on_memory() {
        for (conns, payload) in [(1, 64), (8, 3), (2, 100_000)] {
            let c = cfg(TcpBenchKind::Rr, conns, payload);
            let (r, accepted) = bench_mem(&c, echo());
            let r = r.unwrap();
            assert!(r.completed > 10, "{}", r.summary());
            assert_eq!(r.lost, 0, "{}", r.summary());
            assert_eq!(accepted, conns as u64);
            assert!(r.p50_ns > 0 && r.p50_ns <= r.p99_ns);
            assert_eq!(r.client, "xdpstack");
            assert_eq!(r.inflight, conns);
        }
    }

    #[test]
    fn crr_reset_and_fin_on_memory() {
        for close in [CrrClose::Reset, CrrClose::Fin] {
            let mut c = cfg(TcpBenchKind::Crr, 4, 64);
            c.crr_close = close;
            // With FIN closes every client port stays in TIME-WAIT, and
            // in memory the range can run out within a warm-up.
            c.warmup = Duration::ZERO;
            let (r, accepted) = bench_mem(&c, echo());
            let r = r.unwrap();
            assert!(r.completed > 20, "{close:?}: {}", r.summary());
            assert_eq!(r.lost, 0, "{close:?}: {}", r.summary());
            assert!(accepted >= r.completed, "{accepted} {}", r.summary());
        }
    }

    #[test]
    fn crr_against_nothing_is_refused() {
        let mut c = cfg(TcpBenchKind::Crr, 2, 64);
        c.duration = Duration::from_millis(50);
        c.warmup = Duration::ZERO;
        let (r, _) = bench_mem(&c, None);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        // rr/stream fail while connecting.
        let (r, _) = bench_mem(&cfg(TcpBenchKind::Rr, 2, 64), None);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn stream_against_the_echo_on_memory() {
        let c = cfg(TcpBenchKind::Stream, 2, 16 * 1024);
        let (r, accepted) = bench_mem(&c, echo());
        let r = r.unwrap();
        assert!(r.bytes > 100_000, "{}", r.summary());
        assert!(r.bits_per_second() > 0.0);
        assert_eq!(accepted, 2);
        assert!(r.to_json().contains("\"kind\":\"tcp-stream\""));
    }

    /// Answers every request with one byte changed.
    #[derive(Default)]
    struct Corrupting;

    impl TcpHandler for Corrupting {
        fn on_data(&mut self, _: Instant, _: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize {
            let mut d = data.to_vec();
            if let Some(b) = d.last_mut() {
                *b ^= 0x20;
            }
            tx.send(&d).unwrap_or(data.len())
        }
    }

    #[test]
    fn a_wrong_echo_fails_the_run() {
        for kind in [TcpBenchKind::Rr, TcpBenchKind::Crr, TcpBenchKind::Stream] {
            let (r, _) = bench_mem(&cfg(kind, 2, 64), Some(Box::new(Corrupting)));
            let e = r.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{kind:?}: {e}");
        }
    }

    #[test]
    fn refuses_zero_connections_and_payload() {
        let mut c = cfg(TcpBenchKind::Rr, 0, 64);
        assert_eq!(
            check_config(&c).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        c.connections = 1;
        c.payload = 0;
        assert_eq!(
            check_config(&c).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn frames_carry_the_client_address() {
        // The client's SYN leaves with its address and the peer's MAC.
        let (a, mut b) = pair(MemoryConfig::default());
        let mut tcp = tcp_half(C_IP, C_MAC, true);
        let _handle = install(&mut tcp, &cfg(TcpBenchKind::Rr, 1, 64), Some(S_MAC));
        let mut c = Side::new(C_IP, C_MAC, a, tcp);
        c.step();
        let mut rx = Vec::new();
        assert_eq!(b.recv_batch(Instant::now_monotonic(), &mut rx, 8), 1);
        let f = rx[0].data();
        assert_eq!(&f[0..6], &S_MAC);
        assert_eq!(&f[6..12], &C_MAC);
    }
}
