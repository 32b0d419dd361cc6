//! The UDP application APIs: the run-to-completion [`UdpHandler`] and the
//! thread-side [`UdpSocket`].
//!
//! A handler lives in one worker (one per worker, made by a factory) and
//! is called for every datagram delivered to its port, with the payload as
//! a mutable slice of the received frame. Its [`Verdict`] says what happens
//! to that frame: released, turned around unchanged ([`Verdict::Echo`]:
//! addresses and ports swapped, checksums stay valid, nothing is copied or
//! recomputed), or turned around with a rewritten payload
//! ([`Verdict::Reply`]: checksums recomputed in the batched TX pass). Fresh
//! datagrams go out through [`UdpSend`], which builds them directly in a
//! transmit frame.
//!
//! [`UdpSocket`] is for code that is not a handler: it binds a port on
//! every worker of a [`crate::worker::StackHandle`], receives copies of the
//! datagrams through a bounded channel and sends through the first worker's
//! command channel.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crossbeam::channel::{self, Receiver, RecvTimeoutError, TryRecvError};

use crate::ports::Protocol;
use crate::time::Instant;
use crate::udp::{max_payload, UdpError};
use crate::worker::{Command, StackHandle};

/// A datagram delivered to a handler. `payload` is the UDP payload inside
/// the received frame; the handler may rewrite it (see [`Verdict::Reply`]).
#[derive(Debug)]
pub struct UdpRx<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a mut [u8],
}

/// What to do with the received frame after the handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more: the frame is recycled.
    Done,
    /// Send the payload back unchanged to its sender (in place).
    Echo,
    /// Send the first `n` bytes of the (rewritten) payload back to the
    /// sender, in place; `n` is clamped to the payload's length.
    Reply(usize),
}

/// Sending from inside a handler.
pub trait UdpSend {
    /// The handler's local port.
    fn local_port(&self) -> u16;

    /// Builds a datagram of `len` payload bytes to `dst` in a fresh
    /// transmit frame, `fill` writing the payload in place (no
    /// intermediate buffer). Fails with `WouldBlock` when no frame is free
    /// (retry on a later call), `MessageTooLong` beyond MTU - 28,
    /// `Unaddressable` with no route.
    fn send_with(
        &mut self,
        dst: SocketAddrV4,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), UdpError>;

    /// [`send_with`](Self::send_with) copying `payload` into the frame.
    fn send_to(&mut self, dst: SocketAddrV4, payload: &[u8]) -> Result<(), UdpError> {
        self.send_with(dst, payload.len(), &mut |b| b.copy_from_slice(payload))
    }
}

/// A run-to-completion UDP application, called inside a worker.
pub trait UdpHandler: Send {
    /// A datagram arrived on the handler's port.
    fn on_datagram(&mut self, now: Instant, rx: UdpRx<'_>, tx: &mut dyn UdpSend) -> Verdict;

    /// Called once per worker loop iteration (timers, retransmissions,
    /// first sends). The default does nothing.
    fn poll(&mut self, _now: Instant, _tx: &mut dyn UdpSend) {}
}

/// The echo service (RFC 862 over UDP): every datagram goes back as is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl UdpHandler for Echo {
    fn on_datagram(&mut self, _now: Instant, _rx: UdpRx<'_>, _tx: &mut dyn UdpSend) -> Verdict {
        Verdict::Echo
    }
}

/// A datagram handed to a [`UdpSocket`] (a copy of the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvDatagram {
    pub src: SocketAddrV4,
    pub data: Vec<u8>,
}

/// Datagrams a socket's receive channel holds before the worker drops more.
pub const SOCKET_QUEUE: usize = 1024;

/// A std::net-like UDP socket on the stack, for ordinary threads.
#[derive(Debug)]
pub struct UdpSocket {
    stack: StackHandle,
    local: SocketAddrV4,
    remote: Option<SocketAddrV4>,
    rx: Receiver<RecvDatagram>,
    nonblocking: bool,
    read_timeout: Option<Duration>,
}

fn io_err(e: UdpError) -> io::Error {
    e.into()
}

fn want_v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "xdpstack speaks IPv4 only",
        )),
    }
}

impl UdpSocket {
    /// Binds `addr` (port 0: an ephemeral port) on every worker and steers
    /// the port to the stack. The address must be the stack's or 0.0.0.0.
    pub fn bind(stack: &StackHandle, addr: SocketAddr) -> io::Result<UdpSocket> {
        let addr = want_v4(addr)?;
        if !addr.ip().is_unspecified() && *addr.ip() != stack.local_ip() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "not the stack's address",
            ));
        }
        let port = stack.reserve_port(Protocol::Udp, addr.port())?;
        let (tx, rx) = channel::bounded(SOCKET_QUEUE);
        if let Err(e) = stack.bind_udp_channel(port, tx) {
            stack.release_port(Protocol::Udp, port);
            return Err(e);
        }
        Ok(UdpSocket {
            stack: stack.clone(),
            local: SocketAddrV4::new(stack.local_ip(), port),
            remote: None,
            rx,
            nonblocking: false,
            read_timeout: None,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.local))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.remote
            .map(SocketAddr::V4)
            .ok_or_else(|| io_err(UdpError::NotConnected))
    }

    /// Sets the default destination; afterwards only datagrams from it are
    /// returned by `recv`/`recv_from`.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<()> {
        let a = want_v4(addr)?;
        if a.port() == 0 || a.ip().is_unspecified() {
            return Err(io_err(UdpError::Unaddressable));
        }
        self.remote = Some(a);
        Ok(())
    }

    pub fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking = nonblocking;
        Ok(())
    }

    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
        }
        self.read_timeout = timeout;
        Ok(())
    }

    /// Queues `buf` for `addr`; the worker builds the frame. Errors that
    /// can be known here (too long, bad address) are returned at once.
    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let dst = want_v4(addr)?;
        if buf.len() > max_payload(self.stack.mtu()) {
            return Err(io_err(UdpError::MessageTooLong));
        }
        if dst.port() == 0 || dst.ip().is_unspecified() {
            return Err(io_err(UdpError::Unaddressable));
        }
        self.stack.command(
            0,
            Command::UdpSend {
                port: self.local.port(),
                dst,
                data: buf.to_vec(),
            },
        )?;
        Ok(buf.len())
    }

    /// Same as `send_to` (the command channel is unbounded, so sends never
    /// block); kept for the std::net shape.
    pub fn try_send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.send_to(buf, addr)
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let r = self.remote.ok_or_else(|| io_err(UdpError::NotConnected))?;
        self.send_to(buf, SocketAddr::V4(r))
    }

    fn accept(&self, d: &RecvDatagram) -> bool {
        self.remote.is_none_or(|r| r == d.src)
    }

    fn take(&self, d: RecvDatagram, buf: &mut [u8]) -> (usize, SocketAddr) {
        // Like std: a datagram longer than `buf` is truncated.
        let n = d.data.len().min(buf.len());
        buf[..n].copy_from_slice(&d.data[..n]);
        (n, SocketAddr::V4(d.src))
    }

    /// Receives one datagram without blocking (`WouldBlock` if none).
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            match self.rx.try_recv() {
                Ok(d) if self.accept(&d) => return Ok(self.take(d, buf)),
                Ok(_) => continue,
                Err(TryRecvError::Empty) => return Err(io_err(UdpError::WouldBlock)),
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the stack stopped",
                    ))
                }
            }
        }
    }

    /// Receives one datagram, blocking (up to the read timeout) unless the
    /// socket is non-blocking.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        if self.nonblocking {
            return self.try_recv_from(buf);
        }
        let deadline = self.read_timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let r = match deadline {
                Some(d) => self.rx.recv_deadline(d),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match r {
                Ok(d) if self.accept(&d) => return Ok(self.take(d, buf)),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => return Err(io_err(UdpError::WouldBlock)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the stack stopped",
                    ))
                }
            }
        }
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_recv_from(buf).map(|(n, _)| n)
    }

    /// The stack's address this socket sends from.
    pub fn local_ip(&self) -> Ipv4Addr {
        *self.local.ip()
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.close_udp(self.local.port());
    }
}
