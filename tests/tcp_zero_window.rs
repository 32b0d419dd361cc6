//! A peer that shrinks its window to zero below data in flight (RFC 7323
//! §2.4 allows it) and then keeps acknowledging with a zero window: RFC 9293
//! §3.8.6.1 says it may do so indefinitely, so the engine, after one
//! retransmission timeout, probes the window for as long as the peer
//! answers. Once the peer goes silent, R2's worth of unanswered probes
//! (`data_retries`) closes the connection. The peer is written by hand
//! segment by segment; the engine runs on a virtual clock.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdpstack::tcp::{CloseReason, Config, Connection, FourTuple, IsnKey, State};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::seq::SeqNumber;
use xdpstack::wire::tcp::{TcpFlags, TcpOptions, TcpRepr};

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
const PEER_ISS: u32 = 5000;

/// What the engine sent, owned.
struct Sent {
    seq: SeqNumber,
    flags: TcpFlags,
    len: usize,
}

fn transmit(c: &mut Connection, now: Instant) -> Vec<Sent> {
    let mut out = Vec::new();
    c.poll_transmit(now, |s| {
        out.push(Sent {
            seq: s.seq_number,
            flags: s.flags,
            len: s.payload.len(),
        });
        true
    });
    out
}

/// A segment from the peer acknowledging `ack` with window `window`.
fn from_peer(ack: SeqNumber, window: u16, flags: u8) -> TcpRepr<'static> {
    TcpRepr {
        src_port: PEER.port(),
        dst_port: LOCAL.port(),
        seq_number: SeqNumber(PEER_ISS + 1),
        ack_number: ack,
        flags: TcpFlags(flags | TcpFlags::ACK),
        window,
        urgent_pointer: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// Runs the engine's timers until its next transmission; returns it and
/// the time. Panics if nothing is scheduled.
fn next_timeout(c: &mut Connection, mut now: Instant) -> (Instant, Vec<Sent>) {
    for _ in 0..4 {
        now = c.poll_at().expect("a timer is armed").max(now);
        let out = transmit(c, now);
        if !out.is_empty() || c.state() == State::Closed {
            return (now, out);
        }
    }
    panic!("no transmission after four timer deadlines");
}

#[test]
fn zero_window_is_probed_while_answered_and_times_out_when_silent() {
    let cfg = Config {
        window_scaling: false,
        sack: false,
        timestamps: false,
        data_retries: 3,
        ..Config::default()
    };
    let tuple = FourTuple {
        local: LOCAL,
        remote: PEER,
    };
    let mut now = Instant::from_millis(1);
    let mut c = Connection::connect(cfg, tuple, now, &IsnKey::random());
    let syn = transmit(&mut c, now);
    assert_eq!(syn.len(), 1);
    let iss = syn[0].seq;

    // SYN-ACK with a 4000-byte window; the engine ACKs it.
    now += Duration::from_millis(1);
    let mut synack = from_peer(iss + 1, 4000, TcpFlags::SYN);
    synack.seq_number = SeqNumber(PEER_ISS);
    synack.options.mss = Some(1000);
    c.on_segment(now, &synack).expect("SYN-ACK accepted");
    assert_eq!(c.state(), State::Established);
    transmit(&mut c, now);

    // 3000 bytes go out in three segments.
    c.send(&[7u8; 3000]).unwrap();
    let data = transmit(&mut c, now);
    assert_eq!(data.iter().map(|s| s.len).sum::<usize>(), 3000, "all sent");

    // The peer shrinks the window to zero without acknowledging anything.
    now += Duration::from_millis(1);
    c.on_segment(now, &from_peer(iss + 1, 0, 0)).unwrap();
    assert_eq!(c.tcb().snd_wnd, 0);

    // Ten timeouts (one RTO, then the persist timer), each answered with a
    // zero-window ACK: far beyond the retry limit of 3, and the connection
    // lives on.
    for i in 0..10 {
        let (t, out) = next_timeout(&mut c, now);
        now = t;
        assert_eq!(c.state(), State::Established, "timeout {i}");
        // A probe: the data from SND.UNA, or an empty ACK one below it.
        assert!(
            out.iter().all(|s| !s.flags.syn()) && (out[0].seq == iss + 1 || out[0].len == 0),
            "timeout {i}"
        );
        c.on_segment(now, &from_peer(iss + 1, 0, 0)).unwrap();
    }
    let k = c.counters();
    assert!(k.timeouts >= 1 && k.zero_window_probes >= 9, "{k:?}");

    // Silence: the retry limit applies again and closes the connection.
    let mut silent = 0;
    while c.state() != State::Closed {
        let (t, _) = next_timeout(&mut c, now);
        now = t;
        silent += 1;
        assert!(silent <= 5, "still open after {silent} unanswered timeouts");
    }
    assert_eq!(c.close_reason(), Some(CloseReason::TimedOut));
    assert!(
        silent >= 3,
        "closed after only {silent} unanswered timeouts"
    );
}
