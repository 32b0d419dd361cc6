//! `detach_all` (what a signal-handling thread or panic hook calls) detaches
//! every attachment of the process. It is process-wide, so it has a test
//! binary of its own: it must not race the other veth tests. Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use xdpstack::xdp::loader::{ifindex, query, Attached};
use xdpstack::xdp::{detach_all, AttachMode, Steering};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/veth.sh");

struct Topo(String);

impl Topo {
    fn new() -> Topo {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "xdp{}d{}",
            std::process::id() % 1_000_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("bash")
            .args([SCRIPT, "create", &name])
            .output()
            .expect("run scripts/veth.sh")
            .status
            .success();
        let t = Topo(name);
        assert!(ok, "creating the veth topology failed (needs root)");
        t
    }

    fn host_if(&self) -> String {
        format!("{}h", self.0)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "destroy", &self.0])
            .status();
    }
}

#[test]
fn detach_all_detaches_every_attachment_once() {
    let (a, b) = (Topo::new(), Topo::new());
    let sa = Steering::attach(&a.host_if(), AttachMode::Native).unwrap();
    let sb = Steering::attach(&b.host_if(), AttachMode::Generic).unwrap();
    let (ia, ib) = (
        ifindex(&a.host_if()).unwrap(),
        ifindex(&b.host_if()).unwrap(),
    );
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
    let sc = Steering::attach(&a.host_if(), AttachMode::Auto).unwrap();
    assert_ne!(query(ia).unwrap(), Attached::default());
    drop(sc);
    assert_eq!(query(ia).unwrap(), Attached::default());
}
