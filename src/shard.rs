//! A shard: everything one worker owns, run over any [`crate::phy::Link`] without
//! doing I/O itself or reading a clock (`now` comes in), so the same code
//! runs on AF_XDP in a worker and on the in-memory link in tests.
//!
//! A shard owns the UDP socket table and the bindings of its ports (a
//! run-to-completion handler or a channel to a thread-side socket), the
//! neighbour cache, the ICMP error rate limiter, the frames it is about to
//! transmit and its counters, with every dropped frame counted by reason.
//! The TCP half ([`ShardTcp`]) owns the TCP connection table and its
//! timer wheel.
//!
//! Per received frame: Ethernet, then ARP (dedicated mode: answered and
//! learnt by the neighbour cache) or IPv4 (header checksum verified,
//! fragments dropped, other destinations ignored), then UDP (length and
//! checksum checked by [`UdpTable::receive`], delivered to the port's
//! binding), ICMP echo (dedicated mode: answered in place) or TCP
//! (checksum verified, then the shard's TCP half, [`ShardTcp`]: connections,
//! listeners, and in dedicated mode RST for closed ports, RFC 9293
//! §3.10.7.1). The TCP half's segments join the same transmit batch.
//!
//! Zero copy: a handler sees its payload inside the received frame, and an
//! answer is built by turning that frame around (MACs, addresses and ports
//! swapped: the one's-complement sums do not change; TTL reset with an
//! RFC 1624 update). Frames built or rewritten here get their checksums in
//! one [`checksum::finalize_batch`] pass just before transmission.
//!
//! One 802.1Q tag is accepted on input and kept by in-place answers;
//! frames built fresh (RST, ICMP errors, ARP, sends) are untagged.
//!
//! Addressing: in shared mode the steering program only hands over the
//! stack's ports and the kernel keeps ARP and ICMP; the peer's MAC is learnt
//! from received frames or seeded from the kernel's table by the worker. In
//! dedicated mode the shard owns the whole address and resolves next hops
//! with its own ARP: a UDP send or a TCP segment (an active open's SYN)
//! for a next hop without a MAC waits in the neighbour cache's bounded
//! queue until the reply, and is dropped and counted if none comes.

use std::net::{Ipv4Addr, SocketAddrV4};

use crossbeam::channel::{Sender, TrySendError};

use crate::api::udp::{RecvDatagram, UdpHandler, UdpRx, UdpSend, Verdict};
use crate::icmp::{self, AddressMode, EchoRequest, ErrorRateLimiter};
use crate::neighbor::{
    Action, ArpOp, ArpPacket, Mac, NeighborCache, NeighborConfig, NeighborCounters, Resolution,
    RoutingTable,
};
use crate::phy::{FrameBuf, Link};
use crate::shard_tcp::{Demux, Origin, ShardTcp, TcpShardConfig, TcpShardCounters, UNRESOLVED_MAC};
use crate::tcp::IsnKey;
use crate::time::{Duration, Instant};
use crate::udp::{self, Checksum, RxDatagram, RxDecision, SocketId, UdpConfig, UdpCounters};
use crate::udp::{UdpError, UdpTable};
use crate::wire::checksum::{self, ChecksumJob, ChecksumOffsets};
use crate::wire::frame::{emit_arp, emit_ipv4_icmp};
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::{
    arp, ethernet, ethertype, icmpv4, ip_protocol, ipv4, tcp, udp as wudp, ArpOperation, ArpRepr,
    EthernetAddress, EthernetRepr, Icmpv4Repr, Ipv4Repr, TcpRepr,
};

/// Configuration of one shard.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub mode: AddressMode,
    /// The stack's address (the interface's in shared mode).
    pub ip: Ipv4Addr,
    /// The interface's MAC.
    pub mac: Mac,
    /// IP MTU of the link.
    pub mtu: usize,
    /// Routes for next-hop selection (from `/proc/net/route`).
    pub routes: RoutingTable,
    pub neighbor: NeighborConfig,
}

impl ShardConfig {
    /// Defaults for `mode` on an interface with `ip`, `mac` and `mtu`; the
    /// neighbour cache answers ARP only in dedicated mode.
    pub fn new(mode: AddressMode, ip: Ipv4Addr, mac: Mac, mtu: usize) -> ShardConfig {
        ShardConfig {
            mode,
            ip,
            mac,
            mtu,
            routes: RoutingTable::default(),
            neighbor: NeighborConfig {
                answer_requests: mode == AddressMode::Dedicated,
                ..NeighborConfig::default()
            },
        }
    }
}

/// Why a received frame was dropped (UDP's own reasons are counted by the
/// UDP table, [`udp::DropReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed,
    /// Another EtherType, IP version or protocol.
    Unsupported,
    IpChecksum,
    /// For another address (dedicated mode) or not for the stack.
    NotForUs,
    /// An IPv4 fragment (no reassembly).
    Fragment,
    /// ARP the neighbour cache ignored, or ARP in shared mode.
    Arp,
    /// ICMP not answered (shared mode, not an echo request, bad checksum).
    Icmp,
    /// TCP with a bad checksum or malformed header.
    Tcp,
    /// A thread-side socket's channel was full.
    SocketQueueFull,
    /// An answer could not be sent: no free transmit frame.
    NoTxFrame,
    /// A packet waiting for ARP resolution was given up.
    Neighbor,
}

impl DropReason {
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Malformed,
        DropReason::Unsupported,
        DropReason::IpChecksum,
        DropReason::NotForUs,
        DropReason::Fragment,
        DropReason::Arp,
        DropReason::Icmp,
        DropReason::Tcp,
        DropReason::SocketQueueFull,
        DropReason::NoTxFrame,
        DropReason::Neighbor,
    ];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unsupported => "unsupported",
            DropReason::IpChecksum => "ip_checksum",
            DropReason::NotForUs => "not_for_us",
            DropReason::Fragment => "fragment",
            DropReason::Arp => "arp",
            DropReason::Icmp => "icmp",
            DropReason::Tcp => "tcp",
            DropReason::SocketQueueFull => "socket_queue_full",
            DropReason::NoTxFrame => "no_tx_frame",
            DropReason::Neighbor => "neighbor",
        }
    }
}

/// Counters of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Datagrams answered in place (echo or reply).
    pub udp_replies: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_echo_replies: u64,
    pub icmp_unreachable: u64,
    pub tcp_resets: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl ShardCounters {
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
}

/// All counters of a shard, for printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: ShardCounters,
    pub udp: UdpCounters,
    pub neighbor: NeighborCounters,
    pub tcp: TcpShardCounters,
}

impl ShardStats {
    /// `key=value` pairs separated by spaces; every drop reason appears,
    /// zero or not, so scripts can rely on the keys.
    pub fn to_kv(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.shard;
        let mut out = format!(
            "rx_frames={} tx_frames={} udp_delivered={} udp_replies={} udp_tx={} \
             arp_replies={} arp_requests={} icmp_echo_replies={} icmp_unreachable={} tcp_resets={}",
            s.rx_frames,
            s.tx_frames,
            self.udp.rx_delivered,
            s.udp_replies,
            self.udp.tx_datagrams,
            s.arp_replies,
            s.arp_requests,
            s.icmp_echo_replies,
            s.icmp_unreachable,
            s.tcp_resets,
        );
        for r in DropReason::ALL {
            let _ = write!(out, " drop_{}={}", r.name(), s.dropped(r));
        }
        for r in udp::DropReason::ALL {
            let _ = write!(out, " udp_drop_{}={}", r.name(), self.udp.dropped(r));
        }
        let _ = write!(out, " {}", self.tcp.to_kv());
        out
    }

    /// Adds `other` into `self` (totals over workers).
    pub fn add(&mut self, other: &ShardStats) {
        let (a, b) = (&mut self.shard, &other.shard);
        a.rx_frames += b.rx_frames;
        a.tx_frames += b.tx_frames;
        a.udp_replies += b.udp_replies;
        a.arp_replies += b.arp_replies;
        a.arp_requests += b.arp_requests;
        a.icmp_echo_replies += b.icmp_echo_replies;
        a.icmp_unreachable += b.icmp_unreachable;
        a.tcp_resets += b.tcp_resets;
        for i in 0..DropReason::COUNT {
            a.drops[i] += b.drops[i];
        }
        let (a, b) = (&mut self.udp, &other.udp);
        a.rx_delivered += b.rx_delivered;
        a.rx_no_checksum += b.rx_no_checksum;
        a.rx_port_unreachable += b.rx_port_unreachable;
        a.tx_datagrams += b.tx_datagrams;
        for i in 0..udp::DropReason::COUNT {
            a.drops[i] += b.drops[i];
        }
        self.tcp.add(&other.tcp);
    }
}

/// Who gets the datagrams of a bound port.
pub enum Binding {
    /// A run-to-completion handler, called inside the worker.
    Handler(Box<dyn UdpHandler>),
    /// A thread-side socket: payloads are copied into its channel.
    Channel(Sender<RecvDatagram>),
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binding::Handler(_) => f.write_str("Handler"),
            Binding::Channel(_) => f.write_str("Channel"),
        }
    }
}

struct Bound {
    socket: SocketId,
    binding: Binding,
}

/// What the shard owns apart from the bindings, so a handler (borrowed from
/// the bindings) can send through it.
struct Core<F> {
    cfg: ShardConfig,
    udp: UdpTable<()>,
    neighbor: NeighborCache<F>,
    icmp_limit: ErrorRateLimiter,
    counters: ShardCounters,
    /// Frames to transmit at the next flush, and for each that still needs
    /// its checksums computed, where its IPv4 header starts.
    tx: Vec<F>,
    tx_csum: Vec<Option<usize>>,
    /// The last neighbour learnt from a received frame, to skip the cache
    /// on the per-packet path while nothing changes.
    learnt: Option<(Ipv4Addr, Mac, Instant)>,
    /// Next time the neighbour cache's timers are scanned.
    next_neighbor_poll: Instant,
}

/// The shard: see the module docs.
pub struct Shard<F> {
    core: Core<F>,
    /// Bindings by local port.
    bound: Vec<Option<Bound>>,
    /// Ports bound to handlers, for the per-iteration `poll`.
    handler_ports: Vec<u16>,
    /// The TCP half.
    tcp: ShardTcp,
    /// Hands a TCP frame that may belong to another shard to the others.
    tcp_forward: Option<TcpForward>,
}

/// Hands a received frame to the other shards (see
/// [`ShardTcp::set_forwarding`]).
pub type TcpForward = Box<dyn FnMut(&[u8]) + Send>;

impl<F> std::fmt::Debug for Shard<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("ip", &self.core.cfg.ip)
            .field("mode", &self.core.cfg.mode)
            .field("counters", &self.core.counters)
            .finish()
    }
}

const ETH_LEN: usize = ethernet::HEADER_LEN;
/// Period of the neighbour cache's timer scan.
const NEIGHBOR_TICK: Duration = Duration::from_millis(10);
/// How often a neighbour learnt from traffic is refreshed in the cache.
const RELEARN: Duration = Duration::from_millis(1000);

/// Offsets of a parsed IPv4 frame.
#[derive(Clone, Copy)]
struct Ip {
    /// Start of the IPv4 header.
    l3: usize,
    /// Start of the L4 header.
    l4: usize,
    /// End of the IP packet (Ethernet padding excluded).
    end: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
}

impl<F: FrameBuf> Shard<F> {
    pub fn new(cfg: ShardConfig, now: Instant) -> Shard<F> {
        let udp = UdpTable::new(UdpConfig {
            mode: cfg.mode,
            local_addr: cfg.ip,
            mtu: cfg.mtu,
            // Nothing is queued in the table (handlers run at once, channel
            // sockets have their own queue); one keeps the check passing.
            rx_queue_limit: 1,
        });
        let neighbor = NeighborCache::new(cfg.neighbor, cfg.ip, cfg.mac);
        let mut tcp = ShardTcp::new(
            TcpShardConfig {
                reset_unmatched: cfg.mode == AddressMode::Dedicated,
                ..TcpShardConfig::new(cfg.ip, cfg.mac, cfg.mtu)
            },
            IsnKey::random(),
            None,
            now,
        );
        tcp.set_park_unresolved(cfg.mode == AddressMode::Dedicated);
        let mut bound = Vec::with_capacity(65536);
        bound.resize_with(65536, || None);
        Shard {
            core: Core {
                cfg,
                udp,
                neighbor,
                icmp_limit: ErrorRateLimiter::linux_default(now),
                counters: ShardCounters::default(),
                tx: Vec::with_capacity(256),
                tx_csum: Vec::with_capacity(256),
                learnt: None,
                next_neighbor_poll: now,
            },
            bound,
            handler_ports: Vec::new(),
            tcp,
            tcp_forward: None,
        }
    }

    /// The TCP half (listeners, connections, active opens).
    pub fn tcp(&self) -> &ShardTcp {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut ShardTcp {
        &mut self.tcp
    }

    /// With several shards: TCP segments this shard has no connection for
    /// go to `forward` (the other workers), see [`ShardTcp::set_forwarding`].
    pub fn set_tcp_forward(&mut self, forward: TcpForward) {
        self.tcp.set_forwarding(true);
        self.tcp_forward = Some(forward);
    }

    /// A TCP frame another shard forwarded: processed only if one of this
    /// shard's connections (or handshakes) owns it. Also an ARP reply
    /// another shard received (dedicated mode: RSS does not hash ARP, so
    /// a reply may land on any queue): it completes this
    /// shard's resolution of the sender if one is under way, and is not
    /// answered.
    pub fn process_forwarded_tcp(&mut self, now: Instant, frame: &[u8]) {
        use crate::wire::frame::{parse, Frame, L4};
        match parse(frame) {
            Ok(Frame::Ipv4(eth, ip, L4::Tcp(seg))) => {
                self.tcp.on_segment_from(
                    now,
                    eth.src_addr.0,
                    ip.src_addr.into(),
                    &seg,
                    Origin::Forwarded,
                );
            }
            Ok(Frame::Arp(_, a))
                if a.operation == ArpOperation::Reply
                    && self.core.cfg.mode == AddressMode::Dedicated =>
            {
                let _ = self.core.neighbor.process_arp(&ArpPacket::from(&a), now);
            }
            _ => {}
        }
    }

    /// Dedicated mode with several shards: an ARP reply lands on whichever
    /// queue the NIC puts it (RSS does not hash ARP; on veth, the queue of
    /// the CPU that answered), not necessarily that of the shard that
    /// asked, so a copy goes to the others through the TCP forwarding
    /// path; each learns it only if it is resolving that address.
    fn share_arp_reply(&mut self, data: &[u8], hl: usize) {
        let Some(f) = self.tcp_forward.as_mut() else {
            return;
        };
        if self.core.cfg.mode != AddressMode::Dedicated {
            return;
        }
        // ar$op (RFC 826) sits 6 bytes into the ARP header; 2 is a reply.
        if data.get(hl + 6..hl + 8) == Some(&[0, 2][..]) {
            f(data);
        }
    }

    /// Replaces the TCP half (e.g. one with the stack's ISN key and port
    /// service); do it before traffic flows.
    pub fn set_tcp(&mut self, mut tcp: ShardTcp) {
        tcp.set_park_unresolved(self.core.cfg.mode == AddressMode::Dedicated);
        self.tcp = tcp;
    }

    pub fn config(&self) -> &ShardConfig {
        &self.core.cfg
    }

    pub fn stats(&self) -> ShardStats {
        let tcp = *self.tcp.counters();
        let mut shard = self.core.counters.clone();
        shard.tcp_resets = tcp.resets_sent;
        ShardStats {
            shard,
            udp: self.core.udp.counters().clone(),
            neighbor: self.core.neighbor.counters().clone(),
            tcp,
        }
    }

    /// Binds UDP `port` (non-zero) on the stack's address. The caller has
    /// reserved the port in the port service and steers it.
    pub fn bind_udp(&mut self, port: u16, binding: Binding) -> Result<(), UdpError> {
        let socket = self
            .core
            .udp
            .bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        if matches!(binding, Binding::Handler(_)) {
            self.handler_ports.push(port);
        }
        self.bound[port as usize] = Some(Bound { socket, binding });
        Ok(())
    }

    /// Closes UDP `port`; false if it was not bound.
    pub fn close_udp(&mut self, port: u16) -> bool {
        match self.bound[port as usize].take() {
            Some(b) => {
                self.handler_ports.retain(|&p| p != port);
                let _ = self.core.udp.close(b.socket);
                true
            }
            None => false,
        }
    }

    pub fn is_udp_bound(&self, port: u16) -> bool {
        self.bound[port as usize].is_some()
    }

    /// Records a neighbour (e.g. from the kernel's ARP table).
    pub fn learn_neighbor(&mut self, ip: Ipv4Addr, mac: Mac, now: Instant) {
        self.core.neighbor.learn(ip, mac, now);
    }

    /// Whether the MAC of `ip`'s next hop is known.
    pub fn knows_next_hop(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        let hop = self.core.cfg.routes.next_hop(ip).unwrap_or(ip);
        self.core.neighbor.lookup(hop, now).is_some()
    }

    /// Next hops with packets waiting for resolution are not listed by the
    /// cache; the worker asks for a specific address instead.
    pub fn waiting_for(&self, ip: Ipv4Addr) -> usize {
        self.core.neighbor.queued(ip)
    }

    /// Sends `payload` from UDP `port` to `dst` (thread-side sockets).
    pub fn send_udp<L: Link<Frame = F>>(
        &mut self,
        now: Instant,
        link: &mut L,
        port: u16,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), UdpError> {
        let socket = self.bound[port as usize]
            .as_ref()
            .map(|b| b.socket)
            .ok_or(UdpError::InvalidSocket)?;
        self.core
            .send_udp(now, link, socket, dst, payload.len(), &mut |b| {
                b.copy_from_slice(payload)
            })
    }

    /// Handles a batch of received frames (draining `rx`); answers are
    /// queued for [`flush`](Self::flush).
    pub fn process<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L, rx: &mut Vec<F>) {
        for frame in rx.drain(..) {
            self.core.counters.rx_frames += 1;
            self.handle(now, link, frame);
        }
    }

    /// Timers and handlers' `poll`: neighbour probes and expiries, packets
    /// released by resolution, handler-driven sends.
    pub fn poll<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L) {
        // The cache's timers are in units of 100 ms and more; scanning it
        // every loop iteration would cost more than it saves.
        if now >= self.core.next_neighbor_poll {
            self.core.neighbor.poll(now);
            self.core.next_neighbor_poll = now + NEIGHBOR_TICK;
        }
        let Shard {
            core,
            bound,
            handler_ports,
            tcp,
            ..
        } = self;
        // TCP: due timers, then every segment ready, into the batch.
        let first_tcp = core.tx.len();
        let Core {
            cfg,
            neighbor,
            tx,
            tx_csum,
            ..
        } = core;
        // Handlers' own active opens first, so their SYNs leave now.
        tcp.poll_handlers(now);
        tcp.poll_transmit(
            now,
            link,
            &mut |ip| {
                let hop = cfg.routes.next_hop(ip).unwrap_or(ip);
                let mac = neighbor.lookup(hop, now);
                if mac.is_none() && cfg.mode == AddressMode::Dedicated {
                    // Dedicated mode owns ARP: ask; the segments wait in
                    // the cache meanwhile (`park_unresolved_tcp`).
                    neighbor.solicit(hop, now);
                }
                mac
            },
            &mut |f| {
                tx.push(f);
                tx_csum.push(None);
            },
        );
        if core.cfg.mode == AddressMode::Dedicated {
            core.park_unresolved_tcp(now, first_tcp);
        }
        for &port in handler_ports.iter() {
            let Some(b) = bound[port as usize].as_mut() else {
                continue;
            };
            if let Binding::Handler(h) = &mut b.binding {
                let mut tx = TxCtx {
                    core,
                    link,
                    now,
                    socket: b.socket,
                };
                h.poll(now, &mut tx);
            }
        }
        self.core.drain_actions(link);
    }

    /// The earliest time the shard has timer work (neighbour probes).
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.core.neighbor.poll_at(), self.tcp.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// Finishes checksums of the frames built or rewritten in this batch
    /// (one batched pass) and hands everything to the link in one call.
    pub fn flush<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L) {
        self.core.drain_actions(link);
        self.core.flush(now, link);
    }

    /// Frames waiting for [`flush`](Self::flush).
    pub fn pending_tx(&self) -> usize {
        self.core.tx.len()
    }

    fn handle<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L, frame: F) {
        let data = frame.data();
        let Ok(eth) = ethernet::Packet::new_checked(data) else {
            return self.core.drop_frame(link, frame, DropReason::Malformed);
        };
        let hl = eth.header_len();
        match eth.ethertype() {
            ethertype::IPV4 => {}
            ethertype::ARP => {
                self.share_arp_reply(data, hl);
                return self.core.handle_arp(now, link, frame, hl);
            }
            _ => return self.core.drop_frame(link, frame, DropReason::Unsupported),
        }
        let ip = match self.core.parse_ipv4(data, hl) {
            Ok(ip) => ip,
            Err(r) => return self.core.drop_frame(link, frame, r),
        };
        self.core.learn_from(data, &ip, now);
        match ip.protocol {
            ip_protocol::UDP => self.handle_udp(now, link, frame, ip),
            ip_protocol::ICMP => self.core.handle_icmp(link, frame, ip),
            ip_protocol::TCP => self.handle_tcp(now, link, frame, ip),
            _ => self.core.drop_frame(link, frame, DropReason::Unsupported),
        }
    }

    fn handle_udp<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L, mut frame: F, ip: Ip) {
        let data = frame.data();
        let ip_payload_len = ip.end - ip.l4;
        if ip_payload_len < wudp::HEADER_LEN {
            return self.core.drop_frame(link, frame, DropReason::Malformed);
        }
        let u = wudp::Packet::new_unchecked(&data[ip.l4..ip.end]);
        let udp_length = u.len();
        let len_ok =
            (udp_length as usize) >= wudp::HEADER_LEN && (udp_length as usize) <= ip_payload_len;
        let checksum = Checksum::check(u.checksum(), || {
            // Only reached with a length the table accepts (it checks the
            // length first), so the view's slices are in bounds.
            len_ok && u.verify_checksum(ip.src.into(), ip.dst.into())
        });
        let d = RxDatagram {
            src: SocketAddrV4::new(ip.src, u.src_port()),
            dst: SocketAddrV4::new(ip.dst, u.dst_port()),
            ip_payload_len,
            udp_length,
            checksum,
            link_broadcast: !EthernetAddress::from(mac_at(data, 0)).is_unicast(),
        };
        match self.core.udp.receive(&d) {
            RxDecision::Deliver { payload_len, .. } => {
                let Shard { core, bound, .. } = self;
                let Some(b) = bound[d.dst.port() as usize].as_mut() else {
                    return core.drop_frame(link, frame, DropReason::NotForUs);
                };
                let start = ip.l4 + wudp::HEADER_LEN;
                let verdict = match &mut b.binding {
                    Binding::Handler(h) => {
                        let socket = b.socket;
                        let payload = &mut frame.data_mut()[start..start + payload_len];
                        let rx = UdpRx {
                            src: d.src,
                            dst: d.dst,
                            payload,
                        };
                        let mut tx = TxCtx {
                            core,
                            link,
                            now,
                            socket,
                        };
                        h.on_datagram(now, rx, &mut tx)
                    }
                    Binding::Channel(ch) => {
                        let copy = RecvDatagram {
                            src: d.src,
                            data: frame.data()[start..start + payload_len].to_vec(),
                        };
                        match ch.try_send(copy) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                                core.counters.drops[DropReason::SocketQueueFull.index()] += 1;
                            }
                        }
                        Verdict::Done
                    }
                };
                match verdict {
                    Verdict::Done => link.release(frame),
                    Verdict::Echo => {
                        core.turn_around(frame.data_mut(), &ip, true);
                        frame.set_len(ip.end);
                        core.counters.udp_replies += 1;
                        core.queue_tx(frame, None);
                    }
                    Verdict::Reply(n) => {
                        let n = n.min(payload_len);
                        let buf = frame.data_mut();
                        core.turn_around(buf, &ip, false);
                        let ihl = ip.l4 - ip.l3;
                        let udp_len = wudp::HEADER_LEN + n;
                        set_u16(buf, ip.l3 + 2, (ihl + udp_len) as u16);
                        set_u16(buf, ip.l4 + 4, udp_len as u16);
                        frame.set_len(ip.l4 + udp_len);
                        core.counters.udp_replies += 1;
                        core.queue_tx(frame, Some(ip.l3));
                    }
                }
            }
            RxDecision::PortUnreachable => self.core.port_unreachable(now, link, frame, ip),
            // Counted by the UDP table.
            RxDecision::Drop(_) => link.release(frame),
        }
    }
}

impl<F: FrameBuf> Shard<F> {
    /// A TCP segment: checksum verified, then the TCP half; the frame is
    /// released once the segment (borrowed from it) has been processed.
    fn handle_tcp<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L, frame: F, ip: Ip) {
        let data = frame.data();
        let parsed = tcp::Packet::new_checked(&data[ip.l4..ip.end])
            .and_then(|p| TcpRepr::parse(&p, ip.src.into(), ip.dst.into()));
        let Ok(seg) = parsed else {
            return self.core.drop_frame(link, frame, DropReason::Tcp);
        };
        let d = self
            .tcp
            .on_segment_from(now, mac_at(data, 6), ip.src, &seg, Origin::Local);
        if d == Demux::Forward {
            if let Some(f) = self.tcp_forward.as_mut() {
                f(&data[..ip.end]);
            }
        }
        link.release(frame);
    }
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

impl<F: FrameBuf> Core<F> {
    fn drop_frame<L: Link<Frame = F>>(&mut self, link: &mut L, frame: F, r: DropReason) {
        self.counters.drops[r.index()] += 1;
        link.release(frame);
    }

    fn queue_tx(&mut self, frame: F, csum_l3: Option<usize>) {
        self.tx.push(frame);
        self.tx_csum.push(csum_l3);
    }

    /// Validates the IPv4 header at `l3` and decides whether it is ours.
    fn parse_ipv4(&self, data: &[u8], l3: usize) -> Result<Ip, DropReason> {
        let p = ipv4::Packet::new_checked(&data[l3..]).map_err(|_| DropReason::Malformed)?;
        if p.version() != 4 {
            return Err(DropReason::Unsupported);
        }
        if !p.verify_checksum() {
            return Err(DropReason::IpChecksum);
        }
        let dst: Ipv4Addr = p.dst_addr().into();
        if dst != self.cfg.ip {
            return Err(DropReason::NotForUs);
        }
        if p.is_fragment() {
            return Err(DropReason::Fragment);
        }
        Ok(Ip {
            l3,
            l4: l3 + p.header_len() as usize,
            end: l3 + p.total_len() as usize,
            src: p.src_addr().into(),
            dst,
            protocol: p.protocol(),
        })
    }

    /// Learns the sender's MAC from an on-link sender's frame, so answers
    /// built fresh (not turned around) need no ARP (shared mode has none).
    fn learn_from(&mut self, data: &[u8], ip: &Ip, now: Instant) {
        let mac = mac_at(data, 6);
        if let Some((lip, lmac, at)) = self.learnt {
            if lip == ip.src && lmac == mac && now.saturating_duration_since(at) < RELEARN {
                return;
            }
        }
        if self.cfg.routes.next_hop(ip.src) == Some(ip.src) {
            self.neighbor.learn(ip.src, mac, now);
        }
        self.learnt = Some((ip.src, mac, now));
    }

    /// Turns a received IPv4 frame around in place: MACs (our MAC as the
    /// source), addresses, and for UDP/TCP the ports. Swaps leave every
    /// checksum valid; the TTL reset is patched into the header checksum
    /// (RFC 1624) unless `patch_ttl` is false (a full recompute follows).
    fn turn_around(&self, b: &mut [u8], ip: &Ip, patch_ttl: bool) {
        let peer = mac_at(b, 6);
        b[0..6].copy_from_slice(&peer);
        b[6..12].copy_from_slice(&self.cfg.mac);
        for i in 0..4 {
            b.swap(ip.l3 + 12 + i, ip.l3 + 16 + i);
        }
        if ip.protocol == ip_protocol::UDP || ip.protocol == ip_protocol::TCP {
            for i in 0..2 {
                b.swap(ip.l4 + i, ip.l4 + 2 + i);
            }
        }
        let ttl_at = ip.l3 + 8;
        let old = u16::from_be_bytes([b[ttl_at], b[ttl_at + 1]]);
        let new = ((DEFAULT_TTL as u16) << 8) | (old & 0xff);
        b[ttl_at] = DEFAULT_TTL;
        if patch_ttl {
            let c = u16::from_be_bytes([b[ip.l3 + 10], b[ip.l3 + 11]]);
            set_u16(b, ip.l3 + 10, checksum::update16(c, old, new));
        }
    }

    fn handle_arp<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L, frame: F, hl: usize) {
        if self.cfg.mode == AddressMode::Shared {
            return self.drop_frame(link, frame, DropReason::Arp);
        }
        let parsed = arp::Packet::new_checked(&frame.data()[hl..]).and_then(|p| ArpRepr::parse(&p));
        let Ok(a) = parsed else {
            return self.drop_frame(link, frame, DropReason::Malformed);
        };
        let pkt = ArpPacket {
            op: match a.operation {
                ArpOperation::Request => ArpOp::Request,
                ArpOperation::Reply => ArpOp::Reply,
            },
            sender_mac: a.source_hardware_addr.0,
            sender_ip: a.source_protocol_addr.into(),
            target_mac: a.target_hardware_addr.0,
            target_ip: a.target_protocol_addr.into(),
        };
        link.release(frame);
        if self.neighbor.process_arp(&pkt, now).is_err() {
            self.counters.drops[DropReason::Arp.index()] += 1;
        }
        self.drain_actions(link);
    }

    fn handle_icmp<L: Link<Frame = F>>(&mut self, link: &mut L, mut frame: F, ip: Ip) {
        let data = frame.data();
        let Ok(p) = icmpv4::Packet::new_checked(&data[ip.l4..ip.end]) else {
            return self.drop_frame(link, frame, DropReason::Malformed);
        };
        let body = &data[ip.l4..ip.end];
        let req = EchoRequest {
            src: ip.src,
            dst: ip.dst,
            link_broadcast: !EthernetAddress::from(mac_at(data, 0)).is_unicast(),
            icmp_type: p.msg_type(),
            code: p.msg_code(),
            checksum_ok: checksum::sum(body) == 0xffff,
            fragment: false,
        };
        if icmp::echo_decision(self.cfg.mode, self.cfg.ip, &req).is_err() {
            return self.drop_frame(link, frame, DropReason::Icmp);
        }
        // RFC 792: same identifier, sequence number and data; type 0.
        let b = frame.data_mut();
        self.turn_around(b, &ip, false);
        b[ip.l4] = icmp::types::ECHO_REPLY;
        b[ip.l4 + 1] = 0;
        frame.set_len(ip.end);
        self.counters.icmp_echo_replies += 1;
        self.queue_tx(frame, Some(ip.l3));
    }

    fn eth_to(&self, dst: Mac) -> EthernetRepr {
        EthernetRepr {
            src_addr: EthernetAddress(self.cfg.mac),
            dst_addr: EthernetAddress(dst),
            ethertype: ethertype::IPV4,
            vlan: None,
        }
    }

    /// ICMP destination unreachable, port unreachable (RFC 1122
    /// §4.1.3.1), rate limited; the UDP table has checked RFC 1122's
    /// conditions.
    fn port_unreachable<L: Link<Frame = F>>(
        &mut self,
        now: Instant,
        link: &mut L,
        frame: F,
        ip: Ip,
    ) {
        if !self.icmp_limit.allow(now) {
            return self.drop_frame(link, frame, DropReason::Icmp);
        }
        let data = frame.data();
        let Ok(orig) =
            ipv4::Packet::new_checked(&data[ip.l3..ip.end]).and_then(|p| Ipv4Repr::parse(&p))
        else {
            return self.drop_frame(link, frame, DropReason::Malformed);
        };
        let quoted = &data[ip.l4..ip.end.min(ip.l4 + icmpv4::QUOTED_DATA_LEN)];
        let msg = Icmpv4Repr::DstUnreachable {
            code: icmp::types::CODE_PORT_UNREACHABLE,
            mtu: 0,
            header: orig,
            data: quoted,
        };
        let eth = self.eth_to(mac_at(data, 6));
        let iph = Ipv4Repr::new(ip.dst.into(), ip.src.into(), ip_protocol::ICMP, 0);
        let Some(mut out) = link.alloc_tx() else {
            return self.drop_frame(link, frame, DropReason::NoTxFrame);
        };
        let cap = out.capacity();
        out.set_len(cap);
        match emit_ipv4_icmp(out.data_mut(), &eth, &iph, &msg) {
            Ok(n) => {
                out.set_len(n);
                self.counters.icmp_unreachable += 1;
                self.queue_tx(out, None);
            }
            Err(_) => link.release(out),
        }
        link.release(frame);
    }

    /// Builds a UDP datagram in a fresh frame and sends it to the next hop
    /// (or queues it while ARP resolves, dedicated mode).
    fn send_udp<L: Link<Frame = F>>(
        &mut self,
        now: Instant,
        link: &mut L,
        socket: SocketId,
        dst: SocketAddrV4,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), UdpError> {
        let hop = self
            .cfg
            .routes
            .next_hop(*dst.ip())
            .ok_or(UdpError::Unaddressable)?;
        let total = ETH_LEN + ipv4::HEADER_LEN + wudp::HEADER_LEN + len;
        let mut out = link.alloc_tx().ok_or(UdpError::WouldBlock)?;
        if total > out.capacity() {
            link.release(out);
            return Err(UdpError::MessageTooLong);
        }
        let d = match self.udp.send_to(socket, dst, len) {
            Ok(d) => d,
            Err(e) => {
                link.release(out);
                return Err(e);
            }
        };
        out.set_len(total);
        let b = out.data_mut();
        let eth = self.eth_to([0; 6]);
        eth.emit(&mut ethernet::Packet::new_unchecked(&mut b[..ETH_LEN]));
        let iph = Ipv4Repr::new(
            (*d.src.ip()).into(),
            (*d.dst.ip()).into(),
            ip_protocol::UDP,
            d.udp_length as usize,
        );
        let l4 = ETH_LEN + ipv4::HEADER_LEN;
        iph.emit(&mut ipv4::Packet::new_unchecked(&mut b[ETH_LEN..l4]));
        let mut u = wudp::Packet::new_unchecked(&mut b[l4..]);
        u.set_src_port(d.src.port());
        u.set_dst_port(d.dst.port());
        u.set_len(d.udp_length);
        u.set_checksum(0);
        fill(&mut b[l4 + wudp::HEADER_LEN..]);
        match self.neighbor.lookup(hop, now) {
            Some(mac) => {
                out.data_mut()[0..6].copy_from_slice(&mac);
                self.queue_tx(out, Some(ETH_LEN));
            }
            None => {
                // It waits in the cache: finish it now, the flush will not.
                finalize_one(out.data_mut());
                match self.neighbor.resolve(hop, out, now) {
                    Resolution::Ready(mac, mut f) => {
                        f.data_mut()[0..6].copy_from_slice(&mac);
                        self.queue_tx(f, None);
                    }
                    Resolution::Queued => {}
                }
            }
        }
        Ok(())
    }

    /// Dedicated mode: TCP frames from `from` on that the TCP half addressed
    /// to [`UNRESOLVED_MAC`] (no MAC for the next hop yet, e.g. an active
    /// open's SYN) wait in the neighbour cache's bounded queue while ARP
    /// resolves; the cache sends them on the reply, or drops and counts
    /// them when resolution fails (the connection's retransmission then
    /// asks again).
    fn park_unresolved_tcp(&mut self, now: Instant, from: usize) {
        let mut i = from;
        while i < self.tx.len() {
            if mac_at(self.tx[i].data(), 0) != UNRESOLVED_MAC {
                i += 1;
                continue;
            }
            let f = self.tx.remove(i);
            self.tx_csum.remove(i);
            // The TCP half builds untagged IPv4 frames.
            let d = f.data();
            let at = ETH_LEN + 16;
            let dst = Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3]);
            let hop = self.cfg.routes.next_hop(dst).unwrap_or(dst);
            match self.neighbor.resolve(hop, f, now) {
                Resolution::Ready(mac, mut f) => {
                    f.data_mut()[0..6].copy_from_slice(&mac);
                    self.tx.insert(i, f);
                    self.tx_csum.insert(i, None);
                    i += 1;
                }
                Resolution::Queued => {}
            }
        }
    }

    /// Carries out the neighbour cache's requests.
    fn drain_actions<L: Link<Frame = F>>(&mut self, link: &mut L) {
        while let Some(a) = self.neighbor.poll_action() {
            match a {
                Action::SendRequest { target, dst_mac } => {
                    // Shared mode: the kernel owns ARP; the worker seeds the
                    // cache from the kernel's table instead.
                    if self.cfg.mode == AddressMode::Dedicated {
                        let a = ArpRepr {
                            operation: ArpOperation::Request,
                            source_hardware_addr: EthernetAddress(self.cfg.mac),
                            source_protocol_addr: self.cfg.ip.into(),
                            target_hardware_addr: EthernetAddress([0; 6]),
                            target_protocol_addr: target.into(),
                        };
                        if self.send_arp(link, dst_mac, &a) {
                            self.counters.arp_requests += 1;
                        }
                    }
                }
                Action::SendReply {
                    target_ip,
                    target_mac,
                } => {
                    let a = ArpRepr {
                        operation: ArpOperation::Reply,
                        source_hardware_addr: EthernetAddress(self.cfg.mac),
                        source_protocol_addr: self.cfg.ip.into(),
                        target_hardware_addr: EthernetAddress(target_mac),
                        target_protocol_addr: target_ip.into(),
                    };
                    if self.send_arp(link, target_mac, &a) {
                        self.counters.arp_replies += 1;
                    }
                }
                Action::Transmit {
                    dst_mac,
                    mut packet,
                } => {
                    packet.data_mut()[0..6].copy_from_slice(&dst_mac);
                    self.queue_tx(packet, None);
                }
                Action::Drop { packet, .. } => {
                    self.drop_frame(link, packet, DropReason::Neighbor);
                }
            }
        }
    }

    fn send_arp<L: Link<Frame = F>>(&mut self, link: &mut L, dst: Mac, a: &ArpRepr) -> bool {
        let Some(mut out) = link.alloc_tx() else {
            self.counters.drops[DropReason::NoTxFrame.index()] += 1;
            return false;
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(self.cfg.mac),
            dst_addr: EthernetAddress(dst),
            ethertype: ethertype::ARP,
            vlan: None,
        };
        let cap = out.capacity();
        out.set_len(cap);
        match emit_arp(out.data_mut(), &eth, a) {
            Ok(n) => {
                out.set_len(n);
                self.queue_tx(out, None);
                true
            }
            Err(_) => {
                link.release(out);
                false
            }
        }
    }

    fn flush<L: Link<Frame = F>>(&mut self, now: Instant, link: &mut L) {
        if self.tx.is_empty() {
            return;
        }
        if self.tx_csum.iter().any(|c| c.is_some()) {
            let mut jobs: Vec<ChecksumJob<'_>> = Vec::with_capacity(self.tx.len());
            for (f, &c) in self.tx.iter_mut().zip(&self.tx_csum) {
                let Some(l3) = c else {
                    continue;
                };
                let frame = f.data_mut();
                if let Ok(offsets) = ChecksumOffsets::for_ipv4(frame, l3) {
                    jobs.push(ChecksumJob { frame, offsets });
                }
            }
            checksum::finalize_batch(&mut jobs);
        }
        self.counters.tx_frames += self.tx.len() as u64;
        self.tx_csum.clear();
        link.send_batch(now, &mut self.tx);
    }
}

/// Checksums of one IPv4 frame (untagged), outside a batch.
fn finalize_one(frame: &mut [u8]) {
    if let Ok(offsets) = ChecksumOffsets::for_ipv4(frame, ETH_LEN) {
        checksum::finalize_batch(&mut [ChecksumJob { frame, offsets }]);
    }
}

/// A handler's view of the shard for sending.
struct TxCtx<'a, L: Link> {
    core: &'a mut Core<L::Frame>,
    link: &'a mut L,
    now: Instant,
    socket: SocketId,
}

impl<L: Link> UdpSend for TxCtx<'_, L> {
    fn local_port(&self) -> u16 {
        self.core
            .udp
            .socket(self.socket)
            .map(|s| s.local().port())
            .unwrap_or(0)
    }

    fn send_with(
        &mut self,
        dst: SocketAddrV4,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), UdpError> {
        self.core
            .send_udp(self.now, self.link, self.socket, dst, len, fill)
    }
}
