//! IPv4 headers (RFC 791): header checksum, IHL with options skipped,
//! fragments recognised, total length against the buffer.
//!
//! A buffer longer than the total length (Ethernet padding of short frames)
//! is fine: the payload is cut at the total length. Options are skipped,
//! never interpreted; emit writes a 20-byte header without options.

use core::fmt;

use super::{checksum, get_u16, set_u16, WireError};

/// An IPv4 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Ipv4Address(pub [u8; 4]);

impl Ipv4Address {
    pub const UNSPECIFIED: Ipv4Address = Ipv4Address([0; 4]);
    pub const BROADCAST: Ipv4Address = Ipv4Address([255; 4]);

    pub const fn new(a: u8, b: u8, c: u8, d: u8) -> Ipv4Address {
        Ipv4Address([a, b, c, d])
    }

    /// From the first four bytes of `s` (callers guarantee the length).
    pub fn from_slice(s: &[u8]) -> Ipv4Address {
        let mut a = [0; 4];
        a.copy_from_slice(&s[..4]);
        Ipv4Address(a)
    }

    pub const fn to_bits(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    pub const fn from_bits(v: u32) -> Ipv4Address {
        Ipv4Address(v.to_be_bytes())
    }

    pub const fn is_unspecified(&self) -> bool {
        self.to_bits() == 0
    }

    pub const fn is_broadcast(&self) -> bool {
        self.to_bits() == u32::MAX
    }

    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0xf0 == 0xe0
    }
}

impl fmt::Debug for Ipv4Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Ipv4Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3])
    }
}

impl From<std::net::Ipv4Addr> for Ipv4Address {
    fn from(a: std::net::Ipv4Addr) -> Self {
        Ipv4Address(a.octets())
    }
}

impl From<Ipv4Address> for std::net::Ipv4Addr {
    fn from(a: Ipv4Address) -> Self {
        std::net::Ipv4Addr::from(a.0)
    }
}

impl From<[u8; 4]> for Ipv4Address {
    fn from(a: [u8; 4]) -> Self {
        Ipv4Address(a)
    }
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// TTL of packets built with [`Ipv4Repr::new`].
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

packet_view! {
    /// A view over an IPv4 packet.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the version-independent lengths: 20 bytes present, IHL >= 5,
    /// the header fits the total length and the total length fits the
    /// buffer. Version and checksum are checked by [`Ipv4Repr::parse`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        let total = self.total_len() as usize;
        if total < hl {
            return Err(WireError::BadLength);
        }
        if total > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }
    /// True for any fragment (MF set or a nonzero offset); the stack does
    /// not reassemble and drops these.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn src_addr(&self) -> Ipv4Address {
        Ipv4Address::from_slice(&self.buffer.as_ref()[field::SRC])
    }
    pub fn dst_addr(&self) -> Ipv4Address {
        Ipv4Address::from_slice(&self.buffer.as_ref()[field::DST])
    }

    /// The header checksum verifies (sum over the header is all ones).
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len() as usize;
        checksum::sum(&self.buffer.as_ref()[..hl]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, cut at the total length (padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        let hl = self.header_len() as usize;
        let total = self.total_len() as usize;
        &self.buffer.as_ref()[hl..total]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }
    /// Header length in bytes; must be a multiple of 4.
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 0x03);
    }
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v)
    }
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, v)
    }
    /// Flags and offset together: DF, MF and the offset in bytes (a
    /// multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v = (if dont_frag { FLAG_DF } else { 0 })
            | (if more_frags { FLAG_MF } else { 0 })
            | ((offset >> 3) & 0x1fff);
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v)
    }
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v
    }
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn set_src_addr(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0)
    }
    pub fn set_dst_addr(&mut self, a: Ipv4Address) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0)
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len() as usize;
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// The payload up to the total length, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        let total = self.total_len() as usize;
        &mut self.buffer.as_mut()[hl..total]
    }
}

/// A parsed IPv4 header (without options, which are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Address,
    pub dst_addr: Ipv4Address,
    pub protocol: u8,
    /// Length of the payload (total length minus header length).
    pub payload_len: usize,
    pub hop_limit: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    pub dscp: u8,
    pub ecn: u8,
}

impl Ipv4Repr {
    /// A header from `src` to `dst` with TTL 64, DF set and everything else
    /// zero. The `wire::frame` emitters fill in `protocol` and `payload_len`.
    pub const fn new(src: Ipv4Address, dst: Ipv4Address, protocol: u8, payload_len: usize) -> Self {
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol,
            payload_len,
            hop_limit: DEFAULT_TTL,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            dscp: 0,
            ecn: 0,
        }
    }

    /// Parses and validates a header: lengths, version 4 and the header
    /// checksum. Fragments parse (check [`Ipv4Repr::is_fragment`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Ipv4Repr, WireError> {
        Self::parse_inner(p, true)
    }

    /// As [`Ipv4Repr::parse`] without verifying the header checksum (for
    /// frames whose checksum was already checked, e.g. by a NIC).
    pub fn parse_unverified<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Ipv4Repr, WireError> {
        Self::parse_inner(p, false)
    }

    fn parse_inner<T: AsRef<[u8]>>(p: &Packet<T>, verify: bool) -> Result<Ipv4Repr, WireError> {
        p.check_len()?;
        if p.version() != 4 {
            return Err(WireError::Unsupported);
        }
        if verify && !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        Ok(Self::from_header(p))
    }

    /// The header's fields as they stand. The caller has checked that the
    /// header is present and the total length is at least the header
    /// length; the payload need not be.
    pub(super) fn from_header<T: AsRef<[u8]>>(p: &Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: p.total_len() as usize - p.header_len() as usize,
            hop_limit: p.hop_limit(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            dscp: p.dscp(),
            ecn: p.ecn(),
        }
    }

    pub const fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Header length emitted (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header with total length `20 + payload_len` and a
    /// filled checksum. `payload_len` must be at most 65515; the payload
    /// itself is the caller's.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version(4);
        p.set_header_len(HEADER_LEN as u8);
        p.set_dscp_ecn(self.dscp, self.ecn);
        p.set_total_len((HEADER_LEN + self.payload_len) as u16);
        p.set_ident(self.ident);
        p.set_frag(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_hop_limit(self.hop_limit);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }
}
