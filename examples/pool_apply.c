/* The seed apply_async program in C. Python's original:
 *
 *   def get_html(n):
 *       time.sleep(n)
 *       print("sub_progress success")
 *       return n
 *
 *   if __name__ == "__main__":
 *       pool = multiprocessing.Pool(multiprocessing.cpu_count())
 *       result = pool.apply_async(get_html, args=(3,))
 *       pool.close()
 *       pool.join()
 *       print(result.get())
 */
#include <stdint.h>
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

/* A task takes bytes and returns bytes: here an int in, the same int out. */
static int get_html(const void *in, size_t len, mp_buf_t *out)
{
    int32_t n;
    if (len != sizeof n) return mp_task_fail(out, "get_html wants one int");
    memcpy(&n, in, sizeof n);
    sleep_s(n);
    printf("sub_progress success\n");
    return mp_buf_set(out, &n, sizeof n);
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_pool_t *pool;
    mp_pool_opts_t opts = {.processes = mp_cpu_count()};
    if (mp_pool_create(&pool, &opts)) goto fail;
    int32_t n = 3;
    mp_result_t *result;
    if (mp_pool_apply_async(pool, get_html, &n, sizeof n, &result)) goto fail;
    if (mp_pool_close(pool) || mp_pool_join(pool, MP_FOREVER)) goto fail;
    void *out;
    size_t len;
    if (mp_result_get(result, MP_FOREVER, &out, &len)) goto fail;
    int32_t got;
    memcpy(&got, out, sizeof got);
    printf("%d\n", (int)got);
    mp_free(out);
    mp_result_free(result);
    mp_pool_free(pool);
    return 0;
fail:
    fprintf(stderr, "pool_apply: %s\n", mp_last_error_detail());
    return 1;
}
