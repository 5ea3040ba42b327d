/* buf.c - growable byte buffers: the one buffer type of the project. */
#include "base/base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* buf_reserve - grow geometrically so appends stay amortised O(1). */
int buf_reserve(buf *b, size_t n)
{
    return buf_reserve_capped(b, n, SIZE_MAX);
}

int buf_reserve_capped(buf *b, size_t n, size_t max)
{
    if (n < b->cap - b->len && b->data)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return ENOMEM;
    size_t need = b->len + n + 1; /* room for a NUL kept by buf_cstr */
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > max && need <= max)
        cap = max;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_add(buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_addc(buf *b, uint8_t c)
{
    return buf_add(b, &c, 1);
}

int buf_adds(buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int buf_add_u16(buf *b, uint16_t u)
{
    uint8_t le[2] = {(uint8_t)(u & 0xff), (uint8_t)(u >> 8)};
    return buf_add(b, le, 2);
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return EINVAL;
    if ((size_t)n < sizeof small)
        return buf_add(b, small, (size_t)n);
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *buf_cstr(buf *b)
{
    if (buf_reserve(b, 1))
        return NULL;
    b->data[b->len] = 0;
    return (char *)b->data;
}

char *buf_detach(buf *b, size_t *len)
{
    if (!buf_cstr(b))
        return NULL;
    char *p = (char *)b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
