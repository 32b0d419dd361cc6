//! Sans-IO HTTP/1.1 server logic for `serve --http`: an incremental request
//! parser over a byte stream and the writer of a fixed response.
//!
//! Owns the HTTP semantics only; bytes come from and go to the caller (a
//! TCP connection of xdpstack, or a kernel socket in the baseline server),
//! which also owns closing the connection when [`HttpSession::should_close`]
//! says so.
//!
//! - [`RequestParser`] is a byte-at-a-time state machine (RFC 9112): it keeps
//!   no copy of the request, so input may arrive split anywhere, e.g. as
//!   borrowed receive slices. It extracts what the server needs (version,
//!   method HEAD, `Connection` tokens, `Content-Length`) and skips request
//!   bodies. The head (request line and header fields) is limited in size;
//!   any malformed or oversized head is an error answered with 400 (501 for
//!   a `Transfer-Encoding` it does not decode), then the connection closes.
//!   No input makes it panic.
//! - [`HttpServer`] holds the responses, built once: `200 OK` with a fixed
//!   body of a configured size and its `Content-Length`.
//! - [`HttpSession`] is one connection: parses pipelined requests and queues
//!   their responses in order (a bounded queue; when full it stops consuming
//!   input, so the transport's flow control pushes back on the client).

use std::fmt;

/// Limits and the response body.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Length of the fixed `200 OK` body.
    pub body_len: usize,
    /// Largest request head (request line + header fields + the blank line)
    /// accepted; longer is a 400.
    pub max_head_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_len: 64,
            max_head_bytes: 8192,
        }
    }
}

/// Why a request was refused. Each one ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The head exceeded [`HttpConfig::max_head_bytes`].
    HeadTooLarge,
    /// Malformed request line (method, target or spacing).
    BadRequestLine,
    /// Not `HTTP/1.x`.
    BadVersion,
    /// Malformed header field (no colon, space before the colon, control
    /// characters, obsolete line folding).
    BadHeader,
    /// `Content-Length` not a decimal number, too large, or given twice with
    /// different values (RFC 9112 §6.3).
    BadContentLength,
    /// A request with `Transfer-Encoding`: this server does not decode
    /// chunked bodies (RFC 9112 §6.1: 501).
    TransferEncoding,
}

impl HttpError {
    /// The status code of the answer.
    pub fn status(self) -> u16 {
        match self {
            HttpError::TransferEncoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            HttpError::HeadTooLarge => "request head too large",
            HttpError::BadRequestLine => "malformed request line",
            HttpError::BadVersion => "unsupported HTTP version",
            HttpError::BadHeader => "malformed header field",
            HttpError::BadContentLength => "invalid Content-Length",
            HttpError::TransferEncoding => "Transfer-Encoding not supported",
        };
        f.write_str(s)
    }
}

impl std::error::Error for HttpError {}

/// What the server needs to know of one complete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x).
    pub minor_version: u8,
    /// Method HEAD: answer without a body.
    pub head: bool,
    /// The connection stays open after the response (RFC 9112 §9.3: 1.1
    /// unless `Connection: close`; 1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Body bytes that followed the head (skipped).
    pub content_length: u64,
}

/// What one call to [`RequestParser::parse`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// All input consumed, no request complete yet.
    NeedMore,
    /// One request is complete (its body included); the rest of the input
    /// was not looked at.
    Request(Request),
    /// The request is malformed; the parser stays failed.
    Error(HttpError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the request line; empty lines are skipped (RFC 9112 §2.2).
    Start,
    Method,
    Target,
    Version,
    /// A CR was seen; LF must follow. `head_done` tells what the line ended.
    LineLf {
        head_done: bool,
    },
    /// The start of a header line (or of the blank line ending the head).
    FieldStart,
    FieldName,
    FieldValue,
    Body,
    Failed(HttpError),
}

/// Which header field's value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Other,
    Connection,
    ContentLength,
    TransferEncoding,
}

const NAME_BUF: usize = 17;
const TOKEN_BUF: usize = 10;
const METHOD_BUF: usize = 8;

/// Incremental HTTP/1.1 request parser; see the module docs.
#[derive(Debug, Clone)]
pub struct RequestParser {
    max_head: usize,
    state: State,
    /// Bytes of the current head seen so far.
    head_len: usize,
    /// Position inside the request-line token being matched (method or
    /// version) or the length of the buffered name/token.
    pos: usize,
    /// Lowercased prefix of the current field name, or of the current
    /// `Connection` token, or the method.
    buf: [u8; NAME_BUF],
    field: Field,
    minor: u8,
    head: bool,
    saw_close: bool,
    saw_keep_alive: bool,
    saw_te: bool,
    /// The value of the first `Content-Length` (RFC 9112 §6.3: repeats must
    /// agree).
    content_length: Option<u64>,
    /// The number being read in a `Content-Length` value.
    cl_acc: Option<u64>,
    /// Digits ended by whitespace; only more whitespace or a comma may follow.
    cl_done: bool,
    /// Body bytes still to skip.
    body_left: u64,
}

fn is_tchar(b: u8) -> bool {
    // RFC 9110 §5.6.2 token characters.
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl RequestParser {
    pub fn new(max_head_bytes: usize) -> RequestParser {
        RequestParser {
            max_head: max_head_bytes,
            state: State::Start,
            head_len: 0,
            pos: 0,
            buf: [0; NAME_BUF],
            field: Field::Other,
            minor: 0,
            head: false,
            saw_close: false,
            saw_keep_alive: false,
            saw_te: false,
            content_length: None,
            cl_acc: None,
            cl_done: false,
            body_left: 0,
        }
    }

    /// Forget the request in progress; ready for the next one.
    fn reset(&mut self) {
        *self = RequestParser::new(self.max_head);
    }

    /// Whether the parser has failed (every later call returns the error).
    pub fn failed(&self) -> Option<HttpError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True between requests (nothing of a next request seen yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Start && self.head_len == 0
    }

    /// Consume bytes of `input` until one request completes or the input
    /// ends. Returns the bytes consumed and the outcome; after a
    /// [`Parsed::Request`], call again with the rest for pipelined requests.
    pub fn parse(&mut self, input: &[u8]) -> (usize, Parsed) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Failed(e) => return (input.len(), Parsed::Error(e)),
                State::Body => {
                    let take =
                        (input.len() - i).min(self.body_left.min(usize::MAX as u64) as usize);
                    i += take;
                    self.body_left -= take as u64;
                    if self.body_left == 0 {
                        let r = self.request();
                        self.reset();
                        return (i, Parsed::Request(r));
                    }
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.head_len += 1;
            if self.head_len > self.max_head {
                return self.fail(input.len(), HttpError::HeadTooLarge);
            }
            if let Err(e) = self.step(b) {
                return self.fail(input.len(), e);
            }
            if self.state == State::Body && self.body_left == 0 {
                let r = self.request();
                self.reset();
                return (i, Parsed::Request(r));
            }
        }
        if let State::Failed(e) = self.state {
            return (i, Parsed::Error(e));
        }
        (i, Parsed::NeedMore)
    }

    fn fail(&mut self, consumed: usize, e: HttpError) -> (usize, Parsed) {
        self.state = State::Failed(e);
        (consumed, Parsed::Error(e))
    }

    fn request(&self) -> Request {
        let keep_alive = if self.minor == 0 {
            self.saw_keep_alive && !self.saw_close
        } else {
            !self.saw_close
        };
        Request {
            minor_version: self.minor,
            head: self.head,
            keep_alive,
            content_length: self.content_length.unwrap_or(0),
        }
    }

    /// One byte of the head.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        match self.state {
            State::Start => match b {
                b'\r' | b'\n' => {}
                _ if is_tchar(b) => {
                    self.buf[0] = b;
                    self.pos = 1;
                    self.state = State::Method;
                }
                _ => return Err(HttpError::BadRequestLine),
            },
            State::Method => match b {
                b' ' => {
                    self.head = &self.buf[..self.pos] == b"HEAD";
                    self.state = State::Target;
                    self.pos = 0;
                }
                _ if is_tchar(b) => {
                    if self.pos < METHOD_BUF {
                        self.buf[self.pos] = b;
                    }
                    // Longer methods are kept counting so they never match.
                    self.pos = self.pos.saturating_add(1).min(METHOD_BUF + 1);
                }
                _ => return Err(HttpError::BadRequestLine),
            },
            State::Target => match b {
                b' ' if self.pos > 0 => {
                    self.state = State::Version;
                    self.pos = 0;
                }
                // Visible ASCII and obs-text; no controls, no second space.
                0x21..=0x7e | 0x80..=0xff => self.pos = 1,
                _ => return Err(HttpError::BadRequestLine),
            },
            State::Version => {
                const V: &[u8; 7] = b"HTTP/1.";
                match self.pos {
                    0..=6 => {
                        if b != V[self.pos] {
                            return Err(HttpError::BadVersion);
                        }
                        self.pos += 1;
                    }
                    7 => {
                        if !b.is_ascii_digit() {
                            return Err(HttpError::BadVersion);
                        }
                        self.minor = if b == b'0' { 0 } else { 1 };
                        self.pos = 8;
                    }
                    _ => match b {
                        b'\r' => self.state = State::LineLf { head_done: false },
                        b'\n' => self.state = State::FieldStart,
                        _ => return Err(HttpError::BadVersion),
                    },
                }
            }
            State::LineLf { head_done } => {
                if b != b'\n' {
                    return Err(HttpError::BadHeader);
                }
                if head_done {
                    self.end_of_head()?;
                } else {
                    self.state = State::FieldStart;
                }
            }
            State::FieldStart => match b {
                b'\r' => self.state = State::LineLf { head_done: true },
                b'\n' => self.end_of_head()?,
                _ if is_tchar(b) => {
                    self.buf[0] = b.to_ascii_lowercase();
                    self.pos = 1;
                    self.state = State::FieldName;
                }
                // Includes obs-fold (a line starting with SP or HTAB),
                // which RFC 9112 §5.2 lets a server reject with 400.
                _ => return Err(HttpError::BadHeader),
            },
            State::FieldName => match b {
                b':' => {
                    self.field = match &self.buf[..self.pos.min(NAME_BUF)] {
                        b"connection" => Field::Connection,
                        b"content-length" => Field::ContentLength,
                        b"transfer-encoding" => Field::TransferEncoding,
                        _ => Field::Other,
                    };
                    if self.pos > NAME_BUF {
                        self.field = Field::Other;
                    }
                    if self.field == Field::TransferEncoding {
                        self.saw_te = true;
                    }
                    self.pos = 0;
                    self.cl_acc = None;
                    self.cl_done = false;
                    self.state = State::FieldValue;
                }
                _ if is_tchar(b) => {
                    if self.pos < NAME_BUF {
                        self.buf[self.pos] = b.to_ascii_lowercase();
                    }
                    self.pos = self.pos.saturating_add(1).min(NAME_BUF + 1);
                }
                // Whitespace before the colon is an error (RFC 9112 §5.1).
                _ => return Err(HttpError::BadHeader),
            },
            State::FieldValue => match b {
                b'\r' => {
                    self.end_of_field()?;
                    self.state = State::LineLf { head_done: false };
                }
                b'\n' => {
                    self.end_of_field()?;
                    self.state = State::FieldStart;
                }
                b'\t' | 0x20..=0x7e | 0x80..=0xff => self.value_byte(b)?,
                _ => return Err(HttpError::BadHeader),
            },
            State::Body | State::Failed(_) => {}
        }
        Ok(())
    }

    fn value_byte(&mut self, b: u8) -> Result<(), HttpError> {
        match self.field {
            Field::Other | Field::TransferEncoding => {}
            Field::Connection => match b {
                b',' | b' ' | b'\t' => self.end_of_token(),
                _ => {
                    if self.pos < TOKEN_BUF {
                        self.buf[self.pos] = b.to_ascii_lowercase();
                    }
                    self.pos = self.pos.saturating_add(1).min(TOKEN_BUF + 1);
                }
            },
            Field::ContentLength => match b {
                b'0'..=b'9' if !self.cl_done => {
                    let d = u64::from(b - b'0');
                    let v = self
                        .cl_acc
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(d))
                        .ok_or(HttpError::BadContentLength)?;
                    self.cl_acc = Some(v);
                }
                b' ' | b'\t' => {
                    if self.cl_acc.is_some() {
                        self.cl_done = true;
                    }
                }
                // A list of equal values is allowed (RFC 9110 §8.6).
                b',' => self.end_of_length()?,
                _ => return Err(HttpError::BadContentLength),
            },
        }
        Ok(())
    }

    fn end_of_token(&mut self) {
        if self.pos > 0 && self.pos <= TOKEN_BUF {
            match &self.buf[..self.pos] {
                b"close" => self.saw_close = true,
                b"keep-alive" => self.saw_keep_alive = true,
                _ => {}
            }
        }
        self.pos = 0;
    }

    fn end_of_length(&mut self) -> Result<(), HttpError> {
        let v = self.cl_acc.take().ok_or(HttpError::BadContentLength)?;
        self.cl_done = false;
        match self.content_length {
            Some(prev) if prev != v => Err(HttpError::BadContentLength),
            _ => {
                self.content_length = Some(v);
                Ok(())
            }
        }
    }

    fn end_of_field(&mut self) -> Result<(), HttpError> {
        match self.field {
            Field::Connection => self.end_of_token(),
            Field::ContentLength => self.end_of_length()?,
            Field::Other | Field::TransferEncoding => {}
        }
        self.field = Field::Other;
        Ok(())
    }

    fn end_of_head(&mut self) -> Result<(), HttpError> {
        if self.saw_te {
            return Err(HttpError::TransferEncoding);
        }
        self.body_left = self.content_length.unwrap_or(0);
        self.state = State::Body;
        Ok(())
    }
}

/// The kinds of response this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the fixed body (`head`: without it).
    Ok { head: bool, conn: ConnHeader },
    /// 400 or 501, always with `Connection: close`.
    Error(HttpError),
}

/// The `Connection` header of a 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnHeader {
    /// None: HTTP/1.1 persistent by default.
    None,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
    /// `Connection: close`: the server closes after this response.
    Close,
}

impl Reply {
    /// The response to `req`.
    pub fn for_request(req: &Request) -> Reply {
        let conn = match (req.keep_alive, req.minor_version) {
            (false, _) => ConnHeader::Close,
            (true, 0) => ConnHeader::KeepAlive,
            (true, _) => ConnHeader::None,
        };
        Reply::Ok {
            head: req.head,
            conn,
        }
    }

    /// The connection closes after this response.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Reply::Error(_)
                | Reply::Ok {
                    conn: ConnHeader::Close,
                    ..
                }
        )
    }
}

/// The server's responses, built once and shared by every connection.
#[derive(Debug, Clone)]
pub struct HttpServer {
    cfg: HttpConfig,
    body: Box<[u8]>,
    /// Response heads of a 200, indexed by [`ConnHeader`].
    ok_heads: [Box<[u8]>; 3],
    bad_request: Box<[u8]>,
    not_implemented: Box<[u8]>,
}

impl HttpServer {
    pub fn new(cfg: HttpConfig) -> HttpServer {
        // A printable, recognisable body: a repeating alphabet.
        let body: Box<[u8]> = (0..cfg.body_len).map(|i| b'a' + (i % 26) as u8).collect();
        let ok = |conn: &str| -> Box<[u8]> {
            format!(
                "HTTP/1.1 200 OK\r\nServer: xdpstack\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n{conn}\r\n",
                cfg.body_len
            )
            .into_bytes()
            .into_boxed_slice()
        };
        let err = |status: &str| -> Box<[u8]> {
            format!(
                "HTTP/1.1 {status}\r\nServer: xdpstack\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_bytes()
            .into_boxed_slice()
        };
        HttpServer {
            body,
            ok_heads: [
                ok(""),
                ok("Connection: keep-alive\r\n"),
                ok("Connection: close\r\n"),
            ],
            bad_request: err("400 Bad Request"),
            not_implemented: err("501 Not Implemented"),
            cfg,
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// A fresh parser with this server's limits.
    pub fn parser(&self) -> RequestParser {
        RequestParser::new(self.cfg.max_head_bytes)
    }

    /// The two parts of `reply` on the wire: the head and the body.
    pub fn parts(&self, reply: Reply) -> (&[u8], &[u8]) {
        match reply {
            Reply::Ok { head, conn } => {
                let h = &self.ok_heads[conn as usize];
                (h, if head { &[] } else { &self.body })
            }
            Reply::Error(e) if e.status() == 501 => (&self.not_implemented, &[]),
            Reply::Error(_) => (&self.bad_request, &[]),
        }
    }

    /// The total length of `reply` on the wire.
    pub fn reply_len(&self, reply: Reply) -> usize {
        let (h, b) = self.parts(reply);
        h.len() + b.len()
    }
}

/// Responses waiting to be written, at most this many per connection.
pub const MAX_PIPELINED: usize = 16;

/// One HTTP connection's state; see the module docs.
#[derive(Debug, Clone)]
pub struct HttpSession {
    parser: RequestParser,
    /// Ring of queued replies; `queue[first]` is being written.
    queue: [Reply; MAX_PIPELINED],
    first: usize,
    queued: usize,
    /// Bytes of `queue[first]` already written.
    written: usize,
    /// A closing reply is queued: no more input is parsed.
    closing: bool,
    requests: u64,
}

impl HttpSession {
    pub fn new(server: &HttpServer) -> HttpSession {
        HttpSession {
            parser: server.parser(),
            queue: [Reply::Error(HttpError::BadRequestLine); MAX_PIPELINED],
            first: 0,
            queued: 0,
            written: 0,
            closing: false,
            requests: 0,
        }
    }

    /// Parse requests from `input` and queue their responses. Returns the
    /// bytes consumed: less than `input.len()` only when
    /// [`MAX_PIPELINED`] responses are waiting (offer the rest again after
    /// writing). Once a closing response is queued, input is consumed and
    /// ignored.
    pub fn receive(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            if self.closing {
                return input.len();
            }
            if self.queued == MAX_PIPELINED {
                return used;
            }
            let (n, parsed) = self.parser.parse(&input[used..]);
            used += n;
            match parsed {
                Parsed::NeedMore => {}
                Parsed::Request(req) => {
                    self.requests += 1;
                    self.push(Reply::for_request(&req));
                }
                Parsed::Error(e) => self.push(Reply::Error(e)),
            }
        }
        used
    }

    fn push(&mut self, r: Reply) {
        self.queue[(self.first + self.queued) % MAX_PIPELINED] = r;
        self.queued += 1;
        self.closing = r.closes();
    }

    /// The next bytes to send (a suffix of a response head or body), or
    /// `None` when nothing is waiting. Call [`HttpSession::advance`] with
    /// how many of them were sent.
    pub fn output<'s>(&self, server: &'s HttpServer) -> Option<&'s [u8]> {
        if self.queued == 0 {
            return None;
        }
        let (h, b) = server.parts(self.queue[self.first]);
        Some(if self.written < h.len() {
            &h[self.written..]
        } else {
            &b[self.written - h.len()..]
        })
    }

    /// Mark `n` bytes of [`HttpSession::output`] as sent.
    pub fn advance(&mut self, server: &HttpServer, n: usize) {
        let mut n = n;
        while n > 0 && self.queued > 0 {
            let total = server.reply_len(self.queue[self.first]);
            let step = n.min(total - self.written);
            self.written += step;
            n -= step;
            if self.written == total {
                self.first = (self.first + 1) % MAX_PIPELINED;
                self.queued -= 1;
                self.written = 0;
            }
        }
    }

    /// Copy pending response bytes into `out`; returns how many.
    pub fn write_to(&mut self, server: &HttpServer, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(chunk) = self.output(server) else {
                break;
            };
            let k = chunk.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&chunk[..k]);
            n += k;
            self.advance(server, k);
        }
        n
    }

    /// Responses are waiting to be written.
    pub fn has_output(&self) -> bool {
        self.queued > 0
    }

    /// Input is being refused until responses are written.
    pub fn is_backlogged(&self) -> bool {
        self.queued == MAX_PIPELINED
    }

    /// A closing response has been written completely: the caller closes
    /// the connection (after its send buffer drains).
    pub fn should_close(&self) -> bool {
        self.closing && self.queued == 0
    }

    /// The peer finished sending (FIN). Whatever is queued is still written;
    /// a partial request is dropped. Returns whether the caller should close
    /// now (nothing left to write).
    pub fn peer_closed(&mut self) -> bool {
        self.closing = true;
        self.queued == 0
    }

    /// Complete requests parsed so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }
}
