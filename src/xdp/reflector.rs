//! The raw AF_XDP UDP reflector: the ceiling of the AF_XDP path, with no
//! stack. Frames for the steered UDP port have their Ethernet, IPv4 and UDP
//! source and destination swapped in place and go straight back out of the
//! same UMEM frame. Swapping leaves both checksums valid (the one's
//! complement sums cover both addresses and both ports, and addition
//! commutes), so none is recomputed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::loader::{AttachMode, AttachedMode, LoadError, Steering};
use super::maps::{MapError, Proto};
use super::socket::{PollMode, XdpLink, XskConfig, XskStats};
use super::umem::{Frame, UmemConfig, XskError};
use crate::phy::{FrameBuf, Link};

/// What the reflector runs on.
#[derive(Debug, Clone)]
pub struct ReflectorConfig {
    pub iface: String,
    /// UDP port to steer and reflect.
    pub port: u16,
    /// Queues to serve, one thread each: (queue id, core to pin to).
    pub queues: Vec<(u32, Option<usize>)>,
    pub attach: AttachMode,
    pub poll: PollMode,
    pub umem: UmemConfig,
    /// Most frames per RX batch.
    pub batch: usize,
}

impl ReflectorConfig {
    /// One queue (0), no pinning, auto attach, busy polling.
    pub fn new(iface: &str, port: u16) -> ReflectorConfig {
        ReflectorConfig {
            iface: iface.to_string(),
            port,
            queues: vec![(0, None)],
            attach: AttachMode::Auto,
            poll: PollMode::Busy,
            umem: UmemConfig::default(),
            batch: 64,
        }
    }
}

/// Counters of one reflector run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReflectorStats {
    /// Datagrams sent back.
    pub reflected: u64,
    /// Frames that were not UDP to our port (dropped).
    pub ignored: u64,
    /// The sockets' counters, summed over queues.
    pub xsk: XskStats,
}

/// A run's counters, in total and per queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReflectorReport {
    pub total: ReflectorStats,
    /// (queue id, that queue's counters), in configuration order.
    pub per_queue: Vec<(u32, ReflectorStats)>,
}

/// Why the reflector could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReflectorError {
    Load(LoadError),
    Map(MapError),
    Xsk(XskError),
    /// A worker thread panicked.
    Worker,
}

impl fmt::Display for ReflectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReflectorError::Load(e) => write!(f, "{e}"),
            ReflectorError::Map(e) => write!(f, "{e}"),
            ReflectorError::Xsk(e) => write!(f, "{e}"),
            ReflectorError::Worker => write!(f, "a reflector thread panicked"),
        }
    }
}

impl std::error::Error for ReflectorError {}

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;

/// Turn a UDP/IPv4 frame for `port` around in place. False (frame unchanged)
/// for anything else, malformed input included; never panics.
pub fn reflect_udp(frame: &mut [u8], port: u16) -> bool {
    let mut l3 = ETH_LEN;
    let mut ethertype = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return false,
    };
    if ethertype == ETHERTYPE_VLAN {
        ethertype = match frame.get(16..18) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return false,
        };
        l3 += 4;
    }
    if ethertype != ETHERTYPE_IPV4 || frame.len() < l3 + 20 {
        return false;
    }
    let ip = &frame[l3..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff; // MF + offset
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || frag != 0 {
        return false;
    }
    let l4 = l3 + ihl;
    let Some(udp) = frame.get(l4..l4 + 8) else {
        return false;
    };
    if u16::from_be_bytes([udp[2], udp[3]]) != port {
        return false;
    }
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(l3 + 12 + i, l3 + 16 + i);
    }
    for i in 0..2 {
        frame.swap(l4 + i, l4 + 2 + i);
    }
    true
}

/// Serve one socket until `stop` is set.
pub fn serve(link: &mut XdpLink, port: u16, batch: usize, stop: &AtomicBool) -> ReflectorStats {
    let mut rx: Vec<Frame> = Vec::with_capacity(batch);
    let mut tx: Vec<Frame> = Vec::with_capacity(batch);
    let mut stats = ReflectorStats::default();
    while !stop.load(Ordering::Relaxed) {
        if !link.wait(100) {
            continue;
        }
        if link.receive(&mut rx, batch) == 0 {
            continue;
        }
        for mut f in rx.drain(..) {
            if reflect_udp(f.data_mut(), port) {
                stats.reflected += 1;
                tx.push(f);
            } else {
                stats.ignored += 1;
                link.release(f);
            }
        }
        link.transmit(&mut tx);
    }
    stats.xsk = link.stats();
    stats
}

fn add(a: &mut XskStats, b: &XskStats) {
    a.rx_frames += b.rx_frames;
    a.rx_bytes += b.rx_bytes;
    a.tx_frames += b.tx_frames;
    a.tx_bytes += b.tx_bytes;
    a.tx_ring_full += b.tx_ring_full;
    a.kicks += b.kicks;
    a.kick_errors += b.kick_errors;
    a.rx_invalid += b.rx_invalid;
    a.released += b.released;
    a.kernel_rx_dropped += b.kernel_rx_dropped;
    a.kernel_rx_ring_full += b.kernel_rx_ring_full;
    a.kernel_fill_empty += b.kernel_fill_empty;
    a.kernel_tx_invalid += b.kernel_tx_invalid;
}

/// Attach the steering program to `cfg.iface`, steer UDP `cfg.port`, and
/// reflect on every configured queue until `stop` is set; detach on return.
/// `ready` is called once every socket is in place (tests and benchmarks
/// wait for it before sending), with the mode the program attached in.
pub fn run_with(
    cfg: &ReflectorConfig,
    stop: &AtomicBool,
    ready: impl FnOnce(AttachedMode),
) -> Result<ReflectorReport, ReflectorError> {
    let steering = Steering::attach(&cfg.iface, cfg.attach).map_err(ReflectorError::Load)?;
    let maps = steering.maps().clone();
    let mut links = Vec::new();
    for &(queue, core) in &cfg.queues {
        let xc = XskConfig {
            umem: cfg.umem,
            poll: cfg.poll,
            ..XskConfig::new(&cfg.iface, queue)
        };
        let link = XdpLink::open(&xc, Some(&maps)).map_err(ReflectorError::Xsk)?;
        links.push((link, core));
    }
    maps.add_port(Proto::Udp, cfg.port)
        .map_err(ReflectorError::Map)?;
    ready(steering.mode());
    let results: Vec<Option<ReflectorStats>> = std::thread::scope(|s| {
        let handles: Vec<_> = links
            .iter_mut()
            .map(|(link, core)| {
                let core = *core;
                s.spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    serve(link, cfg.port, cfg.batch.max(1), stop)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let _ = maps.remove_port(Proto::Udp, cfg.port);
    drop(links);
    steering.detach().map_err(ReflectorError::Load)?;
    let mut report = ReflectorReport::default();
    for (r, &(queue, _)) in results.into_iter().zip(&cfg.queues) {
        let r = r.ok_or(ReflectorError::Worker)?;
        report.total.reflected += r.reflected;
        report.total.ignored += r.ignored;
        add(&mut report.total.xsk, &r.xsk);
        report.per_queue.push((queue, r));
    }
    Ok(report)
}

/// [`run_with`] without a readiness callback.
pub fn run(cfg: &ReflectorConfig, stop: &AtomicBool) -> Result<ReflectorReport, ReflectorError> {
    run_with(cfg, stop, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn datagram(payload: &[u8], dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(40000, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn reflect_swaps_and_keeps_checksums_valid() {
        for len in [0usize, 1, 511, 1472] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut f = datagram(&payload, 7777);
            assert!(reflect_udp(&mut f, 7777));
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let eth = p.link.as_ref().unwrap().to_header().unwrap();
            let eth = match eth {
                etherparse::LinkHeader::Ethernet2(e) => e,
                _ => panic!("not ethernet"),
            };
            assert_eq!(eth.source, [7, 8, 9, 10, 11, 12]);
            assert_eq!(eth.destination, [1, 2, 3, 4, 5, 6]);
            let ip = match p.net.as_ref().unwrap() {
                etherparse::NetSlice::Ipv4(ip) => ip.header().to_header(),
                _ => panic!("not ipv4"),
            };
            assert_eq!(ip.source, [10, 0, 0, 1]);
            assert_eq!(ip.destination, [10, 0, 0, 2]);
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            let udp = match p.transport.as_ref().unwrap() {
                TransportSlice::Udp(u) => u.clone(),
                _ => panic!("not udp"),
            };
            assert_eq!(udp.source_port(), 7777);
            assert_eq!(udp.destination_port(), 40000);
            let h = udp.to_header();
            assert_eq!(
                h.checksum,
                h.calc_checksum_ipv4(&ip, udp.payload()).unwrap(),
                "UDP checksum still valid after the swap"
            );
            assert_eq!(udp.payload(), &payload[..]);
        }
    }

    #[test]
    fn reflect_refuses_other_traffic() {
        let mut f = datagram(b"x", 7777);
        let orig = f.clone();
        assert!(!reflect_udp(&mut f, 7778));
        assert_eq!(f, orig);
        for cut in 0..42 {
            let mut t = orig[..cut].to_vec();
            assert!(!reflect_udp(&mut t, 7777), "truncated at {cut}");
        }
        let mut arp = orig.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!reflect_udp(&mut arp, 7777));
        let mut frag = orig.clone();
        frag[14 + 6] = 0x20; // MF
        assert!(!reflect_udp(&mut frag, 7777));
    }
}
