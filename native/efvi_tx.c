/*
 * ef_vi transmit: whole Ethernet frames from registered buffers, with
 * completions, CTPIO (cut-through PIO) and its DMA fallback where the NIC has
 * it, and hardware TX timestamps.  Part of the optional efsdk._native_efvi
 * module: it is compiled in the same translation unit, after src_efvi.c, and
 * shares its headers, buffer sizes and packet-memory allocator.
 *
 * Modes (chosen at open from the PD's capabilities, as Onload's efsend does):
 *   DMA    ef_vi_transmit(dma_addr, len, id): the NIC reads the buffer.
 *   CTPIO  ef_vi_transmit_ctpio(host_ptr, len, threshold) writes the frame
 *          through the NIC's BAR, then ef_vi_transmit_ctpio_fallback posts
 *          the same bytes by DMA under the same id: the NIC sends the
 *          fallback only when the CTPIO write was not usable (poisoned,
 *          underrun...).  The fallback is always posted, or the id is lost.
 *          CTPIO frames need correct IP/UDP checksums (the NIC cannot fix
 *          them mid-stream).  CTPIO-only NICs (X3) always use this path.
 *
 * Buffers: n_bufs 2 KiB buffers; a frame is copied into a free one (the copy
 * is what lets the caller reuse its bytes at once; ~100 ns for a 100-byte
 * order).  A buffer returns to the free stack on its completion: a TX event
 * (unbundled, up to EF_VI_TRANSMIT_BATCH ids) or, with TX timestamps, one
 * TX_WITH_TIMESTAMP event per frame carrying the NIC's send time.  After a
 * TX_ERROR every frame without a completion is counted as failed (it may not
 * have left), its buffer is freed, and the TX queue is re-initialised.
 *
 * Every function returns 0 / a count or -errno; nothing allocates after open.
 */

#define EFSDK_EFVI_TX_CTPIO 0x1u      /* use CTPIO where the NIC has it (always on CTPIO-only NICs) */
#define EFSDK_EFVI_TX_TIMESTAMPS 0x2u /* hardware TX timestamps: one TX_WITH_TIMESTAMP event per frame */

typedef struct efsdk_efvi_tx_config {
    char iface[16];
    uint32_t flags;           /* EFSDK_EFVI_TX_* | EFSDK_EFVI_DATAPATH_* */
    uint32_t pd_flags;        /* EF_PD_* */
    int32_t txq_size;         /* TX descriptors; -1 = driver default (512) */
    int32_t evq_size;         /* event queue entries; -1 = default */
    uint32_t n_bufs;          /* 2 KiB transmit buffers; 0 (or more than the TX ring holds) = its capacity */
    uint32_t ctpio_threshold; /* bytes written before cut-through starts; EF_VI_CTPIO_CT_THRESHOLD_SNF = store-and-forward */
} efsdk_efvi_tx_config;

/* A completed frame's hardware send time (TX timestamps on). */
typedef struct efsdk_tx_stamp {
    uint32_t id;       /* the id efsdk_efvi_tx_send gave the frame */
    uint32_t ts_flags; /* EF_VI_SYNC_FLAG_CLOCK_SET | EF_VI_SYNC_FLAG_CLOCK_IN_SYNC */
    uint64_t ts_ns;    /* seconds * 1e9 + ns of the adapter clock (synchronised to UTC by sfptpd) */
} efsdk_tx_stamp;

typedef struct efsdk_efvi_tx_stats {
    uint64_t sent;        /* frames handed to the NIC */
    uint64_t bytes;
    uint64_t ctpio;       /* of which written by CTPIO (the NIC may still have sent the DMA fallback) */
    uint64_t completed;   /* completions reaped (buffer back on the free stack) */
    uint64_t timestamps;  /* completions with a hardware timestamp */
    uint64_t busy;        /* send attempts refused with -EAGAIN: no free buffer or ring space */
    uint64_t too_big;     /* sends refused with -EMSGSIZE */
    uint64_t tx_errors;   /* TX_ERROR events (the queue was re-initialised after each) */
    uint64_t failed;      /* frames without completion at a TX error: may not have been sent */
    uint64_t resets;      /* RESET events: the VI is dead */
    uint64_t unknown_events;
    uint32_t in_flight;   /* frames sent and not completed */
    uint32_t n_bufs;
    uint32_t ctpio_mode;  /* 1: frames go out by CTPIO */
    uint32_t ctpio_only;  /* 1: the NIC has no DMA transmit (X3) */
    uint32_t tx_timestamps;
    uint32_t express;     /* 1: the PD uses the express datapath */
} efsdk_efvi_tx_stats;

typedef struct efsdk_efvi_tx {
    ef_driver_handle dh;
    ef_pd pd;
    ef_vi vi; /* holds pointers into mapped NIC memory: the handle never moves */
    ef_memreg mr;
    uint32_t res;
    int fatal;
    uint32_t flags;
    unsigned ctpio_threshold;
    uint8_t *mem;
    size_t mem_len;
    int mem_mmap;
    uint32_t n_bufs;
    uint32_t *free_ids;
    uint32_t n_free;
    efsdk_efvi_tx_stats st;
} efsdk_efvi_tx;

#define EFVI_TX_FRAME_MAX (EFVI_BUF_SIZE - EFVI_DMA_OFF)

static inline uint8_t *tx_buf(efsdk_efvi_tx *t, uint32_t id) { return t->mem + (size_t)id * EFVI_BUF_SIZE + EFVI_DMA_OFF; }

static inline void tx_done(efsdk_efvi_tx *t, uint32_t id)
{
    if (id < t->n_bufs && t->n_free < t->n_bufs) {
        t->free_ids[t->n_free++] = id;
        t->st.in_flight--;
    }
}

void efsdk_efvi_tx_close(efsdk_efvi_tx *t)
{
    if (!t)
        return;
    if (t->res & R_VI)
        (void)ef_vi_free(&t->vi, t->dh);
    if (t->res & R_MEMREG)
        (void)ef_memreg_free(&t->mr, t->dh);
    if (t->res & R_MEM)
        efvi_free_dma(&t->mem, t->mem_len, t->mem_mmap);
    if (t->res & R_PD)
        (void)ef_pd_free(&t->pd, t->dh);
    if (t->res & R_DRIVER)
        (void)ef_driver_close(t->dh);
    free(t->free_ids);
    free(t);
}

static int efvi_tx_open_steps(efsdk_efvi_tx *t, const efsdk_efvi_tx_config *cfg, int *stage)
{
    int rc;
    if ((rc = efvi_open_pd(&t->dh, &t->pd, &t->res, cfg->iface, cfg->pd_flags, cfg->flags, &t->st.express, stage)) < 0)
        return rc;

    unsigned long v = 0;
    int ctpio_capable = ef_pd_capabilities_get(t->dh, &t->pd, t->dh, EF_VI_CAP_CTPIO, &v) == 0 && v;
    v = 0;
    t->st.ctpio_only = ef_pd_capabilities_get(t->dh, &t->pd, t->dh, EF_VI_CAP_CTPIO_ONLY, &v) == 0 && v;
    t->st.ctpio_mode = t->st.ctpio_only || ((cfg->flags & EFSDK_EFVI_TX_CTPIO) && ctpio_capable);

    *stage = EFSDK_EFVI_STAGE_VI;
    uint64_t vflags = EF_VI_FLAGS_DEFAULT;
    if (t->st.ctpio_mode)
        vflags |= EF_VI_TX_CTPIO;
    if (cfg->flags & EFSDK_EFVI_TX_TIMESTAMPS)
        vflags |= EF_VI_TX_TIMESTAMPS;
    /* rxq 0: a transmit-only VI */
    if ((rc = ef_vi_alloc_from_pd(&t->vi, t->dh, &t->pd, t->dh, cfg->evq_size, 0, cfg->txq_size, NULL, -1,
                                  (enum ef_vi_flags)vflags)) < 0)
        return rc;
    t->res |= R_VI;
    t->st.tx_timestamps = (cfg->flags & EFSDK_EFVI_TX_TIMESTAMPS) != 0;

    *stage = EFSDK_EFVI_STAGE_MEM;
    uint32_t cap = (uint32_t)ef_vi_transmit_capacity(&t->vi);
    /* Each frame in flight holds one buffer and one descriptor: more buffers than ring slots never help. */
    t->n_bufs = cfg->n_bufs && cfg->n_bufs < cap ? cfg->n_bufs : cap;
    if (t->n_bufs == 0)
        return -EINVAL;
    if ((rc = efvi_alloc_dma((size_t)t->n_bufs * EFVI_BUF_SIZE, &t->mem, &t->mem_len, &t->mem_mmap)) < 0)
        return rc;
    t->res |= R_MEM;
    t->free_ids = calloc(t->n_bufs, sizeof *t->free_ids);
    if (!t->free_ids)
        return -ENOMEM;
    for (uint32_t i = t->n_bufs; i > 0; i--)
        t->free_ids[t->n_free++] = i - 1;
    t->st.n_bufs = t->n_bufs;

    *stage = EFSDK_EFVI_STAGE_MEMREG;
    if ((rc = ef_memreg_alloc(&t->mr, t->dh, &t->pd, t->dh, t->mem, t->mem_len)) < 0)
        return rc;
    t->res |= R_MEMREG;
    *stage = 0;
    return 0;
}

/*
 * Open a transmit VI on cfg->iface.  0 and *out, or -errno with *stage set to
 * the EFSDK_EFVI_STAGE_* that failed (everything acquired is released).
 */
int efsdk_efvi_tx_open(const efsdk_efvi_tx_config *cfg, efsdk_efvi_tx **out, int *stage)
{
    int dummy;
    if (!stage)
        stage = &dummy;
    *stage = EFSDK_EFVI_STAGE_CONFIG;
    if (!cfg || !out)
        return -EINVAL;
    *out = NULL;
    if (!cfg->iface[0] || memchr(cfg->iface, 0, sizeof cfg->iface) == NULL || cfg->ctpio_threshold > 0xffff)
        return -EINVAL;
    efsdk_efvi_tx *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->flags = cfg->flags;
    t->ctpio_threshold = cfg->ctpio_threshold;
    int rc = efvi_tx_open_steps(t, cfg, stage);
    if (rc < 0) {
        efsdk_efvi_tx_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

/*
 * Send one whole Ethernet frame (copied into a registered buffer).  0 with
 * *id set, or -EAGAIN (no free buffer / no ring space: reap completions with
 * efsdk_efvi_tx_poll and retry), -EMSGSIZE (larger than one buffer),
 * -EINVAL (shorter than an Ethernet header), -ENETRESET (the VI is dead).
 */
int efsdk_efvi_tx_send(efsdk_efvi_tx *t, const uint8_t *frame, uint32_t len, uint32_t *id)
{
    if (!t || !frame || !id || len < EFSDK_ETH_HLEN)
        return -EINVAL;
    if (t->fatal)
        return t->fatal;
    if (len > EFVI_TX_FRAME_MAX) {
        t->st.too_big++;
        return -EMSGSIZE;
    }
    /* CTPIO writes the frame before its fallback can be refused: check ring room first,
     * or a frame could leave with no descriptor (and id) behind it. */
    if (t->n_free == 0 ||
        (t->st.ctpio_mode && (ef_vi_transmit_space(&t->vi) < 1 || ef_vi_transmit_space_bytes(&t->vi) < (int)len))) {
        t->st.busy++;
        return -EAGAIN;
    }
    uint32_t b = t->free_ids[--t->n_free];
    uint8_t *p = tx_buf(t, b);
    memcpy(p, frame, len);
    ef_addr dma = ef_memreg_dma_addr(&t->mr, (size_t)b * EFVI_BUF_SIZE + EFVI_DMA_OFF);
    int rc;
    if (t->st.ctpio_mode) {
        ef_vi_transmit_ctpio(&t->vi, p, len, t->ctpio_threshold);
        rc = ef_vi_transmit_ctpio_fallback(&t->vi, dma, len, (ef_request_id)b); /* always, same id */
    } else {
        rc = ef_vi_transmit(&t->vi, dma, (int)len, (ef_request_id)b);
    }
    if (rc < 0) {
        t->free_ids[t->n_free++] = b;
        if (rc == -EAGAIN)
            t->st.busy++;
        return rc;
    }
    t->st.sent++;
    t->st.bytes += len;
    t->st.ctpio += t->st.ctpio_mode;
    t->st.in_flight++;
    *id = b;
    return 0;
}

/* After a TX_ERROR: count and free every frame left without completion, then restart the queue. */
static int tx_error(efsdk_efvi_tx *t)
{
    ef_request_id dma_id;
    t->st.tx_errors++;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare" /* inside Onload's macro */
    ef_vi_for_each_tx_error_failed_transmit(&t->vi, dma_id) {
        t->st.failed++;
        tx_done(t, (uint32_t)dma_id);
    }
#pragma GCC diagnostic pop
    return ef_vi_reinit_txq_post_error(&t->vi);
}

/*
 * Reap completions: buffers go back to the free stack.  With TX timestamps,
 * each completed frame's send time is written to stamps[] (at most max; at
 * least 2, what ef_eventq_poll needs); returns how many, or -errno.
 */
int efsdk_efvi_tx_poll(efsdk_efvi_tx *t, efsdk_tx_stamp *stamps, uint32_t max)
{
    if (!t || !stamps || max < 2)
        return -EINVAL;
    if (t->fatal)
        return t->fatal;
    ef_event evs[EFVI_EV_BATCH];
    ef_request_id ids[EF_VI_TRANSMIT_BATCH];
    int n = ef_eventq_poll(&t->vi, evs, max < EFVI_EV_BATCH ? (int)max : EFVI_EV_BATCH);
    uint32_t k = 0;
    for (int i = 0; i < n; i++) {
        const ef_event *ev = &evs[i];
        switch (EF_EVENT_TYPE(*ev)) {
        case EF_EVENT_TYPE_TX: {
            int m = ef_vi_transmit_unbundle(&t->vi, ev, ids);
            for (int j = 0; j < m; j++)
                tx_done(t, (uint32_t)ids[j]);
            t->st.completed += (uint64_t)m;
            break;
        }
        case EF_EVENT_TYPE_TX_WITH_TIMESTAMP: { /* one frame per event: no unbundle */
            uint32_t id = (uint32_t)EF_EVENT_TX_WITH_TIMESTAMP_RQ_ID(*ev);
            efsdk_tx_stamp *s = &stamps[k++]; /* k < max: at most max events were polled */
            s->id = id;
            s->ts_flags = EF_EVENT_TX_WITH_TIMESTAMP_SYNC_FLAGS(*ev);
            s->ts_ns = (uint64_t)EF_EVENT_TX_WITH_TIMESTAMP_SEC(*ev) * 1000000000ull + EF_EVENT_TX_WITH_TIMESTAMP_NSEC(*ev);
            tx_done(t, id);
            t->st.completed++;
            t->st.timestamps++;
            break;
        }
        case EF_EVENT_TYPE_TX_ERROR: {
            int rc = tx_error(t);
            if (rc < 0)
                return t->fatal = rc;
            break;
        }
        case EF_EVENT_TYPE_RESET:
            t->st.resets++;
            return t->fatal = -ENETRESET;
        default:
            t->st.unknown_events++;
            break;
        }
    }
    return (int)k;
}

int efsdk_efvi_tx_get_stats(efsdk_efvi_tx *t, efsdk_efvi_tx_stats *out)
{
    if (!t || !out)
        return -EINVAL;
    *out = t->st;
    return 0;
}
