/*
 * ITCH 5.0 -> book-op records; contract in itch_ops.h and book/ops.py.
 *
 * Framing, validation and the locate filter are efsdk_itch_decode's: this
 * file only re-shapes its records, a small stack batch at a time, so there is
 * one framing implementation in native/.  The re-shaping costs ~1 ns a
 * message; it saves the Python book an order of magnitude more.
 */
#include "itch_ops.h"

#include <errno.h>
#include <limits.h>

/* Records decoded per inner call: big enough to amortise the call, small
 * enough (8 KiB) to stay in L1 while being re-shaped. */
#define OPS_STAGE 256

static inline uint64_t with_seq(uint64_t seq, uint32_t shares)
{
    return (seq & 0xFFFFFFFFu) << 32 | shares;
}

static inline void mark_touched(efsdk_touched *t, uint16_t locate)
{
    if (!t->seen[locate]) {
        t->seen[locate] = 1;
        t->list[t->n++] = locate;
    }
}

void efsdk_touched_reset(efsdk_touched *touched)
{
    if (touched == NULL)
        return;
    for (uint32_t i = 0; i < touched->n; i++)
        touched->seen[touched->list[i]] = 0;
    touched->n = 0;
}

int efsdk_itch_decode_ops(const uint8_t *buf, size_t len, size_t *consumed,
                          uint64_t *ops, size_t ops_cap,
                          uint8_t *locate_filter, const uint8_t *symbols,
                          size_t n_symbols, uint64_t *seq,
                          const uint8_t *message_types,
                          efsdk_itch_stats *stats, efsdk_touched *touched)
{
    efsdk_itch_record stage[OPS_STAGE];
    uint64_t frame_of[OPS_STAGE];

    if (consumed == NULL || ops == NULL || seq == NULL || ops_cap < 2 ||
        (buf == NULL && len != 0) || len > (size_t)UINT32_MAX)
        return -EINVAL;
    if (ops_cap > (size_t)INT_MAX)
        ops_cap = (size_t)INT_MAX;

    size_t pos = 0, n = 0;
    uint64_t first = *seq; /* feed sequence of the next frame */
    for (;;) {
        /* Worst case two op records per message (U). */
        size_t want = (ops_cap - n) / 2;
        if (want == 0)
            break;
        if (want > OPS_STAGE)
            want = OPS_STAGE;
        size_t used = 0;
        uint64_t framed = 0;
        int got = efsdk_itch_decode_indexed(buf + pos, len - pos, &used, stage,
                                            want, locate_filter, symbols,
                                            n_symbols, stats, frame_of, &framed);
        if (got < 0)
            return got;
        for (int i = 0; i < got; i++) {
            const efsdk_itch_record *r = &stage[i];
            uint64_t *o = ops + 4 * n;
            const uint64_t off = pos + r->offset;
            const uint64_t s = first + frame_of[i];
            switch (r->type) {
            case 'A':
            case 'F':
                if (r->side == 'B' || r->side == 'S') {
                    o[0] = EFSDK_OP_ADD_BASE + 2u * r->locate + (r->side == 'S');
                    o[1] = r->ref;
                    o[2] = r->price;
                    o[3] = with_seq(s, r->shares);
                } else {
                    if (stats != NULL)
                        stats->bad_side++;
                    /* Like every anomaly: the frame's offset and declared
                     * length, plus the offending side byte above it. */
                    o[0] = EFSDK_OP_ANOMALY;
                    o[1] = off - 2;
                    o[2] = EFSDK_ITCH_ANOMALY_BAD_SIDE;
                    o[3] = (uint64_t)r->side << 16 | (r->type == 'A' ? 36u : 40u);
                }
                break;
            case 'D':
                o[0] = EFSDK_OP_DELETE;
                o[1] = r->ref;
                o[2] = 0;
                o[3] = off;
                break;
            case 'U':
                o[0] = EFSDK_OP_REPLACE_OUT;
                o[1] = r->ref;
                o[2] = r->ref2;
                o[3] = off;
                o[4] = EFSDK_OP_REPLACE_IN;
                o[5] = r->ref2;
                o[6] = r->price;
                o[7] = with_seq(s, r->shares);
                n++;
                break;
            case 'E':
                o[0] = EFSDK_OP_EXECUTE;
                o[1] = r->ref;
                o[2] = r->shares;
                o[3] = off;
                break;
            case 'X':
                o[0] = EFSDK_OP_CANCEL;
                o[1] = r->ref;
                o[2] = r->shares;
                o[3] = off;
                break;
            case 'C':
                o[0] = EFSDK_OP_EXECUTE_PRICE;
                o[1] = r->ref;
                o[2] = r->shares;
                o[3] = off;
                break;
            case EFSDK_ITCH_ANOMALY:
                o[0] = EFSDK_OP_ANOMALY;
                o[1] = off; /* the frame's length prefix */
                o[2] = r->side; /* kind */
                o[3] = r->shares; /* declared length */
                break;
            default:
                if (message_types != NULL && message_types[r->type] == 0) {
                    if (stats != NULL)
                        stats->filtered++;
                    continue; /* not wanted: no record, n unchanged */
                }
                o[0] = EFSDK_OP_MESSAGE;
                o[1] = off;
                o[2] = r->locate;
                o[3] = r->type;
                break;
            }
            if (touched != NULL && o[0] != EFSDK_OP_MESSAGE && o[0] != EFSDK_OP_ANOMALY)
                mark_touched(touched, r->locate);
            n++;
        }
        first += framed;
        pos += used;
        if ((size_t)got < want)
            break; /* incomplete frame or end of input */
    }
    *consumed = pos;
    *seq = first;
    return (int)n;
}

int efsdk_book_ops_version(void)
{
    return EFSDK_BOOK_OPS_VERSION;
}
