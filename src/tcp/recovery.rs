//! Loss-recovery rules shared by every congestion controller: the initial
//! window (RFC 6928), limited transmit (RFC 3042), and undoing a window
//! reduction that proved spurious (D-SACK per RFC 2883 §5 / RFC 3708, and
//! the Eifel detection of RFC 3522 with timestamps).
//!
//! Fast retransmit, the recovery point and partial ACKs (RFC 5681 §3.2,
//! RFC 6582 §3.2) live in the connection's ACK processing; this module owns
//! only the pieces above, as plain functions and one small undo record. It
//! never changes a window by itself: the connection applies its answers.

use super::congestion::Congestion;
use super::sack_scoreboard::Dsack;
use crate::wire::SeqNumber;

/// RFC 6928 §2: IW = min(10*MSS, max(2*MSS, 14600)), generalised to
/// `segments` (the 14600 bytes being 10 * 1460).
pub fn initial_window(mss: usize, segments: usize) -> usize {
    (segments * mss).min((2 * mss).max(segments * 1460))
}

/// RFC 3042 §2: on the first and second duplicate ACK outside recovery the
/// sender may send one new segment each, so the window it may fill is
/// cwnd + dup_acks * SMSS; cwnd itself is unchanged. The peer's window and
/// the availability of new data still apply (the caller's job).
pub fn limited_transmit_window(cwnd: usize, dup_acks: u32, in_recovery: bool, mss: usize) -> usize {
    if !in_recovery && (1..=2).contains(&dup_acks) {
        cwnd + dup_acks as usize * mss
    } else {
        cwnd
    }
}

/// The state saved when a congestion response reduced the window, to
/// restore it if every retransmission of the episode proves unnecessary.
#[derive(Debug, Clone, Default)]
pub struct Undo {
    /// The controller before the reduction (cwnd, ssthresh, W_max...).
    saved: Option<Congestion>,
    /// SND.UNA when the episode began: D-SACKs below it are older news.
    marker: SeqNumber,
    /// Retransmitted bytes not yet reported as duplicates by D-SACK.
    retrans_bytes: usize,
    /// RFC 3522 §3.1: the TSval of the episode's first retransmission.
    eifel: Eifel,
}

/// Where Eifel detection stands in an episode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Eifel {
    /// No retransmission yet.
    #[default]
    Waiting,
    /// The first retransmission carried this TSval.
    Armed(u32),
    /// Decided (or no timestamps): no further checks this episode.
    Done,
}

impl Undo {
    /// A reduction is about to happen (fast retransmit or RTO): remember the
    /// controller as it is now. A reduction inside an episode keeps the
    /// first saved state (the one before any reduction).
    pub fn on_reduction(&mut self, cc: &Congestion, snd_una: SeqNumber) {
        if self.saved.is_none() {
            self.saved = Some(cc.clone());
            self.marker = snd_una;
            self.retrans_bytes = 0;
            self.eifel = Eifel::Waiting;
        }
    }

    /// Whether an episode can still be undone.
    pub fn armed(&self) -> bool {
        self.saved.is_some()
    }

    /// `bytes` were retransmitted in this episode, with timestamp `tsval`.
    pub fn on_retransmit(&mut self, bytes: usize, tsval: Option<u32>) {
        if self.saved.is_some() {
            self.retrans_bytes += bytes;
            if self.eifel == Eifel::Waiting {
                self.eifel = tsval.map_or(Eifel::Done, Eifel::Armed);
            }
        }
    }

    /// A D-SACK arrived (RFC 2883 §5, RFC 3708 §3): the peer had these bytes
    /// already. When every retransmitted byte of the episode is reported so,
    /// the reduction was spurious: returns the controller to restore.
    pub fn on_dsack(&mut self, d: Dsack) -> Option<Congestion> {
        self.saved.as_ref()?;
        if d.left < self.marker || self.retrans_bytes == 0 {
            return None;
        }
        self.retrans_bytes = self.retrans_bytes.saturating_sub(d.right - d.left);
        if self.retrans_bytes == 0 {
            self.saved.take()
        } else {
            None
        }
    }

    /// Eifel detection (RFC 3522 §3.2): the first ACK for the retransmitted
    /// data echoes a TSecr older than the retransmission's TSval, so it was
    /// triggered by the original. Returns the controller to restore.
    pub fn on_ack_tsecr(&mut self, tsecr: u32) -> Option<Congestion> {
        let Eifel::Armed(tsval) = self.eifel else {
            return None;
        };
        self.eifel = Eifel::Done;
        if (tsecr.wrapping_sub(tsval) as i32) < 0 {
            self.retrans_bytes = 0;
            self.saved.take()
        } else {
            // The retransmission was needed.
            None
        }
    }

    /// The episode is over (recovery ended and the ACKs that could prove it
    /// spurious had their chance), or a new one replaces it.
    pub fn clear(&mut self) {
        *self = Undo::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::congestion::{Algorithm, Controller};
    use crate::time::Instant;

    const MSS: usize = 1000;

    #[test]
    fn initial_window_worked_numbers() {
        // MSS 1460: min(14600, max(2920, 14600)) = 14600.
        assert_eq!(initial_window(1460, 10), 14_600);
        // MSS 536: min(5360, max(1072, 14600)) = 5360.
        assert_eq!(initial_window(536, 10), 5_360);
        // Jumbo MSS 8960: min(89600, max(17920, 14600)) = 17920 (2 segments).
        assert_eq!(initial_window(8960, 10), 17_920);
    }

    #[test]
    fn limited_transmit_on_first_two_dup_acks() {
        assert_eq!(limited_transmit_window(10 * MSS, 0, false, MSS), 10 * MSS);
        assert_eq!(limited_transmit_window(10 * MSS, 1, false, MSS), 11 * MSS);
        assert_eq!(limited_transmit_window(10 * MSS, 2, false, MSS), 12 * MSS);
        // The third duplicate ACK is fast retransmit, not limited transmit.
        assert_eq!(limited_transmit_window(10 * MSS, 3, false, MSS), 10 * MSS);
        assert_eq!(limited_transmit_window(10 * MSS, 1, true, MSS), 10 * MSS);
    }

    fn reduced(alg: Algorithm) -> (Congestion, Undo) {
        let mut cc = Congestion::new(alg, MSS, 20);
        let mut undo = Undo::default();
        undo.on_reduction(&cc, SeqNumber(5000));
        cc.on_congestion_event(Instant::ZERO, 20 * MSS, MSS);
        (cc, undo)
    }

    #[test]
    fn dsack_of_every_retransmission_restores_the_window() {
        for alg in [Algorithm::NewReno, Algorithm::Cubic] {
            let (cc, mut undo) = reduced(alg);
            assert!(cc.window() < 20 * MSS);
            undo.on_retransmit(MSS, None);
            undo.on_retransmit(MSS, None);
            let d = |l: u32| Dsack {
                left: SeqNumber(l),
                right: SeqNumber(l + MSS as u32),
            };
            // An old duplicate from before the episode proves nothing.
            assert!(undo.on_dsack(d(1000)).is_none());
            assert!(
                undo.on_dsack(d(5000)).is_none(),
                "one of two retransmissions"
            );
            let restored = undo.on_dsack(d(6000)).expect("both were spurious");
            assert_eq!(restored.window(), 20 * MSS, "{alg}");
            assert_eq!(restored.ssthresh(), usize::MAX, "{alg}");
            assert!(!undo.armed());
        }
    }

    #[test]
    fn eifel_timestamp_detection() {
        let (_, mut undo) = reduced(Algorithm::Cubic);
        undo.on_retransmit(MSS, Some(700));
        // The ACK echoes 650 < 700: it answers the original transmission.
        let restored = undo.on_ack_tsecr(650).expect("spurious");
        assert_eq!(restored.window(), 20 * MSS);

        let (_, mut undo) = reduced(Algorithm::Cubic);
        undo.on_retransmit(MSS, Some(700));
        assert!(
            undo.on_ack_tsecr(700).is_none(),
            "echo of the retransmission"
        );
        assert!(undo.on_ack_tsecr(650).is_none(), "decided once");
        // A later retransmission of the same episode does not re-arm it.
        undo.on_retransmit(MSS, Some(900));
        assert!(
            undo.on_ack_tsecr(800).is_none(),
            "only the first retransmission counts"
        );
    }

    #[test]
    fn nested_reduction_keeps_first_saved_state() {
        let (mut cc, mut undo) = reduced(Algorithm::NewReno);
        undo.on_reduction(&cc, SeqNumber(9000));
        cc.on_rto(Instant::ZERO, 10 * MSS, MSS);
        undo.on_retransmit(MSS, None);
        let restored = undo
            .on_dsack(Dsack {
                left: SeqNumber(5000),
                right: SeqNumber(6000),
            })
            .expect("spurious");
        assert_eq!(restored.window(), 20 * MSS);
    }
}
