//! CUBIC congestion control (RFC 9438), in bytes.
//!
//! Owns cwnd, ssthresh and the CUBIC epoch state (W_max, K, the epoch start,
//! the Reno-friendly estimate W_est). Loss detection and the recovery point
//! stay with the connection, exactly as for NewReno; during fast recovery the
//! window is inflated and deflated the NewReno way (RFC 9438 §4.6 leaves fast
//! recovery to RFC 6582 / RFC 6675), only the reduction factor differs.
//!
//! The cubic function works in segments (RFC 9438 §4.1 defines C in
//! segments/s^3); the window it yields is converted to bytes with the MSS of
//! the call. Time comes from the caller's `now`.

use super::Controller;
use crate::time::{Duration, Instant};

/// β_cubic, the multiplicative decrease factor (RFC 9438 §4.6).
pub const BETA_CUBIC: f64 = 0.7;
/// C, the cubic scaling constant in segments/s^3 (RFC 9438 §5.1).
pub const C_CUBIC: f64 = 0.4;
/// α_cubic = 3 (1 - β) / (1 + β) (RFC 9438 §4.3, equation 4).
pub const ALPHA_CUBIC: f64 = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC);

/// RFC 9438 §4.2 equation 2: K = cbrt((W_max - cwnd_epoch) / C), in seconds,
/// with windows in segments. Zero when the epoch starts at or above W_max.
pub fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    if cwnd_epoch >= w_max {
        0.0
    } else {
        ((w_max - cwnd_epoch) / C_CUBIC).cbrt()
    }
}

/// RFC 9438 §4.2 equation 1: W_cubic(t) = C (t - K)^3 + W_max, in segments.
pub fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    let d = t - k;
    C_CUBIC * d * d * d + w_max
}

#[derive(Debug, Clone)]
pub struct Cubic {
    /// cwnd, bytes.
    cwnd: usize,
    /// ssthresh, bytes; "arbitrarily high" until the first congestion event.
    ssthresh: usize,
    /// W_max: the window just before the last reduction, in segments.
    w_max: f64,
    /// cwnd_prior: cwnd before the last reduction, segments (RFC 9438 §4.3:
    /// α_cubic becomes 1 once W_est reaches it).
    cwnd_prior: f64,
    /// K of the current epoch, seconds.
    k: f64,
    /// Start of the current congestion-avoidance epoch (RFC 9438 §4.2 t=0).
    epoch_start: Option<Instant>,
    /// W_est: the Reno-friendly window estimate, segments (RFC 9438 §4.3).
    w_est: f64,
    /// The last congestion event was a timeout: the next epoch uses K = 0
    /// and W_max = cwnd_epoch (RFC 9438 §4.8).
    after_rto: bool,
    /// Fast convergence on (RFC 9438 §4.7).
    fast_convergence: bool,
    /// Smoothed RTT, for W_cubic(t + RTT) (RFC 9438 §4.2 target).
    srtt: Duration,
    /// Largest flight seen since the last ACK, bytes: tells whether the
    /// window was used (RFC 9438 §5.8 application-limited periods).
    max_flight: usize,
    /// Time of the previous ACK, to shift the epoch over idle periods.
    last_ack: Option<Instant>,
    /// Bytes acknowledged in slow start not yet credited (byte counting).
    bytes_acked: usize,
}

impl Cubic {
    pub fn new(mss: usize, initial_segments: usize) -> Cubic {
        Cubic {
            cwnd: mss * initial_segments.max(1),
            ssthresh: usize::MAX,
            w_max: 0.0,
            cwnd_prior: 0.0,
            k: 0.0,
            epoch_start: None,
            w_est: 0.0,
            after_rto: false,
            fast_convergence: true,
            srtt: Duration::ZERO,
            max_flight: 0,
            last_ack: None,
            bytes_acked: 0,
        }
    }

    /// Turn fast convergence (RFC 9438 §4.7) on or off; on by default.
    pub fn set_fast_convergence(&mut self, on: bool) {
        self.fast_convergence = on;
    }

    /// The connection's smoothed RTT, used for the W_cubic(t + RTT) target.
    pub fn set_srtt(&mut self, srtt: Duration) {
        self.srtt = srtt;
    }

    /// W_max in segments, for inspection.
    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    /// K of the current epoch in seconds (zero before an epoch starts).
    pub fn k(&self) -> f64 {
        self.k
    }

    /// W_est in segments, for inspection.
    pub fn w_est(&self) -> f64 {
        self.w_est
    }

    /// The multiplicative decrease shared by loss and timeout (RFC 9438
    /// §4.6, with fast convergence §4.7). Returns the new ssthresh.
    ///
    /// ssthresh is β_cubic times cwnd, not FlightSize, as in Linux; RFC
    /// 9438 §4.6 allows it for an implementation that keeps cwnd from
    /// growing while the flight is below it, as `on_ack` does. On a short
    /// path FlightSize at the moment of detection is often only the burst
    /// sent since the last ACK (the ACKs before it acknowledged the rest),
    /// well below a cwnd the sender does fill; basing the reduction on it
    /// cut the window by far more than β on every loss.
    fn reduce(&mut self, in_flight: usize, mss: usize) -> usize {
        let in_flight = in_flight.max(self.cwnd);
        let cwnd_seg = self.cwnd as f64 / mss as f64;
        // §4.7: a flow whose window stopped below the previous W_max
        // releases bandwidth faster for new flows.
        self.w_max = if self.fast_convergence && cwnd_seg < self.w_max {
            cwnd_seg * (1.0 + BETA_CUBIC) / 2.0
        } else {
            cwnd_seg
        };
        self.cwnd_prior = cwnd_seg;
        // §4.6: ssthresh = max(cwnd, flight_size) * β_cubic (see above),
        // at least 2 segments.
        let ss = (in_flight as f64 * BETA_CUBIC) as usize;
        self.ssthresh = ss.max(2 * mss);
        self.epoch_start = None;
        self.bytes_acked = 0;
        self.ssthresh
    }

    /// Congestion avoidance for one ACK of `acked` bytes (RFC 9438 §4.2-§4.5).
    fn avoidance(&mut self, now: Instant, acked: usize, mss: usize) {
        let mss_f = mss as f64;
        let cwnd_seg = self.cwnd as f64 / mss_f;
        let start = match self.epoch_start {
            Some(s) => s,
            None => {
                // A new epoch (§4.2): K from W_max and the current window;
                // W_est starts at the current window (§4.3).
                if self.after_rto || cwnd_seg >= self.w_max {
                    // §4.8 after a timeout, and a window already past the old
                    // maximum: the plateau is here, K = 0.
                    self.w_max = cwnd_seg;
                    self.after_rto = false;
                }
                self.k = cubic_k(self.w_max, cwnd_seg);
                self.w_est = cwnd_seg;
                self.epoch_start = Some(now);
                now
            }
        };
        let t = (now - start).as_secs_f64();
        let segs_acked = acked as f64 / mss_f;

        // §4.3 Reno-friendly estimate; α becomes 1 once W_est reaches the
        // window before the last reduction.
        let alpha = if self.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA_CUBIC
        };
        self.w_est += alpha * segs_acked / cwnd_seg;

        let w_cubic_t = w_cubic(t, self.k, self.w_max);
        let new_seg = if w_cubic_t < self.w_est {
            // §4.3: Reno-friendly region.
            self.w_est
        } else {
            // §4.4/§4.5: concave or convex region. The target is W_cubic one
            // RTT ahead, clamped to [cwnd, 1.5 cwnd]; cwnd grows by
            // (target - cwnd) / cwnd per acknowledged segment.
            let target = w_cubic(t + self.srtt.as_secs_f64(), self.k, self.w_max)
                .clamp(cwnd_seg, 1.5 * cwnd_seg);
            cwnd_seg + (target - cwnd_seg) * segs_acked / cwnd_seg
        };
        let new_bytes = (new_seg * mss_f) as usize;
        // Never shrink in avoidance; rounding must not lose growth either.
        self.cwnd = self.cwnd.max(new_bytes);
    }
}

impl Controller for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_sent(&mut self, _now: Instant, _bytes: usize, in_flight: usize) {
        self.max_flight = self.max_flight.max(in_flight);
    }

    fn on_ack(&mut self, now: Instant, acked: usize, in_flight: usize, mss: usize) {
        let flight = self.max_flight.max(in_flight);
        self.max_flight = 0;
        let previous = self.last_ack.replace(now);
        // RFC 9438 §5.8 (and RFC 7661's spirit): the window only grows while
        // it is used. An application-limited ACK does not grow cwnd, and the
        // elapsed time does not count toward t: the epoch moves forward.
        let cwnd_limited = flight + mss > self.cwnd;
        if !cwnd_limited {
            if let (Some(start), Some(prev)) = (self.epoch_start, previous) {
                self.epoch_start = Some(start + (now - prev));
            }
            return;
        }
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 9438 §4.10 / RFC 5681 (2)), byte counting with
            // at most one SMSS per ACK.
            self.cwnd = self.cwnd.saturating_add(acked.min(mss));
            self.bytes_acked = 0;
        } else {
            self.avoidance(now, acked, mss);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 9438 §4.6, then fast recovery as RFC 6582 §3.2 step 2.
        let ss = self.reduce(in_flight, mss);
        self.cwnd = ss + 3 * mss;
    }

    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        // RFC 5681 §3.2 step 4.
        self.cwnd = self.cwnd.saturating_add(mss);
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        // RFC 6582 §3.2 step 3 partial-ACK deflation.
        self.cwnd = self.cwnd.saturating_sub(acked).max(mss);
        if acked >= mss {
            self.cwnd += mss;
        }
    }

    fn on_recovery_exit(&mut self, _in_flight: usize, _mss: usize) {
        // RFC 6582 §3.2 step 3 full ACK, option (2): cwnd = ssthresh
        // (= β_cubic * W_max, RFC 9438 §4.6), as Linux ends a recovery;
        // option (1) would collapse the window to FlightSize + SMSS when
        // the full ACK covers nearly everything sent (see NewReno). The
        // next ACK in avoidance starts a new CUBIC epoch from here.
        self.cwnd = self.ssthresh;
        self.epoch_start = None;
    }

    fn on_rto(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        // RFC 9438 §4.8: ssthresh with β_cubic, cwnd to the loss window of
        // one segment (RFC 5681 §3.1); the next epoch starts with K = 0.
        self.reduce(in_flight, mss);
        self.cwnd = mss;
        self.after_rto = true;
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    /// An ACK while the whole window is in flight (cwnd-limited).
    fn cwnd_limited_ack(c: &mut Cubic, now: Instant, acked: usize) {
        let w = c.window();
        c.on_ack(now, acked, w, MSS);
    }

    #[test]
    fn constants_match_rfc() {
        // α = 3 (1 - 0.7) / (1 + 0.7) = 0.9 / 1.7 = 0.529411...
        assert!(close(ALPHA_CUBIC, 0.9 / 1.7, 1e-12));
        assert!(close(ALPHA_CUBIC, 0.5294, 1e-4));
    }

    #[test]
    fn k_and_w_cubic_worked_numbers() {
        // W_max = 100, cwnd_epoch = 70: K = cbrt(30 / 0.4) = cbrt(75) = 4.2172 s.
        let k = cubic_k(100.0, 70.0);
        assert!(close(k, 4.2172, 1e-4), "K = {k}");
        // W_cubic(0) = 0.4 (-K)^3 + 100 = 100 - 30 = 70 (the epoch window).
        assert!(close(w_cubic(0.0, k, 100.0), 70.0, 1e-9));
        // The plateau: W_cubic(K) = W_max.
        assert!(close(w_cubic(k, k, 100.0), 100.0, 1e-9));
        // Convex side: t = K + 2 s -> 100 + 0.4 * 8 = 103.2.
        assert!(close(w_cubic(k + 2.0, k, 100.0), 103.2, 1e-9));
        // Epoch at or above W_max: K = 0.
        assert_eq!(cubic_k(50.0, 60.0), 0.0);
    }

    #[test]
    fn loss_reduces_by_beta_and_sets_w_max() {
        let mut c = Cubic::new(MSS, 100);
        // cwnd = 100 segments, flight 100 segments.
        c.on_congestion_event(ms(0), 100 * MSS, MSS);
        // ssthresh = 0.7 * 100000 = 70000; W_max = 100 (first loss, no
        // fast convergence since cwnd >= W_max = 0).
        assert_eq!(c.ssthresh(), 70_000);
        assert!(close(c.w_max(), 100.0, 1e-9));
        // Fast recovery starts at ssthresh + 3 SMSS.
        assert_eq!(c.window(), 73_000);
        c.on_dup_ack_in_recovery(MSS);
        assert_eq!(c.window(), 74_000);
        c.on_partial_ack(5 * MSS, MSS);
        assert_eq!(c.window(), 70_000, "74000 - 5000 + 1000");
        c.on_recovery_exit(80 * MSS, MSS);
        assert_eq!(c.window(), 70_000, "min(ssthresh, flight + SMSS)");
    }

    #[test]
    fn fast_convergence_worked_numbers() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(ms(0), 100 * MSS, MSS);
        c.on_recovery_exit(100 * MSS, MSS);
        // Second loss at cwnd = 70 < W_max = 100:
        // W_max = 70 * (1 + 0.7) / 2 = 59.5; ssthresh = 0.7 * 70000 = 49000.
        c.on_congestion_event(ms(10), 70 * MSS, MSS);
        assert!(close(c.w_max(), 59.5, 1e-9), "W_max = {}", c.w_max());
        assert_eq!(c.ssthresh(), 49_000);

        // Without fast convergence W_max is the window itself.
        let mut d = Cubic::new(MSS, 100);
        d.set_fast_convergence(false);
        d.on_congestion_event(ms(0), 100 * MSS, MSS);
        d.on_recovery_exit(100 * MSS, MSS);
        d.on_congestion_event(ms(10), 70 * MSS, MSS);
        assert!(close(d.w_max(), 70.0, 1e-9));
    }

    #[test]
    fn epoch_k_and_growth_toward_w_max() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(ms(0), 100 * MSS, MSS);
        c.on_recovery_exit(100 * MSS, MSS);
        assert_eq!(c.window(), 70_000);
        // First ACK in avoidance opens the epoch: K = cbrt(75) = 4.2172 s.
        cwnd_limited_ack(&mut c, ms(1000), MSS);
        assert!(close(c.k(), 4.2172, 1e-4), "K = {}", c.k());
        // Drive one window of ACKs per RTT of 200 ms for 4.2 s. At this RTT
        // the Reno-friendly estimate stays below W_cubic (W_est grows by
        // α = 0.53 segments per RTT: 70 + 0.53 * 36 = 89 at t = 7.2 s), so
        // the cubic curve governs: cwnd approaches W_max = 100 segments from
        // below (concave region).
        c.set_srtt(Duration::from_millis(200));
        let mut now = 1000;
        let mut last = c.window();
        while now < 1000 + 4200 {
            now += 200;
            let per_rtt = c.window() / MSS;
            for _ in 0..per_rtt {
                cwnd_limited_ack(&mut c, ms(now), MSS);
            }
            assert!(c.window() >= last, "avoidance never shrinks");
            last = c.window();
        }
        let segs = c.window() as f64 / MSS as f64;
        // W_cubic(4.4 + 0.2) = 100 + 0.4 (4.6 - 4.2172)^3 = 100.02.
        assert!(
            segs > 97.0 && segs < 101.0,
            "cwnd = {segs} segments at t ~ K"
        );
        // Past K the window grows convexly above W_max.
        while now < 1000 + 7200 {
            now += 200;
            let per_rtt = c.window() / MSS;
            for _ in 0..per_rtt {
                cwnd_limited_ack(&mut c, ms(now), MSS);
            }
        }
        let segs = c.window() as f64 / MSS as f64;
        // W_cubic(7.4) = 100 + 0.4 (7.4 - 4.2172)^3 = 112.90; the last RTT's
        // ACKs aim at it from the previous target W_cubic(7.2) = 110.6.
        assert!(c.w_est() < 95.0, "W_est = {}", c.w_est());
        assert!(segs > 110.0 && segs < 113.5, "cwnd = {segs} at t = K + 3 s");
    }

    #[test]
    fn reno_friendly_region_for_small_windows() {
        // Small W_max and long RTT: CUBIC grows slower than Reno would, so
        // W_est governs. W_max = 10, cwnd = 7: K = cbrt(7.5) = 1.957 s.
        let mut c = Cubic::new(MSS, 10);
        c.on_congestion_event(ms(0), 10 * MSS, MSS);
        c.on_recovery_exit(10 * MSS, MSS);
        assert_eq!(c.window(), 7_000);
        cwnd_limited_ack(&mut c, ms(0), MSS);
        assert!(close(c.k(), 7.5f64.cbrt(), 1e-9));
        // W_est after one ACK = 7 + α / 7 = 7.0756; W_cubic(0) = 7 so the
        // Reno-friendly estimate wins: cwnd = 7075 bytes.
        assert!(close(c.w_est(), 7.0 + ALPHA_CUBIC / 7.0, 1e-9));
        assert_eq!(c.window(), 7_075);
        // Ten RTTs of 1 s each (t stays on the concave side well past K for
        // W_cubic, but W_est grows ~α per RTT): W_est ~ 7 + 10 * 0.53 = 12.3
        // while W_cubic is bounded by the 1.5x clamp; cwnd tracks the max.
        let mut now = 0;
        for _ in 0..10 {
            now += 1000;
            let per_rtt = c.window() / MSS;
            for _ in 0..per_rtt {
                cwnd_limited_ack(&mut c, ms(now), MSS);
            }
        }
        assert!(c.window() as f64 / MSS as f64 >= c.w_est() - 0.01);
    }

    #[test]
    fn rto_reduces_to_one_segment_and_restarts_with_k_zero() {
        let mut c = Cubic::new(MSS, 40);
        c.on_rto(ms(0), 40 * MSS, MSS);
        // ssthresh = 0.7 * 40000 = 28000; cwnd = 1 SMSS.
        assert_eq!(c.ssthresh(), 28_000);
        assert_eq!(c.window(), MSS);
        // Slow start back to ssthresh: one SMSS per ACK.
        let mut now = 0;
        while c.window() < c.ssthresh() {
            now += 1;
            cwnd_limited_ack(&mut c, ms(now), MSS);
        }
        assert_eq!(c.window(), 28_000);
        // First avoidance ACK: §4.8, K = 0 and W_max = cwnd_epoch = 28.
        cwnd_limited_ack(&mut c, ms(now + 1), MSS);
        assert_eq!(c.k(), 0.0);
        assert!(close(c.w_max(), 28.0, 1e-9));
    }

    #[test]
    fn app_limited_does_not_grow_or_age_the_epoch() {
        let mut c = Cubic::new(MSS, 100);
        c.on_congestion_event(ms(0), 100 * MSS, MSS);
        c.on_recovery_exit(100 * MSS, MSS);
        cwnd_limited_ack(&mut c, ms(0), MSS);
        let w = c.window();
        // Ten seconds of ACKs with a tiny flight: no growth.
        for i in 1..=100 {
            c.on_ack(ms(i * 100), MSS, 5 * MSS, MSS);
        }
        assert_eq!(c.window(), w, "application-limited ACKs do not grow cwnd");
        // Now cwnd-limited again: t is about 0.1 s, not 10 s, so the growth
        // is the concave-region step, well under the 1.5x clamp a 10 s epoch
        // (W_cubic(10) = 100 + 0.4 * 5.78^3 = 177) would allow.
        cwnd_limited_ack(&mut c, ms(10_100), MSS);
        let grew = c.window() - w;
        assert!(grew < 200, "grew {grew} bytes on one ACK");
    }

    #[test]
    fn slow_start_counts_bytes_up_to_one_mss_per_ack() {
        let mut c = Cubic::new(MSS, 10);
        cwnd_limited_ack(&mut c, ms(1), 3 * MSS);
        assert_eq!(c.window(), 11 * MSS);
        cwnd_limited_ack(&mut c, ms(2), 500);
        assert_eq!(c.window(), 11 * MSS + 500);
    }

    #[test]
    fn reduction_is_from_cwnd_when_the_flight_is_smaller() {
        // cwnd 40 segments, of which only the last burst of 10 is still
        // unacknowledged when the loss is detected: ssthresh = 0.7 * 40.
        let mut c = Cubic::new(MSS, 40);
        c.on_congestion_event(ms(0), 10 * MSS, MSS);
        assert_eq!(c.ssthresh(), 28_000);
        // A flight above cwnd (limited transmit, a probe) counts.
        let mut c = Cubic::new(MSS, 40);
        c.on_rto(ms(0), 50 * MSS, MSS);
        assert_eq!(c.ssthresh(), 35_000);
    }

    #[test]
    fn ssthresh_floor_is_two_segments() {
        let mut c = Cubic::new(MSS, 2);
        c.on_congestion_event(ms(0), MSS, MSS);
        assert_eq!(c.ssthresh(), 2 * MSS);
    }
}
