/* Listener and Client (multiprocessing.connection.Listener / Client):
 * address parsing, the accept loop, and the handshake around each new
 * connection with its pre-authentication bounds. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "connection_internal.h"

/* The longest pipe name: \\.\pipe\ plus the name is at most 256 chars. */
#define PIPE_NAME_MAX (256 - 9)

struct mp_listener {
    mp__server_t *srv;
    uint8_t *key;
    mp__auth_t auth;
    bool has_key;
    long handshake_timeout_ms;
    size_t max_message;
    mp_pid_t owner; /* only the creating process removes the address */
};

static int bad_address(const char *address, const char *why)
{
    return mp__fail(MP_EINVAL, "address \"%.200s\": %s", address, why);
}

/* "65535" -> 65535; anything but 1-5 digits up to 65535 fails. */
static bool parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5) return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535) return false;
    *port = (uint16_t)v;
    return true;
}

static bool host_chars_ok(const char *h)
{
    for (; *h; h++)
        if ((unsigned char)*h <= ' ' || *h == '/' || *h == '[' || *h == ']' || *h == '@')
            return false;
    return true;
}

/* "host:port" or "[v6]:port", split in place in rest. */
static int parse_tcp(const char *address, char *rest, mp__addr_t *a)
{
    char *host = rest, *colon;
    if (*rest == '[') {
        char *close = strchr(rest, ']');
        if (!close) return bad_address(address, "'[' without ']' around an IPv6 host");
        if (close[1] != ':') return bad_address(address, "expected ':port' after ']'");
        host = rest + 1;
        *close = 0;
        colon = close + 1;
        if (!*host) return bad_address(address, "empty IPv6 host in []");
    } else {
        colon = strrchr(rest, ':');
        if (!colon) return bad_address(address, "missing ':port'");
        *colon = 0;
        if (strchr(host, ':'))
            return bad_address(address, "an IPv6 host goes in brackets: tcp://[::1]:port");
    }
    if (!host_chars_ok(host)) return bad_address(address, "the host has characters not allowed");
    if (!parse_port(colon + 1, &a->port))
        return bad_address(address, "the port must be a number from 0 to 65535");
    a->kind = MP__ADDR_TCP;
    a->host = *host ? host : "127.0.0.1"; /* loopback unless told otherwise */
    return 0;
}

/* Splits address into a (pointing into *copy, which the caller frees). */
static int parse_address(const char *address, char **copy, mp__addr_t *a)
{
    memset(a, 0, sizeof *a);
    *copy = NULL;
    if (!address) {
        a->kind = MP__ADDR_PRIVATE;
        return 0;
    }
    char *s = mp__strdup(address);
    if (!s) return MP_ENOMEM;
    *copy = s;
    if (!strncmp(s, "tcp://", 6)) return parse_tcp(address, s + 6, a);
    if (!strncmp(s, "unix:", 5)) {
        a->kind = MP__ADDR_UNIX;
        a->path = s + 5;
        return *a->path ? 0 : bad_address(address, "empty socket path after unix:");
    }
    if (!strncmp(s, "pipe:", 5)) {
        a->kind = MP__ADDR_PIPE;
        a->path = s + 5;
        size_t n = strlen(a->path);
        if (!n) return bad_address(address, "empty pipe name after pipe:");
        if (n > PIPE_NAME_MAX) return bad_address(address, "a pipe name has at most 247 chars");
        if (strchr(a->path, '\\')) return bad_address(address, "a pipe name has no '\\'");
        return 0;
    }
    return bad_address(address, "expected tcp://host:port, unix:/path or pipe:name");
}

static int auth_setup(const void *key, size_t keylen, const char *digest, bool refuse_md5,
                      mp__auth_t *a)
{
    if (!key && keylen) return mp__fail(MP_EINVAL, "authkey is NULL but keylen is %zu", keylen);
    a->key = key;
    a->keylen = keylen;
    a->refuse_md5 = refuse_md5;
    a->digest = MP__DIGEST_SHA256;
    if (digest && mp__digest_lookup(digest, strlen(digest), &a->digest)) return MP_EINVAL;
    if (a->digest == MP__DIGEST_MD5 && refuse_md5)
        return mp__fail(MP_EINVAL, "digest \"md5\" together with refuse_md5");
    return 0;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

int mp_listener_create(mp_listener_t **l, const char *address, const void *authkey, size_t keylen)
{
    mp_listener_opts_t o = {.authkey = authkey, .keylen = keylen};
    return mp_listener_create_ex(l, address, &o);
}

int mp_listener_create_ex(mp_listener_t **l, const char *address, const mp_listener_opts_t *o)
{
    static const mp_listener_opts_t defaults;
    if (!l) return mp__fail(MP_EINVAL, "mp_listener_create: NULL out-pointer");
    if (!o) o = &defaults;
    mp_listener_t *t = mp__calloc(1, sizeof *t);
    if (!t) return MP_ENOMEM;
    char *copy = NULL;
    mp__addr_t a;
    int rc = auth_setup(o->authkey, o->keylen, o->digest, o->refuse_md5, &t->auth);
    if (!rc) rc = parse_address(address, &copy, &a);
    if (!rc && a.kind == MP__ADDR_TCP && !o->keylen && !o->allow_no_authkey)
        rc = mp__fail(MP_EPERM,
                      "%s: a TCP listener without an authkey lets anyone who reaches "
                      "the port in; pass an authkey or set allow_no_authkey",
                      address);
    if (!rc && o->authkey) {
        t->has_key = true;
        t->key = mp__malloc(o->keylen);
        if (!t->key) rc = MP_ENOMEM;
        if (!rc && o->keylen) memcpy(t->key, o->authkey, o->keylen);
        t->auth.key = t->key;
    }
    if (!rc) rc = mp__server_open(&a, o->backlog, o->allow_remote, &t->srv);
    free(copy);
    if (rc) {
        mp_listener_free(t);
        return rc;
    }
    t->handshake_timeout_ms = o->handshake_timeout_ms;
    t->max_message = o->max_message ? o->max_message : MP_LISTENER_MAX_MESSAGE;
    t->owner = mp__os_getpid();
    *l = t;
    return 0;
}

const char *mp_listener_address(mp_listener_t *l)
{
    return l && l->srv ? mp__server_address(l->srv) : NULL;
}

/* Wraps a new transport and, with a key, authenticates it within
 * timeout_ms; listener=true challenges first (deliver, then answer). */
static int open_conn(mp__stream_t *st, bool message, const mp__auth_t *auth, bool listener,
                     long timeout_ms, size_t max_message, mp_conn_t **out)
{
    mp_conn_t *c;
    int rc = mp__conn_wrap(st, true, true, &c);
    if (rc) {
        mp__stream_close(st);
        return rc;
    }
    if (message) mp__conn_set_message_mode(c);
    if (auth) {
        mp__conn_set_default_max(c, MP__AUTH_MAX_MESSAGE);
        mp__conn_set_deadline(c, timeout_ms);
        rc = listener ? mp__auth_deliver(c, auth, NULL) : mp__auth_answer(c, auth);
        if (!rc) rc = listener ? mp__auth_answer(c, auth) : mp__auth_deliver(c, auth, NULL);
        mp__conn_set_deadline(c, MP_FOREVER);
    }
    mp__conn_set_default_max(c, max_message);
    if (rc) {
        mp_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* whole: timeout_ms bounds the handshake too; else only the wait. */
static int accept_one(mp_listener_t *l, long timeout_ms, bool whole, mp_conn_t **c)
{
    uint64_t start = mp__os_now_ns();
    mp__stream_t *st;
    bool message;
    int rc = mp__server_accept(l->srv, timeout_ms, &st, &message);
    if (rc) return rc;
    long left = whole ? mp__timeout_left(timeout_ms, start) : MP_FOREVER;
    long hs = l->handshake_timeout_ms;
    if (hs > 0 && (left < 0 || hs < left)) left = hs;
    return open_conn(st, message, l->has_key ? &l->auth : NULL, true, left, l->max_message, c);
}

int mp_listener_accept(mp_listener_t *l, long timeout_ms, mp_conn_t **c)
{
    if (!l || !c) return mp__fail(MP_EINVAL, "mp_listener_accept: NULL argument");
    return accept_one(l, timeout_ms, true, c);
}

int mp__listener_accept_within(mp_listener_t *l, long wait_ms, mp_conn_t **c)
{
    if (!l || !c) return mp__fail(MP_EINVAL, "mp_listener_accept: NULL argument");
    return accept_one(l, wait_ms, false, c);
}

void mp_listener_free(mp_listener_t *l)
{
    if (!l) return;
    mp__server_close(l->srv, l->owner == mp__os_getpid());
    if (l->key) {
        wipe(l->key, l->auth.keylen);
        free(l->key);
    }
    free(l);
}

int mp_client_connect(const char *address, const void *authkey, size_t keylen, mp_conn_t **c)
{
    mp_client_opts_t o = {.authkey = authkey, .keylen = keylen};
    return mp_client_connect_ex(address, &o, c);
}

int mp_client_connect_ex(const char *address, const mp_client_opts_t *o, mp_conn_t **c)
{
    static const mp_client_opts_t defaults;
    if (!c) return mp__fail(MP_EINVAL, "mp_client_connect: NULL out-pointer");
    if (!address) return mp__fail(MP_EINVAL, "mp_client_connect: NULL address");
    if (!o) o = &defaults;
    mp__auth_t auth;
    char *copy = NULL;
    mp__addr_t a;
    int rc = auth_setup(o->authkey, o->keylen, o->digest, o->refuse_md5, &auth);
    if (rc) return rc;
    rc = parse_address(address, &copy, &a);
    long timeout = o->timeout_ms ? o->timeout_ms : MP_FOREVER;
    uint64_t start = mp__os_now_ns();
    mp__stream_t *st;
    bool message = false;
    if (!rc) rc = mp__stream_connect(&a, timeout, &st, &message);
    free(copy);
    if (rc) return rc;
    return open_conn(st, message, o->authkey ? &auth : NULL, false,
                     mp__timeout_left(timeout, start),
                     o->max_message ? o->max_message : MP_LISTENER_MAX_MESSAGE, c);
}
