/*
 * A benchmark sender: one datagram template sent flat out with sendmmsg.
 *
 * `efsdk bench wire` needs to offer a receiver more than the ~0.2 M
 * datagrams/s a Python sendto() loop manages on a small machine; one
 * sendmmsg() per `batch` datagrams takes the per-datagram cost down to the
 * kernel's.  The caller owns the socket (already connected to a permitted
 * destination: Python checks the address range), so nothing here can aim
 * traffic anywhere else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "frame_source.h"

#define BLAST_MAX_BATCH 1024 /* UIO_MAXIOV: the kernel's limit per sendmmsg */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int efsdk_udp_blast(int fd, const uint8_t *payload, uint32_t len, uint32_t batch, uint64_t duration_ns,
                    uint64_t *sent, uint64_t *errors)
{
    struct mmsghdr msgs[BLAST_MAX_BATCH];
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
    if (fd < 0 || payload == NULL || batch == 0 || batch > BLAST_MAX_BATCH || !sent || !errors)
        return -EINVAL;
    memset(msgs, 0, sizeof(msgs));
    for (uint32_t i = 0; i < batch; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    *sent = *errors = 0;
    uint64_t end = now_ns() + duration_ns;
    while (now_ns() < end) {
        int n = sendmmsg(fd, msgs, batch, 0);
        if (n > 0) {
            *sent += (uint64_t)n;
        } else if (n < 0 && (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)) {
            (*errors)++; /* queue full: let the receiver's CPU drain it */
            sched_yield();
        } else if (n < 0) {
            return -errno;
        }
    }
    return 0;
}
