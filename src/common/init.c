/* Program start, start methods and this process's identity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"

static bool initialised;
static mp_start_method_t default_method = MP_START_DEFAULT;
static char *executable;
static char *current_name;
static bool current_name_owned; /* false: borrowed by mp__set_identity_fork */
static mp_pid_t parent_pid = -1;

const char *mp_version(void)
{
    return MPROC_VERSION_STRING;
}

bool mp__initialised(void)
{
    return initialised;
}

static void child_cannot_start(const char *why)
{
    fprintf(stderr, "mproc: child process cannot start: %s\n", why);
    fflush(stderr);
    mp__os_exit(MP_EXIT_BOOTSTRAP);
}

static void run_spawned_child(int argc, char **argv)
{
    void *record = NULL;
    size_t len = 0;
    mp__osh_t *tab = NULL;
    size_t ntab = 0;
    if (mp__bootstrap_read(argc, argv, &record, &len, &tab, &ntab))
        child_cannot_start(mp_last_error_detail());
    int code = 0;
    if (mp__launch_run(record, len, tab, ntab, &code)) child_cannot_start(mp_last_error_detail());
    free(record);
    free(tab);
    fflush(NULL);
    mp__os_exit(code);
}

int mp_init(int argc, char **argv)
{
    initialised = true;
    if (mp__bootstrap_is_child(argc, argv)) run_spawned_child(argc, argv);
    return 0;
}

static mp_start_method_t env_method(void)
{
    const char *m = getenv("MPROC_START_METHOD");
    if (m && !strcmp(m, "fork")) return MP_START_FORK;
    if (m && !strcmp(m, "spawn")) return MP_START_SPAWN;
    return MP_START_DEFAULT;
}

mp_start_method_t mp__start_method_resolve(mp_start_method_t m)
{
    if (m == MP_START_FORK || m == MP_START_SPAWN) return m;
    if (default_method != MP_START_DEFAULT) return default_method;
    m = env_method();
    if (m != MP_START_DEFAULT) return m;
    /* fork where the OS has it, as Python on Linux up to 3.13. */
    return mp__os_has_fork() ? MP_START_FORK : MP_START_SPAWN;
}

int mp_set_start_method(mp_start_method_t m)
{
    if (m != MP_START_DEFAULT && m != MP_START_FORK && m != MP_START_SPAWN)
        return mp__fail(MP_EINVAL, "unknown start method %d", (int)m);
    if (m == MP_START_FORK && !mp__os_has_fork())
        return mp__fail(MP_ENOSYS, "the fork start method does not exist on this platform");
    default_method = m;
    return 0;
}

mp_start_method_t mp_get_start_method(void)
{
    return mp__start_method_resolve(MP_START_DEFAULT);
}

int mp_set_executable(const char *path)
{
    if (!path || !*path) return mp__fail(MP_EINVAL, "mp_set_executable: empty path");
    char *copy = mp__strdup(path);
    if (!copy) return MP_ENOMEM;
    free(executable);
    executable = copy;
    return 0;
}

const char *mp__executable(void)
{
    if (!executable && mp__os_exe_path(&executable)) return NULL;
    return executable;
}

int mp_cpu_count(void)
{
    return mp__os_cpu_count();
}

mp_pid_t mp_getpid(void)
{
    return mp__os_getpid();
}

mp_pid_t mp_parent_pid(void)
{
    return parent_pid >= 0 ? parent_pid : mp__os_getppid();
}

const char *mp_current_name(void)
{
    return current_name ? current_name : "MainProcess";
}

void mp__set_identity(const char *name, mp_pid_t parent)
{
    char *copy = mp__strdup(name);
    if (copy) {
        if (current_name_owned) free(current_name);
        current_name = copy;
        current_name_owned = true;
    }
    parent_pid = parent;
}

void mp__set_identity_fork(const char *name, mp_pid_t parent)
{
    /* A copy would cost the new child a heap page fault or two; its
     * process object outlives the target, so the name can be borrowed. */
    current_name = (char *)name;
    current_name_owned = false;
    parent_pid = parent;
}
