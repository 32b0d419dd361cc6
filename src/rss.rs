//! Receive-side scaling: the Toeplitz hash a NIC computes over a received
//! packet's IPv4/TCP 4-tuple, the indirection table that turns the hash into
//! a receive queue, and its inversion for active opens: which local ports
//! make a connection's replies arrive on a given queue.
//!
//! This module owns the arithmetic only (pure, no I/O). Reading an
//! interface's key and table is [`crate::xdp::ethtool::read_rss`]; the
//! ephemeral allocator applies the result
//! ([`crate::ports::PortService::set_reply_steering`]).
//!
//! The hash (Microsoft's RSS specification, "Verifying the RSS Hash
//! Calculation", which most NICs implement): for each bit `i` of the input
//! that is set, XOR in the 32 bits of the key starting at bit `i`. For IPv4
//! with TCP the input is source address, destination address, source port,
//! destination port, in network byte order (12 bytes), so the key needs at
//! least 16 bytes. The queue is `table[hash % table.len()]`: drivers index
//! their table with the low bits of the hash, the same thing for the
//! power-of-two table sizes they use.
//!
//! Inversion: the hash is linear over GF(2), so for replies to an active
//! open (source = the remote end, destination = us) it splits into the part
//! of the three fixed fields and the part of our port, a XOR of at most 16
//! key windows. [`ReplySteer`] precomputes the first once per destination
//! and evaluates a port in 16 steps; the allocator keeps its RFC 6056 order
//! and skips ports that hash elsewhere, so a queue gets ~1/N of a slice.
//!
//! What this does not cover: a NIC whose flow rules (ntuple, aRFS) override
//! RSS, a hash function other than Toeplitz, or a symmetric input
//! transform; the reader reports those as "no RSS" and the stack relies on
//! forwarding between workers. Nor veth: its receive queue is the peer's
//! transmit queue, which the sending kernel picks (see the README's TCP
//! section and `worker`'s module docs).

use std::fmt;
use std::net::Ipv4Addr;

use crate::ports::PortRange;

/// The 40-byte key of Microsoft's RSS verification suite, also the default
/// of many drivers and of DPDK.
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Bytes of key an IPv4/TCP input needs: 12 bytes of input plus the 32-bit
/// window of the last bit.
pub const MIN_KEY_LEN: usize = 16;

/// The indirection table size Linux gives a device by default when the
/// driver does not say (`ethtool_rxfh_indir_default`).
pub const DEFAULT_TABLE_LEN: usize = 128;

/// Why an RSS configuration is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssError {
    /// The key is shorter than [`MIN_KEY_LEN`].
    KeyTooShort,
    /// The indirection table is empty.
    EmptyTable,
}

impl fmt::Display for RssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RssError::KeyTooShort => write!(f, "RSS key shorter than {MIN_KEY_LEN} bytes"),
            RssError::EmptyTable => f.write_str("empty RSS indirection table"),
        }
    }
}

impl std::error::Error for RssError {}

/// The Toeplitz hash of `input` under `key` (bits of `input` past the key's
/// reach contribute nothing; callers check the key length).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    for (byte_i, &b) in input.iter().enumerate() {
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                hash ^= key_window(key, byte_i * 8 + bit);
            }
        }
    }
    hash
}

/// The 32 key bits starting at bit `at` (zeros past the end).
fn key_window(key: &[u8], at: usize) -> u32 {
    let byte = at / 8;
    let mut w = 0u64;
    for i in 0..5 {
        w = (w << 8) | u64::from(key.get(byte + i).copied().unwrap_or(0));
    }
    // 40 bits loaded; the window starts `at % 8` bits in.
    (w >> (8 - at % 8)) as u32
}

/// The hash input of an IPv4/TCP packet from `src` to `dst`.
pub fn ipv4_tcp_input(src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&src.octets());
    b[4..8].copy_from_slice(&dst.octets());
    b[8..10].copy_from_slice(&src_port.to_be_bytes());
    b[10..12].copy_from_slice(&dst_port.to_be_bytes());
    b
}

/// A NIC's RSS settings: the Toeplitz key and the indirection table (each
/// entry a receive queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    key: Vec<u8>,
    table: Vec<u32>,
}

impl RssConfig {
    pub fn new(key: Vec<u8>, table: Vec<u32>) -> Result<RssConfig, RssError> {
        if key.len() < MIN_KEY_LEN {
            return Err(RssError::KeyTooShort);
        }
        if table.is_empty() {
            return Err(RssError::EmptyTable);
        }
        Ok(RssConfig { key, table })
    }

    /// `key` with Linux's default table over `queues` queues: entry `i` is
    /// queue `i % queues`.
    pub fn with_default_table(key: Vec<u8>, queues: u32) -> Result<RssConfig, RssError> {
        let table = (0..DEFAULT_TABLE_LEN as u32)
            .map(|i| i % queues.max(1))
            .collect();
        RssConfig::new(key, table)
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// The hash of an IPv4/TCP packet from `src` to `dst`.
    pub fn hash(&self, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> u32 {
        toeplitz(&self.key, &ipv4_tcp_input(src, src_port, dst, dst_port))
    }

    /// The queue a hash selects.
    pub fn queue_of_hash(&self, hash: u32) -> u32 {
        self.table[hash as usize % self.table.len()]
    }

    /// The queue an IPv4/TCP packet from `src` to `dst` arrives on.
    pub fn queue(&self, src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> u32 {
        self.queue_of_hash(self.hash(src, src_port, dst, dst_port))
    }

    /// The steering of replies from `remote:remote_port` to `local` (the
    /// three fixed fields of an active open).
    pub fn reply_steer(
        &self,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        remote_port: u16,
    ) -> ReplySteer<'_> {
        // Replies: source = remote, destination = local; our port is the
        // last 16 bits of the input (bits 80..96).
        let fixed = self.hash(remote, remote_port, local, 0);
        let mut port_bits = [0u32; 16];
        for (i, w) in port_bits.iter_mut().enumerate() {
            // Bit i of the port, counted from its most significant bit.
            *w = key_window(&self.key, 80 + i);
        }
        ReplySteer {
            rss: self,
            fixed,
            port_bits,
        }
    }

    /// The ports of `slice`, in order, whose replies from
    /// `remote:remote_port` to `local` arrive on `queue`.
    pub fn ports_for_queue(
        &self,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        remote_port: u16,
        slice: PortRange,
        queue: u32,
    ) -> Vec<u16> {
        let steer = self.reply_steer(local, remote, remote_port);
        slice
            .iter()
            .filter(|&p| steer.queue_of_port(p) == queue)
            .collect()
    }
}

/// Replies of one destination, precomputed: see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct ReplySteer<'a> {
    rss: &'a RssConfig,
    /// The hash with our port zero.
    fixed: u32,
    /// The key window of each port bit, most significant first.
    port_bits: [u32; 16],
}

impl ReplySteer<'_> {
    /// The hash of a reply to local port `port`.
    pub fn hash_of_port(&self, port: u16) -> u32 {
        let mut h = self.fixed;
        for (i, w) in self.port_bits.iter().enumerate() {
            if port & (0x8000 >> i) != 0 {
                h ^= w;
            }
        }
        h
    }

    /// The queue a reply to local port `port` arrives on.
    pub fn queue_of_port(&self, port: u16) -> u32 {
        self.rss.queue_of_hash(self.hash_of_port(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Microsoft's verification data, IPv4: (destination, source, IPv4
    /// only, IPv4 with TCP).
    const VECTORS: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    #[test]
    fn microsoft_verification_vectors() {
        let rss = RssConfig::with_default_table(MICROSOFT_KEY.to_vec(), 4).unwrap();
        for (dst, dport, src, sport, ip_only, with_tcp) in VECTORS {
            let mut ips = [0u8; 8];
            ips[..4].copy_from_slice(&a(src).octets());
            ips[4..].copy_from_slice(&a(dst).octets());
            assert_eq!(toeplitz(&MICROSOFT_KEY, &ips), ip_only, "{src} -> {dst}");
            assert_eq!(
                rss.hash(a(src), sport, a(dst), dport),
                with_tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn reply_steer_agrees_with_the_full_hash() {
        // A key other than the default, and a table that is not i % n.
        let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let table: Vec<u32> = (0..64u32).map(|i| (i * 7 + i / 5) % 3).collect();
        let rss = RssConfig::new(key, table).unwrap();
        let (local, remote) = (a("10.1.2.3"), a("192.0.2.77"));
        let steer = rss.reply_steer(local, remote, 443);
        for port in (0..=u16::MAX).step_by(97).chain([0, 1, 0x8000, u16::MAX]) {
            assert_eq!(steer.hash_of_port(port), rss.hash(remote, 443, local, port));
            assert_eq!(
                steer.queue_of_port(port),
                rss.queue(remote, 443, local, port)
            );
        }
    }

    #[test]
    fn ports_for_queue_cover_the_slice_once() {
        let rss = RssConfig::with_default_table(MICROSOFT_KEY.to_vec(), 4).unwrap();
        let slice = PortRange::new(61000, 62999).unwrap();
        let (local, remote) = (a("10.0.0.1"), a("10.0.0.2"));
        let mut all = Vec::new();
        for q in 0..4 {
            let ports = rss.ports_for_queue(local, remote, 80, slice, q);
            // Roughly a quarter each (the hash spreads ports evenly).
            assert!(
                (300..=700).contains(&ports.len()),
                "queue {q}: {}",
                ports.len()
            );
            for &p in &ports {
                assert!(slice.contains(p));
                assert_eq!(rss.queue(remote, 80, local, p), q);
            }
            all.extend(ports);
        }
        all.sort_unstable();
        assert_eq!(all, slice.iter().collect::<Vec<_>>());
        // A queue the table never names gets nothing.
        assert!(rss.ports_for_queue(local, remote, 80, slice, 4).is_empty());
    }

    #[test]
    fn rejects_short_key_and_empty_table() {
        assert_eq!(
            RssConfig::new(vec![0; 15], vec![0]),
            Err(RssError::KeyTooShort)
        );
        assert_eq!(
            RssConfig::new(MICROSOFT_KEY.to_vec(), vec![]),
            Err(RssError::EmptyTable)
        );
        let r = RssConfig::with_default_table(MICROSOFT_KEY.to_vec(), 3).unwrap();
        assert_eq!(r.table().len(), DEFAULT_TABLE_LEN);
        assert_eq!(&r.table()[..4], &[0, 1, 2, 0]);
    }

    #[test]
    fn key_window_at_every_offset() {
        // The window at bit i of a key equals reading 32 bits at i by hand.
        let key = MICROSOFT_KEY;
        for i in 0..(key.len() * 8 - 32) {
            let mut w = 0u32;
            for j in 0..32 {
                let bit = i + j;
                let set = key[bit / 8] & (0x80 >> (bit % 8)) != 0;
                w = (w << 1) | u32::from(set);
            }
            assert_eq!(key_window(&key, i), w, "offset {i}");
        }
    }
}
