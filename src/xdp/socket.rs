//! One AF_XDP socket bound to one interface queue, with its own UMEM, driven
//! in batches: [`XdpLink`], the AF_XDP implementation of [`phy::Link`].
//!
//! Sockets are created with libxdp's `INHIBIT_PROG_LOAD` (our own steering
//! program is attached by [`super::loader`]) and insert themselves into its
//! `xsks_map`. Transmission on veth and in copy mode needs a `sendto()` kick
//! per batch; one kick sends at most 32 frames and answers EAGAIN while more
//! remain, so the kick repeats (bounded) until the TX ring is drained.
//!
//! [`phy::Link`]: crate::phy::Link

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue};

use super::maps::SteerMaps;
use super::umem::{errno_in, Frame, FramePool, UmemConfig, XskError};
use crate::phy::Link;
use crate::time::Instant;

/// How a worker waits for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// Spin on the rings; never sleep. Lowest latency, one core at 100%.
    #[default]
    Busy,
    /// Sleep in `poll()` when idle; the kernel wakes the socket.
    Wakeup,
}

impl std::str::FromStr for PollMode {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy" => Ok(PollMode::Busy),
            "wakeup" | "poll" => Ok(PollMode::Wakeup),
            _ => Err("poll mode is one of: busy, wakeup"),
        }
    }
}

/// Configuration of one socket.
#[derive(Debug, Clone)]
pub struct XskConfig {
    pub iface: String,
    pub queue: u32,
    pub umem: UmemConfig,
    pub rx_size: u32,
    pub tx_size: u32,
    pub poll: PollMode,
    /// `Some(true)`: require zero copy; `Some(false)`: force copy mode;
    /// `None`: let the kernel choose (zero copy where the driver has it).
    pub zero_copy: Option<bool>,
}

impl XskConfig {
    pub fn new(iface: &str, queue: u32) -> XskConfig {
        XskConfig {
            iface: iface.to_string(),
            queue,
            umem: UmemConfig::default(),
            rx_size: 2048,
            tx_size: 2048,
            poll: PollMode::Busy,
            zero_copy: None,
        }
    }
}

/// Per-socket counters, ours and the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XskStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames dropped because the TX ring was full.
    pub tx_ring_full: u64,
    /// `sendto()` kicks issued, and how many failed with a hard error.
    pub kicks: u64,
    pub kick_errors: u64,
    /// RX descriptors the kernel gave that did not fit the UMEM.
    pub rx_invalid: u64,
    /// Frames the application released without sending.
    pub released: u64,
    /// Kernel: packets dropped for lack of fill-ring frames or RX space.
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_empty: u64,
    pub kernel_tx_invalid: u64,
}

/// Most frames one kick sends in copy mode.
const KICK_BATCH: usize = 32;
/// Most descriptors taken from the RX or completion ring at once.
const LANDING: usize = 256;

/// An AF_XDP socket and its UMEM, as a batched link.
pub struct XdpLink {
    pool: FramePool,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    fd: RawFd,
    queue: u32,
    poll: PollMode,
    zero_copy: bool,
    max_frame: usize,
    /// Descriptors queued on the TX ring the kernel has not completed yet.
    tx_outstanding: usize,
    tx_size: usize,
    /// Free frames `refill` keeps back for transmission.
    fill_reserve: usize,
    /// Descriptors on their way to the fill or TX ring.
    scratch: Vec<FrameDesc>,
    /// Fixed-size landing area for RX and completion descriptors.
    landing: Box<[FrameDesc]>,
    stats: XskStats,
}

impl fmt::Debug for XdpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpLink")
            .field("fd", &self.fd)
            .field("queue", &self.queue)
            .field("zero_copy", &self.zero_copy)
            .finish()
    }
}

fn iface_mtu(iface: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl XdpLink {
    /// Create the UMEM and socket, fill the fill ring, and (when `maps` is
    /// given) point `xsks_map[queue]` at the socket.
    pub fn open(cfg: &XskConfig, maps: Option<&SteerMaps>) -> Result<XdpLink, XskError> {
        let pool = FramePool::new(cfg.umem)?;
        let iface: Interface = cfg.iface.parse().map_err(|_| XskError::NoSuchInterface)?;
        let mtu = iface_mtu(&cfg.iface).ok_or(XskError::NoSuchInterface)?;
        let mut bind = BindFlags::XDP_USE_NEED_WAKEUP;
        match cfg.zero_copy {
            Some(true) => bind |= BindFlags::XDP_ZEROCOPY,
            Some(false) => bind |= BindFlags::XDP_COPY,
            None => {}
        }
        let scfg = SocketConfig::builder()
            .rx_queue_size(QueueSize::new(cfg.rx_size).map_err(|_| XskError::BadConfig("rx size"))?)
            .tx_queue_size(QueueSize::new(cfg.tx_size).map_err(|_| XskError::BadConfig("tx size"))?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        // Safety: the UMEM is fresh and used by this one socket only (no
        // other socket shares its fill and completion rings), and
        // INHIBIT_PROG_LOAD is set, so libxdp never loads or unloads a
        // program of its own (xsk-rs's condition against a double free).
        let (tx, rx, fq_cq) = unsafe { Socket::new(scfg, pool.umem(), &iface, cfg.queue) }
            .map_err(|e| XskError::Socket(errno_in(&e)))?;
        let (fill, comp) = fq_cq.ok_or(XskError::Socket(libc::EINVAL))?;
        let fd = rx.fd().as_raw_fd();
        set_cloexec(fd)?;
        let zero_copy = xdp_zero_copy(fd)?;
        let max_frame = pool.tx_capacity().min(mtu + 14);
        let mut link = XdpLink {
            pool,
            fill,
            comp,
            rx,
            tx,
            fd,
            queue: cfg.queue,
            poll: cfg.poll,
            zero_copy,
            max_frame,
            tx_outstanding: 0,
            tx_size: cfg.tx_size as usize,
            fill_reserve: (cfg.tx_size as usize).min(cfg.umem.frame_count as usize / 2),
            scratch: Vec::with_capacity(cfg.tx_size.max(cfg.umem.fill_size) as usize),
            landing: vec![FrameDesc::default(); LANDING].into_boxed_slice(),
            stats: XskStats::default(),
        };
        link.refill();
        if let Some(m) = maps {
            m.set_xsk(cfg.queue, link.as_fd()).map_err(XskError::Map)?;
        }
        Ok(link)
    }

    /// The socket's descriptor (for `xsks_map`, `poll`).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        // Safety: `fd` is owned by `self.rx`'s socket, which lives as long
        // as `self`; the borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn poll_mode(&self) -> PollMode {
        self.poll
    }

    /// Our counters plus the kernel's socket statistics.
    pub fn stats(&self) -> XskStats {
        let mut s = self.stats;
        if let Ok(k) = self.rx.fd().xdp_statistics() {
            s.kernel_rx_dropped = k.rx_dropped();
            s.kernel_rx_ring_full = k.rx_ring_full();
            s.kernel_fill_empty = k.rx_fill_ring_empty_descs();
            s.kernel_tx_invalid = k.tx_invalid_descs();
        }
        s
    }

    /// Free frames in the pool (neither in a ring nor lent out).
    pub fn free_frames(&self) -> usize {
        self.pool.free_len()
    }

    /// Move free frames to the fill ring, keeping enough back for TX.
    /// Called every loop iteration: returns at once, without touching
    /// the ring, when no frame beyond the reserve is free.
    #[inline]
    fn refill(&mut self) {
        let avail = self.pool.free_len().saturating_sub(self.fill_reserve);
        if avail == 0 {
            return;
        }
        self.refill_ring(avail);
    }

    fn refill_ring(&mut self, avail: usize) {
        let want = self.fill.nb_free(avail as u32) as usize;
        let n = want.min(avail);
        if n == 0 {
            return;
        }
        self.scratch.clear();
        for _ in 0..n {
            match self.pool.take_desc() {
                Some(d) => self.scratch.push(d),
                None => break,
            }
        }
        // Safety: every descriptor is a free chunk of this UMEM, owned by no
        // token and in no ring; handing it to the kernel transfers ownership.
        let done = unsafe { self.fill.produce(&self.scratch) };
        for d in &self.scratch[done..] {
            self.pool.put_desc(d);
        }
    }

    /// Take back transmitted frames from the completion ring.
    fn complete(&mut self) {
        while self.tx_outstanding > 0 {
            let want = self.tx_outstanding.min(LANDING);
            // Safety: the kernel only completes descriptors we queued on TX,
            // each the sole reference to its chunk; we take ownership back.
            let n = unsafe { self.comp.consume(&mut self.landing[..want]) };
            for i in 0..n {
                let d = self.landing[i];
                self.pool.put_desc(&d);
            }
            self.tx_outstanding -= n;
            if n < want {
                break;
            }
        }
    }

    /// Descriptors on the TX ring the kernel has not taken yet.
    fn tx_pending(&mut self) -> usize {
        self.tx_size - self.tx.nb_free_exact() as usize
    }

    /// Kick the kernel to transmit what is on the TX ring. In copy mode one
    /// kick sends at most `KICK_BATCH` frames, so kick again until the ring
    /// is drained (bounded); in zero-copy mode the driver drains it
    /// asynchronously and one kick suffices.
    fn kick(&mut self) {
        let mut budget = self.tx_size / KICK_BATCH + 4;
        loop {
            self.stats.kicks += 1;
            // Safety: a zero-length sendto on our own AF_XDP socket, no
            // buffers passed.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    // EAGAIN: more than one batch queued; EBUSY/ENOBUFS: the
                    // device or completion ring is full for now.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {}
                    Some(libc::ENETDOWN) => return,
                    _ => {
                        self.stats.kick_errors += 1;
                        return;
                    }
                }
            }
            // Completions free ring space for what is left.
            self.complete();
            budget -= 1;
            if self.zero_copy || budget == 0 || self.tx_pending() == 0 {
                return;
            }
        }
    }

    /// Kick again if frames are still waiting on the TX ring (copy mode
    /// can leave some when the device pushed back). `receive` calls this;
    /// a worker that only transmits calls it between batches.
    pub fn flush(&mut self) {
        if self.tx_outstanding == 0 {
            return;
        }
        if !self.zero_copy && self.tx_pending() > 0 {
            self.kick();
        } else {
            self.complete();
        }
    }

    /// Block in `poll()` up to `timeout_ms` for RX frames (wakeup mode), or
    /// return at once (busy mode). True when frames may be ready.
    pub fn wait(&mut self, timeout_ms: i32) -> bool {
        if self.poll == PollMode::Busy {
            return true;
        }
        if self.rx.nb_avail(1) > 0 {
            return true;
        }
        self.rx.poll(timeout_ms).unwrap_or(false)
    }

    /// Transmit `frames` (draining it): as many as the TX ring takes, the
    /// rest released and counted; then one kick. Returns frames queued.
    pub fn transmit(&mut self, frames: &mut Vec<Frame>) -> usize {
        if frames.is_empty() {
            return 0;
        }
        self.complete();
        let room = self.tx.nb_free(frames.len() as u32) as usize;
        let n = room.min(frames.len());
        self.scratch.clear();
        let mut bytes = 0u64;
        for f in frames.drain(..n) {
            bytes += f.len() as u64;
            self.scratch.push(f.into_desc());
        }
        // Safety: each descriptor comes from a token given up just above, so
        // it is the sole reference to its chunk, with its length recorded.
        let queued = unsafe { self.tx.produce(&self.scratch) };
        // `nb_free` promised the room; anything not queued goes back.
        for d in &self.scratch[queued..] {
            self.pool.put_desc(d);
        }
        self.stats.tx_ring_full += (n - queued + frames.len()) as u64;
        for f in frames.drain(..) {
            self.pool.free(f);
        }
        self.tx_outstanding += queued;
        self.stats.tx_frames += queued as u64;
        self.stats.tx_bytes += bytes;
        if queued > 0 && (!self.zero_copy || self.tx.needs_wakeup()) {
            self.kick();
        }
        self.complete();
        queued
    }

    /// Append up to `max` (at most 256) received frames to `out`; also
    /// recycles completed TX frames and refills the fill ring.
    pub fn receive(&mut self, out: &mut Vec<Frame>, max: usize) -> usize {
        self.flush();
        self.pool.reclaim_orphans();
        let max = max.min(LANDING);
        // Safety: the kernel hands over each received chunk exactly once;
        // the token made from it becomes its sole owner.
        let n = unsafe { self.rx.consume(&mut self.landing[..max]) };
        let mut got = 0;
        for i in 0..n {
            let d = self.landing[i];
            match self.pool.wrap_rx(d) {
                Some(f) => {
                    self.stats.rx_bytes += f.len() as u64;
                    prefetch_frame(crate::phy::FrameBuf::data(&f));
                    out.push(f);
                    got += 1;
                }
                None => self.stats.rx_invalid += 1,
            }
        }
        self.stats.rx_frames += got as u64;
        self.refill();
        if n == 0 && self.fill.needs_wakeup() && self.poll == PollMode::Busy {
            // The driver waits for a wakeup before it uses the fill ring.
            // Safety: zero-length non-blocking recvfrom on our own socket.
            unsafe {
                libc::recvfrom(
                    self.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        got
    }
}

/// Starts loading a received frame: its first two cache lines (headers and
/// a small payload) into L1, the rest into L2, so a batch's loads overlap.
/// In copy mode the kernel wrote the frame on another core, and without
/// this each frame stalled its first reader (the checksum) for cross-core
/// transfers in turn: most of that function's time in a request/response
/// profile (headers only: tcp-crr on both ends ~255k -> ~300k/s), and a
/// whole frame's worth in bulk transfers (the rest too: tcp-stream on both
/// ends 9.2 -> 9.8 Gbit/s, alternating runs).
#[inline]
fn prefetch_frame(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
        let p = data.as_ptr() as *const i8;
        // Safety: SSE is part of the x86_64 baseline, and a prefetch is a
        // hint that never faults or reads into the program (every address
        // lies inside the frame anyway).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if data.len() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
            let mut off = 128;
            while off < data.len() {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off));
                off += 64;
            }
        }
    }
}

/// Whether the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
fn xdp_zero_copy(fd: RawFd) -> Result<bool, XskError> {
    const XDP_OPTIONS: libc::c_int = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // Safety: `opts` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            XDP_OPTIONS,
            &mut opts as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(XskError::Sys(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(opts & XDP_OPTIONS_ZEROCOPY != 0)
}

impl Link for XdpLink {
    type Frame = Frame;

    fn recv_batch(&mut self, _now: Instant, out: &mut Vec<Frame>, max: usize) -> usize {
        self.receive(out, max)
    }

    fn alloc_tx(&mut self) -> Option<Frame> {
        if self.pool.free_len() == 0 {
            self.complete();
        }
        self.pool.alloc()
    }

    fn send_batch(&mut self, _now: Instant, frames: &mut Vec<Frame>) {
        self.transmit(frames);
    }

    fn release(&mut self, frame: Frame) {
        self.stats.released += 1;
        self.pool.free(frame);
    }

    fn max_frame_len(&self) -> usize {
        self.max_frame
    }
}

/// libxdp opens the UMEM's socket (which the first socket reuses) without
/// `SOCK_CLOEXEC`, so a child spawned by any thread of the process would
/// inherit it and keep the socket, and its `xsks_map` entry, alive after
/// the link is dropped. Closing it on exec keeps the socket's life the
/// link's.
fn set_cloexec(fd: RawFd) -> Result<(), XskError> {
    // Safety: F_GETFD/F_SETFD only read and write the descriptor's flags;
    // `fd` is the open socket the caller owns.
    let r = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        }
    };
    if r < 0 {
        return Err(XskError::Socket(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(())
}
