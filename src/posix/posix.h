/* Private helpers of the POSIX backend. */
#ifndef MP_POSIX_H
#define MP_POSIX_H

#include "../common/internal.h"

/* Marks fd close-on-exec; 0 or a code with detail. */
int mp__fd_cloexec(int fd);
/* poll() of one fd for input; 1 ready, 0 timeout, negative on error. */
int mp__fd_wait_readable(int fd, long timeout_ms);

/* The fd each waitable becomes readable on, for mp__wait_many. */
int mp__stream_fd(mp__stream_t *s);
int mp__child_fd(mp__child_t *c);

#endif
