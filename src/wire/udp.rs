//! UDP datagrams (RFC 768): the length field includes the 8-byte header;
//! the checksum covers the IPv4 pseudo-header; a zero checksum means none
//! was sent (allowed on IPv4), and a computed zero is sent as 0xffff.

use super::{checksum, get_u16, ip_protocol, set_u16, Ipv4Address, WireError};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const HEADER_LEN: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

packet_view! {
    /// A view over a UDP datagram. The buffer is the IP payload; the datagram
    /// is its first `len()` bytes.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header fits and the length field is between 8 and the
    /// buffer length.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = self.len() as usize;
        if l < field::HEADER_LEN || l > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// True when the checksum is zero (not sent) or verifies.
    pub fn verify_checksum(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let l = self.len();
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, l);
        let s = checksum::sum(&self.buffer.as_ref()[..l as usize]);
        checksum::add(pseudo, s) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        let l = self.len() as usize;
        &self.buffer.as_ref()[field::HEADER_LEN..l]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v)
    }
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v)
    }
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = self.len() as usize;
        &mut self.buffer.as_mut()[field::HEADER_LEN..l]
    }
    /// Computes and stores the checksum over the first `len()` bytes.
    pub fn fill_checksum(&mut self, src: Ipv4Address, dst: Ipv4Address) {
        self.set_checksum(0);
        let l = self.len();
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, l);
        let s = checksum::sum(&self.buffer.as_ref()[..l as usize]);
        let c = match checksum::finish(checksum::add(pseudo, s)) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }
}

/// A parsed UDP datagram with its payload borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parses and verifies the checksum (a zero checksum is accepted).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        src: Ipv4Address,
        dst: Ipv4Address,
    ) -> Result<UdpRepr<'a>, WireError> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(Self::parse_fields(p))
    }

    /// Parses without checking the checksum.
    pub fn parse_unverified<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
    ) -> Result<UdpRepr<'a>, WireError> {
        p.check_len()?;
        Ok(Self::parse_fields(p))
    }

    fn parse_fields<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> UdpRepr<'a> {
        UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload: p.payload(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        field::HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload (`buffer_len` bytes) and the checksum.
    /// The payload must fit the 16-bit length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        src: Ipv4Address,
        dst: Ipv4Address,
    ) {
        self.emit_header(p, self.payload.len());
        p.payload_mut().copy_from_slice(self.payload);
        p.fill_checksum(src, dst);
    }

    /// Writes only the header for `payload_len` bytes of payload the caller
    /// places (or already placed) in the buffer; the checksum is left zero
    /// for [`Packet::fill_checksum`] or a batch finaliser.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, payload_len: usize) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((field::HEADER_LEN + payload_len) as u16);
        p.set_checksum(0);
    }
}
