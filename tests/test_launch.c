/* The launch record a spawned child parses: every truncation and random
 * corruption gives an error or a valid record, never a crash or a leak. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "launch.h"

#if defined(_WIN32)
#include <windows.h>
static mp__osh_t dup_osh(mp__osh_t h)
{
    HANDLE out = NULL;
    DuplicateHandle(GetCurrentProcess(), (HANDLE)h, GetCurrentProcess(), &out, 0, FALSE,
                    DUPLICATE_SAME_ACCESS);
    return (mp__osh_t)out;
}
#else
#include <unistd.h>
static mp__osh_t dup_osh(mp__osh_t h)
{
    return dup((int)h);
}
#endif

static void build_record(mp__wbuf_t *w, mp__ostab_t *t, mp_conn_t **keep)
{
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_args_t *args;
    ASSERT_OK(mp_args_create(&args));
    ASSERT_OK(mp_args_add_int(args, -5));
    ASSERT_OK(mp_args_add_str(args, "text"));
    ASSERT_OK(mp_args_add_bytes(args, "\0\1", 2));
    ASSERT_OK(mp_args_add_handle(args, MP_HANDLE(a)));
    mp__launch_t l = {.name = "Process-9",
                      .parent = 1234,
                      .daemon = true,
                      .module = "",
                      .offset = 77,
                      .ident = 99,
                      .args = args};
    ASSERT_OK(mp__launch_pack(&l, w, t));
    mp_args_free(args);
    mp_conn_free(b);
    *keep = a;
}

static int parse(const void *p, size_t n, size_t ntab)
{
    mp__osh_t tab[1] = {MP__OSH_INVALID};
    mp__launch_t l;
    int rc = mp__launch_unpack(p, n, tab, ntab, &l);
    if (!rc) mp__launch_release(&l);
    return rc;
}

Test(launch, round_trip_and_every_truncation, .timeout = TEST_TIMEOUT)
{
    mp__wbuf_t w = {0};
    mp__ostab_t t = {0};
    mp_conn_t *keep;
    build_record(&w, &t, &keep);
    cr_assert_eq(t.n, 1);
    /* The table names the parent's own handle; the child adopts a copy. */
    mp__osh_t tab[1] = {dup_osh(t.v[0])};
    mp__launch_t l;
    ASSERT_OK(mp__launch_unpack(w.p, w.len, tab, 1, &l));
    cr_assert_str_eq(l.name, "Process-9");
    cr_assert_eq(l.parent, 1234);
    cr_assert(l.daemon);
    cr_assert_eq(l.offset, 77);
    cr_assert_eq(mp_args_count(l.args), 4);
    cr_assert_eq(tab[0], MP__OSH_INVALID, "the connection took its handle");
    mp__launch_release(&l);
    for (size_t n = 0; n < w.len; n++)
        ASSERT_RC(parse(w.p, n, 0), MP_EPROTO);
    mp__wbuf_release(&w);
    mp__ostab_release(&t);
    mp_conn_free(keep);
}

Test(launch, random_corruption_never_crashes, .timeout = TEST_TIMEOUT)
{
    mp__wbuf_t w = {0};
    mp__ostab_t t = {0};
    mp_conn_t *keep;
    build_record(&w, &t, &keep);
    unsigned char *copy = malloc(w.len);
    cr_assert_not_null(copy);
    unsigned seed = 12345;
    for (int trial = 0; trial < 20000; trial++) {
        memcpy(copy, w.p, w.len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            copy[(seed >> 8) % w.len] = (unsigned char)(seed >> 20);
        }
        int rc = parse(copy, w.len, 0);
        cr_assert(rc == 0 || rc == MP_EPROTO || rc == MP_ENOMEM, "rc %s", mp_err_name(rc));
    }
    free(copy);
    mp__wbuf_release(&w);
    mp__ostab_release(&t);
    mp_conn_free(keep);
}
