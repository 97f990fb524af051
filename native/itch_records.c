/*
 * ITCH 5.0 framing + decode into fixed-width records; see itch_records.h for
 * the contract.  One pass, no allocation, no callbacks: the caller owns every
 * buffer and the per-call cost is a tight loop over the input.
 *
 * Choices the header leaves open, fixed here (efsdk.itch.records mirrors them
 * in its pure-Python reference and the tests hold both to them):
 *  - Anomaly records: locate 0, ref 0, ref2 0, and `offset` is the offset of
 *    the frame's 2-byte length prefix (there may be no type byte), so
 *    buf[offset : offset + 2 + shares] is the whole bad frame.
 *  - The length prefix is the framing: an unknown type or a wrong length is
 *    skipped by its declared length (never resynchronised by guessing).
 *  - An empty frame (length 0) counts under by_type[0]; so do frames whose
 *    type byte really is 0x00.  Thus sum(by_type) == messages.
 *  - `out` full is checked before each frame, so decoding stops as soon as
 *    out_cap records are written, even if the frames after them would all be
 *    filtered.
 *  - The symbol subscription only applies when a locate filter is given (with
 *    no filter every message is emitted anyway) and only to R messages whose
 *    locate does not already pass; a match sets locate_filter[locate] = 1.
 *  - len must be < 4 GiB (record offsets are u32): larger is -EINVAL, and the
 *    Python wrapper never passes more than 0xFFFFFFFF bytes per call.
 *  - stats may be NULL (counters are then discarded).  out_cap above INT_MAX
 *    is treated as INT_MAX so the return value cannot overflow.
 */
#include "itch_records.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Message size by type byte, type byte included; 0 = not an ITCH 5.0 type. */
static const uint8_t k_size[256] = {
    ['S'] = 12, ['R'] = 39, ['H'] = 25, ['Y'] = 20, ['L'] = 26, ['V'] = 35,
    ['W'] = 12, ['K'] = 28, ['J'] = 35, ['h'] = 21, ['A'] = 36, ['F'] = 40,
    ['E'] = 31, ['C'] = 36, ['X'] = 23, ['D'] = 19, ['U'] = 35, ['P'] = 44,
    ['Q'] = 40, ['B'] = 19, ['I'] = 50, ['N'] = 20, ['O'] = 48,
};

/* Big-endian loads; memcpy keeps them legal at any alignment and compiles to
 * a single mov (+ bswap) on x86-64 and AArch64. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define EFSDK_BE16(x) (x)
#define EFSDK_BE32(x) (x)
#define EFSDK_BE64(x) (x)
#else
#define EFSDK_BE16(x) __builtin_bswap16(x)
#define EFSDK_BE32(x) __builtin_bswap32(x)
#define EFSDK_BE64(x) __builtin_bswap64(x)
#endif

static inline uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return EFSDK_BE16(v);
}

static inline uint32_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return EFSDK_BE32(v);
}

static inline uint64_t ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return EFSDK_BE64(v);
}

/* Linear scan: R messages are a few thousand a day and only reach this when
 * their locate is not already subscribed; 8-byte compares, no strcmp. */
static int symbol_match(const uint8_t *stock, const uint8_t *symbols, size_t n)
{
    uint64_t s;
    memcpy(&s, stock, sizeof s);
    for (size_t i = 0; i < n; i++) {
        uint64_t c;
        memcpy(&c, symbols + 8 * i, sizeof c);
        if (c == s)
            return 1;
    }
    return 0;
}

int efsdk_itch_decode(const uint8_t *buf, size_t len, size_t *consumed,
                      efsdk_itch_record *out, size_t out_cap,
                      uint8_t *locate_filter, const uint8_t *symbols,
                      size_t n_symbols, efsdk_itch_stats *stats)
{
    uint64_t framed;
    return efsdk_itch_decode_indexed(buf, len, consumed, out, out_cap,
                                     locate_filter, symbols, n_symbols, stats,
                                     NULL, &framed);
}

int efsdk_itch_decode_indexed(const uint8_t *buf, size_t len, size_t *consumed,
                              efsdk_itch_record *out, size_t out_cap,
                              uint8_t *locate_filter, const uint8_t *symbols,
                              size_t n_symbols, efsdk_itch_stats *stats,
                              uint64_t *frame_index, uint64_t *framed)
{
    efsdk_itch_stats scratch;

    if (consumed == NULL || out == NULL || out_cap == 0 ||
        (buf == NULL && len != 0) || (symbols == NULL && n_symbols != 0) ||
        len > (size_t)UINT32_MAX)
        return -EINVAL;
    if (out_cap > (size_t)INT_MAX)
        out_cap = (size_t)INT_MAX;
    if (stats == NULL) {
        memset(&scratch, 0, sizeof scratch);
        stats = &scratch;
    }

    uint64_t *const by_type = stats->by_type;
    uint64_t n_msgs = 0, n_filtered = 0, n_unknown = 0, n_bad = 0, n_empty = 0;
    uint64_t last_ts = 0;
    size_t pos = 0, n = 0;

    while (n < out_cap && len - pos >= 2) {
        const size_t mlen = ld16(buf + pos);
        if (mlen > len - pos - 2)
            break; /* incomplete: leave it for the caller */
        const uint8_t *const m = buf + pos + 2;
        const size_t frame = 2 + mlen;
        efsdk_itch_record rec = {0};
        n_msgs++;

        if (mlen == 0) {
            by_type[0]++;
            n_empty++;
            rec.side = EFSDK_ITCH_ANOMALY_EMPTY;
            rec.offset = (uint32_t)pos;
            if (frame_index != NULL)
            frame_index[n] = n_msgs - 1;
        out[n++] = rec;
            pos = pos + frame;
            continue;
        }

        const uint8_t t = m[0];
        by_type[t]++;
        if (k_size[t] != mlen) {
            if (k_size[t] == 0) {
                n_unknown++;
                rec.side = EFSDK_ITCH_ANOMALY_UNKNOWN_TYPE;
            } else {
                n_bad++;
                rec.side = EFSDK_ITCH_ANOMALY_BAD_LENGTH;
            }
            rec.shares = (uint32_t)mlen;
            rec.price = t;
            rec.offset = (uint32_t)pos;
            if (frame_index != NULL)
            frame_index[n] = n_msgs - 1;
        out[n++] = rec;
            pos = pos + frame;
            continue;
        }

        /* Every ITCH 5.0 type is >= 12 bytes, so the header is in bounds. */
        const uint16_t loc = ld16(m + 1);
        last_ts = ((uint64_t)ld16(m + 5) << 32) | ld32(m + 7); /* feed time, filtered or not */
        if (locate_filter != NULL && loc != 0 && locate_filter[loc] == 0) {
            if (t != 'R' || !symbol_match(m + 11, symbols, n_symbols)) {
                n_filtered++;
                pos = pos + frame;
                continue;
            }
            locate_filter[loc] = 1;
        }

        rec.type = t;
        rec.locate = loc;
        rec.offset = (uint32_t)(pos + 2);
        switch (t) {
        case 'A':
        case 'F':
            rec.ref = ld64(m + 11);
            rec.side = m[19];
            rec.shares = ld32(m + 20);
            rec.price = ld32(m + 32);
            break;
        case 'D':
            rec.ref = ld64(m + 11);
            break;
        case 'U':
            rec.ref = ld64(m + 11);
            rec.ref2 = ld64(m + 19);
            rec.shares = ld32(m + 27);
            rec.price = ld32(m + 31);
            break;
        case 'E':
            rec.ref = ld64(m + 11);
            rec.shares = ld32(m + 19);
            rec.ref2 = ld64(m + 23);
            break;
        case 'X':
            rec.ref = ld64(m + 11);
            rec.shares = ld32(m + 19);
            break;
        case 'C':
            rec.ref = ld64(m + 11);
            rec.shares = ld32(m + 19);
            rec.ref2 = ld64(m + 23);
            rec.side = m[31];
            rec.price = ld32(m + 32);
            break;
        case 'P':
            rec.ref = ld64(m + 11);
            rec.side = m[19];
            rec.shares = ld32(m + 20);
            rec.price = ld32(m + 32);
            rec.ref2 = ld64(m + 36);
            break;
        case 'Q':
            rec.ref = ld64(m + 11);
            rec.price = ld32(m + 27);
            rec.ref2 = ld64(m + 31);
            rec.side = m[39];
            break;
        case 'B':
            rec.ref2 = ld64(m + 11);
            break;
        default: /* rare types: type/locate/offset only */
            break;
        }
        if (frame_index != NULL)
            frame_index[n] = n_msgs - 1;
        out[n++] = rec;
        pos = pos + frame;
    }

    *consumed = pos;
    *framed = n_msgs;
    if (last_ts)
        stats->last_timestamp = last_ts;
    stats->messages += n_msgs;
    stats->bytes += pos;
    stats->emitted += n;
    stats->filtered += n_filtered;
    stats->unknown_type += n_unknown;
    stats->bad_length += n_bad;
    stats->empty += n_empty;
    return (int)n;
}

int efsdk_itch_records_version(void)
{
    return EFSDK_ITCH_RECORDS_VERSION;
}

int efsdk_itch_message_size(uint8_t type)
{
    return k_size[type];
}

int64_t efsdk_itch_count_locates(const uint8_t *buf, size_t len, size_t *consumed, uint64_t *counts)
{
    if (consumed == NULL || counts == NULL || (buf == NULL && len != 0))
        return -EINVAL;
    size_t pos = 0;
    int64_t n = 0;
    while (len - pos >= 2) {
        const size_t mlen = ld16(buf + pos);
        if (mlen > len - pos - 2)
            break; /* incomplete: leave it for the caller */
        if (mlen >= 3) /* type byte + locate; shorter frames are the decoder's anomalies */
            counts[ld16(buf + pos + 3)]++;
        pos += 2 + mlen;
        n++;
    }
    *consumed = pos;
    return n;
}
