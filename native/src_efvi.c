/*
 * ef_vi frame source (Solarflare/AMD EF10 and X3/efct NICs), built as its own
 * optional module efsdk._native_efvi (native/build_efvi.py): it needs the
 * Onload headers <etherfabric/...> and libciul, which most machines lack.
 *
 * Same contract as the other backends (frame_source.h): open -> poll(max,
 * timeout) -> zero-copy efsdk_frame descriptors -> release(n) (oldest first)
 * -> idempotent close.  The handle is an efsdk_source head followed by the
 * ef_vi state; it is calloc'ed once and never moves (ef_vi keeps pointers into
 * its own struct and into mapped NIC memory).
 *
 * Receive paths:
 *   EF10 (X2, SFN8000): we own 2 KiB packet buffers in registered memory and
 *     post them to the RX ring; RX / RX_MULTI (event merge) events name the
 *     buffer id.  The RX prefix (timestamp etc.) precedes the Ethernet header.
 *   X3/efct (EF_VI_CAP_RX_REF): the kernel owns the buffers; RX_REF events
 *     carry a pkt_id, efct_vi_rxpkt_get() gives the Ethernet header and
 *     efct_vi_rxpkt_release() hands it back (done on release()).  Not tested
 *     on hardware.
 *
 * Every function returns 0 / a count or -errno; nothing aborts, allocates in
 * poll, or calls back into Python.  A RESET event (NIC reset / VI torn down
 * by the driver) makes every later poll return -ENETRESET: close and reopen.
 *
 * The hot-path ef_vi calls (ef_eventq_poll, ef_vi_receive_init/push, the
 * timestamp call, EF_EVENT_* accessors, ef_memreg_dma_addr) are macros or
 * inlines that libciul does not export: that is why this is a C shim and not
 * ABI-mode cffi.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <etherfabric/capabilities.h>
#include <etherfabric/ef_vi.h>
#include <etherfabric/efct_vi.h>
#include <etherfabric/memreg.h>
#include <etherfabric/pd.h>
#include <etherfabric/vi.h>

#include "frame_source.h"
#include "mcast_join.h"
#include "netparse.h"

#define EFSDK_EFVI_VERSION 3 /* bump on any change of the structs below / semantics */

/* 2 KiB buffers: the NIC's DMA addresses are contiguous only within a 4 KiB page. */
#define EFVI_BUF_SIZE 2048
/* DMA starts EF_VI_DMA_ALIGN into each buffer (cache-line aligned, as the examples do). */
#define EFVI_DMA_OFF EF_VI_DMA_ALIGN
/* Events taken per ef_eventq_poll (>= 2 required; 32 is what the examples use). */
#define EFVI_EV_BATCH 32
/* Post buffers in batches: one doorbell (receive_push) per batch. */
#define EFVI_REFILL_BATCH 16
/* X3: frames (pkt_ids) the ready/held rings hold; plenty above one poll's worth. */
#define EFVI_REF_RING 4096
/* Huge page size tried first for the packet buffers (fewer IOMMU/TLB entries). */
#define EFVI_HUGE (2u << 20)

/* Open stages, reported to Python so it can say which step failed and why. */
#define EFSDK_EFVI_STAGE_CONFIG 1
#define EFSDK_EFVI_STAGE_DRIVER 2  /* ef_driver_open: -ENOENT = no /dev/sfc_char */
#define EFSDK_EFVI_STAGE_PD 3      /* ef_pd_alloc_by_name */
#define EFSDK_EFVI_STAGE_VI 4      /* ef_vi_alloc_from_pd */
#define EFSDK_EFVI_STAGE_MEM 5     /* packet buffer memory */
#define EFSDK_EFVI_STAGE_MEMREG 6  /* ef_memreg_alloc */
#define EFSDK_EFVI_STAGE_POST 7    /* initial ring fill */
#define EFSDK_EFVI_STAGE_FILTER 8  /* ef_vi_filter_add */
#define EFSDK_EFVI_STAGE_JOIN 9    /* IP_ADD_MEMBERSHIP on the kernel socket */

/* efsdk_efvi_config.efvi_flags */
#define EFSDK_EFVI_EVENT_MERGE 0x1u   /* EF_VI_RX_EVENT_MERGE from the start */
#define EFSDK_EFVI_NO_JOIN 0x2u       /* do not join multicast groups (someone else does) */
#define EFSDK_EFVI_NO_SW_FILTER 0x4u  /* deliver whatever the NIC filters pass */
#define EFSDK_EFVI_MULTICAST_ALL 0x8u /* also a multicast-all NIC filter */
/* Datapath, in efvi_flags here and in efsdk_efvi_tx_config.flags: neither bit = express
 * where EF_VI_CAP_EXTRA_DATAPATHS offers it (as Onload's examples default to). */
#define EFSDK_EFVI_DATAPATH_ENTERPRISE 0x10u /* never EF_PD_EXPRESS */
#define EFSDK_EFVI_DATAPATH_EXPRESS 0x20u    /* EF_PD_EXPRESS or fail (-EOPNOTSUPP) */

/* MAC (eth_local) filters per source. */
#define EFVI_MAX_MACS 8

/* Held-ring entries: EF10 buffer id, or X3 pkt_id. */
typedef struct efvi_rdy {
    uint32_t id;
    uint32_t len;   /* Ethernet frame bytes (prefix removed) */
    uint64_t ts_ns;
    uint8_t ts_kind;
    uint8_t ts_flags; /* EFSDK_FRAME_TS_* */
} efvi_rdy;

typedef struct efsdk_efvi_config {
    char iface[16];           /* physical interface (not a bond / VLAN) */
    uint32_t flags;           /* EFSDK_CFG_BUSY_POLL | _HW_TIMESTAMPS | _KEEP_TRUNCATED */
    uint32_t efvi_flags;      /* EFSDK_EFVI_* (filters, datapath) */
    uint32_t pd_flags;        /* EF_PD_* */
    int32_t rxq_size;         /* RX descriptors; -1 = driver default (512) */
    int32_t evq_size;         /* event queue entries; -1 = default */
    uint32_t n_bufs;          /* EF10 packet buffers; 0 = rxq capacity + 2 x 256 */
    uint32_t iface_addr;      /* IPv4 of iface for IP_ADD_MEMBERSHIP (network order); 0 = by index */
    uint32_t n_feeds;
    const efsdk_feed *feeds;  /* (group/address, port): NIC filters + software check */
    uint32_t n_macs;
    const uint8_t *macs;      /* n_macs x 6 bytes: eth_local NIC filters (any VLAN) */
} efsdk_efvi_config;

typedef struct efsdk_efvi_stats {
    uint64_t discard[EF_EVENT_RX_DISCARD_MAX]; /* by EF_EVENT_RX_DISCARD_* subtype */
    uint64_t no_desc_trunc; /* RX_NO_DESC_TRUNC: frames cut because the ring ran dry */
    uint64_t oflow;         /* event queue overflows (events lost) */
    uint64_t jumbo;         /* frames spanning several buffers (dropped, counted in truncated) */
    uint64_t ts_errors;     /* timestamp unavailable (not synced yet: ENOMSG, ...) */
    uint64_t resets;        /* RESET events (the VI is dead after one) */
    uint64_t unknown_events;
    uint32_t fill_level;    /* RX descriptors posted now */
    uint32_t rx_ref;        /* 1: X3/efct receive model */
    uint32_t prefix_len;    /* RX prefix bytes before the Ethernet header */
    uint32_t n_bufs;
    uint32_t express;       /* 1: the PD uses the express datapath */
} efsdk_efvi_stats;

/* Resource bits, set in dependency order and undone in reverse. */
#define R_DRIVER 0x01u
#define R_PD 0x02u
#define R_VI 0x04u
#define R_MEM 0x08u
#define R_MEMREG 0x10u

typedef struct efvi_source {
    efsdk_source head; /* first: efsdk_source_free() frees the whole struct */
    ef_driver_handle dh;
    ef_pd pd;
    ef_vi vi;
    ef_memreg mr;
    uint32_t res;
    int rx_ref;          /* X3/efct model */
    int fatal;           /* -errno once the VI is unusable (RESET) */
    uint32_t cfg_flags, efvi_flags;
    uint32_t prefix_len;
    /* EF10 buffers */
    uint8_t *mem;
    size_t mem_len;
    int mem_mmap;
    uint32_t n_bufs;
    uint32_t *free_ids; /* stack of buffer ids not posted nor held */
    uint32_t n_free;
    /* frames turned from events, not yet handed out (FIFO) */
    efvi_rdy *rdy;
    uint32_t rdy_cap, rdy_head, rdy_n;
    /* frames handed out, not yet released (FIFO, delivery order) */
    uint32_t *held;
    uint32_t held_cap, held_head;
    /* filters and multicast joins */
    ef_filter_cookie cookies[EFSDK_MAX_FEEDS + EFVI_MAX_MACS + 1];
    uint32_t n_cookies;
    int mcast_fd;
    efsdk_feed feeds[EFSDK_MAX_FEEDS];
    uint32_t n_feeds;
    efsdk_efvi_stats xs;
} efvi_source;

static inline uint8_t *buf_ptr(efvi_source *s, uint32_t id) { return s->mem + (size_t)id * EFVI_BUF_SIZE + EFVI_DMA_OFF; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ buffers */

/*
 * Packet buffer memory for len bytes: huge pages when reserved, else 2 MiB
 * aligned (transparent huge pages may back it), never inherited by fork.
 * Shared with the transmit side (efvi_tx.c).
 */
static int efvi_alloc_dma(size_t len, uint8_t **mem, size_t *mem_len, int *mmapped)
{
    size_t huge_len = (len + EFVI_HUGE - 1) & ~(size_t)(EFVI_HUGE - 1);
    void *p = mmap(NULL, huge_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p != MAP_FAILED) {
        *mmapped = 1;
    } else {
        if (posix_memalign(&p, EFVI_HUGE, huge_len) != 0)
            return -ENOMEM;
        *mmapped = 0;
    }
    *mem = p;
    *mem_len = huge_len;
    (void)madvise(p, huge_len, MADV_DONTFORK); /* pinned DMA memory must not be COW'ed by fork */
    return 0;
}

static void efvi_free_dma(uint8_t **mem, size_t mem_len, int mmapped)
{
    if (mmapped)
        munmap(*mem, mem_len);
    else
        free(*mem);
    *mem = NULL;
}

/* Post free buffers while the ring has room; one push per call. */
static int efvi_refill(efvi_source *s, int force)
{
    if (s->rx_ref)
        return 0;
    int space = ef_vi_receive_space(&s->vi);
    /* batch the doorbell, unless the ring is nearly dry: then post whatever there is */
    int low = ef_vi_receive_fill_level(&s->vi) < EFVI_REFILL_BATCH;
    if (!force && !low && (s->n_free < EFVI_REFILL_BATCH || space < EFVI_REFILL_BATCH))
        return 0;
    int posted = 0;
    while (space > 0 && s->n_free > 0) {
        uint32_t id = s->free_ids[--s->n_free];
        ef_addr a = ef_memreg_dma_addr(&s->mr, (size_t)id * EFVI_BUF_SIZE + EFVI_DMA_OFF);
        int rc = ef_vi_receive_init(&s->vi, a, (ef_request_id)id);
        if (rc < 0) {
            s->free_ids[s->n_free++] = id;
            if (posted)
                ef_vi_receive_push(&s->vi);
            return rc;
        }
        posted++;
        space--;
    }
    if (posted)
        ef_vi_receive_push(&s->vi);
    return posted;
}

/* A frame that never reaches the caller goes straight back. */
static inline void efvi_drop(efvi_source *s, uint32_t id)
{
    if (s->rx_ref) {
        if (!s->fatal) /* after a RESET the VI's packets are gone with it */
            efct_vi_rxpkt_release(&s->vi, id);
    } else
        s->free_ids[s->n_free++] = id;
}

static inline void rdy_push(efvi_source *s, uint32_t id, uint32_t len, const void *dma_start)
{
    efvi_rdy *r = &s->rdy[(s->rdy_head + s->rdy_n++) % s->rdy_cap];
    r->id = id;
    r->len = len;
    r->ts_ns = 0;
    r->ts_kind = EFSDK_TS_NONE;
    r->ts_flags = 0;
    if (s->cfg_flags & EFSDK_CFG_HW_TIMESTAMPS) {
        /* Valid only between this event and the next ef_eventq_poll: read it now. */
        ef_precisetime pt;
        if (ef_vi_receive_get_precise_timestamp(&s->vi, dma_start, &pt) == 0) {
            r->ts_ns = (uint64_t)pt.tv_sec * 1000000000ull + pt.tv_nsec;
            r->ts_kind = EFSDK_TS_HW;
            r->ts_flags = (pt.tv_flags & EF_VI_SYNC_FLAG_CLOCK_SET ? EFSDK_FRAME_TS_CLOCK_SET : 0) |
                          (pt.tv_flags & EF_VI_SYNC_FLAG_CLOCK_IN_SYNC ? EFSDK_FRAME_TS_IN_SYNC : 0);
        } else {
            s->xs.ts_errors++;
        }
    }
}

/* ------------------------------------------------------------------ events */

static void count_discard(efvi_source *s, unsigned subtype)
{
    s->xs.discard[subtype < EF_EVENT_RX_DISCARD_MAX ? subtype : EF_EVENT_RX_DISCARD_OTHER]++;
    s->head.stats.kernel_drops++;
}

/* Turn one batch of events into ready frames; returns -errno on a fatal event. */
static int efvi_events(efvi_source *s)
{
    ef_event evs[EFVI_EV_BATCH];
    ef_request_id ids[EF_VI_RECEIVE_BATCH];
    int n = ef_eventq_poll(&s->vi, evs, EFVI_EV_BATCH);
    for (int i = 0; i < n; i++) {
        const ef_event *ev = &evs[i];
        switch (EF_EVENT_TYPE(*ev)) {
        case EF_EVENT_TYPE_RX: {
            uint32_t id = EF_EVENT_RX_RQ_ID(*ev);
            if (!EF_EVENT_RX_SOP(*ev) || EF_EVENT_RX_CONT(*ev)) {
                /* part of a frame larger than one buffer: not reassembled */
                if (EF_EVENT_RX_SOP(*ev)) {
                    s->xs.jumbo++;
                    s->head.stats.truncated++;
                }
                efvi_drop(s, id);
                break;
            }
            uint32_t bytes = EF_EVENT_RX_BYTES(*ev); /* includes the prefix */
            rdy_push(s, id, bytes > s->prefix_len ? bytes - s->prefix_len : 0, buf_ptr(s, id));
            break;
        }
        case EF_EVENT_TYPE_RX_MULTI:
        case EF_EVENT_TYPE_RX_MULTI_DISCARD: {
            int discard = EF_EVENT_TYPE(*ev) == EF_EVENT_TYPE_RX_MULTI_DISCARD;
            int m = ef_vi_receive_unbundle(&s->vi, ev, ids);
            for (int j = 0; j < m; j++) {
                uint32_t id = (uint32_t)ids[j];
                uint16_t len = 0;
                if (discard || ef_vi_receive_get_bytes(&s->vi, buf_ptr(s, id), &len) < 0) {
                    count_discard(s, discard ? EF_EVENT_RX_MULTI_DISCARD_TYPE(*ev) : EF_EVENT_RX_DISCARD_OTHER);
                    efvi_drop(s, id);
                } else if (len > EFVI_BUF_SIZE - EFVI_DMA_OFF - s->prefix_len) {
                    s->xs.jumbo++; /* the rest sits in the next buffers: not reassembled */
                    s->head.stats.truncated++;
                    efvi_drop(s, id);
                } else {
                    rdy_push(s, id, len, buf_ptr(s, id));
                }
            }
            break;
        }
        case EF_EVENT_TYPE_RX_DISCARD:
            count_discard(s, EF_EVENT_RX_DISCARD_TYPE(*ev));
            efvi_drop(s, EF_EVENT_RX_DISCARD_RQ_ID(*ev));
            break;
        case EF_EVENT_TYPE_RX_NO_DESC_TRUNC:
            s->xs.no_desc_trunc++;
            s->head.stats.truncated++;
            break;
        case EF_EVENT_TYPE_RX_REF: {
            uint32_t id = ev->rx_ref.pkt_id;
            const void *pkt = efct_vi_rxpkt_get(&s->vi, id);
            rdy_push(s, id, ev->rx_ref.len, pkt);
            break;
        }
        case EF_EVENT_TYPE_RX_REF_DISCARD:
            count_discard(s, ef_vi_get_rx_discard_subtype_from_flags(ev->rx_ref_discard.flags));
            efct_vi_rxpkt_release(&s->vi, ev->rx_ref_discard.pkt_id);
            break;
        case EF_EVENT_TYPE_OFLOW:
            s->xs.oflow++;
            s->head.stats.kernel_drops++;
            break;
        case EF_EVENT_TYPE_RESET:
            s->xs.resets++;
            s->fatal = -ENETRESET;
            return s->fatal;
        case EF_EVENT_TYPE_TX:
        case EF_EVENT_TYPE_TX_ERROR:
        case EF_EVENT_TYPE_TX_WITH_TIMESTAMP:
        case EF_EVENT_TYPE_SW:
            break; /* no TX queue is allocated; nothing to do */
        default:
            s->xs.unknown_events++;
            break;
        }
    }
    return 0;
}

/* Parse ready frames into out[] until it is full; returns frames written. */
static uint32_t efvi_deliver(efvi_source *s, efsdk_frame *out, uint32_t max)
{
    uint32_t k = 0;
    while (k < max && s->rdy_n) {
        efvi_rdy r = s->rdy[s->rdy_head];
        s->rdy_head = (s->rdy_head + 1) % s->rdy_cap;
        s->rdy_n--;
        const uint8_t *eth = s->rx_ref ? efct_vi_rxpkt_get(&s->vi, r.id) : buf_ptr(s, r.id) + s->prefix_len;
        efsdk_udp_view v;
        int pr = efsdk_parse_udp(eth, r.len, r.len, &v);
        efsdk_source_stats *st = &s->head.stats;
        if (v.vlan)
            st->vlan++;
        if (pr != EFSDK_PARSE_OK) {
            if (pr == EFSDK_PARSE_NON_UDP)
                st->non_udp++;
            else if (pr == EFSDK_PARSE_FRAGMENT)
                st->fragments++;
            else
                st->malformed++; /* caplen == wire_len: a cut frame is malformed */
            efvi_drop(s, r.id);
            continue;
        }
        if (!(s->efvi_flags & EFSDK_EFVI_NO_SW_FILTER) && s->n_feeds) {
            /* NIC filters may be shared (Onload stacks, other VIs): check ours. */
            uint32_t f;
            for (f = 0; f < s->n_feeds; f++)
                if ((!s->feeds[f].addr || s->feeds[f].addr == v.dst_addr) &&
                    (!s->feeds[f].port || s->feeds[f].port == v.dst_port))
                    break;
            if (f == s->n_feeds) {
                st->filtered++;
                efvi_drop(s, r.id);
                continue;
            }
        }
        efsdk_frame *fr = &out[k++];
        fr->data = eth + v.payload_off;
        fr->frame = eth;
        fr->ts_ns = r.ts_ns;
        fr->len = v.payload_len;
        fr->orig_len = v.udp_len;
        fr->frame_len = r.len;
        fr->flags = EFSDK_FRAME_RAW | (v.vlan ? EFSDK_FRAME_VLAN : 0) |
                    ((ntohl(v.dst_addr) >> 28) == 0xE ? EFSDK_FRAME_MULTICAST : 0) | r.ts_flags;
        fr->src_addr = v.src_addr;
        fr->dst_addr = v.dst_addr;
        fr->src_port = v.src_port;
        fr->dst_port = v.dst_port;
        fr->vlan_tci = v.vlan_tci;
        fr->ts_kind = r.ts_kind;
        fr->reserved = 0;
        s->held[(s->held_head + s->head.pending++) % s->held_cap] = r.id;
        st->frames++;
        st->bytes += v.payload_len;
    }
    return k;
}

/*
 * Sleep until the event queue has something or left_ns pass: prime the VI
 * (enables its wakeup interrupt; the current pointer covers events that raced
 * in) and poll() the driver fd.  ef_eventq_wait() is not used: libciul says
 * it is of limited use (NIC 0 only on EF10).  0 on wakeup / timeout, 1 on
 * EINTR, -errno on failure.
 */
static int efvi_wait(efvi_source *s, uint64_t left_ns)
{
    int rc = ef_vi_prime(&s->vi, s->dh, ef_eventq_current(&s->vi));
    if (rc < 0)
        return rc;
    struct pollfd p = {.fd = s->dh, .events = POLLIN};
    struct timespec t = {.tv_sec = (time_t)(left_ns / 1000000000ull), .tv_nsec = (long)(left_ns % 1000000000ull)};
    if (ppoll(&p, 1, left_ns == UINT64_MAX ? NULL : &t, NULL) < 0)
        return errno == EINTR ? 1 : -errno;
    return 0;
}

static int efvi_poll(efsdk_source *src, efsdk_frame *out, uint32_t max, int64_t timeout_ns)
{
    efvi_source *s = (efvi_source *)src;
    if (s->fatal)
        return s->fatal;
    if (s->head.pending >= s->held_cap)
        return max ? -ENOBUFS : 0; /* every buffer is held by the caller: release() first */
    if (max > s->held_cap - s->head.pending)
        max = (uint32_t)(s->held_cap - s->head.pending);
    uint64_t deadline = 0;
    for (;;) {
        (void)efvi_refill(s, 0);
        uint32_t k = efvi_deliver(s, out, max);
        if (k == max)
            return (int)k;
        /* X3: keep room for a full event batch of RX_REF frames */
        if (!s->rx_ref || s->rdy_cap - s->rdy_n >= EFVI_EV_BATCH) {
            int rc = efvi_events(s);
            if (rc < 0)
                return k ? (int)k : rc;
        }
        k += efvi_deliver(s, out + k, max - k);
        if (k || timeout_ns == 0)
            return (int)k;
        if (!deadline)
            deadline = timeout_ns < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ns;
        /* a blocking poll (deadline UINT64_MAX) sleeps without limit; EINTR ends it */
        uint64_t now = deadline == UINT64_MAX ? 0 : now_ns();
        if (now >= deadline)
            return 0;
        if (!(s->cfg_flags & EFSDK_CFG_BUSY_POLL)) {
            int rc = efvi_wait(s, deadline - now);
            if (rc < 0)
                return rc;
            if (rc > 0)
                return 0; /* interrupted by a signal: let the caller's handlers run */
        }
    }
}

static int efvi_release(efsdk_source *src, uint32_t n)
{
    efvi_source *s = (efvi_source *)src;
    for (uint32_t i = 0; i < n; i++) {
        efvi_drop(s, s->held[s->held_head]);
        s->held_head = (s->held_head + 1) % s->held_cap;
    }
    s->head.pending -= n;
    if (!s->fatal)
        (void)efvi_refill(s, 0);
    return 0;
}

static int efvi_refresh(efsdk_source *src)
{
    efvi_source *s = (efvi_source *)src;
    if ((s->res & R_VI) && !s->rx_ref)
        s->xs.fill_level = (uint32_t)ef_vi_receive_fill_level(&s->vi);
    return 0;
}

/* Reverse of open; each step runs once (the res bits / fds say what exists). */
static void efvi_close(efsdk_source *src)
{
    efvi_source *s = (efvi_source *)src;
    if (s->rx_ref && (s->res & R_VI) && !s->fatal) {
        /* hand X3 packets back before the VI goes */
        if (s->head.pending)
            (void)efvi_release(src, (uint32_t)s->head.pending);
        for (; s->rdy_n; s->rdy_n--, s->rdy_head = (s->rdy_head + 1) % s->rdy_cap)
            efct_vi_rxpkt_release(&s->vi, s->rdy[s->rdy_head].id);
    }
    if (s->mcast_fd >= 0) {
        close(s->mcast_fd); /* drops the IGMP memberships */
        s->mcast_fd = -1;
    }
    for (uint32_t i = s->n_cookies; i > 0; i--)
        (void)ef_vi_filter_del(&s->vi, s->dh, &s->cookies[i - 1]);
    s->n_cookies = 0;
    if (s->res & R_VI)
        (void)ef_vi_free(&s->vi, s->dh);
    if (s->res & R_MEMREG)
        (void)ef_memreg_free(&s->mr, s->dh);
    if (s->res & R_MEM)
        efvi_free_dma(&s->mem, s->mem_len, s->mem_mmap);
    if (s->res & R_PD)
        (void)ef_pd_free(&s->pd, s->dh);
    if (s->res & R_DRIVER)
        (void)ef_driver_close(s->dh);
    s->res = 0;
    free(s->free_ids);
    free(s->rdy);
    free(s->held);
    s->free_ids = NULL;
    s->rdy = NULL;
    s->held = NULL;
}

static const efsdk_source_ops efvi_ops = {
    .poll = efvi_poll,
    .release = efvi_release,
    .refresh_stats = efvi_refresh,
    .close = efvi_close,
};

/* ------------------------------------------------------------------ open */

/*
 * The first two open stages of both halves (receive, efvi_tx.c): driver
 * handle, then the PD, on the express datapath where the interface offers it
 * unless datapath says otherwise (EFSDK_EFVI_DATAPATH_* bits).  *express
 * tells which one was taken.
 */
static int efvi_open_pd(ef_driver_handle *dh, ef_pd *pd, uint32_t *res, const char *iface, uint32_t pd_flags,
                        uint32_t datapath, uint32_t *express, int *stage)
{
    int rc;
    *stage = EFSDK_EFVI_STAGE_DRIVER;
    if ((rc = ef_driver_open(dh)) < 0)
        return rc;
    *res |= R_DRIVER;
    *stage = EFSDK_EFVI_STAGE_PD;
    if (!(datapath & EFSDK_EFVI_DATAPATH_ENTERPRISE)) {
        unsigned long cap = 0;
        int ifindex = (int)if_nametoindex(iface);
        if (ifindex > 0 && ef_vi_capabilities_get(*dh, ifindex, EF_VI_CAP_EXTRA_DATAPATHS, &cap) == 0 &&
            (cap & EF_VI_EXTRA_DATAPATH_EXPRESS))
            pd_flags |= EF_PD_EXPRESS;
        else if (datapath & EFSDK_EFVI_DATAPATH_EXPRESS)
            return -EOPNOTSUPP;
    }
    if ((rc = ef_pd_alloc_by_name(pd, *dh, iface, (enum ef_pd_flags)pd_flags)) < 0)
        return rc;
    *res |= R_PD;
    *express = (pd_flags & EF_PD_EXPRESS) != 0;
    return 0;
}

static int join_groups(efvi_source *s, const efsdk_efvi_config *cfg)
{
    /* ef_vi filters send no IGMP: an ordinary kernel socket joins for us. */
    return efsdk_join_groups(&s->mcast_fd, s->feeds, s->n_feeds, (int)if_nametoindex(cfg->iface), cfg->iface_addr);
}

static int efvi_open_steps(efvi_source *s, const efsdk_efvi_config *cfg, int *stage)
{
    int rc;
    if ((rc = efvi_open_pd(&s->dh, &s->pd, &s->res, cfg->iface, cfg->pd_flags, cfg->efvi_flags, &s->xs.express,
                           stage)) < 0)
        return rc;

    unsigned long v = 0;
    if (ef_pd_capabilities_get(s->dh, &s->pd, s->dh, EF_VI_CAP_RX_REF, &v) == 0 && v)
        s->rx_ref = 1;
    s->xs.rx_ref = (uint32_t)s->rx_ref;

    *stage = EFSDK_EFVI_STAGE_VI;
    uint64_t vflags = EF_VI_FLAGS_DEFAULT;
    if (cfg->flags & EFSDK_CFG_HW_TIMESTAMPS)
        vflags |= EF_VI_RX_TIMESTAMPS;
    if (cfg->efvi_flags & EFSDK_EFVI_EVENT_MERGE)
        vflags |= EF_VI_RX_EVENT_MERGE;
    rc = ef_vi_alloc_from_pd(&s->vi, s->dh, &s->pd, s->dh, cfg->evq_size, cfg->rxq_size, 0, NULL, -1,
                             (enum ef_vi_flags)vflags);
    if (rc == -EPERM && !(vflags & EF_VI_RX_EVENT_MERGE)) {
        /* some NICs (X2 in some modes) only hand out event-merging receive queues */
        vflags |= EF_VI_RX_EVENT_MERGE;
        rc = ef_vi_alloc_from_pd(&s->vi, s->dh, &s->pd, s->dh, cfg->evq_size, cfg->rxq_size, 0, NULL, -1,
                                 (enum ef_vi_flags)vflags);
    }
    if (rc < 0)
        return rc;
    s->res |= R_VI;
    s->prefix_len = s->rx_ref ? 0 : (uint32_t)ef_vi_receive_prefix_len(&s->vi);
    s->xs.prefix_len = s->prefix_len;

    if (s->rx_ref) {
        s->rdy_cap = s->held_cap = EFVI_REF_RING;
    } else {
        *stage = EFSDK_EFVI_STAGE_MEM;
        uint32_t cap = (uint32_t)ef_vi_receive_capacity(&s->vi);
        s->n_bufs = cfg->n_bufs ? cfg->n_bufs : cap + 512;
        if (s->n_bufs < cap + EFVI_REFILL_BATCH)
            s->n_bufs = cap + EFVI_REFILL_BATCH; /* else the ring can never be kept full */
        if (EFVI_DMA_OFF + s->prefix_len + EFSDK_ETH_HLEN + 28 > EFVI_BUF_SIZE)
            return -EINVAL;
        if ((rc = efvi_alloc_dma((size_t)s->n_bufs * EFVI_BUF_SIZE, &s->mem, &s->mem_len, &s->mem_mmap)) < 0)
            return rc;
        s->res |= R_MEM;
        s->free_ids = calloc(s->n_bufs, sizeof *s->free_ids);
        if (!s->free_ids)
            return -ENOMEM;
        for (uint32_t i = s->n_bufs; i > 0; i--)
            s->free_ids[s->n_free++] = i - 1;
        s->rdy_cap = s->held_cap = s->n_bufs;

        *stage = EFSDK_EFVI_STAGE_MEMREG;
        if ((rc = ef_memreg_alloc(&s->mr, s->dh, &s->pd, s->dh, s->mem, s->mem_len)) < 0)
            return rc;
        s->res |= R_MEMREG;

        *stage = EFSDK_EFVI_STAGE_POST;
        if ((rc = efvi_refill(s, 1)) < 0)
            return rc;
    }
    s->xs.n_bufs = s->n_bufs;
    s->rdy = calloc(s->rdy_cap, sizeof *s->rdy);
    s->held = calloc(s->held_cap, sizeof *s->held);
    if (!s->rdy || !s->held)
        return -ENOMEM;

    *stage = EFSDK_EFVI_STAGE_FILTER;
    for (uint32_t i = 0; i < s->n_feeds; i++) {
        ef_filter_spec fs;
        /* X3/X4 queues raise wakeups (for ef_vi_prime + poll) only when asked */
        int wake = s->rx_ref && !(cfg->flags & EFSDK_CFG_BUSY_POLL);
        ef_filter_spec_init(&fs, wake ? EF_FILTER_FLAG_REQUEST_WAKEUPS : EF_FILTER_FLAG_NONE);
        /* for a multicast feed the "local" address is the group */
        if ((rc = ef_filter_spec_set_ip4_local(&fs, IPPROTO_UDP, s->feeds[i].addr, htons(s->feeds[i].port))) < 0)
            return rc;
        if ((rc = ef_vi_filter_add(&s->vi, s->dh, &fs, &s->cookies[s->n_cookies])) < 0)
            return rc;
        s->n_cookies++;
    }
    for (uint32_t i = 0; i < cfg->n_macs; i++) {
        ef_filter_spec fs;
        ef_filter_spec_init(&fs, EF_FILTER_FLAG_NONE);
        if ((rc = ef_filter_spec_set_eth_local(&fs, EF_FILTER_VLAN_ID_ANY, cfg->macs + 6 * i)) < 0)
            return rc;
        if ((rc = ef_vi_filter_add(&s->vi, s->dh, &fs, &s->cookies[s->n_cookies])) < 0)
            return rc;
        s->n_cookies++;
    }
    if (cfg->efvi_flags & EFSDK_EFVI_MULTICAST_ALL) {
        ef_filter_spec fs;
        ef_filter_spec_init(&fs, EF_FILTER_FLAG_NONE);
        if ((rc = ef_filter_spec_set_multicast_all(&fs)) < 0)
            return rc;
        if ((rc = ef_vi_filter_add(&s->vi, s->dh, &fs, &s->cookies[s->n_cookies])) < 0)
            return rc;
        s->n_cookies++;
    }

    *stage = EFSDK_EFVI_STAGE_JOIN;
    if (!(cfg->efvi_flags & EFSDK_EFVI_NO_JOIN) && (rc = join_groups(s, cfg)) < 0)
        return rc;
    *stage = 0;
    return 0;
}

/*
 * Open an ef_vi source on cfg->iface.  0 and *out, or -errno with *stage set
 * to the EFSDK_EFVI_STAGE_* that failed (everything acquired is released).
 */
int efsdk_efvi_open(const efsdk_efvi_config *cfg, efsdk_source **out, int *stage)
{
    int dummy;
    if (!stage)
        stage = &dummy;
    *stage = EFSDK_EFVI_STAGE_CONFIG;
    if (!cfg || !out)
        return -EINVAL;
    *out = NULL;
    if (!cfg->iface[0] || memchr(cfg->iface, 0, sizeof cfg->iface) == NULL)
        return -EINVAL;
    if (cfg->n_feeds > EFSDK_MAX_FEEDS || (cfg->n_feeds && !cfg->feeds) || cfg->n_macs > EFVI_MAX_MACS ||
        (cfg->n_macs && !cfg->macs))
        return -EINVAL;
    if (!cfg->n_feeds && !cfg->n_macs && !(cfg->efvi_flags & EFSDK_EFVI_MULTICAST_ALL))
        return -EINVAL; /* ef_vi sees nothing without a filter */
    for (uint32_t i = 0; i < cfg->n_feeds; i++)
        if (!cfg->feeds[i].addr || !cfg->feeds[i].port)
            return -EINVAL; /* ip4_local filters need both */
    efvi_source *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->head.ops = &efvi_ops;
    s->head.backend = 0; /* not in frame_source.h's switch: opened through this module only */
    s->mcast_fd = -1;
    s->cfg_flags = cfg->flags;
    s->efvi_flags = cfg->efvi_flags;
    s->n_feeds = cfg->n_feeds;
    memcpy(s->feeds, cfg->feeds, cfg->n_feeds * sizeof *cfg->feeds);
    int rc = efvi_open_steps(s, cfg, stage);
    if (rc < 0) {
        efvi_close(&s->head);
        free(s);
        return rc;
    }
    *out = &s->head;
    return 0;
}

int efsdk_efvi_get_stats(efsdk_source *src, efsdk_efvi_stats *out)
{
    if (!src || !out)
        return -EINVAL;
    efvi_source *s = (efvi_source *)src;
    if (!src->closed)
        (void)efvi_refresh(src);
    *out = s->xs;
    return 0;
}

/* ef_driver_open + close: 0 when ef_vi can reach the driver, -ENOENT without /dev/sfc_char. */
int efsdk_efvi_probe_driver(void)
{
    ef_driver_handle dh;
    int rc = ef_driver_open(&dh);
    if (rc < 0)
        return rc;
    (void)ef_driver_close(dh);
    return 0;
}

/*
 * Build (but do not add) the NIC filter for one feed: pure user space, works
 * without a NIC.  Returns ef_filter_spec_set_ip4_local's result.
 */
int efsdk_efvi_check_filter(uint32_t addr_be, uint16_t port)
{
    ef_filter_spec fs;
    ef_filter_spec_init(&fs, EF_FILTER_FLAG_NONE);
    return ef_filter_spec_set_ip4_local(&fs, IPPROTO_UDP, addr_be, htons(port));
}

/* The same for a MAC filter (mac: 6 bytes) and, with mac NULL, the multicast-all filter. */
int efsdk_efvi_check_eth_filter(const uint8_t *mac)
{
    ef_filter_spec fs;
    ef_filter_spec_init(&fs, EF_FILTER_FLAG_NONE);
    return mac ? ef_filter_spec_set_eth_local(&fs, EF_FILTER_VLAN_ID_ANY, mac) : ef_filter_spec_set_multicast_all(&fs);
}

/*
 * n capabilities of iface (EF_VI_CAP_* in caps[]), through one driver handle:
 * values[i] and rcs[i] (0, or ef_vi_capabilities_get's -errno, e.g.
 * -EOPNOTSUPP when the NIC lacks it).  Returns 0, or -errno when nothing
 * could be asked: -ENOENT without the driver, -ENODEV for no such interface.
 */
int efsdk_efvi_capabilities(const char *iface, const int *caps, uint32_t n, unsigned long *values, int *rcs)
{
    if (!iface || (n && (!caps || !values || !rcs)))
        return -EINVAL;
    int ifindex = (int)if_nametoindex(iface);
    ef_driver_handle dh;
    int rc = ef_driver_open(&dh);
    if (rc < 0)
        return rc;
    if (ifindex <= 0) {
        (void)ef_driver_close(dh);
        return -ENODEV;
    }
    for (uint32_t i = 0; i < n; i++) {
        values[i] = 0;
        rcs[i] = ef_vi_capabilities_get(dh, ifindex, (enum ef_vi_capability)caps[i], &values[i]);
    }
    (void)ef_driver_close(dh);
    return 0;
}

const char *efsdk_efvi_libciul_version(void) { return ef_vi_version_str(); }

int efsdk_efvi_version(void) { return EFSDK_EFVI_VERSION * 1000 + EFSDK_SOURCES_VERSION; }
