/*
 * AF_XDP frame source, built as its own optional module efsdk._native_afxdp
 * (native/build_afxdp.py): it needs libxdp (<xdp/xsk.h>, the socket / UMEM /
 * ring helpers) and libbpf (map + program loading), which many machines lack.
 *
 * Same contract as the other backends (frame_source.h): open -> poll(max,
 * timeout) -> zero-copy efsdk_frame descriptors pointing into the UMEM ->
 * release(n) (oldest first; the frames go back to the fill ring in one batch)
 * -> idempotent close.
 *
 * The XDP program is assembled here, at open time, from the feed list (no
 * clang, no object file): Ethernet -> up to two 802.1Q/802.1ad tags -> IPv4
 * -> not a fragment -> UDP -> destination (address, port) compared with each
 * feed (unrolled immediates) -> on a match, on our queue:
 *   - frames longer than a UMEM chunk are cut with bpf_xdp_adjust_tail (the
 *     original length rides in the metadata, so user space flags them
 *     truncated instead of the kernel silently dropping them);
 *   - 16 bytes of metadata go in front of the frame: the XDP-entry time
 *     (bpf_ktime_get_tai_ns, CLOCK_TAI), the original length and a magic;
 *   - bpf_redirect_map(xsks_map, queue, XDP_PASS).
 * Everything else (ARP, ICMP, other ports, fragments, runts) gets XDP_PASS: the
 * kernel still sees it.  Each pass reason has a counter in an array map that
 * refresh_stats() folds into the common stats.
 *
 * The program is attached through a BPF link: closing the link fd (close(),
 * or the process dying) detaches it, so a crashed receiver never leaves an
 * XDP program on the interface.
 *
 * Every function returns 0 / a count or -errno; nothing aborts, allocates in
 * poll, or calls back into Python.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "frame_source.h"
#include "poll_wait.h"
#include "mcast_join.h"
#include "netparse.h"

#define EFSDK_AFXDP_VERSION 1 /* bump on any change of the structs below / semantics */

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

/* Open stages, reported to Python so it can say which step failed and why. */
#define EFSDK_AFXDP_STAGE_CONFIG 1
#define EFSDK_AFXDP_STAGE_IFACE 2   /* if_nametoindex */
#define EFSDK_AFXDP_STAGE_MEM 3     /* UMEM memory (mmap) */
#define EFSDK_AFXDP_STAGE_UMEM 4    /* xsk_umem__create: XDP_UMEM_REG + fill/completion rings */
#define EFSDK_AFXDP_STAGE_MAPS 5    /* bpf_map_create: xsks_map + counters */
#define EFSDK_AFXDP_STAGE_PROG 6    /* bpf_prog_load (verifier) */
#define EFSDK_AFXDP_STAGE_SOCKET 7  /* xsk_socket__create: rx ring + bind(queue, mode) */
#define EFSDK_AFXDP_STAGE_XSKMAP 8  /* bpf_map_update_elem(xsks_map) */
#define EFSDK_AFXDP_STAGE_ATTACH 9  /* bpf_link_create(BPF_XDP) */
#define EFSDK_AFXDP_STAGE_SOCKOPT 10 /* SO_BUSY_POLL & co. */
#define EFSDK_AFXDP_STAGE_JOIN 11   /* IP_ADD_MEMBERSHIP on the kernel socket */

/* efsdk_afxdp_config.bind_mode */
#define EFSDK_AFXDP_BIND_AUTO 0     /* the kernel tries zero-copy, falls back to copy */
#define EFSDK_AFXDP_BIND_COPY 1     /* XDP_COPY */
#define EFSDK_AFXDP_BIND_ZEROCOPY 2 /* XDP_ZEROCOPY: fails where the driver cannot */
/* efsdk_afxdp_config.xdp_mode (and efsdk_afxdp_stats.xdp_mode once attached) */
#define EFSDK_AFXDP_XDP_AUTO 0      /* native, else skb (generic) */
#define EFSDK_AFXDP_XDP_NATIVE 1    /* XDP_FLAGS_DRV_MODE: in the driver */
#define EFSDK_AFXDP_XDP_SKB 2       /* XDP_FLAGS_SKB_MODE: generic, after the skb is built */

/* Counters of the XDP program (index into efsdk_afxdp_stats.prog). */
#define EFSDK_AFXDP_CNT_NON_UDP 0     /* not IPv4/UDP: passed */
#define EFSDK_AFXDP_CNT_FRAGMENT 1    /* IPv4 fragment: passed (never reassembled here) */
#define EFSDK_AFXDP_CNT_SHORT 2       /* runt / bad IPv4 header: passed */
#define EFSDK_AFXDP_CNT_FILTERED 3    /* UDP, not a feed: passed */
#define EFSDK_AFXDP_CNT_OTHER_QUEUE 4 /* a feed frame on another rx queue: passed */
#define EFSDK_AFXDP_CNT_TRUNCATED 5   /* cut to fit a UMEM chunk, then redirected */
#define EFSDK_AFXDP_CNT_TRUNC_FAIL 6  /* too long and bpf_xdp_adjust_tail refused: passed */
#define EFSDK_AFXDP_CNT_META_FAIL 7   /* no room for metadata: redirected without timestamp */
#define EFSDK_AFXDP_CNT_NO_SOCKET 8   /* bpf_redirect_map found no socket: passed */
#define EFSDK_AFXDP_N_COUNTERS 9

/* The metadata the program writes in front of each redirected frame. */
#define XMETA_LEN 16
#define XMETA_MAGIC 0xEF5DA0D1u
typedef struct xmeta {
    uint64_t ts;       /* bpf_ktime_get_tai_ns() (or _get_ns() on old kernels) at XDP entry */
    uint32_t orig_len; /* frame length before bpf_xdp_adjust_tail */
    uint32_t magic;    /* XMETA_MAGIC; cleared by us once read (the chunk is reused) */
} xmeta;

/* The project's licence; no helper used here is GPL-only. */
#define EFSDK_XDP_LICENSE "Apache-2.0"

/* Copy mode places frame data XDP_PACKET_HEADROOM (256) bytes into the chunk. */
#define XSK_HEADROOM 256u

/* BPF helper ids (kernel ABI, fixed forever): numbers, so older uapi headers still compile. */
#define FN_map_lookup_elem 1
#define FN_ktime_get_ns 5
#define FN_redirect_map 51
#define FN_xdp_adjust_meta 54
#define FN_xdp_adjust_tail 65
#define FN_xdp_get_buff_len 188
#define FN_ktime_get_tai_ns 208

typedef struct efsdk_afxdp_config {
    char iface[16];        /* interface (IFNAMSIZ) */
    uint32_t flags;        /* EFSDK_CFG_BUSY_POLL | EFSDK_CFG_KEEP_TRUNCATED */
    uint32_t queue_id;     /* rx queue the socket binds to */
    uint32_t bind_mode;    /* EFSDK_AFXDP_BIND_* */
    uint32_t xdp_mode;     /* EFSDK_AFXDP_XDP_* */
    uint32_t need_wakeup;  /* 1: XDP_USE_NEED_WAKEUP (syscalls only when the kernel asks) */
    uint32_t frame_size;   /* UMEM chunk bytes: 2048 or 4096 */
    uint32_t n_frames;     /* UMEM chunks (UMEM bytes = n_frames * frame_size) */
    uint32_t fill_size;    /* fill ring entries (power of two) */
    uint32_t comp_size;    /* completion ring entries (power of two; unused by rx) */
    uint32_t rx_size;      /* rx ring entries (power of two) */
    int32_t busy_poll_us;  /* SO_BUSY_POLL (+ SO_PREFER_BUSY_POLL); 0 = off */
    uint32_t batch;        /* SO_BUSY_POLL_BUDGET when busy polling */
    uint32_t n_feeds;      /* >= 1: what the program redirects */
    const efsdk_feed *feeds;
    char *errbuf;          /* optional: detail of an open failure (verifier log tail) */
    uint32_t errbuf_len;
    uint32_t reserved;
} efsdk_afxdp_config;

typedef struct efsdk_afxdp_stats {
    uint64_t rx_dropped;               /* XDP_STATISTICS: no fill buffer / frame too big */
    uint64_t rx_invalid_descs;         /* bad fill ring addresses */
    uint64_t rx_ring_full;             /* rx ring full: we did not poll fast enough */
    uint64_t rx_fill_ring_empty_descs; /* times the kernel found the fill ring empty */
    uint64_t prog[EFSDK_AFXDP_N_COUNTERS]; /* EFSDK_AFXDP_CNT_* */
    uint64_t descs;    /* rx descriptors consumed (delivered or counted) */
    uint64_t wakeups;  /* need_wakeup / busy-poll syscalls */
    uint64_t no_meta;  /* frames without program metadata: stamped at poll time */
    uint32_t zerocopy; /* 1: bound zero-copy, 0: copy mode */
    uint32_t xdp_mode; /* EFSDK_AFXDP_XDP_NATIVE / _SKB */
    uint32_t need_wakeup;
    uint32_t queue_id;
    uint32_t frame_size;
    uint32_t n_frames;
    uint32_t fill_level; /* chunks posted in the fill ring now */
    uint32_t prog_id;    /* kernel id of the XDP program (`ip link` shows it) */
    uint32_t tai_clock;  /* 1: stamps from CLOCK_TAI (exact), 0: CLOCK_MONOTONIC (old kernels) */
    uint32_t prog_insns;
} efsdk_afxdp_stats;

typedef struct held {
    uint64_t addr; /* chunk address in the UMEM */
    uint64_t end;  /* frames delivered when it was read: free once released >= end */
} held;

typedef struct xdp_source {
    efsdk_source head; /* first: efsdk_source_free() frees the whole struct */
    struct xsk_ring_prod fill;
    struct xsk_ring_cons comp;
    struct xsk_ring_cons rx;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    uint8_t *area; /* UMEM */
    size_t area_len;
    int fd; /* xsk socket fd (owned by libxdp) */
    int xsks_fd, cnt_fd, prog_fd, link_fd, join_fd;
    int ifindex;
    uint32_t flags;
    int busy_poll;
    uint32_t frame_size, n_frames;
    /* chunks read from the rx ring and not yet back in the fill ring (FIFO) */
    held *fifo;
    uint32_t fifo_head, fifo_count;
    uint64_t delivered, released;
    /* kernel counters already folded into head.stats */
    uint64_t k_dropped, k_ring_full;
    uint64_t k_prog[EFSDK_AFXDP_N_COUNTERS];
    struct xdp_statistics xs;
    uint64_t prog_now[EFSDK_AFXDP_N_COUNTERS];
    efsdk_afxdp_stats x;
    int64_t clk_off; /* program clock - CLOCK_REALTIME, ns (clock_offset) */
} xdp_source;

/* ------------------------------------------------------------------ the XDP program */

#define PROG_MAX 2048
#define LABEL_MAX (32 + EFSDK_MAX_FEEDS)
#define FIX_MAX 1024

typedef struct xasm {
    struct bpf_insn ins[PROG_MAX];
    uint32_t n;
    int32_t label[LABEL_MAX];
    uint32_t n_labels;
    struct {
        uint32_t at, label;
    } fix[FIX_MAX];
    uint32_t n_fix;
    int err;
} xasm;

static void emit(xasm *a, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    if (a->n >= PROG_MAX) {
        a->err = -E2BIG;
        return;
    }
    struct bpf_insn *i = &a->ins[a->n++];
    memset(i, 0, sizeof *i);
    i->code = code;
    i->dst_reg = dst;
    i->src_reg = src;
    i->off = off;
    i->imm = imm;
}

static uint32_t new_label(xasm *a)
{
    if (a->n_labels >= LABEL_MAX) {
        a->err = -E2BIG;
        return 0;
    }
    a->label[a->n_labels] = -1;
    return a->n_labels++;
}

static void place(xasm *a, uint32_t l) { a->label[l] = (int32_t)a->n; }

/* A jump to label `l` (resolved in finish()). */
static void jump(xasm *a, uint8_t code, uint8_t dst, uint8_t src, int32_t imm, uint32_t l)
{
    if (a->n_fix >= FIX_MAX) {
        a->err = -E2BIG;
        return;
    }
    a->fix[a->n_fix].at = a->n;
    a->fix[a->n_fix].label = l;
    a->n_fix++;
    emit(a, code, dst, src, 0, imm);
}

static int finish(xasm *a)
{
    if (a->err)
        return a->err;
    for (uint32_t i = 0; i < a->n_fix; i++) {
        int32_t to = a->label[a->fix[i].label];
        int32_t off = to - (int32_t)a->fix[i].at - 1;
        if (to < 0 || off < -32768 || off > 32767)
            return -EINVAL;
        a->ins[a->fix[i].at].off = (int16_t)off;
    }
    return 0;
}

#define R0 BPF_REG_0
#define R1 BPF_REG_1
#define R2 BPF_REG_2
#define R3 BPF_REG_3
#define R4 BPF_REG_4
#define R5 BPF_REG_5
#define R6 BPF_REG_6
#define R7 BPF_REG_7
#define R8 BPF_REG_8
#define R9 BPF_REG_9
#define R10 BPF_REG_10

#define MOV_R(a, d, s) emit(a, BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_I(a, d, k) emit(a, BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, k)
#define ALU_I(a, op, d, k) emit(a, BPF_ALU64 | (op) | BPF_K, d, 0, 0, k)
#define ALU_R(a, op, d, s) emit(a, BPF_ALU64 | (op) | BPF_X, d, s, 0, 0)
#define LDX(a, sz, d, s, o) emit(a, BPF_LDX | (sz) | BPF_MEM, d, s, o, 0)
#define STX(a, sz, d, s, o) emit(a, BPF_STX | (sz) | BPF_MEM, d, s, o, 0)
#define ST_I(a, sz, d, o, k) emit(a, BPF_ST | (sz) | BPF_MEM, d, 0, o, k)
#define CALL(a, fn) emit(a, BPF_JMP | BPF_CALL, 0, 0, 0, fn)
#define EXIT(a) emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define J_I(a, op, d, k, l) jump(a, BPF_JMP | (op) | BPF_K, d, 0, k, l)
#define J32_I(a, op, d, k, l) jump(a, BPF_JMP32 | (op) | BPF_K, d, 0, k, l)
#define J_R(a, op, d, s, l) jump(a, BPF_JMP | (op) | BPF_X, d, s, 0, l)
#define JA(a, l) jump(a, BPF_JMP | BPF_JA, 0, 0, 0, l)

static void ld_map_fd(xasm *a, uint8_t dst, int fd)
{
    emit(a, BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd);
    emit(a, 0, 0, 0, 0, 0);
}

/* counters[idx] += 1 (atomic: the program runs on every CPU).  Clobbers r0-r5. */
static void count(xasm *a, int cnt_fd, int idx)
{
    ST_I(a, BPF_W, R10, -4, 0); /* key 0 */
    MOV_R(a, R2, R10);
    ALU_I(a, BPF_ADD, R2, -4);
    ld_map_fd(a, R1, cnt_fd);
    CALL(a, FN_map_lookup_elem);
    emit(a, BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 2, 0); /* NULL: skip the two below */
    MOV_I(a, R1, 1);
    emit(a, BPF_STX | BPF_DW | BPF_ATOMIC, R0, R1, (int16_t)(idx * 8), BPF_ADD);
}

/*
 * The filter.  Registers: r6 ctx, r2 data, r3 data_end, r4 cursor (header
 * being parsed), r5 ethertype, r7 frame length, r8 dst address then the
 * timestamp, r9 dst port.  Loads from the packet read network-order bytes as
 * native integers, so they are compared with htons()/the raw address.
 */
static int build_prog(xasm *a, const efsdk_feed *feeds, uint32_t n_feeds, uint32_t queue, uint32_t limit,
                      int xsks_fd, int cnt_fd, int tai)
{
    enum { SHORT, NON_UDP, FRAGMENT, FILTERED, OTHER_QUEUE, TRUNC_FAIL, NO_SOCKET, META_FAIL,
           TAG1, TAG2, L3, MATCH, STAMP, REDIRECT, N_FIXED };
    uint32_t L[N_FIXED];
    a->n = a->n_labels = a->n_fix = 0;
    a->err = 0;
    for (int i = 0; i < N_FIXED; i++)
        L[i] = new_label(a);

    MOV_R(a, R6, R1);
    LDX(a, BPF_W, R2, R6, offsetof(struct xdp_md, data));
    LDX(a, BPF_W, R3, R6, offsetof(struct xdp_md, data_end));
    MOV_R(a, R4, R2);
    ALU_I(a, BPF_ADD, R4, EFSDK_ETH_HLEN);
    J_R(a, BPF_JGT, R4, R3, L[SHORT]);
    LDX(a, BPF_H, R5, R2, 12);
    /* up to two tags, as netparse.h */
    J_I(a, BPF_JEQ, R5, htons(EFSDK_ETHERTYPE_VLAN), L[TAG1]);
    J_I(a, BPF_JEQ, R5, htons(EFSDK_ETHERTYPE_QINQ), L[TAG1]);
    JA(a, L[L3]);
    place(a, L[TAG1]);
    MOV_R(a, R0, R4);
    ALU_I(a, BPF_ADD, R0, 4);
    J_R(a, BPF_JGT, R0, R3, L[SHORT]);
    LDX(a, BPF_H, R5, R4, 2);
    ALU_I(a, BPF_ADD, R4, 4);
    J_I(a, BPF_JEQ, R5, htons(EFSDK_ETHERTYPE_VLAN), L[TAG2]);
    J_I(a, BPF_JEQ, R5, htons(EFSDK_ETHERTYPE_QINQ), L[TAG2]);
    JA(a, L[L3]);
    place(a, L[TAG2]);
    MOV_R(a, R0, R4);
    ALU_I(a, BPF_ADD, R0, 4);
    J_R(a, BPF_JGT, R0, R3, L[SHORT]);
    LDX(a, BPF_H, R5, R4, 2);
    ALU_I(a, BPF_ADD, R4, 4);
    place(a, L[L3]);
    J_I(a, BPF_JNE, R5, htons(EFSDK_ETHERTYPE_IPV4), L[NON_UDP]);
    MOV_R(a, R0, R4);
    ALU_I(a, BPF_ADD, R0, 20);
    J_R(a, BPF_JGT, R0, R3, L[SHORT]);
    LDX(a, BPF_B, R0, R4, 9);
    J_I(a, BPF_JNE, R0, EFSDK_IPPROTO_UDP, L[NON_UDP]);
    LDX(a, BPF_H, R0, R4, 6);
    ALU_I(a, BPF_AND, R0, htons(0x3FFF)); /* MF flag or fragment offset */
    J_I(a, BPF_JNE, R0, 0, L[FRAGMENT]);
    LDX(a, BPF_B, R0, R4, 0);
    MOV_R(a, R1, R0);
    ALU_I(a, BPF_RSH, R1, 4);
    J_I(a, BPF_JNE, R1, 4, L[SHORT]); /* not IPv4 after all */
    ALU_I(a, BPF_AND, R0, 0x0F);
    ALU_I(a, BPF_LSH, R0, 2);
    J_I(a, BPF_JLT, R0, 20, L[SHORT]); /* IHL < 5 */
    LDX(a, BPF_W, R8, R4, 16);         /* destination address */
    ALU_R(a, BPF_ADD, R4, R0);         /* -> UDP header (20..60 bytes on) */
    MOV_R(a, R0, R4);
    ALU_I(a, BPF_ADD, R0, 8);
    J_R(a, BPF_JGT, R0, R3, L[SHORT]);
    LDX(a, BPF_H, R9, R4, 2); /* destination port */
    for (uint32_t i = 0; i < n_feeds; i++) {
        uint32_t next = new_label(a);
        if (feeds[i].addr)
            J32_I(a, BPF_JNE, R8, (int32_t)feeds[i].addr, next);
        if (feeds[i].port)
            J32_I(a, BPF_JNE, R9, htons(feeds[i].port), next);
        JA(a, L[MATCH]);
        place(a, next);
    }
    JA(a, L[FILTERED]);

    place(a, L[MATCH]);
    LDX(a, BPF_W, R0, R6, offsetof(struct xdp_md, rx_queue_index));
    J32_I(a, BPF_JNE, R0, (int32_t)queue, L[OTHER_QUEUE]);
    MOV_R(a, R1, R6);
    CALL(a, FN_xdp_get_buff_len);
    MOV_R(a, R7, R0);
    J_I(a, BPF_JLE, R7, (int32_t)limit, L[STAMP]);
    MOV_R(a, R1, R6);
    MOV_I(a, R2, (int32_t)limit);
    ALU_R(a, BPF_SUB, R2, R7); /* negative: shrink to the chunk */
    CALL(a, FN_xdp_adjust_tail);
    J_I(a, BPF_JNE, R0, 0, L[TRUNC_FAIL]);
    count(a, cnt_fd, EFSDK_AFXDP_CNT_TRUNCATED);
    place(a, L[STAMP]);
    CALL(a, tai ? FN_ktime_get_tai_ns : FN_ktime_get_ns);
    MOV_R(a, R8, R0);
    MOV_R(a, R1, R6);
    MOV_I(a, R2, -XMETA_LEN);
    CALL(a, FN_xdp_adjust_meta);
    J_I(a, BPF_JNE, R0, 0, L[META_FAIL]);
    LDX(a, BPF_W, R2, R6, offsetof(struct xdp_md, data_meta));
    LDX(a, BPF_W, R3, R6, offsetof(struct xdp_md, data));
    MOV_R(a, R4, R2);
    ALU_I(a, BPF_ADD, R4, XMETA_LEN);
    J_R(a, BPF_JGT, R4, R3, L[META_FAIL]);
    STX(a, BPF_DW, R2, R8, offsetof(xmeta, ts));
    STX(a, BPF_W, R2, R7, offsetof(xmeta, orig_len));
    ST_I(a, BPF_W, R2, offsetof(xmeta, magic), (int32_t)XMETA_MAGIC);
    place(a, L[REDIRECT]);
    ld_map_fd(a, R1, xsks_fd);
    MOV_I(a, R2, (int32_t)queue);
    MOV_I(a, R3, XDP_PASS); /* no socket in the map: the kernel gets the frame */
    CALL(a, FN_redirect_map);
    J_I(a, BPF_JNE, R0, XDP_REDIRECT, L[NO_SOCKET]);
    EXIT(a);
    place(a, L[META_FAIL]);
    count(a, cnt_fd, EFSDK_AFXDP_CNT_META_FAIL);
    JA(a, L[REDIRECT]);

    static const struct {
        int label, cnt;
    } pass[] = {
        {SHORT, EFSDK_AFXDP_CNT_SHORT},
        {NON_UDP, EFSDK_AFXDP_CNT_NON_UDP},
        {FRAGMENT, EFSDK_AFXDP_CNT_FRAGMENT},
        {FILTERED, EFSDK_AFXDP_CNT_FILTERED},
        {OTHER_QUEUE, EFSDK_AFXDP_CNT_OTHER_QUEUE},
        {TRUNC_FAIL, EFSDK_AFXDP_CNT_TRUNC_FAIL},
        {NO_SOCKET, EFSDK_AFXDP_CNT_NO_SOCKET},
    };
    for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        place(a, L[pass[i].label]);
        count(a, cnt_fd, pass[i].cnt);
        MOV_I(a, R0, XDP_PASS);
        EXIT(a);
    }
    return finish(a);
}

/* ------------------------------------------------------------------ receive */

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * (program clock - CLOCK_REALTIME) in ns.  TAI: whole seconds (the kernel's
 * TAI offset), rounded, so the conversion is exact.  MONOTONIC (kernels
 * without bpf_ktime_get_tai_ns): the two reads are ~20 ns apart, and NTP
 * steps of the wall clock show up at once.
 */
static int64_t clock_offset(int tai)
{
    if (!tai)
        return (int64_t)(clock_ns(CLOCK_MONOTONIC) - clock_ns(CLOCK_REALTIME));
    int64_t d = (int64_t)(clock_ns(CLOCK_TAI) - clock_ns(CLOCK_REALTIME));
    int64_t s = (d + (d >= 0 ? 500000000 : -500000000)) / 1000000000;
    return s * 1000000000;
}

/* Hand back every chunk whose frames are all released, as many as the fill ring takes, in one batch. */
static void xdp_flush(xdp_source *x)
{
    uint32_t n = 0, cap = x->fifo_count;
    while (n < cap && x->fifo[(x->fifo_head + n) % x->n_frames].end <= x->released)
        n++;
    if (n == 0)
        return;
    uint32_t free_slots = xsk_prod_nb_free(&x->fill, n);
    if (n > free_slots)
        n = free_slots;
    uint32_t idx;
    if (n == 0 || xsk_ring_prod__reserve(&x->fill, n, &idx) != n)
        return;
    for (uint32_t i = 0; i < n; i++) {
        *xsk_ring_prod__fill_addr(&x->fill, idx + i) = x->fifo[x->fifo_head].addr;
        x->fifo_head = (x->fifo_head + 1) % x->n_frames;
    }
    x->fifo_count -= n;
    xsk_ring_prod__submit(&x->fill, n);
}

static inline void hold(xdp_source *x, uint64_t addr)
{
    held *h = &x->fifo[(x->fifo_head + x->fifo_count) % x->n_frames];
    h->addr = addr;
    h->end = x->delivered;
    x->fifo_count++;
}

/* Classify one frame of the rx ring; 1 and *f filled when delivered, else 0 (counted). */
static inline int xdp_frame(xdp_source *x, uint8_t *frame, uint32_t len, uint64_t ts_now, efsdk_frame *f)
{
    efsdk_source_stats *st = &x->head.stats;
    xmeta *m = (xmeta *)(frame - XMETA_LEN);
    uint32_t wire_len = len;
    uint64_t ts;
    if (m->magic == XMETA_MAGIC) {
        ts = (uint64_t)((int64_t)m->ts - x->clk_off);
        if (m->orig_len > len)
            wire_len = m->orig_len; /* cut by the program to fit the chunk */
        m->magic = 0;               /* the chunk is reused: never trust a stale stamp */
    } else {
        ts = ts_now;
        x->x.no_meta++;
    }
    efsdk_udp_view v;
    int rc = efsdk_parse_udp(frame, len, wire_len, &v);
    if (v.vlan)
        st->vlan++;
    if (!efsdk_count_parse(rc, &v, st, x->flags & EFSDK_CFG_KEEP_TRUNCATED))
        return 0;
    /* No second feed check: the program matched (address, port) on these very bytes. */
    f->frame = frame;
    f->frame_len = len;
    f->data = frame + v.payload_off;
    f->len = v.payload_len;
    f->orig_len = v.udp_len;
    f->src_addr = v.src_addr;
    f->dst_addr = v.dst_addr;
    f->src_port = v.src_port;
    f->dst_port = v.dst_port;
    f->ts_ns = ts;
    f->ts_kind = EFSDK_TS_SW;
    f->reserved = 0;
    uint32_t fl = EFSDK_FRAME_RAW;
    if (rc == EFSDK_PARSE_TRUNCATED)
        fl |= EFSDK_FRAME_TRUNCATED;
    if (v.vlan) {
        fl |= EFSDK_FRAME_VLAN;
        f->vlan_tci = v.vlan_tci;
    } else {
        f->vlan_tci = 0;
    }
    if (IN_MULTICAST(ntohl(v.dst_addr)))
        fl |= EFSDK_FRAME_MULTICAST;
    f->flags = fl;
    st->frames++;
    st->bytes += v.payload_len;
    return 1;
}

static int xdp_read(xdp_source *x, efsdk_frame *out, uint32_t max)
{
    uint32_t n = 0;
    uint64_t before = x->delivered;
    uint64_t now = 0;
    while (n < max) {
        uint32_t idx;
        uint32_t got = xsk_ring_cons__peek(&x->rx, max - n, &idx);
        if (got == 0)
            break;
        if (now == 0) {
            now = clock_ns(CLOCK_REALTIME); /* only for frames without metadata */
            x->clk_off = clock_offset((int)x->x.tai_clock); /* leap seconds / clock steps: cheap (vDSO) per batch */
        }
        for (uint32_t i = 0; i < got; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx + i);
            uint64_t addr = xsk_umem__extract_addr(d->addr);
            uint8_t *frame = x->area + addr;
            if (xdp_frame(x, frame, d->len, now, &out[n])) {
                n++;
                x->delivered++;
            }
            hold(x, addr - addr % x->frame_size);
        }
        xsk_ring_cons__release(&x->rx, got);
        x->x.descs += got;
    }
    x->head.pending += x->delivered - before;
    xdp_flush(x); /* chunks of frames we counted and skipped go straight back */
    return (int)n;
}

static void xdp_kick(xdp_source *x)
{
    /* A syscall only when the kernel asked (need_wakeup) or busy polling drives the NAPI loop. */
    if (x->busy_poll || xsk_ring_prod__needs_wakeup(&x->fill)) {
        recvfrom(x->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        x->x.wakeups++;
    }
}

static int xdp_read_any(void *src, efsdk_frame *out, uint32_t max) { return xdp_read(src, out, max); }

static int xdp_wait_step(void *src, int64_t left_ns)
{
    xdp_source *x = src;
    if (x->flags & EFSDK_CFG_BUSY_POLL) {
        xdp_kick(x); /* spin, waking the driver when it asks */
        return EFSDK_WAIT_READY;
    }
    if (x->fifo_count >= x->n_frames)
        return EFSDK_WAIT_STOP; /* every chunk held by unreleased frames: the kernel has none to fill */
    int w = efsdk_wait_fd(x->fd, left_ns); /* xsk_poll also wakes the driver when it needs it */
    return w < 0 ? w : EFSDK_WAIT_READY;
}

static int xdp_poll(efsdk_source *s, efsdk_frame *out, uint32_t max, int64_t timeout_ns)
{
    xdp_source *x = (xdp_source *)s;
    xdp_flush(x);
    if (max == 0)
        return 0;
    int n = xdp_read(x, out, max);
    if (n != 0)
        return n;
    xdp_kick(x);
    if (timeout_ns == 0)
        return 0;
    return efsdk_wait_for_frames(x, xdp_read_any, xdp_wait_step, out, max, timeout_ns);
}

static int xdp_release(efsdk_source *s, uint32_t n)
{
    xdp_source *x = (xdp_source *)s;
    x->released += n;
    s->pending -= n;
    xdp_flush(x);
    return 0;
}

static int xdp_refresh_stats(efsdk_source *s)
{
    xdp_source *x = (xdp_source *)s;
    if (x->fd < 0)
        return 0;
    struct xdp_statistics xs = {0};
    socklen_t len = sizeof xs;
    if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &xs, &len) < 0)
        return -errno;
    uint64_t prog[EFSDK_AFXDP_N_COUNTERS] = {0};
    uint32_t key = 0;
    if (x->cnt_fd >= 0 && bpf_map_lookup_elem(x->cnt_fd, &key, prog) < 0)
        return -errno;
    /* Cumulative kernel counters: fold in what is new since the last refresh. */
    efsdk_source_stats *st = &s->stats;
#define DELTA(now, seen) ((now) - (seen))
    uint64_t lost = DELTA(xs.rx_dropped, x->k_dropped) + DELTA(xs.rx_ring_full, x->k_ring_full) +
                    DELTA(prog[EFSDK_AFXDP_CNT_OTHER_QUEUE], x->k_prog[EFSDK_AFXDP_CNT_OTHER_QUEUE]) +
                    DELTA(prog[EFSDK_AFXDP_CNT_NO_SOCKET], x->k_prog[EFSDK_AFXDP_CNT_NO_SOCKET]);
    st->kernel_drops += lost;
    st->non_udp += DELTA(prog[EFSDK_AFXDP_CNT_NON_UDP], x->k_prog[EFSDK_AFXDP_CNT_NON_UDP]);
    st->fragments += DELTA(prog[EFSDK_AFXDP_CNT_FRAGMENT], x->k_prog[EFSDK_AFXDP_CNT_FRAGMENT]);
    st->malformed += DELTA(prog[EFSDK_AFXDP_CNT_SHORT], x->k_prog[EFSDK_AFXDP_CNT_SHORT]);
    st->filtered += DELTA(prog[EFSDK_AFXDP_CNT_FILTERED], x->k_prog[EFSDK_AFXDP_CNT_FILTERED]);
    st->truncated += DELTA(prog[EFSDK_AFXDP_CNT_TRUNC_FAIL], x->k_prog[EFSDK_AFXDP_CNT_TRUNC_FAIL]);
#undef DELTA
    x->k_dropped = xs.rx_dropped;
    x->k_ring_full = xs.rx_ring_full;
    memcpy(x->k_prog, prog, sizeof prog);
    st->kernel_packets = x->x.descs + xs.rx_dropped + xs.rx_ring_full;
    x->xs = xs;
    memcpy(x->prog_now, prog, sizeof prog);
    return 0;
}

static void xdp_close(efsdk_source *s)
{
    xdp_source *x = (xdp_source *)s;
    /* Reverse of the open order. */
    if (x->join_fd >= 0) { /* closing drops the memberships */
        close(x->join_fd);
        x->join_fd = -1;
    }
    if (x->link_fd >= 0) { /* detaches the program: the kernel gets every frame again */
        close(x->link_fd);
        x->link_fd = -1;
    }
    if (x->xsk != NULL) { /* also leaves xsks_map */
        xsk_socket__delete(x->xsk);
        x->xsk = NULL;
    }
    x->fd = -1;
    if (x->prog_fd >= 0) {
        close(x->prog_fd);
        x->prog_fd = -1;
    }
    if (x->cnt_fd >= 0) {
        close(x->cnt_fd);
        x->cnt_fd = -1;
    }
    if (x->xsks_fd >= 0) {
        close(x->xsks_fd);
        x->xsks_fd = -1;
    }
    if (x->umem != NULL) {
        (void)xsk_umem__delete(x->umem); /* -EBUSY only while a socket uses it: deleted above */
        x->umem = NULL;
    }
    if (x->area != NULL) {
        munmap(x->area, x->area_len);
        x->area = NULL;
    }
    free(x->fifo);
    x->fifo = NULL;
}

static const efsdk_source_ops xdp_ops = {
    .poll = xdp_poll,
    .release = xdp_release,
    .refresh_stats = xdp_refresh_stats,
    .close = xdp_close,
};

/* ------------------------------------------------------------------ open */

static void set_err(const efsdk_afxdp_config *cfg, const char *fmt, ...)
{
    if (cfg->errbuf == NULL || cfg->errbuf_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->errbuf, cfg->errbuf_len, fmt, ap);
    va_end(ap);
}

static int pow2(uint32_t v) { return v && !(v & (v - 1)); }

/* Load the program; on a verifier refusal keep the end of its log for the error message. */
static int load_prog(xdp_source *x, const efsdk_afxdp_config *cfg, xasm *a, int tai)
{
    uint32_t limit = x->frame_size - XSK_HEADROOM;
    int rc = build_prog(a, cfg->feeds, cfg->n_feeds, cfg->queue_id, limit,
                        x->xsks_fd, x->cnt_fd, tai);
    if (rc < 0)
        return rc;
    LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = BPF_XDP);
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "efsdk_xsk", EFSDK_XDP_LICENSE, a->ins, a->n, &o);
    if (fd >= 0)
        return fd;
    rc = -errno;
    if (cfg->errbuf && cfg->errbuf_len) {
        size_t log_len = 1 << 16;
        char *log = calloc(1, log_len);
        if (log != NULL) {
            LIBBPF_OPTS(bpf_prog_load_opts, o2, .expected_attach_type = BPF_XDP, .log_buf = log,
                        .log_size = (uint32_t)log_len, .log_level = 1);
            int fd2 = bpf_prog_load(BPF_PROG_TYPE_XDP, "efsdk_xsk", EFSDK_XDP_LICENSE, a->ins, a->n, &o2);
            if (fd2 >= 0)
                close(fd2);
            size_t l = strlen(log);
            const char *tail = l > 400 ? log + l - 400 : log;
            set_err(cfg, "verifier: %s", tail);
            free(log);
        }
    }
    return rc;
}

int efsdk_afxdp_open(const efsdk_afxdp_config *cfg, efsdk_source **out, int *stage)
{
    int st_dummy;
    if (stage == NULL)
        stage = &st_dummy;
    *stage = EFSDK_AFXDP_STAGE_CONFIG;
    if (out != NULL)
        *out = NULL;
    if (cfg == NULL || out == NULL || cfg->iface[0] == '\0' || memchr(cfg->iface, 0, sizeof cfg->iface) == NULL)
        return -EINVAL;
    if ((cfg->frame_size != 2048 && cfg->frame_size != 4096) || cfg->n_frames < 64 || cfg->n_frames > (1u << 22) ||
        !pow2(cfg->fill_size) || !pow2(cfg->comp_size) || !pow2(cfg->rx_size) || cfg->bind_mode > 2 ||
        cfg->xdp_mode > 2 || cfg->n_feeds == 0 || cfg->n_feeds > EFSDK_MAX_FEEDS || cfg->feeds == NULL ||
        cfg->busy_poll_us < 0)
        return -EINVAL;
    for (uint32_t i = 0; i < cfg->n_feeds; i++)
        if (cfg->feeds[i].addr == 0 && cfg->feeds[i].port == 0)
            return -EINVAL; /* "all UDP" would steal DNS & co. from the kernel */

    xdp_source *x = calloc(1, sizeof *x);
    if (x == NULL)
        return -ENOMEM;
    x->head.ops = &xdp_ops;
    x->head.backend = 0; /* not in frame_source.h's switch: opened through this module only */
    x->fd = x->xsks_fd = x->cnt_fd = x->prog_fd = x->link_fd = x->join_fd = -1;
    x->flags = cfg->flags;
    x->frame_size = cfg->frame_size;
    x->n_frames = cfg->n_frames;
    x->busy_poll = cfg->busy_poll_us > 0;
    x->x.queue_id = cfg->queue_id;
    x->x.frame_size = cfg->frame_size;
    x->x.n_frames = cfg->n_frames;
    x->x.need_wakeup = cfg->need_wakeup ? 1 : 0;
    int rc = 0;
    xasm *a = NULL;

    *stage = EFSDK_AFXDP_STAGE_IFACE;
    x->ifindex = (int)if_nametoindex(cfg->iface);
    if (x->ifindex == 0) {
        rc = -ENODEV;
        goto fail;
    }
    *stage = EFSDK_AFXDP_STAGE_MEM;
    x->fifo = calloc(x->n_frames, sizeof *x->fifo);
    if (x->fifo == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    x->area_len = (size_t)x->n_frames * x->frame_size;
    x->area = mmap(NULL, x->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->area == MAP_FAILED) {
        x->area = NULL;
        goto fail_errno;
    }

    *stage = EFSDK_AFXDP_STAGE_UMEM;
    struct xsk_umem_config uc = {
        .fill_size = cfg->fill_size,
        .comp_size = cfg->comp_size,
        .frame_size = cfg->frame_size,
        .frame_headroom = 0,
        .flags = 0,
    };
    rc = xsk_umem__create(&x->umem, x->area, x->area_len, &x->fill, &x->comp, &uc);
    if (rc < 0) {
        x->umem = NULL;
        goto fail;
    }
    /* Every chunk the fill ring takes goes to the kernel; the rest wait in the FIFO as free. */
    uint32_t posted = x->n_frames < cfg->fill_size ? x->n_frames : cfg->fill_size;
    uint32_t idx;
    if (xsk_ring_prod__reserve(&x->fill, posted, &idx) != posted) {
        rc = -ENOSPC;
        goto fail;
    }
    for (uint32_t i = 0; i < posted; i++)
        *xsk_ring_prod__fill_addr(&x->fill, idx + i) = (uint64_t)i * x->frame_size;
    xsk_ring_prod__submit(&x->fill, posted);
    for (uint32_t i = posted; i < x->n_frames; i++)
        hold(x, (uint64_t)i * x->frame_size); /* end 0: free */

    *stage = EFSDK_AFXDP_STAGE_MAPS;
    x->xsks_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "efsdk_xsks", 4, 4, cfg->queue_id + 1, NULL);
    if (x->xsks_fd < 0)
        goto fail_errno;
    x->cnt_fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "efsdk_xdpcnt", 4, 8 * EFSDK_AFXDP_N_COUNTERS, 1, NULL);
    if (x->cnt_fd < 0)
        goto fail_errno;

    *stage = EFSDK_AFXDP_STAGE_PROG;
    a = malloc(sizeof *a);
    if (a == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    x->x.tai_clock = 1;
    x->prog_fd = load_prog(x, cfg, a, 1);
    if (x->prog_fd == -EINVAL) { /* bpf_ktime_get_tai_ns is Linux >= 6.1: monotonic, converted per batch */
        x->x.tai_clock = 0;
        x->prog_fd = load_prog(x, cfg, a, 0);
    }
    if (x->prog_fd < 0) {
        rc = x->prog_fd;
        x->prog_fd = -1;
        goto fail;
    }
    x->x.prog_insns = a->n;
    struct bpf_prog_info info;
    uint32_t info_len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(x->prog_fd, &info, &info_len) == 0)
        x->x.prog_id = info.id;

    *stage = EFSDK_AFXDP_STAGE_SOCKET;
    struct xsk_socket_config sc = {
        .rx_size = cfg->rx_size,
        .tx_size = 0,
        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD, /* our program, not libxdp's default */
        .xdp_flags = 0,
        .bind_flags = (uint16_t)((cfg->bind_mode == EFSDK_AFXDP_BIND_COPY       ? XDP_COPY
                                  : cfg->bind_mode == EFSDK_AFXDP_BIND_ZEROCOPY ? XDP_ZEROCOPY
                                                                                : 0) |
                                 (cfg->need_wakeup ? XDP_USE_NEED_WAKEUP : 0)),
    };
    rc = xsk_socket__create(&x->xsk, cfg->iface, cfg->queue_id, x->umem, &x->rx, NULL, &sc);
    if (rc < 0) {
        x->xsk = NULL;
        goto fail;
    }
    x->fd = xsk_socket__fd(x->xsk);
    struct xdp_options opts = {0};
    socklen_t ol = sizeof opts;
    if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opts, &ol) == 0)
        x->x.zerocopy = (opts.flags & XDP_OPTIONS_ZEROCOPY) ? 1 : 0;

    *stage = EFSDK_AFXDP_STAGE_XSKMAP;
    uint32_t q = cfg->queue_id;
    if (bpf_map_update_elem(x->xsks_fd, &q, &x->fd, 0) < 0)
        goto fail_errno;

    *stage = EFSDK_AFXDP_STAGE_ATTACH;
    static const uint32_t modes[] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    uint32_t first = cfg->xdp_mode == EFSDK_AFXDP_XDP_SKB ? 1 : 0;
    uint32_t last = cfg->xdp_mode == EFSDK_AFXDP_XDP_NATIVE ? 0 : 1;
    for (uint32_t m = first; m <= last; m++) {
        LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = modes[m]);
        x->link_fd = bpf_link_create(x->prog_fd, x->ifindex, BPF_XDP, &lo);
        if (x->link_fd >= 0) {
            x->x.xdp_mode = m == 0 ? EFSDK_AFXDP_XDP_NATIVE : EFSDK_AFXDP_XDP_SKB;
            break;
        }
        rc = -errno;
        if (rc == -EBUSY || rc == -EEXIST)
            break; /* another XDP program holds the interface: skb mode would not help */
    }
    if (x->link_fd < 0) {
        x->link_fd = -1;
        goto fail;
    }

    *stage = EFSDK_AFXDP_STAGE_SOCKOPT;
    if (cfg->busy_poll_us > 0) {
        int one = 1, us = cfg->busy_poll_us, budget = cfg->batch ? (int)cfg->batch : 64;
        if (setsockopt(x->fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof one) < 0 ||
            setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof us) < 0 ||
            setsockopt(x->fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof budget) < 0)
            goto fail_errno;
    }

    *stage = EFSDK_AFXDP_STAGE_JOIN;
    if ((rc = efsdk_join_groups(&x->join_fd, cfg->feeds, cfg->n_feeds, x->ifindex, 0)) < 0)
        goto fail;
    x->clk_off = clock_offset((int)x->x.tai_clock);
    free(a);
    *out = &x->head;
    return 0;

fail_errno:
    rc = -errno;
fail:
    free(a);
    efsdk_source_free(&x->head);
    return rc < 0 ? rc : -EIO;
}

int efsdk_afxdp_get_stats(efsdk_source *s, efsdk_afxdp_stats *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    xdp_source *x = (xdp_source *)s;
    if (!s->closed) {
        int rc = xdp_refresh_stats(s);
        if (rc < 0)
            return rc;
        x->x.fill_level = *x->fill.producer - __atomic_load_n(x->fill.consumer, __ATOMIC_ACQUIRE);
    }
    x->x.rx_dropped = x->xs.rx_dropped;
    x->x.rx_invalid_descs = x->xs.rx_invalid_descs;
    x->x.rx_ring_full = x->xs.rx_ring_full;
    x->x.rx_fill_ring_empty_descs = x->xs.rx_fill_ring_empty_descs;
    memcpy(x->x.prog, x->prog_now, sizeof x->x.prog);
    *out = x->x;
    return 0;
}

/* Tests: the program this module would load for `cfg` (no kernel needed); instructions or -errno. */
int efsdk_afxdp_prog_size(uint32_t n_feeds)
{
    efsdk_feed feeds[EFSDK_MAX_FEEDS];
    if (n_feeds == 0 || n_feeds > EFSDK_MAX_FEEDS)
        return -EINVAL;
    for (uint32_t i = 0; i < n_feeds; i++) {
        feeds[i].addr = htonl(0xEF000001u + i);
        feeds[i].port = (uint16_t)(20000 + i);
        feeds[i].reserved = 0;
    }
    xasm *a = malloc(sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    int rc = build_prog(a, feeds, n_feeds, 0, 2048 - XSK_HEADROOM, 3, 4, 1);
    int n = rc < 0 ? rc : (int)a->n;
    free(a);
    return n;
}

const char *efsdk_afxdp_libbpf_version(void) { return libbpf_version_string(); }

int efsdk_afxdp_version(void) { return EFSDK_AFXDP_VERSION * 1000 + EFSDK_SOURCES_VERSION; }
