//! The veth topology the veth integration tests share: one pair made by
//! `scripts/veth.sh`, the host side here and the Linux kernel as the peer in
//! a uniquely named network namespace, removed on drop (also when the test
//! fails), python3 scripts run there, a running `xdpstack serve`, and an
//! echo exchange over the stack's thread-side TCP stream. Creating the
//! topology needs root; a test that cannot create it fails.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/veth.sh");
const BIN: &str = env!("CARGO_BIN_EXE_xdpstack");

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

    /// `python3 -c script args` in the peer namespace, pinned to the CPUs
    /// `cpus` (`taskset -c`) if given.
    fn py_command(&self, cpus: Option<&str>, script: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        if let Some(cpus) = cpus {
            c.args(["taskset", "-c", cpus]);
        }
        c.args(["python3", "-c", script]).args(args);
        c
    }

    /// Runs a python3 script in the peer namespace with `args`.
    pub fn py(&self, script: &str, args: &[&str]) -> Output {
        self.py_command(None, script, args)
            .output()
            .expect("run python3 in the namespace")
    }

    /// Like `py`, and fails the test if the script fails; returns stdout.
    pub fn py_ok(&self, script: &str, args: &[&str]) -> String {
        stdout_ok(&self.py(script, args))
    }

    /// Like `py_ok`, with the script pinned to the CPUs `cpus`.
    pub fn py_ok_pinned(&self, cpus: &str, script: &str, args: &[&str]) -> String {
        let out = self
            .py_command(Some(cpus), script, args)
            .output()
            .expect("run python3 in the namespace");
        stdout_ok(&out)
    }

    /// Starts a python3 server script in the peer namespace (pinned to the
    /// CPUs `cpus` if given) and waits for the `ready` line it prints once
    /// listening; returns the process and the rest of its stdout.
    pub fn py_server(
        &self,
        cpus: Option<&str>,
        script: &str,
        args: &[&str],
    ) -> (Child, BufReader<ChildStdout>) {
        let mut child = self
            .py_command(cpus, script, args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 in the namespace");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the ready line");
        assert_eq!(line.trim(), "ready");
        (child, out)
    }

    /// Puts the peer's MAC in the host's neighbour table, where shared mode
    /// learns it.
    pub fn add_peer_neighbor(&self) {
        let neigh = Command::new("ip")
            .args(["neigh", "replace", self.get("PEER_IP"), "lladdr"])
            .args([
                self.get("PEER_MAC"),
                "dev",
                self.host_if(),
                "nud",
                "reachable",
            ])
            .status()
            .expect("ip neigh");
        assert!(neigh.success(), "ip neigh replace");
    }
}

/// The stdout of a finished peer script; fails the test if the script
/// failed.
pub fn stdout_ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "destroy", &self.name])
            .status();
    }
}

/// The counter `key` summed over the workers' final counters.
pub fn sum(workers: &[HashMap<String, u64>], key: &str) -> u64 {
    workers
        .iter()
        .map(|w| *w.get(key).unwrap_or_else(|| panic!("no {key} in {w:?}")))
        .sum()
}

/// Writes `data` on the stack's stream `c` while reading the echo, then
/// half-closes and reads to EOF (30 s at most); returns what came back.
pub fn echo_through(c: &mut xdpstack::api::tcp::TcpStream, data: &[u8]) -> Vec<u8> {
    let mut back = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 65536];
    c.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut off = 0;
    while off < data.len() {
        off += c.write(&data[off..(off + 65536).min(data.len())]).unwrap();
        match c.read(&mut buf) {
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.read_to_end(&mut back).unwrap();
    back
}

/// A running `xdpstack serve`, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// Everything printed up to the `serving on` line.
    pub banner: String,
}

impl Server {
    pub fn start(iface: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--iface", iface])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xdpstack");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).unwrap_or(0);
            if n == 0 || Instant::now() > deadline {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                let _ = child.wait();
                panic!("server did not start: {banner}{line}\n{err}");
            }
            banner.push_str(&line);
            if line.starts_with("serving on") {
                break;
            }
        }
        child.stdout = Some(out.into_inner());
        Server {
            child: Some(child),
            banner,
        }
    }

    /// SIGINT, then the `final counters` of every worker, parsed.
    pub fn stop(self) -> Vec<HashMap<String, u64>> {
        self.stop_with_output().0
    }

    /// [`stop`](Self::stop), plus everything printed before the final
    /// counters.
    pub fn stop_with_output(mut self) -> (Vec<HashMap<String, u64>>, String) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let mut out = String::new();
        let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
        let status = child.wait().expect("wait");
        assert!(status.success(), "server exit {status}: {out}");
        let (head, tail) = out
            .split_once("final counters:")
            .unwrap_or_else(|| panic!("no final counters in: {out}"));
        let workers = tail
            .lines()
            .filter(|l| l.starts_with("worker "))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                    .collect()
            })
            .collect();
        (workers, head.to_string())
    }

    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
