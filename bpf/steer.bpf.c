// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * XDP steering program: packets for (protocol, port) pairs the stack owns
 * (bound ports, and in shared mode its TCP ephemeral range), or in
 * dedicated-address mode everything addressed to the stack's address
 * (ARP included), go to the AF_XDP socket of the receiving queue. Anything
 * else, including anything this program cannot parse, passes to the kernel.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "steer.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_ARP_ 0x0806

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XS_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XS_MAX_PORTS);
	__type(key, struct xs_port_key);
	__type(value, __u8);
} ports_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xs_config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters_map SEC(".maps");

struct vlan_hdr_ {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* The first four bytes of a UDP or TCP header: the ports. */
struct l4_ports {
	__be16 source;
	__be16 dest;
};

/* ARP for IPv4 over Ethernet: fixed 28 bytes. */
struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters_map, &which);

	if (c)
		*c += 1;
}

static __always_inline int pass(__u32 why)
{
	count(why);
	return XDP_PASS;
}

static __always_inline int steer(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks_map, &queue))
		return pass(XS_CNT_NO_XSK);
	count(XS_CNT_STEERED);
	return bpf_redirect_map(&xsks_map, queue, XDP_PASS);
}

SEC("xdp")
int xdpstack_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor = eth + 1;
	__u16 proto;
	__u32 zero = 0;
	struct xs_config *cfg;
	struct iphdr *ip;
	struct l4_ports *l4;
	struct xs_port_key key = {};

	if (cursor > data_end)
		return pass(XS_CNT_MALFORMED);
	proto = eth->h_proto;

	/* One 802.1Q or 802.1ad tag. */
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		struct vlan_hdr_ *vlan = cursor;

		if ((void *)(vlan + 1) > data_end)
			return pass(XS_CNT_MALFORMED);
		proto = vlan->encapsulated_proto;
		cursor = vlan + 1;
	}

	cfg = bpf_map_lookup_elem(&config_map, &zero);

	if (proto == bpf_htons(ETH_P_ARP_)) {
		struct arp_ipv4 *arp = cursor;

		if (!cfg || !cfg->dedicated_ip)
			return pass(XS_CNT_PASSED);
		if ((void *)(arp + 1) > data_end)
			return pass(XS_CNT_MALFORMED);
		if (arp->tpa == cfg->dedicated_ip)
			return steer(ctx);
		return pass(XS_CNT_PASSED);
	}

	if (proto != bpf_htons(ETH_P_IP))
		return pass(XS_CNT_PASSED);

	ip = cursor;
	if ((void *)(ip + 1) > data_end)
		return pass(XS_CNT_MALFORMED);
	if (ip->ihl < 5)
		return pass(XS_CNT_MALFORMED);

	if (cfg && cfg->dedicated_ip) {
		/* Dedicated mode: the whole address is ours, whatever the protocol. */
		if (ip->daddr == cfg->dedicated_ip)
			return steer(ctx);
		return pass(XS_CNT_PASSED);
	}

	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return pass(XS_CNT_PASSED);
	/* Non-first fragments carry no ports: the kernel reassembles them. */
	if (ip->frag_off & bpf_htons(0x1FFF))
		return pass(XS_CNT_PASSED);

	l4 = (void *)ip + ip->ihl * 4;
	if ((void *)(l4 + 1) > data_end)
		return pass(XS_CNT_MALFORMED);

	if (ip->protocol == IPPROTO_TCP && cfg && cfg->tcp_ephemeral_lo) {
		__u16 port = bpf_ntohs(l4->dest);

		if (port >= cfg->tcp_ephemeral_lo && port <= cfg->tcp_ephemeral_hi)
			return steer(ctx);
	}

	key.proto = ip->protocol;
	key.port = l4->dest;
	if (bpf_map_lookup_elem(&ports_map, &key))
		return steer(ctx);
	return pass(XS_CNT_PASSED);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
