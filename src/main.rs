//! The xdpstack command line: serve and benchmark on a NIC or a veth pair.
//! Argument structs and calls into the library; the work is done there.
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use xdpstack::api::tcp::TcpHandler;
use xdpstack::api::udp::{Echo, UdpHandler};
use xdpstack::apps::{HttpHandler, TcpEcho, TcpSource};
use xdpstack::baseline::kernel_tcp::TcpService;
use xdpstack::http::{HttpConfig, HttpServer};
use xdpstack::loadgen::tcp::{run_kernel_client, CrrClose, TcpBenchConfig, TcpBenchKind};
use xdpstack::tcp::congestion::CongestionAlgorithm;
use xdpstack::worker::{steer_kv, HandlerFactory, Stack, StackConfig, TcpHandlerFactory};
use xdpstack::xdp::{signals, AttachMode, PollMode};

#[derive(Parser, Debug)]
#[command(
    name = "xdpstack",
    version,
    about = "A kernel-bypass TCP/UDP stack on AF_XDP"
)]
enum Cli {
    /// Serve on an interface until SIGINT/SIGTERM; prints per-worker
    /// counters on exit.
    Serve(ServeArgs),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Servers to compare the stack against.
    #[command(subcommand)]
    Baseline(BaselineCmd),
    /// Drop, duplicate and corrupt IPv4 TCP/UDP packets on an interface
    /// (a tc eBPF program) until SIGINT/SIGTERM; prints what it did.
    Impair(ImpairArgs),
    /// Print the version and exit.
    Version,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum XdpModeArg {
    /// Native (driver) mode, falling back to generic.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (SKB) mode. On veth (copy mode) faster than native; the
    /// peer's TSO/GSO must be off, as frames over 3840 bytes are dropped.
    Generic,
}

impl From<XdpModeArg> for AttachMode {
    fn from(m: XdpModeArg) -> AttachMode {
        match m {
            XdpModeArg::Auto => AttachMode::Auto,
            XdpModeArg::Native => AttachMode::Native,
            XdpModeArg::Generic => AttachMode::Generic,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PollArg {
    /// Spin on the rings (lowest latency, one core at 100% per worker).
    Busy,
    /// Sleep in poll() when idle.
    Wakeup,
}

impl From<PollArg> for PollMode {
    fn from(p: PollArg) -> PollMode {
        match p {
            PollArg::Busy => PollMode::Busy,
            PollArg::Wakeup => PollMode::Wakeup,
        }
    }
}

/// A comma-separated list of CPU numbers, e.g. `0,2,3`.
#[derive(Clone, Debug, Default)]
struct CoreList(Vec<usize>);

fn parse_cores(s: &str) -> Result<CoreList, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse::<usize>().map_err(|e| format!("{p}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(CoreList)
}

/// A receive buffer size: 1 KiB to 1 GiB (window scaling's limit).
fn parse_recv_buffer(s: &str) -> Result<usize, String> {
    let n: usize = s.trim().parse().map_err(|e| format!("{s}: {e}"))?;
    if (1024..=1 << 30).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n}: the receive buffer is 1024 to 1073741824 bytes"
        ))
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// Dedicated mode: serve this IPv4 address (not configured on the
    /// interface); the stack answers ARP and ICMP echo for it and owns all
    /// its ports. Without it, shared mode: the interface's address, only
    /// the bound ports (the kernel keeps ARP, ICMP and everything else).
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// Worker threads, one per interface queue (queues 0..N).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Run a UDP echo service on this port (repeatable).
    #[arg(long = "udp-echo", value_name = "PORT")]
    udp_echo: Vec<u16>,
    /// Run a TCP echo service on this port (repeatable): echoes until the
    /// client closes, then closes.
    #[arg(long = "tcp-echo", value_name = "PORT")]
    tcp_echo: Vec<u16>,
    /// Run a TCP bulk source on this port (repeatable): sends a fixed
    /// pattern as fast as the windows allow until the client closes (for
    /// `bench tcp-stream --download`).
    #[arg(long = "tcp-source", value_name = "PORT")]
    tcp_source: Vec<u16>,
    /// Run the HTTP/1.1 server on this port (repeatable): a fixed body,
    /// keep-alive, `Connection: close` honoured.
    #[arg(long = "http", value_name = "PORT")]
    http: Vec<u16>,
    /// Length of the HTTP server's response body in bytes.
    #[arg(long = "http-body", value_name = "BYTES", default_value_t = 64)]
    http_body: usize,
    /// TCP connections each worker holds, TIME-WAIT included (the table is
    /// allocated at start: about 40 bytes per connection).
    #[arg(
        long = "tcp-max-connections",
        value_name = "N",
        default_value_t = 65536
    )]
    tcp_max_connections: usize,
    /// TCP congestion control of every connection: newreno or cubic.
    #[arg(long = "cc", value_name = "ALGO", default_value = "cubic")]
    cc: CongestionAlgorithm,
    /// TCP receive buffer of every connection in bytes (the largest window
    /// it offers); 262144 when not given.
    #[arg(long = "tcp-recv-buffer", value_name = "BYTES", value_parser = parse_recv_buffer)]
    tcp_recv_buffer: Option<usize>,
    /// Print per-worker counters every second.
    #[arg(long)]
    stats: bool,
    /// XDP attach mode.
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// How workers wait for packets.
    #[arg(long, value_enum, default_value_t = PollArg::Busy)]
    poll: PollArg,
    /// CPUs to pin the workers to, in queue order (e.g. `0,1`).
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CoreList>,
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// UDP echo request/response: req/s and latency percentiles.
    UdpEcho(BenchUdpArgs),
    /// TCP request/response on long-lived connections (against an echo
    /// server): transactions/s and latency percentiles.
    TcpRr(BenchTcpArgs),
    /// TCP connect, one request/response, close (against an echo server):
    /// connections/s and latency percentiles.
    TcpCrr(BenchTcpArgs),
    /// TCP bulk transfer (against an echo or discard server): Gbit/s.
    TcpStream(BenchTcpArgs),
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum CrrCloseArg {
    /// Reset (SO_LINGER 0): no TIME-WAIT on the client.
    Reset,
    /// Orderly FIN close.
    Fin,
}

#[derive(Args, Debug)]
struct BenchTcpArgs {
    /// Server address.
    #[arg(long)]
    target: SocketAddr,
    /// Parallel connections (tcp-crr: parallel connect/request/close slots).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Request bytes (tcp-rr, tcp-crr) or bytes per write (tcp-stream).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// CPU to pin the client to.
    #[arg(long)]
    core: Option<usize>,
    /// Spin on epoll_wait(0) instead of sleeping in it.
    #[arg(long = "busy-poll")]
    busy_poll: bool,
    /// How tcp-crr ends each connection.
    #[arg(long = "crr-close", value_enum, default_value_t = CrrCloseArg::Reset)]
    crr_close: CrrCloseArg,
    /// Label for the server in the report (e.g. kernel, xdpstack).
    #[arg(long, default_value = "")]
    server_label: String,
    /// Which client drives the load.
    #[arg(long, value_enum, default_value_t = ClientArg::Kernel)]
    client: ClientArg,
    /// Interface for the xdpstack client.
    #[arg(long)]
    iface: Option<String>,
    /// Dedicated mode for the xdpstack client: this address (not
    /// configured on the interface), ARP included. Without it, shared mode
    /// on the interface's address.
    #[arg(long)]
    ip: Option<Ipv4Addr>,
    /// XDP attach mode (xdpstack client).
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// How the xdpstack client waits for packets.
    #[arg(long, value_enum, default_value_t = PollArg::Busy)]
    poll: PollArg,
    /// tcp-stream: receive from a source server (`serve --tcp-source`,
    /// `baseline kernel-tcp-source`) and verify its pattern, instead of
    /// sending.
    #[arg(long)]
    download: bool,
    /// With --download: each connection reads this many bytes, then the
    /// run ends (failing if that takes longer than --duration).
    #[arg(long, value_name = "BYTES", requires = "download")]
    bytes: Option<u64>,
    /// TCP receive buffer of the xdpstack client's connections in bytes;
    /// 262144 when not given.
    #[arg(long = "tcp-recv-buffer", value_name = "BYTES", value_parser = parse_recv_buffer)]
    tcp_recv_buffer: Option<usize>,
    /// Print the xdpstack client's worker counters (retransmissions, RTOs,
    /// drops, ring statistics) to stderr at the end.
    #[arg(long)]
    stats: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum ClientArg {
    /// The kernel's sockets.
    Kernel,
    /// xdpstack itself on an AF_XDP socket (needs --iface).
    Xdpstack,
}

#[derive(Args, Debug)]
struct BenchUdpArgs {
    /// Echo server address.
    #[arg(long)]
    target: SocketAddr,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Payload bytes per request.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Which client drives the load.
    #[arg(long, value_enum, default_value_t = ClientArg::Kernel)]
    client: ClientArg,
    /// Interface for the xdpstack client.
    #[arg(long)]
    iface: Option<String>,
    /// CPU to pin the client to.
    #[arg(long)]
    core: Option<usize>,
    /// XDP attach mode (xdpstack client).
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// How the xdpstack client waits for packets.
    #[arg(long, value_enum, default_value_t = PollArg::Busy)]
    poll: PollArg,
    /// Label for the server in the report (e.g. kernel, xdpstack).
    #[arg(long, default_value = "")]
    server_label: String,
}

#[derive(Subcommand, Debug)]
enum BaselineCmd {
    /// Raw AF_XDP UDP reflector (swap addresses, send back; no stack).
    Reflector(ReflectorArgs),
    /// Kernel UDP echo server (recvmmsg/sendmmsg batches).
    KernelUdpEcho(KernelEchoArgs),
    /// Kernel TCP echo server (epoll, one thread): the counterpart of
    /// `serve --tcp-echo`.
    KernelTcpEcho(KernelTcpArgs),
    /// Kernel TCP discard server (epoll, one thread), for tcp-stream.
    KernelTcpDiscard(KernelTcpArgs),
    /// Kernel TCP bulk source (epoll, one thread, the same pattern): the
    /// counterpart of `serve --tcp-source`, for tcp-stream --download.
    KernelTcpSource(KernelSourceArgs),
    /// Kernel HTTP/1.1 server (epoll, one thread, the same HTTP session
    /// logic): the counterpart of `serve --http`.
    KernelHttp(KernelHttpArgs),
}

#[derive(Args, Debug)]
struct KernelTcpArgs {
    /// Address to listen on.
    #[arg(long)]
    bind: SocketAddr,
    /// CPU to pin the server to.
    #[arg(long)]
    core: Option<usize>,
    /// Spin on epoll_wait(0) instead of sleeping in it.
    #[arg(long = "busy-poll")]
    busy_poll: bool,
}

#[derive(Args, Debug)]
struct KernelSourceArgs {
    #[command(flatten)]
    tcp: KernelTcpArgs,
    /// The kernel's congestion control by name (`cubic`, `reno`, ...);
    /// the system default if not given.
    #[arg(long = "cc", value_name = "ALGO")]
    cc: Option<String>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum DirectionArg {
    /// Packets arriving on the interface.
    Ingress,
    /// Packets leaving the interface.
    Egress,
    /// Both: one program on each hook, each with the same rates.
    Both,
}

#[derive(Args, Debug)]
struct ImpairArgs {
    /// Interface to impair.
    #[arg(long)]
    iface: String,
    /// Network namespace of the interface (a name under /var/run/netns).
    #[arg(long)]
    netns: Option<String>,
    /// Percent of packets dropped (0-100).
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Percent of packets duplicated.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Percent of packets corrupted (their checksum fails).
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Which hooks.
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    direction: DirectionArg,
    /// Only packets from or to this port (0: any).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Leave UDP alone (TCP only).
    #[arg(long = "tcp-only")]
    tcp_only: bool,
}

#[derive(Args, Debug)]
struct KernelHttpArgs {
    #[command(flatten)]
    tcp: KernelTcpArgs,
    /// Length of the response body in bytes.
    #[arg(long = "http-body", value_name = "BYTES", default_value_t = 64)]
    http_body: usize,
}

#[derive(Args, Debug)]
struct ReflectorArgs {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// UDP port to reflect.
    #[arg(long)]
    port: u16,
    /// Queues to serve (0..N), one thread each.
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// CPUs to pin the threads to, in queue order.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CoreList>,
    /// XDP attach mode.
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// How the threads wait for packets.
    #[arg(long, value_enum, default_value_t = PollArg::Busy)]
    poll: PollArg,
}

#[derive(Args, Debug)]
struct KernelEchoArgs {
    /// Address to bind.
    #[arg(long)]
    bind: SocketAddr,
    /// CPU to pin the server to (one serving thread).
    #[arg(long, conflicts_with = "cores")]
    core: Option<usize>,
    /// One serving thread per CPU listed (SO_REUSEPORT sockets), pinned,
    /// e.g. `0,1`: the kernel's counterpart of `serve --queues N`.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<CoreList>,
}

fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    signals::spawn_signal_thread(stop.clone()).map_err(|e| format!("signals: {e}"))?;
    signals::detach_on_panic();
    Ok(stop)
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let stop = stop_flag()?;
    let mut cfg = StackConfig::new(&a.iface);
    cfg.ip = a.ip;
    cfg.queues = a.queues.max(1);
    cfg.cores = a.cores.unwrap_or_default().0;
    cfg.poll = a.poll.into();
    cfg.attach = a.xdp_mode.into();
    cfg.stats_every = a.stats.then(|| Duration::from_secs(1));
    for port in a.udp_echo {
        let f: HandlerFactory = Arc::new(|| Box::new(Echo) as Box<dyn UdpHandler>);
        cfg.udp_handlers.push((port, f));
    }
    cfg.tcp_max_connections = a.tcp_max_connections;
    cfg.tcp_congestion = a.cc;
    if let Some(n) = a.tcp_recv_buffer {
        cfg.tcp_recv_buffer = n;
    }
    for port in a.tcp_echo {
        let f: TcpHandlerFactory = Arc::new(|| Box::<TcpEcho>::default() as Box<dyn TcpHandler>);
        cfg.tcp_handlers.push((port, f));
    }
    for port in a.tcp_source {
        let f: TcpHandlerFactory = Arc::new(|| Box::<TcpSource>::default() as Box<dyn TcpHandler>);
        cfg.tcp_handlers.push((port, f));
    }
    if !a.http.is_empty() {
        let server = HttpServer::new(HttpConfig {
            body_len: a.http_body,
            ..HttpConfig::default()
        });
        for port in a.http {
            let server = server.clone();
            let f: TcpHandlerFactory =
                Arc::new(move || Box::new(HttpHandler::new(server.clone())) as Box<dyn TcpHandler>);
            cfg.tcp_handlers.push((port, f));
        }
    }
    let stack = Stack::start(&cfg, stop.clone()).map_err(|e| e.to_string())?;
    println!(
        "serving on {} ({:?} mode, {} attach, ip {}, {} worker(s), ephemeral ports {})",
        a.iface,
        stack.mode(),
        format!("{:?}", stack.attached_mode()).to_lowercase(),
        stack.handle().local_ip(),
        stack.handle().workers(),
        stack.ephemeral_range(),
    );
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = stack.stats().recv_timeout(Duration::from_millis(100)) {
            println!("{r}");
            if r.worker + 1 == stack.handle().workers() {
                if let Some(c) = stack.steer_counters() {
                    println!("steer: {}", steer_kv(&c));
                }
            }
        }
    }
    let (reports, steer) = stack.join();
    println!("final counters:");
    for r in &reports {
        println!("{r}");
    }
    if let Some(c) = steer {
        println!("steer: {}", steer_kv(&c));
    }
    Ok(())
}

fn bench_udp(a: BenchUdpArgs) -> Result<(), String> {
    use xdpstack::loadgen::udp_echo::{run_kernel_client, UdpEchoConfig};
    if let Some(c) = a.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let duration = Duration::from_secs_f64(a.duration.max(0.1));
    let mut report = match a.client {
        ClientArg::Kernel => {
            let cfg = UdpEchoConfig {
                target: a.target,
                bind: "0.0.0.0:0".parse().expect("static address"),
                payload: a.payload,
                inflight: a.inflight.max(1),
                duration,
                warmup: Duration::from_millis(200).min(duration / 5),
            };
            run_kernel_client(&cfg).map_err(|e| e.to_string())?
        }
        ClientArg::Xdpstack => {
            let iface = a
                .iface
                .as_deref()
                .ok_or("--client xdpstack needs --iface")?;
            let SocketAddr::V4(target) = a.target else {
                return Err("IPv4 targets only".into());
            };
            let cfg = xdpstack::loadgen::xdp_client::XdpClientConfig {
                iface: iface.to_string(),
                target,
                payload: a.payload,
                inflight: a.inflight.max(1),
                duration,
                warmup: Duration::from_millis(200).min(duration / 5),
                attach: a.xdp_mode.into(),
                poll: a.poll.into(),
            };
            let stop = stop_flag()?;
            xdpstack::loadgen::xdp_client::run(&cfg, &stop).map_err(|e| e.to_string())?
        }
    };
    report.server = a.server_label;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}

fn bench_tcp(kind: TcpBenchKind, a: BenchTcpArgs) -> Result<(), String> {
    let SocketAddr::V4(target) = a.target else {
        return Err("IPv4 targets only".into());
    };
    let duration = Duration::from_secs_f64(a.duration.max(0.1));
    let mut cfg = TcpBenchConfig::new(kind, target);
    cfg.connections = a.connections.max(1);
    cfg.payload = a.payload.max(1);
    cfg.duration = duration;
    cfg.warmup = Duration::from_millis(500).min(duration / 5);
    cfg.core = a.core;
    cfg.busy_poll = a.busy_poll;
    cfg.crr_close = match a.crr_close {
        CrrCloseArg::Reset => CrrClose::Reset,
        CrrCloseArg::Fin => CrrClose::Fin,
    };
    if a.download && kind != TcpBenchKind::Stream {
        return Err("--download is for tcp-stream".into());
    }
    if a.download && a.client == ClientArg::Xdpstack {
        return Err("--download runs on the kernel client".into());
    }
    cfg.download = a.download;
    cfg.download_bytes = a.bytes;
    if a.tcp_recv_buffer.is_some() && a.client != ClientArg::Xdpstack {
        return Err("--tcp-recv-buffer is for --client xdpstack".into());
    }
    if a.stats && a.client != ClientArg::Xdpstack {
        return Err("--stats is for --client xdpstack".into());
    }
    let mut report = match a.client {
        ClientArg::Kernel => run_kernel_client(&cfg).map_err(|e| e.to_string())?,
        ClientArg::Xdpstack => {
            let iface = a
                .iface
                .as_deref()
                .ok_or("--client xdpstack needs --iface")?;
            let xcfg = xdpstack::loadgen::tcp_xdp::TcpXdpConfig {
                iface: iface.to_string(),
                ip: a.ip,
                bench: cfg,
                attach: a.xdp_mode.into(),
                poll: a.poll.into(),
                recv_buffer: a
                    .tcp_recv_buffer
                    .unwrap_or(xdpstack::tcp::DEFAULT_RECV_BUFFER),
                stats: a.stats,
            };
            let stop = stop_flag()?;
            xdpstack::loadgen::tcp_xdp::run(&xcfg, &stop).map_err(|e| e.to_string())?
        }
    };
    report.server = a.server_label;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}

fn kernel_tcp(a: KernelTcpArgs, service: TcpService, cc: Option<String>) -> Result<(), String> {
    use xdpstack::baseline::kernel_tcp::{run_with, KernelTcpConfig};
    let stop = stop_flag()?;
    let mut cfg = KernelTcpConfig::new(a.bind, service.clone());
    cfg.core = a.core;
    cfg.busy_poll = a.busy_poll;
    cfg.congestion = cc;
    let name = match service {
        TcpService::Echo => "echo",
        TcpService::Discard => "discard",
        TcpService::Source => "source",
        TcpService::Http(_) => "HTTP",
    };
    let s = run_with(&cfg, &stop, |addr| println!("kernel TCP {name} on {addr}"))
        .map_err(|e| e.to_string())?;
    println!("{s:?}");
    Ok(())
}

fn impair(a: ImpairArgs) -> Result<(), String> {
    use xdpstack::xdp::impair::{attach, attach_in_netns, ppm, ImpairConfig};
    let pct = |p: f64| -> Result<u32, String> {
        if (0.0..=100.0).contains(&p) {
            Ok(ppm(p / 100.0))
        } else {
            Err(format!("{p}: a percentage is 0-100"))
        }
    };
    let cfg = ImpairConfig {
        drop_ppm: pct(a.drop)?,
        duplicate_ppm: pct(a.dup)?,
        corrupt_ppm: pct(a.corrupt)?,
        tcp: true,
        udp: !a.tcp_only,
        port: a.port,
    };
    let stop = stop_flag()?;
    let hooks: &[(&str, bool)] = match a.direction {
        DirectionArg::Ingress => &[("ingress", false)],
        DirectionArg::Egress => &[("egress", true)],
        DirectionArg::Both => &[("ingress", false), ("egress", true)],
    };
    let mut guards = Vec::new();
    for &(name, egress) in hooks {
        let g = match &a.netns {
            Some(ns) => attach_in_netns(ns, &a.iface, egress, &cfg),
            None => attach(&a.iface, egress, &cfg),
        }
        .map_err(|e| format!("{} {name}: {e}", a.iface))?;
        guards.push((name, g));
    }
    println!(
        "impairing {}{} on {}: drop {}% dup {}% corrupt {}%",
        a.iface,
        a.netns.map(|n| format!(" (netns {n})")).unwrap_or_default(),
        hooks.iter().map(|h| h.0).collect::<Vec<_>>().join("+"),
        a.drop,
        a.dup,
        a.corrupt
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Dropping the guards detaches the programs.
    for (name, g) in guards {
        let c = g.counters().map_err(|e| e.to_string())?;
        println!(
            "impair {name}: seen={} dropped={} duplicated={} duplicate_failed={} corrupted={} \
             ignored={}",
            c.seen, c.dropped, c.duplicated, c.duplicate_failed, c.corrupted, c.ignored
        );
    }
    Ok(())
}

fn reflector(a: ReflectorArgs) -> Result<(), String> {
    use xdpstack::xdp::reflector::{run_with, ReflectorConfig};
    let stop = stop_flag()?;
    let cores = a.cores.unwrap_or_default().0;
    let mut cfg = ReflectorConfig::new(&a.iface, a.port);
    cfg.queues = (0..a.queues.max(1))
        .map(|q| (q, cores.get(q as usize).copied()))
        .collect();
    cfg.attach = a.xdp_mode.into();
    cfg.poll = a.poll.into();
    let report = run_with(&cfg, &stop, |m| {
        println!(
            "reflecting UDP port {} on {} ({} attach)",
            a.port,
            a.iface,
            format!("{m:?}").to_lowercase()
        )
    })
    .map_err(|e| e.to_string())?;
    for (q, s) in &report.per_queue {
        println!(
            "queue {q}: reflected={} ignored={} xsk_rx={} xsk_tx={}",
            s.reflected, s.ignored, s.xsk.rx_frames, s.xsk.tx_frames
        );
    }
    Ok(())
}

fn kernel_echo(a: KernelEchoArgs) -> Result<(), String> {
    use xdpstack::baseline::kernel_udp::{run_with, KernelEchoConfig};
    let stop = stop_flag()?;
    let mut cfg = KernelEchoConfig::new(a.bind);
    cfg.cores = match (a.core, a.cores) {
        (_, Some(list)) if !list.0.is_empty() => list.0.into_iter().map(Some).collect(),
        (core, _) => vec![core],
    };
    let s = run_with(&cfg, &stop, |addr| println!("kernel UDP echo on {addr}"))
        .map_err(|e| e.to_string())?;
    println!("{s:?}");
    Ok(())
}

fn main() -> ExitCode {
    let r = match Cli::parse() {
        Cli::Serve(a) => serve(a),
        Cli::Bench(BenchCmd::UdpEcho(a)) => bench_udp(a),
        Cli::Bench(BenchCmd::TcpRr(a)) => bench_tcp(TcpBenchKind::Rr, a),
        Cli::Bench(BenchCmd::TcpCrr(a)) => bench_tcp(TcpBenchKind::Crr, a),
        Cli::Bench(BenchCmd::TcpStream(a)) => bench_tcp(TcpBenchKind::Stream, a),
        Cli::Baseline(BaselineCmd::KernelTcpEcho(a)) => kernel_tcp(a, TcpService::Echo, None),
        Cli::Baseline(BaselineCmd::KernelTcpDiscard(a)) => kernel_tcp(a, TcpService::Discard, None),
        Cli::Baseline(BaselineCmd::KernelTcpSource(a)) => {
            kernel_tcp(a.tcp, TcpService::Source, a.cc)
        }
        Cli::Baseline(BaselineCmd::KernelHttp(a)) => kernel_tcp(
            a.tcp,
            TcpService::Http(HttpConfig {
                body_len: a.http_body,
                ..HttpConfig::default()
            }),
            None,
        ),
        Cli::Impair(a) => impair(a),
        Cli::Baseline(BaselineCmd::Reflector(a)) => reflector(a),
        Cli::Baseline(BaselineCmd::KernelUdpEcho(a)) => kernel_echo(a),
        Cli::Version => {
            println!("xdpstack {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdpstack: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_recv_buffer_flag() {
        let Cli::Serve(a) = Cli::try_parse_from([
            "xdpstack",
            "serve",
            "--iface",
            "x",
            "--tcp-recv-buffer",
            "524288",
        ])
        .unwrap() else {
            panic!("not serve");
        };
        assert_eq!(a.tcp_recv_buffer, Some(524288));
        for bad in ["10", "2147483648", "lots"] {
            assert!(Cli::try_parse_from([
                "xdpstack",
                "serve",
                "--iface",
                "x",
                "--tcp-recv-buffer",
                bad
            ])
            .is_err());
        }
        // Only the xdpstack client has a receive buffer to set.
        let Cli::Bench(BenchCmd::TcpStream(b)) = Cli::try_parse_from([
            "xdpstack",
            "bench",
            "tcp-stream",
            "--target",
            "127.0.0.1:9",
            "--tcp-recv-buffer",
            "1048576",
        ])
        .unwrap() else {
            panic!("not tcp-stream");
        };
        assert_eq!(b.tcp_recv_buffer, Some(1 << 20));
        let e = bench_tcp(TcpBenchKind::Stream, b).unwrap_err();
        assert!(e.contains("--client xdpstack"), "{e}");
        let Cli::Bench(BenchCmd::TcpRr(b)) = Cli::try_parse_from([
            "xdpstack",
            "bench",
            "tcp-rr",
            "--target",
            "127.0.0.1:9",
            "--stats",
        ])
        .unwrap() else {
            panic!("not tcp-rr");
        };
        assert!(b.stats);
        let e = bench_tcp(TcpBenchKind::Rr, b).unwrap_err();
        assert!(e.contains("--stats is for --client xdpstack"), "{e}");
    }
}
