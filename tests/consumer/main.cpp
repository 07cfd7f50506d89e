// The public headers compile as standard C++11 (no GNU extensions) and
// link from C++: each header on its own, then calls across the API.
#include <mproc/common.h>
#include <mproc/connection.h>
#include <mproc/listener.h>
#include <mproc/manager.h>
#include <mproc/pool.h>
#include <mproc/process.h>
#include <mproc/queue.h>
#include <mproc/shm.h>
#include <mproc/sync.h>
#include <mproc/version.h>
#include <mproc.h>

#include <cstdio>
#include <cstring>

static int fail(const char *what)
{
    std::fprintf(stderr, "%s: %s\n", what, mp_last_error_detail());
    return 1;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_conn_t *a = nullptr, *b = nullptr;
    if (mp_pipe(&a, &b, true) != 0) return fail("mp_pipe");
    if (mp_conn_send_bytes(a, "c++", 3) != 0) return fail("send");
    void *buf = nullptr;
    size_t n = 0;
    if (mp_conn_recv_bytes(b, &buf, &n) != 0 || n != 3) return fail("recv");
    mp_free(buf);
    mp_conn_free(a);
    mp_conn_free(b);

    mp_lock_t *lock = nullptr;
    if (mp_lock_create(&lock) != 0 || mp_lock_acquire(lock, 0) != 0 || mp_lock_release(lock) != 0)
        return fail("lock");
    mp_lock_free(lock);

    mp_queue_t *q = nullptr;
    mp_queue_opts_t qo = mp_queue_opts_t();
    qo.maxsize = 1;
    char item[8];
    if (mp_queue_create(&q, &qo) != 0 || mp_queue_put(q, "item", 4, 0) != 0 ||
        mp_queue_put(q, "more", 4, 0) != MP_EFULL ||
        mp_queue_get_into(q, item, sizeof item, &n, 0) != 0 || n != 4 ||
        std::memcmp(item, "item", 4) != 0)
        return fail("queue");
    mp_queue_free(q);

    mp_value_t *v = nullptr;
    if (mp_value_create(&v, sizeof(int)) != 0 || mp_value_size(v) != sizeof(int))
        return fail("value");
    *static_cast<int *>(mp_value_ptr(v)) = 7;
    mp_value_free(v);

    std::printf("mproc %s (%d.%d.%d) from C++: %s\n", mp_version(), MPROC_VERSION_MAJOR,
                MPROC_VERSION_MINOR, MPROC_VERSION_PATCH, mp_strerror(MP_EOF));
    return 0;
}
