/* archive_read.c - zip and tar archives through libarchive: the limits,
 * recognizing an archive by content, and reading every header once to
 * refuse what an archive must not make loratool do (spec/archives.md).
 * Spooling members is lib/archive_spool.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_internal.h"

/* libarchive asks for the archive's bytes in blocks of this size: memory
 * stays bounded whatever the archive holds. */
#define READ_BLOCK ((size_t)64 << 10)

/* ---- limits ---- */

void lt_archive_default_limits(lt_archive_role role, lt_archive_limits *out)
{
    out->member_bytes = (role == LT_ARCHIVE_MODEL ? (uint64_t)512 : 16) << 30;
    out->entries = 10000;
    out->ratio = 1000;
}

/* VALUE of LEN bytes: decimal digits, then (SUFFIXES) one of K M G T
 * (binary multiples, either case). */
static bool parse_number(const char *value, size_t len, bool suffixes, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && value[i] >= '0' && value[i] <= '9'; i++)
        if (!lti_mul_u64(v, 10, &v) || !lti_add_u64(v, (uint64_t)(value[i] - '0'), &v))
            return false;
    if (i == 0)
        return false;
    if (i < len) {
        static const char units[] = "kmgt";
        const char *u = strchr(units, value[i] | 0x20);
        if (!suffixes || i + 1 != len || !u || value[i] == '\0')
            return false;
        unsigned shift = 10 * (unsigned)(u - units + 1);
        if (v > (UINT64_MAX >> shift))
            return false;
        v <<= shift;
    }
    *out = v;
    return true;
}

lt_status lt_archive_limits_parse(const char *text, lt_archive_limits *limits, lt_error *err)
{
    lt_archive_limits next = *limits;
    const char *p = text ? text : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        size_t name_len = eq ? (size_t)(eq - p) : len;
        int shown = len > 64 ? 64 : (int)len;
        if (!eq)
            return lti_fail(err, LT_ERR_USAGE, "archive limit '%.*s': expected NAME=VALUE (member, entries, ratio)",
                            shown, p);
        uint64_t v;
        const char *value = eq + 1;
        size_t value_len = len - name_len - 1;
        bool is_member = name_len == 6 && memcmp(p, "member", 6) == 0;
        bool is_entries = name_len == 7 && memcmp(p, "entries", 7) == 0;
        bool is_ratio = name_len == 5 && memcmp(p, "ratio", 5) == 0;
        if (!is_member && !is_entries && !is_ratio)
            return lti_fail(err, LT_ERR_USAGE, "archive limit '%.*s': unknown name (member, entries, ratio)", shown, p);
        if (!parse_number(value, value_len, is_member, &v) || (!is_member && v == 0))
            return lti_fail(err, LT_ERR_USAGE, "archive limit '%.*s': %s", shown, p,
                            is_member ? "expected a size in bytes, with an optional K, M, G or T suffix"
                                      : "expected a whole number of at least 1");
        if (is_member)
            next.member_bytes = v;
        else if (is_entries)
            next.entries = v;
        else
            next.ratio = v;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p)
                return lti_fail(err, LT_ERR_USAGE, "archive limits '%.64s': ends with ','", text);
        }
    }
    *limits = next;
    return LT_OK;
}

/* ---- a pass of libarchive over the descriptor ---- */

static la_ssize_t pass_read(struct archive *ar, void *data, const void **buf)
{
    lti_pass *p = data;
    for (;;) {
        ssize_t got = p->pos < p->size ? pread(p->fd, p->buf, READ_BLOCK, (off_t)p->pos) : 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            p->io_errno = errno;
            archive_set_error(ar, errno, "read failed");
            return -1;
        }
        p->pos += (uint64_t)got;
        p->bytes_read += (uint64_t)got;
        *buf = p->buf;
        return got;
    }
}

/* Skipping forward is moving the position (libarchive reads what it could
 * not skip); never past the end, so a truncated archive reads as one. */
static la_int64_t pass_skip(struct archive *ar, void *data, la_int64_t request)
{
    (void)ar;
    lti_pass *p = data;
    uint64_t left = p->pos < p->size ? p->size - p->pos : 0;
    uint64_t step = request <= 0 ? 0 : (uint64_t)request < left ? (uint64_t)request : left;
    p->pos += step;
    return (la_int64_t)step;
}

static la_int64_t pass_seek(struct archive *ar, void *data, la_int64_t offset, int whence)
{
    lti_pass *p = data;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)p->pos : (int64_t)p->size, to;
    if (__builtin_add_overflow(base, offset, &to) || to < 0) {
        archive_set_error(ar, EINVAL, "seek outside the archive");
        return ARCHIVE_FATAL;
    }
    p->pos = (uint64_t)to;
    return to;
}

lt_status lti_pass_fail(lti_pass *p, const char *context, lt_error *err)
{
    if (p->io_errno) {
        errno = p->io_errno;
        return lti_fail_errno(err, p->path, "read failed");
    }
    if (p->ar && archive_errno(p->ar) == ENOMEM)
        return lti_fail_nomem(err, p->path);
    const char *why = p->ar ? archive_error_string(p->ar) : NULL;
    if (!why || !*why)
        why = "unreadable archive";
    if (context)
        return lti_fail(err, LT_ERR_INVALID, "%s: %s: %s", p->path, context, why);
    return lti_fail(err, LT_ERR_INVALID, "%s: %s", p->path, why);
}

void lti_pass_end(lti_pass *p)
{
    if (p->ar)
        archive_read_free(p->ar);
    free(p->buf);
    p->ar = NULL;
    p->buf = NULL;
    if (p->utf8) {
        uselocale(p->saved);
        freelocale(p->utf8);
        p->utf8 = (locale_t)0;
    }
}

lt_status lti_pass_begin(lti_pass *p, const char *path, int fd, uint64_t size, lt_error *err)
{
    memset(p, 0, sizeof *p);
    p->path = path;
    p->fd = fd;
    p->size = size;
    /* libarchive converts names to the locale's character set as it
     * makes its reader: a UTF-8 one for this thread first (without it,
     * a non-ASCII name is refused as unreadable) */
    p->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (p->utf8)
        p->saved = uselocale(p->utf8);
    p->buf = malloc(READ_BLOCK);
    p->ar = archive_read_new();
    if (!p->buf || !p->ar) {
        lti_pass_end(p);
        return lti_fail_nomem(err, path);
    }
    /* exactly these formats and filters: an archive cannot make libarchive
     * parse anything else (no support_format_all), and zip is read from
     * its central directory (the seekable reader) */
    const char *missing = archive_read_support_format_tar(p->ar) != ARCHIVE_OK ? "tar"
                        : archive_read_support_format_zip_seekable(p->ar) != ARCHIVE_OK ? "zip"
                        : archive_read_support_filter_gzip(p->ar) != ARCHIVE_OK ? "gzip"
                        : archive_read_support_filter_xz(p->ar) != ARCHIVE_OK ? "xz"
                        : archive_read_support_filter_zstd(p->ar) != ARCHIVE_OK ? "zstd"
                        : archive_read_support_filter_bzip2(p->ar) != ARCHIVE_OK ? "bzip2" : NULL;
    if (missing) {
        lti_pass_end(p);
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: this libarchive cannot read %s itself", path, missing);
    }
    if (archive_read_set_read_callback(p->ar, pass_read) != ARCHIVE_OK ||
        archive_read_set_skip_callback(p->ar, pass_skip) != ARCHIVE_OK ||
        archive_read_set_seek_callback(p->ar, pass_seek) != ARCHIVE_OK ||
        archive_read_set_callback_data(p->ar, p) != ARCHIVE_OK || archive_read_open1(p->ar) != ARCHIVE_OK) {
        lt_status s = lti_pass_fail(p, "not a readable archive", err);
        lti_pass_end(p);
        return s;
    }
    return LT_OK;
}

/* ---- member names ---- */

char *lti_normalize_name(const char *raw, bool *bad)
{
    *bad = false;
    size_t n = strlen(raw);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (const char *c = raw; *c;) {
        size_t len = strcspn(c, "/");
        if (len == 2 && c[0] == '.' && c[1] == '.') {
            free(out);
            *bad = true;
            return NULL;
        }
        if (len > 0 && !(len == 1 && c[0] == '.')) {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, c, len);
            o += len;
        }
        c += len;
        while (*c == '/')
            c++;
    }
    out[o] = '\0';
    return out;
}

char *lti_entry_name(lti_pass *p, struct archive_entry *e, lt_error *err)
{
    /* UTF-8 where libarchive can tell (zip's flag, pax's path), else the
     * bytes as stored */
    const char *raw = archive_entry_pathname_utf8(e);
    if (!raw)
        raw = archive_entry_pathname(e);
    if (!raw) {
        lti_fail(err, LT_ERR_INVALID, "%s: an entry's name cannot be read", p->path);
        return NULL;
    }
    if (raw[0] == '/') {
        lti_fail(err, LT_ERR_INVALID, "%s: member '%s': absolute name (an archive never names a path outside it)",
                 p->path, lti_show(raw).text);
        return NULL;
    }
    bool bad;
    char *name = lti_normalize_name(raw, &bad);
    if (!name) {
        if (bad)
            lti_fail(err, LT_ERR_INVALID, "%s: member '%s': '..' in its name (an archive never names a path outside it)",
                     p->path, lti_show(raw).text);
        else
            lti_fail_nomem(err, p->path);
        return NULL;
    }
    for (const char *c = name; *c;) {
        size_t len = strcspn(c, "/");
        if (len > NAME_MAX) {
            lti_fail(err, LT_ERR_INVALID, "%s: member '%s': a name component longer than %d bytes", p->path,
                     lti_show(raw).text, NAME_MAX);
            free(name);
            return NULL;
        }
        c += len + (c[len] == '/');
    }
    return name;
}

/* ---- data, under the limits ---- */

static lt_status write_at(int fd, const void *data, size_t len, uint64_t off, const char *path, lt_error *err)
{
    const unsigned char *c = data;
    while (len > 0) {
        ssize_t put = pwrite(fd, c, len, (off_t)off);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0) {
            if (put == 0)
                errno = ENOSPC;
            return lti_fail_errno(err, path, "cannot write the spooled member (in $TMPDIR, else /tmp)");
        }
        c += put;
        off += (uint64_t)put;
        len -= (size_t)put;
    }
    return LT_OK;
}

lt_status lti_pass_pump(lti_pass *p, const char *name, uint64_t size, bool sparse, int fd, lt_error *err)
{
    const lt_archive_limits *lim = &p->owner->limits;
    uint64_t end = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int rc = archive_read_data_block(p->ar, &buf, &len, &off);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK) {
            char context[200];
            snprintf(context, sizeof context, "member '%s'", lti_show(name).text);
            return lti_pass_fail(p, context, err);
        }
        uint64_t stop;
        if (off < 0 || !lti_add_u64((uint64_t)off, len, &stop))
            return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': data at an impossible offset", p->path,
                            lti_show(name).text);
        if (stop > lim->member_bytes)
            return lti_fail(err, LT_ERR_INVALID,
                            "%s: member '%s': larger than the archive member limit (member=%llu bytes; raise it "
                            "with member=N in --archive-limit or LORATOOL_ARCHIVE_LIMITS)",
                            p->path, lti_show(name).text, (unsigned long long)lim->member_bytes);
        if (stop > size)
            return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': more data than its header declares (%llu bytes)",
                            p->path, lti_show(name).text, (unsigned long long)size);
        if (!lti_add_u64(p->bytes_out, len, &p->bytes_out))
            p->bytes_out = UINT64_MAX;
        uint64_t allowed;
        if (p->bytes_out > LTI_RATIO_GRACE && lti_mul_u64(lim->ratio, p->bytes_read, &allowed) &&
            p->bytes_out > allowed)
            return lti_fail(err, LT_ERR_INVALID,
                            "%s: member '%s': expands more than the archive ratio limit (ratio=%llu: %llu bytes "
                            "out of %llu archive bytes read; raise it with ratio=N in --archive-limit or "
                            "LORATOOL_ARCHIVE_LIMITS)",
                            p->path, lti_show(name).text, (unsigned long long)lim->ratio,
                            (unsigned long long)p->bytes_out, (unsigned long long)p->bytes_read);
        if (fd >= 0 && len > 0) {
            lt_status s = write_at(fd, buf, len, (uint64_t)off, p->owner->path, err);
            if (s != LT_OK)
                return s;
        }
        if (stop > end)
            end = stop;
    }
    if (end != size && !sparse)
        return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': %llu bytes of data where its header declares %llu",
                        p->path, lti_show(name).text, (unsigned long long)end, (unsigned long long)size);
    if (fd >= 0 && sparse && ftruncate(fd, (off_t)size) != 0)
        return lti_fail_errno(err, p->owner->path, "cannot write the spooled member (in $TMPDIR, else /tmp)");
    return LT_OK;
}

/* ---- probe ---- */

static bool starts_with(const unsigned char *head, size_t n, size_t at, const char *magic, size_t len)
{
    return n >= at + len && memcmp(head + at, magic, len) == 0;
}

/* A torch.save zip: "data.pkl" at the root or one folder down. */
static bool is_torch_member(const char *name)
{
    const char *slash = strchr(name, '/');
    return strcmp(name, "data.pkl") == 0 || (slash && slash != name && strcmp(slash + 1, "data.pkl") == 0);
}

lt_status lt_archive_probe(const char *path, bool *is_archive, lt_error *err)
{
    *is_archive = false;
    struct stat st;
    if (stat(path, &st) != 0)
        return lti_fail_errno(err, path, "cannot open");
    if (!S_ISREG(st.st_mode))
        return LT_OK;
    int fd;
    lt_status s = lti_open_regular(path, &fd, &st, err);
    if (s != LT_OK)
        return s;
    unsigned char head[512];
    ssize_t got;
    do
        got = pread(fd, head, sizeof head, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        s = lti_fail_errno(err, path, "read failed");
        close(fd);
        return s;
    }
    size_t n = (size_t)got;
    /* by magic: a damaged archive still is one, so that opening it names
     * the damage */
    bool magic = starts_with(head, n, 0, "PK\3\4", 4) || starts_with(head, n, 0, "PK\5\6", 4) ||
                 starts_with(head, n, 257, "ustar", 5) || starts_with(head, n, 0, "\x1f\x8b", 2) ||
                 starts_with(head, n, 0, "\xfd" "7zXZ\0", 6) || starts_with(head, n, 0, "\x28\xb5\x2f\xfd", 4) ||
                 starts_with(head, n, 0, "BZh", 3);
    lti_pass p;
    s = lti_pass_begin(&p, path, fd, (uint64_t)st.st_size, err);
    if (s == LT_ERR_INVALID) {   /* libarchive recognized nothing */
        *is_archive = magic;
        close(fd);
        return LT_OK;
    }
    if (s != LT_OK) {
        close(fd);
        return s;
    }
    struct archive_entry *e;
    int rc = archive_read_next_header(p.ar, &e);
    if (rc == ARCHIVE_OK || rc == ARCHIVE_EOF) {
        *is_archive = true;
        /* a torch zip is a checkpoint, not an archive of files; its
         * data.pkl comes first, but look further in case */
        bool zip = archive_format(p.ar) == ARCHIVE_FORMAT_ZIP;
        for (unsigned k = 0; zip && rc == ARCHIVE_OK && k < 10000; k++) {
            const char *name = archive_entry_pathname(e);
            if (name && is_torch_member(name)) {
                *is_archive = false;
                break;
            }
            rc = archive_read_next_header(p.ar, &e);
        }
    } else if (p.io_errno) {
        s = lti_pass_fail(&p, NULL, err);
    } else {
        *is_archive = magic || archive_filter_code(p.ar, 0) != ARCHIVE_FILTER_NONE;
    }
    lti_pass_end(&p);
    close(fd);
    return s;
}

/* ---- open: every header once ---- */

static void free_members(lt_archive *a)
{
    for (size_t i = 0; i < a->n_members; i++) {
        free(a->members[i].name);
        if (a->members[i].fd >= 0)
            close(a->members[i].fd);
    }
    free(a->members);
    a->members = NULL;
    a->n_members = a->cap_members = 0;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const lti_member *)x)->name, ((const lti_member *)y)->name);
}

/* Why entry E (named NAME) may not be in an archive loratool reads, or
 * NULL.  WHAT receives the link target where there is one. */
static const char *refusal(struct archive_entry *e, const char **what)
{
    *what = NULL;
    if (archive_entry_hardlink(e)) {
        *what = archive_entry_hardlink(e);
        return "a hard link";
    }
    if (archive_entry_is_encrypted(e))
        return "encrypted";
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
    case AE_IFDIR: return NULL;
    case AE_IFLNK: *what = archive_entry_symlink(e); return "a symbolic link";
    case AE_IFCHR:
    case AE_IFBLK: return "a device";
    case AE_IFIFO: return "a FIFO";
    case AE_IFSOCK: return "a socket";
    default: return "of an unknown file type";
    }
}

/* What the first bytes of an archive libarchive could not read suggest
 * (its own message says "Unrecognized archive format"), or NULL. */
static const char *first_header_hint(const lt_archive *a)
{
    unsigned char h[512];
    ssize_t got = pread(a->fd, h, sizeof h, 0);
    size_t n = got > 0 ? (size_t)got : 0;
    if (starts_with(h, n, 0, "PK\3\4", 4))
        return "a zip without a readable central directory (truncated or damaged)";
    if (starts_with(h, n, 0, "PK\5\6", 4))
        return "an empty or damaged zip";
    if (!starts_with(h, n, 257, "ustar", 5) || n < sizeof h)
        return NULL;
    /* the checksum: the header's bytes summed with its own field as spaces */
    unsigned sum = 0, stored = 0;
    for (size_t i = 0; i < sizeof h; i++)
        sum += i >= 148 && i < 156 ? ' ' : h[i];
    for (size_t i = 148; i < 156 && h[i] >= '0' && h[i] <= '7'; i++)
        stored = stored * 8 + (unsigned)(h[i] - '0');
    return sum != stored ? "the first tar header's checksum is wrong" : NULL;
}

/* Reads every header of the pass into A; DIRS collects the names of
 * directory entries (for the file/folder check). */
static lt_status read_headers(lt_archive *a, lti_pass *p, char ***dirs, size_t *n_dirs, size_t *cap_dirs,
                              lt_error *err)
{
    uint64_t entries = 0;
    char last[200] = "";
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(p->ar, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK) {
            char context[260];
            if (last[0])
                snprintf(context, sizeof context, "the header after member '%s'", last);
            else {
                const char *hint = p->io_errno ? NULL : first_header_hint(a);
                if (hint)
                    return lti_fail(err, LT_ERR_INVALID, "%s: not a readable archive: %s", a->path, hint);
                snprintf(context, sizeof context, "not a readable archive");
            }
            return lti_pass_fail(p, context, err);
        }
        if (entries == 0) {
            int filters = archive_filter_count(p->ar);
            if (filters > 2)
                return lti_fail(err, LT_ERR_INVALID, "%s: compressed more than once (loratool reads one filter)",
                                a->path);
            a->compressed = archive_filter_code(p->ar, 0) != ARCHIVE_FILTER_NONE;
        }
        if (++entries > a->limits.entries)
            return lti_fail(err, LT_ERR_INVALID,
                            "%s: more than %llu entries (the archive entries limit; raise it with entries=N in "
                            "--archive-limit or LORATOOL_ARCHIVE_LIMITS)",
                            a->path, (unsigned long long)a->limits.entries);
        char *name = lti_entry_name(p, e, err);
        if (!name)
            return err ? err->status : LT_ERR_INVALID;
        snprintf(last, sizeof last, "%s", lti_show(name).text);
        const char *target, *why = refusal(e, &target);
        if (why) {
            lt_status s = lti_fail(err, LT_ERR_INVALID, "%s: member '%s' is %s%s%s%s (refused)", a->path,
                                   lti_show(name).text, why, target ? " (to '" : "",
                                   target ? lti_show(target).text : "", target ? "')" : "");
            free(name);
            return s;
        }
        if (archive_entry_filetype(e) == AE_IFDIR) {
            /* a directory's data, if a header claims some, is read
             * through under the limits as well */
            lt_status s = a->compressed ? lti_pass_pump(p, name, UINT64_MAX, true, -1, err) : LT_OK;
            if (s != LT_OK || !name[0]) {
                free(name);
                if (s != LT_OK)
                    return s;
                continue;
            }
            if (!lti_grow((void **)dirs, cap_dirs, *n_dirs + 1, sizeof **dirs)) {
                free(name);
                return lti_fail_nomem(err, a->path);
            }
            (*dirs)[(*n_dirs)++] = name;
            continue;
        }
        if (!name[0]) {
            free(name);
            return lti_fail(err, LT_ERR_INVALID, "%s: a file entry without a name", a->path);
        }
        if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0) {
            lt_status s = lti_fail(err, LT_ERR_INVALID, "%s: member '%s': its size is not recorded", a->path,
                                   lti_show(name).text);
            free(name);
            return s;
        }
        uint64_t size = (uint64_t)archive_entry_size(e);
        if (size > a->limits.member_bytes) {
            lt_status s = lti_fail(err, LT_ERR_INVALID,
                                   "%s: member '%s': %llu bytes, larger than the archive member limit (member=%llu "
                                   "bytes; raise it with member=N in --archive-limit or LORATOOL_ARCHIVE_LIMITS)",
                                   a->path, lti_show(name).text, (unsigned long long)size,
                                   (unsigned long long)a->limits.member_bytes);
            free(name);
            return s;
        }
        if (!lti_grow((void **)&a->members, &a->cap_members, a->n_members + 1, sizeof *a->members)) {
            free(name);
            return lti_fail_nomem(err, a->path);
        }
        bool sparse = archive_entry_sparse_count(e) > 0;
        a->members[a->n_members++] = (lti_member){name, size, entries - 1, sparse, -1};
        /* a compressed stream is decompressed to reach the next header:
         * do it here, under the limits, rather than inside libarchive */
        if (a->compressed) {
            lt_status s = lti_pass_pump(p, name, size, sparse, -1, err);
            if (s != LT_OK)
                return s;
        }
    }
    if (archive_read_has_encrypted_entries(p->ar) > 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: encrypted entries (refused)", a->path);
    return LT_OK;
}

/* Duplicate files, and a name that is a file and a folder ("a" and
 * "a/b", or a directory entry "a"). */
static lt_status check_names(lt_archive *a, char **dirs, size_t n_dirs, lt_error *err)
{
    if (a->n_members > 1)
        qsort(a->members, a->n_members, sizeof *a->members, by_name);
    for (size_t i = 1; i < a->n_members; i++)
        if (strcmp(a->members[i - 1].name, a->members[i].name) == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: member '%s' appears twice (refused)", a->path,
                            lti_show(a->members[i].name).text);
    lti_strmap files = {0};
    lt_status s = LT_OK;
    for (size_t i = 0; i < a->n_members && s == LT_OK; i++)
        if (lti_strmap_put(&files, a->members[i].name, (long)i) < 0)
            s = lti_fail_nomem(err, a->path);
    for (size_t k = 0; k < a->n_members + n_dirs && s == LT_OK; k++) {
        const char *name = k < a->n_members ? a->members[k].name : dirs[k - a->n_members];
        char prefix[PATH_MAX];
        if (k >= a->n_members && lti_strmap_get(&files, name) >= 0) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: member '%s' is both a file and a folder (refused)", a->path,
                         lti_show(name).text);
            break;
        }
        for (const char *slash = strchr(name, '/'); slash && s == LT_OK; slash = strchr(slash + 1, '/')) {
            size_t len = (size_t)(slash - name);
            if (len >= sizeof prefix)
                break;
            memcpy(prefix, name, len);
            prefix[len] = '\0';
            if (lti_strmap_get(&files, prefix) >= 0)
                s = lti_fail(err, LT_ERR_INVALID, "%s: member '%s' is both a file and a folder ('%s') (refused)",
                             a->path, lti_show(prefix).text, lti_show(name).text);
        }
    }
    lti_strmap_free(&files);
    return s;
}

lt_archive *lt_archive_open(const char *path, const lt_archive_limits *limits, lt_error *err)
{
    lt_archive *a = calloc(1, sizeof *a);
    if (!a) {
        lti_fail_nomem(err, path);
        return NULL;
    }
    a->fd = -1;
    if (limits)
        a->limits = *limits;
    else
        lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &a->limits);
    a->path = lti_strdup(path);
    if (!a->path) {
        lti_fail_nomem(err, path);
        lt_archive_close(a);
        return NULL;
    }
    struct stat st;
    lt_status s = lti_open_regular(path, &a->fd, &st, err);
    if (s != LT_OK) {
        lt_archive_close(a);
        return NULL;
    }
    a->file_size = (uint64_t)st.st_size;
    lti_pass p;
    s = lti_pass_begin(&p, a->path, a->fd, a->file_size, err);
    if (s == LT_ERR_INVALID && first_header_hint(a))
        s = lti_fail(err, LT_ERR_INVALID, "%s: not a readable archive: %s", a->path, first_header_hint(a));
    char **dirs = NULL;
    size_t n_dirs = 0, cap_dirs = 0;
    if (s == LT_OK) {
        p.owner = a;
        s = read_headers(a, &p, &dirs, &n_dirs, &cap_dirs, err);
        lti_pass_end(&p);
    }
    if (s == LT_OK)
        s = check_names(a, dirs, n_dirs, err);
    for (size_t i = 0; i < n_dirs; i++)
        free(dirs[i]);
    free(dirs);
    if (s != LT_OK) {
        lt_archive_close(a);
        return NULL;
    }
    return a;
}

size_t lt_archive_member_count(const lt_archive *a)
{
    return a->n_members;
}

const char *lt_archive_member_name(const lt_archive *a, size_t i)
{
    return i < a->n_members ? a->members[i].name : NULL;
}

uint64_t lt_archive_member_size(const lt_archive *a, size_t i)
{
    return i < a->n_members ? a->members[i].size : 0;
}

void lt_archive_close(lt_archive *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_views; i++) {
        if (a->views[i].dir)
            lti_remove_flat_dir(a->views[i].dir);
        free(a->views[i].folder);
        free(a->views[i].dir);
        free(a->views[i].result);
    }
    free(a->views);
    free_members(a);
    if (a->fd >= 0)
        close(a->fd);
    free(a->path);
    free(a);
}
