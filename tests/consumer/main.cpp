// The public headers compile as C++ and link from C++.
#include <cstdio>

#include <mproc.h>

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_conn_t *a = nullptr, *b = nullptr;
    if (mp_pipe(&a, &b, true) != 0)
        return 1;
    if (mp_conn_send_bytes(a, "c++", 3) != 0)
        return 1;
    void *buf = nullptr;
    size_t n = 0;
    if (mp_conn_recv_bytes(b, &buf, &n) != 0 || n != 3)
        return 1;
    mp_free(buf);
    mp_conn_free(a);
    mp_conn_free(b);
    std::printf("mproc %s from C++: %s\n", mp_version(), mp_strerror(MP_EOF));
    return 0;
}
