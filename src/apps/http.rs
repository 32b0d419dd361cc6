//! The HTTP/1.1 server as a TCP handler: one [`HttpSession`] per connection
//! (kept in a table indexed by the connection's slot), requests parsed from
//! the borrowed receive slices, responses written into the send buffer as
//! room allows, the connection closed after a `Connection: close` response
//! (or an error) once it is queued, and after the client's FIN once every
//! queued response is.

use crate::api::tcp::{ConnId, TcpConn, TcpHandler};
use crate::http::{HttpServer, HttpSession};
use crate::tcp::{CloseReason, SendHalf};
use crate::time::Instant;

/// The HTTP handler (one per worker).
#[derive(Debug)]
pub struct HttpHandler {
    server: HttpServer,
    /// Sessions by connection slot, with the slot's generation.
    sessions: Vec<Option<(u32, HttpSession)>>,
    /// Requests answered, over all connections.
    pub requests: u64,
}

impl HttpHandler {
    pub fn new(server: HttpServer) -> HttpHandler {
        HttpHandler {
            server,
            sessions: Vec::new(),
            requests: 0,
        }
    }

    fn session(&mut self, id: ConnId) -> Option<&mut HttpSession> {
        match self.sessions.get_mut(id.slot as usize) {
            Some(Some((g, s))) if *g == id.generation => Some(s),
            _ => None,
        }
    }

    /// Writes queued response bytes into the send buffer.
    fn write(server: &HttpServer, s: &mut HttpSession, tx: &mut SendHalf<'_>) {
        while let Some(chunk) = s.output(server) {
            let n = tx.send(chunk).unwrap_or(0);
            s.advance(server, n);
            if n < chunk.len() {
                break;
            }
        }
    }
}

impl TcpHandler for HttpHandler {
    fn on_accept(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let i = id.slot as usize;
        if self.sessions.len() <= i {
            self.sessions.resize_with(i + 1, || None);
        }
        self.sessions[i] = Some((id.generation, HttpSession::new(&self.server)));
        // A response is complete when written: no reason to hold its tail.
        conn.set_nodelay(true);
    }

    fn on_data(&mut self, _now: Instant, id: ConnId, data: &[u8], tx: &mut SendHalf<'_>) -> usize {
        let HttpHandler {
            server,
            sessions,
            requests,
        } = self;
        let Some(Some((g, s))) = sessions.get_mut(id.slot as usize) else {
            return data.len();
        };
        if *g != id.generation {
            return data.len();
        }
        let before = s.requests();
        let used = s.receive(data);
        *requests += s.requests() - before;
        Self::write(server, s, tx);
        used
    }

    fn on_writable(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        let HttpHandler {
            server, sessions, ..
        } = self;
        let Some(Some((g, s))) = sessions.get_mut(id.slot as usize) else {
            return;
        };
        if *g != id.generation {
            return;
        }
        while let Some(chunk) = s.output(server) {
            let n = conn.send(chunk).unwrap_or(0);
            s.advance(server, n);
            if n < chunk.len() {
                break;
            }
        }
        if s.should_close() {
            conn.close();
        }
    }

    fn on_peer_closed(&mut self, _now: Instant, conn: &mut TcpConn<'_>) {
        let id = conn.id();
        match self.session(id) {
            Some(s) => {
                if s.peer_closed() {
                    conn.close();
                }
                // Otherwise `on_writable` closes once the responses are out.
            }
            None => conn.close(),
        }
    }

    fn on_close(&mut self, _now: Instant, id: ConnId, _reason: Option<CloseReason>) {
        if let Some(slot) = self.sessions.get_mut(id.slot as usize) {
            if matches!(slot, Some((g, _)) if *g == id.generation) {
                *slot = None;
            }
        }
    }
}
