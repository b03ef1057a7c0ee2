/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rvs packet plane: the contract between the XDP program (rvs_xdp.c), the Rust
 * reference engine (src/engine.rs) and the loader (src/loader.rs).
 *
 * Every struct here is mirrored byte for byte by src/abi.rs; docs/packet-plane.md
 * states what the program does with them. Addresses are 16 bytes: an IPv4
 * address fills the first 4 and the rest is zero. Ports are in network byte
 * order wherever they sit in a key or value; every other integer is host order.
 */
#ifndef RVS_ABI_H
#define RVS_ABI_H

#include <linux/types.h>

#define RVS_FAMILY_V4 4
#define RVS_FAMILY_V6 6

/* Forwarding methods (rvs_real.method and rvs_flow.method). */
#define RVS_METHOD_DR 1
#define RVS_METHOD_TUN 2
#define RVS_METHOD_NAT 3
#define RVS_METHOD_FNAT 4

/* Tunnel encapsulations (rvs_real.tun_type). */
#define RVS_TUN_IPIP 0 /* IPv4: proto 4 (inner v4) / 41 (inner v6); IPv6 outer likewise */
#define RVS_TUN_GUE 1  /* outer IP + UDP to rvs_real.gue_port, the inner IP packet right after */

/* Schedulers decided in XDP (rvs_vip.sched); anything else goes up. */
#define RVS_SCHED_UPCALL 0
#define RVS_SCHED_SH 1
#define RVS_SCHED_DH 2
#define RVS_SCHED_MH 3

/* rvs_vip.sched_flags */
#define RVS_SCHED_F_PORT 1 /* sh-port / mh-port: add the source port to the key */

/* rvs_real.flags */
#define RVS_REAL_F_USABLE 1 /* weight > 0 and not overloaded: XDP may choose it */

/* rvs_flow.flags */
#define RVS_FLOW_F_SNAT 1       /* rewrite the source to new_saddr:new_sport */
#define RVS_FLOW_F_DNAT 2       /* rewrite the destination to new_daddr:new_dport */
#define RVS_FLOW_F_NOTIFY_ACK 4 /* report the next TCP ACK, then clear this bit */
#define RVS_FLOW_F_OUT 8        /* a reply (real server -> client) entry */

#define RVS_NO_REAL 0xffffffffu
#define RVS_MAX_REALS 4096
#define RVS_MAX_VIPS 4096
#define RVS_HASH_SLOTS (1u << 20)
#define RVS_MAX_FLOWS (1u << 20)
#define RVS_MAX_IFACES 64
#define RVS_MAX_MARK_ENTRIES 65536 /* rvs_marks: one per (rule, port); every-port rules take one */

/* rvs_marks keys: the bits of proto, family and port always take part. */
#define RVS_MARK_KEY_BITS 32
/* rvs_vips key of a firewall-mark service: proto 0 (IPPROTO_IP, as the kernel's
 * fwmark templates), port 0, addr = the mark as a big-endian u32 in the first 4
 * bytes (the rest zero), family the service's. Address services are TCP/UDP only,
 * so the two forms never collide. */
#define RVS_VIP_PROTO_FWMARK 0

/* Upcall and notification records (rvs_events ring buffer). */
#define RVS_EV_UPCALL 1   /* a packet the core must decide; dropped by XDP, re-sent by userspace */
#define RVS_EV_NEW 2      /* XDP created a flow (hash scheduler); frame head for the core */
#define RVS_EV_CONTROL 3  /* a TCP control packet of a known flow, forwarded by XDP */
#define RVS_UPCALL_SNAP 1536
#define RVS_NOTIFY_SNAP 128

/* Counters (rvs_stats, per CPU). */
enum rvs_stat {
	RVS_STAT_RX = 0,          /* every packet the program saw */
	RVS_STAT_PASS_NOT_IP,     /* not IPv4/IPv6 (ARP, VLAN tags, ...) */
	RVS_STAT_PASS_NOT_VIP,    /* IP but no flow and no virtual service */
	RVS_STAT_PASS_FRAGMENT,   /* IPv4 fragment, or IPv6 fragment header */
	RVS_STAT_PASS_IP_OPTIONS, /* IPv4 header with options, IPv6 extension header */
	RVS_STAT_PASS_ICMP,       /* ICMP the program does not handle */
	RVS_STAT_DROP_MALFORMED,  /* truncated or inconsistent headers */
	RVS_STAT_FWD_DR,
	RVS_STAT_FWD_TUN,
	RVS_STAT_FWD_NAT,
	RVS_STAT_FWD_FNAT,
	RVS_STAT_FWD_REPLY,       /* NAT/FullNAT replies rewritten back to the client */
	RVS_STAT_XDP_SCHED,       /* new flows decided in XDP (sh/dh/mh) */
	RVS_STAT_UPCALL,          /* packets sent up */
	RVS_STAT_NOTIFY,          /* control notifications sent up */
	RVS_STAT_DROP_GUARD,      /* upcalls refused by the new-flow guard */
	RVS_STAT_DROP_RINGBUF,    /* ring buffer full */
	RVS_STAT_ICMP_ECHO,       /* echo requests to a VIP answered */
	RVS_STAT_ICMP_ERROR_FWD,  /* ICMP errors forwarded along their flow (NAT/FullNAT: rewritten) */
	RVS_STAT_DROP_TOO_BIG,    /* encapsulation would not fit / adjust_head failed */
	RVS_STAT_REDIRECT_FAIL,   /* bpf_redirect_map refused */
	RVS_STAT_MAX
};

/* rvs_config[0] */
struct rvs_config {
	__u32 upcall_rate;      /* new-flow upcalls allowed per second per CPU (0: no limit) */
	__u32 upcall_burst;     /* token bucket depth */
	__u8 tun_saddr4[4];     /* outer source of IPv4 tunnels */
	__u8 tun_saddr6[16];    /* outer source of IPv6 tunnels */
	__u32 tun_spread_bits;  /* low bits of the outer IPv4 source taken from the flow hash (0..=16) */
	__u16 gue_sport_base;   /* GUE source port = base + (flow hash % gue_sport_span), host order */
	__u16 gue_sport_span;   /* 0 means 1 */
};

struct rvs_vip_key {
	__u8 addr[16];
	__u16 port; /* network order */
	__u8 proto;
	__u8 family;
};

struct rvs_vip {
	__u32 svc;        /* the core's service id, for userspace */
	__u8 sched;       /* RVS_SCHED_* */
	__u8 sched_flags; /* RVS_SCHED_F_* */
	__u8 method;      /* method of every real (only meaningful for XDP scheduling) */
	__u8 pad;
	__u32 table_off;  /* first slot in rvs_hash */
	__u32 table_size; /* slots: 2^bits for sh/dh, the prime M for mh */
	__u32 table_bits; /* sh/dh: bits of hash_32 */
};

/*
 * rvs_marks (LPM trie): the firewall-mark classifier. One entry per port of a
 * rule (port 0 for a rule of every port; a rule never names port 0), prefixlen =
 * RVS_MARK_KEY_BITS + the rule's address prefix length, addr with its host bits
 * clear. Value: the mark (__u32, never 0).
 */
struct rvs_mark_key {
	__u32 prefixlen;
	__u8 proto;
	__u8 family;
	__u16 port; /* network order; 0: every port */
	__u8 addr[16];
};

struct rvs_real {
	__u8 addr[16];
	__u8 family;
	__u8 method;
	__u8 tun_type;
	__u8 flags;    /* RVS_REAL_F_* */
	__u16 port;    /* NAT/FullNAT destination port, network order */
	__u16 gue_port; /* GUE destination port, network order */
	__u32 ifindex; /* egress interface */
	__u8 dmac[6];  /* next hop towards the real server */
	__u8 smac[6];  /* the egress interface's address */
};

struct rvs_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct rvs_flow {
	__u8 new_saddr[16];
	__u8 new_daddr[16];
	__u16 new_sport; /* network order */
	__u16 new_dport; /* network order */
	__u32 real;      /* rvs_reals index, RVS_NO_REAL for reply entries */
	__u32 ifindex;   /* reply entries: egress interface */
	__u8 dmac[6];    /* reply entries: the hop the client's packets came from */
	__u8 smac[6];    /* reply entries: the egress interface's address */
	__u8 method;
	__u8 flags;      /* RVS_FLOW_F_* */
	__u16 pad;
	__u64 last_seen_ns; /* bpf_ktime_get_ns of the last packet */
	__u64 packets;      /* fast-path packets (not notified, not sent up) */
	__u64 bytes;        /* their IP lengths */
};

/* The new-flow guard's token bucket, one per CPU. */
struct rvs_guard {
	__u64 last_ns;
	__u64 tokens_milli; /* tokens * 1000 */
};

/* Header of every ring buffer record; the frame's first cap_len bytes follow. */
struct rvs_event_hdr {
	__u32 kind;      /* RVS_EV_* */
	__u32 ifindex;   /* ingress interface */
	__u32 frame_len; /* the whole frame */
	__u32 cap_len;   /* bytes of it that follow */
	__u32 real;      /* RVS_EV_NEW: the chosen real; else RVS_NO_REAL */
	__u32 pad;
};

struct rvs_upcall {
	struct rvs_event_hdr hdr;
	__u8 frame[RVS_UPCALL_SNAP];
};

struct rvs_notify {
	struct rvs_event_hdr hdr;
	__u8 frame[RVS_NOTIFY_SNAP];
};

#endif
