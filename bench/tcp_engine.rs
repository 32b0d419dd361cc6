//! Segments per second through two TCP engines joined in memory: the data
//! and ACK path of a bulk transfer, with no loss.
//!
//! One iteration moves `SEGMENTS` full data segments from A to B: A's
//! `send` + `poll_transmit` (each payload is copied once into a reused frame
//! buffer, as the worker copies it into a UMEM frame), B's `on_segment` +
//! read (`peek` + `consume` of its receive buffer, or in the `zero_copy_read`
//! variant straight from the frames) + `poll_transmit` (its ACKs), and A's
//! `on_segment` for each ACK. Throughput is reported in data segments.
//! Variants: 1448-byte payloads with timestamps and SACK negotiated, and
//! 64-byte payloads without Nagle (the request/response shape).
//!
//! Run: `cargo bench --bench tcp_engine -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdpstack::tcp::{Config, Connection, Deliver, FourTuple, IsnKey, SendHalf, State};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::tcp::TcpRepr;

const SEGMENTS: usize = 256;

/// Segments in transit; payloads copied into reused frames.
struct Wire {
    reprs: Vec<(TcpRepr<'static>, usize)>,
    frames: Vec<Vec<u8>>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            reprs: Vec::with_capacity(1024),
            frames: (0..1024).map(|_| vec![0u8; 2048]).collect(),
        }
    }

    /// Everything `c` sends now; returns the number of data segments.
    fn take(&mut self, c: &mut Connection, now: Instant) -> usize {
        self.reprs.clear();
        let (reprs, frames) = (&mut self.reprs, &mut self.frames);
        let mut data = 0;
        c.poll_transmit(now, |r| {
            let i = reprs.len();
            if i >= frames.len() {
                return false;
            }
            frames[i][..r.payload.len()].copy_from_slice(r.payload);
            reprs.push((TcpRepr { payload: &[], ..*r }, r.payload.len()));
            data += !r.payload.is_empty() as usize;
            true
        });
        data
    }

    /// Hands the segments to `c`; with `direct`, its application takes
    /// in-order text straight from the frames (zero-copy delivery).
    fn give(&self, c: &mut Connection, now: Instant, direct: bool) {
        let mut read = |d: &[u8], _: &mut SendHalf<'_>| black_box(d).len();
        for ((r, len), f) in self.reprs.iter().zip(&self.frames) {
            let seg = TcpRepr {
                payload: &f[..*len],
                ..*r
            };
            let deliver: Option<&mut Deliver<'_>> = if direct { Some(&mut read) } else { None };
            let _ = black_box(c.on_segment_deliver(now, &seg, deliver));
        }
    }
}

struct Pair {
    a: Connection,
    b: Connection,
    now: Instant,
    wire: Wire,
    data: Vec<u8>,
    /// B reads through zero-copy delivery instead of its receive buffer.
    direct: bool,
}

impl Pair {
    fn new(cfg: Config, chunk: usize, direct: bool) -> Pair {
        let t = FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
        };
        let key = IsnKey::from_parts(7, 7);
        let now = Instant::from_secs(1);
        let mut a = Connection::connect(cfg.clone(), t, now, &key);
        let mut syn = None;
        a.poll_transmit(now, |r| {
            syn = Some(TcpRepr { payload: &[], ..*r });
            true
        });
        let b = Connection::accept_syn(cfg, t.reversed(), now, &key, &syn.unwrap());
        let mut p = Pair {
            a,
            b,
            now,
            wire: Wire::new(),
            data: vec![0x5a; chunk],
            direct,
        };
        for _ in 0..4 {
            p.round();
        }
        assert_eq!(p.a.state(), State::Established);
        assert_eq!(p.b.state(), State::Established);
        p
    }

    /// One round: A writes and sends, B reads and ACKs, A takes the ACKs.
    /// Returns the data segments moved.
    fn round(&mut self) -> usize {
        self.now += Duration::from_micros(20);
        let now = self.now;
        let mut n = 0;
        if self.data.len() >= 1024 {
            while self.a.send(&self.data).unwrap_or(0) > 0 {}
            n = self.wire.take(&mut self.a, now);
            self.wire.give(&mut self.b, now, self.direct);
        } else {
            // Small writes, each sent at once (no Nagle): one segment each.
            for _ in 0..32 {
                if self.a.send(&self.data).unwrap_or(0) == 0 {
                    break;
                }
                n += self.wire.take(&mut self.a, now);
                self.wire.give(&mut self.b, now, self.direct);
            }
        }
        while let Ok((x, y)) = self.b.peek() {
            let len = x.len() + y.len();
            if len == 0 {
                break;
            }
            black_box((x, y));
            self.b.consume(len);
        }
        self.wire.take(&mut self.b, now);
        self.wire.give(&mut self.a, now, false);
        n
    }

    fn move_segments(&mut self, k: usize) {
        let mut moved = 0;
        let mut idle = 0;
        while moved < k {
            let n = self.round();
            moved += n;
            idle = if n == 0 { idle + 1 } else { 0 };
            // The delayed ACK holds back the last ACK; let it fire.
            if idle > 0 {
                self.now += Duration::from_millis(50);
            }
            assert!(idle < 100, "transfer stalled");
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp_engine");
    g.throughput(Throughput::Elements(SEGMENTS as u64));

    let bulk = Config {
        mss: 1460,
        send_buffer: 1 << 20,
        recv_buffer: 1 << 20,
        ..Config::default()
    };
    let mut p = Pair::new(bulk.clone(), 64 * 1024, false);
    assert!(p.a.tcb().ts_enabled && p.a.tcb().sack_enabled);
    g.bench_function("data_ack_1448B_ts_sack", |b| {
        b.iter(|| p.move_segments(SEGMENTS))
    });
    let mut p = Pair::new(bulk, 64 * 1024, true);
    g.bench_function("data_ack_1448B_ts_sack_zero_copy_read", |b| {
        b.iter(|| p.move_segments(SEGMENTS))
    });

    let small = Config {
        nagle: false,
        send_buffer: 64 * 1024,
        recv_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(small, 64, false);
    g.bench_function("data_ack_64B_nodelay", |b| {
        b.iter(|| p.move_segments(SEGMENTS))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
