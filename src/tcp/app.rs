//! Application access to both buffers of a connection at once: the
//! readable bytes together with the send side, so a run-to-completion
//! application can answer from received bytes without an intermediate
//! buffer. In-order bytes are offered straight from the received frame
//! ([`Deliver`]); only what the application leaves is copied into the
//! receive ring and offered from there ([`Connection::split`]). An echo so
//! copies each byte once, frame to send ring.

use super::buffer::SendBuffer;
use super::connection::{Connection, SendError};

/// The application's read of zero-copy receive data (see
/// [`Connection::on_segment_deliver`]): it gets in-order bytes straight
/// from the received segment and the send side, and returns how many it
/// took; the rest is buffered and offered again later.
pub type Deliver<'d> = dyn FnMut(&[u8], &mut SendHalf<'_>) -> usize + 'd;

/// The send side of a connection, borrowed next to its receive data.
#[derive(Debug)]
pub struct SendHalf<'a> {
    buf: &'a mut SendBuffer,
    open: Result<(), SendError>,
}

impl<'a> SendHalf<'a> {
    pub(super) fn new(buf: &'a mut SendBuffer, open: Result<(), SendError>) -> SendHalf<'a> {
        SendHalf { buf, open }
    }

    /// Queue bytes for sending, as [`Connection::send`].
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.open?;
        Ok(self.buf.enqueue(data))
    }

    /// Bytes `send` would accept now.
    pub fn free(&self) -> usize {
        if self.open.is_ok() {
            self.buf.free()
        } else {
            0
        }
    }
}

impl Connection {
    /// The first contiguous run of readable bytes (possibly empty) and the
    /// send side. Mark what was used with [`Connection::consume`].
    pub fn split(&mut self) -> (&[u8], SendHalf<'_>) {
        let open = self.send_open();
        let (a, _) = self.rcv_buf.peek();
        (
            a,
            SendHalf {
                buf: &mut self.snd_buf,
                open,
            },
        )
    }
}

impl Connection {
    /// Whether `send` would accept data, with `send`'s error otherwise.
    pub(super) fn send_open(&self) -> Result<(), SendError> {
        use super::connection::CloseReason;
        match self.close_reason {
            Some(CloseReason::Normal) | None => {}
            Some(r) => return Err(SendError::Broken(r)),
        }
        if !self.state.can_send_data() || self.fin_queued {
            return Err(SendError::Closed);
        }
        Ok(())
    }
}
