//! The command line is a contract with outside scripts: every documented
//! flag exists and `--help` describes it; bad values are refused.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_xdpstack");

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .output()
        .expect("run xdpstack");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_contract_flag_is_documented() {
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["serve"],
            &[
                "--iface",
                "--ip",
                "--queues",
                "--udp-echo",
                "--stats",
                "--xdp-mode",
                "--poll",
                "--cores",
                "--tcp-echo",
                "--http",
                "--cc",
            ],
        ),
        (
            &["bench", "udp-echo"],
            &[
                "--target",
                "--duration",
                "--payload",
                "--inflight",
                "--json",
                "--client",
                "--iface",
                "--core",
            ],
        ),
        (&["baseline", "reflector"], &["--iface", "--port"]),
        (&["baseline", "kernel-udp-echo"], &["--bind", "--core"]),
    ];
    for (cmd, flags) in cases {
        let h = help(cmd);
        for f in flags {
            let line = h
                .lines()
                .find(|l| l.trim_start().starts_with(f))
                .unwrap_or_else(|| panic!("{cmd:?}: {f} missing in\n{h}"));
            // Described: the flag's line or the next one has text.
            let i = h.lines().position(|l| l == line).unwrap();
            let next = h.lines().nth(i + 1).unwrap_or("");
            assert!(
                line.trim().len() > f.len() + 12 || !next.trim().is_empty(),
                "{cmd:?}: {f} has no description"
            );
        }
    }
}

#[test]
fn bad_values_are_refused() {
    for args in [
        &["serve", "--iface", "lo", "--poll", "sometimes"][..],
        &["serve", "--iface", "lo", "--xdp-mode", "turbo"][..],
        &["serve", "--iface", "lo", "--cores", "0,x"][..],
        &["serve", "--iface", "lo", "--ip", "not-an-ip"][..],
        &["serve", "--iface", "lo", "--cc", "vegas"][..],
        &["bench", "udp-echo", "--target", "nowhere"][..],
    ] {
        let out = Command::new(BIN).args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}
