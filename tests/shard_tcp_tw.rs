//! TIME-WAIT port reuse for active opens, between two shard TCP halves
//! over the in-memory link on a virtual clock: a tiny ephemeral range is
//! exhausted by connections the client closed first (so they sit in
//! TIME-WAIT); a new connect fails before the reuse delay and succeeds
//! after it, the connection that gave way gets its final `on_close`, and a
//! peer still in TIME-WAIT on the same 4-tuple accepts the new SYN. And a
//! new SYN for a handshake the client abandoned restarts the server's
//! embryo instead of waiting for a SYN retransmission.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use xdpstack::api::tcp::{ConnId, TcpConn, TcpHandler, TcpOpen};
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::phy::Link;
use xdpstack::ports::{PortConfig, PortRange, PortService};
use xdpstack::shard_tcp::{ConnectError, ShardTcp, TW_REUSE_DELAY};
use xdpstack::tcp::{CloseReason, IsnKey, SendHalf, State};
use xdpstack::time::{Duration, Instant};

#[path = "support/tcp_side.rs"]
mod tcp_side;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
const A_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const PORT: u16 = 7;
const SERVER: SocketAddrV4 = SocketAddrV4::new(B_IP, PORT);

type Side = tcp_side::Side<MemoryLink>;

/// A one-shard port space of `n` ephemeral ports.
fn ports(n: u16) -> PortConfig {
    PortConfig {
        ephemeral: PortRange::new(40000, 40000 + n - 1).unwrap(),
        shards: 1,
        key: [3, 4],
    }
}

fn sides(client_ports: u16) -> (Side, Side) {
    let (a, b) = pair(MemoryConfig {
        delay: Duration::from_micros(50),
        ..MemoryConfig::default()
    });
    (
        Side::new(A_IP, A_MAC, B_MAC, a, ports(client_ports), 0),
        Side::new(B_IP, B_MAC, A_MAC, b, ports(16), 0),
    )
}

/// Runs both sides from `now` until `done` holds (returns that time) or
/// the virtual clock reaches `until` (returns `until`).
fn run(
    a: &mut Side,
    b: &mut Side,
    mut now: Instant,
    until: Instant,
    mut done: impl FnMut(&Side, &Side) -> bool,
) -> Instant {
    while now < until {
        a.step(now);
        b.step(now);
        if done(a, b) {
            return now;
        }
        now = match [a.next(), b.next()].into_iter().flatten().min() {
            Some(t) if t > now => t.min(until),
            Some(_) => now + Duration::from_micros(1),
            None => until,
        };
    }
    until
}

/// What the handlers saw, shared with the test.
#[derive(Debug, Default)]
struct Record {
    /// Active opens the client's `poll` should still attempt.
    to_open: u32,
    opened: Vec<Result<ConnId, ConnectError>>,
    connected: Vec<ConnId>,
    accepted: Vec<ConnId>,
    /// TIME-WAIT notices (`on_close(None)`).
    time_wait: Vec<ConnId>,
    /// Final closes (`on_close(Some(..))`).
    closed: Vec<(ConnId, CloseReason)>,
}

/// Both ends: the client opens what `to_open` asks for from `poll` and,
/// with `close_first`, closes each connection as soon as it is
/// established; the server closes when the peer has.
struct Peer {
    rec: Arc<Mutex<Record>>,
    close_first: bool,
}

impl TcpHandler for Peer {
    fn on_connect(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.rec.lock().unwrap().connected.push(conn.id());
        if self.close_first {
            conn.close();
        }
    }

    fn on_data(
        &mut self,
        _now: Instant,
        _id: ConnId,
        data: &[u8],
        _tx: &mut SendHalf<'_>,
    ) -> usize {
        data.len()
    }

    fn on_accept(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.rec.lock().unwrap().accepted.push(conn.id());
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        conn.close();
    }

    fn on_close(&mut self, _now: Instant, id: ConnId, reason: Option<CloseReason>) {
        let mut r = self.rec.lock().unwrap();
        match reason {
            None => r.time_wait.push(id),
            Some(reason) => r.closed.push((id, reason)),
        }
    }

    fn poll(&mut self, _now: Instant, open: &mut dyn TcpOpen) {
        let mut r = self.rec.lock().unwrap();
        while r.to_open > 0 {
            r.to_open -= 1;
            let res = open.connect(SERVER, None);
            r.opened.push(res);
        }
    }
}

/// Registers a [`Peer`] on `side` (listening on [`PORT`] with `listen`).
fn handler(side: &mut Side, close_first: bool, listen: bool) -> Arc<Mutex<Record>> {
    let rec = Arc::new(Mutex::new(Record::default()));
    let h = side.tcp.add_handler(Box::new(Peer {
        rec: rec.clone(),
        close_first,
    }));
    if listen {
        assert!(side.tcp.listen(PORT, h));
    }
    rec
}

/// Four ports, four connections the client closes first (from the
/// handler's `poll`, so the reuse happens while the handlers are out of
/// the shard): the fifth connect fails before the reuse delay and succeeds
/// after it; the connection that gave way gets its final `on_close`.
#[test]
fn exhausted_range_reuses_the_oldest_time_wait_port() {
    time_wait_gives_way(4, None, ConnectError::NoPort);
}

/// The same with ports to spare but a table of four connections: a table
/// full of TIME-WAIT gives way as the ports do.
#[test]
fn full_table_reuses_the_oldest_time_wait_connection() {
    time_wait_gives_way(64, Some(4), ConnectError::TableFull);
}

fn time_wait_gives_way(client_ports: u16, table: Option<usize>, early_error: ConnectError) {
    let (mut a, mut b) = sides(client_ports);
    if let Some(n) = table {
        let mut cfg = a.tcp.config().clone();
        cfg.max_connections = n;
        let ports = PortService::new(ports(client_ports)).unwrap().shared();
        a.tcp = ShardTcp::new(cfg, IsnKey::random(), Some(ports), Instant::ZERO);
    }
    let client = handler(&mut a, true, false);
    let server = handler(&mut b, false, true);
    client.lock().unwrap().to_open = 4;
    let t0 = Instant::from_millis(1);
    let c = client.clone();
    let t1 = run(
        &mut a,
        &mut b,
        t0,
        t0 + Duration::from_secs(2),
        move |_, b| c.lock().unwrap().time_wait.len() == 4 && b.tcp.connections() == 0,
    );
    assert!(
        t1 < t0 + Duration::from_millis(100),
        "setup took until {t1:?}"
    );
    {
        let r = client.lock().unwrap();
        assert!(r.opened.iter().all(|o| o.is_ok()), "{:?}", r.opened);
        assert_eq!(r.connected.len(), 4);
        assert!(r.closed.is_empty());
    }
    assert_eq!(a.tcp.connections(), 4);
    for &id in &client.lock().unwrap().time_wait {
        assert_eq!(a.tcp.connection(id).unwrap().state(), State::TimeWait);
        assert!(a.tcp.connection(id).unwrap().tcb().ts_enabled);
    }

    // Before the reuse delay: no port.
    let early = t0 + Duration::from_millis(500);
    let early = run(&mut a, &mut b, t1, early, |_, _| false);
    client.lock().unwrap().to_open = 1;
    a.step(early);
    assert_eq!(
        client.lock().unwrap().opened.last(),
        Some(&Err(early_error))
    );
    assert_eq!(a.tcp.counters().tw_reused, 0);
    assert_eq!(a.tcp.connections(), 4);

    // After it: the oldest TIME-WAIT connection gives way.
    let oldest = client.lock().unwrap().time_wait[0];
    let late = t1 + TW_REUSE_DELAY + Duration::from_millis(1);
    let late = run(&mut a, &mut b, early, late, |_, _| false);
    client.lock().unwrap().to_open = 1;
    let (c, s) = (client.clone(), server.clone());
    let t2 = run(
        &mut a,
        &mut b,
        late,
        late + Duration::from_secs(5),
        move |_, _| c.lock().unwrap().connected.len() == 5 && s.lock().unwrap().accepted.len() == 5,
    );
    let r = client.lock().unwrap();
    let new = *r.opened.last().unwrap();
    let new = new.expect("connect after the reuse delay");
    assert!(r.connected.contains(&new));
    // No SYN retransmission was needed: the server took the first SYN.
    assert!(
        t2 < late + Duration::from_millis(100),
        "connected at {t2:?}"
    );
    assert_eq!(a.tcp.counters().tw_reused, 1);
    assert!(a.tcp.connection(oldest).is_none());
    // The final close of the reused connection, delivered once the
    // handlers were back in the shard.
    assert!(
        r.closed.contains(&(oldest, CloseReason::Normal)),
        "{:?}",
        r.closed
    );
    assert_eq!(server.lock().unwrap().accepted.len(), 5);
    assert!(a.tcp.counters().to_kv().contains("tcp_tw_reused=1"));
}

/// One port and a simultaneous close: both ends hold the 4-tuple in
/// TIME-WAIT. After the reuse delay the client opens the same 4-tuple
/// again and the server's TIME-WAIT accepts the SYN (newer timestamp,
/// RFC 6191) at once; the new ISS lies beyond the old sequence space.
#[test]
fn peer_in_time_wait_accepts_the_reused_tuple() {
    let (mut a, mut b) = sides(1);
    let client = handler(&mut a, false, false);
    let server = handler(&mut b, false, true);
    let t0 = Instant::from_millis(1);
    let old = a.tcp.connect(t0, SERVER, 0, None).unwrap();
    let s = server.clone();
    let t1 = run(
        &mut a,
        &mut b,
        t0,
        t0 + Duration::from_secs(1),
        move |a, _| {
            a.tcp.connection(old).map(|c| c.state()) == Some(State::Established)
                && s.lock().unwrap().accepted.len() == 1
        },
    );
    let server_old = server.lock().unwrap().accepted[0];
    // Both close before either FIN arrives: CLOSING, then TIME-WAIT on
    // both ends.
    a.tcp.with_conn(t1, old, |c| c.close()).unwrap();
    b.tcp.with_conn(t1, server_old, |c| c.close()).unwrap();
    let t2 = run(
        &mut a,
        &mut b,
        t1,
        t1 + Duration::from_secs(1),
        move |a, b| {
            a.tcp.connection(old).map(|c| c.state()) == Some(State::TimeWait)
                && b.tcp.connection(server_old).map(|c| c.state()) == Some(State::TimeWait)
        },
    );
    assert_eq!(
        b.tcp.connection(server_old).map(|c| c.state()),
        Some(State::TimeWait)
    );
    let old_snd_max = a.tcp.connection(old).unwrap().tcb().snd_max;
    let old_tuple = a.tcp.connection(old).unwrap().tuple();

    // Before the delay the only port is taken.
    let t3 = run(
        &mut a,
        &mut b,
        t2,
        t2 + Duration::from_millis(900),
        |_, _| false,
    );
    assert_eq!(
        a.tcp.connect(t3, SERVER, 0, None),
        Err(ConnectError::NoPort)
    );

    let t4 = run(
        &mut a,
        &mut b,
        t3,
        t2 + TW_REUSE_DELAY + Duration::from_millis(1),
        |_, _| false,
    );
    let new = a.tcp.connect(t4, SERVER, 0, None).unwrap();
    assert_eq!(a.tcp.counters().tw_reused, 1);
    // The client's old connection is gone, with its final close.
    assert!(client
        .lock()
        .unwrap()
        .closed
        .contains(&(old, CloseReason::Normal)));
    let c = a.tcp.connection(new).unwrap();
    assert_eq!(c.tuple(), old_tuple);
    let iss = c.tcb().iss;
    assert!(iss > old_snd_max + 65535, "ISS {iss:?} vs {old_snd_max:?}");

    let s = server.clone();
    let t5 = run(
        &mut a,
        &mut b,
        t4,
        t4 + Duration::from_secs(5),
        move |a, _| {
            a.tcp.connection(new).map(|c| c.state()) == Some(State::Established)
                && s.lock().unwrap().accepted.len() == 2
        },
    );
    assert_eq!(
        a.tcp.connection(new).map(|c| c.state()),
        Some(State::Established)
    );
    // Taken at the first SYN, not after a retransmission timeout.
    assert!(
        t5 < t4 + Duration::from_millis(100),
        "established at {t5:?}"
    );
    let srv = server.lock().unwrap();
    assert_eq!(srv.accepted.len(), 2);
    // The server's TIME-WAIT connection gave way, with its final close.
    assert!(srv.closed.contains(&(server_old, CloseReason::Normal)));
    assert!(b.tcp.connection(server_old).is_none());
}

/// A client that gave up its handshake (its SYN-ACK lost, the connect
/// aborted) and opens again from the same port with a new ISN: the
/// server's embryo gives way to the newer SYN and the SYN-ACK comes at
/// once, not after the client's SYN retransmission timeout.
#[test]
fn new_syn_from_an_abandoned_handshake_is_answered_at_once() {
    let (mut a, mut b) = sides(1);
    let _client = handler(&mut a, false, false);
    let server = handler(&mut b, false, true);
    let t0 = Instant::from_millis(1);
    let first = a.tcp.connect(t0, SERVER, 0, None).unwrap();
    a.step(t0);
    // The server takes the SYN and answers.
    let t1 = t0 + Duration::from_micros(60);
    b.step(t1);
    assert_eq!(
        b.tcp.listener_counters(PORT).map(|c| c.syns),
        Some(1),
        "the SYN reached the listener"
    );
    // The SYN-ACK is lost.
    let t2 = t1 + Duration::from_micros(60);
    let mut lost = Vec::new();
    a.link.recv_batch(t2, &mut lost, 64);
    assert!(!lost.is_empty(), "the SYN-ACK was on its way");
    for f in lost.drain(..) {
        a.link.release(f);
    }
    // The client gives up and opens again on the same (only) port.
    a.tcp.with_conn(t2, first, |c| c.close()).unwrap();
    a.step(t2);
    assert!(a.tcp.connection(first).is_none());
    let t3 = t2 + Duration::from_millis(5);
    let second = a.tcp.connect(t3, SERVER, 0, None).unwrap();
    let s = server.clone();
    let t4 = run(
        &mut a,
        &mut b,
        t3,
        t3 + Duration::from_secs(5),
        move |a, _| {
            a.tcp.connection(second).map(|c| c.state()) == Some(State::Established)
                && s.lock().unwrap().accepted.len() == 1
        },
    );
    assert_eq!(
        a.tcp.connection(second).map(|c| c.state()),
        Some(State::Established)
    );
    assert!(
        t4 < t3 + Duration::from_millis(100),
        "established at {t4:?}"
    );
    let lc = b.tcp.listener_counters(PORT).unwrap();
    assert_eq!(lc.embryonic_restarted, 1, "{lc:?}");
    assert_eq!(server.lock().unwrap().accepted.len(), 1);
}
