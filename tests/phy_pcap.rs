//! The pcap writer: its output is parsed back by a small reader here (magic,
//! header fields, record count, timestamps and bytes), and the frames are
//! real Ethernet/IPv4/UDP packets that must still parse.

use std::io::{self, Write};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use xdpstack::phy::memory::{pair, MemoryConfig};
use xdpstack::phy::pcap::{Capture, PcapWriter};
use xdpstack::phy::{FrameBuf, Link};
use xdpstack::time::{Duration, Instant};

struct Record {
    micros: u64,
    orig_len: u32,
    data: Vec<u8>,
}

/// A minimal classic-pcap reader: little-endian, microsecond timestamps.
fn parse(bytes: &[u8]) -> Vec<Record> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    assert!(bytes.len() >= 24, "no global header");
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "magic");
    assert_eq!((u16_at(4), u16_at(6)), (2, 4), "version");
    assert_eq!(u32_at(16), 65535, "snaplen");
    assert_eq!(u32_at(20), 1, "LINKTYPE_ETHERNET");
    let mut at = 24;
    let mut records = Vec::new();
    while at < bytes.len() {
        assert!(at + 16 <= bytes.len(), "truncated record header");
        let (sec, usec) = (u32_at(at) as u64, u32_at(at + 4) as u64);
        assert!(usec < 1_000_000);
        let incl = u32_at(at + 8) as usize;
        let orig_len = u32_at(at + 12);
        at += 16;
        assert!(at + incl <= bytes.len(), "truncated record data");
        records.push(Record {
            micros: sec * 1_000_000 + usec,
            orig_len,
            data: bytes[at..at + incl].to_vec(),
        });
        at += incl;
    }
    records
}

fn udp_frame(src_port: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(src_port, 9);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

fn send<L: Link>(link: &mut L, now: Instant, frames: &[Vec<u8>]) {
    let mut batch = Vec::new();
    for bytes in frames {
        let mut f = link.alloc_tx().expect("free frame");
        f.set_len(bytes.len());
        f.data_mut().copy_from_slice(bytes);
        batch.push(f);
    }
    link.send_batch(now, &mut batch);
}

#[test]
fn records_every_frame_both_ways() {
    let cfg = MemoryConfig {
        delay: Duration::from_micros(250),
        ..MemoryConfig::default()
    };
    let (a, mut b) = pair(cfg);
    let mut a = PcapWriter::new(a, Vec::new(), Capture::Both).unwrap();
    // (time, frame) in the order the capture must list them.
    let mut expected: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut rx = Vec::new();
    for i in 0..40u64 {
        let now = 1_000_000 * i + 37 * i; // crosses second boundaries
        let payload: Vec<u8> = (0..(i as usize * 37) % 1400).map(|k| k as u8).collect();
        let out = udp_frame(1000 + i as u16, &payload);
        send(
            &mut a,
            Instant::from_micros(now),
            std::slice::from_ref(&out),
        );
        expected.push((now, out));
        // B answers each frame it got; A receives the answers later.
        b.recv_batch(Instant::from_micros(now + 250), &mut rx, 8);
        for f in rx.drain(..) {
            b.release(f);
        }
        let reply = udp_frame(2000 + i as u16, &payload[..payload.len() / 2]);
        send(
            &mut b,
            Instant::from_micros(now + 250),
            std::slice::from_ref(&reply),
        );
        a.recv_batch(Instant::from_micros(now + 500), &mut rx, 8);
        assert_eq!(rx.len(), 1);
        for f in rx.drain(..) {
            assert_eq!(f.data(), &reply[..]);
            a.release(f);
        }
        expected.push((now + 500, reply));
    }
    assert_eq!(a.records(), 80);
    assert_eq!(a.error(), None);
    let (link, bytes) = a.into_parts();
    assert_eq!(link.outstanding(), 0);
    let records = parse(&bytes);
    assert_eq!(records.len(), expected.len());
    for (r, (t, frame)) in records.iter().zip(&expected) {
        assert_eq!(r.micros, *t);
        assert_eq!(r.orig_len as usize, frame.len());
        assert_eq!(&r.data, frame);
        let parsed = SlicedPacket::from_ethernet(&r.data).expect("recorded frame parses");
        assert!(matches!(parsed.transport, Some(TransportSlice::Udp(_))));
    }
}

#[test]
fn capture_direction_filters() {
    for (capture, want) in [(Capture::Rx, 1), (Capture::Tx, 2), (Capture::Both, 3)] {
        let (a, mut b) = pair(MemoryConfig::default());
        let mut a = PcapWriter::new(a, Vec::new(), capture).unwrap();
        send(
            &mut a,
            Instant::ZERO,
            &[udp_frame(1, b"x"), udp_frame(2, b"y")],
        );
        send(&mut b, Instant::ZERO, &[udp_frame(3, b"z")]);
        let mut rx = Vec::new();
        a.recv_batch(Instant::ZERO, &mut rx, 8);
        for f in rx.drain(..) {
            a.release(f);
        }
        let (_, bytes) = a.into_parts();
        assert_eq!(parse(&bytes).len(), want, "{capture:?}");
    }
}

/// A sink that fails after `room` bytes.
struct Failing {
    room: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_errors_stop_recording_not_traffic() {
    let (a, mut b) = pair(MemoryConfig::default());
    let mut a = PcapWriter::new(a, Failing { room: 100 }, Capture::Both).unwrap();
    for i in 0..5 {
        send(&mut a, Instant::ZERO, &[udp_frame(i, b"payload")]);
    }
    assert_eq!(a.error(), Some(io::ErrorKind::Other));
    assert!(a.records() < 5);
    let mut rx = Vec::new();
    assert_eq!(b.recv_batch(Instant::ZERO, &mut rx, 8), 5);
    for f in rx.drain(..) {
        b.release(f);
    }
    assert!(PcapWriter::new(b, Failing { room: 3 }, Capture::Both).is_err());
}
