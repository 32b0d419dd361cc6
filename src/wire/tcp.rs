//! TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

use super::SeqNumber;

/// TCP flags as they sit in byte 13 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub const fn contains(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }
}

/// One SACK block (RFC 2018 §3): `left` is the first sequence number of the
/// block, `right` the one just past its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SackBlock {
    pub left: SeqNumber,
    pub right: SeqNumber,
}

/// RFC 7323 §3 timestamps option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamps {
    pub tsval: u32,
    pub tsecr: u32,
}

/// The options xdpstack understands; unknown kinds are skipped on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Kind 2, SYN only.
    pub mss: Option<u16>,
    /// Kind 3, SYN only; clamped to 14 on parse (RFC 7323 §2.3).
    pub window_scale: Option<u8>,
    /// Kind 4, SYN only.
    pub sack_permitted: bool,
    /// Kind 5: up to four blocks, the first `None` ends the list.
    pub sack_blocks: [Option<SackBlock>; 4],
    /// Kind 8.
    pub timestamps: Option<Timestamps>,
}

/// A parsed TCP segment: every header field, the options and the payload
/// borrowed from the packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    /// Meaningful only when `flags.ack()`.
    pub ack_number: SeqNumber,
    pub flags: TcpFlags,
    /// The raw 16-bit window field, not yet scaled.
    pub window: u16,
    pub urgent_pointer: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl TcpRepr<'_> {
    /// Sequence space the segment occupies: payload plus one for SYN and
    /// one for FIN (RFC 9293 §3.4).
    pub fn segment_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
    }
}
