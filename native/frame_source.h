/*
 * The frame-source contract: every backend (kernel UDP, AF_PACKET, later
 * AF_XDP / ef_vi / pcap) hands out batches of zero-copy frame descriptors.
 *
 *   efsdk_source_open(cfg, &src)            -> 0 or -errno
 *   efsdk_source_poll(src, out, max, timeout_ns, flags)
 *                                           -> frames written (>= 0) or -errno
 *   efsdk_source_release(src, n)            -> 0 or -errno
 *   efsdk_source_get_stats(src, &st)        -> 0 or -errno
 *   efsdk_source_close(src)                 idempotent; frees the resources,
 *                                           keeps the handle (later calls: -EBADF)
 *   efsdk_source_free(src)                  close + free the handle itself
 *
 * A descriptor points into the backend's own memory (recv buffers, the
 * PACKET_RX_RING) and stays valid until it is released: frames are released
 * in delivery order, `release(n)` hands back the oldest n.  Passing
 * EFSDK_POLL_RELEASE to poll releases everything delivered before it first, so
 * a receive loop is one FFI call per batch.  Frames filtered out inside a poll
 * never reach the caller; their ring slots go back with the next release.
 *
 * Nothing here calls back into Python, allocates in poll, or aborts.
 * One source is not thread-safe: one thread polls it.
 */
#ifndef EFSDK_FRAME_SOURCE_H
#define EFSDK_FRAME_SOURCE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define EFSDK_SOURCES_VERSION 1 /* bump on any layout/semantic change */

/* Backends (efsdk_source_config.backend). */
#define EFSDK_BACKEND_UDP 1      /* kernel UDP socket, recvmmsg (what Onload accelerates) */
#define EFSDK_BACKEND_AFPACKET 2 /* AF_PACKET PACKET_RX_RING, TPACKET_V2 or V3 */

/* Timestamp kinds (efsdk_frame.ts_kind). */
#define EFSDK_TS_NONE 0
#define EFSDK_TS_SW 1 /* kernel software receive time, CLOCK_REALTIME */
#define EFSDK_TS_HW 2 /* NIC hardware time (TP_STATUS_TS_RAW_HARDWARE) */

/* Frame flags (efsdk_frame.flags). */
#define EFSDK_FRAME_TRUNCATED 0x1u /* data holds less than the datagram (only with EFSDK_CFG_KEEP_TRUNCATED) */
#define EFSDK_FRAME_VLAN 0x2u      /* arrived 802.1Q tagged (inline or kernel-stripped) */
#define EFSDK_FRAME_MULTICAST 0x4u /* destination was an IPv4 multicast group */
#define EFSDK_FRAME_RAW 0x8u       /* `frame` is the full Ethernet frame */
#define EFSDK_FRAME_TS_CLOCK_SET 0x10u /* hw timestamp: the adapter clock has been set (ef_vi) */
#define EFSDK_FRAME_TS_IN_SYNC 0x20u   /* hw timestamp: the adapter clock is in sync, e.g. by sfptpd (ef_vi) */

/* Config flags (efsdk_source_config.flags). */
#define EFSDK_CFG_BUSY_POLL 0x1u      /* spin (no sleep) until data or timeout */
#define EFSDK_CFG_KEEP_TRUNCATED 0x2u /* deliver truncated datagrams, flagged, instead of skipping */
#define EFSDK_CFG_HW_TIMESTAMPS 0x4u  /* ask for NIC timestamps (AF_PACKET: PACKET_TIMESTAMP) */
#define EFSDK_CFG_PROMISC 0x8u        /* AF_PACKET: PACKET_MR_PROMISC on the interface */

/* Poll flags. */
#define EFSDK_POLL_RELEASE 0x1u /* release every frame delivered so far before polling */

/* Most feeds one raw source filters on (linear scan: a handful per source). */
#define EFSDK_MAX_FEEDS 64

typedef struct efsdk_frame {
    const uint8_t *data;  /* UDP payload */
    const uint8_t *frame; /* raw backends: the Ethernet header; UDP: == data */
    uint64_t ts_ns;       /* receive time, ns since the epoch (0 if ts_kind NONE) */
    uint32_t len;         /* bytes readable at data */
    uint32_t orig_len;    /* UDP payload length on the wire (> len when truncated) */
    uint32_t frame_len;   /* bytes readable at frame */
    uint32_t flags;       /* EFSDK_FRAME_* */
    uint32_t src_addr;    /* IPv4 source, network byte order */
    uint32_t dst_addr;    /* IPv4 destination, network byte order */
    uint16_t src_port;    /* host byte order */
    uint16_t dst_port;
    uint16_t vlan_tci;    /* valid with EFSDK_FRAME_VLAN */
    uint8_t ts_kind;      /* EFSDK_TS_* */
    uint8_t reserved;
} efsdk_frame;

typedef struct efsdk_feed {
    uint32_t addr; /* destination IPv4, network byte order; 0 = any */
    uint16_t port; /* destination UDP port, host order; 0 = any */
    uint16_t reserved;
} efsdk_feed;

typedef struct efsdk_source_config {
    uint32_t backend;        /* EFSDK_BACKEND_* */
    uint32_t flags;          /* EFSDK_CFG_* */
    int32_t rcvbuf;          /* SO_RCVBUF(FORCE) bytes; 0 = kernel default */
    int32_t busy_poll_us;    /* SO_BUSY_POLL microseconds; 0 = off */
    /* UDP */
    uint32_t bind_addr;      /* group or unicast address (network order); 0 = INADDR_ANY */
    uint32_t iface_addr;     /* interface address for IP_ADD_MEMBERSHIP; 0 = kernel's choice */
    uint16_t port;           /* UDP port to bind */
    uint16_t reserved;
    uint32_t batch;          /* UDP: datagram buffers (max frames per poll) */
    uint32_t buf_size;       /* UDP: bytes per datagram buffer */
    /* AF_PACKET */
    char iface[16];          /* interface name (IFNAMSIZ) */
    uint32_t tpacket_version; /* 2 or 3 */
    uint32_t block_size;     /* ring block bytes (power of two multiple of the page size) */
    uint32_t block_count;    /* ring blocks */
    uint32_t frame_size;     /* V2: slot bytes (header + frame); V3: only validated */
    uint32_t retire_ms;      /* V3 block retire timeout; 0 = kernel default (~8 ms) */
    uint32_t fanout;         /* PACKET_FANOUT: (mode << 16) | group id; 0 = none */
    uint32_t n_feeds;        /* feeds[]: destination filter, also joined if multicast */
    const efsdk_feed *feeds;
    const void *bpf;         /* classic BPF program (struct sock_filter[]), or NULL */
    uint32_t bpf_len;        /* instructions in bpf */
    uint32_t reserved2;
} efsdk_source_config;

typedef struct efsdk_source_stats {
    uint64_t polls;          /* poll calls */
    uint64_t empty_polls;    /* poll calls that returned no frame */
    uint64_t frames;         /* frames delivered */
    uint64_t bytes;          /* payload bytes delivered */
    uint64_t kernel_drops;   /* socket/ring overflow drops reported by the kernel */
    uint64_t kernel_packets; /* AF_PACKET: packets the kernel counted (PACKET_STATISTICS) */
    uint64_t truncated;      /* datagrams longer than the buffer/slot */
    uint64_t filtered;       /* UDP frames not matching the feed list */
    uint64_t non_udp;        /* raw: not IPv4/UDP (ARP, ICMP, TCP, IPv6, ...) */
    uint64_t fragments;      /* raw: IPv4 fragments (not reassembled) */
    uint64_t malformed;      /* raw: bad lengths / headers */
    uint64_t vlan;           /* raw: frames that carried an 802.1Q tag */
    uint64_t freeze_q;       /* V3: times the ring was full (tp_freeze_q_cnt) */
} efsdk_source_stats;

struct efsdk_source;

typedef struct efsdk_source_ops {
    int (*poll)(struct efsdk_source *, efsdk_frame *, uint32_t, int64_t);
    int (*release)(struct efsdk_source *, uint32_t);
    int (*refresh_stats)(struct efsdk_source *); /* pull kernel counters into stats */
    void (*close)(struct efsdk_source *);
} efsdk_source_ops;

/* The common head of every backend's handle (backends embed it first). */
typedef struct efsdk_source {
    const efsdk_source_ops *ops;
    uint32_t backend;
    uint32_t closed;
    uint64_t pending; /* delivered, not yet released */
    efsdk_source_stats stats;
} efsdk_source;

int efsdk_udp_open(const efsdk_source_config *cfg, efsdk_source **out);
int efsdk_afpacket_open(const efsdk_source_config *cfg, efsdk_source **out);
int efsdk_afpacket_available(int tpacket_version); /* 1 if compiled in */
/* Benchmark sender (udp_blast.c): `len`-byte datagrams on connected UDP `fd`, flat out for
 * `duration_ns`, `batch` per sendmmsg.  0 or -errno; *errors counts full-queue retries. */
int efsdk_udp_blast(int fd, const uint8_t *payload, uint32_t len, uint32_t batch, uint64_t duration_ns,
                    uint64_t *sent, uint64_t *errors);
/* Benchmark sender in the kernel (xdp_blast.c): `frame` transmitted out of `ifindex` by XDP_TX in
 * XDP live-frames test mode for `duration_ns`; *sent counts frames XDP_TX took.  0 or -errno. */
int efsdk_xdp_blast(int ifindex, const uint8_t *frame, uint32_t len, uint64_t duration_ns, uint64_t *sent,
                    uint64_t *calls);
/* 0 if this kernel runs XDP live frames on `ifindex` (one frame through XDP_DROP: nothing is sent),
 * else -errno (Linux < 5.18: -EINVAL). */
int efsdk_xdp_live_frames_probe(int ifindex, const uint8_t *frame, uint32_t len);
/* Attach an XDP_PASS program to `ifindex` through a BPF link (a veth then accepts XDP_TX frames
 * from its peer); returns the link fd (close it to detach) or -errno. */
int efsdk_xdp_pass_attach(int ifindex);

static inline int efsdk_sources_version(void) { return EFSDK_SOURCES_VERSION; }

static inline int efsdk_source_open(const efsdk_source_config *cfg, efsdk_source **out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    switch (cfg->backend) {
    case EFSDK_BACKEND_UDP:
        return efsdk_udp_open(cfg, out);
    case EFSDK_BACKEND_AFPACKET:
        return efsdk_afpacket_open(cfg, out);
    default:
        return -EPROTONOSUPPORT;
    }
}

static inline int efsdk_source_release(efsdk_source *s, uint32_t n)
{
    if (s == NULL)
        return -EINVAL;
    if (s->closed)
        return -EBADF;
    if (n > s->pending)
        return -EINVAL;
    if (n == 0)
        return 0;
    return s->ops->release(s, n);
}

static inline int efsdk_source_poll(efsdk_source *s, efsdk_frame *out, uint32_t max,
                                    int64_t timeout_ns, uint32_t flags)
{
    if (s == NULL || (out == NULL && max))
        return -EINVAL;
    if (s->closed)
        return -EBADF;
    if ((flags & EFSDK_POLL_RELEASE) && s->pending) {
        int rc = s->ops->release(s, (uint32_t)s->pending);
        if (rc < 0)
            return rc;
    }
    s->stats.polls++;
    int n = s->ops->poll(s, out, max, timeout_ns);
    if (n == 0)
        s->stats.empty_polls++;
    return n;
}

static inline int efsdk_source_get_stats(efsdk_source *s, efsdk_source_stats *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    if (!s->closed && s->ops->refresh_stats) {
        int rc = s->ops->refresh_stats(s);
        if (rc < 0)
            return rc;
    }
    *out = s->stats;
    return 0;
}

static inline uint64_t efsdk_source_pending(const efsdk_source *s) { return s ? s->pending : 0; }

static inline void efsdk_source_close(efsdk_source *s)
{
    if (s == NULL || s->closed)
        return;
    if (s->ops->refresh_stats)
        (void)s->ops->refresh_stats(s); /* keep the final kernel counters */
    s->ops->close(s);
    s->closed = 1;
    s->pending = 0;
}

static inline void efsdk_source_free(efsdk_source *s)
{
    if (s == NULL)
        return;
    efsdk_source_close(s);
    free(s); /* backends allocate their handle with calloc, head first */
}

#endif /* EFSDK_FRAME_SOURCE_H */
