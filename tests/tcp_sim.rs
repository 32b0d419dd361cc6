//! Deterministic simulation: two TCP engines joined by a seeded lossy,
//! reordering, duplicating, corrupting queue with a virtual clock that jumps
//! to the next deadline. Segments cross it as bytes: emitted with the wire
//! layer (checksum over the IPv4 pseudo-header) and parsed back, so a
//! corrupted segment is caught by its checksum. Every run checks byte-exact delivery in both directions and
//! that both ends finish in CLOSED (normally) or TIME-WAIT.
//!
//! A failing seed is printed with the command that replays it:
//! `TCP_SIM_SEED=<seed> cargo test --profile ci --test tcp_sim replay`.
//! `TCP_SIM_SEEDS=<n>` changes how many seeds `many_seeds` runs (default
//! 5000), `TCP_SIM_FIRST=<seed>` where they start (default 0).

use std::net::{Ipv4Addr, SocketAddrV4};
use xdpstack::phy::rng;
use xdpstack::tcp::{
    CloseReason, Config, Connection, Counters, FourTuple, IsnKey, Keepalive, Listener, RecvError,
    State,
};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::tcp::{Packet as TcpPacket, TcpRepr};
use xdpstack::wire::Ipv4Address;

/// The project's seeded generator with the few draws the simulation needs.
struct Rng(rng::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(rng::Rng::new(seed))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.gen_range(0..n)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.chance(p)
    }
    fn flag(&mut self) -> bool {
        self.0.next_u64() & 1 == 1
    }
}

/// A segment in flight, as emitted bytes.
struct Packet {
    at: Instant,
    id: u64,
    to_b: bool,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseOrder {
    ClientFirst,
    ServerFirst,
    Simultaneous,
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    loss: f64,
    dup: f64,
    reorder: f64,
    corrupt: f64,
    delay_ms: u64,
    jitter_ms: u64,
    a_cfg: Config,
    b_cfg: Config,
    a_len: usize,
    b_len: usize,
    close: CloseOrder,
    simultaneous_open: bool,
    /// The listener's SYN queue is full, so the client gets a SYN cookie.
    syn_cookie: bool,
    /// Readers that only read every so often, to close the window.
    slow_reader: bool,
    /// Writers that write `chunk` bytes, then pause (keep-alive, Nagle).
    paced: Option<(usize, u64)>,
    /// Transmit frames per `poll_transmit` call, when limited.
    tx_budget: Option<usize>,
}

/// Bytes one side sends: none, a little, or (one run in ten) a bulk transfer.
fn transfer_len(r: &mut Rng) -> usize {
    if r.chance(0.1) {
        0
    } else if r.chance(0.1) {
        256 * 1024 + r.below(768 * 1024) as usize
    } else {
        r.below(48 * 1024) as usize
    }
}

fn scenario(seed: u64) -> Scenario {
    let mut r = Rng::new(seed ^ 0x7c9_5eed);
    let mut cfg = || {
        let tiny = r.chance(0.2);
        let huge = !tiny && r.chance(0.2);
        let buf = if tiny {
            256 + r.below(4096) as usize
        } else if huge {
            256 * 1024 + r.below(1 << 20) as usize
        } else {
            4096 + r.below(64 * 1024) as usize
        };
        Config {
            mss: 64 + r.below(1400) as u16,
            send_buffer: if tiny {
                buf
            } else {
                8192 + r.below(128 * 1024) as usize
            },
            recv_buffer: buf,
            window_scaling: r.chance(0.8),
            sack: r.chance(0.8),
            timestamps: r.chance(0.8),
            nagle: r.flag(),
            msl: Duration::from_millis(500 + r.below(2000)),
            keepalive: r.chance(0.3).then(|| Keepalive {
                idle: Duration::from_millis(500 + r.below(2000)),
                interval: Duration::from_millis(200 + r.below(1000)),
                probes: 9,
            }),
            max_ooo_ranges: 1 + r.below(32) as usize,
            ..Config::default()
        }
    };
    let a_cfg = cfg();
    let b_cfg = cfg();
    let lossy = r.chance(0.8);
    // Bulk transfers through buffers of a few hundred bytes at 10% loss
    // take hours of virtual time; keep those runs short.
    let smallest = [&a_cfg, &b_cfg]
        .iter()
        .map(|c| c.send_buffer.min(c.recv_buffer))
        .min()
        .unwrap_or(0);
    let cap = if smallest < 4096 {
        64 * 1024
    } else {
        usize::MAX
    };
    Scenario {
        seed,
        loss: if lossy {
            r.below(101) as f64 / 1000.0
        } else {
            0.0
        },
        dup: if lossy {
            r.below(51) as f64 / 1000.0
        } else {
            0.0
        },
        reorder: if lossy {
            r.below(51) as f64 / 1000.0
        } else {
            0.0
        },
        corrupt: if lossy {
            r.below(11) as f64 / 1000.0
        } else {
            0.0
        },
        delay_ms: 1 + r.below(40),
        jitter_ms: r.below(5),
        a_cfg,
        b_cfg,
        a_len: transfer_len(&mut r).min(cap),
        b_len: transfer_len(&mut r).min(cap),
        close: match r.below(3) {
            0 => CloseOrder::ClientFirst,
            1 => CloseOrder::ServerFirst,
            _ => CloseOrder::Simultaneous,
        },
        simultaneous_open: r.chance(0.1),
        syn_cookie: r.chance(0.1),
        slow_reader: r.chance(0.2),
        tx_budget: r.chance(0.2).then(|| 1 + r.below(8) as usize),
        paced: r
            .chance(0.2)
            .then(|| (512 + r.below(8192) as usize, r.below(1500))),
    }
}

/// One end: its connection (once it exists) and the application's progress.
struct End {
    conn: Option<Connection>,
    out: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    eof: bool,
    shut: bool,
    next_read: Instant,
    next_write: Instant,
}

impl End {
    fn new(len: usize, salt: u8) -> End {
        End {
            conn: None,
            out: (0..len)
                .map(|i| {
                    (i as u8)
                        .wrapping_mul(31)
                        .wrapping_add(salt ^ (i >> 8) as u8)
                })
                .collect(),
            written: 0,
            got: Vec::new(),
            eof: false,
            shut: false,
            next_read: Instant::ZERO,
            next_write: Instant::ZERO,
        }
    }

    fn done(&self) -> bool {
        if !self.eof {
            return false;
        }
        match &self.conn {
            Some(c) => {
                c.state() == State::TimeWait
                    || (c.state() == State::Closed && c.close_reason() == Some(CloseReason::Normal))
            }
            None => false,
        }
    }
}

struct Sim {
    sc: Scenario,
    rng: Rng,
    now: Instant,
    net: Vec<Packet>,
    next_id: u64,
    a: End,
    b: End,
    listener: Option<Listener>,
    tuple_a: FourTuple,
    trace: bool,
    /// Segments the checksum caught.
    corrupted: u64,
    /// A connection had more to send than the transmit budget allowed.
    backlogged: bool,
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        Sim::with(scenario(seed), trace)
    }

    fn with(sc: Scenario, trace: bool) -> Sim {
        let seed = sc.seed;
        let tuple_a = FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
        };
        let now = Instant::from_secs(1);
        let key_a = IsnKey::from_parts(seed, 1);
        let key_b = IsnKey::from_parts(seed, 2);
        let mut a = End::new(sc.a_len, 0x11);
        let mut b = End::new(sc.b_len, 0x77);
        a.conn = Some(Connection::connect(sc.a_cfg.clone(), tuple_a, now, &key_a));
        let listener = if sc.simultaneous_open {
            b.conn = Some(Connection::connect(
                sc.b_cfg.clone(),
                tuple_a.reversed(),
                now,
                &key_b,
            ));
            None
        } else {
            let mut l = Listener::new(sc.b_cfg.clone(), tuple_a.remote, key_b, 1, 8);
            if sc.syn_cookie {
                // A half-open connection from elsewhere fills the SYN queue.
                let ghost = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 9), 999);
                let syn = TcpRepr {
                    src_port: 999,
                    dst_port: tuple_a.remote.port(),
                    seq_number: xdpstack::wire::SeqNumber(1),
                    ack_number: xdpstack::wire::SeqNumber(0),
                    flags: xdpstack::wire::TcpFlags(xdpstack::wire::TcpFlags::SYN),
                    window: 1000,
                    urgent_pointer: 0,
                    options: Default::default(),
                    payload: &[],
                };
                l.on_segment(now, ghost, &syn).expect("ghost SYN");
            } else {
                l.set_syn_cookies(false);
            }
            Some(l)
        };
        Sim {
            rng: Rng::new(seed),
            sc,
            now,
            net: Vec::new(),
            next_id: 0,
            a,
            b,
            listener,
            tuple_a,
            trace,
            corrupted: 0,
            backlogged: false,
        }
    }

    /// Source and destination addresses of a segment going A->B or B->A.
    fn addrs(&self, to_b: bool) -> (Ipv4Address, Ipv4Address) {
        let a = Ipv4Address::from(*self.tuple_a.local.ip());
        let b = Ipv4Address::from(*self.tuple_a.remote.ip());
        if to_b {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn push(&mut self, to_b: bool, r: &TcpRepr<'_>) {
        if self.trace {
            println!(
                "{:>8}ms {} seq={} ack={} flags={:02x} win={} len={} opts={:?}",
                self.now.total_millis(),
                if to_b { "A->B" } else { "B->A" },
                r.seq_number.0,
                r.ack_number.0,
                r.flags.0,
                r.window,
                r.payload.len(),
                r.options
            );
        }
        // A connection made from a SYN cookie cannot survive the loss or
        // reordering of the handshake's ACK against the first data (the
        // listener answers a later segment with RST, as Linux does), so
        // faults start once the listener has accepted it.
        let faults = !(self.sc.syn_cookie && self.b.conn.is_none());
        if faults && self.rng.chance(self.sc.loss) {
            return;
        }
        let copies = if faults && self.rng.chance(self.sc.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.sc.delay_ms * 1000;
            if faults {
                delay += self.rng.below(self.sc.jitter_ms * 1000 + 1);
            }
            if faults && self.rng.chance(self.sc.reorder) {
                delay += self.rng.below(3 * self.sc.delay_ms * 1000 + 1000);
            }
            let (src, dst) = self.addrs(to_b);
            let mut bytes = vec![0u8; r.buffer_len()];
            r.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), src, dst);
            if faults && self.rng.chance(self.sc.corrupt) {
                let i = self.rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << self.rng.below(8);
            }
            self.net.push(Packet {
                at: self.now + Duration::from_micros(delay),
                id: self.next_id,
                to_b,
                bytes,
            });
            self.next_id += 1;
        }
    }

    fn app(&mut self, a_side: bool) -> Result<(), String> {
        let now = self.now;
        let order = self.sc.close;
        let slow = self.sc.slow_reader;
        let paced = self.sc.paced;
        let (me, other_eof) = if a_side {
            (&mut self.a, self.b.eof)
        } else {
            (&mut self.b, self.a.eof)
        };
        let _ = other_eof;
        let Some(c) = me.conn.as_mut() else {
            return Ok(());
        };
        if c.state() == State::Closed && c.close_reason() != Some(CloseReason::Normal) {
            return Err(format!(
                "{} closed with {:?}",
                if a_side { "A" } else { "B" },
                c.close_reason()
            ));
        }
        if me.written < me.out.len() && c.can_send() && now >= me.next_write {
            let end = match paced {
                Some((chunk, _)) => (me.written + chunk).min(me.out.len()),
                None => me.out.len(),
            };
            let n = c
                .send(&me.out[me.written..end])
                .map_err(|e| format!("send: {e}"))?;
            me.written += n;
            if let (Some((_, pause)), true) = (paced, n > 0) {
                me.next_write = now + Duration::from_millis(pause);
            }
        }
        if !slow || now >= me.next_read {
            let mut buf = [0u8; 4096];
            loop {
                match c.recv(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        me.got.extend_from_slice(&buf[..n]);
                        if slow {
                            me.next_read = now + Duration::from_millis(200);
                            break;
                        }
                    }
                    Err(RecvError::Finished) => {
                        me.eof = true;
                        break;
                    }
                    Err(e) => return Err(format!("recv: {e}")),
                }
            }
        }
        let all_written = me.written == me.out.len();
        let may_close = match order {
            CloseOrder::Simultaneous => true,
            CloseOrder::ClientFirst => a_side || me.eof,
            CloseOrder::ServerFirst => !a_side || me.eof,
        };
        let established = !matches!(c.state(), State::SynSent | State::SynReceived);
        if all_written && may_close && !me.shut && established {
            c.shutdown_write(now);
            me.shut = true;
        }
        Ok(())
    }

    fn transmit(&mut self) {
        let now = self.now;
        let mut out: Vec<(bool, TcpRepr<'static>, Vec<u8>)> = Vec::new();
        // A worker may run out of transmit frames: at most `budget`
        // segments per call; the rest must be offered again next time.
        let budget = self.sc.tx_budget.unwrap_or(usize::MAX);
        let mut refused = false;
        fn grab<'a>(
            out: &'a mut Vec<(bool, TcpRepr<'static>, Vec<u8>)>,
            to_b: bool,
            budget: usize,
            refused: &'a mut bool,
        ) -> impl FnMut(&TcpRepr<'_>) -> bool + 'a {
            let mut left = budget;
            move |r: &TcpRepr<'_>| {
                if left == 0 {
                    *refused = true;
                    return false;
                }
                left -= 1;
                out.push((to_b, TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
                true
            }
        }
        if let Some(c) = self.a.conn.as_mut() {
            c.poll_transmit(now, grab(&mut out, true, budget, &mut refused));
        }
        if let Some(c) = self.b.conn.as_mut() {
            c.poll_transmit(now, grab(&mut out, false, budget, &mut refused));
        }
        self.backlogged = refused;
        if let Some(l) = self.listener.as_mut() {
            let a_addr = self.tuple_a.local;
            l.poll_transmit(now, |to, r| {
                if to == a_addr {
                    out.push((false, TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
                }
                true
            });
            if self.b.conn.is_none() {
                self.b.conn = l.accept();
            }
        }
        for (to_b, repr, payload) in out {
            self.push(
                to_b,
                &TcpRepr {
                    payload: &payload,
                    ..repr
                },
            );
        }
    }

    /// Deliver every packet due now; returns how many.
    fn deliver(&mut self) -> usize {
        let now = self.now;
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.id));
        let n = due.len();
        for p in due {
            let (src, dst) = self.addrs(p.to_b);
            let Ok(seg) = TcpPacket::new_checked(&p.bytes[..])
                .and_then(|view| TcpRepr::parse(&view, src, dst))
            else {
                self.corrupted += 1;
                if self.trace {
                    println!("{:>8}ms corrupted segment dropped", now.total_millis());
                }
                continue;
            };
            if self.trace {
                println!(
                    "{:>8}ms deliver {} seq={} ack={} len={}",
                    now.total_millis(),
                    if p.to_b { "to B" } else { "to A" },
                    seg.seq_number.0,
                    seg.ack_number.0,
                    seg.payload.len()
                );
            }
            if p.to_b {
                if let Some(c) = self.b.conn.as_mut() {
                    let _ = c.on_segment(now, &seg);
                } else if let Some(l) = self.listener.as_mut() {
                    let _ = l.on_segment(now, self.tuple_a.local, &seg);
                    self.b.conn = l.accept();
                }
            } else if let Some(c) = self.a.conn.as_mut() {
                let _ = c.on_segment(now, &seg);
            }
        }
        n
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.net.iter().map(|p| p.at).min());
        consider(self.a.conn.as_ref().and_then(|c| c.poll_timeout()));
        consider(self.b.conn.as_ref().and_then(|c| c.poll_timeout()));
        consider(self.listener.as_ref().and_then(|l| l.poll_timeout()));
        for e in [&self.a, &self.b] {
            if e.next_read > self.now {
                consider(Some(e.next_read));
            }
            if e.next_write > self.now && e.written < e.out.len() {
                consider(Some(e.next_write));
            }
        }
        t
    }

    /// Invariants that hold after every step.
    fn invariants(&self) -> Result<(), String> {
        for (name, e, cfg) in [
            ("A", &self.a, &self.sc.a_cfg),
            ("B", &self.b, &self.sc.b_cfg),
        ] {
            let Some(c) = e.conn.as_ref() else { continue };
            let t = c.tcb();
            if t.snd_una > t.snd_nxt || t.snd_nxt > t.snd_max {
                return Err(self.stuck(&format!("{name}: SND.UNA <= SND.NXT <= SND.MAX broken")));
            }
            if c.send_queue() > cfg.send_buffer || c.recv_queue() > cfg.recv_buffer {
                return Err(self.stuck(&format!("{name}: buffer over capacity")));
            }
        }
        Ok(())
    }

    fn counters(&self) -> [Counters; 2] {
        let get = |e: &End| e.conn.as_ref().map(|c| *c.counters()).unwrap_or_default();
        [get(&self.a), get(&self.b)]
    }

    fn run(&mut self) -> Result<([Counters; 2], u64, u64), String> {
        let limit = Instant::from_secs(3600);
        for _ in 0..2_000_000 {
            self.app(true)?;
            self.app(false)?;
            self.transmit();
            self.invariants()?;
            if self.deliver() > 0 || self.backlogged {
                continue;
            }
            if self.a.done() && self.b.done() {
                self.check()?;
                let cookies = self
                    .listener
                    .as_ref()
                    .map_or(0, |l| l.counters().cookies_accepted);
                return Ok((self.counters(), self.corrupted, cookies));
            }
            match self.next_deadline() {
                Some(t) if t > limit => return Err(self.stuck("virtual time limit")),
                Some(t) => self.now = self.now.max(t),
                None => return Err(self.stuck("no deadline left")),
            }
        }
        Err(self.stuck("step limit"))
    }

    fn stuck(&self, why: &str) -> String {
        let st = |e: &End| {
            e.conn
                .as_ref()
                .map(|c| {
                    format!(
                        "{:?} reason={:?} tcb={:?} sendq={} recvq={}",
                        c.state(),
                        c.close_reason(),
                        c.tcb(),
                        c.send_queue(),
                        c.recv_queue()
                    )
                })
                .unwrap_or_else(|| "none".into())
        };
        format!(
            "seed {}: {why} at {} ms: A {} wrote {}/{} got {}/{} eof={}; B {} wrote {}/{} got {}/{} eof={}",
            self.sc.seed,
            self.now.total_millis(),
            st(&self.a),
            self.a.written,
            self.a.out.len(),
            self.a.got.len(),
            self.b.out.len(),
            self.a.eof,
            st(&self.b),
            self.b.written,
            self.b.out.len(),
            self.b.got.len(),
            self.a.out.len(),
            self.b.eof
        )
    }

    fn check(&self) -> Result<(), String> {
        if self.a.got != self.b.out {
            return Err(format!(
                "A received {} bytes, B sent {}: mismatch",
                self.a.got.len(),
                self.b.out.len()
            ));
        }
        if self.b.got != self.a.out {
            return Err(format!(
                "B received {} bytes, A sent {}: mismatch",
                self.b.got.len(),
                self.a.out.len()
            ));
        }
        if !self.a.eof || !self.b.eof {
            return Err("FIN not seen by both".into());
        }
        Ok(())
    }
}

fn run_seed(seed: u64, trace: bool) -> Result<([Counters; 2], u64, u64), String> {
    match std::panic::catch_unwind(|| Sim::new(seed, trace).run()) {
        Ok(r) => r,
        Err(e) => Err(format!(
            "panic: {}",
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn replay_hint(seed: u64) -> String {
    format!(
        "replay: TCP_SIM_SEED={seed} cargo test --profile ci --test tcp_sim replay -- --nocapture"
    )
}

#[test]
fn many_seeds() {
    let n: u64 = std::env::var("TCP_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let first: u64 = std::env::var("TCP_SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut failures = Vec::new();
    let mut total = Counters::default();
    let mut corrupted = 0;
    let mut cookies = 0;
    for seed in first..first + n {
        match run_seed(seed, false) {
            Ok((cs, bad, cookie)) => {
                corrupted += bad;
                cookies += cookie;
                for c in cs {
                    total.segments_out += c.segments_out;
                    total.retransmits += c.retransmits;
                    total.fast_retransmits += c.fast_retransmits;
                    total.timeouts += c.timeouts;
                    total.zero_window_probes += c.zero_window_probes;
                    total.keepalive_probes += c.keepalive_probes;
                    total.challenge_acks += c.challenge_acks;
                    for (t, d) in total.drops.iter_mut().zip(c.drops) {
                        *t += d;
                    }
                }
            }
            Err(e) => failures.push((seed, e)),
        }
    }
    println!(
        "{n} seeds: {corrupted} corrupted segments caught, {cookies} SYN-cookie connections; {total:?}"
    );
    if let Some((seed, _)) = failures.first() {
        for (s, e) in failures.iter().take(10) {
            eprintln!("seed {s}: {e}\n  {:?}", scenario(*s));
        }
        panic!(
            "{} of {n} seeds failed; {}",
            failures.len(),
            replay_hint(*seed)
        );
    }
    // The faults must really have been exercised.
    if n >= 500 {
        assert!(
            total.retransmits > 0 && total.timeouts > 0,
            "no retransmissions"
        );
        assert!(total.fast_retransmits > 0, "no fast retransmit");
        assert!(total.zero_window_probes > 0, "no zero-window probe");
        assert!(total.keepalive_probes > 0, "no keep-alive probe");
        assert!(corrupted > 0, "no corruption");
        assert!(cookies > 0, "no SYN cookie");
    }
}

#[test]
fn replay() {
    let seed = std::env::var("TCP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let trace = std::env::var("TCP_SIM_SEED").is_ok();
    if trace {
        println!("{:?}", scenario(seed));
    }
    if let Err(e) = run_seed(seed, trace) {
        panic!("seed {seed}: {e}\n{}", replay_hint(seed));
    }
}

// ---- named scenarios (each also occurs among the random seeds) ----

fn base(seed: u64) -> Scenario {
    Scenario {
        seed,
        loss: 0.0,
        dup: 0.0,
        reorder: 0.0,
        corrupt: 0.0,
        delay_ms: 10,
        jitter_ms: 0,
        a_cfg: Config::default(),
        b_cfg: Config::default(),
        a_len: 100_000,
        b_len: 100_000,
        close: CloseOrder::ClientFirst,
        simultaneous_open: false,
        syn_cookie: false,
        slow_reader: false,
        paced: None,
        tx_budget: None,
    }
}

fn run_named(sc: Scenario) -> [Counters; 2] {
    let name = format!("{sc:?}");
    match Sim::with(sc, false).run() {
        Ok((c, _, _)) => c,
        Err(e) => panic!("{e}\n{name}"),
    }
}

#[test]
fn simultaneous_open_and_simultaneous_close() {
    for seed in 0..50 {
        run_named(Scenario {
            simultaneous_open: true,
            close: CloseOrder::Simultaneous,
            loss: 0.05,
            reorder: 0.05,
            dup: 0.05,
            ..base(seed)
        });
    }
}

#[test]
fn both_close_orders_under_loss() {
    for seed in 0..50 {
        for close in [CloseOrder::ClientFirst, CloseOrder::ServerFirst] {
            run_named(Scenario {
                close,
                loss: 0.1,
                ..base(seed)
            });
        }
    }
}

#[test]
fn tiny_windows() {
    let tiny = Config {
        mss: 100,
        send_buffer: 300,
        recv_buffer: 300,
        ..Config::default()
    };
    for seed in 0..20 {
        let c = run_named(Scenario {
            a_cfg: tiny.clone(),
            b_cfg: tiny.clone(),
            a_len: 20_000,
            b_len: 20_000,
            loss: 0.05,
            slow_reader: true,
            ..base(seed)
        });
        assert!(c[0].segments_out > 200, "tiny windows mean many segments");
    }
}

#[test]
fn huge_window_bulk_with_loss() {
    let huge = Config {
        send_buffer: 4 << 20,
        recv_buffer: 4 << 20,
        ..Config::default()
    };
    for seed in 0..5 {
        let c = run_named(Scenario {
            a_cfg: huge.clone(),
            b_cfg: huge.clone(),
            a_len: 4 << 20,
            b_len: 1 << 20,
            loss: 0.01,
            reorder: 0.02,
            ..base(seed)
        });
        assert!(
            c[0].fast_retransmits > 0,
            "loss in a big window is repaired by fast retransmit"
        );
    }
}
