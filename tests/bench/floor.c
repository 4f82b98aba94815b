/* tests/bench/floor.c — the write floor for the fan-out benchmark (tests/bench/fanout).
 *
 * What one writev per viewer per merged-write interval costs the kernel and a minimal
 * user space, with nothing else: no protocol, no timers per viewer, one thread.
 *
 *   floor write PORT VIEWERS INTERVAL_MS BYTES_PER_S IOVS_PER_WRITE SECONDS
 *       listens on 127.0.0.1:PORT, accepts VIEWERS connections, then every INTERVAL_MS
 *       writes to every socket, in one writev of IOVS_PER_WRITE buffers, the bytes due
 *       (BYTES_PER_S x INTERVAL_MS / 1000), for SECONDS; prints one JSON line with the
 *       CPU (getrusage, user + system) spent over those SECONDS only.
 *   floor sendfile PORT VIEWERS INTERVAL_MS BYTES_PER_S IOVS_PER_WRITE SECONDS
 *       the same, but each interval's bytes are written once (one pwritev) into a memory
 *       file (memfd_create) and sent to every socket with one sendfile from it: the kernel
 *       takes the file's pages by reference instead of copying each viewer's bytes (what
 *       the edge's merged writer does, edge/src/hub/spool.rs). Pages already sent are
 *       released with FALLOC_FL_PUNCH_HOLE, whole pages only, never rewritten.
 *   floor read PORT VIEWERS SECONDS
 *       connects VIEWERS sockets to 127.0.0.1:PORT and reads and discards with epoll
 *       until the writer closes them or SECONDS pass (a trivial viewer).
 *
 * A write that would block is not retried (the viewer loses that interval: counted as
 * "short" in the JSON); on loopback with readers that keep up there are none.
 * Every loop is bounded by SECONDS. Only 127.0.0.1 is used.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 +
           (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

static long arg(const char *name, const char *v, long min, long max) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < min || n > max) {
        fprintf(stderr, "floor: %s: not an integer in %ld..%ld: '%s'\n", name, min, max, v);
        exit(2);
    }
    return n;
}

static struct sockaddr_in loopback(long port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int do_write(int use_sendfile, long port, long viewers, long interval_ms, long rate,
                    long iovs, long secs) {
    struct sockaddr_in a = loopback(port);
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) {
        perror("floor: listen");
        return 1;
    }
    int *fds = calloc((size_t)viewers, sizeof *fds);
    double deadline = now_s() + 60;
    for (long i = 0; i < viewers; i++) {
        if (now_s() > deadline) {
            fprintf(stderr, "floor: only %ld of %ld viewers connected in 60 s\n", i, viewers);
            return 1;
        }
        fds[i] = accept(l, NULL, NULL);
        if (fds[i] < 0) {
            perror("floor: accept");
            return 1;
        }
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    size_t per_write = (size_t)(rate * interval_ms / 1000);
    size_t piece = per_write / (size_t)iovs + 1;
    char *buf = malloc(piece * (size_t)iovs);
    memset(buf, 'x', piece * (size_t)iovs);
    struct iovec *iov = calloc((size_t)iovs, sizeof *iov);
    for (long k = 0; k < iovs; k++) {
        iov[k].iov_base = buf + k * piece;
        iov[k].iov_len = k + 1 < iovs ? piece : per_write - piece * (size_t)(iovs - 1);
    }
    int mfd = -1;
    off_t spooled = 0, released = 0;
    if (use_sendfile && (mfd = memfd_create("floor", MFD_CLOEXEC)) < 0) {
        perror("floor: memfd_create");
        return 1;
    }
    long ticks = secs * 1000 / interval_ms, shorts = 0;
    unsigned long long bytes = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    double t0 = now_s(), c0 = cpu_s();
    for (long t = 0; t < ticks; t++) {
        off_t at = spooled;
        if (use_sendfile) {
            if (pwritev(mfd, iov, (int)iovs, at) != (ssize_t)per_write) {
                perror("floor: pwritev");
                return 1;
            }
            spooled += (off_t)per_write;
            /* Keep the last 4 MB; the kernel keeps a released page while a socket holds it. */
            off_t keep = (spooled - (4 << 20)) & ~(off_t)4095;
            if (keep > released) {
                fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, released, keep - released);
                released = keep;
            }
        }
        for (long i = 0; i < viewers; i++) {
            off_t off = at;
            ssize_t n = use_sendfile ? sendfile(fds[i], mfd, &off, per_write)
                                     : writev(fds[i], iov, (int)iovs);
            if (n > 0)
                bytes += (unsigned long long)n;
            if (n < (ssize_t)per_write)
                shorts++;
        }
        next.tv_nsec += interval_ms * 1000000L;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    double c1 = cpu_s(), t1 = now_s();
    printf("{\"viewers\":%ld,\"interval_ms\":%ld,\"bytes_per_s\":%ld,\"iovs\":%ld,"
           "\"duration_s\":%.3f,\"cpu_s\":%.4f,\"bytes\":%llu,\"short\":%ld}\n",
           viewers, interval_ms, rate, iovs, t1 - t0, c1 - c0, bytes, shorts);
    fflush(stdout);
    for (long i = 0; i < viewers; i++)
        close(fds[i]);
    return 0;
}

static int do_read(long port, long viewers, long secs) {
    struct sockaddr_in a = loopback(port);
    int ep = epoll_create1(0);
    for (long i = 0; i < viewers; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
            perror("floor: connect");
            return 1;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    static char sink[1 << 16];
    struct epoll_event evs[256];
    long open = viewers;
    double end = now_s() + (double)secs;
    while (open > 0 && now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int k = 0; k < n; k++) {
            ssize_t r;
            while ((r = read(evs[k].data.fd, sink, sizeof sink)) > 0) {
            }
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                close(evs[k].data.fd);
                open--;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 8 && (!strcmp(argv[1], "write") || !strcmp(argv[1], "sendfile")))
        return do_write(!strcmp(argv[1], "sendfile"), arg("PORT", argv[2], 1, 65535), arg("VIEWERS", argv[3], 1, 100000),
                        arg("INTERVAL_MS", argv[4], 1, 10000),
                        arg("BYTES_PER_S", argv[5], 1, 1L << 30),
                        arg("IOVS_PER_WRITE", argv[6], 1, 1024), arg("SECONDS", argv[7], 1, 3600));
    if (argc == 5 && !strcmp(argv[1], "read"))
        return do_read(arg("PORT", argv[2], 1, 65535), arg("VIEWERS", argv[3], 1, 100000),
                       arg("SECONDS", argv[4], 1, 3600));
    fprintf(stderr, "usage: floor write|sendfile PORT VIEWERS INTERVAL_MS BYTES_PER_S IOVS SECONDS\n"
                    "       floor read PORT VIEWERS SECONDS\n");
    return 2;
}
