//! NewReno window arithmetic: slow start and congestion avoidance (RFC 5681
//! §3.1), fast retransmit / fast recovery (RFC 5681 §3.2, RFC 6582), an
//! initial window of 10 segments (RFC 6928).

use super::Controller;
use crate::time::Instant;

#[derive(Debug, Clone)]
pub struct NewReno {
    /// cwnd, bytes.
    cwnd: usize,
    /// ssthresh, bytes; "arbitrarily high" at first (RFC 5681 §3.1).
    ssthresh: usize,
    /// Bytes acknowledged since cwnd last grew in congestion avoidance.
    bytes_acked: usize,
}

impl NewReno {
    pub fn new(mss: usize, initial_segments: usize) -> NewReno {
        NewReno {
            cwnd: mss * initial_segments.max(1),
            ssthresh: usize::MAX,
            bytes_acked: 0,
        }
    }

    /// RFC 5681 (4): ssthresh = max(FlightSize / 2, 2*SMSS).
    fn halve(in_flight: usize, mss: usize) -> usize {
        (in_flight / 2).max(2 * mss)
    }
}

impl Controller for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_sent(&mut self, _now: Instant, _bytes: usize, _in_flight: usize) {}

    fn on_ack(&mut self, _now: Instant, acked: usize, _in_flight: usize, mss: usize) {
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 (2)), with appropriate byte counting
            // bounded to one SMSS per ACK.
            self.cwnd = self.cwnd.saturating_add(acked.min(mss));
        } else {
            // Congestion avoidance: one SMSS per cwnd of acknowledged bytes
            // (RFC 5681 (3), byte-counting variant).
            self.bytes_acked += acked;
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 6582 §3.2 step 2 / RFC 5681 §3.2 steps 2-3.
        self.ssthresh = Self::halve(in_flight, mss);
        self.cwnd = self.ssthresh + 3 * mss;
        self.bytes_acked = 0;
    }

    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        // RFC 5681 §3.2 step 4: inflate by one SMSS per further duplicate.
        self.cwnd = self.cwnd.saturating_add(mss);
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        // RFC 6582 §3.2 step 3: deflate by the amount acknowledged, add back
        // one SMSS if that amount was at least one SMSS.
        self.cwnd = self.cwnd.saturating_sub(acked).max(mss);
        if acked >= mss {
            self.cwnd += mss;
        }
    }

    fn on_recovery_exit(&mut self, _in_flight: usize, _mss: usize) {
        // RFC 6582 §3.2 step 3, full ACK, option (2): cwnd = ssthresh, as
        // Linux ends a recovery. Option (1), min(ssthresh, FlightSize +
        // SMSS), guards against a burst but collapses the window whenever
        // the full ACK covers nearly everything sent (the usual case on a
        // short path, where the data sent during recovery is acknowledged
        // by the same ACK): a slow-start restart after every loss.
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 5681 (4) and: cwnd = loss window = 1 SMSS.
        self.ssthresh = Self::halve(in_flight, mss);
        self.cwnd = mss;
        self.bytes_acked = 0;
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T: Instant = Instant::ZERO;

    #[test]
    fn slow_start_then_avoidance() {
        let mut c = NewReno::new(MSS, 10);
        assert_eq!(c.window(), 10 * MSS);
        c.on_ack(T, 1500, 0, MSS);
        assert_eq!(c.window(), 11 * MSS, "at most one SMSS per ACK");
        c.on_rto(T, 20 * MSS, MSS);
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 10 * MSS);
        for _ in 0..9 {
            c.on_ack(T, MSS, 0, MSS);
        }
        assert_eq!(c.window(), 10 * MSS);
        // Avoidance: 10 SMSS of ACKs grow cwnd by one SMSS.
        for _ in 0..9 {
            c.on_ack(T, MSS, 0, MSS);
        }
        assert_eq!(c.window(), 10 * MSS);
        c.on_ack(T, MSS, 0, MSS);
        assert_eq!(c.window(), 11 * MSS);
    }

    #[test]
    fn fast_recovery_arithmetic() {
        let mut c = NewReno::new(MSS, 10);
        c.on_congestion_event(T, 8 * MSS, MSS);
        assert_eq!(c.ssthresh(), 4 * MSS);
        assert_eq!(c.window(), 7 * MSS);
        c.on_dup_ack_in_recovery(MSS);
        assert_eq!(c.window(), 8 * MSS);
        c.on_partial_ack(3 * MSS, MSS);
        assert_eq!(c.window(), 6 * MSS);
        // Option (2) of RFC 6582 §3.2 step 3: ssthresh, whatever the flight.
        c.on_recovery_exit(0, MSS);
        assert_eq!(c.window(), 4 * MSS);
        c.on_congestion_event(T, MSS, MSS);
        assert_eq!(c.ssthresh(), 2 * MSS, "never below 2 SMSS");
    }
}
