//! Sans-IO UDP (RFC 768): the socket table of one shard and its decisions.
//!
//! The core owns the sockets of a shard (keyed by local port), their
//! connected remotes, per-socket bounded receive queues of datagram
//! descriptors, the receive-side validation and the drop counters. It never
//! touches bytes: the worker parses the frame with the wire layer, hands
//! [`UdpTable::receive`] what it found (addresses, the UDP length field, the
//! IP payload length, the checksum verdict) and gets back a decision:
//! [`RxDecision::Deliver`] to a socket, [`RxDecision::PortUnreachable`]
//! (dedicated mode, closed port) or [`RxDecision::Drop`] with a reason. On
//! `Deliver` the worker either calls the application handler right away with
//! the payload borrowed from the UMEM frame, or queues a [`Datagram`] whose
//! `buf` is its own frame handle `T` (so the payload is never copied and a
//! frame token is never lost: every path that discards a datagram returns
//! it). Sending is the mirror: [`UdpTable::send_to`] validates and returns
//! the header fields ([`TxDatagram`]) that the wire layer emits, checksum
//! included.
//!
//! `PortUnreachable` is the RFC 1122 rule only; the worker also asks its
//! [`crate::icmp::ErrorRateLimiter`] (with `now`) before sending the error.
//!
//! Port allocation is not done here: the caller gets ports from
//! [`crate::ports::PortService`] and binds them here; the table refuses a
//! second socket on a port it already has. One socket per local port; a
//! connected socket accepts datagrams only from its remote.
//!
//! No IPv4 fragmentation: payloads are limited to `MTU - 28`
//! ([`max_payload`]), and sends beyond fail with
//! [`UdpError::MessageTooLong`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::icmp::{self, AddressMode, ErrorContext};
use crate::wire::{self, EthernetAddress, Ipv4Repr, UdpRepr};

/// Bytes of the UDP header.
pub const HEADER_LEN: usize = 8;
/// Bytes of an IPv4 header without options (what the stack sends).
pub const IPV4_HEADER_LEN: usize = 20;

/// The largest UDP payload that fits unfragmented in an IP packet of `mtu`
/// bytes: MTU - 20 (IPv4) - 8 (UDP).
pub const fn max_payload(mtu: usize) -> usize {
    mtu.saturating_sub(IPV4_HEADER_LEN + HEADER_LEN)
}

/// Errors of socket operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// The payload exceeds `MTU - 28` bytes (no fragmentation).
    MessageTooLong,
    /// `send` or `peer` on a socket that is not connected.
    NotConnected,
    /// The table already has a socket on this local port.
    AddrInUse,
    /// Port 0 or the unspecified address where a real one is needed.
    Unaddressable,
    /// The socket id is stale or was never issued.
    InvalidSocket,
    /// `recv` on an empty queue.
    WouldBlock,
}

impl UdpError {
    /// The `io::ErrorKind` the API reports.
    pub fn kind(self) -> io::ErrorKind {
        match self {
            UdpError::MessageTooLong => io::ErrorKind::InvalidInput,
            UdpError::NotConnected => io::ErrorKind::NotConnected,
            UdpError::AddrInUse => io::ErrorKind::AddrInUse,
            UdpError::Unaddressable => io::ErrorKind::AddrNotAvailable,
            UdpError::InvalidSocket => io::ErrorKind::NotFound,
            UdpError::WouldBlock => io::ErrorKind::WouldBlock,
        }
    }
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UdpError::MessageTooLong => "message too long: payload exceeds MTU - 28 bytes",
            UdpError::NotConnected => "socket is not connected",
            UdpError::AddrInUse => "address in use",
            UdpError::Unaddressable => "port 0 or unspecified address",
            UdpError::InvalidSocket => "no such socket",
            UdpError::WouldBlock => "no datagram queued",
        })
    }
}

impl std::error::Error for UdpError {}

impl From<UdpError> for io::Error {
    fn from(e: UdpError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Length field below 8 or beyond the IP payload.
    BadLength,
    /// Non-zero checksum that does not verify.
    BadChecksum,
    /// Destination port 0.
    BadPort,
    /// No socket for the port (or for the source, if connected), and no
    /// port-unreachable allowed.
    NoSocket,
    /// The socket's receive queue is full.
    QueueFull,
}

impl DropReason {
    pub const COUNT: usize = 5;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::BadLength,
        DropReason::BadChecksum,
        DropReason::BadPort,
        DropReason::NoSocket,
        DropReason::QueueFull,
    ];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::BadLength => "bad_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadPort => "bad_port",
            DropReason::NoSocket => "no_socket",
            DropReason::QueueFull => "queue_full",
        }
    }
}

/// The checksum verdict on a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The field is zero: the sender computed none (allowed over IPv4,
    /// RFC 768).
    Absent,
    Valid,
    Invalid,
}

impl Checksum {
    /// Verdict from the checksum field and a verifier that is only run when
    /// the field is non-zero (the wire layer's pseudo-header sum).
    pub fn check(field: u16, verify: impl FnOnce() -> bool) -> Checksum {
        if field == 0 {
            Checksum::Absent
        } else if verify() {
            Checksum::Valid
        } else {
            Checksum::Invalid
        }
    }
}

/// What the worker found in a received UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxDatagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// IPv4 total length minus header length, already checked to be within
    /// the frame.
    pub ip_payload_len: usize,
    /// The UDP length field (header included).
    pub udp_length: u16,
    pub checksum: Checksum,
    /// The Ethernet destination was broadcast or multicast.
    pub link_broadcast: bool,
}

impl RxDatagram {
    /// The core's input from a parsed frame: the Ethernet destination, the
    /// IPv4 header and the IPv4 payload (UDP header onwards, cut at the IPv4
    /// total length). Reads the UDP fields without trusting them: a payload
    /// shorter than a UDP header yields length 0, which
    /// [`UdpTable::receive`] drops as `BadLength`. The checksum (pseudo
    /// header included) is verified only when the field is non-zero and the
    /// length field fits, so a bad length is never mistaken for a bad sum.
    pub fn from_wire(eth_dst: EthernetAddress, ip: &Ipv4Repr, ip_payload: &[u8]) -> RxDatagram {
        let src_ip = Ipv4Addr::from(ip.src_addr);
        let dst_ip = Ipv4Addr::from(ip.dst_addr);
        let link_broadcast = !eth_dst.is_unicast();
        if ip_payload.len() < HEADER_LEN {
            return RxDatagram {
                src: SocketAddrV4::new(src_ip, 0),
                dst: SocketAddrV4::new(dst_ip, 0),
                ip_payload_len: ip_payload.len(),
                udp_length: 0,
                checksum: Checksum::Absent,
                link_broadcast,
            };
        }
        let p = wire::udp::Packet::new_unchecked(ip_payload);
        let udp_length = p.len();
        let fits = (HEADER_LEN..=ip_payload.len()).contains(&(udp_length as usize));
        RxDatagram {
            src: SocketAddrV4::new(src_ip, p.src_port()),
            dst: SocketAddrV4::new(dst_ip, p.dst_port()),
            ip_payload_len: ip_payload.len(),
            udp_length,
            checksum: Checksum::check(p.checksum(), || {
                fits && p.verify_checksum(ip.src_addr, ip.dst_addr)
            }),
            link_broadcast,
        }
    }
}

/// A handle to a socket of one table; stale after `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    index: u32,
    generation: u32,
}

/// The decision on a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDecision {
    /// For this socket; the payload is the `payload_len` bytes after the
    /// UDP header (bytes beyond the UDP length are IP padding, ignored).
    Deliver {
        socket: SocketId,
        payload_len: usize,
    },
    /// Dedicated mode, closed port: answer with ICMP destination
    /// unreachable, code 3 (RFC 1122 §4.1.3.1), rate limit permitting.
    PortUnreachable,
    Drop(DropReason),
}

/// A received datagram waiting in a socket's queue; `buf` is the worker's
/// handle to the frame holding the payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram<T> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload_len: usize,
    pub buf: T,
}

/// Header fields of a datagram to send: the wire layer emits IPv4 + UDP
/// from these and computes the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxDatagram {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// UDP length field: payload + 8.
    pub udp_length: u16,
}

impl TxDatagram {
    /// The IPv4 header for this datagram (TTL 64, DF set).
    pub fn ipv4_repr(&self) -> Ipv4Repr {
        Ipv4Repr::new(
            (*self.src.ip()).into(),
            (*self.dst.ip()).into(),
            wire::ip_protocol::UDP,
            self.udp_length as usize,
        )
    }

    /// The UDP header over `payload`, which must be the length `send_to`
    /// validated (`udp_length - 8` bytes).
    pub fn udp_repr<'a>(&self, payload: &'a [u8]) -> UdpRepr<'a> {
        debug_assert_eq!(payload.len() + HEADER_LEN, self.udp_length as usize);
        UdpRepr {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            payload,
        }
    }
}

/// Table configuration.
#[derive(Debug, Clone, Copy)]
pub struct UdpConfig {
    pub mode: AddressMode,
    /// The stack's address: source of datagrams sent from sockets bound to
    /// 0.0.0.0, and the address port-unreachable answers are for.
    pub local_addr: Ipv4Addr,
    pub mtu: usize,
    /// Datagrams each socket's receive queue holds before dropping.
    pub rx_queue_limit: usize,
}

/// Counters of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub rx_delivered: u64,
    /// Delivered without a checksum (field zero).
    pub rx_no_checksum: u64,
    pub rx_port_unreachable: u64,
    pub tx_datagrams: u64,
    pub drops: [u64; DropReason::COUNT],
}

impl UdpCounters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

/// One socket's state.
#[derive(Debug)]
pub struct UdpSocket<T> {
    local: SocketAddrV4,
    remote: Option<SocketAddrV4>,
    rx: VecDeque<Datagram<T>>,
    rx_limit: usize,
}

impl<T> UdpSocket<T> {
    /// The bound address (0.0.0.0 = any local address).
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn remote(&self) -> Option<SocketAddrV4> {
        self.remote
    }

    pub fn queued(&self) -> usize {
        self.rx.len()
    }

    fn accepts(&self, src: SocketAddrV4, dst: SocketAddrV4) -> bool {
        (self.local.ip().is_unspecified() || self.local.ip() == dst.ip())
            && self.remote.is_none_or(|r| r == src)
    }
}

struct Slot<T> {
    generation: u32,
    socket: Option<UdpSocket<T>>,
}

/// The UDP sockets of one shard.
pub struct UdpTable<T> {
    config: UdpConfig,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Slot index by local port (`NONE` if none): one indexed load on the
    /// per-packet path instead of a hash (256 KiB per shard).
    by_port: Box<[u32]>,
    open: usize,
    counters: UdpCounters,
}

const NONE: u32 = u32::MAX;

impl<T> fmt::Debug for UdpTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpTable")
            .field("config", &self.config)
            .field("sockets", &self.open)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<T> UdpTable<T> {
    pub fn new(config: UdpConfig) -> UdpTable<T> {
        UdpTable {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_port: vec![NONE; 65536].into_boxed_slice(),
            open: 0,
            counters: UdpCounters::default(),
        }
    }

    pub fn config(&self) -> &UdpConfig {
        &self.config
    }

    pub fn counters(&self) -> &UdpCounters {
        &self.counters
    }

    /// Number of open sockets.
    pub fn len(&self) -> usize {
        self.open
    }

    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    /// Opens a socket on `local` (port non-zero; address 0.0.0.0 for any).
    pub fn bind(&mut self, local: SocketAddrV4) -> Result<SocketId, UdpError> {
        if local.port() == 0 {
            return Err(UdpError::Unaddressable);
        }
        if self.by_port[local.port() as usize] != NONE {
            return Err(UdpError::AddrInUse);
        }
        let socket = UdpSocket {
            local,
            remote: None,
            rx: VecDeque::new(),
            rx_limit: self.config.rx_queue_limit,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].socket = Some(socket);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    socket: Some(socket),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_port[local.port() as usize] = index;
        self.open += 1;
        Ok(SocketId {
            index,
            generation: self.slots[index as usize].generation,
        })
    }

    /// Sets the default destination; afterwards the socket only receives
    /// from `remote`. `None` disconnects.
    pub fn connect(&mut self, id: SocketId, remote: Option<SocketAddrV4>) -> Result<(), UdpError> {
        if let Some(r) = remote {
            if r.port() == 0 || r.ip().is_unspecified() {
                return Err(UdpError::Unaddressable);
            }
        }
        self.socket_mut(id)?.remote = remote;
        Ok(())
    }

    /// Closes the socket and returns its queued datagrams so the caller can
    /// recycle their frames. The port is free in this table afterwards (the
    /// caller releases it in the port service).
    pub fn close(&mut self, id: SocketId) -> Result<VecDeque<Datagram<T>>, UdpError> {
        self.socket(id)?;
        let slot = &mut self.slots[id.index as usize];
        let socket = slot.socket.take().expect("checked above");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.by_port[socket.local.port() as usize] = NONE;
        self.open -= 1;
        Ok(socket.rx)
    }

    pub fn socket(&self, id: SocketId) -> Result<&UdpSocket<T>, UdpError> {
        match self.slots.get(id.index as usize) {
            Some(Slot {
                generation,
                socket: Some(s),
            }) if *generation == id.generation => Ok(s),
            _ => Err(UdpError::InvalidSocket),
        }
    }

    fn socket_mut(&mut self, id: SocketId) -> Result<&mut UdpSocket<T>, UdpError> {
        match self.slots.get_mut(id.index as usize) {
            Some(Slot {
                generation,
                socket: Some(s),
            }) if *generation == id.generation => Ok(s),
            _ => Err(UdpError::InvalidSocket),
        }
    }

    /// Validates a send of `payload_len` bytes to `dst` and returns the
    /// header fields to emit.
    pub fn send_to(
        &mut self,
        id: SocketId,
        dst: SocketAddrV4,
        payload_len: usize,
    ) -> Result<TxDatagram, UdpError> {
        let local = self.socket(id)?.local;
        if payload_len > max_payload(self.config.mtu) {
            return Err(UdpError::MessageTooLong);
        }
        if dst.port() == 0 || dst.ip().is_unspecified() {
            return Err(UdpError::Unaddressable);
        }
        let src_ip = if local.ip().is_unspecified() {
            self.config.local_addr
        } else {
            *local.ip()
        };
        self.counters.tx_datagrams += 1;
        Ok(TxDatagram {
            src: SocketAddrV4::new(src_ip, local.port()),
            dst,
            // max_payload(mtu) + 8 can exceed u16 only for absurd MTUs.
            udp_length: u16::try_from(payload_len + HEADER_LEN)
                .map_err(|_| UdpError::MessageTooLong)?,
        })
    }

    /// `send_to` the connected remote.
    pub fn send(&mut self, id: SocketId, payload_len: usize) -> Result<TxDatagram, UdpError> {
        let remote = self.socket(id)?.remote.ok_or(UdpError::NotConnected)?;
        self.send_to(id, remote, payload_len)
    }

    /// Validates a received datagram and decides where it goes; counts it.
    /// A `Deliver` is counted as delivered: the caller either hands the
    /// payload to the application now or calls [`enqueue`](Self::enqueue).
    pub fn receive(&mut self, d: &RxDatagram) -> RxDecision {
        let decision = self.decide(d);
        match decision {
            RxDecision::Deliver { .. } => {
                self.counters.rx_delivered += 1;
                if d.checksum == Checksum::Absent {
                    self.counters.rx_no_checksum += 1;
                }
            }
            RxDecision::PortUnreachable => self.counters.rx_port_unreachable += 1,
            RxDecision::Drop(r) => self.counters.drops[r.index()] += 1,
        }
        decision
    }

    fn decide(&self, d: &RxDatagram) -> RxDecision {
        // RFC 768: the length counts the header; it must fit in the IP
        // payload (shorter is allowed: the rest is padding).
        let len = d.udp_length as usize;
        if len < HEADER_LEN || len > d.ip_payload_len {
            return RxDecision::Drop(DropReason::BadLength);
        }
        // Checked before the lookup, so a corrupted port never triggers a
        // port unreachable (as Linux does).
        if d.checksum == Checksum::Invalid {
            return RxDecision::Drop(DropReason::BadChecksum);
        }
        if d.dst.port() == 0 {
            return RxDecision::Drop(DropReason::BadPort);
        }
        let i = self.by_port[d.dst.port() as usize];
        let found = self.slots.get(i as usize).and_then(|slot| {
            let s = slot.socket.as_ref()?;
            s.accepts(d.src, d.dst).then_some((i, slot.generation, s))
        });
        match found {
            Some((index, generation, s)) => {
                if s.rx.len() >= s.rx_limit {
                    RxDecision::Drop(DropReason::QueueFull)
                } else {
                    RxDecision::Deliver {
                        socket: SocketId { index, generation },
                        payload_len: len - HEADER_LEN,
                    }
                }
            }
            None => {
                let ctx = ErrorContext {
                    src: *d.src.ip(),
                    dst: *d.dst.ip(),
                    link_broadcast: d.link_broadcast,
                    non_initial_fragment: false,
                    icmp_type: None,
                };
                match icmp::may_send_error(self.config.mode, self.config.local_addr, &ctx) {
                    Ok(()) => RxDecision::PortUnreachable,
                    Err(_) => RxDecision::Drop(DropReason::NoSocket),
                }
            }
        }
    }

    /// Queues a delivered datagram on its socket. Gives it back if the
    /// socket is gone or its queue is full (counted as `QueueFull`).
    pub fn enqueue(&mut self, id: SocketId, d: Datagram<T>) -> Result<(), Datagram<T>> {
        let Ok(s) = self.socket_mut(id) else {
            return Err(d);
        };
        if s.rx.len() >= s.rx_limit {
            self.counters.drops[DropReason::QueueFull.index()] += 1;
            self.counters.rx_delivered = self.counters.rx_delivered.saturating_sub(1);
            return Err(d);
        }
        s.rx.push_back(d);
        Ok(())
    }

    /// Takes the oldest queued datagram (`WouldBlock` if none).
    pub fn recv(&mut self, id: SocketId) -> Result<Datagram<T>, UdpError> {
        self.socket_mut(id)?
            .rx
            .pop_front()
            .ok_or(UdpError::WouldBlock)
    }

    /// The oldest queued datagram, left in the queue.
    pub fn peek(&self, id: SocketId) -> Result<&Datagram<T>, UdpError> {
        self.socket(id)?.rx.front().ok_or(UdpError::WouldBlock)
    }
}
