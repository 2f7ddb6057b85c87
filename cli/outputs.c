/* outputs.c - one check for every verb that writes: the output must not
 * overwrite or replace any input.  Files are compared by identity (device
 * and inode, after following symlinks), so a symlink or a hard link to an
 * input is that input. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    const char *input; /* the argument it came from */
} file_id;

typedef struct id_set {
    file_id *ids;
    size_t n, cap;
    bool failed; /* out of memory */
} id_set;

static void add_id(id_set *set, const struct stat *st, const char *input)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 64;
        file_id *ids = realloc(set->ids, cap * sizeof *ids);
        if (!ids) {
            set->failed = true;
            return;
        }
        set->ids = ids;
        set->cap = cap;
    }
    set->ids[set->n++] = (file_id){st->st_dev, st->st_ino, input};
}

static const file_id *find_id(const id_set *set, const struct stat *st)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->ids[i].dev == st->st_dev && set->ids[i].ino == st->st_ino)
            return &set->ids[i];
    return NULL;
}

/* Calls fn for each entry of directory dir that stat can follow (not "."
 * or ".."), until it returns true; whether one did. */
static bool each_entry(const char *dir, bool (*fn)(void *ctx, const char *path, const struct stat *st), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool hit = false;
    const struct dirent *e;
    while (!hit && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path && stat(path, &st) == 0)
            hit = fn(ctx, path, &st);
    }
    closedir(d);
    return hit;
}

typedef struct collect_ctx {
    id_set *set;
    const char *input;
} collect_ctx;

static bool collect_entry(void *ctx, const char *path, const struct stat *st)
{
    (void)path;
    collect_ctx *c = ctx;
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
        add_id(c->set, st, c->input);
    return false;
}

/* Adds the files input (an argument; path is what it names) stands for:
 * itself; a directory's entries; an index's siblings (its shards). */
static void collect_input(id_set *set, const char *path, const char *input)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    add_id(set, &st, input);
    collect_ctx c = {set, input};
    size_t len = strlen(path);
    if (S_ISDIR(st.st_mode)) {
        each_entry(path, collect_entry, &c);
    } else if (len > 11 && !strcmp(path + len - 11, ".index.json")) {
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = '\0';
        if (dir)
            each_entry(slash ? dir : ".", collect_entry, &c);
        free(dir);
    }
}

typedef struct clash_ctx {
    const id_set *set;
    const file_id *found;
    const char *entry;
} clash_ctx;

static bool entry_is_input(void *ctx, const char *path, const struct stat *st)
{
    clash_ctx *c = ctx;
    c->found = find_id(c->set, st);
    c->entry = path;
    return c->found != NULL;
}

/* Is dir an ancestor of path (both resolved)? */
static bool holds(const char *dir, const char *path)
{
    char *d = realpath(dir, NULL), *p = realpath(path, NULL);
    size_t n = d ? strlen(d) : 0;
    bool inside = d && p && strncmp(d, p, n) == 0 && (p[n] == '/' || (n == 1 && d[0] == '/'));
    free(d);
    free(p);
    return inside;
}

int cli_check_output(const char *verb, const char *out, const char *extra, int n_inputs, char *const *inputs)
{
    cli_guard_output(out);
    struct stat st;
    if (!out || stat(out, &st) != 0)
        return 0; /* a new path replaces nothing */
    id_set set = {0};
    for (int i = 0; i <= n_inputs; i++) {
        const char *input = i < n_inputs ? inputs[i] : extra;
        if (!input)
            continue;
        char *path = cli_input_origin(input); /* ADAPTER:SCALE, ARCHIVE#PATH, org/name */
        collect_input(&set, path ? path : input, input);
        if (S_ISDIR(st.st_mode) && holds(out, path ? path : input)) {
            int rc = cli_usage(verb, "%s: output would replace a directory holding input '%s'", out, input);
            free(path);
            free(set.ids);
            return rc;
        }
        free(path);
    }
    int rc = set.failed ? cli_usage(verb, "out of memory") : 0;
    const file_id *same = rc ? NULL : find_id(&set, &st);
    clash_ctx c = {&set, NULL, NULL};
    if (same)
        rc = cli_usage(verb, "%s: output would overwrite input '%s'", out, same->input);
    else if (!rc && S_ISDIR(st.st_mode) && each_entry(out, entry_is_input, &c))
        rc = cli_usage(verb, "%s: output would replace '%s' of input '%s'", out, c.entry, c.found->input);
    free(set.ids);
    return rc;
}

/* ---- signals: what an interrupted run leaves is removed ----
 * The one piece of mutable global state in the program: a signal handler
 * can reach nothing else.  It is written once, before any output exists. */

static char guarded_out[PATH_MAX];
static volatile sig_atomic_t have_guarded_out;
/* An archive output's directory while it is written: STAGE/adapter. */
static char staged_dir[PATH_MAX + 16], stage[PATH_MAX];
static volatile sig_atomic_t have_stage;

static void write_all(const char *text)
{
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t put = write(STDERR_FILENO, text, len);
        if (put <= 0)
            return;
        text += put;
        len -= (size_t)put;
    }
}

/* Remove the regular files of directory DIR, then DIR (not recursive).
 * Async-signal-safe: system calls on a fixed buffer. */
static void remove_flat_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        char buf[4096] __attribute__((aligned(8)));
        for (;;) {
            long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (got <= 0)
                break;
            for (long off = 0; off < got;) {
                const struct linux_dirent64 {
                    uint64_t ino;
                    int64_t off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *e = (const void *)(buf + off);
                if (!(e->name[0] == '.' && (e->name[1] == '\0' || (e->name[1] == '.' && e->name[2] == '\0'))))
                    unlinkat(fd, e->name, 0);
                off += e->reclen;
            }
        }
        close(fd);
    }
    rmdir(dir);
}

static void on_fatal_signal(int sig)
{
    if (have_guarded_out)
        lt_remove_temporaries(guarded_out);
    if (have_stage) {
        lt_remove_temporaries(staged_dir);
        remove_flat_dir(staged_dir);
        rmdir(stage);
    }
    cli_remove_archive_views();
    if (sig == SIGBUS) {
        /* a mapped input shrank under us (another process truncated it) */
        write_all("loratool: input file changed or truncated while reading\n");
        _exit(EXIT_IO);
    }
    write_all(sig == SIGINT ? "loratool: interrupted\n" : sig == SIGTERM ? "loratool: terminated\n" : "loratool: hung up\n");
    /* die of the signal, so that the shell sees what happened */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

void cli_guard_output(const char *out)
{
    size_t len = out ? strlen(out) : 0;
    if (len == 0 || len >= sizeof guarded_out || have_guarded_out)
        return;
    memcpy(guarded_out, out, len + 1);
    have_guarded_out = 1;
}

void cli_install_signal_handlers(void)
{
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGBUS};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigfillset(&sa.sa_mask); /* one handler at a time */
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) {
        struct sigaction old;
        /* keep "ignored" as the parent set it (nohup) */
        if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN && signals[i] != SIGBUS)
            continue;
        sigaction(signals[i], &sa, NULL);
    }
}

/* ---- adapter directories, or archives of them ---- */

const char *cli_file_suffix(const char *out)
{
    static const char *const suffixes[] = {".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".json",
                                           ".zip", ".tar", ".tgz", ".gz", ".xz", ".zst", ".bz2", ".txt",
                                           ".npz", ".npy", ".h5", ".onnx"};
    const char *slash = strrchr(out, '/'), *dot = strrchr(out, '.');
    if (!dot || (slash && dot < slash) || dot == out || (slash && dot == slash + 1))
        return NULL;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (strcasecmp(dot, suffixes[i]) == 0)
            return dot;
    return NULL;
}

static void unstage(void)
{
    have_stage = 0;
    remove_flat_dir(staged_dir);
    rmdir(stage);
}

int cli_check_adapter_out(const char *verb, const char *out, bool gguf_ok)
{
    const char *suffix = cli_file_suffix(out);
    if (!suffix || lt_archive_kind_for_path(out) != LT_ARCHIVE_NONE || (gguf_ok && strcasecmp(suffix, ".gguf") == 0))
        return 0;
    return cli_usage(verb,
                     "%s: an adapter is written as a directory%s, or an archive of one (.zip, .tar, .tar.gz, .tgz, "
                     ".tar.xz, .tar.zst, .tar.bz2), not '%s'", out, gguf_ok ? ", a .gguf file" : "", suffix);
}

lt_status cli_save_peft(const lt_adapter *ad, const char *out, lt_dtype dtype, lt_error *err)
{
    lt_archive_kind kind = lt_archive_kind_for_path(out);
    const char *suffix = kind == LT_ARCHIVE_NONE ? cli_file_suffix(out) : NULL;
    if (suffix) { /* adapter.bin would become a directory: surely not meant */
        snprintf(err->message, sizeof err->message,
                 "%s: an adapter is written as a directory, or an archive of one (.zip, .tar, .tar.gz, .tgz, "
                 ".tar.xz, .tar.zst, .tar.bz2), not '%s'", out, suffix);
        return err->status = LT_ERR_USAGE;
    }
    if (kind == LT_ARCHIVE_NONE)
        return lt_adapter_save_peft(ad, out, dtype, err);
    /* The directory is written beside OUT (its filesystem, not a RAM /tmp),
     * packed, and removed. */
    int64_t mtime = 0;
    const char *epoch = getenv("SOURCE_DATE_EPOCH");
    if (epoch && *epoch) {
        char *end;
        errno = 0;
        long long v = strtoll(epoch, &end, 10);
        if (*end || errno || v < 0) {
            snprintf(err->message, sizeof err->message, "SOURCE_DATE_EPOCH: '%s' is not a number of seconds", epoch);
            return err->status = LT_ERR_USAGE;
        }
        mtime = v;
    }
    const char *slash = strrchr(out, '/');
    int dir_len = slash ? (int)(slash - out) : 1;
    const char *dir = slash ? out : ".";
    if (slash == out)
        dir_len = 1;
    int n = snprintf(stage, sizeof stage, "%.*s/.%s.stage-%ld-XXXXXX", dir_len, dir, slash ? slash + 1 : out,
                     (long)getpid());
    if (n < 0 || (size_t)n >= sizeof stage - 16 || !mkdtemp(stage)) {
        snprintf(err->message, sizeof err->message, "%s: cannot make a directory beside it: %s", out,
                 n < 0 || (size_t)n >= sizeof stage - 16 ? "name too long" : strerror(errno));
        return err->status = LT_ERR_IO;
    }
    snprintf(staged_dir, sizeof staged_dir, "%s/adapter", stage);
    have_stage = 1;
    lt_status s = lt_adapter_save_peft(ad, staged_dir, dtype, err);
    if (s == LT_OK)
        s = lt_archive_write_dir(staged_dir, out, kind, mtime, err);
    unstage();
    return s;
}
