/* The seed Pipe program in C. Python's original:
 *
 *   def sender(conn, msgs):
 *       for msg in msgs:
 *           conn.send(msg)
 *       conn.close()
 *
 *   def receiver(conn):
 *       while 1:
 *           msg = conn.recv()
 *           if msg == "END":
 *               break
 *           print(msg)
 *
 *   parent_conn, child_conn = Pipe()
 *   msgs = ["url_" + str(i) for i in range(10)] + ["END"]
 *   p1 = Process(target=sender, args=(parent_conn, msgs))
 *   p2 = Process(target=receiver, args=(child_conn,))
 *   p1.start(); p2.start(); p1.join(); p2.join()
 */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

static int sender(mp_args_t *args)
{
    mp_conn_t *conn;
    if (mp_args_conn(args, 0, &conn)) return 1;
    for (size_t i = 1; i < mp_args_count(args); i++) {
        const char *msg;
        if (mp_args_str(args, i, &msg) || mp_conn_send_bytes(conn, msg, strlen(msg))) return 1;
    }
    mp_conn_close(conn);
    return 0;
}

static int receiver(mp_args_t *args)
{
    mp_conn_t *conn;
    if (mp_args_conn(args, 0, &conn)) return 1;
    for (;;) {
        char msg[64];
        size_t len;
        if (mp_conn_recv_bytes_into(conn, msg, sizeof msg - 1, &len)) return 1;
        msg[len] = 0;
        if (!strcmp(msg, "END")) return 0;
        printf("%s\n", msg);
    }
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
    mp_conn_t *parent_conn, *child_conn;
    if (mp_pipe(&parent_conn, &child_conn, true)) {
        fprintf(stderr, "mp_pipe: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_args_t *send_args, *recv_args;
    mp_args_create(&send_args);
    mp_args_add_handle(send_args, MP_HANDLE(parent_conn));
    char msg[16];
    for (int i = 0; i < 10; i++) {
        snprintf(msg, sizeof msg, "url_%d", i);
        mp_args_add_str(send_args, msg);
    }
    mp_args_add_str(send_args, "END");
    mp_args_create(&recv_args);
    mp_args_add_handle(recv_args, MP_HANDLE(child_conn));

    mp_process_t *p1 = start(sender, send_args);
    mp_process_t *p2 = start(receiver, recv_args);
    if (!p1 || !p2) return 1;
    int c1 = -1, c2 = -1;
    mp_process_join(p1, MP_FOREVER);
    mp_process_join(p2, MP_FOREVER);
    mp_process_exitcode(p1, &c1);
    mp_process_exitcode(p2, &c2);

    mp_process_free(p1);
    mp_process_free(p2);
    mp_args_free(send_args);
    mp_args_free(recv_args);
    mp_conn_free(parent_conn);
    mp_conn_free(child_conn);
    return c1 || c2;
}
