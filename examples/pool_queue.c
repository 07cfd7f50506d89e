/* The seed producer/consumer program in C: two pool tasks sharing a queue.
 * Python's original (with Manager().Queue(); here a plain mproc Queue,
 * which pool workers receive through initargs):
 *
 *   def producer(queue):
 *       queue.put("a")
 *       time.sleep(2)
 *
 *   def consumer(queue):
 *       time.sleep(2)
 *       data = queue.get()
 *       print(data)
 *
 *   if __name__ == "__main__":
 *       queue = Manager().Queue(10)
 *       pool = Pool(2)
 *       pool.apply_async(producer, args=(queue,))
 *       pool.apply_async(consumer, args=(queue,))
 *       pool.close()
 *       pool.join()
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#if defined(_WIN32)
#include <windows.h>
static void sleep_s(int s)
{
    Sleep((DWORD)s * 1000);
}
#else
#include <unistd.h>
static void sleep_s(int s)
{
    sleep((unsigned)s);
}
#endif

/* Each worker keeps the queue its initializer was given. */
static mp_queue_t *queue;

static int keep_queue(mp_args_t *initargs)
{
    return mp_args_queue(initargs, 0, &queue);
}

static int producer(const void *in, size_t len, mp_buf_t *out)
{
    (void)in;
    (void)len;
    if (mp_queue_put(queue, "a", 1, MP_FOREVER)) return mp_task_fail(out, "put failed");
    sleep_s(2);
    return 0;
}

static int consumer(const void *in, size_t len, mp_buf_t *out)
{
    (void)in;
    (void)len;
    sleep_s(2);
    void *data;
    size_t n;
    if (mp_queue_get(queue, &data, &n, MP_FOREVER)) return mp_task_fail(out, "get failed");
    printf("%.*s\n", (int)n, (char *)data);
    fflush(stdout);
    mp_free(data);
    return 0;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_queue_opts_t qo = {.maxsize = 10};
    mp_queue_t *q;
    mp_args_t *initargs;
    mp_pool_t *pool;
    if (mp_queue_create(&q, &qo) || mp_args_create(&initargs) ||
        mp_args_add_handle(initargs, MP_HANDLE(q)))
        goto fail;
    mp_pool_opts_t opts = {.processes = 2, .initializer = keep_queue, .initargs = initargs};
    if (mp_pool_create(&pool, &opts)) goto fail;
    mp_args_free(initargs);
    mp_result_t *r[2];
    if (mp_pool_apply_async(pool, producer, NULL, 0, &r[0]) ||
        mp_pool_apply_async(pool, consumer, NULL, 0, &r[1]))
        goto fail;
    if (mp_pool_close(pool) || mp_pool_join(pool, MP_FOREVER)) goto fail;
    for (int i = 0; i < 2; i++) {
        if (mp_result_get(r[i], 0, NULL, NULL)) goto fail;
        mp_result_free(r[i]);
    }
    mp_pool_free(pool);
    mp_queue_free(q);
    return 0;
fail:
    fprintf(stderr, "pool_queue: %s\n", mp_last_error_detail());
    return 1;
}
