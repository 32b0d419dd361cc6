//! TCP servers on ordinary kernel sockets for the TCP comparison: echo,
//! discard, source and HTTP, one thread, non-blocking sockets under level-triggered
//! epoll, optionally pinned and busy-polling. The service logic is the one
//! xdpstack's servers run: echo until the client closes, then close; HTTP
//! through the same sans-IO [`crate::http`] session.
//!
//! Discard exists for `tcp-stream`: an echoing server sends every byte back
//! over the same path, so a bulk sender measures both directions and the
//! server's writes; a discarding server makes the row one-directional, as a
//! bulk transfer is.
//!
//! Source is the kernel's twin of [`crate::apps::TcpSource`]: on accept it
//! writes the same endless pattern ([`crate::apps::source::pattern_at`]) as
//! fast as the socket takes it, until the client closes; with
//! [`KernelTcpConfig::congestion`] the listener picks the kernel's
//! congestion control by name (inherited by accepted sockets), for the
//! lossy download comparison.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apps::source::pattern_at;
use crate::http::{HttpConfig, HttpServer, HttpSession};
use crate::xdp::epoll::{set_congestion_control, Epoll, Events, Interest};

/// What the server does with a connection's bytes.
#[derive(Debug, Clone)]
pub enum TcpService {
    /// Send every byte back; close after the client closes.
    Echo,
    /// Read and drop everything; close after the client closes.
    Discard,
    /// Send the endless pattern; close after the client closes.
    Source,
    /// HTTP/1.1 with a fixed body ([`crate::http`]).
    Http(HttpConfig),
}

/// What the server runs on.
#[derive(Debug, Clone)]
pub struct KernelTcpConfig {
    pub bind: SocketAddr,
    pub service: TcpService,
    /// Core to pin the serving thread to.
    pub core: Option<usize>,
    /// Spin on `epoll_wait(0)` instead of sleeping in it (the xdpstack
    /// workers' busy-polling counterpart).
    pub busy_poll: bool,
    /// Bytes read per `read` call.
    pub read_buf: usize,
    /// The kernel congestion control to use (`TCP_CONGESTION`), e.g.
    /// `cubic`; `None` keeps the system default.
    pub congestion: Option<String>,
}

impl KernelTcpConfig {
    pub fn new(bind: SocketAddr, service: TcpService) -> KernelTcpConfig {
        KernelTcpConfig {
            bind,
            service,
            core: None,
            busy_poll: false,
            read_buf: 64 * 1024,
            congestion: None,
        }
    }
}

/// Counters of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelTcpStats {
    pub accepted: u64,
    pub closed: u64,
    /// Connections the client reset (a `tcp-crr` client closing with
    /// `SO_LINGER` 0 does this on purpose).
    pub resets: u64,
    /// Connections that ended with another error.
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// HTTP requests answered.
    pub requests: u64,
}

const LISTENER: u64 = u64::MAX;
/// Echo bytes a connection may hold unsent before the server stops reading
/// it (the client's flow control then stops the client).
const ECHO_BACKLOG: usize = 256 * 1024;

struct Conn {
    stream: TcpStream,
    /// Echo bytes not yet written.
    pending: VecDeque<u8>,
    http: Option<HttpSession>,
    /// Request bytes the HTTP session could not take yet (its response
    /// queue was full).
    unparsed: Vec<u8>,
    /// Pattern bytes written (source).
    sent: u64,
    /// The client sent FIN.
    eof: bool,
    /// The response that closes the connection is written and our side is
    /// shut down; reading on until the client's FIN, so that a request it
    /// sent meanwhile does not turn the close into a reset that could
    /// destroy the response in flight (a "lingering close").
    lingering: bool,
    interest: Interest,
}

enum Next {
    Keep,
    Close,
    Reset,
    Failed,
}

/// Bind `cfg.bind` and serve until `stop` is set. The calling thread serves;
/// `ready` is called with the bound address once listening.
pub fn run_with(
    cfg: &KernelTcpConfig,
    stop: &AtomicBool,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<KernelTcpStats> {
    if let Some(c) = cfg.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let listener = TcpListener::bind(cfg.bind)?;
    listener.set_nonblocking(true)?;
    if let Some(cc) = &cfg.congestion {
        set_congestion_control(&listener, cc)?;
    }
    let ep = Epoll::new()?;
    ep.add(&listener, LISTENER, Interest::READ)?;
    ready(listener.local_addr()?);

    let http = match &cfg.service {
        TcpService::Http(h) => Some(HttpServer::new(h.clone())),
        _ => None,
    };
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; cfg.read_buf.max(1)];
    let mut stats = KernelTcpStats::default();
    let timeout = if cfg.busy_poll { 0 } else { 50 };

    while !stop.load(Ordering::Relaxed) {
        let n = ep.wait(&mut events, timeout)?;
        for i in 0..n {
            let ev = events.get(i);
            if ev.token == LISTENER {
                let first = match cfg.service {
                    TcpService::Source => Interest::BOTH,
                    _ => Interest::READ,
                };
                accept_all(
                    &listener, &ep, &mut conns, &mut free, &http, first, &mut stats,
                )?;
                continue;
            }
            let idx = ev.token as usize;
            let Some(conn) = conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let next = serve(conn, &cfg.service, http.as_ref(), &mut buf, &mut stats);
            let next = match next {
                Next::Keep => match update_interest(&ep, idx, conn, &cfg.service) {
                    Ok(()) => Next::Keep,
                    Err(_) => Next::Failed,
                },
                other => other,
            };
            match next {
                Next::Keep => {}
                Next::Close | Next::Reset | Next::Failed => {
                    match next {
                        Next::Reset => stats.resets += 1,
                        Next::Failed => stats.errors += 1,
                        _ => {}
                    }
                    stats.closed += 1;
                    if let Some(c) = conns[idx].take() {
                        let _ = ep.delete(&c.stream);
                    }
                    free.push(idx);
                }
            }
        }
    }
    Ok(stats)
}

/// [`run_with`] without a readiness callback.
pub fn run(cfg: &KernelTcpConfig, stop: &AtomicBool) -> io::Result<KernelTcpStats> {
    run_with(cfg, stop, |_| {})
}

fn accept_all(
    listener: &TcpListener,
    ep: &Epoll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    http: &Option<HttpServer>,
    interest: Interest,
    stats: &mut KernelTcpStats,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // The connection died in the accept queue, or descriptors ran
            // out: drop it and keep serving the others.
            Err(e) if is_transient_accept_error(&e) => {
                stats.errors += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
            stats.errors += 1;
            continue;
        }
        let idx = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        if ep.add(&stream, idx as u64, interest).is_err() {
            stats.errors += 1;
            free.push(idx);
            continue;
        }
        stats.accepted += 1;
        conns[idx] = Some(Conn {
            stream,
            pending: VecDeque::new(),
            http: http.as_ref().map(HttpSession::new),
            unparsed: Vec::new(),
            sent: 0,
            eof: false,
            lingering: false,
            interest,
        });
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Read what is there, act on it, write what can be written.
fn serve(
    c: &mut Conn,
    service: &TcpService,
    http: Option<&HttpServer>,
    buf: &mut [u8],
    stats: &mut KernelTcpStats,
) -> Next {
    if c.lingering {
        return linger(c, buf);
    }
    // Read unless the output side is backed up (then the peer waits).
    let mut reads = 0;
    while !c.eof && !backed_up(c) && reads < 16 {
        reads += 1;
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                stats.bytes_in += n as u64;
                match service {
                    TcpService::Echo => {
                        // Write straight from the read buffer when nothing
                        // is queued, queue only the remainder.
                        let mut off = 0;
                        if c.pending.is_empty() {
                            match write_some(&mut c.stream, &buf[..n], stats) {
                                Ok(w) => off = w,
                                Err(e) => return failure(&e),
                            }
                        }
                        c.pending.extend(&buf[off..n]);
                    }
                    TcpService::Discard | TcpService::Source => {}
                    TcpService::Http(_) => {
                        let (Some(s), Some(srv)) = (c.http.as_mut(), http) else {
                            return Next::Failed;
                        };
                        let used = if c.unparsed.is_empty() {
                            let before = s.requests();
                            let used = s.receive(&buf[..n]);
                            stats.requests += s.requests() - before;
                            used
                        } else {
                            0
                        };
                        c.unparsed.extend_from_slice(&buf[used..n]);
                        if let Err(e) = flush_http(c, srv, stats) {
                            return failure(&e);
                        }
                    }
                }
                if n < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return failure(&e),
        }
    }
    // Write what is queued.
    match service {
        TcpService::Echo => {
            while !c.pending.is_empty() {
                let (a, _) = c.pending.as_slices();
                match write_some(&mut c.stream, a, stats) {
                    Ok(0) => break,
                    Ok(w) => {
                        c.pending.drain(..w);
                    }
                    Err(e) => return failure(&e),
                }
            }
            if c.eof && c.pending.is_empty() {
                return Next::Close;
            }
        }
        TcpService::Discard => {
            if c.eof {
                return Next::Close;
            }
        }
        TcpService::Source => {
            if c.eof {
                return Next::Close;
            }
            loop {
                match write_some(&mut c.stream, pattern_at(c.sent, usize::MAX), stats) {
                    Ok(0) => break,
                    Ok(w) => c.sent += w as u64,
                    Err(e) => return failure(&e),
                }
            }
        }
        TcpService::Http(_) => {
            let (Some(_), Some(srv)) = (c.http.as_ref(), http) else {
                return Next::Failed;
            };
            if let Err(e) = flush_http(c, srv, stats) {
                return failure(&e);
            }
            let Some(s) = c.http.as_mut() else {
                return Next::Failed;
            };
            if c.eof && c.unparsed.is_empty() && s.peer_closed() {
                return Next::Close;
            }
            if s.should_close() {
                if c.eof {
                    return Next::Close;
                }
                if c.stream.shutdown(std::net::Shutdown::Write).is_err() {
                    return Next::Failed;
                }
                c.lingering = true;
                return linger(c, buf);
            }
        }
    }
    Next::Keep
}

/// How a connection that failed with `e` is counted.
fn failure(e: &io::Error) -> Next {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Next::Reset,
        _ => Next::Failed,
    }
}

/// Write responses and feed held-back request bytes until neither moves.
fn flush_http(c: &mut Conn, srv: &HttpServer, stats: &mut KernelTcpStats) -> io::Result<()> {
    let Some(s) = c.http.as_mut() else {
        return Ok(());
    };
    loop {
        let mut moved = false;
        while let Some(chunk) = s.output(srv) {
            let w = write_some(&mut c.stream, chunk, stats)?;
            if w == 0 {
                break;
            }
            s.advance(srv, w);
            moved = true;
        }
        if !c.unparsed.is_empty() && !s.is_backlogged() {
            let before = s.requests();
            let used = s.receive(&c.unparsed);
            stats.requests += s.requests() - before;
            c.unparsed.drain(..used);
            moved |= used > 0;
        }
        if !moved {
            return Ok(());
        }
    }
}

/// Discard input until the client's FIN.
fn linger(c: &mut Conn, buf: &mut [u8]) -> Next {
    loop {
        match c.stream.read(buf) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset now loses nothing of ours.
            Err(_) => return Next::Close,
        }
    }
}

/// One `write`; 0 when the socket buffer is full.
fn write_some(s: &mut TcpStream, data: &[u8], stats: &mut KernelTcpStats) -> io::Result<usize> {
    loop {
        match s.write(data) {
            Ok(n) => {
                stats.bytes_out += n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn backed_up(c: &Conn) -> bool {
    c.pending.len() >= ECHO_BACKLOG || !c.unparsed.is_empty()
}

fn update_interest(ep: &Epoll, idx: usize, c: &mut Conn, service: &TcpService) -> io::Result<()> {
    // A source always has more to write (until the client's FIN).
    let wants_write = !c.pending.is_empty()
        || c.http.as_ref().is_some_and(|s| s.has_output())
        || matches!(service, TcpService::Source);
    let want = Interest {
        readable: c.lingering || (!c.eof && !backed_up(c)),
        writable: wants_write,
    };
    if want != c.interest {
        ep.modify(&c.stream, idx as u64, want)?;
        c.interest = want;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Shutdown;
    use std::process::Command;
    use std::sync::mpsc;

    /// Run a server on loopback for the duration of `f`; returns what `f`
    /// returned and the server's stats.
    pub(crate) fn with_server<R>(
        service: TcpService,
        f: impl FnOnce(SocketAddr) -> R,
    ) -> (R, KernelTcpStats) {
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let cfg = KernelTcpConfig::new("127.0.0.1:0".parse().unwrap(), service);
                run_with(&cfg, &stop, |a| tx.send(a).unwrap())
            });
            let addr = rx.recv().unwrap();
            // Stops the server even when `f` panics, so the scope can end.
            let _stop = StopOnDrop(&stop);
            let r = f(addr);
            // Let the server see the last closes before stopping it.
            std::thread::sleep(std::time::Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            (r, h.join().unwrap().unwrap())
        })
    }

    struct StopOnDrop<'a>(&'a AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i * 7 + seed * 13) % 251) as u8)
            .collect()
    }

    /// Write `data` in one thread while reading in this one; then half-close
    /// and read to EOF. Returns what came back.
    fn push_through(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut back = Vec::new();
        std::thread::scope(|sc| {
            sc.spawn(move || {
                for c in data.chunks(10_000) {
                    w.write_all(c).unwrap();
                }
                w.shutdown(Shutdown::Write).unwrap();
            });
            s.read_to_end(&mut back).unwrap();
        });
        back
    }

    #[test]
    fn echo_is_byte_exact_with_half_close_and_concurrency() {
        let ((), stats) = with_server(TcpService::Echo, |addr| {
            std::thread::scope(|sc| {
                for (k, len) in [1usize, 1000, 300_000, 4 << 20].into_iter().enumerate() {
                    sc.spawn(move || {
                        let data = pattern(len, k);
                        let back = push_through(addr, &data);
                        assert_eq!(back.len(), data.len());
                        assert!(back == data, "echo of {len} bytes differs");
                    });
                }
            });
        });
        let total = 1 + 1000 + 300_000 + (4 << 20);
        assert_eq!(stats.accepted, 4);
        assert_eq!(stats.closed, 4);
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.bytes_in, total as u64);
        assert_eq!(stats.bytes_out, total as u64);
    }

    #[test]
    fn discard_reads_everything_and_closes_after_the_client() {
        let ((), stats) = with_server(TcpService::Discard, |addr| {
            let back = push_through(addr, &pattern(2 << 20, 1));
            assert!(back.is_empty());
        });
        assert_eq!(stats.bytes_in, 2 << 20);
        assert_eq!(stats.bytes_out, 0);
        assert_eq!(stats.closed, 1);
    }

    fn http_cfg() -> TcpService {
        TcpService::Http(HttpConfig {
            body_len: 1000,
            max_head_bytes: 4096,
        })
    }

    #[test]
    fn http_pipelined_then_close() {
        let ((), stats) = with_server(http_cfg(), |addr| {
            let mut s = TcpStream::connect(addr).unwrap();
            let one = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
            let last = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
            // More than the session's response queue, in one write.
            let reqs = one.repeat(40) + last;
            s.write_all(reqs.as_bytes()).unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).unwrap();
            let text = String::from_utf8(back).unwrap();
            assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 41);
            assert_eq!(text.matches("Content-Length: 1000\r\n").count(), 41);
            assert_eq!(text.matches("Connection: close\r\n").count(), 1);
            assert!(
                text.ends_with("xyzabcdefghijkl"),
                "body ends with the pattern"
            );
        });
        assert_eq!(stats.requests, 41);
        assert_eq!(stats.errors, 0);
    }

    #[test]
    fn http_bad_request_then_close() {
        with_server(http_cfg(), |addr| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nBroken header\r\n\r\n")
                .unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).unwrap();
            assert!(back.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{back}");
        });
    }

    /// Fetches `url` twice in one curl run, bodies discarded, with the
    /// `extra` options; returns what `-w format` printed after each transfer.
    fn curl_twice(url: &str, extra: &[&str], format: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", format])
            .args(extra)
            .args([url, url])
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn http_serves_curl_with_keep_alive_and_close() {
        with_server(http_cfg(), |addr| {
            let url = format!("http://{addr}/");
            let w = "%{http_code} %{size_download} %{num_connects}\\n";
            let text = curl_twice(&url, &[], w);
            // The second transfer reuses the first connection.
            assert_eq!(text, "200 1000 1\n200 1000 0\n", "{text}");
            let w = "%{http_code} %{num_connects}\\n";
            let text = curl_twice(&url, &["-H", "Connection: close"], w);
            assert_eq!(text, "200 1\n200 1\n", "{text}");
        });
    }
}
