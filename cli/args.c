/* args.c - the numbers users type on the command line: counts ("5M") and
 * byte sizes ("2GiB"). */
#include <stdint.h>
#include <string.h>

#include "cli.h"

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

bool cli_parse_count(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {{"k", 1000}, {"K", 1000}, {"M", 1000000},
                                             {"B", 1000000000}, {"G", 1000000000},
                                             {"T", 1000000000000}, {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}

bool cli_parse_size(const char *text, uint64_t *out)
{
    static const struct suffix suffixes[] = {
        {"B", 1},          {"KB", 1000},        {"MB", 1000000},  {"GB", 1000000000},
        {"TB", 1000000000000}, {"K", 1000},     {"M", 1000000},   {"G", 1000000000},
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
        {NULL, 0}};
    return parse_scaled(text, suffixes, out);
}
