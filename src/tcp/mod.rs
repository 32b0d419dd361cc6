//! The sans-IO TCP engine (RFC 9293 with RFC 5961, RFC 6298, RFC 7323,
//! RFC 2018, RFC 5681/6582, RFC 6528, RFC 6691).
//!
//! This module owns TCP connection state and nothing else: it never reads a
//! clock (every call takes `now`), never touches a socket or a frame, and
//! works on parsed [`TcpRepr`](crate::wire::tcp::TcpRepr) values plus the connection's [`FourTuple`].
//!
//! # Using a connection
//! - Open: [`Connection::connect`] (active) or a [`Listener`] that turns
//!   SYNs into connections (passive; SYN queue and accept queue).
//! - Input: [`Connection::on_segment`] with each segment for its 4-tuple.
//!   Replies are never written from there; they are queued.
//!   [`Connection::on_segment_deliver`] also hands in-order text straight
//!   from the segment to the application's read (zero copy); only what it
//!   leaves is copied into the receive buffer.
//! - Output: [`Connection::poll_transmit`] hands out each segment to send as
//!   a `&TcpRepr` whose payload borrows the send buffer, so the caller writes
//!   it straight into a transmit frame. The callback returns `false` when it
//!   has no room; the segment then counts as not sent and is offered again.
//! - Time: [`Connection::poll_timeout`] is the earliest deadline; when it
//!   passes, call [`Connection::poll_transmit`] (which runs due timers first)
//!   or [`Connection::handle_timeout`].
//! - Application: [`Connection::send`], [`Connection::recv`],
//!   [`Connection::peek`] + [`Connection::consume`] (zero copy),
//!   [`Connection::shutdown_write`], [`Connection::close`],
//!   [`Connection::abort`].
//! - A segment for which no connection or listener exists is answered with
//!   [`rst_for_unmatched`] (RFC 9293 §3.10.7.1).
//!
//! # Example
//! Two engines in memory: a client connects to a listener, sends a few
//! bytes and closes. Segments are copied here; a worker writes each one
//! into a transmit frame instead.
//! ```
//! use std::net::{Ipv4Addr, SocketAddrV4};
//! use xdpstack::tcp::{Config, Connection, FourTuple, IsnKey, Listener, State};
//! use xdpstack::time::Instant;
//! use xdpstack::wire::tcp::TcpRepr;
//!
//! let client = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
//! let server = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
//! let now = Instant::from_secs(1);
//! let key = IsnKey::random();
//! let mut listener = Listener::new(Config::default(), server, key, 128, 128);
//! let tuple = FourTuple { local: client, remote: server };
//! let mut a = Connection::connect(Config::default(), tuple, now, &key);
//! a.send(b"hello").unwrap();
//! a.shutdown_write(now);
//!
//! // Owned copies of what one side sends.
//! fn drain(c: &mut Connection, now: Instant) -> Vec<(TcpRepr<'static>, Vec<u8>)> {
//!     let mut v = Vec::new();
//!     c.poll_transmit(now, |r| {
//!         v.push((TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
//!         true
//!     });
//!     v
//! }
//!
//! let mut b: Option<Connection> = None;
//! for _ in 0..10 {
//!     for (r, p) in drain(&mut a, now) {
//!         let seg = TcpRepr { payload: &p, ..r };
//!         match b.as_mut() {
//!             Some(b) => { let _ = b.on_segment(now, &seg); }
//!             None => { let _ = listener.on_segment(now, client, &seg); }
//!         }
//!     }
//!     let mut replies = Vec::new();
//!     listener.poll_transmit(now, |_, r| {
//!         replies.push((TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
//!         true
//!     });
//!     if b.is_none() {
//!         b = listener.accept();
//!     }
//!     if let Some(b) = b.as_mut() {
//!         replies.extend(drain(b, now));
//!     }
//!     for (r, p) in replies {
//!         let _ = a.on_segment(now, &TcpRepr { payload: &p, ..r });
//!     }
//! }
//! let mut b = b.unwrap();
//! let mut buf = [0u8; 16];
//! assert_eq!(b.recv(&mut buf), Ok(5));
//! assert_eq!(&buf[..5], b"hello");
//! assert_eq!(b.state(), State::CloseWait);
//! assert_eq!(a.state(), State::FinWait2);
//! ```
//!
//! # Layout
//! - `tcb`: the RFC 9293 §3.3.1 sequence variables under their RFC names.
//! - `state`: the eleven states and the one function that changes them.
//! - `connection`: the connection and its application API.
//! - `input`: segment arrival (RFC 9293 §3.10.7, RFC 5961, PAWS).
//! - `output`: what to send, timers that cause sending (RFC 6298, persist,
//!   delayed ACK, keep-alive, TIME-WAIT).
//! - `listen`: the listen backlog (SYN queue, accept queue, SYN cookies).
//! - `buffer`: send ring and receive ring with out-of-order reassembly.
//! - `rtt`: SRTT/RTTVAR/RTO; `timers`: the per-connection timer table;
//!   `isn`: RFC 6528 ISNs; `congestion`: the controller trait, NewReno and
//!   CUBIC (RFC 9438, the default), chosen per connection by
//!   [`Config::congestion`].
//! - Loss recovery: `sack_scoreboard` (RFC 6675 scoreboard, D-SACK
//!   detection), `rack` (RACK-TLP, RFC 8985), `recovery` (initial window,
//!   limited transmit, undo of spurious reductions), and `loss`, which wires
//!   them into ACK input and segment output. Without SACK the connection
//!   runs NewReno's duplicate-ACK recovery (RFC 6582) with limited transmit.
//!
//! # Decisions
//! - Zero-window probes and keep-alive probes follow Linux: a pure ACK with
//!   SEQ = SND.UNA - 1 (outside the peer's window) that makes it answer with
//!   its window, instead of sending one byte past the window.
//! - Retransmission on timeout goes back to SND.UNA (go-back-N); the window
//!   then refills as ACKs arrive. SND.MAX remembers the highest sequence
//!   number ever sent, so ACK acceptability (RFC 5961 §5.2) is judged
//!   against it, not against a rewound SND.NXT. A pure ACK carries SND.MAX
//!   (capped at the right edge of the peer's window, Linux's
//!   `tcp_acceptable_seq`), and a segment without text exactly on our
//!   window's right edge is accepted, as Linux does.
//! - Duplicate ACKs for out-of-window segments without data are limited to
//!   one per 500 ms (as Linux's `tcp_invalid_ratelimit`), so two ends can
//!   never ping-pong ACKs.
//! - Nagle uses Minshall's variant: a small segment waits only while an
//!   earlier small segment is unacknowledged, so the tail of a bulk write
//!   goes out at once.
//! - Karn's rule covers timestamps too: an echoed TSval older than the last
//!   retransmission may belong to a transmission whose ACK was lost, so it
//!   is no RTT sample (otherwise the RTO inflates after ACK loss).
//! - The receiver ACKs at once for out-of-order data, for data filling a
//!   hole, for a FIN, and when the window drops below one segment;
//!   otherwise every second full-sized segment or after `ack_delay`.
//! - Payload carried on a SYN or SYN-ACK is not queued (it is not
//!   acknowledged either, so the peer sends it again).
//! - A segment without a timestamp on a connection that negotiated them is
//!   accepted (as Linux does), not dropped.
//! - RST in TIME-WAIT is ignored (RFC 1337 protection against TIME-WAIT
//!   assassination); the 2*MSL timer ends the connection. RST in CLOSING or
//!   LAST-ACK closes without an error (RFC 9293 §3.10.7.4).
//! - `close` with unread data sends RST (RFC 2525 §2.17, as Linux), and
//!   data reaching a closed connection resets it.
//! - Challenge ACKs are rate-limited per connection
//!   ([`Config::challenge_ack_limit`] per second).
//! - A SYN-cookie connection has no window scaling, SACK or timestamps, and
//!   if the handshake's ACK is lost and a later data segment arrives first,
//!   the listener answers with RST (as Linux does).
//! - TIME-WAIT reuse (RFC 6191) is the caller's decision, helped by
//!   [`Connection::syn_may_reopen`] (a peer's SYN on a TIME-WAIT tuple) and
//!   [`Connection::connect_after`] (our own active open reusing a port).
//! - A SYN with a new ISN and a newer timestamp for a handshake still in
//!   SYN-RECEIVED restarts it ([`Connection::syn_may_restart`]); other new
//!   SYNs get a challenge ACK (RFC 5961 §4.2).

mod app;
mod buffer;
pub mod congestion;
mod connection;
mod input;
mod isn;
mod listen;
mod loss;
mod output;
pub mod rack;
pub mod recovery;
mod rtt;
pub mod sack_scoreboard;
mod state;
mod tcb;
mod timers;

pub use app::{Deliver, SendHalf};
pub use buffer::{InsertError, RecvBuffer, SendBuffer};
pub use connection::{CloseReason, ConnStorage, Connection, RecvError, SendError};
pub use isn::IsnKey;
pub use listen::{Listener, ListenerCounters};
pub use output::rst_for_unmatched;
pub use rtt::RttEstimator;
pub use state::State;
pub use tcb::Tcb;
pub use timers::{TimerKind, TimerTable};

use crate::time::Duration;
use std::net::SocketAddrV4;

/// The receive buffer of [`Config::default`], in bytes.
pub const DEFAULT_RECV_BUFFER: usize = 256 * 1024;

/// A connection's addresses, seen from this end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourTuple {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

impl FourTuple {
    /// The same connection seen from the other end.
    pub fn reversed(self) -> FourTuple {
        FourTuple {
            local: self.remote,
            remote: self.local,
        }
    }
}

/// Keep-alive settings (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (RFC 1122: no less than two hours by
    /// default; applications choose shorter ones).
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub probes: u32,
}

/// Connection settings. `Config::default()` is what a Linux peer expects.
#[derive(Debug, Clone)]
pub struct Config {
    /// MSS this end announces: the link MTU minus 40 (IPv4 + TCP headers).
    pub mss: u16,
    /// Send buffer bytes.
    pub send_buffer: usize,
    /// Receive buffer bytes; with window scaling off, windows stop at 65535.
    /// The default is [`DEFAULT_RECV_BUFFER`].
    pub recv_buffer: usize,
    /// Offer window scaling (RFC 7323 §2).
    pub window_scaling: bool,
    /// Offer SACK-permitted and send SACK blocks (RFC 2018).
    pub sack: bool,
    /// Offer timestamps (RFC 7323 §3).
    pub timestamps: bool,
    /// Nagle's algorithm (RFC 896, RFC 9293 §3.7.4); on by default.
    pub nagle: bool,
    /// RTO before any sample (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// Lower bound of the RTO (Linux uses 200 ms; RFC 6298 says 1 s).
    pub min_rto: Duration,
    /// Upper bound of the RTO (RFC 6298 §2.5: at least 60 s).
    pub max_rto: Duration,
    /// SYN retransmissions before an active open fails (RFC 9293 §3.8.3 R2).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a passive open is dropped.
    pub synack_retries: u32,
    /// Data retransmissions before the connection is dropped (R2).
    pub data_retries: u32,
    /// Longest delay of an ACK (RFC 9293 §3.8.6.3: less than 0.5 s).
    pub ack_delay: Duration,
    /// Keep-alive; off by default (RFC 1122 §4.2.3.6).
    pub keepalive: Option<Keepalive>,
    /// Maximum segment lifetime; TIME-WAIT lasts 2*MSL.
    pub msl: Duration,
    /// How long FIN-WAIT-2 waits for the peer's FIN; `None` waits forever.
    pub fin_wait2_timeout: Option<Duration>,
    /// Challenge ACKs per second per connection (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// Congestion controller.
    pub congestion: congestion::Algorithm,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_window: usize,
    /// Out-of-order ranges the receive buffer keeps; more are dropped.
    pub max_ooo_ranges: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            send_buffer: 256 * 1024,
            recv_buffer: DEFAULT_RECV_BUFFER,
            window_scaling: true,
            sack: true,
            timestamps: true,
            nagle: true,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            ack_delay: Duration::from_millis(40),
            keepalive: None,
            msl: Duration::from_secs(30),
            fin_wait2_timeout: Some(Duration::from_secs(60)),
            challenge_ack_limit: 10,
            congestion: congestion::Algorithm::default(),
            initial_window: 10,
            max_ooo_ranges: 32,
        }
    }
}

/// Why an incoming segment was dropped. Drops are counted, never logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Sequence number outside the receive window (RFC 9293 §3.10.7.4).
    OutOfWindow,
    /// PAWS rejected an old timestamp (RFC 7323 §5.3).
    Paws,
    /// RST outside the window (RFC 5961 §3.2).
    RstOutOfWindow,
    /// RST in the window but not at RCV.NXT: challenged (RFC 5961 §3.2).
    RstChallenged,
    /// SYN in a synchronized state: challenged (RFC 5961 §4.2).
    SynChallenged,
    /// ACK for data never sent (RFC 5961 §5.2).
    AckUnsent,
    /// ACK older than SND.UNA - MAX.SND.WND (RFC 5961 §5.2).
    AckTooOld,
    /// Segment without ACK in a synchronized state.
    NoAck,
    /// Unacceptable ACK in SYN-SENT or SYN-RECEIVED (answered with RST).
    BadHandshakeAck,
    /// Neither SYN nor RST in SYN-SENT.
    NoSynInSynSent,
    /// The connection is CLOSED.
    Closed,
    /// Out-of-order segment dropped: the reassembly range list is full.
    ReassemblyFull,
    /// Listener: SYN queue full (and no SYN cookies).
    SynQueueFull,
    /// Listener: accept queue full, the handshake's ACK is dropped.
    AcceptQueueFull,
    /// Listener: segment that is not a SYN for an unknown tuple.
    ListenNotSyn,
}

impl DropReason {
    pub const COUNT: usize = 15;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::OutOfWindow,
        DropReason::Paws,
        DropReason::RstOutOfWindow,
        DropReason::RstChallenged,
        DropReason::SynChallenged,
        DropReason::AckUnsent,
        DropReason::AckTooOld,
        DropReason::NoAck,
        DropReason::BadHandshakeAck,
        DropReason::NoSynInSynSent,
        DropReason::Closed,
        DropReason::ReassemblyFull,
        DropReason::SynQueueFull,
        DropReason::AcceptQueueFull,
        DropReason::ListenNotSyn,
    ];
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for DropReason {}

/// Per-connection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub segments_in: u64,
    pub segments_out: u64,
    pub drops: [u64; DropReason::COUNT],
    /// Retransmission timer expirations.
    pub timeouts: u64,
    /// Segments sent again (timeouts and fast retransmits).
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub challenge_acks: u64,
    /// Challenge ACKs not sent because of the rate limit.
    pub challenge_acks_limited: u64,
    pub zero_window_probes: u64,
    pub keepalive_probes: u64,
    /// Window reductions undone as spurious (D-SACK or Eifel).
    pub spurious_undos: u64,
    /// Tail loss probes sent (RFC 8985 §7.3).
    pub tlp_probes: u64,
    /// Losses a tail loss probe repaired (RFC 8985 §7.4).
    pub tlp_losses: u64,
}

impl Counters {
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }

    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

#[cfg(test)]
mod tests;
