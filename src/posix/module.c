/* Code addresses across processes: a spawned child runs the same binary,
 * maybe loaded at another address, so a target travels as (module path,
 * offset, image identity) and is checked before it is called. */
#include <stdlib.h>
#include <string.h>

#include "posix.h"

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define FNV_BASIS 0xcbf29ce484222325ull

#if defined(__APPLE__)
#include <dlfcn.h>
#include <mach-o/dyld.h>
#include <mach-o/loader.h>

/* Images are found by name; the identity is the Mach-O header's shape. */
static const struct mach_header *find_image(const char *name)
{
    uint32_t n = _dyld_image_count();
    for (uint32_t i = 0; i < n; i++) {
        const char *iname = _dyld_get_image_name(i);
        if (iname && !strcmp(iname, name)) return _dyld_get_image_header(i);
    }
    return NULL;
}

static uint64_t image_ident(const struct mach_header *h)
{
    uint64_t id = fnv1a(FNV_BASIS, h, sizeof *h);
    return fnv1a(id, (const char *)h + sizeof(struct mach_header_64), h->sizeofcmds);
}

int mp__module_locate(const void *addr, char **path, uint64_t *offset, uint64_t *ident)
{
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fbase)
        return mp__fail(MP_ENOTFOUND, "dladdr: no module holds the target address");
    *path = mp__strdup(info.dli_fname);
    if (!*path) return MP_ENOMEM;
    *offset = (uint64_t)((const char *)addr - (const char *)info.dli_fbase);
    *ident = image_ident(info.dli_fbase);
    return 0;
}

int mp__module_resolve(const char *path, uint64_t offset, uint64_t ident, void **addr)
{
    const struct mach_header *h = find_image(path);
    if (!h) return mp__fail(MP_ENOTFOUND, "module %s is not loaded in this process", path);
    if (image_ident(h) != ident)
        return mp__fail(MP_EPROTO, "module %s is not the binary the parent runs", path);
    *addr = (char *)h + offset;
    return 0;
}
#else
#include <elf.h>
#include <link.h>

typedef struct {
    const void *addr; /* locate: the address to find */
    const char *name; /* resolve: the module to find ("" = the program) */
    bool found;
    bool first;
    char *path;
    uintptr_t base;
    uint64_t ident;
    bool exec_ok; /* resolve: offset lies in an executable segment */
    uint64_t offset;
} search_t;

static uint64_t module_ident(const struct dl_phdr_info *info)
{
    /* The GNU build-id names the exact binary when the linker wrote one. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const char *desc = p + sizeof *nh + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && desc + nh->n_descsz <= end)
                return fnv1a(FNV_BASIS, desc, nh->n_descsz);
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    uint64_t h = FNV_BASIS;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uint64_t f[5] = {ph->p_type, ph->p_offset, ph->p_vaddr, ph->p_filesz, ph->p_flags};
        h = fnv1a(h, f, sizeof f);
    }
    return h;
}

static bool in_exec_segment(const struct dl_phdr_info *info, uint64_t off)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && off >= ph->p_vaddr &&
            off - ph->p_vaddr < ph->p_memsz)
            return true;
    }
    return false;
}

static int visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    search_t *s = arg;
    bool first = s->first;
    s->first = false;
    /* The program itself is the first entry; its name is empty. */
    const char *name = first ? "" : info->dlpi_name;
    if (s->addr) {
        uintptr_t a = (uintptr_t)s->addr;
        if (a < info->dlpi_addr || !in_exec_segment(info, a - info->dlpi_addr)) return 0;
        s->path = mp__strdup(name);
        s->base = info->dlpi_addr;
    } else {
        if (strcmp(name, s->name)) return 0;
        s->base = info->dlpi_addr;
        s->exec_ok = in_exec_segment(info, s->offset);
    }
    s->ident = module_ident(info);
    s->found = true;
    return 1;
}

int mp__module_locate(const void *addr, char **path, uint64_t *offset, uint64_t *ident)
{
    search_t s = {.addr = addr, .first = true};
    dl_iterate_phdr(visit, &s);
    if (!s.found)
        return mp__fail(MP_ENOTFOUND, "no loaded module holds the target address %p", addr);
    if (!s.path) return MP_ENOMEM;
    *path = s.path;
    *offset = (uint64_t)((uintptr_t)addr - s.base);
    *ident = s.ident;
    return 0;
}

int mp__module_resolve(const char *path, uint64_t offset, uint64_t ident, void **addr)
{
    search_t s = {.name = path, .first = true, .offset = offset};
    dl_iterate_phdr(visit, &s);
    const char *shown = *path ? path : "the main program";
    if (!s.found) return mp__fail(MP_ENOTFOUND, "module %s is not loaded in this process", shown);
    if (s.ident != ident) return mp__fail(MP_EPROTO, "%s is not the binary the parent runs", shown);
    if (!s.exec_ok)
        return mp__fail(MP_EPROTO, "offset %llu is not code in %s", (unsigned long long)offset,
                        shown);
    *addr = (void *)(s.base + (uintptr_t)offset);
    return 0;
}
#endif
