// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Benchmark baselines for the packet plane: xdp_drop_all is the ceiling (the
 * cheapest possible verdict), xdp_redirect_peer the trivial forwarder
 * (bench_tx[0] holds the egress ifindex; without it the frame goes back out
 * with XDP_TX). Neither parses or rewrites anything.
 *
 * Below them, the traffic generator and counters of bench/xdp-forwarding.sh
 * (driven by src/bin/rvs-xdp-bench.rs): xdp_gen, xdp_count_drop, xdp_pass_all.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

/* ---- Traffic generator and counters for bench/xdp-forwarding.sh ---- */

/* The frame xdp_gen sends: restored in full before every send, because live
 * test-run pages come back from the director rewritten (or encapsulated). */
#define BENCH_GEN_LEN 64
struct bench_gen {
	__u32 vary; /* 1: a new flow per frame (source port and address vary) */
	__u32 via_cpu; /* 0: XDP_TX to the peer; N: redirect to CPU N-1 through bench_cpus */
	__u8 frame[BENCH_GEN_LEN]; /* Ethernet + IPv4 (no options) + TCP, padded */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_gen);
} bench_gen_frame SEC(".maps");

/* With bench_gen.via_cpu, xdp_gen hands its frames to another CPU, whose
 * cpumap program xdp_cpu_to_peer sends them out of bench_tx[0] (the
 * generator's own veth), so the director's receive work runs on that CPU and
 * not on the generator's. */
struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} bench_cpus SEC(".maps");

/* xdp_gen: frames made per CPU. xdp_count_drop: frames seen per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_count SEC(".maps");

static __always_inline __u16 bench_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 update of a checksum for one 16-bit word changing old -> new
 * (all values as they sit in the packet, so byte order cancels out). */
static __always_inline __u16 bench_csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check;
	sum += (__u16)~old;
	sum += new;
	return ~bench_csum_fold(sum);
}

/* Eth(14) + IPv4 without options(20) + TCP(20): offsets of what xdp_gen varies. */
#define BENCH_IP_CHECK 24
#define BENCH_IP_SADDR_LO 28 /* last two bytes of the source address */
#define BENCH_TCP_SPORT 34
#define BENCH_TCP_CHECK 50

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct bench_gen *g = bpf_map_lookup_elem(&bench_gen_frame, &zero);
	__u64 *count = bpf_map_lookup_elem(&bench_count, &zero);

	if (!g || !count || data + BENCH_GEN_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, g->frame, BENCH_GEN_LEN);
	if (g->vary) {
		__u8 *p = data;
		/* Ports 1024..65535, then the next of 128 source addresses (the top
		 * bit of the last address byte is the CPU): 8.2M flows per CPU. */
		__u64 n = *count;
		__u16 old_port = *(__u16 *)(p + BENCH_TCP_SPORT);
		__u16 old_lo = *(__u16 *)(p + BENCH_IP_SADDR_LO);
		__u16 new_port = bpf_htons((__u16)(1024 + n % 64512));
		__u16 new_lo, check;

		p[BENCH_IP_SADDR_LO + 1] =
			((n / 64512) & 0x7f) | ((bpf_get_smp_processor_id() & 1) << 7);
		new_lo = *(__u16 *)(p + BENCH_IP_SADDR_LO);
		*(__u16 *)(p + BENCH_TCP_SPORT) = new_port;
		check = *(__u16 *)(p + BENCH_IP_CHECK);
		*(__u16 *)(p + BENCH_IP_CHECK) = bench_csum_replace(check, old_lo, new_lo);
		check = *(__u16 *)(p + BENCH_TCP_CHECK);
		check = bench_csum_replace(check, old_lo, new_lo);
		check = bench_csum_replace(check, old_port, new_port);
		*(__u16 *)(p + BENCH_TCP_CHECK) = check;
	}
	*count += 1;
	if (g->via_cpu)
		return bpf_redirect_map(&bench_cpus, g->via_cpu - 1, 0);
	return XDP_TX;
}

SEC("xdp/cpumap")
int xdp_cpu_to_peer(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bench_tx, 0, 0);
}

SEC("xdp")
int xdp_count_drop(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&bench_count, &zero);

	if (count)
		*count += 1;
	return XDP_DROP;
}

SEC("xdp")
int xdp_pass_all(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* ---- Upcall transports, compared by bench/xdp-forwarding.sh ----
 *
 * Both programs hand every frame to userspace, as rvs_xdp hands a new flow
 * that no in-kernel scheduler can decide; rvs-xdp-bench sends it back out
 * (the director's re-send after its decision). xdp_upcall_ring copies the
 * frame into a ring buffer record and drops it (what rvs_xdp does today);
 * xdp_upcall_xsk redirects it to the AF_XDP socket bound to its queue.
 */
#define BENCH_UPCALL_SNAP 128
struct bench_upcall {
	__u32 len;
	__u32 pad;
	__u8 frame[BENCH_UPCALL_SNAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} bench_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} bench_xsks SEC(".maps");

SEC("xdp")
int xdp_upcall_ring(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	struct bench_upcall *rec;

	if (len > BENCH_UPCALL_SNAP)
		return XDP_DROP;
	rec = bpf_ringbuf_reserve(&bench_ring, sizeof(*rec), 0);
	if (!rec)
		return XDP_DROP;
	asm volatile("" : "+r"(len));
	if (len < 1 || len > BENCH_UPCALL_SNAP || bpf_xdp_load_bytes(ctx, 0, rec->frame, len) < 0) {
		bpf_ringbuf_discard(rec, 0);
		return XDP_DROP;
	}
	rec->len = len;
	rec->pad = 0;
	bpf_ringbuf_submit(rec, 0);
	return XDP_DROP;
}

SEC("xdp")
int xdp_upcall_xsk(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bench_xsks, ctx->rx_queue_index, XDP_DROP);
}
