//! TCP bulk source: on accept, sends an endless deterministic byte pattern
//! as fast as the send buffer and the windows allow, until the peer closes.
//! The counterpart of a download: the receiver checks every byte against
//! [`pattern_at`] / [`verify`], so a lossy path's recovery is checked to be
//! byte-exact, not only fast.
//!
//! The pattern is a pseudo-random table of [`PATTERN_PERIOD`] bytes (a
//! prime, so it never lines up with segment or buffer sizes) repeated
//! forever; byte `i` of a stream is `TABLE[i % PERIOD]`. The table is stored
//! twice in a row, so the pattern from any offset is one contiguous slice:
//! the source enqueues straight from it (one copy, into the send ring) and
//! the receiver compares with one `memcmp` per run.
//!
//! When the client closes, one line goes to standard output with the
//! connection's loss-recovery counters (retransmission timeouts, fast
//! recoveries, retransmitted segments, tail loss probes, undone
//! reductions): what a lossy benchmark needs to explain its figure.

use crate::api::tcp::{ConnId, TcpConn, TcpHandler};
use crate::tcp::SendHalf;
use crate::time::Instant;

/// Bytes after which the pattern repeats (the largest prime below 2^16).
pub const PATTERN_PERIOD: usize = 65521;

/// The pattern table, twice.
static TABLE: [u8; 2 * PATTERN_PERIOD] = build_table();

const fn build_table() -> [u8; 2 * PATTERN_PERIOD] {
    let mut t = [0u8; 2 * PATTERN_PERIOD];
    // xorshift64: cheap, deterministic, no visible structure.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0;
    while i < PATTERN_PERIOD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t[i] = (x >> 32) as u8;
        t[i + PATTERN_PERIOD] = t[i];
        i += 1;
    }
    t
}

/// The pattern from stream offset `off`: at most `max` bytes, and at most
/// one period.
pub fn pattern_at(off: u64, max: usize) -> &'static [u8] {
    let start = (off % PATTERN_PERIOD as u64) as usize;
    &TABLE[start..start + max.min(PATTERN_PERIOD)]
}

/// Checks that `data` is the pattern at stream offset `off`; on a mismatch,
/// the stream offset of the first wrong byte.
pub fn verify(off: u64, data: &[u8]) -> Result<(), u64> {
    let mut done = 0;
    while done < data.len() {
        let at = off + done as u64;
        let want = pattern_at(at, data.len() - done);
        let got = &data[done..done + want.len()];
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(at + i as u64);
        }
        done += want.len();
    }
    Ok(())
}

/// The source handler (one per worker).
#[derive(Debug, Default)]
pub struct TcpSource {
    /// Bytes queued for sending, over all connections.
    pub bytes: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Pattern offset (mod the period) of each connection, by slot.
    offsets: Vec<u32>,
}

impl TcpSource {
    fn offset(&mut self, id: ConnId) -> &mut u32 {
        let slot = id.slot as usize;
        if self.offsets.len() <= slot {
            self.offsets.resize(slot + 1, 0);
        }
        &mut self.offsets[slot]
    }
}

impl TcpHandler for TcpSource {
    fn on_accept(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.connections += 1;
        *self.offset(conn.id()) = 0;
    }

    /// A source has nothing to do with received bytes: they are dropped.
    fn on_data(
        &mut self,
        _now: Instant,
        _id: ConnId,
        data: &[u8],
        _tx: &mut SendHalf<'_>,
    ) -> usize {
        data.len()
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let k = conn.conn.counters();
        println!(
            "tcp-source {}: closed by the peer; segments_out={} timeouts={} fast_recoveries={} \
             retransmits={} tlp_probes={} tlp_losses={} spurious_undos={}",
            conn.tuple().remote,
            k.segments_out,
            k.timeouts,
            k.fast_retransmits,
            k.retransmits,
            k.tlp_probes,
            k.tlp_losses,
            k.spurious_undos
        );
        conn.close();
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let mut off = *self.offset(conn.id());
        loop {
            let free = conn.send_free();
            if free == 0 {
                break;
            }
            match conn.send(pattern_at(u64::from(off), free)) {
                Ok(n) if n > 0 => {
                    self.bytes += n as u64;
                    off = ((off as usize + n) % PATTERN_PERIOD) as u32;
                }
                _ => break,
            }
        }
        *self.offset(conn.id()) = off;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_repeats_with_its_period_and_is_contiguous() {
        let p = PATTERN_PERIOD as u64;
        assert_eq!(pattern_at(0, 100), pattern_at(p, 100));
        assert_eq!(pattern_at(5, 100), pattern_at(3 * p + 5, 100));
        // A slice across the period boundary continues with the start.
        let s = pattern_at(p - 3, 6);
        assert_eq!(&s[3..], pattern_at(0, 3));
        assert_eq!(pattern_at(7, usize::MAX).len(), PATTERN_PERIOD);
        // Not a trivial pattern: all byte values occur, neighbours differ.
        let mut seen = [false; 256];
        for &b in pattern_at(0, PATTERN_PERIOD) {
            seen[b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_ne!(pattern_at(0, 64), pattern_at(1, 64));
    }

    #[test]
    fn verify_finds_the_first_wrong_byte() {
        let mut stream = Vec::new();
        let mut off = 1000u64;
        while stream.len() < 3 * PATTERN_PERIOD {
            let s = pattern_at(off, 7000);
            stream.extend_from_slice(s);
            off += s.len() as u64;
        }
        assert_eq!(verify(1000, &stream), Ok(()));
        assert_eq!(verify(1001, &stream), Err(1001));
        let k = 2 * PATTERN_PERIOD + 17;
        stream[k] ^= 1;
        assert_eq!(verify(1000, &stream), Err(1000 + k as u64));
        // A skipped byte shows up where the stream shifts.
        let mut skipped = pattern_at(0, 50).to_vec();
        skipped.remove(20);
        assert!(matches!(verify(0, &skipped), Err(o) if o >= 20));
    }
}
