/* util.c - allocation and path helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "source_sink.h"

char *lti_strdup(const char *s)
{
    return s ? lti_strndup(s, strlen(s)) : NULL;
}

char *lti_strndup(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

char *lti_asprintf(const char *fmt, ...)
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

char *lti_path_join(const char *dir, const char *name)
{
    size_t len = strlen(dir);
    bool has_slash = len > 0 && dir[len - 1] == '/';
    return lti_asprintf("%s%s%s", dir, has_slash || len == 0 ? "" : "/", name);
}

bool lti_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool lti_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool lti_grow(void **array, size_t *cap, size_t need, size_t elem_size)
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

lti_shown lti_show(const char *s)
{
    lti_shown shown;
    size_t cap = sizeof shown.text - 4; /* room for "..." and the NUL */
    size_t n = 0;
    for (; s[n] && n < cap; n++) {
        unsigned char c = (unsigned char)s[n];
        shown.text[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[n]) {
        /* do not leave half a UTF-8 sequence before the ellipsis */
        while (n > 0 && ((unsigned char)shown.text[n - 1] & 0xC0) == 0x80)
            n--;
        if (n > 0 && ((unsigned char)shown.text[n - 1] & 0xC0) == 0xC0)
            n--;
        memcpy(shown.text + n, "...", 3);
        n += 3;
    }
    shown.text[n] = '\0';
    return shown;
}
