/*
 * A benchmark sender that runs in the kernel: one frame transmitted flat out
 * through XDP's live-frames test mode (BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES, Linux >= 5.18), the mechanism of xdp-tools'
 * xdp-trafficgen.
 *
 * A two-instruction XDP program (return XDP_TX) runs on copies of `frame` as
 * if each had arrived on `ifindex`, and XDP_TX sends every copy straight
 * back out of that interface through the driver's ndo_xdp_xmit: no socket,
 * no skb on the sending side, a batch of frames per syscall.  On a veth the
 * copies land in the peer's XDP receive ring, which exists only while the
 * peer has an XDP program attached (efsdk_xdp_pass_attach) or NAPI enabled.
 *
 * The caller picks the interface (one inside a namespace it made) and checks
 * the frame's destination: nothing here can aim traffic elsewhere.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "frame_source.h"

#define XDP_BLAST_REPEAT 65536u /* frames per syscall: ~10-50 ms, so the duration is kept closely */
#define XDP_BLAST_BATCH 256u    /* frames per XDP_TX flush (the kernel allows up to 256) */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* r0 = verdict; exit.  Returns the program fd or -errno. */
static int load_verdict_prog(int32_t verdict)
{
    struct bpf_insn insns[2];
    memset(insns, 0, sizeof(insns));
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
    insns[0].dst_reg = BPF_REG_0;
    insns[0].imm = verdict;
    insns[1].code = BPF_JMP | BPF_EXIT;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_XDP;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = 2;
    attr.license = (uint64_t)(uintptr_t)"GPL";
    int fd = (int)sys_bpf(BPF_PROG_LOAD, &attr);
    return fd < 0 ? -errno : fd;
}

/* One BPF_PROG_TEST_RUN of `prog` over `repeat` live copies of `frame` "received" on `ifindex`. */
static int run_live(int prog, int ifindex, const uint8_t *frame, uint32_t len, uint32_t repeat)
{
    struct xdp_md ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.data_end = len;
    ctx.ingress_ifindex = (uint32_t)ifindex;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.test.prog_fd = (uint32_t)prog;
    attr.test.data_in = (uint64_t)(uintptr_t)frame;
    attr.test.data_size_in = len;
    attr.test.ctx_in = (uint64_t)(uintptr_t)&ctx;
    attr.test.ctx_size_in = sizeof(ctx);
    attr.test.repeat = repeat;
    attr.test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    attr.test.batch_size = XDP_BLAST_BATCH;
    return sys_bpf(BPF_PROG_TEST_RUN, &attr) < 0 ? -errno : 0;
}

int efsdk_xdp_blast(int ifindex, const uint8_t *frame, uint32_t len, uint64_t duration_ns, uint64_t *sent,
                    uint64_t *calls)
{
    if (ifindex <= 0 || frame == NULL || len < 14 || !sent || !calls)
        return -EINVAL;
    *sent = *calls = 0;
    int prog = load_verdict_prog(XDP_TX);
    if (prog < 0)
        return prog;
    int rc = 0;
    uint64_t end = now_ns() + duration_ns;
    while (now_ns() < end) {
        rc = run_live(prog, ifindex, frame, len, XDP_BLAST_REPEAT);
        if (rc == -EINTR) {
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        (*calls)++;
        *sent += XDP_BLAST_REPEAT; /* run through XDP_TX; the driver may still drop some */
    }
    close(prog);
    return rc;
}

int efsdk_xdp_live_frames_probe(int ifindex, const uint8_t *frame, uint32_t len)
{
    if (ifindex <= 0 || frame == NULL || len < 14)
        return -EINVAL;
    int prog = load_verdict_prog(XDP_DROP); /* the same kernel path, and nothing leaves */
    if (prog < 0)
        return prog;
    int rc = run_live(prog, ifindex, frame, len, 1);
    close(prog);
    return rc;
}

int efsdk_xdp_pass_attach(int ifindex)
{
    if (ifindex <= 0)
        return -EINVAL;
    int prog = load_verdict_prog(XDP_PASS);
    if (prog < 0)
        return prog;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.link_create.prog_fd = (uint32_t)prog;
    attr.link_create.target_ifindex = (uint32_t)ifindex;
    attr.link_create.attach_type = BPF_XDP;
    int link = (int)sys_bpf(BPF_LINK_CREATE, &attr);
    int err = link < 0 ? -errno : 0;
    close(prog); /* the link holds it */
    return err ? err : link;
}
