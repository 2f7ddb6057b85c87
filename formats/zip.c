/* zip.c - the ZIP container of a torch.save file, parsed from its end:
 * End Of Central Directory (searched in the last 64 KiB + 22 bytes), the
 * ZIP64 locator and record when a field is saturated, the central
 * directory, then each member's local header for where its data starts.
 * Every size and offset is checked against the file. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "torch.h"
/* ------------------------------------------------------------------ */
/* ZIP                                                                  */
/* ------------------------------------------------------------------ */

void lti_zip_free(zip_archive *z)
{
    for (size_t i = 0; i < z->n_members; i++)
        free(z->members[i].name);
    free(z->members);
    lti_strmap_free(&z->by_name);
    memset(z, 0, sizeof *z);
}

static lt_status zip_find_eocd(const lti_rfile *f, uint64_t *eocd_at, unsigned char eocd[EOCD_SIZE],
                               lt_error *err)
{
    if (f->size < EOCD_SIZE)
        return lti_fail(err, LT_ERR_INVALID, "%s: too small to be a ZIP archive (%" PRIu64 " bytes)",
                       f->path, f->size);
    size_t tail_len = f->size < EOCD_SEARCH ? (size_t)f->size : EOCD_SEARCH;
    uint64_t tail_at = f->size - tail_len;
    unsigned char *tail = malloc(tail_len);
    if (!tail)
        return lti_fail_nomem(err, f->path);
    lt_status s = lti_rfile_pread(f, tail_at, tail, tail_len, err);
    if (s != LT_OK) {
        free(tail);
        return s;
    }
    for (size_t i = tail_len - EOCD_SIZE + 1; i-- > 0;) {
        if (memcmp(tail + i, "PK\x05\x06", 4) == 0 && i + EOCD_SIZE + le16(tail + i + 20) <= tail_len) {
            memcpy(eocd, tail + i, EOCD_SIZE);
            *eocd_at = tail_at + i;
            free(tail);
            return LT_OK;
        }
    }
    free(tail);
    return lti_fail(err, LT_ERR_INVALID, "%s: not a ZIP archive (no end of central directory record)",
                   f->path);
}

/* Where a member's data starts: after its local header, name and extra. */
lt_status lti_zip_resolve(zip_archive *z, zip_member *m, lt_error *err)
{
    if (m->resolved)
        return LT_OK;
    const lti_rfile *f = z->file;
    unsigned char lh[30];
    uint64_t end;
    if (!lti_add_u64(m->header_offset, sizeof lh, &end) || end > f->size)
        return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': local header offset %" PRIu64
                       " is outside the file", f->path, lti_show(m->name).text, m->header_offset);
    lt_status s = lti_rfile_pread(f, m->header_offset, lh, sizeof lh, err);
    if (s != LT_OK)
        return s;
    if (memcmp(lh, "PK\x03\x04", 4) != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': no local file header at offset %" PRIu64,
                       f->path, lti_show(m->name).text, m->header_offset);
    uint64_t data, data_end;
    if (!lti_add_u64(end, (uint64_t)le16(lh + 26) + le16(lh + 28), &data) ||
        !lti_add_u64(data, m->csize, &data_end) || data_end > f->size)
        return lti_fail(err, LT_ERR_INVALID, "%s: member '%s': data (%" PRIu64 " bytes) runs past the "
                       "end of the file", f->path, lti_show(m->name).text, m->csize);
    m->data_offset = data;
    m->resolved = true;
    return LT_OK;
}

static lt_status zip_parse_entry(zip_archive *z, const unsigned char *p, size_t avail, size_t *used,
                                 lt_error *err)
{
    const char *path = z->file->path;
    if (avail < 46 || memcmp(p, "PK\x01\x02", 4) != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu is damaged", path,
                       z->n_members);
    size_t name_len = le16(p + 28), extra_len = le16(p + 30), comment_len = le16(p + 32);
    size_t total = 46 + name_len + extra_len + comment_len;
    if (total > avail)
        return lti_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu runs past the directory",
                       path, z->n_members);
    zip_member m = {0};
    m.flags = le16(p + 8);
    m.method = le16(p + 10);
    m.csize = le32(p + 20);
    m.usize = le32(p + 24);
    m.header_offset = le32(p + 42);
    uint32_t disk = le16(p + 34);
    /* ZIP64 extended information: only the saturated fields, in order */
    const unsigned char *x = p + 46 + name_len, *x_end = x + extra_len;
    while (x_end - x >= 4) {
        uint32_t id = le16(x), len = le16(x + 2);
        if ((size_t)(x_end - x - 4) < len)
            break;
        if (id == 0x0001) {
            const unsigned char *q = x + 4, *q_end = q + len;
            uint64_t *fields[3] = {&m.usize, &m.csize, &m.header_offset};
            for (int k = 0; k < 3; k++) {
                if (*fields[k] != 0xFFFFFFFFu)
                    continue;
                if (q_end - q < 8)
                    return lti_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu: short ZIP64 "
                                   "extra field", path, z->n_members);
                *fields[k] = le64(q);
                q += 8;
            }
            if (disk == 0xFFFF && q_end - q >= 4)
                disk = le32(q);
        }
        x += 4 + len;
    }
    if (disk != 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", path);
    m.name = lti_strndup((const char *)p + 46, name_len);
    if (!m.name)
        return lti_fail_nomem(err, path);
    if (strlen(m.name) != name_len) {
        free(m.name);
        return lti_fail(err, LT_ERR_INVALID, "%s: a member name contains a NUL byte", path);
    }
    if (!lti_grow((void **)&z->members, &z->cap_members, z->n_members + 1, sizeof m)) {
        free(m.name);
        return lti_fail_nomem(err, path);
    }
    z->members[z->n_members] = m;
    int put = lti_strmap_put(&z->by_name, z->members[z->n_members].name, (long)z->n_members);
    z->n_members++;
    if (put < 0)
        return lti_fail_nomem(err, path);
    if (put == 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: member '%s' appears twice", path, lti_show(m.name).text);
    *used = total;
    return LT_OK;
}

lt_status lti_zip_open(zip_archive *z, const lti_rfile *f, lt_error *err)
{
    memset(z, 0, sizeof *z);
    z->file = f;
    unsigned char eocd[EOCD_SIZE] = {0};
    uint64_t eocd_at = 0;
    lt_status s = zip_find_eocd(f, &eocd_at, eocd, err);
    if (s != LT_OK)
        return s;
    uint64_t disk = le16(eocd + 4), cd_disk = le16(eocd + 6);
    uint64_t n_entries = le16(eocd + 10), cd_size = le32(eocd + 12), cd_offset = le32(eocd + 16);
    if (le16(eocd + 8) == 0xFFFF || n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu ||
        cd_offset == 0xFFFFFFFFu) {
        unsigned char loc[20], rec[56];
        if (eocd_at < sizeof loc)
            return lti_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory locator missing", f->path);
        if ((s = lti_rfile_pread(f, eocd_at - sizeof loc, loc, sizeof loc, err)) != LT_OK)
            return s;
        if (memcmp(loc, "PK\x06\x07", 4) != 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory locator missing", f->path);
        uint64_t rec_at = le64(loc + 8), rec_end;
        if (!lti_add_u64(rec_at, sizeof rec, &rec_end) || rec_end > f->size)
            return lti_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory record is outside the "
                           "file (offset %" PRIu64 ")", f->path, rec_at);
        if ((s = lti_rfile_pread(f, rec_at, rec, sizeof rec, err)) != LT_OK)
            return s;
        if (memcmp(rec, "PK\x06\x06", 4) != 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory record is damaged", f->path);
        disk = le32(rec + 16);
        cd_disk = le32(rec + 20);
        n_entries = le64(rec + 32);
        cd_size = le64(rec + 40);
        cd_offset = le64(rec + 48);
    }
    if (disk != 0 || cd_disk != 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", f->path);
    uint64_t cd_end;
    if (!lti_add_u64(cd_offset, cd_size, &cd_end) || cd_end > f->size)
        return lti_fail(err, LT_ERR_INVALID, "%s: central directory (offset %" PRIu64 ", %" PRIu64
                       " bytes) is outside the file", f->path, cd_offset, cd_size);
    if (cd_size > CD_MAX_BYTES)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: central directory of %" PRIu64 " bytes is too large",
                       f->path, cd_size);
    if (n_entries > cd_size / 46)
        return lti_fail(err, LT_ERR_INVALID, "%s: %" PRIu64 " members cannot fit a central directory of %"
                       PRIu64 " bytes", f->path, n_entries, cd_size);
    unsigned char *cd = malloc(cd_size ? (size_t)cd_size : 1);
    if (!cd)
        return lti_fail_nomem(err, f->path);
    s = lti_rfile_pread(f, cd_offset, cd, (size_t)cd_size, err);
    size_t at = 0;
    for (uint64_t i = 0; i < n_entries && s == LT_OK; i++) {
        size_t used = 0;
        s = zip_parse_entry(z, cd + at, (size_t)cd_size - at, &used, err);
        at += used;
    }
    free(cd);
    return s;
}

zip_member *lti_zip_find(zip_archive *z, const char *name)
{
    long i = lti_strmap_get(&z->by_name, name);
    return i >= 0 ? &z->members[i] : NULL;
}

/* A small member's bytes (stored or deflated), malloc'd, NUL-terminated. */
lt_status lti_zip_read_small(zip_archive *z, zip_member *m, size_t max, unsigned char **out,
                                size_t *out_len, lt_error *err)
{
    const char *path = z->file->path;
    *out = NULL;
    lt_status s = lti_zip_resolve(z, m, err);
    if (s != LT_OK)
        return s;
    if (m->flags & 1u)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' is encrypted", path, lti_show(m->name).text);
    if (m->method != 0 && m->method != 8)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' uses compression method %u", path,
                       lti_show(m->name).text, m->method);
    if (m->usize > max || (m->method == 0 && m->csize > max))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' is too large (%" PRIu64 " bytes, at most %zu)",
                       path, lti_show(m->name).text, m->usize, max);
    if (m->method == 0 && m->csize != m->usize)
        return lti_fail(err, LT_ERR_INVALID, "%s: stored member '%s' has different sizes %" PRIu64 " and %" PRIu64,
                       path, lti_show(m->name).text, m->csize, m->usize);
    unsigned char *buf = malloc((size_t)m->usize + 1);
    if (!buf)
        return lti_fail_nomem(err, path);
    if (m->method == 0) {
        s = lti_rfile_pread(z->file, m->data_offset, buf, (size_t)m->usize, err);
    } else {
        /* deflated: read the compressed bytes in chunks, inflate raw */
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
            free(buf);
            return lti_fail_nomem(err, path);
        }
        unsigned char chunk[65536];
        uint64_t done = 0;
        int zr = Z_OK;
        zs.next_out = buf;
        zs.avail_out = (uInt)m->usize;
        while (s == LT_OK && zr != Z_STREAM_END && done < m->csize) {
            size_t n = m->csize - done < sizeof chunk ? (size_t)(m->csize - done) : sizeof chunk;
            s = lti_rfile_pread(z->file, m->data_offset + done, chunk, n, err);
            if (s != LT_OK)
                break;
            done += n;
            zs.next_in = chunk;
            zs.avail_in = (uInt)n;
            while (zs.avail_in > 0 && zr == Z_OK) {
                uInt before_in = zs.avail_in, before_out = zs.avail_out;
                zr = inflate(&zs, Z_NO_FLUSH);
                if (zr == Z_BUF_ERROR || (zr == Z_OK && zs.avail_in == before_in && zs.avail_out == before_out))
                    zr = Z_DATA_ERROR; /* no progress: output full or stream bad */
            }
            if (zr != Z_OK && zr != Z_STREAM_END)
                break;
        }
        uint64_t produced = zs.total_out;
        inflateEnd(&zs);
        if (s == LT_OK && (zr != Z_STREAM_END || produced != m->usize))
            s = lti_fail(err, LT_ERR_INVALID, "%s: member '%s': deflate data is damaged or does not "
                        "inflate to its declared %" PRIu64 " bytes", path, lti_show(m->name).text, m->usize);
    }
    if (s != LT_OK) {
        free(buf);
        return s;
    }
    buf[m->usize] = '\0';
    *out = buf;
    if (out_len)
        *out_len = (size_t)m->usize;
    return LT_OK;
}

