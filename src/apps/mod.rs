//! Servers built on the run-to-completion TCP handler API
//! ([`crate::api::tcp::TcpHandler`]), as `xdpstack serve` runs them.
//!
//! - [`echo::TcpEcho`]: echoes every byte until the client closes, then
//!   closes (after a half-close it keeps echoing until its data is sent);
//! - [`http::HttpHandler`]: the HTTP/1.1 server of [`crate::http`];
//! - [`source::TcpSource`]: sends a verifiable byte pattern until the
//!   client closes (bulk downloads).

pub mod echo;
pub mod http;
pub mod source;

pub use echo::TcpEcho;
pub use http::HttpHandler;
pub use source::TcpSource;
