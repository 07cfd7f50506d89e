/* Shared segments on Windows (contract in platform.h).
 *
 * A segment is a pagefile-backed file mapping, its robust mutexes are
 * lock words in the header with an event each for their sleepers
 * (lockword.c) and its wait queues are semaphores carrying wake tokens.
 * Every object is named in this session's namespace (Local\), with the
 * user-only DACL: private segments under a random name, mp_shm ones under
 * their user name. Kernel objects live exactly as long as some process
 * holds a handle, so nothing can outlive its holders, however they die.
 *
 * Windows cannot take a name away from a live object, so unlinking marks
 * the header GONE (opens then fail) and a later create of the name uses the
 * next generation of it: "mproc-u-<name>.<gen>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "win32.h"

#include <winioctl.h>

#define SEG_MAGIC 0x4753504du /* "MPSG" */
#define SEG_VERSION 3u
#define SEG_SLOT 64
#define SEG_PAGE 4096u
#define SEG_LIVE 0
#define SEG_GONE 1
/* Generations of one user name that may exist at once (unlinked ones
 * still mapped somewhere, and the live one). */
#define MAX_GEN 16
#define NAME_TRIES 8
/* A segment whose creator is still writing its header: how long an open
 * waits for it. */
#define HALF_MADE_MS 2000
#define OS_NAME_MAX 64

typedef struct {
    _Atomic uint32_t magic; /* stored last, with release, at create */
    uint32_t version;
    uint32_t tag;
    uint32_t nmutex, nwq;
    uint32_t hdr_size; /* offset of the user area */
    uint64_t size;     /* bytes of the user area */
    uint8_t key[16];
    _Atomic uint32_t state;
    uint32_t named;
    uint32_t ext;                   /* extension space: the file below */
    wchar_t ext_path[MAX_PATH + 1]; /* NUL-terminated */
} seg_hdr_t;

/* A mutex's shared part: its lock word (lockword.c). */
typedef struct {
    _Atomic uint64_t word;
} seg_mutex_t;

/* A wait queue's shared part: how many may be asleep on it. */
typedef struct {
    _Atomic uint32_t waiters;
} seg_wq_t;

struct mp__seg {
    struct mp__seg *next; /* the registry of this process's segments */
    int refs;
    wchar_t os_name[OS_NAME_MAX]; /* without Local\ */
    char name[MP__SEG_NAME_MAX + 1];
    bool user_named;
    HANDLE map;
    uint8_t *base;
    seg_hdr_t *hdr;
    seg_mutex_t *mutex[MP__SEG_MAX_MUTEX];
    seg_wq_t *wq[MP__SEG_MAX_WQ];
    void *user;
    HANDLE lock_ev[MP__SEG_MAX_MUTEX]; /* a mutex's sleepers wait on it */
    HANDLE sem[MP__SEG_MAX_WQ];
    HANDLE ext; /* the extension file */
};

enum { REF_HANDLES = 1, REF_NAME };

static SRWLOCK reg_lock = SRWLOCK_INIT;
static mp__seg_t *reg;

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

static size_t hdr_size_for(unsigned nmutex, unsigned nwq, bool named)
{
    size_t end = align_up(sizeof(seg_hdr_t), SEG_SLOT) + (size_t)(nmutex + nwq) * SEG_SLOT;
    return align_up(end, named ? SEG_PAGE : SEG_SLOT);
}

static bool name_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > MP__SEG_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A validated name (ASCII only) as UTF-16. */
static void widen(const char *in, wchar_t *out)
{
    do
        *out++ = (wchar_t)(unsigned char)*in;
    while (*in++);
}

/* The kernel name of s's mapping (kind 0), mutex i's event (kind 'l') or
 * wait queue i (kind 'q'). */
static void object_name(const mp__seg_t *s, int kind, unsigned i, wchar_t *out, size_t cap)
{
    if (kind)
        swprintf(out, cap, L"Local\\%ls.%c%u", s->os_name, kind, i);
    else
        swprintf(out, cap, L"Local\\%ls", s->os_name);
}

/* ---- building and tearing down ---- */

static void seg_destroy(mp__seg_t *s)
{
    for (unsigned i = 0; i < MP__SEG_MAX_MUTEX; i++)
        if (s->lock_ev[i]) CloseHandle(s->lock_ev[i]);
    for (unsigned q = 0; q < MP__SEG_MAX_WQ; q++)
        if (s->sem[q]) CloseHandle(s->sem[q]);
    if (s->base) UnmapViewOfFile(s->base);
    if (s->map) CloseHandle(s->map);
    if (s->ext) CloseHandle(s->ext);
    free(s);
}

static void seg_layout(mp__seg_t *s)
{
    uint8_t *slots = s->base + align_up(sizeof(seg_hdr_t), SEG_SLOT);
    for (unsigned i = 0; i < s->hdr->nmutex; i++)
        s->mutex[i] = (seg_mutex_t *)(slots + (size_t)i * SEG_SLOT);
    slots += (size_t)s->hdr->nmutex * SEG_SLOT;
    for (unsigned q = 0; q < s->hdr->nwq; q++)
        s->wq[q] = (seg_wq_t *)(slots + (size_t)q * SEG_SLOT);
    s->user = s->base + s->hdr->hdr_size;
}

/* Maps the whole of s->map and learns its size. */
static int map_all(mp__seg_t *s, size_t *len)
{
    *len = 0; /* set on every path: the callers' use is then plainly defined */
    s->base = MapViewOfFile(s->map, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0);
    if (!s->base) return mp__fail_os("MapViewOfFile");
    MEMORY_BASIC_INFORMATION mi;
    if (!VirtualQuery(s->base, &mi, sizeof mi)) return mp__fail_os("VirtualQuery");
    *len = mi.RegionSize;
    s->hdr = (seg_hdr_t *)s->base;
    return 0;
}

/* Waits (briefly) for a creator to finish the header. */
static bool header_ready(const seg_hdr_t *h)
{
    for (int waited = 0; waited < HALF_MADE_MS; waited++) {
        if (atomic_load_explicit(&h->magic, memory_order_acquire) == SEG_MAGIC) return true;
        Sleep(1);
    }
    return false;
}

static int check_header(const seg_hdr_t *h, size_t maplen, const mp__seg_spec_t *expect)
{
    if (!header_ready(h) || h->version != SEG_VERSION)
        return mp__fail(MP_EPROTO, "not an mproc segment (or of another version)");
    if (h->nmutex > MP__SEG_MAX_MUTEX || h->nwq > MP__SEG_MAX_WQ || h->named > 1 || h->ext > 1 ||
        (h->ext && (h->named || !wmemchr(h->ext_path, 0, MAX_PATH + 1))) ||
        h->hdr_size != hdr_size_for(h->nmutex, h->nwq, h->named) || h->size > maplen ||
        maplen - h->size < h->hdr_size)
        return mp__fail(MP_EPROTO, "segment header is inconsistent");
    if (h->tag != expect->tag)
        return mp__fail(MP_ETYPE, "the segment holds another kind of object");
    if (h->nmutex != expect->nmutex || h->nwq != expect->nwq || h->ext != expect->ext ||
        (expect->size && h->size != expect->size))
        return mp__fail(MP_EPROTO, "the segment has another shape than its type");
    return 0;
}

static mp__seg_t *reg_find(const wchar_t *os_name)
{
    for (mp__seg_t *s = reg; s; s = s->next)
        if (!wcscmp(s->os_name, os_name)) return s;
    return NULL;
}

static void reg_add(mp__seg_t *s)
{
    s->refs = 1;
    s->next = reg;
    reg = s;
}

/* ---- create ---- */

static int create_objects(mp__seg_t *s, const mp__seg_spec_t *spec)
{
    SECURITY_ATTRIBUTES sa;
    int rc = mp__w32_user_only_sa(&sa);
    wchar_t n[OS_NAME_MAX + 16];
    for (unsigned i = 0; !rc && i < spec->nmutex; i++) {
        object_name(s, 'l', i, n, sizeof n / sizeof *n);
        s->lock_ev[i] = CreateEventW(&sa, FALSE, FALSE, n); /* auto-reset: wakes one */
        if (!s->lock_ev[i])
            rc = mp__fail_os("CreateEventW");
        else if (GetLastError() == ERROR_ALREADY_EXISTS)
            rc = mp__fail(MP_EEXIST, "a mutex of a new segment already exists");
    }
    for (unsigned q = 0; !rc && q < spec->nwq; q++) {
        object_name(s, 'q', q, n, sizeof n / sizeof *n);
        s->sem[q] = CreateSemaphoreW(&sa, 0, LONG_MAX, n);
        if (!s->sem[q])
            rc = mp__fail_os("CreateSemaphoreW");
        else if (GetLastError() == ERROR_ALREADY_EXISTS)
            rc = mp__fail(MP_EEXIST, "a wait queue of a new segment already exists");
    }
    return rc;
}

/* A new mapping of total bytes under s->os_name: MP_EEXIST if the name is
 * taken. */
static int create_mapping(mp__seg_t *s, size_t total)
{
    SECURITY_ATTRIBUTES sa;
    int rc = mp__w32_user_only_sa(&sa);
    if (rc) return rc;
    wchar_t n[OS_NAME_MAX + 16];
    object_name(s, 0, 0, n, sizeof n / sizeof *n);
    if (mp__fault("shm_nospace")) /* as a full commit charge fails */
        SetLastError(ERROR_COMMITMENT_LIMIT);
    else
        s->map = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa, PAGE_READWRITE | SEC_COMMIT,
                                    (DWORD)((uint64_t)total >> 32), (DWORD)total, n);
    if (!s->map) {
        DWORD err = GetLastError();
        if (err == ERROR_NOT_ENOUGH_MEMORY || err == ERROR_COMMITMENT_LIMIT ||
            err == ERROR_OUTOFMEMORY)
            return mp__fail(MP_ENOMEM, "no room for %zu bytes of shared memory", total);
        return mp__w32_fail("CreateFileMappingW", err);
    }
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        CloseHandle(s->map);
        s->map = NULL;
        return MP_EEXIST;
    }
    return 0;
}

/* Extension space is a file in the temporary directory that the system
 * deletes when the last handle to it closes, however its holders end:
 * unlike a section, it keeps what a writer put there after the writer
 * ended even when no other process had mapped that part yet. Sparse, so
 * that released ranges give their disk space back. */
static int create_ext(mp__seg_t *s)
{
    SECURITY_ATTRIBUTES sa;
    int rc = mp__w32_user_only_sa(&sa);
    if (rc) return rc;
    wchar_t dir[MAX_PATH + 1];
    DWORD n = GetTempPathW(MAX_PATH + 1, dir);
    if (!n || n > MAX_PATH) return mp__fail_os("GetTempPathW");
    wchar_t *path = s->hdr->ext_path;
    if (swprintf(path, MAX_PATH + 1, L"%ls%ls.ext", dir, s->os_name) < 0)
        return mp__fail(MP_ESYS, "the temporary directory's path is too long");
    s->ext = CreateFileW(path, GENERIC_READ | GENERIC_WRITE,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, CREATE_NEW,
                         FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
    if (s->ext == INVALID_HANDLE_VALUE) {
        s->ext = NULL;
        return mp__fail_os("CreateFileW(extension)");
    }
    DWORD got;
    DeviceIoControl(s->ext, FSCTL_SET_SPARSE, NULL, 0, NULL, 0, &got, NULL);
    s->hdr->ext = 1;
    return 0;
}

/* For a user name: which generations exist, and is one of them live?
 * *free_gen is the lowest generation with no object, or -1. */
static int scan_generations(const char *name, int *live_gen, int *free_gen)
{
    *live_gen = *free_gen = -1;
    for (int g = 0; g < MAX_GEN; g++) {
        wchar_t n[OS_NAME_MAX + 16], w[MP__SEG_NAME_MAX + 1];
        widen(name, w);
        swprintf(n, sizeof n / sizeof *n, L"Local\\mproc-u-%ls.%d", w, g);
        HANDLE m = OpenFileMappingW(FILE_MAP_READ, FALSE, n);
        if (!m) {
            DWORD err = GetLastError();
            if (err != ERROR_FILE_NOT_FOUND) return mp__w32_fail("OpenFileMappingW", err);
            if (*free_gen < 0) *free_gen = g;
            continue;
        }
        const seg_hdr_t *h = MapViewOfFile(m, FILE_MAP_READ, 0, 0, sizeof *h);
        /* Half made counts as live: its creator is at work on it. */
        bool gone = h && atomic_load(&h->magic) == SEG_MAGIC && atomic_load(&h->state) == SEG_GONE;
        if (h) UnmapViewOfFile((void *)h);
        CloseHandle(m);
        if (!gone && *live_gen < 0) *live_gen = g;
    }
    return 0;
}

static void set_user_name(mp__seg_t *s, const char *name, int gen)
{
    wchar_t w[MP__SEG_NAME_MAX + 1];
    widen(name, w);
    s->user_named = true;
    strcpy(s->name, name);
    swprintf(s->os_name, OS_NAME_MAX, L"mproc-u-%ls.%d", w, gen);
}

static int make_backing(mp__seg_t *s, const char *name, size_t total)
{
    int rc = MP_EEXIST;
    for (int i = 0; rc == MP_EEXIST && i < NAME_TRIES; i++) {
        if (name) {
            int live, free_gen;
            rc = scan_generations(name, &live, &free_gen);
            if (rc) return rc;
            if (live >= 0) return mp__fail(MP_EEXIST, "shared memory \"%s\" exists", name);
            if (free_gen < 0)
                return mp__fail(MP_EEXIST,
                                "shared memory \"%s\": %d unlinked generations are still "
                                "mapped",
                                name, MAX_GEN);
            set_user_name(s, name, free_gen);
        } else {
            wchar_t hex[33];
            rc = mp__w32_random_hex(hex);
            if (rc) return rc;
            swprintf(s->os_name, OS_NAME_MAX, L"mproc-p-%ls", hex);
        }
        rc = create_mapping(s, total);
    }
    if (rc == MP_EEXIST)
        return mp__fail(MP_EEXIST, "no free segment name after %d tries", NAME_TRIES);
    return rc;
}

static int check_spec(const mp__seg_spec_t *spec)
{
    if (!spec || !spec->size || spec->nmutex > MP__SEG_MAX_MUTEX || spec->nwq > MP__SEG_MAX_WQ)
        return mp__fail(MP_EINVAL, "bad segment shape");
    if (spec->name && !name_ok(spec->name))
        return mp__fail(MP_EINVAL, "a shared memory name is 1 to %u of A-Z a-z 0-9 _ -",
                        MP__SEG_NAME_MAX);
    if (spec->name && (spec->nmutex || spec->nwq || spec->ext))
        return mp__fail(MP_EINVAL, "named segments hold no mutexes, wait queues or extension");
    return 0;
}

int mp__seg_create(const mp__seg_spec_t *spec, mp__seg_t **out)
{
    int rc = check_spec(spec);
    if (rc) return rc;
    size_t hdr_size = hdr_size_for(spec->nmutex, spec->nwq, spec->name != NULL);
    if (spec->size > SIZE_MAX - hdr_size)
        return mp__fail(MP_ENOMEM, "segment of %zu bytes is too large", spec->size);
    mp__seg_t *s = mp__calloc(1, sizeof *s);
    if (!s) return MP_ENOMEM;
    AcquireSRWLockExclusive(&reg_lock);
    rc = make_backing(s, spec->name, hdr_size + spec->size);
    size_t len;
    if (!rc) rc = map_all(s, &len);
    if (!rc) {
        seg_hdr_t *h = s->hdr;
        h->version = SEG_VERSION;
        h->tag = spec->tag;
        h->nmutex = spec->nmutex;
        h->nwq = spec->nwq;
        h->hdr_size = (uint32_t)hdr_size;
        h->size = spec->size;
        h->named = s->user_named;
        rc = mp__os_random(h->key, sizeof h->key);
        seg_layout(s);
    }
    if (!rc) rc = create_objects(s, spec);
    if (!rc && spec->ext) rc = create_ext(s);
    if (rc) {
        ReleaseSRWLockExclusive(&reg_lock);
        seg_destroy(s);
        return rc;
    }
    atomic_store_explicit(&s->hdr->magic, SEG_MAGIC, memory_order_release);
    reg_add(s);
    ReleaseSRWLockExclusive(&reg_lock);
    *out = s;
    return 0;
}

/* ---- open, refs ---- */

/* Opens the mutexes and wait queues of s by their names. */
static int open_objects(mp__seg_t *s)
{
    wchar_t n[OS_NAME_MAX + 16];
    for (unsigned i = 0; i < s->hdr->nmutex; i++) {
        object_name(s, 'l', i, n, sizeof n / sizeof *n);
        s->lock_ev[i] = OpenEventW(SYNCHRONIZE | EVENT_MODIFY_STATE, FALSE, n);
        if (!s->lock_ev[i]) return mp__fail(MP_ENOTFOUND, "a mutex of the segment is gone");
    }
    for (unsigned q = 0; q < s->hdr->nwq; q++) {
        object_name(s, 'q', q, n, sizeof n / sizeof *n);
        s->sem[q] = OpenSemaphoreW(SYNCHRONIZE | SEMAPHORE_MODIFY_STATE, FALSE, n);
        if (!s->sem[q]) return mp__fail(MP_ENOTFOUND, "a wait queue of the segment is gone");
    }
    if (s->hdr->ext) {
        /* The path comes from shared memory: only ever our own file. */
        wchar_t tail[OS_NAME_MAX + 8];
        swprintf(tail, sizeof tail / sizeof *tail, L"\\%ls.ext", s->os_name);
        size_t n = wcslen(s->hdr->ext_path), t = wcslen(tail);
        if (n < t || wcscmp(s->hdr->ext_path + n - t, tail))
            return mp__fail(MP_EPROTO, "the segment names a foreign extension file");
        s->ext = CreateFileW(s->hdr->ext_path, GENERIC_READ | GENERIC_WRITE,
                             FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                             OPEN_EXISTING, FILE_ATTRIBUTE_TEMPORARY, NULL);
        if (s->ext == INVALID_HANDLE_VALUE) {
            s->ext = NULL;
            return mp__fail(MP_ENOTFOUND, "the segment's extension file is gone");
        }
    }
    return 0;
}

/* Makes s (holding s->map and s->os_name) a segment of the expected kind.
 * key: what a ref promised, or NULL. Another key under a ref's name means
 * the named object is gone and its name was made again. */
static int adopt_mapping(mp__seg_t *s, const mp__seg_spec_t *expect, const uint8_t *key,
                         bool by_name)
{
    size_t len;
    int rc = map_all(s, &len);
    if (!rc) rc = check_header(s->hdr, len, expect);
    if (!rc && key && memcmp(key, s->hdr->key, sizeof s->hdr->key))
        rc = by_name ? mp__fail(MP_ENOTFOUND, "the object is gone (its name now holds another)")
                     : mp__fail(MP_EPROTO, "the reference names another object");
    if (!rc) seg_layout(s);
    return rc;
}

static int open_mapping(mp__seg_t *s)
{
    wchar_t n[OS_NAME_MAX + 16];
    object_name(s, 0, 0, n, sizeof n / sizeof *n);
    s->map = OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, n);
    if (s->map) return 0;
    DWORD err = GetLastError();
    if (err == ERROR_FILE_NOT_FOUND) return mp__fail(MP_ENOTFOUND, "the object is gone");
    return mp__w32_fail("OpenFileMappingW", err);
}

int mp__seg_open(const char *name, uint32_t tag, mp__seg_t **out)
{
    if (!name_ok(name))
        return mp__fail(MP_EINVAL, "a shared memory name is 1 to %u of A-Z a-z 0-9 _ -",
                        MP__SEG_NAME_MAX);
    mp__seg_spec_t expect = {.tag = tag};
    AcquireSRWLockExclusive(&reg_lock);
    int live, free_gen;
    int rc = scan_generations(name, &live, &free_gen);
    if (!rc && live < 0) rc = mp__fail(MP_ENOTFOUND, "no shared memory named \"%s\"", name);
    mp__seg_t *s = rc ? NULL : mp__calloc(1, sizeof *s);
    if (!rc && !s) rc = MP_ENOMEM;
    if (!rc) {
        set_user_name(s, name, live);
        mp__seg_t *have = reg_find(s->os_name);
        if (have) {
            free(s);
            s = have;
            s->refs++;
        } else {
            rc = open_mapping(s);
            if (!rc) rc = adopt_mapping(s, &expect, NULL, true);
            if (!rc && !s->hdr->named)
                rc = mp__fail(MP_EPROTO, "\"%s\" is not a named segment", name);
            if (!rc && atomic_load(&s->hdr->state) == SEG_GONE)
                rc = mp__fail(MP_ENOTFOUND, "no shared memory named \"%s\"", name);
            if (rc)
                seg_destroy(s);
            else
                reg_add(s);
        }
    }
    ReleaseSRWLockExclusive(&reg_lock);
    if (!rc) *out = s;
    return rc;
}

int mp__seg_ref(mp__seg_t *s, bool by_name, mp__seg_ref_t *ref)
{
    /* kind | u8 length | the kernel name (ASCII) | key */
    char name[OS_NAME_MAX];
    size_t n = wcslen(s->os_name);
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)s->os_name[i];
    if (2 + n + sizeof s->hdr->key > sizeof ref->bytes)
        return mp__fail(MP_EINVAL, "segment reference too long");
    ref->bytes[0] = by_name ? REF_NAME : REF_HANDLES;
    ref->bytes[1] = (uint8_t)n;
    memcpy(ref->bytes + 2, name, n);
    memcpy(ref->bytes + 2 + n, s->hdr->key, sizeof s->hdr->key);
    ref->len = 2 + n + sizeof s->hdr->key;
    ref->nosh = 0;
    if (!by_name) {
        /* The child gets its own handles at once: the objects then live
         * even if we close ours before it comes to open them. */
        ref->osh[ref->nosh++] = (mp__osh_t)s->map;
        for (unsigned i = 0; i < s->hdr->nmutex; i++)
            ref->osh[ref->nosh++] = (mp__osh_t)s->lock_ev[i];
        for (unsigned q = 0; q < s->hdr->nwq; q++)
            ref->osh[ref->nosh++] = (mp__osh_t)s->sem[q];
        if (s->ext) ref->osh[ref->nosh++] = (mp__osh_t)s->ext;
    }
    return 0;
}

/* A kernel name from a ref: only the two forms we make. */
static bool parse_os_name(const uint8_t *p, size_t n, wchar_t *out)
{
    if (n < 9 || n >= OS_NAME_MAX) return false;
    char name[OS_NAME_MAX];
    memcpy(name, p, n);
    name[n] = 0;
    if (!strncmp(name, "mproc-p-", 8)) {
        if (n != 8 + 32) return false;
        for (size_t i = 8; i < n; i++)
            if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
                return false;
    } else if (!strncmp(name, "mproc-u-", 8)) {
        char *dot = strrchr(name, '.');
        if (!dot || dot[1] < '0' || dot[1] > '9' || strlen(dot + 1) > 2) return false;
        *dot = 0;
        bool ok = name_ok(name + 8);
        *dot = '.';
        if (!ok) return false;
    } else {
        return false;
    }
    for (size_t i = 0; i <= n; i++)
        out[i] = (wchar_t)name[i];
    return true;
}

/* Takes the passed handles as s's objects, checking their kinds. */
static int adopt_handles(mp__seg_t *s, mp__seg_ref_t *ref, const mp__seg_spec_t *expect)
{
    size_t need = 1 + expect->nmutex + expect->nwq + (expect->ext ? 1 : 0);
    if (ref->nosh != need) return mp__fail(MP_EPROTO, "malformed segment reference");
    for (size_t i = 0; i < need; i++)
        if (ref->osh[i] == MP__OSH_INVALID || !ref->osh[i])
            return mp__fail(MP_EPROTO, "malformed segment reference");
    s->map = (HANDLE)ref->osh[0];
    ref->osh[0] = MP__OSH_INVALID;
    int rc = adopt_mapping(s, expect, ref->bytes + ref->len - 16, false);
    for (unsigned i = 0; !rc && i < expect->nmutex; i++) {
        s->lock_ev[i] = (HANDLE)ref->osh[1 + i];
        ref->osh[1 + i] = MP__OSH_INVALID;
    }
    for (unsigned q = 0; !rc && q < expect->nwq; q++) {
        s->sem[q] = (HANDLE)ref->osh[1 + expect->nmutex + q];
        ref->osh[1 + expect->nmutex + q] = MP__OSH_INVALID;
    }
    if (!rc && expect->ext) {
        s->ext = (HANDLE)ref->osh[need - 1];
        ref->osh[need - 1] = MP__OSH_INVALID;
    }
    return rc;
}

int mp__seg_from_ref(mp__seg_ref_t *ref, const mp__seg_spec_t *expect, mp__seg_t **out)
{
    size_t len = ref->len > sizeof ref->bytes ? 0 : ref->len;
    const uint8_t *b = ref->bytes;
    mp__seg_t *s = mp__calloc(1, sizeof *s);
    if (!s) return MP_ENOMEM;
    int rc = 0;
    if (len < 2 || (b[0] != REF_HANDLES && b[0] != REF_NAME) || len != 2u + b[1] + 16 ||
        !parse_os_name(b + 2, b[1], s->os_name) || expect->nmutex > MP__SEG_MAX_MUTEX ||
        expect->nwq > MP__SEG_MAX_WQ)
        rc = mp__fail(MP_EPROTO, "malformed segment reference");
    bool by_name = !rc && b[0] == REF_NAME;
    AcquireSRWLockExclusive(&reg_lock);
    mp__seg_t *have = rc ? NULL : reg_find(s->os_name);
    if (have) {
        rc = check_header(have->hdr, SIZE_MAX, expect);
        if (!rc && memcmp(b + len - 16, have->hdr->key, 16))
            rc = by_name ? mp__fail(MP_ENOTFOUND, "the object is gone (its name now holds another)")
                         : mp__fail(MP_EPROTO, "the reference names another object");
        if (!rc) have->refs++;
        ReleaseSRWLockExclusive(&reg_lock);
        free(s);
        if (!rc) *out = have;
        return rc;
    }
    if (!rc && by_name) {
        rc = open_mapping(s);
        if (!rc) rc = adopt_mapping(s, expect, b + len - 16, true);
        if (!rc) rc = open_objects(s);
    } else if (!rc) {
        rc = adopt_handles(s, ref, expect);
    }
    if (!rc && s->hdr->named) {
        size_t n = wcslen(s->os_name) - 8;
        for (size_t i = 0; i < n && s->os_name[8 + i] != L'.'; i++)
            s->name[i] = (char)s->os_name[8 + i];
        s->user_named = true;
        if (by_name && atomic_load(&s->hdr->state) == SEG_GONE)
            rc = mp__fail(MP_ENOTFOUND, "the segment's name was removed");
    }
    if (rc) {
        seg_destroy(s);
    } else {
        reg_add(s);
        *out = s;
    }
    ReleaseSRWLockExclusive(&reg_lock);
    return rc;
}

/* ---- the rest ---- */

void *mp__seg_ptr(mp__seg_t *s)
{
    return s->user;
}

size_t mp__seg_size(mp__seg_t *s)
{
    return (size_t)s->hdr->size;
}

const char *mp__seg_name(mp__seg_t *s)
{
    return s->user_named ? s->name : NULL;
}

int mp__seg_unlink(mp__seg_t *s)
{
    if (!s->user_named) return mp__fail(MP_EINVAL, "the segment has no name");
    uint32_t live = SEG_LIVE;
    if (!atomic_compare_exchange_strong(&s->hdr->state, &live, SEG_GONE))
        return mp__fail(MP_ENOTFOUND, "\"%s\" was already unlinked", s->name);
    return 0;
}

void mp__seg_close(mp__seg_t *s)
{
    if (!s) return;
    AcquireSRWLockExclusive(&reg_lock);
    bool last = --s->refs == 0;
    if (last)
        for (mp__seg_t **pp = &reg; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
    ReleaseSRWLockExclusive(&reg_lock);
    if (last) seg_destroy(s);
}

/* ---- robust mutexes ---- */

int mp__seg_lock(mp__seg_t *s, unsigned i, long timeout_ms)
{
    if (i >= s->hdr->nmutex) return mp__fail(MP_EINVAL, "no mutex %u in the segment", i);
    return mp__w32_lock_take(&s->mutex[i]->word, s->lock_ev[i], timeout_ms);
}

int mp__seg_unlock(mp__seg_t *s, unsigned i)
{
    if (i >= s->hdr->nmutex) return mp__fail(MP_EINVAL, "no mutex %u in the segment", i);
    return mp__w32_lock_give(&s->mutex[i]->word, s->lock_ev[i]);
}

/* ---- wait queues ---- */

/* True once *w != expected within spin_ns. */
static bool spin_for_change(const _Atomic uint32_t *w, uint32_t expected, uint32_t spin_ns)
{
    if (!spin_ns || mp__cpu_count_cached() < 2) return false;
    uint64_t start = mp__os_now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != expected) return true;
        YieldProcessor();
        if (!(i & 63) && mp__os_now_ns() - start >= spin_ns) return false;
    }
}

int mp__seg_wait(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t expected,
                 long timeout_ms, uint32_t spin_ns)
{
    if (q >= s->hdr->nwq) return mp__fail(MP_EINVAL, "no wait queue %u in the segment", q);
    if (spin_for_change(word, expected, spin_ns)) return 0;
    /* Timeout 0 only looks: taking a token here would steal a sleeper's. */
    if (timeout_ms == 0) return mp__fail(MP_ETIMEDOUT, "the word did not change");
    seg_wq_t *wq = s->wq[q];
    /* Registered before looking again, and a waker changes the word before
     * it counts us: either we see its change or it sees us. */
    atomic_fetch_add(&wq->waiters, 1);
    DWORD w = WAIT_OBJECT_0;
    if (atomic_load(word) == expected) w = WaitForSingleObject(s->sem[q], mp__w32_ms(timeout_ms));
    atomic_fetch_sub(&wq->waiters, 1);
    if (w == WAIT_OBJECT_0) return 0;
    if (w == WAIT_TIMEOUT) return mp__fail(MP_ETIMEDOUT, "no wake-up within %ld ms", timeout_ms);
    return mp__fail_os("WaitForSingleObject(semaphore)");
}

int mp__seg_wake(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t n)
{
    (void)word;
    if (q >= s->hdr->nwq) return mp__fail(MP_EINVAL, "no wait queue %u in the segment", q);
    uint32_t waiters = atomic_load(&s->wq[q]->waiters);
    if (!waiters) return 0;
    /* A token nobody takes (its waiter timed out) makes a later wait return
     * early, which callers tolerate; a count left by a killed waiter only
     * adds such tokens. */
    LONG k = (LONG)(n < waiters ? n : waiters);
    if (!ReleaseSemaphore(s->sem[q], k, NULL) && GetLastError() != ERROR_TOO_MANY_POSTS)
        return mp__fail_os("ReleaseSemaphore");
    return 0;
}

/* ---- extension space: the file from create_ext ---- */

size_t mp__seg_ext_unit(void)
{
    return 65536; /* the allocation granularity: views start on it */
}

static int ext_check(mp__seg_t *s, uint64_t off, uint64_t len)
{
    uint64_t unit = mp__seg_ext_unit();
    if (!s->ext) return mp__fail(MP_EINVAL, "the segment has no extension space");
    if (!len || off % unit || len % unit || off > MP__SEG_EXT_MAX || len > MP__SEG_EXT_MAX - off)
        return mp__fail(MP_EINVAL, "extension range out of bounds");
    return 0;
}

int mp__seg_ext_commit(mp__seg_t *s, uint64_t off, uint64_t len)
{
    int rc = ext_check(s, off, len);
    if (rc) return rc;
    LARGE_INTEGER size;
    if (!GetFileSizeEx(s->ext, &size)) return mp__fail_os("GetFileSizeEx(extension)");
    if ((uint64_t)size.QuadPart >= off + len) return 0;
    /* Grows only: a file that shrank would take items from under readers. */
    FILE_END_OF_FILE_INFO eof = {.EndOfFile.QuadPart = (LONGLONG)(off + len)};
    if (SetFileInformationByHandle(s->ext, FileEndOfFileInfo, &eof, sizeof eof)) return 0;
    DWORD err = GetLastError();
    if (err == ERROR_DISK_FULL || err == ERROR_NOT_ENOUGH_MEMORY || err == ERROR_OUTOFMEMORY)
        return mp__fail(MP_ENOMEM, "no room for %llu bytes of queue space",
                        (unsigned long long)len);
    return mp__w32_fail("SetFileInformationByHandle(extension)", err);
}

int mp__seg_ext_map(mp__seg_t *s, uint64_t off, size_t len, void **p)
{
    *p = NULL;
    int rc = ext_check(s, off, len);
    if (rc) return rc;
    /* A section of the file as it is now (committed space only); the view
     * keeps the section alive after its handle closes. */
    HANDLE m = CreateFileMappingW(s->ext, NULL, PAGE_READWRITE, 0, 0, NULL);
    if (!m) return mp__fail_os("CreateFileMappingW(extension)");
    void *v = MapViewOfFile(m, FILE_MAP_READ | FILE_MAP_WRITE, (DWORD)(off >> 32), (DWORD)off, len);
    DWORD err = GetLastError();
    CloseHandle(m);
    if (!v) {
        if (err == ERROR_NOT_ENOUGH_MEMORY || err == ERROR_OUTOFMEMORY)
            return mp__fail(MP_ENOMEM, "no address space for %zu bytes of queue space", len);
        return mp__w32_fail("MapViewOfFile(extension)", err);
    }
    *p = v;
    return 0;
}

void mp__seg_ext_unmap(void *p, size_t len)
{
    (void)len;
    if (p) UnmapViewOfFile(p);
}

void mp__seg_ext_release(mp__seg_t *s, uint64_t off, uint64_t len)
{
    if (ext_check(s, off, len)) return;
    /* Deallocates a sparse file's range; where the file system cannot, the
     * space comes back when the queue goes. */
    FILE_ZERO_DATA_INFORMATION z = {.FileOffset.QuadPart = (LONGLONG)off,
                                    .BeyondFinalZero.QuadPart = (LONGLONG)(off + len)};
    DWORD got;
    DeviceIoControl(s->ext, FSCTL_SET_ZERO_DATA, &z, sizeof z, NULL, 0, &got, NULL);
}
