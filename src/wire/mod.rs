//! Packet formats as typed zero-copy views over byte slices plus `Repr`
//! structs with `parse` / `emit` / `buffer_len`.
//!
//! Contract: `new_checked` on untrusted bytes returns a [`WireError`] saying
//! what was wrong and never panics, for any input; after it succeeds, no
//! accessor of the view panics. `emit` writes exactly `buffer_len` bytes
//! (the caller hands it a buffer at least that long; emit panics otherwise,
//! which is a caller bug, never an input error).
//!
//! One module per protocol: [`ethernet`] (with one 802.1Q tag), [`arp`],
//! [`ipv4`], [`icmpv4`], [`udp`], [`tcp`]; [`checksum`] for the Internet
//! checksum; [`frame`] to build and parse whole Ethernet + IPv4 + L4 frames.
//! This module never allocates and does no I/O.

use core::fmt;
use core::ops::Range;

/// Declares a protocol module's view `Packet<T>` over a byte buffer with the
/// constructors every view shares. The module supplies `check_len`: what a
/// whole header means for that protocol, the only check `new_checked` runs.
macro_rules! packet_view {
    ($(#[$attr:meta])*) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct Packet<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> Packet<T> {
            /// Wraps a buffer without checks; accessors may panic on short
            /// buffers.
            pub const fn new_unchecked(buffer: T) -> Packet<T> {
                Packet { buffer }
            }

            /// Wraps a buffer after `check_len` accepts it; no accessor
            /// panics afterwards.
            pub fn new_checked(buffer: T) -> Result<Packet<T>, $crate::wire::WireError> {
                let p = Packet::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod icmpv4;
pub mod ipv4;
pub mod seq;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpRepr};
pub use ethernet::{EthernetAddress, EthernetRepr, VlanTag};
pub use icmpv4::Icmpv4Repr;
pub use ipv4::{Ipv4Address, Ipv4Repr};
pub use seq::SeqNumber;
pub use tcp::{SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamps};
pub use udp::UdpRepr;

/// What was wrong with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A length field is inconsistent (IPv4 total length below the header,
    /// UDP length below 8 or beyond the IP payload, ...).
    BadLength,
    /// A header-length field is invalid (IPv4 IHL < 5, TCP data offset < 5
    /// or beyond the segment).
    BadHeaderLen,
    /// The checksum does not verify.
    BadChecksum,
    /// A TCP option is malformed (length 0 or 1, or runs past the header).
    BadOption,
    /// A well-formed packet of a kind this stack does not handle (IPv6,
    /// ARP for another hardware type, an IP version other than 4, ...).
    Unsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Truncated => "truncated packet",
            WireError::BadLength => "inconsistent length field",
            WireError::BadHeaderLen => "invalid header length",
            WireError::BadChecksum => "bad checksum",
            WireError::BadOption => "malformed option",
            WireError::Unsupported => "unsupported packet",
        };
        f.write_str(s)
    }
}

impl std::error::Error for WireError {}

/// IANA IP protocol numbers used here.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// EtherType values used here.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

// Big-endian field access by the constant ranges of each module's
// `mod field`; callers pass ranges of exactly the field's width.

#[inline]
pub(crate) fn get_u16(b: &[u8], r: Range<usize>) -> u16 {
    let s = &b[r];
    u16::from_be_bytes([s[0], s[1]])
}

#[inline]
pub(crate) fn get_u32(b: &[u8], r: Range<usize>) -> u32 {
    let s = &b[r];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

#[inline]
pub(crate) fn set_u16(b: &mut [u8], r: Range<usize>, v: u16) {
    b[r].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn set_u32(b: &mut [u8], r: Range<usize>, v: u32) {
    b[r].copy_from_slice(&v.to_be_bytes());
}
