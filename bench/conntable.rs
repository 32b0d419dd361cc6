//! Connection table against `std::collections::HashMap` (SipHash, the
//! default hasher): lookup hit, lookup miss, and insert+remove, at 1k and 1M
//! entries.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use xdpstack::conntable::{ConnKey, ConnTable};

fn key(i: u32) -> ConnKey {
    ConnKey {
        local_ip: 0x0a00_0001,
        remote_ip: 0x0a10_0000 | (i >> 16),
        local_port: 443,
        remote_port: i as u16,
    }
}

/// A fixed pseudo-random walk over `0..n`, so lookups are not sequential.
fn walk(n: u32, len: usize) -> Vec<u32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % u64::from(n)) as u32
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for &n in &[1_000u32, 1_000_000] {
        let mut table = ConnTable::<u32>::with_capacity(n as usize + 1024);
        let mut map: HashMap<ConnKey, u32> = HashMap::with_capacity(n as usize + 1024);
        for i in 0..n {
            table.insert(key(i), i).unwrap();
            map.insert(key(i), i);
        }
        let hits: Vec<ConnKey> = walk(n, 4096).into_iter().map(key).collect();
        let misses: Vec<ConnKey> = walk(n, 4096).into_iter().map(|i| key(i + n)).collect();

        let mut g = c.benchmark_group(format!("conntable/{n}"));
        g.bench_function(BenchmarkId::new("lookup_hit", "conntable"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(table.get(black_box(&hits[i])))
            })
        });
        g.bench_function(BenchmarkId::new("lookup_hit", "hashmap"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(map.get(black_box(&hits[i])).copied())
            })
        });
        g.bench_function(BenchmarkId::new("lookup_miss", "conntable"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(table.get(black_box(&misses[i])))
            })
        });
        g.bench_function(BenchmarkId::new("lookup_miss", "hashmap"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(map.get(black_box(&misses[i])).copied())
            })
        });
        g.bench_function(BenchmarkId::new("insert_remove", "conntable"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                let k = misses[i];
                table.insert(k, 7).unwrap();
                black_box(table.remove(&k))
            })
        });
        g.bench_function(BenchmarkId::new("insert_remove", "hashmap"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                let k = misses[i];
                map.insert(k, 7);
                black_box(map.remove(&k))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
