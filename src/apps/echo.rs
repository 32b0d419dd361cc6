//! TCP echo: every received byte goes back, copied once into the send
//! buffer: straight from the received frame when it arrives in order
//! (zero-copy delivery), else from the receive buffer. That copy stays
//! because the bytes must outlive the frame until acknowledged (the frame
//! returns to the fill ring at once). When the send buffer is full the rest
//! stays in the receive buffer (its window closes and the client slows
//! down) and is offered again once acknowledgements make room. The client's FIN is
//! answered with ours after the last echoed byte (half-close keeps echoing).

use crate::api::tcp::{ConnId, TcpConn, TcpHandler};
use crate::tcp::SendHalf;
use crate::time::Instant;

/// The echo handler (one per worker).
#[derive(Debug, Default)]
pub struct TcpEcho {
    /// Bytes echoed.
    pub bytes: u64,
    /// Connections accepted.
    pub connections: u64,
}

impl TcpHandler for TcpEcho {
    fn on_accept(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        self.connections += 1;
        // Request/response traffic: answer at once rather than wait for an
        // ACK of an earlier small segment.
        conn.set_nodelay(true);
    }

    fn on_data(&mut self, _now: Instant, _id: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize {
        match tx.send(data) {
            Ok(n) => {
                self.bytes += n as u64;
                n
            }
            // Our side is shut: nothing can be echoed, discard.
            Err(_) => data.len(),
        }
    }
}
