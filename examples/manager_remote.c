/* A remote manager (BaseManager.serve_forever / connect): a server and its
 * clients are started separately and meet on TCP, with an authkey.
 *
 *   manager_remote server [port]        serves on 127.0.0.1:port (default
 *                                       50000) until a client stops it
 *   manager_remote client [port]        counts a visit in the shared dict
 *                                       "visits", logs it in the list "log"
 *   manager_remote stop [port]          shuts the server down
 *   manager_remote                      all of it: a server process, three
 *                                       clients, then stop
 *
 * The key comes from MANAGER_AUTHKEY (default "demo key"): a manager on TCP
 * refuses to run without one, and a client with another key is refused
 * (MP_EAUTH). To serve other machines, listen on tcp://0.0.0.0:port with
 * mp_manager_opts_t.allow_remote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

static const char *key(void)
{
    const char *k = getenv("MANAGER_AUTHKEY");
    return k && *k ? k : "demo key";
}

static void address_of(const char *port, char *buf, size_t cap)
{
    snprintf(buf, cap, "tcp://127.0.0.1:%s", port ? port : "50000");
}

/* ready_arg: a connection to tell (the demo's parent), or NULL. */
static void on_ready(const char *address, void *arg)
{
    printf("server: listening on %s\n", address);
    fflush(stdout);
    if (arg) mp_conn_send_bytes(arg, "ready", 5);
}

static int serve(const char *port, mp_conn_t *tell)
{
    char address[64];
    address_of(port, address, sizeof address);
    mp_manager_opts_t o = {.address = address,
                           .authkey = key(),
                           .keylen = strlen(key()),
                           .ready = on_ready,
                           .ready_arg = tell};
    int rc = mp_manager_serve(&o);
    if (rc)
        fprintf(stderr, "server: %s\n", mp_last_error_detail());
    else
        printf("server: stopped\n");
    return rc ? 1 : 0;
}

static int connect_to(const char *port, mp_manager_t **m)
{
    char address[64];
    address_of(port, address, sizeof address);
    int rc = mp_manager_connect(m, address, key(), strlen(key()));
    if (rc) fprintf(stderr, "client: %s: %s\n", address, mp_last_error_detail());
    return rc;
}

static int client(const char *port)
{
    mp_manager_t *m;
    if (connect_to(port, &m)) return 1;
    mp_dict_t *visits;
    mp_list_t *log;
    int64_t n = 0;
    int rc = mp_manager_dict(m, "visits", &visits);
    if (!rc) rc = mp_manager_list(m, "log", &log);
    if (!rc) rc = mp_dict_incr(visits, "count", 5, 1, &n);
    char line[64];
    snprintf(line, sizeof line, "visit %lld from pid %lld", (long long)n, (long long)mp_getpid());
    if (!rc) rc = mp_list_append(log, line, strlen(line));
    size_t len = 0;
    if (!rc) rc = mp_list_len(log, &len);
    if (rc)
        fprintf(stderr, "client: %s\n", mp_last_error_detail());
    else
        printf("client: visit %lld, %zu in the log\n", (long long)n, len);
    fflush(stdout);
    if (!rc) {
        mp_dict_free(visits);
        mp_list_free(log);
    }
    mp_manager_free(m);
    return rc ? 1 : 0;
}

static int stop(const char *port)
{
    mp_manager_t *m;
    if (connect_to(port, &m)) return 1;
    int rc = mp_manager_shutdown(m);
    mp_manager_free(m);
    return rc ? 1 : 0;
}

static int server_target(mp_args_t *a)
{
    const char *port;
    mp_conn_t *tell;
    return mp_args_str(a, 0, &port) || mp_args_conn(a, 1, &tell) ? 1 : serve(port, tell);
}

/* No arguments: the whole exchange, with the server in a process of its
 * own (in real use it is another program, perhaps on another machine). */
static int demo(void)
{
    const char *port = "50123";
    mp_conn_t *ready, *tell;
    if (mp_pipe(&ready, &tell, false)) return 1;
    mp_args_t *a;
    mp_args_create(&a);
    mp_args_add_str(a, port);
    mp_args_add_handle(a, MP_HANDLE(tell));
    mp_process_opts_t o = {.target = server_target, .args = a};
    mp_process_t *p;
    if (mp_process_create(&p, &o) || mp_process_start(p)) {
        fprintf(stderr, "cannot start the server: %s\n", mp_last_error_detail());
        return 1;
    }
    mp_args_free(a);
    char word[8];
    size_t n;
    int rc = mp_conn_recv_bytes_into(ready, word, sizeof word, &n); /* or EOF: it failed */
    for (int i = 0; !rc && i < 3; i++)
        rc |= client(port);
    rc |= stop(port);
    int code = 1;
    mp_process_join(p, MP_FOREVER);
    mp_process_exitcode(p, &code);
    mp_process_free(p);
    mp_conn_free(ready);
    mp_conn_free(tell);
    return rc || code;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    const char *port = argc > 2 ? argv[2] : NULL;
    if (argc < 2) return demo();
    if (!strcmp(argv[1], "server")) return serve(port, NULL);
    if (!strcmp(argv[1], "client")) return client(port);
    if (!strcmp(argv[1], "stop")) return stop(port);
    fprintf(stderr, "usage: %s [server|client|stop] [port]\n", argv[0]);
    return 2;
}
