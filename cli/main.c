/* main.c - loratool's entry point: dispatch to one verb per file. */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const cli_verb verbs[] = {
    {"inspect", cmd_inspect, "describe a safetensors or GGUF file, a sharded model or an adapter"},
    {"audit", cmd_audit, "check an adapter against limits and a base model (for CI)"},
    {"merge", cmd_merge, "merge adapters into base weights (streaming, exact rounding)"},
    {"convert", cmd_convert, "convert adapters and models between PEFT/safetensors and GGUF"},
    {"resize", cmd_resize, "shrink adapter ranks by exact truncated SVD"},
    {"combine", cmd_combine, "add weighted adapters into one (exact, or truncated)"},
    {"extract", cmd_extract, "extract a LoRA adapter from a fine-tuned model minus its base"},
    {"verify", cmd_verify, "check a merged model against its base and adapters (forward path)"},
    {"diff", cmd_diff, "compare two weight files tensor by tensor (exit 1 when they differ)"},
};

static void print_help(FILE *out)
{
    fprintf(out, "usage: loratool <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(out, "\n'loratool <command> --help' describes a command's options.\n"
                 "exit codes: 0 ok, 1 a check failed (audit, verify, diff), 2 usage, 3 invalid or unsupported "
                 "input, 4 I/O error\n");
}

char *cli_escape(const char *text)
{
    size_t len = strlen(text);
    char *out = malloc(4 * len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        /* C0 controls, DEL, and C1 controls (U+0080..U+009F in UTF-8) */
        bool c1 = c == 0xc2 && i + 1 < len && (unsigned char)text[i + 1] >= 0x80 && (unsigned char)text[i + 1] <= 0x9f;
        if (c < 0x20 || c == 0x7f || c1) {
            n += (size_t)sprintf(out + n, "\\x%02x", c);
            if (c1)
                n += (size_t)sprintf(out + n, "\\x%02x", (unsigned char)text[++i]);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return out;
}

/* Prints "loratool: " + PREFIX + the formatted text, escaped, + SUFFIX. */
static void print_line(const char *prefix, const char *suffix, const char *fmt, va_list ap)
{
    char text[2 * LT_ERROR_MAX];
    vsnprintf(text, sizeof text, fmt, ap);
    char *mapped = cli_shown_paths(text);
    char *shown = cli_escape(mapped ? mapped : text);
    free(mapped);
    fprintf(stderr, "loratool: %s%s%s\n", prefix, shown ? shown : "(out of memory)", suffix);
    free(shown);
}

static void print_escaped(const char *prefix, const char *suffix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line(prefix, suffix, fmt, ap);
    va_end(ap);
}

int cli_fail(const lt_error *err)
{
    print_escaped("", "", "%s", err->message);
    return lt_status_exit_code(err->status);
}

int cli_error(int exit_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line("", "", fmt, ap);
    va_end(ap);
    return exit_code;
}

int cli_usage(const char *verb, const char *fmt, ...)
{
    char hint[64];
    snprintf(hint, sizeof hint, " (see 'loratool %s%s--help')", verb ? verb : "", verb ? " " : "");
    va_list ap;
    va_start(ap, fmt);
    print_line("", hint, fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}
void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line("warning: ", "", fmt, ap);
    va_end(ap);
}

int cli_finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "loratool: <stdout>: write failed: %s\n", strerror(errno));
        return EXIT_IO;
    }
    return 0;
}

int cli_print_json(cJSON *value)
{
    char *text = cJSON_Print(value);
    cJSON_Delete(value);
    if (!text) {
        fprintf(stderr, "loratool: out of memory\n");
        return EXIT_IO;
    }
    fputs(text, stdout);
    fputc('\n', stdout);
    cJSON_free(text);
    return cli_finish_stdout();
}

int cli_split_scale(const char *verb, const char *arg, char **path, double *weight)
{
    const char *resolved;
    int rc = cli_resolve_scaled(verb, arg, CLI_INPUT_ADAPTER, &resolved, weight);
    *path = NULL;
    if (rc)
        return rc;
    return (*path = strdup(resolved)) ? 0 : cli_usage(verb, "out of memory");
}

const char *cli_count(uint64_t n, char *buf, size_t size)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    size_t out = 0;
    for (int i = 0; i < len && out + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[out++] = ',';
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    cli_install_signal_handlers();
    if (cli_take_global_options(&argc, argv))
        return EXIT_USAGE;
    /* The verbs allocate and free per-tensor buffers of a few MiB hundreds
     * of times; glibc would mmap and unmap each (a page fault per 4 KiB,
     * a fifth of a resize's time).  Keep them in the heap and keep freed
     * memory for reuse: peak memory is unchanged. */
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    const char *verb = argv[1];
    if (!strcmp(verb, "help") && argc > 2) { /* loratool help VERB = loratool VERB --help */
        char *help_argv[] = {argv[2], "--help", NULL};
        for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
            if (!strcmp(argv[2], verbs[i].name))
                return verbs[i].run(2, help_argv);
        return cli_usage(NULL, "unknown command '%s'", argv[2]);
    }
    if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        print_help(stdout);
        return cli_finish_stdout();
    }
    if (!strcmp(verb, "--version") || !strcmp(verb, "version") || !strcmp(verb, "-V")) {
        printf("loratool %s\n", LT_VERSION_STRING);
        return cli_finish_stdout();
    }
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
        if (!strcmp(verb, verbs[i].name))
            return verbs[i].run(argc - 1, argv + 1);
    return cli_usage(NULL, "unknown command '%s'", verb);
}
