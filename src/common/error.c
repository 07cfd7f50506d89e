/* Error codes, their names and texts, and the per-thread failure detail. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local char detail[512];
/* Set instead of detail by mp__fail_lit; NULL when detail holds the text. */
static _Thread_local const char *detail_lit;

const char *mp_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define MP__ERR_TEXT(name, val, text)                                                              \
    case MP_##name:                                                                                \
        return text;
        MP_ERRNO_MAP(MP__ERR_TEXT)
#undef MP__ERR_TEXT
    default:
        return "unknown error";
    }
}

const char *mp_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define MP__ERR_NAME(name, val, text)                                                              \
    case MP_##name:                                                                                \
        return "MP_" #name;
        MP_ERRNO_MAP(MP__ERR_NAME)
#undef MP__ERR_NAME
    default:
        return "MP_EUNKNOWN";
    }
}

const char *mp_last_error_detail(void)
{
    return detail_lit ? detail_lit : detail;
}

void mp__fail_detail(const char *fmt, ...)
{
    /* Formatted apart first: the arguments may include the old detail. */
    char text[sizeof detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(detail, text, sizeof detail);
    detail_lit = NULL;
}

int mp__fail_lit(int code, const char *text)
{
    detail_lit = text;
    return code;
}
