/*
 * Multicast joins for the raw frame sources (AF_PACKET, AF_XDP, ef_vi).
 *
 * A raw receive path sends no IGMP, so without a membership the switch (or a
 * veth's peer) never forwards the group: an ordinary kernel UDP socket joins
 * for the source and is kept open as long as the source lives.
 */
#ifndef EFSDK_MCAST_JOIN_H
#define EFSDK_MCAST_JOIN_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "frame_source.h"

/* Join every multicast group among feeds[0:n) on *fd (opened on first use; -1
 * on entry when not yet).  iface_addr (network order) picks the interface by
 * address, else ifindex does.  Returns 0 or -errno; a group listed twice is
 * not an error. */
static inline int efsdk_join_groups(int *fd, const efsdk_feed *feeds, uint32_t n, int ifindex, uint32_t iface_addr)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!IN_MULTICAST(ntohl(feeds[i].addr)))
            continue;
        if (*fd < 0) {
            *fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (*fd < 0)
                return -errno;
        }
        struct ip_mreqn mr = {.imr_ifindex = iface_addr ? 0 : ifindex};
        mr.imr_multiaddr.s_addr = feeds[i].addr;
        mr.imr_address.s_addr = iface_addr;
        if (setsockopt(*fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr) < 0 && errno != EADDRINUSE)
            return -errno; /* EADDRINUSE: the same group listed twice */
    }
    return 0;
}

#endif
