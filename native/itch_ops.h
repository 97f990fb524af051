/*
 * ITCH 5.0 -> book-op stream (the contract with book/ops.py).
 *
 * Frames and filters exactly like efsdk_itch_decode (it is called underneath),
 * then writes each message as one 4-word record [op, a, b, c] of uint64_t, or
 * two for U (replace = REPLACE_OUT + REPLACE_IN), in the form the pure-Python
 * book applies fastest.  See book/ops.py for the table of meanings; the op
 * codes below must equal it (efsdk.itch.ops checks at import).
 */
#ifndef EFSDK_ITCH_OPS_H
#define EFSDK_ITCH_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "itch_records.h"

#define EFSDK_BOOK_OPS_VERSION 1

#define EFSDK_OP_ANOMALY 0
#define EFSDK_OP_DELETE 1
#define EFSDK_OP_EXECUTE 2
#define EFSDK_OP_EXECUTE_PRICE 3
#define EFSDK_OP_CANCEL 4
#define EFSDK_OP_REPLACE_OUT 5
#define EFSDK_OP_REPLACE_IN 6
#define EFSDK_OP_MESSAGE 7
#define EFSDK_OP_ADD_BASE 16

/* Anomaly kind (beyond EFSDK_ITCH_ANOMALY_*) for an add whose side is not B/S;
 * its record's c word is side_byte << 16 | declared length. */
#define EFSDK_ITCH_ANOMALY_BAD_SIDE 5

/*
 * The books a decode touched: each stock locate whose resting orders a
 * record may change (adds, deletes, executions, cancels, replaces) is listed
 * once, in first-touch order, until efsdk_touched_reset.  A consumer that
 * republishes books per batch (the ZeroMQ fan-out) reads the list instead of
 * looking every record up in Python.  The caller owns it (~200 KiB).
 */
typedef struct {
    uint32_t n;
    uint16_t list[65536];
    uint8_t seen[65536];
} efsdk_touched;

/* Forget the listed locates (clears only their marks: O(n), not O(65536)). */
void efsdk_touched_reset(efsdk_touched *touched);

/*
 * Decode whole framed messages from buf[0:len) into ops[0 : 4*ops_cap).
 * ops_cap counts 4-word records and must be >= 2 (a U needs two).  Filter,
 * symbols and stats are as for efsdk_itch_decode.  *seq is the feed
 * sequence number of the next frame (adds and replaces store its low 32 bits
 * beside the shares as the order's arrival sequence).
 * Offsets in records are relative to buf.  Returns records written or -EINVAL.
 * *seq counts every frame, filtered ones included, so an order's arrival
 * sequence is its message's position in the feed whatever the subscription.
 * message_types: NULL = every non-book message becomes an OP_MESSAGE record;
 * otherwise 256 bytes, non-zero = emit that type; the others are counted in
 * stats->filtered (and by_type) and dropped here, before Python pays for them.
 * touched: NULL, or where to list the locates of book-changing records.
 */
int efsdk_itch_decode_ops(const uint8_t *buf, size_t len, size_t *consumed,
                          uint64_t *ops, size_t ops_cap,
                          uint8_t *locate_filter, const uint8_t *symbols,
                          size_t n_symbols, uint64_t *seq,
                          const uint8_t *message_types,
                          efsdk_itch_stats *stats, efsdk_touched *touched);

int efsdk_book_ops_version(void);

#endif
