//! `detach_all` (what a signal-handling thread or panic hook calls) detaches
//! every attachment of the process. It is process-wide, so it has a test
//! binary of its own: it must not race the other veth tests. Needs root.

use xdpstack::xdp::loader::{ifindex, query, Attached};
use xdpstack::xdp::{detach_all, AttachMode, Steering};

mod common;
use common::Topo;

#[test]
fn detach_all_detaches_every_attachment_once() {
    let (a, b) = (Topo::new("xda", &[]), Topo::new("xda", &[]));
    let sa = Steering::attach(a.host_if(), AttachMode::Native).unwrap();
    let sb = Steering::attach(b.host_if(), AttachMode::Generic).unwrap();
    let (ia, ib) = (ifindex(a.host_if()).unwrap(), ifindex(b.host_if()).unwrap());
    assert_ne!(query(ia).unwrap(), Attached::default());
    assert_ne!(query(ib).unwrap(), Attached::default());
    detach_all();
    assert_eq!(query(ia).unwrap(), Attached::default());
    assert_eq!(query(ib).unwrap(), Attached::default());
    detach_all();
    // Explicit detach and drop after detach_all are harmless.
    sa.detach().unwrap();
    drop(sa);
    drop(sb);
    // A new attachment after detach_all works and is detached by drop.
    let sc = Steering::attach(a.host_if(), AttachMode::Auto).unwrap();
    assert_ne!(query(ia).unwrap(), Attached::default());
    drop(sc);
    assert_eq!(query(ia).unwrap(), Attached::default());
}
