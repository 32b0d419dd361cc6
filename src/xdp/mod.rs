//! AF_XDP: sockets, the UMEM frame pool, the BPF loader and its maps.
//! The only module where unsafe code is allowed; every block carries a
//! `// Safety:` argument.

pub mod skel;
