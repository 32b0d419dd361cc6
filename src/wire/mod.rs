//! Packet formats as typed zero-copy views over byte slices plus `Repr`
//! structs with `parse` / `emit` / `buffer_len`.
//!
//! Contract: `new_checked` on untrusted bytes returns a [`WireError`] saying
//! what was wrong and never panics, for any input; after it succeeds, no
//! accessor of the view panics. `emit` writes exactly `buffer_len` bytes.

pub mod seq;
pub mod tcp;

pub use seq::SeqNumber;
