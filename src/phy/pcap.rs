//! A link wrapper that records every frame in classic pcap format.
//!
//! [`PcapWriter`] writes the global header when created, then one record
//! per frame received from or sent to the inner link, stamped with the
//! caller's `now` in microseconds (`LINKTYPE_ETHERNET`, little-endian,
//! snapshot length 65535). Output errors never disturb the traffic: the
//! first one is kept (see [`PcapWriter::error`]) and recording stops.

use std::io::{self, Write};

use super::{FrameBuf, Link};
use crate::time::Instant;

/// Classic pcap magic for microsecond timestamps.
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Longest frame prefix recorded.
pub const SNAPLEN: u32 = 65535;

/// Which frames to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Rx,
    Tx,
    Both,
}

/// A link that copies every frame to a pcap stream.
pub struct PcapWriter<L: Link, W: Write> {
    inner: L,
    out: W,
    capture: Capture,
    records: u64,
    error: Option<io::ErrorKind>,
}

impl<L: Link, W: Write> PcapWriter<L, W> {
    /// Wrap `inner`, writing the pcap global header to `out` at once.
    pub fn new(inner: L, mut out: W, capture: Capture) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter {
            inner,
            out,
            capture,
            records: 0,
            error: None,
        })
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The first write error, after which recording stopped.
    pub fn error(&self) -> Option<io::ErrorKind> {
        self.error
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Flush the output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The inner link and the output, flushed.
    pub fn into_parts(mut self) -> (L, W) {
        if let Err(e) = self.out.flush() {
            self.error.get_or_insert(e.kind());
        }
        (self.inner, self.out)
    }

    fn record(&mut self, now: Instant, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let micros = now.total_micros();
        let incl = data.len().min(SNAPLEN as usize);
        let mut header = [0u8; 16];
        // pcap's seconds field is 32 bits; it wraps in 2106.
        header[0..4].copy_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        let written = self
            .out
            .write_all(&header)
            .and_then(|()| self.out.write_all(&data[..incl]));
        match written {
            Ok(()) => self.records += 1,
            Err(e) => self.error = Some(e.kind()),
        }
    }
}

impl<L: Link, W: Write> Link for PcapWriter<L, W> {
    type Frame = L::Frame;

    fn recv_batch(&mut self, now: Instant, out: &mut Vec<L::Frame>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.recv_batch(now, out, max);
        if matches!(self.capture, Capture::Rx | Capture::Both) {
            for frame in &out[start..] {
                self.record(now, frame.data());
            }
        }
        n
    }

    fn alloc_tx(&mut self) -> Option<L::Frame> {
        self.inner.alloc_tx()
    }

    fn send_batch(&mut self, now: Instant, frames: &mut Vec<L::Frame>) {
        if matches!(self.capture, Capture::Tx | Capture::Both) {
            for frame in frames.iter() {
                self.record(now, frame.data());
            }
        }
        self.inner.send_batch(now, frames);
    }

    fn release(&mut self, frame: L::Frame) {
        self.inner.release(frame);
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
}
