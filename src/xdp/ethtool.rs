//! Reads an interface's receive-side scaling settings through the ethtool
//! ioctl (`SIOCETHTOOL`): the Toeplitz key and indirection table
//! (`ETHTOOL_GRSSH`) and whether TCP over IPv4 hashes the ports
//! (`ETHTOOL_GRXFH`, `TCP_V4_FLOW`). The result feeds the ephemeral
//! allocator's reply steering ([`crate::ports::PortService::set_reply_steering`]);
//! the arithmetic is [`crate::rss`].
//!
//! Anything the allocator cannot invert is an error, so the caller falls
//! back to forwarding between workers: no RSS operations (veth, most
//! virtual NICs: `Os(EOPNOTSUPP)`), a hash function other than Toeplitz, a
//! symmetric input transform, or a TCP/IPv4 hash that leaves out the ports.
//! A device that answers `ETHTOOL_GRSSH` but not `ETHTOOL_GRXFH` is assumed
//! to hash the 4-tuple (the common default); a wrong guess costs only
//! forwarding.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::rss::{RssConfig, RssError};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GRXFH: u32 = 0x29;
const ETHTOOL_GRSSH: u32 = 0x46;
const TCP_V4_FLOW: u32 = 0x01;
/// `RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3`.
const RXH_4TUPLE: u64 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);
/// `ETH_RSS_HASH_TOP`: bit 0 of `hfunc`.
const HASH_TOEPLITZ: u8 = 1;
/// `struct ethtool_rxfh` before its flexible `rss_config` array.
const RXFH_HEADER_LEN: usize = 24;
/// `struct ifreq`: 16 bytes of name, a 24-byte union.
const IFNAMSIZ: usize = 16;

/// Why no usable RSS configuration was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssReadError {
    /// The ioctl failed with this errno (EOPNOTSUPP: the device has no RSS
    /// operations, e.g. veth).
    Os(i32),
    /// The interface name does not fit `IFNAMSIZ`.
    BadName,
    /// The device hashes with another function (`hfunc` bits).
    NotToeplitz(u8),
    /// An input transform (e.g. symmetric XOR) changes the hash input.
    InputTransform(u8),
    /// TCP over IPv4 is hashed without both ports (`RXH_*` bits).
    PortsNotHashed(u64),
    /// The answer is malformed or unusable.
    Invalid(RssError),
    /// The answer is shorter than its stated sizes.
    Truncated,
}

impl fmt::Display for RssReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RssReadError::Os(e) => write!(
                f,
                "ethtool ioctl: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
            RssReadError::BadName => f.write_str("interface name too long"),
            RssReadError::NotToeplitz(h) => write!(f, "RSS hash function {h:#x} is not Toeplitz"),
            RssReadError::InputTransform(x) => write!(f, "RSS input transform {x:#x}"),
            RssReadError::PortsNotHashed(b) => {
                write!(f, "TCP/IPv4 RSS hash leaves out the ports (fields {b:#x})")
            }
            RssReadError::Invalid(e) => write!(f, "{e}"),
            RssReadError::Truncated => f.write_str("short ethtool answer"),
        }
    }
}

impl std::error::Error for RssReadError {}

/// The RSS key and indirection table of `iface`, if the allocator can
/// invert them (see the module docs).
pub fn read_rss(iface: &str) -> Result<RssConfig, RssReadError> {
    let name = if_name(iface)?;
    // Safety: plain socket(2) call; the returned descriptor is checked and
    // owned by the OwnedFd from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(RssReadError::Os(errno()));
    }
    // Safety: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // Sizes first: indir_size = key_size = 0 asks only for them.
    let mut head = rxfh_request(0, 0);
    ethtool(&sock, &name, &mut head)?;
    let (indir, key) = rxfh_sizes(&head)?;
    // Zero sizes would make the second call a size query again.
    if indir == 0 {
        return Err(RssReadError::Invalid(RssError::EmptyTable));
    }
    if (key as usize) < crate::rss::MIN_KEY_LEN {
        return Err(RssReadError::Invalid(RssError::KeyTooShort));
    }
    let mut buf = rxfh_request(indir, key);
    buf.resize(RXFH_HEADER_LEN + indir as usize * 4 + key as usize, 0);
    ethtool(&sock, &name, &mut buf)?;
    let rss = parse_rxfh(&buf)?;
    let mut flow = [0u8; 16];
    flow[0..4].copy_from_slice(&ETHTOOL_GRXFH.to_ne_bytes());
    flow[4..8].copy_from_slice(&TCP_V4_FLOW.to_ne_bytes());
    if ethtool(&sock, &name, &mut flow).is_ok() {
        let fields = u64::from_ne_bytes(flow[8..16].try_into().expect("8 bytes"));
        if fields & RXH_4TUPLE != RXH_4TUPLE {
            return Err(RssReadError::PortsNotHashed(fields));
        }
    }
    Ok(rss)
}

fn if_name(iface: &str) -> Result<[u8; IFNAMSIZ], RssReadError> {
    let b = iface.as_bytes();
    if b.is_empty() || b.len() >= IFNAMSIZ || b.contains(&0) {
        return Err(RssReadError::BadName);
    }
    let mut name = [0u8; IFNAMSIZ];
    name[..b.len()].copy_from_slice(b);
    Ok(name)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `struct ifreq` with the `ifr_data` member of its union.
#[repr(C)]
struct IfreqData {
    name: [u8; IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// One `SIOCETHTOOL` call with `buf` as the command structure (its first
/// word is the command); the kernel reads and writes at most `buf.len()`
/// bytes for the commands used here.
fn ethtool(sock: &OwnedFd, name: &[u8; IFNAMSIZ], buf: &mut [u8]) -> Result<(), RssReadError> {
    let mut req = IfreqData {
        name: *name,
        data: buf.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    // Safety: `req` is a valid ifreq whose data pointer points to `buf`,
    // alive and exclusively borrowed for the call. The kernel accesses
    // only the command's structure: for ETHTOOL_GRXFH 16 bytes (the
    // legacy `ethtool_rxnfc` prefix it is documented to accept), for
    // ETHTOOL_GRSSH the 24-byte header plus the indirection and key sizes
    // written in that header, which `buf` was sized to hold.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(RssReadError::Os(errno()));
    }
    Ok(())
}

/// An `ETHTOOL_GRSSH` request header for the given sizes.
fn rxfh_request(indir: u32, key: u32) -> Vec<u8> {
    let mut b = vec![0u8; RXFH_HEADER_LEN];
    b[0..4].copy_from_slice(&ETHTOOL_GRSSH.to_ne_bytes());
    b[8..12].copy_from_slice(&indir.to_ne_bytes());
    b[12..16].copy_from_slice(&key.to_ne_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The indirection table and key sizes in an answer's header.
fn rxfh_sizes(b: &[u8]) -> Result<(u32, u32), RssReadError> {
    let indir = u32_at(b, 8).ok_or(RssReadError::Truncated)?;
    let key = u32_at(b, 12).ok_or(RssReadError::Truncated)?;
    // Devices have at most a few thousand entries and key bytes; refuse
    // absurd sizes rather than allocate them.
    if indir > 1 << 16 || key > 1 << 12 {
        return Err(RssReadError::Truncated);
    }
    Ok((indir, key))
}

/// Parses a complete `ETHTOOL_GRSSH` answer (`struct ethtool_rxfh`
/// followed by the table, then the key).
pub fn parse_rxfh(b: &[u8]) -> Result<RssConfig, RssReadError> {
    let (indir, key) = rxfh_sizes(b)?;
    let hfunc = b[16];
    let xfrm = b[17];
    if hfunc != HASH_TOEPLITZ {
        return Err(RssReadError::NotToeplitz(hfunc));
    }
    if xfrm != 0 {
        return Err(RssReadError::InputTransform(xfrm));
    }
    let table_end = RXFH_HEADER_LEN + indir as usize * 4;
    let key_end = table_end + key as usize;
    if b.len() < key_end {
        return Err(RssReadError::Truncated);
    }
    let table = (0..indir as usize)
        .map(|i| u32_at(b, RXFH_HEADER_LEN + i * 4).expect("within table_end"))
        .collect();
    RssConfig::new(b[table_end..key_end].to_vec(), table).map_err(RssReadError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rss::MICROSOFT_KEY;

    fn answer(hfunc: u8, xfrm: u8, table: &[u32], key: &[u8]) -> Vec<u8> {
        let mut b = rxfh_request(table.len() as u32, key.len() as u32);
        b[16] = hfunc;
        b[17] = xfrm;
        for t in table {
            b.extend_from_slice(&t.to_ne_bytes());
        }
        b.extend_from_slice(key);
        b
    }

    #[test]
    fn parses_table_and_key() {
        let table: Vec<u32> = (0..128).map(|i| i % 4).collect();
        let rss = parse_rxfh(&answer(1, 0, &table, &MICROSOFT_KEY)).unwrap();
        assert_eq!(rss.table(), &table[..]);
        assert_eq!(rss.key(), &MICROSOFT_KEY[..]);
    }

    #[test]
    fn refuses_what_cannot_be_inverted() {
        let t = [0u32, 1];
        assert_eq!(
            parse_rxfh(&answer(2, 0, &t, &MICROSOFT_KEY)),
            Err(RssReadError::NotToeplitz(2))
        );
        assert_eq!(
            parse_rxfh(&answer(1, 1, &t, &MICROSOFT_KEY)),
            Err(RssReadError::InputTransform(1))
        );
        assert_eq!(
            parse_rxfh(&answer(1, 0, &t, &MICROSOFT_KEY[..8])),
            Err(RssReadError::Invalid(RssError::KeyTooShort))
        );
        let mut short = answer(1, 0, &t, &MICROSOFT_KEY);
        short.truncate(short.len() - 1);
        assert_eq!(parse_rxfh(&short), Err(RssReadError::Truncated));
        assert_eq!(parse_rxfh(&[0u8; 10]), Err(RssReadError::Truncated));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(read_rss(""), Err(RssReadError::BadName));
        assert_eq!(read_rss("a-name-far-too-long"), Err(RssReadError::BadName));
        // Loopback has no RSS operations.
        assert_eq!(read_rss("lo"), Err(RssReadError::Os(libc::EOPNOTSUPP)));
    }
}
