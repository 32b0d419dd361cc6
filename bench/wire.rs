//! TCP segment parse and emit, ns per packet: a data segment (1448 bytes
//! of payload, timestamps) and a bare ACK with two SACK blocks, each as
//! parse (view + options + checksum verification), emit (header, options,
//! payload copy, checksum) and whole-frame emit + parse.
//!
//! `cargo bench --bench wire -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdpstack::wire::frame;
use xdpstack::wire::tcp::{self, TcpFlags, TcpOptions, TcpRepr};
use xdpstack::wire::{
    EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, SackBlock, SeqNumber, Timestamps,
};

const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

fn segments(payload: &[u8]) -> [(&'static str, TcpRepr<'_>); 2] {
    let base = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq_number: SeqNumber(1_000_000),
        ack_number: SeqNumber(2_000_000),
        flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
        window: 501,
        urgent_pointer: 0,
        options: TcpOptions {
            timestamps: Some(Timestamps {
                tsval: 123456,
                tsecr: 654321,
            }),
            ..TcpOptions::default()
        },
        payload,
    };
    let sack = |l: u32, r: u32| {
        Some(SackBlock {
            left: SeqNumber(l),
            right: SeqNumber(r),
        })
    };
    let ack = TcpRepr {
        flags: TcpFlags(TcpFlags::ACK),
        options: TcpOptions {
            sack_blocks: [sack(3000, 4000), sack(5000, 6000), None, None],
            ..base.options
        },
        payload: &[],
        ..base
    };
    [("data1448", base), ("ack_sack", ack)]
}

fn tcp_bench(c: &mut Criterion) {
    let payload: Vec<u8> = (0..1448u32).map(|i| i as u8).collect();
    let mut g = c.benchmark_group("tcp_segment");
    g.throughput(Throughput::Elements(1));
    for (name, repr) in segments(&payload) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]), SRC, DST);
        g.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| {
                let p = tcp::Packet::new_checked(black_box(&buf[..])).unwrap();
                black_box(TcpRepr::parse(&p, SRC, DST).unwrap());
            })
        });
        let p = tcp::Packet::new_checked(&buf[..]).unwrap();
        g.bench_function(format!("parse_unverified/{name}"), |b| {
            b.iter(|| black_box(TcpRepr::parse_unverified(black_box(&p)).unwrap()))
        });
        g.bench_function(format!("options_parse/{name}"), |b| {
            b.iter(|| black_box(TcpOptions::parse(black_box(p.options())).unwrap()))
        });
        g.bench_function(format!("checksum/{name}"), |b| {
            b.iter(|| black_box(xdpstack::wire::checksum::sum(black_box(&buf[..]))))
        });
        let mut out = vec![0u8; repr.buffer_len()];
        g.bench_function(format!("emit/{name}"), |b| {
            b.iter(|| {
                black_box(&repr).emit(&mut tcp::Packet::new_unchecked(&mut out[..]), SRC, DST);
                black_box(&out);
            })
        });
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: 0,
            vlan: None,
        };
        let ip = Ipv4Repr::new(SRC, DST, 6, 0);
        let mut fbuf = vec![0u8; frame::ipv4_tcp_len(&eth, &repr)];
        g.bench_function(format!("frame_emit_parse/{name}"), |b| {
            b.iter(|| {
                let n = frame::emit_ipv4_tcp(&mut fbuf, &eth, &ip, black_box(&repr)).unwrap();
                black_box(frame::parse(&fbuf[..n]).unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tcp_bench);
criterion_main!(benches);
