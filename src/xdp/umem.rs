//! The UMEM: one registered memory area cut into equal frames, and the owned
//! [`Frame`] token that lends one of them to the rest of the stack.
//!
//! Ownership of a frame moves between four places: the free list here, the
//! kernel (fill or TX ring, until it comes back on the RX or completion
//! ring), and the application (a `Frame`). A `Frame` is not `Copy` or
//! `Clone`, so a frame has exactly one owner and cannot be queued or freed
//! twice; a `Frame` dropped outside the link goes back to the pool through
//! the shared orphan list instead of leaking. Each `Frame` keeps the UMEM
//! mapping alive (an `Arc`), so a frame outliving its socket is still valid
//! memory.

use std::fmt;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use xsk_rs::config::{FrameSize, QueueSize, UmemConfig as XskUmemConfig};
use xsk_rs::{FrameDesc, Umem};

use crate::phy::FrameBuf;

/// Bytes the kernel reserves in front of each received packet.
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// UMEM geometry. Frame size is a power of two between 2048 and the page
/// size (the kernel's aligned-chunk mode); ring sizes are powers of two.
/// A frame holds `frame_size - 256 - frame_headroom` bytes of packet: 1792
/// with the default 2048, enough for a 1500-byte MTU; use 4096 for MTUs up
/// to 3826. Longer packets are dropped by the kernel (no multi-buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Number of frames in the UMEM.
    pub frame_count: u32,
    /// Bytes per frame (chunk).
    pub frame_size: u32,
    /// Extra headroom reserved in front of packet data, beyond the kernel's
    /// `XDP_PACKET_HEADROOM`.
    pub frame_headroom: u32,
    /// Fill ring size: the frames the kernel can receive into before the
    /// worker returns more. The kernel takes them in ring order, so every
    /// frame on the ring is touched once per ring's worth of packets; a
    /// ring of 512 keeps that working set (~0.8 MiB) in cache where 2048
    /// did not (tcp-stream on both ends over veth: 6.7–7.2 → 8.0–8.5
    /// Gbit/s). With 512, runs with 256 KiB and 1 MiB receive windows saw
    /// no `kernel_fill_empty` drops (a busy worker refills faster than a
    /// sender bursts); with 128, about 1000 per 4-s run. Raise it for
    /// wakeup-mode workers that sleep through bursts.
    pub fill_size: u32,
    /// Completion ring size.
    pub comp_size: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frame_count: 4096,
            frame_size: 2048,
            frame_headroom: 0,
            fill_size: 512,
            comp_size: 2048,
        }
    }
}

/// Why a UMEM or socket could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskError {
    /// A size in the configuration is invalid (not a power of two, too small).
    BadConfig(&'static str),
    /// Registering the UMEM failed (ENOMEM, EPERM: see `ulimit -l`).
    Umem(i32),
    /// Creating or binding the socket failed.
    Socket(i32),
    /// No interface with that name.
    NoSuchInterface,
    /// Inserting the socket into `xsks_map` failed.
    Map(super::maps::MapError),
    /// Another syscall failed.
    Sys(i32),
}

impl fmt::Display for XskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XskError::BadConfig(why) => write!(f, "bad AF_XDP configuration: {why}"),
            XskError::Umem(e) => write!(f, "UMEM registration failed (errno {e})"),
            XskError::Socket(e) => write!(f, "AF_XDP socket creation failed (errno {e})"),
            XskError::NoSuchInterface => write!(f, "no such interface"),
            XskError::Map(e) => write!(f, "{e}"),
            XskError::Sys(e) => write!(f, "syscall failed (errno {e})"),
        }
    }
}

impl std::error::Error for XskError {}

/// The errno at the bottom of an xsk-rs error chain.
pub(crate) fn errno_in(e: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error().unwrap_or(libc::EIO);
        }
        cur = err.source();
    }
    libc::EIO
}

/// What the frames share: the mapping (kept alive by the `Umem` handle) and
/// the list where frames dropped outside the link land.
pub(crate) struct Shared {
    pub(crate) umem: Umem,
    orphans: Mutex<Vec<FrameDesc>>,
    orphan_count: AtomicUsize,
}

/// An owned UMEM frame: a view of received bytes, or a buffer to build a
/// transmission in. See the module docs for the ownership rules.
pub struct Frame {
    desc: FrameDesc,
    /// Start of the frame's data in the mapping.
    ptr: NonNull<u8>,
    len: u32,
    cap: u32,
    home: Arc<Shared>,
}

// Safety: a `Frame` is the only owner of its bytes (the kernel has given the
// chunk up and no other `Frame` points into it); the mapping stays alive as
// long as `home` does. Moving it to another thread moves that ownership.
unsafe impl Send for Frame {}
// Safety: `&Frame` only gives shared (read-only) access to its bytes.
unsafe impl Sync for Frame {}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("addr", &self.desc.addr())
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl Frame {
    /// The frame's offset in the UMEM.
    pub fn addr(&self) -> usize {
        self.desc.addr()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Give up the token without returning the frame to the orphan list:
    /// the caller takes over the frame's descriptor (to a ring or the free
    /// list), with the length written into it.
    pub(crate) fn into_desc(self) -> FrameDesc {
        let this = std::mem::ManuallyDrop::new(self);
        let len = this.len as usize;
        // Safety: `this` is never used again and never dropped, so each
        // field is moved out exactly once.
        let home = unsafe { std::ptr::read(&this.home) };
        let mut desc = this.desc;
        // Safety: we own the frame (no other view of its bytes exists), so a
        // temporary mutable view to record the length aliases nothing.
        unsafe { home.umem.data_mut(&mut desc).cursor().set_pos(len) };
        drop(home);
        desc
    }
}

impl FrameBuf for Frame {
    fn data(&self) -> &[u8] {
        // Safety: `ptr..ptr+len` lies inside this frame's chunk of the live
        // mapping (len <= cap, checked when the frame was made), and the
        // token owns the chunk, so nothing writes it while `&self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len as usize) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // Safety: as in `data`, and `&mut self` makes this view unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len as usize) }
    }

    fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap as usize) as u32;
    }

    fn capacity(&self) -> usize {
        self.cap as usize
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // Dropped outside the link: hand the frame back rather than leak it.
        let mut o = self.home.orphans.lock().unwrap_or_else(|p| p.into_inner());
        o.push(self.desc);
        self.home.orphan_count.fetch_add(1, Ordering::Release);
    }
}

/// The UMEM and its free frames. Owned by one socket (one worker).
pub struct FramePool {
    shared: Arc<Shared>,
    base: NonNull<u8>,
    umem_len: usize,
    frame_size: usize,
    /// Pristine descriptor of each chunk, indexed by chunk number: the only
    /// way to name a chunk to xsk-rs.
    chunks: Vec<FrameDesc>,
    /// Free chunk numbers.
    free: Vec<u32>,
    cfg: UmemConfig,
}

// Safety: `base` points into the mapping owned by `shared`, which is Send and
// Sync; the pool is used by one thread at a time through `&mut self`.
unsafe impl Send for FramePool {}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("cfg", &self.cfg)
            .field("free", &self.free.len())
            .finish()
    }
}

impl FramePool {
    /// Map and register a UMEM of `cfg.frame_count` frames.
    pub fn new(cfg: UmemConfig) -> Result<FramePool, XskError> {
        let frame_size =
            FrameSize::new(cfg.frame_size).map_err(|_| XskError::BadConfig("frame size"))?;
        let fill = QueueSize::new(cfg.fill_size).map_err(|_| XskError::BadConfig("fill size"))?;
        let comp =
            QueueSize::new(cfg.comp_size).map_err(|_| XskError::BadConfig("completion size"))?;
        let xcfg = XskUmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(fill)
            .comp_queue_size(comp)
            .frame_headroom(cfg.frame_headroom)
            .build()
            .map_err(|_| XskError::BadConfig("frame size (power of two, room for headroom)"))?;
        let count =
            NonZeroU32::new(cfg.frame_count).ok_or(XskError::BadConfig("frame count is zero"))?;
        let (umem, chunks) =
            Umem::new(xcfg, count, false).map_err(|e| XskError::Umem(errno_in(&e)))?;
        // Safety: chunk 0 exists (count > 0); its pristine descriptor gives
        // the mapping's start once its offset is subtracted below.
        let first = unsafe { umem.data(&chunks[0]) }.as_ptr();
        // Safety: `first` is `addr` bytes into the mapping, so stepping back
        // `addr` bytes yields the mapping's start.
        let base = unsafe { first.sub(chunks[0].addr()) } as *mut u8;
        let base = NonNull::new(base).ok_or(XskError::Umem(libc::EFAULT))?;
        let n = chunks.len() as u32;
        Ok(FramePool {
            shared: Arc::new(Shared {
                umem,
                orphans: Mutex::new(Vec::new()),
                orphan_count: AtomicUsize::new(0),
            }),
            base,
            umem_len: cfg.frame_count as usize * cfg.frame_size as usize,
            frame_size: cfg.frame_size as usize,
            chunks,
            // Pop from the end: lowest addresses first.
            free: (0..n).rev().collect(),
            cfg,
        })
    }

    pub fn config(&self) -> &UmemConfig {
        &self.cfg
    }

    pub(crate) fn umem(&self) -> &Umem {
        &self.shared.umem
    }

    /// Free frames right now.
    pub fn free_len(&self) -> usize {
        self.free.len()
    }

    /// Bytes of packet data a frame from `alloc` can hold.
    pub fn tx_capacity(&self) -> usize {
        self.frame_size - (XDP_PACKET_HEADROOM + self.cfg.frame_headroom) as usize
    }

    fn chunk_of(&self, addr: usize) -> u32 {
        (addr / self.frame_size) as u32
    }

    /// Take a free chunk's descriptor (for the fill ring).
    pub(crate) fn take_desc(&mut self) -> Option<FrameDesc> {
        let c = self.free.pop()?;
        Some(self.chunks[c as usize])
    }

    /// Return a chunk the kernel gave back (RX, completion) or a token gave
    /// up. Addresses outside the UMEM are ignored: the kernel never returns
    /// one, and trusting it blindly would corrupt the free list.
    pub(crate) fn put_desc(&mut self, desc: &FrameDesc) {
        if desc.addr() < self.umem_len {
            self.free.push(self.chunk_of(desc.addr()));
        }
    }

    /// Wrap a descriptor the kernel handed over (RX ring) in a token; `None`
    /// if the kernel's address or length does not fit (never expected).
    pub(crate) fn wrap_rx(&mut self, desc: FrameDesc) -> Option<Frame> {
        let addr = desc.addr();
        let len = desc.lengths().data();
        let chunk_end = (addr / self.frame_size + 1) * self.frame_size;
        if addr >= self.umem_len || addr + len > chunk_end {
            self.put_desc(&desc);
            return None;
        }
        Some(self.wrap(desc, len, chunk_end - addr))
    }

    /// A free frame, length 0, for building a transmission.
    pub fn alloc(&mut self) -> Option<Frame> {
        if self.free.is_empty() {
            self.reclaim_orphans();
        }
        let desc = self.take_desc()?;
        let cap = self.tx_capacity();
        Some(self.wrap(desc, 0, cap))
    }

    fn wrap(&self, desc: FrameDesc, len: usize, cap: usize) -> Frame {
        // Safety: `desc.addr() + cap` is within the mapping (callers check
        // the address against `umem_len` and the chunk end), so the pointer
        // stays inside the allocation.
        let ptr = unsafe { self.base.add(desc.addr()) };
        Frame {
            desc,
            ptr,
            len: len as u32,
            cap: cap as u32,
            home: self.shared.clone(),
        }
    }

    /// Return a frame to the free list.
    pub fn free(&mut self, frame: Frame) {
        let d = frame.into_desc();
        self.put_desc(&d);
    }

    /// Take back frames that were dropped outside the link. Cheap when there
    /// are none (one atomic load, inlined into the link's receive loop).
    #[inline]
    pub fn reclaim_orphans(&mut self) -> usize {
        if self.shared.orphan_count.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.reclaim_orphans_slow()
    }

    fn reclaim_orphans_slow(&mut self) -> usize {
        let taken: Vec<FrameDesc> = {
            let mut o = self
                .shared
                .orphans
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.orphan_count.store(0, Ordering::Release);
            std::mem::take(&mut *o)
        };
        for d in &taken {
            self.put_desc(d);
        }
        taken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> UmemConfig {
        UmemConfig {
            frame_count: 64,
            frame_size: 2048,
            frame_headroom: 0,
            fill_size: 32,
            comp_size: 32,
        }
    }

    #[test]
    fn alloc_write_free_round_trip() {
        let mut pool = FramePool::new(small()).expect("UMEM (needs locked memory)");
        assert_eq!(pool.free_len(), 64);
        let mut f = pool.alloc().unwrap();
        assert_eq!(f.capacity(), 2048 - 256);
        f.set_len(10_000);
        assert_eq!(f.len(), 2048 - 256, "set_len clamps to capacity");
        f.set_len(5);
        f.data_mut().copy_from_slice(b"hello");
        assert_eq!(f.data(), b"hello");
        assert_eq!(pool.free_len(), 63);
        pool.free(f);
        assert_eq!(pool.free_len(), 64);
    }

    #[test]
    fn frames_are_distinct_and_exhaustion_is_none() {
        let mut pool = FramePool::new(small()).unwrap();
        let mut frames: Vec<Frame> = (0..64).map(|_| pool.alloc().unwrap()).collect();
        assert!(pool.alloc().is_none());
        let mut addrs: Vec<usize> = frames.iter().map(|f| f.addr()).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 64);
        for (i, f) in frames.iter_mut().enumerate() {
            f.set_len(4);
            f.data_mut().copy_from_slice(&(i as u32).to_le_bytes());
        }
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.data(), (i as u32).to_le_bytes());
        }
        for f in frames.drain(..) {
            pool.free(f);
        }
        assert_eq!(pool.free_len(), 64);
    }

    #[test]
    fn dropped_frames_come_back_as_orphans() {
        let mut pool = FramePool::new(small()).unwrap();
        let frames: Vec<Frame> = (0..64).map(|_| pool.alloc().unwrap()).collect();
        drop(frames);
        assert_eq!(pool.free_len(), 0);
        // alloc reclaims orphans when the free list is empty.
        assert!(pool.alloc().is_some());
        assert_eq!(pool.free_len(), 63);
    }

    #[test]
    fn frame_outlives_pool() {
        let mut pool = FramePool::new(small()).unwrap();
        let mut f = pool.alloc().unwrap();
        drop(pool);
        f.set_len(3);
        f.data_mut().copy_from_slice(b"abc");
        assert_eq!(f.data(), b"abc");
    }

    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        /// Return the i-th live frame (mod count) through the pool.
        Free(usize),
        /// Drop the i-th live frame (mod count) outside the pool.
        Drop(usize),
        Reclaim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Alloc),
            2 => any::<usize>().prop_map(Op::Free),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => Just(Op::Reclaim),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against a model: every frame is in exactly one place (free,
        /// lent out, or orphaned), live frames never share a chunk, and each
        /// keeps what was written into it.
        #[test]
        fn pool_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
            let total = 16usize;
            let mut pool = FramePool::new(UmemConfig { frame_count: total as u32, ..small() }).unwrap();
            let mut live: Vec<(Frame, u32)> = Vec::new();
            let mut orphaned = 0usize;
            let mut stamp = 0u32;
            for op in ops {
                match op {
                    Op::Alloc => {
                        // The model: an empty free list takes the orphans back first.
                        if pool.free_len() == 0 {
                            orphaned = 0;
                        }
                        match pool.alloc() {
                            Some(mut f) => {
                                stamp += 1;
                                f.set_len(4);
                                f.data_mut().copy_from_slice(&stamp.to_le_bytes());
                                live.push((f, stamp));
                            }
                            None => prop_assert_eq!(live.len(), total, "None only when all are lent out"),
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let (f, _) = live.swap_remove(i % live.len());
                        pool.free(f);
                    }
                    Op::Drop(i) if !live.is_empty() => {
                        drop(live.swap_remove(i % live.len()));
                        orphaned += 1;
                    }
                    Op::Reclaim => {
                        prop_assert_eq!(pool.reclaim_orphans(), orphaned);
                        orphaned = 0;
                    }
                    _ => {}
                }
                prop_assert_eq!(pool.free_len() + live.len() + orphaned, total);
                let mut addrs: Vec<usize> = live.iter().map(|(f, _)| f.addr()).collect();
                addrs.sort();
                addrs.dedup();
                prop_assert_eq!(addrs.len(), live.len(), "two live frames share a chunk");
                for (f, st) in &live {
                    prop_assert_eq!(f.data(), &st.to_le_bytes()[..]);
                }
            }
        }
    }

    #[test]
    fn bad_config_is_an_error() {
        let cfg = UmemConfig {
            frame_size: 3000,
            ..small()
        };
        assert!(matches!(FramePool::new(cfg), Err(XskError::BadConfig(_))));
        let cfg = UmemConfig {
            frame_count: 0,
            ..small()
        };
        assert!(matches!(FramePool::new(cfg), Err(XskError::BadConfig(_))));
    }
}
