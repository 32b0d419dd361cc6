//! The xdpstack command line: serve and benchmark on a NIC or a veth pair.
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "xdpstack",
    version,
    about = "A kernel-bypass TCP/UDP stack on AF_XDP"
)]
enum Cli {
    /// Print the version and exit.
    Version,
}

fn main() {
    match Cli::parse() {
        Cli::Version => println!("xdpstack {}", env!("CARGO_PKG_VERSION")),
    }
}
