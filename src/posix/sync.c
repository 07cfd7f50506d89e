/* Robust mutexes and wait queues in shared segments on POSIX (contract in
 * platform.h). Default build: robust process-shared pthread mutexes (the
 * kernel's robust futex list hands a dead owner's mutex to the next one
 * with EOWNERDEAD) and non-private futexes. Portable build: System V
 * semaphores taken with SEM_UNDO, which the kernel gives back when their
 * process dies (fcntl locks would be dropped by any close of the file in
 * the process, e.g. when spawn stages its fds), and FIFOs that carry wake
 * tokens (poll gives timeouts; no futex on macOS). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#include <sys/ipc.h>
#include <sys/sem.h>

#include "seg.h"

/* Both builds: the default one makes no System V set, but its sweep of
 * the private directory removes a portable build's files left there, and
 * their sets must go with them. */
void mp__seg_mutex_remove(seg_hdr_t *h)
{
    if (h->nmutex && h->semid >= 0) semctl(h->semid, 0, IPC_RMID);
    h->semid = -1;
}

static _Thread_local uint64_t thread_id;
static pthread_once_t thread_id_once = PTHREAD_ONCE_INIT;

static void thread_id_after_fork(void)
{
    thread_id = 0;
}

static void thread_id_install(void)
{
    pthread_atfork(NULL, NULL, thread_id_after_fork);
}

uint64_t mp__os_thread_id(void)
{
    if (!thread_id) {
        pthread_once(&thread_id_once, thread_id_install);
#if defined(__linux__)
        thread_id = (uint64_t)syscall(SYS_gettid);
#else
        pthread_threadid_np(NULL, &thread_id);
#endif
    }
    return thread_id;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* True once *w != expected within spin_ns. */
static bool spin_for_change(const _Atomic uint32_t *w, uint32_t expected, uint32_t spin_ns)
{
    if (!spin_ns || mp__cpu_count_cached() < 2) return false;
    uint64_t start = mp__os_now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != expected) return true;
        cpu_relax();
        if (!(i & 63) && mp__os_now_ns() - start >= spin_ns) return false;
    }
}

#if !defined(MPROC_PORTABLE_POSIX)

static struct timespec ms_to_ts(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    return ts;
}

_Static_assert(sizeof(pthread_mutex_t) <= SEG_SLOT, "a mutex fits its slot");

/* ThreadSanitizer before LLVM 18 does not intercept pthread_mutex_clocklock
 * (llvm-project issue 62623): it would see the unlock of a mutex it never
 * saw locked, and miss the ordering the lock gives. The annotations tell it
 * of the lock; later versions see it themselves. */
#if defined(__clang__) && defined(__has_feature) && __clang_major__ < 18
#if __has_feature(thread_sanitizer)
#define MP_TSAN_SEES_NO_CLOCKLOCK 1
#include <sanitizer/tsan_interface.h>
#endif
#endif

static int lock_until(pthread_mutex_t *m, const struct timespec *deadline)
{
#if defined(MP_TSAN_SEES_NO_CLOCKLOCK)
    __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
    int err = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline);
    bool got = err == 0 || err == EOWNERDEAD;
    __tsan_mutex_post_lock(m, __tsan_mutex_try_lock | (got ? 0 : __tsan_mutex_try_lock_failed), 0);
    return err;
#else
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline);
#endif
}

static int robust_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int err = pthread_mutexattr_init(&a);
    if (!err) err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!err) err = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!err) err = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return err ? mp__fail(MP_ESYS, "robust mutex: %s", strerror(err)) : 0;
}

int mp__seg_mutex_setup(seg_hdr_t *h, void *const *slots)
{
    int rc = 0;
    for (unsigned i = 0; !rc && i < h->nmutex; i++)
        rc = robust_mutex_init(slots[i]);
    return rc;
}

int mp__seg_lock(mp__seg_t *s, unsigned i, long timeout_ms)
{
    pthread_mutex_t *m = s->mutex[i];
    int err;
    if (timeout_ms < 0) {
        err = pthread_mutex_lock(m);
    } else if (timeout_ms == 0) {
        err = pthread_mutex_trylock(m);
    } else {
        struct timespec ts, rel = ms_to_ts(timeout_ms);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += rel.tv_sec;
        ts.tv_nsec += rel.tv_nsec;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        err = lock_until(m, &ts);
    }
    switch (err) {
    case 0:
        return 0;
    case EOWNERDEAD:
        pthread_mutex_consistent(m);
        return mp__fail(MP_EOWNERDEAD, "the previous owner died holding the lock");
    case EBUSY:
        /* A try that fails is routine (callers retry or give up): cheap. */
        return mp__fail_lit(MP_ETIMEDOUT, "lock not acquired: another holds it");
    case ETIMEDOUT:
        return mp__fail(MP_ETIMEDOUT, "lock not acquired within %ld ms", timeout_ms);
    default:
        return mp__fail(MP_ESYS, "pthread_mutex_lock: %s", strerror(err));
    }
}

int mp__seg_unlock(mp__seg_t *s, unsigned i)
{
    int err = pthread_mutex_unlock(s->mutex[i]);
    if (err == EPERM) return mp__fail(MP_EPERM, "the lock is not held by this thread");
    return err ? mp__fail(MP_ESYS, "pthread_mutex_unlock: %s", strerror(err)) : 0;
}

static int sleep_on(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t expected,
                    long timeout_ms)
{
    (void)s;
    (void)q;
    struct timespec rel = ms_to_ts(timeout_ms);
    /* Without FUTEX_PRIVATE_FLAG: the kernel keys the word by the shared
     * object and offset, so every process's mapping of it meets here. */
    long r = syscall(SYS_futex, (const void *)word, FUTEX_WAIT, expected,
                     timeout_ms < 0 ? NULL : &rel, NULL, 0);
    if (r == 0 || errno == EAGAIN || errno == EINTR) return 0;
    if (errno == ETIMEDOUT) return MP_ETIMEDOUT;
    return mp__fail_os("futex(FUTEX_WAIT)");
}

static int wake_sleepers(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t n)
{
    (void)s;
    (void)q;
    if (syscall(SYS_futex, (const void *)word, FUTEX_WAKE, n > INT_MAX ? INT_MAX : (int)n, NULL,
                NULL, 0) < 0)
        return mp__fail_os("futex(FUTEX_WAKE)");
    return 0;
}

#else /* MPROC_PORTABLE_POSIX */

#define NAP_MIN_US 50
#define NAP_MAX_US 5000
#define TOKENS_PER_WRITE 512u

#if defined(__linux__)
/* Linux leaves this union to the caller; macOS declares it. */
union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};
#endif

int mp__seg_mutex_setup(seg_hdr_t *h, void *const *slots)
{
    if (!h->nmutex) return 0;
    int id = semget(IPC_PRIVATE, (int)h->nmutex, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) return mp__fail_os("semget");
    h->semid = id;
    for (unsigned i = 0; i < h->nmutex; i++) {
        union semun one = {.val = 1};
        if (semctl(id, (int)i, SETVAL, one) < 0) return mp__fail_os("semctl(SETVAL)");
        atomic_store(&((seg_pmutex_t *)slots[i])->owner, 0);
    }
    return 0;
}

static void nap_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int sem_take(int id, unsigned i, long timeout_ms)
{
    struct sembuf op = {.sem_num = (unsigned short)i, .sem_op = -1, .sem_flg = SEM_UNDO};
    if (timeout_ms < 0) {
        for (;;) {
            if (semop(id, &op, 1) == 0) return 0;
            if (errno == EIDRM || errno == EINVAL)
                return mp__fail(MP_ECLOSED, "the lock's semaphore was removed");
            if (errno != EINTR) return mp__fail_os("semop");
        }
    }
    /* No semtimedop on macOS: poll with a growing nap. */
    op.sem_flg |= IPC_NOWAIT;
    uint64_t start = mp__os_now_ns();
    long nap = NAP_MIN_US;
    for (;;) {
        if (semop(id, &op, 1) == 0) return 0;
        if (errno == EIDRM || errno == EINVAL)
            return mp__fail(MP_ECLOSED, "the lock's semaphore was removed");
        if (errno != EAGAIN && errno != EINTR) return mp__fail_os("semop");
        long left = mp__timeout_left(timeout_ms, start);
        if (left == 0 && timeout_ms == 0)
            return mp__fail_lit(MP_ETIMEDOUT, "lock not acquired: another holds it");
        if (left == 0) return mp__fail(MP_ETIMEDOUT, "lock not acquired within %ld ms", timeout_ms);
        nap_us(left * 1000 < nap ? left * 1000 : nap);
        nap = nap * 2 > NAP_MAX_US ? NAP_MAX_US : nap * 2;
    }
}

int mp__seg_lock(mp__seg_t *s, unsigned i, long timeout_ms)
{
    int rc = sem_take(s->hdr->semid, i, timeout_ms);
    if (rc) return rc;
    seg_pmutex_t *m = s->mutex[i];
    /* An owner that unlocks clears this first: finding it set means the
     * owner died holding the lock, and the kernel undid its take. */
    if (atomic_exchange(&m->owner, mp__os_thread_id()))
        return mp__fail(MP_EOWNERDEAD, "the previous owner died holding the lock");
    return 0;
}

int mp__seg_unlock(mp__seg_t *s, unsigned i)
{
    seg_pmutex_t *m = s->mutex[i];
    if (atomic_load(&m->owner) != mp__os_thread_id())
        return mp__fail(MP_EPERM, "the lock is not held by this thread");
    atomic_store(&m->owner, 0);
    struct sembuf op = {.sem_num = (unsigned short)i, .sem_op = 1, .sem_flg = SEM_UNDO};
    while (semop(s->hdr->semid, &op, 1) < 0)
        if (errno != EINTR) return mp__fail_os("semop(release)");
    return 0;
}

static int sleep_on(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t expected,
                    long timeout_ms)
{
    (void)word;
    (void)expected;
    int ready = mp__fd_wait_readable(s->fifo[q], timeout_ms);
    if (ready < 0) return ready;
    if (!ready) return MP_ETIMEDOUT;
    /* Another sleeper may have taken the token: that is a spurious wake. */
    char token;
    while (read(s->fifo[q], &token, 1) < 0 && errno == EINTR)
        ;
    return 0;
}

static int wake_sleepers(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t n)
{
    (void)word;
    uint32_t sleepers = atomic_load(&s->wq[q]->waiters);
    uint32_t k = n < sleepers ? n : sleepers;
    if (k > TOKENS_PER_WRITE) k = TOKENS_PER_WRITE;
    char tokens[TOKENS_PER_WRITE];
    memset(tokens, 1, k);
    /* Our own read end is open, so no SIGPIPE; a full FIFO already holds
     * more tokens than there are sleepers. */
    while (write(s->fifo[q], tokens, k) < 0 && errno == EINTR)
        ;
    return 0;
}

#endif

int mp__seg_wait(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t expected,
                 long timeout_ms, uint32_t spin_ns)
{
    if (atomic_load(word) != expected || spin_for_change(word, expected, spin_ns)) return 0;
    if (timeout_ms == 0) return MP_ETIMEDOUT;
    seg_wq_t *wq = s->wq[q];
    /* Counted before the last look at the word: a waker that changed it
     * either sees us counted or we see its change. */
    atomic_fetch_add(&wq->waiters, 1);
    int rc = atomic_load(word) != expected ? 0 : sleep_on(s, q, word, expected, timeout_ms);
    atomic_fetch_sub(&wq->waiters, 1);
    return rc;
}

int mp__seg_wake(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t n)
{
    if (!n || !atomic_load(&s->wq[q]->waiters)) return 0;
    return wake_sleepers(s, q, word, n);
}
