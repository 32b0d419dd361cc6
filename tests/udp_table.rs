//! The sans-IO UDP table: bind/connect/close, send validation, receive
//! validation and demux, bounded queues, drop counters, and the
//! port-unreachable rule; plus a property test against a reference model.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use xdpstack::icmp::AddressMode;
use xdpstack::udp::{
    max_payload, Checksum, Datagram, DropReason, RxDatagram, RxDecision, UdpConfig, UdpError,
    UdpTable,
};

const US: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn config(mode: AddressMode) -> UdpConfig {
    UdpConfig {
        mode,
        local_addr: US,
        mtu: 1500,
        rx_queue_limit: 4,
    }
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn dgram(src: SocketAddrV4, dst: SocketAddrV4, payload: usize) -> RxDatagram {
    RxDatagram {
        src,
        dst,
        ip_payload_len: payload + 8,
        udp_length: (payload + 8) as u16,
        checksum: Checksum::Valid,
        link_broadcast: false,
    }
}

#[test]
fn send_limits_payload_to_mtu_minus_28() {
    let mut t: UdpTable<()> = UdpTable::new(config(AddressMode::Shared));
    let s = t.bind(sa(Ipv4Addr::UNSPECIFIED, 7000)).unwrap();
    assert_eq!(max_payload(1500), 1472);
    let tx = t.send_to(s, sa(PEER, 9), 1472).unwrap();
    // A socket bound to 0.0.0.0 sends from the stack's address.
    assert_eq!(tx.src, sa(US, 7000));
    assert_eq!(tx.dst, sa(PEER, 9));
    assert_eq!(tx.udp_length, 1480);
    let e = t.send_to(s, sa(PEER, 9), 1473).unwrap_err();
    assert_eq!(e, UdpError::MessageTooLong);
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("too long"));
    assert_eq!(t.send_to(s, sa(PEER, 0), 1), Err(UdpError::Unaddressable));
    assert_eq!(
        t.send_to(s, sa(Ipv4Addr::UNSPECIFIED, 9), 1),
        Err(UdpError::Unaddressable)
    );
    assert_eq!(t.send(s, 1), Err(UdpError::NotConnected));
    t.connect(s, Some(sa(PEER, 53))).unwrap();
    assert_eq!(t.send(s, 0).unwrap().dst, sa(PEER, 53));
    assert_eq!(t.counters().tx_datagrams, 2);
}

#[test]
fn bind_close_and_stale_ids() {
    let mut t: UdpTable<u8> = UdpTable::new(config(AddressMode::Shared));
    let a = t.bind(sa(US, 5000)).unwrap();
    assert_eq!(t.bind(sa(US, 5000)), Err(UdpError::AddrInUse));
    assert_eq!(
        t.bind(sa(Ipv4Addr::UNSPECIFIED, 5000)),
        Err(UdpError::AddrInUse)
    );
    assert_eq!(t.bind(sa(US, 0)), Err(UdpError::Unaddressable));
    let d = dgram(sa(PEER, 1), sa(US, 5000), 3);
    let RxDecision::Deliver {
        socket,
        payload_len,
    } = t.receive(&d)
    else {
        panic!("not delivered");
    };
    assert_eq!((socket, payload_len), (a, 3));
    t.enqueue(
        a,
        Datagram {
            src: d.src,
            dst: d.dst,
            payload_len,
            buf: 42,
        },
    )
    .unwrap();
    // Close hands back the queued frame handles.
    let left = t.close(a).unwrap();
    assert_eq!(
        left.into_iter().map(|d| d.buf).collect::<Vec<_>>(),
        vec![42]
    );
    assert_eq!(t.close(a), Err(UdpError::InvalidSocket));
    assert_eq!(t.recv(a), Err(UdpError::InvalidSocket));
    // The slot is reused with a new generation: the old id stays dead.
    let b = t.bind(sa(US, 5000)).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.send_to(a, sa(PEER, 1), 1), Err(UdpError::InvalidSocket));
    assert!(t.send_to(b, sa(PEER, 1), 1).is_ok());
}

#[test]
fn receive_validates_length_and_checksum() {
    let mut t: UdpTable<()> = UdpTable::new(config(AddressMode::Dedicated));
    let s = t.bind(sa(US, 4000)).unwrap();
    let ok = dgram(sa(PEER, 1), sa(US, 4000), 10);
    // Length field shorter than the IP payload: the rest is padding.
    let padded = RxDatagram {
        ip_payload_len: 30,
        ..ok
    };
    assert_eq!(
        t.receive(&padded),
        RxDecision::Deliver {
            socket: s,
            payload_len: 10
        }
    );
    for (d, why) in [
        (
            RxDatagram {
                udp_length: 7,
                ..ok
            },
            DropReason::BadLength,
        ),
        (
            RxDatagram {
                udp_length: 19,
                ..ok
            },
            DropReason::BadLength,
        ),
        (
            RxDatagram {
                checksum: Checksum::Invalid,
                ..ok
            },
            DropReason::BadChecksum,
        ),
        // A bad checksum to a closed port is still a checksum drop, not a
        // port unreachable.
        (
            RxDatagram {
                checksum: Checksum::Invalid,
                dst: sa(US, 4001),
                ..ok
            },
            DropReason::BadChecksum,
        ),
        (
            RxDatagram {
                dst: sa(US, 0),
                ..ok
            },
            DropReason::BadPort,
        ),
    ] {
        assert_eq!(t.receive(&d), RxDecision::Drop(why), "{d:?}");
    }
    let absent = RxDatagram {
        checksum: Checksum::Absent,
        ..ok
    };
    assert!(matches!(t.receive(&absent), RxDecision::Deliver { .. }));
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::BadLength), 2);
    assert_eq!(c.dropped(DropReason::BadChecksum), 2);
    assert_eq!(c.dropped(DropReason::BadPort), 1);
    assert_eq!(c.rx_delivered, 2);
    assert_eq!(c.rx_no_checksum, 1);
}

#[test]
fn checksum_verifier_runs_only_when_field_nonzero() {
    let mut ran = false;
    assert_eq!(
        Checksum::check(0, || {
            ran = true;
            false
        }),
        Checksum::Absent
    );
    assert!(!ran);
    assert_eq!(Checksum::check(0xbeef, || true), Checksum::Valid);
    assert_eq!(Checksum::check(0xbeef, || false), Checksum::Invalid);
}

#[test]
fn queue_is_bounded_and_fifo() {
    let mut t: UdpTable<u32> = UdpTable::new(config(AddressMode::Shared));
    let s = t.bind(sa(US, 4000)).unwrap();
    let d = dgram(sa(PEER, 1), sa(US, 4000), 1);
    for i in 0..6u32 {
        match t.receive(&d) {
            RxDecision::Deliver {
                socket,
                payload_len,
            } => t
                .enqueue(
                    socket,
                    Datagram {
                        src: d.src,
                        dst: d.dst,
                        payload_len,
                        buf: i,
                    },
                )
                .unwrap(),
            RxDecision::Drop(DropReason::QueueFull) => assert!(i >= 4),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.socket(s).unwrap().queued(), 4);
    assert_eq!(t.counters().dropped(DropReason::QueueFull), 2);
    assert_eq!(t.peek(s).unwrap().buf, 0);
    let got: Vec<u32> = std::iter::from_fn(|| t.recv(s).ok().map(|d| d.buf)).collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(t.recv(s), Err(UdpError::WouldBlock));
}

#[test]
fn connected_socket_filters_sources_and_local_address_matches() {
    let mut t: UdpTable<()> = UdpTable::new(config(AddressMode::Dedicated));
    let s = t.bind(sa(US, 4000)).unwrap();
    t.connect(s, Some(sa(PEER, 53))).unwrap();
    assert!(matches!(
        t.receive(&dgram(sa(PEER, 53), sa(US, 4000), 1)),
        RxDecision::Deliver { .. }
    ));
    // Another source port or host is not for a connected socket.
    assert_eq!(
        t.receive(&dgram(sa(PEER, 54), sa(US, 4000), 1)),
        RxDecision::PortUnreachable
    );
    t.connect(s, None).unwrap();
    assert!(matches!(
        t.receive(&dgram(sa(PEER, 54), sa(US, 4000), 1)),
        RxDecision::Deliver { .. }
    ));
    assert_eq!(
        t.connect(s, Some(sa(PEER, 0))),
        Err(UdpError::Unaddressable)
    );
    // A socket bound to a specific address ignores others.
    let other = Ipv4Addr::new(10, 9, 0, 7);
    assert_eq!(
        t.receive(&dgram(sa(PEER, 1), sa(other, 4000), 1)),
        RxDecision::Drop(DropReason::NoSocket)
    );
}

#[test]
fn port_unreachable_only_in_dedicated_mode_for_unicast() {
    let closed = dgram(sa(PEER, 1), sa(US, 4444), 1);
    let mut shared: UdpTable<()> = UdpTable::new(config(AddressMode::Shared));
    assert_eq!(
        shared.receive(&closed),
        RxDecision::Drop(DropReason::NoSocket)
    );
    let mut t: UdpTable<()> = UdpTable::new(config(AddressMode::Dedicated));
    assert_eq!(t.receive(&closed), RxDecision::PortUnreachable);
    for d in [
        RxDatagram {
            link_broadcast: true,
            ..closed
        },
        RxDatagram {
            dst: sa(Ipv4Addr::BROADCAST, 4444),
            ..closed
        },
        RxDatagram {
            dst: sa(Ipv4Addr::new(10, 9, 0, 255), 4444),
            ..closed
        },
        RxDatagram {
            dst: sa(Ipv4Addr::new(224, 0, 0, 251), 5353),
            ..closed
        },
        RxDatagram {
            src: sa(Ipv4Addr::UNSPECIFIED, 68),
            ..closed
        },
        RxDatagram {
            src: sa(Ipv4Addr::new(224, 1, 1, 1), 1),
            ..closed
        },
    ] {
        assert_eq!(
            t.receive(&d),
            RxDecision::Drop(DropReason::NoSocket),
            "{d:?}"
        );
    }
    assert_eq!(t.counters().rx_port_unreachable, 1);
    assert_eq!(t.counters().dropped(DropReason::NoSocket), 6);
}

#[test]
fn errors_map_to_io_kinds() {
    for (e, k) in [
        (UdpError::AddrInUse, io::ErrorKind::AddrInUse),
        (UdpError::NotConnected, io::ErrorKind::NotConnected),
        (UdpError::WouldBlock, io::ErrorKind::WouldBlock),
    ] {
        assert_eq!(io::Error::from(e).kind(), k);
    }
}

// ---- Property test against a reference model ----

#[derive(Debug, Clone)]
enum Op {
    Bind(u8, bool),
    Connect(u8, Option<u8>),
    Close(u8),
    Receive {
        src: u8,
        dst_port: u8,
        len_delta: i8,
        payload: u16,
        checksum: u8,
        broadcast: bool,
    },
    Recv(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(p, any)| Op::Bind(p, any)),
        (0u8..4, proptest::option::of(0u8..3)).prop_map(|(p, r)| Op::Connect(p, r)),
        (0u8..4).prop_map(Op::Close),
        (0u8..3, 0u8..5, -10i8..4, 0u16..1600, 0u8..3, any::<bool>()).prop_map(
            |(src, dst_port, len_delta, payload, checksum, broadcast)| Op::Receive {
                src,
                dst_port,
                len_delta,
                payload,
                checksum,
                broadcast
            }
        ),
        (0u8..4).prop_map(Op::Recv),
    ]
}

/// Ports 0..4 map to 6000..6004; port index 4 is port 0 on receive.
fn port(i: u8) -> u16 {
    if i == 4 {
        0
    } else {
        6000 + i as u16
    }
}

fn peer(i: u8) -> SocketAddrV4 {
    // Peers 0 and 1 share an address and differ by port.
    sa(Ipv4Addr::new(10, 9, 0, 10 + i / 2), 1000 + i as u16)
}

struct ModelSocket {
    remote: Option<SocketAddrV4>,
    queue: Vec<u64>,
}

proptest! {
    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..250)) {
        let cfg = config(AddressMode::Dedicated);
        let mut t: UdpTable<u64> = UdpTable::new(cfg);
        let mut ids = HashMap::new();
        let mut model: HashMap<u16, ModelSocket> = HashMap::new();
        let mut drops = [0u64; DropReason::COUNT];
        let mut unreachable = 0u64;
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Bind(p, any_addr) => {
                    let ip = if any_addr { Ipv4Addr::UNSPECIFIED } else { US };
                    let r = t.bind(sa(ip, port(p)));
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(port(p)) {
                        e.insert(ModelSocket { remote: None, queue: Vec::new() });
                        ids.insert(port(p), r.unwrap());
                    } else {
                        prop_assert_eq!(r, Err(UdpError::AddrInUse));
                    }
                }
                Op::Connect(p, r) => {
                    let Some(&id) = ids.get(&port(p)) else { continue };
                    t.connect(id, r.map(peer)).unwrap();
                    model.get_mut(&port(p)).unwrap().remote = r.map(peer);
                }
                Op::Close(p) => {
                    let Some(id) = ids.remove(&port(p)) else { continue };
                    let left: Vec<u64> = t.close(id).unwrap().into_iter().map(|d| d.buf).collect();
                    let m = model.remove(&port(p)).unwrap();
                    prop_assert_eq!(left, m.queue);
                    prop_assert_eq!(t.close(id), Err(UdpError::InvalidSocket));
                }
                Op::Receive { src, dst_port, len_delta, payload, checksum, broadcast } => {
                    let ip_payload = payload as usize + 8;
                    let udp_length = (ip_payload as i64 + len_delta as i64).clamp(0, 65535) as u16;
                    let d = RxDatagram {
                        src: peer(src),
                        dst: sa(US, port(dst_port)),
                        ip_payload_len: ip_payload,
                        udp_length,
                        checksum: [Checksum::Absent, Checksum::Valid, Checksum::Invalid][checksum as usize],
                        link_broadcast: broadcast,
                    };
                    // The reference rule, written out plainly.
                    let expect = if (udp_length as usize) < 8 || udp_length as usize > ip_payload {
                        Err(DropReason::BadLength)
                    } else if checksum == 2 {
                        Err(DropReason::BadChecksum)
                    } else if port(dst_port) == 0 {
                        Err(DropReason::BadPort)
                    } else {
                        match model.get(&port(dst_port)) {
                            Some(m) if m.remote.is_none_or(|r| r == peer(src)) => {
                                if m.queue.len() >= cfg.rx_queue_limit {
                                    Err(DropReason::QueueFull)
                                } else {
                                    Ok(Some(udp_length as usize - 8))
                                }
                            }
                            _ if broadcast => Err(DropReason::NoSocket),
                            _ => Ok(None),
                        }
                    };
                    let got = t.receive(&d);
                    match (expect, got) {
                        (Ok(Some(len)), RxDecision::Deliver { socket, payload_len }) => {
                            prop_assert_eq!(payload_len, len);
                            prop_assert_eq!(Some(&socket), ids.get(&port(dst_port)));
                            t.enqueue(socket, Datagram { src: d.src, dst: d.dst, payload_len, buf: seq }).unwrap();
                            model.get_mut(&port(dst_port)).unwrap().queue.push(seq);
                            seq += 1;
                        }
                        (Ok(None), RxDecision::PortUnreachable) => unreachable += 1,
                        (Err(r), RxDecision::Drop(g)) => {
                            prop_assert_eq!(r, g);
                            drops[r.index()] += 1;
                        }
                        (e, g) => prop_assert!(false, "expected {:?}, got {:?}", e, g),
                    }
                }
                Op::Recv(p) => {
                    let Some(&id) = ids.get(&port(p)) else { continue };
                    let m = model.get_mut(&port(p)).unwrap();
                    match t.recv(id) {
                        Ok(d) => prop_assert_eq!(d.buf, m.queue.remove(0)),
                        Err(e) => {
                            prop_assert_eq!(e, UdpError::WouldBlock);
                            prop_assert!(m.queue.is_empty());
                        }
                    }
                }
            }
            prop_assert_eq!(t.len(), model.len());
            prop_assert_eq!(t.counters().drops, drops);
            prop_assert_eq!(t.counters().rx_port_unreachable, unreachable);
            prop_assert_eq!(t.counters().rx_delivered, seq);
        }
    }
}
