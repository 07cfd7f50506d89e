/* Waiting on several streams and children at once: one poll(). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>

#include "posix.h"

#define SMALL 16

int mp__wait_many(const mp__waitable_t *w, size_t n, long timeout_ms, bool *ready)
{
    struct pollfd small[SMALL];
    struct pollfd *p = n <= SMALL ? small : calloc(n, sizeof *p);
    if (!p) return mp__fail(MP_ENOMEM, "wait: %zu handles", n);
    for (size_t i = 0; i < n; i++) {
        p[i].fd = w[i].stream ? mp__stream_fd(w[i].stream) : mp__child_fd(w[i].child);
        p[i].events = POLLIN;
        p[i].revents = 0;
    }
    uint64_t start = mp__os_now_ns();
    int rc;
    for (;;) {
        long left = mp__timeout_left(timeout_ms, start);
        rc = poll(p, (nfds_t)n, left > INT_MAX ? INT_MAX : (int)left);
        if (rc > 0 || (rc == 0 && mp__timeout_left(timeout_ms, start) == 0)) break;
        if (rc < 0 && errno != EINTR) {
            rc = mp__fail_os("poll");
            break;
        }
    }
    for (size_t i = 0; rc >= 0 && i < n; i++)
        ready[i] = p[i].revents != 0;
    if (p != small) free(p);
    return rc;
}
