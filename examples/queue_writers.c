/* The seed Queue program with two writers. Python's original:
 *
 *   def writer(q, urls):
 *       for url in urls:
 *           q.put(url)
 *
 *   def reader(q, n):
 *       for _ in range(n):
 *           print(q.get())
 *
 *   q = Queue()
 *   w1 = Process(target=writer, args=(q, ["url1", "url2", "url3"]))
 *   w2 = Process(target=writer, args=(q, ["url4", "url5"]))
 *   r = Process(target=reader, args=(q, 5))
 *   for p in (w1, w2, r): p.start()
 *   for p in (w1, w2, r): p.join()
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int writer(mp_args_t *args)
{
    mp_queue_t *q;
    if (mp_args_queue(args, 0, &q)) return 1;
    for (size_t i = 1; i < mp_args_count(args); i++) {
        const char *url;
        if (mp_args_str(args, i, &url) || mp_queue_put(q, url, strlen(url), MP_FOREVER)) return 1;
    }
    return 0;
}

static int reader(mp_args_t *args)
{
    mp_queue_t *q;
    int64_t n;
    if (mp_args_queue(args, 0, &q) || mp_args_int(args, 1, &n)) return 1;
    for (int64_t i = 0; i < n; i++) {
        char url[64];
        size_t len;
        if (mp_queue_get_into(q, url, sizeof url - 1, &len, MP_FOREVER)) return 1;
        url[len] = 0;
        printf("%s\n", url);
    }
    return 0;
}

static mp_process_t *start(mp_target_fn target, mp_args_t *args)
{
    mp_process_opts_t opts = {.target = target, .args = args};
    mp_process_t *p = NULL;
    if (mp_process_create(&p, &opts) || mp_process_start(p)) {
        fprintf(stderr, "cannot start a process: %s\n", mp_last_error_detail());
        return NULL;
    }
    return p;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_queue_t *q;
    if (mp_queue_create(&q, NULL)) {
        fprintf(stderr, "mp_queue_create: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_args_t *a1, *a2, *ar;
    mp_args_create(&a1);
    mp_args_add_handle(a1, MP_HANDLE(q));
    mp_args_add_str(a1, "url1");
    mp_args_add_str(a1, "url2");
    mp_args_add_str(a1, "url3");
    mp_args_create(&a2);
    mp_args_add_handle(a2, MP_HANDLE(q));
    mp_args_add_str(a2, "url4");
    mp_args_add_str(a2, "url5");
    mp_args_create(&ar);
    mp_args_add_handle(ar, MP_HANDLE(q));
    mp_args_add_int(ar, 5);

    mp_process_t *p[3] = {start(writer, a1), start(writer, a2), start(reader, ar)};
    int failed = 0;
    for (int i = 0; i < 3; i++) {
        int code = -1;
        if (!p[i]) return 1;
        mp_process_join(p[i], MP_FOREVER);
        mp_process_exitcode(p[i], &code);
        failed |= code != 0;
        mp_process_free(p[i]);
    }
    mp_args_free(a1);
    mp_args_free(a2);
    mp_args_free(ar);
    mp_queue_free(q);
    return failed;
}
