/* loralib_opts.c - the options that tell what a loralib checkpoint
 * cannot (spec/loralib.md): --alpha, --enable-lora, --fan-in-fan-out. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* "1,0,1" or "true,false,true" -> mask */
static bool parse_mask(const char *text, bool *mask, size_t cap, size_t *n)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        bool on;
        if ((len == 1 && *p == '1') || (len == 4 && strncmp(p, "true", 4) == 0) ||
            (len == 4 && strncmp(p, "True", 4) == 0))
            on = true;
        else if ((len == 1 && *p == '0') || (len == 5 && strncmp(p, "false", 5) == 0) ||
                 (len == 5 && strncmp(p, "False", 5) == 0))
            on = false;
        else
            return false;
        if (*n == cap)
            return false;
        mask[(*n)++] = on;
        p += len;
        if (*p == ',' && *++p == '\0')
            return false;
    }
    return *n > 0;
}

int cli_loralib_option(const char *verb, int id, const char *arg, cli_loralib *l)
{
    switch (id) {
    case CLI_OPT_ALPHA: {
        char *end = NULL;
        double v = strtod(arg, &end);
        if (!*arg || *end || !isfinite(v) || v <= 0) {
            cli_usage(verb, "--alpha must be a positive number, not '%s'", arg);
            return -EXIT_USAGE;
        }
        l->open.has_alpha = true;
        l->open.alpha = v;
        return 1;
    }
    case CLI_OPT_ENABLE_LORA: {
        size_t n = 0, on = 0;
        if (!parse_mask(arg, l->mask, CLI_ENABLE_LORA_MAX, &n)) {
            cli_usage(verb, "--enable-lora takes a list like 1,0,1, not '%s'", arg);
            return -EXIT_USAGE;
        }
        for (size_t i = 0; i < n; i++)
            on += l->mask[i];
        if (on == 0) {
            cli_usage(verb, "--enable-lora %s enables no group", arg);
            return -EXIT_USAGE;
        }
        l->open.enable_lora = l->mask;
        l->open.n_enable_lora = n;
        return 1;
    }
    case CLI_OPT_FAN_IN_FAN_OUT:
        l->open.fan_in_fan_out = true;
        return 1;
    default:
        return 0;
    }
}

bool cli_source_is_loralib(const lt_source *src)
{
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const char *name = lt_source_tensor(src, i)->name;
        size_t len = strlen(name);
        if (len > 7 && (strcmp(name + len - 7, ".lora_A") == 0 || strcmp(name + len - 7, ".lora_B") == 0))
            return true;
    }
    return false;
}

bool cli_is_loralib(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    lt_source *src = lt_source_open(path, NULL);
    bool found = src && cli_source_is_loralib(src);
    lt_source_close(src);
    return found;
}
