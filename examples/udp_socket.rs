//! A std::net-like UDP socket on xdpstack, used from an ordinary thread:
//! binds a port, answers each datagram with "ack: <payload>".
//!
//!   sudo cargo run --release --example udp_socket -- IFACE PORT
//!
//! Shared mode (the interface's address); Ctrl-C stops.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpstack::api::UdpSocket;
use xdpstack::worker::{Stack, StackConfig};
use xdpstack::xdp::signals;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().ok_or("usage: udp_socket IFACE PORT")?;
    let port: u16 = args.next().ok_or("usage: udp_socket IFACE PORT")?.parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    signals::spawn_signal_thread(stop.clone())?;
    signals::detach_on_panic();

    let stack = Stack::start(&StackConfig::new(&iface), stop.clone())?;
    let mut sock = UdpSocket::bind(stack.handle(), format!("0.0.0.0:{port}").parse()?)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    println!("listening on {}", sock.local_addr()?);
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let mut answer = b"ack: ".to_vec();
                answer.extend_from_slice(&buf[..n]);
                sock.send_to(&answer, from)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // The workers stopped (Ctrl-C): the loop condition ends it.
            Err(_) if stop.load(Ordering::Relaxed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(sock);
    stack.join();
    Ok(())
}
