//! The HTTP request parser and session: request forms, keep-alive rules,
//! limits, pipelining, split-invariance, and never panicking on any input.

use proptest::prelude::*;
use xdpstack::http::{
    HttpConfig, HttpError, HttpServer, HttpSession, Parsed, Request, RequestParser, MAX_PIPELINED,
};

fn parse_one(s: &[u8]) -> (usize, Parsed) {
    RequestParser::new(8192).parse(s)
}

fn req(minor: u8, head: bool, keep_alive: bool, cl: u64) -> Parsed {
    Parsed::Request(Request {
        minor_version: minor,
        head,
        keep_alive,
        content_length: cl,
    })
}

#[test]
fn simple_get_1_1_is_keep_alive() {
    let s = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(parse_one(s), (s.len(), req(1, false, true, 0)));
}

#[test]
fn http_1_0_defaults_to_close_and_honours_keep_alive() {
    let s = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(parse_one(s), (s.len(), req(0, false, false, 0)));
    let s = b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n";
    assert_eq!(parse_one(s), (s.len(), req(0, false, true, 0)));
}

#[test]
fn connection_close_any_case_and_in_a_list() {
    for h in [
        "Connection: close",
        "CONNECTION: CLOSE",
        "connection:close",
        "Connection: Upgrade, Close",
        "Connection:\tkeep-alive ,close ",
    ] {
        let s = format!("GET /a HTTP/1.1\r\n{h}\r\n\r\n");
        assert_eq!(
            parse_one(s.as_bytes()),
            (s.len(), req(1, false, false, 0)),
            "{h}"
        );
    }
    // Tokens that merely contain "close" do not count.
    let s = b"GET / HTTP/1.1\r\nConnection: closed, x-close\r\nX-Connection: close\r\n\r\n";
    assert_eq!(parse_one(s), (s.len(), req(1, false, true, 0)));
}

#[test]
fn head_method_and_bare_lf_lines() {
    let s = b"HEAD /x HTTP/1.1\nHost: y\n\n";
    assert_eq!(parse_one(s), (s.len(), req(1, true, true, 0)));
    let s = b"HEADER /x HTTP/1.1\r\n\r\n";
    assert_eq!(parse_one(s), (s.len(), req(1, false, true, 0)));
}

#[test]
fn body_is_skipped_and_the_next_request_follows() {
    let s = b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /q HTTP/1.1\r\n\r\n";
    let mut p = RequestParser::new(8192);
    let (n, r) = p.parse(s);
    assert_eq!(r, req(1, false, true, 5));
    assert_eq!(&s[n..n + 3], b"GET");
    let (m, r) = p.parse(&s[n..]);
    assert_eq!((n + m, r), (s.len(), req(1, false, true, 0)));
}

#[test]
fn content_length_rules() {
    let ok = b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-length:3\r\n\r\nabc";
    assert_eq!(parse_one(ok), (ok.len(), req(1, false, true, 3)));
    for bad in [
        "Content-Length: 3, 4",
        "Content-Length: 3\r\nContent-Length: 4",
        "Content-Length: -1",
        "Content-Length: 1 2",
        "Content-Length:",
        "Content-Length: 99999999999999999999999",
        "Content-Length: 0x10",
    ] {
        let s = format!("POST / HTTP/1.1\r\n{bad}\r\n\r\n");
        assert_eq!(
            parse_one(s.as_bytes()).1,
            Parsed::Error(HttpError::BadContentLength),
            "{bad}"
        );
    }
}

#[test]
fn malformed_heads_are_errors() {
    let cases: &[(&[u8], HttpError)] = &[
        (b"GET  / HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
        (b"G(T / HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
        (b" GET / HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
        (b"GET / HTTP/2.0\r\n\r\n", HttpError::BadVersion),
        (b"GET / HTTP/1.1 \r\n\r\n", HttpError::BadVersion),
        (b"GET / http/1.1\r\n\r\n", HttpError::BadVersion),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HttpError::BadHeader),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", HttpError::BadHeader),
        (
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            HttpError::BadHeader,
        ),
        (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", HttpError::BadHeader),
        (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", HttpError::BadHeader),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::TransferEncoding,
        ),
    ];
    for (s, e) in cases {
        let (n, r) = parse_one(s);
        assert_eq!(r, Parsed::Error(*e), "{:?}", String::from_utf8_lossy(s));
        assert_eq!(n, s.len());
    }
    assert_eq!(HttpError::TransferEncoding.status(), 501);
    assert_eq!(HttpError::BadHeader.status(), 400);
}

#[test]
fn head_size_limit() {
    let mut p = RequestParser::new(64);
    let s = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(41));
    assert_eq!(s.len(), 64);
    assert_eq!(p.parse(s.as_bytes()), (64, req(1, false, true, 0)));
    let s = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(42));
    let mut p = RequestParser::new(64);
    assert_eq!(
        p.parse(s.as_bytes()).1,
        Parsed::Error(HttpError::HeadTooLarge)
    );
    // An endless head fails without the end ever arriving, and stays failed.
    let mut p = RequestParser::new(1024);
    let chunk = b"X-Filler: aaaaaaaaaaaaaaaa\r\n";
    assert_eq!(p.parse(b"GET / HTTP/1.1\r\n").1, Parsed::NeedMore);
    let mut outcome = Parsed::NeedMore;
    for _ in 0..100 {
        outcome = p.parse(chunk).1;
        if outcome != Parsed::NeedMore {
            break;
        }
    }
    assert_eq!(outcome, Parsed::Error(HttpError::HeadTooLarge));
    assert_eq!(
        p.parse(b"\r\n\r\n").1,
        Parsed::Error(HttpError::HeadTooLarge)
    );
    // The limit is per request: many small pipelined requests are fine.
    let mut p = RequestParser::new(64);
    let one = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    for _ in 0..10 {
        assert_eq!(p.parse(one), (one.len(), req(1, false, true, 0)));
    }
}

fn server(body: usize) -> HttpServer {
    HttpServer::new(HttpConfig {
        body_len: body,
        max_head_bytes: 8192,
    })
}

fn drain(s: &mut HttpSession, srv: &HttpServer) -> Vec<u8> {
    let mut out = vec![0u8; 7]; // small, to exercise partial writes
    let mut all = Vec::new();
    loop {
        let n = s.write_to(srv, &mut out);
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&out[..n]);
    }
}

fn ok_response(body: usize, conn: &str, head: bool) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nServer: xdpstack\r\nContent-Type: text/plain\r\nContent-Length: {body}\r\n{conn}\r\n"
    )
    .into_bytes();
    if !head {
        v.extend((0..body).map(|i| b'a' + (i % 26) as u8));
    }
    v
}

#[test]
fn session_answers_pipelined_requests_in_order_then_closes() {
    let srv = server(30);
    let mut s = HttpSession::new(&srv);
    let input = b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n";
    assert_eq!(s.receive(input), input.len());
    assert!(!s.should_close());
    let mut want = ok_response(30, "", false);
    want.extend(ok_response(30, "", true));
    want.extend(ok_response(30, "Connection: keep-alive\r\n", false));
    want.extend(ok_response(30, "Connection: close\r\n", false));
    assert_eq!(drain(&mut s, &srv), want);
    assert_eq!(s.requests(), 4);
    assert!(s.should_close());
}

#[test]
fn session_bad_request_gets_400_and_close() {
    let srv = server(10);
    let mut s = HttpSession::new(&srv);
    s.receive(b"GET / HTTP/1.1\r\n\r\nBAD REQUEST LINE\r\n\r\n");
    let mut want = ok_response(10, "", false);
    want.extend_from_slice(
        b"HTTP/1.1 400 Bad Request\r\nServer: xdpstack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(drain(&mut s, &srv), want);
    assert!(s.should_close());
}

#[test]
fn session_pushes_back_when_too_many_responses_wait() {
    let srv = server(1);
    let mut s = HttpSession::new(&srv);
    let one = b"GET / HTTP/1.1\r\n\r\n";
    let input: Vec<u8> = one.repeat(MAX_PIPELINED + 5);
    let n = s.receive(&input);
    assert_eq!(n, one.len() * MAX_PIPELINED);
    assert!(s.is_backlogged());
    drain(&mut s, &srv);
    assert_eq!(s.receive(&input[n..]), input.len() - n);
    assert_eq!(s.requests(), MAX_PIPELINED as u64 + 5);
}

#[test]
fn peer_close_flushes_then_closes() {
    let srv = server(3);
    let mut s = HttpSession::new(&srv);
    s.receive(b"GET / HTTP/1.1\r\n\r\nGET / HT");
    assert!(!s.peer_closed());
    assert_eq!(drain(&mut s, &srv), ok_response(3, "", false));
    assert!(s.should_close());
}

/// Random valid requests, rendered to bytes, with the reply each expects.
fn request_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool)> {
    (
        prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("OPTIONS")],
        "/[a-z0-9/._-]{0,20}",
        0u8..2,
        prop_oneof![
            Just(None),
            Just(Some("close")),
            Just(Some("keep-alive")),
            Just(Some("Keep-Alive, foo"))
        ],
        proptest::option::of(0usize..40),
        proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,30}"), 0..4),
        any::<bool>(),
    )
        .prop_filter(
            "no stray headers that change semantics",
            |(_, _, _, _, _, h, _)| {
                h.iter().all(|(n, _)| {
                    let n = n.to_ascii_lowercase();
                    n != "connection" && n != "content-length" && n != "transfer-encoding"
                })
            },
        )
        .prop_map(|(m, path, minor, conn, cl, headers, bare_lf)| {
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut s = format!("{m} {path}x HTTP/1.{minor}{eol}");
            for (n, v) in headers {
                s += &format!("{n}: {}{eol}", v.trim());
            }
            if let Some(c) = conn {
                s += &format!("Connection: {c}{eol}");
            }
            if let Some(len) = cl {
                s += &format!("Content-Length: {len}{eol}");
            }
            s += eol;
            let mut bytes = s.into_bytes();
            bytes.extend(std::iter::repeat_n(b'Z', cl.unwrap_or(0)));
            let lc = conn.map(|c| c.to_ascii_lowercase());
            let keep = match (minor, lc.as_deref()) {
                (_, Some("close")) => false,
                (0, Some(c)) => c.starts_with("keep-alive"),
                (0, None) => false,
                _ => true,
            };
            let conn_hdr = match (keep, minor) {
                (false, _) => "Connection: close\r\n",
                (true, 0) => "Connection: keep-alive\r\n",
                _ => "",
            };
            (bytes, ok_response(17, conn_hdr, m == "HEAD"), keep)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any bytes, cut anywhere: no panic, consumption never exceeds input.
    #[test]
    fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
                    limit in 0usize..400) {
        let mut p = RequestParser::new(limit);
        let srv = HttpServer::new(HttpConfig { body_len: 5, max_head_bytes: limit });
        let mut s = HttpSession::new(&srv);
        for c in &chunks {
            let mut off = 0;
            while off < c.len() {
                let (n, _) = p.parse(&c[off..]);
                prop_assert!(n <= c.len() - off);
                if n == 0 { break; }
                off += n;
            }
            let mut off = 0;
            while off < c.len() {
                let n = s.receive(&c[off..]);
                off += n;
                drain(&mut s, &srv);
            }
        }
    }

    /// Byte soup that looks like HTTP: mutations of valid requests.
    #[test]
    fn never_panics_on_near_requests(r in request_strategy(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6)) {
        let mut bytes = r.0;
        for (at, b) in flips {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = b;
            }
        }
        let mut p = RequestParser::new(8192);
        let mut off = 0;
        while off < bytes.len() {
            let (n, out) = p.parse(&bytes[off..]);
            off += n;
            if n == 0 || matches!(out, Parsed::Error(_)) { break; }
        }
    }

    /// A pipeline of valid requests, delivered in arbitrary pieces, gets
    /// exactly the responses it should, in order, and the connection closes
    /// exactly when one of them asked.
    #[test]
    fn pipelines_split_anywhere(reqs in proptest::collection::vec(request_strategy(), 1..8),
                                cuts in proptest::collection::vec(1usize..64, 1..40)) {
        let srv = server(17);
        let mut s = HttpSession::new(&srv);
        let mut input = Vec::new();
        let mut want = Vec::new();
        let mut closes = false;
        for (bytes, resp, keep) in &reqs {
            input.extend_from_slice(bytes);
            if !closes {
                want.extend_from_slice(resp);
                closes = !keep;
            }
        }
        let mut got = Vec::new();
        let mut off = 0;
        let mut cut = cuts.iter().cycle();
        while off < input.len() {
            let end = (off + cut.next().unwrap()).min(input.len());
            let mut piece = &input[off..end];
            while !piece.is_empty() {
                let n = s.receive(piece);
                piece = &piece[n..];
                got.extend(drain(&mut s, &srv));
            }
            off = end;
        }
        got.extend(drain(&mut s, &srv));
        prop_assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
        prop_assert_eq!(s.should_close(), closes);
    }
}
