/* Shared segments on POSIX: the layout every process agrees on and this
 * process's view of one (private to src/posix/shm.c and sync.c).
 *
 * Two builds: the default one (Linux) keeps private segments in memfds and
 * uses robust pthread mutexes and futexes; MPROC_PORTABLE_POSIX uses only
 * what macOS also offers: private segments are files in a private place
 * with a lease, mutexes are System V semaphores taken with SEM_UNDO (the
 * kernel gives back what a dying process held), and wait queues are
 * FIFOs. */
#ifndef MP_POSIX_SEG_H
#define MP_POSIX_SEG_H

#include <pthread.h>
#include <sys/types.h>

#include "posix.h"

#if !defined(MPROC_PORTABLE_POSIX) && !defined(__linux__)
#define MPROC_PORTABLE_POSIX 1
#endif

#define SEG_MAGIC 0x4753504du /* "MPSG" */
#define SEG_VERSION 1u
#define SEG_LEASES 64
#define SEG_SLOT 64 /* bytes per mutex and per wait queue */

/* state: LIVE, GONE (the name was removed), or the pid of a process that
 * is deciding whether to remove the name. */
#define SEG_LIVE 0
#define SEG_GONE (-1)

typedef struct {
    _Atomic uint32_t magic; /* stored last, with release, at create */
    uint32_t version;
    uint32_t tag;
    uint32_t nmutex, nwq;
    uint32_t hdr_size; /* offset of the user area */
    uint64_t size;     /* bytes of the user area */
    uint8_t key[16];
    _Atomic int32_t state;
    uint32_t named;
    int32_t semid;                     /* portable: the System V set of the mutexes, or -1 */
    _Atomic int32_t lease[SEG_LEASES]; /* pids holding the name (or holding it for a
                                          process it hands the segment to), 0 = free */
} seg_hdr_t;

/* A wait queue's shared part: how many may be asleep on it. */
typedef struct {
    _Atomic uint32_t waiters;
} seg_wq_t;

/* Portable build: a mutex's shared part is its owner (thread id), so the
 * next owner learns that the previous one died holding it. */
typedef struct {
    _Atomic uint64_t owner;
} seg_pmutex_t;

/* A lease slot that pid holds for a process it hands the segment to, until
 * that process takes it over (shm.c). */
#define SEG_NO_HOLD 0xFFu
typedef struct {
    uint8_t slot; /* SEG_NO_HOLD: none */
    int32_t pid;
} seg_hold_t;

struct mp__seg {
    struct mp__seg *next; /* the registry of this process's segments */
    int refs;
    int fd;
    dev_t dev;
    ino_t ino;
    uint8_t *base;
    size_t maplen;
    seg_hdr_t *hdr;
    void *mutex[MP__SEG_MAX_MUTEX];
    seg_wq_t *wq[MP__SEG_MAX_WQ];
    void *user;
    bool user_named; /* an mp_shm name */
    bool linked;     /* has a name in the file system: leased */
    char name[MP__SEG_NAME_MAX + 1];
    int lease_slot; /* -1: none */
    pid_t lease_pid;
    seg_hold_t fork_hold;     /* held for the child while forking */
    int fifo[MP__SEG_MAX_WQ]; /* portable: a FIFO per wait queue */
};

/* sync.c: fresh mutexes for a new segment (portable: its System V set). */
int mp__seg_mutex_setup(seg_hdr_t *h, void *const *slots);
/* Removes the System V set of a segment nobody holds any more (only the
 * portable build makes one; both sweep its files). */
void mp__seg_mutex_remove(seg_hdr_t *h);

#endif
