//! Congestion control behind a small trait, dispatched by an enum on the hot
//! path (no trait objects).
//!
//! The connection owns loss detection (duplicate-ACK counting, the recovery
//! point, the retransmission timer); a controller owns only the window
//! arithmetic: cwnd and ssthresh in bytes.

mod newreno;

pub use newreno::NewReno;

use crate::time::Instant;

/// What a congestion controller reacts to. All sizes are in bytes.
pub trait Controller {
    /// The congestion window.
    fn window(&self) -> usize;
    /// `bytes` of new data (or a retransmission) left the sender.
    fn on_sent(&mut self, now: Instant, bytes: usize, in_flight: usize);
    /// An ACK acknowledged `acked` new bytes outside recovery.
    fn on_ack(&mut self, now: Instant, acked: usize, in_flight: usize, mss: usize);
    /// Loss detected by duplicate ACKs: enter fast recovery.
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize, mss: usize);
    /// A further duplicate ACK while in fast recovery.
    fn on_dup_ack_in_recovery(&mut self, mss: usize);
    /// A partial ACK (RFC 6582 §3.2 step 3) acknowledging `acked` bytes.
    fn on_partial_ack(&mut self, acked: usize, mss: usize);
    /// The recovery point was acknowledged: leave fast recovery.
    fn on_recovery_exit(&mut self, in_flight: usize, mss: usize);
    /// The retransmission timer expired.
    fn on_rto(&mut self, now: Instant, in_flight: usize, mss: usize);
    /// Slow-start threshold, for inspection.
    fn ssthresh(&self) -> usize;
}

/// The algorithms a connection can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    NewReno,
}

/// Enum dispatch over the controllers.
#[derive(Debug, Clone)]
pub enum Congestion {
    NewReno(NewReno),
}

impl Congestion {
    pub fn new(alg: Algorithm, mss: usize, initial_segments: usize) -> Congestion {
        match alg {
            Algorithm::NewReno => Congestion::NewReno(NewReno::new(mss, initial_segments)),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Congestion::NewReno($c) => $e,
        }
    };
}

impl Controller for Congestion {
    fn window(&self) -> usize {
        dispatch!(self, c => c.window())
    }
    fn on_sent(&mut self, now: Instant, bytes: usize, in_flight: usize) {
        dispatch!(self, c => c.on_sent(now, bytes, in_flight))
    }
    fn on_ack(&mut self, now: Instant, acked: usize, in_flight: usize, mss: usize) {
        dispatch!(self, c => c.on_ack(now, acked, in_flight, mss))
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize, mss: usize) {
        dispatch!(self, c => c.on_congestion_event(now, in_flight, mss))
    }
    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        dispatch!(self, c => c.on_dup_ack_in_recovery(mss))
    }
    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        dispatch!(self, c => c.on_partial_ack(acked, mss))
    }
    fn on_recovery_exit(&mut self, in_flight: usize, mss: usize) {
        dispatch!(self, c => c.on_recovery_exit(in_flight, mss))
    }
    fn on_rto(&mut self, now: Instant, in_flight: usize, mss: usize) {
        dispatch!(self, c => c.on_rto(now, in_flight, mss))
    }
    fn ssthresh(&self) -> usize {
        dispatch!(self, c => c.ssthresh())
    }
}
