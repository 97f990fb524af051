/*
 * ITCH 5.0 framing + decode into fixed-width records (the contract between
 * native/ and efsdk.itch.records).
 *
 * Input is a run of length-prefixed messages: u16 big-endian length (excluding
 * itself) then the message. NASDAQ BinaryFILE captures and MoldUDP64 message
 * blocks share this framing, so one decoder serves files and the wire.
 *
 * The decoder turns each message into one 32-byte record in host byte order.
 * Python reads them with struct format "=BBHIIIQQ" (no padding).  Rare message
 * types carry only type/locate/offset; Python decodes them from the input
 * buffer at `offset` when it needs their fields.  The order book itself lives
 * in Python (book/); this file only frames, decodes and filters.
 */
#ifndef EFSDK_ITCH_RECORDS_H
#define EFSDK_ITCH_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#define EFSDK_ITCH_RECORDS_VERSION 5 /* bump on any layout/semantic change or new function */

/* Record type 0 = anomaly: `side` holds the kind, `shares` the declared length,
 * `price` the actual type byte (0 if none), `offset` where it starts. */
#define EFSDK_ITCH_ANOMALY 0
#define EFSDK_ITCH_ANOMALY_UNKNOWN_TYPE 1 /* type byte not one of the 23 */
#define EFSDK_ITCH_ANOMALY_BAD_LENGTH 2   /* length prefix != size for its type */
#define EFSDK_ITCH_ANOMALY_EMPTY 3        /* length prefix 0 */

typedef struct efsdk_itch_record {
    uint8_t type;    /* ITCH type byte ('A', 'D', ...) or EFSDK_ITCH_ANOMALY */
    uint8_t side;    /* A F P: 'B'/'S'; C: printable 'Y'/'N'; Q: cross type; anomaly: kind */
    uint16_t locate; /* stock locate */
    uint32_t shares; /* A F U P: shares; E C: executed; X: cancelled */
    uint32_t price;  /* A F U P: price; C: execution price; Q: cross price (1e-4) */
    uint32_t offset; /* offset of the message's type byte in the input buffer */
    uint64_t ref;    /* A F E C X D P: order ref; U: original ref; Q: shares (8 bytes) */
    uint64_t ref2;   /* U: new ref; E C P Q B: match number */
} efsdk_itch_record;

typedef struct efsdk_itch_stats {
    uint64_t messages;           /* framed messages seen (incl. anomalies and filtered) */
    uint64_t bytes;              /* bytes consumed */
    uint64_t emitted;            /* records written */
    uint64_t filtered;           /* dropped by the locate filter */
    uint64_t unknown_type;
    uint64_t bad_length;
    uint64_t empty;
    uint64_t bad_side;           /* book-op decoder: add whose side is not B/S */
    uint64_t by_type[256];       /* every framed message, by type byte, filtered or not */
    uint64_t last_timestamp;     /* ns since midnight of the last well-formed message (feed time) */
} efsdk_itch_stats;

/*
 * Decode whole framed messages from buf[0:len) into out[0:out_cap).
 *
 * locate_filter: NULL = emit everything; otherwise 65536 bytes, non-zero =
 *   emit that locate.  Messages with locate 0 (system-wide) and anomalies are
 *   always emitted.  R (stock directory) messages are emitted when their
 *   locate passes, or when their 8-byte stock field equals one of
 *   `symbols[0:n_symbols*8)` (space padded) - then that locate is also set in
 *   the filter, so a subscription by symbol works within one call.
 * Stops at the first incomplete message (its bytes are left unconsumed; the
 *   caller carries them into the next buffer or reports a truncated tail) or
 *   when `out` is full.
 * *consumed = bytes of whole messages processed. Returns records written
 *   (>= 0) or -EINVAL on bad arguments.  Never reads past buf[len-1].
 */
int efsdk_itch_decode(const uint8_t *buf, size_t len, size_t *consumed,
                      efsdk_itch_record *out, size_t out_cap,
                      uint8_t *locate_filter, const uint8_t *symbols,
                      size_t n_symbols, efsdk_itch_stats *stats);

/*
 * efsdk_itch_decode plus, for native/ callers: frame_index[i] (if not NULL) =
 * how many frames preceded record i in this call, filtered ones included,
 * and *framed = frames seen in this call.  This is how the book-op stream
 * numbers messages by their position in the feed whatever the filter drops.
 */
int efsdk_itch_decode_indexed(const uint8_t *buf, size_t len, size_t *consumed,
                              efsdk_itch_record *out, size_t out_cap,
                              uint8_t *locate_filter, const uint8_t *symbols,
                              size_t n_symbols, efsdk_itch_stats *stats,
                              uint64_t *frame_index, uint64_t *framed);

int efsdk_itch_records_version(void);

/* Size of an ITCH 5.0 message by type byte (type byte included); 0 = unknown. */
int efsdk_itch_message_size(uint8_t type);

/*
 * Count whole framed messages per stock locate (bytes 1-2 of the message):
 * counts[locate] += 1, counts having 65536 slots.  Frames shorter than 3 bytes
 * carry no locate and are skipped (the decoder reports them).  Cheap enough to
 * run ahead of a replay to balance instruments over processes.  *consumed =
 * bytes of whole messages; returns frames seen, or -EINVAL on bad arguments.
 */
int64_t efsdk_itch_count_locates(const uint8_t *buf, size_t len, size_t *consumed, uint64_t *counts);

#endif
