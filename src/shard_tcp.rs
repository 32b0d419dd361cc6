//! The shard's TCP half: listeners, the connection slab behind the 4-tuple
//! table, the timer wheel of connection deadlines, segment demultiplexing
//! and the transmission of segments straight into link frames.
//!
//! Sans-IO like the rest of the shard: it takes `now`, reads no clock, and
//! reaches the network only through the [`Link`] it is handed (AF_XDP in a
//! worker, the in-memory pair in tests). It owns TCP connection placement
//! and their application callbacks; the protocol itself is [`crate::tcp`].
//!
//! - Demux ([`ShardTcp::on_segment`]): the connection table ([`ConnTable`],
//!   4-tuple → slab slot) first, then the listener of the destination port
//!   (listeners exist on every shard: a SYN is served where it lands), else
//!   a RST from [`rst_for_unmatched`] when the shard owns the whole address
//!   (dedicated mode) or a counted drop. A SYN for a connection in
//!   TIME-WAIT that [`Connection::syn_may_reopen`] accepts ends it (its
//!   handler gets the final `on_close`) and goes to the listener (RFC 6191).
//! - Timers: each connection keeps its own timer table; the shard's wheel
//!   holds one entry per connection, its earliest deadline (and the
//!   application timer of [`crate::api::tcp::TcpConn::set_timer`]), and
//!   one per listener for its SYN-ACK retransmissions. A connection is
//!   re-armed only when that deadline changes.
//! - Transmit ([`ShardTcp::poll_transmit`]): only connections touched since
//!   the last call (segment in, application call, timer) are polled. Each
//!   segment from [`Connection::poll_transmit`] borrows the send buffer and
//!   is written once into a transmit frame, headers and checksums included
//!   (the TCP checksum is summed while the payload is copied in). The send
//!   buffer keeps the bytes until they are acknowledged: that copy, send
//!   buffer to frame, is the one that remains, because a UMEM frame handed
//!   to the kernel cannot be kept for a retransmission.
//! - Peer MACs: the source MAC of the frames a connection receives (the
//!   next hop's, so routed peers work too); a connection without one asks
//!   the caller's resolver when it transmits.
//! - Active opens take their local port from the shard's slice of the port
//!   service (RFC 6056 Algorithm 4), skipping ports whose 4-tuple is still
//!   in the table; the port goes back when the connection ends. (In shared
//!   mode the steering program sends the whole ephemeral range to the
//!   stack, so an open needs no map update.)
//! - TIME-WAIT reuse (as Linux's `tcp_tw_reuse`): when the slice has no
//!   free port or the table is full, the oldest TIME-WAIT connection of
//!   this shard that was actively opened, negotiated timestamps and has
//!   waited at least [`TW_REUSE_DELAY`] ends early and its port is
//!   allocated again. The peer accepts the new SYN because its timestamp
//!   is newer than any the old incarnation sent (RFC 6191 §2, RFC 7323 §5:
//!   the same 4-tuple keeps its TSval offset, and the clock has moved on by
//!   the delay); for the
//!   same 4-tuple the ISS also lies beyond the old incarnation's sequence
//!   space ([`Connection::connect_after`]). The connections eligible wait
//!   in a FIFO in TIME-WAIT order (stale entries are skipped by
//!   generation), so finding one is O(1) amortised. The reused
//!   connection's final [`TcpHandler::on_close`] may be due while a
//!   handler's `poll` opens connections (the handlers are out of the
//!   shard then): such final closes wait in a queue and are delivered as
//!   soon as the handlers are back.
//! - Receive: once a connection's handler has accepted it, in-order text
//!   that finds nothing unread ahead of it goes to
//!   [`TcpHandler::on_data`] borrowed from the UMEM frame
//!   ([`Connection::on_segment_deliver`]); what the handler leaves is
//!   copied into the receive buffer and offered again later.
//! - Connection memory: buffers start at 4 KiB and grow with use; finished
//!   connections hand their first-size buffers on to new ones (a bounded
//!   stack), so connect-request-close allocates nothing per connection in
//!   steady state.
//! - Applications: run-to-completion [`TcpHandler`]s registered per shard,
//!   and the thread-side streams of [`crate::api::tcp`] through the shard's
//!   [`StreamBridge`] ([`STREAMS`]), driven by [`ShardTcp::command`].
//! - Several shards: a segment of a flow another shard owns is reported as
//!   [`Demux::Forward`] for the worker to hand over
//!   ([`ShardTcp::set_forwarding`]); connection state never moves.
//!
//! Not done here: ARP (the next hop's MAC comes from received frames or
//! the caller's resolver, which in dedicated mode also starts the shard's
//! ARP; meanwhile a connection without a peer MAC hands its segments to
//! the shard addressed to [`UNRESOLVED_MAC`], and the shard holds them in
//! its neighbour cache until the reply, see
//! [`ShardTcp::set_park_unresolved`]), and choosing an active open's port
//! so a NIC's RSS steers the replies to the opening queue (the port
//! service does, [`crate::ports::ReplySteering`]; on veth the peer's
//! transmit queue decides, and forwarding covers it).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::api::tcp::{
    ConnId, StreamBridge, StreamEvent, TcpCommand, TcpConn, TcpHandler, TcpOpen,
};
use crate::conntable::{ConnKey, ConnTable};
use crate::neighbor::Mac;
use crate::phy::{FrameBuf, Link};
use crate::ports::{FlowKey, PortError, Protocol, SharedPorts};
use crate::tcp::{
    self, rst_for_unmatched, CloseReason, Connection, FourTuple, IsnKey, Listener, RecvError,
    SendHalf, State,
};
use crate::time::Instant;
use crate::timer::{TimerHandle, TimerWheel};
use crate::wire::frame::emit_ipv4_tcp;
use crate::wire::{
    ethertype, ip_protocol, EthernetAddress, EthernetRepr, Ipv4Repr, SeqNumber, TcpRepr,
};

/// Settings of one shard's TCP half.
#[derive(Debug, Clone)]
pub struct TcpShardConfig {
    /// The stack's address.
    pub ip: Ipv4Addr,
    /// The interface's MAC.
    pub mac: Mac,
    /// Engine settings of every connection (MSS from the link's MTU).
    pub tcp: tcp::Config,
    /// Connections the table holds (TIME-WAIT included).
    pub max_connections: usize,
    pub syn_backlog: usize,
    pub accept_backlog: usize,
    /// Answer segments for no connection and no listener with RST
    /// (dedicated mode); otherwise they are dropped and counted.
    pub reset_unmatched: bool,
    /// This shard's index in the port service (its ephemeral slice).
    pub shard: usize,
}

impl TcpShardConfig {
    /// Defaults for `ip`/`mac` on a link with IP MTU `mtu`.
    pub fn new(ip: Ipv4Addr, mac: Mac, mtu: usize) -> TcpShardConfig {
        TcpShardConfig {
            ip,
            mac,
            tcp: tcp::Config {
                mss: mtu.saturating_sub(40).clamp(64, 65495) as u16,
                ..tcp::Config::default()
            },
            max_connections: 65536,
            syn_backlog: 1024,
            accept_backlog: 1024,
            reset_unmatched: true,
            shard: 0,
        }
    }
}

/// Why a segment or an operation failed at the shard level (the engine's
/// own drops are counted by [`tcp::DropReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpShardDrop {
    /// No connection and no listener; dropped (shared mode).
    Unmatched,
    /// The connection table is full: SYN dropped, connect refused.
    TableFull,
    /// No free transmit frame: the segment waits for the next call.
    NoTxFrame,
    /// No MAC for the peer yet: transmission waits.
    NoRoute,
}

impl TcpShardDrop {
    pub const COUNT: usize = 4;
    pub const ALL: [TcpShardDrop; TcpShardDrop::COUNT] = [
        TcpShardDrop::Unmatched,
        TcpShardDrop::TableFull,
        TcpShardDrop::NoTxFrame,
        TcpShardDrop::NoRoute,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            TcpShardDrop::Unmatched => "unmatched",
            TcpShardDrop::TableFull => "table_full",
            TcpShardDrop::NoTxFrame => "no_tx_frame",
            TcpShardDrop::NoRoute => "no_route",
        }
    }
}

impl fmt::Display for TcpShardDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for TcpShardDrop {}

/// Counters of one shard's TCP half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpShardCounters {
    pub segments_in: u64,
    pub segments_out: u64,
    pub resets_sent: u64,
    pub accepted: u64,
    pub connected: u64,
    /// Connections removed from the table.
    pub closed: u64,
    /// Segments handed to the other shards ([`ShardTcp::set_forwarding`]).
    pub forwarded: u64,
    /// Loss recovery of the connections removed so far (their
    /// [`tcp::Counters`]): retransmission timeouts, segments sent again,
    /// fast-retransmit episodes, tail loss probes.
    pub rto: u64,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub tlp_probes: u64,
    /// TIME-WAIT connections ended early so an active open could reuse
    /// their port (see the module docs).
    pub tw_reused: u64,
    pub drops: [u64; TcpShardDrop::COUNT],
    /// Segments the engine dropped, by [`tcp::DropReason`].
    pub engine_drops: [u64; tcp::DropReason::COUNT],
}

impl TcpShardCounters {
    pub fn dropped(&self, r: TcpShardDrop) -> u64 {
        self.drops[r as usize]
    }

    pub fn engine_dropped(&self, r: tcp::DropReason) -> u64 {
        self.engine_drops[r as usize]
    }

    /// `key=value` pairs, every drop reason present.
    pub fn to_kv(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "tcp_in={} tcp_out={} tcp_rst_out={} tcp_accepted={} tcp_connected={} tcp_closed={} \
             tcp_forwarded={}",
            self.segments_in,
            self.segments_out,
            self.resets_sent,
            self.accepted,
            self.connected,
            self.closed,
            self.forwarded
        );
        let _ = write!(
            s,
            " tcp_rto={} tcp_retransmits={} tcp_fast_retransmits={} tcp_tlp_probes={} \
             tcp_tw_reused={}",
            self.rto, self.retransmits, self.fast_retransmits, self.tlp_probes, self.tw_reused
        );
        for r in TcpShardDrop::ALL {
            let _ = write!(s, " tcp_drop_{}={}", r.name(), self.dropped(r));
        }
        let engine: u64 = self.engine_drops.iter().sum();
        let _ = write!(s, " tcp_engine_drops={engine}");
        // The reasons behind the total, only those that happened.
        for r in tcp::DropReason::ALL {
            let n = self.engine_dropped(r);
            if n > 0 {
                let _ = write!(s, " tcp_engine_drop_{r:?}={n}");
            }
        }
        s
    }

    /// Adds `o` into `self` (totals over workers).
    pub fn add(&mut self, o: &TcpShardCounters) {
        self.segments_in += o.segments_in;
        self.segments_out += o.segments_out;
        self.resets_sent += o.resets_sent;
        self.accepted += o.accepted;
        self.connected += o.connected;
        self.closed += o.closed;
        self.forwarded += o.forwarded;
        self.rto += o.rto;
        self.retransmits += o.retransmits;
        self.fast_retransmits += o.fast_retransmits;
        self.tlp_probes += o.tlp_probes;
        self.tw_reused += o.tw_reused;
        for i in 0..TcpShardDrop::COUNT {
            self.drops[i] += o.drops[i];
        }
        for i in 0..tcp::DropReason::COUNT {
            self.engine_drops[i] += o.engine_drops[i];
        }
    }
}

/// Why an active open failed before any segment was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// No free port in the shard's slice.
    NoPort,
    TableFull,
    /// The handler index is unknown.
    NoHandler,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NoPort => f.write_str("no free ephemeral port"),
            ConnectError::TableFull => f.write_str("connection table full"),
            ConnectError::NoHandler => f.write_str("no such handler"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<ConnectError> for std::io::Error {
    fn from(e: ConnectError) -> std::io::Error {
        let kind = match e {
            ConnectError::NoPort => std::io::ErrorKind::AddrNotAvailable,
            ConnectError::TableFull => std::io::ErrorKind::OutOfMemory,
            ConnectError::NoHandler => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// The destination MAC of segments sent before the peer's MAC is known
/// (see [`ShardTcp::set_park_unresolved`]).
pub const UNRESOLVED_MAC: Mac = [0; 6];

/// How long an actively opened connection stays in TIME-WAIT before its
/// port may be reused by a new active open (Linux's default
/// `tcp_tw_reuse_delay`): the timestamp clock (1 ms per tick) has then
/// moved on well past anything the old incarnation sent.
pub const TW_REUSE_DELAY: crate::time::Duration = crate::time::Duration::from_secs(1);

/// How often a connection without a peer MAC asks the resolver again.
const NO_ROUTE_RETRY: crate::time::Duration = crate::time::Duration::from_millis(10);

/// Index of a handler registered with [`ShardTcp::add_handler`].
pub type HandlerId = usize;

/// The handler of thread-side streams ([`crate::api::tcp::TcpStream`]):
/// the shard's [`StreamBridge`].
pub const STREAMS: HandlerId = usize::MAX;

/// The handler `id` (the stream bridge for [`STREAMS`]).
fn handler_of<'a>(
    handlers: &'a mut [Box<dyn TcpHandler>],
    bridge: &'a mut StreamBridge,
    id: HandlerId,
) -> &'a mut dyn TcpHandler {
    if id == STREAMS {
        bridge
    } else {
        handlers[id].as_mut()
    }
}

struct Entry {
    conn: Connection,
    handler: HandlerId,
    peer_mac: Option<Mac>,
    /// The wheel entry for `deadline`.
    timer: Option<TimerHandle>,
    deadline: Option<Instant>,
    /// The application's timer.
    app_timer: Option<Instant>,
    /// on_accept/on_connect, on_peer_closed, on_close were called.
    opened: bool,
    fin_seen: bool,
    /// on_close for TIME-WAIT or CLOSED, and for CLOSED.
    close_seen: bool,
    final_seen: bool,
    /// The local port came from the port service.
    ephemeral: bool,
    /// In the dirty list.
    dirty: bool,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

struct ListenerEntry {
    listener: Listener,
    handler: HandlerId,
    timer: Option<TimerHandle>,
    deadline: Option<Instant>,
    dirty: bool,
}

#[derive(Debug, Clone, Copy)]
enum TimerKey {
    Conn(u32, u32),
    Listener(u32),
}

/// A RST (or other stateless reply) waiting for a transmit frame.
struct Reply {
    remote: Ipv4Addr,
    mac: Mac,
    seg: TcpRepr<'static>,
}

/// One shard's TCP half: see the module docs.
pub struct ShardTcp {
    cfg: TcpShardConfig,
    key: IsnKey,
    table: ConnTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    listeners: Vec<ListenerEntry>,
    handlers: Vec<Box<dyn TcpHandler>>,
    bridge: StreamBridge,
    wheel: TimerWheel<TimerKey>,
    expired: Vec<(TimerHandle, TimerKey)>,
    /// Slots touched since the last transmit.
    dirty: Vec<u32>,
    /// Kept between calls to avoid allocating.
    dirty_next: Vec<u32>,
    replies: VecDeque<Reply>,
    /// Memory of finished connections for new ones (at most
    /// [`STORAGE_POOL`]): no allocation per connection in steady state.
    storage: Vec<tcp::ConnStorage>,
    /// MACs of peers that reached a listener, for their SYN-ACKs.
    syn_macs: HashMap<Ipv4Addr, Mac>,
    ports: Option<SharedPorts>,
    /// Other shards exist: see [`ShardTcp::set_forwarding`].
    forwarding: bool,
    /// See [`ShardTcp::set_park_unresolved`].
    park_unresolved: bool,
    /// TIME-WAIT connections whose port may be reused (actively opened,
    /// with timestamps), with when they entered TIME-WAIT, oldest first.
    /// Entries of connections gone since are stale (generation).
    tw_reusable: VecDeque<(ConnId, Instant)>,
    /// Final `on_close` calls of connections removed while the handlers
    /// were out of the shard (TIME-WAIT reuse inside a handler's `poll`).
    final_closes: Vec<(HandlerId, ConnId, CloseReason)>,
    counters: TcpShardCounters,
}

/// Where a segment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This shard's queue.
    Local,
    /// Another shard, which had no connection for it.
    Forwarded,
}

/// What [`ShardTcp::on_segment_from`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demux {
    Handled,
    /// Not this shard's: hand the frame to the other shards.
    Forward,
}

impl fmt::Debug for ShardTcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardTcp")
            .field("ip", &self.cfg.ip)
            .field("connections", &self.table.len())
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// Most peers remembered for SYN-ACKs; the map is cleared beyond it.
const SYN_MACS_MAX: usize = 65536;
/// Finished connections' memory kept for reuse (about 8 KiB each): enough
/// for the connections a busy shard opens between two closes.
const STORAGE_POOL: usize = 256;

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl ShardTcp {
    /// A shard half with ISN key `key` (one per stack, RFC 6528) and the
    /// port service for active opens (`None`: no active opens).
    pub fn new(
        cfg: TcpShardConfig,
        key: IsnKey,
        ports: Option<SharedPorts>,
        now: Instant,
    ) -> ShardTcp {
        ShardTcp {
            table: ConnTable::with_capacity(cfg.max_connections),
            bridge: StreamBridge::new(cfg.shard),
            cfg,
            key,
            slots: Vec::new(),
            free: Vec::new(),
            listeners: Vec::new(),
            handlers: Vec::new(),
            wheel: TimerWheel::new(now),
            expired: Vec::new(),
            dirty: Vec::new(),
            dirty_next: Vec::new(),
            replies: VecDeque::new(),
            storage: Vec::new(),
            syn_macs: HashMap::new(),
            ports,
            forwarding: false,
            park_unresolved: false,
            tw_reusable: VecDeque::new(),
            final_closes: Vec::new(),
            counters: TcpShardCounters::default(),
        }
    }

    pub fn config(&self) -> &TcpShardConfig {
        &self.cfg
    }

    /// With several shards, a segment of a connection another shard owns
    /// can reach this one (on veth the peer picks its transmit queue by the
    /// CPU it runs on, which may change during a connection). With
    /// forwarding on, a segment without SYN for no connection and no
    /// handshake here is not answered but reported as [`Demux::Forward`],
    /// for the caller to hand to the other shards; they process it only if
    /// it is theirs ([`Origin::Forwarded`]). The price: such a segment for
    /// a connection nobody has is dropped (counted) instead of reset.
    pub fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    /// With `on`, a connection whose peer MAC the resolver does not know
    /// still transmits: its segments (an active open's SYN) go to the sink
    /// addressed to [`UNRESOLVED_MAC`], for the caller to hold in its
    /// neighbour cache while ARP resolves (dedicated mode, where the shard
    /// does its own ARP). The engine's retransmission timer runs as for
    /// any sent segment, so a peer that never answers ARP ends in the
    /// connection's SYN timeout. Off: such a connection waits, counted as
    /// [`TcpShardDrop::NoRoute`].
    pub fn set_park_unresolved(&mut self, on: bool) {
        self.park_unresolved = on;
    }

    pub fn counters(&self) -> &TcpShardCounters {
        &self.counters
    }

    /// Connections in the table (TIME-WAIT included).
    pub fn connections(&self) -> usize {
        self.table.len()
    }

    /// The connection behind `id`, if it still exists.
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        let s = self.slots.get(id.slot as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.entry.as_ref().map(|e| &e.conn)
    }

    /// Registers a handler; listeners and active opens refer to it.
    pub fn add_handler(&mut self, h: Box<dyn TcpHandler>) -> HandlerId {
        self.handlers.push(h);
        self.handlers.len() - 1
    }

    /// The handler `id`, for inspection.
    pub fn handler_mut(&mut self, id: HandlerId) -> Option<&mut (dyn TcpHandler + 'static)> {
        self.handlers.get_mut(id).map(|b| b.as_mut())
    }

    /// Listens on `port` (the caller has reserved it and steers it);
    /// accepted connections go to `handler`. False if the port already
    /// listens or the handler is unknown.
    pub fn listen(&mut self, port: u16, handler: HandlerId) -> bool {
        if (handler >= self.handlers.len() && handler != STREAMS) || self.is_listening(port) {
            return false;
        }
        let listener = Listener::new(
            self.cfg.tcp.clone(),
            SocketAddrV4::new(self.cfg.ip, port),
            self.key,
            self.cfg.syn_backlog,
            self.cfg.accept_backlog,
        );
        self.listeners.push(ListenerEntry {
            listener,
            handler,
            timer: None,
            deadline: None,
            dirty: false,
        });
        true
    }

    /// The counters of the listener on `port`.
    pub fn listener_counters(&self, port: u16) -> Option<tcp::ListenerCounters> {
        self.listeners
            .iter()
            .find(|l| l.listener.local().port() == port)
            .map(|l| *l.listener.counters())
    }

    pub fn is_listening(&self, port: u16) -> bool {
        self.listeners
            .iter()
            .any(|l| l.listener.local().port() == port)
    }

    /// Stops listening on `port` (connections already accepted stay).
    pub fn unlisten(&mut self, port: u16) -> bool {
        let Some(i) = self
            .listeners
            .iter()
            .position(|l| l.listener.local().port() == port)
        else {
            return false;
        };
        let l = self.listeners.swap_remove(i);
        if let Some(h) = l.timer {
            self.wheel.cancel(h);
        }
        // The swapped listener's wheel key names the old index: re-arm it.
        if let Some(moved) = self.listeners.get_mut(i) {
            if let Some(h) = moved.timer.take() {
                self.wheel.cancel(h);
            }
            moved.deadline = None;
            moved.dirty = true;
        }
        true
    }

    /// Active open to `remote` for `handler`; `mac` is the next hop's MAC
    /// if known (otherwise the resolver of `poll_transmit` is asked). The
    /// SYN leaves at the next [`ShardTcp::poll_transmit`].
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        handler: HandlerId,
        mac: Option<Mac>,
    ) -> Result<ConnId, ConnectError> {
        if handler >= self.handlers.len() && handler != STREAMS {
            return Err(ConnectError::NoHandler);
        }
        let r = self.open(now, remote, handler, mac);
        self.deliver_final_closes(now);
        r
    }

    /// [`ShardTcp::connect`] for a handler known to exist.
    fn open(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        handler: HandlerId,
        mac: Option<Mac>,
    ) -> Result<ConnId, ConnectError> {
        let mut reused = None;
        if self.table.len() >= self.table.capacity() {
            // A table full of TIME-WAIT gives way as the ports do below.
            reused = self.reuse_time_wait(now);
            if reused.is_none() {
                self.count(TcpShardDrop::TableFull);
                return Err(ConnectError::TableFull);
            }
        }
        let port = match self.allocate_port(remote) {
            Err(Some(PortError::Exhausted)) if reused.is_none() => {
                reused = self.reuse_time_wait(now);
                match reused {
                    Some(_) => self.allocate_port(remote),
                    None => Err(Some(PortError::Exhausted)),
                }
            }
            r => r,
        }
        .map_err(|_| ConnectError::NoPort)?;
        let tuple = FourTuple {
            local: SocketAddrV4::new(self.cfg.ip, port),
            remote,
        };
        let conn = match reused {
            // The same 4-tuple as the connection that just left TIME-WAIT:
            // start beyond its sequence space.
            Some((old, snd_max)) if old == tuple => {
                Connection::connect_after(self.cfg.tcp.clone(), tuple, now, &self.key, snd_max)
            }
            _ => Connection::connect(self.cfg.tcp.clone(), tuple, now, &self.key),
        };
        match self.insert(conn, handler, mac, true) {
            Some(id) => Ok(id),
            None => {
                self.release_port(port);
                Err(ConnectError::TableFull)
            }
        }
    }

    /// A free local port for an active open to `remote` from this shard's
    /// slice, skipping ports whose 4-tuple is in the table (`Err(None)`:
    /// no port service, or it is unusable).
    fn allocate_port(&self, remote: SocketAddrV4) -> Result<u16, Option<PortError>> {
        let ports = self.ports.as_ref().ok_or(None)?;
        let local_ip = self.cfg.ip;
        let flow = FlowKey {
            local_addr: local_ip,
            remote_addr: *remote.ip(),
            remote_port: remote.port(),
        };
        let table = &self.table;
        let mut ps = ports.lock().map_err(|_| None)?;
        ps.allocate_filtered(Protocol::Tcp, self.cfg.shard, flow, |p| {
            !table.contains_key(&ConnKey::new(SocketAddrV4::new(local_ip, p), remote))
        })
        .map_err(Some)
    }

    /// Whether `id` is still a connection in TIME-WAIT.
    fn in_time_wait(&self, id: ConnId) -> bool {
        self.slots.get(id.slot as usize).is_some_and(|s| {
            s.generation == id.generation
                && s.entry
                    .as_ref()
                    .is_some_and(|e| e.conn.state() == State::TimeWait)
        })
    }

    /// Remembers a connection that entered TIME-WAIT at `now` as a
    /// candidate for port reuse, dropping stale entries at the front (all
    /// wait 2*MSL, so the front is the first to go).
    fn push_time_wait(&mut self, id: ConnId, now: Instant) {
        while let Some(&(front, _)) = self.tw_reusable.front() {
            if self.in_time_wait(front) {
                break;
            }
            self.tw_reusable.pop_front();
        }
        self.tw_reusable.push_back((id, now));
    }

    /// Ends the oldest reusable TIME-WAIT connection that has waited at
    /// least [`TW_REUSE_DELAY`], giving its port back; its final
    /// `on_close` is queued. Returns its 4-tuple and SND.MAX.
    fn reuse_time_wait(&mut self, now: Instant) -> Option<(FourTuple, SeqNumber)> {
        loop {
            let &(id, since) = self.tw_reusable.front()?;
            if !self.in_time_wait(id) {
                self.tw_reusable.pop_front();
                continue;
            }
            // The oldest is too young: so are all the others.
            if now < since + TW_REUSE_DELAY {
                return None;
            }
            self.tw_reusable.pop_front();
            let e = self.slots[id.slot as usize].entry.as_ref()?;
            let old = (e.conn.tuple(), e.conn.tcb().snd_max);
            self.retire(id.slot);
            self.counters.tw_reused += 1;
            return Some(old);
        }
    }

    /// Removes the connection in `slot` before its time (TIME-WAIT that
    /// gives way), queueing its final `on_close`.
    fn retire(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let id = ConnId {
            slot,
            generation: s.generation,
        };
        if let Some(e) = s.entry.as_mut() {
            e.close_seen = true;
            if !e.final_seen {
                e.final_seen = true;
                let reason = e.conn.close_reason().unwrap_or(CloseReason::Normal);
                self.final_closes.push((e.handler, id, reason));
            }
        }
        self.remove(slot);
    }

    /// Delivers the queued final `on_close` calls (the handlers must be in
    /// the shard).
    fn deliver_final_closes(&mut self, now: Instant) {
        let ShardTcp {
            handlers,
            bridge,
            final_closes,
            ..
        } = self;
        for (h, id, reason) in final_closes.drain(..) {
            handler_of(handlers, bridge, h).on_close(now, id, Some(reason));
        }
    }

    /// Calls every handler's [`TcpHandler::poll`]; the connections one
    /// opens there are its own.
    pub fn poll_handlers(&mut self, now: Instant) {
        if self.handlers.is_empty() {
            return;
        }
        // Taken out for the calls so a handler can open connections through
        // the shard meanwhile (opening calls no handler back).
        let mut handlers = std::mem::take(&mut self.handlers);
        for (handler, h) in handlers.iter_mut().enumerate() {
            h.poll(
                now,
                &mut Opener {
                    tcp: self,
                    handler,
                    now,
                },
            );
        }
        self.handlers = handlers;
        self.deliver_final_closes(now);
    }

    /// Runs `f` on connection `id` as its handler would (to send, close or
    /// shut down from outside a callback); `None` if it is gone.
    pub fn with_conn<R>(
        &mut self,
        now: Instant,
        id: ConnId,
        f: impl FnOnce(&mut TcpConn<'_>) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let e = slot.entry.as_mut()?;
        let r = f(&mut TcpConn {
            id,
            conn: &mut e.conn,
            now,
            timer: &mut e.app_timer,
        });
        self.touch(id.slot);
        self.dispatch(now, id.slot);
        Some(r)
    }

    fn count(&mut self, r: TcpShardDrop) {
        self.counters.drops[r as usize] += 1;
    }

    fn release_port(&mut self, port: u16) {
        if let Some(ps) = &self.ports {
            if let Ok(mut ps) = ps.lock() {
                let _ = ps.release(Protocol::Tcp, port);
            }
        }
    }

    /// Puts `conn` into the slab and the table.
    fn insert(
        &mut self,
        mut conn: Connection,
        handler: HandlerId,
        mac: Option<Mac>,
        ephemeral: bool,
    ) -> Option<ConnId> {
        let t = conn.tuple();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        if self
            .table
            .insert(ConnKey::new(t.local, t.remote), slot)
            .is_err()
        {
            self.free.push(slot);
            self.count(TcpShardDrop::TableFull);
            return None;
        }
        if let Some(st) = self.storage.pop() {
            conn.install_storage(st);
        }
        let s = &mut self.slots[slot as usize];
        s.entry = Some(Entry {
            conn,
            handler,
            peer_mac: mac,
            timer: None,
            deadline: None,
            app_timer: None,
            opened: false,
            fin_seen: false,
            close_seen: false,
            final_seen: false,
            ephemeral,
            dirty: false,
        });
        let id = ConnId {
            slot,
            generation: s.generation,
        };
        self.touch(slot);
        Some(id)
    }

    /// Removes the connection in `slot` (its output has been sent).
    fn remove(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        let Some(e) = s.entry.take() else {
            return;
        };
        s.generation = s.generation.wrapping_add(1);
        if let Some(h) = e.timer {
            self.wheel.cancel(h);
        }
        let t = e.conn.tuple();
        self.table.remove(&ConnKey::new(t.local, t.remote));
        self.free.push(slot);
        self.counters.closed += 1;
        let c = e.conn.counters();
        self.counters.rto += c.timeouts;
        self.counters.retransmits += c.retransmits;
        self.counters.fast_retransmits += c.fast_retransmits;
        self.counters.tlp_probes += c.tlp_probes;
        if e.ephemeral {
            self.release_port(t.local.port());
        }
        if self.storage.len() < STORAGE_POOL {
            let st = e.conn.into_storage();
            if !st.is_empty() {
                self.storage.push(st);
            }
        }
    }

    fn touch(&mut self, slot: u32) {
        if let Some(e) = self.slots[slot as usize].entry.as_mut() {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// One received segment, already parsed with its checksum verified:
    /// from `src` (whose frame came from `src_mac`) to this shard's address.
    pub fn on_segment(&mut self, now: Instant, src_mac: Mac, src: Ipv4Addr, seg: &TcpRepr<'_>) {
        self.on_segment_from(now, src_mac, src, seg, Origin::Local);
    }

    /// [`ShardTcp::on_segment`] for a segment from `origin`; see
    /// [`ShardTcp::set_forwarding`].
    pub fn on_segment_from(
        &mut self,
        now: Instant,
        src_mac: Mac,
        src: Ipv4Addr,
        seg: &TcpRepr<'_>,
        origin: Origin,
    ) -> Demux {
        self.counters.segments_in += 1;
        let local = SocketAddrV4::new(self.cfg.ip, seg.dst_port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        let key = ConnKey::new(local, remote);
        if let Some(slot) = self.table.get(&key) {
            let reopen = self.slots[slot as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.conn.syn_may_reopen(seg));
            if !reopen {
                let ShardTcp {
                    slots,
                    handlers,
                    bridge,
                    counters,
                    ..
                } = self;
                let s = &mut slots[slot as usize];
                let id = ConnId {
                    slot,
                    generation: s.generation,
                };
                let Some(e) = s.entry.as_mut() else {
                    return Demux::Handled;
                };
                e.peer_mac = Some(src_mac);
                // Once the application has the connection, in-order bytes
                // reach it straight from the frame (zero copy).
                let r = if e.opened {
                    let h = handler_of(handlers, bridge, e.handler);
                    let mut deliver =
                        |data: &[u8], tx: &mut SendHalf<'_>| h.on_data(now, id, data, tx);
                    e.conn.on_segment_deliver(now, seg, Some(&mut deliver))
                } else {
                    e.conn.on_segment(now, seg)
                };
                if let Err(r) = r {
                    counters.engine_drops[r as usize] += 1;
                }
                self.touch(slot);
                self.dispatch(now, slot);
                return Demux::Handled;
            }
            // RFC 6191: the old incarnation in TIME-WAIT gives way (its
            // handler still hears that it is gone).
            self.retire(slot);
            self.deliver_final_closes(now);
        }
        let li = self
            .listeners
            .iter()
            .position(|l| l.listener.local().port() == seg.dst_port);
        let embryo = li.is_some_and(|i| self.listeners[i].listener.has_embryonic(remote));
        // Only a connection request (SYN without ACK) is surely for this
        // shard's listener; anything else may be another shard's.
        let request = seg.flags.syn() && !seg.flags.ack();
        if !request && !embryo {
            if origin == Origin::Forwarded {
                self.count(TcpShardDrop::Unmatched);
                return Demux::Handled;
            }
            if self.forwarding {
                self.counters.segments_in -= 1;
                self.counters.forwarded += 1;
                return Demux::Forward;
            }
        }
        let Some(li) = li else {
            self.unmatched(src, src_mac, seg);
            return Demux::Handled;
        };
        if seg.flags.syn() && self.table.len() >= self.table.capacity() {
            self.count(TcpShardDrop::TableFull);
            return Demux::Handled;
        }
        if self.syn_macs.len() >= SYN_MACS_MAX {
            self.syn_macs.clear();
        }
        self.syn_macs.insert(src, src_mac);
        let l = &mut self.listeners[li];
        if let Err(r) = l
            .listener
            .on_segment_pooled(now, remote, seg, &mut self.storage)
        {
            self.counters.engine_drops[r as usize] += 1;
        }
        l.dirty = true;
        self.accept_from(now, li);
        Demux::Handled
    }

    fn unmatched(&mut self, src: Ipv4Addr, src_mac: Mac, seg: &TcpRepr<'_>) {
        if !self.cfg.reset_unmatched {
            return self.count(TcpShardDrop::Unmatched);
        }
        // RFC 9293 §3.10.7.1: the CLOSED state answers with RST (never
        // to a RST).
        match rst_for_unmatched(seg) {
            Some(rst) => self.replies.push_back(Reply {
                remote: src,
                mac: src_mac,
                seg: rst,
            }),
            None => self.count(TcpShardDrop::Unmatched),
        }
    }

    /// Moves established connections from listener `li` into the table.
    fn accept_from(&mut self, now: Instant, li: usize) {
        while let Some(conn) = self.listeners[li].listener.accept() {
            let handler = self.listeners[li].handler;
            let mac = self.syn_macs.get(conn.tuple().remote.ip()).copied();
            if let Some(id) = self.insert(conn, handler, mac, false) {
                self.counters.accepted += 1;
                self.dispatch(now, id.slot);
            }
        }
    }

    /// Runs the handler callbacks a connection's new state calls for.
    fn dispatch(&mut self, now: Instant, slot: u32) {
        let ShardTcp {
            slots,
            handlers,
            bridge,
            counters,
            ..
        } = self;
        let s = &mut slots[slot as usize];
        let id = ConnId {
            slot,
            generation: s.generation,
        };
        let Some(e) = s.entry.as_mut() else {
            return;
        };
        let h = handler_of(handlers, bridge, e.handler);
        let state = e.conn.state();
        if !e.opened && state.is_synchronized() && state != State::SynReceived {
            e.opened = true;
            let mut c = TcpConn {
                id,
                conn: &mut e.conn,
                now,
                timer: &mut e.app_timer,
            };
            if e.ephemeral {
                counters.connected += 1;
                h.on_connect(now, &mut c);
            } else {
                h.on_accept(now, &mut c);
            }
        }
        // Data left in the receive buffer is still delivered in TIME-WAIT
        // (an application may read slower than the peer closes).
        if e.opened {
            loop {
                let (data, mut tx) = e.conn.split();
                if data.is_empty() {
                    break;
                }
                let len = data.len();
                let n = h.on_data(now, id, data, &mut tx).min(len);
                if n == 0 {
                    break;
                }
                e.conn.consume(n);
            }
            let mut c = TcpConn {
                id,
                conn: &mut e.conn,
                now,
                timer: &mut e.app_timer,
            };
            if c.conn.can_send() {
                h.on_writable(now, &mut c);
            }
            if !e.fin_seen && matches!(e.conn.peek(), Err(RecvError::Finished)) {
                e.fin_seen = true;
                h.on_peer_closed(
                    now,
                    &mut TcpConn {
                        id,
                        conn: &mut e.conn,
                        now,
                        timer: &mut e.app_timer,
                    },
                );
            }
        }
        let state = e.conn.state();
        let mut reusable = false;
        if !e.close_seen && state == State::TimeWait {
            e.close_seen = true;
            reusable = e.ephemeral && e.conn.tcb().ts_enabled;
            h.on_close(now, id, None);
        }
        if !e.final_seen && state == State::Closed {
            e.close_seen = true;
            e.final_seen = true;
            let reason = e.conn.close_reason().unwrap_or(CloseReason::Normal);
            h.on_close(now, id, Some(reason));
        }
        if reusable {
            self.push_time_wait(id, now);
        }
    }

    /// A command from a thread-side handle ([`crate::api::tcp`]).
    pub fn command(&mut self, now: Instant, cmd: TcpCommand) {
        let id = match &cmd {
            TcpCommand::Listen {
                port,
                accepted,
                reply,
            } => {
                let r = if self.listen(*port, STREAMS) {
                    self.bridge.add_listener(*port, accepted.clone());
                    Ok(())
                } else {
                    Err(std::io::ErrorKind::AddrInUse)
                };
                let _ = reply.send(r);
                return;
            }
            TcpCommand::Unlisten { port } => {
                self.bridge.remove_listener(*port);
                self.unlisten(*port);
                return;
            }
            TcpCommand::Connect { remote, events } => {
                match self.connect(now, *remote, STREAMS, None) {
                    Ok(id) => self.bridge.attach(id, events.clone()),
                    Err(e) => {
                        let _ = events.send(StreamEvent::Error(std::io::Error::from(e).kind()));
                    }
                }
                return;
            }
            TcpCommand::Write { id, .. }
            | TcpCommand::Consumed { id, .. }
            | TcpCommand::ShutdownWrite { id }
            | TcpCommand::Close { id }
            | TcpCommand::SetNodelay { id, .. } => *id,
        };
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        let Some(e) = slot.entry.as_mut() else {
            return;
        };
        self.bridge.apply(
            &mut TcpConn {
                id,
                conn: &mut e.conn,
                now,
                timer: &mut e.app_timer,
            },
            cmd,
        );
        self.touch(id.slot);
        self.dispatch(now, id.slot);
    }

    /// The earliest time [`ShardTcp::poll_transmit`] has work without new
    /// input (`Some(past)` when connections are waiting to transmit).
    pub fn poll_at(&self) -> Option<Instant> {
        let pending = !self.dirty.is_empty()
            || !self.replies.is_empty()
            || self.listeners.iter().any(|l| l.dirty);
        if pending {
            return Some(Instant::ZERO);
        }
        self.wheel.next_deadline()
    }

    /// Runs due timers, then writes every segment that is ready into frames
    /// from `link`, handing each to `sink` (the shard's transmit batch).
    /// `resolve` gives the MAC of a peer none is known for.
    pub fn poll_transmit<L: Link>(
        &mut self,
        now: Instant,
        link: &mut L,
        resolve: &mut dyn FnMut(Ipv4Addr) -> Option<Mac>,
        sink: &mut dyn FnMut(L::Frame),
    ) {
        self.run_timers(now);
        let (ip, mac) = (self.cfg.ip, self.cfg.mac);
        // Stateless replies first.
        while let Some(r) = self.replies.front() {
            let mut out = Out {
                ip,
                mac,
                counters: &mut self.counters,
            };
            if !out.emit(link, sink, r.remote, r.mac, &r.seg) {
                break;
            }
            out.counters.resets_sent += 1;
            self.replies.pop_front();
        }
        // Listeners: SYN-ACKs, their retransmissions, RSTs.
        for li in 0..self.listeners.len() {
            if self.listeners[li].dirty {
                self.transmit_listener(now, li, link, resolve, sink);
                self.accept_from(now, li);
            }
        }
        // Connections touched since the last call.
        let park = self.park_unresolved.then_some(UNRESOLVED_MAC);
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let g = self.slots[slot as usize].generation;
            let Some(e) = self.slots[slot as usize].entry.as_mut() else {
                continue;
            };
            e.dirty = false;
            let remote = *e.conn.tuple().remote.ip();
            if e.peer_mac.is_none() {
                e.peer_mac = resolve(remote);
            }
            let mut blocked = false;
            let mut no_route = false;
            match e.peer_mac.or(park) {
                Some(peer) => {
                    let mut out = Out {
                        ip,
                        mac,
                        counters: &mut self.counters,
                    };
                    e.conn.poll_transmit(now, |seg| {
                        let ok = out.emit(link, sink, remote, peer, seg);
                        blocked |= !ok;
                        ok
                    });
                }
                None => {
                    self.counters.drops[TcpShardDrop::NoRoute as usize] += 1;
                    e.conn.handle_timeout(now);
                    no_route = true;
                }
            }
            if e.conn.state() == State::Closed {
                self.dispatch(now, slot);
                self.remove(slot);
                continue;
            }
            let mut want = min_opt(e.conn.poll_timeout(), e.app_timer);
            if no_route {
                // Nothing was sent, so no retransmission timer runs: come
                // back when the resolver may know the peer.
                want = min_opt(want, Some(now + NO_ROUTE_RETRY));
            }
            if want != e.deadline {
                if let Some(h) = e.timer.take() {
                    self.wheel.cancel(h);
                }
                if let Some(at) = want {
                    e.timer = Some(self.wheel.insert(at, TimerKey::Conn(slot, g)));
                }
                e.deadline = want;
            }
            if blocked {
                e.dirty = true;
                self.dirty_next.push(slot);
            }
        }
        // The blocked ones are offered again at the next call; the two
        // buffers swap so neither allocates in steady state.
        dirty.clear();
        std::mem::swap(&mut self.dirty_next, &mut dirty);
        self.dirty = dirty;
    }

    fn transmit_listener<L: Link>(
        &mut self,
        now: Instant,
        li: usize,
        link: &mut L,
        resolve: &mut dyn FnMut(Ipv4Addr) -> Option<Mac>,
        sink: &mut dyn FnMut(L::Frame),
    ) {
        let ShardTcp {
            cfg,
            listeners,
            syn_macs,
            counters,
            wheel,
            ..
        } = self;
        let mut out = Out {
            ip: cfg.ip,
            mac: cfg.mac,
            counters,
        };
        let l = &mut listeners[li];
        let mut blocked = false;
        l.listener.poll_transmit(now, |remote, seg| {
            let peer = syn_macs
                .get(remote.ip())
                .copied()
                .or_else(|| resolve(*remote.ip()));
            let Some(peer) = peer else {
                out.counters.drops[TcpShardDrop::NoRoute as usize] += 1;
                return true;
            };
            let ok = out.emit(link, sink, *remote.ip(), peer, seg);
            if ok && seg.flags.rst() {
                out.counters.resets_sent += 1;
            }
            blocked |= !ok;
            ok
        });
        l.dirty = blocked;
        let want = l.listener.poll_timeout();
        if want != l.deadline {
            if let Some(h) = l.timer.take() {
                wheel.cancel(h);
            }
            if let Some(at) = want {
                l.timer = Some(wheel.insert(at, TimerKey::Listener(li as u32)));
            }
            l.deadline = want;
        }
    }

    /// Expired wheel entries: connections run their timers (and the
    /// application's) and are marked for transmission.
    fn run_timers(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.advance(now, &mut expired);
        for (_, key) in expired.drain(..) {
            match key {
                TimerKey::Listener(li) => {
                    if let Some(l) = self.listeners.get_mut(li as usize) {
                        l.timer = None;
                        l.deadline = None;
                        l.dirty = true;
                    }
                }
                TimerKey::Conn(slot, g) => {
                    let ShardTcp {
                        slots,
                        handlers,
                        bridge,
                        ..
                    } = self;
                    let s = &mut slots[slot as usize];
                    if s.generation != g {
                        continue;
                    }
                    let Some(e) = s.entry.as_mut() else {
                        continue;
                    };
                    e.timer = None;
                    e.deadline = None;
                    if e.app_timer.is_some_and(|t| t <= now) {
                        e.app_timer = None;
                        let id = ConnId {
                            slot,
                            generation: g,
                        };
                        handler_of(handlers, bridge, e.handler).on_timer(
                            now,
                            &mut TcpConn {
                                id,
                                conn: &mut e.conn,
                                now,
                                timer: &mut e.app_timer,
                            },
                        );
                    }
                    e.conn.handle_timeout(now);
                    self.touch(slot);
                    self.dispatch(now, slot);
                }
            }
        }
        self.expired = expired;
    }
}

/// The [`TcpOpen`] of [`ShardTcp::poll_handlers`]: active opens for one
/// handler.
struct Opener<'a> {
    tcp: &'a mut ShardTcp,
    handler: HandlerId,
    now: Instant,
}

impl TcpOpen for Opener<'_> {
    fn connect(&mut self, remote: SocketAddrV4, mac: Option<Mac>) -> Result<ConnId, ConnectError> {
        self.tcp.open(self.now, remote, self.handler, mac)
    }
}

/// What writing a segment into a frame needs, borrowed apart from the slab.
struct Out<'a> {
    ip: Ipv4Addr,
    mac: Mac,
    counters: &'a mut TcpShardCounters,
}

impl Out<'_> {
    /// Writes `seg` to `remote` into a fresh frame for `sink`; false when
    /// no frame is free (the segment is offered again later).
    fn emit<L: Link>(
        &mut self,
        link: &mut L,
        sink: &mut dyn FnMut(L::Frame),
        remote: Ipv4Addr,
        mac: Mac,
        seg: &TcpRepr<'_>,
    ) -> bool {
        let Some(mut f) = link.alloc_tx() else {
            self.counters.drops[TcpShardDrop::NoTxFrame as usize] += 1;
            return false;
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(self.mac),
            dst_addr: EthernetAddress(mac),
            ethertype: ethertype::IPV4,
            vlan: None,
        };
        let ip = Ipv4Repr::new(self.ip.into(), remote.into(), ip_protocol::TCP, 0);
        let cap = f.capacity();
        f.set_len(cap);
        match emit_ipv4_tcp(f.data_mut(), &eth, &ip, seg) {
            Ok(n) => {
                f.set_len(n);
                self.counters.segments_out += 1;
                sink(f);
            }
            // Larger than the frame: the MSS exceeds the link (a
            // configuration error). Dropped; the engine retransmits.
            Err(_) => link.release(f),
        }
        true
    }
}
