//! The per-connection timer table (RFC 9293 §3.8, RFC 6298, RFC 1122 §4.2.3).
//!
//! Owns one optional deadline per timer kind. It never fires anything by
//! itself: the connection asks which deadlines have passed. The shard's
//! timer wheel holds only [`TimerTable::earliest`] for each connection.

use crate::time::Instant;

/// The timers a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Retransmission of SYN, SYN-ACK, data or FIN (RFC 6298).
    Retransmit = 0,
    /// Zero-window probing and the sender SWS override (RFC 9293 §3.8.6.1).
    Persist = 1,
    /// Delayed acknowledgment (RFC 9293 §3.8.6.3, RFC 5681 §4.2).
    DelayedAck = 2,
    /// Keep-alive idle and probe interval (RFC 9293 §3.8.4).
    Keepalive = 3,
    /// TIME-WAIT's 2*MSL, or the FIN-WAIT-2 timeout when one is configured.
    Close = 4,
    /// RACK reordering timer or tail loss probe (RFC 8985 §6.3, §7.2).
    Loss = 5,
}

impl TimerKind {
    pub const ALL: [TimerKind; 6] = [
        TimerKind::Retransmit,
        TimerKind::Persist,
        TimerKind::DelayedAck,
        TimerKind::Keepalive,
        TimerKind::Close,
        TimerKind::Loss,
    ];
}

/// One optional deadline per [`TimerKind`].
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 6],
}

impl TimerTable {
    pub fn set(&mut self, kind: TimerKind, at: Instant) {
        self.deadlines[kind as usize] = Some(at);
    }

    /// Set only if the timer is not running already.
    pub fn set_if_idle(&mut self, kind: TimerKind, at: Instant) {
        if self.deadlines[kind as usize].is_none() {
            self.set(kind, at);
        }
    }

    pub fn clear(&mut self, kind: TimerKind) {
        self.deadlines[kind as usize] = None;
    }

    pub fn clear_all(&mut self) {
        self.deadlines = [None; 6];
    }

    pub fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.deadlines[kind as usize]
    }

    pub fn is_running(&self, kind: TimerKind) -> bool {
        self.deadlines[kind as usize].is_some()
    }

    /// True (and the timer cleared) when `kind` is due at `now`.
    pub fn take_expired(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.deadlines[kind as usize] {
            Some(at) if at <= now => {
                self.deadlines[kind as usize] = None;
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline of all running timers.
    pub fn earliest(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_and_expiry() {
        let mut t = TimerTable::default();
        assert_eq!(t.earliest(), None);
        t.set(TimerKind::Keepalive, Instant::from_millis(50));
        t.set(TimerKind::Retransmit, Instant::from_millis(20));
        t.set_if_idle(TimerKind::Retransmit, Instant::from_millis(5));
        assert_eq!(t.earliest(), Some(Instant::from_millis(20)));
        assert!(!t.take_expired(TimerKind::Retransmit, Instant::from_millis(19)));
        assert!(t.take_expired(TimerKind::Retransmit, Instant::from_millis(20)));
        assert_eq!(t.earliest(), Some(Instant::from_millis(50)));
        t.clear_all();
        assert_eq!(t.earliest(), None);
    }
}
