//! Load generation for `xdpstack bench`: clients that drive a server and
//! measure it, and the report they produce (HdrHistogram percentiles,
//! requests per second, JSON and a table row).
//!
//! Clients run on the kernel's sockets or on xdpstack itself, so that the
//! stack's speed can be reported both with a kernel client (interop) and with
//! xdpstack on both ends (PLATFORM.md: a kernel client caps what any server
//! can show).

pub mod tcp;
pub mod tcp_xdp;
pub mod udp_echo;
pub mod xdp_client;

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latency histogram in nanoseconds, 1 ns to 10 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static histogram bounds are valid")
}

/// The outcome of one benchmark run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran, e.g. "udp-echo".
    pub kind: String,
    /// Who served, e.g. "xdpstack", "kernel", "reflector".
    pub server: String,
    /// Who drove the load, e.g. "kernel" or "xdpstack".
    pub client: String,
    pub payload: usize,
    pub inflight: usize,
    pub elapsed: Duration,
    /// Completed request/response pairs.
    pub completed: u64,
    /// Requests that timed out and were sent again.
    pub lost: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// Payload bytes delivered during the measured interval, for bulk
    /// (stream) runs; 0 otherwise.
    pub bytes: u64,
}

impl Report {
    pub fn from_histogram(
        kind: &str,
        hist: &Histogram<u64>,
        elapsed: Duration,
        completed: u64,
        lost: u64,
    ) -> Report {
        Report {
            kind: kind.to_string(),
            server: String::new(),
            client: String::new(),
            payload: 0,
            inflight: 0,
            elapsed,
            completed,
            lost,
            p50_ns: hist.value_at_quantile(0.50),
            p90_ns: hist.value_at_quantile(0.90),
            p99_ns: hist.value_at_quantile(0.99),
            p999_ns: hist.value_at_quantile(0.999),
            max_ns: hist.max(),
            bytes: 0,
        }
    }

    /// Payload throughput in bits per second (stream runs).
    pub fn bits_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes as f64 * 8.0 / secs
        } else {
            0.0
        }
    }

    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.completed as f64 / secs
        } else {
            0.0
        }
    }

    /// One JSON object on one line (no dependency needed for flat data).
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"kind\":\"{}\",\"server\":\"{}\",\"client\":\"{}\",\"payload\":{},\"inflight\":{},\
             \"elapsed_s\":{:.3},\"completed\":{},\"lost\":{},\"per_s\":{:.1},\
             \"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2},\"max_us\":{:.2},\
             \"bytes\":{},\"gbit_s\":{:.3}}}",
            json_escape(&self.kind),
            json_escape(&self.server),
            json_escape(&self.client),
            self.payload,
            self.inflight,
            self.elapsed.as_secs_f64(),
            self.completed,
            self.lost,
            self.per_second(),
            us(self.p50_ns),
            us(self.p90_ns),
            us(self.p99_ns),
            us(self.p999_ns),
            us(self.max_ns),
            self.bytes,
            self.bits_per_second() / 1e9,
        );
        s
    }

    /// A human-readable summary line.
    pub fn summary(&self) -> String {
        if self.bytes > 0 && self.completed == 0 {
            return format!(
                "{} server={} client={} payload={} connections={}: {:.2} Gbit/s over {:.1}s",
                self.kind,
                self.server,
                self.client,
                self.payload,
                self.inflight,
                self.bits_per_second() / 1e9,
                self.elapsed.as_secs_f64(),
            );
        }
        format!(
            "{} server={} client={} payload={} inflight={}: {:.0}/s over {:.1}s, lost {}, \
             latency p50 {:.1}us p90 {:.1}us p99 {:.1}us p99.9 {:.1}us max {:.1}us",
            self.kind,
            self.server,
            self.client,
            self.payload,
            self.inflight,
            self.per_second(),
            self.elapsed.as_secs_f64(),
            self.lost,
            us(self.p50_ns),
            us(self.p90_ns),
            us(self.p99_ns),
            us(self.p999_ns),
            us(self.max_ns),
        )
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn json_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => vec![' '],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_percentiles_and_json() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let r = Report::from_histogram("udp-echo", &h, Duration::from_secs(2), 1000, 3);
        assert_eq!(r.per_second(), 500.0);
        assert!((499_000..=501_000).contains(&r.p50_ns), "{}", r.p50_ns);
        assert!((989_000..=991_000).contains(&r.p99_ns), "{}", r.p99_ns);
        let j = r.to_json();
        assert!(j.starts_with("{\"kind\":\"udp-echo\""), "{j}");
        assert!(j.contains("\"lost\":3"), "{j}");
        assert!(j.contains("\"per_s\":500.0"), "{j}");
        assert!(j.ends_with("\"bytes\":0,\"gbit_s\":0.000}"), "{j}");
        let mut r = r;
        r.bytes = 250_000_000;
        assert_eq!(r.bits_per_second(), 1e9);
        assert!(r.to_json().contains("\"gbit_s\":1.000"));
    }
}
