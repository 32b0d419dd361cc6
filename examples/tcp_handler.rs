//! A run-to-completion TCP service on xdpstack: echoes every byte in upper
//! case. Received bytes arrive as a
//! slice of the connection's receive buffer; the answer goes straight into
//! its send buffer.
//!
//!   sudo cargo run --release --example tcp_handler -- IFACE PORT
//!
//! Shared mode (the interface's address); Ctrl-C stops and prints counters.
//! Try it with `nc ADDR PORT` from another host or namespace.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpstack::api::tcp::{ConnId, TcpHandler};
use xdpstack::tcp::SendHalf;
use xdpstack::time::Instant;
use xdpstack::worker::{Stack, StackConfig, TcpHandlerFactory};
use xdpstack::xdp::signals;

struct Upper;

impl TcpHandler for Upper {
    fn on_data(&mut self, _now: Instant, _id: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize {
        // As much as the send buffer takes; the rest stays in the receive
        // buffer and is offered again once acknowledgements make room.
        let n = data.len().min(tx.free());
        tx.send(&data[..n].to_ascii_uppercase())
            .unwrap_or(data.len())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tcp_handler IFACE PORT";
    let iface = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    signals::spawn_signal_thread(stop.clone())?;
    signals::detach_on_panic();

    let mut cfg = StackConfig::new(&iface);
    let make: TcpHandlerFactory = Arc::new(|| Box::new(Upper) as Box<dyn TcpHandler>);
    cfg.tcp_handlers.push((port, make));
    let stack = Stack::start(&cfg, stop.clone())?;
    println!("upper-casing lines on {}:{port}", stack.handle().local_ip());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in stack.join().0 {
        println!("{r}");
    }
    Ok(())
}
