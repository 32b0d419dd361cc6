//! Typed access to the steering program's maps: the ports the stack owns
//! (`ports_map`), the addressing mode (`config_map`), the AF_XDP socket of
//! each queue (`xsks_map`) and the per-CPU counters (`counters_map`).
//!
//! The `#[repr(C)]` structs here are the Rust twins of `bpf/steer.h`; a test
//! parses the header and checks constants and layouts against them and
//! against the skeleton's generated types. Map updates are syscalls: they
//! belong to bind/close and start-up, never to the per-packet path.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

/// `XS_MAX_QUEUES`: entries of `xsks_map`.
pub const MAX_QUEUES: u32 = 64;
/// `XS_MAX_PORTS`: entries of `ports_map`.
pub const MAX_PORTS: u32 = 65536;

/// Protocol numbers used in [`PortKey`].
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// `struct xs_port_key`: a (protocol, port) pair the stack owns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub proto: u8,
    pub pad: u8,
    /// The port in network byte order, as the program compares it.
    pub port_be: u16,
}

impl PortKey {
    pub fn new(proto: Proto, port: u16) -> PortKey {
        PortKey {
            proto: proto as u8,
            pad: 0,
            port_be: port.to_be(),
        }
    }

    /// The key's bytes exactly as the C struct lays them out.
    pub fn to_bytes(self) -> [u8; 4] {
        let p = self.port_be.to_ne_bytes();
        [self.proto, self.pad, p[0], p[1]]
    }
}

/// Transport protocols the steering program can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Proto {
    Tcp = IPPROTO_TCP,
    Udp = IPPROTO_UDP,
}

/// `struct xs_config`: the single entry of `config_map`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XsConfig {
    /// Dedicated-address mode when non-zero (network byte order).
    pub dedicated_ip_be: u32,
    pub flags: u32,
    /// Shared mode: TCP to a destination port in
    /// `tcp_ephemeral_lo..=tcp_ephemeral_hi` (host order) is the stack's;
    /// `tcp_ephemeral_lo == 0` means no range.
    pub tcp_ephemeral_lo: u16,
    pub tcp_ephemeral_hi: u16,
}

impl XsConfig {
    /// Shared mode: the stack owns only the ports in `ports_map`.
    pub const SHARED: XsConfig = XsConfig {
        dedicated_ip_be: 0,
        flags: 0,
        tcp_ephemeral_lo: 0,
        tcp_ephemeral_hi: 0,
    };

    /// Dedicated mode: everything for `ip` (ARP and ICMP included) is ours.
    pub fn dedicated(ip: Ipv4Addr) -> XsConfig {
        XsConfig {
            dedicated_ip_be: u32::from_ne_bytes(ip.octets()),
            ..XsConfig::SHARED
        }
    }

    /// Shared mode, owning the ports in `ports_map` and every TCP port of
    /// `ephemeral`: the replies to the stack's active opens are steered
    /// without a map update per connection.
    pub fn shared_with_tcp_ephemeral(ephemeral: RangeInclusive<u16>) -> XsConfig {
        XsConfig {
            tcp_ephemeral_lo: *ephemeral.start(),
            tcp_ephemeral_hi: *ephemeral.end(),
            ..XsConfig::SHARED
        }
    }

    /// The dedicated address, if any.
    pub fn dedicated_ip(&self) -> Option<Ipv4Addr> {
        (self.dedicated_ip_be != 0).then(|| Ipv4Addr::from(self.dedicated_ip_be.to_ne_bytes()))
    }

    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.dedicated_ip_be.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b[8..10].copy_from_slice(&self.tcp_ephemeral_lo.to_ne_bytes());
        b[10..].copy_from_slice(&self.tcp_ephemeral_hi.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<XsConfig> {
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
        };
        Some(XsConfig {
            dedicated_ip_be: u32_at(0)?,
            flags: u32_at(4)?,
            tcp_ephemeral_lo: u16_at(8)?,
            tcp_ephemeral_hi: u16_at(10)?,
        })
    }
}

/// `enum xs_counter`: indices into `counters_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    Steered = 0,
    Passed = 1,
    Malformed = 2,
    NoXsk = 3,
}

/// `XS_CNT_MAX`.
pub const COUNTER_MAX: u32 = 4;

/// The program's counters summed over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SteerCounters {
    /// Redirected into an AF_XDP socket.
    pub steered: u64,
    /// Left to the kernel (not ours).
    pub passed: u64,
    /// Truncated headers, left to the kernel.
    pub malformed: u64,
    /// Ours, but no socket on the receiving queue: left to the kernel.
    pub no_xsk: u64,
}

/// A failed map operation: which one, and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Adding a port failed (e.g. ENOSPC: the map is full).
    AddPort(i32),
    RemovePort(i32),
    Lookup(i32),
    SetConfig(i32),
    /// The queue index is `MAX_QUEUES` or more.
    QueueOutOfRange(u32),
    SetXsk(i32),
    ReadCounters(i32),
    /// A map handle could not be duplicated from the loaded object.
    Handle(i32),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::AddPort(e) => write!(f, "ports_map: add failed (errno {e})"),
            MapError::RemovePort(e) => write!(f, "ports_map: remove failed (errno {e})"),
            MapError::Lookup(e) => write!(f, "map lookup failed (errno {e})"),
            MapError::SetConfig(e) => write!(f, "config_map: update failed (errno {e})"),
            MapError::QueueOutOfRange(q) => {
                write!(f, "queue {q} out of range (max {MAX_QUEUES})")
            }
            MapError::SetXsk(e) => write!(f, "xsks_map: update failed (errno {e})"),
            MapError::ReadCounters(e) => write!(f, "counters_map: read failed (errno {e})"),
            MapError::Handle(e) => write!(f, "map handle: dup failed (errno {e})"),
        }
    }
}

impl std::error::Error for MapError {}

/// The errno inside a libbpf-rs error (EIO when it carries none).
pub(crate) fn errno_of(e: &libbpf_rs::Error) -> i32 {
    use libbpf_rs::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::PermissionDenied => libc::EPERM,
        ErrorKind::AlreadyExists => libc::EEXIST,
        ErrorKind::WouldBlock => libc::EAGAIN,
        ErrorKind::InvalidInput => libc::EINVAL,
        ErrorKind::OutOfMemory => libc::ENOMEM,
        ErrorKind::TimedOut => libc::ETIMEDOUT,
        ErrorKind::Interrupted => libc::EINTR,
        ErrorKind::Unsupported => libc::EOPNOTSUPP,
        _ => libc::EIO,
    }
}

/// Owned handles to the four maps of one loaded steering program. They stay
/// valid after the program is detached (the kernel frees the maps when the
/// last handle closes). Share it with `Arc` between the loader, the port
/// service and the sockets.
pub struct SteerMaps {
    xsks: MapHandle,
    ports: MapHandle,
    config: MapHandle,
    counters: MapHandle,
}

impl fmt::Debug for SteerMaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SteerMaps")
            .field("xsks_fd", &self.xsks.as_fd().as_raw_fd())
            .field("ports_fd", &self.ports.as_fd().as_raw_fd())
            .finish()
    }
}

impl SteerMaps {
    pub(crate) fn new(
        xsks: MapHandle,
        ports: MapHandle,
        config: MapHandle,
        counters: MapHandle,
    ) -> SteerMaps {
        SteerMaps {
            xsks,
            ports,
            config,
            counters,
        }
    }

    /// Steer `(proto, port)` to the stack. Idempotent.
    pub fn add_port(&self, proto: Proto, port: u16) -> Result<(), MapError> {
        self.ports
            .update(&PortKey::new(proto, port).to_bytes(), &[1], MapFlags::ANY)
            .map_err(|e| MapError::AddPort(errno_of(&e)))
    }

    /// Give `(proto, port)` back to the kernel. Removing an absent entry is
    /// not an error.
    pub fn remove_port(&self, proto: Proto, port: u16) -> Result<(), MapError> {
        match self.ports.delete(&PortKey::new(proto, port).to_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == libc::ENOENT => Ok(()),
            Err(e) => Err(MapError::RemovePort(errno_of(&e))),
        }
    }

    /// Whether `(proto, port)` is steered to the stack.
    pub fn has_port(&self, proto: Proto, port: u16) -> Result<bool, MapError> {
        self.ports
            .lookup(&PortKey::new(proto, port).to_bytes(), MapFlags::ANY)
            .map(|v| v.is_some())
            .map_err(|e| MapError::Lookup(errno_of(&e)))
    }

    pub fn set_config(&self, cfg: XsConfig) -> Result<(), MapError> {
        self.config
            .update(&0u32.to_ne_bytes(), &cfg.to_bytes(), MapFlags::ANY)
            .map_err(|e| MapError::SetConfig(errno_of(&e)))
    }

    pub fn config(&self) -> Result<XsConfig, MapError> {
        let v = self
            .config
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| MapError::Lookup(errno_of(&e)))?;
        Ok(v.as_deref()
            .and_then(XsConfig::from_bytes)
            .unwrap_or_default())
    }

    /// Point queue `queue` at the AF_XDP socket `xsk`.
    pub fn set_xsk(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), MapError> {
        if queue >= MAX_QUEUES {
            return Err(MapError::QueueOutOfRange(queue));
        }
        let fd = xsk.as_raw_fd() as u32;
        self.xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| MapError::SetXsk(errno_of(&e)))
    }

    /// Remove queue `queue`'s socket (the kernel also does this when the
    /// socket closes). Removing an absent entry is not an error.
    pub fn clear_xsk(&self, queue: u32) -> Result<(), MapError> {
        if queue >= MAX_QUEUES {
            return Err(MapError::QueueOutOfRange(queue));
        }
        match self.xsks.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == libc::ENOENT => Ok(()),
            Err(e) => Err(MapError::SetXsk(errno_of(&e))),
        }
    }

    /// One counter for each CPU.
    pub fn counter_per_cpu(&self, which: Counter) -> Result<Vec<u64>, MapError> {
        let v = self
            .counters
            .lookup_percpu(&(which as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| MapError::ReadCounters(errno_of(&e)))?
            .unwrap_or_default();
        Ok(v.iter()
            .map(|b| {
                b.get(..8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_ne_bytes)
                    .unwrap_or(0)
            })
            .collect())
    }

    /// All counters, summed over CPUs.
    pub fn counters(&self) -> Result<SteerCounters, MapError> {
        let sum = |c| -> Result<u64, MapError> { Ok(self.counter_per_cpu(c)?.iter().sum()) };
        Ok(SteerCounters {
            steered: sum(Counter::Steered)?,
            passed: sum(Counter::Passed)?,
            malformed: sum(Counter::Malformed)?,
            no_xsk: sum(Counter::NoXsk)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// The C header, parsed just enough: `#define NAME VALUE`, enum
    /// constants, and struct fields as (type, name).
    struct Header {
        defines: HashMap<String, u64>,
        enums: HashMap<String, u64>,
        structs: HashMap<String, Vec<(String, String)>>,
    }

    fn parse_header(src: &str) -> Header {
        let mut h = Header {
            defines: HashMap::new(),
            enums: HashMap::new(),
            structs: HashMap::new(),
        };
        // Strip comments.
        let mut text = String::new();
        let mut rest = src;
        while let Some(i) = rest.find("/*") {
            text.push_str(&rest[..i]);
            let end = rest[i..].find("*/").expect("unterminated comment");
            rest = &rest[i + end + 2..];
        }
        text.push_str(rest);
        let mut current: Option<(bool, String)> = None; // (is_enum, name)
        for line in text.lines().map(str::trim) {
            if let Some(def) = line.strip_prefix("#define ") {
                let mut it = def.split_whitespace();
                if let (Some(n), Some(v)) = (it.next(), it.next()) {
                    if let Ok(v) = v.parse() {
                        h.defines.insert(n.to_string(), v);
                    }
                }
            } else if let Some(s) = line.strip_prefix("struct ").filter(|l| l.ends_with('{')) {
                let name = s.trim_end_matches('{').trim().to_string();
                h.structs.insert(name.clone(), Vec::new());
                current = Some((false, name));
            } else if let Some(s) = line.strip_prefix("enum ").filter(|l| l.ends_with('{')) {
                current = Some((true, s.trim_end_matches('{').trim().to_string()));
            } else if line.starts_with('}') {
                current = None;
            } else if let Some((is_enum, name)) = &current {
                let line = line.trim_end_matches([';', ',']);
                if line.is_empty() {
                    continue;
                }
                if *is_enum {
                    let (k, v) = line.split_once('=').expect("enum constant with a value");
                    h.enums
                        .insert(k.trim().to_string(), v.trim().parse().expect("number"));
                } else {
                    let (ty, field) = line.rsplit_once(' ').expect("field: type name");
                    h.structs
                        .get_mut(name)
                        .unwrap()
                        .push((ty.trim().to_string(), field.trim().to_string()));
                }
            }
        }
        h
    }

    /// Offsets and total size of a C struct of fixed-width integer fields.
    fn c_layout(fields: &[(String, String)]) -> (HashMap<String, usize>, usize) {
        let mut off = 0usize;
        let mut align = 1usize;
        let mut offs = HashMap::new();
        for (ty, name) in fields {
            let size = match ty.as_str() {
                "__u8" => 1,
                "__u16" => 2,
                "__u32" => 4,
                "__u64" => 8,
                other => panic!("unexpected field type {other}"),
            };
            off = off.div_ceil(size) * size;
            offs.insert(name.clone(), off);
            off += size;
            align = align.max(size);
        }
        (offs, off.div_ceil(align) * align)
    }

    fn header() -> Header {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/steer.h");
        parse_header(&std::fs::read_to_string(path).expect("read bpf/steer.h"))
    }

    #[test]
    fn constants_match_header() {
        let h = header();
        assert_eq!(h.defines["XS_MAX_QUEUES"], MAX_QUEUES as u64);
        assert_eq!(h.defines["XS_MAX_PORTS"], MAX_PORTS as u64);
        assert_eq!(h.enums["XS_CNT_STEERED"], Counter::Steered as u64);
        assert_eq!(h.enums["XS_CNT_PASSED"], Counter::Passed as u64);
        assert_eq!(h.enums["XS_CNT_MALFORMED"], Counter::Malformed as u64);
        assert_eq!(h.enums["XS_CNT_NO_XSK"], Counter::NoXsk as u64);
        assert_eq!(h.enums["XS_CNT_MAX"], COUNTER_MAX as u64);
        assert_eq!(
            h.enums.len(),
            COUNTER_MAX as usize + 1,
            "a counter without a Rust twin"
        );
    }

    #[test]
    fn port_key_layout_matches_header() {
        let h = header();
        let fields = &h.structs["xs_port_key"];
        let names: Vec<&str> = fields.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["proto", "pad", "port"]);
        let (offs, size) = c_layout(fields);
        assert_eq!(size, size_of::<PortKey>());
        assert_eq!(offs["proto"], offset_of!(PortKey, proto));
        assert_eq!(offs["pad"], offset_of!(PortKey, pad));
        assert_eq!(offs["port"], offset_of!(PortKey, port_be));
        assert_eq!(size, PortKey::new(Proto::Udp, 1).to_bytes().len());
    }

    #[test]
    fn config_layout_matches_header() {
        let h = header();
        let fields = &h.structs["xs_config"];
        let names: Vec<&str> = fields.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "dedicated_ip",
                "flags",
                "tcp_ephemeral_lo",
                "tcp_ephemeral_hi"
            ]
        );
        let (offs, size) = c_layout(fields);
        assert_eq!(size, size_of::<XsConfig>());
        assert_eq!(offs["dedicated_ip"], offset_of!(XsConfig, dedicated_ip_be));
        assert_eq!(offs["flags"], offset_of!(XsConfig, flags));
        assert_eq!(
            offs["tcp_ephemeral_lo"],
            offset_of!(XsConfig, tcp_ephemeral_lo)
        );
        assert_eq!(
            offs["tcp_ephemeral_hi"],
            offset_of!(XsConfig, tcp_ephemeral_hi)
        );
        assert_eq!(size, XsConfig::SHARED.to_bytes().len());
    }

    #[test]
    fn layouts_match_generated_skeleton_types() {
        use crate::xdp::skel::types;
        assert_eq!(size_of::<types::xs_port_key>(), size_of::<PortKey>());
        assert_eq!(
            offset_of!(types::xs_port_key, port),
            offset_of!(PortKey, port_be)
        );
        assert_eq!(
            offset_of!(types::xs_port_key, proto),
            offset_of!(PortKey, proto)
        );
        assert_eq!(size_of::<types::xs_config>(), size_of::<XsConfig>());
        assert_eq!(
            offset_of!(types::xs_config, dedicated_ip),
            offset_of!(XsConfig, dedicated_ip_be)
        );
        assert_eq!(
            offset_of!(types::xs_config, flags),
            offset_of!(XsConfig, flags)
        );
        assert_eq!(
            offset_of!(types::xs_config, tcp_ephemeral_hi),
            offset_of!(XsConfig, tcp_ephemeral_hi)
        );
    }

    #[test]
    fn key_bytes_are_network_order_port() {
        assert_eq!(
            PortKey::new(Proto::Udp, 0x1234).to_bytes(),
            [17, 0, 0x12, 0x34]
        );
        assert_eq!(PortKey::new(Proto::Tcp, 80).to_bytes(), [6, 0, 0, 80]);
        let c = XsConfig::dedicated(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(&c.to_bytes()[..4], &[10, 1, 2, 3]);
        assert_eq!(c.dedicated_ip(), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(XsConfig::SHARED.dedicated_ip(), None);
        assert_eq!(XsConfig::from_bytes(&c.to_bytes()), Some(c));
        let e = XsConfig::shared_with_tcp_ephemeral(61000..=65535);
        assert_eq!(e.dedicated_ip(), None);
        assert_eq!(
            &e.to_bytes()[8..],
            &[61000u16.to_ne_bytes(), 65535u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(XsConfig::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(XsConfig::from_bytes(&e.to_bytes()[..11]), None);
    }
}
