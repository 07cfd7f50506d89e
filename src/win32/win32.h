/* Private helpers shared by the files of the Win32 backend. */
#ifndef MP_WIN32_H
#define MP_WIN32_H

#include <winsock2.h>
#include <windows.h>

#include "internal.h"

/* Records err (a GetLastError / WSAGetLastError value) for the call named;
 * returns the MP_E* code it maps to. */
int mp__w32_fail(const char *call, DWORD err);

/* UTF-8 <-> UTF-16, malloc'd; NULL after recording a failure. */
wchar_t *mp__w32_wide(const char *s);
char *mp__w32_utf8(const wchar_t *s);

/* The full path of module m (NULL: the executable) in UTF-8, malloc'd;
 * GetModuleFileNameW truncates silently, so the buffer grows until it fits. */
int mp__w32_module_path(HMODULE m, char **path);

/* A timeout for the Wait* functions. */
DWORD mp__w32_ms(long timeout_ms);

/* The security attributes of every pipe we create: a DACL that grants the
 * current user alone (the default one also admits SYSTEM, administrators
 * and, on some systems, everyone). Not inheritable. */
int mp__w32_user_only_sa(SECURITY_ATTRIBUTES *sa);

/* 32 random hex digits, for names nobody can predict. */
int mp__w32_random_hex(wchar_t hex[33]);

/* A named-pipe pair in byte mode, both ends private to this user.
 * server_access is PIPE_ACCESS_DUPLEX / _INBOUND / _OUTBOUND; the client
 * gets the matching access. The server end is overlapped; the client is
 * too unless client_overlapped is false (plain blocking I/O), and
 * client_inherit makes it inheritable. */
int mp__w32_pipe_pair(DWORD server_access, bool client_overlapped, bool client_inherit,
                      HANDLE *server, HANDLE *client);

/* How an overlapped operation ended (mp__w32_io_wait). */
enum { MP__IO_DONE, MP__IO_TIMEOUT, MP__IO_EXTRA, MP__IO_ERROR };
/* Waits for the overlapped operation ov on h to complete, at most
 * timeout_ms, and no longer than until extra (if not NULL) is signalled;
 * then it is cancelled, unless it completed meanwhile. *n receives the
 * bytes transferred and, for MP__IO_ERROR, *err the error it ended with
 * (ERROR_MORE_DATA is one: a partial message). The OVERLAPPED is always
 * free again on return. sock: h is a socket (WSAGetOverlappedResult gives
 * its errors as WSA codes). */
int mp__w32_io_wait(HANDLE h, OVERLAPPED *ov, bool sock, long timeout_ms, HANDLE extra, DWORD *n,
                    DWORD *err);

/* A robust lock in shared memory (lockword.c): word is 0 when free and
 * zeroed memory is a free lock; wake is an auto-reset event that every
 * process using the lock holds. Take: 0, MP_EOWNERDEAD (the owner thread
 * ended holding it; now the caller's), MP_ETIMEDOUT (timeout 0: a try);
 * MP_EPERM when the calling thread holds it already. Give: MP_EPERM when
 * the calling thread does not hold it. */
int mp__w32_lock_take(_Atomic uint64_t *word, HANDLE wake, long timeout_ms);
int mp__w32_lock_give(_Atomic uint64_t *word, HANDLE wake);

/* Streams come in three kinds: byte-mode pipes (mp__stream_pair), message-
 * mode pipes (pipe: listeners, CPython's PipeConnection) and TCP sockets. */
enum { MP__W32_PIPE, MP__W32_MSGPIPE, MP__W32_SOCKET };

struct mp__stream {
    HANDLE h;   /* a SOCKET for MP__W32_SOCKET */
    HANDLE rev; /* event for read-side overlapped operations */
    HANDLE wev; /* event for writes, so another thread may write meanwhile */
    int kind;
    /* A readiness probe on a message pipe consumed an empty message: the
     * next message read returns it. */
    bool empty_msg;
};

/* Wraps h as a stream of kind; on failure h is still the caller's. */
int mp__w32_stream_new(HANDLE h, int kind, mp__stream_t **out);
/* Readiness probes, for mp__stream_poll and mp__wait_many: a zero-byte
 * overlapped read completes when the stream becomes readable (data or
 * EOF) and consumes nothing. arm: 1 readable now, 0 armed (ov->hEvent
 * signals when it may be), <0 an error. disarm ends an armed probe: 1
 * readable, 0 not. */
int mp__w32_stream_arm(mp__stream_t *s, OVERLAPPED *ov);
int mp__w32_stream_disarm(mp__stream_t *s, OVERLAPPED *ov);

/* Winsock, started on first use and never stopped. */
int mp__w32_wsa_init(void);
/* Whether h is a socket (false whenever this process never used Winsock:
 * then no socket of ours can exist). */
bool mp__w32_is_socket(HANDLE h);
/* The TCP side of listeners and clients (socket.c). */
typedef struct mp__w32_tcp_server mp__w32_tcp_server_t;
int mp__w32_tcp_listen(const mp__addr_t *a, int backlog, bool allow_remote,
                       mp__w32_tcp_server_t **out, char **address);
int mp__w32_tcp_accept(mp__w32_tcp_server_t *t, long timeout_ms, mp__stream_t **st);
void mp__w32_tcp_close(mp__w32_tcp_server_t *t);
int mp__w32_tcp_connect(const mp__addr_t *a, long timeout_ms, mp__stream_t **st);

struct mp__child {
    HANDLE proc;
    DWORD pid;
    bool done;
    int code;
};

/* Exit codes that TerminateProcess gives, read back as -15 / -9. */
#define MP__W32_SIGBASE 0x10000u
#define MP__W32_SIGTERM 15
#define MP__W32_SIGKILL 9

/* The bootstrap channel: the parent writes, on a pipe the child inherits
 * (its handle value is on the command line), a header (little-endian)
 *   "MPB1" | u32 flags | u64 parent handle | u32 nhandles | u64 record_len
 *   | u32 nsockets
 * then nhandles u64 handle values (valid in the child), nsockets entries
 * of a u32 table index and a WSAPROTOCOL_INFOW (a socket for that slot,
 * from WSADuplicateSocketW), and the record. */
#define MP__BOOT_MARKER "--mproc-child"
#define MP__BOOT_MARKER_W L"--mproc-child"
#define MP__BOOT_MAGIC "MPB1"
#define MP__BOOT_HDR_LEN 32u
#define MP__BOOT_F_JOB 1u /* the child is in the parent's kill-on-close job */
#define MP__BOOT_MAX_HANDLES 65536u
#define MP__BOOT_MAX_RECORD ((uint64_t)1 << 32)
#define MP__BOOT_SOCK_LEN (4u + (unsigned)sizeof(WSAPROTOCOL_INFOW))

#endif
