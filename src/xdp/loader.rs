//! Loads the steering program (`bpf/steer.bpf.c`) and attaches it to an
//! interface.
//!
//! Attachment is a BPF link (`bpf_link_create`, type `BPF_XDP`), owned by a
//! file descriptor of this process: when the process dies, even by
//! `kill -9`, the kernel closes the descriptor and detaches the program, so a
//! killed run cannot leave the interface steering into dead sockets. A
//! program attached the older way (netlink, which outlives its process) and
//! named like ours is taken for a stale run of ours: it is detached, with a
//! log line, before attaching. A foreign program is left alone and reported.
//!
//! Explicit detaching is idempotent: [`Steering::detach`], `Drop`, and
//! [`detach_all`] (for a signal-handling thread or a panic hook) may all run,
//! in any order.

use std::ffi::CStr;
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapHandle;

use super::maps::{errno_of, SteerMaps};
use super::skel::SteerSkelBuilder;

/// The program's name as the kernel reports it (at most 15 characters).
pub const PROG_NAME: &str = "xdpstack_steer";

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic with a log line.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (SKB) mode only.
    Generic,
}

/// The mode the program ended up attached in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    fn flags(self) -> u32 {
        match self {
            AttachedMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachedMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

impl std::str::FromStr for AttachMode {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "native" | "drv" => Ok(AttachMode::Native),
            "generic" | "skb" => Ok(AttachMode::Generic),
            _ => Err("attach mode is one of: auto, native, generic"),
        }
    }
}

/// Why loading or attaching failed; errno values where the kernel gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// No interface with that name.
    NoSuchInterface,
    /// Opening or loading the BPF object failed (verifier, permissions).
    Load(i32),
    /// Duplicating a program or map descriptor failed.
    Handle(i32),
    /// Another program, not ours, is attached; its id.
    ForeignProgram(u32),
    /// A live xdpstack program (another running instance) holds the interface.
    Busy,
    /// Attaching failed in the requested mode.
    Attach(AttachedMode, i32),
    /// Querying the interface's XDP state failed.
    Query(i32),
    /// A test run of the program failed.
    Run(i32),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoSuchInterface => write!(f, "no such interface"),
            LoadError::Load(e) => write!(f, "loading the steering program failed (errno {e})"),
            LoadError::Handle(e) => write!(f, "duplicating a BPF descriptor failed (errno {e})"),
            LoadError::ForeignProgram(id) => write!(
                f,
                "another XDP program (id {id}) is attached; detach it first"
            ),
            LoadError::Busy => write!(f, "another running xdpstack instance holds the interface"),
            LoadError::Attach(m, e) => write!(f, "attaching in {m:?} mode failed (errno {e})"),
            LoadError::Query(e) => {
                write!(f, "querying the interface's XDP state failed (errno {e})")
            }
            LoadError::Run(e) => write!(f, "test run of the steering program failed (errno {e})"),
        }
    }
}

impl std::error::Error for LoadError {}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> Result<u32, LoadError> {
    let c = std::ffi::CString::new(name).map_err(|_| LoadError::NoSuchInterface)?;
    // Safety: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(LoadError::NoSuchInterface)
    } else {
        Ok(idx)
    }
}

/// Attached links of this process, for [`detach_all`]: (id, link fd).
static REGISTRY: Mutex<Vec<(u64, Arc<LinkState>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct LinkState {
    fd: OwnedFd,
    detached: AtomicBool,
}

impl LinkState {
    /// Detach once; later calls are no-ops.
    fn detach(&self) -> Result<(), i32> {
        if self.detached.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Safety: plain syscall wrapper on a descriptor this struct owns.
        let r = unsafe { libbpf_sys::bpf_link_detach(self.fd.as_raw_fd()) };
        if r < 0 {
            Err(-r)
        } else {
            Ok(())
        }
    }
}

/// Detach every steering program this process attached. Safe to call from
/// any thread (a signal-handling thread, a panic hook) and more than once.
pub fn detach_all() {
    let links: Vec<Arc<LinkState>> = match REGISTRY.lock() {
        Ok(r) => r.iter().map(|(_, l)| l.clone()).collect(),
        Err(p) => p.get_ref().iter().map(|(_, l)| l.clone()).collect(),
    };
    for l in links {
        let _ = l.detach();
    }
}

/// The steering program loaded and attached to one interface, with its maps.
/// Dropping it detaches the program.
pub struct Steering {
    ifindex: u32,
    mode: AttachedMode,
    prog: OwnedFd,
    maps: Arc<SteerMaps>,
    link: Arc<LinkState>,
    id: u64,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .field("prog_fd", &self.prog.as_raw_fd())
            .finish()
    }
}

/// The program and maps of a freshly loaded object, as owned descriptors.
pub(crate) struct Loaded {
    pub(crate) prog: OwnedFd,
    pub(crate) maps: SteerMaps,
}

/// Open and load the steering object; keep only owned descriptors (the
/// object itself is freed, the kernel objects live on through them).
pub(crate) fn load() -> Result<Loaded, LoadError> {
    let mut storage = MaybeUninit::uninit();
    let open = SteerSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| LoadError::Load(errno_of(&e)))?;
    let skel = open.load().map_err(|e| LoadError::Load(errno_of(&e)))?;
    let prog = skel
        .progs
        .xdpstack_steer
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| LoadError::Handle(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let h = |m| MapHandle::try_from(m).map_err(|e| LoadError::Handle(errno_of(&e)));
    let maps = SteerMaps::new(
        h(&skel.maps.xsks_map)?,
        h(&skel.maps.ports_map)?,
        h(&skel.maps.config_map)?,
        h(&skel.maps.counters_map)?,
    );
    Ok(Loaded { prog, maps })
}

/// What is attached to an interface now, per mode: program ids (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attached {
    pub native: u32,
    pub generic: u32,
}

/// Query the programs attached to `ifindex`.
pub fn query(ifindex: u32) -> Result<Attached, LoadError> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // Safety: `opts` is a properly sized, initialised options struct that
    // outlives the call.
    let r = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if r < 0 {
        return Err(LoadError::Query(-r));
    }
    Ok(Attached {
        native: opts.drv_prog_id,
        generic: opts.skb_prog_id,
    })
}

/// The name of the loaded program with id `id`, if it still exists.
pub fn prog_name(id: u32) -> Option<String> {
    // Safety: plain syscall wrapper; the returned fd is checked and owned.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // Safety: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // Safety: `info` is a zeroed bpf_prog_info of `len` bytes; the kernel
    // fills at most `len` bytes and no pointer fields are set.
    let r = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(
            fd.as_raw_fd(),
            &mut info as *mut _,
            &mut len as *mut u32,
        )
    };
    if r < 0 {
        return None;
    }
    let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
    let name = CStr::from_bytes_until_nul(&bytes).ok()?;
    Some(name.to_string_lossy().into_owned())
}

/// Whether a BPF link (owned by a live process, or pinned) holds program
/// `prog_id` on `ifindex`.
fn held_by_link(ifindex: u32, prog_id: u32) -> bool {
    use libbpf_rs::query::{LinkInfoIter, LinkTypeInfo};
    LinkInfoIter::default().any(|l| {
        l.prog_id == prog_id && matches!(&l.info, LinkTypeInfo::Xdp(x) if x.ifindex == ifindex)
    })
}

/// Detach a stale netlink-attached copy of our program from `ifindex`;
/// refuse a foreign one.
fn clear_stale(ifindex: u32) -> Result<(), LoadError> {
    let now = query(ifindex)?;
    for (id, mode) in [
        (now.native, AttachedMode::Native),
        (now.generic, AttachedMode::Generic),
    ] {
        if id == 0 {
            continue;
        }
        match prog_name(id) {
            Some(n) if n == PROG_NAME => {}
            _ => return Err(LoadError::ForeignProgram(id)),
        }
        if held_by_link(ifindex, id) {
            return Err(LoadError::Busy);
        }
        let opts = libbpf_sys::bpf_xdp_attach_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
            ..Default::default()
        };
        // Safety: valid options struct; detaching by netlink only touches
        // the interface's own XDP slot.
        let r = unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, mode.flags(), &opts) };
        match -r {
            0 => eprintln!(
                "xdpstack: replaced a stale {PROG_NAME} (id {id}, {mode:?} mode) on ifindex {ifindex}"
            ),
            // The kernel refuses to detach a link-attached program this
            // way: a live instance owns it.
            libc::EBUSY => return Err(LoadError::Busy),
            e => return Err(LoadError::Attach(mode, e)),
        }
    }
    Ok(())
}

fn link_create(prog: BorrowedFd<'_>, ifindex: u32, mode: AttachedMode) -> Result<OwnedFd, i32> {
    // Safety: an all-zero bpf_link_create_opts is its documented default
    // (plain integers, a null pointer and a union of plain integers).
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
    opts.flags = mode.flags();
    // Safety: `prog` is a live program fd and `opts` outlives the call.
    let fd: RawFd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, libbpf_sys::BPF_XDP, &opts)
    };
    if fd < 0 {
        // libbpf returns -errno (and sets errno).
        return Err(if fd == -1 { last_errno() } else { -fd });
    }
    // Safety: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Steering {
    /// Load the program and attach it to interface `iface`.
    pub fn attach(iface: &str, mode: AttachMode) -> Result<Steering, LoadError> {
        Steering::attach_ifindex(ifindex(iface)?, mode)
    }

    /// Load the program and attach it to interface index `ifindex`.
    pub fn attach_ifindex(ifindex: u32, mode: AttachMode) -> Result<Steering, LoadError> {
        let loaded = load()?;
        clear_stale(ifindex)?;
        let prog = loaded.prog.as_fd();
        let (link, attached) = match mode {
            AttachMode::Native => (
                link_create(prog, ifindex, AttachedMode::Native)
                    .map_err(|e| Self::attach_error(AttachedMode::Native, e))?,
                AttachedMode::Native,
            ),
            AttachMode::Generic => (
                link_create(prog, ifindex, AttachedMode::Generic)
                    .map_err(|e| Self::attach_error(AttachedMode::Generic, e))?,
                AttachedMode::Generic,
            ),
            AttachMode::Auto => match link_create(prog, ifindex, AttachedMode::Native) {
                Ok(l) => (l, AttachedMode::Native),
                Err(e) if e == libc::EBUSY || e == libc::EEXIST => return Err(LoadError::Busy),
                Err(e) => {
                    eprintln!(
                        "xdpstack: native XDP attach failed on ifindex {ifindex} (errno {e}); \
                         falling back to generic mode"
                    );
                    (
                        link_create(prog, ifindex, AttachedMode::Generic)
                            .map_err(|e| Self::attach_error(AttachedMode::Generic, e))?,
                        AttachedMode::Generic,
                    )
                }
            },
        };
        let link = Arc::new(LinkState {
            fd: link,
            detached: AtomicBool::new(false),
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        REGISTRY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, link.clone()));
        Ok(Steering {
            ifindex,
            mode: attached,
            prog: loaded.prog,
            maps: Arc::new(loaded.maps),
            link,
            id,
        })
    }

    fn attach_error(mode: AttachedMode, errno: i32) -> LoadError {
        if errno == libc::EBUSY || errno == libc::EEXIST {
            LoadError::Busy
        } else {
            LoadError::Attach(mode, errno)
        }
    }

    /// The maps of the attached program.
    pub fn maps(&self) -> &Arc<SteerMaps> {
        &self.maps
    }

    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The kernel's id of the loaded program.
    pub fn prog_id(&self) -> u32 {
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        // Safety: as in `prog_name`: a zeroed info struct of `len` bytes.
        let r = unsafe {
            libbpf_sys::bpf_prog_get_info_by_fd(self.prog.as_raw_fd(), &mut info, &mut len)
        };
        if r < 0 {
            0
        } else {
            info.id
        }
    }

    /// Detach the program from the interface. Idempotent; the maps stay
    /// readable afterwards.
    pub fn detach(&self) -> Result<(), LoadError> {
        let r = self
            .link
            .detach()
            .map_err(|e| LoadError::Attach(self.mode, e));
        REGISTRY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
        r
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// What the program decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `XDP_PASS`: left to the kernel.
    Pass,
    /// `XDP_REDIRECT`: steered into the AF_XDP socket.
    Redirect,
    /// Any other action (the program never returns one).
    Other(u32),
}

/// The steering program loaded but not attached: its maps can be filled and
/// it can be run on crafted frames with `BPF_PROG_TEST_RUN` (tests of the
/// parser and of the maps' contract, without traffic).
pub struct Program {
    prog: OwnedFd,
    maps: Arc<SteerMaps>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("prog_fd", &self.prog.as_raw_fd())
            .finish()
    }
}

impl Program {
    pub fn load() -> Result<Program, LoadError> {
        let l = load()?;
        Ok(Program {
            prog: l.prog,
            maps: Arc::new(l.maps),
        })
    }

    pub fn maps(&self) -> &Arc<SteerMaps> {
        &self.maps
    }

    /// Run the program once on `frame`, as received on RX queue 0.
    pub fn test_run(&self, frame: &[u8]) -> Result<Verdict, LoadError> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr() as *const libc::c_void,
            data_size_in: frame.len() as u32,
            data_out: out.as_mut_ptr() as *mut libc::c_void,
            data_size_out: out.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        // Safety: `data_in` and `data_out` point at live buffers of the
        // sizes given, and `opts` outlives the call.
        let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if r < 0 {
            return Err(LoadError::Run(-r));
        }
        Ok(match opts.retval {
            x if x == libbpf_sys::XDP_PASS => Verdict::Pass,
            x if x == libbpf_sys::XDP_REDIRECT => Verdict::Redirect,
            x => Verdict::Other(x),
        })
    }
}

/// Attach by netlink, the way a program survives its process. Only for
/// tests that need a stale program to clean up; the stack never does this.
#[doc(hidden)]
pub fn attach_netlink_for_test(ifindex: u32, mode: AttachedMode) -> Result<u32, LoadError> {
    let loaded = load()?;
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
        ..Default::default()
    };
    // Safety: live program fd and valid options struct.
    let r = unsafe {
        libbpf_sys::bpf_xdp_attach(ifindex as i32, loaded.prog.as_raw_fd(), mode.flags(), &opts)
    };
    if r < 0 {
        return Err(LoadError::Attach(mode, -r));
    }
    let q = query(ifindex)?;
    Ok(match mode {
        AttachedMode::Native => q.native,
        AttachedMode::Generic => q.generic,
    })
}
