//! Workers and the stack that starts them.
//!
//! One worker thread per interface queue, pinned with core_affinity, owns
//! one AF_XDP socket ([`XdpLink`]) and one [`Shard`], and runs to
//! completion: receive a batch, let the shard parse, demultiplex and call
//! the handlers, flush the answers (checksums in one batched pass, one
//! kick), then commands from other threads, timers and handler polls. The
//! loop reads the clock once per iteration; nothing on the per-packet path
//! takes a lock: other threads talk to a worker through a crossbeam channel
//! ([`Command`]) drained once per iteration.
//!
//! [`Stack::start`] attaches the steering program, picks the addressing mode
//! (shared: the interface's address, only bound ports steered; dedicated:
//! an address the kernel does not have, ARP/ICMP/all ports of it steered),
//! the ephemeral range (disjoint from the kernel's), opens the sockets and
//! spawns the workers. A [`StackHandle`] is the control path (binding ports
//! for thread-side sockets); the port service behind it is locked only
//! there.
//!
//! Queues: with several workers, a TCP segment that reaches a worker
//! without its connection is forwarded to the others (a copy through the
//! command channel). On a NIC with Toeplitz RSS the active opens' ports are
//! chosen so their replies hash to the opening worker's queue
//! ([`crate::rss`], [`crate::ports::ReplySteering`]); on veth the receive
//! queue is the peer kernel's transmit queue (XPS by its sending CPU, else
//! the socket's random txhash), which no port choice can steer, so
//! forwarding is what delivers there.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};

use crate::api::tcp::{TcpCommand, TcpHandler};
use crate::api::udp::{RecvDatagram, UdpHandler};
use crate::icmp::AddressMode;
use crate::neighbor::{read_kernel_neighbors, read_kernel_routes, Mac};
use crate::phy::memory::MemoryLink;
use crate::phy::Link;
use crate::ports::{self, FlowKey, PortConfig, PortService, Protocol, SharedPorts};
use crate::shard::{Binding, Shard, ShardConfig, ShardStats};
use crate::shard_tcp::{ShardTcp, TcpShardConfig};
use crate::tcp::IsnKey;
use crate::time::{Duration, Instant};
use crate::udp::UdpError;
use crate::xdp::{
    AttachMode, AttachedMode, PollMode, Proto, SteerCounters, SteerMaps, Steering, XdpLink,
    XsConfig, XskConfig, XskStats,
};

/// Frames received per batch: as many as the link lands at once. A bulk
/// stream then echoes more per iteration, so more frames go out per kick
/// and the per-iteration costs (clock, command channel, timers, flush)
/// spread over more segments; a request/response load never fills it.
pub const RX_BATCH: usize = 256;

/// Messages from other threads to a worker.
pub enum Command {
    /// Bind `port` for a thread-side socket; the answer goes to `reply`.
    UdpBindChannel {
        port: u16,
        deliver: Sender<RecvDatagram>,
        reply: Sender<Result<(), UdpError>>,
    },
    UdpClose {
        port: u16,
    },
    UdpSend {
        port: u16,
        dst: SocketAddrV4,
        data: Vec<u8>,
    },
    /// A thread-side TCP handle's request ([`crate::api::tcp`]).
    Tcp(TcpCommand),
    /// A TCP frame another worker had no connection for, or an ARP reply
    /// it received (dedicated mode: the asking shard may be another).
    TcpForward(Vec<u8>),
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::UdpBindChannel { port, .. } => write!(f, "UdpBindChannel({port})"),
            Command::UdpClose { port } => write!(f, "UdpClose({port})"),
            Command::UdpSend { port, dst, data } => {
                write!(f, "UdpSend({port} -> {dst}, {} bytes)", data.len())
            }
            Command::Tcp(c) => write!(f, "Tcp({c:?})"),
            Command::TcpForward(d) => write!(f, "TcpForward({} bytes)", d.len()),
        }
    }
}

/// What a worker's link adds to [`Link`] for the loop: waiting when idle
/// (wakeup mode) and its counters.
pub trait WorkerLink: Link {
    /// Wait up to `timeout_ms` for frames; true when some may be ready.
    fn wait_rx(&mut self, _timeout_ms: i32) -> bool {
        true
    }
    /// The link's counters as `key=value` pairs.
    fn stats_kv(&self) -> String {
        String::new()
    }
}

impl WorkerLink for XdpLink {
    fn wait_rx(&mut self, timeout_ms: i32) -> bool {
        self.wait(timeout_ms)
    }

    fn stats_kv(&self) -> String {
        xsk_kv(&self.stats())
    }
}

impl WorkerLink for MemoryLink {}

fn xsk_kv(s: &XskStats) -> String {
    format!(
        "xsk_rx={} xsk_tx={} xsk_tx_ring_full={} xsk_kicks={} xsk_kernel_rx_dropped={} \
         xsk_kernel_fill_empty={} xsk_kernel_tx_invalid={}",
        s.rx_frames,
        s.tx_frames,
        s.tx_ring_full,
        s.kicks,
        s.kernel_rx_dropped,
        s.kernel_fill_empty,
        s.kernel_tx_invalid
    )
}

/// One worker's counters.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub worker: usize,
    pub queue: u32,
    pub core: Option<usize>,
    pub shard: ShardStats,
    pub link: String,
}

impl fmt::Display for WorkerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core.map_or("-".to_string(), |c| c.to_string());
        write!(
            f,
            "worker {} queue {} core {}: {} {}",
            self.worker,
            self.queue,
            core,
            self.shard.to_kv(),
            self.link
        )
    }
}

/// Settings of one worker loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub worker: usize,
    pub queue: u32,
    pub core: Option<usize>,
    pub poll: PollMode,
    /// Send a report on `stats` this often (None: only at the end).
    pub stats_every: Option<Duration>,
    /// Shared mode: the interface whose kernel ARP table seeds the cache.
    pub kernel_neighbors: Option<String>,
}

/// The run-to-completion loop of one worker, until `stop` is set. Returns
/// the final report.
pub fn run_loop<L: WorkerLink>(
    cfg: &LoopConfig,
    link: &mut L,
    shard: &mut Shard<L::Frame>,
    commands: &Receiver<Command>,
    stop: &AtomicBool,
    stats: Option<&Sender<WorkerReport>>,
) -> WorkerReport {
    let mut rx: Vec<L::Frame> = Vec::with_capacity(RX_BATCH);
    let mut next_stats = cfg.stats_every.map(|d| Instant::now_monotonic() + d);
    let mut next_slow = Instant::now_monotonic();
    let mut idle_spins = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // Wakeup mode sleeps in poll() after an idle iteration, at most
        // 10 ms, so commands and timers are still served within that.
        if cfg.poll == PollMode::Wakeup && idle_spins > 0 {
            link.wait_rx(10);
        }
        let now = Instant::now_monotonic();
        let n = link.recv_batch(now, &mut rx, RX_BATCH);
        if n > 0 {
            shard.process(now, link, &mut rx);
            idle_spins = 0;
        } else {
            idle_spins = idle_spins.saturating_add(1);
        }
        // `is_empty` is two loads; `try_recv` on an empty channel costs
        // more, and this runs on every spin of a busy-polling worker.
        if !commands.is_empty() {
            while let Ok(cmd) = commands.try_recv() {
                apply(now, link, shard, cmd);
            }
        }
        shard.poll(now, link);
        shard.flush(now, link);
        if now >= next_slow {
            // Slow path, a few times a second: seed the neighbour cache from
            // the kernel (shared mode has no ARP of its own).
            next_slow = now + Duration::from_millis(200);
            if let Some(iface) = &cfg.kernel_neighbors {
                if let Ok(list) = read_kernel_neighbors(iface) {
                    for (ip, mac) in list {
                        shard.learn_neighbor(ip, mac, now);
                    }
                }
            }
        }
        if let (Some(t), Some(tx)) = (next_stats, stats) {
            if now >= t {
                let _ = tx.send(report(cfg, link, shard));
                next_stats = Some(now + cfg.stats_every.unwrap_or(Duration::from_secs(1)));
            }
        }
    }
    let now = Instant::now_monotonic();
    shard.flush(now, link);
    report(cfg, link, shard)
}

/// [`run_loop`] on the calling thread, without commands, for a load
/// generator: its handler raises `done` when the run is over, and a watcher
/// thread raises it as well when the caller's `stop` is set.
pub fn run_until_done<L: WorkerLink>(
    cfg: &LoopConfig,
    link: &mut L,
    shard: &mut Shard<L::Frame>,
    done: &AtomicBool,
    stop: &AtomicBool,
) -> WorkerReport {
    let (_tx, commands) = crossbeam::channel::unbounded();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    done.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        run_loop(cfg, link, shard, &commands, done, None)
    })
}

fn report<L: WorkerLink>(cfg: &LoopConfig, link: &L, shard: &Shard<L::Frame>) -> WorkerReport {
    WorkerReport {
        worker: cfg.worker,
        queue: cfg.queue,
        core: cfg.core,
        shard: shard.stats(),
        link: link.stats_kv(),
    }
}

fn apply<L: Link>(now: Instant, link: &mut L, shard: &mut Shard<L::Frame>, cmd: Command) {
    match cmd {
        Command::UdpBindChannel {
            port,
            deliver,
            reply,
        } => {
            let r = shard.bind_udp(port, Binding::Channel(deliver));
            let _ = reply.send(r);
        }
        Command::UdpClose { port } => {
            shard.close_udp(port);
        }
        Command::UdpSend { port, dst, data } => {
            // Errors a thread could not foresee (no route, no frame) drop
            // the datagram, as a kernel socket's would on a full queue.
            let _ = shard.send_udp(now, link, port, dst, &data);
        }
        Command::Tcp(c) => shard.tcp_mut().command(now, c),
        Command::TcpForward(frame) => shard.process_forwarded_tcp(now, &frame),
    }
}

/// Opens the socket of one queue, retrying for a while on EBUSY: the
/// kernel releases the socket of a process that just exited (a restart, or
/// the previous server of a benchmark) asynchronously.
pub fn open_link(cfg: &XskConfig, maps: &SteerMaps) -> Result<XdpLink, crate::xdp::XskError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match XdpLink::open(cfg, Some(maps)) {
            Err(crate::xdp::XskError::Socket(libc::EBUSY))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// Errors starting the stack.
#[derive(Debug)]
pub enum StackError {
    Load(crate::xdp::LoadError),
    Xsk(crate::xdp::XskError),
    Map(crate::xdp::maps::MapError),
    Port(ports::PortError),
    Udp(UdpError),
    /// The interface's address, MAC or MTU could not be read.
    Interface(String),
    Io(io::Error),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Load(e) => write!(f, "steering program: {e}"),
            StackError::Xsk(e) => write!(f, "AF_XDP socket: {e}"),
            StackError::Map(e) => write!(f, "BPF map: {e}"),
            StackError::Port(e) => write!(f, "port: {e}"),
            StackError::Udp(e) => write!(f, "udp: {e}"),
            StackError::Interface(s) => write!(f, "interface: {s}"),
            StackError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StackError {}

impl From<StackError> for io::Error {
    fn from(e: StackError) -> io::Error {
        match e {
            StackError::Io(e) => e,
            StackError::Port(p) => p.into(),
            StackError::Udp(u) => u.into(),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Makes one handler per worker.
pub type HandlerFactory = Arc<dyn Fn() -> Box<dyn UdpHandler> + Send + Sync>;

/// Makes one TCP handler per worker.
pub type TcpHandlerFactory = Arc<dyn Fn() -> Box<dyn TcpHandler> + Send + Sync>;

/// Configuration of [`Stack::start`].
#[derive(Clone)]
pub struct StackConfig {
    pub iface: String,
    /// Dedicated mode with this address; `None`: shared mode.
    pub ip: Option<Ipv4Addr>,
    pub queues: u32,
    /// Core of each worker, in queue order; missing entries are unpinned.
    pub cores: Vec<usize>,
    pub poll: PollMode,
    pub attach: AttachMode,
    /// Run-to-completion UDP services bound at start.
    pub udp_handlers: Vec<(u16, HandlerFactory)>,
    /// Run-to-completion TCP services listening from the start (a listener
    /// on every worker).
    pub tcp_handlers: Vec<(u16, TcpHandlerFactory)>,
    /// TCP connections each worker's table holds (TIME-WAIT included).
    pub tcp_max_connections: usize,
    /// Congestion control of every TCP connection.
    pub tcp_congestion: crate::tcp::congestion::CongestionAlgorithm,
    /// Receive buffer of every TCP connection, bytes.
    pub tcp_recv_buffer: usize,
    pub stats_every: Option<Duration>,
    pub xsk: Option<XskConfig>,
}

impl fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackConfig")
            .field("iface", &self.iface)
            .field("ip", &self.ip)
            .field("queues", &self.queues)
            .field("cores", &self.cores)
            .field("poll", &self.poll)
            .field("attach", &self.attach)
            .field(
                "udp_ports",
                &self.udp_handlers.iter().map(|h| h.0).collect::<Vec<_>>(),
            )
            .field(
                "tcp_ports",
                &self.tcp_handlers.iter().map(|h| h.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl StackConfig {
    pub fn new(iface: &str) -> StackConfig {
        StackConfig {
            iface: iface.to_string(),
            ip: None,
            queues: 1,
            cores: Vec::new(),
            poll: PollMode::Busy,
            attach: AttachMode::Auto,
            udp_handlers: Vec::new(),
            tcp_handlers: Vec::new(),
            tcp_max_connections: 65536,
            tcp_congestion: crate::tcp::congestion::CongestionAlgorithm::default(),
            tcp_recv_buffer: crate::tcp::DEFAULT_RECV_BUFFER,
            stats_every: None,
            xsk: None,
        }
    }
}

/// The interface's first IPv4 address (through `ip`, iproute2).
pub fn iface_ipv4(iface: &str) -> Result<Ipv4Addr, StackError> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", iface])
        .output()
        .map_err(StackError::Io)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "inet" {
            if let Some(a) = words.next().and_then(|cidr| cidr.split('/').next()) {
                return a
                    .parse()
                    .map_err(|_| StackError::Interface(format!("bad address {a}")));
            }
        }
    }
    Err(StackError::Interface(format!(
        "{iface} has no IPv4 address (use --ip for a dedicated one)"
    )))
}

/// The interface's MAC and MTU from sysfs.
pub fn iface_mac_mtu(iface: &str) -> Result<(Mac, usize), StackError> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/{f}"))
            .map_err(|e| StackError::Interface(format!("{iface}: {e}")))
    };
    let mac_text = read("address")?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = mac_text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(StackError::Interface(format!("bad MAC {mac_text}")));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| StackError::Interface(format!("bad MAC {mac_text}")))?;
    }
    let mtu = read("mtu")?
        .trim()
        .parse()
        .map_err(|_| StackError::Interface("bad MTU".into()))?;
    Ok((mac, mtu))
}

struct HandleInner {
    local_ip: Ipv4Addr,
    mtu: usize,
    ports: SharedPorts,
    maps: Option<Arc<SteerMaps>>,
    workers: Vec<Sender<Command>>,
}

/// The control path to a running stack (cheap to clone).
#[derive(Clone)]
pub struct StackHandle {
    inner: Arc<HandleInner>,
}

impl fmt::Debug for StackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackHandle")
            .field("local_ip", &self.inner.local_ip)
            .field("workers", &self.inner.workers.len())
            .finish()
    }
}

fn proto_map(p: Protocol) -> Proto {
    match p {
        Protocol::Udp => Proto::Udp,
        Protocol::Tcp => Proto::Tcp,
    }
}

impl StackHandle {
    /// A handle over workers fed by `workers` (tests on the in-memory link
    /// use it without a steering program).
    pub fn new(
        local_ip: Ipv4Addr,
        mtu: usize,
        ports: SharedPorts,
        maps: Option<Arc<SteerMaps>>,
        workers: Vec<Sender<Command>>,
    ) -> StackHandle {
        StackHandle {
            inner: Arc::new(HandleInner {
                local_ip,
                mtu,
                ports,
                maps,
                workers,
            }),
        }
    }

    pub fn local_ip(&self) -> Ipv4Addr {
        self.inner.local_ip
    }

    pub fn mtu(&self) -> usize {
        self.inner.mtu
    }

    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// Reserves `port` (0: an ephemeral one) in the port service and steers
    /// it to the stack.
    pub fn reserve_port(&self, proto: Protocol, port: u16) -> io::Result<u16> {
        let port = {
            let mut ps = self
                .inner
                .ports
                .lock()
                .map_err(|_| io::Error::other("port service poisoned"))?;
            if port == 0 {
                ps.allocate(proto, 0, FlowKey::UNSPECIFIED)?
            } else {
                ps.bind(proto, port)?
            }
        };
        if let Some(m) = &self.inner.maps {
            if let Err(e) = m.add_port(proto_map(proto), port) {
                self.release_port(proto, port);
                return Err(io::Error::other(e.to_string()));
            }
        }
        Ok(port)
    }

    /// Undoes [`reserve_port`](Self::reserve_port).
    pub fn release_port(&self, proto: Protocol, port: u16) {
        if let Some(m) = &self.inner.maps {
            let _ = m.remove_port(proto_map(proto), port);
        }
        if let Ok(mut ps) = self.inner.ports.lock() {
            let _ = ps.release(proto, port);
        }
    }

    /// Binds a reserved UDP port on every worker to one channel.
    pub fn bind_udp_channel(&self, port: u16, deliver: Sender<RecvDatagram>) -> io::Result<()> {
        let mut replies = Vec::new();
        for w in &self.inner.workers {
            let (tx, rx) = channel::bounded(1);
            w.send(Command::UdpBindChannel {
                port,
                deliver: deliver.clone(),
                reply: tx,
            })
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "worker stopped"))?;
            replies.push(rx);
        }
        for r in replies {
            match r.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.close_udp_workers(port);
                    return Err(e.into());
                }
                Err(_) => {
                    self.close_udp_workers(port);
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "worker silent"));
                }
            }
        }
        Ok(())
    }

    fn close_udp_workers(&self, port: u16) {
        for w in &self.inner.workers {
            let _ = w.send(Command::UdpClose { port });
        }
    }

    /// Closes a port bound with [`bind_udp_channel`](Self::bind_udp_channel)
    /// and releases it.
    pub fn close_udp(&self, port: u16) {
        self.close_udp_workers(port);
        self.release_port(Protocol::Udp, port);
    }

    /// Sends a command to worker `i`.
    pub fn command(&self, i: usize, cmd: Command) -> io::Result<()> {
        self.inner
            .workers
            .get(i)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such worker"))?
            .send(cmd)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "worker stopped"))
    }
}

/// A running stack: the steering program, the workers and their handle.
pub struct Stack {
    handle: StackHandle,
    steering: Steering,
    threads: Vec<JoinHandle<WorkerReport>>,
    stats: Receiver<WorkerReport>,
    mode: AddressMode,
    ephemeral: ports::PortRange,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("handle", &self.handle)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Stack {
    /// Attaches, opens one socket per queue and starts the workers; they
    /// run until `stop` is set.
    pub fn start(cfg: &StackConfig, stop: Arc<AtomicBool>) -> Result<Stack, StackError> {
        let (mac, mtu) = iface_mac_mtu(&cfg.iface)?;
        let (mode, ip) = match cfg.ip {
            Some(ip) => (AddressMode::Dedicated, ip),
            None => (AddressMode::Shared, iface_ipv4(&cfg.iface)?),
        };
        let kernel_range =
            ports::read_kernel_local_port_range().unwrap_or(ports::PortRange::KERNEL_DEFAULT_LOCAL);
        let ephemeral =
            ports::choose_ephemeral_range(kernel_range, None).map_err(StackError::Port)?;
        let queues = cfg.queues.max(1);
        let mut ps = PortService::new(PortConfig {
            ephemeral,
            ..PortConfig::new(queues as usize)
        })
        .map_err(StackError::Port)?;
        if queues > 1 {
            // Active opens pick ports whose replies the NIC's RSS hash
            // sends back to the opening worker's queue; without RSS
            // information (veth) forwarding between workers covers it.
            if let Ok(rss) = crate::xdp::ethtool::read_rss(&cfg.iface) {
                ps.set_reply_steering(Some(ports::ReplySteering {
                    rss,
                    shard_queues: (0..queues).collect(),
                }));
            }
        }
        let ps = ps.shared();
        let routes = read_kernel_routes(&cfg.iface).unwrap_or_default();

        let steering = Steering::attach(&cfg.iface, cfg.attach).map_err(StackError::Load)?;
        let maps = steering.maps().clone();
        if mode == AddressMode::Dedicated {
            maps.set_config(XsConfig::dedicated(ip))
                .map_err(StackError::Map)?;
        } else {
            // The replies to active opens: the whole TCP ephemeral range is
            // steered, so an open costs no map update.
            maps.set_config(XsConfig::shared_with_tcp_ephemeral(ephemeral.iter()))
                .map_err(StackError::Map)?;
        }

        let now = Instant::now_monotonic();
        // One ISN secret for the whole stack (RFC 6528).
        let isn_key = IsnKey::random();
        let mut workers = Vec::new();
        let mut senders = Vec::new();
        for q in 0..queues {
            let xc = match &cfg.xsk {
                Some(x) => XskConfig {
                    iface: cfg.iface.clone(),
                    queue: q,
                    poll: cfg.poll,
                    ..x.clone()
                },
                None => XskConfig {
                    poll: cfg.poll,
                    ..XskConfig::new(&cfg.iface, q)
                },
            };
            let link = open_link(&xc, &maps).map_err(StackError::Xsk)?;
            let mut scfg = ShardConfig::new(mode, ip, mac, mtu);
            scfg.routes = routes.clone();
            let mut shard: Shard<crate::xdp::Frame> = Shard::new(scfg, now);
            for (port, make) in &cfg.udp_handlers {
                shard
                    .bind_udp(*port, Binding::Handler(make()))
                    .map_err(StackError::Udp)?;
            }
            let mut tcp_cfg = TcpShardConfig {
                reset_unmatched: mode == AddressMode::Dedicated,
                shard: q as usize,
                max_connections: cfg.tcp_max_connections.max(1),
                ..TcpShardConfig::new(ip, mac, mtu)
            };
            tcp_cfg.tcp.congestion = cfg.tcp_congestion;
            tcp_cfg.tcp.recv_buffer = cfg.tcp_recv_buffer;
            let mut tcp = ShardTcp::new(tcp_cfg, isn_key, Some(ps.clone()), now);
            for (port, make) in &cfg.tcp_handlers {
                let h = tcp.add_handler(make());
                if !tcp.listen(*port, h) {
                    return Err(StackError::Port(ports::PortError::AddrInUse));
                }
            }
            shard.set_tcp(tcp);
            let (tx, rx) = channel::unbounded();
            senders.push(tx);
            workers.push((q, link, shard, rx));
        }
        if senders.len() > 1 {
            // A flow's segments may reach several queues (see
            // `ShardTcp::set_forwarding`): one copy per misrouted segment
            // to every other worker.
            for (i, (_, _, shard, _)) in workers.iter_mut().enumerate() {
                let others: Vec<Sender<Command>> = senders
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, s)| s.clone())
                    .collect();
                shard.set_tcp_forward(Box::new(move |frame: &[u8]| {
                    for o in &others {
                        let _ = o.send(Command::TcpForward(frame.to_vec()));
                    }
                }));
            }
        }
        let handle = StackHandle::new(ip, mtu, ps, Some(maps.clone()), senders);
        for (port, _) in &cfg.udp_handlers {
            handle
                .reserve_port(Protocol::Udp, *port)
                .map_err(StackError::Io)?;
        }
        for (port, _) in &cfg.tcp_handlers {
            handle
                .reserve_port(Protocol::Tcp, *port)
                .map_err(StackError::Io)?;
        }

        let (stats_tx, stats_rx) = channel::unbounded();
        let mut threads = Vec::new();
        for (i, (q, mut link, mut shard, rx)) in workers.into_iter().enumerate() {
            let lc = LoopConfig {
                worker: i,
                queue: q,
                core: cfg.cores.get(i).copied(),
                poll: cfg.poll,
                stats_every: cfg.stats_every,
                kernel_neighbors: (mode == AddressMode::Shared).then(|| cfg.iface.clone()),
            };
            let stop = stop.clone();
            let stats_tx = stats_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("xdpstack-w{i}"))
                .spawn(move || {
                    if let Some(c) = lc.core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    run_loop(&lc, &mut link, &mut shard, &rx, &stop, Some(&stats_tx))
                })
                .map_err(StackError::Io)?;
            threads.push(t);
        }
        Ok(Stack {
            handle,
            steering,
            threads,
            stats: stats_rx,
            mode,
            ephemeral,
        })
    }

    pub fn handle(&self) -> &StackHandle {
        &self.handle
    }

    pub fn mode(&self) -> AddressMode {
        self.mode
    }

    pub fn attached_mode(&self) -> AttachedMode {
        self.steering.mode()
    }

    /// The stack's ephemeral port range (disjoint from the kernel's).
    pub fn ephemeral_range(&self) -> ports::PortRange {
        self.ephemeral
    }

    /// Periodic worker reports (with `stats_every`).
    pub fn stats(&self) -> &Receiver<WorkerReport> {
        &self.stats
    }

    /// The steering program's counters.
    pub fn steer_counters(&self) -> Option<SteerCounters> {
        self.steering.maps().counters().ok()
    }

    /// Waits for the workers (after `stop` was set), detaches, and returns
    /// the final reports and the steering counters.
    pub fn join(self) -> (Vec<WorkerReport>, Option<SteerCounters>) {
        let mut reports = Vec::new();
        for t in self.threads {
            if let Ok(r) = t.join() {
                reports.push(r);
            }
        }
        let steer = self.steering.maps().counters().ok();
        let _ = self.steering.detach();
        (reports, steer)
    }
}

/// `key=value` form of the steering counters.
pub fn steer_kv(c: &SteerCounters) -> String {
    format!(
        "steered={} passed={} malformed={} no_xsk={}",
        c.steered, c.passed, c.malformed, c.no_xsk
    )
}
