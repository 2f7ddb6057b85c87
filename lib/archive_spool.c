/* archive_spool.c - members of an archive made openable as local paths:
 * each needed member decompressed once into an unnamed temporary file on
 * disk (tensor data is then read by range like any file's), and a private
 * directory of links to those files standing for the folder asked for
 * (spec/archives.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_internal.h"

static const char *temporary_directory(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* An unnamed file on disk in $TMPDIR, else /tmp: O_TMPFILE (O_EXCL: it
 * can never be given a name), or where the filesystem lacks it a file
 * unlinked as soon as made.  Never memory (memfd, /dev/shm is the
 * caller's choice of TMPDIR): a model member may be larger than RAM. */
static int open_spool(const lt_archive *a, lt_error *err)
{
    const char *dir = temporary_directory();
    int fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        char *name = lti_asprintf("%s/.loratool-spool-XXXXXX", dir);
        if (!name) {
            lti_fail_nomem(err, a->path);
            return -1;
        }
        fd = mkostemp(name, O_CLOEXEC);
        if (fd >= 0)
            unlink(name);
        free(name);
        if (fd >= 0)
            return fd;
    }
    char what[300];
    snprintf(what, sizeof what, "cannot create a file in %s to unpack the archive into", dir);
    lti_fail_errno(err, a->path, what);
    return -1;
}

static int by_header(const void *x, const void *y, void *ctx)
{
    const lti_member *m = ctx;
    uint64_t hx = m[*(const size_t *)x].header, hy = m[*(const size_t *)y].header;
    return hx < hy ? -1 : hx > hy;
}

/* Spool members WANT[0..n) (not spooled yet, sorted by header) in one
 * pass over the archive. */
static lt_status spool(lt_archive *a, const size_t *want, size_t n, lt_error *err)
{
    lti_pass p;
    lt_status s = lti_pass_begin(&p, a->path, a->fd, a->file_size, err);
    if (s != LT_OK)
        return s;
    p.owner = a;
    size_t next = 0;
    for (uint64_t k = 0; s == LT_OK && next < n; k++) {
        struct archive_entry *e;
        int rc = archive_read_next_header(p.ar, &e);
        if (rc != ARCHIVE_OK) {
            s = rc == ARCHIVE_EOF ? lti_fail(err, LT_ERR_INVALID, "%s: the archive changed while reading it", a->path)
                                  : lti_pass_fail(&p, "reading it again", err);
            break;
        }
        lti_member *m = &a->members[want[next]];
        if (m->header != k) {
            /* another entry: a compressed stream is read through it */
            if (a->compressed) {
                char *name = lti_entry_name(&p, e, err);
                s = name ? lti_pass_pump(&p, name, UINT64_MAX, true, -1, err) : err ? err->status : LT_ERR_INVALID;
                free(name);
            }
            continue;
        }
        char *name = lti_entry_name(&p, e, err);
        if (!name) {
            s = err ? err->status : LT_ERR_INVALID;
            break;
        }
        bool same = strcmp(name, m->name) == 0 && archive_entry_filetype(e) == AE_IFREG &&
                    archive_entry_size_is_set(e) && (uint64_t)archive_entry_size(e) == m->size;
        free(name);
        if (!same) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: the archive changed while reading it", a->path);
            break;
        }
        int fd = open_spool(a, err);
        if (fd < 0) {
            s = err ? err->status : LT_ERR_IO;
            break;
        }
        s = lti_pass_pump(&p, m->name, m->size, m->sparse, fd, err);
        if (s != LT_OK)
            close(fd);
        else
            m->fd = fd;
        next++;
    }
    lti_pass_end(&p);
    return s;
}

/* A private directory holding one link per member of IDX[0..n), each to
 * its spooled file; malloc'd path, or NULL with err set. */
static char *make_view(lt_archive *a, const size_t *idx, size_t n, lt_error *err)
{
    char *dir = lti_asprintf("%s/" LTI_VIEW_PREFIX "XXXXXX", temporary_directory());
    if (!dir) {
        lti_fail_nomem(err, a->path);
        return NULL;
    }
    if (!mkdtemp(dir)) {   /* mode 0700 */
        char what[300];
        snprintf(what, sizeof what, "cannot create a directory in %s to unpack the archive into",
                 temporary_directory());
        lti_fail_errno(err, a->path, what);
        free(dir);
        return NULL;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    lt_status s = dfd < 0 ? lti_fail_errno(err, dir, "cannot open") : LT_OK;
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const lti_member *m = &a->members[idx[i]];
        const char *slash = strrchr(m->name, '/');
        char target[64];
        snprintf(target, sizeof target, "/proc/self/fd/%d", m->fd);
        if (symlinkat(target, dfd, slash ? slash + 1 : m->name) != 0)
            s = lti_fail_errno(err, dir, "cannot link an unpacked member");
    }
    if (dfd >= 0)
        close(dfd);
    if (s != LT_OK) {
        lti_remove_flat_dir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

/* First member whose name is >= KEY. */
static size_t lower_bound(const lt_archive *a, const char *key)
{
    size_t lo = 0, hi = a->n_members;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(a->members[mid].name, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The members FOLDER stands for into *IDX (malloc'd): the file of that
 * name, or the files directly inside that folder.  *IS_FILE tells which;
 * false (and *n 0) when neither. */
static lt_status select_members(const lt_archive *a, const char *folder, size_t **idx, size_t *n, bool *is_file,
                                lt_error *err)
{
    *idx = NULL;
    *n = 0;
    *is_file = false;
    size_t at = lower_bound(a, folder);
    if (folder[0] && at < a->n_members && strcmp(a->members[at].name, folder) == 0) {
        *idx = malloc(sizeof **idx);
        if (!*idx)
            return lti_fail_nomem(err, a->path);
        (*idx)[(*n)++] = at;
        *is_file = true;
        return LT_OK;
    }
    size_t plen = strlen(folder);
    char *prefix = lti_asprintf("%s%s", folder, plen ? "/" : "");
    if (!prefix)
        return lti_fail_nomem(err, a->path);
    plen = strlen(prefix);
    size_t cap = 0;
    for (size_t i = lower_bound(a, prefix); i < a->n_members; i++) {
        const char *name = a->members[i].name;
        if (strncmp(name, prefix, plen) != 0)
            break;
        if (strchr(name + plen, '/'))
            continue;
        if (!lti_grow((void **)idx, &cap, *n + 1, sizeof **idx)) {
            free(prefix);
            return lti_fail_nomem(err, a->path);
        }
        (*idx)[(*n)++] = i;
    }
    /* a folder exists when some file lies below it */
    bool exists = !plen || *n > 0;
    size_t below = lower_bound(a, prefix);
    if (!exists && below < a->n_members && strncmp(a->members[below].name, prefix, plen) == 0)
        exists = true;
    free(prefix);
    if (!exists)
        return lti_fail(err, LT_ERR_IO, "%s#%s: no such file or folder in the archive", a->path, lti_show(folder).text);
    return LT_OK;
}

const char *lt_archive_extract(lt_archive *a, const char *folder, lt_error *err)
{
    bool bad;
    char *norm = lti_normalize_name(folder ? folder : "", &bad);
    if (!norm) {
        if (bad)
            lti_fail(err, LT_ERR_USAGE, "%s#%s: '..' in a path inside an archive", a->path, lti_show(folder).text);
        else
            lti_fail_nomem(err, a->path);
        return NULL;
    }
    for (size_t i = 0; i < a->n_views; i++)
        if (strcmp(a->views[i].folder, norm) == 0) {
            free(norm);
            return a->views[i].result;
        }
    size_t *idx, n;
    bool is_file;
    lt_status s = select_members(a, norm, &idx, &n, &is_file, err);
    size_t *todo = s == LT_OK ? malloc((n ? n : 1) * sizeof *todo) : NULL;
    if (s == LT_OK && !todo)
        s = lti_fail_nomem(err, a->path);
    size_t n_todo = 0;
    for (size_t i = 0; s == LT_OK && i < n; i++)
        if (a->members[idx[i]].fd < 0)
            todo[n_todo++] = idx[i];
    if (s == LT_OK && n_todo > 0) {
        qsort_r(todo, n_todo, sizeof *todo, by_header, a->members);
        s = spool(a, todo, n_todo, err);
    }
    free(todo);
    char *dir = s == LT_OK ? make_view(a, idx, n, err) : NULL;
    char *result = NULL;
    if (dir) {
        const char *slash = is_file ? strrchr(norm, '/') : NULL;
        result = is_file ? lti_path_join(dir, slash ? slash + 1 : norm) : lti_strdup(dir);
    }
    free(idx);
    if (dir && (!result || !lti_grow((void **)&a->views, &a->cap_views, a->n_views + 1, sizeof *a->views))) {
        lti_remove_flat_dir(dir);
        free(dir);
        free(result);
        dir = NULL;
        lti_fail_nomem(err, a->path);
    }
    if (!dir) {
        free(norm);
        return NULL;
    }
    a->views[a->n_views++] = (lti_view){norm, dir, result};
    return result;
}

/* ---- removal from a signal handler: fixed buffers, system calls ---- */

/* Does the last component of the NUL-terminated PATH start with the
 * prefix of our private directories? */
static bool named_like_view(const char *path)
{
    const char *base = path;
    for (const char *c = path; *c; c++)
        if (*c == '/' && c[1])
            base = c + 1;
    static const char prefix[] = LTI_VIEW_PREFIX;
    for (size_t i = 0; i + 1 < sizeof prefix; i++)
        if (base[i] != prefix[i])
            return false;
    return true;
}

void lt_archive_remove_view(const char *view_dir)
{
    int saved_errno = errno;
    char path[4096];
    size_t len = 0;
    while (view_dir && view_dir[len] && len < sizeof path - 1) {
        path[len] = view_dir[len];
        len++;
    }
    if (!view_dir || view_dir[len] || len == 0) {   /* empty or too long */
        errno = saved_errno;
        return;
    }
    path[len] = '\0';
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0)
        close(fd);
    else {
        /* a single file's link: its directory */
        while (len > 0 && path[len - 1] != '/')
            len--;
        while (len > 1 && path[len - 1] == '/')
            len--;
        path[len] = '\0';
    }
    if (len > 0 && named_like_view(path))
        lti_remove_flat_dir(path);
    errno = saved_errno;
}
