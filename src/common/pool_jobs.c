/* Jobs: apply, map, map_fixed, imap; the results and iterators callers
 * wait on, and how each item's outcome lands in them. */
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

#define JOB_MAGIC 0x6d704a42u  /* "mpJB" */
#define POOL_MAGIC 0x6d70504cu /* "mpPL", set by pool.c */
#define FIXED_UNIT_BYTES 16384u

struct mp_iter {
    mp__job_t job;
};

static _Thread_local size_t failed_index = SIZE_MAX;

size_t mp_pool_failed_index(void)
{
    return failed_index;
}

/* ---- outcomes (handler thread, mutex held) ---- */

static void job_finish(mp__job_t *j)
{
    mp_pool_t *p = j->pool;
    p->notify = true;
    if (j->cb) {
        /* The pool's reference goes with it to the callback list. */
        j->next_job = p->cbs;
        p->cbs = j;
        return;
    }
    /* Never the pool's last reference: its user's stays while jobs run. */
    (void)mp__job_unref(j);
}

static void items_done(mp__job_t *j, size_t k)
{
    if (!k) return;
    j->done += k;
    /* A map's caller waits for the end only; an iterator's for each item. */
    if (j->kind == MP__J_IMAP || j->kind == MP__J_IMAP_UNORDERED) j->pool->notify = true;
    if (j->done == j->n) job_finish(j);
}

static char *copy_text(const char *text, size_t n)
{
    char *t = malloc(n + 1);
    if (t) {
        if (n) memcpy(t, text, n);
        t[n] = 0;
    }
    return t;
}

static void *copy_data(const void *data, size_t len)
{
    void *d = malloc(len ? len : 1);
    if (d && len) memcpy(d, data, len);
    return d;
}

/* map and map_fixed keep the first failure and stop dispatching. */
static void map_failure(mp__job_t *j, size_t idx, int status, const char *text, size_t tlen)
{
    if (!j->err || idx < j->err_index) {
        free(j->err_text);
        j->err = status;
        j->err_index = idx;
        j->err_text = copy_text(text, tlen);
    }
    mp__job_cancel(j);
}

void mp__job_item(mp__job_t *j, size_t idx, int status, const void *data, size_t len,
                  const char *text, size_t tlen)
{
    static const char no_memory[] = "no memory to keep the result";
    void *d = NULL;
    if (!status && j->kind != MP__J_FIXED && !j->cancelled) {
        d = copy_data(data, len);
        if (!d) {
            status = MP_ENOMEM;
            text = no_memory;
            tlen = sizeof no_memory - 1;
        }
    }
    if (j->kind == MP__J_FIXED) {
        if (status)
            map_failure(j, idx, status, text, tlen);
        else if (data && j->out_size)
            memcpy(j->fout + idx * j->out_size, data, j->out_size);
    } else if (j->kind == MP__J_MAP) {
        if (status) {
            map_failure(j, idx, status, text, tlen);
        } else if (j->vout) {
            j->vout[idx].data = d;
            j->vout[idx].len = len;
        } else {
            free(d);
        }
    } else if (j->cancelled) {
        free(d); /* an iterator that was freed */
    } else {
        mp__slot_t *s = &j->slots[idx];
        s->data = d;
        s->len = len;
        s->status = status;
        s->text = status ? copy_text(text, tlen) : NULL;
        s->ready = true;
        if (j->kind == MP__J_IMAP_UNORDERED) j->order[j->norder++] = idx;
    }
    items_done(j, 1);
}

void mp__job_fixed_ok(mp__job_t *j, size_t idx, size_t count, const uint8_t *data)
{
    if (count && j->out_size) memcpy(j->fout + idx * j->out_size, data, count * j->out_size);
    items_done(j, count);
}

void mp__job_fail(mp__job_t *j, size_t idx, size_t count, int code, const char *text)
{
    size_t tlen = strlen(text);
    if (j->kind == MP__J_MAP || j->kind == MP__J_FIXED) {
        if (count) map_failure(j, idx, code, text, tlen);
        items_done(j, count);
        return;
    }
    for (size_t i = 0; i < count; i++)
        mp__job_item(j, idx + i, code, NULL, 0, text, tlen);
}

void mp__job_cancel(mp__job_t *j)
{
    if (j->cancelled) return;
    j->cancelled = true;
    mp_pool_t *p = j->pool;
    if (j->queued) {
        mp__job_t **pp = &p->qhead, *prev = NULL;
        while (*pp != j) {
            prev = *pp;
            pp = &(*pp)->next_job;
        }
        *pp = j->next_job;
        if (p->qtail == j) p->qtail = prev;
        j->next_job = NULL;
        j->queued = false;
    }
    size_t dropped = j->n - j->next;
    for (size_t i = 0; i < p->retry.len; i++) {
        mp__unit_t *u = mp__uring_at(&p->retry, i);
        if (u->job == j) dropped += u->count;
    }
    mp__pool_purge_retry(p, j);
    j->next = j->n;
    if (dropped) items_done(j, dropped);
}

static void job_free(mp__job_t *j)
{
    if (j->slots)
        for (size_t i = 0; i < j->n; i++) {
            free(j->slots[i].data);
            free(j->slots[i].text);
        }
    free(j->slots);
    free(j->order);
    mp_iov_free(j->vout, j->vout ? j->n : 0);
    free(j->err_text);
    free(j->own);
    j->magic = 0;
    free(j);
}

bool mp__job_unref(mp__job_t *j)
{
    if (--j->refs) return false;
    mp_pool_t *p = j->pool;
    job_free(j);
    return mp__pool_unref(p);
}

/* ---- creating and waiting (user threads) ---- */

static int pool_check(mp_pool_t *p)
{
    if (!p || p->magic != POOL_MAGIC) return mp__fail(MP_EINVAL, "not a live pool");
    return 0;
}

static mp__job_t *job_new(mp_pool_t *p, int kind, size_t n, size_t chunk)
{
    mp__job_t *j = mp__calloc(1, sizeof *j);
    if (!j) return NULL;
    j->magic = JOB_MAGIC;
    j->kind = (uint8_t)kind;
    j->refs = 2; /* the caller's and the pool's */
    j->pool = p;
    j->n = n;
    if (!chunk) {
        /* CPython's rule: about four chunks per worker. */
        size_t per = (size_t)p->nproc * 4;
        chunk = n / per + (n % per != 0);
    }
    j->chunk = chunk ? chunk : 1;
    return j;
}

/* Queues j, mutex held (dispatching to idle workers at once unless the
 * caller is about to wait, and dispatch, itself). On failure j was never
 * the pool's: the caller frees it. */
static int submit_locked(mp__job_t *j, mp_task_fn f, bool dispatch)
{
    mp_pool_t *p = j->pool;
    int rc = 0;
    if (p->state != MP__S_RUN)
        rc = mp__fail(MP_ESTATE, "the pool was closed: it takes no more tasks");
    else if (p->broken)
        rc = mp__fail(p->broken, "the pool is broken: %s", p->broken_text);
    else
        rc = mp__pool_fn_id(p, f, &j->fn);
    if (!rc) rc = mp__pool_start_handler(p);
    if (!rc) {
        p->refs++;
        if (j->n) {
            j->queued = true;
            if (p->qtail)
                p->qtail->next_job = j;
            else
                p->qhead = j;
            p->qtail = j;
            if (dispatch) mp__pool_dispatch(p, MP__D_IDLE);
        } else {
            job_finish(j);
        }
    }
    return rc;
}

static int submit(mp__job_t *j, mp_task_fn f)
{
    mp__mutex_lock(j->pool->mu);
    int rc = submit_locked(j, f, true);
    mp__mutex_unlock(j->pool->mu);
    return rc;
}

/* Drops the caller's reference, destroying the pool if it was the last. */
static void job_release(mp__job_t *j)
{
    mp_pool_t *p = j->pool;
    mp__mutex_lock(p->mu);
    bool destroy = mp__job_unref(j);
    mp__mutex_unlock(p->mu);
    if (destroy) mp__pool_destroy(p);
}

/* Waits (mutex held) until pred(j) or timeout_ms; a thread that waits
 * without limit helps dispatch meanwhile. */
static int wait_for(mp__job_t *j, bool (*pred)(const mp__job_t *), long timeout_ms)
{
    mp_pool_t *p = j->pool;
    uint64_t start = mp__os_now_ns();
    int rc = 0;
    p->waiters++;
    while (!pred(j)) {
        if (timeout_ms < 0) {
            mp__pool_dispatch(p, MP__D_BLOCK);
            if (pred(j)) break;
        }
        long left = mp__timeout_left(timeout_ms, start);
        if (!left) {
            rc = mp__fail(MP_ETIMEDOUT, "no result within %ld ms", timeout_ms);
            break;
        }
        mp__cond_wait(p->cv, p->mu, left);
    }
    p->waiters--;
    return rc;
}

static bool all_done(const mp__job_t *j)
{
    return j->done == j->n && !j->writing;
}

static int check_input(mp_task_fn f, const void *in, size_t inlen)
{
    if (!f) return mp__fail(MP_EINVAL, "a task function is required");
    if (!in && inlen) return mp__fail(MP_EINVAL, "NULL input of %zu bytes", inlen);
    if (inlen > SIZE_MAX / 2) return mp__fail(MP_EINVAL, "an input of %zu bytes", inlen);
    return 0;
}

/* ---- apply ---- */

static int result_check(mp_result_t *r)
{
    if (!r || r->magic != JOB_MAGIC) return mp__fail(MP_EINVAL, "not a live result");
    if (r->kind != MP__J_APPLY) return mp__fail(MP_ETYPE, "not a result of apply_async");
    return 0;
}

int mp_pool_apply_async(mp_pool_t *p, mp_task_fn f, const void *in, size_t inlen, mp_result_t **r)
{
    int rc = pool_check(p);
    if (!rc) rc = check_input(f, in, inlen);
    if (!rc && !r) rc = mp__fail(MP_EINVAL, "mp_pool_apply_async: NULL out-pointer");
    if (rc) return rc;
    mp__job_t *j = job_new(p, MP__J_APPLY, 1, 1);
    mp_iov_t *v = mp__malloc(sizeof *v + (inlen ? inlen : 1));
    if (!j || !v || !(j->slots = mp__calloc(1, sizeof *j->slots))) {
        free(v);
        if (j) job_free(j);
        return MP_ENOMEM;
    }
    /* One block: the buffer descriptor, then the copy of the input. */
    v->data = v + 1;
    v->len = inlen;
    if (inlen) memcpy(v->data, in, inlen);
    j->own = v;
    j->vin = v;
    rc = submit(j, f);
    if (rc) {
        job_free(j);
        return rc;
    }
    *r = j;
    return 0;
}

int mp_pool_apply(mp_pool_t *p, mp_task_fn f, const void *in, size_t inlen, void **out,
                  size_t *outlen)
{
    mp_result_t *r;
    int rc = mp_pool_apply_async(p, f, in, inlen, &r);
    if (rc) return rc;
    rc = mp_result_get(r, MP_FOREVER, out, outlen);
    mp_result_free(r);
    return rc;
}

int mp_result_wait(mp_result_t *r, long timeout_ms)
{
    int rc = result_check(r);
    if (rc) return rc;
    mp__mutex_lock(r->pool->mu);
    rc = wait_for(r, all_done, timeout_ms);
    mp__mutex_unlock(r->pool->mu);
    return rc;
}

int mp_result_ready(mp_result_t *r)
{
    int rc = result_check(r);
    if (rc) return rc;
    mp__mutex_lock(r->pool->mu);
    rc = all_done(r);
    mp__mutex_unlock(r->pool->mu);
    return rc;
}

int mp_result_get(mp_result_t *r, long timeout_ms, void **out, size_t *outlen)
{
    int rc = result_check(r);
    if (rc) return rc;
    mp__mutex_lock(r->pool->mu);
    rc = wait_for(r, all_done, timeout_ms);
    mp__slot_t *s = r->slots;
    if (!rc && s->status) {
        rc = mp__fail(s->status, "%s", s->text ? s->text : mp_strerror(s->status));
    } else if (!rc && out) {
        if (r->taken) {
            rc = mp__fail(MP_ESTATE, "the result was handed over by an earlier get");
        } else {
            *out = s->data;
            if (outlen) *outlen = s->len;
            s->data = NULL;
            r->taken = true;
        }
    }
    mp__mutex_unlock(r->pool->mu);
    return rc;
}

const char *mp_result_error(mp_result_t *r)
{
    if (result_check(r)) return NULL;
    mp__mutex_lock(r->pool->mu);
    const char *t = all_done(r) && r->slots->status
                        ? (r->slots->text ? r->slots->text : mp_strerror(r->slots->status))
                        : NULL;
    mp__mutex_unlock(r->pool->mu);
    return t;
}

int mp_result_on_done(mp_result_t *r, void (*cb)(mp_result_t *, void *), void *ud)
{
    int rc = result_check(r);
    if (rc) return rc;
    if (!cb) return mp__fail(MP_EINVAL, "mp_result_on_done: NULL callback");
    mp__mutex_lock(r->pool->mu);
    bool now = all_done(r);
    if (r->cb)
        rc = mp__fail(MP_ESTATE, "the result already has a callback");
    else if (!now) {
        r->cb = cb;
        r->ud = ud;
    }
    mp__mutex_unlock(r->pool->mu);
    if (!rc && now) cb(r, ud);
    return rc;
}

void mp_result_free(mp_result_t *r)
{
    if (!r) return; /* as free(NULL): no error, the last detail stays */
    if (result_check(r)) return;
    job_release(r);
}

/* ---- map and map_fixed ---- */

/* Submits j and waits for its end: 0, the first failure, or why the pool
 * refused it (then *taken is false and j is still the caller's alone). */
static int run_map(mp__job_t *j, mp_task_fn f, bool *taken)
{
    mp_pool_t *p = j->pool;
    mp__mutex_lock(p->mu);
    int rc = submit_locked(j, f, false);
    *taken = !rc;
    if (rc) {
        mp__mutex_unlock(p->mu);
        return rc;
    }
    /* This thread may block: it dispatches, at once, as much as is due. */
    wait_for(j, all_done, MP_FOREVER);
    if (j->err) {
        failed_index = j->err_index;
        rc = mp__fail(j->err, "item %zu: %s", j->err_index,
                      j->err_text ? j->err_text : mp_strerror(j->err));
    }
    mp__mutex_unlock(p->mu);
    return rc;
}

static int check_map(mp_pool_t *p, mp_task_fn f, const void *in, size_t n)
{
    failed_index = SIZE_MAX;
    int rc = pool_check(p);
    if (!rc && !f) rc = mp__fail(MP_EINVAL, "a task function is required");
    if (!rc && !in && n) rc = mp__fail(MP_EINVAL, "NULL inputs for %zu items", n);
    return rc;
}

static int check_iovs(const mp_iov_t *in, size_t n, size_t *total)
{
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in[i].data && in[i].len) return mp__fail(MP_EINVAL, "input %zu is NULL", i);
        if (in[i].len > SIZE_MAX / 2 - *total)
            return mp__fail(MP_EINVAL, "the inputs add up to more than memory holds");
        *total += in[i].len;
    }
    return 0;
}

int mp_pool_map(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n, size_t chunksize,
                mp_iov_t **out)
{
    size_t total;
    int rc = check_map(p, f, in, n);
    if (!rc && !out) rc = mp__fail(MP_EINVAL, "mp_pool_map: NULL out-pointer");
    if (!rc) rc = check_iovs(in, n, &total);
    if (rc) return rc;
    *out = NULL;
    mp__job_t *j = job_new(p, MP__J_MAP, n, chunksize);
    if (!j || !(j->vout = mp__calloc(n, sizeof *j->vout))) {
        if (j) job_free(j);
        return MP_ENOMEM;
    }
    j->vin = in;
    bool taken;
    rc = run_map(j, f, &taken);
    if (!taken) {
        job_free(j);
        return rc;
    }
    if (!rc && n) {
        *out = j->vout;
        j->vout = NULL;
    }
    job_release(j);
    return rc;
}

/* map_fixed's automatic chunksize: CPython's rule, but no chunk carries
 * more than FIXED_UNIT_BYTES either way, so that tiny items travel in
 * messages that stay in the buffers already mapped at both ends (a first
 * touch of a page costs more than the copy of its data) and a worker
 * always has the next chunk while it runs one (docs/DECISIONS.md). */
static size_t fixed_chunk(const mp_pool_t *p, size_t n, size_t in_size, size_t out_size)
{
    size_t per = (size_t)p->nproc * 4;
    size_t chunk = n / per + (n % per != 0);
    size_t item = in_size > out_size ? in_size : out_size;
    size_t cap = item ? FIXED_UNIT_BYTES / item : chunk;
    if (chunk > cap) chunk = cap;
    return chunk ? chunk : 1;
}

int mp_pool_map_fixed(mp_pool_t *p, mp_task_fn f, const void *in, size_t in_size, size_t n,
                      void *out, size_t out_size, size_t chunksize)
{
    int rc = check_map(p, f, in, n && in_size);
    if (!rc && !out && n && out_size) rc = mp__fail(MP_EINVAL, "mp_pool_map_fixed: NULL output");
    if (!rc && ((in_size && n > SIZE_MAX / 2 / in_size) || (out_size && n > SIZE_MAX / out_size)))
        rc = mp__fail(MP_EINVAL, "%zu items of %zu -> %zu bytes overflow", n, in_size, out_size);
    if (rc) return rc;
    mp__job_t *j =
        job_new(p, MP__J_FIXED, n, chunksize ? chunksize : fixed_chunk(p, n, in_size, out_size));
    if (!j) return MP_ENOMEM;
    /* Never NULL, so the unit encoder sees a fixed job even for 0 bytes. */
    j->fin = in ? in : (const uint8_t *)j;
    j->in_size = in_size;
    j->fout = out;
    j->out_size = out_size;
    bool taken;
    rc = run_map(j, f, &taken);
    if (!taken)
        job_free(j);
    else
        job_release(j);
    return rc;
}

/* ---- imap ---- */

static mp__job_t *iter_job(mp_iter_t *it)
{
    return it ? &it->job : NULL;
}

static int iter_check(mp_iter_t *it)
{
    mp__job_t *j = iter_job(it);
    if (!j || j->magic != JOB_MAGIC) return mp__fail(MP_EINVAL, "not a live iterator");
    if (j->kind != MP__J_IMAP && j->kind != MP__J_IMAP_UNORDERED)
        return mp__fail(MP_ETYPE, "not an iterator of imap");
    return 0;
}

static int start_imap(mp_pool_t *p, int kind, mp_task_fn f, const mp_iov_t *in, size_t n,
                      size_t chunksize, mp_iter_t **it)
{
    size_t total;
    int rc = pool_check(p);
    if (!rc && (!f || !it || (!in && n))) rc = mp__fail(MP_EINVAL, "imap: NULL argument");
    if (!rc) rc = check_iovs(in, n, &total);
    if (!rc && n > (SIZE_MAX / 2 - total) / sizeof(mp_iov_t))
        rc = mp__fail(MP_EINVAL, "imap: %zu inputs are too many", n);
    if (rc) return rc;
    mp__job_t *j = job_new(p, kind, n, chunksize);
    mp_iov_t *v = mp__malloc(n * sizeof *v + total);
    bool ok = j && v && (j->slots = mp__calloc(n, sizeof *j->slots));
    if (ok && kind == MP__J_IMAP_UNORDERED) ok = (j->order = mp__malloc(n * sizeof *j->order));
    if (!ok) {
        free(v);
        if (j) job_free(j);
        return MP_ENOMEM;
    }
    /* One block: the buffer descriptors, then the copies of the inputs. */
    uint8_t *data = (uint8_t *)(v + n);
    for (size_t i = 0; i < n; i++) {
        v[i].data = data;
        v[i].len = in[i].len;
        if (in[i].len) memcpy(data, in[i].data, in[i].len);
        data += in[i].len;
    }
    j->own = v;
    j->vin = v;
    rc = submit(j, f);
    if (rc) {
        job_free(j);
        return rc;
    }
    *it = (mp_iter_t *)j;
    return 0;
}

int mp_pool_imap(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n, size_t chunksize,
                 mp_iter_t **it)
{
    return start_imap(p, MP__J_IMAP, f, in, n, chunksize, it);
}

int mp_pool_imap_unordered(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n,
                           size_t chunksize, mp_iter_t **it)
{
    return start_imap(p, MP__J_IMAP_UNORDERED, f, in, n, chunksize, it);
}

static bool next_ready(const mp__job_t *j)
{
    if (j->given == j->n) return true;
    if (j->kind == MP__J_IMAP_UNORDERED) return j->norder > j->given;
    return j->slots[j->given].ready;
}

int mp_iter_next(mp_iter_t *it, long timeout_ms, void **out, size_t *outlen, size_t *index)
{
    int rc = iter_check(it);
    if (rc) return rc;
    mp__job_t *j = iter_job(it);
    mp__mutex_lock(j->pool->mu);
    rc = wait_for(j, next_ready, timeout_ms);
    if (!rc && j->given == j->n) rc = mp__fail(MP_EOF, "the iterator is exhausted");
    if (!rc) {
        size_t idx = j->kind == MP__J_IMAP_UNORDERED ? j->order[j->given] : j->given;
        mp__slot_t *s = &j->slots[idx];
        j->given++;
        if (index) *index = idx;
        if (s->status) {
            rc = mp__fail(s->status, "item %zu: %s", idx,
                          s->text ? s->text : mp_strerror(s->status));
        } else if (out) {
            *out = s->data;
            if (outlen) *outlen = s->len;
            s->data = NULL;
        }
    }
    mp__mutex_unlock(j->pool->mu);
    return rc;
}

void mp_iter_free(mp_iter_t *it)
{
    if (!it) return; /* as free(NULL): no error, the last detail stays */
    if (iter_check(it)) return;
    mp__job_t *j = iter_job(it);
    mp__mutex_lock(j->pool->mu);
    mp__job_cancel(j);
    mp__mutex_unlock(j->pool->mu);
    job_release(j);
}
