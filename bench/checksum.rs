//! Checksum throughput (GB/s) at 64, 576, 1500 and 9000 bytes: the fast
//! path (AVX2 when present), the portable 64-bit path, the RFC 1071 scalar
//! reference and the `internet-checksum` crate, side by side in one run;
//! plus the batch finaliser over 64 TCP frames of 1500 bytes.
//!
//! `cargo bench --bench checksum -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xdpstack::wire::checksum::{self, ChecksumJob, ChecksumOffsets};

const SIZES: [usize; 4] = [64, 576, 1500, 9000];

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect()
}

fn sums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in SIZES {
        let d = data(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("fast", len), &d, |b, d| {
            b.iter(|| checksum::sum(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("portable64", len), &d, |b, d| {
            b.iter(|| checksum::sum_portable(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("scalar_rfc1071", len), &d, |b, d| {
            b.iter(|| checksum::sum_scalar(black_box(d)))
        });
        g.bench_with_input(BenchmarkId::new("internet_checksum", len), &d, |b, d| {
            b.iter(|| internet_checksum::checksum(black_box(d)))
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    const FRAMES: usize = 64;
    const LEN: usize = 1500;
    let mut frames: Vec<Vec<u8>> = (0..FRAMES).map(|_| data(LEN)).collect();
    // Ethernet + IPv4 (IHL 5, protocol TCP, total length 1486) + TCP.
    for f in &mut frames {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((LEN - 14) as u16).to_be_bytes());
        f[23] = 6;
        f[46] = 0x50;
    }
    let offsets: Vec<ChecksumOffsets> = frames
        .iter()
        .map(|f| ChecksumOffsets::for_ipv4(f, 14).expect("valid frame"))
        .collect();
    let mut g = c.benchmark_group("checksum_batch");
    g.throughput(Throughput::Bytes((FRAMES * LEN) as u64));
    g.bench_function("finalize_64x1500", |b| {
        b.iter(|| {
            let mut jobs: Vec<ChecksumJob> = frames
                .iter_mut()
                .zip(&offsets)
                .map(|(f, o)| ChecksumJob {
                    frame: &mut f[..],
                    offsets: *o,
                })
                .collect();
            black_box(checksum::finalize_batch(&mut jobs))
        })
    });
    g.finish();
}

criterion_group!(benches, sums, batch);
criterion_main!(benches);
