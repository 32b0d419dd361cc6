//! epoll and a few TCP socket calls std lacks (non-blocking connect,
//! `SO_LINGER`, `SIOCOUTQ`), for the kernel-socket TCP baseline servers and
//! load generators (`crate::baseline::kernel_tcp`, `crate::loadgen::tcp`).
//! It lives here only because the system calls need `unsafe`; it has nothing
//! to do with AF_XDP.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    pub const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    pub const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };

    fn bits(self) -> u32 {
        // Level-triggered: a handler that leaves data unread is woken again.
        let mut e = 0u32;
        if self.readable {
            e |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.writable {
            e |= libc::EPOLLOUT as u32;
        }
        e
    }
}

/// One readiness event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: the next read or write reports it.
    pub error: bool,
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// The buffer `epoll_wait` fills.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    n: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("capacity", &self.buf.len())
            .field("n", &self.n)
            .finish()
    }
}

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            n: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The event at `i < len()`.
    pub fn get(&self, i: usize) -> Event {
        let e = self.buf[i];
        let bits = e.events;
        Event {
            token: e.u64,
            readable: bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
            writable: bits & libc::EPOLLOUT as u32 != 0,
            error: bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // Safety: epoll_create1 takes no pointers; a non-negative result is a
        // fresh descriptor that nothing else owns.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // Safety: `fd` was just returned by the kernel and is owned here only.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token,
        };
        // Safety: `ev` is a valid epoll_event for the duration of the call;
        // an invalid `fd` is reported as an error, not undefined behaviour.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn add(&self, fd: &impl AsRawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, interest)
    }

    pub fn modify(&self, fd: &impl AsRawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), token, interest)
    }

    pub fn delete(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, Interest::READ)
    }

    /// Wait up to `timeout_ms` (0: poll, -1: forever) and fill `events`.
    /// An interrupted wait returns no events.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        // Safety: the buffer holds `buf.len()` writable epoll_events, the
        // kernel writes at most that many.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                events.buf.len() as libc::c_int,
                timeout_ms,
            )
        };
        match cvt(r) {
            Ok(n) => {
                events.n = n as usize;
                Ok(events.n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                events.n = 0;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Start a non-blocking IPv4 TCP connect to `to`, from `from` if given.
/// Returns the stream and whether the connection is already established;
/// otherwise wait for writability and check `take_error()`.
pub fn connect_nonblocking(
    to: SocketAddrV4,
    from: Option<SocketAddrV4>,
) -> io::Result<(TcpStream, bool)> {
    // Safety: socket() takes no pointers; the result is a fresh descriptor.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // Safety: `fd` is a fresh descriptor owned by nothing else; the stream
    // closes it on every path from here on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(from) = from {
        let sa = sockaddr_in(from);
        // Safety: `sa` is a valid sockaddr_in and its size is passed.
        cvt(unsafe {
            libc::bind(
                fd,
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
    }
    let sa = sockaddr_in(to);
    // Safety: as above.
    let r = unsafe {
        libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok((stream, true));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok((stream, false))
    } else {
        Err(e)
    }
}

/// `SO_LINGER` with a zero timeout: `close` sends RST and leaves no
/// TIME-WAIT behind.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Safety: `l` is a valid linger struct and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `TCP_CONGESTION`: the congestion control of a socket by its kernel name
/// (`cubic`, `reno`, ...); a listener's choice is inherited by the
/// connections it accepts.
pub fn set_congestion_control(fd: &impl AsRawFd, name: &str) -> io::Result<()> {
    // Safety: `name` is a live buffer of the given length (the kernel copies
    // at most that many bytes and needs no NUL).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Bytes in the send queue not yet acknowledged by the peer (`SIOCOUTQ`).
pub fn unacked_bytes(s: &TcpStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) })?;
    Ok(n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn connect_wait_and_exchange() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(addr) = l.local_addr().unwrap() else {
            unreachable!()
        };
        let (mut s, connected) = connect_nonblocking(addr, None).unwrap();
        let ep = Epoll::new().unwrap();
        let mut evs = Events::with_capacity(4);
        if !connected {
            ep.add(&s, 7, Interest::WRITE).unwrap();
            let n = ep.wait(&mut evs, 2000).unwrap();
            assert_eq!(n, 1);
            assert_eq!(evs.get(0).token, 7);
            assert!(evs.get(0).writable);
            assert!(s.take_error().unwrap().is_none());
            ep.modify(&s, 8, Interest::READ).unwrap();
        } else {
            ep.add(&s, 8, Interest::READ).unwrap();
        }
        let (mut srv, _) = l.accept().unwrap();
        assert_eq!(ep.wait(&mut evs, 0).unwrap(), 0);
        srv.write_all(b"hi").unwrap();
        assert_eq!(ep.wait(&mut evs, 2000).unwrap(), 1);
        assert_eq!(evs.get(0).token, 8);
        assert!(evs.get(0).readable);
        let mut b = [0u8; 4];
        assert_eq!(s.read(&mut b).unwrap(), 2);
        s.write_all(b"abc").unwrap();
        // A fresh local send is counted until the peer's ACK arrives (fast on
        // loopback); the call itself must succeed.
        assert!(unacked_bytes(&s).unwrap() <= 3);
        set_linger_zero(&s).unwrap();
        ep.delete(&s).unwrap();
        drop(s);
        // Linger zero: the peer sees a reset, not an orderly end.
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        let err = loop {
            match srv.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
    }

    #[test]
    fn refused_connect_reports_an_error() {
        // Bind then drop to find a port with no listener.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let to = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        match connect_nonblocking(to, None) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok((s, _)) => {
                let ep = Epoll::new().unwrap();
                ep.add(&s, 1, Interest::WRITE).unwrap();
                let mut evs = Events::with_capacity(1);
                assert_eq!(ep.wait(&mut evs, 2000).unwrap(), 1);
                let e = s.take_error().unwrap().expect("connect error");
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            }
        }
    }
}
