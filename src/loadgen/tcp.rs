//! TCP load generators on kernel sockets, for `xdpstack bench tcp-*`: one
//! thread (optionally pinned), non-blocking sockets under epoll, against an
//! echo server (or a discarding one for `tcp-stream`).
//!
//! - `tcp-rr`: `connections` connections, each with one request of
//!   `payload` bytes outstanding; the response is the same number of bytes
//!   back. Latency from the request's first write to the response's last
//!   byte.
//! - `tcp-crr`: `connections` parallel slots, each repeating connect, one
//!   request/response, close. Latency from the start of connect to the
//!   response's last byte. By default the client closes with a reset
//!   (`SO_LINGER` 0, [`CrrClose::Reset`]): an orderly close leaves every
//!   client port in TIME-WAIT for 60 s, which caps a run at ~470
//!   connections/s per 28k-port range once the range is used up; the reset
//!   keeps the run measuring connection setup. [`CrrClose::Fin`] closes
//!   orderly (for short runs or with `net.ipv4.tcp_tw_reuse=1`).
//! - `tcp-stream`: `connections` connections writing `payload`-byte chunks
//!   as fast as the socket takes them. Throughput counts the bytes the
//!   receiver's TCP acknowledged: bytes written minus the sender's
//!   unacknowledged queue (`SIOCOUTQ`) at the start and end of the measured
//!   interval. Anything the server sends back is read and dropped; against a
//!   discarding server the row is one-directional, as bulk transfer is.
//! - `tcp-stream --download` ([`TcpBenchConfig::download`]): the other
//!   direction, against a source server (`serve --tcp-source`, `baseline
//!   kernel-tcp-source`): `connections` connections only read, checking
//!   every byte against the source's pattern
//!   ([`crate::apps::source::verify`]); throughput counts the bytes
//!   received in the measured interval. With
//!   [`TcpBenchConfig::download_bytes`] each connection instead reads
//!   exactly that many bytes and the run ends when all have them (failing
//!   with `TimedOut` if that takes longer than `duration`: a stalled
//!   transfer); the report then covers the whole transfer.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use super::{new_histogram, Report};
use crate::apps::source::verify;
use crate::xdp::epoll::{connect_nonblocking, set_linger_zero, unacked_bytes};
use crate::xdp::epoll::{Epoll, Events, Interest};

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpBenchKind {
    Rr,
    Crr,
    Stream,
}

impl TcpBenchKind {
    pub fn name(self) -> &'static str {
        match self {
            TcpBenchKind::Rr => "tcp-rr",
            TcpBenchKind::Crr => "tcp-crr",
            TcpBenchKind::Stream => "tcp-stream",
        }
    }
}

impl std::str::FromStr for TcpBenchKind {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp-rr" | "rr" => Ok(TcpBenchKind::Rr),
            "tcp-crr" | "crr" => Ok(TcpBenchKind::Crr),
            "tcp-stream" | "stream" => Ok(TcpBenchKind::Stream),
            _ => Err("benchmark is one of: tcp-rr, tcp-crr, tcp-stream"),
        }
    }
}

/// How a `tcp-crr` client ends each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrrClose {
    /// `SO_LINGER` 0: RST, no TIME-WAIT (the default; see the module docs).
    #[default]
    Reset,
    /// Orderly FIN close.
    Fin,
}

#[derive(Debug, Clone)]
pub struct TcpBenchConfig {
    pub kind: TcpBenchKind,
    pub target: SocketAddrV4,
    /// Source address to bind (port chosen by the kernel).
    pub bind: Option<Ipv4Addr>,
    pub connections: usize,
    /// Request size (rr, crr) or write size (stream).
    pub payload: usize,
    pub duration: Duration,
    /// Run this long before measuring.
    pub warmup: Duration,
    /// Core to pin the calling thread to.
    pub core: Option<usize>,
    /// Spin on `epoll_wait(0)` instead of sleeping in it.
    pub busy_poll: bool,
    pub crr_close: CrrClose,
    /// `tcp-stream`: receive from a source server instead of sending.
    pub download: bool,
    /// `tcp-stream` download: bytes each connection reads before the run
    /// ends (see the module docs); `None`: run for `duration`.
    pub download_bytes: Option<u64>,
}

impl TcpBenchConfig {
    pub fn new(kind: TcpBenchKind, target: SocketAddrV4) -> TcpBenchConfig {
        TcpBenchConfig {
            kind,
            target,
            bind: None,
            connections: 1,
            payload: 64,
            duration: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
            core: None,
            busy_poll: false,
            crr_close: CrrClose::Reset,
            download: false,
            download_bytes: None,
        }
    }
}

pub(crate) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Run the benchmark in the calling thread and report.
pub fn run_kernel_client(cfg: &TcpBenchConfig) -> io::Result<Report> {
    if cfg.connections == 0 {
        return Err(invalid("connections must be at least 1"));
    }
    if cfg.payload == 0 {
        return Err(invalid("payload must be at least 1 byte"));
    }
    if let Some(c) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let mut report = match cfg.kind {
        TcpBenchKind::Rr => run_rr(cfg)?,
        TcpBenchKind::Crr => run_crr(cfg)?,
        TcpBenchKind::Stream if cfg.download => run_download(cfg)?,
        TcpBenchKind::Stream => run_stream(cfg)?,
    };
    report.client = "kernel".into();
    report.payload = cfg.payload;
    report.inflight = cfg.connections;
    Ok(report)
}

fn wait_ms(cfg: &TcpBenchConfig) -> i32 {
    if cfg.busy_poll {
        0
    } else {
        10
    }
}

/// A connected, non-blocking, no-delay stream (set up before the clock runs).
fn connect(cfg: &TcpBenchConfig) -> io::Result<TcpStream> {
    let (s, done) = connect_nonblocking(cfg.target, cfg.bind.map(|ip| SocketAddrV4::new(ip, 0)))?;
    if !done {
        let ep = Epoll::new()?;
        ep.add(&s, 0, Interest::WRITE)?;
        let mut ev = Events::with_capacity(1);
        if ep.wait(&mut ev, 5000)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {}", cfg.target),
            ));
        }
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
    }
    s.set_nodelay(true)?;
    Ok(s)
}

/// `cfg.connections` connections from [`connect`], each added to `ep` with
/// its index as the token.
fn connect_all(cfg: &TcpBenchConfig, ep: &Epoll, interest: Interest) -> io::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let s = connect(cfg)?;
        ep.add(&s, i as u64, interest)?;
        conns.push(s);
    }
    Ok(conns)
}

/// One `write`; 0 when the socket buffer is full.
fn write_some(s: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    loop {
        match s.write(data) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One `read`; `Ok(None)` when nothing is there, `Ok(Some(0))` at EOF.
fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn unexpected_eof(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the server closed a connection {what}"),
    )
}

/// One request/response exchange in progress on a connection.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    /// Request bytes written.
    sent: usize,
    /// Response bytes read.
    received: usize,
    started: Instant,
}

impl Exchange {
    fn new(now: Instant) -> Exchange {
        Exchange {
            sent: 0,
            received: 0,
            started: now,
        }
    }

    /// Write what the socket takes, read what is there. `Ok(true)` when the
    /// whole response has arrived.
    fn progress(&mut self, s: &mut TcpStream, req: &[u8], buf: &mut [u8]) -> io::Result<bool> {
        while self.sent < req.len() {
            let n = write_some(s, &req[self.sent..])?;
            if n == 0 {
                break;
            }
            self.sent += n;
        }
        let want = req.len();
        while self.received < want {
            let room = (want - self.received).min(buf.len());
            match read_some(s, &mut buf[..room])? {
                None => break,
                Some(0) => return Err(unexpected_eof("during an exchange")),
                Some(n) => self.received += n,
            }
        }
        Ok(self.received == want)
    }

    fn interest(&self, req_len: usize) -> Interest {
        Interest {
            readable: true,
            writable: self.sent < req_len,
        }
    }
}

/// The request (or stream chunk) of `payload` bytes: a 23-byte cycle of
/// letters.
pub(crate) fn request(payload: usize) -> Vec<u8> {
    (0..payload).map(|i| b'A' + (i % 23) as u8).collect()
}

fn run_rr(cfg: &TcpBenchConfig) -> io::Result<Report> {
    let req = request(cfg.payload);
    let ep = Epoll::new()?;
    let mut conns: Vec<(TcpStream, Interest)> = connect_all(cfg, &ep, Interest::READ)?
        .into_iter()
        .map(|s| (s, Interest::READ))
        .collect();
    let mut hist = new_histogram();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(cfg.connections.min(1024));
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut ex: Vec<Exchange> = vec![Exchange::new(start); cfg.connections];
    let mut completed = 0u64;
    let mut record = |ex: &Exchange, done: Instant| {
        if done >= measure_from {
            let ns = done.duration_since(ex.started).as_nanos() as u64;
            let _ = hist.record(ns.max(1));
            completed += 1;
        }
    };
    let mut drive = |i: usize, s: &mut TcpStream, interest: &mut Interest, ex: &mut Exchange| {
        rr_drive(&ep, i, s, interest, ex, &req, &mut buf, end, &mut record)
    };
    for (i, (s, interest)) in conns.iter_mut().enumerate() {
        ex[i] = Exchange::new(Instant::now());
        drive(i, s, interest, &mut ex[i])?;
    }
    loop {
        let n = ep.wait(&mut events, wait_ms(cfg))?;
        if Instant::now() >= end {
            break;
        }
        for k in 0..n {
            let i = events.get(k).token as usize;
            let (s, interest) = &mut conns[i];
            drive(i, s, interest, &mut ex[i])?;
        }
    }
    if completed == 0 {
        return Err(no_progress(cfg));
    }
    let elapsed = Instant::now().duration_since(measure_from);
    Ok(Report::from_histogram(
        TcpBenchKind::Rr.name(),
        &hist,
        elapsed,
        completed,
        0,
    ))
}

/// Advance connection `i`'s exchange; each one that completes is recorded
/// and the next request sent at once (a fast server may answer it before
/// this returns, so this loops rather than waiting for an event).
#[allow(clippy::too_many_arguments)]
fn rr_drive(
    ep: &Epoll,
    i: usize,
    s: &mut TcpStream,
    interest: &mut Interest,
    ex: &mut Exchange,
    req: &[u8],
    buf: &mut [u8],
    end: Instant,
    record: &mut impl FnMut(&Exchange, Instant),
) -> io::Result<()> {
    while ex.progress(s, req, buf)? {
        let done = Instant::now();
        record(ex, done);
        *ex = Exchange::new(done);
        if done >= end {
            break;
        }
    }
    set_interest(ep, s, i, interest, ex.interest(req.len()))
}

fn set_interest(
    ep: &Epoll,
    s: &TcpStream,
    token: usize,
    have: &mut Interest,
    want: Interest,
) -> io::Result<()> {
    if *have != want {
        ep.modify(s, token as u64, want)?;
        *have = want;
    }
    Ok(())
}

pub(crate) fn no_progress(cfg: &TcpBenchConfig) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "{}: nothing completed against {} during the run",
            cfg.kind.name(),
            cfg.target
        ),
    )
}

/// A `tcp-crr` slot.
struct CrrSlot {
    stream: Option<TcpStream>,
    interest: Interest,
    connecting: bool,
    ex: Exchange,
}

fn run_crr(cfg: &TcpBenchConfig) -> io::Result<Report> {
    let req = request(cfg.payload);
    let ep = Epoll::new()?;
    let mut hist = new_histogram();
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(cfg.connections.min(1024));
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut slots: Vec<CrrSlot> = (0..cfg.connections)
        .map(|_| CrrSlot {
            stream: None,
            interest: Interest::WRITE,
            connecting: false,
            ex: Exchange::new(start),
        })
        .collect();
    let mut tally = CrrTally {
        completed: 0,
        failed: 0,
        last_error: None,
    };
    let mut record = |ex: &Exchange, done: Instant| {
        if done >= measure_from {
            let ns = done.duration_since(ex.started).as_nanos() as u64;
            let _ = hist.record(ns.max(1));
            true
        } else {
            false
        }
    };
    let mut drive = |i: usize, slot: &mut CrrSlot| {
        crr_drive(
            cfg,
            &ep,
            i,
            slot,
            &req,
            &mut buf,
            end,
            &mut tally,
            &mut record,
        )
    };
    loop {
        // Slots without a connection (at the start, or after a failed
        // connect) open one here.
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.stream.is_none() {
                drive(i, slot);
            }
        }
        let n = ep.wait(&mut events, wait_ms(cfg))?;
        if Instant::now() >= end {
            break;
        }
        for k in 0..n {
            let i = events.get(k).token as usize;
            drive(i, &mut slots[i]);
        }
    }
    for slot in &mut slots {
        crr_close(&ep, slot, CrrClose::Reset);
    }
    if tally.completed == 0 {
        return Err(tally.last_error.unwrap_or_else(|| no_progress(cfg)));
    }
    let elapsed = Instant::now().duration_since(measure_from);
    Ok(Report::from_histogram(
        TcpBenchKind::Crr.name(),
        &hist,
        elapsed,
        tally.completed,
        tally.failed,
    ))
}

struct CrrTally {
    completed: u64,
    /// Connections that failed (refused, reset, no port left).
    failed: u64,
    last_error: Option<io::Error>,
}

/// Advance slot `i`: finish its exchange, record it, open the next
/// connection, until something has to wait for the network.
#[allow(clippy::too_many_arguments)]
fn crr_drive(
    cfg: &TcpBenchConfig,
    ep: &Epoll,
    i: usize,
    slot: &mut CrrSlot,
    req: &[u8],
    buf: &mut [u8],
    end: Instant,
    tally: &mut CrrTally,
    record: &mut impl FnMut(&Exchange, Instant) -> bool,
) {
    loop {
        if slot.stream.is_none() {
            if let Err(e) = crr_open(cfg, ep, i, slot) {
                tally.failed += 1;
                tally.last_error = Some(e);
                return;
            }
        }
        match crr_step(cfg, ep, i, slot, req, buf) {
            Ok(false) => return,
            Ok(true) => {
                let done = Instant::now();
                if record(&slot.ex, done) {
                    tally.completed += 1;
                }
                if done >= end {
                    return;
                }
            }
            Err(e) => {
                crr_close(ep, slot, CrrClose::Reset);
                tally.failed += 1;
                tally.last_error = Some(e);
                return;
            }
        }
    }
}

fn crr_open(cfg: &TcpBenchConfig, ep: &Epoll, i: usize, slot: &mut CrrSlot) -> io::Result<()> {
    crr_close(ep, slot, cfg.crr_close);
    let started = Instant::now();
    let (s, done) = connect_nonblocking(cfg.target, cfg.bind.map(|ip| SocketAddrV4::new(ip, 0)))?;
    s.set_nodelay(true)?;
    slot.ex = Exchange::new(started);
    slot.connecting = !done;
    slot.interest = Interest::WRITE;
    ep.add(&s, i as u64, slot.interest)?;
    slot.stream = Some(s);
    Ok(())
}

/// Advance a slot's connection; `Ok(true)` when its exchange completed (the
/// connection is then closed).
fn crr_step(
    cfg: &TcpBenchConfig,
    ep: &Epoll,
    i: usize,
    slot: &mut CrrSlot,
    req: &[u8],
    buf: &mut [u8],
) -> io::Result<bool> {
    let Some(s) = slot.stream.as_mut() else {
        return Ok(false);
    };
    if slot.connecting {
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        // Still in progress: wait for writability.
        if s.peer_addr().is_err() {
            return Ok(false);
        }
        slot.connecting = false;
    }
    if slot.ex.progress(s, req, buf)? {
        crr_close(ep, slot, cfg.crr_close);
        return Ok(true);
    }
    let want = slot.ex.interest(req.len());
    set_interest(ep, s, i, &mut slot.interest, want)?;
    Ok(false)
}

fn crr_close(ep: &Epoll, slot: &mut CrrSlot, how: CrrClose) {
    if let Some(s) = slot.stream.take() {
        let _ = ep.delete(&s);
        if how == CrrClose::Reset {
            let _ = set_linger_zero(&s);
        }
    }
}

fn run_stream(cfg: &TcpBenchConfig) -> io::Result<Report> {
    let chunk = request(cfg.payload);
    let ep = Epoll::new()?;
    let mut conns = connect_all(cfg, &ep, Interest::BOTH)?;
    let mut written = vec![0u64; conns.len()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(cfg.connections.min(1024));
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let mut base: Option<(u64, Instant)> = None;
    // Offsets into `chunk` so partial writes continue where they stopped.
    let mut offs = vec![0usize; conns.len()];
    loop {
        let n = ep.wait(&mut events, wait_ms(cfg))?;
        let now = Instant::now();
        if base.is_none() && now >= measure_from {
            base = Some((acked(&conns, &written)?, now));
        }
        if now >= end {
            break;
        }
        for k in 0..n {
            let ev = events.get(k);
            let i = ev.token as usize;
            let s = &mut conns[i];
            if ev.readable || ev.error {
                // Drain anything sent back (an echoing server).
                while let Some(r) = read_some(s, &mut buf)? {
                    if r == 0 {
                        return Err(unexpected_eof("during a stream"));
                    }
                }
            }
            if ev.writable {
                loop {
                    let w = write_some(s, &chunk[offs[i]..])?;
                    if w == 0 {
                        break;
                    }
                    written[i] += w as u64;
                    offs[i] = (offs[i] + w) % chunk.len();
                }
            }
        }
    }
    let stop = Instant::now();
    let total = acked(&conns, &written)?;
    bytes_report(cfg, TcpBenchKind::Stream.name(), base, total, stop)
}

/// The report of a stream run: the bytes counted from `base` (the count
/// and time when measuring began) to `total` at `stop`.
fn bytes_report(
    cfg: &TcpBenchConfig,
    kind: &str,
    base: Option<(u64, Instant)>,
    total: u64,
    stop: Instant,
) -> io::Result<Report> {
    let (base_bytes, base_at) = base.ok_or_else(|| no_progress(cfg))?;
    let mut r = Report::from_histogram(kind, &new_histogram(), stop.duration_since(base_at), 0, 0);
    r.bytes = total.saturating_sub(base_bytes);
    if r.bytes == 0 {
        return Err(no_progress(cfg));
    }
    Ok(r)
}

/// The report kind of a download run.
pub const DOWNLOAD_KIND: &str = "tcp-stream-download";

fn run_download(cfg: &TcpBenchConfig) -> io::Result<Report> {
    let ep = Epoll::new()?;
    let mut conns = connect_all(cfg, &ep, Interest::READ)?;
    let mut received = vec![0u64; conns.len()];
    let mut open = conns.len();
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(cfg.connections.min(1024));
    let start = Instant::now();
    let limit = cfg.download_bytes;
    // A byte limit measures the whole transfer; `duration` bounds it.
    let measure_from = if limit.is_some() {
        start
    } else {
        start + cfg.warmup
    };
    let end = measure_from + cfg.duration;
    let mut base: Option<(u64, Instant)> = limit.map(|_| (0, start));
    while open > 0 {
        let n = ep.wait(&mut events, wait_ms(cfg))?;
        let now = Instant::now();
        if base.is_none() && now >= measure_from {
            base = Some((received.iter().sum(), now));
        }
        if now >= end {
            if limit.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "download from {} stalled: {:?} bytes received per connection after {:?}",
                        cfg.target, received, cfg.duration
                    ),
                ));
            }
            break;
        }
        for k in 0..n {
            let i = events.get(k).token as usize;
            let s = &mut conns[i];
            while let Some(r) = read_some(s, &mut buf)? {
                if r == 0 {
                    return Err(unexpected_eof("during a download"));
                }
                verify(received[i], &buf[..r]).map_err(|at| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("download from {}: wrong byte at offset {at}", cfg.target),
                    )
                })?;
                received[i] += r as u64;
                if limit.is_some_and(|l| received[i] >= l) {
                    ep.delete(s)?;
                    open -= 1;
                    break;
                }
            }
        }
    }
    let stop = Instant::now();
    bytes_report(cfg, DOWNLOAD_KIND, base, received.iter().sum(), stop)
}

/// Bytes the receivers acknowledged so far, over all connections.
fn acked(conns: &[TcpStream], written: &[u64]) -> io::Result<u64> {
    let mut sum = 0;
    for (s, w) in conns.iter().zip(written) {
        sum += w.saturating_sub(unacked_bytes(s)? as u64);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_parse() {
        for k in [TcpBenchKind::Rr, TcpBenchKind::Crr, TcpBenchKind::Stream] {
            assert_eq!(k.name().parse::<TcpBenchKind>(), Ok(k));
        }
        assert!("udp".parse::<TcpBenchKind>().is_err());
    }

    #[test]
    fn refuses_zero_connections_and_payload() {
        let mut cfg = TcpBenchConfig::new(TcpBenchKind::Rr, "127.0.0.1:9".parse().unwrap());
        cfg.connections = 0;
        assert_eq!(
            run_kernel_client(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        cfg.connections = 1;
        cfg.payload = 0;
        assert_eq!(
            run_kernel_client(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}

#[cfg(test)]
mod against_kernel_server {
    use super::*;
    use crate::baseline::kernel_tcp::tests::with_server;
    use crate::baseline::kernel_tcp::{KernelTcpStats, TcpService};
    use std::net::SocketAddr;

    /// A kernel TCP server on loopback for the duration of `f`.
    fn bench<R>(service: TcpService, f: impl FnOnce(SocketAddrV4) -> R) -> (R, KernelTcpStats) {
        with_server(service, |addr| {
            let SocketAddr::V4(addr) = addr else {
                unreachable!()
            };
            f(addr)
        })
    }

    fn cfg(kind: TcpBenchKind, target: SocketAddrV4, connections: usize) -> TcpBenchConfig {
        TcpBenchConfig {
            connections,
            duration: Duration::from_millis(400),
            warmup: Duration::from_millis(50),
            ..TcpBenchConfig::new(kind, target)
        }
    }

    #[test]
    fn rr_one_and_many_connections() {
        for conns in [1, 16] {
            let (r, stats) = bench(TcpService::Echo, |t| {
                run_kernel_client(&cfg(TcpBenchKind::Rr, t, conns)).unwrap()
            });
            assert!(r.completed > 100, "{}", r.summary());
            assert!(r.p50_ns > 0 && r.p50_ns <= r.p99_ns && r.p99_ns <= r.max_ns);
            assert_eq!(stats.accepted, conns as u64);
            // Every measured exchange was echoed by the server (plus warm-up
            // and the ones cut off at the end).
            assert!(stats.bytes_in >= r.completed * 64, "{stats:?}");
            assert_eq!(r.inflight, conns);
            assert!(r.to_json().contains("\"kind\":\"tcp-rr\""));
        }
    }

    #[test]
    fn rr_large_payload_spans_many_segments() {
        let (r, _) = bench(TcpService::Echo, |t| {
            let mut c = cfg(TcpBenchKind::Rr, t, 2);
            c.payload = 200_000;
            run_kernel_client(&c).unwrap()
        });
        assert!(r.completed > 10, "{}", r.summary());
    }

    #[test]
    fn crr_with_reset_and_fin_closes() {
        for close in [CrrClose::Reset, CrrClose::Fin] {
            let (r, stats) = bench(TcpService::Echo, |t| {
                let mut c = cfg(TcpBenchKind::Crr, t, 4);
                c.duration = Duration::from_millis(200);
                c.crr_close = close;
                run_kernel_client(&c).unwrap()
            });
            assert!(r.completed > 50, "{close:?}: {}", r.summary());
            assert!(stats.accepted >= r.completed, "{stats:?} {}", r.summary());
            assert_eq!(r.lost, 0, "{close:?}: {}", r.summary());
            assert_eq!(stats.errors, 0, "{stats:?}");
            match close {
                CrrClose::Reset => assert!(stats.resets >= r.completed, "{stats:?}"),
                // Only the slots still open when the run ends are reset.
                CrrClose::Fin => assert!(stats.resets <= 4, "{stats:?}"),
            }
        }
    }

    #[test]
    fn crr_against_nothing_fails() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = cfg(
            TcpBenchKind::Crr,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            2,
        );
        c.duration = Duration::from_millis(50);
        c.warmup = Duration::ZERO;
        assert_eq!(
            run_kernel_client(&c).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn stream_to_discard_and_echo() {
        for service in [TcpService::Discard, TcpService::Echo] {
            let name = format!("{service:?}");
            let (r, stats) = bench(service, |t| {
                let mut c = cfg(TcpBenchKind::Stream, t, 2);
                c.payload = 64 * 1024;
                run_kernel_client(&c).unwrap()
            });
            assert!(r.bits_per_second() > 1e6, "{name}: {}", r.summary());
            // Acknowledged bytes were received by the server.
            assert!(stats.bytes_in >= r.bytes, "{name}: {stats:?} {}", r.bytes);
            assert!(r.to_json().contains("\"kind\":\"tcp-stream\""));
        }
    }

    #[test]
    fn download_from_source_verifies_the_pattern() {
        // For a duration.
        let (r, stats) = bench(TcpService::Source, |t| {
            let mut c = cfg(TcpBenchKind::Stream, t, 2);
            c.download = true;
            run_kernel_client(&c).unwrap()
        });
        assert!(r.bits_per_second() > 1e6, "{}", r.summary());
        assert_eq!(r.kind, DOWNLOAD_KIND);
        assert!(stats.bytes_out >= r.bytes, "{stats:?} {}", r.bytes);
        assert_eq!(stats.accepted, 2);
        // A fixed amount, the whole transfer measured.
        let (r, _) = bench(TcpService::Source, |t| {
            let mut c = cfg(TcpBenchKind::Stream, t, 1);
            c.download = true;
            c.download_bytes = Some(5 << 20);
            c.duration = Duration::from_secs(10);
            run_kernel_client(&c).unwrap()
        });
        assert!(
            r.bytes >= 5 << 20 && r.bytes < (5 << 20) + (256 << 10),
            "{}",
            r.bytes
        );
    }

    #[test]
    fn download_from_a_wrong_stream_fails() {
        // An echo server sends nothing: a byte limit turns that into a
        // stall error, not a hang.
        let (e, _) = bench(TcpService::Echo, |t| {
            let mut c = cfg(TcpBenchKind::Stream, t, 1);
            c.download = true;
            c.download_bytes = Some(1);
            c.duration = Duration::from_millis(200);
            run_kernel_client(&c).unwrap_err()
        });
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        // Bytes that are not the pattern are refused.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = l.local_addr().unwrap() else {
            unreachable!()
        };
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut data = crate::apps::source::pattern_at(0, 5000).to_vec();
            data[4321] ^= 0x40;
            let _ = s.write_all(&data);
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut c = cfg(TcpBenchKind::Stream, addr, 1);
        c.download = true;
        c.download_bytes = Some(10_000);
        let e = run_kernel_client(&c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("offset 4321"), "{e}");
        t.join().unwrap();
    }
}
