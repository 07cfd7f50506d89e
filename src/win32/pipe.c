/* Named pipes private to this user, and waiting for overlapped I/O. */
#include <stdio.h>
#include <string.h>

#include "win32.h"

/* Byte-mode buffer sizes; a write larger than this waits for the reader. */
#define PIPE_BUF_BYTES 65536u
/* A collision on a 128-bit random name means someone squats our names. */
#define NAME_ATTEMPTS 4

static struct {
    SECURITY_DESCRIPTOR sd;
    union {
        ACL acl;
        DWORD align;
        unsigned char bytes[sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) + SECURITY_MAX_SID_SIZE];
    } dacl;
    union {
        DWORD align;
        unsigned char bytes[SECURITY_MAX_SID_SIZE];
    } sid;
} user_only;
static INIT_ONCE user_only_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK build_user_only(PINIT_ONCE once, void *param, void **ctx)
{
    (void)once;
    (void)ctx;
    int *rc = param;
    HANDLE tok;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) {
        *rc = mp__fail_os("OpenProcessToken");
        return FALSE;
    }
    union {
        TOKEN_USER tu;
        unsigned char bytes[sizeof(TOKEN_USER) + SECURITY_MAX_SID_SIZE];
    } info;
    DWORD len = 0;
    BOOL ok = GetTokenInformation(tok, TokenUser, &info, sizeof info, &len);
    DWORD err = GetLastError();
    CloseHandle(tok);
    if (!ok) {
        *rc = mp__w32_fail("GetTokenInformation", err);
        return FALSE;
    }
    PSID sid = user_only.sid.bytes;
    if (!CopySid(sizeof user_only.sid.bytes, sid, info.tu.User.Sid)) {
        *rc = mp__fail_os("CopySid");
        return FALSE;
    }
    /* Specific rights: generic ones in a DACL passed at creation are not
     * mapped by every implementation (Wine's, for one). */
    if (!InitializeAcl(&user_only.dacl.acl, sizeof user_only.dacl.bytes, ACL_REVISION) ||
        !AddAccessAllowedAce(&user_only.dacl.acl, ACL_REVISION, FILE_ALL_ACCESS, sid)) {
        *rc = mp__fail_os("AddAccessAllowedAce");
        return FALSE;
    }
    if (!InitializeSecurityDescriptor(&user_only.sd, SECURITY_DESCRIPTOR_REVISION) ||
        !SetSecurityDescriptorDacl(&user_only.sd, TRUE, &user_only.dacl.acl, FALSE)) {
        *rc = mp__fail_os("SetSecurityDescriptorDacl");
        return FALSE;
    }
    return TRUE;
}

int mp__w32_user_only_sa(SECURITY_ATTRIBUTES *sa)
{
    int rc = MP_ESYS;
    if (!InitOnceExecuteOnce(&user_only_once, build_user_only, &rc, NULL)) return rc;
    sa->nLength = sizeof *sa;
    sa->lpSecurityDescriptor = &user_only.sd;
    sa->bInheritHandle = FALSE;
    return 0;
}

int mp__w32_random_hex(wchar_t hex[33])
{
    unsigned char r[16];
    int rc = mp__os_random(r, sizeof r);
    if (rc) return rc;
    static const wchar_t digits[] = L"0123456789abcdef";
    for (size_t i = 0; i < sizeof r; i++) {
        hex[2 * i] = digits[r[i] >> 4];
        hex[2 * i + 1] = digits[r[i] & 15];
    }
    hex[32] = 0;
    return 0;
}

int mp__w32_pipe_pair(DWORD server_access, bool client_overlapped, bool client_inherit,
                      HANDLE *server, HANDLE *client)
{
    SECURITY_ATTRIBUTES sa;
    int rc = mp__w32_user_only_sa(&sa);
    if (rc) return rc;
    wchar_t name[96], hex[33];
    HANDLE s = INVALID_HANDLE_VALUE;
    for (int attempt = 0; s == INVALID_HANDLE_VALUE; attempt++) {
        rc = mp__w32_random_hex(hex);
        if (rc) return rc;
        swprintf(name, sizeof name / sizeof *name, L"\\\\.\\pipe\\mproc-%lu-%ls",
                 (unsigned long)GetCurrentProcessId(), hex);
        DWORD out = server_access == PIPE_ACCESS_INBOUND ? 0 : PIPE_BUF_BYTES;
        DWORD in = server_access == PIPE_ACCESS_OUTBOUND ? 0 : PIPE_BUF_BYTES;
        s = CreateNamedPipeW(
            name, server_access | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1, out,
            in, 0, &sa);
        if (s == INVALID_HANDLE_VALUE) {
            DWORD err = GetLastError();
            if ((err != ERROR_ACCESS_DENIED && err != ERROR_PIPE_BUSY) ||
                attempt + 1 == NAME_ATTEMPTS)
                return mp__w32_fail("CreateNamedPipeW", err);
        }
    }
    DWORD access = server_access == PIPE_ACCESS_DUPLEX    ? GENERIC_READ | GENERIC_WRITE
                   : server_access == PIPE_ACCESS_INBOUND ? GENERIC_WRITE | FILE_READ_ATTRIBUTES
                                                          : GENERIC_READ;
    /* FILE_READ_ATTRIBUTES lets a write-only end be recognised as a pipe
     * (GetNamedPipeInfo) where it is adopted. */
    SECURITY_ATTRIBUTES csa = {sizeof csa, NULL, client_inherit};
    /* SQOS: the server end may only identify, never impersonate, us. */
    HANDLE c = CreateFileW(name, access, 0, &csa, OPEN_EXISTING,
                           (client_overlapped ? FILE_FLAG_OVERLAPPED : 0) | SECURITY_SQOS_PRESENT |
                               SECURITY_IDENTIFICATION,
                           NULL);
    if (c == INVALID_HANDLE_VALUE) {
        rc = mp__fail_os("CreateFileW(pipe client)");
        CloseHandle(s);
        return rc;
    }
    /* The client is already there, so this reports ERROR_PIPE_CONNECTED. */
    OVERLAPPED ov = {0};
    if (!ConnectNamedPipe(s, &ov)) {
        DWORD err = GetLastError();
        if (err == ERROR_IO_PENDING) {
            /* Not expected; but a pending connect must be waited for
             * before ov goes away: wait on the pipe handle itself. */
            DWORD n;
            err = GetOverlappedResult(s, &ov, &n, TRUE) ? ERROR_PIPE_CONNECTED : GetLastError();
        }
        if (err != ERROR_PIPE_CONNECTED) {
            rc = mp__w32_fail("ConnectNamedPipe", err);
            CloseHandle(c);
            CloseHandle(s);
            return rc;
        }
    }
    *server = s;
    *client = c;
    return 0;
}

static BOOL result(HANDLE h, OVERLAPPED *ov, bool sock, DWORD *n, BOOL wait, DWORD *err)
{
    DWORD flags = 0;
    BOOL ok = sock ? WSAGetOverlappedResult((SOCKET)h, ov, n, wait, &flags)
                   : GetOverlappedResult(h, ov, n, wait);
    *err = ok ? 0 : sock ? (DWORD)WSAGetLastError() : GetLastError();
    return ok;
}

int mp__w32_io_wait(HANDLE h, OVERLAPPED *ov, bool sock, long timeout_ms, HANDLE extra, DWORD *n,
                    DWORD *err)
{
    HANDLE objs[2] = {ov->hEvent, extra};
    DWORD w = WaitForMultipleObjects(extra ? 2 : 1, objs, FALSE, mp__w32_ms(timeout_ms));
    DWORD wait_err = w == WAIT_FAILED ? GetLastError() : 0;
    if (w != WAIT_OBJECT_0) CancelIoEx(h, ov); /* fails harmlessly if it completed meanwhile */
    *n = 0;
    /* Always collect the result: the kernel may write to ov until then. */
    if (result(h, ov, sock, n, TRUE, err)) return MP__IO_DONE;
    bool aborted = *err == ERROR_OPERATION_ABORTED || *err == WSA_OPERATION_ABORTED;
    if (wait_err) {
        *err = wait_err;
        return MP__IO_ERROR;
    }
    if (aborted && w == WAIT_TIMEOUT) return MP__IO_TIMEOUT;
    if (aborted && w == WAIT_OBJECT_0 + 1) return MP__IO_EXTRA;
    return MP__IO_ERROR;
}
