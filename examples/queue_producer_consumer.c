/* The seed producer/consumer Queue program. Python's original:
 *
 *   def producer(q):
 *       q.put('a')
 *
 *   def consumer(q):
 *       print(q.get())
 *
 *   q = Queue()
 *   p = Process(target=producer, args=(q,))
 *   c = Process(target=consumer, args=(q,))
 *   p.start(); c.start(); p.join(); c.join()
 */
#include <stdio.h>

#include <mproc.h>

static int producer(mp_args_t *args)
{
    mp_queue_t *q;
    if (mp_args_queue(args, 0, &q)) return 1;
    return mp_queue_put(q, "a", 1, MP_FOREVER) ? 1 : 0;
}

static int consumer(mp_args_t *args)
{
    mp_queue_t *q;
    if (mp_args_queue(args, 0, &q)) return 1;
    char item[16];
    size_t len;
    if (mp_queue_get_into(q, item, sizeof item - 1, &len, MP_FOREVER)) return 1;
    item[len] = 0;
    printf("%s\n", item);
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
    mp_args_t *args;
    mp_args_create(&args);
    mp_args_add_handle(args, MP_HANDLE(q));
    mp_process_t *p = start(producer, args);
    mp_process_t *c = start(consumer, args);
    if (!p || !c) return 1;
    int cp = -1, cc = -1;
    mp_process_join(p, MP_FOREVER);
    mp_process_join(c, MP_FOREVER);
    mp_process_exitcode(p, &cp);
    mp_process_exitcode(c, &cc);
    mp_process_free(p);
    mp_process_free(c);
    mp_args_free(args);
    mp_queue_free(q);
    return cp || cc;
}
