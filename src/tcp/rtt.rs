//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! Owns SRTT, RTTVAR, the RTO and its exponential backoff. Karn's rule
//! (no samples from retransmitted segments) is the caller's job: it only
//! feeds samples it knows are unambiguous (timestamps, or a timed segment
//! that was never retransmitted).

use crate::time::Duration;

/// RFC 6298 clock granularity G; 1 ms matches the timestamp clock.
const GRANULARITY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// SRTT, `None` before the first sample (RFC 6298 §2.1).
    srtt: Option<Duration>,
    /// RTTVAR.
    rttvar: Duration,
    /// The RTO before backoff.
    rto: Duration,
    /// Number of consecutive timeouts; the RTO doubles with each (§5.5).
    backoff: u32,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial_rto.clamp(min_rto, max_rto),
            backoff: 0,
            min_rto,
            max_rto,
        }
    }

    /// A new RTT measurement R (RFC 6298 §2.2 and §2.3).
    pub fn on_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'.
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // RTO <- SRTT + max(G, K*RTTVAR), K = 4, then the bounds of §2.4/§2.5.
        self.rto = (srtt + (self.rttvar * 4).max(GRANULARITY)).clamp(self.min_rto, self.max_rto);
        // §5.7: a valid sample after backoff restarts from the computed RTO.
        self.backoff = 0;
    }

    /// The current RTO, backoff applied and bounded by the maximum.
    pub fn rto(&self) -> Duration {
        let shift = self.backoff.min(16);
        self.rto
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max_rto)
            .min(self.max_rto)
    }

    /// A retransmission timeout happened: back off (RFC 6298 §5.5).
    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forget the backoff, e.g. when an ACK for new data arrives without a
    /// usable sample.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_rttvar() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.on_sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        // 100 + 4*50 = 300 ms.
        assert_eq!(e.rto(), Duration::from_millis(300));
    }

    #[test]
    fn second_sample_smooths() {
        let mut e = est();
        e.on_sample(Duration::from_millis(100));
        e.on_sample(Duration::from_millis(200));
        // RTTVAR = 3/4*50 + 1/4*100 = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5.
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let mut e = est();
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_secs(2));
        for _ in 0..40 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.on_sample(Duration::from_millis(10));
        assert_eq!(e.backoff(), 0);
        // 10 + 4*5 = 30 ms, raised to the 200 ms minimum.
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
