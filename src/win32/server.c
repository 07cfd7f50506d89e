/* Listening endpoints and client connections: TCP (socket.c) and named
 * pipes in message mode, the form CPython's PipeListener / PipeClient use
 * (AF_PIPE), so that either side may be a Python program. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#define PIPE_PREFIX L"\\\\.\\pipe\\"
#define PIPE_BUF_BYTES 65536u
/* A client finding every instance busy waits in slices of this. */
#define BUSY_SLICE_MS 1000
#define NAME_ATTEMPTS 4

struct mp__server {
    char *address;
    mp__w32_tcp_server_t *tcp;
    /* Named pipes: one instance always waits for the next client, as in
     * CPython, so a client never finds the name missing between accepts. */
    wchar_t *name;
    HANDLE next;
    HANDLE ev;
    OVERLAPPED ov; /* next's ConnectNamedPipe */
    bool connecting;
};

static wchar_t *pipe_path(const char *name)
{
    wchar_t *w = mp__w32_wide(name);
    if (!w) return NULL;
    size_t n = wcslen(PIPE_PREFIX) + wcslen(w) + 1;
    wchar_t *full = mp__malloc(n * sizeof *full);
    if (full) swprintf(full, n, L"%ls%ls", PIPE_PREFIX, w);
    free(w);
    return full;
}

/* Creates the next instance and starts waiting for a client on it. */
static int pipe_instance(mp__server_t *s, bool first)
{
    SECURITY_ATTRIBUTES sa;
    int rc = mp__w32_user_only_sa(&sa);
    if (rc) return rc;
    /* The first instance claims the name: if it exists, someone else (maybe
     * a squatter) has it, and we must not add an instance to theirs. */
    HANDLE h = CreateNamedPipeW(
        s->name,
        PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
        PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
        PIPE_UNLIMITED_INSTANCES, PIPE_BUF_BYTES, PIPE_BUF_BYTES, 0, &sa);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD err = GetLastError();
        if (first && (err == ERROR_ACCESS_DENIED || err == ERROR_PIPE_BUSY))
            return mp__fail(MP_EEXIST, "%s: the pipe name is taken", s->address);
        return mp__w32_fail("CreateNamedPipeW", err);
    }
    memset(&s->ov, 0, sizeof s->ov);
    s->ov.hEvent = s->ev;
    s->next = h;
    s->connecting = false;
    if (ConnectNamedPipe(h, &s->ov)) return 0;
    DWORD err = GetLastError();
    if (err == ERROR_IO_PENDING) {
        s->connecting = true;
        return 0;
    }
    /* A client came already, or came and went (CPython issue 14725): it
     * is accepted, and reads EOF. */
    if (err == ERROR_PIPE_CONNECTED || err == ERROR_NO_DATA) return 0;
    s->next = NULL;
    CloseHandle(h);
    return mp__w32_fail("ConnectNamedPipe", err);
}

static int open_pipe(mp__server_t *s, const char *name)
{
    size_t n = strlen(name) + 6;
    s->address = mp__malloc(n);
    s->name = s->address ? pipe_path(name) : NULL;
    s->ev = s->name ? CreateEventW(NULL, TRUE, FALSE, NULL) : NULL;
    if (!s->address || !s->name) return MP_ENOMEM;
    if (!s->ev) return mp__fail_os("CreateEventW");
    snprintf(s->address, n, "pipe:%s", name);
    return pipe_instance(s, true);
}

static int open_private(mp__server_t *s)
{
    int rc = 0;
    for (int attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
        wchar_t hex[33];
        char name[64];
        rc = mp__w32_random_hex(hex);
        if (rc) return rc;
        snprintf(name, sizeof name, "mproc-%lu-%ls", (unsigned long)GetCurrentProcessId(), hex);
        free(s->address);
        free(s->name);
        if (s->ev) CloseHandle(s->ev);
        s->address = NULL;
        s->name = NULL;
        s->ev = NULL;
        rc = open_pipe(s, name);
        if (rc != MP_EEXIST) break;
    }
    return rc;
}

static void server_free(mp__server_t *s)
{
    if (s->next) {
        if (s->connecting) {
            DWORD n;
            CancelIoEx(s->next, &s->ov);
            GetOverlappedResult(s->next, &s->ov, &n, TRUE);
        }
        CloseHandle(s->next);
    }
    if (s->ev) CloseHandle(s->ev);
    mp__w32_tcp_close(s->tcp);
    free(s->name);
    free(s->address);
    free(s);
}

int mp__server_open(const mp__addr_t *a, int backlog, bool allow_remote, mp__server_t **out)
{
    mp__server_t *s = mp__calloc(1, sizeof *s);
    if (!s) return MP_ENOMEM;
    int rc;
    switch (a->kind) {
    case MP__ADDR_TCP:
        rc = mp__w32_tcp_listen(a, backlog > 0 ? backlog : SOMAXCONN, allow_remote, &s->tcp,
                                &s->address);
        break;
    case MP__ADDR_PIPE:
        rc = open_pipe(s, a->path);
        break;
    case MP__ADDR_PRIVATE:
        rc = open_private(s);
        break;
    default:
        rc = mp__fail(MP_ENOSYS,
                      "unix:%s: Unix-domain sockets are POSIX-only here; use pipe:name or "
                      "tcp://host:port",
                      a->path ? a->path : "");
    }
    if (rc) {
        server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *mp__server_address(const mp__server_t *s)
{
    return s->address;
}

static int pipe_accept(mp__server_t *s, long timeout_ms, mp__stream_t **st)
{
    if (!s->next) {
        int rc = pipe_instance(s, false);
        if (rc) return rc;
    }
    if (s->connecting) {
        /* Left pending on a timeout: the next accept goes on waiting. */
        DWORD w = WaitForSingleObject(s->ev, mp__w32_ms(timeout_ms));
        if (w == WAIT_TIMEOUT)
            return mp__fail(MP_ETIMEDOUT, "accept: no peer within %ld ms", timeout_ms);
        if (w != WAIT_OBJECT_0) return mp__fail_os("WaitForSingleObject");
        s->connecting = false;
        DWORD n;
        if (!GetOverlappedResult(s->next, &s->ov, &n, FALSE)) {
            DWORD err = GetLastError();
            if (err != ERROR_PIPE_CONNECTED && err != ERROR_NO_DATA) {
                CloseHandle(s->next);
                s->next = NULL;
                return mp__w32_fail("ConnectNamedPipe", err);
            }
        }
    }
    HANDLE h = s->next;
    s->next = NULL;
    /* Failing here leaves no instance: the next accept makes one. */
    pipe_instance(s, false);
    int rc = mp__w32_stream_new(h, MP__W32_MSGPIPE, st);
    if (rc) CloseHandle(h);
    return rc;
}

int mp__server_accept(mp__server_t *s, long timeout_ms, mp__stream_t **st, bool *message)
{
    *message = !s->tcp;
    return s->tcp ? mp__w32_tcp_accept(s->tcp, timeout_ms, st) : pipe_accept(s, timeout_ms, st);
}

void mp__server_close(mp__server_t *s, bool remove_name)
{
    /* Pipe names and ports vanish with their handles: nothing to remove. */
    (void)remove_name;
    if (s) server_free(s);
}

static int pipe_connect(const char *name, long timeout_ms, mp__stream_t **st)
{
    wchar_t *path = pipe_path(name);
    if (!path) return MP_ENOMEM;
    uint64_t start = mp__os_now_ns();
    HANDLE h;
    int rc = 0;
    for (;;) {
        h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                        NULL);
        if (h != INVALID_HANDLE_VALUE) break;
        DWORD err = GetLastError();
        long left = mp__timeout_left(timeout_ms, start);
        if (err == ERROR_FILE_NOT_FOUND)
            rc = mp__fail(MP_ENOTFOUND, "connect: nobody listens at pipe:%s", name);
        else if (err != ERROR_PIPE_BUSY)
            rc = mp__w32_fail("CreateFileW(pipe)", err);
        else if (!left)
            rc = mp__fail(MP_ETIMEDOUT, "connect(pipe:%s): every instance stayed busy", name);
        if (rc) break;
        /* Every instance has a client: wait for the listener to make one. */
        WaitNamedPipeW(path, left < 0 || left > BUSY_SLICE_MS ? BUSY_SLICE_MS : (DWORD)left);
    }
    free(path);
    if (rc) return rc;
    DWORD mode = PIPE_READMODE_MESSAGE;
    rc = SetNamedPipeHandleState(h, &mode, NULL, NULL) ? 0 : mp__fail_os("SetNamedPipeHandleState");
    if (!rc) rc = mp__w32_stream_new(h, MP__W32_MSGPIPE, st);
    if (rc) CloseHandle(h);
    return rc;
}

int mp__stream_connect(const mp__addr_t *a, long timeout_ms, mp__stream_t **st, bool *message)
{
    *message = a->kind == MP__ADDR_PIPE;
    switch (a->kind) {
    case MP__ADDR_TCP:
        return mp__w32_tcp_connect(a, timeout_ms, st);
    case MP__ADDR_PIPE:
        return pipe_connect(a->path, timeout_ms, st);
    case MP__ADDR_UNIX:
        return mp__fail(MP_ENOSYS, "unix:%s: Unix-domain sockets are POSIX-only here", a->path);
    default:
        return mp__fail(MP_EINVAL, "a client needs an address to connect to");
    }
}
