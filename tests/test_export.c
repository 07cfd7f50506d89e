/* mp_handle_export / mp_handle_import: objects handed to a running process
 * as blobs over a pipe, and blobs that are malformed or foreign. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

enum { X_LOCK, X_RLOCK, X_SEM, X_EVENT, X_COND, X_BARRIER, X_SHM, X_VALUE, X_COUNT };

static mp_handle_t *import_next(mp_conn_t *c, int *rc)
{
    void *blob;
    size_t len;
    mp_handle_t *h = NULL;
    *rc = mp_conn_recv_bytes(c, &blob, &len);
    if (!*rc) {
        *rc = mp_handle_import(blob, len, &h);
        mp_free(blob);
    }
    return h;
}

/* Gets nothing in its args but a pipe: every object arrives as a blob. */
static int importer(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    mp_handle_t *h[X_COUNT];
    for (int i = 0; i < X_COUNT; i++) {
        int rc;
        h[i] = import_next(c, &rc);
        if (rc) return 20 + i;
    }
    if (mp_lock_acquire((mp_lock_t *)h[X_LOCK], 0) != MP_ETIMEDOUT) return 30; /* parent holds it */
    if (mp_rlock_acquire((mp_rlock_t *)h[X_RLOCK], JOIN_MS)) return 31;
    if (mp_rlock_release((mp_rlock_t *)h[X_RLOCK])) return 32;
    if (mp_semaphore_release((mp_semaphore_t *)h[X_SEM])) return 33;
    if (mp_event_set((mp_event_t *)h[X_EVENT])) return 34;
    mp_condition_t *cv = (mp_condition_t *)h[X_COND];
    if (mp_condition_acquire(cv, JOIN_MS) || mp_condition_notify_all(cv) ||
        mp_condition_release(cv))
        return 35;
    if (mp_barrier_wait((mp_barrier_t *)h[X_BARRIER], JOIN_MS, NULL)) return 36;
    strcpy(mp_shm_ptr((mp_shm_t *)h[X_SHM]), "imported");
    *(int *)mp_value_ptr((mp_value_t *)h[X_VALUE]) = 4242;
    if (mp_lock_release((mp_lock_t *)h[X_LOCK]) != MP_EPERM) return 37;
    mp_lock_free((mp_lock_t *)h[X_LOCK]);
    mp_rlock_free((mp_rlock_t *)h[X_RLOCK]);
    mp_semaphore_free((mp_semaphore_t *)h[X_SEM]);
    mp_event_free((mp_event_t *)h[X_EVENT]);
    mp_condition_free(cv);
    mp_barrier_free((mp_barrier_t *)h[X_BARRIER]);
    mp_shm_free((mp_shm_t *)h[X_SHM]);
    mp_value_free((mp_value_t *)h[X_VALUE]);
    return mp_conn_send_bytes(c, "done", 4) ? 40 : 0;
}

static void send_export(mp_conn_t *c, mp_handle_t *h)
{
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(h, &blob, &len));
    ASSERT_OK(mp_conn_send_bytes(c, blob, len));
    mp_free(blob);
}

Test(export, every_type_to_a_running_process, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_rlock_t *r;
    mp_semaphore_t *s;
    mp_event_t *e;
    mp_condition_t *cv;
    mp_barrier_t *b;
    mp_shm_t *m;
    mp_value_t *v;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_rlock_create(&r));
    ASSERT_OK(mp_semaphore_create(&s, 0, 1));
    ASSERT_OK(mp_event_create(&e));
    ASSERT_OK(mp_condition_create(&cv, NULL));
    ASSERT_OK(mp_barrier_create(&b, 2));
    ASSERT_OK(mp_shm_create(&m, NULL, 4096));
    ASSERT_OK(mp_value_create(&v, sizeof(int)));
    ASSERT_OK(mp_lock_acquire(l, 0));

    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *p = start_proc(importer, a);
    mp_args_free(a);
    mp_handle_t *all[X_COUNT] = {MP_HANDLE(l),  MP_HANDLE(r), MP_HANDLE(s), MP_HANDLE(e),
                                 MP_HANDLE(cv), MP_HANDLE(b), MP_HANDLE(m), MP_HANDLE(v)};
    for (int i = 0; i < X_COUNT; i++)
        send_export(mine, all[i]);
    ASSERT_OK(mp_barrier_wait(b, JOIN_MS, NULL));
    ASSERT_OK(mp_semaphore_acquire(s, JOIN_MS));
    ASSERT_OK(mp_event_wait(e, JOIN_MS));
    expect_msg(mine, "done");
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    cr_assert_str_eq(mp_shm_ptr(m), "imported");
    cr_assert_eq(*(int *)mp_value_ptr(v), 4242);
    ASSERT_OK(mp_lock_release(l));

    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_lock_free(l);
    mp_rlock_free(r);
    mp_semaphore_free(s);
    mp_event_free(e);
    mp_condition_free(cv);
    mp_barrier_free(b);
    mp_shm_free(m);
    mp_value_free(v);
}

Test(export, import_in_the_same_process, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    ASSERT_OK(mp_lock_create(&l));
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(MP_HANDLE(l), &blob, &len));
    mp_handle_t *h1, *h2;
    ASSERT_OK(mp_handle_import(blob, len, &h1));
    ASSERT_OK(mp_handle_import(blob, len, &h2)); /* any number of times */
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_RC(mp_lock_acquire((mp_lock_t *)h1, 0), MP_EPERM); /* the same lock */
    ASSERT_OK(mp_lock_release((mp_lock_t *)h2));
    ASSERT_RC(mp_event_set((mp_event_t *)h1), MP_ETYPE);
    mp_lock_free((mp_lock_t *)h1);
    mp_lock_free((mp_lock_t *)h2);
    mp_lock_free(l);
    /* Nobody holds it any more: the blob names nothing. */
    ASSERT_RC(mp_handle_import(blob, len, &h1), MP_ENOTFOUND);
    mp_free(blob);
}

static bool malformed_code(int rc)
{
    return rc == MP_EPROTO || rc == MP_EINVAL;
}

Test(export, malformed_and_foreign_blobs, .timeout = TEST_TIMEOUT)
{
    mp_handle_t *h = NULL;
    ASSERT_RC(mp_handle_import(NULL, 10, &h), MP_EINVAL);
    ASSERT_RC(mp_handle_import("x", 1, NULL), MP_EINVAL);
    ASSERT_RC(mp_handle_import("", 0, &h), MP_EPROTO);
    ASSERT_RC(mp_handle_import("MPHX", 4, &h), MP_EPROTO);
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    ASSERT_RC(mp_handle_import(junk, sizeof junk, &h), MP_EPROTO);
    memcpy(junk, "MPHX\1\0\0\0", 8); /* the right header, junk after */
    for (size_t n = 8; n <= sizeof junk; n++) {
        int rc = mp_handle_import(junk, n, &h);
        cr_assert(malformed_code(rc), "junk of %zu bytes: %s", n, mp_err_name(rc));
    }

    mp_event_t *e;
    mp_condition_t *c;
    ASSERT_OK(mp_event_create(&e));
    ASSERT_OK(mp_condition_create(&c, NULL));
    mp_handle_t *objs[] = {MP_HANDLE(e), MP_HANDLE(c)};
    for (size_t o = 0; o < 2; o++) {
        void *blob;
        size_t len;
        ASSERT_OK(mp_handle_export(objs[o], &blob, &len));
        uint8_t *copy = malloc(len + 1);
        cr_assert_not_null(copy);
        memcpy(copy, blob, len);
        for (size_t n = 0; n < len; n++) {
            int rc = mp_handle_import(copy, n, &h);
            cr_assert(malformed_code(rc), "prefix of %zu bytes: %s", n, mp_err_name(rc));
        }
        copy[len] = 0;
        ASSERT_RC(mp_handle_import(copy, len + 1, &h), MP_EPROTO); /* trailing byte */
        /* Any changed byte: refused, never a crash nor another object. */
        for (size_t i = 0; i < len; i++) {
            copy[i] ^= 0x5a;
            int rc = mp_handle_import(copy, len, &h);
            cr_assert(rc < 0, "a blob with byte %zu changed was accepted", i);
            copy[i] ^= 0x5a;
        }
        /* Restored, it is the object again. */
        ASSERT_OK(mp_handle_import(copy, len, &h));
        if (o == 0)
            mp_event_free((mp_event_t *)h);
        else
            mp_condition_free((mp_condition_t *)h);
        free(copy);
        mp_free(blob);
    }
    mp_condition_free(c);
    mp_event_free(e);

    mp_conn_t *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    void *blob;
    size_t len;
    ASSERT_RC(mp_handle_export(MP_HANDLE(x), &blob, &len), MP_ETYPE);
    ASSERT_RC(mp_handle_export(NULL, &blob, &len), MP_EINVAL);
    mp_conn_free(x);
    mp_conn_free(y);
}
