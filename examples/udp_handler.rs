//! A run-to-completion UDP service on xdpstack: answers every datagram
//! with its payload reversed, in place in the received frame.
//!
//!   sudo cargo run --release --example udp_handler -- IFACE PORT
//!
//! Shared mode (the interface's address); Ctrl-C stops and prints counters.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpstack::api::udp::{UdpHandler, UdpRx, UdpSend, Verdict};
use xdpstack::time::Instant;
use xdpstack::worker::{HandlerFactory, Stack, StackConfig};
use xdpstack::xdp::signals;

struct Reverse;

impl UdpHandler for Reverse {
    fn on_datagram(&mut self, _now: Instant, rx: UdpRx<'_>, _tx: &mut dyn UdpSend) -> Verdict {
        rx.payload.reverse();
        Verdict::Reply(rx.payload.len())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().ok_or("usage: udp_handler IFACE PORT")?;
    let port: u16 = args
        .next()
        .ok_or("usage: udp_handler IFACE PORT")?
        .parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    signals::spawn_signal_thread(stop.clone())?;
    signals::detach_on_panic();

    let mut cfg = StackConfig::new(&iface);
    let make: HandlerFactory = Arc::new(|| Box::new(Reverse) as Box<dyn UdpHandler>);
    cfg.udp_handlers.push((port, make));
    let stack = Stack::start(&cfg, stop.clone())?;
    println!("reversing UDP on {}:{port}", stack.handle().local_ip());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in stack.join().0 {
        println!("{r}");
    }
    Ok(())
}
