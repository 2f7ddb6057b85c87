/* fileio.c - positional reads of input files, and outputs that appear
 * only when complete (temporary name in the destination directory, then
 * rename; a durable output is also fsynced before the rename, and its
 * directory after). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

lt_status lti_wfile_create(lti_wfile *f, const char *final_path, lt_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (lti_is_dir(final_path))
        return lti_fail(err, LT_ERR_USAGE, "%s: output is a directory", final_path);
    char *copy = lti_strdup(final_path);
    char *dir = directory_of(final_path);
    if (!copy || !dir) {
        free(copy);
        free(dir);
        return lti_fail_nomem(err, final_path);
    }
    char *base = basename(copy);
    f->tmp_path = lti_asprintf("%s/.%s.tmp-XXXXXX", dir, base);
    free(copy);
    free(dir);
    f->final_path = lti_strdup(final_path);
    if (!f->tmp_path || !f->final_path) {
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
