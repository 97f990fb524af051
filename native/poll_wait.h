/*
 * The waiting half of a frame source's poll(max, timeout), shared by the
 * kernel-fd backends (UDP, AF_PACKET, AF_XDP); ef_vi sleeps in its driver
 * instead.  Include after defining _GNU_SOURCE (ppoll).
 *
 * A backend's poll reads once; if nothing came and the caller allows a
 * timeout, efsdk_wait_for_frames alternates the backend's wait step and its
 * read until frames arrive, the deadline passes or an error occurs.  The wait
 * step decides how to wait: sleep on the fd, spin (busy poll), or give up
 * when waiting cannot help (every ring slot held by unreleased frames).
 */
#ifndef EFSDK_POLL_WAIT_H
#define EFSDK_POLL_WAIT_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "frame_source.h"

#define EFSDK_WAIT_READY 0 /* something may be readable now: read again */
#define EFSDK_WAIT_STOP 1  /* waiting cannot produce frames: poll returns 0 */

static inline uint64_t efsdk_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Sleep until fd is readable or ns pass (< 0: no limit).  0, or -errno: a
 * socket error (SO_ERROR, e.g. ENETDOWN when the interface goes away) or
 * EBADF.  A signal ends the wait early with 0, so the caller's handlers run.
 */
static inline int efsdk_wait_fd(int fd, int64_t ns)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    struct timespec ts, *tsp = NULL;
    if (ns >= 0) {
        ts.tv_sec = ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        tsp = &ts;
    }
    int rc = ppoll(&p, 1, tsp, NULL);
    if (rc < 0)
        return errno == EINTR ? 0 : -errno;
    if (rc > 0 && (p.revents & POLLERR)) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err)
            return -err;
    }
    if (rc > 0 && (p.revents & POLLNVAL))
        return -EBADF;
    return 0;
}

/* A backend's read (frames written to out, or -errno) and wait step (EFSDK_WAIT_* or -errno). */
typedef int (*efsdk_read_fn)(void *src, efsdk_frame *out, uint32_t max);
typedef int (*efsdk_wait_fn)(void *src, int64_t left_ns);

/*
 * After a read found nothing: wait and read again until frames, the timeout
 * (ns; < 0 = none, must not be 0) or an error.  Static inline with constant
 * function arguments, so the compiler inlines read and wait into each backend.
 */
static inline int efsdk_wait_for_frames(void *src, efsdk_read_fn read, efsdk_wait_fn wait, efsdk_frame *out,
                                        uint32_t max, int64_t timeout_ns)
{
    uint64_t deadline = timeout_ns > 0 ? efsdk_mono_ns() + (uint64_t)timeout_ns : 0;
    for (;;) {
        int64_t left = -1;
        if (timeout_ns > 0) {
            uint64_t now = efsdk_mono_ns();
            if (now >= deadline)
                return 0;
            left = (int64_t)(deadline - now);
        }
        int w = wait(src, left);
        if (w < 0)
            return w;
        if (w == EFSDK_WAIT_STOP)
            return 0;
        int n = read(src, out, max);
        if (n != 0)
            return n;
    }
}

#endif
