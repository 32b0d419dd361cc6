//! Per-state unit tests: segment templates, explicit times, and the
//! reaction of every state to SYN, SYN-ACK, ACK, data, FIN and RST in and
//! out of the window (RFC 9293 §3.10.7, RFC 5961).

use super::connection::Connection;
use super::*;
use crate::time::{Duration, Instant};
use crate::wire::tcp::{SackBlock, TcpFlags, TcpOptions, TcpRepr, Timestamps};
use crate::wire::SeqNumber;
use std::net::{Ipv4Addr, SocketAddrV4};

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 49500);
const TUPLE: FourTuple = FourTuple {
    local: LOCAL,
    remote: REMOTE,
};
const LOCAL_SEQ: SeqNumber = SeqNumber(10_000);
const REMOTE_SEQ: SeqNumber = SeqNumber(-10_000i32 as u32);
const KEY: IsnKey = IsnKey::from_parts(1, 2);

const NONE: u8 = 0;
const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

/// What the peer sends.
const SEND_TEMPL: TcpRepr<'static> = TcpRepr {
    src_port: 49500,
    dst_port: 80,
    seq_number: SeqNumber(0),
    ack_number: SeqNumber(0),
    flags: TcpFlags(0),
    window: 256,
    urgent_pointer: 0,
    options: OPTS_NONE,
    payload: &[],
};

/// SEG.ACK of a segment without the ACK bit: zero on the wire.
const NO_ACK: SeqNumber = SeqNumber(0);

/// What the connection sends.
const RECV_TEMPL: TcpRepr<'static> = TcpRepr {
    src_port: 80,
    dst_port: 49500,
    seq_number: SeqNumber(0),
    ack_number: SeqNumber(0),
    flags: TcpFlags(0),
    window: 64,
    urgent_pointer: 0,
    options: OPTS_NONE,
    payload: &[],
};

const OPTS_NONE: TcpOptions = TcpOptions {
    mss: None,
    window_scale: None,
    sack_permitted: false,
    sack_blocks: [None; 4],
    timestamps: None,
};

const OPTS_MSS: TcpOptions = TcpOptions {
    mss: Some(1460),
    ..OPTS_NONE
};

fn cfg() -> Config {
    Config {
        send_buffer: 64,
        recv_buffer: 64,
        window_scaling: false,
        sack: false,
        timestamps: false,
        ..Config::default()
    }
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn flags(f: u8) -> TcpFlags {
    TcpFlags(f)
}

/// An owned copy of an emitted segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    repr: TcpRepr<'static>,
    payload: Vec<u8>,
}

impl Seg {
    /// The segment as it was emitted, to feed to the other end.
    fn as_repr(&self) -> TcpRepr<'_> {
        TcpRepr {
            payload: &self.payload,
            ..self.repr
        }
    }
}

impl From<&TcpRepr<'_>> for Seg {
    fn from(r: &TcpRepr<'_>) -> Seg {
        Seg {
            repr: TcpRepr { payload: &[], ..*r },
            payload: r.payload.to_vec(),
        }
    }
}

fn output(c: &mut Connection, now: Instant) -> Vec<Seg> {
    let mut v = Vec::new();
    c.poll_transmit(now, |r| {
        v.push(Seg::from(r));
        true
    });
    v
}

/// The text length of each segment.
fn payload_lens(out: &[Seg]) -> Vec<usize> {
    out.iter().map(|s| s.payload.len()).collect()
}

/// Feed a segment, expecting it to be accepted.
macro_rules! send {
    ($c:expr, time $ms:expr, $seg:expr) => {
        send!($c, time $ms, $seg, Ok(()))
    };
    ($c:expr, time $ms:expr, $seg:expr, $result:expr) => {{
        let seg: TcpRepr<'_> = $seg;
        assert_eq!($c.on_segment(t($ms), &seg), $result, "segment {:?}", seg);
    }};
    ($c:expr, $seg:expr) => {
        send!($c, time 0, $seg)
    };
    ($c:expr, $seg:expr, $result:expr) => {
        send!($c, time 0, $seg, $result)
    };
}

/// Expect exactly these segments out at the given time.
macro_rules! recv {
    ($c:expr, time $ms:expr, [$($seg:expr),* $(,)?]) => {{
        let got = output(&mut $c, t($ms));
        let want: Vec<Seg> = vec![$(Seg::from(&$seg)),*];
        assert_eq!(got, want);
    }};
    ($c:expr, [$($seg:expr),* $(,)?]) => {
        recv!($c, time 0, [$($seg),*])
    };
}

macro_rules! recv_nothing {
    ($c:expr, time $ms:expr) => {
        recv!($c, time $ms, [])
    };
    ($c:expr) => {
        recv!($c, time 0, [])
    };
}

fn patch_iss(c: &mut Connection) {
    c.tcb.iss = LOCAL_SEQ;
    c.tcb.snd_una = LOCAL_SEQ;
    c.tcb.snd_nxt = LOCAL_SEQ;
    c.tcb.snd_max = LOCAL_SEQ;
    c.recover = LOCAL_SEQ;
    c.snd_sml = LOCAL_SEQ;
    c.tcb.ts_offset = 0;
}

// ---- states ----

fn socket_syn_sent_with(cfg: Config) -> Connection {
    let mut c = Connection::connect(cfg, TUPLE, t(0), &KEY);
    patch_iss(&mut c);
    c
}

fn socket_syn_sent() -> Connection {
    let mut c = socket_syn_sent_with(cfg());
    recv!(c, [ours(SYN, LOCAL_SEQ, NO_ACK).with_options(OPTS_MSS)]);
    assert_eq!(c.state(), State::SynSent);
    c
}

fn syn_from_peer() -> TcpRepr<'static> {
    peer(SYN, REMOTE_SEQ, NO_ACK)
}

fn socket_syn_received_with(cfg: Config, syn: &TcpRepr<'_>) -> Connection {
    let mut c = Connection::accept_syn(cfg, TUPLE, t(0), &KEY, syn);
    patch_iss(&mut c);
    c
}

fn socket_syn_received() -> Connection {
    let mut c = socket_syn_received_with(cfg(), &syn_from_peer());
    recv!(
        c,
        [ours(SYN | ACK, LOCAL_SEQ, REMOTE_SEQ + 1).with_options(OPTS_MSS)]
    );
    assert_eq!(c.state(), State::SynReceived);
    c
}

fn socket_established() -> Connection {
    let mut c = socket_syn_received();
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::Established);
    recv_nothing!(c);
    fresh_rtt(&mut c);
    c
}

/// ESTABLISHED with a peer MSS of `mss` (no options, so also the
/// effective MSS) and room for `send_buffer` bytes, so that a few writes
/// fill several segments.
fn established_sender(mss: u16, send_buffer: usize) -> Connection {
    let mut c = socket_established();
    c.tcb.send_mss = mss;
    c.snd_buf = SendBuffer::new(send_buffer);
    c
}

/// Forget the handshake's RTT sample so timer tests start from the
/// initial RTO of 1 s.
fn fresh_rtt(c: &mut Connection) {
    c.rtt = RttEstimator::new(c.cfg.initial_rto, c.cfg.min_rto, c.cfg.max_rto);
}

fn socket_fin_wait_1() -> Connection {
    let mut c = socket_established();
    c.shutdown_write(t(0));
    recv!(c, [ours(FIN | ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.state(), State::FinWait1);
    c
}

fn socket_fin_wait_2() -> Connection {
    let mut c = socket_fin_wait_1();
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::FinWait2);
    c
}

fn socket_closing() -> Connection {
    let mut c = socket_fin_wait_1();
    send!(c, peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::Closing);
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
    c
}

fn socket_time_wait() -> Connection {
    let mut c = socket_fin_wait_2();
    send!(c, peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
    c
}

fn socket_close_wait() -> Connection {
    let mut c = socket_established();
    send!(c, peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::CloseWait);
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 2)]);
    c
}

fn socket_last_ack() -> Connection {
    let mut c = socket_close_wait();
    c.shutdown_write(t(0));
    recv!(c, [ours(FIN | ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 2)]);
    assert_eq!(c.state(), State::LastAck);
    c
}

fn socket_closed() -> Connection {
    let mut c = socket_established();
    send!(c, peer(RST, REMOTE_SEQ + 1, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
    c
}

/// A segment from the peer with these control bits, SEG.SEQ and SEG.ACK
/// (RFC 9293 §3.1); every other field from `SEND_TEMPL`.
fn peer(f: u8, seq: SeqNumber, ack: SeqNumber) -> TcpRepr<'static> {
    TcpRepr {
        flags: flags(f),
        seq_number: seq,
        ack_number: ack,
        ..SEND_TEMPL
    }
}

/// A segment the connection sends; every other field from `RECV_TEMPL`.
fn ours(f: u8, seq: SeqNumber, ack: SeqNumber) -> TcpRepr<'static> {
    TcpRepr {
        flags: flags(f),
        seq_number: seq,
        ack_number: ack,
        ..RECV_TEMPL
    }
}

/// A pure ACK from the peer at its current position.
fn peer_ack(seq: SeqNumber, ack: SeqNumber) -> TcpRepr<'static> {
    peer(ACK, seq, ack)
}

fn our_ack(seq: SeqNumber, ack: SeqNumber) -> TcpRepr<'static> {
    ours(ACK, seq, ack)
}

/// One-field changes to a template segment, so a case reads in one line.
trait With<'a> {
    fn with_window(self, window: u16) -> Self;
    fn with_options(self, options: TcpOptions) -> Self;
    fn with_payload<'b>(self, payload: &'b [u8]) -> TcpRepr<'b>
    where
        'a: 'b;
}

impl<'a> With<'a> for TcpRepr<'a> {
    fn with_window(self, window: u16) -> Self {
        TcpRepr { window, ..self }
    }

    fn with_options(self, options: TcpOptions) -> Self {
        TcpRepr { options, ..self }
    }

    fn with_payload<'b>(self, payload: &'b [u8]) -> TcpRepr<'b>
    where
        'a: 'b,
    {
        TcpRepr { payload, ..self }
    }
}

// ---- CLOSED ----

#[test]
fn closed_answers_with_rst() {
    let mut c = socket_closed();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"abc"),
        Err(DropReason::Closed)
    );
    recv!(c, [ours(RST, LOCAL_SEQ + 1, NO_ACK).with_window(0)]);
    // Never answer an RST.
    send!(
        c,
        peer(RST, REMOTE_SEQ + 1, NO_ACK),
        Err(DropReason::Closed)
    );
    recv_nothing!(c);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn rst_for_unmatched_segments() {
    // With ACK: <SEQ=SEG.ACK><CTL=RST>.
    let r = rst_for_unmatched(&peer_ack(REMOTE_SEQ, LOCAL_SEQ)).unwrap();
    assert_eq!(r, ours(RST, LOCAL_SEQ, NO_ACK).with_window(0));
    // Without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN count.
    let r = rst_for_unmatched(&peer(SYN | FIN, REMOTE_SEQ, NO_ACK).with_payload(b"abcd")).unwrap();
    assert_eq!(r.flags, flags(RST | ACK));
    assert_eq!(r.seq_number, SeqNumber(0));
    assert_eq!(r.ack_number, REMOTE_SEQ + 6);
    assert!(rst_for_unmatched(&peer(RST, SeqNumber(0), NO_ACK)).is_none());
}

// ---- LISTEN ----

fn listener(syn_backlog: usize, accept_backlog: usize) -> Listener {
    Listener::new(cfg(), LOCAL, KEY, syn_backlog, accept_backlog)
}

fn listener_output(l: &mut Listener, now: Instant) -> Vec<(SocketAddrV4, Seg)> {
    let mut v = Vec::new();
    l.poll_transmit(now, |a, r| {
        v.push((a, Seg::from(r)));
        true
    });
    v
}

#[test]
fn listen_syn_makes_syn_received_and_ack_completes() {
    let mut l = listener(4, 4);
    assert_eq!(l.state(), State::Listen);
    l.on_segment(t(0), REMOTE, &syn_from_peer()).unwrap();
    assert!(l.has_embryonic(REMOTE));
    let out = listener_output(&mut l, t(0));
    assert_eq!(out.len(), 1);
    let synack = out[0].1.repr;
    assert_eq!(synack.flags, flags(SYN | ACK));
    assert_eq!(synack.ack_number, REMOTE_SEQ + 1);
    assert!(l.accept().is_none());
    // The completing ACK moves it to the accept queue.
    l.on_segment(
        t(5),
        REMOTE,
        &peer_ack(REMOTE_SEQ + 1, synack.seq_number + 1),
    )
    .unwrap();
    assert_eq!(l.syn_queue_len(), 0);
    let c = l.accept().unwrap();
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.tuple(), TUPLE);
    assert_eq!(l.counters().accepted, 1);
}

#[test]
fn listen_rst_ignored_ack_answered_with_rst() {
    let mut l = listener(4, 4);
    let rst = peer(RST, REMOTE_SEQ, NO_ACK);
    assert_eq!(
        l.on_segment(t(0), REMOTE, &rst),
        Err(DropReason::ListenNotSyn)
    );
    assert!(listener_output(&mut l, t(0)).is_empty());
    let ack = peer_ack(REMOTE_SEQ, LOCAL_SEQ + 7);
    assert_eq!(
        l.on_segment(t(0), REMOTE, &ack),
        Err(DropReason::ListenNotSyn)
    );
    let out = listener_output(&mut l, t(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, REMOTE);
    assert_eq!(out[0].1.repr.flags, flags(RST));
    assert_eq!(out[0].1.repr.seq_number, LOCAL_SEQ + 7);
    // A bare FIN or data without SYN or ACK is dropped silently.
    let fin = peer(FIN, SeqNumber(0), NO_ACK);
    assert_eq!(
        l.on_segment(t(0), REMOTE, &fin),
        Err(DropReason::ListenNotSyn)
    );
    let synfin = peer(SYN | FIN, SeqNumber(0), NO_ACK);
    assert_eq!(
        l.on_segment(t(0), REMOTE, &synfin),
        Err(DropReason::ListenNotSyn)
    );
    assert!(listener_output(&mut l, t(0)).is_empty());
    assert_eq!(l.syn_queue_len(), 0);
}

#[test]
fn listen_backlogs_are_bounded() {
    let mut l = listener(2, 1);
    l.set_syn_cookies(false);
    for port in 1..=3u16 {
        let r = l.on_segment(
            t(0),
            SocketAddrV4::new(*REMOTE.ip(), port),
            &syn_from_peer(),
        );
        if port <= 2 {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(r, Err(DropReason::SynQueueFull));
        }
    }
    let out = listener_output(&mut l, t(0));
    assert_eq!(out.len(), 2);
    // Complete both handshakes: the second finds the accept queue full.
    for (i, (addr, seg)) in out.iter().enumerate() {
        let ack = TcpRepr {
            dst_port: 80,
            ..peer_ack(REMOTE_SEQ + 1, seg.repr.seq_number + 1)
        };
        let r = l.on_segment(t(1), *addr, &ack);
        if i == 0 {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(r, Err(DropReason::AcceptQueueFull));
        }
    }
    assert_eq!(l.accept_queue_len(), 1);
    assert_eq!(l.syn_queue_len(), 1);
}

#[test]
fn listen_syn_cookies_when_the_syn_queue_is_full() {
    let mut l = listener(1, 4);
    let other = SocketAddrV4::new(*REMOTE.ip(), 1);
    l.on_segment(t(0), other, &syn_from_peer()).unwrap();
    // Queue full: the next SYN gets a stateless SYN-ACK.
    let syn = TcpRepr {
        options: TcpOptions {
            mss: Some(1300),
            window_scale: Some(3),
            ..OPTS_NONE
        },
        ..syn_from_peer()
    };
    l.on_segment(t(10), REMOTE, &syn).unwrap();
    assert_eq!(l.syn_queue_len(), 1);
    let out = listener_output(&mut l, t(10));
    let (_, cookie) = out.iter().find(|(a, _)| *a == REMOTE).unwrap();
    assert_eq!(cookie.repr.flags, flags(SYN | ACK));
    assert_eq!(cookie.repr.ack_number, REMOTE_SEQ + 1);
    assert_eq!(
        cookie.repr.options, OPTS_MSS,
        "no options a cookie cannot keep"
    );
    assert_eq!(l.counters().cookies_sent, 1);
    let iss = cookie.repr.seq_number;
    // A forged ACK is answered with RST.
    let forged = peer_ack(REMOTE_SEQ + 1, iss + 2);
    assert_eq!(
        l.on_segment(t(20), REMOTE, &forged),
        Err(DropReason::ListenNotSyn)
    );
    assert_eq!(l.counters().cookies_invalid, 1);
    assert_eq!(listener_output(&mut l, t(20))[0].1.repr.flags, flags(RST));
    // The real ACK, with data, makes an established connection.
    let ack = peer_ack(REMOTE_SEQ + 1, iss + 1).with_payload(b"hi");
    l.on_segment(t(30), REMOTE, &ack).unwrap();
    let mut c = l.accept().unwrap();
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.eff_mss(), 1220, "1300 rounds down to the cookie table");
    assert_eq!(c.tcb().snd_wnd_shift, 0);
    assert_eq!(c.recv_queue(), 2);
    assert_eq!(l.counters().cookies_accepted, 1);
    // A cookie more than two periods old is refused.
    l.on_segment(t(40), SocketAddrV4::new(*REMOTE.ip(), 2), &syn)
        .unwrap();
    let out = listener_output(&mut l, t(40));
    let iss = out.last().unwrap().1.repr.seq_number;
    let late = peer_ack(REMOTE_SEQ + 1, iss + 1);
    assert!(l
        .on_segment(t(200_000), SocketAddrV4::new(*REMOTE.ip(), 2), &late)
        .is_err());
    assert!(l.accept().is_none());
    let _ = output(&mut c, t(30));
}

#[test]
fn listen_retransmits_syn_ack_then_gives_up() {
    let mut l = listener(4, 4);
    l.on_segment(t(0), REMOTE, &syn_from_peer()).unwrap();
    assert_eq!(listener_output(&mut l, t(0)).len(), 1);
    assert_eq!(l.poll_timeout(), Some(t(1000)));
    let out = listener_output(&mut l, t(1000));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.repr.flags, flags(SYN | ACK));
    // 1 + 2 + 4 + 8 + 16 + 32 s: after synack_retries (5) it is dropped.
    let mut now = 1000;
    for _ in 0..5 {
        now = l.poll_timeout().unwrap().total_millis();
        listener_output(&mut l, t(now));
    }
    assert!(now >= 31_000);
    assert_eq!(l.syn_queue_len(), 0);
    assert_eq!(l.counters().embryonic_dropped, 1);
}

// ---- SYN-SENT ----

#[test]
fn syn_sent_syn_ack_establishes() {
    let mut c = socket_syn_sent();
    let mss_1000 = TcpOptions {
        mss: Some(1000),
        ..OPTS_NONE
    };
    send!(c, time 10, peer(SYN | ACK, REMOTE_SEQ, LOCAL_SEQ + 1).with_options(mss_1000));
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.eff_mss(), 1000);
    assert_eq!(c.rtt().srtt(), Some(Duration::from_millis(10)));
    recv!(c, time 10, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn syn_sent_syn_is_simultaneous_open() {
    let mut c = socket_syn_sent();
    send!(c, syn_from_peer());
    assert_eq!(c.state(), State::SynReceived);
    recv!(
        c,
        [ours(SYN | ACK, LOCAL_SEQ, REMOTE_SEQ + 1).with_options(OPTS_MSS)]
    );
    // The peer's SYN-ACK completes it.
    send!(
        c,
        peer(SYN | ACK, REMOTE_SEQ, LOCAL_SEQ + 1),
        Err(DropReason::OutOfWindow)
    );
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::Established);
}

#[test]
fn syn_sent_bad_ack_gets_rst() {
    let mut c = socket_syn_sent();
    send!(
        c,
        peer(SYN | ACK, REMOTE_SEQ, LOCAL_SEQ + 5),
        Err(DropReason::BadHandshakeAck)
    );
    recv!(c, [ours(RST, LOCAL_SEQ + 5, NO_ACK).with_window(0)]);
    // An ACK of the ISS itself is just as bad.
    send!(
        c,
        peer_ack(REMOTE_SEQ, LOCAL_SEQ),
        Err(DropReason::BadHandshakeAck)
    );
    assert_eq!(c.state(), State::SynSent);
}

#[test]
fn syn_sent_rst() {
    // RST without ACK, or with a bad ACK: ignored.
    let mut c = socket_syn_sent();
    send!(
        c,
        peer(RST, REMOTE_SEQ, NO_ACK),
        Err(DropReason::RstOutOfWindow)
    );
    send!(
        c,
        peer(RST | ACK, REMOTE_SEQ, LOCAL_SEQ + 9),
        Err(DropReason::BadHandshakeAck)
    );
    recv_nothing!(c);
    assert_eq!(c.state(), State::SynSent);
    // RST with the right ACK: refused.
    send!(c, peer(RST | ACK, REMOTE_SEQ, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Refused));
    assert_eq!(c.send(b"x"), Err(SendError::Broken(CloseReason::Refused)));
}

#[test]
fn syn_sent_ack_data_fin_without_syn_dropped() {
    let mut c = socket_syn_sent();
    send!(
        c,
        peer(ACK | FIN, REMOTE_SEQ, LOCAL_SEQ + 1).with_payload(b"abc"),
        Err(DropReason::NoSynInSynSent)
    );
    recv_nothing!(c);
    assert_eq!(c.state(), State::SynSent);
}

#[test]
fn syn_sent_retries_then_times_out() {
    let mut c = socket_syn_sent_with(Config {
        syn_retries: 2,
        ..cfg()
    });
    assert_eq!(output(&mut c, t(0)).len(), 1);
    recv_nothing!(c, time 999);
    recv!(c, time 1000, [ours(SYN, LOCAL_SEQ, NO_ACK).with_options(OPTS_MSS)]);
    // Backoff: the next one after 2 s.
    recv_nothing!(c, time 2999);
    assert_eq!(output(&mut c, t(3000)).len(), 1);
    recv_nothing!(c, time 7000);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::TimedOut));
}

#[test]
fn syn_sent_close_goes_to_closed() {
    let mut c = socket_syn_sent();
    c.close(t(0));
    assert_eq!(c.state(), State::Closed);
    recv_nothing!(c);
}

#[test]
fn syn_sent_shutdown_sends_fin_after_handshake() {
    let mut c = socket_syn_sent();
    c.send(b"req").unwrap();
    c.shutdown_write(t(0));
    assert_eq!(c.state(), State::SynSent);
    send!(c, peer(SYN | ACK, REMOTE_SEQ, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::FinWait1);
    recv!(
        c,
        [ours(ACK | PSH | FIN, LOCAL_SEQ + 1, REMOTE_SEQ + 1).with_payload(b"req")]
    );
}

// ---- SYN-RECEIVED ----

#[test]
fn syn_received_ack_with_data_establishes() {
    let mut c = socket_syn_received();
    send!(c, time 20, peer(ACK | PSH, REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"hello"));
    assert_eq!(c.state(), State::Established);
    let mut buf = [0; 16];
    assert_eq!(c.recv(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    // Delayed ACK.
    recv_nothing!(c, time 20);
    recv!(c, time 60, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 6)]);
}

#[test]
fn syn_received_bad_ack_gets_rst() {
    let mut c = socket_syn_received();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ),
        Err(DropReason::BadHandshakeAck)
    );
    recv!(c, [ours(RST, LOCAL_SEQ, NO_ACK).with_window(0)]);
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 100),
        Err(DropReason::BadHandshakeAck)
    );
    recv!(c, [ours(RST, LOCAL_SEQ + 100, NO_ACK).with_window(0)]);
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn syn_received_retransmitted_syn_resends_syn_ack() {
    let mut c = socket_syn_received();
    send!(c, syn_from_peer());
    recv!(
        c,
        [ours(SYN | ACK, LOCAL_SEQ, REMOTE_SEQ + 1).with_options(OPTS_MSS)]
    );
}

#[test]
fn syn_received_other_syn_is_challenged() {
    let mut c = socket_syn_received();
    send!(
        c,
        peer(SYN, REMOTE_SEQ + 10, NO_ACK),
        Err(DropReason::SynChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn syn_received_rst() {
    let mut c = socket_syn_received();
    // In the window but not at RCV.NXT: challenge ACK.
    send!(
        c,
        peer(RST, REMOTE_SEQ + 3, NO_ACK),
        Err(DropReason::RstChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    // Out of the window: silently dropped.
    send!(
        c,
        peer(RST, REMOTE_SEQ + 300, NO_ACK),
        Err(DropReason::RstOutOfWindow)
    );
    recv_nothing!(c);
    send!(c, peer(RST, REMOTE_SEQ + 1, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
}

#[test]
fn syn_received_fin_goes_to_close_wait() {
    let mut c = socket_syn_received();
    send!(c, peer(ACK | FIN, REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::CloseWait);
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 2)]);
    assert_eq!(c.recv(&mut [0; 4]), Err(RecvError::Finished));
}

#[test]
fn syn_received_close_sends_fin_after_handshake() {
    let mut c = socket_syn_received();
    c.shutdown_write(t(0));
    assert_eq!(c.state(), State::SynReceived);
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.state(), State::FinWait1);
    recv!(c, [ours(FIN | ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
}

#[test]
fn syn_received_options_only_as_offered() {
    let syn = TcpRepr {
        options: TcpOptions {
            mss: Some(1200),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some(Timestamps {
                tsval: 77,
                tsecr: 0,
            }),
            ..OPTS_NONE
        },
        ..syn_from_peer()
    };
    let all = Config {
        window_scaling: true,
        sack: true,
        timestamps: true,
        recv_buffer: 1 << 20,
        ..cfg()
    };
    let mut c = socket_syn_received_with(all.clone(), &syn);
    let out = output(&mut c, t(5));
    let o = out[0].repr.options;
    assert_eq!(o.mss, Some(1460));
    assert_eq!(o.window_scale, Some(5), "1 MiB needs a shift of 5");
    assert!(o.sack_permitted);
    assert_eq!(
        o.timestamps,
        Some(Timestamps {
            tsval: 5,
            tsecr: 77
        })
    );
    // The window in a SYN-ACK is never scaled.
    assert_eq!(out[0].repr.window, 0xffff);
    // A SYN without options gets a SYN-ACK without them.
    let mut c = socket_syn_received_with(all, &syn_from_peer());
    let out = output(&mut c, t(5));
    assert_eq!(out[0].repr.options, OPTS_MSS);
    assert_eq!(c.tcb().rcv_wnd_shift, 0);
}

#[test]
fn syn_received_retransmits_syn_ack() {
    let mut c = socket_syn_received();
    recv_nothing!(c, time 999);
    recv!(c, time 1000, [ours(SYN | ACK, LOCAL_SEQ, REMOTE_SEQ + 1).with_options(OPTS_MSS)]);
}

// ---- ESTABLISHED ----

#[test]
fn established_receives_in_order_data_with_delayed_ack() {
    let mut c = socket_established();
    send!(c, time 0, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"abcdef"));
    assert_eq!(c.poll_timeout(), Some(t(40)));
    recv_nothing!(c, time 39);
    recv!(c, time 40, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 7).with_window(58)]);
    let (a, b) = c.peek().unwrap();
    assert_eq!([a, b].concat(), b"abcdef");
    c.consume(6);
    assert_eq!(c.recv_queue(), 0);
}

#[test]
fn established_acks_every_second_full_segment() {
    let mut c = established_with(
        Config {
            recv_buffer: 4096,
            ..cfg()
        },
        OPTS_NONE,
    );
    let seg = |i: usize| peer_ack(REMOTE_SEQ + 1 + i * 536, LOCAL_SEQ + 1).with_payload(&[7; 536]);
    send!(c, seg(0));
    recv_nothing!(c, time 0);
    send!(c, seg(1));
    let out = output(&mut c, t(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repr.ack_number, REMOTE_SEQ + 1073);
}

#[test]
fn established_out_of_order_is_reassembled() {
    let mut c = socket_established();
    let seg = |off: usize, data: &'static [u8]| {
        peer_ack(REMOTE_SEQ + 1 + off, LOCAL_SEQ + 1).with_payload(data)
    };
    send!(c, seg(4, b"efgh"));
    // Out of order: an immediate duplicate ACK.
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1).with_window(64)]);
    send!(c, seg(2, b"cdef")); // overlaps
    send!(c, seg(6, b"gh")); // duplicate
                             // Both asked for an immediate ACK before output ran: one ACK.
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    send!(c, seg(0, b"ab")); // fills the hole: immediate ACK
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 9).with_window(56)]);
    let mut buf = [0; 16];
    assert_eq!(c.recv(&mut buf), Ok(8));
    assert_eq!(&buf[..8], b"abcdefgh");
}

#[test]
fn established_data_outside_window_is_acked_and_dropped() {
    let mut c = socket_established();
    // Beyond the 64-byte window.
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1 + 64, LOCAL_SEQ + 1).with_payload(b"zz"),
        Err(DropReason::OutOfWindow)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    // An old duplicate.
    send!(
        c,
        peer_ack(REMOTE_SEQ - 10, LOCAL_SEQ + 1).with_payload(b"zz"),
        Err(DropReason::OutOfWindow)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.recv_queue(), 0);
}

#[test]
fn established_trims_data_past_the_window() {
    let mut c = socket_established();
    let data = [9u8; 80];
    send!(
        c,
        peer(ACK | FIN, REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(&data)
    );
    // 64 bytes kept, the FIN beyond them cut off; the cut is answered at
    // once, with the window shut.
    assert_eq!(c.recv_queue(), 64);
    assert_eq!(c.state(), State::Established);
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 65).with_window(0)]);
}

#[test]
fn established_fin_goes_to_close_wait() {
    let mut c = socket_established();
    send!(
        c,
        peer(ACK | FIN, REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"xy")
    );
    assert_eq!(c.state(), State::CloseWait);
    // The FIN takes a sequence number but no buffer space; the right edge
    // stays where it was (61 = 64 - 3).
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 4).with_window(61)]);
    let mut buf = [0; 4];
    assert_eq!(c.recv(&mut buf), Ok(2));
    assert_eq!(c.recv(&mut buf), Err(RecvError::Finished));
}

#[test]
fn established_out_of_order_fin_waits_for_the_hole() {
    let mut c = socket_established();
    send!(
        c,
        peer(ACK | FIN, REMOTE_SEQ + 3, LOCAL_SEQ + 1).with_payload(b"cd")
    );
    assert_eq!(c.state(), State::Established);
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"ab")
    );
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(c.tcb().rcv_nxt, REMOTE_SEQ + 6);
}

#[test]
fn established_rst_rules_rfc5961() {
    let mut c = socket_established();
    // Outside the window: silently dropped.
    send!(
        c,
        peer(RST, REMOTE_SEQ + 500, NO_ACK),
        Err(DropReason::RstOutOfWindow)
    );
    recv_nothing!(c);
    // In the window, not exact: challenge ACK.
    send!(
        c,
        peer(RST, REMOTE_SEQ + 2, NO_ACK),
        Err(DropReason::RstChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.state(), State::Established);
    // Exactly RCV.NXT: reset.
    send!(c, peer(RST, REMOTE_SEQ + 1, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(
        c.recv(&mut [0; 4]),
        Err(RecvError::Broken(CloseReason::Reset))
    );
}

#[test]
fn established_syn_is_challenged() {
    let mut c = socket_established();
    for seq in [REMOTE_SEQ + 1, REMOTE_SEQ + 5000, REMOTE_SEQ] {
        let r = c.on_segment(t(0), &peer(SYN, seq, NO_ACK));
        assert!(r.is_err());
        assert_eq!(c.state(), State::Established);
    }
    // In-window SYN: challenge ACK; out-of-window SYN: the usual ACK.
    assert_eq!(output(&mut c, t(0)).len(), 1);
    assert_eq!(c.counters().drops_of(DropReason::SynChallenged), 1);
}

#[test]
fn established_syn_ack_is_challenged() {
    let mut c = socket_established();
    send!(
        c,
        peer(SYN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1),
        Err(DropReason::SynChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
}

#[test]
fn established_ack_of_unsent_data_is_answered_and_dropped() {
    let mut c = socket_established();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 100).with_payload(b"data"),
        Err(DropReason::AckUnsent)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
    assert_eq!(c.recv_queue(), 0, "the segment's data is dropped too");
}

#[test]
fn established_challenge_acks_are_rate_limited() {
    let mut c = socket_established();
    let bad = peer(RST, REMOTE_SEQ + 2, NO_ACK);
    let mut acks = 0;
    for _ in 0..25 {
        let _ = c.on_segment(t(100), &bad);
        acks += output(&mut c, t(100)).len();
    }
    assert_eq!(acks, 10);
    assert_eq!(c.counters().challenge_acks_limited, 15);
    // A new second, a new budget.
    let _ = c.on_segment(t(1100), &bad);
    assert_eq!(output(&mut c, t(1100)).len(), 1);
}

#[test]
fn established_no_ack_flag_dropped() {
    let mut c = socket_established();
    send!(
        c,
        peer(NONE, REMOTE_SEQ + 1, NO_ACK).with_payload(b"abc"),
        Err(DropReason::NoAck)
    );
    assert_eq!(c.recv_queue(), 0);
}

#[test]
fn established_sends_and_gets_acked() {
    let mut c = socket_established();
    assert_eq!(c.send(b"abcdef"), Ok(6));
    recv!(c, time 0, [ours(ACK | PSH, LOCAL_SEQ + 1, REMOTE_SEQ + 1).with_payload(b"abcdef")]);
    assert_eq!(c.poll_timeout(), Some(t(1000)));
    send!(c, time 30, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 7));
    assert_eq!(c.send_queue(), 0);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.rtt().srtt(), Some(Duration::from_millis(30)));
}

#[test]
fn established_segments_at_mss_psh_on_last() {
    let mut c = established_sender(64, 256);
    assert_eq!(c.send(&[1; 150]), Ok(150));
    let out = output(&mut c, t(0));
    assert_eq!(payload_lens(&out), [64, 64, 22]);
    assert_eq!(out[0].repr.flags, flags(ACK));
    assert_eq!(out[2].repr.flags, flags(ACK | PSH));
    assert_eq!(out[2].repr.seq_number, LOCAL_SEQ + 129);
}

#[test]
fn established_nagle_holds_small_segments() {
    let mut c = socket_established();
    c.send(b"a").unwrap();
    assert_eq!(output(&mut c, t(0)).len(), 1);
    c.send(b"b").unwrap();
    c.send(b"c").unwrap();
    recv_nothing!(c, time 0);
    send!(c, time 10, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    recv!(c, time 10, [ours(ACK | PSH, LOCAL_SEQ + 2, REMOTE_SEQ + 1).with_payload(b"bc")]);
    // Without Nagle small writes go out at once.
    c.set_nodelay(true);
    c.send(b"d").unwrap();
    assert_eq!(output(&mut c, t(10)).len(), 1);
}

#[test]
fn established_retransmits_on_timeout_with_backoff() {
    let mut c = socket_established();
    c.send(b"abc").unwrap();
    assert_eq!(output(&mut c, t(0)).len(), 1);
    recv_nothing!(c, time 999);
    let data = ours(ACK | PSH, LOCAL_SEQ + 1, REMOTE_SEQ + 1).with_payload(b"abc");
    recv!(c, time 1000, [data]);
    assert_eq!(c.cwnd(), c.eff_mss(), "RTO: cwnd to one segment");
    recv_nothing!(c, time 2999);
    recv!(c, time 3000, [data]);
    assert_eq!(c.counters().timeouts, 2);
    // An ACK after retransmission gives no RTT sample (Karn) without timestamps.
    send!(c, time 3010, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 4));
    assert_eq!(c.rtt().srtt(), None);
    assert_eq!(c.rtt().backoff(), 0);
}

#[test]
fn established_gives_up_after_data_retries() {
    let mut c = socket_established();
    c.cfg.data_retries = 3;
    c.send(b"abc").unwrap();
    let mut now = 0;
    output(&mut c, t(now));
    while let Some(at) = c.poll_timeout() {
        now = at.total_millis();
        output(&mut c, at);
    }
    assert_eq!(now, 1000 + 2000 + 4000 + 8000);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(c.counters().retransmits, 3);
}

#[test]
fn established_fast_retransmit_on_three_dup_acks() {
    let mut c = established_sender(64, 1024);
    c.cc = congestion::Congestion::new(congestion::Algorithm::NewReno, 64, 10);
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(1000));
    c.send(&[5; 320]).unwrap();
    assert_eq!(output(&mut c, t(0)).len(), 5);
    let dup = peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(1000);
    send!(c, time 10, dup);
    send!(c, time 10, dup);
    recv_nothing!(c, time 10);
    send!(c, time 10, dup);
    let out = output(&mut c, t(10));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repr.seq_number, LOCAL_SEQ + 1);
    assert_eq!(out[0].payload.len(), 64);
    assert_eq!(c.counters().fast_retransmits, 1);
    // ssthresh = max(flight / 2, 2 SMSS) = 160; cwnd = ssthresh + 3 SMSS.
    assert_eq!(c.cwnd(), 160 + 3 * 64);
    // A partial ACK retransmits the next hole at once.
    send!(c, time 20, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 65).with_window(1000));
    let out = output(&mut c, t(20));
    assert_eq!(out[0].repr.seq_number, LOCAL_SEQ + 65);
    // The full ACK ends recovery.
    send!(c, time 30, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 321));
    assert!(c.recovery.is_none());
    assert_eq!(c.send_queue(), 0);
}

#[test]
fn established_zero_window_probing_with_backoff() {
    let mut c = socket_established();
    c.set_nodelay(true);
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(0));
    c.send(b"abc").unwrap();
    recv_nothing!(c, time 0);
    // Persist timer at the RTO (1 s), then doubling.
    assert_eq!(c.poll_timeout(), Some(t(1000)));
    let probe = our_ack(LOCAL_SEQ, REMOTE_SEQ + 1);
    recv!(c, time 1000, [probe]);
    assert_eq!(c.poll_timeout(), Some(t(3000)));
    recv!(c, time 3000, [probe]);
    assert_eq!(c.poll_timeout(), Some(t(7000)));
    assert_eq!(c.state(), State::Established, "probes never time out");
    // The window opens: the data goes.
    send!(c, time 7100, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    let out = output(&mut c, t(7100));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"abc");
}

#[test]
fn established_window_update_on_read() {
    let mut c = socket_established();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(&[1; 64])
    );
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 65).with_window(0)]);
    // A zero window admits the segment's ACK, not its text; the refused
    // text is answered at once (RFC 9293 §3.10.7.4).
    send!(
        c,
        peer_ack(REMOTE_SEQ + 65, LOCAL_SEQ + 1).with_payload(&[2; 4])
    );
    assert_eq!(c.recv_queue(), 64);
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 65).with_window(0)]);
    let mut buf = [0; 8];
    // Reading a little does not announce a silly window (SWS avoidance).
    c.recv(&mut buf).unwrap();
    recv_nothing!(c);
    let mut big = [0; 64];
    c.recv(&mut big).unwrap();
    recv!(c, [our_ack(LOCAL_SEQ + 1, REMOTE_SEQ + 65).with_window(64)]);
}

#[test]
fn established_urgent_pointer_reported_inline() {
    let mut c = socket_established();
    send!(
        c,
        TcpRepr {
            urgent_pointer: 3,
            payload: b"abcdef",
            ..peer(ACK | TcpFlags::URG, REMOTE_SEQ + 1, LOCAL_SEQ + 1)
        }
    );
    assert_eq!(c.urgent_mark(), Some(3));
    let mut buf = [0; 2];
    c.recv(&mut buf).unwrap();
    assert_eq!(c.urgent_mark(), Some(1));
    c.recv(&mut buf).unwrap();
    assert_eq!(c.urgent_mark(), None);
    assert_eq!(c.recv_queue(), 2);
}

#[test]
fn established_abort_sends_rst() {
    let mut c = socket_established();
    c.abort(t(0));
    assert_eq!(c.state(), State::Closed);
    recv!(c, [ours(RST, LOCAL_SEQ + 1, NO_ACK).with_window(0)]);
    assert_eq!(c.close_reason(), Some(CloseReason::Aborted));
}

#[test]
fn established_keepalive() {
    let mut c = socket_established();
    c.cfg.keepalive = Some(Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        probes: 2,
    });
    send!(c, time 0, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.poll_timeout(), Some(t(10_000)));
    let probe = our_ack(LOCAL_SEQ, REMOTE_SEQ + 1);
    recv!(c, time 10_000, [probe]);
    // An answer restarts the idle time.
    send!(c, time 10_010, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    assert_eq!(c.poll_timeout(), Some(t(20_010)));
    recv!(c, time 20_010, [probe]);
    recv!(c, time 21_010, [probe]);
    recv_nothing!(c, time 22_010);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::TimedOut));
    assert_eq!(c.counters().keepalive_probes, 3);
}

#[test]
fn keepalive_off_by_default() {
    let c = socket_established();
    assert!(Config::default().keepalive.is_none());
    assert_eq!(c.poll_timeout(), None);
}

// ---- options: window scaling, timestamps, PAWS, SACK ----

fn established_with(cfg: Config, peer_opts: TcpOptions) -> Connection {
    let syn = syn_from_peer().with_options(peer_opts);
    let mut c = socket_syn_received_with(cfg, &syn);
    output(&mut c, t(0));
    let ts = peer_opts.timestamps.map(|_| Timestamps {
        tsval: 101,
        tsecr: 0,
    });
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_options(TcpOptions {
            timestamps: ts,
            ..OPTS_NONE
        })
    );
    assert_eq!(c.state(), State::Established);
    fresh_rtt(&mut c);
    c
}

/// Options carrying only a timestamps option: TSval and TSecr (RFC 7323 §3).
fn ts_opts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamps: Some(Timestamps { tsval, tsecr }),
        ..OPTS_NONE
    }
}

/// ESTABLISHED with timestamps on both sides (RFC 7323); the peer's SYN
/// carried TSval 100.
fn established_with_timestamps() -> Connection {
    let cfg = Config {
        timestamps: true,
        ..cfg()
    };
    established_with(cfg, ts_opts(100, 0))
}

#[test]
fn window_scaling_applies_after_syn_only() {
    let cfg = Config {
        window_scaling: true,
        recv_buffer: 1 << 20,
        ..cfg()
    };
    let opts = TcpOptions {
        window_scale: Some(20), // clamped to 14
        ..OPTS_NONE
    };
    let syn = syn_from_peer().with_options(opts).with_window(1000);
    let mut c = socket_syn_received_with(cfg, &syn);
    assert_eq!(c.tcb().snd_wnd, 1000, "the SYN's window is not scaled");
    assert_eq!(c.tcb().snd_wnd_shift, 14);
    output(&mut c, t(0));
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(2));
    assert_eq!(c.tcb().snd_wnd, 2 << 14);
    // Our windows go out scaled by 5 (1 MiB).
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(&[0; 10])
    );
    c.ack_now = true;
    let out = output(&mut c, t(0));
    assert_eq!(out[0].repr.window as usize, ((1 << 20) - 32) >> 5);
}

#[test]
fn timestamps_echo_paws_and_rtt() {
    let mut c = established_with_timestamps();
    assert!(c.tcb().ts_enabled);
    assert_eq!(c.eff_mss(), 536 - 12);
    assert_eq!(c.tcb().ts_recent, 101);
    c.set_nodelay(true);
    c.send(b"abc").unwrap();
    let out = output(&mut c, t(50));
    assert_eq!(
        out[0].repr.options.timestamps,
        Some(Timestamps {
            tsval: 50,
            tsecr: 101
        })
    );
    // RTT from the echo: 80 - 50.
    send!(c, time 80, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 4).with_options(ts_opts(120, 50)));
    assert_eq!(c.rtt().srtt(), Some(Duration::from_millis(30)));
    assert_eq!(c.tcb().ts_recent, 120);
    // PAWS: an older TSval is an old duplicate: ACK and drop.
    let old = peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 4).with_options(ts_opts(110, 50));
    send!(c, time 90, old.with_payload(b"old"), Err(DropReason::Paws));
    assert_eq!(c.recv_queue(), 0);
    let out = output(&mut c, t(90));
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].repr.options.timestamps,
        Some(Timestamps {
            tsval: 90,
            tsecr: 120
        })
    );
}

#[test]
fn sack_blocks_generated_per_rfc2018() {
    let cfg = Config {
        sack: true,
        recv_buffer: 1000,
        ..cfg()
    };
    let mut c = established_with(
        cfg,
        TcpOptions {
            sack_permitted: true,
            ..OPTS_NONE
        },
    );
    let seg = |off: usize| peer_ack(REMOTE_SEQ + 1 + off, LOCAL_SEQ + 1).with_payload(&[3; 10]);
    let block = |l: usize, r: usize| {
        Some(SackBlock {
            left: REMOTE_SEQ + 1 + l,
            right: REMOTE_SEQ + 1 + r,
        })
    };
    send!(c, seg(20));
    let out = output(&mut c, t(0));
    assert_eq!(
        out[0].repr.options.sack_blocks,
        [block(20, 30), None, None, None]
    );
    send!(c, seg(50));
    send!(c, seg(80));
    send!(c, seg(30)); // extends the first block: it comes first again
    let out = output(&mut c, t(0));
    let last = out.last().unwrap();
    assert_eq!(
        last.repr.options.sack_blocks,
        [block(20, 40), block(80, 90), block(50, 60), None]
    );
    send!(c, seg(0));
    send!(c, seg(10));
    let out = output(&mut c, t(0));
    let last = out.last().unwrap();
    assert_eq!(last.repr.ack_number, REMOTE_SEQ + 41);
    assert_eq!(
        last.repr.options.sack_blocks,
        [block(80, 90), block(50, 60), None, None]
    );
}

// ---- FIN-WAIT-1 ----

#[test]
fn fin_wait_1_ack_goes_to_fin_wait_2() {
    let _ = socket_fin_wait_2();
}

#[test]
fn fin_wait_1_fin_goes_to_closing() {
    let _ = socket_closing();
}

#[test]
fn fin_wait_1_fin_ack_goes_to_time_wait() {
    let mut c = socket_fin_wait_1();
    send!(c, peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
}

#[test]
fn fin_wait_1_still_receives_data() {
    let mut c = socket_fin_wait_1();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"late")
    );
    assert_eq!(c.recv_queue(), 4);
    assert_eq!(c.send(b"x"), Err(SendError::Closed));
}

#[test]
fn fin_wait_1_retransmits_fin() {
    let mut c = socket_fin_wait_1();
    recv!(c, time 1000, [ours(FIN | ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 1)]);
}

#[test]
fn fin_wait_1_rst_and_syn() {
    let mut c = socket_fin_wait_1();
    send!(
        c,
        peer(SYN, REMOTE_SEQ + 1, NO_ACK),
        Err(DropReason::SynChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 1)]);
    send!(c, peer(RST, REMOTE_SEQ + 1, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
}

// ---- FIN-WAIT-2 ----

#[test]
fn fin_wait_2_receives_data_then_fin() {
    let mut c = socket_fin_wait_2();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 2).with_payload(b"more")
    );
    assert_eq!(c.recv_queue(), 4);
    send!(c, peer(ACK | FIN, REMOTE_SEQ + 5, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 6).with_window(59)]);
}

#[test]
fn fin_wait_2_waits_unless_closed() {
    // Half-closed: no timeout.
    let c = socket_fin_wait_2();
    assert_eq!(c.poll_timeout(), None);
    // Fully closed: the FIN-WAIT-2 timeout applies.
    let mut c = socket_established();
    c.close(t(0));
    output(&mut c, t(0));
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::FinWait2);
    assert_eq!(c.poll_timeout(), Some(t(60_000)));
    recv_nothing!(c, time 60_000);
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn fin_wait_2_rst_in_and_out_of_window() {
    let mut c = socket_fin_wait_2();
    send!(
        c,
        peer(RST, REMOTE_SEQ + 999, NO_ACK),
        Err(DropReason::RstOutOfWindow)
    );
    send!(
        c,
        peer(RST, REMOTE_SEQ + 9, NO_ACK),
        Err(DropReason::RstChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 1)]);
    send!(c, peer(RST, REMOTE_SEQ + 1, NO_ACK));
    assert_eq!(c.state(), State::Closed);
}

// ---- CLOSING ----

#[test]
fn closing_ack_goes_to_time_wait() {
    let mut c = socket_closing();
    send!(c, peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::TimeWait);
}

#[test]
fn closing_rst_closes_quietly() {
    let mut c = socket_closing();
    send!(c, peer(RST, REMOTE_SEQ + 2, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Normal));
}

#[test]
fn closing_retransmitted_fin_is_acked() {
    let mut c = socket_closing();
    send!(
        c,
        peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 1),
        Err(DropReason::OutOfWindow)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
    assert_eq!(c.state(), State::Closing);
}

// ---- TIME-WAIT ----

#[test]
fn time_wait_lasts_two_msl() {
    let mut c = socket_time_wait();
    assert_eq!(c.poll_timeout(), Some(t(60_000)));
    recv_nothing!(c, time 59_999);
    assert_eq!(c.state(), State::TimeWait);
    recv_nothing!(c, time 60_000);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Normal));
}

#[test]
fn time_wait_msl_is_configurable() {
    let mut c = socket_established();
    c.cfg.msl = Duration::from_millis(500);
    c.shutdown_write(t(0));
    output(&mut c, t(0));
    send!(c, peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 2));
    assert_eq!(c.poll_timeout(), Some(t(1000)));
}

#[test]
fn time_wait_retransmitted_fin_acked_and_timer_restarts() {
    let mut c = socket_time_wait();
    send!(
        c, time 5000,
        peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 2),
        Err(DropReason::OutOfWindow)
    );
    recv!(c, time 5000, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
    assert_eq!(c.poll_timeout(), Some(t(65_000)));
}

#[test]
fn time_wait_ignores_rst_and_challenges_syn() {
    let mut c = socket_time_wait();
    send!(
        c,
        peer(RST, REMOTE_SEQ + 2, NO_ACK),
        Err(DropReason::RstOutOfWindow)
    );
    assert_eq!(c.state(), State::TimeWait);
    send!(
        c,
        peer(SYN, REMOTE_SEQ + 2, NO_ACK),
        Err(DropReason::SynChallenged)
    );
    recv!(c, [our_ack(LOCAL_SEQ + 2, REMOTE_SEQ + 2)]);
    // Data is not accepted any more.
    send!(
        c,
        peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 2).with_payload(b"zz")
    );
    assert_eq!(c.recv_queue(), 0);
}

// ---- CLOSE-WAIT ----

#[test]
fn close_wait_keeps_sending() {
    let mut c = socket_close_wait();
    c.send(b"reply").unwrap();
    recv!(
        c,
        [ours(ACK | PSH, LOCAL_SEQ + 1, REMOTE_SEQ + 2).with_payload(b"reply")]
    );
}

#[test]
fn close_wait_data_after_fin_is_not_accepted() {
    let mut c = socket_close_wait();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 1).with_payload(b"bogus")
    );
    assert_eq!(c.recv_queue(), 0);
    assert_eq!(c.recv(&mut [0; 4]), Err(RecvError::Finished));
}

#[test]
fn close_wait_rst_resets() {
    let mut c = socket_close_wait();
    send!(c, peer(RST, REMOTE_SEQ + 2, NO_ACK));
    assert_eq!(c.close_reason(), Some(CloseReason::Reset));
}

// ---- LAST-ACK ----

#[test]
fn last_ack_ack_closes() {
    let mut c = socket_last_ack();
    send!(c, peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 1), Ok(()));
    assert_eq!(c.state(), State::LastAck, "an ACK not covering our FIN");
    send!(c, peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 2));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Normal));
    recv_nothing!(c);
}

#[test]
fn last_ack_retransmits_fin_and_rst_closes() {
    let mut c = socket_last_ack();
    recv!(c, time 1000, [ours(FIN | ACK, LOCAL_SEQ + 1, REMOTE_SEQ + 2)]);
    send!(c, time 1001, peer(RST, REMOTE_SEQ + 2, NO_ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Normal));
}

// ---- closing sequences end to end ----

/// Feed segments to a connection, whatever it makes of them.
fn deliver(c: &mut Connection, segs: Vec<Seg>, now: Instant) {
    for s in segs {
        let _ = c.on_segment(now, &s.as_repr());
    }
}

/// Pass everything each side emits to the other until both are quiet.
fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
    for _ in 0..100 {
        let from_a = output(a, now);
        let from_b = output(b, now);
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        deliver(b, from_a, now);
        deliver(a, from_b, now);
    }
    panic!("no quiescence");
}

/// A sends its SYN (client side, `TUPLE` reversed); B is made from it in
/// SYN-RECEIVED with its SYN-ACK not yet sent.
fn syn_pair(cfg: Config) -> (Connection, Connection) {
    let mut a = Connection::connect(cfg.clone(), TUPLE.reversed(), t(0), &KEY);
    let syn = output(&mut a, t(0)).remove(0);
    let b = Connection::accept_syn(cfg, TUPLE, t(0), &KEY, &syn.repr);
    (a, b)
}

fn pair() -> (Connection, Connection) {
    let (mut a, mut b) = syn_pair(cfg());
    exchange(&mut a, &mut b, t(0));
    assert_eq!(
        (a.state(), b.state()),
        (State::Established, State::Established)
    );
    (a, b)
}

#[test]
fn four_way_close() {
    let (mut a, mut b) = pair();
    a.shutdown_write(t(0));
    exchange(&mut a, &mut b, t(0));
    assert_eq!((a.state(), b.state()), (State::FinWait2, State::CloseWait));
    // Half-close: B still sends, A still receives.
    b.send(b"tail").unwrap();
    exchange(&mut a, &mut b, t(0));
    assert_eq!(a.recv_queue(), 4);
    b.shutdown_write(t(0));
    exchange(&mut a, &mut b, t(0));
    assert_eq!((a.state(), b.state()), (State::TimeWait, State::Closed));
}

#[test]
fn simultaneous_close() {
    let (mut a, mut b) = pair();
    a.shutdown_write(t(0));
    b.shutdown_write(t(0));
    // Both FINs cross.
    let fa = output(&mut a, t(0));
    let fb = output(&mut b, t(0));
    deliver(&mut b, fa, t(0));
    deliver(&mut a, fb, t(0));
    assert_eq!((a.state(), b.state()), (State::Closing, State::Closing));
    exchange(&mut a, &mut b, t(0));
    assert_eq!((a.state(), b.state()), (State::TimeWait, State::TimeWait));
}

#[test]
fn simultaneous_open() {
    let mut a = Connection::connect(cfg(), TUPLE.reversed(), t(0), &KEY);
    let mut b = Connection::connect(cfg(), TUPLE, t(0), &IsnKey::from_parts(9, 9));
    let sa = output(&mut a, t(0));
    let sb = output(&mut b, t(0));
    for s in sa {
        b.on_segment(t(0), &s.repr).unwrap();
    }
    for s in sb {
        a.on_segment(t(0), &s.repr).unwrap();
    }
    assert_eq!(
        (a.state(), b.state()),
        (State::SynReceived, State::SynReceived)
    );
    exchange(&mut a, &mut b, t(0));
    assert_eq!(
        (a.state(), b.state()),
        (State::Established, State::Established)
    );
    a.send(b"ping").unwrap();
    exchange(&mut a, &mut b, t(0));
    assert_eq!(b.recv_queue(), 4);
}

#[test]
fn isn_is_keyed_and_clocked() {
    let a = Connection::connect(cfg(), TUPLE, t(0), &KEY);
    let b = Connection::connect(cfg(), TUPLE, t(0), &IsnKey::from_parts(1, 3));
    let c = Connection::connect(cfg(), TUPLE, t(1), &KEY);
    assert_ne!(a.tcb().iss, b.tcb().iss);
    assert_eq!(c.tcb().iss.0.wrapping_sub(a.tcb().iss.0), 250);
}

#[test]
fn poll_transmit_refusal_keeps_the_segment() {
    let mut c = socket_established();
    c.send(b"abc").unwrap();
    assert_eq!(c.poll_transmit(t(0), |_| false), 0);
    assert_eq!(c.tcb().snd_nxt, LOCAL_SEQ + 1);
    let out = output(&mut c, t(0));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"abc");
}

// ---- timestamps and Karn, window edges ----

#[test]
fn timestamp_echo_older_than_a_retransmission_is_no_sample() {
    let mut c = established_with_timestamps();
    c.set_nodelay(true);
    c.send(b"abc").unwrap();
    let first = output(&mut c, t(10));
    assert_eq!(first[0].repr.options.timestamps.unwrap().tsval, 10);
    // Timeout: the retransmission carries TSval 1010.
    let again = output(&mut c, t(1010));
    assert_eq!(again[0].repr.options.timestamps.unwrap().tsval, 1010);
    // An ACK echoing the first transmission (its ACK was lost) is no sample.
    send!(c, time 1020, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 4).with_options(ts_opts(200, 10)));
    assert_eq!(c.rtt().srtt(), None);
    // Once all is acknowledged, fresh echoes are samples again.
    c.send(b"d").unwrap();
    output(&mut c, t(1100));
    send!(c, time 1140, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 5).with_options(ts_opts(300, 1100)));
    assert_eq!(c.rtt().srtt(), Some(Duration::from_millis(40)));
}

#[test]
fn pure_ack_stays_inside_the_peers_window() {
    let mut c = socket_established();
    c.set_nodelay(true);
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(4));
    c.send(b"abcd").unwrap();
    assert_eq!(output(&mut c, t(0)).len(), 1);
    // Timeout rewinds SND.NXT; the peer then shrinks its window to zero.
    output(&mut c, t(1000));
    send!(c, time 1001, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(0));
    // Out-of-order data asks for an immediate ACK.
    send!(c, time 1002, peer_ack(REMOTE_SEQ + 2, LOCAL_SEQ + 1).with_payload(b"x").with_window(0));
    let out = output(&mut c, t(1002));
    let ack = out.iter().find(|s| s.payload.is_empty()).unwrap();
    // SND.MAX (LOCAL+5) is past SND.UNA + SND.WND (LOCAL+1).
    assert_eq!(ack.repr.seq_number, LOCAL_SEQ + 1);
}

#[test]
fn pure_segment_on_the_right_edge_is_acceptable() {
    let mut c = socket_established();
    send!(c, peer_ack(REMOTE_SEQ + 1 + 64, LOCAL_SEQ + 1));
    send!(
        c,
        peer_ack(REMOTE_SEQ + 2 + 64, LOCAL_SEQ + 1),
        Err(DropReason::OutOfWindow)
    );
}

// ---- arbitrary input: no panic, invariants hold ----

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Segment {
            seq_off: i32,
            ack_off: i32,
            flags: u8,
            window: u16,
            urgent: u16,
            len: usize,
            ts: Option<(u32, u32)>,
            sack: Option<(i32, u32)>,
        },
        Wait(u64),
        Send(usize),
        Recv(usize),
        Shutdown,
        Close,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (
                prop_oneof![-70_000i32..70_000, any::<i32>()],
                prop_oneof![-70_000i32..70_000, any::<i32>()],
                any::<u8>(),
                any::<u16>(),
                any::<u16>(),
                0usize..200,
                proptest::option::of((any::<u32>(), any::<u32>())),
                proptest::option::of((-1000i32..1000, 0u32..3000)),
            )
                .prop_map(|(seq_off, ack_off, flags, window, urgent, len, ts, sack)| {
                    Step::Segment { seq_off, ack_off, flags, window, urgent, len, ts, sack }
                }),
            1 => (0u64..5000).prop_map(Step::Wait),
            1 => (0usize..300).prop_map(Step::Send),
            1 => (0usize..300).prop_map(Step::Recv),
            1 => Just(Step::Shutdown),
            1 => Just(Step::Close),
        ]
    }

    fn start(which: u8) -> Connection {
        match which % 10 {
            0 => socket_syn_sent(),
            1 => socket_syn_received(),
            2 => socket_established(),
            3 => socket_fin_wait_1(),
            4 => socket_fin_wait_2(),
            5 => socket_closing(),
            6 => socket_time_wait(),
            7 => socket_close_wait(),
            8 => socket_last_ack(),
            _ => {
                let opts = TcpOptions {
                    window_scale: Some(3),
                    sack_permitted: true,
                    timestamps: Some(Timestamps { tsval: 1, tsecr: 0 }),
                    ..OPTS_NONE
                };
                let all = Config {
                    window_scaling: true,
                    sack: true,
                    timestamps: true,
                    recv_buffer: 4096,
                    send_buffer: 4096,
                    ..cfg()
                };
                established_with(all, opts)
            }
        }
    }

    fn check(c: &Connection, now: Instant) -> Result<(), TestCaseError> {
        let tcb = c.tcb();
        prop_assert!(tcb.snd_una <= tcb.snd_nxt, "SND.UNA <= SND.NXT");
        prop_assert!(tcb.snd_nxt <= tcb.snd_max, "SND.NXT <= SND.MAX");
        prop_assert!(c.send_queue() <= c.snd_buf.capacity());
        prop_assert!(c.recv_queue() <= c.rcv_buf.capacity());
        prop_assert!(tcb.snd_wnd_shift <= 14 && tcb.rcv_wnd_shift <= 14);
        if let Some(at) = c.poll_timeout() {
            prop_assert!(
                at + Duration::from_secs(200) >= now,
                "deadline far in the past"
            );
        }
        Ok(())
    }

    proptest! {
        // 512 cases by default; PROPTEST_CASES raises it for a longer hunt.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(512),
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_segments_in_every_state(which in 0u8..10, steps in proptest::collection::vec(step(), 1..40)) {
            let mut c = start(which);
            let mut now = 0u64;
            let payload = [0xabu8; 200];
            for s in steps {
                match s {
                    Step::Segment { seq_off, ack_off, flags, window, urgent, len, ts, sack } => {
                        let mut options = OPTS_NONE;
                        options.timestamps = ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr });
                        if let Some((l, n)) = sack {
                            let left = c.tcb().snd_una + 0usize;
                            let left = SeqNumber(left.0.wrapping_add(l as u32));
                            options.sack_blocks[0] = Some(SackBlock { left, right: left + n as usize });
                        }
                        let seg = TcpRepr {
                            seq_number: SeqNumber(c.tcb().rcv_nxt.0.wrapping_add(seq_off as u32)),
                            ack_number: SeqNumber(c.tcb().snd_una.0.wrapping_add(ack_off as u32)),
                            flags: TcpFlags(flags),
                            window,
                            urgent_pointer: urgent,
                            options,
                            payload: &payload[..len],
                            ..SEND_TEMPL
                        };
                        let _ = c.on_segment(t(now), &seg);
                    }
                    Step::Wait(ms) => now += ms,
                    Step::Send(n) => { let _ = c.send(&payload[..n.min(200)]); }
                    Step::Recv(n) => { let mut b = vec![0; n]; let _ = c.recv(&mut b); }
                    Step::Shutdown => c.shutdown_write(t(now)),
                    Step::Close => c.close(t(now)),
                }
                let mss = c.eff_mss();
                let mut bad = None;
                c.poll_transmit(t(now), |r| {
                    if r.payload.len() > mss {
                        bad = Some(r.payload.len());
                    }
                    true
                });
                prop_assert_eq!(bad, None, "segment over the MSS");
                check(&c, t(now))?;
            }
        }
    }
}

// ---- close with unread data, data after close, TIME-WAIT reuse ----

#[test]
fn close_with_unread_data_resets() {
    let mut c = socket_established();
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"unread")
    );
    c.close(t(0));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.close_reason(), Some(CloseReason::Aborted));
    recv!(c, [ours(RST, LOCAL_SEQ + 1, NO_ACK).with_window(0)]);
}

#[test]
fn data_after_close_resets() {
    let mut c = socket_established();
    c.close(t(0));
    output(&mut c, t(0));
    assert_eq!(c.state(), State::FinWait1);
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 2).with_payload(b"late")
    );
    assert_eq!(c.state(), State::Closed);
    recv!(c, [ours(RST, LOCAL_SEQ + 2, NO_ACK).with_window(0)]);
}

#[test]
fn time_wait_reuse_rules() {
    let c = socket_time_wait();
    let syn = |seq: SeqNumber| peer(SYN, seq, NO_ACK);
    assert!(c.syn_may_reopen(&syn(REMOTE_SEQ + 1000)));
    assert!(!c.syn_may_reopen(&syn(REMOTE_SEQ)));
    assert!(!c.syn_may_reopen(&peer(SYN | ACK, REMOTE_SEQ + 1000, NO_ACK)));
    assert!(!socket_established().syn_may_reopen(&syn(REMOTE_SEQ + 1000)));
    // With timestamps the TSval decides.
    let mut c = established_with_timestamps();
    c.shutdown_write(t(0));
    output(&mut c, t(0));
    send!(
        c,
        peer(FIN | ACK, REMOTE_SEQ + 1, LOCAL_SEQ + 2).with_options(ts_opts(500, 0))
    );
    assert_eq!(c.state(), State::TimeWait);
    let ts_syn = |tsval: u32, seq: SeqNumber| syn(seq).with_options(ts_opts(tsval, 0));
    assert!(c.syn_may_reopen(&ts_syn(501, REMOTE_SEQ)));
    assert!(!c.syn_may_reopen(&ts_syn(400, REMOTE_SEQ + 1000)));
}

#[test]
fn sender_sws_avoidance_and_override() {
    let mut c = established_sender(100, 1024);
    // The peer offered 1000 once; now only 10 bytes are usable.
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(1000));
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(10));
    c.send(&[1; 300]).unwrap();
    // 10 bytes is neither a full segment nor half the largest window.
    recv_nothing!(c, time 0);
    // The override timeout sends what fits.
    let at = c.poll_timeout().unwrap();
    let out = output(&mut c, at);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload.len(), 10);
    // Half of the largest window is enough to send at once.
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 11).with_window(510));
    let out = output(&mut c, at);
    assert_eq!(payload_lens(&out), [100, 100, 90]);
}

#[test]
fn nothing_is_accepted_past_the_fin() {
    let mut c = socket_established();
    // FIN out of order at +4, then data claiming to run past it.
    send!(c, peer(ACK | FIN, REMOTE_SEQ + 5, LOCAL_SEQ + 1));
    send!(
        c,
        peer_ack(REMOTE_SEQ + 3, LOCAL_SEQ + 1).with_payload(b"cdefgh")
    );
    send!(
        c,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_payload(b"ab")
    );
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(c.recv_queue(), 4);
    assert_eq!(c.tcb().rcv_nxt, REMOTE_SEQ + 6);
}

#[test]
fn keepalive_waits_while_data_is_in_flight_and_runs_in_fin_wait_2() {
    let mut c = socket_established();
    c.cfg.keepalive = Some(Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        probes: 2,
    });
    c.cfg.data_retries = 100;
    c.cfg.max_rto = Duration::from_secs(60);
    send!(c, time 0, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1));
    c.send(b"abc").unwrap();
    output(&mut c, t(0));
    // Retransmissions run; keep-alive does not probe meanwhile.
    let mut now = 0;
    while now < 40_000 {
        now = c.poll_timeout().unwrap().total_millis();
        for s in output(&mut c, t(now)) {
            assert!(
                !s.payload.is_empty(),
                "no keep-alive probe with data in flight"
            );
        }
    }
    assert_eq!(c.counters().keepalive_probes, 0);
    // Acknowledged and half-closed: FIN-WAIT-2 still probes an idle peer.
    send!(c, time now, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 4));
    c.shutdown_write(t(now));
    output(&mut c, t(now));
    send!(c, time now, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 5));
    assert_eq!(c.state(), State::FinWait2);
    assert_eq!(c.poll_timeout(), Some(t(now + 10_000)));
    recv!(c, time now + 10_000, [our_ack(LOCAL_SEQ + 4, REMOTE_SEQ + 1)]);
}

// ---- the reaction matrix: every synchronized state x every segment kind ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Nothing,
    Ack,
    Rst,
    SynAck,
}

fn classify(out: &[Seg]) -> Reply {
    match out {
        [] => Reply::Nothing,
        [s] if s.repr.flags.rst() => Reply::Rst,
        [s] if s.repr.flags.syn() => Reply::SynAck,
        [s] if s.repr.flags == flags(ACK) && s.payload.is_empty() => Reply::Ack,
        other => panic!("unexpected output {other:?}"),
    }
}

#[test]
fn reaction_matrix() {
    use Reply::*;
    use State::*;
    // Columns: SYN in / SYN out / ACK in / ACK out / data in / data out /
    // FIN in / FIN out / RST exact / RST in window / RST out.
    type Row = (fn() -> Connection, [(State, Reply); 11]);
    // Each column's segment: control bits, SEG.SEQ as an offset from
    // RCV.NXT (FAR is outside any window), text.
    const FAR: usize = 1000;
    const TEXT: &[u8] = b"0123456789";
    let columns: [(u8, usize, &[u8]); 11] = [
        (SYN, 5, &[]),
        (SYN, FAR, &[]),
        (ACK, 0, &[]),
        (ACK, FAR, &[]),
        (ACK, 0, TEXT),
        (ACK, FAR, TEXT),
        (ACK | FIN, 0, &[]),
        (ACK | FIN, FAR, &[]),
        (RST, 0, &[]),
        (RST, 5, &[]),
        (RST, FAR, &[]),
    ];
    let table: [Row; 8] = [
        (
            socket_syn_received,
            [
                (SynReceived, Ack),
                (SynReceived, Ack),
                (Established, Nothing),
                (SynReceived, Ack),
                (Established, Nothing),
                (SynReceived, Ack),
                (CloseWait, Ack),
                (SynReceived, Ack),
                (Closed, Nothing),
                (SynReceived, Ack),
                (SynReceived, Nothing),
            ],
        ),
        (
            socket_established,
            [
                (Established, Ack),
                (Established, Ack),
                (Established, Nothing),
                (Established, Ack),
                (Established, Nothing),
                (Established, Ack),
                (CloseWait, Ack),
                (Established, Ack),
                (Closed, Nothing),
                (Established, Ack),
                (Established, Nothing),
            ],
        ),
        (
            socket_fin_wait_1,
            [
                (FinWait1, Ack),
                (FinWait1, Ack),
                (FinWait1, Nothing),
                (FinWait1, Ack),
                (FinWait1, Nothing),
                (FinWait1, Ack),
                (Closing, Ack),
                (FinWait1, Ack),
                (Closed, Nothing),
                (FinWait1, Ack),
                (FinWait1, Nothing),
            ],
        ),
        (
            socket_fin_wait_2,
            [
                (FinWait2, Ack),
                (FinWait2, Ack),
                (FinWait2, Nothing),
                (FinWait2, Ack),
                (FinWait2, Nothing),
                (FinWait2, Ack),
                (TimeWait, Ack),
                (FinWait2, Ack),
                (Closed, Nothing),
                (FinWait2, Ack),
                (FinWait2, Nothing),
            ],
        ),
        (
            socket_close_wait,
            [
                (CloseWait, Ack),
                (CloseWait, Ack),
                (CloseWait, Nothing),
                (CloseWait, Ack),
                (CloseWait, Nothing),
                (CloseWait, Ack),
                (CloseWait, Nothing),
                (CloseWait, Ack),
                (Closed, Nothing),
                (CloseWait, Ack),
                (CloseWait, Nothing),
            ],
        ),
        (
            socket_closing,
            [
                (Closing, Ack),
                (Closing, Ack),
                (Closing, Nothing),
                (Closing, Ack),
                (Closing, Nothing),
                (Closing, Ack),
                (Closing, Nothing),
                (Closing, Ack),
                (Closed, Nothing),
                (Closing, Ack),
                (Closing, Nothing),
            ],
        ),
        (
            socket_last_ack,
            [
                (LastAck, Ack),
                (LastAck, Ack),
                (LastAck, Nothing),
                (LastAck, Ack),
                (LastAck, Nothing),
                (LastAck, Ack),
                (LastAck, Nothing),
                (LastAck, Ack),
                (Closed, Nothing),
                (LastAck, Ack),
                (LastAck, Nothing),
            ],
        ),
        (
            socket_time_wait,
            [
                (TimeWait, Ack),
                (TimeWait, Ack),
                (TimeWait, Nothing),
                (TimeWait, Ack),
                (TimeWait, Nothing),
                (TimeWait, Ack),
                (TimeWait, Nothing),
                (TimeWait, Ack),
                (TimeWait, Nothing),
                (TimeWait, Nothing),
                (TimeWait, Nothing),
            ],
        ),
    ];
    for (make, row) in table {
        for (col, want) in row.iter().enumerate() {
            let mut c = make();
            let start = c.state();
            let r = c.tcb().rcv_nxt;
            // An ACK that acknowledges nothing new (or, in SYN-RECEIVED,
            // exactly our SYN).
            let ack = if start == SynReceived {
                LOCAL_SEQ + 1
            } else {
                c.tcb().snd_una
            };
            let (f, off, payload) = columns[col];
            let seg = peer(f, r + off, ack).with_payload(payload);
            let _ = c.on_segment(t(1), &seg);
            let got = (c.state(), classify(&output(&mut c, t(1))));
            assert_eq!(got, *want, "{start:?}, column {col}: {seg:?}");
        }
    }
}

#[test]
fn listen_data_before_accept_reaches_the_connection() {
    let mut l = listener(4, 4);
    l.on_segment(t(0), REMOTE, &syn_from_peer()).unwrap();
    let iss = listener_output(&mut l, t(0))[0].1.repr.seq_number;
    l.on_segment(t(1), REMOTE, &peer_ack(REMOTE_SEQ + 1, iss + 1))
        .unwrap();
    // Not accepted yet: the data still finds the connection (no RST).
    let data = peer(ACK | FIN, REMOTE_SEQ + 1, iss + 1).with_payload(b"early");
    l.on_segment(t(2), REMOTE, &data).unwrap();
    // Its ACK leaves through the listener.
    let out = listener_output(&mut l, t(2));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.repr.ack_number, REMOTE_SEQ + 7);
    let mut c = l.accept().unwrap();
    assert_eq!(c.state(), State::CloseWait);
    let mut buf = [0; 8];
    assert_eq!(c.recv(&mut buf), Ok(5));
    assert_eq!(l.counters().resets_sent, 0);
}

// ---- zero-copy delivery ----

/// In-order text goes to the application straight from the segment; what
/// it leaves is buffered and read in order after; an out-of-order segment
/// and text behind buffered bytes are never offered directly.
#[test]
fn established_delivers_in_order_text_without_copy() {
    let mut c = socket_established();
    let mut got: Vec<u8> = Vec::new();
    let mut offers = 0;
    let seg =
        |seq: SeqNumber, payload: &'static [u8]| peer_ack(seq, LOCAL_SEQ + 1).with_payload(payload);
    // Taken whole: nothing reaches the receive buffer, RCV.NXT moves on and
    // the echo went into the send side.
    let mut take_all = |d: &[u8], tx: &mut SendHalf<'_>| {
        offers += 1;
        got.extend_from_slice(d);
        tx.send(d).unwrap()
    };
    c.on_segment_deliver(t(0), &seg(REMOTE_SEQ + 1, b"abcd"), Some(&mut take_all))
        .unwrap();
    assert_eq!(c.recv_queue(), 0);
    assert_eq!(c.send_queue(), 4);
    assert_eq!(c.tcb().rcv_nxt, REMOTE_SEQ + 5);
    // Partly taken: the rest is buffered, and the next in-order segment
    // queues behind it instead of being offered.
    let mut take_two = |d: &[u8], _: &mut SendHalf<'_>| {
        offers += 1;
        got.extend_from_slice(&d[..2]);
        2
    };
    c.on_segment_deliver(t(1), &seg(REMOTE_SEQ + 5, b"efgh"), Some(&mut take_two))
        .unwrap();
    let mut never = |_: &[u8], _: &mut SendHalf<'_>| -> usize { panic!("offered out of turn") };
    c.on_segment_deliver(t(2), &seg(REMOTE_SEQ + 9, b"ij"), Some(&mut never))
        .unwrap();
    // Out of order: buffered, not offered.
    c.on_segment_deliver(t(3), &seg(REMOTE_SEQ + 13, b"mn"), Some(&mut never))
        .unwrap();
    assert_eq!(offers, 2);
    assert_eq!(c.recv_queue(), 4);
    let mut buf = [0u8; 16];
    let n = c.recv(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    assert_eq!(got, b"abcdefghij");
    // The hole filled: the segment goes through the buffer (it has the
    // out-of-order bytes behind it), all readable in order.
    c.on_segment_deliver(t(4), &seg(REMOTE_SEQ + 11, b"kl"), Some(&mut never))
        .unwrap();
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"klmn");
    assert_eq!(c.tcb().rcv_nxt, REMOTE_SEQ + 15);
}

// ---- receive window with window scaling ----

/// The right edge offered with a scaled window stays inside the receive
/// buffer while the application reads nothing, and every byte sent inside
/// an offered window is taken (RFC 7323 §2.3/§2.4). Rounding the rest of
/// the window up to the scale unit at every ACK used to move the edge
/// past the buffer's end (by up to 15 bytes per ACK with shift 4): the
/// sender's last segments were cut off, unacknowledged, and recovered only
/// by its retransmission timeout.
#[test]
fn scaled_window_edge_stays_inside_the_buffer() {
    for (recv_buffer, shift) in [(512 * 1024, 4u8), (1024 * 1024, 5)] {
        let cfg = Config {
            recv_buffer,
            window_scaling: true,
            ..cfg()
        };
        let opts = TcpOptions {
            window_scale: Some(0),
            ..OPTS_NONE
        };
        let mut c = established_with(cfg, opts);
        assert_eq!(c.tcb().rcv_wnd_shift, shift);
        let buffer_end = REMOTE_SEQ + 1 + recv_buffer;
        // The peer's view: the right edge of the last window it was given
        // (first the SYN-ACK's).
        let mut edge = c.tcb().rcv_adv;
        assert_eq!(edge, REMOTE_SEQ + 1 + 0xffff);
        let mut sent = REMOTE_SEQ + 1;
        let mut now = 0;
        for round in 0.. {
            assert!(round < 2 * recv_buffer / 1000, "the window never closed");
            // Segments of 1000 bytes (not a multiple of the scale unit),
            // each acknowledged before the next.
            let mut acks = output(&mut c, t(now));
            if acks.is_empty() {
                now += 1000;
                acks = output(&mut c, t(now));
            }
            for a in &acks {
                let e = a.repr.ack_number + ((a.repr.window as usize) << shift);
                assert!(
                    e <= buffer_end,
                    "right edge {} bytes past the buffer",
                    e - buffer_end
                );
                edge = e;
            }
            let len = (edge - sent).min(1000);
            if len == 0 {
                break;
            }
            let data = vec![7u8; len];
            send!(
                c,
                time now,
                peer_ack(sent, LOCAL_SEQ + 1).with_payload(&data)
            );
            sent += len;
            assert_eq!(
                c.tcb().rcv_nxt,
                sent,
                "bytes inside the window were cut off"
            );
        }
        // The window closed with at most one scale unit unoffered.
        assert!(c.recv_queue() >= recv_buffer - (1 << shift));
        assert_eq!(c.recv_queue(), sent - (REMOTE_SEQ + 1));
    }
}

/// After a retransmission timeout the data goes again even when the
/// peer's window is smaller than a segment: it was inside the window when
/// it first left, so sender SWS avoidance does not hold it (RFC 6298 §5.4,
/// RFC 7323 §2.4 rule 4).
#[test]
fn resend_after_timeout_is_not_held_by_sws_avoidance() {
    let mut c = established_sender(100, 1024);
    c.set_nodelay(true);
    send!(c, peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(1000));
    c.send(&[1; 300]).unwrap();
    assert_eq!(payload_lens(&output(&mut c, t(0))), [100, 100, 100]);
    // The peer takes nothing and its window shrinks to 10 bytes.
    send!(
        c,
        time 10,
        peer_ack(REMOTE_SEQ + 1, LOCAL_SEQ + 1).with_window(10)
    );
    recv_nothing!(c, time 10);
    let rto = c.poll_timeout().unwrap();
    let out = output(&mut c, rto);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].repr.seq_number, LOCAL_SEQ + 1);
    assert_eq!(out[0].payload.len(), 10);
    assert_eq!(c.counters().timeouts, 1);
}

// ---- bulk echo simulation ----

/// What one bulk echo run saw.
#[derive(Debug, Default)]
struct EchoRun {
    client: Counters,
    server: Counters,
    /// Bytes the client got back (each one checked).
    echoed: u64,
    /// In-order segments whose text the server's buffer could not hold.
    cut: u64,
}

/// A client keeping its send buffer full against an echo server (as
/// `bench tcp-stream --client xdpstack` against `serve --tcp-echo`), over
/// a lossless link with a virtual clock. The server's application stops
/// reading for 3 ms in every 10 ms, so its receive window closes and
/// reopens again and again. No randomness: a run is a function of its
/// arguments.
fn echo_bulk(recv_buffer: usize, timestamps: bool, millis: u64) -> EchoRun {
    use std::collections::VecDeque;
    let cfg = Config {
        recv_buffer,
        timestamps,
        ..Config::default()
    };
    let step = Duration::from_micros(5);
    // Serialisation time per byte each way (4 and about 2.7 Gbit/s) and
    // the one-way delay.
    let ns_per_byte = [2u64, 3];
    let delay = Duration::from_micros(20);
    let (mut a, mut b) = syn_pair(cfg);
    // Segments on the wire with their arrival time: [0] to the server, [1]
    // to the client.
    let mut wire: [VecDeque<(Instant, Seg)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut busy_until = [Instant::ZERO; 2];
    let byte = |off: u64| (off % 251) as u8;
    let pattern: Vec<u8> = (0..65536).map(byte).collect();
    let mut written = 0u64;
    let mut run = EchoRun::default();
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 65536];
    while now < Instant::from_millis(millis) {
        // Client: keep the send buffer full, read and check the echo.
        if a.state() == State::Established {
            loop {
                let off = (written % 251) as usize;
                let n = a.send(&pattern[off..off + 60_000]).unwrap();
                written += n as u64;
                if n == 0 {
                    break;
                }
            }
        }
        while let Ok(n) = a.recv(&mut buf) {
            if n == 0 {
                break;
            }
            for (i, &x) in buf[..n].iter().enumerate() {
                assert_eq!(x, byte(run.echoed + i as u64));
            }
            run.echoed += n as u64;
        }
        while wire[1].front().is_some_and(|(at, _)| *at <= now) {
            let (_, s) = wire[1].pop_front().unwrap();
            let _ = a.on_segment(now, &s.as_repr());
        }
        let reading = now.total_micros() % 10_000 >= 3_000;
        while wire[0].front().is_some_and(|(at, _)| *at <= now) {
            let (_, s) = wire[0].pop_front().unwrap();
            let room = b.rcv_buf.window();
            let in_order = s.repr.seq_number == b.tcb.rcv_nxt;
            // The echo: in-order text straight from the segment.
            let mut echo = |d: &[u8], tx: &mut SendHalf<'_>| {
                if reading {
                    tx.send(d).unwrap_or(d.len())
                } else {
                    0
                }
            };
            let _ = b.on_segment_deliver(now, &s.as_repr(), Some(&mut echo));
            if in_order && s.payload.len() > room && b.state() == State::Established {
                run.cut += 1;
            }
        }
        // Server: echo what waits in the receive buffer.
        while reading && b.recv_queue() > 0 {
            let (data, mut tx) = b.split();
            let n = tx.send(data).unwrap();
            if n == 0 {
                break;
            }
            b.consume(n);
        }
        for (dir, c) in [(1usize, &mut b), (0, &mut a)] {
            for s in output(c, now) {
                let bytes = 66 + s.payload.len() as u64;
                let start = busy_until[dir].max(now);
                busy_until[dir] =
                    start + Duration::from_micros((bytes * ns_per_byte[dir]).div_ceil(1000));
                wire[dir].push_back((busy_until[dir] + delay, s));
            }
        }
        now += step;
    }
    run.client = *a.counters();
    run.server = *b.counters();
    run
}

/// Bulk echo with a receiver whose window keeps closing, at receive
/// buffers of 512 KiB (window shift 4) and 1 MiB (shift 5), segments of
/// 1460 and 1448 bytes (neither a multiple of the scale unit): nothing is
/// lost on the link, so nothing may be cut off at the receiver and nothing
/// sent twice. Before the right edge was kept inside the buffer, every
/// closing of the window cut a segment short and the sender had to
/// retransmit (200 cuts and 200-800 retransmissions in these runs).
#[test]
fn bulk_echo_with_a_closing_window_retransmits_nothing() {
    for (recv_buffer, timestamps) in [(512 * 1024, false), (1024 * 1024, true), (256 * 1024, true)]
    {
        let r = echo_bulk(recv_buffer, timestamps, 300);
        let what = format!("{recv_buffer} bytes, timestamps {timestamps}: {r:?}");
        assert!(r.echoed > 50_000_000, "{what}");
        assert_eq!(r.cut, 0, "{what}");
        for c in [&r.client, &r.server] {
            assert_eq!(c.retransmits, 0, "{what}");
            assert_eq!(c.timeouts, 0, "{what}");
            assert_eq!(c.tlp_probes, 0, "{what}");
        }
    }
}
