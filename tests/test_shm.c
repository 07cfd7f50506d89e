/* Named shared memory: create, open by name, both directions, lifetime. */
#include <stdio.h>
#include <string.h>

#include "helpers.h"

static int shm_by_name(mp_args_t *a)
{
    const char *name;
    if (mp_args_str(a, 0, &name)) return 10;
    mp_shm_t *s;
    if (mp_shm_open(&s, name)) return 11;
    char *p = mp_shm_ptr(s);
    if (mp_shm_size(s) != 8192 || strcmp(p, "from parent")) return 12;
    strcpy(p + 4096, "from child");
    mp_shm_free(s);
    return 0;
}

static int shm_by_handle(mp_args_t *a)
{
    mp_shm_t *s;
    if (mp_args_shm(a, 0, &s)) return 10;
    char *p = mp_shm_ptr(s);
    if (strcmp(p, "from parent") || strcmp(mp_shm_name(s), "") == 0) return 11;
    strcpy(p + 100, "handle child");
    return 0;
}

Test(shm, visible_both_ways, .timeout = TEST_TIMEOUT)
{
    mp_shm_t *s;
    ASSERT_OK(mp_shm_create(&s, NULL, 8192));
    const char *name = mp_shm_name(s);
    cr_assert(name && strlen(name) > 0 && strlen(name) <= MP_SHM_NAME_MAX);
    char *p = mp_shm_ptr(s);
    cr_assert_eq((uintptr_t)p % 4096, 0, "not page-aligned");
    cr_assert_eq(mp_shm_size(s), 8192);
    for (int i = 0; i < 8192; i++)
        cr_assert_eq(p[i], 0);
    strcpy(p, "from parent");

    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, name));
    mp_process_t *c = start_proc(shm_by_name, a);
    mp_args_free(a);
    cr_assert_eq(join_code(c), 0);
    mp_process_free(c);
    cr_assert_str_eq(p + 4096, "from child");

    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(s)));
    c = start_proc(shm_by_handle, a);
    mp_args_free(a);
    cr_assert_eq(join_code(c), 0);
    mp_process_free(c);
    cr_assert_str_eq(p + 100, "handle child");
    mp_shm_free(s);
}

static void unique_name(char *buf, size_t cap, const char *what)
{
    snprintf(buf, cap, "t%s%lld", what, (long long)mp_getpid());
}

Test(shm, names_exclusive_missing_and_unlink, .timeout = TEST_TIMEOUT)
{
    char name[40];
    unique_name(name, sizeof name, "x");
    mp_shm_t *s, *o, *o2;
    ASSERT_RC(mp_shm_open(&o, name), MP_ENOTFOUND);
    ASSERT_OK(mp_shm_create(&s, name, 100));
    cr_assert_str_eq(mp_shm_name(s), name);
    cr_assert_eq(mp_shm_size(s), 100);
    ASSERT_RC(mp_shm_create(&o, name, 100), MP_EEXIST);
    ASSERT_OK(mp_shm_open(&o, name));
    ASSERT_OK(mp_shm_open(&o2, name));
    cr_assert_eq(mp_shm_size(o), 100);
    strcpy(mp_shm_ptr(s), "same");
    cr_assert_str_eq(mp_shm_ptr(o), "same");
    ASSERT_OK(mp_shm_unlink(o));
    ASSERT_RC(mp_shm_unlink(s), MP_ENOTFOUND);
    ASSERT_RC(mp_shm_open(&o2, name), MP_ENOTFOUND);
    cr_assert_str_eq(mp_shm_ptr(s), "same"); /* holders keep their mappings */
    /* The name is free again: a new segment, not the old one. */
    mp_shm_t *n;
    ASSERT_OK(mp_shm_create(&n, name, 50));
    cr_assert_eq(((char *)mp_shm_ptr(n))[0], 0);
    mp_shm_free(n);
    mp_shm_free(o);
    mp_shm_free(s);
    /* The last holder's free removed the name. */
    ASSERT_RC(mp_shm_open(&o, name), MP_ENOTFOUND);
}

Test(shm, bad_arguments, .timeout = TEST_TIMEOUT)
{
    mp_shm_t *s;
    ASSERT_RC(mp_shm_create(&s, NULL, 0), MP_EINVAL);
    ASSERT_RC(mp_shm_create(&s, "", 10), MP_EINVAL);
    ASSERT_RC(mp_shm_create(&s, "a/b", 10), MP_EINVAL);
    ASSERT_RC(mp_shm_create(&s, "../x", 10), MP_EINVAL);
    ASSERT_RC(mp_shm_create(&s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 10), MP_EINVAL);
    ASSERT_RC(mp_shm_create(NULL, NULL, 10), MP_EINVAL);
    ASSERT_RC(mp_shm_open(&s, "no such/name"), MP_EINVAL);
    ASSERT_RC(mp_shm_open(&s, NULL), MP_EINVAL);
    ASSERT_RC(mp_shm_unlink(NULL), MP_EINVAL);
    cr_assert_null(mp_shm_ptr(NULL));
    cr_assert_eq(mp_shm_size(NULL), 0);
}

/* A child creates a named segment and is killed holding it: the name must
 * not stay behind for good; the next create of that name takes it over. */
static int create_and_block(mp_args_t *a)
{
    const char *name;
    mp_conn_t *c;
    mp_event_t *never;
    if (mp_args_str(a, 0, &name) || mp_args_conn(a, 1, &c) || mp_args_event(a, 2, &never))
        return 10;
    mp_shm_t *s;
    if (mp_shm_create(&s, name, 64) || mp_conn_send_bytes(c, "made", 4)) return 11;
    mp_event_wait(never, MP_FOREVER);
    return 12;
}

Test(shm, name_of_killed_creator_is_reclaimed, .timeout = TEST_TIMEOUT)
{
    char name[40];
    unique_name(name, sizeof name, "k");
    mp_conn_t *mine, *theirs;
    mp_event_t *never;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_event_create(&never));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, name));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(never)));
    mp_process_t *p = start_proc(create_and_block, a);
    mp_args_free(a);
    expect_msg(mine, "made");
    ASSERT_OK(mp_process_kill(p));
    cr_assert_eq(join_code(p), -9);
    mp_process_free(p);
    mp_shm_t *s;
    ASSERT_OK(mp_shm_create(&s, name, 64));
    mp_shm_free(s);
    ASSERT_RC(mp_shm_open(&s, name), MP_ENOTFOUND);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_event_free(never);
}
