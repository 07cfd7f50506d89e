/* Writes seed inputs for fuzz_launch and fuzz_export made by the library
 * itself, so they follow the real formats: a launch record for each kind
 * of argument and an export blob for each exportable type.
 * Usage: make_seeds <corpus dir> (writes <dir>/launch/ and <dir>/export/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handle.h"
#include "launch.h"

static int write_seed(const char *dir, const char *sub, const char *name, uint8_t ctl,
                      bool with_ctl, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    if (with_ctl) fputc(ctl, f);
    fwrite(p, 1, n, f);
    return fclose(f) != 0;
}

static int launch_seed(const char *dir, const char *name, mp_args_t *a)
{
    mp__launch_t l = {.name = "Process-1",
                      .parent = 4242,
                      .daemon = true,
                      .module = "/usr/bin/example",
                      .offset = 4096,
                      .ident = 77,
                      .args = a};
    mp__wbuf_t w = {0};
    mp__ostab_t t = {0};
    int rc = mp__launch_pack(&l, &w, &t);
    if (!rc) rc = write_seed(dir, "launch", name, (uint8_t)(t.n > 3 ? 3 : t.n), true, w.p, w.len);
    mp__wbuf_release(&w);
    mp__ostab_release(&t);
    mp_args_free(a);
    return rc;
}

static int export_seed(const char *dir, const char *name, mp_handle_t *h)
{
    void *blob;
    size_t len;
    int rc = mp_handle_export(h, &blob, &len);
    if (!rc) rc = write_seed(dir, "export", name, 0, false, blob, len);
    mp_free(blob);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int bad = 0;
    mp_args_t *a;

    mp_args_create(&a);
    bad |= launch_seed(dir, "empty", a);
    mp_args_create(&a);
    mp_args_add_int(a, -5);
    mp_args_add_str(a, "text");
    mp_args_add_bytes(a, "\0\1\2\3", 4);
    bad |= launch_seed(dir, "values", a);
    mp_conn_t *c1, *c2;
    mp_pipe(&c1, &c2, true);
    mp_args_create(&a);
    mp_args_add_handle(a, MP_HANDLE(c1));
    mp_args_add_int(a, 1);
    bad |= launch_seed(dir, "conn", a);

    mp_lock_t *l;
    mp_rlock_t *rl;
    mp_semaphore_t *s;
    mp_event_t *e;
    mp_condition_t *cv;
    mp_barrier_t *b;
    mp_shm_t *sp, *sn;
    mp_value_t *v;
    mp_lock_create(&l);
    mp_rlock_create(&rl);
    mp_semaphore_create(&s, 2, 5);
    mp_event_create(&e);
    mp_condition_create(&cv, NULL);
    mp_barrier_create(&b, 3);
    mp_shm_create(&sp, NULL, 4096);
    mp_shm_create(&sn, "fuzzseed", 4096);
    mp_value_create(&v, 16);
    mp_args_create(&a);
    mp_args_add_handle(a, MP_HANDLE(l));
    bad |= launch_seed(dir, "lock", a);
    mp_args_create(&a);
    mp_args_add_handle(a, MP_HANDLE(sp));
    mp_args_add_handle(a, MP_HANDLE(v));
    bad |= launch_seed(dir, "shm_value", a);

    bad |= export_seed(dir, "lock", MP_HANDLE(l));
    bad |= export_seed(dir, "rlock", MP_HANDLE(rl));
    bad |= export_seed(dir, "semaphore", MP_HANDLE(s));
    bad |= export_seed(dir, "event", MP_HANDLE(e));
    bad |= export_seed(dir, "condition", MP_HANDLE(cv));
    bad |= export_seed(dir, "barrier", MP_HANDLE(b));
    bad |= export_seed(dir, "shm_private", MP_HANDLE(sp));
    bad |= export_seed(dir, "shm_named", MP_HANDLE(sn));
    bad |= export_seed(dir, "value", MP_HANDLE(v));
    mp_shm_unlink(sn);
    mp_shm_free(sn);
    mp_shm_free(sp);
    mp_value_free(v);
    mp_barrier_free(b);
    mp_condition_free(cv);
    mp_event_free(e);
    mp_semaphore_free(s);
    mp_rlock_free(rl);
    mp_lock_free(l);
    mp_conn_free(c1);
    mp_conn_free(c2);
    if (bad)
        fprintf(stderr, "make_seeds: some seeds were not written: %s\n", mp_last_error_detail());
    return bad;
}
