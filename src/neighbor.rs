//! IPv4 next hop and neighbour resolution (ARP, RFC 826), sans-IO.
//!
//! This module owns the neighbour cache of one shard: entries with their
//! state and expiry, the packets waiting for a destination's address, the
//! ARP request retransmissions, and the answers to ARP requests for the
//! stack's own address. It also owns the next-hop choice over a snapshot of
//! a routing table, and the helpers that read the kernel's routes from
//! `/proc/net/route` (the only I/O here) so the stack uses the kernel's
//! gateway.
//!
//! It does not parse or build ARP frames (the wire layer does) and never
//! reads a clock: every input takes `now`, and outputs are [`Action`]s the
//! worker drains with [`NeighborCache::poll_action`]: send an ARP request or
//! reply, transmit a packet that was waiting, or drop one (given back, so a
//! frame token is never lost). [`NeighborCache::poll`] runs the timers and
//! [`NeighborCache::poll_at`] says when it next needs to.
//!
//! States (a simplification of Linux's NUD machine):
//! - `Incomplete`: request sent, packets queue (bounded; the oldest is
//!   dropped). Broadcast requests every `retrans_time`; after
//!   `max_probes` unanswered, the entry and its queue are dropped.
//! - `Reachable` until `reachable_time` after the last confirmation (a reply
//!   to us, or a request from the neighbour for our address: it just showed
//!   its binding).
//! - `Stale`: the address is still used, but the first use sends a unicast
//!   request to confirm it (Linux's PROBE, without the DELAY step); if
//!   `max_probes` go unanswered the entry is dropped. Stale entries unused
//!   for `gc_time` are removed.
//!
//! Learning follows RFC 826's merge rule and Linux's `arp_accept = 0`:
//! a sender already in the table is updated from any ARP packet; a new entry
//! is only created from a request addressed to us (or a reply while
//! resolving it).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::Ipv4Addr;

use crate::icmp::is_host_source;
use crate::time::{Duration, Instant};
use crate::wire::{ArpOperation, ArpRepr, EthernetAddress};

/// An Ethernet address.
pub type Mac = [u8; 6];

pub const BROADCAST_MAC: Mac = [0xff; 6];

/// The MAC a destination maps to without ARP: broadcast, or an IPv4
/// multicast group (RFC 1112 §6.4: 01:00:5e + low 23 bits).
pub fn static_mac(ip: Ipv4Addr) -> Option<Mac> {
    if ip.is_broadcast() {
        return Some(BROADCAST_MAC);
    }
    if ip.is_multicast() {
        let o = ip.octets();
        return Some([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]);
    }
    None
}

/// True for a MAC that can be a single host's (not multicast/broadcast, not
/// all zeros).
pub fn is_unicast_mac(mac: Mac) -> bool {
    mac[0] & 1 == 0 && mac != [0; 6]
}

/// Cache configuration (defaults follow Linux's `neigh` sysctls).
#[derive(Debug, Clone, Copy)]
pub struct NeighborConfig {
    /// How long a confirmation keeps an entry reachable.
    pub reachable_time: Duration,
    /// Stale entries unused this long are removed.
    pub gc_time: Duration,
    /// Interval between requests for one address.
    pub retrans_time: Duration,
    /// Requests sent per resolution (or confirmation) before giving up.
    pub max_probes: u32,
    /// Packets queued per unresolved destination.
    pub queue_len: usize,
    /// Entries in the cache.
    pub max_entries: usize,
    /// Answer ARP requests for our address (dedicated-address mode).
    pub answer_requests: bool,
}

impl Default for NeighborConfig {
    fn default() -> NeighborConfig {
        NeighborConfig {
            reachable_time: Duration::from_secs(30),
            gc_time: Duration::from_secs(60),
            retrans_time: Duration::from_secs(1),
            max_probes: 3,
            queue_len: 16,
            max_entries: 1024,
            answer_requests: true,
        }
    }
}

/// ARP operation (RFC 826 `ar$op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOp {
    Request,
    Reply,
}

/// The fields of a received ARP packet for Ethernet/IPv4 (the wire layer
/// has checked hardware/protocol types and lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: ArpOp,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

impl From<&ArpRepr> for ArpPacket {
    fn from(a: &ArpRepr) -> ArpPacket {
        ArpPacket {
            op: match a.operation {
                ArpOperation::Request => ArpOp::Request,
                ArpOperation::Reply => ArpOp::Reply,
            },
            sender_mac: a.source_hardware_addr.0,
            sender_ip: a.source_protocol_addr.into(),
            target_mac: a.target_hardware_addr.0,
            target_ip: a.target_protocol_addr.into(),
        }
    }
}

/// Why a received ARP packet was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpIgnore {
    /// Sender MAC is broadcast, multicast or zero.
    BadSenderMac,
    /// Sent by ourselves (looped back).
    OwnFrame,
    /// Another host claims our address.
    AddressConflict,
    /// Neither for us nor about a known neighbour.
    NotForUs,
}

/// Why a waiting packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborDrop {
    /// The destination's queue was full: the oldest packet goes.
    QueueOverflow,
    /// No reply after `max_probes` requests.
    ResolutionFailed,
    /// The cache is full of entries that cannot be evicted.
    TableFull,
    /// The next hop is not a host address (0.0.0.0, loopback, class E).
    BadAddress,
}

/// Something for the worker to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send an ARP request for `target` to `dst_mac` (broadcast, or the
    /// known MAC to confirm a stale entry).
    SendRequest { target: Ipv4Addr, dst_mac: Mac },
    /// Send an ARP reply saying our address is at our MAC.
    SendReply {
        target_ip: Ipv4Addr,
        target_mac: Mac,
    },
    /// A waiting packet can go: set its Ethernet destination and send it.
    Transmit { dst_mac: Mac, packet: P },
    /// A waiting packet is dropped; recycle its buffer.
    Drop { packet: P, reason: NeighborDrop },
}

/// The outcome of [`NeighborCache::resolve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<P> {
    /// The MAC is known: send the packet now.
    Ready(Mac, P),
    /// The packet waits for resolution (or was dropped: see the actions).
    Queued,
}

/// The public view of an entry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborState {
    Incomplete,
    Reachable(Mac),
    Stale(Mac),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NeighborCounters {
    pub requests_sent: u64,
    pub replies_sent: u64,
    pub resolved: u64,
    pub resolution_failed: u64,
    pub queue_overflow: u64,
    pub table_full: u64,
    pub bad_address: u64,
    pub arp_ignored: u64,
}

#[derive(Debug)]
enum State {
    Incomplete {
        probes: u32,
        next_probe: Instant,
    },
    Reachable {
        mac: Mac,
        until: Instant,
    },
    Stale {
        mac: Mac,
        /// Unicast confirmation requests sent so far.
        probes: u32,
        next_probe: Option<Instant>,
    },
}

#[derive(Debug)]
struct Entry<P> {
    state: State,
    queue: VecDeque<P>,
    last_used: Instant,
}

/// The neighbour cache of one shard. `P` is the worker's handle to a packet
/// waiting for resolution.
#[derive(Debug)]
pub struct NeighborCache<P> {
    config: NeighborConfig,
    our_ip: Ipv4Addr,
    our_mac: Mac,
    entries: HashMap<Ipv4Addr, Entry<P>>,
    actions: VecDeque<Action<P>>,
    counters: NeighborCounters,
}

impl<P> NeighborCache<P> {
    pub fn new(config: NeighborConfig, our_ip: Ipv4Addr, our_mac: Mac) -> NeighborCache<P> {
        NeighborCache {
            config,
            our_ip,
            our_mac,
            entries: HashMap::new(),
            actions: VecDeque::new(),
            counters: NeighborCounters::default(),
        }
    }

    pub fn counters(&self) -> &NeighborCounters {
        &self.counters
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn state(&self, ip: Ipv4Addr) -> Option<NeighborState> {
        self.entries.get(&ip).map(|e| match e.state {
            State::Incomplete { .. } => NeighborState::Incomplete,
            State::Reachable { mac, .. } => NeighborState::Reachable(mac),
            State::Stale { mac, .. } => NeighborState::Stale(mac),
        })
    }

    /// Packets waiting for `ip`.
    pub fn queued(&self, ip: Ipv4Addr) -> usize {
        self.entries.get(&ip).map_or(0, |e| e.queue.len())
    }

    /// The ARP packet for a `SendRequest` or `SendReply` action, with the
    /// Ethernet destination to send it to; `None` for other actions.
    pub fn arp_repr(&self, action: &Action<P>) -> Option<(EthernetAddress, ArpRepr)> {
        let (dst, op, target_mac, target_ip) = match *action {
            // RFC 5227 §2.1.1: the target hardware address of a request is
            // zero (RFC 826 leaves it unspecified).
            Action::SendRequest { target, dst_mac } => {
                (dst_mac, ArpOperation::Request, [0; 6], target)
            }
            Action::SendReply {
                target_ip,
                target_mac,
            } => (target_mac, ArpOperation::Reply, target_mac, target_ip),
            _ => return None,
        };
        Some((
            EthernetAddress(dst),
            ArpRepr {
                operation: op,
                source_hardware_addr: EthernetAddress(self.our_mac),
                source_protocol_addr: self.our_ip.into(),
                target_hardware_addr: EthernetAddress(target_mac),
                target_protocol_addr: target_ip.into(),
            },
        ))
    }

    /// Next action for the worker, oldest first.
    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// The MAC for `next_hop` if known; using a stale entry starts its
    /// confirmation. Never creates an entry.
    pub fn lookup(&mut self, next_hop: Ipv4Addr, now: Instant) -> Option<Mac> {
        if let Some(mac) = static_mac(next_hop) {
            return Some(mac);
        }
        let e = self.entries.get_mut(&next_hop)?;
        e.last_used = now;
        match &mut e.state {
            State::Incomplete { .. } => None,
            State::Reachable { mac, .. } => Some(*mac),
            State::Stale {
                mac,
                probes,
                next_probe,
            } => {
                let mac = *mac;
                if next_probe.is_none() {
                    *probes = 1;
                    *next_probe = Some(now + self.config.retrans_time);
                    self.counters.requests_sent += 1;
                    self.actions.push_back(Action::SendRequest {
                        target: next_hop,
                        dst_mac: mac,
                    });
                }
                Some(mac)
            }
        }
    }

    /// Sends `packet` to `next_hop`: `Ready` with the MAC if known, else the
    /// packet waits (starting resolution with a broadcast request).
    pub fn resolve(&mut self, next_hop: Ipv4Addr, packet: P, now: Instant) -> Resolution<P> {
        if let Some(mac) = self.lookup(next_hop, now) {
            return Resolution::Ready(mac, packet);
        }
        if !is_host_source(next_hop) {
            self.counters.bad_address += 1;
            self.actions.push_back(Action::Drop {
                packet,
                reason: NeighborDrop::BadAddress,
            });
            return Resolution::Queued;
        }
        if let Some(e) = self.entries.get_mut(&next_hop) {
            // Incomplete: wait in its bounded queue.
            if e.queue.len() >= self.config.queue_len {
                if let Some(old) = e.queue.pop_front() {
                    self.counters.queue_overflow += 1;
                    self.actions.push_back(Action::Drop {
                        packet: old,
                        reason: NeighborDrop::QueueOverflow,
                    });
                }
            }
            if self.config.queue_len > 0 {
                e.queue.push_back(packet);
            } else {
                self.counters.queue_overflow += 1;
                self.actions.push_back(Action::Drop {
                    packet,
                    reason: NeighborDrop::QueueOverflow,
                });
            }
            return Resolution::Queued;
        }
        if !self.make_room() {
            self.counters.table_full += 1;
            self.actions.push_back(Action::Drop {
                packet,
                reason: NeighborDrop::TableFull,
            });
            return Resolution::Queued;
        }
        let mut queue = VecDeque::new();
        if self.config.queue_len > 0 {
            queue.push_back(packet);
        } else {
            self.counters.queue_overflow += 1;
            self.actions.push_back(Action::Drop {
                packet,
                reason: NeighborDrop::QueueOverflow,
            });
        }
        self.start_request(next_hop, queue, now);
        Resolution::Queued
    }

    /// A new INCOMPLETE entry for `next_hop` holding `queue`, and its first
    /// broadcast request.
    fn start_request(&mut self, next_hop: Ipv4Addr, queue: VecDeque<P>, now: Instant) {
        self.entries.insert(
            next_hop,
            Entry {
                state: State::Incomplete {
                    probes: 1,
                    next_probe: now + self.config.retrans_time,
                },
                queue,
                last_used: now,
            },
        );
        self.counters.requests_sent += 1;
        self.actions.push_back(Action::SendRequest {
            target: next_hop,
            dst_mac: BROADCAST_MAC,
        });
    }

    /// Starts resolving `next_hop` with no packet waiting, for a sender
    /// that keeps its data and asks again (a TCP active open): a broadcast
    /// request unless an entry exists (known, or a request already out;
    /// `poll` repeats it). Nothing for an address that cannot be a host or
    /// when the table is full (counted).
    pub fn solicit(&mut self, next_hop: Ipv4Addr, now: Instant) {
        if static_mac(next_hop).is_some()
            || self.entries.contains_key(&next_hop)
            || !is_host_source(next_hop)
        {
            return;
        }
        if !self.make_room() {
            self.counters.table_full += 1;
            return;
        }
        self.start_request(next_hop, VecDeque::new(), now);
    }

    /// Records `ip` at `mac` as reachable (e.g. seeded from the kernel's
    /// neighbour table), releasing any waiting packets.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: Mac, now: Instant) {
        if !is_host_source(ip) || !is_unicast_mac(mac) {
            return;
        }
        if !self.entries.contains_key(&ip) && !self.make_room() {
            self.counters.table_full += 1;
            return;
        }
        self.confirm(ip, mac, now);
    }

    /// Handles a received ARP packet (RFC 826 "Packet Reception").
    pub fn process_arp(&mut self, arp: &ArpPacket, now: Instant) -> Result<(), ArpIgnore> {
        let r = self.process_arp_inner(arp, now);
        if r.is_err() {
            self.counters.arp_ignored += 1;
        }
        r
    }

    fn process_arp_inner(&mut self, arp: &ArpPacket, now: Instant) -> Result<(), ArpIgnore> {
        if arp.sender_mac == self.our_mac {
            return Err(ArpIgnore::OwnFrame);
        }
        if !is_unicast_mac(arp.sender_mac) {
            return Err(ArpIgnore::BadSenderMac);
        }
        if arp.sender_ip == self.our_ip {
            return Err(ArpIgnore::AddressConflict);
        }
        let for_us = arp.target_ip == self.our_ip;
        // An RFC 5227 probe has sender 0.0.0.0: answer it, learn nothing.
        let learnable = is_host_source(arp.sender_ip);
        let known = self.entries.contains_key(&arp.sender_ip);
        if learnable && known {
            // Merge: for us, or a reply while resolving, confirms; third
            // party traffic only refreshes the binding as stale.
            let resolving = matches!(
                self.entries.get(&arp.sender_ip).map(|e| &e.state),
                Some(State::Incomplete { .. })
            );
            if for_us || resolving {
                self.confirm(arp.sender_ip, arp.sender_mac, now);
            } else {
                self.refresh_stale(arp.sender_ip, arp.sender_mac);
            }
        } else if learnable && for_us && arp.op == ArpOp::Request && self.make_room() {
            self.confirm(arp.sender_ip, arp.sender_mac, now);
        }
        if !for_us {
            return if known {
                Ok(())
            } else {
                Err(ArpIgnore::NotForUs)
            };
        }
        if arp.op == ArpOp::Request && self.config.answer_requests {
            self.counters.replies_sent += 1;
            self.actions.push_back(Action::SendReply {
                target_ip: arp.sender_ip,
                target_mac: arp.sender_mac,
            });
        }
        Ok(())
    }

    /// Marks `ip` reachable at `mac` and releases its queue.
    fn confirm(&mut self, ip: Ipv4Addr, mac: Mac, now: Instant) {
        let until = now + self.config.reachable_time;
        let e = self.entries.entry(ip).or_insert_with(|| Entry {
            state: State::Incomplete {
                probes: 0,
                next_probe: now,
            },
            queue: VecDeque::new(),
            last_used: now,
        });
        if matches!(e.state, State::Incomplete { .. }) {
            self.counters.resolved += 1;
        }
        e.state = State::Reachable { mac, until };
        for packet in e.queue.drain(..) {
            self.actions.push_back(Action::Transmit {
                dst_mac: mac,
                packet,
            });
        }
    }

    /// Third-party information: a changed MAC makes the entry stale (to be
    /// confirmed on use); the same MAC changes nothing.
    fn refresh_stale(&mut self, ip: Ipv4Addr, mac: Mac) {
        if let Some(e) = self.entries.get_mut(&ip) {
            let current = match e.state {
                State::Reachable { mac, .. } | State::Stale { mac, .. } => Some(mac),
                State::Incomplete { .. } => None,
            };
            if current != Some(mac) {
                e.state = State::Stale {
                    mac,
                    probes: 0,
                    next_probe: None,
                };
            }
        }
    }

    /// Ensures there is room for one more entry, evicting the least recently
    /// used stale entry if needed (never one with packets waiting).
    fn make_room(&mut self) -> bool {
        if self.entries.len() < self.config.max_entries {
            return true;
        }
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Stale { .. }) && e.queue.is_empty())
            .min_by_key(|(_, e)| e.last_used)
            .map(|(ip, _)| *ip);
        match victim {
            Some(ip) => {
                self.entries.remove(&ip);
                true
            }
            None => false,
        }
    }

    /// Runs the timers: retransmits, expiry, confirmation failures, garbage
    /// collection.
    pub fn poll(&mut self, now: Instant) {
        let cfg = self.config;
        let mut failed = Vec::new();
        for (ip, e) in self.entries.iter_mut() {
            match &mut e.state {
                State::Incomplete { probes, next_probe } if *next_probe <= now => {
                    if *probes < cfg.max_probes {
                        *probes += 1;
                        *next_probe = now + cfg.retrans_time;
                        self.counters.requests_sent += 1;
                        self.actions.push_back(Action::SendRequest {
                            target: *ip,
                            dst_mac: BROADCAST_MAC,
                        });
                    } else {
                        failed.push(*ip);
                    }
                }
                State::Reachable { mac, until } if *until <= now => {
                    e.state = State::Stale {
                        mac: *mac,
                        probes: 0,
                        next_probe: None,
                    };
                }
                State::Stale {
                    mac,
                    probes,
                    next_probe: Some(at),
                } if *at <= now => {
                    if *probes < cfg.max_probes {
                        *probes += 1;
                        *at = now + cfg.retrans_time;
                        self.counters.requests_sent += 1;
                        self.actions.push_back(Action::SendRequest {
                            target: *ip,
                            dst_mac: *mac,
                        });
                    } else {
                        failed.push(*ip);
                    }
                }
                State::Stale {
                    next_probe: None, ..
                } if now - e.last_used >= cfg.gc_time => failed.push(*ip),
                _ => {}
            }
        }
        for ip in failed {
            let e = self.entries.remove(&ip).expect("collected above");
            if matches!(e.state, State::Incomplete { .. }) {
                self.counters.resolution_failed += 1;
            }
            for packet in e.queue {
                self.actions.push_back(Action::Drop {
                    packet,
                    reason: NeighborDrop::ResolutionFailed,
                });
            }
        }
    }

    /// When [`poll`](Self::poll) next has work, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| match e.state {
                State::Incomplete { next_probe, .. } => next_probe,
                State::Reachable { until, .. } => until,
                State::Stale {
                    next_probe: Some(at),
                    ..
                } => at,
                State::Stale {
                    next_probe: None, ..
                } => e.last_used + self.config.gc_time,
            })
            .min()
    }
}

/// One IPv4 route of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    /// `None` for a directly connected network.
    pub gateway: Option<Ipv4Addr>,
    pub metric: u32,
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32) as u32)
    }
}

impl Route {
    pub fn matches(&self, dst: Ipv4Addr) -> bool {
        let m = mask(self.prefix_len);
        u32::from(dst) & m == u32::from(self.prefix) & m
    }
}

/// A routing table snapshot: longest prefix wins, then lowest metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    routes: Vec<Route>,
}

impl RoutingTable {
    pub fn new(mut routes: Vec<Route>) -> RoutingTable {
        for r in &mut routes {
            r.prefix_len = r.prefix_len.min(32);
            r.prefix = Ipv4Addr::from(u32::from(r.prefix) & mask(r.prefix_len));
        }
        // Most specific first, then cheapest, so the first match wins.
        routes.sort_by_key(|r| (std::cmp::Reverse(r.prefix_len), r.metric));
        RoutingTable { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The address whose MAC a packet to `dst` is sent to: the matching
    /// route's gateway, or `dst` itself on a connected network. `None` if
    /// no route matches.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let r = self.routes.iter().find(|r| r.matches(dst))?;
        Some(r.gateway.unwrap_or(dst))
    }
}

const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;

/// Parses `/proc/net/route` text, keeping the usable routes of `iface`.
/// Addresses there are the raw `__be32` printed as a host-order hex number,
/// hence `to_ne_bytes`. Malformed lines are skipped, never a panic.
pub fn parse_proc_net_route(text: &str, iface: &str) -> Vec<Route> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] != iface {
            continue;
        }
        let (Some(dst), Some(gw), Some(flags), Some(mask_raw)) =
            (hex(f[1]), hex(f[2]), hex(f[3]), hex(f[7]))
        else {
            continue;
        };
        let Ok(metric) = f[6].parse::<u32>() else {
            continue;
        };
        if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
            continue;
        }
        let m = u32::from_be_bytes(mask_raw.to_ne_bytes());
        // Only contiguous masks are prefixes.
        if m.leading_ones() + m.trailing_zeros() != 32 {
            continue;
        }
        let gateway = Ipv4Addr::from(gw.to_ne_bytes());
        routes.push(Route {
            prefix: Ipv4Addr::from(dst.to_ne_bytes()),
            prefix_len: m.leading_ones() as u8,
            gateway: (flags & RTF_GATEWAY != 0 && !gateway.is_unspecified()).then_some(gateway),
            metric,
        });
    }
    routes
}

/// The kernel's IPv4 routes through `iface`.
pub fn read_kernel_routes(iface: &str) -> io::Result<RoutingTable> {
    let text = std::fs::read_to_string("/proc/net/route")?;
    Ok(RoutingTable::new(parse_proc_net_route(&text, iface)))
}

const ATF_COM: u32 = 0x02;

/// Parses `/proc/net/arp` text: the complete entries of `iface`. In
/// shared-address mode the kernel owns ARP for the interface (replies reach
/// it, not the stack), so workers seed their cache from its table with
/// [`NeighborCache::learn`]. Malformed lines are skipped.
pub fn parse_proc_net_arp(text: &str, iface: &str) -> Vec<(Ipv4Addr, Mac)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface {
            continue;
        }
        let Ok(ip) = f[0].parse::<Ipv4Addr>() else {
            continue;
        };
        let flags = f[2]
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        if flags.is_none_or(|fl| fl & ATF_COM == 0) {
            continue;
        }
        let Some(mac) = parse_mac(f[3]) else {
            continue;
        };
        if is_unicast_mac(mac) {
            out.push((ip, mac));
        }
    }
    out
}

/// The kernel's complete ARP entries on `iface`.
pub fn read_kernel_neighbors(iface: &str) -> io::Result<Vec<(Ipv4Addr, Mac)>> {
    Ok(parse_proc_net_arp(
        &std::fs::read_to_string("/proc/net/arp")?,
        iface,
    ))
}

fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const OUR_MAC: Mac = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: Mac = [2, 0, 0, 0, 0, 2];
    const NEW_MAC: Mac = [2, 0, 0, 0, 0, 9];

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn cache() -> NeighborCache<u32> {
        cache_with(NeighborConfig::default())
    }

    fn cache_with(cfg: NeighborConfig) -> NeighborCache<u32> {
        NeighborCache::new(cfg, US, OUR_MAC)
    }

    /// The broadcast request that starts resolving `PEER`.
    const ASK_FOR_PEER: Action<u32> = Action::SendRequest {
        target: PEER,
        dst_mac: BROADCAST_MAC,
    };

    fn dropped(packet: u32, reason: NeighborDrop) -> Action<u32> {
        Action::Drop { packet, reason }
    }

    fn actions(c: &mut NeighborCache<u32>) -> Vec<Action<u32>> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn reply(from_ip: Ipv4Addr, from_mac: Mac) -> ArpPacket {
        ArpPacket {
            op: ArpOp::Reply,
            sender_mac: from_mac,
            sender_ip: from_ip,
            target_mac: OUR_MAC,
            target_ip: US,
        }
    }

    fn request(from_ip: Ipv4Addr, from_mac: Mac, target: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            op: ArpOp::Request,
            sender_mac: from_mac,
            sender_ip: from_ip,
            target_mac: [0; 6],
            target_ip: target,
        }
    }

    #[test]
    fn resolution_queues_then_releases_in_order() {
        let mut c = cache();
        assert_eq!(c.resolve(PEER, 1, t(0)), Resolution::Queued);
        assert_eq!(c.resolve(PEER, 2, t(1)), Resolution::Queued);
        assert_eq!(actions(&mut c), vec![ASK_FOR_PEER]);
        assert_eq!(c.state(PEER), Some(NeighborState::Incomplete));
        c.process_arp(&reply(PEER, PEER_MAC), t(5)).unwrap();
        assert_eq!(
            actions(&mut c),
            vec![
                Action::Transmit {
                    dst_mac: PEER_MAC,
                    packet: 1
                },
                Action::Transmit {
                    dst_mac: PEER_MAC,
                    packet: 2
                },
            ]
        );
        assert_eq!(c.resolve(PEER, 3, t(6)), Resolution::Ready(PEER_MAC, 3));
        assert_eq!(c.counters().resolved, 1);
    }

    #[test]
    fn solicit_asks_once_without_a_packet() {
        let mut c = cache();
        c.solicit(PEER, t(0));
        c.solicit(PEER, t(1));
        assert_eq!(actions(&mut c), vec![ASK_FOR_PEER]);
        assert_eq!(c.lookup(PEER, t(2)), None);
        c.process_arp(&reply(PEER, PEER_MAC), t(3)).unwrap();
        // Nothing was waiting, so nothing is released.
        assert_eq!(actions(&mut c), vec![]);
        assert_eq!(c.lookup(PEER, t(4)), Some(PEER_MAC));
        c.solicit(PEER, t(5));
        c.solicit(Ipv4Addr::BROADCAST, t(5));
        assert_eq!(actions(&mut c), vec![]);
    }

    #[test]
    fn queue_drops_oldest_when_full() {
        let mut c = cache_with(NeighborConfig {
            queue_len: 2,
            ..NeighborConfig::default()
        });
        for p in 1..=4u32 {
            assert_eq!(c.resolve(PEER, p, t(0)), Resolution::Queued);
        }
        let a = actions(&mut c);
        assert_eq!(
            a[1..],
            [
                dropped(1, NeighborDrop::QueueOverflow),
                dropped(2, NeighborDrop::QueueOverflow),
            ]
        );
        assert_eq!(c.counters().queue_overflow, 2);
        assert_eq!(c.queued(PEER), 2);
        c.process_arp(&reply(PEER, PEER_MAC), t(1)).unwrap();
        let sent: Vec<_> = actions(&mut c)
            .into_iter()
            .map(|a| match a {
                Action::Transmit { packet, .. } => packet,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![3, 4]);
    }

    #[test]
    fn retransmits_then_gives_up() {
        let mut c = cache();
        c.resolve(PEER, 7, t(0));
        assert_eq!(actions(&mut c).len(), 1);
        assert_eq!(c.poll_at(), Some(t(1000)));
        c.poll(t(999));
        assert!(actions(&mut c).is_empty());
        c.poll(t(1000));
        c.poll(t(2000));
        let reqs = actions(&mut c);
        assert_eq!(reqs.len(), 2);
        assert!(reqs
            .iter()
            .all(|a| matches!(a, Action::SendRequest { target: PEER, .. })));
        // Third probe unanswered: the entry fails and the packet is dropped.
        c.poll(t(3000));
        assert_eq!(
            actions(&mut c),
            vec![dropped(7, NeighborDrop::ResolutionFailed)]
        );
        assert_eq!(c.state(PEER), None);
        assert_eq!(c.counters().requests_sent, 3);
        assert_eq!(c.counters().resolution_failed, 1);
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn answers_requests_for_us_and_learns_sender() {
        let mut c = cache();
        c.process_arp(&request(PEER, PEER_MAC, US), t(0)).unwrap();
        assert_eq!(
            actions(&mut c),
            vec![Action::SendReply {
                target_ip: PEER,
                target_mac: PEER_MAC
            }]
        );
        assert_eq!(c.state(PEER), Some(NeighborState::Reachable(PEER_MAC)));
        // A request for another address: not answered, not learned.
        assert_eq!(
            c.process_arp(&request(OTHER, NEW_MAC, PEER), t(0)),
            Err(ArpIgnore::NotForUs)
        );
        assert_eq!(c.state(OTHER), None);
        assert!(actions(&mut c).is_empty());
        // Unsolicited reply from an unknown host: not learned.
        c.process_arp(&reply(OTHER, NEW_MAC), t(0)).unwrap();
        assert_eq!(c.state(OTHER), None);
        // Shared mode: learn, but the kernel answers.
        let mut s = cache_with(NeighborConfig {
            answer_requests: false,
            ..NeighborConfig::default()
        });
        s.process_arp(&request(PEER, PEER_MAC, US), t(0)).unwrap();
        assert!(actions(&mut s).is_empty());
        assert_eq!(s.state(PEER), Some(NeighborState::Reachable(PEER_MAC)));
    }

    #[test]
    fn arp_probe_answered_without_learning() {
        let mut c = cache();
        c.process_arp(&request(Ipv4Addr::UNSPECIFIED, PEER_MAC, US), t(0))
            .unwrap();
        assert_eq!(
            actions(&mut c),
            vec![Action::SendReply {
                target_ip: Ipv4Addr::UNSPECIFIED,
                target_mac: PEER_MAC
            }]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn bad_arp_ignored() {
        let mut c = cache();
        for (p, why) in [
            (request(PEER, OUR_MAC, US), ArpIgnore::OwnFrame),
            (request(PEER, BROADCAST_MAC, US), ArpIgnore::BadSenderMac),
            (
                request(PEER, [1, 0, 0x5e, 0, 0, 1], US),
                ArpIgnore::BadSenderMac,
            ),
            (request(PEER, [0; 6], US), ArpIgnore::BadSenderMac),
            (request(US, PEER_MAC, US), ArpIgnore::AddressConflict),
        ] {
            assert_eq!(c.process_arp(&p, t(0)), Err(why));
        }
        assert!(c.is_empty());
        assert!(actions(&mut c).is_empty());
        assert_eq!(c.counters().arp_ignored, 5);
    }

    #[test]
    fn reachable_goes_stale_then_confirms_by_unicast() {
        let mut c = cache();
        c.learn(PEER, PEER_MAC, t(0));
        assert_eq!(c.poll_at(), Some(t(30_000)));
        c.poll(t(30_000));
        assert_eq!(c.state(PEER), Some(NeighborState::Stale(PEER_MAC)));
        // Still usable; the use sends one unicast request.
        assert_eq!(c.lookup(PEER, t(30_001)), Some(PEER_MAC));
        assert_eq!(c.lookup(PEER, t(30_002)), Some(PEER_MAC));
        assert_eq!(
            actions(&mut c),
            vec![Action::SendRequest {
                target: PEER,
                dst_mac: PEER_MAC
            }]
        );
        c.process_arp(&reply(PEER, PEER_MAC), t(30_010)).unwrap();
        assert_eq!(c.state(PEER), Some(NeighborState::Reachable(PEER_MAC)));
    }

    #[test]
    fn unconfirmed_stale_entry_is_dropped_after_probes() {
        let mut c = cache();
        c.learn(PEER, PEER_MAC, t(0));
        c.poll(t(30_000));
        c.lookup(PEER, t(30_000));
        c.poll(t(31_000));
        c.poll(t(32_000));
        assert_eq!(actions(&mut c).len(), 3);
        c.poll(t(33_000));
        assert_eq!(c.state(PEER), None);
        // The next packet starts a fresh broadcast resolution.
        assert_eq!(c.resolve(PEER, 1, t(33_001)), Resolution::Queued);
        assert_eq!(actions(&mut c), vec![ASK_FOR_PEER]);
    }

    #[test]
    fn unused_stale_entries_are_collected() {
        let mut c = cache();
        c.learn(PEER, PEER_MAC, t(0));
        c.poll(t(30_000));
        c.poll(t(59_999));
        assert!(c.state(PEER).is_some());
        c.poll(t(60_000));
        assert_eq!(c.state(PEER), None);
    }

    #[test]
    fn third_party_arp_updates_known_entry_as_stale() {
        let mut c = cache();
        c.learn(PEER, PEER_MAC, t(0));
        // A gratuitous ARP (target = sender) announcing a new MAC.
        c.process_arp(&request(PEER, NEW_MAC, PEER), t(1)).unwrap();
        assert_eq!(c.state(PEER), Some(NeighborState::Stale(NEW_MAC)));
    }

    #[test]
    fn full_table_evicts_stale_never_waiting() {
        let mut c = cache_with(NeighborConfig {
            max_entries: 2,
            ..NeighborConfig::default()
        });
        c.resolve(PEER, 1, t(0));
        c.resolve(OTHER, 2, t(0));
        actions(&mut c);
        let third = Ipv4Addr::new(10, 0, 0, 4);
        assert_eq!(c.resolve(third, 3, t(0)), Resolution::Queued);
        assert_eq!(actions(&mut c), vec![dropped(3, NeighborDrop::TableFull)]);
        // Once one is stale and idle, it makes room.
        c.process_arp(&reply(PEER, PEER_MAC), t(1)).unwrap();
        actions(&mut c);
        c.poll(t(31_000));
        assert_eq!(c.state(PEER), Some(NeighborState::Stale(PEER_MAC)));
        assert_eq!(c.resolve(third, 4, t(31_001)), Resolution::Queued);
        assert_eq!(c.state(PEER), None);
        assert_eq!(c.state(third), Some(NeighborState::Incomplete));
    }

    #[test]
    fn static_macs() {
        let mut c = cache();
        assert_eq!(
            c.resolve(Ipv4Addr::BROADCAST, 1, t(0)),
            Resolution::Ready(BROADCAST_MAC, 1)
        );
        assert_eq!(
            static_mac(Ipv4Addr::new(239, 129, 2, 3)),
            Some([0x01, 0x00, 0x5e, 0x01, 2, 3])
        );
        assert_eq!(static_mac(PEER), None);
        assert_eq!(
            c.resolve(Ipv4Addr::UNSPECIFIED, 2, t(0)),
            Resolution::Queued
        );
        assert_eq!(actions(&mut c), vec![dropped(2, NeighborDrop::BadAddress)]);
        assert!(c.is_empty());
    }

    #[test]
    fn next_hop_longest_prefix_then_metric() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let gw2 = Ipv4Addr::new(192, 0, 2, 254);
        let rt = RoutingTable::new(vec![
            Route {
                prefix: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(gw),
                metric: 100,
            },
            Route {
                prefix: Ipv4Addr::new(192, 0, 2, 77),
                prefix_len: 24,
                gateway: None,
                metric: 0,
            },
            Route {
                prefix: Ipv4Addr::new(198, 51, 100, 0),
                prefix_len: 24,
                gateway: Some(gw2),
                metric: 5,
            },
            Route {
                prefix: Ipv4Addr::new(198, 51, 100, 0),
                prefix_len: 24,
                gateway: Some(gw),
                metric: 1,
            },
        ]);
        let on_link = Ipv4Addr::new(192, 0, 2, 9);
        assert_eq!(rt.next_hop(on_link), Some(on_link));
        assert_eq!(rt.next_hop(Ipv4Addr::new(8, 8, 8, 8)), Some(gw));
        assert_eq!(rt.next_hop(Ipv4Addr::new(198, 51, 100, 3)), Some(gw));
        assert_eq!(RoutingTable::default().next_hop(on_link), None);
    }

    #[test]
    fn proc_net_route_parsing() {
        // The kernel prints each `__be32` as a native-endian u32.
        let h = |o: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(o));
        let line = |iface: &str, dst, gw, flags: &str, mask| {
            format!(
                "{iface}\t{}\t{}\t{flags}\t0\t0\t0\t{}\t0\t0\t0\n",
                h(dst),
                h(gw),
                h(mask)
            )
        };
        let z = [0, 0, 0, 0];
        let m24 = [255, 255, 255, 0];
        let mut text = String::from(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        text += &line("eth0", z, [192, 0, 2, 1], "0003", z);
        text += &line("eth0", [192, 0, 2, 0], z, "0001", m24);
        // Down, reject, and a non-contiguous mask: skipped.
        text += &line("eth0", [192, 168, 100, 0], z, "0000", m24);
        text += &line("eth0", [192, 168, 101, 0], z, "0201", m24);
        text += &line("eth0", [192, 168, 102, 0], z, "0001", [255, 0, 255, 0]);
        text += "eth0\tzz\n";
        text += &line("eth1", [10, 0, 0, 0], z, "0001", [255, 0, 0, 0]);
        let mut routes = parse_proc_net_route(&text, "eth0");
        routes.sort_by_key(|r| r.prefix_len);
        assert_eq!(
            routes,
            vec![
                Route {
                    prefix: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    metric: 0,
                },
                Route {
                    prefix: Ipv4Addr::new(192, 0, 2, 0),
                    prefix_len: 24,
                    gateway: None,
                    metric: 0,
                },
            ]
        );
        let eth1 = parse_proc_net_route(&text, "eth1");
        assert_eq!(eth1.len(), 1);
        assert_eq!(eth1[0].prefix, Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(eth1[0].prefix_len, 8);
    }

    #[test]
    fn proc_net_arp_parsing() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
            192.0.2.1        0x1         0x2         52:54:00:12:34:56     *        eth0\n\
            192.0.2.7        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
            192.0.2.8        0x1         0x2         52:54:00:12:34        *        eth0\n\
            192.0.2.9        0x1         0x6         52:54:00:aa:bb:cc     *        eth0\n\
            192.0.2.10       0x1         0x2         52:54:00:00:00:01     *        eth1\n\
            garbage\n";
        assert_eq!(
            parse_proc_net_arp(text, "eth0"),
            vec![
                (
                    Ipv4Addr::new(192, 0, 2, 1),
                    [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
                ),
                (
                    Ipv4Addr::new(192, 0, 2, 9),
                    [0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]
                ),
            ]
        );
        assert_eq!(parse_proc_net_arp(text, "eth1").len(), 1);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Send(u8),
            Reply(u8),
            Request(u8),
            Advance(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..4).prop_map(Op::Send),
                (0u8..4).prop_map(Op::Reply),
                (0u8..4).prop_map(Op::Request),
                (0u16..5000).prop_map(Op::Advance),
            ]
        }

        fn ip(i: u8) -> Ipv4Addr {
            Ipv4Addr::new(10, 0, 1, 10 + i)
        }

        fn mac(i: u8) -> Mac {
            [2, 0, 0, 0, 1, i]
        }

        proptest! {
            /// Every packet handed in comes out exactly once (sent right
            /// away, transmitted when resolved, or dropped) or is still
            /// queued; queues stay bounded; a destination never sees more
            /// than `max_probes` broadcast requests in a row without an
            /// answer; transmitted packets carry their destination's MAC.
            #[test]
            fn packets_are_conserved(ops in proptest::collection::vec(op(), 1..200)) {
                let cfg = NeighborConfig {
                    queue_len: 3,
                    max_entries: 3,
                    ..NeighborConfig::default()
                };
                let mut c: NeighborCache<u32> = NeighborCache::new(cfg, US, OUR_MAC);
                let mut now = t(0);
                let mut next = 0u32;
                let mut dest_of = HashMap::new();
                let mut out = HashMap::new();
                let mut unanswered = [0u32; 4];
                for op in ops {
                    match op {
                        Op::Send(i) => {
                            dest_of.insert(next, i);
                            if let Resolution::Ready(m, p) = c.resolve(ip(i), next, now) {
                                prop_assert_eq!(m, mac(i));
                                prop_assert!(out.insert(p, ()).is_none());
                            }
                            next += 1;
                        }
                        Op::Reply(i) => {
                            let _ = c.process_arp(&reply(ip(i), mac(i)), now);
                            unanswered[i as usize] = 0;
                        }
                        Op::Request(i) => {
                            let _ = c.process_arp(&request(ip(i), mac(i), US), now);
                            unanswered[i as usize] = 0;
                        }
                        Op::Advance(ms) => {
                            now += Duration::from_millis(ms as u64);
                            c.poll(now);
                        }
                    }
                    while let Some(a) = c.poll_action() {
                        match a {
                            Action::Transmit { dst_mac, packet } => {
                                prop_assert_eq!(dst_mac, mac(dest_of[&packet]));
                                prop_assert!(out.insert(packet, ()).is_none());
                            }
                            Action::Drop { packet, .. } => {
                                prop_assert!(out.insert(packet, ()).is_none());
                            }
                            Action::SendRequest { target, dst_mac } => {
                                if dst_mac == BROADCAST_MAC {
                                    let k = (target.octets()[3] - 10) as usize;
                                    unanswered[k] += 1;
                                    prop_assert!(unanswered[k] <= cfg.max_probes);
                                }
                            }
                            Action::SendReply { .. } => {}
                        }
                    }
                    // An attempt that ended (entry gone) resets the count.
                    for i in 0..4u8 {
                        if c.state(ip(i)).is_none() {
                            unanswered[i as usize] = 0;
                        }
                    }
                    let mut waiting = 0;
                    for i in 0..4 {
                        let q = c.queued(ip(i));
                        prop_assert!(q <= cfg.queue_len);
                        waiting += q;
                    }
                    prop_assert!(c.len() <= cfg.max_entries);
                    prop_assert_eq!(out.len() + waiting, next as usize);
                }
            }
        }
    }
}
