/* util.c - allocation, path and number-parsing helpers. */
#include <math.h>
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

/* Shared by the count and size parsers: a non-negative decimal number
 * (fraction allowed) times a multiplier chosen from the suffix table. */
struct suffix { const char *text; double factor; };

static bool parse_scaled(const char *text, const struct suffix *suffixes, uint64_t *out)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return false;
    char *end;
    double value = strtod(text, &end);
    if (end == text || !isfinite(value) || value < 0)
        return false;
    double factor = 0;
    if (*end == '\0')
        factor = 1;
    for (const struct suffix *s = suffixes; factor == 0 && s->text; s++)
        if (strcmp(end, s->text) == 0)
            factor = s->factor;
    if (factor == 0)
        return false;
    double scaled = value * factor;
    /* a count must come out whole: "1.5" alone is no count */
    if (scaled >= 18446744073709551616.0 || scaled != floor(scaled))
        return false;
    *out = (uint64_t)scaled;
    return true;
}

bool lt_parse_count(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {
        {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"B", 1e9}, {"G", 1e9}, {"T", 1e12}, {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}

bool lt_parse_size(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {
        {"B", 1},          {"KB", 1e3},          {"MB", 1e6},          {"GB", 1e9},
        {"TB", 1e12},      {"K", 1e3},           {"M", 1e6},           {"G", 1e9},
        {"KiB", 1024.0},   {"MiB", 1048576.0},   {"GiB", 1073741824.0},
        {"TiB", 1099511627776.0}, {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}
