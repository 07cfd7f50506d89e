/* The launch record: everything a spawned child needs to become the
 * process its parent described (CPython's preparation data + pickled
 * Process object, as bytes with no code in them). */
#ifndef MP_LAUNCH_H
#define MP_LAUNCH_H

#include "args.h"

typedef struct {
    char *name;
    mp_pid_t parent;
    bool daemon;
    char *module; /* where the target lives */
    uint64_t offset;
    uint64_t ident;
    mp_args_t *args;
} mp__launch_t;

int mp__launch_pack(const mp__launch_t *l, mp__wbuf_t *w, mp__ostab_t *t);
/* Parses a record; on failure nothing is left allocated. */
int mp__launch_unpack(const void *p, size_t n, mp__osh_t *tab, size_t ntab, mp__launch_t *l);
void mp__launch_release(mp__launch_t *l);
/* The child side: parses, resolves and runs the target; returns only with
 * an error (after writing the reason to the detail). */
int mp__launch_run(const void *p, size_t n, mp__osh_t *tab, size_t ntab, int *exitcode);

#endif
