/* The seed Manager program in C. Python's original:
 *
 *   def f(d, key, value):
 *       d[key] = value
 *
 *   with Manager() as manager:
 *       d = manager.dict()
 *       p1 = Process(target=f, args=(d, "a", 22))
 *       p2 = Process(target=f, args=(d, "b", 23))
 *       p1.start(); p2.start(); p1.join(); p2.join()
 *       print(d["a"], d["b"])
 *
 * Keys and values are bytes: the numbers travel as text here. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int f(mp_args_t *args)
{
    mp_dict_t *d;
    const char *key, *value;
    if (mp_args_dict(args, 0, &d) || mp_args_str(args, 1, &key) || mp_args_str(args, 2, &value))
        return 1;
    return mp_dict_set(d, key, strlen(key), value, strlen(value)) ? 1 : 0;
}

static mp_process_t *start(mp_dict_t *d, const char *key, const char *value)
{
    mp_args_t *args;
    mp_process_t *p = NULL;
    mp_args_create(&args);
    mp_args_add_handle(args, MP_HANDLE(d));
    mp_args_add_str(args, key);
    mp_args_add_str(args, value);
    mp_process_opts_t opts = {.target = f, .args = args};
    if (mp_process_create(&p, &opts) || mp_process_start(p)) {
        fprintf(stderr, "cannot start a process: %s\n", mp_last_error_detail());
        p = NULL;
    }
    mp_args_free(args);
    return p;
}

static void print_value(mp_dict_t *d, const char *key)
{
    void *v;
    size_t n;
    if (mp_dict_get(d, key, strlen(key), &v, &n)) {
        printf("%s: %s\n", key, mp_last_error_detail());
        return;
    }
    printf("%s -> %.*s\n", key, (int)n, (const char *)v);
    mp_free(v);
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_manager_t *manager;
    mp_dict_t *d;
    if (mp_manager_start(&manager, NULL) || mp_manager_dict(manager, NULL, &d)) {
        fprintf(stderr, "manager: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_process_t *p1 = start(d, "a", "22");
    mp_process_t *p2 = start(d, "b", "23");
    if (!p1 || !p2) return 1;
    int c1 = -1, c2 = -1;
    mp_process_join(p1, MP_FOREVER);
    mp_process_join(p2, MP_FOREVER);
    mp_process_exitcode(p1, &c1);
    mp_process_exitcode(p2, &c2);
    print_value(d, "a");
    print_value(d, "b");
    mp_process_free(p1);
    mp_process_free(p2);
    mp_dict_free(d);
    mp_manager_free(manager);
    return c1 || c2;
}
