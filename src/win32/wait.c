/* Waiting on streams and children at once.
 *
 * Each stream gets a zero-byte read probe (see stream.c), each child its
 * process handle; then one wait on all of them, and every item is checked
 * again afterwards, so all that are ready are reported (not only the first
 * WaitForMultipleObjects names). Past MAXIMUM_WAIT_OBJECTS the thread
 * pool waits on each object and signals one shared event. */
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#define SMALL 16

typedef struct {
    OVERLAPPED ov;
    HANDLE obj;   /* what to wait on; NULL when ready or not waited on */
    bool armed;   /* a probe is pending on the stream */
    size_t alias; /* index of an earlier item for the same object, or SIZE_MAX */
} item_t;

static VOID CALLBACK wake(PVOID ev, BOOLEAN timed_out)
{
    (void)timed_out;
    SetEvent(ev);
}

/* Waits until one of objs is signalled or the timeout passes. */
static int wait_any(HANDLE *objs, size_t n, long timeout_ms)
{
    if (n <= MAXIMUM_WAIT_OBJECTS) {
        DWORD w = WaitForMultipleObjects((DWORD)n, objs, FALSE, mp__w32_ms(timeout_ms));
        return w == WAIT_FAILED ? mp__fail_os("WaitForMultipleObjects") : 0;
    }
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE *waits = mp__calloc(n, sizeof *waits);
    int rc = !ev ? mp__fail_os("CreateEventW") : !waits ? MP_ENOMEM : 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (!RegisterWaitForSingleObject(&waits[i], objs[i], wake, ev, INFINITE,
                                         WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD))
            rc = mp__fail_os("RegisterWaitForSingleObject");
    if (!rc && WaitForSingleObject(ev, mp__w32_ms(timeout_ms)) == WAIT_FAILED)
        rc = mp__fail_os("WaitForSingleObject");
    /* INVALID_HANDLE_VALUE: wait for a running callback, so none can touch
     * ev after it is closed. */
    for (size_t i = 0; waits && i < n; i++)
        if (waits[i]) UnregisterWaitEx(waits[i], INVALID_HANDLE_VALUE);
    free(waits);
    if (ev) CloseHandle(ev);
    return rc;
}

int mp__wait_many(const mp__waitable_t *w, size_t n, long timeout_ms, bool *ready)
{
    item_t ismall[SMALL];
    HANDLE osmall[SMALL];
    item_t *it = n <= SMALL ? ismall : mp__calloc(n, sizeof *it);
    HANDLE *objs = n <= SMALL ? osmall : mp__calloc(n, sizeof *objs);
    int rc = it && objs ? 0 : MP_ENOMEM;
    size_t nready = 0, nobjs = 0, armed_upto = 0;
    for (size_t i = 0; !rc && i < n; i++, armed_upto = i) {
        memset(&it[i], 0, sizeof it[i]);
        it[i].alias = SIZE_MAX;
        ready[i] = false;
        /* WaitForMultipleObjects refuses the same handle twice. */
        for (size_t j = 0; j < i && it[i].alias == SIZE_MAX; j++)
            if ((w[i].stream && w[j].stream == w[i].stream) ||
                (w[i].child && w[j].child == w[i].child))
                it[i].alias = j;
        if (it[i].alias != SIZE_MAX) continue;
        if (w[i].stream) {
            rc = mp__w32_stream_arm(w[i].stream, &it[i].ov);
            if (rc == 1) {
                ready[i] = true;
                rc = 0;
            } else if (!rc) {
                it[i].armed = true;
                it[i].obj = it[i].ov.hEvent;
            }
        } else if (w[i].child) {
            if (w[i].child->done || WaitForSingleObject(w[i].child->proc, 0) == WAIT_OBJECT_0)
                ready[i] = true;
            else
                it[i].obj = w[i].child->proc;
        }
        if (ready[i])
            nready++;
        else if (it[i].obj)
            objs[nobjs++] = it[i].obj;
    }
    if (!rc && !nready && nobjs)
        rc = wait_any(objs, nobjs, timeout_ms);
    else if (!rc && !nready && timeout_ms > 0)
        Sleep((DWORD)timeout_ms); /* nothing to wait on: just the timeout */
    /* Every probe is collected, on failure too: its OVERLAPPED is ours. */
    for (size_t i = 0; it && i < armed_upto; i++) {
        if (it[i].armed) {
            if (mp__w32_stream_disarm(w[i].stream, &it[i].ov) && !ready[i]) {
                ready[i] = true;
                nready++;
            }
        } else if (it[i].obj && !ready[i] && WaitForSingleObject(it[i].obj, 0) == WAIT_OBJECT_0) {
            ready[i] = true;
            nready++;
        }
    }
    for (size_t i = 0; it && i < armed_upto; i++)
        if (it[i].alias != SIZE_MAX && ready[it[i].alias] && !ready[i]) {
            ready[i] = true;
            nready++;
        }
    if (it != ismall) free(it);
    if (objs != osmall) free(objs);
    return rc ? rc : (int)nready;
}
