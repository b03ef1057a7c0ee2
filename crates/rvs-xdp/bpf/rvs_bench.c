// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Benchmark baselines for the packet plane: xdp_drop_all is the ceiling (the
 * cheapest possible verdict), xdp_redirect_peer the trivial forwarder
 * (bench_tx[0] holds the egress ifindex; without it the frame goes back out
 * with XDP_TX). Neither parses or rewrites anything.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_tx SEC(".maps");

SEC("xdp")
int xdp_drop_all(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int xdp_redirect_peer(struct xdp_md *ctx)
{
	/* The flags' low bits are the verdict when key 0 is missing. */
	return bpf_redirect_map(&bench_tx, 0, XDP_TX);
}
