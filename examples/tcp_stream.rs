//! The std::net-like TCP handles on xdpstack: a thread per connection
//! echoing with `Read`/`Write`, and optionally one client connection made
//! through the stack.
//!
//!   sudo cargo run --release --example tcp_stream -- IFACE PORT [SERVER:PORT]
//!
//! With SERVER:PORT, sends a greeting there through the stack, prints the
//! answer and exits; otherwise echoes on PORT until Ctrl-C. Shared mode.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xdpstack::api::tcp::{TcpListener, TcpStream};
use xdpstack::worker::{Stack, StackConfig};
use xdpstack::xdp::signals;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tcp_stream IFACE PORT [SERVER:PORT]";
    let iface = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let client: Option<SocketAddrV4> = args.next().map(|a| a.parse()).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    signals::spawn_signal_thread(stop.clone())?;
    signals::detach_on_panic();
    let stack = Stack::start(&StackConfig::new(&iface), stop.clone())?;

    if let Some(server) = client {
        let mut s = TcpStream::connect_timeout(stack.handle(), server, Duration::from_secs(5))?;
        s.write_all(b"hello from xdpstack\n")?;
        s.shutdown(Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        println!("{} answered: {answer:?}", s.peer_addr());
        stop.store(true, Ordering::Relaxed);
    } else {
        let listener = TcpListener::bind(stack.handle(), port)?;
        println!("echoing on {}", listener.local_addr());
        while !stop.load(Ordering::Relaxed) {
            match listener.try_accept() {
                Ok((mut s, peer)) => {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = s.flush();
                        println!("{peer} done");
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
    for r in stack.join().0 {
        println!("{r}");
    }
    Ok(())
}
