/* The raw floors on Windows: a named pipe to a child process started with
 * CreateProcess (the pipe end passed by inheritance), and CreateProcess +
 * WaitForSingleObject. Windows has no fork. */
#include <windows.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "bench.h"
#include "raw.h"

struct raw_stream {
    HANDLE h;
};

struct raw_child {
    HANDLE proc;
};

uint64_t raw_now_ns(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    uint64_t q = (uint64_t)c.QuadPart, hz = (uint64_t)f.QuadPart;
    return q / hz * 1000000000u + q % hz * 1000000000u / hz;
}

const char *raw_os_name(void)
{
    return "windows";
}

static const wchar_t *self_exe(void)
{
    static wchar_t path[32768];
    if (path[0]) return path;
    DWORD n = GetModuleFileNameW(NULL, path, sizeof path / sizeof path[0]);
    if (n == 0 || n >= sizeof path / sizeof path[0]) path[0] = 0;
    return path[0] ? path : NULL;
}

/* Starts this executable with RAW_CHILD_FLAG and extra (may be empty). */
static int start_self(const wchar_t *extra, BOOL inherit, HANDLE *proc)
{
    const wchar_t *exe = self_exe();
    if (!exe) return bench_fail("GetModuleFileNameW failed (%lu)", GetLastError());
    size_t cap = wcslen(exe) + wcslen(extra) + 64;
    wchar_t *cmd = malloc(cap * sizeof *cmd);
    if (!cmd) return bench_fail("start_self: out of memory");
    _snwprintf(cmd, cap, L"\"%ls\" " RAW_CHILD_FLAG L"%ls", exe, extra);
    cmd[cap - 1] = 0;
    STARTUPINFOW si;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    PROCESS_INFORMATION pi;
    /* Wine fails a start now and then with ERROR_INTERNAL_ERROR (the new
     * process died before it ran any of its code): try again. */
    BOOL ok = FALSE;
    for (int attempt = 0; !ok && attempt < 5; attempt++) {
        ok = CreateProcessW(exe, cmd, NULL, NULL, inherit, 0, NULL, NULL, &si, &pi);
        if (!ok && GetLastError() != ERROR_INTERNAL_ERROR) break;
    }
    free(cmd);
    if (!ok) return bench_fail("CreateProcessW failed (%lu)", GetLastError());
    CloseHandle(pi.hThread);
    *proc = pi.hProcess;
    return 0;
}

static int wait_proc(HANDLE proc, int *code)
{
    DWORD st = 0;
    int rc = 0;
    if (WaitForSingleObject(proc, INFINITE) != WAIT_OBJECT_0 || !GetExitCodeProcess(proc, &st))
        rc = bench_fail("waiting for a child failed (%lu)", GetLastError());
    CloseHandle(proc);
    *code = (int)st;
    return rc;
}

int raw_tcp_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    (void)role;
    (void)s;
    (void)c;
    return bench_skip("no raw TCP floor in the Windows build (raw_win32.c has no Winsock)");
}

int raw_unix_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    (void)role;
    (void)s;
    (void)c;
    return bench_skip("unix socket addresses are POSIX only");
}

int raw_tcp_connects(long count, long warm, double *us)
{
    (void)count;
    (void)warm;
    (void)us;
    return bench_skip("no raw TCP floor in the Windows build (raw_win32.c has no Winsock)");
}

int raw_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    static LONG counter;
    wchar_t name[96];
    _snwprintf(name, 96, L"\\\\.\\pipe\\mproc-bench-%lu-%ld", GetCurrentProcessId(),
               InterlockedIncrement(&counter));
    name[95] = 0;
    raw_stream_t *me = malloc(sizeof *me);
    raw_child_t *ch = malloc(sizeof *ch);
    if (!me || !ch) {
        free(me);
        free(ch);
        return bench_fail("raw_child_start: out of memory");
    }
    HANDLE srv = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                  PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT |
                                      PIPE_REJECT_REMOTE_CLIENTS,
                                  1, RAW_RBUF, RAW_RBUF, 0, NULL);
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    HANDLE cli = srv == INVALID_HANDLE_VALUE ? INVALID_HANDLE_VALUE
                                             : CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0,
                                                           &sa, OPEN_EXISTING, 0, NULL);
    int rc = 0;
    if (cli == INVALID_HANDLE_VALUE ||
        (!ConnectNamedPipe(srv, NULL) && GetLastError() != ERROR_PIPE_CONNECTED))
        rc = bench_fail("named pipe setup failed (%lu)", GetLastError());
    if (!rc) {
        wchar_t extra[64];
        _snwprintf(extra, 64, L" %d %lu", (int)role, (unsigned long)(uintptr_t)cli);
        extra[63] = 0;
        rc = start_self(extra, TRUE, &ch->proc);
    }
    if (cli != INVALID_HANDLE_VALUE) CloseHandle(cli);
    if (rc) {
        if (srv != INVALID_HANDLE_VALUE) CloseHandle(srv);
        free(me);
        free(ch);
        return rc;
    }
    me->h = srv;
    *s = me;
    *c = ch;
    return 0;
}

int raw_child_join(raw_child_t *c, int *code)
{
    int rc = wait_proc(c->proc, code);
    free(c);
    return rc;
}

void raw_stream_close(raw_stream_t *s)
{
    if (!s) return;
    CloseHandle(s->h);
    free(s);
}

static int write_all(HANDLE h, const char *p, size_t n)
{
    while (n) {
        DWORD chunk = n > 0x40000000u ? 0x40000000u : (DWORD)n, w = 0;
        if (!WriteFile(h, p, chunk, &w, NULL)) {
            DWORD e = GetLastError();
            if (e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA) return RAW_EOF;
            return bench_fail("WriteFile failed (%lu)", e);
        }
        p += w;
        n -= w;
    }
    return 0;
}

int raw_write(raw_stream_t *s, const void *a, size_t na, const void *b, size_t nb)
{
    int rc = write_all(s->h, a, na);
    return rc || !b ? rc : write_all(s->h, b, nb);
}

int raw_read(raw_stream_t *s, void *buf, size_t cap, size_t *got)
{
    *got = 0;
    DWORD chunk = cap > 0x40000000u ? 0x40000000u : (DWORD)cap, n = 0;
    for (;;) {
        if (!ReadFile(s->h, buf, chunk, &n, NULL)) {
            DWORD e = GetLastError();
            if (e == ERROR_BROKEN_PIPE) return RAW_EOF;
            return bench_fail("ReadFile failed (%lu)", e);
        }
        if (n) break;
    }
    *got = n;
    return 0;
}

/* The child of the semaphore ping-pong: argv = flag, "sem", ping, pong,
 * rounds (inherited handle values). */
static int sem_child(char **argv)
{
    HANDLE ping = (HANDLE)(uintptr_t)strtoull(argv[3], NULL, 10);
    HANDLE pong = (HANDLE)(uintptr_t)strtoull(argv[4], NULL, 10);
    long total = strtol(argv[5], NULL, 10);
    for (long i = 0; i < total; i++)
        if (WaitForSingleObject(ping, INFINITE) != WAIT_OBJECT_0 ||
            !ReleaseSemaphore(pong, 1, NULL))
            return 21;
    return 0;
}

int raw_sem_pingpong(long count, double *us)
{
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    HANDLE ping = CreateSemaphoreW(&sa, 0, LONG_MAX, NULL);
    HANDLE pong = CreateSemaphoreW(&sa, 0, LONG_MAX, NULL);
    long total = count + RAW_WARM_ROUNDS;
    HANDLE proc = NULL;
    int rc = ping && pong ? 0 : bench_fail("CreateSemaphoreW failed (%lu)", GetLastError());
    if (!rc) {
        wchar_t extra[96];
        _snwprintf(extra, 96, L" sem %llu %llu %ld", (unsigned long long)(uintptr_t)ping,
                   (unsigned long long)(uintptr_t)pong, total);
        extra[95] = 0;
        rc = start_self(extra, TRUE, &proc);
    }
    uint64_t t0 = 0;
    for (long i = 0; !rc && i < total; i++) {
        if (i == RAW_WARM_ROUNDS) t0 = raw_now_ns();
        if (!ReleaseSemaphore(ping, 1, NULL) ||
            WaitForSingleObject(pong, INFINITE) != WAIT_OBJECT_0)
            rc = bench_fail("semaphore ping-pong failed (%lu)", GetLastError());
    }
    *us = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    if (proc) {
        int code = 0;
        if (rc) TerminateProcess(proc, 1);
        int jrc = wait_proc(proc, &code);
        if (!rc) rc = jrc ? jrc : code ? bench_fail("the raw child exited with %d", code) : 0;
    }
    /* Nothing may be left over: a lost or doubled handoff shows here. */
    if (!rc && (WaitForSingleObject(ping, 0) == WAIT_OBJECT_0 ||
                WaitForSingleObject(pong, 0) == WAIT_OBJECT_0))
        rc = bench_fail("raw: a semaphore was left signalled");
    if (ping) CloseHandle(ping);
    if (pong) CloseHandle(pong);
    return rc;
}

int raw_fork_join(int *code)
{
    (void)code;
    return bench_skip("Windows has no fork");
}

int raw_spawn_join(int *code)
{
    HANDLE proc;
    int rc = start_self(L"", FALSE, &proc);
    return rc ? rc : wait_proc(proc, code);
}

int raw_fork_join_n(int n, int *code)
{
    (void)n;
    (void)code;
    return bench_skip("Windows has no fork");
}

int raw_spawn_join_n(int n, int *code)
{
    HANDLE proc[RAW_MAX_CHILDREN];
    int started = 0, rc = 0;
    for (; !rc && started < n && started < RAW_MAX_CHILDREN; started++)
        rc = start_self(L"", FALSE, &proc[started]);
    if (rc) started--;
    *code = 0;
    for (int i = 0; i < started; i++) {
        int c = 0, w = wait_proc(proc[i], &c);
        if (!rc) rc = w;
        if (!*code) *code = c;
    }
    return rc;
}

/* A kernel mutex object: what a Windows process shares to lock across
 * processes, and it reports an owner's death (WAIT_ABANDONED). */
int raw_mutex_loop(long count, double *ns, long *held)
{
    HANDLE m = CreateMutexW(NULL, FALSE, NULL);
    if (!m) return bench_fail("CreateMutexW failed (%lu)", GetLastError());
    int rc = 0;
    volatile long inside = 0;
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++) {
        if (WaitForSingleObject(m, INFINITE) != WAIT_OBJECT_0) {
            rc = bench_fail("WaitForSingleObject(mutex) failed (%lu)", GetLastError());
            break;
        }
        inside = inside + 1;
        if (!ReleaseMutex(m)) rc = bench_fail("ReleaseMutex failed (%lu)", GetLastError());
    }
    *ns = (double)(raw_now_ns() - t0) / (double)count;
    *held = inside;
    CloseHandle(m);
    return rc;
}

int raw_child_main(int argc, char **argv)
{
    if (argc == 2) return 0;
    if (argc == 6 && !strcmp(argv[2], "sem")) return sem_child(argv);
    if (argc != 4) return 2;
    raw_role_t role = (raw_role_t)atoi(argv[2]);
    raw_stream_t s = {(HANDLE)(uintptr_t)strtoul(argv[3], NULL, 10)};
    int code = raw_role_run(role, &s);
    CloseHandle(s.h);
    return code;
}
