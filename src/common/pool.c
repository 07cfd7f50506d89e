/* Pools: creation and end, and the handler thread, which alone reads from
 * the workers: it resolves items, starts workers and replaces the ones
 * that die or reach maxtasksperchild, stops tasks that run past the
 * timeout, and runs callbacks. A dead worker shows as the end of its pipe
 * or of its process, whichever comes first; either fails what it held at
 * once, so nothing ever waits on a dead worker. The thread starts with
 * the first task (mp__pool_start_handler); until then the calling
 * threads start and end the workers themselves. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

#define POOL_MAGIC 0x6d70504cu /* "mpPL" */
#define MAX_PROCESSES 1024
/* How long a worker whose pipe ended may take to exit before the handler
 * stops waiting for its status (and kills it: it only closed the pipe). */
#define REAP_WAIT_MS 200L
/* Messages handled from one worker before the others get their turn. */
#define DRAIN_MAX 16
/* A nap after mp_wait failed, so a persistent failure cannot spin. */
#define WAIT_FAIL_NAP_MS 10L

struct mp__wslot {
    mp__worker_t *w;
    bool proc; /* the entry is its process, not its pipe */
};

static const char terminated[] = "the pool was terminated";

static bool in_handler(const mp_pool_t *p)
{
    return mp__thread_is_current(p->thread);
}

void mp__pool_wake(mp_pool_t *p)
{
    /* A handler started later looks at everything first anyway. */
    if (!p->thread || p->wake_sent || p->handler_done || in_handler(p)) return;
    p->wake_sent = true;
    /* One byte at most is ever pending: this write cannot block. */
    mp_conn_send_bytes(p->wake_w, "", 0);
}

bool mp__pool_has_work(const mp_pool_t *p)
{
    return p->qhead || p->retry.len;
}

void mp__pool_break(mp_pool_t *p, const char *fmt, ...)
{
    if (p->broken) return;
    p->broken = MP_EWORKER;
    p->broken_text = malloc(512);
    if (p->broken_text) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->broken_text, 512, fmt, ap);
        va_end(ap);
    }
}

bool mp__pool_unref(mp_pool_t *p)
{
    return --p->refs == 0;
}

/* ---- workers ---- */

static void worker_free(mp__worker_t *w)
{
    mp__plink_free(w->link);
    mp_process_free(w->proc);
    mp__uring_release(&w->held);
    free(w->has_fn);
    mp__pbuf_release(&w->out);
    free(w->segs);
    free(w->iov);
    free(w);
}

/* A forked worker without an initializer has nothing that can fail
 * before it serves (a spawned one must first find its functions): it is
 * ready at once, and spares its start a message (mp__wconfig_t.quiet). */
static bool quiet_start(const mp_pool_t *p)
{
    return p->method == MP_START_FORK && !p->init_module;
}

/* Workers started in one go: every fork follows the last without the
 * parent writing to memory in between, since each page the parent writes
 * after a fork is copied (a page fault each, costly under virtualization). */
#define START_BATCH 8

typedef struct {
    mp__worker_t *w;
    mp_handle_t *child; /* the worker's end, open in the parent until it forked */
    int rc;
} wstart_t;

/* A worker's link and process object, not started (mutex released). */
static void prepare_worker(mp_pool_t *p, wstart_t *s, unsigned num)
{
    s->child = NULL;
    s->w = mp__calloc(1, sizeof *s->w);
    if (!s->w) {
        s->rc = MP_ENOMEM;
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "PoolWorker-%u", num);
    mp_args_t *a = NULL;
    int rc = mp__plink_pair(&s->w->link, &s->child);
    if (!rc) rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_bytes(a, p->config, p->config_len);
    if (!rc) rc = mp_args_add_handle(a, s->child);
    if (!rc) rc = mp__pool_args_append(a, p->initargs, 0);
    if (!rc) {
        mp_process_opts_t o = {.target = mp__pool_worker_main,
                               .args = a,
                               .name = name,
                               .daemon = true,
                               .start_method = p->method};
        rc = mp_process_create(&s->w->proc, &o);
    }
    mp_args_free(a);
    s->rc = rc;
}

/* Starts n workers (mutex held; released meanwhile); the first failure's
 * code, or 0. */
static int start_workers(mp_pool_t *p, size_t n)
{
    if (p->nws + n > p->wcap) {
        size_t cap = p->wcap ? p->wcap * 2 : 8;
        while (cap < p->nws + n)
            cap *= 2;
        mp__worker_t **v = realloc(p->ws, cap * sizeof *v);
        if (!v) return mp__fail(MP_ENOMEM, "a table of %zu workers", cap);
        p->ws = v;
        p->wcap = cap;
    }
    wstart_t st[START_BATCH];
    unsigned first = p->counter + 1;
    p->counter += (unsigned)n;
    mp__mutex_unlock(p->mu);
    for (size_t i = 0; i < n; i++)
        prepare_worker(p, &st[i], first + (unsigned)i);
    for (size_t i = 0; i < n; i++)
        if (!st[i].rc) st[i].rc = mp_process_start(st[i].w->proc);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        /* Only the worker holds its end now: its death reads as EOF here. */
        if (st[i].child) mp__handle_free(st[i].child);
        if (st[i].rc && !rc) rc = st[i].rc;
    }
    mp__mutex_lock(p->mu);
    for (size_t i = 0; i < n; i++) {
        if (st[i].rc) {
            if (st[i].w) worker_free(st[i].w);
            continue;
        }
        st[i].w->state = quiet_start(p) ? MP__W_READY : MP__W_STARTING;
        st[i].w->greeted = quiet_start(p);
        p->ws[p->nws++] = st[i].w;
    }
    return rc;
}

/* Why w ended, from its exit status (waiting a little for it). */
static void describe_death(mp_pool_t *p, mp__worker_t *w, char *text, size_t cap)
{
    long long pid = (long long)mp_process_pid(w->proc);
    mp__mutex_unlock(p->mu);
    int rc = mp_process_join(w->proc, REAP_WAIT_MS);
    mp__mutex_lock(p->mu);
    int code = 0;
    if (rc || mp_process_exitcode(w->proc, &code)) {
        mp_process_kill(w->proc);
        snprintf(text, cap, "the worker process (pid %lld) closed its pipe", pid);
    } else if (code < 0) {
        snprintf(text, cap, "the worker process (pid %lld) died: killed by signal %d", pid, -code);
    } else {
        snprintf(text, cap, "the worker process (pid %lld) died: exited with code %d", pid, code);
    }
}

static void requeue(mp_pool_t *p, mp__unit_t u, const char *text)
{
    if (!u.count) return;
    u.bytes = 0;
    if (u.job->cancelled || mp__uring_push(&p->retry, &u, true))
        mp__job_fail(u.job, u.first, u.count, MP_EWORKER, text);
}

/* The items w held fail. With requeue (results came back one by one, so
 * only the oldest can have started) that one fails with code and the
 * rest go back to the front of the queue, in their order. */
static void fail_held(mp_pool_t *p, mp__worker_t *w, int code, const char *text, bool requeue_rest)
{
    size_t n = w->held.len, got = w->got;
    w->got = w->items = w->bytes = w->blind = 0;
    w->work_ns = 0;
    if (requeue_rest && n) {
        for (size_t i = n; i-- > 1;)
            requeue(p, *mp__uring_at(&w->held, i), text);
        mp__unit_t u = *mp__uring_at(&w->held, 0);
        mp__unit_t rest = {u.job, u.first + got + 1, u.count - got - 1, 0, false, 0};
        requeue(p, rest, text);
        mp__job_fail(u.job, u.first + got, 1, code, text);
    } else {
        for (size_t i = 0; i < n; i++) {
            mp__unit_t u = *mp__uring_at(&w->held, i);
            size_t skip = i ? 0 : got;
            mp__job_fail(u.job, u.first + skip, u.count - skip, code, text);
        }
    }
    w->held.len = 0;
}

void mp__pool_worker_lost(mp_pool_t *p, mp__worker_t *w, int code, const char *why)
{
    if (w->state == MP__W_GONE) return;
    int prev = w->state;
    w->state = MP__W_GONE;
    bool graceful = prev == MP__W_RETIRING && !w->items;
    char text[256];
    if (!graceful) {
        if (why) {
            mp_process_kill(w->proc);
        } else {
            describe_death(p, w, text, sizeof text);
            why = text;
        }
    }
    if (!w->greeted && p->state != MP__S_TERM)
        mp__pool_break(p, "a worker ended before it was ready: %s", why ? why : "?");
    fail_held(p, w, code, why ? why : "", p->timeout_ms > 0 && code != MP_ECLOSED);
    if (!w->sending) {
        mp__plink_free(w->link);
        w->link = NULL;
    }
}

/* Reads and handles one message from w (mutex released during the read). */
static int read_one(mp_pool_t *p, mp__worker_t *w)
{
    const uint8_t *msg;
    size_t len;
    mp__mutex_unlock(p->mu);
    int rc = mp__plink_recv(w->link, &p->rbuf, &msg, &len);
    mp__mutex_lock(p->mu);
    if (rc) return rc;
    if (w->state != MP__W_GONE) mp__pool_on_message(p, w, msg, len);
    return 0;
}

/* Handles what w had sent before it stopped. */
static void drain(mp_pool_t *p, mp__worker_t *w)
{
    while (w->state != MP__W_GONE && w->link && mp__plink_poll(w->link) == 1)
        if (read_one(p, w)) break;
}

static void on_readable(mp_pool_t *p, mp__worker_t *w)
{
    /* Messages that arrived together are handled together. */
    for (int i = 0; i < DRAIN_MAX && w->state != MP__W_GONE && w->link; i++) {
        if (i && mp__plink_poll(w->link) != 1) break;
        if (read_one(p, w)) mp__pool_worker_lost(p, w, MP_EWORKER, NULL);
    }
}

static void on_exit_seen(mp_pool_t *p, mp__worker_t *w)
{
    if (w->state == MP__W_GONE) return;
    drain(p, w);
    mp__pool_worker_lost(p, w, MP_EWORKER, NULL);
}

static uint64_t deadline_of(const mp_pool_t *p, const mp__worker_t *w)
{
    if (!p->timeout_ms || !w->items || (w->state != MP__W_READY && w->state != MP__W_RETIRING))
        return UINT64_MAX;
    return w->head_start + (uint64_t)p->timeout_ms * 1000000u;
}

static void timed_out(mp_pool_t *p, mp__worker_t *w)
{
    mp_process_kill(w->proc);
    drain(p, w);
    if (w->state == MP__W_GONE) return;
    char text[160];
    if (mp__os_now_ns() >= deadline_of(p, w)) {
        snprintf(text, sizeof text,
                 "the task ran longer than task_timeout_ms (%ld ms); its worker was replaced",
                 p->timeout_ms);
        mp__pool_worker_lost(p, w, MP_ETIMEDOUT, text);
    } else {
        mp__pool_worker_lost(p, w, MP_EWORKER, "its worker was stopped for a task that timed out");
    }
}

static void check_timeouts(mp_pool_t *p)
{
    if (!p->timeout_ms) return;
    uint64_t now = mp__os_now_ns();
    for (size_t i = 0; i < p->nws; i++)
        if (now >= deadline_of(p, p->ws[i])) timed_out(p, p->ws[i]);
}

/* ---- the handler ---- */

static void fail_queued(mp_pool_t *p, int code, const char *text)
{
    while (p->retry.len) {
        mp__unit_t u = *mp__uring_at(&p->retry, 0);
        mp__uring_pop(&p->retry);
        mp__job_fail(u.job, u.first, u.count, code, text);
    }
    while (p->qhead) {
        mp__job_t *j = p->qhead;
        p->qhead = j->next_job;
        if (!p->qhead) p->qtail = NULL;
        j->next_job = NULL;
        j->queued = false;
        size_t first = j->next;
        j->next = j->n;
        mp__job_fail(j, first, j->n - first, code, text);
    }
}

static void break_all(mp_pool_t *p)
{
    const char *t = p->broken_text ? p->broken_text : "the pool is broken";
    for (size_t i = 0; i < p->nws; i++)
        mp__pool_worker_lost(p, p->ws[i], MP_EWORKER, t);
    fail_queued(p, MP_EWORKER, t);
}

static size_t alive(const mp_pool_t *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nws; i++)
        n += p->ws[i]->state == MP__W_STARTING || p->ws[i]->state == MP__W_READY;
    return n;
}

/* Keeps nproc workers while there is work or the pool is open. */
static void maintain(mp_pool_t *p)
{
    for (size_t i = 0; i < p->nws; i++) {
        mp__worker_t *w = p->ws[i];
        /* A worker whose quota is all sent is replaced now, not when it
         * exits, so the replacement's start overlaps its last tasks. */
        if (w->state == MP__W_READY && p->maxtasks && w->units_sent >= p->maxtasks)
            w->state = MP__W_RETIRING;
    }
    while (!p->broken && p->state != MP__S_TERM &&
           (p->state == MP__S_RUN || mp__pool_has_work(p)) && alive(p) < (size_t)p->nproc) {
        size_t n = (size_t)p->nproc - alive(p);
        int rc = start_workers(p, n < START_BATCH ? n : START_BATCH);
        if (rc) {
            if (!p->started) p->start_rc = rc;
            mp__pool_break(p, "a worker could not be started: %s", mp_last_error_detail());
        }
    }
}

/* After close, with nothing left to do: idle workers are told to quit,
 * and so are those still starting (they read it after their hello). */
static void retire_idle(mp_pool_t *p)
{
    if (p->state != MP__S_CLOSED || mp__pool_has_work(p)) return;
    for (size_t i = 0; i < p->nws; i++) {
        mp__worker_t *w = p->ws[i];
        if ((w->state != MP__W_READY && w->state != MP__W_STARTING) || w->items || w->sending)
            continue;
        w->state = MP__W_RETIRING;
        w->out.len = 0;
        if (mp__pbuf_reserve(&w->out, 1)) {
            mp_process_kill(w->proc);
            continue;
        }
        w->out.p[w->out.len++] = MP__PW_QUIT;
        mp__pool_send(p, w, false);
    }
}

/* Frees the workers that have ended and that no thread is writing to. */
static void reap_gone(mp_pool_t *p)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->nws; i++) {
        mp__worker_t *w = p->ws[i];
        if (w->state == MP__W_GONE && !w->sending) {
            mp__plink_free(w->link);
            w->link = NULL;
            if (mp_process_is_alive(w->proc) <= 0) {
                worker_free(w);
                continue;
            }
        }
        p->ws[keep++] = w;
    }
    p->nws = keep;
}

/* Calls the callbacks due, mutex released; true when there were any. */
static bool run_callbacks(mp_pool_t *p)
{
    bool any = false;
    while (p->cbs) {
        mp__job_t *j = p->cbs;
        p->cbs = j->next_job;
        j->next_job = NULL;
        mp__mutex_unlock(p->mu);
        j->cb(j, j->ud);
        mp__mutex_lock(p->mu);
        /* The pool's reference: never the pool's last one here. */
        (void)mp__job_unref(j);
        any = true;
    }
    return any;
}

static int grow_wset(mp_pool_t *p, size_t n)
{
    if (n <= p->wset_cap) return 0;
    size_t cap = n * 2;
    mp_handle_t **hs = realloc(p->wset, cap * sizeof *hs);
    if (hs) p->wset = hs;
    size_t *r = realloc(p->wready, cap * sizeof *r);
    if (r) p->wready = r;
    struct mp__wslot *m = realloc(p->wmap, cap * sizeof *m);
    if (m) p->wmap = m;
    if (!hs || !r || !m) return mp__fail(MP_ENOMEM, "a wait set of %zu", cap);
    p->wset_cap = cap;
    return 0;
}

/* Buffers are warmed (every page touched) by the handler while it has
 * nothing else to do, once tasks ran: so that the first large map does
 * not pay a page fault for each page it fills (costly under
 * virtualization). Its own read buffer (once per pool), and each worker's
 * link and batch buffer (once per worker; marked as being written
 * meanwhile, so no other thread fills it). */
#define WARM_BATCH 2

static size_t pick_cold(mp_pool_t *p, mp__worker_t **v)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nws && n < WARM_BATCH; i++) {
        mp__worker_t *w = p->ws[i];
        if (w->state != MP__W_READY || !w->units_sent || w->warm || w->sending) continue;
        w->warm = w->sending = true;
        v[n++] = w;
    }
    return n;
}

/* Mutex released on entry, held on return. */
static void warm_up(mp_pool_t *p, mp__worker_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mp__plink_warm(v[i]->link);
        v[i]->out.len = 0;
        if (!mp__pbuf_reserve(&v[i]->out, MP__P_RECV_WARM)) memset(v[i]->out.p, 0, v[i]->out.cap);
    }
    mp__mutex_lock(p->mu);
    for (size_t i = 0; i < n; i++)
        v[i]->sending = false;
    /* A thread that found them busy may dispatch now. */
    mp__cond_broadcast(p->cv);
}

/* Waits for the workers, the wake pipe or the next deadline; wakes the
 * waiting threads first, once the mutex they need is free. */
static void wait_events(mp_pool_t *p, bool wake_waiters)
{
    if (grow_wset(p, 1 + 2 * p->nws)) {
        mp__cond_broadcast(p->cv);
        mp__cond_wait(p->cv, p->mu, WAIT_FAIL_NAP_MS);
        return;
    }
    size_t n = 0;
    uint64_t deadline = UINT64_MAX;
    bool reap_now = false;
    p->wset[n++] = MP_HANDLE(p->wake_r);
    for (size_t i = 0; i < p->nws; i++) {
        mp__worker_t *w = p->ws[i];
        /* A worker told to quit with nothing in flight has nothing more to
         * say that its exit would not show: its end alone wakes us. */
        bool quitting = w->state == MP__W_RETIRING && !w->items;
        if (w->link && w->state != MP__W_GONE && !quitting) {
            p->wmap[n] = (struct mp__wslot){w, false};
            p->wset[n++] = mp__plink_waitable(w->link);
        }
        /* A worker that ended since reap_gone looked is freed on the next
         * turn: no wait. One already reaped waits only for its writer. */
        if (w->state != MP__W_GONE || mp_process_is_alive(w->proc) == 1) {
            p->wmap[n] = (struct mp__wslot){w, true};
            p->wset[n++] = MP_HANDLE(w->proc);
        } else if (!w->sending) {
            reap_now = true;
        }
        uint64_t d = deadline_of(p, w);
        if (d < deadline) deadline = d;
    }
    long ms = MP_FOREVER;
    if (reap_now) {
        deadline = 0;
        ms = 0;
    } else if (deadline != UINT64_MAX) {
        uint64_t now = mp__os_now_ns();
        ms = deadline <= now ? 0 : (long)((deadline - now + 999999u) / 1000000u);
    }
    p->sleep_until = deadline;
    size_t nready = 0;
    mp__worker_t *warm[WARM_BATCH];
    size_t nwarm = pick_cold(p, warm);
    bool rwarm = p->got_results;
    mp__mutex_unlock(p->mu);
    if (wake_waiters) mp__cond_broadcast(p->cv);
    if (rwarm) mp__precv_warm(&p->rbuf, MP__P_RECV_WARM);
    if (nwarm) {
        warm_up(p, warm, nwarm);
        return;
    }
    int rc = mp_wait(p->wset, n, ms, p->wready, &nready);
    mp__mutex_lock(p->mu);
    p->sleep_until = 0;
    if (rc) {
        mp__cond_wait(p->cv, p->mu, WAIT_FAIL_NAP_MS);
        return;
    }
    for (size_t k = 0; k < nready; k++) {
        size_t i = p->wready[k];
        if (i == 0) {
            void *m;
            size_t len;
            if (!mp_conn_recv_bytes(p->wake_r, &m, &len)) free(m);
            p->wake_sent = false;
        } else if (p->wmap[i].proc) {
            on_exit_seen(p, p->wmap[i].w);
        } else {
            on_readable(p, p->wmap[i].w);
        }
    }
    check_timeouts(p);
}

/* Kills every worker, fails everything with MP_ECLOSED, reaps. */
static void terminate_all(mp_pool_t *p)
{
    for (size_t i = 0; i < p->nws; i++) {
        mp__pool_worker_lost(p, p->ws[i], MP_ECLOSED, terminated);
        /* Killed even when told to quit: it may never read that (an
         * initializer that does not return). */
        mp_process_kill(p->ws[i]->proc);
    }
    fail_queued(p, MP_ECLOSED, terminated);
    for (;;) {
        bool sending = false;
        for (size_t i = 0; i < p->nws; i++)
            sending |= p->ws[i]->sending;
        if (!sending) break;
        /* A writer to a killed worker fails at once and signals. */
        mp__cond_wait(p->cv, p->mu, WAIT_FAIL_NAP_MS);
    }
    mp__mutex_unlock(p->mu);
    for (size_t i = 0; i < p->nws; i++)
        mp_process_join(p->ws[i]->proc, MP_FOREVER);
    mp__mutex_lock(p->mu);
    for (size_t i = 0; i < p->nws; i++)
        worker_free(p->ws[i]);
    p->nws = 0;
}

static void handler_main(void *arg)
{
    mp_pool_t *p = arg;
    mp__mutex_lock(p->mu);
    for (;;) {
        if (p->state == MP__S_TERM) break;
        if (p->broken) break_all(p);
        maintain(p);
        if (!p->started) {
            p->started = true;
            mp__cond_broadcast(p->cv);
        }
        retire_idle(p);
        reap_gone(p);
        if (p->state == MP__S_CLOSED && !mp__pool_has_work(p) && !p->nws) break;
        mp__pool_dispatch(p, MP__D_NOBLOCK);
        if (run_callbacks(p)) continue;
        /* Waiters wake for outcomes they wait for, and to write what the
         * handler must not (they may block: see pool_dispatch.c). */
        bool wake_waiters = p->waiters && (p->notify || p->need_blocker);
        p->notify = false;
        wait_events(p, wake_waiters);
    }
    if (p->state == MP__S_TERM) terminate_all(p);
    run_callbacks(p);
    p->handler_done = true;
    p->started = true;
    mp__cond_broadcast(p->cv);
    mp__mutex_unlock(p->mu);
}

/* The handler thread starts with the first task (or at create where
 * workers must be started from it: mp__child_outlives_thread). A pool
 * that never gets a task runs no thread, and none of ours runs while the
 * workers fork: after a fork each page the parent writes costs a fault,
 * and a second thread of the process turns those into cross-CPU TLB
 * flushes (both costly under virtualization). */
int mp__pool_start_handler(mp_pool_t *p)
{
    if (p->thread || p->handler_done) return 0;
    /* Made only now: every worker forked while it exists closes it. */
    int rc = p->wake_r ? 0 : mp_pipe(&p->wake_r, &p->wake_w, false);
    return rc ? rc : mp__thread_start(&p->thread, handler_main, p);
}

/* How often a join without a handler looks whether another thread
 * terminated the pool meanwhile (its workers may never quit by
 * themselves: an initializer that never returns). */
#define END_SLICE_MS 100L

/* Waits for every worker of a closed pool without a handler to exit (they
 * were told to quit by close); returns early, with 0, once the pool is
 * terminated. Mutex held, released meanwhile. */
static int await_workers(mp_pool_t *p, long timeout_ms, uint64_t start)
{
    for (size_t i = 0; i < p->nws && p->state != MP__S_TERM;) {
        long left = mp__timeout_left(timeout_ms, start);
        long slice = left < 0 || left > END_SLICE_MS ? END_SLICE_MS : left;
        mp_process_t *proc = p->ws[i]->proc;
        mp__mutex_unlock(p->mu);
        int rc = mp_process_join(proc, slice);
        mp__mutex_lock(p->mu);
        if (!rc)
            i++;
        else if (rc != MP_ETIMEDOUT)
            return rc;
        else if (slice == left)
            return mp__fail(MP_ETIMEDOUT, "the pool's workers are still running");
    }
    return 0;
}

/* What the handler would do at the end, by the calling thread of a pool
 * that never had one (mutex held; released meanwhile): a closed pool's
 * workers are waited for, a terminated pool's killed and reaped. On an
 * error (MP_ETIMEDOUT) nothing changed: the pool can be joined again. */
static int end_here(mp_pool_t *p, long timeout_ms, uint64_t start)
{
    p->ending = true;
    int rc = await_workers(p, timeout_ms, start);
    if (!rc && p->state == MP__S_TERM) terminate_all(p);
    p->ending = false;
    if (!rc) {
        for (size_t i = 0; i < p->nws; i++)
            worker_free(p->ws[i]);
        p->nws = 0;
        p->handler_done = true;
    }
    mp__cond_broadcast(p->cv);
    return rc;
}

/* ---- the API ---- */

static int pool_check(mp_pool_t *p)
{
    if (!p || p->magic != POOL_MAGIC) return mp__fail(MP_EINVAL, "not a live pool");
    return 0;
}

void mp__pool_destroy(mp_pool_t *p)
{
    for (size_t i = 0; i < p->nws; i++)
        worker_free(p->ws[i]);
    free(p->ws);
    for (size_t i = 0; i < p->nfns; i++)
        free(p->fns[i].ref.module);
    free(p->fns);
    mp__uring_release(&p->retry);
    free(p->wset);
    free(p->wready);
    free(p->wmap);
    mp__precv_release(&p->rbuf);
    if (p->wake_r) mp_conn_free(p->wake_r);
    if (p->wake_w) mp_conn_free(p->wake_w);
    mp_args_free(p->initargs);
    free(p->init_module);
    free(p->config);
    free(p->broken_text);
    mp__cond_free(p->cv);
    mp__mutex_free(p->mu);
    p->magic = 0;
    free(p);
}

/* Asks the handler to terminate and waits until it has (mutex held). */
static void stop(mp_pool_t *p)
{
    if (p->state != MP__S_TERM && !p->handler_done) {
        p->state = MP__S_TERM;
        mp__pool_wake(p);
    }
    if (in_handler(p)) return;
    while (!p->handler_done) {
        if (!p->thread && !p->ending)
            end_here(p, MP_FOREVER, 0);
        else
            mp__cond_wait(p->cv, p->mu, MP_FOREVER);
    }
}

/* The worker configuration: what every worker of p is started with
 * (p->method set; p->init_module set here). */
static int pack_config(mp_pool_t *p, const mp_pool_opts_t *o)
{
    mp__wconfig_t c = {.maxtasks = o->maxtasksperchild, .flush_each = o->task_timeout_ms > 0};
    if (o->initializer) {
        const void *addr;
        memcpy(&addr, &o->initializer, sizeof addr);
        int rc = mp__module_locate(addr, &p->init_module, &c.init.offset, &c.init.ident);
        if (rc) return rc;
        c.init.module = p->init_module;
    }
    c.quiet = quiet_start(p);
    mp__wbuf_t w = {0};
    int rc = mp__wconfig_pack(&c, &w);
    if (rc) {
        mp__wbuf_release(&w);
        return rc;
    }
    p->config = w.p;
    p->config_len = w.len;
    return 0;
}

static int check_opts(const mp_pool_opts_t *o, mp_start_method_t *m)
{
    if (o->processes < 0 || o->processes > MAX_PROCESSES)
        return mp__fail(MP_EINVAL, "processes must be 0..%d, not %d", MAX_PROCESSES, o->processes);
    if (o->task_timeout_ms < 0)
        return mp__fail(MP_EINVAL, "task_timeout_ms must be 0 (none) or positive");
    *m = mp__start_method_resolve(o->start_method);
    if (*m == MP_START_FORK && !mp__os_has_fork())
        return mp__fail(MP_ENOSYS, "the fork start method does not exist on this platform");
    return 0;
}

static int pool_new(const mp_pool_opts_t *o, mp_start_method_t m, mp_pool_t **out)
{
    mp_pool_t *p = mp__calloc(1, sizeof *p);
    if (!p) return MP_ENOMEM;
    p->magic = POOL_MAGIC;
    p->refs = 1;
    p->state = MP__S_RUN;
    p->nproc = o->processes ? o->processes : mp_cpu_count();
    p->maxtasks = o->maxtasksperchild;
    p->timeout_ms = o->task_timeout_ms;
    p->method = m;
    int rc = mp__mutex_create(&p->mu);
    if (!rc) rc = mp__cond_create(&p->cv);
    if (!rc) rc = mp__args_copy(o->initargs, &p->initargs);
    if (!rc) rc = pack_config(p, o);
    if (rc) {
        mp__pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mp_pool_create(mp_pool_t **out, const mp_pool_opts_t *o)
{
    static const mp_pool_opts_t defaults;
    if (!out) return mp__fail(MP_EINVAL, "mp_pool_create: NULL out-pointer");
    if (!o) o = &defaults;
    mp_start_method_t m;
    int rc = check_opts(o, &m);
    mp_pool_t *p = NULL;
    if (!rc) rc = pool_new(o, m, &p);
    if (rc) return rc;
    mp__mutex_lock(p->mu);
    if (mp__child_outlives_thread()) {
        maintain(p);
        p->started = true;
        rc = p->start_rc;
    } else {
        rc = mp__pool_start_handler(p);
        while (!rc && !p->started)
            mp__cond_wait(p->cv, p->mu, MP_FOREVER);
        if (!rc) rc = p->start_rc;
    }
    if (rc) {
        char why[512];
        snprintf(why, sizeof why, "%s", p->broken_text ? p->broken_text : "");
        stop(p);
        mp__mutex_unlock(p->mu);
        mp__thread_join(p->thread);
        mp__pool_destroy(p);
        return mp__fail(rc, "%s", why);
    }
    mp__mutex_unlock(p->mu);
    *out = p;
    return 0;
}

int mp_pool_close(mp_pool_t *p)
{
    int rc = pool_check(p);
    if (rc) return rc;
    mp__mutex_lock(p->mu);
    if (p->state == MP__S_RUN) {
        p->state = MP__S_CLOSED;
        /* Idle workers are told to quit from here; the handler wakes when
         * they end, and before only if some worker is still busy. */
        retire_idle(p);
        bool wake = mp__pool_has_work(p) || !p->nws;
        for (size_t i = 0; i < p->nws; i++)
            wake |= p->ws[i]->state == MP__W_READY || p->ws[i]->state == MP__W_STARTING;
        if (wake) mp__pool_wake(p);
    }
    mp__mutex_unlock(p->mu);
    return 0;
}

int mp_pool_terminate(mp_pool_t *p)
{
    int rc = pool_check(p);
    if (rc) return rc;
    mp__mutex_lock(p->mu);
    stop(p);
    mp__mutex_unlock(p->mu);
    return 0;
}

int mp_pool_join(mp_pool_t *p, long timeout_ms)
{
    int rc = pool_check(p);
    if (rc) return rc;
    mp__mutex_lock(p->mu);
    uint64_t start = mp__os_now_ns();
    if (p->state == MP__S_RUN)
        rc = mp__fail(MP_ESTATE, "join needs the pool closed or terminated first");
    else if (in_handler(p))
        rc = mp__fail(MP_ESTATE, "a pool cannot be joined from its own callback");
    while (!rc && !p->handler_done) {
        long left = mp__timeout_left(timeout_ms, start);
        if (!p->thread && !p->ending)
            rc = end_here(p, timeout_ms, start);
        else if (!left)
            rc = mp__fail(MP_ETIMEDOUT, "the pool's workers are still running");
        else
            mp__cond_wait(p->cv, p->mu, left);
    }
    mp__thread_t *t = NULL;
    if (!rc) {
        t = p->thread;
        p->thread = NULL;
        p->joined = true;
    }
    mp__mutex_unlock(p->mu);
    mp__thread_join(t);
    return rc;
}

void mp_pool_free(mp_pool_t *p)
{
    if (!p) return; /* as free(NULL): no error, the last detail stays */
    if (pool_check(p)) return;
    mp__mutex_lock(p->mu);
    if (in_handler(p)) {
        /* From a callback: the handler cannot wait for itself. The pool
         * ends; its memory stays (see docs/DECISIONS.md). */
        stop(p);
        mp__mutex_unlock(p->mu);
        return;
    }
    stop(p);
    mp__thread_t *t = p->thread;
    p->thread = NULL;
    p->magic = 0;
    mp__mutex_unlock(p->mu);
    mp__thread_join(t);
    mp__mutex_lock(p->mu);
    bool destroy = mp__pool_unref(p);
    mp__mutex_unlock(p->mu);
    if (destroy) mp__pool_destroy(p);
}
