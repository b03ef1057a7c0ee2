/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rvs_decap: the real-server side of LVS tunnelling (the director's TUN method,
 * docs/packet-plane.md "Encapsulation"), for kernels without the ipip/fou modules.
 *
 * A frame is decapsulated when all of these hold, otherwise it passes unchanged:
 * - Ethernet + outer IPv4 (no fragment, header length from ihl) or IPv6 (the
 *   tunnel protocol right after the fixed header, no extension headers);
 * - the outer protocol is 4 (IPIP, inner IPv4) or 41 (inner IPv6), or it is
 *   UDP (17) to a port in decap_ports with the inner IP packet right after the
 *   8-byte UDP header (GUE variant 1: the inner version nibble is 4 or 6);
 * - the outer destination is in decap_local (this host's tunnel addresses);
 * - the inner destination is in decap_vips.
 * The outer IP (and UDP) header is removed with bpf_xdp_adjust_head, an Ethernet
 * header with the same MACs and the inner packet's ethertype is written in front
 * and the frame goes to the stack (XDP_PASS), which delivers it to the VIP on lo.
 *
 * Addresses in the maps are 16 bytes, an IPv4 address in the first 4 and zeros
 * after (as rvs_abi.h); ports are in network byte order.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define DECAP_MAX_ENTRIES 1024

enum decap_stat {
	DECAP_STAT_DECAPSULATED = 0, /* frames stripped and passed to the stack */
	DECAP_STAT_PASSED,           /* frames passed unchanged */
	DECAP_STAT_MAX
};

struct decap_addr {
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_MAX_ENTRIES);
	__type(key, struct decap_addr);
	__type(value, __u8);
} decap_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_MAX_ENTRIES);
	__type(key, struct decap_addr);
	__type(value, __u8);
} decap_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16); /* network order */
	__type(value, __u8);
} decap_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *counter = bpf_map_lookup_elem(&decap_stats, &stat);

	if (counter)
		*counter += 1;
}

static __always_inline int pass(void)
{
	count(DECAP_STAT_PASSED);
	return XDP_PASS;
}

static __always_inline int addr_listed(void *map, const void *addr, __u32 len)
{
	struct decap_addr key = {};

	__builtin_memcpy(&key.addr, addr, 4);
	if (len == 16)
		__builtin_memcpy(&key.addr, addr, 16);
	return bpf_map_lookup_elem(map, &key) != NULL;
}

/*
 * The inner packet at `inner` (its version nibble decides the family): true
 * when its destination is a VIP; *ethertype gets the inner ethertype.
 */
static __always_inline int inner_is_vip(void *inner, void *data_end, __u16 *ethertype)
{
	if (inner + 1 > data_end)
		return 0;
	__u8 version = *(__u8 *)inner >> 4;

	if (version == 4) {
		struct iphdr *ip = inner;

		if ((void *)(ip + 1) > data_end)
			return 0;
		*ethertype = bpf_htons(ETH_P_IP);
		return addr_listed(&decap_vips, &ip->daddr, 4);
	}
	if (version == 6) {
		struct ipv6hdr *ip6 = inner;

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		*ethertype = bpf_htons(ETH_P_IPV6);
		return addr_listed(&decap_vips, &ip6->daddr, 16);
	}
	return 0;
}

SEC("xdp")
int rvs_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *outer = eth + 1;
	__u32 outer_len;
	__u8 proto;

	if (outer > data_end)
		return pass();

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = outer;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return pass();
		if (ip->frag_off & bpf_htons(0x3fff))
			return pass();
		outer_len = ip->ihl * 4;
		proto = ip->protocol;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 && proto != IPPROTO_UDP)
			return pass();
		if (!addr_listed(&decap_local, &ip->daddr, 4))
			return pass();
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = outer;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return pass();
		outer_len = sizeof(*ip6);
		proto = ip6->nexthdr;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 && proto != IPPROTO_UDP)
			return pass();
		if (!addr_listed(&decap_local, &ip6->daddr, 16))
			return pass();
	} else {
		return pass();
	}

	/* The verifier wants a constant bound on the variable IPv4 header length. */
	if (outer_len > 60)
		return pass();
	void *next = outer + outer_len;

	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = next;

		if ((void *)(udp + 1) > data_end)
			return pass();
		if (!bpf_map_lookup_elem(&decap_ports, &udp->dest))
			return pass();
		next = udp + 1;
		outer_len += sizeof(*udp);
	}

	__u16 ethertype = 0;

	if (!inner_is_vip(next, data_end, &ethertype))
		return pass();
	/* IPIP carries IPv4, protocol 41 IPv6; GUE says it by the version nibble. */
	if (proto == IPPROTO_IPIP && ethertype != bpf_htons(ETH_P_IP))
		return pass();
	if (proto == IPPROTO_IPV6 && ethertype != bpf_htons(ETH_P_IPV6))
		return pass();

	unsigned char dst[ETH_ALEN], src[ETH_ALEN];

	__builtin_memcpy(dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(src, eth->h_source, ETH_ALEN);
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return pass();

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP; /* cannot happen: the inner header was checked above */
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	eth->h_proto = ethertype;
	count(DECAP_STAT_DECAPSULATED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
