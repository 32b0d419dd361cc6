//! Whole frames: build and parse Ethernet + IPv4 + {TCP, UDP, ICMP} and
//! Ethernet + ARP in one call. For simulations, tests and the slow path;
//! the worker's hot path uses the per-layer views directly.
//!
//! Emitters take the buffer to write into and return the frame length, or
//! `Truncated` when the buffer is too short; they never panic. Lengths,
//! protocol numbers, EtherTypes and every checksum are filled in here, so
//! the `Ipv4Repr`'s `protocol` and `payload_len` and the `EthernetRepr`'s
//! `ethertype` are ignored on emit.

use super::arp::{self, ArpRepr};
use super::ethernet::{self, EthernetRepr};
use super::icmpv4::{self, Icmpv4Repr};
use super::ipv4::{self, Ipv4Repr};
use super::tcp::{self, TcpRepr};
use super::udp::{self, UdpRepr};
use super::{ethertype, ip_protocol, WireError};

/// The transport content of a parsed IPv4 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp(TcpRepr<'a>),
    Udp(UdpRepr<'a>),
    Icmp(Icmpv4Repr<'a>),
    /// A fragment (not reassembled) or another protocol: the raw payload.
    Other(&'a [u8]),
}

/// A parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Arp(EthernetRepr, ArpRepr),
    Ipv4(EthernetRepr, Ipv4Repr, L4<'a>),
}

/// Parses a whole frame, verifying every checksum. Non-IPv4/ARP
/// EtherTypes are `Unsupported`; fragments and unknown IP protocols come
/// back as [`L4::Other`].
pub fn parse(frame: &[u8]) -> Result<Frame<'_>, WireError> {
    let eth_p = ethernet::Packet::new_checked(frame)?;
    let eth = EthernetRepr::parse(&eth_p)?;
    let payload = eth_p.payload();
    match eth.ethertype {
        ethertype::ARP => {
            let a = ArpRepr::parse(&arp::Packet::new_checked(payload)?)?;
            Ok(Frame::Arp(eth, a))
        }
        ethertype::IPV4 => {
            let ip_p = ipv4::Packet::new_checked(payload)?;
            let ip = Ipv4Repr::parse(&ip_p)?;
            let l4_bytes = ip_p.payload();
            if ip.is_fragment() {
                return Ok(Frame::Ipv4(eth, ip, L4::Other(l4_bytes)));
            }
            let l4 = match ip.protocol {
                ip_protocol::TCP => {
                    let p = tcp::Packet::new_checked(l4_bytes)?;
                    L4::Tcp(TcpRepr::parse(&p, ip.src_addr, ip.dst_addr)?)
                }
                ip_protocol::UDP => {
                    let p = udp::Packet::new_checked(l4_bytes)?;
                    L4::Udp(UdpRepr::parse(&p, ip.src_addr, ip.dst_addr)?)
                }
                ip_protocol::ICMP => {
                    let p = icmpv4::Packet::new_checked(l4_bytes)?;
                    L4::Icmp(Icmpv4Repr::parse(&p)?)
                }
                _ => L4::Other(l4_bytes),
            };
            Ok(Frame::Ipv4(eth, ip, l4))
        }
        _ => Err(WireError::Unsupported),
    }
}

/// Length of an Ethernet + IPv4 + TCP frame.
pub fn ipv4_tcp_len(eth: &EthernetRepr, tcp: &TcpRepr) -> usize {
    eth.buffer_len() + ipv4::HEADER_LEN + tcp.buffer_len()
}

/// Length of an Ethernet + IPv4 + UDP frame.
pub fn ipv4_udp_len(eth: &EthernetRepr, udp: &UdpRepr) -> usize {
    eth.buffer_len() + ipv4::HEADER_LEN + udp.buffer_len()
}

/// Writes Ethernet and IPv4 headers for an L4 payload of `l4_len` bytes;
/// returns the offset of the L4 header.
fn emit_l2_l3(
    buf: &mut [u8],
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    protocol: u8,
    l4_len: usize,
) -> Result<usize, WireError> {
    let eth_len = eth.buffer_len();
    let total = eth_len + ipv4::HEADER_LEN + l4_len;
    if ipv4::HEADER_LEN + l4_len > u16::MAX as usize {
        return Err(WireError::BadLength);
    }
    if buf.len() < total {
        return Err(WireError::Truncated);
    }
    let eth = EthernetRepr {
        ethertype: ethertype::IPV4,
        ..*eth
    };
    eth.emit(&mut ethernet::Packet::new_unchecked(&mut buf[..eth_len]));
    let ip = Ipv4Repr {
        protocol,
        payload_len: l4_len,
        ..*ip
    };
    let ip_end = eth_len + ipv4::HEADER_LEN;
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut buf[eth_len..ip_end]));
    Ok(ip_end)
}

/// Builds an Ethernet + IPv4 + TCP frame at the start of `buf` with all
/// checksums; returns its length.
pub fn emit_ipv4_tcp(
    buf: &mut [u8],
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
) -> Result<usize, WireError> {
    let l4_len = tcp.buffer_len();
    let at = emit_l2_l3(buf, eth, ip, ip_protocol::TCP, l4_len)?;
    let end = at + l4_len;
    tcp.emit(
        &mut tcp::Packet::new_unchecked(&mut buf[at..end]),
        ip.src_addr,
        ip.dst_addr,
    );
    Ok(end)
}

/// Builds an Ethernet + IPv4 + UDP frame with all checksums; returns its
/// length.
pub fn emit_ipv4_udp(
    buf: &mut [u8],
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    udp: &UdpRepr,
) -> Result<usize, WireError> {
    let l4_len = udp.buffer_len();
    let at = emit_l2_l3(buf, eth, ip, ip_protocol::UDP, l4_len)?;
    let end = at + l4_len;
    udp.emit(
        &mut udp::Packet::new_unchecked(&mut buf[at..end]),
        ip.src_addr,
        ip.dst_addr,
    );
    Ok(end)
}

/// Builds an Ethernet + IPv4 + ICMP frame; returns its length.
pub fn emit_ipv4_icmp(
    buf: &mut [u8],
    eth: &EthernetRepr,
    ip: &Ipv4Repr,
    icmp: &Icmpv4Repr,
) -> Result<usize, WireError> {
    let l4_len = icmp.buffer_len();
    let at = emit_l2_l3(buf, eth, ip, ip_protocol::ICMP, l4_len)?;
    let end = at + l4_len;
    icmp.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[at..end]));
    Ok(end)
}

/// Builds an Ethernet + ARP frame; returns its length.
pub fn emit_arp(buf: &mut [u8], eth: &EthernetRepr, a: &ArpRepr) -> Result<usize, WireError> {
    let eth_len = eth.buffer_len();
    let end = eth_len + a.buffer_len();
    if buf.len() < end {
        return Err(WireError::Truncated);
    }
    let eth = EthernetRepr {
        ethertype: ethertype::ARP,
        ..*eth
    };
    eth.emit(&mut ethernet::Packet::new_unchecked(&mut buf[..eth_len]));
    a.emit(&mut arp::Packet::new_unchecked(&mut buf[eth_len..end]));
    Ok(end)
}
