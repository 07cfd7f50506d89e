/* The child's side of a spawn: reading the bootstrap message from the pipe
 * named on the command line, and arranging to die with a daemon's parent. */
#include <stdlib.h>
#include <string.h>

#include "win32.h"

/* A handle on the parent process, from the bootstrap message. */
static HANDLE parent_process;
static bool in_daemon_job;

bool mp__bootstrap_is_child(int argc, char **argv)
{
    return argc >= 3 && argv && argv[1] && !strcmp(argv[1], MP__BOOT_MARKER);
}

static int parse_handle(const char *s, HANDLE *h)
{
    uint64_t v = 0;
    size_t n = strlen(s);
    if (!n || n > 16) return mp__fail(MP_EPROTO, "bootstrap: bad handle argument '%.32s'", s);
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0) return mp__fail(MP_EPROTO, "bootstrap: bad handle argument '%.32s'", s);
        v = v << 4 | (uint64_t)d;
    }
    *h = (HANDLE)(uintptr_t)v;
    return 0;
}

static int read_exact(HANDLE h, void *buf, size_t n, size_t *done)
{
    uint8_t *p = buf;
    while (n) {
        DWORD want = n > (1u << 30) ? (1u << 30) : (DWORD)n, got = 0;
        if (!ReadFile(h, p, want, &got, NULL)) {
            int rc = mp__fail_os("ReadFile(bootstrap)");
            if (rc == MP_EOF)
                rc = mp__fail(MP_EPROTO,
                              "bootstrap: the parent closed the channel after %zu "
                              "bytes of a message",
                              *done);
            return rc;
        }
        p += got;
        n -= got;
        *done += got;
    }
    return 0;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Reads len bytes into a buffer grown as they arrive, so a corrupt length
 * costs at most what the parent really sent. */
static int read_record(HANDLE h, uint64_t len, size_t *done, void **out)
{
    size_t total = (size_t)len, have = 0;
    size_t cap = total < (1u << 20) ? total : (1u << 20);
    uint8_t *p = mp__malloc(cap);
    while (p && have < total) {
        if (have == cap) {
            cap = total - cap < cap ? total : cap * 2;
            uint8_t *np = realloc(p, cap);
            if (!np) {
                free(p);
                return mp__fail(MP_ENOMEM, "bootstrap: realloc(%zu) for a record of %zu bytes", cap,
                                total);
            }
            p = np;
        }
        int rc = read_exact(h, p + have, cap - have, done);
        if (rc) {
            free(p);
            return rc;
        }
        have = cap;
    }
    if (!p) return MP_ENOMEM;
    *out = p;
    return 0;
}

/* Builds the sockets the parent duplicated for us into their table slots. */
static int make_sockets(const uint8_t *raw, uint32_t nsocks, mp__osh_t *tab, uint32_t n)
{
    int rc = nsocks ? mp__w32_wsa_init() : 0;
    for (uint32_t i = 0; !rc && i < nsocks; i++) {
        const uint8_t *e = raw + (size_t)i * MP__BOOT_SOCK_LEN;
        uint32_t idx = get32(e);
        if (idx >= n || tab[idx] != MP__OSH_INVALID)
            return mp__fail(MP_EPROTO, "bootstrap: socket for a bad table slot %lu",
                            (unsigned long)idx);
        WSAPROTOCOL_INFOW info;
        memcpy(&info, e + 4, sizeof info);
        SOCKET so = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                               WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (so == INVALID_SOCKET)
            return mp__w32_fail("WSASocketW(FROM_PROTOCOL_INFO)", (DWORD)WSAGetLastError());
        tab[idx] = (mp__osh_t)so;
    }
    return rc;
}

static int read_message(HANDLE h, void **record, size_t *len, mp__osh_t **handles, size_t *nhandles)
{
    uint8_t hdr[MP__BOOT_HDR_LEN];
    size_t done = 0;
    int rc = read_exact(h, hdr, sizeof hdr, &done);
    if (rc) return rc;
    uint32_t flags = get32(hdr + 4), n = get32(hdr + 16), nsocks = get32(hdr + 28);
    uint64_t parent = get64(hdr + 8), rlen = get64(hdr + 20);
    if (memcmp(hdr, MP__BOOT_MAGIC, 4) || (flags & ~MP__BOOT_F_JOB))
        return mp__fail(MP_EPROTO, "bootstrap: not a bootstrap message of this version");
    if (n > MP__BOOT_MAX_HANDLES || nsocks > n || rlen > MP__BOOT_MAX_RECORD || rlen > SIZE_MAX)
        return mp__fail(MP_EPROTO,
                        "bootstrap: %lu handles, %lu sockets and %llu bytes are out of bounds",
                        (unsigned long)n, (unsigned long)nsocks, (unsigned long long)rlen);
    /* From here on the handles are ours: close them if anything fails. */
    parent_process = (HANDLE)(uintptr_t)parent;
    in_daemon_job = flags & MP__BOOT_F_JOB;
    size_t rawlen = (size_t)n * 8 + (size_t)nsocks * MP__BOOT_SOCK_LEN;
    mp__osh_t *tab = n ? mp__malloc(n * sizeof *tab) : NULL;
    uint8_t *raw = n ? mp__malloc(rawlen) : NULL;
    rc = n && (!tab || !raw) ? MP_ENOMEM : 0;
    if (!rc && n) rc = read_exact(h, raw, rawlen, &done);
    for (uint32_t i = 0; tab && raw && i < n; i++)
        tab[i] = rc ? MP__OSH_INVALID : (mp__osh_t)(intptr_t)get64(raw + 8 * i);
    if (!rc && nsocks) rc = make_sockets(raw + (size_t)n * 8, nsocks, tab, n);
    free(raw);
    void *rec = NULL;
    if (!rc) rc = read_record(h, rlen, &done, &rec);
    if (rc) {
        for (uint32_t i = 0; tab && i < n; i++)
            mp__osh_close(tab[i]);
        free(tab);
        return rc;
    }
    *record = rec;
    *len = (size_t)rlen;
    *handles = tab;
    *nhandles = n;
    return 0;
}

int mp__bootstrap_read(int argc, char **argv, void **record, size_t *len, mp__osh_t **handles,
                       size_t *nhandles)
{
    if (!mp__bootstrap_is_child(argc, argv))
        return mp__fail(MP_EINVAL, "bootstrap: not started as an mproc child");
    HANDLE h = NULL;
    int rc = parse_handle(argv[2], &h);
    if (rc) return rc;
    /* A stray value (someone ran us with the marker by hand) must not make
     * us read from, or close, a handle that is something else. */
    if (GetFileType(h) != FILE_TYPE_PIPE)
        return mp__fail(MP_EPROTO, "bootstrap: handle %s is not a pipe", argv[2]);
    rc = read_message(h, record, len, handles, nhandles);
    CloseHandle(h);
    if (rc && parent_process) {
        CloseHandle(parent_process);
        parent_process = NULL;
    }
    return rc;
}

/* Ends this process as if it had been killed, which is what POSIX's
 * parent-death signal does to a daemon. */
static void die_with_parent(void)
{
    TerminateProcess(GetCurrentProcess(), MP__W32_SIGBASE + MP__W32_SIGKILL);
    ExitProcess(MP__W32_SIGBASE + MP__W32_SIGKILL);
}

static DWORD WINAPI watch_parent(void *p)
{
    WaitForSingleObject(p, INFINITE);
    die_with_parent();
    return 0;
}

int mp__child_init(bool daemon, mp_pid_t parent_pid)
{
    HANDLE p = parent_process;
    parent_process = NULL;
    if (!daemon) {
        if (p) CloseHandle(p);
        return 0;
    }
    if (!p) {
        p = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)parent_pid);
        if (!p && GetLastError() == ERROR_INVALID_PARAMETER)
            die_with_parent(); /* no such process: it is gone */
        if (!p) return mp__fail_os("OpenProcess(parent)");
    }
    if (WaitForSingleObject(p, 0) == WAIT_OBJECT_0) die_with_parent();
    if (in_daemon_job) {
        /* The job kills us when the parent's handle on it closes. */
        CloseHandle(p);
        return 0;
    }
    HANDLE t = CreateThread(NULL, 65536, watch_parent, p, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (!t) {
        int rc = mp__fail_os("CreateThread(parent watcher)");
        CloseHandle(p);
        return rc;
    }
    CloseHandle(t);
    return 0;
}
