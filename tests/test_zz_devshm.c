/* Nothing of mproc's may stay behind in /dev/shm (Linux): not after the
 * whole suite, kill tests included.
 *
 * A leaked entry is one that no process holds: no open fd and no mapping
 * of it in any /proc/<pid>. That is judged from the outside, not from the
 * library's own lease records. In the suite's normal parallel run other
 * tests create and reclaim entries all the time, so only entries unheld
 * for LEAK_GRACE_S count; the ctest entry "devshm" runs this test alone
 * after the fork and spawn runs with MPROC_DEVSHM_STRICT=1, where every
 * unheld entry counts. mproc's names start with "mpu-" (mp_shm) or "mps-"
 * (synchronisation objects of the portable build). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#if defined(__linux__)
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define LEAK_GRACE_S 60
#define MAX_ENTRIES 4096

typedef struct {
    char name[256];
    dev_t dev;
    ino_t ino;
    time_t changed;
    bool held;
} entry_t;

static bool is_mproc_name(const char *n)
{
    return !strncmp(n, "mpu-", 4) || !strncmp(n, "mps-", 4);
}

static size_t list_entries(entry_t *e, size_t cap)
{
    DIR *d = opendir(SHM_DIR);
    cr_assert_not_null(d, "cannot list " SHM_DIR);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d)) && n < cap;) {
        if (!is_mproc_name(de->d_name)) continue;
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, SHM_DIR "/%s", de->d_name);
        if (lstat(path, &st) < 0) continue; /* removed meanwhile */
        snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
        e[n].dev = st.st_dev;
        e[n].ino = st.st_ino;
        e[n].changed = st.st_ctime > st.st_mtime ? st.st_ctime : st.st_mtime;
        e[n].held = false;
        n++;
    }
    closedir(d);
    return n;
}

static void mark_held(entry_t *e, size_t n, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].dev == dev && e[i].ino == ino) e[i].held = true;
}

/* Marks every entry some process has open or mapped. */
static void scan_process(const char *pid, entry_t *e, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    DIR *d = opendir(path);
    for (struct dirent *de; d && (de = readdir(d));) {
        char fd[800];
        struct stat st;
        snprintf(fd, sizeof fd, "%s/%s", path, de->d_name);
        if (de->d_name[0] != '.' && stat(fd, &st) == 0) mark_held(e, n, st.st_dev, st.st_ino);
    }
    if (d) closedir(d);
    snprintf(path, sizeof path, "/proc/%s/maps", pid);
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long ino = 0;
        unsigned maj = 0, min = 0;
        if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) == 3 && ino)
            for (size_t i = 0; i < n; i++)
                if (e[i].ino == (ino_t)ino) e[i].held = true;
    }
    if (f) fclose(f);
}

Test(devshm, nothing_of_mproc_left_behind, .timeout = 120)
{
    bool strict = getenv("MPROC_DEVSHM_STRICT") != NULL;
    entry_t *e = calloc(MAX_ENTRIES, sizeof *e);
    cr_assert_not_null(e);
    size_t n = list_entries(e, MAX_ENTRIES);
    DIR *proc = opendir("/proc");
    cr_assert_not_null(proc);
    for (struct dirent *de; (de = readdir(proc));)
        if (de->d_name[0] >= '1' && de->d_name[0] <= '9') scan_process(de->d_name, e, n);
    closedir(proc);
    time_t now = time(NULL);
    size_t leaked = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, SHM_DIR "/%s", e[i].name);
        struct stat st;
        bool still_there = lstat(path, &st) == 0 && st.st_ino == e[i].ino;
        bool old = now - e[i].changed >= LEAK_GRACE_S;
        if (!e[i].held && still_there && (strict || old)) {
            cr_log_error("leaked: " SHM_DIR "/%s", e[i].name);
            leaked++;
        }
    }
    free(e);
    cr_assert_eq(leaked, 0, "%zu mproc entries in " SHM_DIR " belong to no process", leaked);
}
#endif
