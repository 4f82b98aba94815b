// SPDX-License-Identifier: GPL-2.0
// tests/bench/dr-xdp-probe.c — research probe for issue 9: LVS-DR dispatch as an XDP program.
// Not the product: a minimal datapath to check that clang 14 + libbpf headers (Debian) build an
// object that `ip link set dev X xdpgeneric|xdpdrv obj O sec xdp` attaches, and that it forwards.
//
//   clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) -c dr-xdp-probe.c -o dr.o
//
// Maps (what lb would program through aya): cfg[0] = VIP, port, slot count, lb MAC;
// maglev[slot] = real server MAC; conn = LRU hash (saddr, sport) -> MAC + state + last seen;
// stats = per-CPU counters by reason.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct cfg { __u32 vip; __u16 port; __u16 slots; __u8 lbmac[6]; __u8 pad[2]; };
struct mac { __u8 a[6]; __u16 pad; };
struct ckey { __u32 saddr; __u16 sport; __u16 pad; };
struct cval { __u8 mac[6]; __u8 closing; __u8 pad; __u64 seen_ns; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, struct cfg); } cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 65537);
         __type(key, __u32); __type(value, struct mac); } maglev SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 262144);
         __type(key, struct ckey); __type(value, struct cval); } conn SEC(".maps");
enum { S_FWD_NEW, S_FWD_EST, S_FRAG, S_MALFORMED, S_NOSLOT, S_PASS, S_N };
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, S_N);
         __type(key, __u32); __type(value, __u64); } stats SEC(".maps");

#define EST_NS (900ULL * 1000000000ULL)
#define FIN_NS (120ULL * 1000000000ULL)

static __always_inline void count(__u32 r) {
    __u64 *v = bpf_map_lookup_elem(&stats, &r);
    if (v) *v += 1;
}
static __always_inline __u32 rol32(__u32 w, int s) { return (w << s) | (w >> (32 - s)); }
// jhash_2words(a, b, seed) as in include/linux/jhash.h, so lb can compute slots in Rust
static __always_inline __u32 jhash2w(__u32 a, __u32 b, __u32 c0) {
    __u32 c = c0 + 0xdeadbeef + (2 << 2);
    a += 0xdeadbeef + (2 << 2); b += 0xdeadbeef + (2 << 2);
    c ^= b; c -= rol32(b, 14); a ^= c; a -= rol32(c, 11); b ^= a; b -= rol32(a, 25);
    c ^= b; c -= rol32(b, 16); a ^= c; a -= rol32(c, 4);  b ^= a; b -= rol32(a, 14);
    c ^= b; c -= rol32(b, 24);
    return c;
}

SEC("xdp")
int dr(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end) return XDP_PASS;
    __u32 k0 = 0;
    struct cfg *c = bpf_map_lookup_elem(&cfg, &k0);
    if (!c || ip->daddr != c->vip) return XDP_PASS;
    if (ip->frag_off & bpf_htons(0x3fff)) { count(S_FRAG); return XDP_DROP; }
    if (ip->protocol != IPPROTO_TCP) { count(S_PASS); return XDP_PASS; }
    if (ip->ihl < 5) { count(S_MALFORMED); return XDP_DROP; }
    struct tcphdr *th = (void *)ip + ip->ihl * 4;
    if ((void *)(th + 1) > end || th->doff < 5) { count(S_MALFORMED); return XDP_DROP; }
    if (th->dest != c->port) { count(S_PASS); return XDP_PASS; }

    struct ckey key = { .saddr = ip->saddr, .sport = th->source };
    __u64 now = bpf_ktime_get_ns();
    struct cval *cv = bpf_map_lookup_elem(&conn, &key);
    int syn = th->syn && !th->ack;
    if (cv && !syn && now - cv->seen_ns < (cv->closing ? FIN_NS : EST_NS)) {
        cv->seen_ns = now;
        if (th->fin || th->rst) cv->closing = 1;
        __builtin_memcpy(eth->h_dest, cv->mac, 6);
        count(S_FWD_EST);
    } else {
        __u32 slots = c->slots ? c->slots : 1;
        __u32 slot = jhash2w(ip->saddr, th->source, 0xedf1) % slots;
        struct mac *m = bpf_map_lookup_elem(&maglev, &slot);
        if (!m || !(m->a[0] | m->a[1] | m->a[2] | m->a[3] | m->a[4] | m->a[5])) {
            count(S_NOSLOT); return XDP_DROP;
        }
        struct cval nv = { .closing = 0, .seen_ns = now };
        __builtin_memcpy(nv.mac, m->a, 6);
        bpf_map_update_elem(&conn, &key, &nv, BPF_ANY);
        __builtin_memcpy(eth->h_dest, m->a, 6);
        count(S_FWD_NEW);
    }
    __builtin_memcpy(eth->h_source, c->lbmac, 6);
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";

// Native XDP_TX on a veth hands the frame to the peer's NAPI: the peer needs an XDP program (or
// GRO) of its own, or the frame is dropped. This one only passes.
SEC("xdp")
int pass(struct xdp_md *ctx) { return XDP_PASS; }
