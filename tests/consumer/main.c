/* Uses an installed mproc: a child process sends a message through a pipe. */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int child(mp_args_t *args)
{
    mp_conn_t *c;
    if (mp_args_conn(args, 0, &c)) return 2;
    return mp_conn_send_bytes(c, "consumer", 8) ? 3 : 0;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_conn_t *a, *b;
    mp_args_t *args;
    mp_process_t *p;
    mp_process_opts_t o = {.target = child};
    if (mp_pipe(&a, &b, true) || mp_args_create(&args) || mp_args_add_handle(args, MP_HANDLE(b)))
        return 1;
    o.args = args;
    if (mp_process_create(&p, &o) || mp_process_start(p)) return 1;
    char buf[16];
    size_t n = 0;
    int code = -1;
    if (mp_conn_recv_bytes_into(a, buf, sizeof buf, &n) || n != 8 || memcmp(buf, "consumer", 8))
        return 1;
    if (mp_process_join(p, MP_FOREVER) || mp_process_exitcode(p, &code) || code) return 1;
    printf("mproc %s consumer ok\n", mp_version());
    return 0;
}
