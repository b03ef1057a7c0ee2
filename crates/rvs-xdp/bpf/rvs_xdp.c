// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * rvs packet plane: the XDP program. docs/packet-plane.md is its contract (and
 * that of the Rust reference engine, src/engine.rs, which must give the same
 * bytes and verdicts); the maps' structs are in rvs_abi.h.
 *
 * Layout of the code: every header is read at a constant offset (IPv4 with
 * options is passed up, so L4 sits at 34 for IPv4 and 54 for IPv6), and the
 * per-family paths are separate copies of the same inline functions (the `v6`
 * argument is a compile-time constant), which keeps the verifier's job small.
 * Checksums are updated by hand with the contract's `update` function, never
 * with bpf_csum_diff / bpf_l?_csum_replace, whose 0 / 0xFFFF results differ.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rvs_abi.h"

char LICENSE[] SEC("license") = "GPL";

/* ---- maps (docs/packet-plane.md, "Maps") ---- */

#include "rvs_maps.h"

/* ---- constants of the wire ---- */

#define ETH_LEN 14
#define ETH_MAX_FRAME 1514
#define IP4_LEN 20
#define IP6_LEN 40
#define UDP_LEN 8
#define TCP_MIN 20
#define ICMP_MIN 8
#define L4_OFF4 (ETH_LEN + IP4_LEN)
#define L4_OFF6 (ETH_LEN + IP6_LEN)

#define PROTO_ICMP 1
#define PROTO_IPIP 4
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_IPV6 41
#define PROTO_FRAG6 44
#define PROTO_ICMP6 58

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define ICMP4_ECHO 8
#define ICMP4_ECHO_REPLY 0
#define ICMP4_UNREACH 3
#define ICMP4_TIME_EXCEEDED 11
#define ICMP6_ECHO 128
#define ICMP6_ECHO_REPLY 129

#define GOLDEN_RATIO_32 0x61C88647u
#define MH_HASH1_KEY 2654435761ULL

/* A packet as parsed; `key` is the flow key of the packet as received. */
struct pkt {
	struct rvs_flow_key key;
	__u32 frame_len;
	__u32 ip_len;
	__u8 proto;
	__u8 tcp_flags;
	__u8 tos; /* IPv4 tos or IPv6 traffic class */
	__u8 df;  /* IPv4 DF bit set */
} __attribute__((aligned(8)));

/* ---- small helpers ---- */

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&rvs_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline __u32 be16_at(const __u8 *b)
{
	return ((__u32)b[0] << 8) | b[1];
}

static __always_inline __u32 be32_at(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

static __always_inline void put_be16(__u8 *b, __u32 v)
{
	b[0] = v >> 8;
	b[1] = v;
}

static __always_inline void put_be32(__u8 *b, __u32 v)
{
	b[0] = v >> 24;
	b[1] = v >> 16;
	b[2] = v >> 8;
	b[3] = v;
}

static __always_inline void copy_bytes(__u8 *dst, const __u8 *src, int len)
{
#pragma unroll
	for (int i = 0; i < len; i++)
		dst[i] = src[i];
}

static __always_inline int bytes_equal(const __u8 *a, const __u8 *b, int len)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static __always_inline __u32 fold16(__u32 sum)
{
	/* Two folds reach the `while sum >> 16` fixpoint for any sum below 2^32. */
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return sum;
}

/*
 * The contract's `update(check, old, new)` (RFC 1624) over `len` bytes
 * (even) of big-endian 16-bit words; `check` and the result are host-order
 * values of the big-endian checksum field.
 */
static __always_inline __u32 csum_update(__u32 check, const __u8 *old, const __u8 *new, int len)
{
	__u32 sum = (~check) & 0xFFFF;

#pragma unroll
	for (int i = 0; i < len; i += 2) {
		sum += (~be16_at(old + i)) & 0xFFFF;
		sum += be16_at(new + i);
	}
	return (~fold16(sum)) & 0xFFFF;
}

/* `update` over one 16-bit word, given as values (old and new host-order words). */
static __always_inline __u32 csum_update_word(__u32 check, __u32 old, __u32 new)
{
	__u32 sum = (~check) & 0xFFFF;

	sum += (~old) & 0xFFFF;
	sum += new & 0xFFFF;
	return (~fold16(sum)) & 0xFFFF;
}

/* The IPv4 header checksum over 20 bytes at `h` (its checksum field counted as 0). */
static __always_inline __u32 ip4_checksum(const __u8 *h)
{
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < IP4_LEN; i += 2) {
		if (i != 10)
			sum += be16_at(h + i);
	}
	return (~fold16(sum)) & 0xFFFF;
}

/* ---- hashing (rvs_core::sched::hash) ---- */

/* include/linux/hash.h hash_32, with rvs_core's edge cases for bits 0 and >= 32. */
static __always_inline __u32 hash_32(__u32 val, __u32 bits)
{
	__u32 h = val * GOLDEN_RATIO_32;

	if (bits == 0)
		return 0;
	if (bits >= 32)
		return h;
	return h >> (32 - bits);
}

/* addr_fold: IPv4 as a big-endian u32, IPv6 as the XOR of its four words. */
static __always_inline __u32 fold_addr(const __u8 *a, int v6)
{
	if (!v6)
		return be32_at(a);
	return be32_at(a) ^ be32_at(a + 4) ^ be32_at(a + 8) ^ be32_at(a + 12);
}

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                \
	do {                                                                    \
		v0 += v1;                                                       \
		v1 = ROTL64(v1, 13) ^ v0;                                       \
		v0 = ROTL64(v0, 32);                                            \
		v2 += v3;                                                       \
		v3 = ROTL64(v3, 16) ^ v2;                                       \
		v0 += v3;                                                       \
		v3 = ROTL64(v3, 21) ^ v0;                                       \
		v2 += v1;                                                       \
		v1 = ROTL64(v1, 17) ^ v2;                                       \
		v2 = ROTL64(v2, 32);                                            \
	} while (0)

/*
 * hsiphash(&v, 4, {k, k}) of a 64-bit little-endian kernel: SipHash-1-3 over
 * the u32's four little-endian bytes, truncated to 32 bits
 * (rvs_core::sched::hash::hsiphash_u32).
 */
static __always_inline __u32 hsiphash_u32(__u32 v, __u64 k0, __u64 k1)
{
	__u64 v0 = 0x736f6d6570736575ULL ^ k0;
	__u64 v1 = 0x646f72616e646f6dULL ^ k1;
	__u64 v2 = 0x6c7967656e657261ULL ^ k0;
	__u64 v3 = 0x7465646279746573ULL ^ k1;
	__u64 b = (4ULL << 56) | (__u64)v;

	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

static __always_inline void fnv_mix(__u32 *h, __u32 w)
{
	__u32 x = (*h ^ w) * 0x01000193u;

	*h = x ^ (x >> 16);
}

/* The tunnel flow hash of a flow key (docs/packet-plane.md, "Encapsulation"). */
static __always_inline __u32 flow_hash(const struct rvs_flow_key *k)
{
	__u32 h = 0x811C9DC5u;

#pragma unroll
	for (int i = 0; i < 16; i += 4)
		fnv_mix(&h, be32_at(k->saddr + i));
#pragma unroll
	for (int i = 0; i < 16; i += 4)
		fnv_mix(&h, be32_at(k->daddr + i));
	fnv_mix(&h, ((__u32)bpf_ntohs(k->sport) << 16) | bpf_ntohs(k->dport));
	fnv_mix(&h, k->proto);
	return h;
}

/* ---- ring buffer records ---- */

/* A notification (RVS_EV_CONTROL / RVS_EV_NEW) with the frame's head; 1 if queued. */
static __always_inline int emit_notify(struct xdp_md *ctx, __u32 kind, __u32 real, __u32 frame_len)
{
	struct rvs_notify *rec;
	__u32 cap = frame_len;

	if (cap > RVS_NOTIFY_SNAP)
		cap = RVS_NOTIFY_SNAP;
	rec = bpf_ringbuf_reserve(&rvs_events, sizeof(*rec), 0);
	if (!rec)
		return 0;
	/* cap is 14..=128 here (the frame holds at least an Ethernet header). */
	asm volatile("" : "+r"(cap));
	if (cap < 1 || cap > RVS_NOTIFY_SNAP ||
	    bpf_xdp_load_bytes(ctx, 0, rec->frame, cap) < 0) {
		bpf_ringbuf_discard(rec, 0);
		return 0;
	}
	rec->hdr.kind = kind;
	rec->hdr.ifindex = ctx->ingress_ifindex;
	rec->hdr.frame_len = frame_len;
	rec->hdr.cap_len = cap;
	rec->hdr.real = real;
	rec->hdr.pad = 0;
	bpf_ringbuf_submit(rec, 0);
	return 1;
}

/*
 * An upcall: the per-CPU new-flow guard, then a record with the whole frame.
 * The packet itself is dropped; userspace re-sends it after deciding.
 */
static __always_inline int upcall(struct xdp_md *ctx, const struct pkt *p, __u32 *stat)
{
	__u32 zero = 0;
	struct rvs_config *cfg = bpf_map_lookup_elem(&rvs_config, &zero);
	struct rvs_upcall *rec;
	__u32 cap = p->frame_len;

	if (cfg && cfg->upcall_rate) {
		struct rvs_guard *g = bpf_map_lookup_elem(&rvs_guard, &zero);
		__u64 now = bpf_ktime_get_ns();
		__u64 rate = cfg->upcall_rate;
		__u64 full = (__u64)cfg->upcall_burst * 1000;
		__u64 elapsed, q, add, tokens;

		if (!g) {
			*stat = RVS_STAT_DROP_GUARD;
			return XDP_DROP;
		}
		/*
		 * tokens = min(tokens + floor(elapsed * rate / 1e6), full), exactly
		 * (as with unbounded integers) without a 64-bit overflow.
		 */
		elapsed = now > g->last_ns ? now - g->last_ns : 0;
		q = elapsed / 1000000;
		if (q > full / rate)
			add = full;
		else
			add = q * rate + (elapsed % 1000000) * rate / 1000000;
		tokens = g->tokens_milli;
		if (tokens >= full || add >= full - tokens)
			tokens = full;
		else
			tokens += add;
		g->last_ns = now;
		if (tokens < 1000) {
			g->tokens_milli = tokens;
			*stat = RVS_STAT_DROP_GUARD;
			return XDP_DROP;
		}
		g->tokens_milli = tokens - 1000;
	}

	rec = bpf_ringbuf_reserve(&rvs_events, sizeof(*rec), 0);
	if (!rec) {
		*stat = RVS_STAT_DROP_RINGBUF;
		return XDP_DROP;
	}
	asm volatile("" : "+r"(cap));
	if (cap < 1 || cap > RVS_UPCALL_SNAP) {
		bpf_ringbuf_discard(rec, 0);
		*stat = RVS_STAT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	if (bpf_xdp_load_bytes(ctx, 0, rec->frame, cap) < 0) {
		bpf_ringbuf_discard(rec, 0);
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	rec->hdr.kind = RVS_EV_UPCALL;
	rec->hdr.ifindex = ctx->ingress_ifindex;
	rec->hdr.frame_len = p->frame_len;
	rec->hdr.cap_len = cap;
	rec->hdr.real = RVS_NO_REAL;
	rec->hdr.pad = 0;
	bpf_ringbuf_submit(rec, 0);
	*stat = RVS_STAT_UPCALL;
	return XDP_DROP;
}

/* ---- output ---- */

/* TX when the egress is the ingress interface, else a redirect through rvs_tx. */
static __always_inline int egress(struct xdp_md *ctx, __u32 ifindex, __u32 *stat)
{
	long r;

	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	r = bpf_redirect_map(&rvs_tx, ifindex, 0);
	if (r != XDP_REDIRECT) {
		*stat = RVS_STAT_REDIRECT_FAIL;
		return XDP_DROP;
	}
	return XDP_REDIRECT;
}

/* Ethernet destination and source; 0 if the frame is shorter than a header. */
static __always_inline int set_eth(struct xdp_md *ctx, const __u8 *dmac, const __u8 *smac)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;

	if (d + ETH_LEN > end)
		return 0;
	copy_bytes(d, dmac, 6);
	copy_bytes(d + 6, smac, 6);
	return 1;
}

/* ---- NAT rewrites ---- */

/*
 * Rewrites one address (4 or 16 bytes at ip_off) and updates the IPv4 header
 * checksum and the L4 checksum; skipped when equal to its replacement.
 */
static __always_inline void rewrite_addr(__u8 *d, __u32 addr_off, const __u8 *new, int v6,
					 __u8 *l4check, int *l4_on, int *touched)
{
	int alen = v6 ? 16 : 4;

	if (bytes_equal(d + addr_off, new, alen))
		return;
	if (!v6) {
		__u8 *ipc = d + ETH_LEN + 10;

		put_be16(ipc, csum_update(be16_at(ipc), d + addr_off, new, 4));
	}
	if (*l4_on) {
		put_be16(l4check, csum_update(be16_at(l4check), d + addr_off, new, alen));
		*touched = 1;
	}
	copy_bytes(d + addr_off, new, alen);
}

static __always_inline void rewrite_port(__u8 *port, const __u8 *new, __u8 *l4check,
					 int *l4_on, int *touched)
{
	if (bytes_equal(port, new, 2))
		return;
	if (*l4_on) {
		put_be16(l4check, csum_update(be16_at(l4check), port, new, 2));
		*touched = 1;
	}
	copy_bytes(port, new, 2);
}

/*
 * F_SNAT / F_DNAT of a TCP or UDP packet, in the contract's order: source
 * address, destination address, source port, destination port. Returns 0 if
 * the headers are not there (cannot happen after parsing).
 */
static __always_inline int rewrite_nat(struct xdp_md *ctx, const struct pkt *p,
				       const struct rvs_flow *e, int v6)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 l4 = v6 ? L4_OFF6 : L4_OFF4;
	const __u32 saddr_off = v6 ? ETH_LEN + 8 : ETH_LEN + 12;
	const __u32 daddr_off = v6 ? ETH_LEN + 24 : ETH_LEN + 16;
	__u8 *l4check;
	int l4_on = 1, touched = 0;
	__u16 new_sport = e->new_sport, new_dport = e->new_dport;

	if (d + l4 + UDP_LEN > end)
		return 0;
	if (p->proto == PROTO_TCP) {
		if (d + l4 + TCP_MIN > end)
			return 0;
		l4check = d + l4 + 16;
	} else {
		l4check = d + l4 + 6;
		if (!v6 && be16_at(l4check) == 0)
			l4_on = 0;
	}
	if (e->flags & RVS_FLOW_F_SNAT)
		rewrite_addr(d, saddr_off, e->new_saddr, v6, l4check, &l4_on, &touched);
	if (e->flags & RVS_FLOW_F_DNAT)
		rewrite_addr(d, daddr_off, e->new_daddr, v6, l4check, &l4_on, &touched);
	if (e->flags & RVS_FLOW_F_SNAT)
		rewrite_port(d + l4, (const __u8 *)&new_sport, l4check, &l4_on, &touched);
	if (e->flags & RVS_FLOW_F_DNAT)
		rewrite_port(d + l4 + 2, (const __u8 *)&new_dport, l4check, &l4_on, &touched);
	if (p->proto == PROTO_UDP && touched && be16_at(l4check) == 0)
		put_be16(l4check, 0xFFFF);
	return 1;
}

/* ---- encapsulation ---- */

/*
 * Puts an outer IPv4/IPv6 header (and a GUE UDP header) in front of the IP
 * packet, drops the Ethernet padding and writes the Ethernet header towards the
 * real. `hkey` is the flow key whose hash picks the outer source / flow label.
 * Returns an XDP action; *stat set on failure.
 */
static __always_inline int encap(struct xdp_md *ctx, const struct pkt *p, const struct rvs_real *real,
				 const struct rvs_flow_key *hkey, int v6, __u32 *stat)
{
	__u32 zero = 0;
	struct rvs_config *cfg = bpf_map_lookup_elem(&rvs_config, &zero);
	int outer6, gue;
	__u32 outer_len, h, pad, inner_len = p->ip_len;
	__u8 inner_proto = v6 ? PROTO_IPV6 : PROTO_IPIP;
	__u8 dmac[6], smac[6], daddr[16];
	__u16 gue_port = real->gue_port;
	__u8 *d, *end;

	if (!cfg || (real->family != RVS_FAMILY_V4 && real->family != RVS_FAMILY_V6) ||
	    (real->tun_type != RVS_TUN_IPIP && real->tun_type != RVS_TUN_GUE)) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	outer6 = real->family == RVS_FAMILY_V6;
	gue = real->tun_type == RVS_TUN_GUE;
	outer_len = (outer6 ? IP6_LEN : IP4_LEN) + (gue ? UDP_LEN : 0);
	if (ETH_LEN + outer_len + inner_len > ETH_MAX_FRAME) {
		*stat = RVS_STAT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	h = flow_hash(hkey);
	/* The real's fields, read before the packet moves. */
	copy_bytes(dmac, real->dmac, 6);
	copy_bytes(smac, real->smac, 6);
	copy_bytes(daddr, real->addr, 16);

	pad = p->frame_len - ETH_LEN - inner_len;
	if (pad > 0 && bpf_xdp_adjust_tail(ctx, -(int)pad) < 0) {
		*stat = RVS_STAT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	if (bpf_xdp_adjust_head(ctx, -(int)outer_len) < 0) {
		*stat = RVS_STAT_DROP_TOO_BIG;
		return XDP_DROP;
	}
	d = (__u8 *)(long)ctx->data;
	end = (__u8 *)(long)ctx->data_end;

	if (!outer6) {
		__u8 *ip = d + ETH_LEN;
		__u32 mask, src, bits = cfg->tun_spread_bits;

		if (d + ETH_LEN + IP4_LEN + UDP_LEN > end) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		copy_bytes(d, dmac, 6);
		copy_bytes(d + 6, smac, 6);
		put_be16(d + 12, 0x0800);
		ip[0] = 0x45;
		ip[1] = p->tos;
		put_be16(ip + 2, inner_len + IP4_LEN + (gue ? UDP_LEN : 0));
		put_be16(ip + 4, 0);
		put_be16(ip + 6, (v6 || p->df) ? 0x4000 : 0);
		ip[8] = 64;
		ip[9] = gue ? PROTO_UDP : inner_proto;
		put_be16(ip + 10, 0);
		mask = bits >= 32 ? 0xFFFFFFFFu : (1u << bits) - 1;
		src = (be32_at(cfg->tun_saddr4) & ~mask) | (h & mask);
		put_be32(ip + 12, src);
		copy_bytes(ip + 16, daddr, 4);
		put_be16(ip + 10, ip4_checksum(ip));
		if (gue) {
			__u8 *u = ip + IP4_LEN;
			__u32 span = cfg->gue_sport_span ? cfg->gue_sport_span : 1;

			put_be16(u, (cfg->gue_sport_base + h % span) & 0xFFFF);
			copy_bytes(u + 2, (const __u8 *)&gue_port, 2);
			put_be16(u + 4, inner_len + UDP_LEN);
			put_be16(u + 6, 0);
		}
	} else {
		__u8 *ip = d + ETH_LEN;
		__u32 fl = h & 0xFFFFF;

		if (d + ETH_LEN + IP6_LEN + UDP_LEN > end) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		copy_bytes(d, dmac, 6);
		copy_bytes(d + 6, smac, 6);
		put_be16(d + 12, 0x86DD);
		ip[0] = 0x60 | (p->tos >> 4);
		ip[1] = (p->tos << 4) | (fl >> 16);
		ip[2] = fl >> 8;
		ip[3] = fl;
		put_be16(ip + 4, inner_len + (gue ? UDP_LEN : 0));
		ip[6] = gue ? PROTO_UDP : inner_proto;
		ip[7] = 64;
		copy_bytes(ip + 8, cfg->tun_saddr6, 16);
		copy_bytes(ip + 24, daddr, 16);
		if (gue) {
			__u8 *u = ip + IP6_LEN;
			__u32 span = cfg->gue_sport_span ? cfg->gue_sport_span : 1;

			put_be16(u, (cfg->gue_sport_base + h % span) & 0xFFFF);
			copy_bytes(u + 2, (const __u8 *)&gue_port, 2);
			put_be16(u + 4, inner_len + UDP_LEN);
			put_be16(u + 6, 0);
		}
	}
	return XDP_PASS; /* "no failure": the caller picks the verdict */
}

/* ---- applying a flow entry ---- */

/*
 * Forwards the packet as entry `e` says. `hkey` is the flow key (the tunnel
 * hash input). (Forwarded ICMP errors do not come here: icmp_error has its
 * own rewrites, rewrite_icmp_error.)
 */
static __always_inline int apply_entry(struct xdp_md *ctx, const struct pkt *p, const struct rvs_flow *e,
				       const struct rvs_flow_key *hkey, int v6, __u32 *stat)
{
	struct rvs_real *real;
	__u32 ri = e->real;
	int r;

	if (e->flags & RVS_FLOW_F_OUT) {
		if (!rewrite_nat(ctx, p, e, v6) || !set_eth(ctx, e->dmac, e->smac)) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		*stat = RVS_STAT_FWD_REPLY;
		return egress(ctx, e->ifindex, stat);
	}
	real = bpf_map_lookup_elem(&rvs_reals, &ri);
	if (!real || real->family == 0) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	switch (e->method) {
	case RVS_METHOD_DR:
		*stat = RVS_STAT_FWD_DR;
		break;
	case RVS_METHOD_NAT:
	case RVS_METHOD_FNAT:
		if (!rewrite_nat(ctx, p, e, v6)) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		*stat = e->method == RVS_METHOD_NAT ? RVS_STAT_FWD_NAT : RVS_STAT_FWD_FNAT;
		break;
	case RVS_METHOD_TUN:
		r = encap(ctx, p, real, hkey, v6, stat);
		if (r != XDP_PASS)
			return r;
		*stat = RVS_STAT_FWD_TUN;
		return egress(ctx, real->ifindex, stat);
	default:
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	if (!set_eth(ctx, real->dmac, real->smac)) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	return egress(ctx, real->ifindex, stat);
}

/* ---- virtual services ---- */

/* The sh/dh/mh slot of a packet; 0 if none can be chosen. */
static __always_inline int choose_slot(const struct rvs_vip *v, const struct pkt *p, int v6, __u32 *slot)
{
	__u32 port = (v->sched_flags & RVS_SCHED_F_PORT) ? bpf_ntohs(p->key.sport) : 0;

	switch (v->sched) {
	case RVS_SCHED_SH:
		*slot = hash_32(fold_addr(p->key.saddr, v6) + port, v->table_bits);
		return 1;
	case RVS_SCHED_DH:
		*slot = hash_32(fold_addr(p->key.daddr, v6), v->table_bits);
		return 1;
	case RVS_SCHED_MH:
		if (v->table_size == 0)
			return 0;
		*slot = hsiphash_u32(fold_addr(p->key.saddr, v6) + port, MH_HASH1_KEY, MH_HASH1_KEY) %
			v->table_size;
		return 1;
	}
	return 0;
}

/* The in entry of a new flow chosen by sh/dh/mh. */
static __always_inline void fill_in_entry(struct rvs_flow *in, const struct pkt *p, __u32 ri,
					  const struct rvs_real *real, __u64 now)
{
	__builtin_memset(in, 0, sizeof(*in));
	in->real = ri;
	in->method = real->method;
	in->flags = p->proto == PROTO_TCP ? RVS_FLOW_F_NOTIFY_ACK : 0;
	in->last_seen_ns = now;
	if (real->method == RVS_METHOD_NAT) {
		in->flags |= RVS_FLOW_F_DNAT;
		copy_bytes(in->new_daddr, real->addr, 16);
		/* IPVS: dest->port ? dest->port : vport (fwmark reals often have port 0). */
		in->new_dport = real->port ? real->port : p->key.dport;
	}
}

/*
 * A new flow chosen by sh/dh/mh: the in entry, for NAT also the reply entry,
 * an RVS_EV_NEW record, then the entry is applied. One buffer holds both
 * entries in turn (the in entry is written again after the reply entry): the
 * program's stack is close to the verifier's 512 bytes.
 */
static __always_inline int schedule_new(struct xdp_md *ctx, const struct pkt *p, __u32 ri,
					const struct rvs_real *real, int v6, __u32 *stat)
{
	struct rvs_flow ent;
	__u64 now = bpf_ktime_get_ns();
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;

	if (d + ETH_LEN > end) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	fill_in_entry(&ent, p, ri, real, now);
	bpf_map_update_elem(&rvs_flows, &p->key, &ent, BPF_ANY);
	if (real->method == RVS_METHOD_NAT) {
		struct rvs_flow_key rkey;

		__builtin_memset(&rkey, 0, sizeof(rkey));
		copy_bytes(rkey.saddr, real->addr, 16);
		copy_bytes(rkey.daddr, p->key.saddr, 16);
		rkey.sport = ent.new_dport;
		rkey.dport = p->key.sport;
		rkey.proto = p->proto;
		rkey.family = p->key.family;

		__builtin_memset(&ent, 0, sizeof(ent));
		copy_bytes(ent.new_saddr, p->key.daddr, 16);
		ent.new_sport = p->key.dport;
		ent.real = RVS_NO_REAL;
		ent.ifindex = ctx->ingress_ifindex;
		copy_bytes(ent.dmac, d + 6, 6);
		copy_bytes(ent.smac, d, 6);
		ent.method = RVS_METHOD_NAT;
		ent.flags = RVS_FLOW_F_OUT | RVS_FLOW_F_SNAT;
		ent.last_seen_ns = now;
		bpf_map_update_elem(&rvs_flows, &rkey, &ent, BPF_ANY);
		fill_in_entry(&ent, p, ri, real, now);
	}
	stat_inc(RVS_STAT_XDP_SCHED);
	if (!emit_notify(ctx, RVS_EV_NEW, ri, p->frame_len))
		stat_inc(RVS_STAT_DROP_RINGBUF);
	return apply_entry(ctx, p, &ent, &p->key, v6, stat);
}

/*
 * The classifier's mark of a TCP/UDP packet (0: none): rvs_marks at the
 * destination port, then at port 0 (rules of every port). Rules never overlap,
 * so at most one of the two can hit; the first that finds an entry decides.
 */
static __always_inline __u32 classify(const struct pkt *p, int v6)
{
	struct rvs_mark_key mk;
	__u32 *m;

	__builtin_memset(&mk, 0, sizeof(mk));
	mk.prefixlen = RVS_MARK_KEY_BITS + (v6 ? 128 : 32);
	mk.proto = p->proto;
	mk.family = p->key.family;
	mk.port = p->key.dport;
	copy_bytes(mk.addr, p->key.daddr, 16);
	m = bpf_map_lookup_elem(&rvs_marks, &mk);
	if (!m) {
		mk.port = 0;
		m = bpf_map_lookup_elem(&rvs_marks, &mk);
	}
	return m ? *m : 0;
}

static __always_inline int virtual_service(struct xdp_md *ctx, const struct pkt *p, int v6, __u32 *stat)
{
	struct rvs_vip_key vk;
	struct rvs_vip *v = NULL;
	__u8 fl = p->tcp_flags;
	__u32 mark = classify(p, v6);
	int first;

	__builtin_memset(&vk, 0, sizeof(vk));
	if (mark) {
		/* ip_vs_service_find: a firewall-mark service first. */
		put_be32(vk.addr, mark);
		vk.proto = RVS_VIP_PROTO_FWMARK;
		vk.family = p->key.family;
		v = bpf_map_lookup_elem(&rvs_vips, &vk);
	}
	if (!v) {
		copy_bytes(vk.addr, p->key.daddr, 16);
		vk.port = p->key.dport;
		vk.proto = p->proto;
		vk.family = p->key.family;
		v = bpf_map_lookup_elem(&rvs_vips, &vk);
	}
	if (!v) {
		*stat = RVS_STAT_PASS_NOT_VIP;
		return XDP_PASS;
	}
	first = p->proto == PROTO_UDP ||
		((fl & TCP_SYN) && !(fl & (TCP_ACK | TCP_RST)));
	if (first && (v->sched == RVS_SCHED_SH || v->sched == RVS_SCHED_DH || v->sched == RVS_SCHED_MH)) {
		__u32 slot, idx, *ri;
		struct rvs_real *real;

		if (choose_slot(v, p, v6, &slot)) {
			idx = v->table_off + slot;
			ri = bpf_map_lookup_elem(&rvs_hash, &idx);
			if (ri && *ri != RVS_NO_REAL) {
				__u32 rix = *ri;

				real = bpf_map_lookup_elem(&rvs_reals, &rix);
				if (real && real->family != 0 && (real->flags & RVS_REAL_F_USABLE) &&
				    real->method != RVS_METHOD_FNAT)
					return schedule_new(ctx, p, rix, real, v6, stat);
			}
		}
	}
	return upcall(ctx, p, stat);
}

/* ---- flows ---- */

static __always_inline int known_flow(struct xdp_md *ctx, const struct pkt *p, struct rvs_flow *e,
				      int v6, __u32 *stat)
{
	__u8 fl = p->tcp_flags;
	int tcp = p->proto == PROTO_TCP;
	int notified = 0;

	if (tcp && (fl & TCP_SYN) && !(fl & TCP_ACK) && !(e->flags & RVS_FLOW_F_OUT))
		return upcall(ctx, p, stat);
	if (tcp && ((fl & (TCP_FIN | TCP_RST)) ||
		    ((e->flags & RVS_FLOW_F_NOTIFY_ACK) && (fl & TCP_ACK)) ||
		    ((e->flags & RVS_FLOW_F_OUT) && (fl & TCP_SYN)))) {
		if (emit_notify(ctx, RVS_EV_CONTROL, e->real, p->frame_len)) {
			notified = 1;
			stat_inc(RVS_STAT_NOTIFY);
			if ((e->flags & RVS_FLOW_F_NOTIFY_ACK) && (fl & TCP_ACK))
				e->flags &= ~RVS_FLOW_F_NOTIFY_ACK;
		} else {
			stat_inc(RVS_STAT_DROP_RINGBUF);
		}
	}
	/* Idle tracking needs jiffy resolution only: the coarse clock is cheaper,
	 * and the entry's cache line is written only when the value moves. */
	__u64 seen = bpf_ktime_get_coarse_ns();

	if (e->last_seen_ns != seen)
		e->last_seen_ns = seen;
	if (!notified) {
		__sync_fetch_and_add(&e->packets, 1);
		__sync_fetch_and_add(&e->bytes, (__u64)p->ip_len);
	}
	return apply_entry(ctx, p, e, &p->key, v6, stat);
}

/* ---- ICMP ---- */

static __always_inline int icmp_echo(struct xdp_md *ctx, const struct pkt *p, int v6, __u32 *stat)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 l4 = v6 ? L4_OFF6 : L4_OFF4;
	struct rvs_vip_key vk;
	__u8 tmp[16], word_old[2], word_new[2];
	__u8 *icmp;

	__builtin_memset(&vk, 0, sizeof(vk));
	copy_bytes(vk.addr, p->key.daddr, 16);
	vk.family = p->key.family;
	if (!bpf_map_lookup_elem(&rvs_vip_addrs, &vk)) {
		*stat = RVS_STAT_PASS_ICMP;
		return XDP_PASS;
	}
	if (d + l4 + ICMP_MIN > end) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	/* Ethernet addresses swap. */
	copy_bytes(tmp, d, 6);
	copy_bytes(d, d + 6, 6);
	copy_bytes(d + 6, tmp, 6);
	icmp = d + l4;
	if (!v6) {
		__u8 *ip = d + ETH_LEN;

		copy_bytes(tmp, ip + 12, 4);
		copy_bytes(ip + 12, ip + 16, 4);
		copy_bytes(ip + 16, tmp, 4);
		ip[8] = 64;
		put_be16(ip + 10, ip4_checksum(ip));
	} else {
		__u8 *ip = d + ETH_LEN;

		copy_bytes(tmp, ip + 8, 16);
		copy_bytes(ip + 8, ip + 24, 16);
		copy_bytes(ip + 24, tmp, 16);
		ip[7] = 64;
	}
	word_old[0] = icmp[0];
	word_old[1] = icmp[1];
	word_new[0] = v6 ? ICMP6_ECHO_REPLY : ICMP4_ECHO_REPLY;
	word_new[1] = icmp[1];
	put_be16(icmp + 2, csum_update(be16_at(icmp + 2), word_old, word_new, 2));
	icmp[0] = word_new[0];
	*stat = RVS_STAT_ICMP_ECHO;
	return XDP_TX;
}

/*
 * Replaces `len` bytes at `at` with `new` unless they are equal, updating the
 * checksum fields `c1` and `c2` (NULL: none) over the old and new bytes.
 */
static __always_inline void replace_field(__u8 *at, const __u8 *new, int len, __u8 *c1, __u8 *c2)
{
	if (bytes_equal(at, new, len))
		return;
	if (c1)
		put_be16(c1, csum_update(be16_at(c1), at, new, len));
	if (c2)
		put_be16(c2, csum_update(be16_at(c2), at, new, len));
	copy_bytes(at, new, len);
}

/*
 * The rewrites of an ICMP error about a NAT or FullNAT flow (entry `e`, found
 * by the quote turned round; ip_vs_nat_icmp / ip_vs_nat_icmp_v6 generalised):
 * the outer header gets the address changes `e` makes to packets of its flow,
 * the quote (a packet of the other direction) the mirrored changes. Checksums
 * in the contract's order: outer addresses (IPv4 header / ICMPv6 pseudo
 * header), quoted addresses (ICMP and quoted IPv4 header), the quoted IPv4
 * header checksum word (ICMP), quoted ports (ICMP). The quoted L4 checksum is
 * left alone, as the kernel does. Returns 0 if the headers are not there
 * (cannot happen after icmp_error's checks).
 */
static __always_inline int rewrite_icmp_error(struct xdp_md *ctx, const struct rvs_flow *e, int v6)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 l4 = v6 ? L4_OFF6 : L4_OFF4;
	const __u32 q = l4 + ICMP_MIN;
	const __u32 qhdr = v6 ? IP6_LEN : IP4_LEN;
	const int alen = v6 ? 16 : 4;
	const __u32 saddr_off = v6 ? 8 : 12;
	const __u32 daddr_off = v6 ? 24 : 16;
	const int snat = (e->flags & RVS_FLOW_F_SNAT) != 0;
	const int dnat = (e->flags & RVS_FLOW_F_DNAT) != 0;
	__u8 *ip, *qip, *icheck, *ports, *outer_check, *qcheck;
	__u32 qcheck_old, qcheck_new;
	__u8 qproto;

	if (d + q + qhdr + 4 > end)
		return 0;
	ip = d + ETH_LEN;
	qip = d + q;
	ports = qip + qhdr;
	icheck = d + l4 + 2;
	/* IPv4: the header checksum; ICMPv6: its checksum covers the addresses. */
	outer_check = v6 ? icheck : ip + 10;
	qcheck = v6 ? NULL : qip + 10;
	qproto = v6 ? qip[6] : qip[9];

	if (snat)
		replace_field(ip + saddr_off, e->new_saddr, alen, outer_check, NULL);
	if (dnat)
		replace_field(ip + daddr_off, e->new_daddr, alen, outer_check, NULL);
	qcheck_old = v6 ? 0 : be16_at(qip + 10);
	if (dnat)
		replace_field(qip + saddr_off, e->new_daddr, alen, icheck, qcheck);
	if (snat)
		replace_field(qip + daddr_off, e->new_saddr, alen, icheck, qcheck);
	qcheck_new = v6 ? 0 : be16_at(qip + 10);
	if (qcheck_new != qcheck_old)
		put_be16(icheck, csum_update_word(be16_at(icheck), qcheck_old, qcheck_new));
	if (qproto == PROTO_TCP || qproto == PROTO_UDP) {
		/* Ports straight from the entry (network order, as on the wire). */
		if (dnat)
			replace_field(ports, (const __u8 *)&e->new_dport, 2, icheck, NULL);
		if (snat)
			replace_field(ports + 2, (const __u8 *)&e->new_sport, 2, icheck, NULL);
	}
	return 1;
}

/*
 * An ICMP error about a flow. The quoted packet travels the other way of the
 * flow it is about, so the flow key is the quoted one turned round. DR/TUN:
 * forwarded unchanged (TUN encapsulated) to the flow's real server; NAT and
 * FullNAT, in and reply entries: rewritten (rewrite_icmp_error) and sent on as
 * a packet of the entry's flow.
 */
static __always_inline int icmp_error(struct xdp_md *ctx, const struct pkt *p, int v6, __u32 *stat)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 q = (v6 ? L4_OFF6 : L4_OFF4) + ICMP_MIN;
	const __u32 qhdr = v6 ? IP6_LEN : IP4_LEN;
	const __u32 need = (v6 ? IP6_LEN : IP4_LEN) + ICMP_MIN + qhdr + 4;
	struct rvs_flow_key k;
	struct rvs_flow *e;
	struct rvs_real *real;
	const __u8 *dmac, *smac;
	__u32 ri, ifindex;
	__u8 *qip, *ql4;
	int r;

	if (p->ip_len < need || d + q + qhdr + 4 > end) {
		*stat = RVS_STAT_PASS_ICMP;
		return XDP_PASS;
	}
	qip = d + q;
	ql4 = qip + qhdr;
	__builtin_memset(&k, 0, sizeof(k));
	if (!v6) {
		if (qip[0] != 0x45) {
			*stat = RVS_STAT_PASS_ICMP;
			return XDP_PASS;
		}
		copy_bytes(k.saddr, qip + 16, 4);
		copy_bytes(k.daddr, qip + 12, 4);
		k.proto = qip[9];
	} else {
		if ((qip[0] >> 4) != 6) {
			*stat = RVS_STAT_PASS_ICMP;
			return XDP_PASS;
		}
		copy_bytes(k.saddr, qip + 24, 16);
		copy_bytes(k.daddr, qip + 8, 16);
		k.proto = qip[6];
	}
	copy_bytes((__u8 *)&k.sport, ql4 + 2, 2);
	copy_bytes((__u8 *)&k.dport, ql4, 2);
	k.family = p->key.family;

	e = bpf_map_lookup_elem(&rvs_flows, &k);
	if (!e) {
		*stat = RVS_STAT_PASS_ICMP;
		return XDP_PASS;
	}
	if (e->flags & RVS_FLOW_F_OUT) {
		/* About a reply: rewritten, back towards the client as replies go. */
		dmac = e->dmac;
		smac = e->smac;
		ifindex = e->ifindex;
	} else {
		if (e->method != RVS_METHOD_DR && e->method != RVS_METHOD_TUN &&
		    e->method != RVS_METHOD_NAT && e->method != RVS_METHOD_FNAT) {
			*stat = RVS_STAT_PASS_ICMP;
			return XDP_PASS;
		}
		ri = e->real;
		real = bpf_map_lookup_elem(&rvs_reals, &ri);
		if (!real || real->family == 0) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		if (e->method == RVS_METHOD_TUN) {
			r = encap(ctx, p, real, &k, v6, stat);
			if (r != XDP_PASS)
				return r;
			*stat = RVS_STAT_ICMP_ERROR_FWD;
			return egress(ctx, real->ifindex, stat);
		}
		dmac = real->dmac;
		smac = real->smac;
		ifindex = real->ifindex;
	}
	if (((e->flags & RVS_FLOW_F_OUT) || e->method != RVS_METHOD_DR) &&
	    !rewrite_icmp_error(ctx, e, v6)) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	if (!set_eth(ctx, dmac, smac)) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	*stat = RVS_STAT_ICMP_ERROR_FWD;
	return egress(ctx, ifindex, stat);
}

static __always_inline int handle_icmp(struct xdp_md *ctx, const struct pkt *p, int v6, __u32 *stat)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 l4 = v6 ? L4_OFF6 : L4_OFF4;
	__u8 type;

	if (d + l4 + ICMP_MIN > end) {
		*stat = RVS_STAT_DROP_MALFORMED;
		return XDP_DROP;
	}
	type = d[l4];
	if (type == (v6 ? ICMP6_ECHO : ICMP4_ECHO))
		return icmp_echo(ctx, p, v6, stat);
	if (v6 ? (type >= 1 && type <= 3) : (type == ICMP4_UNREACH || type == ICMP4_TIME_EXCEEDED))
		return icmp_error(ctx, p, v6, stat);
	*stat = RVS_STAT_PASS_ICMP;
	return XDP_PASS;
}

/* ---- parsing ---- */

/* IPv4 or IPv6 after the Ethernet header; fills `p` and dispatches. */
static __always_inline int handle_ip(struct xdp_md *ctx, struct pkt *p, int v6, __u32 *stat)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	const __u32 l4 = v6 ? L4_OFF6 : L4_OFF4;
	__u32 present = p->frame_len - ETH_LEN;
	__u32 l4_len;
	__u8 *ip = d + ETH_LEN;
	struct rvs_flow *e;

	if (!v6) {
		__u32 tot;

		if (d + L4_OFF4 > end || (ip[0] >> 4) != 4) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		tot = be16_at(ip + 2);
		if (tot < IP4_LEN || tot > present) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		if ((ip[0] & 0x0F) != 5) {
			*stat = RVS_STAT_PASS_IP_OPTIONS;
			return XDP_PASS;
		}
		if (be16_at(ip + 6) & 0x3FFF) {
			*stat = RVS_STAT_PASS_FRAGMENT;
			return XDP_PASS;
		}
		p->ip_len = tot;
		p->proto = ip[9];
		p->tos = ip[1];
		p->df = (ip[6] & 0x40) != 0;
		p->key.family = RVS_FAMILY_V4;
		copy_bytes(p->key.saddr, ip + 12, 4);
		copy_bytes(p->key.daddr, ip + 16, 4);
		l4_len = tot - IP4_LEN;
		if (p->proto != PROTO_TCP && p->proto != PROTO_UDP && p->proto != PROTO_ICMP) {
			*stat = RVS_STAT_PASS_NOT_VIP;
			return XDP_PASS;
		}
	} else {
		__u32 plen;

		if (d + L4_OFF6 > end || (ip[0] >> 4) != 6) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		plen = be16_at(ip + 4);
		if (IP6_LEN + plen > present) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		if (ip[6] == PROTO_FRAG6) {
			*stat = RVS_STAT_PASS_FRAGMENT;
			return XDP_PASS;
		}
		if (ip[6] != PROTO_TCP && ip[6] != PROTO_UDP && ip[6] != PROTO_ICMP6) {
			*stat = RVS_STAT_PASS_IP_OPTIONS;
			return XDP_PASS;
		}
		p->ip_len = IP6_LEN + plen;
		p->proto = ip[6];
		p->tos = ((ip[0] & 0x0F) << 4) | (ip[1] >> 4);
		p->df = 0;
		p->key.family = RVS_FAMILY_V6;
		copy_bytes(p->key.saddr, ip + 8, 16);
		copy_bytes(p->key.daddr, ip + 24, 16);
		l4_len = plen;
	}
	p->key.proto = p->proto;

	if (p->proto == PROTO_TCP) {
		__u32 doff;

		if (l4_len < TCP_MIN || d + l4 + TCP_MIN > end) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		doff = (__u32)(d[l4 + 12] >> 4) * 4;
		if (doff < TCP_MIN || doff > l4_len) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		p->tcp_flags = d[l4 + 13];
	} else if (p->proto == PROTO_UDP) {
		if (l4_len < UDP_LEN || d + l4 + UDP_LEN > end) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
	} else {
		if (l4_len < ICMP_MIN || d + l4 + ICMP_MIN > end) {
			*stat = RVS_STAT_DROP_MALFORMED;
			return XDP_DROP;
		}
		return handle_icmp(ctx, p, v6, stat);
	}
	copy_bytes((__u8 *)&p->key.sport, d + l4, 2);
	copy_bytes((__u8 *)&p->key.dport, d + l4 + 2, 2);

	e = bpf_map_lookup_elem(&rvs_flows, &p->key);
	if (e)
		return known_flow(ctx, p, e, v6, stat);
	return virtual_service(ctx, p, v6, stat);
}

SEC("xdp")
int rvs_xdp(struct xdp_md *ctx)
{
	__u8 *d = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	struct pkt p;
	__u32 stat = RVS_STAT_DROP_MALFORMED;
	__u32 ethertype;
	int act;

	stat_inc(RVS_STAT_RX);
	__builtin_memset(&p, 0, sizeof(p));
	p.frame_len = end - d;
	if (d + ETH_LEN > end) {
		act = XDP_DROP;
	} else {
		ethertype = be16_at(d + 12);
		if (ethertype == 0x0800) {
			act = handle_ip(ctx, &p, 0, &stat);
		} else if (ethertype == 0x86DD) {
			act = handle_ip(ctx, &p, 1, &stat);
		} else {
			stat = RVS_STAT_PASS_NOT_IP;
			act = XDP_PASS;
		}
	}
	stat_inc(stat);
	return act;
}
