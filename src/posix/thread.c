/* In-process threads, mutexes and condition variables on pthreads. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "posix.h"

struct mp__thread {
    pthread_t id;
    void (*fn)(void *);
    void *arg;
};

struct mp__mutex {
    pthread_mutex_t m;
};

struct mp__cond {
    pthread_cond_t c;
};

static void *trampoline(void *p)
{
    mp__thread_t *t = p;
    t->fn(t->arg);
    return NULL;
}

int mp__thread_start(mp__thread_t **out, void (*fn)(void *), void *arg)
{
    mp__thread_t *t = mp__calloc(1, sizeof *t);
    if (!t) return MP_ENOMEM;
    t->fn = fn;
    t->arg = arg;
    /* The signal mask stays the creator's: workers forked from this thread
     * inherit it, and must take signals as any child would. */
    int err = pthread_create(&t->id, NULL, trampoline, t);
    if (err) {
        free(t);
        return mp__fail(err == EAGAIN ? MP_ENOMEM : MP_ESYS, "pthread_create: %s", strerror(err));
    }
    *out = t;
    return 0;
}

void mp__thread_join(mp__thread_t *t)
{
    if (!t) return;
    pthread_join(t->id, NULL);
    free(t);
}

bool mp__thread_is_current(const mp__thread_t *t)
{
    return t && pthread_equal(t->id, pthread_self());
}

int mp__mutex_create(mp__mutex_t **out)
{
    mp__mutex_t *m = mp__malloc(sizeof *m);
    if (!m) return MP_ENOMEM;
    int err = pthread_mutex_init(&m->m, NULL);
    if (err) {
        free(m);
        return mp__fail(MP_ESYS, "pthread_mutex_init: %s", strerror(err));
    }
    *out = m;
    return 0;
}

void mp__mutex_lock(mp__mutex_t *m)
{
    pthread_mutex_lock(&m->m);
}

void mp__mutex_unlock(mp__mutex_t *m)
{
    pthread_mutex_unlock(&m->m);
}

void mp__mutex_free(mp__mutex_t *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->m);
    free(m);
}

int mp__cond_create(mp__cond_t **out)
{
    mp__cond_t *c = mp__malloc(sizeof *c);
    if (!c) return MP_ENOMEM;
    pthread_condattr_t a;
    int err = pthread_condattr_init(&a);
#if !defined(__APPLE__)
    /* Timed waits measure the monotonic clock: a clock step must not
     * stretch or cut them. (macOS waits on a relative time instead.) */
    if (!err) err = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
#endif
    if (!err) {
        err = pthread_cond_init(&c->c, &a);
        pthread_condattr_destroy(&a);
    }
    if (err) {
        free(c);
        return mp__fail(MP_ESYS, "pthread_cond_init: %s", strerror(err));
    }
    *out = c;
    return 0;
}

int mp__cond_wait(mp__cond_t *c, mp__mutex_t *m, long timeout_ms)
{
    if (timeout_ms < 0) {
        pthread_cond_wait(&c->c, &m->m);
        return 0;
    }
    struct timespec ts;
#if defined(__APPLE__)
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
    int err = pthread_cond_timedwait_relative_np(&c->c, &m->m, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int err = pthread_cond_timedwait(&c->c, &m->m, &ts);
#endif
    return err == ETIMEDOUT ? MP_ETIMEDOUT : 0;
}

void mp__cond_signal(mp__cond_t *c)
{
    pthread_cond_signal(&c->c);
}

void mp__cond_broadcast(mp__cond_t *c)
{
    pthread_cond_broadcast(&c->c);
}

void mp__cond_free(mp__cond_t *c)
{
    if (!c) return;
    pthread_cond_destroy(&c->c);
    free(c);
}
