//! The veth topology the veth integration tests share: one pair made by
//! `scripts/veth.sh`, the host side here and the Linux kernel as the peer in
//! a uniquely named network namespace, removed on drop (also when the test
//! fails). Creating it needs root; a test that cannot create it fails.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/veth.sh");

/// One veth pair: `HOST_IF` here, `PEER_IF` in namespace `name`; the other
/// variables `scripts/veth.sh create` prints are in `get`.
pub struct Topo {
    pub name: String,
    vars: HashMap<String, String>,
}

impl Topo {
    /// A topology named `<prefix><pid>t<n>`, with extra `veth.sh create`
    /// options (`--queues N`, `--no-tso`, ...).
    pub fn new(prefix: &str, opts: &[&str]) -> Topo {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}{}t{}",
            std::process::id() % 1_000_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("bash")
            .args([SCRIPT, "create", &name])
            .args(opts)
            .output()
            .expect("run scripts/veth.sh");
        if !out.status.success() {
            let _ = Command::new("bash")
                .args([SCRIPT, "destroy", &name])
                .status();
            panic!(
                "creating the veth topology failed (these tests need root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let vars = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Topo { name, vars }
    }

    pub fn get(&self, k: &str) -> &str {
        &self.vars[k]
    }

    pub fn host_if(&self) -> &str {
        self.get("HOST_IF")
    }

    pub fn host_ip(&self) -> &str {
        self.get("HOST_IP")
    }

    /// An address of the host side's subnet that no one has (dedicated
    /// mode).
    pub fn spare_ip(&self) -> String {
        let (net, _) = self.host_ip().rsplit_once('.').expect("dotted address");
        format!("{net}.77")
    }

    /// Runs a python3 script in the peer namespace with `args`.
    pub fn py(&self, script: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", script])
            .args(args)
            .output()
            .expect("run python3 in the namespace")
    }

    /// Like `py`, and fails the test if the script fails; returns stdout.
    pub fn py_ok(&self, script: &str, args: &[&str]) -> String {
        let out = self.py(script, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "python failed: {}\n{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "destroy", &self.name])
            .status();
    }
}
