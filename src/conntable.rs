//! The per-shard TCP connection table: 4-tuple → value (a slot index into
//! the shard's connection slab).
//!
//! Owns only the mapping; the connections themselves live in the shard's
//! slab, and the table never looks at them.
//!
//! Design, for a lookup on every received segment:
//! - Open addressing with Robin Hood linear probing and backward-shift
//!   deletion (no tombstones, so lookups never degrade after churn). The
//!   slot array is allocated once at creation and never grows: insert,
//!   lookup and remove never allocate; insert refuses with
//!   [`TableFull`] once `capacity` entries are present.
//! - The slot count is the next power of two at or above `capacity × 8/7`,
//!   so the load factor never exceeds 7/8 and probe sequences stay short.
//!   One slot is 20 bytes for a `u32` value: 1M connections take 40 MiB.
//! - The hash is a keyed folded multiply (two 64×64→128 multiplies over the
//!   12 key bytes), far cheaper than SipHash per packet. The 128-bit key is
//!   random per table, so a peer who chooses its addresses and ports cannot
//!   predict which tuples collide. It is not a cryptographic PRF; Robin Hood
//!   probing also bounds the variance of probe lengths.
//!
//! Values are `Copy + Default` so that empty slots can hold a value without
//! `unsafe` or an `Option` per slot.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// A TCP connection's identity as seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnKey {
    /// Local IPv4 address, host byte order.
    pub local_ip: u32,
    /// Remote IPv4 address, host byte order.
    pub remote_ip: u32,
    pub local_port: u16,
    pub remote_port: u16,
}

impl ConnKey {
    pub fn new(local: SocketAddrV4, remote: SocketAddrV4) -> ConnKey {
        ConnKey {
            local_ip: u32::from(*local.ip()),
            remote_ip: u32::from(*remote.ip()),
            local_port: local.port(),
            remote_port: remote.port(),
        }
    }

    pub fn local(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.local_ip), self.local_port)
    }

    pub fn remote(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.remote_ip), self.remote_port)
    }
}

/// Insert refused: the table holds `capacity` entries already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection table is full")
    }
}

impl std::error::Error for TableFull {}

/// One slot. `dist` is 0 when empty, else 1 + the distance from the slot the
/// key hashes to (its probe sequence length).
#[derive(Clone, Copy, Default)]
struct Slot<V> {
    key: ConnKey,
    dist: u32,
    value: V,
}

/// Fixed-capacity open-addressing map from [`ConnKey`] to `V`.
pub struct ConnTable<V> {
    slots: Box<[Slot<V>]>,
    /// `slots.len() - 1`; the slot count is a power of two.
    mask: usize,
    len: usize,
    capacity: usize,
    key: [u64; 2],
}

/// Multiply and fold the 128-bit product: the mixing step of the hash.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Odd constants from the fractional digits of pi, to keep a zero key from
/// collapsing the product.
const C0: u64 = 0x243f_6a88_85a3_08d3;
const C1: u64 = 0x1319_8a2e_0370_7344;

impl<V: Copy + Default> ConnTable<V> {
    /// A table for up to `capacity` entries with a fresh random hash key.
    pub fn with_capacity(capacity: usize) -> ConnTable<V> {
        ConnTable::with_capacity_and_key(capacity, crate::ports::random_key())
    }

    /// A table with a chosen hash key (tests and benchmarks; production
    /// uses [`ConnTable::with_capacity`]).
    pub fn with_capacity_and_key(capacity: usize, key: [u64; 2]) -> ConnTable<V> {
        let capacity = capacity.max(1);
        let want = capacity.saturating_add(capacity / 7).saturating_add(1);
        let n = want.next_power_of_two();
        ConnTable {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
            len: 0,
            capacity,
            key,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the table accepts before [`TableFull`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of slots (a power of two, at least `capacity × 8/7`).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    #[inline(always)]
    fn hash(&self, k: &ConnKey) -> u64 {
        let a = (u64::from(k.local_ip) << 32) | u64::from(k.remote_ip);
        let b = (u64::from(k.local_port) << 16) | u64::from(k.remote_port);
        let h = fold_mul(a ^ self.key[0] ^ C0, b ^ self.key[1] ^ C1);
        fold_mul(h ^ self.key[0], C1)
    }

    #[inline(always)]
    fn home(&self, k: &ConnKey) -> usize {
        (self.hash(k) as usize) & self.mask
    }

    /// The slot holding `k`, if present. Robin Hood order lets a miss stop
    /// as soon as it meets an entry closer to its home than the probe is.
    #[inline]
    fn find(&self, k: &ConnKey) -> Option<usize> {
        let mut i = self.home(k);
        let mut dist = 1u32;
        loop {
            let s = &self.slots[i];
            if s.dist < dist {
                // Empty (0) or a richer entry: `k` would have been placed here.
                return None;
            }
            if s.key == *k {
                return Some(i);
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
    }

    /// The value for `k`.
    #[inline]
    pub fn get(&self, k: &ConnKey) -> Option<V> {
        self.find(k).map(|i| self.slots[i].value)
    }

    #[inline]
    pub fn get_mut(&mut self, k: &ConnKey) -> Option<&mut V> {
        self.find(k).map(move |i| &mut self.slots[i].value)
    }

    pub fn contains_key(&self, k: &ConnKey) -> bool {
        self.find(k).is_some()
    }

    /// Insert or replace. Returns the previous value if `k` was present;
    /// refuses a new key when `capacity` entries are present.
    pub fn insert(&mut self, k: ConnKey, v: V) -> Result<Option<V>, TableFull> {
        if let Some(i) = self.find(&k) {
            return Ok(Some(std::mem::replace(&mut self.slots[i].value, v)));
        }
        if self.len >= self.capacity {
            return Err(TableFull);
        }
        // The load factor is at most 7/8, so an empty slot exists and the
        // loop ends.
        let mut carry = Slot {
            key: k,
            dist: 1,
            value: v,
        };
        let mut i = self.home(&k);
        loop {
            let s = &mut self.slots[i];
            if s.dist == 0 {
                *s = carry;
                break;
            }
            if s.dist < carry.dist {
                // Take from the rich: the resident is nearer its home than
                // the carried entry, so they swap and the resident moves on.
                std::mem::swap(s, &mut carry);
            }
            i = (i + 1) & self.mask;
            carry.dist += 1;
        }
        self.len += 1;
        Ok(None)
    }

    /// Remove `k`, returning its value. The entries after it in the same
    /// cluster shift back one slot (no tombstones).
    pub fn remove(&mut self, k: &ConnKey) -> Option<V> {
        let mut i = self.find(k)?;
        let v = self.slots[i].value;
        loop {
            let next = (i + 1) & self.mask;
            let n = self.slots[next];
            if n.dist <= 1 {
                // Empty, or at its home: the cluster ends here.
                self.slots[i] = Slot::default();
                break;
            }
            self.slots[i] = Slot {
                dist: n.dist - 1,
                ..n
            };
            i = next;
        }
        self.len -= 1;
        Some(v)
    }

    /// Remove every entry (touches every slot: not for the hot path).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.len = 0;
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (ConnKey, V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.dist != 0)
            .map(|s| (s.key, s.value))
    }

    /// The longest probe sequence among present entries (a health figure for
    /// tests and statistics; scans the table).
    pub fn max_probe_len(&self) -> u32 {
        self.slots.iter().map(|s| s.dist).max().unwrap_or(0)
    }
}

impl<V: Copy + Default + fmt::Debug> fmt::Debug for ConnTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> ConnKey {
        ConnKey {
            local_ip: 0x0a00_0001,
            remote_ip: 0x0a00_0002 + (i >> 16),
            local_port: 80,
            remote_port: i as u16,
        }
    }

    #[test]
    fn insert_get_remove_roundtrip() {
        let mut t = ConnTable::<u32>::with_capacity_and_key(100, [1, 2]);
        assert_eq!(t.insert(key(1), 10), Ok(None));
        assert_eq!(t.insert(key(1), 11), Ok(Some(10)));
        assert_eq!(t.get(&key(1)), Some(11));
        assert_eq!(t.get(&key(2)), None);
        assert_eq!(t.remove(&key(1)), Some(11));
        assert_eq!(t.remove(&key(1)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn refuses_when_full_but_replaces() {
        let mut t = ConnTable::<u32>::with_capacity_and_key(8, [3, 4]);
        for i in 0..8 {
            t.insert(key(i), i).unwrap();
        }
        assert_eq!(t.insert(key(99), 0), Err(TableFull));
        assert_eq!(t.insert(key(3), 33), Ok(Some(3)));
        assert_eq!(t.len(), 8);
        t.remove(&key(0));
        assert_eq!(t.insert(key(99), 0), Ok(None));
    }

    #[test]
    fn full_table_of_all_zero_keys_still_terminates() {
        // A zero hash key must still spread keys (no degenerate product).
        let mut t = ConnTable::<u32>::with_capacity_and_key(1000, [0, 0]);
        for i in 0..1000 {
            t.insert(key(i), i).unwrap();
        }
        for i in 0..1000 {
            assert_eq!(t.get(&key(i)), Some(i));
        }
        assert!(t.max_probe_len() < 64, "{}", t.max_probe_len());
    }

    #[test]
    fn key_roundtrips_socket_addresses() {
        let l: SocketAddrV4 = "10.1.2.3:443".parse().unwrap();
        let r: SocketAddrV4 = "192.168.0.9:50000".parse().unwrap();
        let k = ConnKey::new(l, r);
        assert_eq!(k.local(), l);
        assert_eq!(k.remote(), r);
    }
}
