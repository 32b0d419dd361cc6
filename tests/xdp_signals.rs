//! Detaching on SIGTERM and on panic. Signal handlers, panic hooks and
//! `detach_all` are process-wide, so each case runs in a child process (this
//! test binary re-executed on an ignored helper test). Needs root.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xdpstack::xdp::loader::{ifindex, query, Attached};
use xdpstack::xdp::signals::{detach_on_panic, spawn_signal_thread};
use xdpstack::xdp::{AttachMode, Steering};

mod common;
use common::Topo;

const ENV: &str = "XDPSTACK_TEST_CHILD_IFACE";

/// The interface a helper process works on; `None` when the helper is run
/// directly (e.g. `--include-ignored`): it is an entry point of its parent
/// test, not a test, so it then has nothing to do.
fn child_iface() -> Option<String> {
    let v = std::env::var(ENV).ok();
    if v.is_none() {
        eprintln!("helper process entry point: run by its parent test only");
    }
    v
}

#[test]
#[ignore = "helper process of sigterm_detaches_before_exit"]
fn child_sigterm() {
    let Some(iface) = child_iface() else { return };
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_thread(stop.clone()).unwrap();
    let _s = Steering::attach(&iface, AttachMode::Generic).unwrap();
    println!("READY");
    let end = Instant::now() + Duration::from_secs(10);
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stop.load(Ordering::SeqCst), "no signal within 10 s");
    // Detached by the signal thread, before the program's own drop.
    assert_eq!(
        query(ifindex(&iface).unwrap()).unwrap(),
        Attached::default()
    );
    println!("DETACHED");
}

#[test]
#[ignore = "helper process of panic_detaches"]
fn child_panic() {
    let Some(iface) = child_iface() else { return };
    detach_on_panic();
    let s = Steering::attach(&iface, AttachMode::Generic).unwrap();
    assert_ne!(
        query(ifindex(&iface).unwrap()).unwrap(),
        Attached::default()
    );
    let r = std::thread::spawn(|| panic!("worker panic (expected by the test)")).join();
    assert!(r.is_err());
    assert_eq!(
        query(ifindex(&iface).unwrap()).unwrap(),
        Attached::default()
    );
    drop(s);
    println!("DETACHED");
}

fn spawn_child(name: &str, iface: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, iface)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_detaches_before_exit() {
    let t = Topo::new("xsg", &[]);
    let mut child = spawn_child("child_sigterm", t.host_if());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("READY") {
        line.clear();
    }
    assert!(line.contains("READY"), "child did not attach");
    assert_ne!(
        query(ifindex(t.host_if()).unwrap()).unwrap(),
        Attached::default()
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("DETACHED"), "child output: {rest}");
    assert!(status.success(), "{status:?}");
}

#[test]
fn panic_detaches() {
    let t = Topo::new("xsp", &[]);
    let child = spawn_child("child_panic", t.host_if());
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("DETACHED"), "child output: {s}");
    assert!(out.status.success(), "{:?}", out.status);
}
