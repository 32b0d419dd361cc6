//! ICMPv4 (RFC 792): echo request and reply, and destination unreachable
//! quoting the original IPv4 header plus the first 8 bytes of its payload.
//! The checksum covers the whole ICMP message (no pseudo-header).

use super::ipv4::{self, Ipv4Repr};
use super::{checksum, get_u16, set_u16, WireError};

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo: identifier and sequence number. Unreachable: unused, or the
    /// next-hop MTU in 6..8 for code 4 (RFC 1191).
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const REST_OF_HEADER: Range<usize> = 4..8;
    pub const HEADER_LEN: usize = 8;
}

/// Length of the fixed ICMP header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// Message types used here.
pub mod message {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
}

/// Destination-unreachable codes used here.
pub mod unreachable {
    pub const PROTO_UNREACHABLE: u8 = 2;
    pub const PORT_UNREACHABLE: u8 = 3;
    pub const FRAG_REQUIRED: u8 = 4;
}

packet_view! {
    /// A view over an ICMPv4 message.
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the 8-byte header fits.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < field::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the 8-byte header.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v
    }
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, v)
    }
    pub fn set_echo_seq_no(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, v)
    }
    /// Writes the 4-byte rest-of-header word (unused or next-hop MTU).
    pub fn set_rest_of_header(&mut self, v: u32) {
        super::set_u32(self.buffer.as_mut(), field::REST_OF_HEADER, v)
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::HEADER_LEN..]
    }
    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A parsed ICMPv4 message of a type the stack handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Type 3. `header` is the quoted original IPv4 header (options
    /// skipped), `data` the quoted start of its payload (at most 8 bytes).
    DstUnreachable {
        code: u8,
        /// Next-hop MTU for code 4 (RFC 1191), else 0.
        mtu: u16,
        header: Ipv4Repr,
        data: &'a [u8],
    },
}

/// Bytes of the original payload quoted in an error message (RFC 792).
pub const QUOTED_DATA_LEN: usize = 8;

impl<'a> Icmpv4Repr<'a> {
    /// Parses a message, verifying its checksum. Other types are
    /// `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Icmpv4Repr<'a>, WireError> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        match (p.msg_type(), p.msg_code()) {
            (message::ECHO_REQUEST, 0) => Ok(Icmpv4Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data: p.data(),
            }),
            (message::ECHO_REPLY, 0) => Ok(Icmpv4Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data: p.data(),
            }),
            (message::DST_UNREACHABLE, code) => {
                let (header, data) = parse_quoted(p.data())?;
                let mtu = if code == unreachable::FRAG_REQUIRED {
                    p.next_hop_mtu()
                } else {
                    0
                };
                Ok(Icmpv4Repr::DstUnreachable {
                    code,
                    mtu,
                    header,
                    data,
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                field::HEADER_LEN + data.len()
            }
            Icmpv4Repr::DstUnreachable { header, data, .. } => {
                field::HEADER_LEN + header.buffer_len() + data.len().min(QUOTED_DATA_LEN)
            }
        }
    }

    /// Writes the message (`buffer_len` bytes) with its checksum. The
    /// packet's buffer must be exactly `buffer_len` long, since the
    /// checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let t = if matches!(self, Icmpv4Repr::EchoRequest { .. }) {
                    message::ECHO_REQUEST
                } else {
                    message::ECHO_REPLY
                };
                p.set_msg_type(t);
                p.set_msg_code(0);
                p.set_echo_ident(ident);
                p.set_echo_seq_no(seq_no);
                p.data_mut()[..data.len()].copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable {
                code,
                mtu,
                header,
                data,
            } => {
                p.set_msg_type(message::DST_UNREACHABLE);
                p.set_msg_code(code);
                p.set_rest_of_header(mtu as u32);
                let out = p.data_mut();
                let hl = header.buffer_len();
                header.emit(&mut ipv4::Packet::new_unchecked(&mut out[..hl]));
                let n = data.len().min(QUOTED_DATA_LEN);
                out[hl..hl + n].copy_from_slice(&data[..n]);
            }
        }
        p.fill_checksum();
    }

    /// An unreachable message quoting `original` (an IPv4 packet as
    /// received); fails if the original does not parse.
    pub fn dst_unreachable(code: u8, original: &'a [u8]) -> Result<Icmpv4Repr<'a>, WireError> {
        let (header, data) = parse_quoted(original)?;
        Ok(Icmpv4Repr::DstUnreachable {
            code,
            mtu: 0,
            header,
            data,
        })
    }
}

/// Parses a quoted IPv4 header and up to 8 following bytes. The quoted
/// total length describes the original packet, not the quote, so only the
/// header itself must be present; its checksum is not required to verify.
fn parse_quoted(b: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
    if b.len() < ipv4::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let p = ipv4::Packet::new_unchecked(b);
    if p.version() != 4 {
        return Err(WireError::Unsupported);
    }
    let hl = p.header_len() as usize;
    if hl < ipv4::HEADER_LEN {
        return Err(WireError::BadHeaderLen);
    }
    if hl > b.len() {
        return Err(WireError::Truncated);
    }
    let total = p.total_len() as usize;
    if total < hl {
        return Err(WireError::BadLength);
    }
    let header = Ipv4Repr::from_header(&p);
    let rest = &b[hl..];
    let n = rest.len().min(QUOTED_DATA_LEN).min(total - hl);
    Ok((header, &rest[..n]))
}
