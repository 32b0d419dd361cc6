/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Shared between bpf/impair.bpf.c and the Rust loader (src/xdp/impair.rs).
 * A Rust test parses this file and asserts the constants and layout agree.
 */
#ifndef XDPSTACK_IMPAIR_H
#define XDPSTACK_IMPAIR_H

/* Probabilities are in parts per million. */
#define IMPAIR_PPM 1000000

/* impair_config.flags */
#define IMPAIR_F_TCP 0x1     /* impair TCP segments */
#define IMPAIR_F_UDP 0x2     /* impair UDP datagrams */
#define IMPAIR_F_INGRESS 0x4 /* attached on ingress: duplicates re-enter ingress */

/* skb->mark of a duplicate on its way through the hook again: passed untouched. */
#define IMPAIR_DUP_MARK 0x1a3b0d0d

/* Single-entry array: what to do to matching packets. */
struct impair_config {
	__u32 drop_ppm;
	__u32 duplicate_ppm;
	__u32 corrupt_ppm;
	__u32 flags;
	/* Only packets with this source or destination port (host byte order);
	 * 0: any port. */
	__u32 port;
};

/* Index into the per-CPU counters array. */
enum impair_counter {
	IMPAIR_CNT_SEEN = 0,       /* matching packets considered */
	IMPAIR_CNT_DROPPED = 1,    /* dropped */
	IMPAIR_CNT_DUPLICATED = 2, /* a copy was sent */
	IMPAIR_CNT_DUP_FAILED = 3, /* bpf_clone_redirect failed */
	IMPAIR_CNT_CORRUPTED = 4,  /* a byte flipped, checksum made wrong */
	IMPAIR_CNT_IGNORED = 5,    /* not IPv4 TCP/UDP, or filtered out: untouched */
	IMPAIR_CNT_DUP_SEEN = 6,   /* our duplicates passing through again */
	IMPAIR_CNT_MAX = 7,
};

#endif
