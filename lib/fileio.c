/* fileio.c - positional reads of input files, and outputs that appear
 * only when complete (temporary name in the destination directory, then
 * rename; a durable output is also fsynced before the rename, and its
 * directory after). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "source_sink.h"

lt_status lti_open_regular(const char *path, int *fd_out, struct stat *st, lt_error *err)
{
    *fd_out = -1;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever; regular files ignore the flag, which is cleared
     * anyway once the type is known */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return lti_fail_errno(err, path, "cannot open");
    if (fstat(fd, st) != 0) {
        lt_status s = lti_fail_errno(err, path, "cannot stat");
        close(fd);
        return s;
    }
    int flags = S_ISREG(st->st_mode) ? fcntl(fd, F_GETFL) : -1;
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        close(fd);
        mode_t m = st->st_mode;
        return lti_fail(err, LT_ERR_INVALID, "%s: not a regular file (%s)", path,
                        S_ISFIFO(m) ? "a FIFO" : S_ISDIR(m) ? "a directory"
                        : S_ISCHR(m) || S_ISBLK(m) ? "a device" : S_ISSOCK(m) ? "a socket" : "not a plain file");
    }
    *fd_out = fd;
    return LT_OK;
}

lt_status lti_rfile_open(lti_rfile *f, const char *path, lt_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    struct stat st;
    int fd;
    lt_status opened = lti_open_regular(path, &fd, &st, err);
    if (opened != LT_OK)
        return opened;
    f->path = lti_strdup(path);
    if (!f->path) {
        close(fd);
        return lti_fail_nomem(err, path);
    }
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    /* large inputs are also mapped: tensor bytes are then used in place,
     * without a copy into our buffers */
    if (f->size >= (64u << 20) && f->size <= SIZE_MAX) {
        void *map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            (void)madvise(map, (size_t)f->size, MADV_SEQUENTIAL);
            f->map = map;
        }
    }
    return LT_OK;
}

const void *lti_rfile_at(const lti_rfile *f, uint64_t off, size_t len)
{
    uint64_t end;
    if (!f->map || !lti_add_u64(off, len, &end) || end > f->size)
        return NULL;
#ifdef MADV_POPULATE_READ
    /* map the range's pages in one call rather than fault by fault (best
     * effort: older kernels refuse, and faults do the same) */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = (uintptr_t)(f->map + off) & ~(page - 1);
    if (len >= (256u << 10))
        (void)madvise((void *)start, (uintptr_t)(f->map + off) + len - start, MADV_POPULATE_READ);
#endif
    return f->map + off;
}

void lti_rfile_release(const lti_rfile *f, const void *p, size_t len)
{
    if (!f->map || !p)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1), end = ((uintptr_t)p + len) & ~(page - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_DONTNEED);
}

lt_status lti_rfile_pread(const lti_rfile *f, uint64_t off, void *dst, size_t len,
                         lt_error *err)
{
    uint64_t end;
    if (!lti_add_u64(off, len, &end) || end > f->size)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: file truncated (needs %llu bytes, has %llu)", f->path,
                       (unsigned long long)(lti_add_u64(off, len, &end) ? end : UINT64_MAX),
                       (unsigned long long)f->size);
    unsigned char *p = dst;
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t got = pread(f->fd, p, chunk, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return lti_fail_errno(err, f->path, "read failed");
        }
        if (got == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: file shrank while reading", f->path);
        p += got;
        off += (uint64_t)got;
        len -= (size_t)got;
    }
    return LT_OK;
}

void lti_rfile_close(lti_rfile *f)
{
    if (f->map)
        munmap((void *)f->map, (size_t)f->size);
    f->map = NULL;
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    f->fd = -1;
    f->path = NULL;
}

lt_status lti_read_small_file(const char *path, size_t max_bytes, char **out,
                             size_t *out_len, lt_error *err)
{
    lti_rfile f;
    lt_status s = lti_rfile_open(&f, path, err);
    if (s != LT_OK)
        return s;
    if (f.size > max_bytes) {
        lti_rfile_close(&f);
        return lti_fail(err, LT_ERR_INVALID, "%s: file too large (%llu bytes, limit %zu)",
                       path, (unsigned long long)f.size, max_bytes);
    }
    char *buf = malloc((size_t)f.size + 1);
    if (!buf) {
        lti_rfile_close(&f);
        return lti_fail_nomem(err, path);
    }
    s = lti_rfile_pread(&f, 0, buf, (size_t)f.size, err);
    if (s != LT_OK) {
        free(buf);
        lti_rfile_close(&f);
        return s;
    }
    buf[f.size] = '\0';
    if (out_len)
        *out_len = (size_t)f.size;
    *out = buf;
    lti_rfile_close(&f);
    return LT_OK;
}

/* The directory part of path, malloc'd ("." when there is none). */
static char *directory_of(const char *path)
{
    char *copy = lti_strdup(path);
    if (!copy)
        return NULL;
    char *dir = lti_strdup(dirname(copy));
    free(copy);
    return dir;
}

/* The temporary name for final_path: ".<name>.tmp-<pid>-XXXXXX" in its
 * directory (the pattern lt_remove_temporaries looks for), malloc'd. */
static char *temporary_name(const char *final_path)
{
    char *copy = lti_strdup(final_path), *dir = directory_of(final_path);
    char *tmp = copy && dir ? lti_asprintf("%s/.%s" LTI_TEMP_MARK "%ld-XXXXXX", dir, basename(copy), (long)getpid())
                            : NULL;
    free(copy);
    free(dir);
    return tmp;
}

/* O_TMPFILE: the file has no name until lti_wfile_commit links it, so
 * nothing is left behind by any way out, SIGKILL included.  NULL (use a
 * named file) where the kernel or filesystem lacks it, or where
 * /proc/self/fd, through which it is linked, is not there. */
static int open_unnamed(const char *final_path)
{
#ifdef O_TMPFILE
    char *dir = directory_of(final_path);
    int fd = dir && access("/proc/self/fd", X_OK) == 0 ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666) : -1;
    free(dir);
    return fd;
#else
    (void)final_path;
    return -1;
#endif
}

lt_status lti_wfile_create(lti_wfile *f, const char *final_path, lt_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (lti_is_dir(final_path))
        return lti_fail(err, LT_ERR_USAGE, "%s: output is a directory", final_path);
    f->final_path = lti_strdup(final_path);
    if (!f->final_path)
        return lti_fail_nomem(err, final_path);
    f->fd = open_unnamed(final_path);
    if (f->fd >= 0)
        return LT_OK;
    f->tmp_path = temporary_name(final_path);
    if (!f->tmp_path) {
        lti_wfile_abort(f);
        return lti_fail_nomem(err, final_path);
    }
    int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        lt_status s = lti_fail_errno(err, final_path, "cannot create output");
        free(f->tmp_path);
        f->tmp_path = NULL;
        lti_wfile_abort(f);
        return s;
    }
    /* mkstemp makes 0600; outputs are ordinary files */
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    f->fd = fd;
    return LT_OK;
}

/* Gives the unnamed file of f a temporary name beside its final one (the
 * rename that follows replaces an existing file atomically; linkat
 * cannot). */
static lt_status link_unnamed(lti_wfile *f, lt_error *err)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    for (int attempt = 0; attempt < 100; attempt++) {
        char *name = temporary_name(f->final_path);
        if (!name)
            return lti_fail_nomem(err, f->final_path);
        /* mkstemp's letters without its file: a random suffix */
        int fd = mkstemp(name);
        if (fd < 0) {
            lt_status s = lti_fail_errno(err, f->final_path, "cannot link output into place");
            free(name);
            return s;
        }
        close(fd);
        unlink(name);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) {
            f->tmp_path = name;
            return LT_OK;
        }
        int e = errno;
        free(name);
        if (e != EEXIST) { /* EEXIST: another process took the name meanwhile */
            errno = e;
            return lti_fail_errno(err, f->final_path, "cannot link output into place");
        }
    }
    return lti_fail(err, LT_ERR_IO, "%s: cannot find a free temporary name", f->final_path);
}

lt_status lti_wfile_reserve(lti_wfile *f, uint64_t size, lt_error *err)
{
    if (fallocate(f->fd, 0, 0, (off_t)size) == 0)
        return LT_OK;
    if (errno == ENOSPC)
        return lti_fail_errno(err, f->final_path, "cannot reserve output space");
    /* filesystems without fallocate: a sparse file of the right size */
    if (ftruncate(f->fd, (off_t)size) != 0)
        return lti_fail_errno(err, f->final_path, "cannot size output file");
    return LT_OK;
}

lt_status lti_wfile_pwrite(lti_wfile *f, uint64_t off, const void *buf, size_t len,
                          lt_error *err)
{
    const unsigned char *p = buf;
    uint64_t start_off = off;
    size_t start_len = len;
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t put = pwrite(f->fd, p, chunk, (off_t)off);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            return lti_fail_errno(err, f->final_path, "write failed");
        }
        p += put;
        off += (uint64_t)put;
        len -= (size_t)put;
    }
    /* Durable outputs: start writeback of large writes now, so the fsync
     * at commit finds little left to do and the disk works while we
     * compute. */
    if (f->durable && start_len >= (1u << 20))
        (void)sync_file_range(f->fd, (off_t)start_off, (off_t)start_len, SYNC_FILE_RANGE_WRITE);
    return LT_OK;
}

static void fsync_directory_of(const char *path)
{
    char *dir = directory_of(path);
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some filesystems refuse */
        close(fd);
    }
    free(dir);
}

lt_status lti_wfile_commit(lti_wfile *f, lt_error *err)
{
    if (f->durable && fsync(f->fd) != 0) {
        lt_status s = lti_fail_errno(err, f->final_path, "fsync failed");
        lti_wfile_abort(f);
        return s;
    }
    lt_status linked = f->tmp_path ? LT_OK : link_unnamed(f, err);
    if (linked != LT_OK) {
        lti_wfile_abort(f);
        return linked;
    }
    if (close(f->fd) != 0) {
        f->fd = -1;
        lt_status s = lti_fail_errno(err, f->final_path, "close failed");
        lti_wfile_abort(f);
        return s;
    }
    f->fd = -1;
    if (rename(f->tmp_path, f->final_path) != 0) {
        lt_status s = lti_fail_errno(err, f->final_path, "cannot rename output into place");
        lti_wfile_abort(f);
        return s;
    }
    if (f->durable)
        fsync_directory_of(f->final_path);
    free(f->tmp_path);
    free(f->final_path);
    f->tmp_path = f->final_path = NULL;
    return LT_OK;
}

void lti_wfile_abort(lti_wfile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->final_path);
    f->fd = -1;
    f->tmp_path = f->final_path = NULL;
}

lt_status lti_write_file_atomic(const char *path, const void *data, size_t len,
                               lt_error *err)
{
    lti_wfile f;
    lt_status s = lti_wfile_create(&f, path, err);
    if (s != LT_OK)
        return s;
    f.durable = true; /* small files: the fsync costs little */
    s = lti_wfile_pwrite(&f, 0, data, len, err);
    if (s != LT_OK) {
        lti_wfile_abort(&f);
        return s;
    }
    return lti_wfile_commit(&f, err);
}

/* ---- directory outputs ---- */

static void each_dirent(int fd, void (*fn)(int fd, const char *name, const void *ctx), const void *ctx);
static void unlink_entry(int fd, const char *name, const void *ctx);

/* What loratool writes into an output directory, so what it may replace:
 * adapter and shard files, their index and config, README.md, and the
 * side files a merge copies from a model directory. */
static bool is_loratool_output_name(const char *name)
{
    static const char *const names[] = {
        "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md",
        "model.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json",
        "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
        "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "preprocessor_config.json",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    unsigned k, n;
    int end = 0;
    return sscanf(name, "model-%5u-of-%5u.safetensors%n", &k, &n, &end) == 2 && name[end] == '\0';
}

/* LT_OK when path is absent, or a directory holding only what
 * is_loratool_output_name allows (regular files); else LT_ERR_USAGE naming
 * what is in the way. */
static lt_status check_replaceable(const char *path, lt_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? LT_OK : lti_fail_errno(err, path, "cannot stat output");
    if (!S_ISDIR(st.st_mode))
        return lti_fail(err, LT_ERR_USAGE, "%s: output exists and is not a directory", path);
    DIR *d = opendir(path);
    if (!d)
        return lti_fail_errno(err, path, "cannot read output directory");
    lt_status s = LT_OK;
    const struct dirent *e;
    while (s == LT_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *entry = lti_path_join(path, e->d_name);
        struct stat est;
        if (!entry)
            s = lti_fail_nomem(err, path);
        else if (!is_loratool_output_name(e->d_name) || lstat(entry, &est) != 0 || !S_ISREG(est.st_mode))
            s = lti_fail(err, LT_ERR_USAGE,
                         "%s: not replacing the directory: '%s' is in the way (loratool did not write it)", path,
                         e->d_name);
        free(entry);
    }
    closedir(d);
    return s;
}

void lti_remove_flat_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        each_dirent(fd, unlink_entry, NULL);
        close(fd);
    }
    (void)rmdir(path);
}

lt_status lti_wdir_create(lti_wdir *d, const char *final_path, lt_error *err)
{
    memset(d, 0, sizeof *d);
    lt_status s = check_replaceable(final_path, err);
    if (s != LT_OK)
        return s;
    d->final_path = lti_strdup(final_path);
    d->tmp_path = temporary_name(final_path);
    if (!d->final_path || !d->tmp_path) {
        free(d->tmp_path);
        d->tmp_path = NULL;
        lti_wdir_abort(d);
        return lti_fail_nomem(err, final_path);
    }
    if (!mkdtemp(d->tmp_path)) {
        s = lti_fail_errno(err, final_path, "cannot create output directory");
        free(d->tmp_path);
        d->tmp_path = NULL;
        lti_wdir_abort(d);
        return s;
    }
    /* mkdtemp makes 0700; outputs are ordinary directories */
    mode_t mask = umask(0);
    umask(mask);
    (void)chmod(d->tmp_path, 0777 & ~mask);
    return LT_OK;
}

lt_status lti_wdir_commit(lti_wdir *d, bool durable, lt_error *err)
{
    lt_status s = check_replaceable(d->final_path, err);
    struct stat st;
    bool exists = s == LT_OK && lstat(d->final_path, &st) == 0;
    if (s == LT_OK && !exists && rename(d->tmp_path, d->final_path) != 0)
        s = lti_fail_errno(err, d->final_path, "cannot rename output directory into place");
    if (s == LT_OK && exists) {
        /* swap: the new directory takes the name at once, the old one
         * gets the temporary name and is removed after */
        if (renameat2(AT_FDCWD, d->tmp_path, AT_FDCWD, d->final_path, RENAME_EXCHANGE) != 0) {
            if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                s = lti_fail_errno(err, d->final_path, "cannot swap output directory into place");
            else {
                /* no RENAME_EXCHANGE (old kernel, some filesystems): move
                 * the old directory aside, the new one in, then drop the
                 * old; OUT is missing for the moment between the renames,
                 * and put back if the second fails */
                char *aside = temporary_name(d->final_path);
                if (!aside || !mkdtemp(aside) || rmdir(aside) != 0 || rename(d->final_path, aside) != 0)
                    s = lti_fail_errno(err, d->final_path, "cannot move the old output directory aside");
                else if (rename(d->tmp_path, d->final_path) != 0) {
                    s = lti_fail_errno(err, d->final_path, "cannot rename output directory into place");
                    (void)rename(aside, d->final_path);
                } else {
                    (void)rename(aside, d->tmp_path); /* so it is removed below */
                }
                free(aside);
            }
        }
        if (s == LT_OK)
            lti_remove_flat_dir(d->tmp_path); /* the old directory */
    }
    if (s == LT_OK && durable)
        fsync_directory_of(d->final_path);
    if (s == LT_OK) {
        free(d->tmp_path);
        d->tmp_path = NULL;
    }
    lti_wdir_abort(d);
    return s;
}

void lti_wdir_abort(lti_wdir *d)
{
    if (d->tmp_path)
        lti_remove_flat_dir(d->tmp_path);
    free(d->tmp_path);
    free(d->final_path);
    d->tmp_path = d->final_path = NULL;
}

lt_status lt_copy_file(const char *src, const char *dst, lt_error *err)
{
    lti_rfile in;
    lt_status s = lti_rfile_open(&in, src, err);
    if (s != LT_OK)
        return s;
    lti_wfile out;
    s = lti_wfile_create(&out, dst, err);
    if (s != LT_OK) {
        lti_rfile_close(&in);
        return s;
    }
    out.durable = true;
    static const size_t chunk = 1u << 20;
    unsigned char *buf = malloc(chunk);
    if (!buf)
        s = lti_fail_nomem(err, dst);
    for (uint64_t off = 0; s == LT_OK && off < in.size; off += chunk) {
        size_t n = in.size - off < chunk ? (size_t)(in.size - off) : chunk;
        s = lti_rfile_pread(&in, off, buf, n, err);
        if (s == LT_OK)
            s = lti_wfile_pwrite(&out, off, buf, n, err);
    }
    free(buf);
    lti_rfile_close(&in);
    if (s != LT_OK) {
        lti_wfile_abort(&out);
        return s;
    }
    return lti_wfile_commit(&out, err);
}

/* ---- removing this process's temporaries from a signal handler ----
 * Only system calls and fixed buffers: no allocation, no locks, no stdio. */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Does name look like ".<anything>.tmp-<pid>-<anything>"? */
static bool is_our_temporary(const char *name, const char *pid_mark, size_t mark_len)
{
    if (name[0] != '.')
        return false;
    for (const char *p = name + 1; *p; p++)
        if (*p == pid_mark[0] && strncmp(p, pid_mark, mark_len) == 0)
            return true;
    return false;
}

/* Calls fn(fd, name, ctx) for each entry of the open directory fd but "."
 * and "..". */
static void each_dirent(int fd, void (*fn)(int fd, const char *name, const void *ctx), const void *ctx)
{
    char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            return;
        for (long off = 0; off < n;) {
            const struct linux_dirent64 *e = (const void *)(buf + off);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                fn(fd, e->d_name, ctx);
            off += e->d_reclen;
        }
    }
}

static void unlink_entry(int fd, const char *name, const void *ctx)
{
    (void)ctx;
    (void)unlinkat(fd, name, 0);
}

typedef struct pid_mark {
    const char *text;
    size_t len;
} pid_mark;

/* Removes name when it is one of our temporaries: a file, or a directory
 * of plain files (emptied first). */
static void remove_if_ours(int fd, const char *name, const void *ctx)
{
    const pid_mark *mark = ctx;
    if (!is_our_temporary(name, mark->text, mark->len) || unlinkat(fd, name, 0) == 0
        || (errno != EISDIR && errno != EPERM))
        return;
    int sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (sub < 0)
        return;
    each_dirent(sub, unlink_entry, NULL);
    close(sub);
    (void)unlinkat(fd, name, AT_REMOVEDIR);
}

static void sweep_directory(const char *dir, const pid_mark *mark)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    each_dirent(fd, remove_if_ours, mark);
    close(fd);
}

void lt_remove_temporaries(const char *out_path)
{
    int saved_errno = errno;
    /* ".tmp-<pid>-" without snprintf */
    char mark[48] = LTI_TEMP_MARK, digits[24];
    size_t len = sizeof LTI_TEMP_MARK - 1, n = 0;
    for (unsigned long pid = (unsigned long)getpid(); pid || n == 0; pid /= 10)
        digits[n++] = (char)('0' + pid % 10);
    while (n)
        mark[len++] = digits[--n];
    mark[len++] = '-';
    mark[len] = '\0';
    /* the directory of out_path, and out_path itself (an output directory
     * whose files are written in place) */
    char dir[4096];
    size_t plen = strlen(out_path);
    if (plen == 0 || plen >= sizeof dir)
        return;
    memcpy(dir, out_path, plen + 1);
    while (plen > 1 && dir[plen - 1] == '/')
        dir[--plen] = '\0';
    const pid_mark ours = {mark, len};
    sweep_directory(dir, &ours);
    char *slash = strrchr(dir, '/');
    if (!slash)
        sweep_directory(".", &ours);
    else {
        slash[slash == dir] = '\0';
        sweep_directory(dir, &ours);
    }
    errno = saved_errno;
}
