//! The port management service: which (protocol, port) pairs the stack owns.
//!
//! It owns, per protocol (UDP, TCP), the set of bound 16-bit ports, the
//! ephemeral range and its partition into per-shard slices, and the
//! ephemeral allocator. It does not touch the eBPF ports map itself: every
//! change is queued as a [`PortEvent`] that the caller drains with
//! [`PortService::take_events`] and applies to the map, so the map follows
//! the table without this module doing I/O.
//!
//! Port classes: 0 is never bindable as such (it means "allocate one"),
//! 1–1023 are well-known, the configured ephemeral range is handed out by the
//! allocator, and every other port is "registered" (bindable by number only).
//!
//! Ephemeral range: in shared-address mode the kernel keeps allocating its
//! own ephemeral ports from `net.ipv4.ip_local_port_range` (32768–60999 by
//! default) on the same address, so the stack's range must not overlap it;
//! the default is 61000–65535. [`choose_ephemeral_range`] is the pure rule,
//! [`read_kernel_local_port_range`] the one helper that reads `/proc`.
//!
//! Sharding: the ephemeral range is cut into `shards` contiguous slices of
//! (nearly) equal size; [`PortService::allocate`] for shard `s` only returns
//! ports of slice `s`, and [`PortService::shard_of_port`] maps a port back to
//! its shard, so a packet for an ephemeral port can be routed to the shard
//! that opened it. Ports bound by number (servers) belong to no shard: every
//! worker serves them.
//!
//! Randomisation: RFC 6056 §3.3.4, Algorithm 4 ("Double-Hash Port
//! Selection"). `offset = F(key1, flow)`, `index = G(key2, flow)`, then ports
//! are tried at `min + (offset + table[index]) % num`, incrementing
//! `table[index]` on each try. Connections to different destinations get
//! unpredictable, independent sequences, while successive connections to the
//! same destination walk away from each other (fewer 4-tuple collisions with
//! TIME-WAIT). F and G are SipHash (std's `DefaultHasher`) over the secret
//! key followed by the flow, the prefix-key construction RFC 6056 describes
//! with MD5. `table` is 256 counters per shard seeded from the key.
//!
//! Reply steering (active opens on a NIC with RSS): with
//! [`PortService::set_reply_steering`], a TCP port allocated for a known
//! destination is also one whose replies the NIC's Toeplitz hash sends to
//! the queue of the allocating shard ([`crate::rss`]); the RFC 6056 order
//! is kept and the other ports are skipped, so a shard gets about 1/N of
//! its slice per destination. If its slice holds no such free port (a
//! table that never names the shard's queue, or exhaustion), the port is
//! allocated without steering and counted: forwarding between workers
//! still delivers its replies. Without RSS information (veth) nothing is
//! steered.
//!
//! Threads: the service is plain data (`Send`); share it as
//! `Arc<Mutex<PortService>>` ([`SharedPorts`]) on the control path only
//! (bind, connect, close). The per-packet path never consults it: workers use
//! their own socket tables and [`PortPartition`], a `Copy` value.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use crate::rss::RssConfig;

/// Transport protocols with a port space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Udp, Protocol::Tcp];

    /// The IPv4 protocol number (RFC 790).
    pub const fn ip_number(self) -> u8 {
        match self {
            Protocol::Udp => 17,
            Protocol::Tcp => 6,
        }
    }

    const fn index(self) -> usize {
        match self {
            Protocol::Udp => 0,
            Protocol::Tcp => 1,
        }
    }
}

/// Errors of the port service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortError {
    /// The port is already bound for this protocol.
    AddrInUse,
    /// No free port left in the (shard's) ephemeral range.
    Exhausted,
    /// `release` of a port that is not bound.
    NotBound,
    /// A range that is empty, starts at 0, or reaches into 1–1023 where an
    /// ephemeral range is required.
    InvalidRange,
    /// The ephemeral range overlaps the kernel's local port range.
    OverlapsKernelRange,
    /// Shard count is zero or larger than the ephemeral range, or a shard
    /// index out of bounds.
    InvalidShard,
    /// Text that is not a `first last` port range.
    Parse,
}

impl PortError {
    /// The `io::ErrorKind` an API surface reports for this error.
    pub fn kind(self) -> io::ErrorKind {
        match self {
            PortError::AddrInUse => io::ErrorKind::AddrInUse,
            PortError::Exhausted => io::ErrorKind::AddrNotAvailable,
            PortError::NotBound => io::ErrorKind::NotFound,
            PortError::InvalidRange
            | PortError::OverlapsKernelRange
            | PortError::InvalidShard
            | PortError::Parse => io::ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            PortError::AddrInUse => "address in use: port already bound",
            PortError::Exhausted => "no free ephemeral port",
            PortError::NotBound => "port not bound",
            PortError::InvalidRange => "invalid port range",
            PortError::OverlapsKernelRange => {
                "ephemeral range overlaps the kernel's ip_local_port_range"
            }
            PortError::InvalidShard => "invalid shard count or index",
            PortError::Parse => "malformed port range text",
        };
        f.write_str(s)
    }
}

impl std::error::Error for PortError {}

impl From<PortError> for io::Error {
    fn from(e: PortError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// An inclusive range of ports, never containing 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The stack's default ephemeral range: just above the kernel's default
    /// `ip_local_port_range` (32768–60999).
    pub const DEFAULT_EPHEMERAL: PortRange = PortRange {
        first: 61000,
        last: 65535,
    };
    /// The kernel's default `net.ipv4.ip_local_port_range`.
    pub const KERNEL_DEFAULT_LOCAL: PortRange = PortRange {
        first: 32768,
        last: 60999,
    };
    /// The well-known ports (RFC 6335 §6: system ports).
    pub const WELL_KNOWN: PortRange = PortRange {
        first: 1,
        last: 1023,
    };

    pub fn new(first: u16, last: u16) -> Result<PortRange, PortError> {
        if first == 0 || first > last {
            return Err(PortError::InvalidRange);
        }
        Ok(PortRange { first, last })
    }

    pub const fn first(self) -> u16 {
        self.first
    }

    pub const fn last(self) -> u16 {
        self.last
    }

    /// Number of ports (1..=65535, so it needs more than u16 only at 65535).
    pub const fn len(self) -> u32 {
        self.last as u32 - self.first as u32 + 1
    }

    /// Never true: a `PortRange` holds at least one port.
    pub const fn is_empty(self) -> bool {
        false
    }

    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    pub const fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    pub fn iter(self) -> RangeInclusive<u16> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// What a port number is, given the configured ephemeral range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortClass {
    /// Port 0: "any", never bound as such.
    Zero,
    /// 1–1023.
    WellKnown,
    /// Inside the configured ephemeral range.
    Ephemeral,
    /// Everything else.
    Registered,
}

/// Parses the text of `/proc/sys/net/ipv4/ip_local_port_range` ("32768\t60999").
pub fn parse_local_port_range(text: &str) -> Result<PortRange, PortError> {
    let mut it = text.split_whitespace();
    let first = it.next().and_then(|s| s.parse::<u16>().ok());
    let last = it.next().and_then(|s| s.parse::<u16>().ok());
    match (first, last, it.next()) {
        (Some(a), Some(b), None) => PortRange::new(a, b),
        _ => Err(PortError::Parse),
    }
}

/// Reads the kernel's `net.ipv4.ip_local_port_range` (the one I/O helper of
/// this module; everything else is pure).
pub fn read_kernel_local_port_range() -> io::Result<PortRange> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    parse_local_port_range(&text).map_err(io::Error::from)
}

/// Picks the stack's ephemeral range given the kernel's.
///
/// With `wanted`, validates it: inside 1024–65535 and disjoint from
/// `kernel`. Without, returns the gap above the kernel's range if it holds at
/// least [`MIN_PREFERRED_ABOVE`] ports (61000–65535 for the kernel default),
/// else the larger of the gaps above and below (within 1024–65535), or
/// `OverlapsKernelRange` if the kernel leaves no room.
pub fn choose_ephemeral_range(
    kernel: PortRange,
    wanted: Option<PortRange>,
) -> Result<PortRange, PortError> {
    if let Some(w) = wanted {
        if w.first < 1024 {
            return Err(PortError::InvalidRange);
        }
        if w.overlaps(kernel) {
            return Err(PortError::OverlapsKernelRange);
        }
        return Ok(w);
    }
    let below = if kernel.first > 1024 {
        PortRange::new(1024, kernel.first - 1).ok()
    } else {
        None
    };
    let above = if kernel.last < 65535 {
        PortRange::new(kernel.last.max(1023) + 1, 65535).ok()
    } else {
        None
    };
    // Prefer the gap above: ports below the kernel's range are where
    // servers (the kernel's included) bind by number.
    match (below, above) {
        (_, Some(a)) if a.len() >= MIN_PREFERRED_ABOVE => Ok(a),
        (Some(b), Some(a)) if b.len() > a.len() => Ok(b),
        (_, Some(a)) => Ok(a),
        (Some(b), None) => Ok(b),
        (None, None) => Err(PortError::OverlapsKernelRange),
    }
}

/// The smallest gap above the kernel's range that `choose_ephemeral_range`
/// takes without looking below it.
pub const MIN_PREFERRED_ABOVE: u32 = 1024;

/// The cut of the ephemeral range into per-shard slices. `Copy`, so each
/// worker keeps its own and classifies ports without any lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPartition {
    range: PortRange,
    shards: u16,
}

impl PortPartition {
    pub fn new(range: PortRange, shards: usize) -> Result<PortPartition, PortError> {
        if shards == 0 || shards as u64 > range.len() as u64 {
            return Err(PortError::InvalidShard);
        }
        Ok(PortPartition {
            range,
            shards: shards as u16,
        })
    }

    pub const fn range(self) -> PortRange {
        self.range
    }

    pub const fn shards(self) -> usize {
        self.shards as usize
    }

    /// Slice `shard`: ports `first + len*s/n ..= first + len*(s+1)/n - 1`.
    pub fn shard_range(self, shard: usize) -> Result<PortRange, PortError> {
        if shard >= self.shards() {
            return Err(PortError::InvalidShard);
        }
        let len = self.range.len() as u64;
        let n = self.shards as u64;
        let lo = self.range.first as u64 + len * shard as u64 / n;
        let hi = self.range.first as u64 + len * (shard as u64 + 1) / n - 1;
        PortRange::new(lo as u16, hi as u16)
    }

    /// The shard whose slice holds `port`, or `None` outside the range.
    pub fn shard_of_port(self, port: u16) -> Option<usize> {
        if !self.range.contains(port) {
            return None;
        }
        let len = self.range.len() as u64;
        let n = self.shards as u64;
        let off = (port - self.range.first) as u64;
        // Inverse of `shard_range`: the largest s with len*s/n <= off.
        let s = ((off + 1) * n - 1) / len;
        Some(s as usize)
    }
}

/// What identifies a flow for RFC 6056 port selection: the local address and
/// the remote endpoint. Unconnected binds use `FlowKey::UNSPECIFIED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local_addr: Ipv4Addr,
    pub remote_addr: Ipv4Addr,
    pub remote_port: u16,
}

impl FlowKey {
    pub const UNSPECIFIED: FlowKey = FlowKey {
        local_addr: Ipv4Addr::UNSPECIFIED,
        remote_addr: Ipv4Addr::UNSPECIFIED,
        remote_port: 0,
    };
}

/// A change of the owned-port set, to apply to the eBPF ports map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortEvent {
    /// The port became owned: insert it in the map.
    Bound(Protocol, u16),
    /// The port is no longer owned: remove it from the map.
    Released(Protocol, u16),
}

/// Configuration of a [`PortService`].
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    pub ephemeral: PortRange,
    pub shards: usize,
    /// Secret for the RFC 6056 hashes; random in production, fixed in tests.
    pub key: [u64; 2],
}

impl PortConfig {
    /// Default range, one shard, a fresh random key.
    pub fn new(shards: usize) -> PortConfig {
        PortConfig {
            ephemeral: PortRange::DEFAULT_EPHEMERAL,
            shards,
            key: random_key(),
        }
    }
}

impl PortConfig {
    /// For shared-address mode: `wanted` (or the rule of
    /// [`choose_ephemeral_range`]) checked against the kernel's current
    /// `ip_local_port_range`, so the stack and the kernel never pick the
    /// same ephemeral port. Reads `/proc`.
    pub fn avoiding_kernel(shards: usize, wanted: Option<PortRange>) -> io::Result<PortConfig> {
        let kernel = read_kernel_local_port_range()?;
        Ok(PortConfig {
            ephemeral: choose_ephemeral_range(kernel, wanted)?,
            ..PortConfig::new(shards)
        })
    }
}

/// A secret key from the process's randomly keyed `RandomState`.
pub fn random_key() -> [u64; 2] {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    [s.hash_one(0x5eed_u64), s.hash_one(0x1dea_u64)]
}

const TABLE_LEN: usize = 256;
const BITMAP_WORDS: usize = 65536 / 64;

/// Algorithm 4 state for one slice of the range.
#[derive(Clone)]
struct Allocator {
    range: PortRange,
    table: Box<[u32; TABLE_LEN]>,
}

impl Allocator {
    fn new(range: PortRange, key: [u64; 2], salt: u64) -> Allocator {
        let mut table = Box::new([0u32; TABLE_LEN]);
        // RFC 6056 §3.3.4: table[i] starts random, so the first port of a
        // fresh process is not predictable either.
        for (i, t) in table.iter_mut().enumerate() {
            *t = keyed_hash(key[1], &(salt, i as u64)) as u32;
        }
        Allocator { range, table }
    }
}

fn keyed_hash<T: Hash>(key: u64, value: &T) -> u64 {
    // SipHash with fixed keys; the secret goes in first (prefix key).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// The port service: bound-port tables per protocol, the ephemeral
/// allocator per shard, and the event queue for the eBPF ports map.
pub struct PortService {
    partition: PortPartition,
    key: [u64; 2],
    tables: Tables,
    /// One allocator per shard (indexed by shard), then one over the whole
    /// range for `bind(proto, 0)`; each shared by both protocols.
    allocs: Vec<Allocator>,
    steering: Option<ReplySteering>,
    steering_counters: SteeringCounters,
}

/// The bound-port bitmaps and the event queue, apart from the allocators so
/// both can be borrowed mutably at once.
struct Tables {
    bound: [Box<[u64; BITMAP_WORDS]>; 2],
    bound_count: [u32; 2],
    events: VecDeque<PortEvent>,
}

impl Tables {
    fn is_bound(&self, proto: Protocol, port: u16) -> bool {
        self.bound[proto.index()][port as usize / 64] & (1 << (port % 64)) != 0
    }

    fn mark(&mut self, proto: Protocol, port: u16) {
        self.bound[proto.index()][port as usize / 64] |= 1 << (port % 64);
        self.bound_count[proto.index()] += 1;
        self.events.push_back(PortEvent::Bound(proto, port));
    }

    fn unmark(&mut self, proto: Protocol, port: u16) {
        self.bound[proto.index()][port as usize / 64] &= !(1 << (port % 64));
        self.bound_count[proto.index()] -= 1;
        self.events.push_back(PortEvent::Released(proto, port));
    }

    /// RFC 6056 §3.3.4 Algorithm 4 over `alloc.range`.
    fn select(
        &mut self,
        key: [u64; 2],
        proto: Protocol,
        alloc: &mut Allocator,
        flow: FlowKey,
        accept: &mut dyn FnMut(u16) -> bool,
    ) -> Result<u16, PortError> {
        let num = alloc.range.len() as u64;
        let offset = keyed_hash(key[0], &(proto, flow));
        let index = keyed_hash(key[1], &flow) as usize % TABLE_LEN;
        for _ in 0..num {
            let t = alloc.table[index];
            alloc.table[index] = t.wrapping_add(1);
            let port = alloc.range.first() as u64 + offset.wrapping_add(t as u64) % num;
            let port = port as u16;
            if !self.is_bound(proto, port) && accept(port) {
                self.mark(proto, port);
                return Ok(port);
            }
        }
        Err(PortError::Exhausted)
    }
}

/// How replies to active opens reach a shard: the NIC's RSS settings and
/// the receive queue of each shard (indexed by shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySteering {
    pub rss: RssConfig,
    pub shard_queues: Vec<u32>,
}

/// Counters of reply steering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteeringCounters {
    /// Ports chosen so the replies hash to the shard's queue.
    pub steered: u64,
    /// Ports chosen without steering: no free steered port in the slice.
    pub fallbacks: u64,
}

/// The service behind the control-path lock.
pub type SharedPorts = Arc<Mutex<PortService>>;

impl fmt::Debug for PortService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortService")
            .field("partition", &self.partition)
            .field("bound_udp", &self.tables.bound_count[0])
            .field("bound_tcp", &self.tables.bound_count[1])
            .field("pending_events", &self.tables.events.len())
            .finish()
    }
}

impl PortService {
    pub fn new(config: PortConfig) -> Result<PortService, PortError> {
        if config.ephemeral.first() < 1024 {
            return Err(PortError::InvalidRange);
        }
        let partition = PortPartition::new(config.ephemeral, config.shards)?;
        let mut allocs = Vec::with_capacity(config.shards + 1);
        for s in 0..config.shards {
            allocs.push(Allocator::new(
                partition.shard_range(s)?,
                config.key,
                s as u64,
            ));
        }
        allocs.push(Allocator::new(config.ephemeral, config.key, u64::MAX));
        Ok(PortService {
            partition,
            key: config.key,
            tables: Tables {
                bound: [Box::new([0; BITMAP_WORDS]), Box::new([0; BITMAP_WORDS])],
                bound_count: [0; 2],
                events: VecDeque::new(),
            },
            allocs,
            steering: None,
            steering_counters: SteeringCounters::default(),
        })
    }

    /// Makes TCP active opens choose ports whose replies arrive on the
    /// allocating shard's queue (see the module docs); `None` turns it off.
    pub fn set_reply_steering(&mut self, steering: Option<ReplySteering>) {
        self.steering = steering;
    }

    pub fn reply_steering(&self) -> Option<&ReplySteering> {
        self.steering.as_ref()
    }

    pub fn steering_counters(&self) -> SteeringCounters {
        self.steering_counters
    }

    /// Wraps the service for sharing between threads (control path only).
    pub fn shared(self) -> SharedPorts {
        Arc::new(Mutex::new(self))
    }

    pub fn partition(&self) -> PortPartition {
        self.partition
    }

    pub fn shard_of_port(&self, port: u16) -> Option<usize> {
        self.partition.shard_of_port(port)
    }

    pub fn class(&self, port: u16) -> PortClass {
        if port == 0 {
            PortClass::Zero
        } else if PortRange::WELL_KNOWN.contains(port) {
            PortClass::WellKnown
        } else if self.partition.range().contains(port) {
            PortClass::Ephemeral
        } else {
            PortClass::Registered
        }
    }

    pub fn is_bound(&self, proto: Protocol, port: u16) -> bool {
        self.tables.is_bound(proto, port)
    }

    /// Number of ports bound for `proto`.
    pub fn bound_count(&self, proto: Protocol) -> usize {
        self.tables.bound_count[proto.index()] as usize
    }

    /// Binds `port`, or with port 0 allocates a free ephemeral port from the
    /// whole range (any shard's slice: for sockets every worker serves, like
    /// an unconnected UDP socket). Refuses a port in use with `AddrInUse`.
    /// On success the port is newly owned and a [`PortEvent::Bound`] is
    /// queued.
    pub fn bind(&mut self, proto: Protocol, port: u16) -> Result<u16, PortError> {
        if port == 0 {
            let any = self.allocs.last_mut().expect("the whole-range allocator");
            return self
                .tables
                .select(self.key, proto, any, FlowKey::UNSPECIFIED, &mut |_| true);
        }
        if self.tables.is_bound(proto, port) {
            return Err(PortError::AddrInUse);
        }
        self.tables.mark(proto, port);
        Ok(port)
    }

    /// Allocates a free port from `shard`'s slice for an active open towards
    /// `flow` (RFC 6056 Algorithm 4).
    pub fn allocate(
        &mut self,
        proto: Protocol,
        shard: usize,
        flow: FlowKey,
    ) -> Result<u16, PortError> {
        self.allocate_filtered(proto, shard, flow, |_| true)
    }

    /// Like [`allocate`](Self::allocate), but only returns a port `accept`
    /// approves (e.g. one whose 4-tuple is not still in use). With reply
    /// steering set, a TCP port for a known destination is also one whose
    /// replies hash to the shard's queue, when the slice has one.
    pub fn allocate_filtered(
        &mut self,
        proto: Protocol,
        shard: usize,
        flow: FlowKey,
        mut accept: impl FnMut(u16) -> bool,
    ) -> Result<u16, PortError> {
        if shard >= self.partition.shards() {
            return Err(PortError::InvalidShard);
        }
        let steer = match &self.steering {
            Some(s) if proto == Protocol::Tcp && !flow.remote_addr.is_unspecified() => {
                s.shard_queues.get(shard).map(|&q| {
                    (
                        s.rss
                            .reply_steer(flow.local_addr, flow.remote_addr, flow.remote_port),
                        q,
                    )
                })
            }
            _ => None,
        };
        if let Some((steer, queue)) = steer {
            let steered =
                self.tables
                    .select(self.key, proto, &mut self.allocs[shard], flow, &mut |p| {
                        steer.queue_of_port(p) == queue && accept(p)
                    });
            if let Ok(p) = steered {
                self.steering_counters.steered += 1;
                return Ok(p);
            }
            self.steering_counters.fallbacks += 1;
        }
        self.tables
            .select(self.key, proto, &mut self.allocs[shard], flow, &mut accept)
    }

    /// Releases a bound port; queues a [`PortEvent::Released`].
    pub fn release(&mut self, proto: Protocol, port: u16) -> Result<(), PortError> {
        if port == 0 || !self.tables.is_bound(proto, port) {
            return Err(PortError::NotBound);
        }
        self.tables.unmark(proto, port);
        Ok(())
    }

    /// Drains the queued changes, oldest first.
    pub fn take_events(&mut self) -> impl Iterator<Item = PortEvent> + '_ {
        self.tables.events.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(range: PortRange, shards: usize) -> PortService {
        PortService::new(PortConfig {
            ephemeral: range,
            shards,
            key: [1, 2],
        })
        .unwrap()
    }

    #[test]
    fn bind_refuses_port_in_use_per_protocol() {
        let mut s = svc(PortRange::DEFAULT_EPHEMERAL, 1);
        assert_eq!(s.bind(Protocol::Udp, 53), Ok(53));
        assert_eq!(s.bind(Protocol::Udp, 53), Err(PortError::AddrInUse));
        // The TCP table is separate.
        assert_eq!(s.bind(Protocol::Tcp, 53), Ok(53));
        assert_eq!(
            io::Error::from(PortError::AddrInUse).kind(),
            io::ErrorKind::AddrInUse
        );
        s.release(Protocol::Udp, 53).unwrap();
        assert_eq!(s.release(Protocol::Udp, 53), Err(PortError::NotBound));
        assert_eq!(s.bind(Protocol::Udp, 53), Ok(53));
    }

    #[test]
    fn events_follow_binds_and_releases() {
        let mut s = svc(PortRange::DEFAULT_EPHEMERAL, 1);
        s.bind(Protocol::Udp, 7).unwrap();
        let _ = s.bind(Protocol::Udp, 7);
        let p = s.bind(Protocol::Tcp, 0).unwrap();
        s.release(Protocol::Udp, 7).unwrap();
        let ev: Vec<_> = s.take_events().collect();
        assert_eq!(
            ev,
            vec![
                PortEvent::Bound(Protocol::Udp, 7),
                PortEvent::Bound(Protocol::Tcp, p),
                PortEvent::Released(Protocol::Udp, 7),
            ]
        );
        assert_eq!(s.take_events().count(), 0);
    }

    #[test]
    fn bind_zero_allocates_in_range_until_exhausted() {
        let range = PortRange::new(40000, 40009).unwrap();
        let mut s = svc(range, 1);
        let mut got = std::collections::HashSet::new();
        for _ in 0..10 {
            let p = s.bind(Protocol::Udp, 0).unwrap();
            assert!(range.contains(p));
            assert!(got.insert(p), "port {p} handed out twice");
        }
        assert_eq!(s.bind(Protocol::Udp, 0), Err(PortError::Exhausted));
        s.release(Protocol::Udp, 40004).unwrap();
        assert_eq!(s.bind(Protocol::Udp, 0), Ok(40004));
    }

    #[test]
    fn partition_covers_range_exactly() {
        for (first, last, n) in [(61000, 65535, 1), (61000, 65535, 3), (1024, 1030, 7)] {
            let p = PortPartition::new(PortRange::new(first, last).unwrap(), n).unwrap();
            let mut expect = first;
            for s in 0..n {
                let r = p.shard_range(s).unwrap();
                assert_eq!(r.first(), expect);
                for port in r.iter() {
                    assert_eq!(p.shard_of_port(port), Some(s));
                }
                expect = r.last().wrapping_add(1);
            }
            assert_eq!(expect, last.wrapping_add(1));
            assert_eq!(p.shard_of_port(first - 1), None);
        }
        assert_eq!(
            PortPartition::new(PortRange::new(5000, 5001).unwrap(), 3),
            Err(PortError::InvalidShard)
        );
    }

    #[test]
    fn shard_allocator_stays_in_its_slice() {
        let mut s = svc(PortRange::new(50000, 50099).unwrap(), 4);
        for shard in 0..4 {
            let r = s.partition().shard_range(shard).unwrap();
            for i in 0..r.len() {
                let flow = FlowKey {
                    local_addr: Ipv4Addr::new(10, 0, 0, 1),
                    remote_addr: Ipv4Addr::new(10, 0, 0, 2),
                    remote_port: 80 + i as u16,
                };
                let p = s.allocate(Protocol::Tcp, shard, flow).unwrap();
                assert!(r.contains(p));
                assert_eq!(s.shard_of_port(p), Some(shard));
            }
            assert_eq!(
                s.allocate(Protocol::Tcp, shard, FlowKey::UNSPECIFIED),
                Err(PortError::Exhausted)
            );
        }
        assert_eq!(
            s.allocate(Protocol::Tcp, 4, FlowKey::UNSPECIFIED),
            Err(PortError::InvalidShard)
        );
    }

    #[test]
    fn allocation_is_keyed() {
        let flow = FlowKey {
            local_addr: Ipv4Addr::new(10, 0, 0, 1),
            remote_addr: Ipv4Addr::new(10, 0, 0, 2),
            remote_port: 443,
        };
        let first_ports = |key| {
            let mut s = PortService::new(PortConfig {
                ephemeral: PortRange::DEFAULT_EPHEMERAL,
                shards: 1,
                key,
            })
            .unwrap();
            (0..8)
                .map(|_| s.allocate(Protocol::Tcp, 0, flow).unwrap())
                .collect::<Vec<_>>()
        };
        // Same key: reproducible. Other key: a different sequence.
        assert_eq!(first_ports([7, 8]), first_ports([7, 8]));
        assert_ne!(first_ports([7, 8]), first_ports([9, 10]));
    }

    #[test]
    fn same_flow_walks_consecutive_ports() {
        // Algorithm 4: one flow's tries advance table[index] by one, so its
        // successive connections take successive ports (mod the range),
        // starting from a keyed, flow-dependent offset.
        let range = PortRange::new(50000, 50999).unwrap();
        let mut s = svc(range, 1);
        let flow = FlowKey {
            local_addr: Ipv4Addr::new(10, 0, 0, 1),
            remote_addr: Ipv4Addr::new(10, 0, 0, 2),
            remote_port: 443,
        };
        let ports: Vec<u16> = (0..5)
            .map(|_| s.allocate(Protocol::Tcp, 0, flow).unwrap())
            .collect();
        for w in ports.windows(2) {
            let next = if w[0] == range.last() {
                range.first()
            } else {
                w[0] + 1
            };
            assert_eq!(w[1], next, "{ports:?}");
        }
        // Releasing and reconnecting does not reuse the port at once.
        s.release(Protocol::Tcp, ports[4]).unwrap();
        assert_ne!(s.allocate(Protocol::Tcp, 0, flow).unwrap(), ports[4]);
    }

    #[test]
    fn allocate_filtered_respects_predicate() {
        let mut s = svc(PortRange::new(60000, 60999).unwrap(), 1);
        for _ in 0..100 {
            let p = s
                .allocate_filtered(Protocol::Udp, 0, FlowKey::UNSPECIFIED, |p| p % 4 == 1)
                .unwrap();
            assert_eq!(p % 4, 1);
        }
        // 250 ports match; after 250 more the filter leaves nothing.
        let mut n = 100;
        while s
            .allocate_filtered(Protocol::Udp, 0, FlowKey::UNSPECIFIED, |p| p % 4 == 1)
            .is_ok()
        {
            n += 1;
        }
        assert_eq!(n, 250);
    }

    fn steering(table: Vec<u32>) -> ReplySteering {
        ReplySteering {
            rss: RssConfig::new(crate::rss::MICROSOFT_KEY.to_vec(), table).unwrap(),
            shard_queues: vec![0, 1],
        }
    }

    #[test]
    fn steered_ports_hash_replies_to_the_shards_queue() {
        let mut s = svc(PortRange::DEFAULT_EPHEMERAL, 2);
        let rss = steering((0..128).map(|i| i % 2).collect());
        s.set_reply_steering(Some(rss.clone()));
        let local = Ipv4Addr::new(10, 0, 0, 1);
        for shard in 0..2 {
            for i in 0..200u16 {
                let flow = FlowKey {
                    local_addr: local,
                    remote_addr: Ipv4Addr::new(192, 0, 2, (i % 7) as u8 + 1),
                    remote_port: 80 + i % 3,
                };
                let p = s.allocate(Protocol::Tcp, shard, flow).unwrap();
                assert_eq!(s.shard_of_port(p), Some(shard));
                // The reply: from the remote end to our port.
                let q = rss.rss.queue(flow.remote_addr, flow.remote_port, local, p);
                assert_eq!(q, shard as u32, "port {p}");
            }
        }
        assert_eq!(
            s.steering_counters(),
            SteeringCounters {
                steered: 400,
                fallbacks: 0
            }
        );
        // Not steered: UDP, and a bind without a destination.
        let before = s.steering_counters();
        s.allocate(Protocol::Udp, 1, FlowKey::UNSPECIFIED).unwrap();
        s.allocate(Protocol::Tcp, 1, FlowKey::UNSPECIFIED).unwrap();
        assert_eq!(s.steering_counters(), before);
    }

    #[test]
    fn steering_falls_back_when_the_table_skips_a_queue() {
        // Every hash goes to queue 0: shard 1 cannot be steered to.
        let mut s = svc(PortRange::new(50000, 50099).unwrap(), 2);
        s.set_reply_steering(Some(steering(vec![0; 128])));
        let flow = FlowKey {
            local_addr: Ipv4Addr::new(10, 0, 0, 1),
            remote_addr: Ipv4Addr::new(10, 0, 0, 2),
            remote_port: 443,
        };
        for _ in 0..50 {
            let p = s.allocate(Protocol::Tcp, 1, flow).unwrap();
            assert_eq!(s.shard_of_port(p), Some(1));
        }
        assert_eq!(s.steering_counters().fallbacks, 50);
        assert_eq!(
            s.allocate(Protocol::Tcp, 1, flow),
            Err(PortError::Exhausted)
        );
        s.set_reply_steering(None);
        assert!(s.reply_steering().is_none());
    }

    #[test]
    fn classes() {
        let s = svc(PortRange::DEFAULT_EPHEMERAL, 1);
        assert_eq!(s.class(0), PortClass::Zero);
        assert_eq!(s.class(1), PortClass::WellKnown);
        assert_eq!(s.class(1023), PortClass::WellKnown);
        assert_eq!(s.class(1024), PortClass::Registered);
        assert_eq!(s.class(60999), PortClass::Registered);
        assert_eq!(s.class(61000), PortClass::Ephemeral);
        assert_eq!(s.class(65535), PortClass::Ephemeral);
    }

    #[test]
    fn kernel_range_parsing_and_choice() {
        let k = parse_local_port_range("32768\t60999\n").unwrap();
        assert_eq!(k, PortRange::KERNEL_DEFAULT_LOCAL);
        assert_eq!(parse_local_port_range("1 2 3"), Err(PortError::Parse));
        assert_eq!(parse_local_port_range("x 2"), Err(PortError::Parse));
        assert_eq!(parse_local_port_range("9 2"), Err(PortError::InvalidRange));
        // Default kernel range: the gap above it, the stack's default.
        let r = choose_ephemeral_range(k, None).unwrap();
        assert_eq!(r, PortRange::DEFAULT_EPHEMERAL);
        assert!(!r.overlaps(k));
        // Too little room above: the larger gap below.
        let k2 = PortRange::new(20000, 65000).unwrap();
        assert_eq!(
            choose_ephemeral_range(k2, None),
            Ok(PortRange::new(1024, 19999).unwrap())
        );
        // Nothing below: whatever is above, however small.
        let k3 = PortRange::new(1024, 65500).unwrap();
        assert_eq!(
            choose_ephemeral_range(k3, None),
            Ok(PortRange::new(65501, 65535).unwrap())
        );
        assert_eq!(
            choose_ephemeral_range(PortRange::new(1, 65535).unwrap(), None),
            Err(PortError::OverlapsKernelRange)
        );
        assert_eq!(
            choose_ephemeral_range(k, Some(PortRange::DEFAULT_EPHEMERAL)),
            Ok(PortRange::DEFAULT_EPHEMERAL)
        );
        assert_eq!(
            choose_ephemeral_range(k, Some(PortRange::new(60000, 61000).unwrap())),
            Err(PortError::OverlapsKernelRange)
        );
        assert_eq!(
            choose_ephemeral_range(k, Some(PortRange::new(500, 600).unwrap())),
            Err(PortError::InvalidRange)
        );
    }

    #[test]
    fn config_avoids_this_machines_kernel_range() {
        // Reads the real sysctl: whatever it holds, the chosen range must
        // not overlap it.
        let kernel = read_kernel_local_port_range().unwrap();
        match PortConfig::avoiding_kernel(2, None) {
            Ok(c) => {
                assert!(!c.ephemeral.overlaps(kernel));
                assert!(c.ephemeral.first() >= 1024);
                PortService::new(c).unwrap();
            }
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
        }
    }

    #[test]
    fn shared_between_threads() {
        let shared = svc(PortRange::new(62000, 62999).unwrap(), 2).shared();
        let handles: Vec<_> = (0..2)
            .map(|shard| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    (0..200)
                        .map(|_| {
                            s.lock()
                                .unwrap()
                                .allocate(Protocol::Udp, shard, FlowKey::UNSPECIFIED)
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            for p in h.join().unwrap() {
                assert!(all.insert(p));
            }
        }
        assert_eq!(shared.lock().unwrap().bound_count(Protocol::Udp), 400);
    }
}
