/* In-process threads, mutexes and condition variables: Win32 threads,
 * slim reader/writer locks and condition variables. */
#include <stdlib.h>

#include "win32.h"

struct mp__thread {
    HANDLE h;
    DWORD id;
    void (*fn)(void *);
    void *arg;
};

struct mp__mutex {
    SRWLOCK l;
};

struct mp__cond {
    CONDITION_VARIABLE c;
};

static DWORD WINAPI trampoline(void *p)
{
    mp__thread_t *t = p;
    t->fn(t->arg);
    return 0;
}

int mp__thread_start(mp__thread_t **out, void (*fn)(void *), void *arg)
{
    mp__thread_t *t = mp__calloc(1, sizeof *t);
    if (!t) return MP_ENOMEM;
    t->fn = fn;
    t->arg = arg;
    /* Suspended until t->id is set, which mp__thread_is_current reads. */
    t->h = CreateThread(NULL, 0, trampoline, t, CREATE_SUSPENDED, &t->id);
    if (!t->h) {
        int rc = mp__fail_os("CreateThread");
        free(t);
        return rc;
    }
    ResumeThread(t->h);
    *out = t;
    return 0;
}

void mp__thread_join(mp__thread_t *t)
{
    if (!t) return;
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
    free(t);
}

bool mp__thread_is_current(const mp__thread_t *t)
{
    return t && t->id == GetCurrentThreadId();
}

int mp__mutex_create(mp__mutex_t **m)
{
    *m = mp__calloc(1, sizeof **m);
    if (!*m) return MP_ENOMEM;
    InitializeSRWLock(&(*m)->l);
    return 0;
}

void mp__mutex_lock(mp__mutex_t *m)
{
    AcquireSRWLockExclusive(&m->l);
}

void mp__mutex_unlock(mp__mutex_t *m)
{
    ReleaseSRWLockExclusive(&m->l);
}

void mp__mutex_free(mp__mutex_t *m)
{
    free(m); /* an SRW lock holds no resources */
}

int mp__cond_create(mp__cond_t **c)
{
    *c = mp__calloc(1, sizeof **c);
    if (!*c) return MP_ENOMEM;
    InitializeConditionVariable(&(*c)->c);
    return 0;
}

int mp__cond_wait(mp__cond_t *c, mp__mutex_t *m, long timeout_ms)
{
    if (SleepConditionVariableSRW(&c->c, &m->l, mp__w32_ms(timeout_ms), 0)) return 0;
    DWORD err = GetLastError();
    if (err == ERROR_TIMEOUT)
        return mp__fail(MP_ETIMEDOUT, "condition wait: %ld ms passed", timeout_ms);
    return mp__w32_fail("SleepConditionVariableSRW", err);
}

void mp__cond_signal(mp__cond_t *c)
{
    WakeConditionVariable(&c->c);
}

void mp__cond_broadcast(mp__cond_t *c)
{
    WakeAllConditionVariable(&c->c);
}

void mp__cond_free(mp__cond_t *c)
{
    free(c); /* a condition variable holds no resources */
}
