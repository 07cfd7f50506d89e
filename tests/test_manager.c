/* Managers: dicts and lists shared through a server, locally and over TCP,
 * in children of every start method; what happens when the manager stops
 * or dies, when clients die holding its stores, and when peers send
 * garbage. */
#include <stdio.h>
#include <stdlib.h>

#include "auth.h"
#include "connection_internal.h"
#include "helpers.h"
#include "manager_internal.h"
#include "manager_remote.h"

#define KEY "manager-test-key"
#define KEYLEN (sizeof KEY - 1)
#define NPROC 4
#define PER_PROC 2000

static mp_manager_t *start_manager(void)
{
    mp_manager_t *m = NULL;
    ASSERT_OK(mp_manager_start(&m, NULL));
    cr_assert(mp_manager_address(m) != NULL);
    return m;
}

static mp_process_t *start_with(mp_target_fn fn, mp_handle_t *h, const char *s)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    if (h) ASSERT_OK(mp_args_add_handle(a, h));
    if (s) ASSERT_OK(mp_args_add_str(a, s));
    mp_process_t *p = start_proc(fn, a);
    mp_args_free(a);
    return p;
}

static void expect_value(mp_dict_t *d, const char *k, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    ASSERT_OK(mp_dict_get(d, k, strlen(k), &v, &n));
    cr_assert_eq(n, strlen(want), "%s: %zu bytes, wanted \"%s\"", k, n, want);
    cr_assert(!memcmp(v, want, n));
    mp_free(v);
}

static void set_str(mp_dict_t *d, const char *k, const char *v)
{
    ASSERT_OK(mp_dict_set(d, k, strlen(k), v, strlen(v)));
}

/* ---- dict ---- */

Test(manager, dict_operations, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "a", "1");
    set_str(d, "b", "two");
    set_str(d, "a", "one, replaced");
    expect_value(d, "a", "one, replaced");
    size_t n = 0;
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, 2);

    void *v = NULL;
    size_t vl = 0;
    ASSERT_RC(mp_dict_get(d, "zz", 2, &v, &vl), MP_ENOTFOUND);
    ASSERT_RC(mp_dict_del(d, "zz", 2), MP_ENOTFOUND);
    ASSERT_RC(mp_dict_pop(d, "zz", 2, &v, &vl), MP_ENOTFOUND);
    ASSERT_OK(mp_dict_pop(d, "b", 1, &v, &vl));
    cr_assert(vl == 3 && !memcmp(v, "two", 3));
    mp_free(v);
    ASSERT_RC(mp_dict_get(d, "b", 1, &v, &vl), MP_ENOTFOUND);
    ASSERT_OK(mp_dict_del(d, "a", 1));
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, 0);

    /* Empty keys and values are bytes like any other. */
    ASSERT_OK(mp_dict_set(d, "", 0, "", 0));
    ASSERT_OK(mp_dict_get(d, "", 0, &v, &vl));
    cr_assert_eq(vl, 0);
    mp_free(v);

    mp_iov_t *keys, *vals;
    set_str(d, "k1", "v1");
    set_str(d, "k2", "v2");
    ASSERT_OK(mp_dict_items(d, &keys, &vals, &n));
    cr_assert_eq(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].len == 2 && !memcmp(keys[i].data, "k1", 2)) {
            cr_assert(vals[i].len == 2 && !memcmp(vals[i].data, "v1", 2));
            seen |= 1;
        }
        if (keys[i].len == 2 && !memcmp(keys[i].data, "k2", 2)) seen |= 2;
    }
    cr_assert_eq(seen, 3);
    mp_iov_free(keys, n);
    mp_iov_free(vals, n);
    ASSERT_OK(mp_dict_clear(d));
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, 0);
    ASSERT_RC(mp_dict_get(d, "k1", 2, &v, &vl), MP_ENOTFOUND);
    set_str(d, "after", "clear");
    expect_value(d, "after", "clear");

    ASSERT_RC(mp_dict_set(d, NULL, 1, "x", 1), MP_EINVAL);
    ASSERT_RC(mp_dict_get(d, "a", 1, NULL, &vl), MP_EINVAL);
    ASSERT_RC(mp_dict_set(d, "a", 1, "x", MP_MANAGER_MAX_ITEM), MP_EMSGSIZE);
    mp_dict_free(d);
    ASSERT_OK(mp_manager_shutdown(m));
    mp_manager_free(m);
}

Test(manager, dict_incr_and_cas, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, "counters", &d));
    int64_t now = 0;
    ASSERT_OK(mp_dict_incr(d, "n", 1, 5, &now));
    cr_assert_eq(now, 5);
    ASSERT_OK(mp_dict_incr(d, "n", 1, -7, &now));
    cr_assert_eq(now, -2);
    ASSERT_OK(mp_dict_incr(d, "n", 1, 0, NULL));
    set_str(d, "s", "abc");
    ASSERT_RC(mp_dict_incr(d, "s", 1, 1, &now), MP_ETYPE);
    ASSERT_OK(mp_dict_incr(d, "big", 3, INT64_MAX, &now));
    ASSERT_RC(mp_dict_incr(d, "big", 3, 1, &now), MP_EINVAL);
    /* The counter's bytes: 8, little-endian. */
    void *v;
    size_t vl;
    ASSERT_OK(mp_dict_get(d, "n", 1, &v, &vl));
    cr_assert_eq(vl, 8);
    cr_assert_eq(((uint8_t *)v)[0], 0xfe);
    mp_free(v);

    ASSERT_RC(mp_dict_cas(d, "s", 1, "xyz", 3, "new", 3), MP_EBUSY);
    expect_value(d, "s", "abc");
    ASSERT_OK(mp_dict_cas(d, "s", 1, "abc", 3, "new", 3));
    expect_value(d, "s", "new");
    ASSERT_RC(mp_dict_cas(d, "missing", 7, "abc", 3, "x", 1), MP_ENOTFOUND);
    ASSERT_OK(mp_dict_cas(d, "missing", 7, NULL, 0, "first", 5));
    ASSERT_RC(mp_dict_cas(d, "missing", 7, NULL, 0, "second", 6), MP_EBUSY);
    expect_value(d, "missing", "first");
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- list ---- */

static void expect_item(mp_list_t *l, long i, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    ASSERT_OK(mp_list_get(l, i, &v, &n));
    cr_assert(n == strlen(want) && !memcmp(v, want, n), "item %ld: \"%.*s\", wanted \"%s\"", i,
              (int)n, (char *)v, want);
    mp_free(v);
}

Test(manager, list_operations, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_list_t *l;
    ASSERT_OK(mp_manager_list(m, NULL, &l));
    const char *items[] = {"a", "bb", "ccc", "dddd"};
    for (int i = 0; i < 4; i++)
        ASSERT_OK(mp_list_append(l, items[i], strlen(items[i])));
    size_t n = 0;
    ASSERT_OK(mp_list_len(l, &n));
    cr_assert_eq(n, 4);
    expect_item(l, 0, "a");
    expect_item(l, -1, "dddd");
    expect_item(l, -4, "a");
    void *v;
    size_t vl;
    ASSERT_RC(mp_list_get(l, 4, &v, &vl), MP_EINVAL);
    ASSERT_RC(mp_list_get(l, -5, &v, &vl), MP_EINVAL);
    ASSERT_OK(mp_list_set(l, -3, "BB", 2));
    expect_item(l, 1, "BB");
    ASSERT_RC(mp_list_set(l, 9, "x", 1), MP_EINVAL);
    ASSERT_OK(mp_list_pop(l, 1, &v, &vl)); /* from the middle */
    cr_assert(vl == 2 && !memcmp(v, "BB", 2));
    mp_free(v);
    ASSERT_OK(mp_list_pop(l, -1, &v, &vl));
    cr_assert(vl == 4 && !memcmp(v, "dddd", 4));
    mp_free(v);
    mp_iov_t *all;
    ASSERT_OK(mp_list_items(l, &all, &n));
    cr_assert_eq(n, 2);
    cr_assert(all[0].len == 1 && !memcmp(all[0].data, "a", 1));
    cr_assert(all[1].len == 3 && !memcmp(all[1].data, "ccc", 3));
    mp_iov_free(all, n);
    ASSERT_OK(mp_list_pop(l, 0, &v, &vl));
    mp_free(v);
    ASSERT_OK(mp_list_pop(l, 0, &v, &vl));
    mp_free(v);
    ASSERT_RC(mp_list_pop(l, 0, &v, &vl), MP_EINVAL);
    ASSERT_RC(mp_list_pop(l, -1, &v, &vl), MP_EINVAL);
    mp_list_free(l);
    mp_manager_free(m);
}

Test(manager, list_grows_and_keeps_order, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_list_t *l;
    ASSERT_OK(mp_manager_list(m, "big", &l));
    char buf[64];
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(buf, sizeof buf, "item-%d-%*s", i, i % 40, "");
        ASSERT_OK(mp_list_append(l, buf, (size_t)n));
    }
    for (int i = 0; i < 1000; i++) {
        void *v;
        size_t vl;
        ASSERT_OK(mp_list_pop(l, 0, &v, &vl));
        int n = snprintf(buf, sizeof buf, "item-%d-%*s", i, i % 40, "");
        cr_assert(vl == (size_t)n && !memcmp(v, buf, vl), "pop %d", i);
        mp_free(v);
    }
    size_t n;
    ASSERT_OK(mp_list_len(l, &n));
    cr_assert_eq(n, 2000);
    int k = snprintf(buf, sizeof buf, "item-%d-%*s", 2999, 2999 % 40, "");
    void *v;
    size_t vl;
    ASSERT_OK(mp_list_get(l, -1, &v, &vl));
    cr_assert(vl == (size_t)k && !memcmp(v, buf, vl));
    mp_free(v);
    mp_list_free(l);
    mp_manager_free(m);
}

/* ---- names ---- */

Test(manager, names_get_or_create, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d1, *d2, *anon;
    ASSERT_OK(mp_manager_dict(m, "shared", &d1));
    ASSERT_OK(mp_manager_dict(m, "shared", &d2));
    ASSERT_OK(mp_manager_dict(m, NULL, &anon));
    set_str(d1, "x", "from d1");
    expect_value(d2, "x", "from d1");
    void *v;
    size_t vl;
    ASSERT_RC(mp_dict_get(anon, "x", 1, &v, &vl), MP_ENOTFOUND);
    mp_list_t *l;
    ASSERT_RC(mp_manager_list(m, "shared", &l), MP_ETYPE);
    ASSERT_RC(mp_manager_dict(m, "", &d2), MP_EINVAL);
    char longname[MP_MANAGER_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    ASSERT_RC(mp_manager_dict(m, longname, &anon), MP_EINVAL);
    mp_dict_free(d1);
    mp_dict_free(d2);
    mp_dict_free(anon);
    mp_manager_free(m);
}

/* ---- children ---- */

static int add_pair(mp_args_t *a)
{
    mp_dict_t *d;
    const char *kv;
    if (mp_args_dict(a, 0, &d) || mp_args_str(a, 1, &kv)) return 10;
    const char *eq = strchr(kv, '=');
    if (!eq) return 11;
    return mp_dict_set(d, kv, (size_t)(eq - kv), eq + 1, strlen(eq + 1)) ? 12 : 0;
}

/* The seed program: two processes add a->22 and b->23. */
Test(manager, children_fill_a_dict, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    mp_process_t *p1 = start_with(add_pair, MP_HANDLE(d), "a=22");
    mp_process_t *p2 = start_with(add_pair, MP_HANDLE(d), "b=23");
    cr_assert_eq(join_code(p1), 0);
    cr_assert_eq(join_code(p2), 0);
    expect_value(d, "a", "22");
    expect_value(d, "b", "23");
    mp_process_free(p1);
    mp_process_free(p2);
    mp_dict_free(d);
    mp_manager_free(m);
}

static int count_and_fill(mp_args_t *a)
{
    mp_dict_t *d;
    const char *tag;
    if (mp_args_dict(a, 0, &d) || mp_args_str(a, 1, &tag)) return 10;
    char k[64], v[128];
    for (int i = 0; i < PER_PROC; i++) {
        if (mp_dict_incr(d, "total", 5, 1, NULL)) return 11;
        int kn = snprintf(k, sizeof k, "%s-%d", tag, i);
        int vn = snprintf(v, sizeof v, "%d-%*s", i, i % 90, "");
        if (mp_dict_set(d, k, (size_t)kn, v, (size_t)vn)) return 12;
    }
    return 0;
}

/* Concurrent writers while the store grows many times under them. */
Test(manager, children_count_while_growing, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    mp_process_t *p[NPROC];
    char tag[8];
    for (int i = 0; i < NPROC; i++) {
        snprintf(tag, sizeof tag, "p%d", i);
        p[i] = start_with(count_and_fill, MP_HANDLE(d), tag);
    }
    for (int i = 0; i < NPROC; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    void *v;
    size_t vl;
    ASSERT_OK(mp_dict_get(d, "total", 5, &v, &vl));
    cr_assert_eq(vl, 8);
    int64_t total = 0;
    for (int i = 7; i >= 0; i--)
        total = total << 8 | ((uint8_t *)v)[i];
    mp_free(v);
    cr_assert_eq(total, NPROC * PER_PROC);
    size_t n;
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, NPROC * PER_PROC + 1);
    char k[64], want[128];
    for (int i = 0; i < NPROC; i++)
        for (int j = 0; j < PER_PROC; j += 97) {
            snprintf(k, sizeof k, "p%d-%d", i, j);
            snprintf(want, sizeof want, "%d-%*s", j, j % 90, "");
            expect_value(d, k, want);
        }
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Values that say what they are: "key:" then one letter repeated, so a
 * reader can tell a torn or misplaced value from a real one. */
static int churn(mp_args_t *a)
{
    mp_dict_t *d;
    int64_t seed;
    if (mp_args_dict(a, 0, &d) || mp_args_int(a, 1, &seed)) return 10;
    uint32_t x = (uint32_t)seed;
    char k[16], v[300];
    for (int i = 0; i < 4000; i++) {
        x = x * 1664525u + 1013904223u;
        int kn = snprintf(k, sizeof k, "c%u", (x >> 8) % 40);
        size_t len = (size_t)kn + 1 + (x >> 16) % 200;
        memcpy(v, k, (size_t)kn);
        v[kn] = ':';
        memset(v + kn + 1, 'a' + (int)((x >> 4) % 26), len - (size_t)kn - 1);
        int rc =
            (x >> 28) == 0 ? mp_dict_del(d, k, (size_t)kn) : mp_dict_set(d, k, (size_t)kn, v, len);
        if (rc && rc != MP_ENOTFOUND) return 11;
    }
    return 0;
}

static bool value_ok(const char *k, size_t kn, const uint8_t *v, size_t n)
{
    if (n <= kn || memcmp(v, k, kn) || v[kn] != ':') return false;
    for (size_t i = kn + 1; i < n; i++)
        if (v[i] != v[kn + 1]) return false;
    return true;
}

/* Readers never see a value torn by a writer, nor another key's value. */
Test(manager, readers_see_whole_values_during_churn, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    mp_process_t *p[2];
    for (int i = 0; i < 2; i++) {
        mp_args_t *a;
        ASSERT_OK(mp_args_create(&a));
        ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(d)));
        ASSERT_OK(mp_args_add_int(a, i + 1));
        p[i] = start_proc(churn, a);
        mp_args_free(a);
    }
    int running = 2, reads = 0;
    while (running) {
        char k[16];
        int kn = snprintf(k, sizeof k, "c%d", reads % 40);
        void *v;
        size_t n;
        int rc = mp_dict_get(d, k, (size_t)kn, &v, &n);
        if (!rc) {
            cr_assert(value_ok(k, (size_t)kn, v, n), "torn value for %s: %.*s", k, (int)n,
                      (char *)v);
            mp_free(v);
        } else {
            ASSERT_RC(rc, MP_ENOTFOUND);
        }
        if (++reads % 256 == 0) {
            running = 0;
            for (int i = 0; i < 2; i++)
                running += mp_process_is_alive(p[i]) == 1;
        }
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    mp_dict_free(d);
    mp_manager_free(m);
}

static int use_list(mp_args_t *a)
{
    mp_list_t *l;
    if (mp_args_list(a, 0, &l)) return 10;
    for (int i = 0; i < 100; i++)
        if (mp_list_append(l, "x", 1)) return 11;
    return 0;
}

Test(manager, children_share_a_list, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_list_t *l;
    ASSERT_OK(mp_manager_list(m, NULL, &l));
    mp_process_t *p1 = start_with(use_list, MP_HANDLE(l), NULL);
    mp_process_t *p2 = start_with(use_list, MP_HANDLE(l), NULL);
    cr_assert_eq(join_code(p1), 0);
    cr_assert_eq(join_code(p2), 0);
    size_t n;
    ASSERT_OK(mp_list_len(l, &n));
    cr_assert_eq(n, 200);
    mp_process_free(p1);
    mp_process_free(p2);
    mp_list_free(l);
    mp_manager_free(m);
}

static int connect_by_address(mp_args_t *a)
{
    const char *addr;
    if (mp_args_str(a, 0, &addr)) return 10;
    mp_manager_t *m;
    mp_dict_t *d;
    if (mp_manager_connect(&m, addr, NULL, 0) || mp_manager_dict(m, "by-name", &d)) return 11;
    int64_t now;
    int rc = mp_dict_incr(d, "visits", 6, 1, &now);
    mp_dict_free(d);
    mp_manager_free(m); /* detaches: the server stays */
    return rc ? 12 : 0;
}

/* A process that got nothing from us finds the manager by its address. */
Test(manager, connect_by_address_locally, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, "by-name", &d));
    for (int i = 0; i < 2; i++) {
        mp_process_t *p = start_with(connect_by_address, NULL, mp_manager_address(m));
        cr_assert_eq(join_code(p), 0);
        mp_process_free(p);
    }
    int64_t now;
    ASSERT_OK(mp_dict_incr(d, "visits", 6, 0, &now));
    cr_assert_eq(now, 2);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- export / import ---- */

Test(manager, proxies_export_and_import, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "k", "v");
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(MP_HANDLE(d), &blob, &len));
    mp_handle_t *h;
    ASSERT_OK(mp_handle_import(blob, len, &h));
    mp_free(blob);
    mp_dict_t *d2 = (mp_dict_t *)h;
    expect_value(d2, "k", "v");
    set_str(d2, "k2", "v2");
    expect_value(d, "k2", "v2");
    mp_dict_free(d2);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- stopping ---- */

Test(manager, shutdown_closes_proxies, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    mp_list_t *l;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    ASSERT_OK(mp_manager_list(m, NULL, &l));
    set_str(d, "k", "v");
    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_RC(mp_manager_shutdown(m), MP_ECLOSED);
    ASSERT_RC(mp_dict_set(d, "k", 1, "w", 1), MP_ECLOSED);
    void *v;
    size_t vl;
    ASSERT_RC(mp_dict_get(d, "k", 1, &v, &vl), MP_ECLOSED);
    ASSERT_RC(mp_list_append(l, "x", 1), MP_ECLOSED);
    mp_dict_t *d2;
    ASSERT_RC(mp_manager_dict(m, NULL, &d2), MP_ECLOSED);
    mp_manager_free(m);
    ASSERT_RC(mp_dict_len(d, &vl), MP_ECLOSED);
    mp_dict_free(d);
    mp_list_free(l);
}

static int expect_closed(mp_args_t *a)
{
    mp_dict_t *d;
    if (mp_args_dict(a, 0, &d)) return 10;
    int rc = mp_dict_set(d, "k", 1, "v", 1);
    return rc == MP_ECLOSED || rc == MP_EOF ? 0 : 11;
}

Test(manager, shutdown_seen_by_other_processes, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "k", "v");
    /* Export first: a child started after the shutdown has no server to
     * ask, and must still get an error rather than hang. */
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(d)));
    mp_process_opts_t o = {.target = expect_closed, .args = a};
    mp_process_t *p;
    ASSERT_OK(mp_process_create(&p, &o));
    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_OK(mp_process_start(p));
    mp_args_free(a);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_dict_free(d);
    mp_manager_free(m);
}

Test(manager, killed_server_gives_eof, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "k", "v");
    /* The test reaches the server process only through the internals. */
    struct {
        mp_handle_t h;
        mp__mclient_t *cl;
        mp_process_t *proc;
    } *mm = (void *)m;
    ASSERT_OK(mp_process_kill(mm->proc));
    ASSERT_OK(mp_process_join(mm->proc, JOIN_MS));
    /* Local calls look at the server's liveness once a millisecond. */
    uint64_t start = mp__os_now_ns();
    int rc;
    while ((rc = mp_dict_set(d, "k", 1, "w", 1)) == 0 && mp__os_now_ns() - start < 10000000000u)
        ;
    ASSERT_RC(rc, MP_EOF);
    ASSERT_RC(mp_dict_set(d, "k", 1, "w", 1), MP_EOF);
    mp_list_t *l;
    ASSERT_RC(mp_manager_list(m, NULL, &l), MP_EOF);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- a process that dies holding a store's locks ---- */

static int die_holding(mp_args_t *a)
{
    mp_dict_t *d;
    if (mp_args_dict(a, 0, &d)) return 10;
    /* Reach the mapped store through the proxy's internals, take every
     * stripe and die in the middle of a (simulated) update. */
    struct {
        mp_handle_t h;
        int kind;
        mp__mclient_t *cl;
        uint64_t oid;
        mp__mutex_t *mu;
        mp__sview_t v;
    } *p = (void *)d;
    if (!p->v.seg) return 11;
    for (unsigned i = 0; i < MP__S_STRIPES; i++)
        if (mp__seg_lock(p->v.seg, i, MP_FOREVER)) return 12;
    /* As if in the middle of relinking stripe 0 (its sequence counter is
     * the stripe's first word): readers must not wait for it forever. */
    atomic_fetch_or((_Atomic uint64_t *)(void *)p->v.st, 1);
    mp__os_exit(0);
    return 13;
}

Test(manager, store_survives_a_holder_that_died, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    char k[16];
    for (int i = 0; i < 32; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        set_str(d, k, k);
    }
    mp_process_t *p = start_with(die_holding, MP_HANDLE(d), NULL);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    for (int i = 0; i < 32; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        expect_value(d, k, k);
    }
    set_str(d, "k2", "v2");
    size_t n;
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, 33);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Rewrites one key forever with whole values (see value_ok): most fit the
 * entry and are written beside the current one; every 8th is too long and
 * moves the key to a new entry. */
static int rewrite_forever(mp_args_t *a)
{
    mp_dict_t *d;
    if (mp_args_dict(a, 0, &d)) return 10;
    /* Made beforehand, so most of the loop's time is spent in the set. */
    static char v[26][1500];
    for (int c = 0; c < 26; c++) {
        memcpy(v[c], "victim:", 7);
        memset(v[c] + 7, 'a' + c, sizeof v[c] - 7);
    }
    for (uint32_t i = 0;; i++) {
        size_t len = i % 8 == 7 ? sizeof v[0] : 600 + i % 400;
        if (mp_dict_set(d, "victim", 6, v[i % 26], len)) return 11;
    }
}

/* A writer killed at any point of a set leaves readers a whole value (the
 * old or the new one), and the next writer a working store. */
Test(manager, writer_killed_mid_set_leaves_whole_values, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "other", "other");
    for (int round = 0; round < 10; round++) {
        set_str(d, "victim", "victim:AAAA");
        mp_process_t *p = start_with(rewrite_forever, MP_HANDLE(d), NULL);
        for (bool rewritten = false; !rewritten;) {
            void *v;
            size_t n;
            ASSERT_OK(mp_dict_get(d, "victim", 6, &v, &n));
            cr_assert(value_ok("victim", 6, v, n), "torn value: %.*s", (int)n, (char *)v);
            rewritten = ((uint8_t *)v)[7] != 'A';
            mp_free(v);
        }
        ASSERT_OK(mp_process_kill(p));
        ASSERT_OK(mp_process_join(p, JOIN_MS));
        mp_process_free(p);
        void *v;
        size_t n;
        ASSERT_OK(mp_dict_get(d, "victim", 6, &v, &n));
        cr_assert(value_ok("victim", 6, v, n), "torn value after a kill: %.*s", (int)n, (char *)v);
        mp_free(v);
        set_str(d, "victim", "victim:BB");
        expect_value(d, "victim", "victim:BB");
        size_t len;
        ASSERT_OK(mp_dict_len(d, &len));
        cr_assert_eq(len, 2);
    }
    expect_value(d, "other", "other");
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- threads ---- */

typedef struct {
    mp_dict_t *d;
    int id;
    int rc;
} thread_arg_t;

static void thread_body(void *arg)
{
    thread_arg_t *t = arg;
    char k[32];
    for (int i = 0; i < 500 && !t->rc; i++) {
        int n = snprintf(k, sizeof k, "t%d-%d", t->id, i);
        t->rc = mp_dict_set(t->d, k, (size_t)n, k, (size_t)n);
        if (!t->rc) t->rc = mp_dict_incr(t->d, "sum", 3, 1, NULL);
    }
}

Test(manager, proxies_are_thread_safe, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    thread_arg_t t[4];
    mp__thread_t *th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thread_arg_t){d, i, 0};
        ASSERT_OK(mp__thread_start(&th[i], thread_body, &t[i]));
    }
    for (int i = 0; i < 4; i++) {
        mp__thread_join(th[i]);
        cr_assert_eq(t[i].rc, 0, "thread %d: %s", i, mp_err_name(t[i].rc));
    }
    size_t n;
    ASSERT_OK(mp_dict_len(d, &n));
    cr_assert_eq(n, 4 * 500 + 1);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- remote (TCP) ---- */

static mp_manager_t *start_tcp(void)
{
    mp_manager_opts_t o = {.address = "tcp://127.0.0.1:0", .authkey = KEY, .keylen = KEYLEN};
    mp_manager_t *m = NULL;
    ASSERT_OK(mp_manager_start(&m, &o));
    cr_assert(!strncmp(mp_manager_address(m), "tcp://127.0.0.1:", 16));
    return m;
}

Test(manager, tcp_needs_a_key, .timeout = TEST_TIMEOUT)
{
    mp_manager_opts_t o = {.address = "tcp://127.0.0.1:0"};
    mp_manager_t *m = NULL;
    ASSERT_RC(mp_manager_start(&m, &o), MP_EPERM);
    ASSERT_RC(mp_manager_serve(&o), MP_EPERM);
}

Test(manager, tcp_remote_clients, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_tcp();
    mp_manager_t *c;
    ASSERT_RC(mp_manager_connect(&c, mp_manager_address(m), "wrong", 5), MP_EAUTH);
    ASSERT_OK(mp_manager_connect(&c, mp_manager_address(m), KEY, KEYLEN));
    mp_dict_t *d1, *d2;
    ASSERT_OK(mp_manager_dict(m, "remote", &d1));
    ASSERT_OK(mp_manager_dict(c, "remote", &d2));
    for (int i = 0; i < 2000; i++) {
        char k[32];
        int n = snprintf(k, sizeof k, "key-%d", i);
        ASSERT_OK(mp_dict_set(d1, k, (size_t)n, k, (size_t)n));
    }
    expect_value(d2, "key-1999", "key-1999");
    int64_t now;
    ASSERT_OK(mp_dict_incr(d2, "c", 1, 3, &now));
    ASSERT_OK(mp_dict_incr(d1, "c", 1, 3, &now));
    cr_assert_eq(now, 6);
    ASSERT_RC(mp_dict_cas(d2, "c", 1, "nope", 4, "x", 1), MP_EBUSY);
    void *v;
    size_t vl;
    ASSERT_RC(mp_dict_get(d2, "none", 4, &v, &vl), MP_ENOTFOUND);
    size_t n;
    ASSERT_OK(mp_dict_len(d2, &n));
    cr_assert_eq(n, 2001);
    mp_iov_t *keys, *vals;
    ASSERT_OK(mp_dict_items(d2, &keys, &vals, &n));
    cr_assert_eq(n, 2001);
    mp_iov_free(keys, n);
    mp_iov_free(vals, n);

    mp_list_t *l;
    ASSERT_OK(mp_manager_list(c, NULL, &l));
    ASSERT_OK(mp_list_append(l, "x", 1));
    ASSERT_OK(mp_list_append(l, "y", 1));
    expect_item(l, -1, "y");
    ASSERT_RC(mp_list_get(l, 2, &v, &vl), MP_EINVAL);
    ASSERT_OK(mp_list_pop(l, 0, &v, &vl));
    mp_free(v);
    mp_iov_t *items;
    ASSERT_OK(mp_list_items(l, &items, &n));
    cr_assert(n == 1 && items[0].len == 1);
    mp_iov_free(items, n);

    ASSERT_OK(mp_manager_shutdown(c));
    ASSERT_RC(mp_dict_set(d2, "k", 1, "v", 1), MP_ECLOSED);
    ASSERT_RC(mp_dict_set(d1, "k", 1, "v", 1), MP_ECLOSED);
    mp_list_free(l);
    mp_dict_free(d1);
    mp_dict_free(d2);
    mp_manager_free(c);
    mp_manager_free(m);
}

static void on_ready(const char *address, void *arg)
{
    mp_conn_t *c = arg;
    mp_conn_send_bytes(c, address, strlen(address));
}

static int serve_target(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    mp_manager_opts_t o = {.address = "tcp://127.0.0.1:0",
                           .authkey = KEY,
                           .keylen = KEYLEN,
                           .ready = on_ready,
                           .ready_arg = c};
    return mp_manager_serve(&o) ? 11 : 0;
}

/* BaseManager.serve_forever in one process, a client elsewhere. */
Test(manager, serve_in_a_process, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_process_t *p = start_with(serve_target, MP_HANDLE(theirs), NULL);
    char addr[128];
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes_into(mine, addr, sizeof addr - 1, &n));
    addr[n] = 0;
    mp_manager_t *m;
    ASSERT_OK(mp_manager_connect(&m, addr, KEY, KEYLEN));
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    set_str(d, "k", "v");
    expect_value(d, "k", "v");
    ASSERT_OK(mp_manager_shutdown(m));
    cr_assert_eq(join_code(p), 0);
    mp_dict_free(d);
    mp_manager_free(m);
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
}

/* ---- hostile peers ---- */

static mp_conn_t *raw_client(mp_manager_t *m)
{
    mp_conn_t *c;
    ASSERT_OK(mp_client_connect(mp_manager_address(m), KEY, KEYLEN, &c));
    return c;
}

static int reply_status(mp_conn_t *c)
{
    void *msg;
    size_t len;
    int rc = mp_conn_recv_bytes(c, &msg, &len);
    if (rc) return rc;
    mp__mrep_t rp;
    rc = mp__mrep_decode(msg, len, &rp);
    if (!rc) rc = rp.status;
    mp__mrep_release(&rp);
    return rc;
}

static void send_hello(mp_conn_t *c)
{
    mp__mreq_t rq = {.op = MP__M_HELLO, .nint = 2, .i = {MP__M_VERSION, 77}};
    uint8_t scratch[MP__M_SCRATCH];
    mp_iov_t iov[1 + 2 * MP__M_MAX_BLOBS];
    size_t n = mp__mreq_encode(&rq, scratch, iov);
    ASSERT_OK(mp_conn_sendv(c, iov, n));
}

/* The server accepts in slices of a second (to notice a stop); a client
 * whose handshake goes past the end of the slice it began in is still
 * served: the handshake has its own deadline of 5 s. Found under valgrind,
 * where handshakes are slow and clients were turned away. */
Test(manager, handshake_longer_than_an_accept_slice, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_tcp();
    unsigned port = 0;
    cr_assert_eq(sscanf(mp_manager_address(m), "tcp://127.0.0.1:%u", &port), 1);
    mp__addr_t a = {.kind = MP__ADDR_TCP, .host = "127.0.0.1", .port = (uint16_t)port};
    mp__stream_t *s;
    bool message;
    ASSERT_OK(mp__stream_connect(&a, JOIN_MS, &s, &message));
    mp_conn_t *c;
    ASSERT_OK(mp__conn_wrap(s, true, true, &c));
    /* The challenge is there: the server is in the handshake. Then 1.5 s
     * (a poll on a pipe nobody writes) before the client's part. */
    cr_assert_eq(mp_conn_poll(c, JOIN_MS), 1);
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_RC(mp_conn_poll(r, 1500), 0);
    mp_conn_free(r);
    mp_conn_free(w);
    mp__auth_t key = {.key = KEY, .keylen = KEYLEN, .digest = MP__DIGEST_SHA256};
    ASSERT_OK(mp__auth_answer(c, &key));
    ASSERT_OK(mp__auth_deliver(c, &key, NULL));
    mp_conn_free(c);
    mp_manager_free(m);
}

Test(manager, server_survives_garbage, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_tcp();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));

    /* Garbage before a greeting: refused, connection closed. */
    mp_conn_t *c = raw_client(m);
    ASSERT_OK(mp_conn_send_bytes(c, "\xff\x01\x02garbage", 10));
    ASSERT_RC(reply_status(c), MP_EPROTO);
    ASSERT_RC(reply_status(c), MP_EOF);
    mp_conn_free(c);

    /* After a greeting: each bad request gets MP_EPROTO, the rest works. */
    c = raw_client(m);
    send_hello(c);
    ASSERT_OK(reply_status(c));
    static const uint8_t bad[][12] = {
        {0x11, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0xff}, /* a blob running past the end */
        {0x99, 0, 0},                               /* an unknown op */
        {0x10, 9, 0},                               /* too many integers */
        {0x14, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7},    /* trailing byte */
    };
    static const size_t badlen[] = {12, 3, 3, 12};
    for (size_t i = 0; i < 4; i++) {
        ASSERT_OK(mp_conn_send_bytes(c, bad[i], badlen[i]));
        ASSERT_RC(reply_status(c), MP_EPROTO);
    }
    /* A call on an object that does not exist. */
    mp__mreq_t rq = {.op = MP__M_D_LEN, .nint = 1, .i = {999}};
    uint8_t scratch[MP__M_SCRATCH];
    mp_iov_t iov[1 + 2 * MP__M_MAX_BLOBS];
    ASSERT_OK(mp_conn_sendv(c, iov, mp__mreq_encode(&rq, scratch, iov)));
    ASSERT_RC(reply_status(c), MP_ENOTFOUND);
    mp_conn_free(c);

    set_str(d, "still", "works");
    expect_value(d, "still", "works");
    mp_dict_free(d);
    mp_manager_free(m);
}

/* A connection to a local manager whose raw stream the test writes. */
static mp_conn_t *raw_local(mp_manager_t *m, mp__stream_t **s, bool *message)
{
    const char *addr = mp_manager_address(m);
    mp__addr_t a = {.kind = !strncmp(addr, "unix:", 5) ? MP__ADDR_UNIX : MP__ADDR_PIPE,
                    .path = addr + 5};
    ASSERT_OK(mp__stream_connect(&a, JOIN_MS, s, message));
    mp_conn_t *c;
    ASSERT_OK(mp__conn_wrap(*s, true, true, &c));
    if (*message) mp__conn_set_message_mode(c);
    return c;
}

Test(manager, server_refuses_oversized_requests, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    mp__stream_t *s;
    bool message;
    mp_conn_t *c = raw_local(m, &s, &message);
    if (!message) {
        /* A length of almost 2 GiB, then nothing: refused from the header. */
        uint8_t hdr[8] = {0x7f, 0xff, 0xff, 0xf0, 1, 2, 3, 4};
        mp_iov_t v = {hdr, sizeof hdr};
        ASSERT_OK(mp__stream_write(s, &v, 1));
        ASSERT_RC(reply_status(c), MP_EOF);
    }
    mp_conn_free(c);
    set_str(d, "still", "works");
    expect_value(d, "still", "works");
    mp_dict_free(d);
    mp_manager_free(m);
}

/* Connects by the manager's address, greets, then sends the first part
 * of a request's frame (a length of 100, 10 bytes of it). */
static int half_request(const char *addr, mp_conn_t **out)
{
    mp__addr_t at = {.kind = !strncmp(addr, "unix:", 5) ? MP__ADDR_UNIX : MP__ADDR_PIPE,
                     .path = addr + 5};
    mp__stream_t *s;
    bool message;
    mp_conn_t *c;
    if (mp__stream_connect(&at, JOIN_MS, &s, &message)) return 11;
    if (mp__conn_wrap(s, true, true, &c)) return 12;
    if (message) mp__conn_set_message_mode(c);
    mp__mreq_t rq = {.op = MP__M_HELLO, .nint = 2, .i = {MP__M_VERSION, 5}};
    uint8_t scratch[MP__M_SCRATCH];
    mp_iov_t iov[1 + 2 * MP__M_MAX_BLOBS];
    void *msg;
    size_t len;
    if (mp_conn_sendv(c, iov, mp__mreq_encode(&rq, scratch, iov)) ||
        mp_conn_recv_bytes(c, &msg, &len))
        return 13;
    mp_free(msg);
    /* A message pipe has no frames to cut: there, half of nothing. */
    uint8_t part[14] = {0, 0, 0, 100, MP__M_D_SET, 1, 2};
    mp_iov_t v = {part, sizeof part};
    if (!message && mp__stream_write(s, &v, 1)) return 14;
    *out = c;
    return 0;
}

static int die_mid_request(mp_args_t *a)
{
    const char *addr;
    mp_conn_t *c;
    if (mp_args_str(a, 0, &addr)) return 10;
    int rc = half_request(addr, &c);
    if (rc) return rc;
    mp__os_exit(0);
    return 15;
}

Test(manager, server_survives_a_client_dying_mid_request, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    for (int i = 0; i < 3; i++) {
        mp_process_t *p = start_with(die_mid_request, NULL, mp_manager_address(m));
        cr_assert_eq(join_code(p), 0);
        mp_process_free(p);
    }
    set_str(d, "still", "works");
    expect_value(d, "still", "works");
    mp_dict_t *d2;
    ASSERT_OK(mp_manager_dict(m, NULL, &d2));
    mp_dict_free(d2);
    mp_dict_free(d);
    mp_manager_free(m);
}

/* ---- locks, events, semaphores and queues, as the server keeps them ----
 * (sync.c and queue.c put the ordinary types around these calls) */

static int hold_remote_lock(mp_args_t *a)
{
    const char *addr;
    mp_conn_t *c;
    if (mp_args_str(a, 0, &addr) || mp_args_conn(a, 1, &c)) return 10;
    mp_manager_t *m;
    mp__remote_t *l;
    if (mp_manager_connect(&m, addr, NULL, 0) || mp__remote_open(m, MP__MK_LOCK, "L", 0, 0, &l))
        return 11;
    if (mp__remote_lock_acquire(l, MP_FOREVER) || mp_conn_send_bytes(c, "held", 4)) return 12;
    /* Dies holding it once the parent has seen it held. */
    char go[4];
    size_t n;
    if (mp_conn_recv_bytes_into(c, go, sizeof go, &n)) return 14;
    mp__os_exit(0);
    return 13;
}

Test(manager, remote_lock_of_a_dead_holder, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp__remote_t *l, *r;
    ASSERT_OK(mp__remote_open(m, MP__MK_LOCK, "L", 0, 0, &l));
    ASSERT_OK(mp__remote_open(m, MP__MK_RLOCK, NULL, 0, 0, &r));
    ASSERT_RC(mp__remote_lock_release(l), MP_EPERM);
    ASSERT_OK(mp__remote_lock_acquire(l, 0));
    ASSERT_RC(mp__remote_lock_acquire(l, 0), MP_EPERM); /* not re-entrant */
    ASSERT_OK(mp__remote_lock_release(l));
    ASSERT_OK(mp__remote_lock_acquire(r, 0));
    ASSERT_OK(mp__remote_lock_acquire(r, 0)); /* re-entrant */
    ASSERT_OK(mp__remote_lock_release(r));
    ASSERT_OK(mp__remote_lock_release(r));
    ASSERT_RC(mp__remote_lock_release(r), MP_EPERM);
    mp__remote_t *wrong;
    ASSERT_RC(mp__remote_open(m, MP__MK_EVENT, "L", 0, 0, &wrong), MP_ETYPE);

    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, mp_manager_address(m)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *p = start_proc(hold_remote_lock, a);
    mp_args_free(a);
    expect_msg(mine, "held");
    ASSERT_RC(mp__remote_lock_acquire(l, 0), MP_ETIMEDOUT);
    ASSERT_RC(mp__remote_lock_acquire(l, 20), MP_ETIMEDOUT);
    ASSERT_OK(mp_conn_send_bytes(mine, "die", 3));
    cr_assert_eq(join_code(p), 0);
    ASSERT_RC(mp__remote_lock_acquire(l, JOIN_MS), MP_EOWNERDEAD);
    ASSERT_OK(mp__remote_lock_release(l));
    ASSERT_OK(mp__remote_lock_acquire(l, 0));
    ASSERT_OK(mp__remote_lock_release(l));
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp__remote_free(l);
    mp__remote_free(r);
    mp_manager_free(m);
}

Test(manager, remote_event_semaphore_queue, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp__remote_t *e, *s, *q;
    ASSERT_OK(mp__remote_open(m, MP__MK_EVENT, NULL, 0, 0, &e));
    ASSERT_OK(mp__remote_open(m, MP__MK_SEMAPHORE, NULL, 1, 2, &s));
    ASSERT_OK(mp__remote_open(m, MP__MK_QUEUE, NULL, 2, 1, &q));
    cr_assert_eq(mp__remote_event_is_set(e), 0);
    ASSERT_RC(mp__remote_event_wait(e, 10), MP_ETIMEDOUT);
    ASSERT_OK(mp__remote_event_set(e));
    ASSERT_OK(mp__remote_event_wait(e, MP_FOREVER));
    cr_assert_eq(mp__remote_event_is_set(e), 1);
    ASSERT_OK(mp__remote_event_clear(e));
    cr_assert_eq(mp__remote_event_is_set(e), 0);

    unsigned v;
    ASSERT_OK(mp__remote_sem_acquire(s, 0));
    ASSERT_RC(mp__remote_sem_acquire(s, 10), MP_ETIMEDOUT);
    ASSERT_OK(mp__remote_sem_release(s));
    ASSERT_OK(mp__remote_sem_release(s));
    ASSERT_RC(mp__remote_sem_release(s), MP_EINVAL); /* bounded at 2 */
    ASSERT_OK(mp__remote_sem_value(s, &v));
    cr_assert_eq(v, 2);
    mp__remote_t *bad;
    ASSERT_RC(mp__remote_open(m, MP__MK_SEMAPHORE, NULL, 3, 2, &bad), MP_EINVAL);

    ASSERT_OK(mp__remote_queue_put(q, "abc", 3, 0));
    ASSERT_OK(mp__remote_queue_put(q, "", 0, 0));
    ASSERT_RC(mp__remote_queue_put(q, "x", 1, 10), MP_EFULL);
    size_t n, max;
    ASSERT_OK(mp__remote_queue_qsize(q, &n, &max));
    cr_assert(n == 2 && max == 2);
    char buf[8];
    ASSERT_RC(mp__remote_queue_get(q, NULL, buf, 2, &n, 0), MP_EMSGSIZE);
    cr_assert_eq(n, 3);
    void *item;
    ASSERT_OK(mp__remote_queue_get(q, &item, NULL, 0, &n, 0));
    cr_assert(n == 3 && !memcmp(item, "abc", 3));
    mp_free(item);
    ASSERT_OK(mp__remote_queue_get(q, NULL, buf, sizeof buf, &n, 0));
    cr_assert_eq(n, 0);
    ASSERT_RC(mp__remote_queue_get(q, NULL, buf, sizeof buf, &n, 10), MP_EEMPTY);
    ASSERT_RC(mp__remote_queue_join(q, 0), MP_ETIMEDOUT);
    ASSERT_OK(mp__remote_queue_task_done(q));
    ASSERT_OK(mp__remote_queue_task_done(q));
    ASSERT_RC(mp__remote_queue_task_done(q), MP_EINVAL);
    ASSERT_OK(mp__remote_queue_join(q, 0));

    /* Stopping wakes a waiter: nothing waits on a manager that is gone. */
    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_RC(mp__remote_queue_get(q, &item, NULL, 0, &n, MP_FOREVER), MP_ECLOSED);
    mp__remote_free(e);
    mp__remote_free(s);
    mp__remote_free(q);
    mp_manager_free(m);
}

static int stall_mid_request(mp_args_t *a)
{
    const char *addr;
    mp_conn_t *ctl, *c;
    if (mp_args_str(a, 0, &addr) || mp_args_conn(a, 1, &ctl)) return 10;
    int rc = half_request(addr, &c);
    if (rc) return rc;
    if (mp_conn_send_bytes(ctl, "stalled", 7)) return 16;
    /* Stays alive, silent, until the test is over. */
    char buf[8];
    size_t len;
    mp_conn_recv_bytes_into(ctl, buf, sizeof buf, &len);
    mp_conn_free(c);
    return 0;
}

/* A client stuck in the middle of a request does not hold up a shutdown. */
Test(manager, shutdown_with_a_stalled_client, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d));
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, mp_manager_address(m)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *p = start_proc(stall_mid_request, a);
    mp_args_free(a);
    expect_msg(mine, "stalled");
    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_RC(mp_dict_set(d, "k", 1, "v", 1), MP_ECLOSED);
    mp_manager_free(m);
    ASSERT_OK(mp_conn_send_bytes(mine, "bye", 3));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_dict_free(d);
}

static int serve_local(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    mp_manager_opts_t o = {.ready = on_ready, .ready_arg = c};
    return mp_manager_serve(&o) ? 11 : 0;
}

/* mp_manager_serve returns after a shutdown even with a client stuck in
 * the middle of a request (it waits a little for it, then leaves it). */
Test(manager, serve_returns_despite_a_stalled_client, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *mine, *theirs, *ctl_mine, *ctl_theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_pipe(&ctl_mine, &ctl_theirs, true));
    mp_process_t *srv = start_with(serve_local, MP_HANDLE(theirs), NULL);
    char addr[300];
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes_into(mine, addr, sizeof addr - 1, &n));
    addr[n] = 0;
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, addr));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(ctl_theirs)));
    mp_process_t *stalled = start_proc(stall_mid_request, a);
    mp_args_free(a);
    expect_msg(ctl_mine, "stalled");
    mp_manager_t *m;
    ASSERT_OK(mp_manager_connect(&m, addr, NULL, 0));
    mp_dict_t *d;
    ASSERT_OK(mp_manager_dict(m, NULL, &d)); /* an idle pooled connection too */
    ASSERT_OK(mp_manager_shutdown(m));
    cr_assert_eq(join_code(srv), 0);
    ASSERT_OK(mp_conn_send_bytes(ctl_mine, "bye", 3));
    cr_assert_eq(join_code(stalled), 0);
    mp_dict_free(d);
    mp_manager_free(m);
    mp_process_free(srv);
    mp_process_free(stalled);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_conn_free(ctl_mine);
    mp_conn_free(ctl_theirs);
}

/* ---- locks, events, semaphores and queues as the ordinary types ---- */

Test(manager, sync_objects_are_the_ordinary_types, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_lock_t *l, *l2;
    mp_rlock_t *r;
    mp_event_t *e;
    mp_semaphore_t *s;
    ASSERT_OK(mp_manager_lock(m, "L", &l));
    ASSERT_OK(mp_manager_lock(m, "L", &l2)); /* the same lock */
    ASSERT_OK(mp_manager_rlock(m, NULL, &r));
    ASSERT_OK(mp_manager_event(m, NULL, &e));
    ASSERT_OK(mp_manager_semaphore(m, "S", 1, &s));
    ASSERT_RC(mp_manager_lock(m, NULL, NULL), MP_EINVAL);
    mp_event_t *wrong;
    ASSERT_RC(mp_manager_event(m, "L", &wrong), MP_ETYPE);

    ASSERT_RC(mp_lock_release(l), MP_EPERM);
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_RC(mp_lock_acquire(l2, 0), MP_EPERM); /* this thread holds it */
    ASSERT_OK(mp_lock_release(l2));
    ASSERT_OK(mp_rlock_acquire(r, 0));
    ASSERT_OK(mp_rlock_acquire(r, MP_FOREVER));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_RC(mp_rlock_release(r), MP_EPERM);

    cr_assert_eq(mp_event_is_set(e), 0);
    ASSERT_RC(mp_event_wait(e, 10), MP_ETIMEDOUT);
    ASSERT_OK(mp_event_set(e));
    cr_assert_eq(mp_event_is_set(e), 1);
    ASSERT_OK(mp_event_wait(e, MP_FOREVER));
    ASSERT_OK(mp_event_clear(e));
    cr_assert_eq(mp_event_is_set(e), 0);

    unsigned v;
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_RC(mp_semaphore_acquire(s, 10), MP_ETIMEDOUT);
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 2);
    ASSERT_RC(mp_semaphore_value(s, NULL), MP_EINVAL);

    /* Type checks hold as for any lock; a condition needs its own kind. */
    ASSERT_RC(mp_event_set((mp_event_t *)l), MP_ETYPE);
    ASSERT_RC(mp_rlock_acquire((mp_rlock_t *)l, 0), MP_ETYPE);
    mp_condition_t *c;
    ASSERT_RC(mp_condition_create(&c, l), MP_ETYPE);
    mp_handle_t *hs[1] = {MP_HANDLE(e)};
    size_t ready[1], nready;
    ASSERT_RC(mp_wait(hs, 1, 0, ready, &nready), MP_ETYPE);

    /* A stopped manager: every call fails at once. */
    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_RC(mp_lock_acquire(l, MP_FOREVER), MP_ECLOSED);
    ASSERT_RC(mp_event_wait(e, MP_FOREVER), MP_ECLOSED);
    ASSERT_RC(mp_semaphore_acquire(s, MP_FOREVER), MP_ECLOSED);
    mp_lock_free(l);
    mp_lock_free(l2);
    mp_rlock_free(r);
    mp_event_free(e);
    mp_semaphore_free(s);
    mp_manager_free(m);
}

Test(manager, queue_is_the_ordinary_type, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_queue_t *q, *same, *unbounded;
    ASSERT_OK(mp_manager_queue(m, "Q", 2, &q));
    ASSERT_OK(mp_manager_queue(m, "Q", 0, &same)); /* keeps maxsize 2 */
    ASSERT_OK(mp_manager_queue(m, NULL, 0, &unbounded));
    cr_assert_eq(mp_queue_empty(q), 1);
    cr_assert_eq(mp_queue_full(q), 0);
    ASSERT_OK(mp_queue_put(q, "abc", 3, 0));
    ASSERT_OK(mp_queue_put(same, "", 0, 0));
    cr_assert_eq(mp_queue_full(q), 1);
    ASSERT_RC(mp_queue_put(q, "x", 1, 0), MP_EFULL);
    ASSERT_RC(mp_queue_put(q, "x", 1, 10), MP_EFULL);
    size_t n;
    ASSERT_OK(mp_queue_qsize(same, &n));
    cr_assert_eq(n, 2);
    char buf[8];
    ASSERT_RC(mp_queue_get_into(q, buf, 2, &n, 0), MP_EMSGSIZE);
    cr_assert_eq(n, 3); /* the item stays */
    ASSERT_OK(mp_queue_get_into(q, buf, sizeof buf, &n, 0));
    cr_assert(n == 3 && !memcmp(buf, "abc", 3));
    void *item;
    ASSERT_OK(mp_queue_get(q, &item, &n, MP_FOREVER));
    cr_assert_eq(n, 0);
    mp_free(item);
    ASSERT_RC(mp_queue_get(q, &item, &n, 0), MP_EEMPTY);
    ASSERT_RC(mp_queue_get(q, &item, &n, 10), MP_EEMPTY);
    ASSERT_RC(mp_queue_get(q, NULL, &n, 0), MP_EINVAL);

    /* mp_wait takes a manager queue: ready when it holds an item. */
    mp_handle_t *hs[1] = {MP_HANDLE(unbounded)};
    size_t ready[1], nready = 9;
    ASSERT_OK(mp_wait(hs, 1, 0, ready, &nready));
    cr_assert_eq(nready, 0);
    ASSERT_OK(mp_wait(hs, 1, 30, ready, &nready));
    cr_assert_eq(nready, 0);
    ASSERT_OK(mp_queue_put(unbounded, "w", 1, 0));
    ASSERT_OK(mp_wait(hs, 1, MP_FOREVER, ready, &nready));
    cr_assert(nready == 1 && ready[0] == 0);
    ASSERT_OK(mp_queue_get(unbounded, &item, &n, 0));
    mp_free(item);

    /* Joinable, as Python's Manager().Queue(). */
    ASSERT_RC(mp_queue_join(q, 0), MP_ETIMEDOUT);
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_OK(mp_queue_task_done(same));
    ASSERT_RC(mp_queue_task_done(q), MP_EINVAL);
    ASSERT_OK(mp_queue_join(q, MP_FOREVER));

    for (int i = 0; i < 100; i++)
        ASSERT_OK(mp_queue_put(unbounded, &i, sizeof i, 0));
    cr_assert_eq(mp_queue_full(unbounded), 0);
    for (int i = 0; i < 100; i++) {
        int got;
        ASSERT_OK(mp_queue_get_into(unbounded, &got, sizeof got, &n, 0));
        cr_assert(n == sizeof got && got == i);
    }

    ASSERT_OK(mp_queue_close(q));
    ASSERT_RC(mp_queue_put(q, "x", 1, 0), MP_ECLOSED);
    ASSERT_RC(mp_queue_get(q, &item, &n, 0), MP_ECLOSED);
    ASSERT_OK(mp_queue_put(same, "y", 1, 0)); /* close is per handle */

    ASSERT_OK(mp_manager_shutdown(m));
    ASSERT_RC(mp_queue_get(unbounded, &item, &n, MP_FOREVER), MP_ECLOSED);
    ASSERT_RC(mp_queue_qsize(same, &n), MP_ECLOSED);
    mp_queue_free(q);
    mp_queue_free(same);
    mp_queue_free(unbounded);
    mp_manager_free(m);
}

/* Uses what it is given: a lock, an event, a semaphore and a queue, either
 * as handles (args) or as export blobs (bytes). */
enum { X_LOCK, X_EVENT, X_SEM, X_QUEUE, X_COUNT };

static int use_objects(mp_handle_t **h)
{
    mp_lock_t *l = (mp_lock_t *)h[X_LOCK];
    mp_event_t *e = (mp_event_t *)h[X_EVENT];
    mp_semaphore_t *s = (mp_semaphore_t *)h[X_SEM];
    mp_queue_t *q = (mp_queue_t *)h[X_QUEUE];
    if (mp_lock_acquire(l, JOIN_MS) || mp_lock_release(l)) return 20;
    if (mp_event_wait(e, JOIN_MS)) return 21;
    void *item;
    size_t n;
    if (mp_queue_get(q, &item, &n, JOIN_MS)) return 23;
    if (mp_semaphore_release(s)) return 22; /* the parent's item is taken */
    int rc = mp_queue_task_done(q) || mp_queue_put(q, item, n, 0) ? 24 : 0;
    mp_free(item);
    return rc;
}

static int objects_in_args(mp_args_t *a)
{
    mp_handle_t *h[X_COUNT];
    if (mp_args_lock(a, X_LOCK, (mp_lock_t **)&h[X_LOCK]) ||
        mp_args_event(a, X_EVENT, (mp_event_t **)&h[X_EVENT]) ||
        mp_args_semaphore(a, X_SEM, (mp_semaphore_t **)&h[X_SEM]) ||
        mp_args_queue(a, X_QUEUE, (mp_queue_t **)&h[X_QUEUE]))
        return 10;
    return use_objects(h);
}

static int objects_by_export(mp_args_t *a)
{
    mp_handle_t *h[X_COUNT] = {0};
    int rc = 0;
    for (size_t i = 0; i < X_COUNT && !rc; i++) {
        const void *p;
        size_t n;
        rc = mp_args_bytes(a, i, &p, &n) || mp_handle_import(p, n, &h[i]) ? 10 : 0;
    }
    if (!rc) rc = use_objects(h);
    mp_lock_free((mp_lock_t *)h[X_LOCK]);
    mp_event_free((mp_event_t *)h[X_EVENT]);
    mp_semaphore_free((mp_semaphore_t *)h[X_SEM]);
    mp_queue_free((mp_queue_t *)h[X_QUEUE]);
    return rc;
}

static void objects_travel(bool by_export)
{
    mp_manager_t *m = start_manager();
    mp_lock_t *l;
    mp_event_t *e;
    mp_semaphore_t *s;
    mp_queue_t *q;
    ASSERT_OK(mp_manager_lock(m, NULL, &l));
    ASSERT_OK(mp_manager_event(m, NULL, &e));
    ASSERT_OK(mp_manager_semaphore(m, NULL, 0, &s));
    ASSERT_OK(mp_manager_queue(m, NULL, 0, &q));
    mp_handle_t *h[X_COUNT] = {MP_HANDLE(l), MP_HANDLE(e), MP_HANDLE(s), MP_HANDLE(q)};
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    for (size_t i = 0; i < X_COUNT; i++) {
        if (!by_export) {
            ASSERT_OK(mp_args_add_handle(a, h[i]));
            continue;
        }
        void *blob;
        size_t len;
        ASSERT_OK(mp_handle_export(h[i], &blob, &len));
        ASSERT_OK(mp_args_add_bytes(a, blob, len));
        mp_free(blob);
    }
    ASSERT_OK(mp_lock_acquire(l, 0));
    mp_process_t *p = start_proc(by_export ? objects_by_export : objects_in_args, a);
    mp_args_free(a);
    ASSERT_OK(mp_queue_put(q, "ping", 4, 0));
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_event_set(e));
    ASSERT_OK(mp_semaphore_acquire(s, JOIN_MS));
    void *item;
    size_t n;
    ASSERT_OK(mp_queue_get(q, &item, &n, JOIN_MS)); /* the child's echo */
    cr_assert(n == 4 && !memcmp(item, "ping", 4));
    mp_free(item);
    ASSERT_OK(mp_queue_task_done(q));
    ASSERT_OK(mp_queue_join(q, JOIN_MS)); /* the child's task_done too */
    int code = join_code(p);
    cr_assert_eq(code, 0, "child exit %d", code);
    mp_process_free(p);
    mp_lock_free(l);
    mp_event_free(e);
    mp_semaphore_free(s);
    mp_queue_free(q);
    mp_manager_free(m);
}

Test(manager, sync_objects_and_queue_in_args, .timeout = TEST_TIMEOUT)
{
    objects_travel(false);
}

Test(manager, sync_objects_and_queue_by_export, .timeout = TEST_TIMEOUT)
{
    objects_travel(true);
}

static int hold_public_lock(mp_args_t *a)
{
    mp_lock_t *l;
    mp_conn_t *c;
    if (mp_args_lock(a, 0, &l) || mp_args_conn(a, 1, &c)) return 10;
    if (mp_lock_acquire(l, JOIN_MS) || mp_conn_send_bytes(c, "held", 4)) return 11;
    char go[4];
    size_t n;
    mp_conn_recv_bytes_into(c, go, sizeof go, &n); /* killed while waiting */
    return 12;
}

Test(manager, lock_of_a_killed_holder, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_lock_t *l;
    ASSERT_OK(mp_manager_lock(m, NULL, &l));
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(l)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *p = start_proc(hold_public_lock, a);
    mp_args_free(a);
    expect_msg(mine, "held");
    ASSERT_RC(mp_lock_acquire(l, 0), MP_ETIMEDOUT);
    ASSERT_OK(mp_process_kill(p));
    ASSERT_OK(mp_process_join(p, JOIN_MS));
    ASSERT_RC(mp_lock_acquire(l, JOIN_MS), MP_EOWNERDEAD);
    ASSERT_OK(mp_lock_release(l)); /* it was ours */
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_lock_free(l);
    mp_manager_free(m);
}

/* Freeing a proxy releases what the freeing thread holds through it, at
 * every depth, as freeing an ordinary lock its holder holds does: the next
 * owner gets the lock plainly (no MP_EOWNERDEAD). A proxy the thread did
 * not acquire through releases nothing when freed. */
static int try_rlock(mp_args_t *a)
{
    mp_rlock_t *r;
    if (mp_args_rlock(a, 0, &r)) return 10;
    int rc = mp_rlock_acquire(r, 0);
    if (rc == MP_ETIMEDOUT) return 20;
    if (rc) return 21;
    return mp_rlock_release(r) ? 22 : 0;
}

static int rlock_try_code(mp_rlock_t *r)
{
    mp_process_t *p = start_with(try_rlock, MP_HANDLE(r), NULL);
    int code = join_code(p);
    mp_process_free(p);
    return code;
}

Test(manager, freeing_a_held_lock_proxy_releases_it, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_lock_t *l1, *l2, *l3;
    ASSERT_OK(mp_manager_lock(m, "L", &l1));
    ASSERT_OK(mp_manager_lock(m, "L", &l2));
    ASSERT_OK(mp_lock_acquire(l1, 0));
    ASSERT_RC(mp_lock_acquire(l2, 0), MP_EPERM); /* held by this thread */
    mp_lock_free(l1);
    ASSERT_OK(mp_lock_acquire(l2, 0));
    ASSERT_OK(mp_manager_lock(m, "L", &l3));
    mp_lock_free(l3); /* never acquired through: l2's hold stays */
    ASSERT_RC(mp_lock_acquire(l2, 0), MP_EPERM);
    ASSERT_OK(mp_lock_release(l2));
    mp_lock_free(l2);

    mp_rlock_t *r1, *r2;
    ASSERT_OK(mp_manager_rlock(m, "R", &r1));
    ASSERT_OK(mp_manager_rlock(m, "R", &r2));
    ASSERT_OK(mp_rlock_acquire(r1, 0));
    ASSERT_OK(mp_rlock_acquire(r1, 0));
    cr_assert_eq(rlock_try_code(r2), 20, "held twice: another process must not get it");
    mp_rlock_free(r1);
    cr_assert_eq(rlock_try_code(r2), 0, "freed by its holder: released at every depth");
    ASSERT_OK(mp_rlock_acquire(r2, 0)); /* plainly: not MP_EOWNERDEAD */
    ASSERT_OK(mp_rlock_release(r2));
    mp_rlock_free(r2);
    mp_manager_free(m);
}

/* A process given only the address and key finds the objects by name. */
static int by_name(mp_args_t *a)
{
    const char *addr;
    if (mp_args_str(a, 0, &addr)) return 10;
    mp_manager_t *m;
    if (mp_manager_connect(&m, addr, KEY, KEYLEN)) return 11;
    mp_queue_t *q;
    mp_semaphore_t *s;
    int rc = mp_manager_queue(m, "jobs", 0, &q) || mp_manager_semaphore(m, "done", 0, &s) ? 12 : 0;
    for (int i = 0; !rc && i < 10; i++) {
        int v;
        size_t n;
        rc = mp_queue_get_into(q, &v, sizeof v, &n, JOIN_MS) || n != sizeof v ? 13 : 0;
        if (!rc && v != i) rc = 14;
    }
    if (!rc) rc = mp_semaphore_release(s) ? 15 : 0;
    mp_queue_free(q);
    mp_semaphore_free(s);
    mp_manager_free(m);
    return rc;
}

Test(manager, tcp_objects_by_name, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_tcp();
    mp_queue_t *q;
    mp_semaphore_t *s;
    ASSERT_OK(mp_manager_queue(m, "jobs", 0, &q));
    ASSERT_OK(mp_manager_semaphore(m, "done", 0, &s));
    mp_process_t *p = start_with(by_name, NULL, mp_manager_address(m));
    for (int i = 0; i < 10; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    ASSERT_OK(mp_semaphore_acquire(s, JOIN_MS));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_manager_t *bad;
    ASSERT_RC(mp_manager_connect(&bad, mp_manager_address(m), "wrong", 5), MP_EAUTH);
    mp_queue_free(q);
    mp_semaphore_free(s);
    mp_manager_free(m);
}

/* Pool workers: a queue in the initializer's args, another in a task's
 * input as an export blob. */
static mp_queue_t *worker_queue;

static int keep_queue(mp_args_t *a)
{
    return mp_args_queue(a, 0, &worker_queue);
}

static int put_to_both(const void *in, size_t inlen, mp_buf_t *out)
{
    mp_handle_t *h;
    if (mp_handle_import(in, inlen, &h)) return mp_task_fail(out, "import");
    mp_queue_t *q = (mp_queue_t *)h;
    int rc = mp_queue_put(q, "task", 4, 0) || mp_queue_put(worker_queue, "init", 4, 0);
    mp_queue_free(q);
    return rc ? mp_task_fail(out, "put") : 0;
}

Test(manager, queues_reach_pool_workers, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    mp_queue_t *qi, *qt;
    ASSERT_OK(mp_manager_queue(m, NULL, 0, &qi));
    ASSERT_OK(mp_manager_queue(m, NULL, 0, &qt));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(qi)));
    mp_pool_opts_t o = {.processes = 2, .initializer = keep_queue, .initargs = a};
    mp_pool_t *pool;
    ASSERT_OK(mp_pool_create(&pool, &o));
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(MP_HANDLE(qt), &blob, &len));
    for (int i = 0; i < 4; i++)
        ASSERT_OK(mp_pool_apply(pool, put_to_both, blob, len, NULL, NULL));
    mp_free(blob);
    size_t n;
    ASSERT_OK(mp_queue_qsize(qi, &n));
    cr_assert_eq(n, 4);
    ASSERT_OK(mp_queue_qsize(qt, &n));
    cr_assert_eq(n, 4);
    ASSERT_OK(mp_pool_close(pool));
    ASSERT_OK(mp_pool_join(pool, JOIN_MS));
    mp_pool_free(pool);
    mp_args_free(a);
    mp_queue_free(qi);
    mp_queue_free(qt);
    mp_manager_free(m);
}

typedef struct {
    mp_queue_t *q;
    mp_semaphore_t *waiting;
    int rc;
} blocked_get_t;

static void get_forever(void *arg)
{
    blocked_get_t *b = arg;
    void *item;
    size_t n;
    b->rc = mp_semaphore_release(b->waiting);
    if (!b->rc) b->rc = mp_queue_get(b->q, &item, &n, MP_FOREVER);
    if (!b->rc) mp_free(item);
}

/* A server killed under a waiting get, a lock and a queue: MP_EOF, no hang. */
Test(manager, killed_server_ends_waits, .timeout = TEST_TIMEOUT)
{
    mp_manager_t *m = start_manager();
    blocked_get_t b = {0};
    mp_lock_t *l;
    mp_semaphore_t *waiting;
    ASSERT_OK(mp_manager_queue(m, NULL, 0, &b.q));
    ASSERT_OK(mp_manager_lock(m, NULL, &l));
    ASSERT_OK(mp_semaphore_create(&waiting, 0, 0));
    b.waiting = waiting;
    mp__thread_t *t;
    ASSERT_OK(mp__thread_start(&t, get_forever, &b));
    ASSERT_OK(mp_semaphore_acquire(waiting, JOIN_MS));
    struct {
        mp_handle_t h;
        mp__mclient_t *cl;
        mp_process_t *proc;
    } *mm = (void *)m;
    ASSERT_OK(mp_process_kill(mm->proc));
    ASSERT_OK(mp_process_join(mm->proc, JOIN_MS));
    mp__thread_join(t);
    /* The get may not have reached the server before it died: either way
     * it ends with the server's death. */
    ASSERT_RC(b.rc, MP_EOF);
    ASSERT_RC(mp_lock_acquire(l, MP_FOREVER), MP_EOF);
    ASSERT_RC(mp_queue_put(b.q, "x", 1, MP_FOREVER), MP_EOF);
    mp_queue_t *q2;
    ASSERT_RC(mp_manager_queue(m, NULL, 0, &q2), MP_EOF);
    mp_semaphore_free(waiting);
    mp_lock_free(l);
    mp_queue_free(b.q);
    mp_manager_free(m);
}
