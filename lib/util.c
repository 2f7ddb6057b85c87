/* util.c - allocation, path and number-parsing helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

char *lt_strdup(const char *s)
{
    return s ? lt_strndup(s, strlen(s)) : NULL;
}

char *lt_strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

char *lt_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

char *lt_path_join(const char *dir, const char *name)
{
    size_t len = strlen(dir);
    bool has_slash = len > 0 && dir[len - 1] == '/';
    return lt_asprintf("%s%s%s", dir, has_slash || len == 0 ? "" : "/", name);
}

bool lt_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool lt_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool lt_grow(void **array, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return true;
    size_t new_cap = *cap ? *cap : 8;
    while (new_cap < need) {
        if (new_cap > SIZE_MAX / 2)
            return false;
        new_cap *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(new_cap, elem_size, &bytes))
        return false;
    void *grown = realloc(*array, bytes);
    if (!grown)
        return false;
    *array = grown;
    *cap = new_cap;
    return true;
}

/* Shared by the count and size parsers: digits, an optional fraction and a
 * suffix from the table; the product must be a whole number that fits in
 * 64 bits.  Exact integer arithmetic, so "8.191k" is 8191. */
struct suffix { const char *text; uint64_t factor; };

static bool parse_scaled(const char *text, const struct suffix *suffixes, uint64_t *out)
{
    unsigned __int128 digits = 0, divisor = 1;
    const char *p = text;
    bool any = false, point = false;
    for (; *p; p++) {
        if (*p == '.' && !point) {
            point = true;
            continue;
        }
        if (*p < '0' || *p > '9')
            break;
        if (digits > (unsigned __int128)UINT64_MAX * 10)
            return false;
        digits = digits * 10 + (unsigned)(*p - '0');
        if (point)
            divisor *= 10;
        any = true;
        if (divisor > (unsigned __int128)1e30)
            return false;
    }
    if (!any)
        return false;
    uint64_t factor = 0;
    if (*p == '\0')
        factor = 1;
    for (const struct suffix *s = suffixes; factor == 0 && s->text; s++)
        if (strcmp(p, s->text) == 0)
            factor = s->factor;
    if (factor == 0)
        return false;
    unsigned __int128 scaled = digits * factor;
    if (scaled / factor != digits || scaled % divisor != 0 || scaled / divisor > UINT64_MAX)
        return false;
    *out = (uint64_t)(scaled / divisor);
    return true;
}

bool lt_parse_count(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {{"k", 1000}, {"K", 1000}, {"M", 1000000},
                                             {"B", 1000000000}, {"G", 1000000000},
                                             {"T", 1000000000000}, {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}

bool lt_parse_size(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {
        {"B", 1},          {"KB", 1000},        {"MB", 1000000},  {"GB", 1000000000},
        {"TB", 1000000000000}, {"K", 1000},     {"M", 1000000},   {"G", 1000000000},
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
        {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}
