//! The eleven connection states (RFC 9293 §3.3.2) and the one place that
//! changes them.

use super::connection::{CloseReason, Connection};
use super::timers::TimerKind;
use crate::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// States after the handshake (RFC 9293 §3.10.7.4 "otherwise").
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent)
    }

    /// States in which new data from the peer is accepted.
    pub fn can_receive_data(self) -> bool {
        matches!(
            self,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        )
    }

    /// States in which the application may still queue data.
    pub fn can_send_data(self) -> bool {
        matches!(
            self,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        )
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl Connection {
    /// The only place that changes `self.state`, so the side effects of
    /// entering a state live together.
    pub(super) fn set_state(&mut self, now: Instant, new: State) {
        if self.state == new {
            return;
        }
        self.state = new;
        match new {
            State::Closed => {
                self.timers.clear_all();
                if self.close_reason.is_none() {
                    self.close_reason = Some(CloseReason::Normal);
                }
            }
            State::TimeWait => {
                // RFC 9293 §3.10.7.4: only the 2*MSL timer runs in TIME-WAIT.
                self.timers.clear_all();
                self.timers
                    .set(TimerKind::Close, now + self.cfg.msl.saturating_mul(2));
            }
            State::FinWait2 => {
                self.timers.clear(TimerKind::Retransmit);
                self.timers.clear(TimerKind::Persist);
                // Like Linux, only a connection the application closed
                // fully gives up waiting; a half-closed one still reads.
                if let (true, Some(t)) = (self.app_closed, self.cfg.fin_wait2_timeout) {
                    self.timers.set(TimerKind::Close, now + t);
                }
            }
            State::Established => self.restart_keepalive(now),
            _ => {}
        }
    }
}
