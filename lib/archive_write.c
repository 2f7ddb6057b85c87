/* archive_write.c - an output directory written as a zip or (compressed)
 * tar archive, reproducibly: the same files give the same bytes
 * (spec/archives.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "core.h"

/* Files are copied into the archive in blocks of this size. */
#define COPY_BLOCK ((size_t)1 << 20)

lt_archive_kind lt_archive_kind_for_path(const char *path)
{
    static const struct {
        const char *suffix;
        lt_archive_kind kind;
    } kinds[] = {
        {".zip", LT_ARCHIVE_ZIP},        {".tar", LT_ARCHIVE_TAR},         {".tar.gz", LT_ARCHIVE_TAR_GZ},
        {".tgz", LT_ARCHIVE_TAR_GZ},     {".tar.xz", LT_ARCHIVE_TAR_XZ},   {".tar.zst", LT_ARCHIVE_TAR_ZST},
        {".tar.bz2", LT_ARCHIVE_TAR_BZ2},
    };
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        size_t k = strlen(kinds[i].suffix);
        /* a name that is only the suffix (".zip") is not an archive name */
        if (n > k && path[n - k - 1] != '/' && strcasecmp(path + n - k, kinds[i].suffix) == 0)
            return kinds[i].kind;
    }
    return LT_ARCHIVE_NONE;
}

typedef struct sink {
    lti_wfile file;
    uint64_t off;
    lt_error *err;
    lt_status status;   /* of the first failed write */
} sink;

static la_ssize_t sink_write(struct archive *ar, void *data, const void *buf, size_t len)
{
    (void)ar;
    sink *s = data;
    s->status = lti_wfile_pwrite(&s->file, s->off, buf, len, s->err);
    if (s->status != LT_OK)
        return -1;
    s->off += len;
    return (la_ssize_t)len;
}

static int by_string(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The names of the regular files directly inside DIR, sorted bytewise. */
static lt_status list_files(const char *dir, char ***names, size_t *n, lt_error *err)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return lti_fail_errno(err, dir, "cannot read directory");
    size_t cap = 0;
    lt_status s = LT_OK;
    const struct dirent *e;
    errno = 0;
    while (s == LT_OK && (e = readdir(d))) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            s = lti_fail_errno(err, dir, "cannot stat an entry of");
        else if (S_ISREG(st.st_mode)) {
            char *name = lti_strdup(e->d_name);
            if (!name || !lti_grow((void **)names, &cap, *n + 1, sizeof **names)) {
                free(name);
                s = lti_fail_nomem(err, dir);
            } else {
                (*names)[(*n)++] = name;
            }
        }
        errno = 0;
    }
    if (s == LT_OK && errno != 0)
        s = lti_fail_errno(err, dir, "cannot read directory");
    closedir(d);
    if (s == LT_OK && *n > 1)
        qsort(*names, *n, sizeof **names, by_string);
    return s;
}

/* The writer for KIND: format, filter, and the options that keep the
 * bytes the same from run to run. */
static bool configure(struct archive *ar, lt_archive_kind kind)
{
    int r;
    if (kind == LT_ARCHIVE_ZIP)
        r = archive_write_set_format_zip(ar);
    else   /* ustar headers, a pax header only where ustar cannot say it */
        r = archive_write_set_format_pax_restricted(ar);
    if (r != ARCHIVE_OK)
        return false;
    switch (kind) {
    case LT_ARCHIVE_TAR_GZ:
        /* no time and no name in the gzip header */
        r = archive_write_add_filter_gzip(ar);
        if (r == ARCHIVE_OK)
            r = archive_write_set_filter_option(ar, "gzip", "timestamp", NULL);
        break;
    case LT_ARCHIVE_TAR_XZ: r = archive_write_add_filter_xz(ar); break;
    case LT_ARCHIVE_TAR_ZST: r = archive_write_add_filter_zstd(ar); break;
    case LT_ARCHIVE_TAR_BZ2: r = archive_write_add_filter_bzip2(ar); break;
    default: r = ARCHIVE_OK; break;
    }
    if (r != ARCHIVE_OK)
        return false;
    /* a plain tar ends padded to whole 10240-byte records as tar(1)
     * writes it; a compressed stream or a zip ends where its data does */
    return kind == LT_ARCHIVE_TAR || archive_write_set_bytes_in_last_block(ar, 1) == ARCHIVE_OK;
}

static lt_status archive_failure(struct archive *ar, sink *out, const char *path, lt_error *err)
{
    if (out->status != LT_OK)
        return out->status;
    if (archive_errno(ar) == ENOMEM)
        return lti_fail_nomem(err, path);
    const char *why = archive_error_string(ar);
    return lti_fail(err, LT_ERR_IO, "%s: cannot write the archive: %s", path, why ? why : "libarchive failed");
}

/* One file of DIR as the member NAME, streamed in blocks. */
static lt_status add_file(struct archive *ar, sink *out, const char *dir, const char *name, int64_t mtime,
                          unsigned char *buf, lt_error *err)
{
    char *path = lti_path_join(dir, name);
    if (!path)
        return lti_fail_nomem(err, dir);
    int fd;
    struct stat st;
    lt_status s = lti_open_regular(path, &fd, &st, err);
    if (s != LT_OK) {
        free(path);
        return s;
    }
    struct archive_entry *e = archive_entry_new();
    if (!e) {
        close(fd);
        free(path);
        return lti_fail_nomem(err, out->file.final_path);
    }
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, st.st_size);
    archive_entry_set_mtime(e, (time_t)mtime, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    if (archive_write_header(ar, e) != ARCHIVE_OK)
        s = archive_failure(ar, out, out->file.final_path, err);
    uint64_t done = 0, size = (uint64_t)st.st_size;
    while (s == LT_OK && done < size) {
        size_t want = size - done < COPY_BLOCK ? (size_t)(size - done) : COPY_BLOCK;
        ssize_t got = pread(fd, buf, want, (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            s = lti_fail_errno(err, path, "read failed");
        else if (got == 0)
            s = lti_fail(err, LT_ERR_IO, "%s: file shrank while archiving it", path);
        else if (archive_write_data(ar, buf, (size_t)got) != got)
            s = archive_failure(ar, out, out->file.final_path, err);
        else
            done += (uint64_t)got;
    }
    archive_entry_free(e);
    close(fd);
    free(path);
    return s;
}

lt_status lt_archive_write_dir(const char *dir, const char *out, lt_archive_kind kind, int64_t mtime, lt_error *err)
{
    if (kind <= LT_ARCHIVE_NONE || kind > LT_ARCHIVE_TAR_BZ2)
        return lti_fail(err, LT_ERR_USAGE, "%s: not an archive kind loratool writes", out);
    if (mtime < 0)
        return lti_fail(err, LT_ERR_USAGE, "%s: archive time %lld is before 1970", out, (long long)mtime);
    char **names;
    size_t n;
    lt_status s = list_files(dir, &names, &n, err);
    if (s != LT_OK)
        return s;
    sink o = {.err = err, .status = LT_OK};
    unsigned char *buf = malloc(COPY_BLOCK);
    struct archive *ar = buf ? archive_write_new() : NULL;
    if (!ar)
        s = lti_fail_nomem(err, out);
    else if (!configure(ar, kind))
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: this libarchive cannot write that kind of archive: %s", out,
                     archive_error_string(ar) ? archive_error_string(ar) : "?");
    bool created = false;
    if (s == LT_OK) {
        s = lti_wfile_create(&o.file, out, err);
        created = s == LT_OK;
        o.file.durable = true;
    }
    if (s == LT_OK && archive_write_open2(ar, &o, NULL, sink_write, NULL, NULL) != ARCHIVE_OK)
        s = archive_failure(ar, &o, out, err);
    for (size_t i = 0; s == LT_OK && i < n; i++)
        s = add_file(ar, &o, dir, names[i], mtime, buf, err);
    if (s == LT_OK && archive_write_close(ar) != ARCHIVE_OK)
        s = archive_failure(ar, &o, out, err);
    if (ar)
        archive_write_free(ar);
    free(buf);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (created && s != LT_OK)
        lti_wfile_abort(&o.file);
    else if (created)
        s = lti_wfile_commit(&o.file, err);
    return s;
}
