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
        Resolution::Queued
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
