/* Code addresses across processes: a module path, an offset in it, and an
 * identity of the loaded image taken from its PE headers. */
#include <stdlib.h>
#include <string.h>

#include "win32.h"

static uint64_t fnv(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint8_t)(v >> (8 * i));
        h *= 0x100000001b3u;
    }
    return h;
}

/* The identity hashes what the linker decided (stamp, sizes, entry point,
 * section layout), but not ImageBase, which the loader rewrites when ASLR
 * moves the image, differently in each process. */
static int image_ident(HMODULE m, uint64_t *ident, DWORD *size)
{
    const uint8_t *base = (const uint8_t *)m;
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
    if (dos->e_magic != IMAGE_DOS_SIGNATURE)
        return mp__fail(MP_EPROTO, "module at %p has no DOS header", (void *)m);
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        return mp__fail(MP_EPROTO, "module at %p has no PE header", (void *)m);
    const IMAGE_FILE_HEADER *fh = &nt->FileHeader;
    const IMAGE_OPTIONAL_HEADER *oh = &nt->OptionalHeader;
    uint64_t h = 0xcbf29ce484222325u;
    h = fnv(h, fh->Machine);
    h = fnv(h, fh->NumberOfSections);
    h = fnv(h, fh->TimeDateStamp);
    h = fnv(h, fh->Characteristics);
    h = fnv(h, oh->SizeOfCode);
    h = fnv(h, oh->SizeOfInitializedData);
    h = fnv(h, oh->AddressOfEntryPoint);
    h = fnv(h, oh->SizeOfImage);
    h = fnv(h, oh->CheckSum);
    const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
    for (WORD i = 0; i < fh->NumberOfSections; i++) {
        uint64_t name;
        memcpy(&name, sec[i].Name, sizeof name);
        h = fnv(h, name);
        h = fnv(h, sec[i].VirtualAddress);
        h = fnv(h, sec[i].Misc.VirtualSize);
        h = fnv(h, sec[i].SizeOfRawData);
    }
    *ident = h;
    *size = oh->SizeOfImage;
    return 0;
}

int mp__module_locate(const void *addr, char **path, uint64_t *offset, uint64_t *ident)
{
    HMODULE m;
    if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                                GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                            (LPCWSTR)addr, &m))
        return mp__fail_os("GetModuleHandleExW");
    DWORD size;
    int rc = image_ident(m, ident, &size);
    if (rc) return rc;
    *offset = (uint64_t)((const uint8_t *)addr - (const uint8_t *)m);
    return mp__w32_module_path(m, path);
}

int mp__module_resolve(const char *path, uint64_t offset, uint64_t ident, void **addr)
{
    wchar_t *w = mp__w32_wide(path);
    if (!w) return MP_ESYS;
    /* Loaded modules only: loading a library here would run its code
     * before anything checked that it is the parent's. */
    HMODULE m = GetModuleHandleW(w);
    free(w);
    if (!m) return mp__fail(MP_ENOTFOUND, "module %s is not loaded in this process", path);
    uint64_t mine;
    DWORD size;
    int rc = image_ident(m, &mine, &size);
    if (rc) return rc;
    if (mine != ident)
        return mp__fail(MP_EPROTO,
                        "module %s is not the image the parent ran (identity %016llx, "
                        "expected %016llx)",
                        path, (unsigned long long)mine, (unsigned long long)ident);
    if (offset >= size)
        return mp__fail(MP_EPROTO, "offset %llu lies outside module %s (%lu bytes)",
                        (unsigned long long)offset, path, (unsigned long)size);
    *addr = (uint8_t *)m + offset;
    return 0;
}
