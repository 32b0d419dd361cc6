//! Detaching on SIGINT/SIGTERM and on panic, for the binaries. The signal
//! handler only writes the signal number into a pipe (async-signal-safe); a
//! dedicated thread reads it, detaches every steering program of the process
//! ([`super::loader::detach_all`]) so traffic falls back to the kernel at
//! once, and raises a stop flag the workers poll. Works whatever the other
//! threads' signal masks. Here because it needs `unsafe` FFI.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;

use super::loader::detach_all;

/// Write end of the signal pipe; -1 until installed.
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WR.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // Safety: write(2) is async-signal-safe; `b` is a live one-byte
        // buffer. A full pipe just loses a repeated signal.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// Install SIGINT and SIGTERM handlers and start the thread that acts on
/// them: the first signal detaches every steering program and sets `stop`;
/// a second one exits at once with status 130. Call once per process (later
/// calls fail with `AlreadyExists`).
pub fn spawn_signal_thread(stop: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
    let mut fds = [0 as libc::c_int; 2];
    // Safety: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: both descriptors are fresh and owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if PIPE_WR
        .compare_exchange(-1, wr.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    // The write end lives as long as the process (the handler may run any time).
    std::mem::forget(wr);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // Safety: a zeroed sigaction is valid; we set a plain handler
        // (no SA_SIGINFO) whose body is async-signal-safe.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("xdpstack-signals".into())
        .spawn(move || {
            let mut count = 0;
            loop {
                let mut b = 0u8;
                // Safety: reading one byte into a live buffer from our pipe.
                let n = unsafe {
                    libc::read(rd.as_raw_fd(), &mut b as *mut u8 as *mut libc::c_void, 1)
                };
                if n != 1 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                count += 1;
                detach_all();
                stop.store(true, Ordering::SeqCst);
                if count > 1 {
                    std::process::exit(130);
                }
            }
        })
}

/// Chain a panic hook that detaches every steering program before the
/// previous hook runs. Installing twice is a no-op.
pub fn detach_on_panic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            detach_all();
            prev(info);
        }));
    });
}
