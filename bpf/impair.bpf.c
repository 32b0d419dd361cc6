// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Impairment for the veth tests (the kernel here has no netem): a tc program
 * on an interface's ingress or egress hook that drops, duplicates and
 * corrupts IPv4 TCP/UDP packets with per-million probabilities read from
 * config_map, counting what it did. Anything else (ARP, IPv6, other IP
 * protocols, non-first fragments) passes untouched.
 *
 * Probabilities apply per packet as the hook sees it: with GSO on the
 * sending side one egress packet may be a burst of segments.
 *
 * Corruption flips one payload byte and moves the L4 checksum field by the
 * same one's-complement difference. Whether the checksum was already
 * complete (from AF_XDP, or UDP without offload) or is still a partial seed
 * that the kernel completes after this hook (TCP on egress), the receiver's
 * sum ends up off by twice (or once) a non-zero difference, never zero mod
 * 0xffff: every corrupted packet fails the receiver's checksum check, and
 * none is delivered corrupted.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "impair.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct impair_config);
} impair_config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IMPAIR_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} impair_counters SEC(".maps");

/* The first four bytes of a UDP or TCP header: the ports. */
struct l4_ports {
	__be16 source;
	__be16 dest;
};

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&impair_counters, &which);

	if (c)
		*c += 1;
}

static __always_inline int chance(__u32 ppm)
{
	return ppm && bpf_get_prandom_u32() % IMPAIR_PPM < ppm;
}

/* Flip one byte of the L4 payload (or none when there is no payload) and
 * move the checksum at `csum_off` by the same difference. */
static __always_inline int corrupt(struct __sk_buff *skb, __u32 l4_off, __u32 payload_off,
				   __u32 end, __u32 csum_off)
{
	__u32 diff = 0x0100; /* for an empty payload: the checksum alone moves */
	__u16 check;
	__u32 sum;

	if (payload_off < end) {
		__u32 off = payload_off + bpf_get_prandom_u32() % (end - payload_off);
		__u8 b, nb;

		if (bpf_skb_load_bytes(skb, off, &b, 1))
			return -1;
		nb = b ^ 0xff;
		/* The one's-complement difference nb - b of the 16-bit word the
		 * byte sits in (high byte at even offsets from the L4 header). */
		if (nb > b)
			diff = (__u32)(nb - b);
		else
			diff = 0xffff - (__u32)(b - nb);
		if (!((off - l4_off) & 1))
			diff = (diff << 8) % 0xffff;
		if (bpf_skb_store_bytes(skb, off, &nb, 1, BPF_F_RECOMPUTE_CSUM))
			return -1;
	}
	if (bpf_skb_load_bytes(skb, csum_off, &check, 2))
		return -1;
	sum = (__u32)bpf_ntohs(check) + diff;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	check = bpf_htons((__u16)sum);
	if (bpf_skb_store_bytes(skb, csum_off, &check, 2, BPF_F_RECOMPUTE_CSUM))
		return -1;
	return 0;
}

SEC("tc")
int xdpstack_impair(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct impair_config *cfg;
	struct iphdr ip;
	struct l4_ports ports;
	__u32 l3 = sizeof(struct ethhdr);
	__u32 l4, payload, end, csum_off, mark;
	__u32 want;

	if (skb->mark == IMPAIR_DUP_MARK) {
		/* One of our duplicates coming through again. */
		skb->mark = 0;
		count(IMPAIR_CNT_DUP_SEEN);
		return TC_ACT_UNSPEC;
	}
	cfg = bpf_map_lookup_elem(&impair_config_map, &zero);
	if (!cfg)
		return TC_ACT_UNSPEC;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		goto ignore;
	if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
		goto ignore;
	if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x1FFF)))
		goto ignore;
	if (ip.protocol == IPPROTO_TCP)
		want = IMPAIR_F_TCP;
	else if (ip.protocol == IPPROTO_UDP)
		want = IMPAIR_F_UDP;
	else
		goto ignore;
	if (!(cfg->flags & want))
		goto ignore;
	l4 = l3 + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, l4, &ports, sizeof(ports)))
		goto ignore;
	if (cfg->port && bpf_ntohs(ports.source) != cfg->port && bpf_ntohs(ports.dest) != cfg->port)
		goto ignore;

	count(IMPAIR_CNT_SEEN);
	if (chance(cfg->drop_ppm)) {
		count(IMPAIR_CNT_DROPPED);
		return TC_ACT_SHOT;
	}
	if (chance(cfg->duplicate_ppm)) {
		/* The copy is taken before any corruption, and marked so that
		 * this program lets it pass when it comes through again. */
		mark = skb->mark;
		skb->mark = IMPAIR_DUP_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex,
				       (cfg->flags & IMPAIR_F_INGRESS) ? BPF_F_INGRESS : 0))
			count(IMPAIR_CNT_DUP_FAILED);
		else
			count(IMPAIR_CNT_DUPLICATED);
		skb->mark = mark;
	}
	if (chance(cfg->corrupt_ppm)) {
		end = l3 + bpf_ntohs(ip.tot_len);
		if (end > skb->len)
			end = skb->len;
		if (ip.protocol == IPPROTO_TCP) {
			__u8 doff;

			/* Data offset: the high nibble of byte 12 of the TCP header. */
			if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
				return TC_ACT_UNSPEC;
			payload = l4 + (doff >> 4) * 4;
			csum_off = l4 + 16;
		} else {
			payload = l4 + 8;
			csum_off = l4 + 6;
		}
		if (payload > end)
			return TC_ACT_UNSPEC;
		if (!corrupt(skb, l4, payload, end, csum_off))
			count(IMPAIR_CNT_CORRUPTED);
	}
	return TC_ACT_UNSPEC;

ignore:
	count(IMPAIR_CNT_IGNORED);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
