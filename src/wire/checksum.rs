//! The Internet checksum (RFC 1071): the one's-complement sum of 16-bit
//! big-endian words, its incremental update (RFC 1624), the IPv4
//! pseudo-header sum, a fast path and a batch API for a whole TX batch.
//!
//! Sums are carried around as the folded, *not yet complemented* 16-bit
//! one's-complement sum; [`finish`] complements it into the field value.
//!
//! The fast path ([`sum`]) uses AVX2 when the CPU has it (runtime detection,
//! cached) and otherwise a portable loop that adds 64-bit words with
//! end-around carries. Both sum native-endian words and swap bytes at the end:
//! the one's-complement sum is byte-order independent (RFC 1071 §2(B)).
//! [`sum_scalar`] is the plain RFC 1071 loop that the fast paths are tested
//! against. This module owns the only `unsafe` of `wire/`: the AVX2
//! intrinsics, fenced in `mod avx2`.

use super::{Ipv4Address, WireError};

/// Folds a wide one's-complement accumulator to 16 bits.
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    // Each step keeps the value modulo 0xffff (end-around carry); four
    // rounds take any u64 down to 16 bits.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// One's-complement addition of two folded sums.
#[inline]
pub const fn add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// The value to store in a checksum field, given the folded sum of
/// everything it covers (with the field itself zero).
#[inline]
pub const fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1071 reference: sum of big-endian 16-bit words, a trailing odd byte
/// padded with zero. Simple on purpose; the fast path is tested against it.
pub fn sum_scalar(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = words.remainder() {
        acc += (*last as u64) << 8;
    }
    fold(acc)
}

/// Portable fast path: 64-bit native-endian words with end-around carry,
/// four independent accumulators so the adds pipeline.
pub fn sum_portable(data: &[u8]) -> u16 {
    swap_to_be(fold_ne(sum_ne_u64(data)))
}

/// Fast path: AVX2 when available, else [`sum_portable`]. Same result as
/// [`sum_scalar`] for every input.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= avx2::MIN_LEN && impl_for_cpu() == Impl::Avx2 {
        return avx2::sum(data);
    }
    sum_portable(data)
}

/// The checksum field value for `data` (which must contain the field as 0).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Sum of the IPv4 pseudo-header (RFC 9293 §3.1, RFC 768): source,
/// destination, zero + protocol, and the L4 length (header + payload).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Address, dst: Ipv4Address, protocol: u8, l4_len: u16) -> u16 {
    let s = src.0;
    let d = dst.0;
    let acc = u16::from_be_bytes([s[0], s[1]]) as u64
        + u16::from_be_bytes([s[2], s[3]]) as u64
        + u16::from_be_bytes([d[0], d[1]]) as u64
        + u16::from_be_bytes([d[2], d[3]]) as u64
        + protocol as u64
        + l4_len as u64;
    fold(acc)
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word of the
/// covered data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub const fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(!checksum as u64 + !old as u64 + new as u64)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a sequence number),
/// applied as its two 16-bit halves.
#[inline]
pub const fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = update16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// Converts a folded sum of native-endian words to the big-endian sum.
#[inline]
fn swap_to_be(ne: u16) -> u16 {
    u16::from_be(ne)
}

/// Folds a native-endian accumulator; separate from [`fold`] only in name,
/// to mark which byte order a value is in.
#[inline]
fn fold_ne(acc: u64) -> u16 {
    fold(acc)
}

/// One's-complement sum of `data` as native-endian u64 words, not folded.
/// Word alignment is relative to the start of `data`, so any start address
/// (odd ones included) gives the RFC 1071 result after the byte swap.
#[inline]
fn sum_ne_u64(data: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut carry = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for i in 0..4 {
            let w = u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let (s, c) = acc[i].overflowing_add(w);
            acc[i] = s;
            carry[i] += c as u64;
        }
    }
    let mut total = Wide::default();
    for i in 0..4 {
        total.add(acc[i]);
        total.add(carry[i]);
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        total.add(u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])));
    }
    // Fewer than 8 bytes left, starting at an even offset: add them as a
    // u32, a u16 and a zero-padded last byte. Folding works modulo 0xffff,
    // where 2^16 = 1, so a word's position inside a wider load does not
    // matter, only its 16-bit alignment.
    let mut tail = words.remainder();
    let mut t = 0u64;
    if let Some((w, rest)) = tail.split_first_chunk::<4>() {
        t += u32::from_ne_bytes(*w) as u64;
        tail = rest;
    }
    if let Some((w, rest)) = tail.split_first_chunk::<2>() {
        t += u16::from_ne_bytes(*w) as u64;
        tail = rest;
    }
    if let [last] = tail {
        t += u16::from_ne_bytes([*last, 0]) as u64;
    }
    total.add(t);
    total.finish()
}

/// A u64 one's-complement accumulator: adds with end-around carry.
#[derive(Default)]
struct Wide(u64);

impl Wide {
    #[inline]
    fn add(&mut self, x: u64) {
        let (s, c) = self.0.overflowing_add(x);
        self.0 = s + c as u64;
    }
    #[inline]
    fn finish(self) -> u64 {
        self.0
    }
}

/// Which fast path this CPU runs; detected once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Impl {
    #[inline]
    pub fn sum(self, data: &[u8]) -> u16 {
        match self {
            Impl::Portable => sum_portable(data),
            #[cfg(target_arch = "x86_64")]
            Impl::Avx2 => avx2::sum(data),
        }
    }
}

/// The best implementation for this CPU (cached after the first call).
#[inline]
pub fn impl_for_cpu() -> Impl {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        // 0 = unknown, 1 = portable, 2 = AVX2.
        static CHOICE: AtomicU8 = AtomicU8::new(0);
        match CHOICE.load(Ordering::Relaxed) {
            1 => Impl::Portable,
            2 => Impl::Avx2,
            _ => {
                let has = std::arch::is_x86_feature_detected!("avx2");
                CHOICE.store(if has { 2 } else { 1 }, Ordering::Relaxed);
                if has {
                    Impl::Avx2
                } else {
                    Impl::Portable
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Impl::Portable
    }
}

/// AVX2 summation. The only unsafe code in `wire/`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use core::arch::x86_64::*;

    /// Below this the portable loop wins (no vector set-up and reduction).
    pub const MIN_LEN: usize = 128;

    /// 128-byte steps per fold. Each of the four 32-bit lane accumulators
    /// receives two values <= 0xffff per step; after 4096 steps a lane holds
    /// at most 8192 * 0xffff < 2^29, so the four together stay below 2^31.
    const STEPS_PER_FOLD: usize = 4096;

    pub fn sum(data: &[u8]) -> u16 {
        if data.len() < MIN_LEN {
            return super::sum_portable(data);
        }
        // Safety: `impl_for_cpu` only selects `Impl::Avx2` after
        // `is_x86_feature_detected!("avx2")` returned true, and this
        // function is reached only through `Impl::Avx2`, so the CPU
        // supports AVX2.
        let ne = unsafe { sum_ne_avx2(data) };
        super::swap_to_be(super::fold_ne(ne))
    }

    /// Splits every 32-bit lane into its two 16-bit halves and adds them to
    /// 32-bit lanes, so no carry is lost. Both halves are native-endian
    /// 16-bit words of the input (low half = lower address), so they add as
    /// they are.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add_halves(lo: &mut __m256i, hi: &mut __m256i, v: __m256i) {
        let mask = _mm256_set1_epi32(0xffff);
        *lo = _mm256_add_epi32(*lo, _mm256_and_si256(v, mask));
        *hi = _mm256_add_epi32(*hi, _mm256_srli_epi32(v, 16));
    }

    /// Sum of the eight u32 lanes as a u64 (no overflow possible).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> u64 {
        let z = _mm256_setzero_si256();
        let w = _mm256_add_epi64(_mm256_unpacklo_epi32(v, z), _mm256_unpackhi_epi32(v, z));
        let x = _mm_add_epi64(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        (_mm_cvtsi128_si64(x) as u64) + (_mm_extract_epi64(x, 1) as u64)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn sum_ne_avx2(data: &[u8]) -> u64 {
        let mut total = super::Wide::default();
        let mut rest = data;
        while rest.len() >= 128 {
            let steps = (rest.len() / 128).min(STEPS_PER_FOLD);
            let (chunk, tail) = rest.split_at(steps * 128);
            let z = _mm256_setzero_si256();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            for b in chunk.chunks_exact(128) {
                let p = b.as_ptr() as *const __m256i;
                // Safety: `b` is exactly 128 bytes, so the four unaligned
                // 32-byte loads at offsets 0, 32, 64 and 96 stay inside it.
                let (v0, v1, v2, v3) = unsafe {
                    (
                        _mm256_loadu_si256(p),
                        _mm256_loadu_si256(p.add(1)),
                        _mm256_loadu_si256(p.add(2)),
                        _mm256_loadu_si256(p.add(3)),
                    )
                };
                add_halves(&mut a0, &mut a1, v0);
                add_halves(&mut a2, &mut a3, v1);
                add_halves(&mut a0, &mut a1, v2);
                add_halves(&mut a2, &mut a3, v3);
            }
            let s = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
            total.add(hsum(s));
            rest = tail;
        }
        // Up to three more whole vectors, then fewer than 32 bytes.
        let z = _mm256_setzero_si256();
        let (mut lo, mut hi) = (z, z);
        let mut vecs = rest.chunks_exact(32);
        for b in &mut vecs {
            // Safety: `b` is exactly 32 bytes; the load is unaligned.
            let v = unsafe { _mm256_loadu_si256(b.as_ptr() as *const __m256i) };
            add_halves(&mut lo, &mut hi, v);
        }
        total.add(hsum(_mm256_add_epi32(lo, hi)));
        total.add(super::sum_ne_u64(vecs.remainder()));
        total.finish()
    }
}

/// Where a frame's checksums live, for [`finalize_batch`]. Offsets are from
/// the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumOffsets {
    /// Start of an IPv4 header whose header checksum is filled too.
    pub ipv4: Option<usize>,
    /// The L4 region the checksum covers: `l4_start..l4_end`.
    pub l4_start: usize,
    pub l4_end: usize,
    /// Offset of the 2-byte L4 checksum field (inside the region).
    pub l4_field: usize,
    /// Folded pseudo-header sum to add (0 for ICMP).
    pub pseudo: u16,
    /// UDP: a computed 0 is sent as 0xffff, since 0 means "no checksum"
    /// (RFC 768).
    pub zero_is_ffff: bool,
}

impl ChecksumOffsets {
    /// Offsets for an IPv4 frame whose IPv4 header starts at `l3_offset`,
    /// carrying TCP, UDP or ICMP. Reads the IPv4 header (IHL, total length,
    /// protocol, addresses) to find everything.
    pub fn for_ipv4(frame: &[u8], l3_offset: usize) -> Result<ChecksumOffsets, WireError> {
        use super::ip_protocol;
        let ip = super::ipv4::Packet::new_checked(frame.get(l3_offset..).unwrap_or(&[]))?;
        let l4_start = l3_offset + ip.header_len() as usize;
        let l4_end = l3_offset + ip.total_len() as usize;
        let l4_len = (l4_end - l4_start) as u16;
        let protocol = ip.protocol();
        let (field, pseudo, zero_is_ffff) = match protocol {
            ip_protocol::TCP => (
                16,
                pseudo_header_v4(ip.src_addr(), ip.dst_addr(), protocol, l4_len),
                false,
            ),
            ip_protocol::UDP => (
                6,
                pseudo_header_v4(ip.src_addr(), ip.dst_addr(), protocol, l4_len),
                true,
            ),
            ip_protocol::ICMP => (2, 0, false),
            _ => return Err(WireError::Unsupported),
        };
        if l4_start + field + 2 > l4_end {
            return Err(WireError::Truncated);
        }
        Ok(ChecksumOffsets {
            ipv4: Some(l3_offset),
            l4_start,
            l4_end,
            l4_field: l4_start + field,
            pseudo,
            zero_is_ffff,
        })
    }

    fn valid_for(&self, len: usize) -> bool {
        let ip_ok = match self.ipv4 {
            Some(o) => o.checked_add(20).is_some_and(|end| end <= len),
            None => true,
        };
        ip_ok
            && self.l4_start <= self.l4_end
            && self.l4_end <= len
            && self.l4_field >= self.l4_start
            && self
                .l4_field
                .checked_add(2)
                .is_some_and(|e| e <= self.l4_end)
    }
}

/// One frame of a TX batch and where its checksums go.
#[derive(Debug)]
pub struct ChecksumJob<'a> {
    pub frame: &'a mut [u8],
    pub offsets: ChecksumOffsets,
}

/// Fills the checksums of every frame in `jobs` in one pass (the CPU
/// dispatch is resolved once for the batch). The IPv4 header checksum (if
/// `offsets.ipv4`; skipped when its IHL does not fit the frame) and the L4
/// checksum are computed with their fields zeroed first. Jobs whose offsets
/// do not fit their frame are left untouched; returns how many were.
pub fn finalize_batch(jobs: &mut [ChecksumJob<'_>]) -> usize {
    let imp = impl_for_cpu();
    let mut rejected = 0;
    for job in jobs.iter_mut() {
        let o = job.offsets;
        let frame = &mut *job.frame;
        if !o.valid_for(frame.len()) {
            rejected += 1;
            continue;
        }
        if let Some(ip) = o.ipv4 {
            let ihl = ((frame[ip] & 0x0f) as usize) * 4;
            let end = ip + ihl;
            if ihl >= 20 && end <= frame.len() {
                frame[ip + 10..ip + 12].fill(0);
                let c = finish(imp.sum(&frame[ip..end]));
                frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
            }
        }
        frame[o.l4_field..o.l4_field + 2].fill(0);
        let mut c = finish(add(o.pseudo, imp.sum(&frame[o.l4_start..o.l4_end])));
        if c == 0 && o.zero_is_ffff {
            c = 0xffff;
        }
        frame[o.l4_field..o.l4_field + 2].copy_from_slice(&c.to_be_bytes());
    }
    rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn available_impls() -> Vec<Impl> {
        let mut v = vec![Impl::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(Impl::Avx2);
        }
        v
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum_scalar(&data), 0xddf2);
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(sum_portable(&data), 0xddf2);
    }

    #[test]
    fn fast_paths_match_scalar_every_length_and_offset() {
        let buf = pattern(4096 + 8, 7);
        for start in [0usize, 1, 3, 7] {
            for len in 0..=4096 {
                let d = &buf[start..start + len];
                let want = sum_scalar(d);
                assert_eq!(sum_portable(d), want, "portable len {len} start {start}");
                assert_eq!(sum(d), want, "fast len {len} start {start}");
                for imp in available_impls() {
                    assert_eq!(imp.sum(d), want, "{imp:?} len {len} start {start}");
                }
            }
        }
    }

    #[test]
    fn all_ones_and_long_inputs_fold_correctly() {
        // Saturating inputs stress the carry handling and the AVX2 periodic fold.
        for len in [4095, 4096, 65536, 1 << 20, (1 << 20) + 77] {
            let d = vec![0xffu8; len];
            assert_eq!(sum(&d), sum_scalar(&d), "len {len}");
            assert_eq!(sum_portable(&d), sum_scalar(&d), "len {len}");
        }
        let d = pattern(3 << 20, 3);
        assert_eq!(sum(&d[1..]), sum_scalar(&d[1..]));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut d = pattern(40, 11);
        d[10] = 0;
        d[11] = 0;
        let c = checksum(&d);
        for (i, new16) in [(0usize, 0xabcdu16), (4, 0x0000), (20, 0xffff), (38, 0x1234)] {
            let old = u16::from_be_bytes([d[i], d[i + 1]]);
            let mut e = d.clone();
            e[i..i + 2].copy_from_slice(&new16.to_be_bytes());
            let upd = update16(c, old, new16);
            // 0x0000 and 0xffff are both zero in one's complement; RFC 1624
            // eqn. 3 never yields 0xffff from a nonzero sum.
            assert_eq!(fold(upd as u64 + sum(&e) as u64), 0xffff, "field {i}");
        }
        let old32 = u32::from_be_bytes(d[12..16].try_into().unwrap());
        let mut e = d.clone();
        e[12..16].copy_from_slice(&0xc0a8_0101u32.to_be_bytes());
        assert_eq!(update32(c, old32, 0xc0a8_0101), checksum(&e));
    }

    #[test]
    fn batch_fills_and_rejects() {
        let mut a = pattern(100, 1);
        let mut b = pattern(10, 2);
        let off = ChecksumOffsets {
            ipv4: None,
            l4_start: 4,
            l4_end: 100,
            l4_field: 10,
            pseudo: 0x1234,
            zero_is_ffff: false,
        };
        let mut jobs = [
            ChecksumJob {
                frame: &mut a,
                offsets: off,
            },
            ChecksumJob {
                frame: &mut b,
                offsets: off,
            },
        ];
        assert_eq!(finalize_batch(&mut jobs), 1);
        assert_eq!(add(0x1234, sum_scalar(&a[4..100])), 0xffff);
    }
}
