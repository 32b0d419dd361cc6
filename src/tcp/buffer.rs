//! Send and receive buffers: fixed-capacity rings per connection whose
//! storage is allocated at the first write and grows with use.
//!
//! [`SendBuffer`] holds bytes from SND.UNA on: unacknowledged data and data
//! not yet sent. Segments borrow their payload from it ([`SendBuffer::slice`]
//! stops at the ring's wrap point, so a segment never needs a copy).
//!
//! [`RecvBuffer`] holds in-order bytes the application has not read, and
//! out-of-order bytes at their place in the window, with a bounded list of
//! out-of-order ranges. Overlapping and duplicate segments are written over
//! the same positions, so no byte is delivered twice and none is lost.

/// A byte ring of fixed logical capacity whose storage grows on demand:
/// nothing is allocated before the first write (idle and embryonic
/// connections, a SYN flood, cost none), then [`INITIAL_STORAGE`] bytes,
/// doubled whenever a write reaches past the end, up to the capacity. A
/// short connection (a request and a response) so touches a few KiB, not
/// the whole window: zeroing two 256 KiB rings per connection dominated
/// connect-request-close. Growing copies the ring once, unwrapped.
#[derive(Debug, Clone)]
struct Ring {
    /// The storage; `buf.len()` is the physical size (at most `cap`).
    buf: Vec<u8>,
    cap: usize,
    /// Index in `buf` of the first byte.
    head: usize,
}

/// The first storage of a ring, in bytes.
const INITIAL_STORAGE: usize = 4096;

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            buf: Vec::new(),
            cap,
            head: 0,
        }
    }

    fn cap(&self) -> usize {
        self.cap
    }

    fn pos(&self, off: usize) -> usize {
        let p = self.head + off;
        if p >= self.buf.len() {
            p - self.buf.len()
        } else {
            p
        }
    }

    /// Grow the storage to hold offsets below `end` (at most `cap`),
    /// unwrapping the ring so the head moves to index 0.
    fn reserve(&mut self, end: usize) {
        let old = self.buf.len();
        if end <= old {
            return;
        }
        let mut size = old.max(INITIAL_STORAGE.min(self.cap));
        while size < end {
            size = (size * 2).min(self.cap);
        }
        let mut buf = vec![0; size];
        buf[..old - self.head].copy_from_slice(&self.buf[self.head..]);
        buf[old - self.head..old].copy_from_slice(&self.buf[..self.head]);
        self.buf = buf;
        self.head = 0;
    }

    /// Write `data` at `off` bytes after the head; the caller guarantees
    /// `off + data.len() <= cap`.
    fn write_at(&mut self, off: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.reserve(off + data.len());
        let p = self.pos(off);
        let first = data.len().min(self.buf.len() - p);
        self.buf[p..p + first].copy_from_slice(&data[..first]);
        let rest = data.len() - first;
        self.buf[..rest].copy_from_slice(&data[first..]);
    }

    /// The contiguous bytes from `off`, at most `max`, stopping at the wrap.
    fn slice(&self, off: usize, max: usize) -> &[u8] {
        if self.buf.is_empty() {
            return &[];
        }
        let p = self.pos(off);
        let n = max.min(self.buf.len() - p);
        &self.buf[p..p + n]
    }

    fn advance(&mut self, n: usize) {
        if !self.buf.is_empty() {
            self.head = self.pos(n);
        }
    }

    /// Takes the storage out, empty ring left behind; `None` unless it is
    /// still of the first size (only those are worth keeping for reuse).
    fn take_storage(&mut self) -> Option<Vec<u8>> {
        let buf = std::mem::take(&mut self.buf);
        self.head = 0;
        (buf.len() == INITIAL_STORAGE && self.cap >= INITIAL_STORAGE).then_some(buf)
    }

    /// Installs storage from [`Ring::take_storage`] of another ring into
    /// this one if it has none yet; otherwise hands it back. The old bytes
    /// are never read: every read is bounded by what was written since.
    fn install_storage(&mut self, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.buf.is_empty() && buf.len() == INITIAL_STORAGE && self.cap >= INITIAL_STORAGE {
            self.buf = buf;
            self.head = 0;
            Ok(())
        } else {
            Err(buf)
        }
    }
}

/// The send buffer: bytes from SND.UNA onward.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    ring: Ring,
    len: usize,
}

impl SendBuffer {
    pub fn new(cap: usize) -> SendBuffer {
        SendBuffer {
            ring: Ring::new(cap.max(1)),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.ring.cap()
    }

    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    /// Append as much of `data` as fits; returns the count.
    pub fn enqueue(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.ring.write_at(self.len, &data[..n]);
        self.len += n;
        n
    }

    /// Drop `n` acknowledged bytes from the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ring.advance(n);
        self.len -= n;
    }

    /// The ring's storage for reuse by another connection (see
    /// [`Ring::take_storage`]); the buffer is emptied.
    pub(super) fn take_storage(&mut self) -> Option<Vec<u8>> {
        self.len = 0;
        self.ring.take_storage()
    }

    /// Storage from [`SendBuffer::take_storage`], used if this buffer has
    /// none yet.
    pub(super) fn install_storage(&mut self, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        self.ring.install_storage(buf)
    }

    /// Contiguous bytes at `off` (from SND.UNA), at most `max`; shorter than
    /// asked at the ring's wrap point or the end of the data.
    pub fn slice(&self, off: usize, max: usize) -> &[u8] {
        if off >= self.len {
            return &[];
        }
        self.ring.slice(off, max.min(self.len - off))
    }
}

/// One out-of-order range, in stream offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
    /// When it last grew, for SACK block order (RFC 2018 §4).
    stamp: u64,
}

/// Why the receive buffer refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The out-of-order range list is full.
    TooManyRanges,
}

/// The receive buffer. Offsets are stream offsets: bytes since the first
/// data byte of the connection (SEQ - IRS - 1), as u64 so they never wrap.
#[derive(Debug, Clone)]
pub struct RecvBuffer {
    ring: Ring,
    /// Stream offset of the ring head (bytes read by the application).
    read_off: u64,
    /// In-order bytes ready to read.
    len: usize,
    /// Out-of-order ranges above `read_off + len`, sorted, disjoint and not
    /// adjacent.
    ooo: Vec<Range>,
    max_ranges: usize,
    stamp: u64,
}

impl RecvBuffer {
    pub fn new(cap: usize, max_ranges: usize) -> RecvBuffer {
        RecvBuffer {
            ring: Ring::new(cap.max(1)),
            read_off: 0,
            len: 0,
            // Allocated at the first out-of-order segment.
            ooo: Vec::new(),
            max_ranges: max_ranges.max(1),
            stamp: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.ring.cap()
    }

    /// Bytes ready for the application.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for in-window bytes: what the receive window may offer.
    pub fn window(&self) -> usize {
        self.capacity() - self.len
    }

    /// Stream offset of the next in-order byte (RCV.NXT).
    pub fn next_off(&self) -> u64 {
        self.read_off + self.len as u64
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Store `data` at stream offset `off` (>= `next_off`, trimmed by the
    /// caller to the window). Returns how many bytes became readable.
    pub fn insert(&mut self, off: u64, data: &[u8]) -> Result<usize, InsertError> {
        let next = self.next_off();
        if data.is_empty() || off < next {
            return Ok(0);
        }
        // Bound to the buffer so nothing is written past the ring.
        let room_end = self.read_off + self.capacity() as u64;
        let end = (off + data.len() as u64).min(room_end);
        if end <= off {
            return Ok(0);
        }
        let data = &data[..(end - off) as usize];
        if off > next {
            self.add_range(off, end)?;
        }
        self.ring.write_at((off - self.read_off) as usize, data);
        if off == next {
            let mut new_end = end;
            // Absorb out-of-order ranges the new bytes reached.
            while let Some(r) = self.ooo.first() {
                if r.start > new_end {
                    break;
                }
                new_end = new_end.max(r.end);
                self.ooo.remove(0);
            }
            let grown = (new_end - next) as usize;
            self.len += grown;
            return Ok(grown);
        }
        Ok(0)
    }

    fn add_range(&mut self, start: u64, end: u64) -> Result<(), InsertError> {
        self.stamp += 1;
        // Ranges that overlap or touch [start, end) merge with it.
        let first = self.ooo.iter().position(|r| r.end >= start);
        let mut merged = Range {
            start,
            end,
            stamp: self.stamp,
        };
        match first {
            Some(i) if self.ooo[i].start <= end => {
                let mut j = i;
                while j < self.ooo.len() && self.ooo[j].start <= end {
                    merged.start = merged.start.min(self.ooo[j].start);
                    merged.end = merged.end.max(self.ooo[j].end);
                    j += 1;
                }
                self.ooo.drain(i..j);
                self.ooo.insert(i, merged);
            }
            Some(i) => {
                if self.ooo.len() >= self.max_ranges {
                    return Err(InsertError::TooManyRanges);
                }
                self.ooo.insert(i, merged);
            }
            None => {
                if self.ooo.len() >= self.max_ranges {
                    return Err(InsertError::TooManyRanges);
                }
                self.ooo.push(merged);
            }
        }
        Ok(())
    }

    /// Out-of-order ranges as (start, end) stream offsets, most recently
    /// grown first (the order RFC 2018 §4 asks SACK blocks to follow).
    pub fn sack_ranges(&self, out: &mut [(u64, u64)]) -> usize {
        let mut v: [(u64, u64, u64); 8] = [(0, 0, 0); 8];
        let mut n = 0;
        for r in &self.ooo {
            // Keep the `out.len()` most recent, insertion-sorted by stamp.
            let item = (r.stamp, r.start, r.end);
            if n < out.len().min(8) {
                v[n] = item;
                n += 1;
            } else if let Some(min_i) = (0..n).min_by_key(|&i| v[i].0) {
                if v[min_i].0 < item.0 {
                    v[min_i] = item;
                }
            }
        }
        v[..n].sort_by_key(|r| core::cmp::Reverse(r.0));
        for (o, r) in out.iter_mut().zip(&v[..n]) {
            *o = (r.1, r.2);
        }
        n
    }

    /// Copy up to `out.len()` readable bytes out and consume them.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() && self.len > 0 {
            let s = self.ring.slice(0, (out.len() - done).min(self.len));
            let n = s.len();
            out[done..done + n].copy_from_slice(s);
            self.consume(n);
            done += n;
        }
        done
    }

    /// The readable bytes as at most two slices (the ring may wrap).
    pub fn peek(&self) -> (&[u8], &[u8]) {
        let a = self.ring.slice(0, self.len);
        let b = if a.len() < self.len {
            self.ring.slice(a.len(), self.len - a.len())
        } else {
            &[]
        };
        (a, b)
    }

    /// The ring's storage for reuse by another connection (see
    /// [`Ring::take_storage`]); the buffer is emptied.
    pub(super) fn take_storage(&mut self) -> Option<Vec<u8>> {
        self.read_off += self.len as u64;
        self.len = 0;
        self.ooo.clear();
        self.ring.take_storage()
    }

    /// Storage from [`RecvBuffer::take_storage`], used if this buffer has
    /// none yet.
    pub(super) fn install_storage(&mut self, buf: Vec<u8>) -> Result<(), Vec<u8>> {
        self.ring.install_storage(buf)
    }

    /// Count `n` in-order bytes the application took straight from the
    /// segment (zero copy) as received and read; only valid with nothing
    /// buffered (no readable and no out-of-order bytes).
    pub(super) fn skip(&mut self, n: usize) {
        debug_assert!(self.len == 0 && self.ooo.is_empty());
        self.read_off += n as u64;
    }

    /// Mark `n` readable bytes as read.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ring.advance(n);
        self.len -= n;
        self.read_off += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_buffer_wraps_and_slices_stop_at_wrap() {
        let mut b = SendBuffer::new(8);
        assert_eq!(b.enqueue(b"abcdef"), 6);
        b.consume(4);
        assert_eq!(b.enqueue(b"ghijklmn"), 6);
        assert_eq!(b.len(), 8);
        assert_eq!(b.slice(0, 100), b"efgh");
        assert_eq!(b.slice(4, 100), b"ijkl");
        assert_eq!(b.slice(5, 2), b"jk");
        assert_eq!(b.slice(8, 2), b"");
    }

    fn collect(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0; b.len()];
        let n = b.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn reassembly_with_overlaps_and_duplicates() {
        let mut b = RecvBuffer::new(16, 4);
        assert_eq!(b.insert(4, b"efgh"), Ok(0));
        assert_eq!(b.insert(10, b"kl"), Ok(0));
        assert_eq!(b.insert(3, b"defg"), Ok(0));
        assert_eq!(b.insert(4, b"efgh"), Ok(0));
        let mut s = [(0, 0); 4];
        assert_eq!(b.sack_ranges(&mut s), 2);
        assert_eq!(&s[..2], &[(3, 8), (10, 12)]);
        assert_eq!(b.insert(0, b"abc"), Ok(8));
        assert_eq!(collect(&mut b), b"abcdefgh");
        assert_eq!(b.insert(8, b"ijk"), Ok(4));
        assert_eq!(collect(&mut b), b"ijkl");
        assert!(!b.has_out_of_order());
        // Old duplicates are ignored.
        assert_eq!(b.insert(2, b"zz"), Ok(0));
        assert_eq!(b.next_off(), 12);
    }

    #[test]
    fn bounded_ranges_and_capacity() {
        let mut b = RecvBuffer::new(16, 2);
        b.insert(2, b"c").unwrap();
        b.insert(4, b"e").unwrap();
        assert_eq!(b.insert(6, b"g"), Err(InsertError::TooManyRanges));
        // Touching an existing range still merges.
        b.insert(5, b"f").unwrap();
        // Past the capacity is cut off.
        assert_eq!(b.insert(0, &[b'x'; 40]), Ok(16));
        assert_eq!(b.window(), 0);
        let (x, y) = b.peek();
        assert_eq!(x.len() + y.len(), 16);
    }

    #[test]
    fn memory_comes_with_the_first_byte() {
        let mut b = RecvBuffer::new(1 << 20, 4);
        assert_eq!(b.ring.buf.len(), 0);
        assert_eq!(b.window(), 1 << 20);
        assert_eq!(b.peek(), (&[][..], &[][..]));
        b.insert(0, b"x").unwrap();
        assert_eq!(b.ring.buf.len(), INITIAL_STORAGE);
        // A write far into the window grows the storage to cover it.
        b.insert(100_000, b"y").unwrap();
        assert_eq!(b.ring.buf.len(), 131_072);
        b.insert(1_000_000, b"z").unwrap();
        assert_eq!(b.ring.buf.len(), 1 << 20);
        let s = SendBuffer::new(4096);
        assert_eq!(s.ring.buf.len(), 0);
        assert_eq!(s.slice(0, 10), b"");
    }

    /// Growing a wrapped ring keeps every byte at its offset: a send buffer
    /// and a receive buffer (with out-of-order bytes far ahead) against a
    /// plain model, over many pseudo-random steps.
    #[test]
    fn growth_keeps_wrapped_bytes() {
        let cap = 3 * INITIAL_STORAGE + 123;
        let mut s = SendBuffer::new(cap);
        let mut model: std::collections::VecDeque<u8> = Default::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut next = 0u8;
        for _ in 0..2000 {
            let add = rnd(3000) as usize;
            let data: Vec<u8> = (0..add)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            let n = s.enqueue(&data);
            model.extend(&data[..n]);
            next = next.wrapping_sub((add - n) as u8);
            let drop = rnd(model.len() as u64 + 1) as usize;
            s.consume(drop);
            model.drain(..drop);
            let mut got = Vec::new();
            while got.len() < s.len() {
                got.extend_from_slice(s.slice(got.len(), usize::MAX));
            }
            assert!(got.iter().eq(model.iter()));
        }
        assert_eq!(s.ring.buf.len(), cap);

        let mut r = RecvBuffer::new(cap, 4);
        let mut read = 0u64;
        let byte = |off: u64| (off % 251) as u8;
        for _ in 0..500 {
            // A hole, bytes past it (growing the storage), then the hole.
            let next = r.next_off();
            let hole = rnd(2000) + 1;
            let room = read + cap as u64 - next;
            let len = rnd(room.max(1)).min(room.saturating_sub(hole));
            let seg: Vec<u8> = (next + hole..next + hole + len).map(byte).collect();
            r.insert(next + hole, &seg).unwrap();
            let fill: Vec<u8> = (next..next + hole).map(byte).collect();
            r.insert(next, &fill).unwrap();
            let mut out = vec![0; rnd(r.len() as u64 + 1) as usize];
            let n = r.read(&mut out);
            assert!(out[..n]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == byte(read + i as u64)));
            read += n as u64;
        }
    }

    /// Storage handed from a finished buffer to a new one: reused only at
    /// its first size, and none of the old bytes shows through.
    #[test]
    fn storage_is_reused_without_old_bytes() {
        let mut old = RecvBuffer::new(1 << 16, 4);
        old.insert(0, &[b'o'; 3000]).unwrap();
        old.insert(3500, &[b'p'; 100]).unwrap();
        let st = old.take_storage().expect("first-size storage is kept");
        assert_eq!(st.len(), INITIAL_STORAGE);
        assert!(!old.has_out_of_order());
        let mut new = RecvBuffer::new(1 << 16, 4);
        assert_eq!(new.install_storage(st), Ok(()));
        assert_eq!(new.len(), 0);
        assert_eq!(new.peek(), (&[][..], &[][..]));
        new.insert(0, b"fresh").unwrap();
        assert_eq!(collect(&mut new), b"fresh");
        // Grown storage is not kept; a buffer with storage takes no more.
        new.insert(5, &[1; 10_000]).unwrap();
        assert_eq!(new.take_storage(), None);
        let mut s = SendBuffer::new(1 << 16);
        s.enqueue(b"abc");
        let st = s.take_storage().unwrap();
        assert_eq!(s.len(), 0);
        let mut t = SendBuffer::new(1 << 16);
        t.enqueue(b"x");
        assert!(t.install_storage(st).is_err());
        assert_eq!(t.slice(0, 10), b"x");
        // A ring smaller than the first size never shares storage.
        let mut small = SendBuffer::new(100);
        small.enqueue(b"abc");
        assert_eq!(small.take_storage(), None);
    }

    #[test]
    fn peek_spans_the_wrap() {
        let mut b = RecvBuffer::new(8, 2);
        b.insert(0, b"abcdef").unwrap();
        b.consume(5);
        b.insert(6, b"ghijk").unwrap();
        let (x, y) = b.peek();
        assert_eq!([x, y].concat(), b"fghijk");
        assert_eq!(x, b"fgh");
    }
}
