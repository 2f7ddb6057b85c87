/*
 * archive_internal.h - what the archive reader's two halves share
 * (lib/archive_read.c: limits, probe, headers; lib/archive_spool.c:
 * spooling members and the private directories of links): the handle, and
 * a libarchive reader over the archive's descriptor that counts the bytes
 * it reads (the ratio limit's denominator).
 */
#ifndef LT_ARCHIVE_INTERNAL_H
#define LT_ARCHIVE_INTERNAL_H

#include <archive.h>
#include <archive_entry.h>
#include <locale.h>

#include "core.h"

/* What lt_archive_extract names its private directories:
 * "<tmp>/" LTI_VIEW_PREFIX "XXXXXX"; lt_archive_remove_view touches no other. */
#define LTI_VIEW_PREFIX "loratool-archive-"

/* The ratio limit applies once a pass has produced this much: a small
 * file of zeros may compress beyond any ratio, and costs nothing. */
#define LTI_RATIO_GRACE ((uint64_t)1 << 20)

typedef struct lti_member {
    char *name;        /* normalized                                     */
    uint64_t size;     /* uncompressed, as the header declares           */
    uint64_t header;   /* position among all entries of the archive      */
    bool sparse;       /* a tar sparse file: its data has holes          */
    int fd;            /* the spooled copy, or -1                        */
} lti_member;

typedef struct lti_view {
    char *folder;      /* as asked, normalized                           */
    char *dir;         /* the private directory                          */
    char *result;      /* dir, or dir/<name> for a single file           */
} lti_view;

struct lt_archive {
    char *path;
    int fd;
    uint64_t file_size;
    lt_archive_limits limits;
    bool compressed;   /* a filter (gzip, ...) over the format: skipping
                          a member means decompressing it               */
    lti_member *members;   /* sorted by name */
    size_t n_members, cap_members;
    lti_view *views;
    size_t n_views, cap_views;
};

/* One pass of libarchive over the archive's descriptor. */
typedef struct lti_pass {
    struct archive *ar;
    const lt_archive *owner;   /* limits and path (NULL while probing)  */
    const char *path;
    int fd;
    uint64_t size, pos;
    uint64_t bytes_read;       /* archive bytes read by this pass        */
    uint64_t bytes_out;        /* member bytes decompressed by this pass */
    int io_errno;              /* a read that failed, or 0               */
    unsigned char *buf;
    locale_t utf8, saved;      /* this thread's locale during the pass   */
} lti_pass;

/* Start a pass over FD (SIZE bytes) with exactly the formats and filters
 * loratool reads; the first header is not read yet.  Until lti_pass_end,
 * the calling thread's locale is C.UTF-8 (uselocale: this thread only),
 * so that libarchive hands out UTF-8 names as they are rather than failing
 * to convert them to the process's "C" locale. */
lt_status lti_pass_begin(lti_pass *p, const char *path, int fd, uint64_t size, lt_error *err);
void lti_pass_end(lti_pass *p);
/* The failure of a libarchive call as a status: LT_ERR_IO when our read
 * failed, LT_ERR_NOMEM, else LT_ERR_INVALID "<path>: [<context>: ]<why>". */
lt_status lti_pass_fail(lti_pass *p, const char *context, lt_error *err);
/* The member name of entry E normalized: no "./" or empty components, no
 * trailing "/".  NULL with err set (LT_ERR_INVALID, naming the entry) for
 * an absolute name, a ".." component, a component longer than NAME_MAX or
 * an unreadable name; "" for the root directory itself. */
char *lti_entry_name(lti_pass *p, struct archive_entry *e, lt_error *err);
/* Normalize a name the same way (NULL: a ".." component, or no memory;
 * *bad tells which). */
char *lti_normalize_name(const char *raw, bool *bad);
/* Read the data of the current entry of the pass (member NAME of declared
 * SIZE) under the archive's limits, writing it at its offsets into FD, or
 * discarding it when FD < 0. */
lt_status lti_pass_pump(lti_pass *p, const char *name, uint64_t size, bool sparse, int fd, lt_error *err);

#endif
