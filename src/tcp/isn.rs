//! Initial sequence numbers (RFC 6528) and per-connection timestamp offsets
//! (RFC 7323 §5.4).
//!
//! ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M
//! is a clock ticking every 4 µs taken from the caller's `now` and F is
//! SipHash-2-4 keyed with a secret. The key comes from std's `RandomState`
//! (seeded from the OS) or is passed in, e.g. by tests that need
//! reproducible runs.

use super::FourTuple;
use crate::time::Instant;
use std::hash::{BuildHasher, RandomState};

/// The 128-bit secret key of F.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IsnKey {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for IsnKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the secret.
        f.write_str("IsnKey(..)")
    }
}

impl IsnKey {
    /// A key from explicit halves (tests and simulations).
    pub const fn from_parts(k0: u64, k1: u64) -> IsnKey {
        IsnKey { k0, k1 }
    }

    /// A fresh random key; std seeds `RandomState` from the OS.
    pub fn random() -> IsnKey {
        let s = RandomState::new();
        IsnKey {
            k0: s.hash_one(0x5eed_u64),
            k1: s.hash_one(0xfeed_u64),
        }
    }

    fn hash_tuple(&self, t: &FourTuple, domain: u8) -> u64 {
        let mut msg = [0u8; 13];
        msg[0..4].copy_from_slice(&t.local.ip().octets());
        msg[4..6].copy_from_slice(&t.local.port().to_be_bytes());
        msg[6..10].copy_from_slice(&t.remote.ip().octets());
        msg[10..12].copy_from_slice(&t.remote.port().to_be_bytes());
        msg[12] = domain;
        siphash24(self.k0, self.k1, &msg)
    }

    /// RFC 6528 §3: the ISN for `t` at `now`.
    pub fn isn(&self, t: &FourTuple, now: Instant) -> u32 {
        let m = (now.total_micros() / 4) as u32;
        m.wrapping_add(self.hash_tuple(t, 0) as u32)
    }

    /// A per-connection offset for TSval, so timestamps reveal no host clock
    /// (RFC 7323 §5.4).
    pub fn ts_offset(&self, t: &FourTuple) -> u32 {
        self.hash_tuple(t, 1) as u32
    }

    /// A keyed 32-bit MAC over the tuple and two words (SYN cookies).
    pub fn mac(&self, t: &FourTuple, a: u32, b: u32) -> u32 {
        let mut msg = [0u8; 20];
        msg[0..4].copy_from_slice(&t.local.ip().octets());
        msg[4..6].copy_from_slice(&t.local.port().to_be_bytes());
        msg[6..10].copy_from_slice(&t.remote.ip().octets());
        msg[10..12].copy_from_slice(&t.remote.port().to_be_bytes());
        msg[12..16].copy_from_slice(&a.to_be_bytes());
        msg[16..20].copy_from_slice(&b.to_be_bytes());
        siphash24(self.k0 ^ 0x636f_6f6b_6965, self.k1, &msg) as u32
    }
}

/// SipHash-2-4 (Aumasson and Bernstein) of `msg` under the key (k0, k1).
fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    let mut v0 = k0 ^ 0x736f_6d65_7073_6575;
    let mut v1 = k1 ^ 0x646f_7261_6e64_6f6d;
    let mut v2 = k0 ^ 0x6c79_6765_6e65_7261;
    let mut v3 = k1 ^ 0x7465_6462_7974_6573;

    #[inline(always)]
    fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13);
        *v1 ^= *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16);
        *v3 ^= *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21);
        *v3 ^= *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17);
        *v1 ^= *v2;
        *v2 = v2.rotate_left(32);
    }

    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    let m = u64::from_le_bytes(last);
    v3 ^= m;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= m;
    v2 ^= 0xff;
    for _ in 0..4 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn siphash_reference_vectors() {
        // The SipHash paper's test key 00 01 .. 0f and messages 00 01 .. (n-1).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port),
        }
    }

    #[test]
    fn isn_depends_on_key_tuple_and_clock() {
        let k = IsnKey::from_parts(1, 2);
        let t0 = Instant::from_secs(1);
        let a = k.isn(&tuple(1000), t0);
        assert_ne!(a, k.isn(&tuple(1001), t0));
        assert_ne!(a, IsnKey::from_parts(1, 3).isn(&tuple(1000), t0));
        // The clock advances the ISN by one every 4 µs.
        let b = k.isn(&tuple(1000), t0 + crate::time::Duration::from_micros(400));
        assert_eq!(b.wrapping_sub(a), 100);
        assert_ne!(IsnKey::random(), IsnKey::random());
    }
}
