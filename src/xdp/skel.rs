//! The libbpf-rs skeleton generated from `bpf/steer.bpf.c` by `build.rs`.
#![allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
include!(concat!(env!("OUT_DIR"), "/steer.skel.rs"));
