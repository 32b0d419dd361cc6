//! Two shard TCP halves over the in-memory link (with the seeded fault
//! injector), on a virtual clock: echo and HTTP through the whole path
//! (demux, listeners, slab, wheel, frames), byte-exact.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use xdpstack::api::tcp::{ConnId, TcpConn, TcpHandler};
use xdpstack::apps::{HttpHandler, TcpEcho};
use xdpstack::http::{HttpConfig, HttpServer};
use xdpstack::phy::fault::{Apply, FaultConfig, FaultInjector};
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::phy::rng::Rng;
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::ports::{PortConfig, PortRange};
use xdpstack::shard_tcp::{ShardTcp, TcpShardDrop};
use xdpstack::tcp::{CloseReason, IsnKey, SendHalf};
use xdpstack::time::{Duration, Instant};

#[path = "support/tcp_side.rs"]
mod tcp_side;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

type FLink = FaultInjector<MemoryLink>;

type Side = tcp_side::Side<FLink>;

/// Two shards of one port space, as two workers would have.
fn ports(shard: usize) -> PortConfig {
    PortConfig {
        ephemeral: PortRange::new(40000, 40999).unwrap(),
        shards: 2,
        key: [7, shard as u64],
    }
}

fn sides(seed: u64, faults: FaultConfig) -> (Side, Side) {
    let (a, b) = pair(MemoryConfig {
        delay: Duration::from_micros(50),
        ..MemoryConfig::default()
    });
    let a = FaultInjector::new(a, seed, faults, Apply::Tx);
    let b = FaultInjector::new(b, seed ^ 0x5555, faults, Apply::Tx);
    (
        Side::new(A_IP, A_MAC, B_MAC, a, ports(0), 0),
        Side::new(B_IP, B_MAC, A_MAC, b, ports(1), 1),
    )
}

/// Runs both sides on a virtual clock until `done` or `limit`.
fn run(
    a: &mut Side,
    b: &mut Side,
    limit: Duration,
    mut done: impl FnMut(&Side, &Side) -> bool,
) -> Instant {
    let mut now = Instant::from_millis(1);
    let end = now + limit;
    while now < end {
        a.step(now);
        b.step(now);
        if done(a, b) {
            return now;
        }
        let next = [a.next(), b.next()].into_iter().flatten().min();
        now = match next {
            Some(t) if t > now => t,
            Some(_) => now + Duration::from_micros(1),
            None => now + Duration::from_millis(1),
        };
    }
    now
}

/// Results a client handler records, shared with the test.
#[derive(Debug, Default)]
struct Record {
    connected: u32,
    received: Vec<Vec<u8>>,
    closed: Vec<Option<CloseReason>>,
    peer_closed: u32,
}

/// Sends `data` on every connection it opens, then shuts down writing (or
/// writes nothing and only reads, if `data` is empty); records what comes
/// back.
struct Client {
    data: Arc<Vec<u8>>,
    sent: Vec<usize>,
    rec: Arc<Mutex<Record>>,
    /// Shut down writing after sending everything (half-close).
    shutdown_after: bool,
}

impl Client {
    fn new(data: Vec<u8>, rec: Arc<Mutex<Record>>) -> Client {
        Client {
            data: Arc::new(data),
            sent: Vec::new(),
            rec,
            shutdown_after: true,
        }
    }

    fn slot(&mut self, id: ConnId) -> usize {
        let i = id.slot as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, 0);
        }
        let mut r = self.rec.lock().unwrap();
        if r.received.len() <= i {
            r.received.resize(i + 1, Vec::new());
        }
        i
    }
}

impl TcpHandler for Client {
    fn on_connect(&mut self, now: Instant, conn: &mut TcpConn<'_>) {
        let i = self.slot(conn.id());
        self.sent[i] = 0;
        self.rec.lock().unwrap().connected += 1;
        self.on_writable(now, conn);
    }

    fn on_data(&mut self, _now: Instant, id: ConnId, data: &[u8], _tx: &mut SendHalf<'_>) -> usize {
        let i = self.slot(id);
        self.rec.lock().unwrap().received[i].extend_from_slice(data);
        data.len()
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let i = self.slot(conn.id());
        let total = self.data.len();
        if self.sent[i] < total {
            let n = conn.send(&self.data[self.sent[i]..]).unwrap_or(0);
            self.sent[i] += n;
            if self.sent[i] == total && self.shutdown_after {
                conn.shutdown_write();
            }
        }
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.rec.lock().unwrap().peer_closed += 1;
        conn.close();
    }

    fn on_close(&mut self, _now: Instant, _id: ConnId, reason: Option<CloseReason>) {
        self.rec.lock().unwrap().closed.push(reason);
    }
}

/// Makes B an echo server on port 7.
fn listen_echo(b: &mut Side) {
    let echo = b.tcp.add_handler(Box::<TcpEcho>::default());
    assert!(b.tcp.listen(7, echo));
}

/// Adds a [`Client`] sending `data` to A and opens `conns` connections from
/// it to B's `port`; returns what the client records.
fn start_clients(a: &mut Side, port: u16, data: Vec<u8>, conns: usize) -> Arc<Mutex<Record>> {
    let rec = Arc::new(Mutex::new(Record::default()));
    let client = a.tcp.add_handler(Box::new(Client::new(data, rec.clone())));
    for _ in 0..conns {
        a.tcp
            .connect(
                Instant::from_millis(1),
                SocketAddrV4::new(B_IP, port),
                client,
                None,
            )
            .unwrap();
    }
    rec
}

/// How many connections the client has seen closed.
fn closed(rec: &Mutex<Record>) -> usize {
    rec.lock().unwrap().closed.len()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.next_u32() as u8).collect()
}

fn echo_transfer(seed: u64, faults: FaultConfig, len: usize, conns: usize) {
    let (mut a, mut b) = sides(seed, faults);
    listen_echo(&mut b);
    let data = pattern(len, seed);
    let rec = start_clients(&mut a, 7, data.clone(), conns);
    run(&mut a, &mut b, Duration::from_secs(600), |_, b| {
        closed(&rec) == conns && b.tcp.connections() == 0
    });
    let r = rec.lock().unwrap();
    assert_eq!(r.connected as usize, conns, "seed {seed}");
    assert_eq!(r.closed.len(), conns, "seed {seed}: not all closed");
    assert_eq!(r.peer_closed as usize, conns, "seed {seed}");
    let got: Vec<&Vec<u8>> = r.received.iter().filter(|v| !v.is_empty()).collect();
    assert_eq!(got.len(), conns.min(r.received.len()), "seed {seed}");
    for v in got {
        assert!(
            v == &data,
            "seed {seed}: echo differs ({} of {} bytes)",
            v.len(),
            len
        );
    }
    // The client closed first after the server's FIN: it holds TIME-WAIT,
    // and the server side is gone from the table.
    let (sa, sb) = (a.tcp.counters(), b.tcp.counters());
    assert_eq!(sb.accepted as usize, conns);
    assert_eq!(
        b.tcp.connections(),
        0,
        "seed {seed}: server kept connections"
    );
    assert_eq!(sa.connected as usize, conns);
}

#[test]
fn echo_one_connection_clean() {
    echo_transfer(1, FaultConfig::default(), 300_000, 1);
}

#[test]
fn echo_concurrent_connections() {
    echo_transfer(2, FaultConfig::default(), 100_000, 16);
}

#[test]
fn echo_under_loss_reorder_duplication() {
    let faults = FaultConfig {
        drop: 0.02,
        duplicate: 0.01,
        reorder: 0.02,
        reorder_gap: 3,
        reorder_hold: Duration::from_millis(2),
        corrupt: 0.005,
        ..FaultConfig::default()
    };
    for seed in 10..18 {
        echo_transfer(seed, faults, 200_000, 2);
    }
}

#[test]
fn time_wait_ends_and_port_returns() {
    let (mut a, mut b) = sides(3, FaultConfig::default());
    listen_echo(&mut b);
    let rec = start_clients(&mut a, 7, b"ping".to_vec(), 1);
    run(&mut a, &mut b, Duration::from_secs(10), |_, _| {
        closed(&rec) == 1
    });
    assert_eq!(rec.lock().unwrap().closed[0], None, "client in TIME-WAIT");
    assert_eq!(a.tcp.connections(), 1);
    // 2*MSL later the TIME-WAIT entry is gone.
    run(&mut a, &mut b, Duration::from_secs(70), |_, _| false);
    assert_eq!(a.tcp.connections(), 0, "TIME-WAIT not ended");
    assert_eq!(a.tcp.counters().closed, 1);
}

#[test]
fn unmatched_segments_get_rst_and_refuse_connect() {
    let (mut a, mut b) = sides(4, FaultConfig::default());
    // No listener on B: the SYN is answered with RST, the connect fails.
    let rec = start_clients(&mut a, 9, b"x".to_vec(), 1);
    run(&mut a, &mut b, Duration::from_secs(5), |_, _| {
        closed(&rec) > 0
    });
    assert_eq!(rec.lock().unwrap().closed, vec![Some(CloseReason::Refused)]);
    assert_eq!(b.tcp.counters().resets_sent, 1);
    assert_eq!(a.tcp.connections(), 0);
    // Without RSTs (shared mode) the segment is a counted drop.
    let (mut a, mut b) = sides(5, FaultConfig::default());
    let mut cfg = b.tcp.config().clone();
    cfg.reset_unmatched = false;
    b.tcp = ShardTcp::new(cfg, IsnKey::random(), None, Instant::ZERO);
    start_clients(&mut a, 9, b"x".to_vec(), 1);
    run(&mut a, &mut b, Duration::from_millis(100), |_, _| false);
    assert_eq!(b.tcp.counters().resets_sent, 0);
    assert!(b.tcp.counters().dropped(TcpShardDrop::Unmatched) >= 1);
}

/// An HTTP client handler: sends `requests` pipelined or one at a time and
/// records the response bytes.
struct HttpClient {
    request: Vec<u8>,
    count: usize,
    sent: usize,
    rec: Arc<Mutex<Record>>,
}

impl TcpHandler for HttpClient {
    fn on_connect(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.rec.lock().unwrap().connected += 1;
        self.rec.lock().unwrap().received.push(Vec::new());
        while self.sent < self.count {
            if conn.send(&self.request).unwrap_or(0) != self.request.len() {
                break;
            }
            self.sent += 1;
        }
    }

    fn on_data(
        &mut self,
        _now: Instant,
        _id: ConnId,
        data: &[u8],
        _tx: &mut SendHalf<'_>,
    ) -> usize {
        let mut r = self.rec.lock().unwrap();
        r.received.last_mut().unwrap().extend_from_slice(data);
        data.len()
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.rec.lock().unwrap().peer_closed += 1;
        conn.close();
    }

    fn on_close(&mut self, _now: Instant, _id: ConnId, reason: Option<CloseReason>) {
        self.rec.lock().unwrap().closed.push(reason);
    }
}

/// Returns the client's record, the expected bytes and the connections
/// the server still holds.
fn http_run(
    body: usize,
    request: &[u8],
    count: usize,
    faults: FaultConfig,
) -> (Record, Vec<u8>, usize) {
    let (mut a, mut b) = sides(6, faults);
    let server = HttpServer::new(HttpConfig {
        body_len: body,
        ..HttpConfig::default()
    });
    let h = b
        .tcp
        .add_handler(Box::new(HttpHandler::new(server.clone())));
    b.tcp.listen(80, h);
    let rec = Arc::new(Mutex::new(Record::default()));
    let client = a.tcp.add_handler(Box::new(HttpClient {
        request: request.to_vec(),
        count,
        sent: 0,
        rec: rec.clone(),
    }));
    let id = a
        .tcp
        .connect(
            Instant::from_millis(1),
            SocketAddrV4::new(B_IP, 80),
            client,
            None,
        )
        .unwrap();
    // Expected bytes: `count` responses.
    let one = {
        let mut s = xdpstack::http::HttpSession::new(&server);
        s.receive(request);
        let mut out = vec![0u8; server.config().body_len + 1024];
        let n = s.write_to(&server, &mut out);
        out.truncate(n);
        out
    };
    let want: Vec<u8> = one.repeat(count);
    let r2 = rec.clone();
    let wl = want.len();
    let end = run(&mut a, &mut b, Duration::from_secs(60), |_, _| {
        let r = r2.lock().unwrap();
        !r.closed.is_empty() || r.received.first().is_some_and(|v| v.len() >= wl)
    });
    // Keep-alive: the client closes; run the close out.
    if a.tcp.connection(id).is_some() {
        a.tcp.with_conn(end, id, |c| c.close());
        run(&mut a, &mut b, Duration::from_secs(5), |_, b| {
            closed(&rec) > 0 && b.tcp.connections() == 0
        });
    }
    let r = std::mem::take(&mut *rec.lock().unwrap());
    (r, want, b.tcp.connections())
}

#[test]
fn http_keep_alive_pipelined() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (r, want, left) = http_run(10_000, req, 5, FaultConfig::default());
    assert_eq!(r.received[0], want);
    assert_eq!(left, 0, "the server's side is closed (client closed first)");
    // The server did not close: the client's close ended it.
    assert_eq!(r.peer_closed, 1, "the server's FIN answered the client's");
}

#[test]
fn http_connection_close_honoured() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (r, want, left) = http_run(300_000, req, 1, FaultConfig::default());
    assert_eq!(r.received[0], want);
    assert_eq!(left, 1, "the server closed first: TIME-WAIT");
    assert!(String::from_utf8_lossy(&want).contains("Connection: close"));
    assert_eq!(r.peer_closed, 1, "server closed first");
}

#[test]
fn http_large_body_under_loss() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let faults = FaultConfig {
        drop: 0.03,
        reorder: 0.02,
        reorder_gap: 2,
        reorder_hold: Duration::from_millis(1),
        ..FaultConfig::default()
    };
    let (r, want, _) = http_run(1_000_000, req, 1, faults);
    assert_eq!(r.received[0].len(), want.len());
    assert!(r.received[0] == want);
}

#[test]
fn syn_flood_beyond_the_backlog_falls_back_to_cookies() {
    use xdpstack::wire::frame::emit_ipv4_tcp;
    use xdpstack::wire::{EthernetAddress, EthernetRepr, Ipv4Repr, SeqNumber, TcpFlags, TcpRepr};
    let (mut a, mut b) = sides(21, FaultConfig::default());
    // A small backlog on the server.
    let mut cfg = b.tcp.config().clone();
    cfg.syn_backlog = 8;
    b.tcp = ShardTcp::new(cfg, IsnKey::random(), None, Instant::ZERO);
    listen_echo(&mut b);
    // 200 SYNs from spoofed ports that never complete the handshake.
    let now = Instant::from_millis(1);
    let mut frames = Vec::new();
    for i in 0..200u16 {
        let syn = TcpRepr {
            src_port: 1000 + i,
            dst_port: 7,
            seq_number: SeqNumber(u32::from(i) * 7919),
            ack_number: SeqNumber(0),
            flags: TcpFlags(TcpFlags::SYN),
            window: 1000,
            urgent_pointer: 0,
            options: Default::default(),
            payload: &[],
        };
        let mut f = a.link.alloc_tx().expect("frame");
        let cap = f.capacity();
        f.set_len(cap);
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 9]),
            dst_addr: EthernetAddress(B_MAC),
            ethertype: 0x0800,
            vlan: None,
        };
        let ip = Ipv4Repr::new(Ipv4Addr::new(10, 9, 0, 77).into(), B_IP.into(), 6, 0);
        let n = emit_ipv4_tcp(f.data_mut(), &eth, &ip, &syn).unwrap();
        f.set_len(n);
        frames.push(f);
    }
    a.link.send_batch(now, &mut frames);
    // Now a real client: it must still get through, byte-exact.
    let data = pattern(50_000, 21);
    let rec = start_clients(&mut a, 7, data.clone(), 1);
    run(&mut a, &mut b, Duration::from_secs(30), |_, _| {
        closed(&rec) > 0
    });
    let r = rec.lock().unwrap();
    assert_eq!(r.connected, 1, "the legitimate client did not connect");
    assert!(r.received.iter().any(|v| v == &data), "echo differs");
    assert_eq!(b.tcp.counters().accepted, 1);
    let l = b.tcp.listener_counters(7).unwrap();
    assert!(l.cookies_sent >= 1, "no SYN cookie was used: {l:?}");
    assert_eq!(l.cookies_accepted, 1, "{l:?}");
}
