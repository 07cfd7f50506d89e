/* Child processes: CreateProcessW of a fresh executable, the bootstrap
 * channel that hands it the launch record, and the job object that takes
 * daemon children down with this process.
 *
 * Handles reach the child in two ways. The bootstrap pipe and the standard
 * handles are inherited through PROC_THREAD_ATTRIBUTE_HANDLE_LIST (so
 * their values are known before the child exists and nothing else is
 * inherited); the handles of the launch record are pushed into the child
 * with DuplicateHandle and their values travel in the bootstrap message,
 * so they are never inheritable at all.
 *
 * The child is not created suspended: until the bootstrap message arrives
 * it can do nothing but wait for it, so the handles and the job are in
 * place before any of its own code runs; and if we die before sending it,
 * its read fails and it exits, where a suspended child would be left
 * hanging forever. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

/* ---- the job that daemon children belong to ---- */

static HANDLE daemon_job;
static INIT_ONCE daemon_job_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK create_daemon_job(PINIT_ONCE once, void *param, void **ctx)
{
    (void)once;
    (void)param;
    (void)ctx;
    /* Never inheritable: the job must close when this process dies, which
     * it cannot while a child holds a copy of its handle. Silent breakaway
     * keeps the daemon's own children out of it (POSIX daemons do not take
     * their children with them either). */
    HANDLE j = CreateJobObjectW(NULL, NULL);
    if (!j) return TRUE; /* no job: children fall back to watching us */
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
    memset(&li, 0, sizeof li);
    li.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK;
    if (!SetInformationJobObject(j, JobObjectExtendedLimitInformation, &li, sizeof li)) {
        CloseHandle(j);
        return TRUE;
    }
    daemon_job = j;
    return TRUE;
}

/* True when the child is now in the kill-on-close job. Windows before 8
 * refuses when this process is in a job already (no nested jobs); the
 * child then watches this process itself (mp__child_init). */
static bool join_daemon_job(HANDLE proc)
{
    InitOnceExecuteOnce(&daemon_job_once, create_daemon_job, NULL, NULL);
    return daemon_job && AssignProcessToJobObject(daemon_job, proc);
}

/* ---- the bootstrap message ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes everything, or stops when the child ends (MP_EOF with
 * *child_gone): it then never reads, and must not make us wait. */
static int boot_write(HANDLE pipe, HANDLE ev, HANDLE proc, const uint8_t *p, size_t len,
                      bool *child_gone)
{
    while (len) {
        DWORD want = len > (1u << 20) ? (1u << 20) : (DWORD)len;
        OVERLAPPED ov = {0};
        ov.hEvent = ev;
        DWORD n = 0, err = 0;
        int r = WriteFile(pipe, p, want, NULL, &ov) ? MP__IO_DONE : MP__IO_ERROR;
        if (r == MP__IO_DONE && !GetOverlappedResult(pipe, &ov, &n, FALSE)) r = MP__IO_ERROR;
        if (r == MP__IO_ERROR) err = GetLastError();
        if (err == ERROR_IO_PENDING)
            r = mp__w32_io_wait(pipe, &ov, false, MP_FOREVER, proc, &n, &err);
        /* The child ended, or it closed the pipe (the only reader): it will
         * never read the rest. */
        if (r == MP__IO_EXTRA ||
            (r == MP__IO_ERROR && (err == ERROR_NO_DATA || err == ERROR_BROKEN_PIPE))) {
            *child_gone = true;
            return MP_EOF;
        }
        int rc = r == MP__IO_DONE ? 0 : mp__w32_fail("WriteFile(bootstrap)", err);
        if (rc) return rc;
        if (!n) return mp__fail(MP_ESYS, "WriteFile(bootstrap): wrote nothing");
        p += n;
        len -= n;
    }
    return 0;
}

static int send_bootstrap(HANDLE pipe, HANDLE proc, const mp__spawn_req_t *rq, const uint64_t *vals,
                          const uint8_t *socks, uint32_t nsocks, uint64_t parent, uint32_t flags)
{
    size_t slen = (size_t)nsocks * MP__BOOT_SOCK_LEN;
    size_t hlen = MP__BOOT_HDR_LEN + rq->npass * 8 + slen;
    uint8_t *h = mp__malloc(hlen);
    if (!h) return MP_ENOMEM;
    memcpy(h, MP__BOOT_MAGIC, 4);
    put32(h + 4, flags);
    put64(h + 8, parent);
    put32(h + 16, (uint32_t)rq->npass);
    put64(h + 20, rq->record_len);
    put32(h + 28, nsocks);
    for (size_t i = 0; i < rq->npass; i++)
        put64(h + MP__BOOT_HDR_LEN + 8 * i, vals[i]);
    if (slen) memcpy(h + MP__BOOT_HDR_LEN + rq->npass * 8, socks, slen);
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    bool gone = false;
    int rc = ev ? boot_write(pipe, ev, proc, h, hlen, &gone) : mp__fail_os("CreateEventW");
    if (!rc) rc = boot_write(pipe, ev, proc, rq->record, rq->record_len, &gone);
    if (ev) CloseHandle(ev);
    free(h);
    /* A child that died before reading has still been started: its exit
     * code says what happened, as for any child that dies early. */
    return gone ? 0 : rc;
}

/* Gives the child its copy of pass[i]: a handle pushed with DuplicateHandle,
 * or, for a socket, a WSAPROTOCOL_INFOW it builds the socket from (Winsock
 * does not promise that a duplicated handle is a socket in the target). */
static int pass_handle(HANDLE proc, DWORD pid, mp__osh_t h, uint32_t index, uint64_t *val,
                       uint8_t *sock, bool *is_sock)
{
    *val = (uint64_t)(uintptr_t)INVALID_HANDLE_VALUE;
    *is_sock = false;
    if (h == MP__OSH_INVALID) return 0;
    if (mp__w32_is_socket((HANDLE)h)) {
        WSAPROTOCOL_INFOW info;
        if (WSADuplicateSocketW((SOCKET)h, pid, &info))
            return mp__w32_fail("WSADuplicateSocketW", (DWORD)WSAGetLastError());
        put32(sock, index);
        memcpy(sock + 4, &info, sizeof info);
        *is_sock = true;
        return 0;
    }
    HANDLE v = NULL;
    if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)h, proc, &v, 0, FALSE, DUPLICATE_SAME_ACCESS))
        return mp__fail_os("DuplicateHandle(to child)");
    *val = (uint64_t)(uintptr_t)v;
    return 0;
}

/* ---- starting the child ---- */

/* Inheritable copies of this process's standard handles, so the child
 * writes where we do even when they are files or pipes (without
 * STARTF_USESTDHANDLES a child that inherits nothing gets no stdio). */
static void std_handles(STARTUPINFOW *si, HANDLE *list, DWORD *nlist)
{
    static const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
    HANDLE *slot[3] = {&si->hStdInput, &si->hStdOutput, &si->hStdError};
    for (int i = 0; i < 3; i++) {
        HANDLE h = GetStdHandle(which[i]), dup = NULL;
        if (h && h != INVALID_HANDLE_VALUE &&
            !DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, TRUE,
                             DUPLICATE_SAME_ACCESS))
            dup = NULL;
        *slot[i] = dup;
        if (dup) list[(*nlist)++] = dup;
    }
    si->dwFlags |= STARTF_USESTDHANDLES;
}

static wchar_t *command_line(const wchar_t *exe, HANDLE boot)
{
    size_t cap = wcslen(exe) + 64;
    wchar_t *cmd = mp__malloc(cap * sizeof *cmd);
    if (cmd)
        swprintf(cmd, cap, L"\"%ls\" " MP__BOOT_MARKER_W L" %llx", exe,
                 (unsigned long long)(uintptr_t)boot);
    return cmd;
}

/* Wine reports ERROR_INTERNAL_ERROR when the new process died before it
 * finished starting (seen under load while other children were being
 * killed). None of the child's code ran -- it would still be waiting for its
 * bootstrap -- so starting it again is safe; a persistent failure is still
 * reported. */
static int create_with_retry(const wchar_t *exe, wchar_t *cmd, STARTUPINFOEXW *si,
                             PROCESS_INFORMATION *pi)
{
    for (int attempt = 0;; attempt++) {
        if (CreateProcessW(exe, cmd, NULL, NULL, TRUE, EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
                           &si->StartupInfo, pi))
            return 0;
        if (GetLastError() != ERROR_INTERNAL_ERROR || attempt == 4)
            return mp__fail_os("CreateProcessW");
    }
}

static int create_process(const wchar_t *exe, HANDLE boot, PROCESS_INFORMATION *pi)
{
    wchar_t *cmd = command_line(exe, boot);
    if (!cmd) return MP_ENOMEM;
    STARTUPINFOEXW si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    HANDLE list[4];
    DWORD nlist = 0;
    list[nlist++] = boot;
    std_handles(&si.StartupInfo, list, &nlist);
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    si.lpAttributeList = mp__malloc(size);
    int rc = si.lpAttributeList ? 0 : MP_ENOMEM;
    if (!rc && !InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size)) {
        rc = mp__fail_os("InitializeProcThreadAttributeList");
        free(si.lpAttributeList);
        si.lpAttributeList = NULL;
    }
    if (!rc && !UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                          list, nlist * sizeof *list, NULL, NULL))
        rc = mp__fail_os("UpdateProcThreadAttribute");
    if (!rc) rc = create_with_retry(exe, cmd, &si, pi);
    if (si.lpAttributeList) {
        DeleteProcThreadAttributeList(si.lpAttributeList);
        free(si.lpAttributeList);
    }
    for (DWORD i = 1; i < nlist; i++)
        CloseHandle(list[i]);
    free(cmd);
    return rc;
}

static void abandon(PROCESS_INFORMATION *pi)
{
    /* It is still waiting for its bootstrap: none of its code ran. */
    TerminateProcess(pi->hProcess, MP_EXIT_BOOTSTRAP);
    WaitForSingleObject(pi->hProcess, INFINITE);
    CloseHandle(pi->hThread);
    CloseHandle(pi->hProcess);
}

int mp__child_spawn(const mp__spawn_req_t *rq, mp__child_t **out)
{
    if (!rq || !out || !rq->exe || (rq->record_len && !rq->record) || (rq->npass && !rq->pass))
        return mp__fail(MP_EINVAL, "mp__child_spawn: bad request");
    if (rq->npass > MP__BOOT_MAX_HANDLES || rq->record_len > MP__BOOT_MAX_RECORD)
        return mp__fail(MP_EMSGSIZE, "mp__child_spawn: %zu handles, %zu bytes", rq->npass,
                        rq->record_len);
    mp__child_t *c = mp__calloc(1, sizeof *c);
    uint64_t *vals = mp__calloc(rq->npass ? rq->npass : 1, sizeof *vals);
    uint8_t *socks = mp__malloc(rq->npass ? rq->npass * MP__BOOT_SOCK_LEN : 1);
    uint32_t nsocks = 0;
    wchar_t *exe = c && vals && socks ? mp__w32_wide(rq->exe) : NULL;
    HANDLE wr = NULL, rd = NULL, parent = NULL;
    PROCESS_INFORMATION pi;
    int rc = exe ? mp__w32_pipe_pair(PIPE_ACCESS_OUTBOUND, false, true, &wr, &rd)
                 : (c && vals && socks ? MP_ESYS : MP_ENOMEM);
    if (!rc) {
        rc = create_process(exe, rd, &pi);
        CloseHandle(rd);
        if (rc) {
            CloseHandle(wr);
            wr = NULL;
        }
    }
    bool started = !rc;
    for (size_t i = 0; i < rq->npass && !rc; i++) {
        bool is_sock;
        rc = pass_handle(pi.hProcess, pi.dwProcessId, rq->pass[i], (uint32_t)i, &vals[i],
                         socks + (size_t)nsocks * MP__BOOT_SOCK_LEN, &is_sock);
        nsocks += is_sock;
    }
    /* A handle on us in the child: it outlives our pid, unlike OpenProcess
     * by pid, which a recycled pid could fool. */
    if (!rc && !DuplicateHandle(GetCurrentProcess(), GetCurrentProcess(), pi.hProcess, &parent,
                                SYNCHRONIZE, FALSE, 0))
        rc = mp__fail_os("DuplicateHandle(parent to child)");
    uint32_t flags = 0;
    if (!rc && rq->daemon && join_daemon_job(pi.hProcess)) flags |= MP__BOOT_F_JOB;
    if (!rc)
        rc = send_bootstrap(wr, pi.hProcess, rq, vals, socks, nsocks, (uint64_t)(uintptr_t)parent,
                            flags);
    if (wr) CloseHandle(wr);
    if (started && rc) {
        abandon(&pi);
    } else if (started) {
        CloseHandle(pi.hThread);
        c->proc = pi.hProcess;
        c->pid = pi.dwProcessId;
        *out = c;
        c = NULL;
    }
    free(exe);
    free(vals);
    free(socks);
    free(c);
    return rc;
}

bool mp__os_has_fork(void)
{
    return false;
}

bool mp__child_outlives_thread(void)
{
    /* A child dies with the job object of the process, not of a thread. */
    return true;
}

int mp__child_fork(bool daemon, mp__child_t **c, bool *in_child)
{
    (void)daemon;
    (void)c;
    (void)in_child;
    return mp__fail(MP_ENOSYS, "fork does not exist on Windows");
}

mp_pid_t mp__child_pid(const mp__child_t *c)
{
    return (mp_pid_t)c->pid;
}

static int exit_status(DWORD code)
{
    if (code == MP__W32_SIGBASE + MP__W32_SIGTERM) return -MP__W32_SIGTERM;
    if (code == MP__W32_SIGBASE + MP__W32_SIGKILL) return -MP__W32_SIGKILL;
    return (int)code;
}

int mp__child_wait(mp__child_t *c, long timeout_ms, int *code)
{
    if (!c->done) {
        DWORD w = WaitForSingleObject(c->proc, mp__w32_ms(timeout_ms));
        if (w == WAIT_TIMEOUT)
            return mp__fail(MP_ETIMEDOUT, "process %lu is still running", (unsigned long)c->pid);
        if (w != WAIT_OBJECT_0) return mp__fail_os("WaitForSingleObject(process)");
        DWORD st;
        if (!GetExitCodeProcess(c->proc, &st)) return mp__fail_os("GetExitCodeProcess");
        c->code = exit_status(st);
        c->done = true;
    }
    if (code) *code = c->code;
    return 0;
}

int mp__child_signal(mp__child_t *c, bool kill)
{
    if (c->done) return 0;
    UINT st = MP__W32_SIGBASE + (kill ? MP__W32_SIGKILL : MP__W32_SIGTERM);
    if (TerminateProcess(c->proc, st)) return 0;
    DWORD err = GetLastError();
    /* Access is denied once the process has ended: nothing to stop. */
    if (WaitForSingleObject(c->proc, 0) == WAIT_OBJECT_0) return 0;
    return mp__w32_fail("TerminateProcess", err);
}

void mp__child_free(mp__child_t *c)
{
    if (!c) return;
    CloseHandle(c->proc);
    free(c);
}
