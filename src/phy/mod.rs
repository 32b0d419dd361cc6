//! The batched frame link: one trait implemented by the AF_XDP socket
//! (`xdp::XdpLink`), by the in-memory pair used in tests and simulations, and
//! by wrappers that are links themselves (fault injector, pcap writer).
//!
//! Frames are owned tokens (`Link::Frame`): a received frame may be edited in
//! place and sent back (reflection, zero copy), a transmit frame comes from
//! `alloc_tx`, and every frame ends either in `send_batch` or in `release`.
//! A frame is never `Copy` or `Clone`, so it cannot be sent or freed twice.
//!
//! Implementations and wrappers here:
//! - [`memory`]: a deterministic in-memory pair of links with bounded queues,
//!   delay and a bandwidth limit, for tests and simulations;
//! - [`fault`]: a seeded fault injector around any link (drop, duplicate,
//!   reorder, delay, corrupt, bandwidth limit with tail drop);
//! - [`pcap`]: a wrapper writing every frame to a classic pcap stream;
//! - [`rng`]: the small seeded generator the simulations share.

pub mod fault;
pub mod memory;
pub mod pcap;
pub mod rng;

use crate::time::Instant;

/// A frame buffer owned by a link.
pub trait FrameBuf {
    /// The frame's bytes (the received frame, or what has been written).
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Resize the frame to `len` bytes; `len` must not exceed `capacity()`,
    /// longer values are clamped.
    fn set_len(&mut self, len: usize);
    /// Largest length this frame can hold.
    fn capacity(&self) -> usize;
}

/// A batched link of Ethernet frames.
pub trait Link {
    type Frame: FrameBuf;

    /// Append up to `max` received frames to `out`; returns how many.
    fn recv_batch(&mut self, now: Instant, out: &mut Vec<Self::Frame>, max: usize) -> usize;

    /// A free frame to build a transmission in, or `None` when none is free
    /// right now (the caller retries after the next `send_batch`/`recv_batch`).
    fn alloc_tx(&mut self) -> Option<Self::Frame>;

    /// Transmit every frame in `frames` (draining it), in order. Frames the
    /// link cannot queue are released and counted as drops, never leaked.
    fn send_batch(&mut self, now: Instant, frames: &mut Vec<Self::Frame>);

    /// Return a frame without transmitting it.
    fn release(&mut self, frame: Self::Frame);

    /// Largest Ethernet frame (header included, FCS excluded) the link carries.
    fn max_frame_len(&self) -> usize;

    /// The earliest time at which the link will have work without new input
    /// (a frame becoming receivable, a held frame due for release), so a
    /// simulation can jump its virtual clock there. `None` when nothing is
    /// scheduled or the link cannot tell (a real NIC).
    fn poll_at(&self) -> Option<Instant> {
        None
    }
}
