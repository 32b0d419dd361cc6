//! Congestion control behind a small trait, dispatched by an enum on the hot
//! path (no trait objects).
//!
//! The connection owns loss detection (duplicate-ACK counting, the recovery
//! point, the retransmission timer); a controller owns only the window
//! arithmetic: cwnd and ssthresh in bytes.

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

use crate::time::{Duration, Instant};

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

/// The algorithms a connection can run; CUBIC is the default, as on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// RFC 5681 / RFC 6582.
    NewReno,
    /// RFC 9438.
    #[default]
    Cubic,
}

/// The name the CLI (`--cc`) and configuration use.
pub type CongestionAlgorithm = Algorithm;

impl Algorithm {
    /// The lower-case name, as accepted by [`str::parse`].
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::NewReno => "newreno",
            Algorithm::Cubic => "cubic",
        }
    }
}

/// An unknown congestion-control name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl core::fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown congestion control (expected newreno or cubic)")
    }
}

impl std::error::Error for UnknownAlgorithm {}

impl core::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Algorithm, UnknownAlgorithm> {
        if s.eq_ignore_ascii_case("newreno") || s.eq_ignore_ascii_case("reno") {
            Ok(Algorithm::NewReno)
        } else if s.eq_ignore_ascii_case("cubic") {
            Ok(Algorithm::Cubic)
        } else {
            Err(UnknownAlgorithm)
        }
    }
}

impl core::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Enum dispatch over the controllers.
#[derive(Debug, Clone)]
pub enum Congestion {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl Congestion {
    pub fn new(alg: Algorithm, mss: usize, initial_segments: usize) -> Congestion {
        match alg {
            Algorithm::NewReno => Congestion::NewReno(NewReno::new(mss, initial_segments)),
            Algorithm::Cubic => Congestion::Cubic(Cubic::new(mss, initial_segments)),
        }
    }

    /// The algorithm this controller runs.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Congestion::NewReno(_) => Algorithm::NewReno,
            Congestion::Cubic(_) => Algorithm::Cubic,
        }
    }

    /// A new smoothed RTT (CUBIC aims at W_cubic one RTT ahead).
    pub fn on_rtt_sample(&mut self, srtt: Duration) {
        if let Congestion::Cubic(c) = self {
            c.set_srtt(srtt);
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Congestion::NewReno($c) => $e,
            Congestion::Cubic($c) => $e,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_parse() {
        assert_eq!("newreno".parse::<Algorithm>(), Ok(Algorithm::NewReno));
        assert_eq!("CUBIC".parse::<Algorithm>(), Ok(Algorithm::Cubic));
        assert_eq!("bbr".parse::<Algorithm>(), Err(UnknownAlgorithm));
        assert_eq!(Algorithm::default(), Algorithm::Cubic);
        for a in [Algorithm::NewReno, Algorithm::Cubic] {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
            assert_eq!(Congestion::new(a, 1000, 10).algorithm(), a);
        }
    }
}
