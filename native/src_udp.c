/*
 * Kernel UDP frame source: one socket, recvmmsg into pre-allocated buffers.
 *
 * Only the standard socket API is used (bind, IP_ADD_MEMBERSHIP, SO_RCVBUF,
 * SO_TIMESTAMPNS, SO_RXQ_OVFL, SO_BUSY_POLL, recvmmsg, ppoll), so Onload
 * accelerates this path transparently when the process runs under it.
 *
 * Buffers form a ring of `batch` slots: a poll fills the free slots after the
 * pending (unreleased) ones, release hands the oldest back.  With
 * EFSDK_POLL_RELEASE every poll starts at slot 0.
 */
#define _GNU_SOURCE
#include "frame_source.h"
#include "poll_wait.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif
#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif
#define UDP_MEMINFO_DROPS 8 /* SK_MEMINFO_DROPS in linux/sock_diag.h */
#define UDP_MEMINFO_VARS 9

/* Control buffer per datagram: SCM_TIMESTAMPNS (timespec) + SO_RXQ_OVFL (u32). */
#define UDP_CMSG_SPACE (CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t)))
#define UDP_MAX_BATCH 4096 /* recvmmsg caps vlen at UIO_MAXIOV (1024) per call anyway */
#define UDP_MAX_BUF (64u * 1024u) /* largest UDP payload + margin */

typedef struct udp_source {
    efsdk_source head; /* first: efsdk_source_free() frees through it */
    int fd;
    uint32_t batch, buf_size, flags;
    uint32_t bind_addr, iface_addr;
    uint16_t port;
    int joined;
    uint32_t rd;        /* next slot to fill */
    uint32_t rel;       /* oldest pending slot */
    uint8_t *bufs;      /* batch * buf_size */
    uint8_t *cmsgs;     /* batch * UDP_CMSG_SPACE */
    struct mmsghdr *msgs;
    struct iovec *iovs;
    struct sockaddr_in *names;
    uint32_t last_ovfl; /* SO_RXQ_OVFL is cumulative per socket */
} udp_source;

static int udp_recv_batch(udp_source *u, efsdk_frame *out, uint32_t max)
{
    /* Contiguous free slots from rd: recvmmsg wants one array. */
    uint32_t free_slots = u->batch - (uint32_t)u->head.pending;
    uint32_t contig = u->batch - u->rd;
    uint32_t vlen = max;
    if (vlen > free_slots)
        vlen = free_slots;
    if (vlen > contig)
        vlen = contig;
    if (vlen == 0)
        return free_slots == 0 ? -ENOBUFS : 0;
    struct mmsghdr *m = u->msgs + u->rd;
    for (uint32_t i = 0; i < vlen; i++) {
        m[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
        m[i].msg_hdr.msg_controllen = UDP_CMSG_SPACE;
        m[i].msg_hdr.msg_flags = 0;
    }
    int got = recvmmsg(u->fd, m, vlen, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (got < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -errno;
    uint32_t n = 0;
    for (int i = 0; i < got; i++) {
        uint32_t slot = u->rd + (uint32_t)i;
        struct msghdr *h = &m[i].msg_hdr;
        uint32_t wire_len = m[i].msg_len; /* real length thanks to MSG_TRUNC */
        uint64_t ts = 0;
        uint8_t kind = EFSDK_TS_NONE;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
            if (c->cmsg_level != SOL_SOCKET)
                continue;
            if (c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec t;
                memcpy(&t, CMSG_DATA(c), sizeof t);
                ts = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
                kind = EFSDK_TS_SW;
            } else if (c->cmsg_type == SO_RXQ_OVFL) {
                uint32_t ovfl;
                memcpy(&ovfl, CMSG_DATA(c), sizeof ovfl);
                u->head.stats.kernel_drops += (uint32_t)(ovfl - u->last_ovfl);
                u->last_ovfl = ovfl;
            }
        }
        uint32_t fl = 0;
        if ((h->msg_flags & MSG_TRUNC) || wire_len > u->buf_size) {
            u->head.stats.truncated++;
            if (!(u->flags & EFSDK_CFG_KEEP_TRUNCATED))
                continue; /* slot not used: nothing points into it */
            fl |= EFSDK_FRAME_TRUNCATED;
        }
        /* Deliveries are packed from rd: a skipped datagram's slot is reused
         * by moving the buffer pointer of the delivered one in place. */
        uint32_t dst_slot = u->rd + n;
        uint8_t *data = u->bufs + (size_t)slot * u->buf_size;
        if (dst_slot != slot) {
            uint32_t l = wire_len < u->buf_size ? wire_len : u->buf_size;
            memmove(u->bufs + (size_t)dst_slot * u->buf_size, data, l);
            data = u->bufs + (size_t)dst_slot * u->buf_size;
        }
        const struct sockaddr_in *sa = &u->names[slot];
        efsdk_frame *f = &out[n++];
        f->data = data;
        f->frame = data;
        f->len = wire_len < u->buf_size ? wire_len : u->buf_size;
        f->orig_len = wire_len;
        f->frame_len = f->len;
        f->ts_ns = ts;
        f->ts_kind = kind;
        f->src_addr = sa->sin_addr.s_addr;
        f->src_port = ntohs(sa->sin_port);
        f->dst_addr = u->bind_addr;
        f->dst_port = u->port;
        f->vlan_tci = 0;
        f->reserved = 0;
        if (IN_MULTICAST(ntohl(u->bind_addr)))
            fl |= EFSDK_FRAME_MULTICAST;
        f->flags = fl;
        u->head.stats.bytes += f->len;
    }
    u->rd = (u->rd + n) % u->batch;
    u->head.pending += n;
    u->head.stats.frames += n;
    return (int)n;
}

static int udp_read(void *src, efsdk_frame *out, uint32_t max) { return udp_recv_batch(src, out, max); }

static int udp_wait_step(void *src, int64_t left_ns)
{
    udp_source *u = src;
    if (u->flags & EFSDK_CFG_BUSY_POLL)
        return EFSDK_WAIT_READY; /* spin */
    int w = efsdk_wait_fd(u->fd, left_ns);
    return w < 0 ? w : EFSDK_WAIT_READY;
}

static int udp_poll(efsdk_source *s, efsdk_frame *out, uint32_t max, int64_t timeout_ns)
{
    udp_source *u = (udp_source *)s;
    if (max == 0)
        return 0;
    int n = udp_recv_batch(u, out, max);
    if (n != 0 || timeout_ns == 0)
        return n;
    return efsdk_wait_for_frames(u, udp_read, udp_wait_step, out, max, timeout_ns);
}

static int udp_release(efsdk_source *s, uint32_t n)
{
    udp_source *u = (udp_source *)s;
    u->rel = (u->rel + n) % u->batch;
    s->pending -= n;
    if (s->pending == 0)
        u->rd = u->rel = 0; /* empty ring: restart at slot 0 for the longest recvmmsg */
    return 0;
}

static void udp_close(efsdk_source *s)
{
    udp_source *u = (udp_source *)s;
    if (u->fd >= 0) {
        if (u->joined) {
            struct ip_mreqn mr = {0};
            mr.imr_multiaddr.s_addr = u->bind_addr;
            mr.imr_address.s_addr = u->iface_addr;
            (void)setsockopt(u->fd, IPPROTO_IP, IP_DROP_MEMBERSHIP, &mr, sizeof mr);
        }
        close(u->fd);
        u->fd = -1;
    }
    free(u->msgs);
    free(u->iovs);
    free(u->names);
    free(u->cmsgs);
    free(u->bufs);
    u->msgs = NULL;
    u->iovs = NULL;
    u->names = NULL;
    u->cmsgs = NULL;
    u->bufs = NULL;
}

/*
 * SO_RXQ_OVFL rides on received datagrams, so drops after the last one read
 * stay invisible to it; SO_MEMINFO reads the socket's drop counter directly
 * (off the hot path, whenever stats are asked for).
 */
static int udp_refresh_stats(efsdk_source *s)
{
    udp_source *u = (udp_source *)s;
    uint32_t mem[UDP_MEMINFO_VARS] = {0};
    socklen_t len = sizeof mem;
    if (u->fd < 0)
        return 0;
    if (getsockopt(u->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 && len > UDP_MEMINFO_DROPS * sizeof(uint32_t)) {
        uint32_t drops = mem[UDP_MEMINFO_DROPS];
        if ((uint32_t)(drops - u->last_ovfl) < 0x80000000u) { /* newer than what the cmsgs said */
            s->stats.kernel_drops += (uint32_t)(drops - u->last_ovfl);
            u->last_ovfl = drops;
        }
    }
    return 0;
}

static const efsdk_source_ops udp_ops = {
    .poll = udp_poll,
    .release = udp_release,
    .refresh_stats = udp_refresh_stats,
    .close = udp_close,
};

int efsdk_udp_open(const efsdk_source_config *cfg, efsdk_source **out)
{
    if (cfg == NULL || out == NULL || cfg->port == 0 || cfg->batch == 0 || cfg->batch > UDP_MAX_BATCH ||
        cfg->buf_size == 0 || cfg->buf_size > UDP_MAX_BUF)
        return -EINVAL;
    udp_source *u = calloc(1, sizeof *u);
    if (u == NULL)
        return -ENOMEM;
    u->head.ops = &udp_ops;
    u->head.backend = EFSDK_BACKEND_UDP;
    u->fd = -1;
    u->batch = cfg->batch;
    u->buf_size = cfg->buf_size;
    u->flags = cfg->flags;
    u->bind_addr = cfg->bind_addr;
    u->iface_addr = cfg->iface_addr;
    u->port = cfg->port;
    int rc = 0, one = 1;

    /* Memory first (nothing to undo in the kernel if it fails). */
    u->bufs = malloc((size_t)u->batch * u->buf_size);
    u->cmsgs = calloc(u->batch, UDP_CMSG_SPACE);
    u->msgs = calloc(u->batch, sizeof *u->msgs);
    u->iovs = calloc(u->batch, sizeof *u->iovs);
    u->names = calloc(u->batch, sizeof *u->names);
    if (!u->bufs || !u->cmsgs || !u->msgs || !u->iovs || !u->names) {
        rc = -ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < u->batch; i++) {
        u->iovs[i].iov_base = u->bufs + (size_t)i * u->buf_size;
        u->iovs[i].iov_len = u->buf_size;
        struct msghdr *h = &u->msgs[i].msg_hdr;
        h->msg_name = &u->names[i];
        h->msg_namelen = sizeof(struct sockaddr_in);
        h->msg_iov = &u->iovs[i];
        h->msg_iovlen = 1;
        h->msg_control = u->cmsgs + (size_t)i * UDP_CMSG_SPACE;
        h->msg_controllen = UDP_CMSG_SPACE;
    }

    u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (u->fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* Several receivers of one group:port on a host (A/B, tools) must coexist. */
    if (setsockopt(u->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail_errno;
    if (cfg->rcvbuf > 0) {
        /* FORCE passes rmem_max when privileged; fall back to the capped one. */
        if (setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &cfg->rcvbuf, sizeof cfg->rcvbuf) < 0 &&
            setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof cfg->rcvbuf) < 0)
            goto fail_errno;
    }
    if (setsockopt(u->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
        goto fail_errno;
    if (setsockopt(u->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) < 0)
        goto fail_errno;
    if (cfg->busy_poll_us > 0 &&
        setsockopt(u->fd, SOL_SOCKET, SO_BUSY_POLL, &cfg->busy_poll_us, sizeof cfg->busy_poll_us) < 0)
        goto fail_errno;

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
    sa.sin_addr.s_addr = cfg->bind_addr; /* the group itself: only its datagrams arrive */
    if (bind(u->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto fail_errno;
    if (IN_MULTICAST(ntohl(cfg->bind_addr))) {
        int zero = 0;
        /* Without this Linux also delivers other groups this host joined on the port. */
        (void)setsockopt(u->fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
        struct ip_mreqn mr = {0};
        mr.imr_multiaddr.s_addr = cfg->bind_addr;
        mr.imr_address.s_addr = cfg->iface_addr;
        if (setsockopt(u->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
            goto fail_errno;
        u->joined = 1;
    }
    *out = &u->head;
    return 0;

fail_errno:
    rc = -errno;
fail:
    efsdk_source_free(&u->head);
    return rc;
}
