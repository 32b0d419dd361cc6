//! Loads the impairment program (`bpf/impair.bpf.c`) and attaches it to an
//! interface's ingress or egress: drop, duplicate and corrupt IPv4 TCP/UDP
//! packets with per-million probabilities, for the veth tests (the kernel
//! here has no netem).
//!
//! Attachment is a tcx BPF link (`bpf_link_create`, `BPF_TCX_INGRESS` /
//! `BPF_TCX_EGRESS`, Linux 6.6+), the link-based form of the tc clsact hooks:
//! it belongs to a file descriptor of this process, so dropping the
//! [`ImpairGuard`], or the process dying even by `kill -9`, detaches it; no
//! qdisc or filter is left behind. A descriptor does not care which network
//! namespace it was made in, so [`attach_in_netns`] makes the attachment
//! from a short-lived thread that entered the namespace, and the guard works
//! from anywhere afterwards.
//!
//! Each attachment loads its own copy of the program: its configuration and
//! counters are its own, and can be changed while attached.
//!
//! Corruption makes the packet's L4 checksum wrong in every case (see the C
//! file), so a receiver that verifies checksums drops every corrupted
//! packet. Packets from a kernel socket on an interface with TX checksum
//! offload on reach a peer with partial checksums that it does not verify:
//! turn offload off on the sending side (`ethtool -K DEV tx off`) whenever
//! packets are corrupted after they left it (on the peer's ingress), for
//! TCP as for UDP; corruption on the sender's own egress is caught either
//! way.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::maps::errno_of;

#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/impair.skel.rs"));
}

/// One million: probabilities are in parts per million.
pub const PPM: u32 = 1_000_000;

const F_TCP: u32 = 0x1;
const F_UDP: u32 = 0x2;
const F_INGRESS: u32 = 0x4;

/// What to do to matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImpairConfig {
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,
    pub corrupt_ppm: u32,
    pub tcp: bool,
    pub udp: bool,
    /// Only packets with this source or destination port; 0: any.
    pub port: u16,
}

impl Default for ImpairConfig {
    /// Nothing impaired; TCP and UDP both eligible.
    fn default() -> Self {
        ImpairConfig {
            drop_ppm: 0,
            duplicate_ppm: 0,
            corrupt_ppm: 0,
            tcp: true,
            udp: true,
            port: 0,
        }
    }
}

impl ImpairConfig {
    /// Drop a fraction (0.0–1.0) of TCP and UDP packets.
    pub fn drop(fraction: f64) -> ImpairConfig {
        ImpairConfig {
            drop_ppm: ppm(fraction),
            ..ImpairConfig::default()
        }
    }

    fn validate(&self) -> Result<(), ImpairError> {
        if self.drop_ppm > PPM || self.duplicate_ppm > PPM || self.corrupt_ppm > PPM {
            return Err(ImpairError::InvalidConfig);
        }
        Ok(())
    }

    /// The `struct impair_config` bytes.
    fn to_raw(self, ingress: bool) -> RawConfig {
        let mut flags = 0;
        if self.tcp {
            flags |= F_TCP;
        }
        if self.udp {
            flags |= F_UDP;
        }
        if ingress {
            flags |= F_INGRESS;
        }
        RawConfig {
            drop_ppm: self.drop_ppm,
            duplicate_ppm: self.duplicate_ppm,
            corrupt_ppm: self.corrupt_ppm,
            flags,
            port: u32::from(self.port),
        }
    }
}

/// A fraction (clamped to 0.0–1.0) in parts per million.
pub fn ppm(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * f64::from(PPM)).round() as u32
}

/// The Rust twin of `struct impair_config` in `bpf/impair.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawConfig {
    drop_ppm: u32,
    duplicate_ppm: u32,
    corrupt_ppm: u32,
    flags: u32,
    port: u32,
}

impl RawConfig {
    fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        for (i, v) in [
            self.drop_ppm,
            self.duplicate_ppm,
            self.corrupt_ppm,
            self.flags,
            self.port,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// Indices of `enum impair_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Counter {
    Seen = 0,
    Dropped = 1,
    Duplicated = 2,
    DupFailed = 3,
    Corrupted = 4,
    Ignored = 5,
    DupSeen = 6,
}

/// What the program did, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImpairCounters {
    /// Matching packets considered.
    pub seen: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub duplicate_failed: u64,
    pub corrupted: u64,
    /// Packets left alone: not IPv4 TCP/UDP, or filtered out.
    pub ignored: u64,
    /// Duplicates passing through the hook again (untouched).
    pub duplicates_seen: u64,
}

/// Why loading, attaching or configuring failed; errno values where the
/// kernel gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImpairError {
    NoSuchInterface,
    NoSuchNamespace,
    /// A probability above one million parts per million.
    InvalidConfig,
    /// Opening or loading the BPF object failed.
    Load(i32),
    /// Creating the tcx link failed (EINVAL before Linux 6.6).
    Attach(i32),
    /// Entering the namespace failed.
    Namespace(i32),
    /// Reading or writing a map failed.
    Map(i32),
}

impl fmt::Display for ImpairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImpairError::NoSuchInterface => write!(f, "no such interface"),
            ImpairError::NoSuchNamespace => write!(f, "no such network namespace"),
            ImpairError::InvalidConfig => write!(f, "probabilities are at most 1000000 ppm"),
            ImpairError::Load(e) => write!(f, "loading the impairment program failed (errno {e})"),
            ImpairError::Attach(e) => write!(f, "attaching the tcx link failed (errno {e})"),
            ImpairError::Namespace(e) => write!(f, "entering the namespace failed (errno {e})"),
            ImpairError::Map(e) => write!(f, "impairment map access failed (errno {e})"),
        }
    }
}

impl std::error::Error for ImpairError {}

/// The attached program. Dropping it detaches.
pub struct ImpairGuard {
    link: OwnedFd,
    _prog: OwnedFd,
    config: MapHandle,
    counters: MapHandle,
    ingress: bool,
    ifindex: u32,
}

impl fmt::Debug for ImpairGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpairGuard")
            .field("ifindex", &self.ifindex)
            .field("ingress", &self.ingress)
            .field("link_fd", &self.link.as_raw_fd())
            .finish()
    }
}

impl ImpairGuard {
    /// Change what is done from now on.
    pub fn set_config(&self, cfg: &ImpairConfig) -> Result<(), ImpairError> {
        cfg.validate()?;
        self.config
            .update(
                &0u32.to_ne_bytes(),
                &cfg.to_raw(self.ingress).to_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| ImpairError::Map(errno_of(&e)))
    }

    pub fn counters(&self) -> Result<ImpairCounters, ImpairError> {
        let sum = |c: Counter| -> Result<u64, ImpairError> {
            let v = self
                .counters
                .lookup_percpu(&(c as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| ImpairError::Map(errno_of(&e)))?
                .unwrap_or_default();
            Ok(v.iter()
                .map(|b| {
                    b.get(..8)
                        .and_then(|s| s.try_into().ok())
                        .map(u64::from_ne_bytes)
                        .unwrap_or(0)
                })
                .sum())
        };
        Ok(ImpairCounters {
            seen: sum(Counter::Seen)?,
            dropped: sum(Counter::Dropped)?,
            duplicated: sum(Counter::Duplicated)?,
            duplicate_failed: sum(Counter::DupFailed)?,
            corrupted: sum(Counter::Corrupted)?,
            ignored: sum(Counter::Ignored)?,
            duplicates_seen: sum(Counter::DupSeen)?,
        })
    }

    /// The interface index (in the namespace it was attached in).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Detach now (the same as dropping).
    pub fn detach(self) {}
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn ifindex(name: &str) -> Result<u32, ImpairError> {
    let c = CString::new(name).map_err(|_| ImpairError::NoSuchInterface)?;
    // Safety: `c` is a valid NUL-terminated string for the duration of the
    // call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(ImpairError::NoSuchInterface)
    } else {
        Ok(idx)
    }
}

/// Load a fresh copy of the program and attach it to `ifname` in the
/// current network namespace: on egress if `egress`, else on ingress.
pub fn attach(ifname: &str, egress: bool, cfg: &ImpairConfig) -> Result<ImpairGuard, ImpairError> {
    cfg.validate()?;
    let ifindex = ifindex(ifname)?;
    let mut storage = MaybeUninit::uninit();
    let open = skel::ImpairSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| ImpairError::Load(errno_of(&e)))?;
    let s = open.load().map_err(|e| ImpairError::Load(errno_of(&e)))?;
    let prog = s
        .progs
        .xdpstack_impair
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| ImpairError::Load(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let h = |m| MapHandle::try_from(m).map_err(|e| ImpairError::Load(errno_of(&e)));
    let config = h(&s.maps.impair_config_map)?;
    let counters = h(&s.maps.impair_counters)?;
    drop(s);
    let ingress = !egress;
    // Configure before attaching, so the first packet sees the settings.
    config
        .update(
            &0u32.to_ne_bytes(),
            &cfg.to_raw(ingress).to_bytes(),
            MapFlags::ANY,
        )
        .map_err(|e| ImpairError::Map(errno_of(&e)))?;
    let link = tcx_link(&prog, ifindex, egress)?;
    Ok(ImpairGuard {
        link,
        _prog: prog,
        config,
        counters,
        ingress,
        ifindex,
    })
}

fn tcx_link(prog: &OwnedFd, ifindex: u32, egress: bool) -> Result<OwnedFd, ImpairError> {
    let attach_type = if egress {
        libbpf_sys::BPF_TCX_EGRESS
    } else {
        libbpf_sys::BPF_TCX_INGRESS
    };
    // Safety: an all-zero bpf_link_create_opts is its documented default
    // (plain integers, null pointers, a union of plain integers); for tcx a
    // zero relative fd/id and flags mean "append after the others".
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    // Safety: `prog` is a live program descriptor and `opts` outlives the
    // call.
    let fd: RawFd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
    };
    if fd < 0 {
        // libbpf returns -errno (and sets errno).
        return Err(ImpairError::Attach(if fd == -1 {
            last_errno()
        } else {
            -fd
        }));
    }
    // Safety: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`attach`] inside the network namespace `netns` (a name under
/// `/var/run/netns`, as `ip netns add` makes). The calling thread's
/// namespace does not change.
pub fn attach_in_netns(
    netns: &str,
    ifname: &str,
    egress: bool,
    cfg: &ImpairConfig,
) -> Result<ImpairGuard, ImpairError> {
    run_in_netns(netns, || attach(ifname, egress, cfg))?
}

/// Run `f` on a thread that has entered the network namespace `netns` (a
/// name under `/var/run/netns`), and return its result. Sockets and other
/// descriptors `f` creates stay in that namespace and may be used from any
/// thread afterwards. A panic in `f` is passed on to the caller.
pub fn run_in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, ImpairError> {
    if netns.is_empty() || netns.contains('/') {
        return Err(ImpairError::NoSuchNamespace);
    }
    let ns =
        File::open(format!("/var/run/netns/{netns}")).map_err(|_| ImpairError::NoSuchNamespace)?;
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            // Safety: `ns` is an open namespace descriptor; setns changes
            // only this thread's network namespace, and this thread ends
            // when `f` returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(ImpairError::Namespace(last_errno()));
            }
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    const COUNTER_MAX: u32 = 7;

    /// `#define NAME VALUE` and `NAME = VALUE,` lines of the header.
    fn header_constants() -> HashMap<String, u64> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/impair.h");
        let src = std::fs::read_to_string(path).expect("read bpf/impair.h");
        let mut out = HashMap::new();
        for line in src.lines() {
            let line = line.split("/*").next().unwrap_or("").trim();
            let (name, value) = if let Some(rest) = line.strip_prefix("#define ") {
                let mut it = rest.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(n), Some(v)) => (n, v),
                    _ => continue,
                }
            } else if let Some((n, v)) = line.split_once('=') {
                (n.trim(), v.trim().trim_end_matches(','))
            } else {
                continue;
            };
            let v = if let Some(hex) = value.strip_prefix("0x") {
                u64::from_str_radix(hex, 16)
            } else {
                value.parse()
            };
            if let Ok(v) = v {
                out.insert(name.to_string(), v);
            }
        }
        out
    }

    #[test]
    fn header_agrees_with_rust() {
        let c = header_constants();
        assert_eq!(c["IMPAIR_PPM"], u64::from(PPM));
        assert_eq!(c["IMPAIR_F_TCP"], u64::from(F_TCP));
        assert_eq!(c["IMPAIR_F_UDP"], u64::from(F_UDP));
        assert_eq!(c["IMPAIR_F_INGRESS"], u64::from(F_INGRESS));
        for (name, idx) in [
            ("IMPAIR_CNT_SEEN", Counter::Seen),
            ("IMPAIR_CNT_DROPPED", Counter::Dropped),
            ("IMPAIR_CNT_DUPLICATED", Counter::Duplicated),
            ("IMPAIR_CNT_DUP_FAILED", Counter::DupFailed),
            ("IMPAIR_CNT_CORRUPTED", Counter::Corrupted),
            ("IMPAIR_CNT_IGNORED", Counter::Ignored),
            ("IMPAIR_CNT_DUP_SEEN", Counter::DupSeen),
        ] {
            assert_eq!(c[name], idx as u64, "{name}");
        }
        assert_eq!(c["IMPAIR_CNT_MAX"], u64::from(COUNTER_MAX));
        // struct impair_config: five __u32 in this order.
        let h =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/impair.h")).unwrap();
        let body = h
            .split("struct impair_config {")
            .nth(1)
            .and_then(|s| s.split("};").next())
            .unwrap();
        let fields: Vec<&str> = body
            .lines()
            .map(|l| l.split("/*").next().unwrap_or("").trim())
            .filter(|l| l.starts_with("__u32"))
            .map(|l| l.trim_start_matches("__u32").trim().trim_end_matches(';'))
            .collect();
        assert_eq!(
            fields,
            ["drop_ppm", "duplicate_ppm", "corrupt_ppm", "flags", "port"]
        );
        assert_eq!(size_of::<RawConfig>(), 20);
        assert_eq!(offset_of!(RawConfig, flags), 12);
        // The generated skeleton's type agrees too.
        assert_eq!(size_of::<skel::types::impair_config>(), 20);
    }

    #[test]
    fn config_bytes_and_validation() {
        let cfg = ImpairConfig {
            drop_ppm: 1,
            duplicate_ppm: 2,
            corrupt_ppm: 3,
            tcp: false,
            udp: true,
            port: 5001,
        };
        let b = cfg.to_raw(true).to_bytes();
        let word = |i: usize| u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(3), word(4)],
            [1, 2, 3, F_UDP | F_INGRESS, 5001]
        );
        assert_eq!(ppm(0.2), 200_000);
        assert_eq!(ppm(7.0), PPM);
        assert_eq!(
            ImpairConfig {
                drop_ppm: PPM + 1,
                ..ImpairConfig::default()
            }
            .validate(),
            Err(ImpairError::InvalidConfig)
        );
        assert_eq!(
            attach(
                "lo",
                true,
                &ImpairConfig {
                    corrupt_ppm: u32::MAX,
                    ..Default::default()
                }
            )
            .unwrap_err(),
            ImpairError::InvalidConfig
        );
        assert_eq!(
            attach("no-such-if0", true, &ImpairConfig::default()).unwrap_err(),
            ImpairError::NoSuchInterface
        );
        assert_eq!(
            attach_in_netns("../etc", "lo", true, &ImpairConfig::default()).unwrap_err(),
            ImpairError::NoSuchNamespace
        );
    }
}
