//! Differential test: the connection table against `std::collections::HashMap`
//! on random sequences of inserts, lookups and removals, including a full
//! table and keys that share most of their bytes.

use std::collections::HashMap;

use proptest::prelude::*;
use xdpstack::conntable::{ConnKey, ConnTable, TableFull};

#[derive(Debug, Clone)]
enum Op {
    Insert(ConnKey, u32),
    Get(ConnKey),
    Remove(ConnKey),
}

/// Keys drawn from a small space so that operations hit existing entries
/// often, with addresses and ports that differ in few bits.
fn key() -> impl Strategy<Value = ConnKey> {
    (0u32..4, 0u32..4, 0u16..3, 0u16..40).prop_map(|(l, r, lp, rp)| ConnKey {
        local_ip: 0x0a00_0000 | l,
        remote_ip: 0x0a01_0000 | r,
        local_port: 80 + lp,
        remote_port: 40000 + rp,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key().prop_map(Op::Get),
        2 => key().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn behaves_like_hashmap(
        capacity in 1usize..200,
        seed in any::<[u64; 2]>(),
        ops in proptest::collection::vec(op(), 0..600),
    ) {
        let mut t = ConnTable::<u32>::with_capacity_and_key(capacity, seed);
        let mut m: HashMap<ConnKey, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let got = t.insert(k, v);
                    if m.contains_key(&k) || m.len() < capacity {
                        prop_assert_eq!(got, Ok(m.insert(k, v)));
                    } else {
                        prop_assert_eq!(got, Err(TableFull));
                    }
                }
                Op::Get(k) => prop_assert_eq!(t.get(&k), m.get(&k).copied()),
                Op::Remove(k) => prop_assert_eq!(t.remove(&k), m.remove(&k)),
            }
            prop_assert_eq!(t.len(), m.len());
        }
        // Every entry is found, and nothing else is present.
        for (k, v) in &m {
            prop_assert_eq!(t.get(k), Some(*v));
        }
        let mut listed: Vec<_> = t.iter().collect();
        listed.sort_by_key(|(k, _)| (k.local_ip, k.remote_ip, k.local_port, k.remote_port));
        let mut want: Vec<_> = m.into_iter().collect();
        want.sort_by_key(|(k, _)| (k.local_ip, k.remote_ip, k.local_port, k.remote_port));
        prop_assert_eq!(listed, want);
    }

    /// A table filled to capacity, then emptied in random order, then
    /// refilled: backward-shift deletion must leave every survivor reachable.
    #[test]
    fn fill_drain_refill(
        capacity in 1usize..300,
        seed in any::<[u64; 2]>(),
        order in any::<u64>(),
    ) {
        let mut t = ConnTable::<u32>::with_capacity_and_key(capacity, seed);
        let keys: Vec<ConnKey> = (0..capacity as u32)
            .map(|i| ConnKey { local_ip: 1, remote_ip: i / 7, local_port: 443, remote_port: i as u16 })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            prop_assert_eq!(t.insert(*k, i as u32), Ok(None));
        }
        let extra = ConnKey { local_ip: 2, ..keys[0] };
        prop_assert_eq!(t.insert(extra, 0), Err(TableFull));
        // Remove in a permuted order, checking the rest after each removal.
        let mut idx: Vec<usize> = (0..capacity).collect();
        let mut s = order | 1;
        for i in (1..idx.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            idx.swap(i, (s % (i as u64 + 1)) as usize);
        }
        for (n, &i) in idx.iter().enumerate() {
            prop_assert_eq!(t.remove(&keys[i]), Some(i as u32));
            if n % 16 == 0 {
                for &j in &idx[n + 1..] {
                    prop_assert_eq!(t.get(&keys[j]), Some(j as u32));
                }
            }
        }
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.iter().count(), 0);
        for (i, k) in keys.iter().enumerate() {
            prop_assert_eq!(t.insert(*k, i as u32), Ok(None));
        }
        prop_assert_eq!(t.len(), capacity);
    }
}

#[test]
fn one_million_entries_fit_and_are_found() {
    let n = 1 << 20;
    let mut t = ConnTable::<u32>::with_capacity(n);
    let key = |i: u32| ConnKey {
        local_ip: 0x0a00_0001,
        remote_ip: 0x0a10_0000 | (i >> 16),
        local_port: 443,
        remote_port: i as u16,
    };
    for i in 0..n as u32 {
        t.insert(key(i), i).unwrap();
    }
    assert_eq!(t.len(), n);
    assert_eq!(t.insert(ConnKey::default(), 0), Err(TableFull));
    for i in (0..n as u32).step_by(97) {
        assert_eq!(t.get(&key(i)), Some(i));
    }
    // A random key keeps the clusters short even for sequential tuples.
    assert!(t.max_probe_len() < 64, "max probe {}", t.max_probe_len());
}
