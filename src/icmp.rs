//! ICMPv4 policy: which echo requests the stack answers and when it may send
//! an ICMP error (port unreachable), plus the global error rate limit.
//!
//! This module owns decisions only. Parsing and building ICMP messages (type,
//! code, checksum, the quoted datagram) belong to the wire layer; counting
//! belongs to the worker, which keeps one counter per [`EchoIgnore`] /
//! [`NoErrorReason`] value.
//!
//! In shared-address mode the kernel owns ICMP for the interface address, so
//! the stack answers nothing; in dedicated mode it owns its address and
//! answers echo requests to it, like Linux with its defaults
//! (`icmp_echo_ignore_broadcasts = 1`).

use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::{self, icmpv4, EthernetAddress, Icmpv4Repr, Ipv4Repr};

/// Whose address the stack serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// The interface's address, shared with the kernel: the stack owns only
    /// the ports it binds; the kernel keeps ARP, ICMP and every other port.
    Shared,
    /// An address the kernel does not have: the stack answers ARP and ICMP
    /// echo for it and reports closed ports (ICMP port unreachable for UDP).
    Dedicated,
}

/// ICMP message types used here (RFC 792).
pub mod types {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Code of "port unreachable" under `DEST_UNREACHABLE`.
    pub const CODE_PORT_UNREACHABLE: u8 = 3;
}

/// True for the ICMP error types (RFC 1122 §3.2.2: the ones never answered
/// with another error). Unknown types count as errors, to stay on the safe
/// side of an error storm.
pub fn is_error_type(icmp_type: u8) -> bool {
    !matches!(
        icmp_type,
        types::ECHO_REPLY | types::ECHO_REQUEST | 9 | 10 | 13..=18
    )
}

/// True if `addr` can be the source of a datagram from a single host
/// (RFC 1122 §3.2.1.3): not 0.0.0.0, loopback, broadcast, multicast or
/// class E.
pub fn is_host_source(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_broadcast()
        || addr.is_multicast()
        || addr.octets()[0] >= 240)
}

/// What is known of a received datagram when deciding whether to answer it
/// with an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorContext {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The Ethernet destination was broadcast or multicast.
    pub link_broadcast: bool,
    /// The IPv4 fragment offset is non-zero.
    pub non_initial_fragment: bool,
    /// `Some(type)` if the datagram is itself ICMP.
    pub icmp_type: Option<u8>,
}

impl ErrorContext {
    /// From a parsed frame; `icmp_type` is `Some` for an ICMP datagram.
    pub fn from_wire(eth_dst: EthernetAddress, ip: &Ipv4Repr, icmp_type: Option<u8>) -> Self {
        ErrorContext {
            src: ip.src_addr.into(),
            dst: ip.dst_addr.into(),
            link_broadcast: !eth_dst.is_unicast(),
            non_initial_fragment: ip.frag_offset != 0,
            icmp_type: if ip.protocol == wire::ip_protocol::ICMP {
                icmp_type
            } else {
                None
            },
        }
    }
}

/// Why no ICMP error may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoErrorReason {
    /// Shared mode: closed ports are the kernel's business.
    SharedMode,
    /// The datagram is itself an ICMP error.
    AboutIcmpError,
    /// IP or link-layer broadcast or multicast destination.
    Broadcast,
    /// Not the first fragment.
    Fragment,
    /// The source is not a single host.
    BadSource,
    /// Over the global ICMP error rate.
    RateLimited,
}

/// RFC 1122 §3.2.2: may an ICMP error be sent in reply to this datagram?
/// (`our_addr` is the stack's dedicated address; a datagram to any other
/// address, e.g. a subnet broadcast, gets no error.) The rate limit is
/// separate: see [`ErrorRateLimiter`].
pub fn may_send_error(
    mode: AddressMode,
    our_addr: Ipv4Addr,
    ctx: &ErrorContext,
) -> Result<(), NoErrorReason> {
    if mode == AddressMode::Shared {
        return Err(NoErrorReason::SharedMode);
    }
    if ctx.icmp_type.is_some_and(is_error_type) {
        return Err(NoErrorReason::AboutIcmpError);
    }
    if ctx.link_broadcast || ctx.dst != our_addr || ctx.dst.is_multicast() {
        return Err(NoErrorReason::Broadcast);
    }
    if ctx.non_initial_fragment {
        return Err(NoErrorReason::Fragment);
    }
    if !is_host_source(ctx.src) {
        return Err(NoErrorReason::BadSource);
    }
    Ok(())
}

/// An echo request as seen by the responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRequest {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The Ethernet destination was broadcast or multicast.
    pub link_broadcast: bool,
    pub icmp_type: u8,
    pub code: u8,
    /// The ICMP checksum verified.
    pub checksum_ok: bool,
    /// The IPv4 packet was a fragment (no reassembly: not answered).
    pub fragment: bool,
}

impl EchoRequest {
    /// From a parsed frame: the Ethernet destination, the IPv4 header and
    /// the ICMP message bytes (cut at the IPv4 total length). `None` if the
    /// bytes cannot hold an ICMP header.
    pub fn from_wire(eth_dst: EthernetAddress, ip: &Ipv4Repr, icmp: &[u8]) -> Option<Self> {
        let p = icmpv4::Packet::new_checked(icmp).ok()?;
        Some(EchoRequest {
            src: ip.src_addr.into(),
            dst: ip.dst_addr.into(),
            link_broadcast: !eth_dst.is_unicast(),
            icmp_type: p.msg_type(),
            code: p.msg_code(),
            checksum_ok: p.verify_checksum(),
            fragment: ip.is_fragment(),
        })
    }
}

/// The echo reply to an echo request: same identifier, sequence number and
/// data (RFC 792); `None` for any other message.
pub fn echo_reply<'a>(request: &Icmpv4Repr<'a>) -> Option<Icmpv4Repr<'a>> {
    match *request {
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => Some(Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        }),
        _ => None,
    }
}

/// Why an echo request is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoIgnore {
    /// Shared mode: the kernel answers.
    SharedMode,
    NotEchoRequest,
    BadChecksum,
    /// For another address.
    NotForUs,
    /// Broadcast or multicast (`icmp_echo_ignore_broadcasts`).
    Broadcast,
    BadSource,
    Fragment,
}

/// Should the stack answer this echo request with an echo reply (same
/// identifier, sequence and data, RFC 792)? `Ok` means yes.
pub fn echo_decision(
    mode: AddressMode,
    our_addr: Ipv4Addr,
    req: &EchoRequest,
) -> Result<(), EchoIgnore> {
    if mode == AddressMode::Shared {
        return Err(EchoIgnore::SharedMode);
    }
    // RFC 792 defines code 0 only; like Linux, other codes are answered too.
    if req.icmp_type != types::ECHO_REQUEST {
        return Err(EchoIgnore::NotEchoRequest);
    }
    if req.link_broadcast || req.dst.is_broadcast() || req.dst.is_multicast() {
        return Err(EchoIgnore::Broadcast);
    }
    if req.dst != our_addr {
        return Err(EchoIgnore::NotForUs);
    }
    if !is_host_source(req.src) {
        return Err(EchoIgnore::BadSource);
    }
    if req.fragment {
        return Err(EchoIgnore::Fragment);
    }
    if !req.checksum_ok {
        return Err(EchoIgnore::BadChecksum);
    }
    Ok(())
}

/// A token bucket bounding the ICMP errors a shard sends, like Linux's
/// `icmp_msgs_per_sec` (1000) / `icmp_msgs_burst` (50). Echo replies are
/// not limited (Linux's default `icmp_ratemask` leaves them out).
#[derive(Debug, Clone)]
pub struct ErrorRateLimiter {
    per_sec: u64,
    burst: u64,
    /// Tokens in millionths, so refills are exact at microsecond steps.
    tokens_micro: u64,
    last: Instant,
}

impl ErrorRateLimiter {
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> ErrorRateLimiter {
        ErrorRateLimiter {
            per_sec: per_sec as u64,
            burst: burst as u64,
            tokens_micro: burst as u64 * 1_000_000,
            last: now,
        }
    }

    /// Linux's defaults.
    pub fn linux_default(now: Instant) -> ErrorRateLimiter {
        ErrorRateLimiter::new(1000, 50, now)
    }

    /// Takes a token if one is available.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed: Duration = now - self.last;
        self.last = self.last.max(now);
        let refill = (elapsed.as_micros() as u64).saturating_mul(self.per_sec);
        self.tokens_micro = self
            .tokens_micro
            .saturating_add(refill)
            .min(self.burst * 1_000_000);
        if self.tokens_micro >= 1_000_000 {
            self.tokens_micro -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn ping() -> EchoRequest {
        EchoRequest {
            src: PEER,
            dst: US,
            link_broadcast: false,
            icmp_type: types::ECHO_REQUEST,
            code: 0,
            checksum_ok: true,
            fragment: false,
        }
    }

    #[test]
    fn echo_answered_only_in_dedicated_mode_for_us() {
        assert_eq!(echo_decision(AddressMode::Dedicated, US, &ping()), Ok(()));
        assert_eq!(
            echo_decision(AddressMode::Shared, US, &ping()),
            Err(EchoIgnore::SharedMode)
        );
        let cases = [
            (
                EchoRequest {
                    dst: PEER,
                    ..ping()
                },
                EchoIgnore::NotForUs,
            ),
            (
                EchoRequest {
                    dst: Ipv4Addr::BROADCAST,
                    ..ping()
                },
                EchoIgnore::Broadcast,
            ),
            (
                EchoRequest {
                    dst: Ipv4Addr::new(224, 0, 0, 1),
                    ..ping()
                },
                EchoIgnore::Broadcast,
            ),
            (
                EchoRequest {
                    link_broadcast: true,
                    ..ping()
                },
                EchoIgnore::Broadcast,
            ),
            (
                EchoRequest {
                    src: Ipv4Addr::UNSPECIFIED,
                    ..ping()
                },
                EchoIgnore::BadSource,
            ),
            (
                EchoRequest {
                    src: Ipv4Addr::new(127, 0, 0, 1),
                    ..ping()
                },
                EchoIgnore::BadSource,
            ),
            (
                EchoRequest {
                    icmp_type: types::ECHO_REPLY,
                    ..ping()
                },
                EchoIgnore::NotEchoRequest,
            ),
            (
                EchoRequest {
                    checksum_ok: false,
                    ..ping()
                },
                EchoIgnore::BadChecksum,
            ),
            (
                EchoRequest {
                    fragment: true,
                    ..ping()
                },
                EchoIgnore::Fragment,
            ),
        ];
        for (req, why) in cases {
            assert_eq!(
                echo_decision(AddressMode::Dedicated, US, &req),
                Err(why),
                "{req:?}"
            );
        }
    }

    #[test]
    fn errors_never_about_errors_or_broadcasts() {
        let udp = ErrorContext {
            src: PEER,
            dst: US,
            link_broadcast: false,
            non_initial_fragment: false,
            icmp_type: None,
        };
        let d = AddressMode::Dedicated;
        assert_eq!(may_send_error(d, US, &udp), Ok(()));
        assert_eq!(
            may_send_error(AddressMode::Shared, US, &udp),
            Err(NoErrorReason::SharedMode)
        );
        for t in [3, 4, 5, 11, 12, 200] {
            let c = ErrorContext {
                icmp_type: Some(t),
                ..udp
            };
            assert_eq!(
                may_send_error(d, US, &c),
                Err(NoErrorReason::AboutIcmpError)
            );
        }
        // An echo request is not an error: an error about it is allowed.
        let echo = ErrorContext {
            icmp_type: Some(types::ECHO_REQUEST),
            ..udp
        };
        assert_eq!(may_send_error(d, US, &echo), Ok(()));
        for c in [
            ErrorContext {
                dst: Ipv4Addr::BROADCAST,
                ..udp
            },
            ErrorContext {
                dst: Ipv4Addr::new(10, 0, 0, 255),
                ..udp
            },
            ErrorContext {
                dst: Ipv4Addr::new(239, 1, 2, 3),
                ..udp
            },
            ErrorContext {
                link_broadcast: true,
                ..udp
            },
        ] {
            assert_eq!(may_send_error(d, US, &c), Err(NoErrorReason::Broadcast));
        }
        let frag = ErrorContext {
            non_initial_fragment: true,
            ..udp
        };
        assert_eq!(may_send_error(d, US, &frag), Err(NoErrorReason::Fragment));
        for src in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 5),
            Ipv4Addr::new(250, 0, 0, 1),
        ] {
            let c = ErrorContext { src, ..udp };
            assert_eq!(may_send_error(d, US, &c), Err(NoErrorReason::BadSource));
        }
    }

    #[test]
    fn rate_limiter_bursts_then_refills() {
        let t0 = Instant::from_secs(10);
        let mut rl = ErrorRateLimiter::new(1000, 50, t0);
        let granted = (0..100).filter(|_| rl.allow(t0)).count();
        assert_eq!(granted, 50);
        // 1000/s: one token per millisecond.
        assert!(!rl.allow(t0 + Duration::from_micros(999)));
        assert!(rl.allow(t0 + Duration::from_millis(1)));
        assert!(!rl.allow(t0 + Duration::from_millis(1)));
        // A long pause refills to the burst, not beyond.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!((0..100).filter(|_| rl.allow(t1)).count(), 50);
        // Time going backwards grants nothing extra.
        assert!(!rl.allow(t0));
    }
}
