//! The port service against a `HashSet` reference model: random sequences of
//! bind / allocate / release never hand out a port in use, agree with the
//! model on every result, and emit exactly the events the model predicts.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use xdpstack::ports::{
    FlowKey, PortConfig, PortError, PortEvent, PortPartition, PortRange, PortService, Protocol,
};

#[derive(Debug, Clone)]
enum Op {
    Bind(Protocol, u16),
    BindAny(Protocol),
    Allocate(Protocol, usize, u16),
    Release(Protocol, u16),
}

// A small range so exhaustion is reached often; ports around it too.
const FIRST: u16 = 40000;
const LAST: u16 = 40023;

fn proto() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Udp), Just(Protocol::Tcp)]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![FIRST - 4..=LAST + 4, Just(0u16), 1u16..1024]
}

fn op(shards: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (proto(), port()).prop_map(|(p, n)| Op::Bind(p, n)),
        proto().prop_map(Op::BindAny),
        (proto(), 0..shards + 1, any::<u16>()).prop_map(|(p, s, r)| Op::Allocate(p, s, r)),
        (proto(), port()).prop_map(|(p, n)| Op::Release(p, n)),
    ]
}

fn case() -> impl Strategy<Value = (usize, [u64; 2], Vec<Op>)> {
    (1usize..=4).prop_flat_map(|shards| {
        (
            Just(shards),
            any::<[u64; 2]>(),
            proptest::collection::vec(op(shards), 1..300),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn service_matches_hashset_model((shards, key, ops) in case()) {
        let range = PortRange::new(FIRST, LAST).unwrap();
        let mut svc = PortService::new(PortConfig { ephemeral: range, shards, key }).unwrap();
        let part = svc.partition();
        let mut model: HashSet<(Protocol, u16)> = HashSet::new();
        let mut expected_events = Vec::new();

        for op in ops {
            match op {
                Op::Bind(p, 0) | Op::BindAny(p) => {
                    let free = range.iter().any(|n| !model.contains(&(p, n)));
                    match svc.bind(p, 0) {
                        Ok(n) => {
                            prop_assert!(range.contains(n));
                            prop_assert!(model.insert((p, n)), "handed out {n} in use");
                            expected_events.push(PortEvent::Bound(p, n));
                        }
                        Err(e) => {
                            prop_assert_eq!(e, PortError::Exhausted);
                            prop_assert!(!free, "exhausted with a free port");
                        }
                    }
                }
                Op::Bind(p, n) => {
                    let r = svc.bind(p, n);
                    if model.insert((p, n)) {
                        prop_assert_eq!(r, Ok(n));
                        expected_events.push(PortEvent::Bound(p, n));
                    } else {
                        prop_assert_eq!(r, Err(PortError::AddrInUse));
                    }
                }
                Op::Allocate(p, shard, rp) => {
                    let flow = FlowKey {
                        local_addr: Ipv4Addr::new(10, 1, 0, 1),
                        remote_addr: Ipv4Addr::new(10, 1, 0, 2),
                        remote_port: rp,
                    };
                    let r = svc.allocate(p, shard, flow);
                    if shard >= shards {
                        prop_assert_eq!(r, Err(PortError::InvalidShard));
                        continue;
                    }
                    let slice = part.shard_range(shard).unwrap();
                    let free = slice.iter().any(|n| !model.contains(&(p, n)));
                    match r {
                        Ok(n) => {
                            prop_assert!(slice.contains(n), "{n} outside shard {shard}");
                            prop_assert_eq!(svc.shard_of_port(n), Some(shard));
                            prop_assert!(model.insert((p, n)), "handed out {n} in use");
                            expected_events.push(PortEvent::Bound(p, n));
                        }
                        Err(e) => {
                            prop_assert_eq!(e, PortError::Exhausted);
                            prop_assert!(!free, "exhausted with a free port");
                        }
                    }
                }
                Op::Release(p, n) => {
                    let r = svc.release(p, n);
                    if model.remove(&(p, n)) {
                        prop_assert_eq!(r, Ok(()));
                        expected_events.push(PortEvent::Released(p, n));
                    } else {
                        prop_assert_eq!(r, Err(PortError::NotBound));
                    }
                }
            }
            for p in Protocol::ALL {
                prop_assert_eq!(
                    svc.bound_count(p),
                    model.iter().filter(|(q, _)| *q == p).count()
                );
            }
        }
        // The full state agrees, port by port.
        for p in Protocol::ALL {
            for n in 0..=u16::MAX {
                prop_assert_eq!(svc.is_bound(p, n), model.contains(&(p, n)));
            }
        }
        let events: Vec<_> = svc.take_events().collect();
        prop_assert_eq!(events, expected_events);
    }
}

proptest! {
    /// The shard slices tile the ephemeral range in order, sizes differ by
    /// at most one, and `shard_of_port` is their exact inverse.
    #[test]
    fn partition_tiles_range(first in 1024u16..=65535, span in 0u16..3000, shards in 1usize..64) {
        let last = first.saturating_add(span);
        let range = PortRange::new(first, last).unwrap();
        let Ok(part) = PortPartition::new(range, shards) else {
            prop_assert!(shards as u32 > range.len());
            return Ok(());
        };
        let mut next = first as u32;
        let (mut min, mut max) = (u32::MAX, 0);
        for s in 0..shards {
            let r = part.shard_range(s).unwrap();
            prop_assert_eq!(r.first() as u32, next);
            min = min.min(r.len());
            max = max.max(r.len());
            for p in [r.first(), r.last(), r.first() + (r.last() - r.first()) / 2] {
                prop_assert_eq!(part.shard_of_port(p), Some(s));
            }
            next = r.last() as u32 + 1;
        }
        prop_assert_eq!(next, last as u32 + 1);
        prop_assert!(max - min <= 1);
        prop_assert_eq!(part.shard_of_port(first - 1), None);
        if last < u16::MAX {
            prop_assert_eq!(part.shard_of_port(last + 1), None);
        }
        prop_assert!(part.shard_range(shards).is_err());
    }
}
