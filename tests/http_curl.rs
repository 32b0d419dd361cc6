//! The sans-IO HTTP session behind a minimal blocking adapter (one thread
//! per connection on a loopback `std::net::TcpListener`), fetched by curl:
//! keep-alive reuses the connection, `Connection: close` does not, and the
//! body arrives whole with the right length.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use xdpstack::http::{HttpConfig, HttpServer, HttpSession};

/// Serve one connection with `HttpSession`; closes when the session says so.
fn serve(mut s: TcpStream, srv: &HttpServer) {
    let mut sess = HttpSession::new(srv);
    let mut buf = [0u8; 4096];
    let mut out = vec![0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                sess.peer_closed();
                0
            }
            Ok(n) => n,
        };
        let mut input = &buf[..n];
        loop {
            let used = sess.receive(input);
            input = &input[used..];
            loop {
                let k = sess.write_to(srv, &mut out);
                if k == 0 {
                    break;
                }
                if s.write_all(&out[..k]).is_err() {
                    return;
                }
            }
            if input.is_empty() {
                break;
            }
        }
        if sess.should_close() || n == 0 {
            let _ = s.shutdown(Shutdown::Write);
            // Read to the client's FIN so the close is orderly.
            while matches!(s.read(&mut buf), Ok(k) if k > 0) {}
            return;
        }
    }
}

struct Server {
    url: String,
    connections: Arc<AtomicU64>,
}

fn start(body_len: usize) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let c = connections.clone();
    let srv = Arc::new(HttpServer::new(HttpConfig {
        body_len,
        max_head_bytes: 8192,
    }));
    // Detached: the process ends with the test binary.
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            c.fetch_add(1, Ordering::Relaxed);
            let srv = srv.clone();
            std::thread::spawn(move || serve(s, &srv));
        }
    });
    Server { url, connections }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fetches `url` twice in one curl run, bodies discarded, with the `extra`
/// options; returns what `-w format` printed after each transfer.
fn curl_twice(url: &str, extra: &[&str], format: &str) -> String {
    let mut args = vec!["-o", "/dev/null", "-o", "/dev/null", "-w", format];
    args.extend_from_slice(extra);
    args.extend([url, url]);
    curl(&args)
}

#[test]
fn curl_keep_alive_reuses_the_connection() {
    let s = start(12345);
    let w = "%{http_code} %{size_download} %{num_connects}\\n";
    let out = curl_twice(&s.url, &[], w);
    assert_eq!(out, "200 12345 1\n200 12345 0\n");
    assert_eq!(s.connections.load(Ordering::Relaxed), 1);
}

#[test]
fn curl_connection_close_opens_a_new_connection_each_time() {
    let s = start(10);
    let w = "%{http_code} %{num_connects}\\n";
    let out = curl_twice(&s.url, &["-H", "Connection: close"], w);
    assert_eq!(out, "200 1\n200 1\n");
    assert_eq!(s.connections.load(Ordering::Relaxed), 2);
}

#[test]
fn curl_http_1_0_closes_and_body_is_exact() {
    let s = start(100);
    let body = curl(&["--http1.0", "-D", "/dev/stderr", &s.url]);
    let want: String = (0..100).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    assert_eq!(body, want);
    let head = curl(&["--http1.0", "-o", "/dev/null", "-D", "-", &s.url]);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(head.contains("Content-Length: 100\r\n"), "{head}");
    let head = curl(&["-I", &s.url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 100\r\n"), "{head}");
}

#[test]
fn curl_post_body_is_skipped() {
    let s = start(7);
    let w = "%{http_code} %{size_download} %{num_connects}\\n";
    let out = curl_twice(&s.url, &["--data-binary", &"q".repeat(50_000)], w);
    assert_eq!(out, "200 7 1\n200 7 0\n");
}
