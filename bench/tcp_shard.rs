//! Connection setup and teardown through two shard TCP halves joined by the
//! in-memory link: connect, a 64-byte request echoed back, then the client
//! aborts (RST), as the kernel `bench tcp-crr` client does. Everything a
//! worker runs per connection is in the loop: SYN handling, the ISN, the
//! listener, the connection table and slab, the timer wheel, buffers,
//! frames and checksums. No loss, no delay.
//!
//! Before measuring, the bench prints the heap allocations per connection
//! on each side (a counting global allocator; the server side is the one
//! a worker serving connect-request-close pays).
//!
//! Run: `cargo bench --bench tcp_shard -- --warm-up-time 1 --measurement-time 2`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdpstack::api::tcp::{ConnId, TcpConn, TcpHandler};
use xdpstack::apps::TcpEcho;
use xdpstack::phy::memory::{pair, MemoryConfig, MemoryLink};
use xdpstack::ports::{PortConfig, PortRange};
use xdpstack::tcp::{CloseReason, SendHalf};
use xdpstack::time::{Duration, Instant};

/// Counts allocations made while the current thread's flag is set.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// Safety: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // Safety: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // Safety: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "../tests/support/tcp_side.rs"]
mod tcp_side;

const C_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const S_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const C_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const S_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PORT: u16 = 7;
const REQUEST: [u8; 64] = [0x5a; 64];
/// Connections open at once (as the veth bench's 16 client slots).
const INFLIGHT: usize = 16;

type Side = tcp_side::Side<MemoryLink>;

fn ports() -> PortConfig {
    PortConfig {
        ephemeral: PortRange::new(40000, 49999).unwrap(),
        shards: 1,
        key: [7, 7],
    }
}

/// Sends the request on connect; aborts once the echo is back.
struct Client {
    got: Vec<usize>,
    closed: Arc<AtomicU64>,
}

impl TcpHandler for Client {
    fn on_connect(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let i = conn.id().slot as usize;
        if self.got.len() <= i {
            self.got.resize(i + 1, 0);
        }
        self.got[i] = 0;
        assert_eq!(conn.send(&REQUEST), Ok(REQUEST.len()));
    }

    fn on_data(&mut self, _now: Instant, id: ConnId, data: &[u8], _tx: &mut SendHalf<'_>) -> usize {
        self.got[id.slot as usize] += data.len();
        data.len()
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        if self.got.get(conn.id().slot as usize) == Some(&REQUEST.len()) {
            conn.abort();
        }
    }

    fn on_close(&mut self, _now: Instant, _id: ConnId, _reason: Option<CloseReason>) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Crr {
    client: Side,
    server: Side,
    handler: usize,
    closed: Arc<AtomicU64>,
    open: usize,
    now: Instant,
}

impl Crr {
    fn new() -> Crr {
        let (c, s) = pair(MemoryConfig::default());
        let mut client = Side::new(C_IP, C_MAC, S_MAC, c, ports(), 0);
        let mut server = Side::new(S_IP, S_MAC, C_MAC, s, ports(), 0);
        let echo = server.tcp.add_handler(Box::<TcpEcho>::default());
        assert!(server.tcp.listen(PORT, echo));
        let closed = Arc::new(AtomicU64::new(0));
        let handler = client.tcp.add_handler(Box::new(Client {
            got: Vec::new(),
            closed: closed.clone(),
        }));
        Crr {
            client,
            server,
            handler,
            closed,
            open: 0,
            now: Instant::from_millis(1),
        }
    }

    /// Runs until `n` more connections have completed; the server side's
    /// steps run with allocation counting on when `count` is set.
    fn run(&mut self, n: u64, count: bool) {
        let target = self.closed.load(Ordering::Relaxed) + n;
        let mut started = 0u64;
        loop {
            let done = self.closed.load(Ordering::Relaxed);
            if done >= target {
                break;
            }
            while self.in_flight() < INFLIGHT && started < n {
                self.client
                    .tcp
                    .connect(self.now, SocketAddrV4::new(S_IP, PORT), self.handler, None)
                    .expect("connect");
                self.open += 1;
                started += 1;
            }
            self.client.step(self.now);
            COUNTING.with(|c| c.set(count));
            self.server.step(self.now);
            COUNTING.with(|c| c.set(false));
            self.now += Duration::from_micros(1);
        }
    }

    fn in_flight(&self) -> usize {
        self.open - self.closed.load(Ordering::Relaxed) as usize
    }
}

fn bench(c: &mut Criterion) {
    // Allocation count, after a warm-up that sizes every reusable buffer.
    let mut crr = Crr::new();
    crr.run(2000, false);
    ALLOCS.store(0, Ordering::Relaxed);
    const N: u64 = 10_000;
    crr.run(N, true);
    println!(
        "tcp_shard/crr: server heap allocations per connection: {:.2}",
        ALLOCS.load(Ordering::Relaxed) as f64 / N as f64
    );
    assert_eq!(crr.server.tcp.connections(), 0, "server kept connections");

    let mut g = c.benchmark_group("tcp_shard");
    g.throughput(Throughput::Elements(1));
    let mut crr = Crr::new();
    g.bench_function("crr_64B_16_inflight", |b| {
        b.iter(|| {
            crr.run(1, false);
            black_box(&crr.now);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
