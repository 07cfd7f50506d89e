/* The process itself: ids, paths, clock, randomness and error mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#include <bcrypt.h>
#include <tlhelp32.h>

static int map_error(DWORD err)
{
    switch (err) {
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case ERROR_PIPE_NOT_CONNECTED:
    case ERROR_HANDLE_EOF:
        return MP_EOF;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_COMMITMENT_LIMIT:
    case ERROR_NO_SYSTEM_RESOURCES:
        return MP_ENOMEM;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_MOD_NOT_FOUND:
    case ERROR_PROC_NOT_FOUND:
        return MP_ENOTFOUND;
    case ERROR_ACCESS_DENIED:
    case ERROR_PRIVILEGE_NOT_HELD:
        return MP_EPERM;
    case ERROR_INVALID_PARAMETER:
        return MP_EINVAL;
    case ERROR_ALREADY_EXISTS:
    case ERROR_FILE_EXISTS:
        return MP_EEXIST;
    case WAIT_TIMEOUT:
    case ERROR_TIMEOUT:
    case ERROR_SEM_TIMEOUT:
        return MP_ETIMEDOUT;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED:
        return MP_ENOSYS;
    case ERROR_PIPE_BUSY:
        return MP_EBUSY;
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAESHUTDOWN:
    case WSAENETRESET:
        return MP_EOF;
    case WSAECONNREFUSED:
    case WSAHOST_NOT_FOUND:
    case WSANO_DATA:
    case WSAEADDRNOTAVAIL:
    case WSAEAFNOSUPPORT:
        return MP_ENOTFOUND;
    case WSAEADDRINUSE:
        return MP_EEXIST;
    case WSAEACCES:
        return MP_EPERM;
    case WSAETIMEDOUT:
        return MP_ETIMEDOUT;
    case WSAENOBUFS:
        return MP_ENOMEM;
    case WSAEINVAL:
        return MP_EINVAL;
    default:
        return MP_ESYS;
    }
}

int mp__w32_fail(const char *call, DWORD err)
{
    wchar_t *w = NULL;
    char text[256] = "";
    DWORD len = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM |
                                   FORMAT_MESSAGE_IGNORE_INSERTS,
                               NULL, err, 0, (LPWSTR)&w, 0, NULL);
    if (len && w) {
        /* System messages end in CR LF (and sometimes a space). */
        while (len && (w[len - 1] == L'\r' || w[len - 1] == L'\n' || w[len - 1] == L' '))
            w[--len] = 0;
        WideCharToMultiByte(CP_UTF8, 0, w, -1, text, (int)sizeof text, NULL, NULL);
        text[sizeof text - 1] = 0;
    }
    if (w) LocalFree(w);
    return mp__fail(map_error(err), "%s: %s (error %lu)", call, text[0] ? text : "unknown error",
                    (unsigned long)err);
}

int mp__fail_os(const char *call)
{
    return mp__w32_fail(call, GetLastError());
}

wchar_t *mp__w32_wide(const char *s)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        mp__fail_os("MultiByteToWideChar");
        return NULL;
    }
    wchar_t *w = mp__malloc((size_t)n * sizeof *w);
    if (w && MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        mp__fail_os("MultiByteToWideChar");
        free(w);
        w = NULL;
    }
    return w;
}

char *mp__w32_utf8(const wchar_t *s)
{
    int n = WideCharToMultiByte(CP_UTF8, 0, s, -1, NULL, 0, NULL, NULL);
    if (n <= 0) {
        mp__fail_os("WideCharToMultiByte");
        return NULL;
    }
    char *u = mp__malloc((size_t)n);
    if (u && WideCharToMultiByte(CP_UTF8, 0, s, -1, u, n, NULL, NULL) != n) {
        mp__fail_os("WideCharToMultiByte");
        free(u);
        u = NULL;
    }
    return u;
}

DWORD mp__w32_ms(long timeout_ms)
{
    /* long is 32 bits here, so every non-negative value fits below INFINITE. */
    return timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms;
}

void mp__osh_close(mp__osh_t h)
{
    if (h != MP__OSH_INVALID && h != 0) CloseHandle((HANDLE)h);
}

int mp__os_cpu_count(void)
{
    DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    if (!n) {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        n = si.dwNumberOfProcessors;
    }
    return n ? (int)n : 1;
}

mp_pid_t mp__os_getpid(void)
{
    return (mp_pid_t)GetCurrentProcessId();
}

mp_pid_t mp__os_getppid(void)
{
    /* Only kernel32: the snapshot is slow, but children learn their parent
     * from the launch record, so this serves the main process alone. */
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE) return -1;
    DWORD me = GetCurrentProcessId();
    mp_pid_t ppid = -1;
    PROCESSENTRY32W pe;
    pe.dwSize = sizeof pe;
    for (BOOL ok = Process32FirstW(snap, &pe); ok; ok = Process32NextW(snap, &pe))
        if (pe.th32ProcessID == me) {
            ppid = (mp_pid_t)pe.th32ParentProcessID;
            break;
        }
    CloseHandle(snap);
    return ppid;
}

int mp__w32_module_path(HMODULE m, char **path)
{
    DWORD cap = MAX_PATH;
    for (;;) {
        wchar_t *w = mp__malloc(cap * sizeof *w);
        if (!w) return MP_ENOMEM;
        DWORD n = GetModuleFileNameW(m, w, cap);
        if (!n) {
            free(w);
            return mp__fail_os("GetModuleFileNameW");
        }
        if (n < cap) {
            *path = mp__w32_utf8(w);
            free(w);
            return *path ? 0 : MP_ESYS;
        }
        free(w);
        if (cap >= 32768)
            return mp__fail(MP_ESYS, "GetModuleFileNameW: path longer than 32767 characters");
        cap *= 2;
    }
}

int mp__os_exe_path(char **path)
{
    return mp__w32_module_path(NULL, path);
}

void mp__os_exit(int code)
{
    /* ExitProcess would run DLL detach code after killing the other
     * threads, possibly on locks they held; _exit on POSIX runs nothing. */
    TerminateProcess(GetCurrentProcess(), (UINT)code);
    ExitProcess((UINT)code);
}

int mp__os_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ULONG k = n > 0x40000000u ? 0x40000000u : (ULONG)n;
        NTSTATUS st = BCryptGenRandom(NULL, p, k, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        if (st < 0)
            return mp__fail(MP_ESYS, "BCryptGenRandom: NTSTATUS 0x%08lx", (unsigned long)st);
        p += k;
        n -= k;
    }
    return 0;
}

void mp__os_yield(void)
{
    SwitchToThread();
}

uint64_t mp__os_now_ns(void)
{
    LARGE_INTEGER freq, c;
    /* Neither fails since Windows XP; the frequency is read from shared
     * memory, so asking each time is cheap and needs no lock. */
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    uint64_t f = (uint64_t)freq.QuadPart, t = (uint64_t)c.QuadPart;
    return t / f * 1000000000u + t % f * 1000000000u / f;
}

uint64_t mp__os_thread_id(void)
{
    /* Thread ids share one namespace with process ids and are never 0. */
    return GetCurrentThreadId();
}
