//! TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018): a view over
//! a segment, option parsing and emission, and `TcpRepr::parse` / `emit`
//! with the checksum over the IPv4 pseudo-header.

use super::{checksum, get_u16, get_u32, ip_protocol, set_u16, set_u32};
use super::{Ipv4Address, SeqNumber, WireError};

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

impl TcpFlags {
    pub const fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    pub const fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset in the high nibble, reserved bits below.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const HEADER_LEN: usize = 20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Largest header: data offset 15.
pub const MAX_HEADER_LEN: usize = 60;
/// Offset of the checksum field, for batch finalisers.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// RFC 7323 §2.3: shifts above 14 are treated as 14.
pub const MAX_WINDOW_SCALE: u8 = 14;

packet_view! {
    /// A view over a TCP segment. The buffer is the IP payload, i.e. exactly the
    /// segment (IPv4 cuts padding off at its total length).
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the fixed header fits and the data offset is between 5 and
    /// the segment length. Options are checked by [`TcpOptions::parse`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len() as usize;
        if hl < field::HEADER_LEN || hl > len {
            return Err(WireError::BadHeaderLen);
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.buffer.as_ref(), field::SEQ_NUM))
    }
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(get_u32(self.buffer.as_ref(), field::ACK_NUM))
    }
    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }
    /// The raw option bytes (between the fixed header and the data).
    pub fn options(&self) -> &[u8] {
        let hl = self.header_len() as usize;
        &self.buffer.as_ref()[field::HEADER_LEN..hl]
    }

    /// The checksum over the pseudo-header and the whole segment verifies.
    pub fn verify_checksum(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        let b = self.buffer.as_ref();
        if b.len() > u16::MAX as usize {
            return false;
        }
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::TCP, b.len() as u16);
        checksum::add(pseudo, checksum::sum(b)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    pub fn payload(&self) -> &'a [u8] {
        let hl = self.header_len() as usize;
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v)
    }
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v)
    }
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, v.0)
    }
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, v.0)
    }
    /// Header length in bytes (a multiple of 4, 20..=60); clears the
    /// reserved bits.
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DATA_OFF] = (len / 4) << 4;
    }
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0
    }
    pub fn set_window_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    pub fn set_urgent_at(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, v)
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[field::HEADER_LEN..hl]
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes and stores the checksum over the pseudo-header and the
    /// whole buffer (which must be exactly the segment).
    pub fn fill_checksum(&mut self, src: Ipv4Address, dst: Ipv4Address) {
        let len = self.buffer.as_ref().len();
        self.fill_checksum_len(src, dst, len);
    }

    fn fill_checksum_len(&mut self, src: Ipv4Address, dst: Ipv4Address, len: usize) {
        self.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::TCP, len as u16);
        let s = checksum::sum(&self.buffer.as_ref()[..len]);
        self.set_checksum(checksum::finish(checksum::add(pseudo, s)));
    }
}

impl TcpOptions {
    /// Parses option bytes (RFC 9293 §3.1, RFC 7323, RFC 2018). EOL ends
    /// the list; unknown kinds are skipped by their length. A length of 0
    /// or 1, an option running past the header, or a known kind with the
    /// wrong length is `BadOption`. A repeated option overrides the earlier.
    pub fn parse(mut b: &[u8]) -> Result<TcpOptions, WireError> {
        // Fast path: established-state segments usually carry exactly
        // NOP NOP TS, the layout RFC 7323 Appendix A recommends.
        if let [1, 1, 8, 10, ts @ ..] = b {
            if ts.len() == 8 {
                return Ok(TcpOptions {
                    timestamps: Some(Timestamps {
                        tsval: get_u32(ts, 0..4),
                        tsecr: get_u32(ts, 4..8),
                    }),
                    ..TcpOptions::default()
                });
            }
        }
        let mut o = TcpOptions::default();
        while let [kind, rest @ ..] = b {
            match *kind {
                option_kind::EOL => break,
                option_kind::NOP => {
                    b = rest;
                    continue;
                }
                _ => {}
            }
            let len = *rest.first().ok_or(WireError::BadOption)? as usize;
            if len < 2 || len > b.len() {
                return Err(WireError::BadOption);
            }
            let data = &b[2..len];
            match (*kind, len) {
                (option_kind::MSS, 4) => o.mss = Some(get_u16(data, 0..2)),
                (option_kind::WINDOW_SCALE, 3) => {
                    o.window_scale = Some(data[0].min(MAX_WINDOW_SCALE))
                }
                (option_kind::SACK_PERMITTED, 2) => o.sack_permitted = true,
                // One to four 8-byte blocks.
                (option_kind::SACK, 10 | 18 | 26 | 34) => {
                    o.sack_blocks = [None; 4];
                    for (slot, blk) in o.sack_blocks.iter_mut().zip(data.chunks_exact(8)) {
                        *slot = Some(SackBlock {
                            left: SeqNumber(get_u32(blk, 0..4)),
                            right: SeqNumber(get_u32(blk, 4..8)),
                        });
                    }
                }
                (option_kind::TIMESTAMPS, 10) => {
                    o.timestamps = Some(Timestamps {
                        tsval: get_u32(data, 0..4),
                        tsecr: get_u32(data, 4..8),
                    })
                }
                (
                    option_kind::MSS
                    | option_kind::WINDOW_SCALE
                    | option_kind::SACK_PERMITTED
                    | option_kind::SACK
                    | option_kind::TIMESTAMPS,
                    _,
                ) => return Err(WireError::BadOption),
                _ => {} // unknown kind: skipped
            }
            b = &b[len..];
        }
        Ok(o)
    }

    /// Number of SACK blocks present (the list ends at the first `None`).
    pub fn sack_count(&self) -> usize {
        self.sack_blocks.iter().take_while(|b| b.is_some()).count()
    }

    /// Option bytes this set takes when emitted, a multiple of 4. Layout
    /// (4-byte aligned with NOPs, as RFC 7323 Appendix A suggests): MSS;
    /// NOP WS; SACK-permitted + timestamps together, or each after two
    /// NOPs; NOP NOP SACK.
    pub fn buffer_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        match (self.sack_permitted, self.timestamps.is_some()) {
            (true, true) => n += 12,
            (true, false) => n += 4,
            (false, true) => n += 12,
            (false, false) => {}
        }
        let k = self.sack_count();
        if k > 0 {
            n += 4 + 8 * k;
        }
        n
    }

    /// The options as they will be emitted: trailing SACK blocks dropped
    /// until everything fits the 40 bytes of option space (RFC 2018 §3:
    /// with timestamps at most three blocks fit).
    pub fn fitted(&self) -> TcpOptions {
        let mut o = *self;
        let mut k = o.sack_count();
        o.sack_blocks[k..].fill(None);
        while o.buffer_len() > MAX_HEADER_LEN - HEADER_LEN && k > 0 {
            k -= 1;
            o.sack_blocks[k] = None;
        }
        o
    }

    /// Writes the options into `b` (exactly [`TcpOptions::buffer_len`]
    /// bytes of a fitted set); returns the bytes written.
    pub fn emit(&self, b: &mut [u8]) -> usize {
        use option_kind::*;
        let mut w = OptionWriter { buf: b, at: 0 };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            w.put(&[MSS, 4, m[0], m[1]]);
        }
        if let Some(ws) = self.window_scale {
            w.put(&[NOP, WINDOW_SCALE, 3, ws.min(MAX_WINDOW_SCALE)]);
        }
        if self.sack_permitted {
            if self.timestamps.is_some() {
                w.put(&[SACK_PERMITTED, 2]);
            } else {
                w.put(&[NOP, NOP, SACK_PERMITTED, 2]);
            }
        } else if self.timestamps.is_some() {
            w.put(&[NOP, NOP]);
        }
        if let Some(ts) = self.timestamps {
            w.put(&[TIMESTAMPS, 10]);
            w.put(&ts.tsval.to_be_bytes());
            w.put(&ts.tsecr.to_be_bytes());
        }
        let k = self.sack_count();
        if k > 0 {
            w.put(&[NOP, NOP, SACK, (2 + 8 * k) as u8]);
            for blk in self.sack_blocks.iter().take(k).flatten() {
                w.put(&blk.left.0.to_be_bytes());
                w.put(&blk.right.0.to_be_bytes());
            }
        }
        // The layout above is already 4-byte aligned; pad with EOL anyway
        // should it ever change.
        while !w.at.is_multiple_of(4) {
            w.put(&[EOL]);
        }
        w.at
    }
}

/// Appends option bytes to a buffer.
struct OptionWriter<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl OptionWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

impl<'a> TcpRepr<'a> {
    /// Parses a segment and verifies its checksum against the IPv4
    /// pseudo-header of `src` and `dst`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        src: Ipv4Address,
        dst: Ipv4Address,
    ) -> Result<TcpRepr<'a>, WireError> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Self::parse_fields(p)
    }

    /// Parses without verifying the checksum (already checked, or a test).
    pub fn parse_unverified<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
    ) -> Result<TcpRepr<'a>, WireError> {
        p.check_len()?;
        Self::parse_fields(p)
    }

    fn parse_fields<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<TcpRepr<'a>, WireError> {
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            urgent_pointer: p.urgent_at(),
            options: TcpOptions::parse(p.options())?,
            payload: p.payload(),
        })
    }

    /// Header length this segment is emitted with (options fitted).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.fitted().buffer_len()
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment (`buffer_len` bytes: header, options, payload)
    /// and its checksum over the pseudo-header of `src` and `dst`. Options
    /// are [`TcpOptions::fitted`] first.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        src: Ipv4Address,
        dst: Ipv4Address,
    ) {
        let hl = self.emit_header(p);
        p.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        p.fill_checksum_len(src, dst, hl + self.payload.len());
    }

    /// Writes header and options only (returns the header length) with a
    /// zero checksum, for payload placed in the buffer by the caller and a
    /// checksum filled later ([`Packet::fill_checksum`] or a batch).
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> usize {
        let opts = self.options.fitted();
        let hl = HEADER_LEN + opts.buffer_len();
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len(hl as u8);
        p.set_flags(self.flags);
        p.set_window_len(self.window);
        p.set_checksum(0);
        p.set_urgent_at(self.urgent_pointer);
        opts.emit(p.options_mut());
        hl
    }
}
