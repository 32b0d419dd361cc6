//! The transmission control block: the sequence-space variables of RFC 9293
//! §3.3.1 plus the negotiated options, under their RFC names.
//!
//! Owns numbers only; buffers, timers and state live in the connection.

use crate::wire::SeqNumber;

#[derive(Debug, Clone, Default)]
pub struct Tcb {
    // Send sequence variables (RFC 9293 §3.3.1).
    /// SND.UNA: oldest unacknowledged sequence number.
    pub snd_una: SeqNumber,
    /// SND.NXT: next sequence number to send (rewound on timeout).
    pub snd_nxt: SeqNumber,
    /// SND.MAX: highest sequence number sent plus one (never rewound).
    pub snd_max: SeqNumber,
    /// SND.WND: the peer's window, scaled, in bytes.
    pub snd_wnd: usize,
    /// MAX.SND.WND: largest window the peer ever offered (RFC 5961 §5.2,
    /// sender SWS avoidance).
    pub max_snd_wnd: usize,
    /// SND.UP: send urgent pointer (this engine never sends urgent data).
    pub snd_up: SeqNumber,
    /// SND.WL1: segment sequence number used for the last window update.
    pub snd_wl1: SeqNumber,
    /// SND.WL2: segment acknowledgment number used for the last window update.
    pub snd_wl2: SeqNumber,
    /// ISS: initial send sequence number.
    pub iss: SeqNumber,

    // Receive sequence variables.
    /// RCV.NXT: next sequence number expected.
    pub rcv_nxt: SeqNumber,
    /// RCV.WND: window last advertised, bytes from RCV.NXT at that time.
    pub rcv_wnd: usize,
    /// Right edge of the last advertised window (RCV.NXT + RCV.WND); never
    /// moved left (RFC 9293 §3.8.6.2.2: do not shrink the window).
    pub rcv_adv: SeqNumber,
    /// RCV.UP: receive urgent pointer.
    pub rcv_up: Option<SeqNumber>,
    /// IRS: initial receive sequence number.
    pub irs: SeqNumber,

    // Options (RFC 7323, RFC 2018, RFC 9293 §3.7.1).
    /// Window scaling in use (both SYNs carried the option).
    pub ws_enabled: bool,
    /// Snd.Wind.Shift: the shift applied to windows the peer sends.
    pub snd_wnd_shift: u8,
    /// Rcv.Wind.Shift: the shift applied to windows this end sends.
    pub rcv_wnd_shift: u8,
    /// SendMSS: the peer's MSS option, 536 when absent (RFC 9293 §3.7.1).
    pub send_mss: u16,
    /// Timestamps in use on this connection (both SYNs carried them).
    pub ts_enabled: bool,
    /// TS.Recent: the timestamp to echo (RFC 7323 §4.3).
    pub ts_recent: u32,
    /// When TS.Recent was last set, in ms of `now` (PAWS 24-day rule).
    pub ts_recent_age_ms: u64,
    /// Last.ACK.sent: RCV.NXT in the last ACK sent (RFC 7323 §4.3).
    pub last_ack_sent: SeqNumber,
    /// Per-connection offset added to the TSval clock (RFC 7323 §5.4).
    pub ts_offset: u32,
    /// SACK in use (both SYNs carried SACK-permitted).
    pub sack_enabled: bool,
}

impl Tcb {
    /// Bytes sent and not acknowledged (FlightSize; SYN and FIN count one).
    pub fn in_flight(&self) -> usize {
        self.snd_nxt - self.snd_una
    }
}
