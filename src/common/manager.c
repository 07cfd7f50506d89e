/* Managers (BaseManager / SyncManager): starting a server process,
 * connecting to one, serving in this process, shutting down, and making
 * proxies. The server runs in manager_server.c; proxies talk to it through
 * manager_client.c.
 *
 * A started server is a daemon child holding one end of a pipe: it sends
 * its address (or why it could not listen) over it, and stops when the
 * pipe reaches EOF, i.e. when the process that started it is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"

#define START_MS 60000L /* a spawned server under an emulator can be slow */
#define STOP_MS 10000L

enum { F_ADDRESS = 1, F_KEY = 2, F_REMOTE = 4 };

struct mp_manager {
    mp_handle_t h;
    mp__mclient_t *cl;
    mp_process_t *proc; /* started by us */
    mp_conn_t *link;    /* our end of the started server's pipe */
    mp_pid_t owner;     /* only the starting process stops the server */
    bool shut;
};

/* ---- the server process ---- */

static void put_status(uint8_t *b, int rc)
{
    uint32_t u = (uint32_t)(int32_t)rc;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(u >> (8 * i));
}

static void send_status(mp_conn_t *link, int rc, const char *text)
{
    uint8_t b[4];
    put_status(b, rc);
    mp_iov_t v[2] = {{b, 4}, {(void *)text, strlen(text)}};
    mp_conn_sendv(link, v, 2);
}

static void send_ready(const char *address, void *arg)
{
    send_status(arg, 0, address);
}

static int server_main(mp_args_t *a)
{
    mp_conn_t *link;
    int64_t flags;
    const char *address;
    const void *key;
    size_t keylen;
    if (mp_args_conn(a, 0, &link) || mp_args_int(a, 1, &flags) || mp_args_str(a, 2, &address) ||
        mp_args_bytes(a, 3, &key, &keylen))
        return 2;
    mp_manager_opts_t o = {.address = flags & F_ADDRESS ? address : NULL,
                           .authkey = flags & F_KEY ? key : NULL,
                           .keylen = flags & F_KEY ? keylen : 0,
                           .allow_remote = (flags & F_REMOTE) != 0};
    int rc = mp__msrv_run(&o, link, send_ready, link);
    if (rc) send_status(link, rc, mp_last_error_detail());
    return rc ? 1 : 0;
}

/* Waits for the server's first word: its address, or its failure. */
static int await_ready(mp_manager_t *m, char **address)
{
    int rc = mp_conn_poll(m->link, START_MS);
    if (rc == 0) return mp__fail(MP_ETIMEDOUT, "the manager's server did not start in time");
    void *msg = NULL;
    size_t len = 0;
    if (rc > 0) rc = mp_conn_recv_bytes(m->link, &msg, &len);
    if (rc == MP_EOF) {
        int code = 0;
        mp_process_join(m->proc, STOP_MS);
        mp_process_exitcode(m->proc, &code);
        return mp__fail(MP_ESYS, "the manager's server process ended (exit code %d)", code);
    }
    if (rc < 0) return rc;
    rc = 0;
    if (len < 4) rc = mp__fail(MP_EPROTO, "the manager's server sent a short word");
    int32_t st = 0;
    for (int i = 0; !rc && i < 4; i++)
        st |= (int32_t)((uint32_t)((uint8_t *)msg)[i] << (8 * i));
    char *text = rc ? NULL : mp__malloc(len - 3);
    if (!rc && !text) rc = MP_ENOMEM;
    if (text) {
        memcpy(text, (uint8_t *)msg + 4, len - 4);
        text[len - 4] = 0;
    }
    mp_free(msg);
    if (!rc && (st > 0 || st < MP_ESYS))
        rc = mp__fail(MP_EPROTO, "the manager's server: bad status");
    if (!rc && st) rc = mp__fail(st, "the manager's server: %s", text);
    if (rc) {
        free(text);
        return rc;
    }
    *address = text;
    return 0;
}

static int manager_new(mp_manager_t **out)
{
    mp_manager_t *m = mp__calloc(1, sizeof *m);
    if (!m) return MP_ENOMEM;
    mp__handle_init(&m->h, MP__H_MANAGER);
    m->owner = mp__os_getpid();
    *out = m;
    return 0;
}

static void stop_process(mp_manager_t *m)
{
    if (!m->proc) return;
    if (mp_process_join(m->proc, STOP_MS) == MP_ETIMEDOUT) {
        mp_process_kill(m->proc);
        mp_process_join(m->proc, STOP_MS);
    }
}

static int start_server(mp_manager_t *m, const mp_manager_opts_t *o)
{
    mp_conn_t *theirs = NULL;
    mp_args_t *a = NULL;
    int rc = mp_pipe(&m->link, &theirs, true);
    if (!rc) rc = mp_args_create(&a);
    int64_t flags =
        (o->address ? F_ADDRESS : 0) | (o->authkey ? F_KEY : 0) | (o->allow_remote ? F_REMOTE : 0);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(theirs));
    if (!rc) rc = mp_args_add_int(a, flags);
    if (!rc) rc = mp_args_add_str(a, o->address ? o->address : "");
    if (!rc) rc = mp_args_add_bytes(a, o->authkey, o->authkey ? o->keylen : 0);
    mp_process_opts_t po = {.target = server_main,
                            .args = a,
                            .name = "Manager",
                            .daemon = true,
                            .start_method = o->start_method};
    if (!rc) rc = mp_process_create(&m->proc, &po);
    if (!rc) rc = mp_process_start(m->proc);
    mp_args_free(a);
    if (theirs) mp_conn_free(theirs);
    return rc;
}

int mp_manager_start(mp_manager_t **out, const mp_manager_opts_t *o)
{
    static const mp_manager_opts_t defaults;
    if (!out) return mp__fail(MP_EINVAL, "mp_manager_start: NULL out-pointer");
    if (!o) o = &defaults;
    if (!o->authkey && o->keylen) return mp__fail(MP_EINVAL, "authkey is NULL but keylen is not");
    mp_manager_t *m;
    int rc = manager_new(&m);
    if (rc) return rc;
    rc = start_server(m, o);
    char *address = NULL;
    if (!rc) rc = await_ready(m, &address);
    if (!rc) rc = mp__mclient_get(address, o->authkey, o->keylen, o->authkey != NULL, &m->cl);
    if (!rc) rc = mp__mclient_connect(m->cl);
    free(address);
    if (rc) {
        /* Keep the failure's detail through the cleanup (the liveness
         * check records one of its own). */
        char why[256];
        snprintf(why, sizeof why, "%s", mp_last_error_detail());
        if (m->proc && mp_process_is_alive(m->proc) == 1) mp_process_kill(m->proc);
        m->shut = true;
        mp_manager_free(m);
        return mp__fail(rc, "%s", why);
    }
    *out = m;
    return 0;
}

int mp_manager_connect(mp_manager_t **out, const char *address, const void *authkey, size_t keylen)
{
    if (!out || !address) return mp__fail(MP_EINVAL, "mp_manager_connect: NULL argument");
    if (!authkey && keylen) return mp__fail(MP_EINVAL, "authkey is NULL but keylen is not");
    mp_manager_t *m = NULL;
    int rc = manager_new(&m);
    if (!rc) rc = mp__mclient_get(address, authkey, keylen, authkey != NULL, &m->cl);
    if (!rc) rc = mp__mclient_connect(m->cl);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", mp_last_error_detail());
        if (m) mp_manager_free(m);
        return mp__fail(rc, "%s", why);
    }
    *out = m;
    return 0;
}

int mp_manager_serve(const mp_manager_opts_t *o)
{
    static const mp_manager_opts_t defaults;
    if (!o) o = &defaults;
    if (!o->authkey && o->keylen) return mp__fail(MP_EINVAL, "authkey is NULL but keylen is not");
    return mp__msrv_run(o, NULL, o->ready, o->ready_arg);
}

static int usable(mp_manager_t *m)
{
    int rc = mp__handle_check(MP_HANDLE(m), MP__H_MANAGER);
    if (!rc && m->shut) rc = mp__fail(MP_ECLOSED, "the manager was shut down");
    return rc;
}

const char *mp_manager_address(mp_manager_t *m)
{
    if (mp__handle_check(MP_HANDLE(m), MP__H_MANAGER) || !m->cl) return NULL;
    return mp__mclient_address(m->cl);
}

int mp_manager_shutdown(mp_manager_t *m)
{
    int rc = usable(m);
    if (rc) return rc;
    mp__mreq_t rq = {.op = MP__M_SHUTDOWN};
    mp__mrep_t rp;
    rc = mp__mclient_call(m->cl, &rq, &rp);
    mp__mrep_release(&rp);
    m->shut = true;
    mp__mclient_close(m->cl);
    stop_process(m);
    /* A server that is already gone is as stopped as it gets. */
    return rc == MP_EOF ? 0 : rc;
}

void mp_manager_free(mp_manager_t *m)
{
    if (!m) return; /* as free(NULL): the last detail stays */
    if (mp__handle_check(MP_HANDLE(m), MP__H_MANAGER)) return;
    /* A forked child freeing its copy only detaches, as a connected one. */
    bool mine = m->owner == mp__os_getpid();
    if (m->proc && !m->shut && mine) mp_manager_shutdown(m);
    /* Our end closing is what stops a server we could not talk to. */
    if (m->link) mp_conn_free(m->link);
    if (m->proc) {
        if (mine) stop_process(m);
        mp_process_free(m->proc);
    }
    mp__mclient_unref(m->cl);
    mp__handle_fini(&m->h);
    free(m);
}

static void manager_free_h(mp_handle_t *h)
{
    mp_manager_free((mp_manager_t *)h);
}

const mp__htype_ops_t mp__manager_ops = {
    .name = "manager",
    .free = manager_free_h,
};

/* ---- proxies ---- */

int mp__manager_client(mp_manager_t *m, mp__mclient_t **cl)
{
    int rc = usable(m);
    if (!rc) *cl = m->cl;
    return rc;
}

int mp_manager_dict(mp_manager_t *m, const char *name, mp_dict_t **d)
{
    int rc = usable(m);
    if (!rc && !d) rc = mp__fail(MP_EINVAL, "mp_manager_dict: NULL out-pointer");
    uint64_t oid;
    bool local;
    mp__seg_t *seg;
    if (!rc) rc = mp__proxy_open(m->cl, MP__MK_DICT, name, 0, 0, &oid, &local, &seg);
    return rc ? rc : mp__dict_wrap(m->cl, oid, local, seg, d);
}

int mp_manager_list(mp_manager_t *m, const char *name, mp_list_t **l)
{
    int rc = usable(m);
    if (!rc && !l) rc = mp__fail(MP_EINVAL, "mp_manager_list: NULL out-pointer");
    uint64_t oid;
    bool local;
    mp__seg_t *seg;
    if (!rc) rc = mp__proxy_open(m->cl, MP__MK_LIST, name, 0, 0, &oid, &local, &seg);
    return rc ? rc : mp__list_wrap(m->cl, oid, local, seg, l);
}
