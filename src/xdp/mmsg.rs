//! Batched UDP I/O on an ordinary kernel socket with `recvmmsg`/`sendmmsg`,
//! for the kernel baseline (`crate::baseline::kernel_udp`). It lives here
//! only because the system calls need `unsafe`; it has nothing to do with
//! AF_XDP.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// `n` receive buffers of `buf_size` bytes with their headers and source
/// addresses, reused across calls.
pub struct MmsgBatch {
    buf_size: usize,
    bufs: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams held by the last `recv`.
    filled: usize,
}

// Safety: the raw pointers inside `iovecs`/`hdrs` only ever point into this
// struct's own heap buffers and are rebuilt before each system call.
unsafe impl Send for MmsgBatch {}

impl std::fmt::Debug for MmsgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgBatch")
            .field("n", &self.hdrs.len())
            .field("buf_size", &self.buf_size)
            .field("filled", &self.filled)
            .finish()
    }
}

impl MmsgBatch {
    pub fn new(n: usize, buf_size: usize) -> MmsgBatch {
        let n = n.max(1);
        MmsgBatch {
            buf_size,
            bufs: vec![0; n * buf_size],
            // Safety: all-zero iovec, sockaddr_storage and mmsghdr are valid
            // values (null pointers, zero lengths).
            iovecs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            // Safety: as above.
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            // Safety: as above.
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            filled: 0,
        }
    }

    /// Point every header at its buffer and address slot; `lens[i]` bytes
    /// of buffer `i` (the full buffer when receiving).
    fn wire(&mut self, n: usize, recv: bool) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            let len = if recv {
                self.buf_size
            } else {
                self.hdrs[i].msg_len as usize
            };
            // Safety: `i * buf_size` is within `bufs` (n <= number of buffers).
            self.iovecs[i].iov_base = unsafe { base.add(i * self.buf_size) } as *mut libc::c_void;
            self.iovecs[i].iov_len = len;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            if recv {
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
    }

    /// Receive up to the batch size, waiting for the first datagram (as the
    /// socket's read timeout allows). Returns how many arrived; `Ok(0)` on a
    /// timeout.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.hdrs.len();
        self.wire(n, true);
        // Safety: every header points at valid, exclusively borrowed buffers
        // and address slots of the sizes given (see `wire`).
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.filled = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.filled = r as usize;
        Ok(self.filled)
    }

    /// Datagram `i` of the last `recv`: payload (truncated to the buffer
    /// size) and source.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        if i >= self.filled {
            return None;
        }
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_size);
        let data = &self.bufs[i * self.buf_size..i * self.buf_size + len];
        Some((data, sockaddr_to_std(&self.addrs[i])))
    }

    /// Datagrams of the last `recv` cut short by the buffer size.
    pub fn truncated(&self) -> usize {
        self.hdrs[..self.filled]
            .iter()
            .filter(|h| h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
            .count()
    }

    /// Send every datagram of the last `recv` back to its source, in as few
    /// `sendmmsg` calls as the kernel allows. Returns how many were sent.
    pub fn echo(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.filled;
        for h in &mut self.hdrs[..n] {
            h.msg_len = h.msg_len.min(self.buf_size as u32);
        }
        self.wire(n, false);
        let mut sent = 0;
        while sent < n {
            // Safety: headers `sent..n` point at valid buffers and the source
            // addresses `recvmmsg` filled in (see `wire`).
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(sent),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                break;
            }
            sent += r as usize;
        }
        self.filled = 0;
        Ok(sent)
    }
}

/// A UDP socket bound to `addr` with `SO_REUSEPORT`, so several threads can
/// each have one on the same port (the kernel spreads flows by hash).
pub fn udp_bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // Safety: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // Safety: `one` is a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            &one as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = match addr {
        SocketAddr::V4(a) => {
            // Safety: all-zero is a valid sockaddr_in; fields set below.
            let mut sa: libc::sockaddr_in = unsafe { zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            // Safety: `sa` is a live sockaddr_in of the length given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            // Safety: all-zero is a valid sockaddr_in6; fields set below.
            let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            // Safety: `sa` is a live sockaddr_in6 of the length given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // Safety: the family says this storage holds a sockaddr_in,
            // which fits in (and is less aligned than) sockaddr_storage.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // Safety: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reuseport_sockets_share_a_port() {
        let a = udp_bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = a.local_addr().unwrap();
        let b = udp_bind_reuseport(port).unwrap();
        assert_eq!(b.local_addr().unwrap(), port);
        // Without SO_REUSEPORT the port is taken.
        assert!(UdpSocket::bind(port).is_err());
    }

    #[test]
    fn echo_over_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let to = server.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 1 + i * 100]).collect();
        for m in &msgs {
            client.send_to(m, to).unwrap();
        }
        let mut b = MmsgBatch::new(8, 2048);
        let mut got = 0;
        while got < msgs.len() {
            let n = b.recv(&server).unwrap();
            assert!(n > 0, "timed out after {got} datagrams");
            for i in 0..n {
                let (d, from) = b.datagram(i).unwrap();
                assert_eq!(d, &msgs[got + i][..]);
                assert_eq!(from, Some(client.local_addr().unwrap()));
            }
            assert_eq!(b.truncated(), 0);
            assert_eq!(b.echo(&server).unwrap(), n);
            got += n;
        }
        let mut buf = [0u8; 2048];
        for m in &msgs {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &m[..]);
        }
    }
}
