/* Byte and message streams over named pipes and sockets, with overlapped
 * I/O so that reads can time out and streams can be waited on together.
 *
 * Readiness is probed with a zero-byte overlapped read: on a byte-mode pipe
 * or a socket it completes when data arrives or the peer goes, and
 * consumes nothing, so a cancelled probe loses no data and the handle can
 * be passed to another process at any time. (On a message-mode pipe it
 * does consume an empty message; that one is remembered in empty_msg.) */
#include <stdlib.h>
#include <string.h>

#include "win32.h"

/* Writes go out in pieces of at most this, so one call never pins a huge
 * buffer in the kernel (or, under Wine, in wineserver). */
#define WRITE_CHUNK (1u << 20)
/* Gathered writes up to this size are copied into one write. */
#define GATHER_MAX 16384u
/* ReadFile and WSARecv take 32-bit counts. */
#define READ_MAX (1u << 30)

int mp__w32_stream_new(HANDLE h, int kind, mp__stream_t **out)
{
    mp__stream_t *s = mp__calloc(1, sizeof *s);
    if (!s) return MP_ENOMEM;
    s->h = h;
    s->kind = kind;
    s->rev = CreateEventW(NULL, TRUE, FALSE, NULL);
    s->wev = s->rev ? CreateEventW(NULL, TRUE, FALSE, NULL) : NULL;
    if (!s->wev) {
        int rc = mp__fail_os("CreateEventW");
        if (s->rev) CloseHandle(s->rev);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static bool is_sock(const mp__stream_t *s)
{
    return s->kind == MP__W32_SOCKET;
}

/* The peer is gone: a broken pipe, or a socket reset or shut down. */
static bool peer_gone(DWORD err)
{
    return err == ERROR_BROKEN_PIPE || err == ERROR_NO_DATA || err == ERROR_PIPE_NOT_CONNECTED ||
           err == ERROR_HANDLE_EOF || err == ERROR_NETNAME_DELETED || err == WSAECONNRESET ||
           err == WSAECONNABORTED || err == WSAESHUTDOWN || err == WSAENETRESET;
}

/* Starts an overlapped read (or write) of len bytes at p. DONE with *n,
 * or ERROR with *err, when it completed at once; else the caller waits. */
static int io_start(mp__stream_t *s, bool write, void *p, DWORD len, OVERLAPPED *ov, DWORD *n,
                    DWORD *err)
{
    memset(ov, 0, sizeof *ov);
    ov->hEvent = write ? s->wev : s->rev;
    *n = 0;
    *err = 0;
    if (is_sock(s)) {
        WSABUF b = {len, p};
        DWORD flags = 0;
        int r = write ? WSASend((SOCKET)s->h, &b, 1, NULL, 0, ov, NULL)
                      : WSARecv((SOCKET)s->h, &b, 1, NULL, &flags, ov, NULL);
        if (r && (*err = (DWORD)WSAGetLastError()) == WSA_IO_PENDING) return -1;
    } else {
        BOOL ok = write ? WriteFile(s->h, p, len, NULL, ov) : ReadFile(s->h, p, len, NULL, ov);
        if (!ok && (*err = GetLastError()) == ERROR_IO_PENDING) return -1;
    }
    if (*err) return MP__IO_ERROR;
    /* Completed: the count is in the OVERLAPPED. */
    DWORD flags = 0;
    BOOL ok = is_sock(s) ? WSAGetOverlappedResult((SOCKET)s->h, ov, n, FALSE, &flags)
                         : GetOverlappedResult(s->h, ov, n, FALSE);
    if (!ok) {
        *err = is_sock(s) ? (DWORD)WSAGetLastError() : GetLastError();
        return MP__IO_ERROR;
    }
    return MP__IO_DONE;
}

/* One read or write, waiting up to timeout_ms: DONE, TIMEOUT or ERROR. */
static int io(mp__stream_t *s, bool write, void *p, DWORD len, long timeout_ms, DWORD *n,
              DWORD *err)
{
    OVERLAPPED ov;
    int r = io_start(s, write, p, len, &ov, n, err);
    if (r < 0) r = mp__w32_io_wait(s->h, &ov, is_sock(s), timeout_ms, NULL, n, err);
    return r;
}

static int io_fail(const char *call, DWORD err)
{
    if (peer_gone(err))
        return mp__fail(MP_EOF, "%s: the peer closed (error %lu)", call, (unsigned long)err);
    return mp__w32_fail(call, err);
}

int mp__stream_pair(mp__stream_t **a, mp__stream_t **b, bool duplex)
{
    if (!a || !b) return mp__fail(MP_EINVAL, "mp__stream_pair: NULL out-pointer");
    HANDLE server, client;
    /* Simplex: the server end (a) only reads, the client end (b) only writes. */
    int rc = mp__w32_pipe_pair(duplex ? PIPE_ACCESS_DUPLEX : PIPE_ACCESS_INBOUND, true, false,
                               &server, &client);
    if (rc) return rc;
    rc = mp__w32_stream_new(server, MP__W32_PIPE, a);
    if (rc) {
        CloseHandle(server);
        CloseHandle(client);
        return rc;
    }
    rc = mp__w32_stream_new(client, MP__W32_PIPE, b);
    if (rc) {
        mp__stream_close(*a);
        CloseHandle(client);
    }
    return rc;
}

int mp__stream_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, long timeout_ms)
{
    *got = 0;
    if (!cap) return mp__fail(MP_EINVAL, "mp__stream_read: empty buffer");
    DWORD want = cap > READ_MAX ? READ_MAX : (DWORD)cap;
    uint64_t start = mp__os_now_ns();
    for (;;) {
        if (s->kind == MP__W32_MSGPIPE) {
            /* Bytes of messages, their boundaries ignored. */
            uint64_t left;
            int rc =
                mp__stream_msg_read(s, buf, want, got, &left, mp__timeout_left(timeout_ms, start));
            if (rc || *got) return rc;
            continue;
        }
        DWORD n, err;
        int r = io(s, false, buf, want, mp__timeout_left(timeout_ms, start), &n, &err);
        if (r == MP__IO_TIMEOUT)
            return mp__fail(MP_ETIMEDOUT, "read: nothing arrived within %ld ms", timeout_ms);
        if (r != MP__IO_DONE) return io_fail(is_sock(s) ? "WSARecv" : "ReadFile", err);
        if (n) {
            *got = n;
            return 0;
        }
        if (is_sock(s)) return mp__fail(MP_EOF, "WSARecv: the peer closed the connection");
        /* A zero-byte write on a pipe completes a read with nothing; that
         * is neither data nor EOF: read again. */
        if (!mp__timeout_left(timeout_ms, start))
            return mp__fail(MP_ETIMEDOUT, "read: nothing arrived within %ld ms", timeout_ms);
    }
}

static int write_all(mp__stream_t *s, const uint8_t *p, size_t len)
{
    while (len) {
        DWORD want = len > WRITE_CHUNK ? WRITE_CHUNK : (DWORD)len, n, err;
        if (io(s, true, (void *)p, want, MP_FOREVER, &n, &err) != MP__IO_DONE)
            return io_fail(is_sock(s) ? "WSASend" : "WriteFile", err);
        if (!n)
            return mp__fail(MP_ESYS, "write: nothing of %lu bytes went out", (unsigned long)want);
        p += n;
        len -= n;
    }
    return 0;
}

int mp__stream_write(mp__stream_t *s, const mp_iov_t *iov, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += iov[i].len;
    if (s->kind == MP__W32_MSGPIPE)
        return mp__fail(MP_EINVAL, "mp__stream_write on a message stream");
    /* A small frame (header and payload) goes out in one write, so the
     * reader usually gets it with one read. */
    if (n > 1 && total <= GATHER_MAX) {
        uint8_t tmp[GATHER_MAX];
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            if (iov[i].len) memcpy(tmp + off, iov[i].data, iov[i].len);
            off += iov[i].len;
        }
        return write_all(s, tmp, off);
    }
    for (size_t i = 0; i < n; i++) {
        /* Never a zero-byte write: on a pipe it wakes a reader with nothing. */
        int rc = iov[i].len ? write_all(s, iov[i].data, iov[i].len) : 0;
        if (rc) return rc;
    }
    return 0;
}

int mp__stream_msg_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, uint64_t *left,
                        long timeout_ms)
{
    *got = 0;
    *left = 0;
    if (s->kind != MP__W32_MSGPIPE)
        return mp__fail(MP_EINVAL, "mp__stream_msg_read on a byte stream");
    if (s->empty_msg) {
        s->empty_msg = false;
        return 0;
    }
    DWORD want = cap > READ_MAX ? READ_MAX : (DWORD)cap, n, err;
    int r = io(s, false, buf, want, timeout_ms, &n, &err);
    if (r == MP__IO_TIMEOUT)
        return mp__fail(MP_ETIMEDOUT, "read: no message within %ld ms", timeout_ms);
    if (r == MP__IO_ERROR && err != ERROR_MORE_DATA) return io_fail("ReadFile", err);
    *got = n;
    if (r == MP__IO_ERROR) {
        /* The buffer is full and the message goes on: how much of it? */
        DWORD rest = 0;
        if (!PeekNamedPipe(s->h, NULL, 0, NULL, NULL, &rest))
            return io_fail("PeekNamedPipe", GetLastError());
        *left = rest;
    }
    return 0;
}

int mp__stream_msg_write(mp__stream_t *s, const void *buf, size_t len)
{
    if (s->kind != MP__W32_MSGPIPE)
        return mp__fail(MP_EINVAL, "mp__stream_msg_write on a byte stream");
    if (len > 0xffffffffu)
        return mp__fail(MP_EMSGSIZE, "a pipe message has at most 4 GiB - 1 bytes, not %zu", len);
    DWORD n, err;
    if (io(s, true, (void *)buf, (DWORD)len, MP_FOREVER, &n, &err) != MP__IO_DONE)
        return io_fail("WriteFile", err);
    if (n != len)
        return mp__fail(MP_ESYS, "WriteFile: %lu of a %zu-byte message", (unsigned long)n, len);
    return 0;
}

int mp__w32_stream_arm(mp__stream_t *s, OVERLAPPED *ov)
{
    if (s->empty_msg) return 1;
    static uint8_t none;
    DWORD n, err;
    int r = io_start(s, false, &none, 0, ov, &n, &err);
    if (r < 0) return 0;
    if (r == MP__IO_DONE && s->kind == MP__W32_MSGPIPE) s->empty_msg = true;
    /* Done, EOF, a partial message, or an error the next read reports:
     * whichever, a read now would not block. */
    return 1;
}

int mp__w32_stream_disarm(mp__stream_t *s, OVERLAPPED *ov)
{
    if (!HasOverlappedIoCompleted(ov)) CancelIoEx(s->h, ov);
    DWORD n, flags = 0;
    BOOL ok = is_sock(s) ? WSAGetOverlappedResult((SOCKET)s->h, ov, &n, TRUE, &flags)
                         : GetOverlappedResult(s->h, ov, &n, TRUE);
    if (ok && s->kind == MP__W32_MSGPIPE) s->empty_msg = true;
    if (ok) return 1;
    DWORD err = is_sock(s) ? (DWORD)WSAGetLastError() : GetLastError();
    return err == ERROR_OPERATION_ABORTED || err == WSA_OPERATION_ABORTED ? 0 : 1;
}

int mp__stream_poll(mp__stream_t *s, long timeout_ms)
{
    OVERLAPPED ov;
    int rc = mp__w32_stream_arm(s, &ov);
    if (rc) return rc;
    DWORD w = WaitForSingleObject(ov.hEvent, mp__w32_ms(timeout_ms));
    DWORD err = w == WAIT_FAILED ? GetLastError() : 0;
    rc = mp__w32_stream_disarm(s, &ov);
    return err ? mp__w32_fail("WaitForSingleObject", err) : rc;
}

void mp__stream_close(mp__stream_t *s)
{
    if (!s) return;
    if (is_sock(s))
        closesocket((SOCKET)s->h);
    else
        CloseHandle(s->h);
    CloseHandle(s->rev);
    CloseHandle(s->wev);
    free(s);
}

mp__osh_t mp__stream_osh(mp__stream_t *s)
{
    return (mp__osh_t)s->h;
}

int mp__stream_adopt(mp__osh_t osh, mp__stream_t **s)
{
    HANDLE h = (HANDLE)osh;
    if (osh == MP__OSH_INVALID || !h)
        return mp__fail(MP_EINVAL, "mp__stream_adopt: invalid handle");
    /* Sockets report FILE_TYPE_PIPE too. */
    if (GetFileType(h) != FILE_TYPE_PIPE)
        return mp__fail(MP_EPROTO, "mp__stream_adopt: handle %p is not a pipe or socket", h);
    if (mp__w32_is_socket(h)) return mp__w32_stream_new(h, MP__W32_SOCKET, s);
    DWORD flags = 0;
    if (!GetNamedPipeInfo(h, &flags, NULL, NULL, NULL)) return mp__fail_os("GetNamedPipeInfo");
    return mp__w32_stream_new(h, flags & PIPE_TYPE_MESSAGE ? MP__W32_MSGPIPE : MP__W32_PIPE, s);
}

void mp__stream_forget(mp__stream_t *s)
{
    /* No fork on Windows: nothing is shared with a copy of this process,
     * so forgetting is closing our handle. */
    mp__stream_close(s);
}
