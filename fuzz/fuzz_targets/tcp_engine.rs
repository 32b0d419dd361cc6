//! The TCP engine on arbitrary input: a connection is driven into one of its
//! states, then fed arbitrary segments (parsed from the input, sequence and
//! acknowledgment numbers either raw or placed near the connection's own),
//! time jumps and application calls. Nothing may panic, and after every
//! step SND.UNA <= SND.NXT <= SND.MAX, the buffers stay within their
//! capacity, and no segment out carries more than the effective MSS.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};
use xdpstack::tcp::{Config, Connection, FourTuple, IsnKey};
use xdpstack::time::{Duration, Instant};
use xdpstack::wire::tcp::{Packet, TcpRepr};

type Owned = (TcpRepr<'static>, Vec<u8>);

fn drain(c: &mut Connection, now: Instant) -> Vec<Owned> {
    let mut v = Vec::new();
    c.poll_transmit(now, |r| {
        v.push((TcpRepr { payload: &[], ..*r }, r.payload.to_vec()));
        true
    });
    v
}

fn deliver(c: &mut Connection, segs: Vec<Owned>, now: Instant) {
    for (r, p) in segs {
        let _ = c.on_segment(now, &TcpRepr { payload: &p, ..r });
    }
}

fn exchange(a: &mut Connection, b: &mut Connection, now: Instant) {
    for _ in 0..8 {
        let x = drain(a, now);
        let y = drain(b, now);
        if x.is_empty() && y.is_empty() {
            return;
        }
        deliver(b, x, now);
        deliver(a, y, now);
    }
}

/// One connection in the state `which` selects, plus its peer.
fn setup(which: u8, cfg: &Config, now: Instant) -> (Connection, Connection) {
    let t = FourTuple {
        local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000),
        remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
    };
    let key = IsnKey::from_parts(1, 2);
    let mut a = Connection::connect(cfg.clone(), t, now, &key);
    let syn = drain(&mut a, now).remove(0);
    let mut b = Connection::accept_syn(cfg.clone(), t.reversed(), now, &key, &syn.0);
    match which % 9 {
        0 => return (a, b),
        1 => return (b, a),
        _ => {}
    }
    exchange(&mut a, &mut b, now);
    match which % 9 {
        2 => (a, b),
        3 => {
            a.shutdown_write(now);
            drain(&mut a, now);
            (a, b)
        }
        4 | 5 | 6 | 7 => {
            a.shutdown_write(now);
            exchange(&mut a, &mut b, now);
            match which % 9 {
                4 => (a, b), // FIN-WAIT-2
                5 => (b, a), // CLOSE-WAIT
                6 => {
                    b.shutdown_write(now);
                    drain(&mut b, now);
                    (b, a) // LAST-ACK
                }
                _ => {
                    b.shutdown_write(now);
                    exchange(&mut a, &mut b, now);
                    (a, b) // TIME-WAIT
                }
            }
        }
        _ => {
            a.shutdown_write(now);
            b.shutdown_write(now);
            let x = drain(&mut a, now);
            let y = drain(&mut b, now);
            deliver(&mut b, x, now);
            deliver(&mut a, y, now);
            (a, b) // CLOSING
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cfg = Config {
        send_buffer: 2048,
        recv_buffer: 2048 + data[1] as usize * 8,
        mss: 64 + data[1] as u16,
        ..Config::default()
    };
    let mut now = Instant::from_secs(1);
    let (mut c, _peer) = setup(data[0], &cfg, now);
    let mut rest = &data[2..];
    let filler = [0x42u8; 300];
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0..=3 => {
                // A segment: a length byte, then that many bytes of header.
                let Some((&n, tail)) = rest.split_first() else {
                    break;
                };
                let n = (n as usize).min(tail.len());
                let (bytes, tail) = tail.split_at(n);
                rest = tail;
                let Ok(p) = Packet::new_checked(bytes) else {
                    continue;
                };
                let Ok(mut seg) = TcpRepr::parse_unverified(&p) else {
                    continue;
                };
                if op % 4 != 0 {
                    // Near our own numbers, so the interesting paths run.
                    let t = c.tcb();
                    seg.seq_number = t.rcv_nxt + (seg.seq_number.0 % 4096) as usize - 2048;
                    seg.ack_number = t.snd_una + (seg.ack_number.0 % 4096) as usize - 2048;
                }
                if op % 4 == 3 {
                    seg.payload = &filler[..seg.payload.len().min(filler.len())];
                }
                let _ = c.on_segment(now, &seg);
            }
            4 => {
                let ms = rest.first().copied().unwrap_or(0) as u64;
                now += Duration::from_millis(ms * ms * 10);
            }
            5 => {
                let _ = c.send(&filler[..(op as usize) % filler.len()]);
            }
            6 => {
                let mut buf = [0u8; 256];
                let _ = c.recv(&mut buf);
            }
            _ => match rest.first().copied().unwrap_or(0) % 3 {
                0 => c.shutdown_write(now),
                1 => c.close(now),
                _ => c.abort(now),
            },
        }
        let mss = c.eff_mss();
        c.poll_transmit(now, |r| {
            assert!(r.payload.len() <= mss, "segment over the MSS");
            true
        });
        let t = c.tcb();
        assert!(t.snd_una <= t.snd_nxt && t.snd_nxt <= t.snd_max);
        assert!(c.send_queue() <= cfg.send_buffer);
        assert!(c.recv_queue() <= cfg.recv_buffer);
    }
});
