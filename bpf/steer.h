/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * Shared between bpf/steer.bpf.c and the Rust loader (src/xdp/maps.rs).
 * A Rust test parses this file and asserts the constants and layouts agree.
 */
#ifndef XDPSTACK_STEER_H
#define XDPSTACK_STEER_H

/* Maximum number of NIC queues (and so AF_XDP sockets) per interface. */
#define XS_MAX_QUEUES 64
/* Maximum number of (protocol, port) entries the stack can own. */
#define XS_MAX_PORTS 65536

/* Key of the ports map: what the stack owns. `port` is in network byte order. */
struct xs_port_key {
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__u16 port;
};

/* Single-entry array: how the program decides what is ours. */
struct xs_config {
	/* Dedicated-address mode when non-zero: the whole IPv4 address (network
	 * byte order) is the stack's, including ARP for it and ICMP to it. */
	__u32 dedicated_ip;
	__u32 flags;
	/* Shared mode: TCP segments to a destination port in this inclusive
	 * range (host byte order) are the stack's: its ephemeral range, which
	 * the kernel's own ip_local_port_range does not overlap. One range
	 * check instead of a ports-map entry per active open. lo == 0: none. */
	__u16 tcp_ephemeral_lo;
	__u16 tcp_ephemeral_hi;
};

/* Index into the per-CPU counters array. */
enum xs_counter {
	XS_CNT_STEERED = 0,   /* redirected into an AF_XDP socket */
	XS_CNT_PASSED = 1,    /* left to the kernel */
	XS_CNT_MALFORMED = 2, /* truncated headers: left to the kernel */
	XS_CNT_NO_XSK = 3,    /* ours, but no socket on this queue: left to the kernel */
	XS_CNT_MAX = 4,
};

#endif
