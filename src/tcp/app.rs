//! Application access to both buffers of a connection at once: the
//! readable bytes borrowed from the receive buffer together with the send
//! side, so a run-to-completion application can answer from received bytes
//! (an echo copies them once, receive ring to send ring) without an
//! intermediate buffer.

use super::buffer::SendBuffer;
use super::connection::{Connection, SendError};

/// The send side of a connection, borrowed next to its receive data.
#[derive(Debug)]
pub struct SendHalf<'a> {
    buf: &'a mut SendBuffer,
    open: Result<(), SendError>,
}

impl SendHalf<'_> {
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
    fn send_open(&self) -> Result<(), SendError> {
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
