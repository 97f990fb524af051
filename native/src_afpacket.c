/*
 * AF_PACKET frame source: a PACKET_RX_RING shared with the kernel, TPACKET_V3
 * (variable-size frames packed into blocks; the kernel hands over a whole
 * block when it fills or when the retire timer fires) or TPACKET_V2 (one
 * fixed-size slot per frame, handed over frame by frame: lower latency on a
 * quiet feed, more memory per frame).
 *
 * The ring is parsed in place (netparse.h): descriptors point at the UDP
 * payload inside the ring.  A ring "unit" (V3 block, V2 slot) goes back to
 * the kernel once every frame delivered from it, and everything before it, is
 * released; filtered frames never hold a unit.
 *
 * Raw receive paths send no IGMP, so multicast feeds are joined through a
 * kernel UDP socket on the same interface (the kernel then also programs the
 * NIC's multicast MAC filter).
 */
#define _GNU_SOURCE
#include "frame_source.h"
#include "poll_wait.h"
#include "mcast_join.h"
#include "netparse.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/net_tstamp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

typedef struct ring_unit {
    uint32_t idx;  /* V3 block / V2 slot */
    uint64_t end;  /* frames delivered when the unit was finished */
} ring_unit;

typedef struct afp_source {
    efsdk_source head; /* first: efsdk_source_free() frees through it */
    int fd;
    int join_fd; /* kernel UDP socket holding the IGMP memberships */
    int version;
    int ifindex;
    uint32_t flags;
    uint8_t *ring;
    size_t ring_len;
    uint32_t block_size, block_nr, frame_size, frame_nr, frames_per_block;
    uint32_t units;        /* block_nr (V3) or frame_nr (V2) */
    uint32_t cur;          /* next unit to read */
    /* V3: position inside a partially read block */
    uint8_t *pkt;
    uint32_t pkts_left;
    int in_block;
    /* units read, not yet returned: FIFO of `units` entries */
    ring_unit *fifo;
    uint32_t fifo_head, fifo_count;
    uint64_t delivered, released;
    uint32_t n_feeds;
    efsdk_feed feeds[EFSDK_MAX_FEEDS];
} afp_source;

static inline int feed_match(const afp_source *a, uint32_t addr, uint16_t port)
{
    if (a->n_feeds == 0)
        return 1;
    for (uint32_t i = 0; i < a->n_feeds; i++) {
        const efsdk_feed *f = &a->feeds[i];
        if ((f->addr == 0 || f->addr == addr) && (f->port == 0 || f->port == port))
            return 1;
    }
    return 0;
}

/*
 * Classify one captured frame; on success fill *f and return 1, else count
 * why and return 0.  `status` is the ring header's tp_status.
 */
static inline int afp_frame(afp_source *a, const uint8_t *frame, uint32_t snaplen, uint32_t wire_len,
                            uint32_t status, uint16_t tci, uint32_t sec, uint32_t nsec, efsdk_frame *f)
{
    efsdk_source_stats *st = &a->head.stats;
    efsdk_udp_view v;
    int rc = efsdk_parse_udp(frame, snaplen, wire_len, &v);
    int tagged = v.vlan || (status & TP_STATUS_VLAN_VALID);
    if (tagged)
        st->vlan++;
    if (!efsdk_count_parse(rc, &v, st, a->flags & EFSDK_CFG_KEEP_TRUNCATED))
        return 0;
    if (!feed_match(a, v.dst_addr, v.dst_port)) {
        st->filtered++;
        return 0;
    }
    f->frame = frame;
    f->frame_len = snaplen;
    f->data = frame + v.payload_off;
    f->len = v.payload_len;
    f->orig_len = v.udp_len;
    f->src_addr = v.src_addr;
    f->dst_addr = v.dst_addr;
    f->src_port = v.src_port;
    f->dst_port = v.dst_port;
    f->ts_ns = (uint64_t)sec * 1000000000u + nsec;
    f->ts_kind = (status & TP_STATUS_TS_RAW_HARDWARE) ? EFSDK_TS_HW : EFSDK_TS_SW;
    f->reserved = 0;
    uint32_t fl = EFSDK_FRAME_RAW;
    if (rc == EFSDK_PARSE_TRUNCATED)
        fl |= EFSDK_FRAME_TRUNCATED;
    if (tagged) {
        fl |= EFSDK_FRAME_VLAN;
        f->vlan_tci = v.vlan ? v.vlan_tci : tci;
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

static inline uint8_t *v2_slot(const afp_source *a, uint32_t i)
{
    return a->ring + (size_t)(i / a->frames_per_block) * a->block_size +
           (size_t)(i % a->frames_per_block) * a->frame_size;
}

static inline void unit_done(afp_source *a, uint32_t idx)
{
    uint32_t tail = (a->fifo_head + a->fifo_count) % a->units;
    a->fifo[tail].idx = idx;
    a->fifo[tail].end = a->delivered;
    a->fifo_count++;
}

/* Hand back every finished unit whose frames are all released. */
static void afp_flush(afp_source *a)
{
    while (a->fifo_count && a->fifo[a->fifo_head].end <= a->released) {
        uint32_t idx = a->fifo[a->fifo_head].idx;
        if (a->version == TPACKET_V3) {
            struct tpacket_block_desc *bd = (void *)(a->ring + (size_t)idx * a->block_size);
            __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        } else {
            struct tpacket2_hdr *h = (void *)v2_slot(a, idx);
            __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        }
        a->fifo_head = (a->fifo_head + 1) % a->units;
        a->fifo_count--;
    }
}

static uint32_t afp_read_v3(afp_source *a, efsdk_frame *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max) {
        if (!a->in_block) {
            if (a->fifo_count >= a->units)
                break; /* every block is held by the caller */
            struct tpacket_block_desc *bd = (void *)(a->ring + (size_t)a->cur * a->block_size);
            if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
                break;
            a->pkts_left = bd->hdr.bh1.num_pkts;
            a->pkt = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
            a->in_block = 1;
        }
        while (a->pkts_left && n < max) {
            struct tpacket3_hdr *h = (void *)a->pkt;
            const struct sockaddr_ll *sll = (const void *)(a->pkt + TPACKET_ALIGN(sizeof *h));
            if (sll->sll_pkttype != PACKET_OUTGOING &&
                afp_frame(a, a->pkt + h->tp_mac, h->tp_snaplen, h->tp_len, h->tp_status, h->hv1.tp_vlan_tci,
                          h->tp_sec, h->tp_nsec, &out[n])) {
                n++;
                a->delivered++;
            }
            a->pkts_left--;
            a->pkt += h->tp_next_offset;
        }
        if (a->pkts_left)
            break; /* out is full; resume inside this block */
        a->in_block = 0;
        unit_done(a, a->cur);
        a->cur = (a->cur + 1) % a->units;
    }
    return n;
}

static uint32_t afp_read_v2(afp_source *a, efsdk_frame *out, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && a->fifo_count < a->units) {
        uint8_t *slot = v2_slot(a, a->cur);
        struct tpacket2_hdr *h = (void *)slot;
        uint32_t status = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        const struct sockaddr_ll *sll = (const void *)(slot + TPACKET_ALIGN(sizeof *h));
        if (sll->sll_pkttype != PACKET_OUTGOING &&
            afp_frame(a, slot + h->tp_mac, h->tp_snaplen, h->tp_len, status, h->tp_vlan_tci, h->tp_sec,
                      h->tp_nsec, &out[n])) {
            n++;
            a->delivered++;
        }
        unit_done(a, a->cur);
        a->cur = (a->cur + 1) % a->units;
    }
    return n;
}

static int afp_read(afp_source *a, efsdk_frame *out, uint32_t max)
{
    uint64_t before = a->delivered;
    uint32_t n = a->version == TPACKET_V3 ? afp_read_v3(a, out, max) : afp_read_v2(a, out, max);
    a->head.pending += a->delivered - before;
    afp_flush(a); /* units of filtered frames go straight back */
    return (int)n;
}

static int afp_read_any(void *src, efsdk_frame *out, uint32_t max) { return afp_read(src, out, max); }

static int afp_wait_step(void *src, int64_t left_ns)
{
    afp_source *a = src;
    if (a->flags & EFSDK_CFG_BUSY_POLL)
        return EFSDK_WAIT_READY; /* spin */
    if (a->fifo_count >= a->units)
        return EFSDK_WAIT_STOP; /* holding every unit: waiting cannot make room, so don't spin on a ready fd */
    int w = efsdk_wait_fd(a->fd, left_ns);
    return w < 0 ? w : EFSDK_WAIT_READY;
}

static int afp_poll(efsdk_source *s, efsdk_frame *out, uint32_t max, int64_t timeout_ns)
{
    afp_source *a = (afp_source *)s;
    afp_flush(a);
    if (max == 0)
        return 0;
    int n = afp_read(a, out, max);
    if (n != 0 || timeout_ns == 0)
        return n;
    return efsdk_wait_for_frames(a, afp_read_any, afp_wait_step, out, max, timeout_ns);
}

static int afp_release(efsdk_source *s, uint32_t n)
{
    afp_source *a = (afp_source *)s;
    a->released += n;
    s->pending -= n;
    afp_flush(a);
    return 0;
}

static int afp_refresh_stats(efsdk_source *s)
{
    afp_source *a = (afp_source *)s;
    if (a->fd < 0)
        return 0;
    /* PACKET_STATISTICS resets the kernel counters on every read: accumulate. */
    struct tpacket_stats_v3 st3 = {0};
    socklen_t len = a->version == TPACKET_V3 ? sizeof(struct tpacket_stats_v3) : sizeof(struct tpacket_stats);
    if (getsockopt(a->fd, SOL_PACKET, PACKET_STATISTICS, &st3, &len) < 0)
        return -errno;
    s->stats.kernel_packets += st3.tp_packets;
    s->stats.kernel_drops += st3.tp_drops;
    if (a->version == TPACKET_V3)
        s->stats.freeze_q += st3.tp_freeze_q_cnt;
    return 0;
}

static void afp_close(efsdk_source *s)
{
    afp_source *a = (afp_source *)s;
    if (a->join_fd >= 0) { /* closing drops the memberships */
        close(a->join_fd);
        a->join_fd = -1;
    }
    if (a->ring != NULL && a->ring != MAP_FAILED)
        munmap(a->ring, a->ring_len);
    a->ring = NULL;
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    free(a->fifo);
    a->fifo = NULL;
}

static const efsdk_source_ops afp_ops = {
    .poll = afp_poll,
    .release = afp_release,
    .refresh_stats = afp_refresh_stats,
    .close = afp_close,
};

int efsdk_afpacket_available(int tpacket_version)
{
    return tpacket_version == 2 || tpacket_version == 3;
}

int efsdk_afpacket_open(const efsdk_source_config *cfg, efsdk_source **out)
{
    long page = sysconf(_SC_PAGESIZE);
    if (cfg == NULL || out == NULL || cfg->iface[0] == '\0' || memchr(cfg->iface, 0, sizeof cfg->iface) == NULL)
        return -EINVAL;
    if (cfg->tpacket_version != 2 && cfg->tpacket_version != 3)
        return -EPROTONOSUPPORT;
    /* The kernel wants blocks that are page multiples (and allocates them as
     * power-of-two page orders) and frames aligned to TPACKET_ALIGNMENT. */
    if (cfg->block_size == 0 || cfg->block_size % (uint32_t)page || (cfg->block_size & (cfg->block_size - 1)) ||
        cfg->block_count == 0 || cfg->frame_size < TPACKET2_HDRLEN + ETH_HLEN ||
        cfg->frame_size % TPACKET_ALIGNMENT || cfg->frame_size > cfg->block_size || cfg->n_feeds > EFSDK_MAX_FEEDS ||
        (cfg->n_feeds && cfg->feeds == NULL) || (cfg->bpf_len && cfg->bpf == NULL) || cfg->bpf_len > 0xFFFF)
        return -EINVAL;

    afp_source *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    a->head.ops = &afp_ops;
    a->head.backend = EFSDK_BACKEND_AFPACKET;
    a->fd = a->join_fd = -1;
    a->version = cfg->tpacket_version == 3 ? TPACKET_V3 : TPACKET_V2;
    a->flags = cfg->flags;
    a->block_size = cfg->block_size;
    a->block_nr = cfg->block_count;
    a->frame_size = cfg->frame_size;
    a->frames_per_block = cfg->block_size / cfg->frame_size;
    a->frame_nr = a->frames_per_block * a->block_nr;
    a->units = a->version == TPACKET_V3 ? a->block_nr : a->frame_nr;
    a->n_feeds = cfg->n_feeds;
    if (cfg->n_feeds)
        memcpy(a->feeds, cfg->feeds, cfg->n_feeds * sizeof *cfg->feeds);
    int rc = 0, one = 1;

    a->fifo = calloc(a->units, sizeof *a->fifo);
    if (a->fifo == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    a->ifindex = (int)if_nametoindex(cfg->iface);
    if (a->ifindex == 0) {
        rc = -ENODEV;
        goto fail;
    }
    /* Protocol 0: receive nothing until the ring exists and bind() names the interface. */
    a->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->fd < 0)
        goto fail_errno;
    int ver = a->version;
    if (setsockopt(a->fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof ver) < 0)
        goto fail_errno;
    /* Our own transmissions (IGMP reports, replies) are not feed data. */
    (void)setsockopt(a->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    if (cfg->flags & EFSDK_CFG_HW_TIMESTAMPS) {
        /* Ring timestamps from the NIC when it stamps (SIOCSHWTSTAMP is the NIC's own setup). */
        int req = SOF_TIMESTAMPING_RAW_HARDWARE;
        if (setsockopt(a->fd, SOL_PACKET, PACKET_TIMESTAMP, &req, sizeof req) < 0)
            goto fail_errno;
    }
    if (cfg->bpf_len) {
        struct sock_fprog prog = {.len = (unsigned short)cfg->bpf_len, .filter = (struct sock_filter *)cfg->bpf};
        if (setsockopt(a->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
            goto fail_errno;
    }
    if (a->version == TPACKET_V3) {
        struct tpacket_req3 req = {
            .tp_block_size = a->block_size,
            .tp_block_nr = a->block_nr,
            .tp_frame_size = a->frame_size,
            .tp_frame_nr = a->frame_nr,
            .tp_retire_blk_tov = cfg->retire_ms,
        };
        if (setsockopt(a->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
            goto fail_errno;
    } else {
        struct tpacket_req req = {
            .tp_block_size = a->block_size,
            .tp_block_nr = a->block_nr,
            .tp_frame_size = a->frame_size,
            .tp_frame_nr = a->frame_nr,
        };
        if (setsockopt(a->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
            goto fail_errno;
    }
    a->ring_len = (size_t)a->block_size * a->block_nr;
    a->ring = mmap(NULL, a->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, a->fd, 0);
    if (a->ring == MAP_FAILED) {
        a->ring = NULL;
        goto fail_errno;
    }
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET,
        .sll_protocol = htons(ETH_P_ALL),
        .sll_ifindex = a->ifindex,
    };
    if (bind(a->fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        goto fail_errno;
    if (cfg->flags & EFSDK_CFG_PROMISC) {
        struct packet_mreq mr = {.mr_ifindex = a->ifindex, .mr_type = PACKET_MR_PROMISC};
        if (setsockopt(a->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
            goto fail_errno;
    }
    if (cfg->fanout) {
        int fan = (int)cfg->fanout;
        if (setsockopt(a->fd, SOL_PACKET, PACKET_FANOUT, &fan, sizeof fan) < 0)
            goto fail_errno;
    }
    if ((rc = efsdk_join_groups(&a->join_fd, a->feeds, a->n_feeds, a->ifindex, 0)) < 0)
        goto fail;
    *out = &a->head;
    return 0;

fail_errno:
    rc = -errno;
fail:
    efsdk_source_free(&a->head);
    return rc;
}
