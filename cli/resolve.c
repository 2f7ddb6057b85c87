/* resolve.c - one grammar for every input argument (spec/cli.md, "Input
 * arguments"): an existing path wins; then ARCHIVE#PATH; then a Hugging
 * Face cache repository (a models--org--name folder, NAME@REV, or a hub id
 * looked up offline); a trailing :SCALE only where the rest resolves.
 *
 * Archive members are spooled by the library (lt_archive_extract) and must
 * stay open until the program ends, so this file keeps every archive it
 * opened, closes them at exit, and maps their private paths back to
 * ARCHIVE#PATH in messages.  Resolving the same argument twice gives the
 * same path without opening the archive again. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* ---- what was resolved, kept until exit ---- */

typedef struct resolved {
    char *arg;      /* the argument, without :SCALE */
    cli_role role;
    char *path;     /* what to open */
} resolved;

typedef struct view_name {
    char *view;     /* the library's private directory */
    char *shown;    /* "ARCHIVE#FOLDER" (FOLDER may be empty) */
} view_name;

enum { MAX_VIEWS = 64 };

static struct {
    resolved *items;
    size_t n, cap;
    struct opened_archive {
        lt_archive *archive;
        char *path;             /* as located */
        cli_role role;          /* its limits */
    } *archives;
    size_t n_archives;
    view_name views[MAX_VIEWS];
    size_t n_views;
    bool exit_hook;
    /* --archive-limit texts, applied after LORATOOL_ARCHIVE_LIMITS */
    const char **limit_texts;
    size_t n_limit_texts;
} reg;

/* The signal handler's copy: fixed buffers only (outputs.c calls
 * cli_remove_archive_views from its handler). */
static char signal_views[MAX_VIEWS][PATH_MAX];
static volatile sig_atomic_t n_signal_views;

void cli_remove_archive_views(void)
{
    for (sig_atomic_t i = 0; i < n_signal_views; i++)
        lt_archive_remove_view(signal_views[i]);
}

static void close_all(void)
{
    n_signal_views = 0;
    for (size_t i = 0; i < reg.n_archives; i++) {
        lt_archive_close(reg.archives[i].archive);
        free(reg.archives[i].path);
    }
    free(reg.archives);
    for (size_t i = 0; i < reg.n; i++) {
        free(reg.items[i].arg);
        free(reg.items[i].path);
    }
    free(reg.items);
    for (size_t i = 0; i < reg.n_views; i++) {
        free(reg.views[i].view);
        free(reg.views[i].shown);
    }
    free(reg.limit_texts);
    memset(&reg, 0, sizeof reg);
}

static int out_of_memory(const char *verb)
{
    return cli_usage(verb, "out of memory");
}

static const char *remember(const char *arg, cli_role role, const char *path)
{
    if (reg.n == reg.cap) {
        size_t cap = reg.cap ? 2 * reg.cap : 16;
        resolved *items = realloc(reg.items, cap * sizeof *items);
        if (!items)
            return NULL;
        reg.items = items;
        reg.cap = cap;
    }
    resolved r = {strdup(arg), role, strdup(path)};
    if (!r.arg || !r.path) {
        free(r.arg);
        free(r.path);
        return NULL;
    }
    reg.items[reg.n++] = r;
    return r.path;
}

static const char *recall(const char *arg, cli_role role)
{
    for (size_t i = 0; i < reg.n; i++)
        if (reg.items[i].role == role && strcmp(reg.items[i].arg, arg) == 0)
            return reg.items[i].path;
    return NULL;
}

/* ---- messages: private paths shown as ARCHIVE#PATH ---- */

char *cli_shown_paths(const char *text)
{
    size_t cap = strlen(text) + 1;
    for (size_t i = 0; i < reg.n_views; i++)
        cap += strlen(reg.views[i].shown) * 8 + 8; /* a message names a path a few times at most */
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    while (*text) {
        const view_name *hit = NULL;
        for (size_t i = 0; i < reg.n_views && !hit; i++) {
            size_t len = strlen(reg.views[i].view);
            if (strncmp(text, reg.views[i].view, len) == 0 && (text[len] == '/' || !isalnum((unsigned char)text[len])))
                hit = &reg.views[i];
        }
        if (hit && n + strlen(hit->shown) + 2 < cap) {
            size_t len = strlen(hit->view);
            bool root = strchr(hit->shown, '#')[1] == '\0';
            n += (size_t)sprintf(out + n, "%s", hit->shown);
            text += len;
            if (*text == '/' && root)
                text++; /* "a.zip#" + "adapter_model.safetensors" */
            continue;
        }
        if (n + 1 < cap)
            out[n++] = *text;
        text++;
    }
    out[n] = '\0';
    return out;
}

/* ---- the Hugging Face hub cache ---- */

/* The hub cache directory as huggingface_hub finds it: $HF_HUB_CACHE, else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub.  malloc'd, NULL when none can be named. */
static char *hub_cache_dir(void)
{
    const char *env = getenv("HF_HUB_CACHE");
    char buf[PATH_MAX];
    if (env && *env)
        snprintf(buf, sizeof buf, "%s", env);
    else if ((env = getenv("HF_HOME")) && *env)
        snprintf(buf, sizeof buf, "%s/hub", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        snprintf(buf, sizeof buf, "%s/huggingface/hub", env);
    else if ((env = getenv("HOME")) && *env)
        snprintf(buf, sizeof buf, "%s/.cache/huggingface/hub", env);
    else
        return NULL;
    return strdup(buf);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The first SIZE bytes of a regular file (never waiting on a FIFO);
 * the count read, or -1. */
static ssize_t read_head(const char *path, void *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t got = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, size) : -1;
    close(fd);
    return got;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + lb + 2);
    if (out)
        sprintf(out, "%s%s%s", a, la && a[la - 1] != '/' ? "/" : "", b);
    return out;
}

/* A cache repository folder: models--org--name holding snapshots/. */
static bool is_hub_repo(const char *dir)
{
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    if (strncmp(base, "models--", 8) != 0)
        return false;
    char *snap = join(dir, "snapshots");
    bool yes = snap && is_dir(snap);
    free(snap);
    return yes;
}

/* A revision as a ref name or commit: no empty, "." or ".." components. */
static bool safe_revision(const char *rev)
{
    if (!*rev || rev[0] == '/' || strlen(rev) > 255)
        return false;
    for (const char *p = rev; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len + (slash ? 1 : 0);
    }
    for (const char *p = rev; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == 0x7f || *p == '\\')
            return false;
    return true;
}

/* The snapshot of REPO at REV (NULL = main): refs/REV names a commit whose
 * snapshots/COMMIT folder exists, or snapshots/REV exists.  0 with *out
 * malloc'd; else prints why (exit 4, naming where it looked). */
static int hub_snapshot(const char *verb, const char *shown, const char *repo, const char *rev, char **out)
{
    const char *want = rev ? rev : "main";
    *out = NULL;
    if (!safe_revision(want)) {
        return cli_usage(verb, "%s: '%s' is no revision name", shown, want);
    }
    char refs[PATH_MAX], commit[256] = "";
    snprintf(refs, sizeof refs, "%s/refs/%s", repo, want);
    ssize_t n = read_head(refs, commit, sizeof commit - 1);
    bool from_ref = n >= 0;
    if (from_ref) {
        size_t got = (size_t)n;
        commit[got] = '\0';
        while (got > 0 && isspace((unsigned char)commit[got - 1]))
            commit[--got] = '\0';
        for (size_t i = 0; i < got; i++)
            if (!isxdigit((unsigned char)commit[i]))
                got = 0;
        if (got == 0) {
            return cli_error(EXIT_INPUT, "%s: %s does not hold a commit hash", shown, refs);
        }
    } else {
        snprintf(commit, sizeof commit, "%s", want);
    }
    char snap[PATH_MAX];
    snprintf(snap, sizeof snap, "%s/snapshots/%s", repo, commit);
    if (!is_dir(snap)) {
        if (from_ref)
            return cli_error(EXIT_IO, "%s: revision '%s' is commit %s, which has no snapshot in %s/snapshots", shown, want,
                             commit, repo);
        return cli_error(EXIT_IO, "%s: no revision '%s' in the Hugging Face cache (looked in %s/refs and %s/snapshots)",
                         shown, want, repo, repo);
    }
    return (*out = strdup(snap)) ? 0 : out_of_memory(verb);
}

/* org/name or name, as the hub spells repository ids. */
static bool hub_id_syntax(const char *s)
{
    int parts = 0;
    for (const char *p = s; *p;) {
        if (!isalnum((unsigned char)*p))
            return false;
        size_t len = 0;
        while (p[len] && p[len] != '/') {
            char c = p[len];
            if (!isalnum((unsigned char)c) && c != '-' && c != '_' && c != '.')
                return false;
            if (len > 0 && (c == '-' || c == '.') && p[len - 1] == c)
                return false; /* "--" and ".." are not allowed in ids */
            len++;
        }
        if (len > 96 || ++parts > 2)
            return false;
        p += len;
        if (*p == '/' && !*++p)
            return false;
    }
    return parts > 0;
}

/* ---- the grammar ---- */

typedef struct located {
    char *local;    /* an existing file or directory */
    char *inner;    /* after '#': a member or folder of the archive LOCAL */
} located;

static void located_free(located *l)
{
    free(l->local);
    free(l->inner);
    *l = (located){0};
}

/* Where S points without a scale.  0 found; 1 not found (nothing printed);
 * else an exit code after printing the error. */
static int locate(const char *verb, const char *s, located *out)
{
    *out = (located){0};
    struct stat st;
    if (stat(s, &st) == 0) {
        if (S_ISDIR(st.st_mode) && is_hub_repo(s))
            return hub_snapshot(verb, s, s, NULL, &out->local);
        return (out->local = strdup(s)) ? 0 : out_of_memory(verb);
    }
    for (const char *hash = strchr(s, '#'); hash; hash = strchr(hash + 1, '#')) {
        char *archive = strndup(s, (size_t)(hash - s));
        if (!archive)
            return out_of_memory(verb);
        if (is_file(archive)) {
            out->local = archive;
            return (out->inner = strdup(hash + 1)) ? 0 : out_of_memory(verb);
        }
        free(archive);
    }
    const char *at = strrchr(s, '@');
    if (at && at > s) {
        char *repo = strndup(s, (size_t)(at - s));
        if (!repo)
            return out_of_memory(verb);
        if (is_dir(repo) && is_hub_repo(repo)) {
            int rc = hub_snapshot(verb, s, repo, at + 1, &out->local);
            free(repo);
            return rc;
        }
        free(repo);
    }
    char *id = at && at > s ? strndup(s, (size_t)(at - s)) : strdup(s);
    if (!id)
        return out_of_memory(verb);
    int rc = 1;
    char *cache = hub_id_syntax(id) ? hub_cache_dir() : NULL;
    if (cache) {
        char folder[PATH_MAX];
        int len = snprintf(folder, sizeof folder, "%s/models--", cache);
        for (const char *p = id; *p && len + 3 < (int)sizeof folder; p++)
            len += *p == '/' ? snprintf(folder + len, sizeof folder - (size_t)len, "--")
                             : snprintf(folder + len, sizeof folder - (size_t)len, "%c", *p);
        if (is_hub_repo(folder))
            rc = hub_snapshot(verb, s, folder, at && at > s ? at + 1 : NULL, &out->local);
    }
    free(cache);
    free(id);
    return rc;
}

/* After locate found nothing: where the argument reads as a hub id, say
 * that the cache does not hold it either (exit 4); else 0, and the library
 * reports the path as it cannot open it. */
static int not_found(const char *s)
{
    const char *at = strrchr(s, '@');
    char *id = at && at > s ? strndup(s, (size_t)(at - s)) : strdup(s);
    char *cache = id && hub_id_syntax(id) ? hub_cache_dir() : NULL;
    int rc = 0;
    if (cache)
        rc = cli_error(EXIT_IO, "%s: cannot open: %s (nor is it a repository in the Hugging Face cache %s)", s,
                       strerror(ENOENT), cache);
    free(cache);
    free(id);
    return rc;
}

static int pass_through(const char *verb, const char *arg, located *out)
{
    *out = (located){0};
    return (out->local = strdup(arg)) ? 0 : out_of_memory(verb);
}

/* A scale as a user writes one: a finite decimal number, all of text. */
static bool parse_scale(const char *text, double *out)
{
    if (!*text || strpbrk(text, "xXpP"))
        return false; /* hexadecimal floats are no scale anyone means */
    char *end;
    errno = 0;
    double w = strtod(text, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(w))
        return false;
    *out = w;
    return true;
}

/* locate() with the :SCALE rule.  *scale untouched when none.  *bare
 * receives ARG without its scale.  An argument that resolves to nothing is
 * passed on as it is (the library names it when it cannot open it). */
static int locate_scaled(const char *verb, const char *arg, double *scale, located *out, char **bare)
{
    *bare = NULL;
    int rc = locate(verb, arg, out);
    if (rc > 1)
        return rc;
    const char *colon = rc == 1 && scale ? strrchr(arg, ':') : NULL;
    if (colon) {
        char *before = strndup(arg, (size_t)(colon - arg));
        if (!before)
            return out_of_memory(verb);
        rc = locate(verb, before, out);
        double w = 1.0;
        bool number = parse_scale(colon + 1, &w);
        if (rc == 0 && !number) {
            located_free(out);
            free(before);
            return cli_usage(verb, "%s: the scale after ':' must be a finite decimal number", arg);
        }
        if (rc > 1 || (rc == 1 && !number)) {
            free(before);
            if (rc > 1)
                return rc;
        } else {
            *scale = w;
            *bare = before;
            return rc == 0 ? 0 : (rc = not_found(before)) ? rc : pass_through(verb, before, out);
        }
    }
    if (!(*bare = strdup(arg)))
        return out_of_memory(verb);
    return rc == 0 ? 0 : (rc = not_found(arg)) ? rc : pass_through(verb, arg, out);
}

/* ---- archives ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A file that makes its folder an adapter or a model. */
static bool is_weights(const char *name)
{
    static const char *const suffixes[] = {".safetensors", ".gguf", ".bin", ".pt", ".pth"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (ends_with(name, suffixes[i]))
            return true;
    return false;
}

static bool is_config(const char *name)
{
    return !strcmp(name, "adapter_config.json") || !strcmp(name, "config.json") ||
           ends_with(name, ".safetensors.index.json") || ends_with(name, ".bin.index.json");
}

/* Folder of a member name ("" at the root), into buf. */
static void folder_of(const char *member, char *buf, size_t size)
{
    const char *slash = strrchr(member, '/');
    size_t len = slash ? (size_t)(slash - member) : 0;
    snprintf(buf, size, "%.*s", (int)len, member);
}

static bool under(const char *member, const char *prefix)
{
    size_t n = strlen(prefix);
    return n == 0 || (strncmp(member, prefix, n) == 0 && member[n] == '/');
}

/* The folders below PREFIX holding an adapter's or model's files. */
typedef struct folder_list {
    char names[16][PATH_MAX];
    size_t n;
    bool more;      /* more folders than names holds */
} folder_list;

static void find_candidates(const lt_archive *a, const char *prefix, folder_list *out)
{
    out->n = 0;
    out->more = false;
    for (size_t i = 0; i < lt_archive_member_count(a); i++) {
        const char *m = lt_archive_member_name(a, i);
        if (!under(m, prefix) || !(is_weights(base_name(m)) || is_config(base_name(m))))
            continue;
        char folder[PATH_MAX];
        folder_of(m, folder, sizeof folder);
        bool seen = false;
        for (size_t k = 0; k < out->n && !seen; k++)
            seen = !strcmp(out->names[k], folder);
        if (seen)
            continue;
        if (out->n < sizeof out->names / sizeof *out->names)
            snprintf(out->names[out->n++], PATH_MAX, "%s", folder);
        else
            out->more = true;
    }
}

/* The member to open alone when FOLDER holds one weights file and no
 * configuration (a GGUF file, a loralib checkpoint); NULL otherwise. */
static const char *single_file(const lt_archive *a, const char *folder)
{
    const char *only = NULL;
    for (size_t i = 0; i < lt_archive_member_count(a); i++) {
        const char *m = lt_archive_member_name(a, i);
        char f[PATH_MAX];
        folder_of(m, f, sizeof f);
        if (strcmp(f, folder) != 0)
            continue;
        if (is_config(base_name(m)))
            return NULL;
        if (is_weights(base_name(m))) {
            if (only)
                return NULL;
            only = m;
        }
    }
    return only;
}

static lt_status archive_limits(cli_role role, lt_archive_limits *limits, lt_error *err)
{
    lt_archive_default_limits(role == CLI_INPUT_ADAPTER ? LT_ARCHIVE_ADAPTER : LT_ARCHIVE_MODEL, limits);
    const char *env = getenv("LORATOOL_ARCHIVE_LIMITS");
    lt_status s = LT_OK;
    if (env && *env && (s = lt_archive_limits_parse(env, limits, err)) != LT_OK) {
        char why[LT_ERROR_MAX];
        memcpy(why, err->message, sizeof why);
        why[LT_ERROR_MAX - 40] = '\0';
        snprintf(err->message, sizeof err->message, "LORATOOL_ARCHIVE_LIMITS: %.*s", LT_ERROR_MAX - 40, why);
        return s;
    }
    for (size_t i = 0; i < reg.n_limit_texts && s == LT_OK; i++)
        s = lt_archive_limits_parse(reg.limit_texts[i], limits, err);
    return s;
}

static bool magic_is_tensor_file(const char *path)
{
    unsigned char head[9];
    ssize_t got = read_head(path, head, sizeof head);
    if (got >= 4 && memcmp(head, "GGUF", 4) == 0)
        return true;
    return got == 9 && head[8] == '{'; /* safetensors: header length, then JSON */
}

static int remember_view(const char *verb, const char *view, const char *archive, const char *folder)
{
    if (reg.n_views == MAX_VIEWS)
        return cli_usage(verb, "at most %d folders of archives can be opened at once", MAX_VIEWS);
    for (size_t i = 0; i < reg.n_views; i++)
        if (!strcmp(reg.views[i].view, view))
            return 0;
    view_name *v = &reg.views[reg.n_views];
    v->view = strdup(view);
    v->shown = malloc(strlen(archive) + strlen(folder) + 2);
    if (!v->view || !v->shown || strlen(view) >= PATH_MAX) {
        free(v->view);
        free(v->shown);
        return out_of_memory(verb);
    }
    sprintf(v->shown, "%s#%s", archive, folder);
    reg.n_views++;
    memcpy(signal_views[n_signal_views], view, strlen(view) + 1);
    n_signal_views = n_signal_views + 1;
    return 0;
}

static void list_folders(char *buf, size_t size, const folder_list *c)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n && n + 1 < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", c->names[i][0] ? c->names[i] : "(the root)");
    if (c->more && n + 1 < size)
        snprintf(buf + n, size - n, ", ...");
}

/* The archive at PATH opened with ROLE's limits, once per program. */
static int archive_for(const char *verb, const char *path, cli_role role, lt_archive **out)
{
    bool model = role != CLI_INPUT_ADAPTER;
    for (size_t i = 0; i < reg.n_archives; i++)
        if ((reg.archives[i].role != CLI_INPUT_ADAPTER) == model && !strcmp(reg.archives[i].path, path)) {
            *out = reg.archives[i].archive;
            return 0;
        }
    lt_error err;
    lt_archive_limits limits;
    if (archive_limits(role, &limits, &err) != LT_OK)
        return cli_usage(verb, "%s", err.message);
    struct opened_archive *grown = realloc(reg.archives, (reg.n_archives + 1) * sizeof *grown);
    if (!grown)
        return out_of_memory(verb);
    reg.archives = grown;
    char *copy = strdup(path);
    if (!copy)
        return out_of_memory(verb);
    lt_archive *a = lt_archive_open(path, &limits, &err);
    if (!a) {
        free(copy);
        return cli_fail(&err);
    }
    reg.archives[reg.n_archives++] = (struct opened_archive){a, copy, role};
    *out = a;
    return 0;
}

static bool is_adapter_file(const char *name)
{
    return !strcmp(name, "adapter_model.safetensors") || !strcmp(name, "adapter_model.bin") ||
           !strcmp(name, "adapter_config.json");
}

static bool has_member(const lt_archive *a, const char *name)
{
    for (size_t i = 0; i < lt_archive_member_count(a); i++)
        if (!strcmp(lt_archive_member_name(a, i), name))
            return true;
    return false;
}

enum { INNER_MISSING = -1 };

/* Open LOCAL as an archive when it is one; *path receives what to open
 * (malloc'd): the spooled folder or file, else LOCAL itself.  With QUIET,
 * an ARCHIVE#PATH whose PATH is not in the archive returns INNER_MISSING
 * and prints nothing (the caller then tries PATH without a :SCALE). */
static int open_archive(const char *verb, const located *l, cli_role role, bool quiet, char **path)
{
    *path = NULL;
    lt_error err;
    bool archive = false;
    /* only regular files are probed: a FIFO is refused by its reader, never waited on */
    if (is_file(l->local) && (l->inner || !magic_is_tensor_file(l->local)) &&
        lt_archive_probe(l->local, &archive, &err) != LT_OK)
        return cli_fail(&err);
    if (!archive) {
        if (l->inner) {
            return cli_error(EXIT_INPUT, "%s: not an archive (ARCHIVE#PATH names a folder or file inside a .zip or .tar)",
                             l->local);
        }
        return (*path = strdup(l->local)) ? 0 : out_of_memory(verb);
    }
    lt_archive *a = NULL;
    int rc = archive_for(verb, l->local, role, &a);
    if (rc)
        return rc;

    char want[PATH_MAX] = "";
    if (l->inner) { /* "./x/" and "x" name the same folder */
        const char *p = l->inner;
        while (p[0] == '.' && p[1] == '/')
            p += 2;
        snprintf(want, sizeof want, "%s", p);
        size_t len = strlen(want);
        while (len > 0 && want[len - 1] == '/')
            want[--len] = '\0';
        if (!strcmp(want, "."))
            want[0] = '\0';
    }
    const char *member = NULL;
    for (size_t i = 0; i < lt_archive_member_count(a) && want[0]; i++)
        if (!strcmp(lt_archive_member_name(a, i), want))
            member = lt_archive_member_name(a, i);
    char folder[PATH_MAX];
    if (member) {
        folder_of(member, folder, sizeof folder);
        /* an adapter's file names its folder, which must come along */
        char config[PATH_MAX + 32];
        snprintf(config, sizeof config, "%s%sadapter_config.json", folder, folder[0] ? "/" : "");
        if ((role == CLI_INPUT_ADAPTER || role == CLI_INPUT_ANY) && is_adapter_file(base_name(member)) &&
            has_member(a, config))
            member = NULL;
    } else {
        folder_list c;
        find_candidates(a, want, &c);
        char names[1024];
        list_folders(names, sizeof names, &c);
        if (c.n == 0) {
            bool exists = false;
            for (size_t i = 0; i < lt_archive_member_count(a) && !exists; i++)
                exists = under(lt_archive_member_name(a, i), want);
            if (!exists && quiet)
                return INNER_MISSING;
            return cli_error(EXIT_INPUT, "%s: %s%s%s", l->local,
                             exists ? "holds no adapter or model files" : "no member or folder '", exists ? "" : want,
                             exists ? (want[0] ? " in that folder" : "") : "' in the archive");
        }
        /* An explicit folder that holds files itself is that folder. */
        bool explicit_here = false;
        for (size_t k = 0; k < c.n && l->inner; k++)
            explicit_here |= !strcmp(c.names[k], want);
        if (c.n > 1 && !explicit_here) {
            return cli_error(EXIT_INPUT, "%s: holds several adapters or models (%s); name one as %s#FOLDER", l->local,
                             names, l->local);
        }
        snprintf(folder, sizeof folder, "%s", explicit_here ? want : c.names[0]);
        member = single_file(a, folder);
    }
    const char *opened = lt_archive_extract(a, member ? member : folder, &err);
    if (!opened)
        return cli_fail(&err);
    char view[PATH_MAX];
    snprintf(view, sizeof view, "%s", opened);
    if (member) {
        char *slash = strrchr(view, '/');
        if (slash)
            *slash = '\0';
    }
    if ((rc = remember_view(verb, view, l->local, folder)))
        return rc;
    return (*path = strdup(opened)) ? 0 : out_of_memory(verb);
}

/* A file of an adapter directory given where an adapter is expected names
 * that directory. */
static char *adapter_directory(const char *path)
{
    const char *name = base_name(path);
    if (!is_adapter_file(name))
        return NULL;
    char *dir = name == path ? strdup(".") : strndup(path, (size_t)(name - path - 1));
    if (dir && !*dir) { /* "/adapter_config.json" */
        free(dir);
        dir = strdup("/");
    }
    char *config = dir ? join(dir, "adapter_config.json") : NULL;
    bool yes = config && is_file(config);
    free(config);
    if (!yes) {
        free(dir);
        return NULL;
    }
    return dir;
}

static int resolve(const char *verb, const char *arg, cli_role role, const char **path, double *scale)
{
    if (!reg.exit_hook) {
        atexit(close_all);
        reg.exit_hook = true;
    }
    located l;
    char *bare;
    int rc = locate_scaled(verb, arg, scale, &l, &bare);
    if (rc) {
        located_free(&l);
        free(bare);
        return rc;
    }
    const char *known = recall(bare, role);
    if (known) {
        located_free(&l);
        free(bare);
        *path = known;
        return 0;
    }
    char *opened = NULL;
    /* "a.zip#ckpt:0.7": a member named "ckpt:0.7" wins, else the scale is split off */
    const char *colon = scale && l.inner ? strrchr(l.inner, ':') : NULL;
    double w;
    bool scaled = colon && parse_scale(colon + 1, &w);
    rc = open_archive(verb, &l, role, scaled, &opened);
    if (rc == INNER_MISSING) {
        l.inner[colon - l.inner] = '\0';
        char *shorter = strndup(bare, strlen(bare) - strlen(colon));
        if (!shorter) {
            located_free(&l);
            free(bare);
            return out_of_memory(verb);
        }
        free(bare);
        bare = shorter;
        *scale = w;
        const char *again = recall(bare, role);
        rc = again ? 0 : open_archive(verb, &l, role, false, &opened);
        if (again) {
            located_free(&l);
            free(bare);
            *path = again;
            return 0;
        }
    }
    located_free(&l);
    if (rc == 0 && (role == CLI_INPUT_ADAPTER || role == CLI_INPUT_ANY)) {
        char *dir = adapter_directory(opened);
        if (dir) {
            free(opened);
            opened = dir;
        }
    }
    if (rc == 0 && !(*path = remember(bare, role, opened)))
        rc = out_of_memory(verb);
    free(opened);
    free(bare);
    return rc;
}

int cli_resolve(const char *verb, const char *arg, cli_role role, const char **path)
{
    *path = NULL;
    return resolve(verb, arg, role, path, NULL);
}

int cli_resolve_scaled(const char *verb, const char *arg, cli_role role, const char **path, double *scale)
{
    *path = NULL;
    *scale = 1.0;
    return resolve(verb, arg, role, path, scale);
}

char *cli_input_origin(const char *arg)
{
    located l;
    int rc = locate("", arg, &l);
    if (rc == 1) {
        const char *colon = strrchr(arg, ':');
        char *before = colon ? strndup(arg, (size_t)(colon - arg)) : NULL;
        rc = before ? locate("", before, &l) : 1;
        free(before);
    }
    if (rc != 0)
        return NULL;
    free(l.inner);
    return l.local;
}

/* ---- --archive-limit, an option of every verb ---- */

int cli_take_global_options(int *argc, char **argv)
{
    int out = 1;
    bool options = true;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *value = NULL;
        if (options && !strcmp(a, "--"))
            options = false;
        if (options && !strcmp(a, "--archive-limit")) {
            if (i + 1 >= *argc)
                return cli_usage(argv[1], "--archive-limit needs NAME=VALUE");
            value = argv[++i];
        } else if (options && !strncmp(a, "--archive-limit=", 16)) {
            value = a + 16;
        }
        if (!value) {
            argv[out++] = argv[i];
            continue;
        }
        lt_archive_limits check;
        lt_error err;
        lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &check);
        if (lt_archive_limits_parse(value, &check, &err) != LT_OK)
            return cli_usage(argv[1], "--archive-limit %s: %s", value, err.message);
        const char **texts = realloc(reg.limit_texts, (reg.n_limit_texts + 1) * sizeof *texts);
        if (!texts)
            return out_of_memory(argv[1]);
        reg.limit_texts = texts;
        reg.limit_texts[reg.n_limit_texts++] = value;
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}
