/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The packet plane's maps (docs/packet-plane.md, "Maps"): one definition for
 * the program (rvs_xdp.c) and the loader's test fixture
 * (tests/fixtures/loader_fixture.c), so the two can never disagree on a
 * map's name, type, size or flags. Include after <bpf/bpf_helpers.h> and
 * rvs_abi.h.
 */
#ifndef RVS_MAPS_H
#define RVS_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_config);
} rvs_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_VIPS);
	__type(key, struct rvs_vip_key);
	__type(value, struct rvs_vip);
} rvs_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RVS_MAX_VIPS);
	__type(key, struct rvs_vip_key);
	__type(value, __u32);
} rvs_vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RVS_MAX_MARK_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rvs_mark_key);
	__type(value, __u32);
} rvs_marks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_MAX_REALS);
	__type(key, __u32);
	__type(value, struct rvs_real);
} rvs_reals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RVS_HASH_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} rvs_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RVS_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct rvs_flow_key);
	__type(value, struct rvs_flow);
} rvs_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RVS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rvs_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rvs_guard);
} rvs_guard SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} rvs_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, RVS_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} rvs_tx SEC(".maps");

#endif /* RVS_MAPS_H */
