/* Shared segments on POSIX (contract in platform.h, layout in seg.h).
 *
 * Private segments are memfds (Linux): they have no name at all, so
 * nothing can outlive the processes that hold them, whatever kills them.
 * Another process reaches one through the exporter's /proc/<pid>/fd entry,
 * checked against the file's identity and the segment's random key. The
 * portable build has no memfd nor /proc: its private segments are files
 * in a private directory (/dev/shm, else $TMPDIR), leased like mp_shm
 * names. A lease is the set of pids holding the name, in the header; the
 * last holder to close removes the name, and a create that finds the name
 * taken by holders that all died removes it first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "seg.h"

#if !defined(MPROC_PORTABLE_POSIX)
#include <sys/syscall.h>
#define PRIVATE_IN_MEMFD 1
#else
#define PRIVATE_IN_MEMFD 0
#endif

#define RANDOM_NAME_LEN 16
#define NAME_TRIES 8
/* A segment still without its magic this long after its last change was
 * left by a creator that died half-way. */
#define HALF_MADE_SECONDS 30

enum { REF_FDS = 1, REF_SHM_NAME, REF_PROC_FD, REF_FILE_NAME };

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mp__seg_t *reg;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static pthread_once_t sweep_once = PTHREAD_ONCE_INIT;

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

static size_t slots_offset(void)
{
    return align_up(sizeof(seg_hdr_t), SEG_SLOT);
}

static size_t hdr_size_for(unsigned nmutex, unsigned nwq, bool named)
{
    size_t end = slots_offset() + (size_t)(nmutex + nwq) * SEG_SLOT;
    return align_up(end, named ? (size_t)sysconf(_SC_PAGESIZE) : SEG_SLOT);
}

static bool name_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > MP__SEG_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

static const char *private_dir(void)
{
#if defined(__linux__)
    return "/dev/shm";
#else
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
#endif
}

/* The OS name of s: its shm name, or (q >= 0) the path of FIFO q. */
static int path_of(const mp__seg_t *s, int q, char *buf, size_t cap)
{
    int n;
    if (s->user_named)
        n = snprintf(buf, cap, "/mpu-%s", s->name);
    else if (q < 0)
        n = snprintf(buf, cap, "%s/mps-%s", private_dir(), s->name);
    else
        n = snprintf(buf, cap, "%s/mps-%s.%d", private_dir(), s->name, q);
    if (n < 0 || (size_t)n >= cap) return mp__fail(MP_EINVAL, "segment path too long");
    return 0;
}

static void unlink_names(const mp__seg_t *s, unsigned nwq)
{
    char p[PATH_MAX];
    if (path_of(s, -1, p, sizeof p)) return;
    if (s->user_named) {
        shm_unlink(p);
        return;
    }
    /* FIFOs first: a FIFO whose segment file is gone was leaked, never
     * caught in the middle of a removal. */
    char f[PATH_MAX];
    for (unsigned q = 0; q < nwq; q++)
        if (!path_of(s, (int)q, f, sizeof f)) unlink(f);
    unlink(p);
}

/* ---- leases ---- */

static bool pid_alive(int32_t pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* A lease slot of h taken for this process: a free one, else one of a
 * dead pid; -1 when all are held. */
static int slot_take(seg_hdr_t *h)
{
    int32_t me = (int32_t)getpid();
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < SEG_LEASES; i++) {
            int32_t cur = atomic_load(&h->lease[i]);
            bool take = pass == 0 ? cur == 0 : cur != me && !pid_alive(cur);
            if (take && atomic_compare_exchange_strong(&h->lease[i], &cur, me)) return i;
        }
    return -1;
}

/* A process that hands a segment over (a fork, a ref passing its
 * descriptors) cannot know when the receiver will take its own lease, and
 * may free the segment before: so it holds a slot under its own pid for
 * the receiver, who takes that slot over. */
static const seg_hold_t no_hold = {.slot = SEG_NO_HOLD};

static seg_hold_t hold_take(mp__seg_t *s)
{
    int slot = s->linked ? slot_take(s->hdr) : -1;
    seg_hold_t h = {.slot = slot < 0 ? SEG_NO_HOLD : (uint8_t)slot, .pid = (int32_t)getpid()};
    return h;
}

/* Our lease: the slot held for us, if it still is (its holder may have
 * died and another taken it), else one of our own. */
static void lease_claim(mp__seg_t *s, seg_hold_t hold)
{
    int32_t me = (int32_t)getpid();
    s->lease_pid = me;
    if (hold.slot != SEG_NO_HOLD &&
        atomic_compare_exchange_strong(&s->hdr->lease[hold.slot], &hold.pid, me)) {
        s->lease_slot = hold.slot;
        return;
    }
    s->lease_slot = slot_take(s->hdr);
}

/* A hold for a receiver that already has a lease. */
static void hold_release(mp__seg_t *s, seg_hold_t hold)
{
    if (s->linked && hold.slot != SEG_NO_HOLD)
        atomic_compare_exchange_strong(&s->hdr->lease[hold.slot], &hold.pid, 0);
}

static void lease_release(mp__seg_t *s)
{
    if (s->lease_slot >= 0 && s->lease_pid == (pid_t)getpid())
        atomic_store(&s->hdr->lease[s->lease_slot], 0);
    s->lease_slot = -1;
}

/* The name's state once nobody is deciding about it any more. */
static int32_t settled_state(seg_hdr_t *h)
{
    for (;;) {
        int32_t st = atomic_load(&h->state);
        if (st == SEG_LIVE || st == SEG_GONE) return st;
        if (!pid_alive(st)) {
            atomic_compare_exchange_strong(&h->state, &st, SEG_LIVE);
            continue;
        }
        sched_yield();
    }
}

/* Removes the name if no live process holds a lease on it. A holder
 * claims its slot before it reads the state, and a decider sets the state
 * before it reads the slots: one of the two sees the other. */
static bool decide_removal(seg_hdr_t *h, const mp__seg_t *names, unsigned nwq)
{
    int32_t live = SEG_LIVE;
    if (!atomic_compare_exchange_strong(&h->state, &live, (int32_t)getpid())) return false;
    for (int i = 0; i < SEG_LEASES; i++)
        if (pid_alive(atomic_load(&h->lease[i]))) {
            atomic_store(&h->state, SEG_LIVE);
            return false;
        }
    unlink_names(names, nwq);
    mp__seg_mutex_remove(h);
    atomic_store(&h->state, SEG_GONE);
    return true;
}

/* A create found the name taken: removes it when it was left behind by
 * holders that all died (or by a creator that died half-way). */
static bool remove_if_stale(const mp__seg_t *s)
{
    char p[PATH_MAX];
    if (path_of(s, -1, p, sizeof p)) return false;
    int fd = s->user_named ? shm_open(p, O_RDWR, 0) : open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT;
    bool removed = false;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        seg_hdr_t *h = NULL;
        if ((size_t)st.st_size >= sizeof *h)
            h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h == MAP_FAILED) h = NULL;
        if (h && atomic_load(&h->magic) == SEG_MAGIC && h->version == SEG_VERSION &&
            h->nwq <= MP__SEG_MAX_WQ) {
            removed = decide_removal(h, s, h->nwq);
        } else if (time(NULL) - st.st_mtime > HALF_MADE_SECONDS) {
            unlink_names(s, MP__SEG_MAX_WQ);
            removed = true;
        }
        if (h) munmap(h, sizeof *h);
    }
    close(fd);
    return removed;
}

/* Names whose holders all died without closing them (killed, or ended
 * without freeing) are removed by the next process that creates a segment.
 * macOS cannot list POSIX shm names: there only the portable build's
 * files are swept. */
static void sweep(void)
{
    DIR *d = opendir(private_dir());
    for (struct dirent *de; d && (de = readdir(d));) {
        bool user = !strncmp(de->d_name, "mpu-", 4);
        if (!user && strncmp(de->d_name, "mps-", 4)) continue;
        mp__seg_t probe = {.user_named = user};
        const char *rest = de->d_name + 4;
        const char *dot = strchr(rest, '.');
        size_t len = dot ? (size_t)(dot - rest) : strlen(rest);
        if (len > MP__SEG_NAME_MAX) continue;
        memcpy(probe.name, rest, len);
        probe.name[len] = 0;
        if (!name_ok(probe.name) || (dot && user)) continue;
#if !defined(__linux__)
        if (user) continue;
#endif
        char p[PATH_MAX];
        struct stat st;
        if (!dot)
            remove_if_stale(&probe);
        else if (!path_of(&probe, -1, p, sizeof p) && lstat(p, &st) < 0 && errno == ENOENT &&
                 snprintf(p, sizeof p, "%s/%s", private_dir(), de->d_name) < (int)sizeof p)
            unlink(p); /* a FIFO whose segment is gone */
    }
    if (d) closedir(d);
}

/* ---- the registry: one segment object per OS object in a process ---- */

static mp__seg_t *reg_find(dev_t dev, ino_t ino)
{
    for (mp__seg_t *s = reg; s; s = s->next)
        if (s->dev == dev && s->ino == ino) return s;
    return NULL;
}

static void reg_remove(mp__seg_t *s)
{
    for (mp__seg_t **pp = &reg; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

/* The child runs (and takes its leases) only later, when we may have
 * freed a segment: each is held for it. A fork that fails leaves its holds
 * until we end. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
    for (mp__seg_t *s = reg; s; s = s->next)
        s->fork_hold = hold_take(s);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

/* The child holds every segment the parent held: it takes leases of its
 * own (a child that is not given a segment releases it when it closes).
 * The lock is released, not made anew: the child's one thread is the one
 * that took it in fork_prepare, and TSan, seeing it still held, reported
 * lock-order cycles in forked children. */
static void fork_child(void)
{
    for (mp__seg_t *s = reg; s; s = s->next)
        if (s->linked) lease_claim(s, s->fork_hold);
    pthread_mutex_unlock(&reg_lock);
}

static void install_atfork(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- building a segment object ---- */

static mp__seg_t *seg_alloc(void)
{
    mp__seg_t *s = mp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fd = -1;
    s->lease_slot = -1;
    s->fork_hold = no_hold;
    for (unsigned q = 0; q < MP__SEG_MAX_WQ; q++)
        s->fifo[q] = -1;
    return s;
}

static void seg_destroy(mp__seg_t *s)
{
    if (s->base) munmap(s->base, s->maplen);
    if (s->fd >= 0) close(s->fd);
    for (unsigned q = 0; q < MP__SEG_MAX_WQ; q++)
        if (s->fifo[q] >= 0) close(s->fifo[q]);
    free(s);
}

static void seg_layout(mp__seg_t *s)
{
    uint8_t *slots = s->base + slots_offset();
    for (unsigned i = 0; i < s->hdr->nmutex; i++)
        s->mutex[i] = slots + (size_t)i * SEG_SLOT;
    for (unsigned q = 0; q < s->hdr->nwq; q++)
        s->wq[q] = (seg_wq_t *)(slots + (size_t)(s->hdr->nmutex + q) * SEG_SLOT);
    s->user = s->base + s->hdr->hdr_size;
}

static int check_header(const seg_hdr_t *h, const struct stat *st, const mp__seg_spec_t *expect)
{
    if (atomic_load(&h->magic) != SEG_MAGIC || h->version != SEG_VERSION)
        return mp__fail(MP_EPROTO, "not an mproc segment (or of another version)");
    if (h->nmutex > MP__SEG_MAX_MUTEX || h->nwq > MP__SEG_MAX_WQ || h->named > 1 ||
        h->hdr_size != hdr_size_for(h->nmutex, h->nwq, h->named) ||
        h->size > (uint64_t)st->st_size || (uint64_t)st->st_size - h->size < h->hdr_size ||
        (h->named && (uint64_t)st->st_size - h->size != h->hdr_size))
        /* A private segment's file may be longer: its extension space. */
        return mp__fail(MP_EPROTO, "segment header is inconsistent");
    if (h->tag != expect->tag)
        return mp__fail(MP_ETYPE, "the segment holds another kind of object");
    if (h->nmutex != expect->nmutex || h->nwq != expect->nwq ||
        (expect->size && h->size != expect->size))
        return mp__fail(MP_EPROTO, "the segment has another shape than its type");
    return 0;
}

/* A by-name reference whose name now holds an object with another key
 * outlived its object (the name was removed and made again): that object
 * is gone. Handed-over descriptors with a wrong key are a forged ref. */
static int key_mismatch(bool by_name)
{
    return by_name ? mp__fail(MP_ENOTFOUND, "the object is gone (its name now holds another)")
                   : mp__fail(MP_EPROTO, "the reference names another object");
}

/* Adopts fd (always: it is closed on failure or when the process already
 * holds this segment) as a segment of the expected kind. key: the key a
 * ref promised, or NULL; by_name: whether the ref named the object rather
 * than passing its descriptor. *fresh tells whether a new object was built. */
static int adopt_fd(int fd, const mp__seg_spec_t *expect, const uint8_t *key, bool by_name,
                    mp__seg_t **out, bool *fresh)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = mp__fail_os("fstat(segment)");
        close(fd);
        return rc;
    }
    int rc = 0;
    mp__seg_t *s = reg_find(st.st_dev, st.st_ino);
    if (s) {
        rc = check_header(s->hdr, &st, expect);
        if (!rc && key && memcmp(key, s->hdr->key, sizeof s->hdr->key)) rc = key_mismatch(by_name);
        close(fd);
        if (rc) return rc;
        s->refs++;
        *fresh = false;
        *out = s;
        return 0;
    }
    seg_hdr_t h;
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof h)
        rc = mp__fail(MP_EPROTO, "not an mproc segment");
    else if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        rc = mp__fail_os("pread(segment header)");
    if (!rc) rc = check_header(&h, &st, expect);
    if (!rc && key && memcmp(key, h.key, sizeof h.key)) rc = key_mismatch(by_name);
    s = rc ? NULL : seg_alloc();
    if (!rc && !s) rc = MP_ENOMEM;
    if (rc) {
        close(fd);
        return rc;
    }
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->maplen = (size_t)(h.hdr_size + h.size);
    s->base = mmap(NULL, s->maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (s->base == MAP_FAILED) {
        s->base = NULL;
        rc = mp__fail_os("mmap(segment)");
        seg_destroy(s);
        return rc;
    }
    s->hdr = (seg_hdr_t *)s->base;
    s->user_named = s->hdr->named;
    s->linked = s->user_named || !PRIVATE_IN_MEMFD;
    seg_layout(s);
    s->refs = 1;
    *fresh = true;
    *out = s;
    return 0;
}

/* ---- create ---- */

static int open_exclusive(mp__seg_t *s)
{
    char p[PATH_MAX];
    int rc = path_of(s, -1, p, sizeof p);
    if (rc) return rc;
    if (s->user_named)
        s->fd = shm_open(p, O_RDWR | O_CREAT | O_EXCL, 0600);
    else
        s->fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->fd < 0)
        return errno == EEXIST ? MP_EEXIST : mp__fail_os(s->user_named ? "shm_open" : "open");
    return 0;
}

#if !PRIVATE_IN_MEMFD
static int random_name(char *out)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t r[RANDOM_NAME_LEN];
    int rc = mp__os_random(r, sizeof r);
    if (rc) return rc;
    for (int i = 0; i < RANDOM_NAME_LEN; i++)
        out[i] = alphabet[r[i] & 31];
    out[RANDOM_NAME_LEN] = 0;
    return 0;
}
#endif

/* Gives s an fd on a new, empty OS object. */
static int make_backing(mp__seg_t *s, const char *name)
{
    if (name) {
        s->user_named = s->linked = true;
        strcpy(s->name, name);
        int rc = open_exclusive(s);
        if (rc == MP_EEXIST && remove_if_stale(s)) rc = open_exclusive(s);
        if (rc == MP_EEXIST) return mp__fail(MP_EEXIST, "shared memory \"%s\" exists", name);
        return rc;
    }
#if PRIVATE_IN_MEMFD
    long fd = syscall(SYS_memfd_create, "mproc", 1u /* MFD_CLOEXEC */);
    if (fd < 0) return mp__fail_os("memfd_create");
    s->fd = (int)fd;
    return 0;
#else
    s->linked = true;
    for (int i = 0; i < NAME_TRIES; i++) {
        int rc = random_name(s->name);
        if (!rc) rc = open_exclusive(s);
        if (rc != MP_EEXIST) return rc;
    }
    return mp__fail(MP_EEXIST, "no free segment name after %d tries", NAME_TRIES);
#endif
}

static int make_fifos(mp__seg_t *s, unsigned nwq)
{
    char p[PATH_MAX];
    for (unsigned q = 0; q < nwq; q++) {
        int rc = path_of(s, (int)q, p, sizeof p);
        if (rc) return rc;
        if (mkfifo(p, 0600) < 0) return mp__fail_os("mkfifo");
        s->fifo[q] = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (s->fifo[q] < 0) return mp__fail_os("open(fifo)");
    }
    return 0;
}

static int size_backing(mp__seg_t *s, size_t total)
{
    if ((uint64_t)total > (uint64_t)INT64_MAX || ftruncate(s->fd, (off_t)total) < 0)
        return mp__fail_os("ftruncate(segment)");
    if (mp__fault("shm_nospace")) /* as a full /dev/shm fails below */
        return mp__fail(MP_ENOMEM, "no room for %zu bytes of shared memory", total);
#if !defined(MPROC_PORTABLE_POSIX)
    /* tmpfs hands out pages on first touch and raises SIGBUS when it has
     * none left: reserve them now, so a full /dev/shm is an error here. */
    int err = posix_fallocate(s->fd, 0, (off_t)total);
    if (err == ENOSPC || err == ENOMEM)
        return mp__fail(MP_ENOMEM, "no room for %zu bytes of shared memory", total);
    if (err && err != EOPNOTSUPP && err != EINVAL)
        return mp__fail(MP_ESYS, "posix_fallocate: %s", strerror(err));
#endif
    return 0;
}

static int init_header(mp__seg_t *s, const mp__seg_spec_t *spec, size_t hdr_size)
{
    seg_hdr_t *h = s->hdr;
    h->version = SEG_VERSION;
    h->tag = spec->tag;
    h->nmutex = spec->nmutex;
    h->nwq = spec->nwq;
    h->hdr_size = (uint32_t)hdr_size;
    h->size = spec->size;
    h->named = s->user_named;
    h->semid = -1;
    int rc = mp__os_random(h->key, sizeof h->key);
    seg_layout(s);
    return rc ? rc : mp__seg_mutex_setup(h, s->mutex);
}

static int check_spec(const mp__seg_spec_t *spec)
{
    if (!spec || !spec->size || spec->nmutex > MP__SEG_MAX_MUTEX || spec->nwq > MP__SEG_MAX_WQ)
        return mp__fail(MP_EINVAL, "bad segment shape");
    if (spec->name && !name_ok(spec->name))
        return mp__fail(MP_EINVAL, "a shared memory name is 1 to %u of A-Z a-z 0-9 _ -",
                        MP__SEG_NAME_MAX);
    if (spec->name && (spec->nmutex || spec->nwq))
        return mp__fail(MP_EINVAL, "named segments hold no mutexes or wait queues");
    return 0;
}

int mp__seg_create(const mp__seg_spec_t *spec, mp__seg_t **out)
{
    int rc = check_spec(spec);
    if (rc) return rc;
    pthread_once(&atfork_once, install_atfork);
    pthread_once(&sweep_once, sweep);
    size_t hdr_size = hdr_size_for(spec->nmutex, spec->nwq, spec->name != NULL);
    if (spec->size > SIZE_MAX - hdr_size)
        return mp__fail(MP_ENOMEM, "segment of %zu bytes is too large", spec->size);
    size_t total = hdr_size + spec->size;
    mp__seg_t *s = seg_alloc();
    if (!s) return MP_ENOMEM;
    pthread_mutex_lock(&reg_lock);
    bool made = false;
    rc = make_backing(s, spec->name);
    made = !rc;
    if (!rc && s->linked && !s->user_named) rc = make_fifos(s, spec->nwq);
    if (!rc) rc = size_backing(s, total);
    if (!rc) {
        s->maplen = total;
        s->base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
        if (s->base == MAP_FAILED) {
            s->base = NULL;
            rc = mp__fail_os("mmap(segment)");
        }
    }
    struct stat st;
    if (!rc && fstat(s->fd, &st) < 0) rc = mp__fail_os("fstat(segment)");
    if (!rc) {
        s->hdr = (seg_hdr_t *)s->base;
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        rc = init_header(s, spec, hdr_size);
    }
    if (rc) {
        if (made && s->linked) unlink_names(s, spec->nwq);
        if (s->hdr) mp__seg_mutex_remove(s->hdr);
        pthread_mutex_unlock(&reg_lock);
        seg_destroy(s);
        return rc;
    }
    if (s->linked) lease_claim(s, no_hold);
    atomic_store_explicit(&s->hdr->magic, SEG_MAGIC, memory_order_release);
    s->refs = 1;
    s->next = reg;
    reg = s;
    pthread_mutex_unlock(&reg_lock);
    *out = s;
    return 0;
}

/* ---- open by name, refs ---- */

/* After adopting a leased object: takes a lease, or fails if its name is
 * already gone. Passed descriptors keep the file and FIFOs, but not a
 * portable build's System V set: that went with the name. */
static int join_lease(mp__seg_t *s, bool need_name, seg_hold_t hold)
{
    lease_claim(s, hold);
    if ((need_name || s->hdr->nmutex) && settled_state(s->hdr) == SEG_GONE) {
        lease_release(s);
        return mp__fail(MP_ENOTFOUND, "the segment's name was removed");
    }
    return 0;
}

static int finish_adopt(mp__seg_t *s, bool fresh, const char *name, bool need_name, seg_hold_t hold)
{
    if (!fresh) {
        hold_release(s, hold);
        return 0;
    }
    if (name) strcpy(s->name, name);
    int rc = s->linked ? join_lease(s, need_name, hold) : 0;
    if (rc) {
        seg_destroy(s);
        return rc;
    }
    s->next = reg;
    reg = s;
    return 0;
}

int mp__seg_open(const char *name, uint32_t tag, mp__seg_t **out)
{
    if (!name_ok(name))
        return mp__fail(MP_EINVAL, "a shared memory name is 1 to %u of A-Z a-z 0-9 _ -",
                        MP__SEG_NAME_MAX);
    pthread_once(&atfork_once, install_atfork);
    mp__seg_t probe = {.user_named = true};
    strcpy(probe.name, name);
    char p[PATH_MAX];
    int rc = path_of(&probe, -1, p, sizeof p);
    if (rc) return rc;
    pthread_mutex_lock(&reg_lock);
    int fd = shm_open(p, O_RDWR, 0);
    if (fd < 0) {
        rc = errno == ENOENT ? mp__fail(MP_ENOTFOUND, "no shared memory named \"%s\"", name)
                             : mp__fail_os("shm_open");
        pthread_mutex_unlock(&reg_lock);
        return rc;
    }
    mp__seg_spec_t expect = {.tag = tag};
    mp__seg_t *s;
    bool fresh;
    rc = adopt_fd(fd, &expect, NULL, true, &s, &fresh);
    if (!rc && !s->user_named) {
        rc = mp__fail(MP_EPROTO, "\"%s\" is not a named segment", name);
        if (fresh)
            seg_destroy(s);
        else
            s->refs--;
    } else if (!rc) {
        rc = finish_adopt(s, fresh, name, true, no_hold);
    }
    pthread_mutex_unlock(&reg_lock);
    if (!rc) *out = s;
    return rc;
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool bad;
} refw_t;

static void put(refw_t *w, const void *p, size_t n)
{
    if (w->bad || n > w->cap - w->len) {
        w->bad = true;
        return;
    }
    memcpy(w->p + w->len, p, n);
    w->len += n;
}

static void put_u64(refw_t *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

static void put_name(refw_t *w, const char *name)
{
    uint8_t n = (uint8_t)strlen(name);
    put(w, &n, 1);
    put(w, name, n);
}

/* The descriptors keep a leased segment's file and FIFOs for the
 * receiver, but its name (and a portable build's System V set) only while
 * a live pid holds a lease: the ref holds one for its receiver. A ref
 * never received holds it until we end. */
static seg_hold_t put_hold(refw_t *w, mp__seg_t *s)
{
    seg_hold_t h = hold_take(s);
    put(w, &h.slot, 1);
    put_u64(w, (uint64_t)h.pid);
    return h;
}

int mp__seg_ref(mp__seg_t *s, bool by_name, mp__seg_ref_t *ref)
{
    refw_t w = {.p = ref->bytes, .cap = sizeof ref->bytes};
    uint8_t kind;
    seg_hold_t hold = no_hold;
    ref->nosh = 0;
    if (!by_name) {
        kind = REF_FDS;
        put(&w, &kind, 1);
        put_name(&w, s->name);
        hold = put_hold(&w, s);
        ref->osh[ref->nosh++] = s->fd;
        for (unsigned q = 0; s->linked && !s->user_named && q < s->hdr->nwq; q++)
            ref->osh[ref->nosh++] = s->fifo[q];
    } else if (s->linked) {
        kind = s->user_named ? REF_SHM_NAME : REF_FILE_NAME;
        put(&w, &kind, 1);
        put_name(&w, s->name);
    } else {
        kind = REF_PROC_FD;
        put(&w, &kind, 1);
        put_u64(&w, (uint64_t)getpid());
        put_u64(&w, (uint64_t)s->fd);
        put_u64(&w, (uint64_t)s->dev);
        put_u64(&w, (uint64_t)s->ino);
    }
    put(&w, s->hdr->key, sizeof s->hdr->key);
    if (w.bad) {
        hold_release(s, hold);
        return mp__fail(MP_EINVAL, "segment reference too long");
    }
    ref->len = w.len;
    return 0;
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
} refr_t;

static const uint8_t *get(refr_t *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_u64(refr_t *r)
{
    const uint8_t *b = get(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static bool get_hold(refr_t *r, seg_hold_t *hold)
{
    const uint8_t *b = get(r, 1);
    uint64_t pid = get_u64(r);
    if (!b || r->bad || (*b != SEG_NO_HOLD && *b >= SEG_LEASES) || !pid || pid > INT32_MAX)
        return false;
    hold->slot = *b;
    hold->pid = (int32_t)pid;
    return true;
}

/* A name from a ref: empty allowed (private segments), else a valid one. */
static bool get_name(refr_t *r, char *out, bool allow_empty)
{
    const uint8_t *n = get(r, 1);
    const uint8_t *p = n && *n <= MP__SEG_NAME_MAX ? get(r, *n) : NULL;
    if (!p) return false;
    memcpy(out, p, *n);
    out[*n] = 0;
    return (allow_empty && !*n) || name_ok(out);
}

static int bad_ref(void)
{
    return mp__fail(MP_EPROTO, "malformed segment reference");
}

/* Portable private segments: their FIFOs, passed or by name. */
static int adopt_fifos(mp__seg_t *s, mp__seg_ref_t *ref, bool by_name)
{
    unsigned nwq = s->hdr->nwq;
    if (!by_name && ref->nosh != 1 + nwq) return bad_ref();
    for (unsigned q = 0; q < nwq; q++) {
        int fd;
        if (by_name) {
            char p[PATH_MAX];
            int rc = path_of(s, (int)q, p, sizeof p);
            if (rc) return rc;
            fd = open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0) return mp__fail(MP_ENOTFOUND, "the segment's wait queue is gone");
        } else {
            if (ref->osh[1 + q] == MP__OSH_INVALID || ref->osh[1 + q] > INT_MAX) return bad_ref();
            fd = (int)ref->osh[1 + q];
            ref->osh[1 + q] = MP__OSH_INVALID;
        }
        s->fifo[q] = fd;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode) || mp__fd_cloexec(fd))
            return mp__fail(MP_EPROTO, "a wait queue is not a FIFO");
    }
    return 0;
}

/* Opens what a by-name ref names; MP_ENOTFOUND when it is gone. */
static int open_ref_target(refr_t *r, uint8_t kind, char *name, int *fd)
{
    char p[PATH_MAX];
    if (kind == REF_PROC_FD) {
#if PRIVATE_IN_MEMFD
        uint64_t pid = get_u64(r), num = get_u64(r), dev = get_u64(r), ino = get_u64(r);
        if (r->bad || pid == 0 || pid > INT_MAX || num > INT_MAX) return bad_ref();
        snprintf(p, sizeof p, "/proc/%llu/fd/%llu", (unsigned long long)pid,
                 (unsigned long long)num);
        struct stat st;
        /* Checked before opening, so a hostile ref cannot make us open a
         * device or a FIFO. */
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != dev ||
            (uint64_t)st.st_ino != ino)
            return mp__fail(MP_ENOTFOUND, "the exporting process no longer holds the object");
        *fd = open(p, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        return *fd < 0 ? mp__fail_os("open(exported segment)") : 0;
#else
        (void)r;
        return mp__fail(MP_EPROTO, "reference from a build of another kind");
#endif
    }
    if (!get_name(r, name, false)) return bad_ref();
    mp__seg_t probe = {.user_named = kind == REF_SHM_NAME};
    strcpy(probe.name, name);
    int rc = path_of(&probe, -1, p, sizeof p);
    if (rc) return rc;
    *fd = kind == REF_SHM_NAME ? shm_open(p, O_RDWR, 0) : open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0)
        return errno == ENOENT ? mp__fail(MP_ENOTFOUND, "the object is gone")
                               : mp__fail_os("open(segment)");
    return 0;
}

int mp__seg_from_ref(mp__seg_ref_t *ref, const mp__seg_spec_t *expect, mp__seg_t **out)
{
    pthread_once(&atfork_once, install_atfork);
    refr_t r = {.p = ref->bytes, .len = ref->len > sizeof ref->bytes ? 0 : ref->len};
    const uint8_t *k = get(&r, 1);
    uint8_t kind = k ? *k : 0;
    char name[MP__SEG_NAME_MAX + 1] = "";
    int fd = -1;
    int rc = 0;
    bool by_name = kind != REF_FDS;
    seg_hold_t hold = no_hold;
    pthread_mutex_lock(&reg_lock);
    if (kind == REF_FDS) {
        if (!get_name(&r, name, true) || !get_hold(&r, &hold) || ref->nosh < 1 ||
            ref->osh[0] == MP__OSH_INVALID || ref->osh[0] < 0 || ref->osh[0] > INT_MAX)
            rc = bad_ref();
        else {
            fd = (int)ref->osh[0];
            ref->osh[0] = MP__OSH_INVALID;
            rc = mp__fd_cloexec(fd);
            if (rc) close(fd);
        }
    } else if (kind == REF_SHM_NAME || kind == REF_FILE_NAME || kind == REF_PROC_FD) {
        rc = open_ref_target(&r, kind, name, &fd);
    } else {
        rc = bad_ref();
    }
    const uint8_t *key = rc ? NULL : get(&r, 16);
    if (!rc && (!key || r.pos != r.len)) {
        rc = bad_ref();
        close(fd);
    }
    mp__seg_t *s = NULL;
    bool fresh = false;
    if (!rc) rc = adopt_fd(fd, expect, key, by_name, &s, &fresh);
    if (!rc && fresh && s->linked && !s->user_named) {
        strcpy(s->name, name);
        rc = adopt_fifos(s, ref, by_name);
        if (rc) seg_destroy(s);
    }
    if (!rc) rc = finish_adopt(s, fresh, name, by_name, hold);
    pthread_mutex_unlock(&reg_lock);
    if (!rc) *out = s;
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
    seg_hdr_t *h = s->hdr;
    for (;;) {
        int32_t st = settled_state(h);
        if (st == SEG_GONE) return mp__fail(MP_ENOTFOUND, "\"%s\" was already unlinked", s->name);
        if (atomic_compare_exchange_strong(&h->state, &st, (int32_t)getpid())) break;
    }
    unlink_names(s, 0);
    atomic_store(&h->state, SEG_GONE);
    return 0;
}

void mp__seg_close(mp__seg_t *s)
{
    if (!s) return;
    pthread_mutex_lock(&reg_lock);
    if (--s->refs > 0) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    reg_remove(s);
    if (s->linked) {
        lease_release(s);
        decide_removal(s->hdr, s, s->hdr->nwq);
    }
    pthread_mutex_unlock(&reg_lock);
    seg_destroy(s);
}

/* ---- extension space (platform.h): the file beyond the mapped part ---- */

size_t mp__seg_ext_unit(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Where extension offset off lies in s's file. */
static int ext_at(mp__seg_t *s, uint64_t off, uint64_t len, off_t *at)
{
    uint64_t unit = mp__seg_ext_unit();
    *at = 0; /* set on every path: the callers' use is then plainly defined */
    if (s->user_named) return mp__fail(MP_EINVAL, "a named segment has no extension space");
    if (!len || off % unit || len % unit || off > MP__SEG_EXT_MAX || len > MP__SEG_EXT_MAX - off)
        return mp__fail(MP_EINVAL, "extension range out of bounds");
    *at = (off_t)(align_up(s->hdr->hdr_size + (size_t)s->hdr->size, unit) + off);
    return 0;
}

int mp__seg_ext_commit(mp__seg_t *s, uint64_t off, uint64_t len)
{
    off_t at;
    int rc = ext_at(s, off, len, &at);
    if (rc) return rc;
#if defined(__linux__)
    /* Grows the file without ever shrinking it, and reserves the pages so
     * that a full tmpfs is this error rather than a SIGBUS later. */
    int err;
    while ((err = posix_fallocate(s->fd, at, (off_t)len)) == EINTR)
        ;
    if (err == ENOSPC || err == ENOMEM || err == EFBIG)
        return mp__fail(MP_ENOMEM, "no room for %llu bytes of shared memory",
                        (unsigned long long)len);
    if (err) return mp__fail(MP_ESYS, "posix_fallocate: %s", strerror(err));
#else
    struct stat st;
    if (fstat(s->fd, &st) < 0) return mp__fail_os("fstat(segment)");
    if (st.st_size < at + (off_t)len && ftruncate(s->fd, at + (off_t)len) < 0)
        return mp__fail_os("ftruncate(segment)");
#endif
    return 0;
}

int mp__seg_ext_map(mp__seg_t *s, uint64_t off, size_t len, void **p)
{
    off_t at;
    int rc = ext_at(s, off, len, &at);
    if (rc) return rc;
    int flags = MAP_SHARED;
#if defined(MAP_POPULATE)
    flags |= MAP_POPULATE; /* one call instead of a page fault per page */
#endif
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, s->fd, at);
    if (m == MAP_FAILED) return mp__fail_os("mmap(extension)");
    *p = m;
    return 0;
}

void mp__seg_ext_unmap(void *p, size_t len)
{
    if (p) munmap(p, len);
}

void mp__seg_ext_release(mp__seg_t *s, uint64_t off, uint64_t len)
{
    off_t at;
    if (ext_at(s, off, len, &at)) return;
#if defined(__linux__)
    fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, (off_t)len);
#elif defined(F_PUNCHHOLE)
    fpunchhole_t ph = {.fp_offset = at, .fp_length = (off_t)len};
    fcntl(s->fd, F_PUNCHHOLE, &ph);
#endif
}
