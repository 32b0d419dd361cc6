//! Ethernet II frames with at most one 802.1Q tag (IEEE 802.1Q §9.6).
//!
//! The view exposes the outer header; when the outer EtherType is 0x8100 it
//! reads the tag (PCP, DEI, VID) and the inner EtherType, and the payload
//! starts after the tag. A second tag (QinQ) is reported as the EtherType
//! 0x8100 in the payload, which callers treat as unsupported.

use core::fmt;

use super::{ethertype, get_u16, set_u16, WireError};

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    pub const fn is_broadcast(&self) -> bool {
        let a = self.0;
        a[0] == 0xff && a[1] == 0xff && a[2] == 0xff && a[3] == 0xff && a[4] == 0xff && a[5] == 0xff
    }

    /// Group bit set (includes broadcast).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        )
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(a: [u8; 6]) -> Self {
        EthernetAddress(a)
    }
}

/// One 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point, 3 bits.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 12 bits.
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tci: u16) -> VlanTag {
        VlanTag {
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// With a tag: TCI at 14, inner EtherType at 16.
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
    pub const HEADER_LEN: usize = 14;
    pub const TAGGED_HEADER_LEN: usize = 18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of a header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::TAGGED_HEADER_LEN;

packet_view! {
    /// A view over an Ethernet II frame.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer after checking it holds the whole header (and the tag
    /// when the frame is tagged).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, field::ETHERTYPE) == ethertype::VLAN && b.len() < field::TAGGED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        EthernetAddress(a)
    }

    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        EthernetAddress(a)
    }

    /// The outer EtherType (0x8100 when tagged).
    pub fn outer_ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == ethertype::VLAN
    }

    /// The 802.1Q tag, if any.
    pub fn vlan(&self) -> Option<VlanTag> {
        if self.is_tagged() {
            Some(VlanTag::from_tci(get_u16(self.buffer.as_ref(), field::TCI)))
        } else {
            None
        }
    }

    /// The EtherType of the payload (the inner one when tagged).
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            get_u16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
        } else {
            self.outer_ethertype()
        }
    }

    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the header (IPv4 payloads may carry padding; the
    /// IPv4 layer cuts at its total length).
    pub fn payload(&self) -> &'a [u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Writes the outer EtherType as given (use 0x8100 and [`Self::set_vlan`]
    /// for a tagged frame).
    pub fn set_outer_ethertype(&mut self, t: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    /// Writes a tag and the inner EtherType; the buffer must have room for
    /// the tagged header.
    pub fn set_vlan(&mut self, tag: VlanTag, inner_ethertype: u16) {
        let b = self.buffer.as_mut();
        set_u16(b, field::ETHERTYPE, ethertype::VLAN);
        set_u16(b, field::TCI, tag.tci());
        set_u16(b, field::INNER_ETHERTYPE, inner_ethertype);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// A parsed Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    /// The payload's EtherType (inner one when tagged).
    pub ethertype: u16,
    pub vlan: Option<VlanTag>,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<EthernetRepr, WireError> {
        p.check_len()?;
        Ok(EthernetRepr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            ethertype: p.ethertype(),
            vlan: p.vlan(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        if self.vlan.is_some() {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// Writes the header (`buffer_len` bytes) at the start of the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_dst_addr(self.dst_addr);
        p.set_src_addr(self.src_addr);
        match self.vlan {
            Some(tag) => p.set_vlan(tag, self.ethertype),
            None => p.set_outer_ethertype(self.ethertype),
        }
    }
}
