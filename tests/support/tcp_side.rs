//! One shard's TCP half driven over a link the way a worker drives it
//! (receive, demux, handlers' poll, transmit), without the rest of the
//! shard (ARP, UDP, ICMP): the harness of the in-memory shard TCP tests and
//! of `bench/tcp_shard.rs`, which include this file by path.

use std::net::Ipv4Addr;

use xdpstack::phy::{FrameBuf, Link};
use xdpstack::ports::{PortConfig, PortService};
use xdpstack::shard_tcp::{ShardTcp, TcpShardConfig};
use xdpstack::tcp::IsnKey;
use xdpstack::time::Instant;
use xdpstack::wire::frame::{parse, Frame, L4};

pub struct Side<L: Link> {
    pub tcp: ShardTcp,
    pub link: L,
    peer_mac: [u8; 6],
    rx: Vec<L::Frame>,
    tx: Vec<L::Frame>,
}

impl<L: Link> Side<L> {
    /// Shard `shard` of `ports.shards`, at `ip`/`mac`, whose only peer is
    /// at `peer_mac`.
    pub fn new(
        ip: Ipv4Addr,
        mac: [u8; 6],
        peer_mac: [u8; 6],
        link: L,
        ports: PortConfig,
        shard: usize,
    ) -> Side<L> {
        let ports = PortService::new(ports).unwrap().shared();
        let mut cfg = TcpShardConfig::new(ip, mac, 1500);
        cfg.shard = shard;
        Side {
            tcp: ShardTcp::new(cfg, IsnKey::random(), Some(ports), Instant::ZERO),
            link,
            peer_mac,
            rx: Vec::with_capacity(64),
            tx: Vec::with_capacity(64),
        }
    }

    /// One worker loop iteration.
    pub fn step(&mut self, now: Instant) {
        self.link.recv_batch(now, &mut self.rx, 64);
        for f in self.rx.drain(..) {
            if let Ok(Frame::Ipv4(eth, ip, L4::Tcp(seg))) = parse(f.data()) {
                // As the shard does: only what is addressed to us.
                if Ipv4Addr::from(ip.dst_addr) == self.tcp.config().ip {
                    self.tcp
                        .on_segment(now, eth.src_addr.0, ip.src_addr.into(), &seg);
                }
            }
            self.link.release(f);
        }
        self.tcp.poll_handlers(now);
        let peer = self.peer_mac;
        let tx = &mut self.tx;
        self.tcp
            .poll_transmit(now, &mut self.link, &mut |_| Some(peer), &mut |f| {
                tx.push(f)
            });
        self.link.send_batch(now, &mut self.tx);
    }

    /// When this side next has something to do (virtual clock).
    #[allow(dead_code)] // not every includer runs a virtual clock
    pub fn next(&self) -> Option<Instant> {
        [self.tcp.poll_at(), self.link.poll_at()]
            .into_iter()
            .flatten()
            .min()
    }
}
