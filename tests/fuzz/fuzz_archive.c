/*
 * fuzz_archive.c - archives through libarchive (lib/archive_read.c,
 * archive_spool.c): the input written as a file, probed, opened under
 * small limits, and every folder it names extracted.
 *
 * Promises checked besides the error promise (fuzz_common.h):
 *   - member names are sorted, unique, normalized (no leading '/', no
 *     empty, "." or ".." component, no trailing '/');
 *   - an extracted folder's view holds one link per file directly in it,
 *     each resolving to a file of exactly the member's size; a single
 *     file's link likewise;
 *   - closing leaves nothing in $TMPDIR (here the scratch directory).
 */
#include <dirent.h>

#include "fuzz_common.h"

static void check_name(const char *name)
{
    FUZZ_ASSERT(name && name[0] && name[0] != '/');
    for (const char *c = name; *c;) {
        size_t len = strcspn(c, "/");
        FUZZ_ASSERT(len > 0);
        FUZZ_ASSERT(!(len == 1 && c[0] == '.') && !(len == 2 && c[0] == '.' && c[1] == '.'));
        c += len;
        if (*c == '/') {
            c++;
            FUZZ_ASSERT(*c);
        }
    }
}

/* The view of FOLDER ("" root) must show the files directly in it. */
static void check_view(const lt_archive *a, const char *folder, const char *view)
{
    size_t plen = strlen(folder), expected = 0;
    for (size_t i = 0; i < lt_archive_member_count(a); i++) {
        const char *name = lt_archive_member_name(a, i);
        if (plen && (strncmp(name, folder, plen) != 0 || name[plen] != '/'))
            continue;
        const char *rest = name + plen + (plen ? 1 : 0);
        if (strchr(rest, '/'))
            continue;
        expected++;
        char path[4096];
        FUZZ_ASSERT((size_t)snprintf(path, sizeof path, "%s/%s", view, rest) < sizeof path);
        struct stat st;
        FUZZ_ASSERT(stat(path, &st) == 0 && S_ISREG(st.st_mode));
        FUZZ_ASSERT((uint64_t)st.st_size == lt_archive_member_size(a, i));
    }
    size_t n = 0;
    DIR *d = opendir(view);
    FUZZ_ASSERT(d != NULL);
    const struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    FUZZ_ASSERT(n == expected);
}

static void extract_and_check(lt_archive *a, const char *folder)
{
    lt_error err;
    fuzz_error_reset(&err);
    const char *view = lt_archive_extract(a, folder, &err);
    if (!view) {
        fuzz_check_error(&err);
        return;
    }
    fuzz_note_ok("extracted");
    struct stat st;
    FUZZ_ASSERT(lstat(view, &st) == 0);
    if (S_ISDIR(st.st_mode)) {
        FUZZ_ASSERT((st.st_mode & 0777) == 0700);
        check_view(a, folder, view);
    } else {
        FUZZ_ASSERT(S_ISLNK(st.st_mode) && stat(view, &st) == 0 && S_ISREG(st.st_mode));
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    /* spooled files and views go to the scratch directory, checked empty
     * after each input */
    static char tmp[128];
    if (!tmp[0]) {
        fuzz_path(tmp, sizeof tmp, "tmp");
        fuzz_mkdir(tmp);
        setenv("TMPDIR", tmp, 1);
    }
    const char *path = fuzz_input_file("input.archive", data, size);
    lt_error err;
    fuzz_error_reset(&err);
    bool is_archive = false;
    if (lt_archive_probe(path, &is_archive, &err) != LT_OK)
        fuzz_check_error(&err);
    lt_archive_limits lim;
    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    lim.member_bytes = 16u << 20;   /* a fuzzed header must not make us spool gigabytes */
    lim.entries = 1000;
    fuzz_error_reset(&err);
    lt_archive *a = lt_archive_open(path, &lim, &err);
    if (!a) {
        fuzz_check_error(&err);
        return 0;
    }
    fuzz_note_ok("archive opened");
    size_t n = lt_archive_member_count(a);
    for (size_t i = 0; i < n; i++) {
        check_name(lt_archive_member_name(a, i));
        if (i > 0)
            FUZZ_ASSERT(strcmp(lt_archive_member_name(a, i - 1), lt_archive_member_name(a, i)) < 0);
    }
    extract_and_check(a, "");
    if (n > 0) {
        /* the first member's folder, and the last member alone */
        char folder[4096];
        snprintf(folder, sizeof folder, "%s", lt_archive_member_name(a, 0));
        char *slash = strrchr(folder, '/');
        if (slash) {
            *slash = '\0';
            extract_and_check(a, folder);
        }
        extract_and_check(a, lt_archive_member_name(a, n - 1));
    }
    lt_archive_close(a);
    DIR *d = opendir(tmp);
    FUZZ_ASSERT(d != NULL);
    const struct dirent *e;
    while ((e = readdir(d)))
        FUZZ_ASSERT(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
    closedir(d);
    return 0;
}
