/* Robust locks in shared memory (win32.h; the seam's mutexes in seg.c).
 *
 * A lock is a 64-bit word in a segment: 0 when free, else its owner's
 * identity and a bit telling that someone may sleep on it. Taking a free
 * lock and giving back one nobody waits for is one interlocked operation
 * each, with no kernel object involved: a kernel mutex costs a system call
 * for every operation (under Wine a round trip to wineserver, ~400 us).
 * Only a contended lock uses its kernel event (auto-reset, one per lock),
 * and a waiter sleeps on it only after a short spin.
 *
 * Owner death: the identity is the owner thread's id and a stamp of that
 * thread's creation time, written by the one compare-exchange that takes
 * the lock, so the lock is never held by an owner nobody can name. A
 * sleeper opens the owner thread and sleeps on it as well as on the event:
 * the thread's end (however its process ended) wakes it, and it takes the
 * lock over with MP_EOWNERDEAD by a compare-exchange on the very word it
 * judged, so two waiters never both take over. The stamp tells the owner
 * from a later thread that got its id again. Sleeps last at most a slice:
 * the owner a sleeper watches may have handed the lock on to one that died
 * since. A try of a held lock checks the owner the same way, without
 * sleeping. */
#include "win32.h"

#define WAITERS ((uint64_t)1 << 32)
#define STAMP_SHIFT 33
#define STAMP_MOD ((UINT64_C(1) << (64 - STAMP_SHIFT)) - 1)
/* Locks are held briefly: a handoff between running threads then costs
 * no system call. */
#define SPIN_NS 20000u
#define SLICE_MS 250L

/* 1 to STAMP_MOD (0 means "not known", which nobody writes). */
static uint64_t stamp_of(const FILETIME *created)
{
    uint64_t t = (uint64_t)created->dwHighDateTime << 32 | created->dwLowDateTime;
    return t % STAMP_MOD + 1;
}

static _Thread_local uint64_t my_ident;

/* This thread as a lock owner. */
static uint64_t self_ident(void)
{
    if (!my_ident) {
        FILETIME c, e, k, u;
        uint64_t stamp = GetThreadTimes(GetCurrentThread(), &c, &e, &k, &u) ? stamp_of(&c) : 0;
        my_ident = (uint64_t)GetCurrentThreadId() | stamp << STAMP_SHIFT;
    }
    return my_ident;
}

enum { OWNER_ALIVE, OWNER_DEAD, OWNER_UNKNOWN };

/* Whether the owner named by word w still runs. When it may, *h (if h is
 * not NULL) gets a handle to its thread, which the caller closes, or NULL
 * when the thread cannot be opened (another integrity level). */
static int owner_state(uint64_t w, HANDLE *h)
{
    if (h) *h = NULL;
    HANDLE t = OpenThread(SYNCHRONIZE | THREAD_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)w);
    if (!t) return GetLastError() == ERROR_INVALID_PARAMETER ? OWNER_DEAD : OWNER_UNKNOWN;
    uint64_t stamp = (w & ~WAITERS) >> STAMP_SHIFT;
    FILETIME c, e, k, u;
    int st = OWNER_ALIVE;
    if (stamp && GetThreadTimes(t, &c, &e, &k, &u) && stamp_of(&c) != stamp)
        st = OWNER_DEAD; /* the id names a later thread: the owner is gone */
    else if (WaitForSingleObject(t, 0) == WAIT_OBJECT_0)
        st = OWNER_DEAD;
    if (st == OWNER_ALIVE && h)
        *h = t;
    else
        CloseHandle(t);
    return st;
}

/* Spins up to SPIN_NS for the lock to be free (not on one CPU, where its
 * owner cannot run meanwhile). */
static void spin_until_free(_Atomic uint64_t *word)
{
    if (mp__cpu_count_cached() < 2) return;
    uint64_t start = mp__os_now_ns();
    for (unsigned i = 1;; i++) {
        if (!atomic_load_explicit(word, memory_order_relaxed)) return;
        YieldProcessor();
        if (!(i & 63) && mp__os_now_ns() - start >= SPIN_NS) return;
    }
}

static int timed_out(long timeout_ms)
{
    if (timeout_ms == 0) return mp__fail_lit(MP_ETIMEDOUT, "lock not acquired: another holds it");
    return mp__fail(MP_ETIMEDOUT, "lock not acquired within %ld ms", timeout_ms);
}

/* Sleeps on the event and the owner's thread for a slice at most. *woken:
 * the event ended it. */
static int sleep_slice(HANDLE wake, HANDLE owner, long left, bool *woken)
{
    HANDLE hs[2] = {wake, owner};
    long ms = left < 0 || left > SLICE_MS ? SLICE_MS : left;
    DWORD r = WaitForMultipleObjects(owner ? 2 : 1, hs, FALSE, (DWORD)ms);
    *woken = r == WAIT_OBJECT_0;
    if (r == WAIT_FAILED) return mp__fail_os("WaitForMultipleObjects(lock)");
    return 0;
}

static int take_slow(_Atomic uint64_t *word, HANDLE wake, uint64_t me, long timeout_ms)
{
    uint64_t start = mp__os_now_ns();
    bool slept = false, woken = false;
    if (timeout_ms) spin_until_free(word);
    for (;;) {
        uint64_t w = atomic_load(word);
        if (!w) {
            /* A sleeper takes it marked: other sleepers may remain, and
             * its give must wake the next one. */
            if (atomic_compare_exchange_weak(word, &w, me | (slept ? WAITERS : 0))) return 0;
            continue;
        }
        if ((w & ~WAITERS) == me) {
            if (!timeout_ms) return timed_out(0);
            return mp__fail(MP_EPERM, "this thread holds the lock already");
        }
        HANDLE owner = NULL;
        int st = owner_state(w, timeout_ms ? &owner : NULL);
        if (st == OWNER_DEAD) {
            if (atomic_compare_exchange_strong(word, &w, me | WAITERS))
                return mp__fail(MP_EOWNERDEAD, "the lock's previous owner died holding it");
            continue;
        }
        long left = mp__timeout_left(timeout_ms, start);
        int rc = 0;
        if (left == 0) {
            rc = timed_out(timeout_ms);
        } else if ((w & WAITERS) || atomic_compare_exchange_strong(word, &w, w | WAITERS)) {
            rc = sleep_slice(wake, owner, left, &woken);
            slept = true;
        }
        if (owner) CloseHandle(owner);
        if (rc == MP_ETIMEDOUT && woken) /* the wake-up was for us: pass it on */
            SetEvent(wake);
        if (rc) return rc;
    }
}

int mp__w32_lock_take(_Atomic uint64_t *word, HANDLE wake, long timeout_ms)
{
    uint64_t me = self_ident(), w = 0;
    if (atomic_compare_exchange_strong(word, &w, me)) return 0;
    return take_slow(word, wake, me, timeout_ms);
}

int mp__w32_lock_give(_Atomic uint64_t *word, HANDLE wake)
{
    uint64_t w = atomic_load_explicit(word, memory_order_relaxed);
    if ((w & ~WAITERS) != self_ident())
        return mp__fail(MP_EPERM, "the mutex is not held by this thread");
    /* Waiters only ever add their bit meanwhile: the word is still ours. */
    w = atomic_exchange(word, 0);
    if ((w & WAITERS) && !SetEvent(wake)) return mp__fail_os("SetEvent(lock)");
    return 0;
}
