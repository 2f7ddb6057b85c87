/*
 * test_archive.c - archives (lib/archive_read.c, archive_spool.c,
 * archive_write.c; spec/archives.md) on the archives that
 * testdata/make_archives.py made with peers (Python's zipfile/tarfile, GNU
 * tar with gzip/xz/zstd/bzip2, Info-ZIP zip): probing, member lists,
 * extraction compared with the source files, every refusal, the limits,
 * and archives written by loratool read back by loratool and by the peers.
 *
 *   test_archive REF/archive     (the archives are in REF/archives)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "loratool.h"

static char arch[2048];   /* REF/archives */
static char scratch[256];

static const char *const SRC_FILES[] = {"adapter_config.json", "adapter_model.safetensors"};

static bool same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_file(a, &na), *y = read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static bool is_dir(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    const struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

/* The folders of a layout that hold the adapter's two files. */
static int layout_folders(const char *file, const char **folders)
{
    if (!strncmp(file, "root-", 5) || !strncmp(file, "empty", 5))
        return folders[0] = "", 1;
    if (!strncmp(file, "folder-", 7))
        return folders[0] = "run", 1;
    if (!strncmp(file, "two-", 4))
        return folders[0] = "a", folders[1] = "b", 2;
    if (!strncmp(file, "deep-", 5))
        return folders[0] = "x/ckpt-500", 1;
    return 0;
}

typedef void (*each_fn)(const char *path, const char *name);
static void each_good(each_fn fn)
{
    struct dirent **names;
    int n = scandir(fmt("%s/good", arch), &names, NULL, alphasort);
    CHECK_MSG(n > 40, "only %d good archives in %s/good", n, arch);
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.')
            fn(fmt("%s/good/%s", arch, names[i]->d_name), names[i]->d_name);
        free(names[i]);
    }
    free(n >= 0 ? names : NULL);
}

/* ---- probe ---- */

static void probe_good(const char *path, const char *name)
{
    lt_error err;
    bool is = false;
    CHECK_MSG(lt_archive_probe(path, &is, &err) == LT_OK && is, "%s", name);
}

static void test_probe(void)
{
    each_good(probe_good);
    lt_error err;
    bool is = true;
    CHECK(lt_archive_probe(fmt("%s/torch.zip", arch), &is, &err) == LT_OK && !is);
    is = true;
    CHECK(lt_archive_probe(fmt("%s/src/adapter_model.safetensors", arch), &is, &err) == LT_OK && !is);
    is = true;
    CHECK(lt_archive_probe(fmt("%s/src/adapter_config.json", arch), &is, &err) == LT_OK && !is);
    is = true;
    CHECK(lt_archive_probe(fmt("%s/src", arch), &is, &err) == LT_OK && !is);   /* a directory */
    CHECK(lt_archive_probe(fmt("%s/no-such.zip", arch), &is, &err) == LT_ERR_IO && !is);
    CHECK(strstr(err.message, "no-such.zip") != NULL);
    /* damaged archives still are archives: opening them says what is wrong */
    static const char *const damaged[] = {"badsum-first.tar", "truncated.zip", "truncated.tar.gz", "not-tar.gz",
                                          "empty.zip", "bomb.tar.zst", "encrypted.zip"};
    for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
        is = false;
        CHECK_MSG(lt_archive_probe(fmt("%s/hostile/%s", arch, damaged[i]), &is, &err) == LT_OK && is, "%s",
                  damaged[i]);
    }
}

/* ---- members ---- */

static void members_good(const char *path, const char *name)
{
    lt_error err;
    lt_archive *a = lt_archive_open(path, NULL, &err);
    CHECK_MSG(a != NULL, "%s: %s", name, err.message);
    if (!a)
        return;
    const char *folders[2];
    int nf = layout_folders(name, folders);
    size_t want = !strncmp(name, "empty", 5) ? 0 : !strncmp(name, "unicode", 7) ? 1 : 2 * (size_t)nf;
    if (!strncmp(name, "deep-", 5))
        want++;
    CHECK_MSG(lt_archive_member_count(a) == want, "%s: %zu members", name, lt_archive_member_count(a));
    for (size_t i = 1; i < lt_archive_member_count(a); i++)
        CHECK(strcmp(lt_archive_member_name(a, i - 1), lt_archive_member_name(a, i)) < 0);
    for (int f = 0; f < nf && want; f++)
        for (size_t k = 0; k < 2; k++) {
            const char *member = folders[f][0] ? fmt("%s/%s", folders[f], SRC_FILES[k]) : SRC_FILES[k];
            bool found = false;
            for (size_t i = 0; i < lt_archive_member_count(a); i++)
                if (!strcmp(lt_archive_member_name(a, i), member)) {
                    struct stat st;
                    stat(fmt("%s/src/%s", arch, SRC_FILES[k]), &st);
                    CHECK_EQ_U64(lt_archive_member_size(a, i), st.st_size);
                    found = true;
                }
            CHECK_MSG(found, "%s: no member %s", name, member);
        }
    CHECK(lt_archive_member_name(a, lt_archive_member_count(a)) == NULL);
    lt_archive_close(a);
}

static void test_members(void)
{
    each_good(members_good);
    lt_error err;
    lt_archive *a = lt_archive_open(fmt("%s/good/unicode.tar", arch), NULL, &err);
    CHECK(a && lt_archive_member_count(a) == 1);
    if (a)
        CHECK_STR(lt_archive_member_name(a, 0), "caf\xc3\xa9/adapter_config.json");
    lt_archive_close(a);
    lt_archive_close(NULL);
}

/* ---- extract ---- */

/* FOLDER's view holds exactly the adapter's two files, links, each with
 * the source's bytes, in a private directory. */
static void check_view(const char *view, const char *name)
{
    struct stat st;
    CHECK_MSG(lstat(view, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "%s: view %s", name,
              view);
    CHECK_MSG(count_entries(view) == 2, "%s: %zu entries in the view", name, count_entries(view));
    for (size_t k = 0; k < 2; k++) {
        const char *link = fmt("%s/%s", view, SRC_FILES[k]);
        char target[256] = "", spool[512] = "";
        ssize_t n = readlink(link, target, sizeof target - 1);
        CHECK_MSG(n > 0 && !strncmp(target, "/proc/self/fd/", 14), "%s: %s", name, link);
        /* the spooled file is on disk and nameless */
        n = n > 0 ? readlink(target, spool, sizeof spool - 1) : -1;
        CHECK_MSG(n > 0 && strstr(spool, "(deleted)") && strncmp(spool, "/memfd:", 7) != 0, "%s: spool %s", name,
                  spool);
        CHECK_MSG(same_bytes(link, fmt("%s/src/%s", arch, SRC_FILES[k])), "%s: %s differs", name, SRC_FILES[k]);
    }
}

static void extract_good(const char *path, const char *name)
{
    if (!strncmp(name, "empty", 5) || !strncmp(name, "unicode", 7))
        return;
    lt_error err;
    lt_archive *a = lt_archive_open(path, NULL, &err);
    CHECK_MSG(a != NULL, "%s: %s", name, err.message);
    if (!a)
        return;
    const char *folders[2];
    int nf = layout_folders(name, folders);
    const char *views[2] = {NULL, NULL};
    for (int f = 0; f < nf; f++) {
        views[f] = lt_archive_extract(a, folders[f], &err);
        CHECK_MSG(views[f] != NULL, "%s#%s: %s", name, folders[f], views[f] ? "" : err.message);
        if (views[f])
            check_view(views[f], name);
    }
    /* the same folder again: the same view; "./x/" is "x" */
    if (views[0]) {
        CHECK(lt_archive_extract(a, folders[0], &err) == views[0]);
        CHECK(lt_archive_extract(a, fmt("./%s/", folders[0]), &err) == views[0]);
    }
    /* one file: its link alone */
    const char *member = folders[0][0] ? fmt("%s/adapter_config.json", folders[0]) : "adapter_config.json";
    const char *one = lt_archive_extract(a, member, &err);
    CHECK_MSG(one != NULL, "%s#%s", name, member);
    if (one) {
        CHECK(same_bytes(one, fmt("%s/src/adapter_config.json", arch)));
        char *copy = strdup(one);
        CHECK(count_entries(dirname(copy)) == 1);
        free(copy);
        CHECK(strcmp(strrchr(one, '/'), "/adapter_config.json") == 0);
    }
    /* a layout's parent folder: only the files directly in it */
    if (!strncmp(name, "deep-", 5)) {
        const char *x = lt_archive_extract(a, "x", &err);
        CHECK(x && count_entries(x) == 1 && exists(fmt("%s/other.txt", x)));
        const char *root = lt_archive_extract(a, "", &err);
        CHECK(root && count_entries(root) == 0);
    }
    lt_archive_close(a);
    for (int f = 0; f < nf; f++)
        CHECK_MSG(!views[f] || !exists(views[f]), "%s: view left after close", name);
}

static void test_extract(void)
{
    each_good(extract_good);
}

static void test_extract_errors(void)
{
    lt_error err;
    lt_archive *a = lt_archive_open(fmt("%s/good/two-gnu.tar.xz", arch), NULL, &err);
    CHECK(a != NULL);
    if (!a)
        return;
    CHECK(lt_archive_extract(a, "c", &err) == NULL && err.status == LT_ERR_IO);
    CHECK(strstr(err.message, "two-gnu.tar.xz#c") && strstr(err.message, "no such file or folder"));
    CHECK(lt_archive_extract(a, "a/../b", &err) == NULL && err.status == LT_ERR_USAGE);
    CHECK(lt_archive_extract(a, "a/adapter_config.json/x", &err) == NULL && err.status == LT_ERR_IO);
    /* the root holds no file here: an empty view */
    const char *root = lt_archive_extract(a, "", &err);
    CHECK(root && count_entries(root) == 0);
    lt_archive_close(a);
}

/* $TMPDIR holds the spooled files and the views */
static void test_tmpdir(void)
{
    const char *dir = fmt("%s/tmpdir", scratch);
    mkdir(dir, 0700);
    char *old = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;
    setenv("TMPDIR", dir, 1);
    lt_error err;
    lt_archive *a = lt_archive_open(fmt("%s/good/folder-gnu.tar.gz", arch), NULL, &err);
    const char *view = a ? lt_archive_extract(a, "run", &err) : NULL;
    CHECK(view && !strncmp(view, dir, strlen(dir)));
    if (view) {
        char target[64] = "", spool[4096] = "";
        CHECK(readlink(fmt("%s/adapter_config.json", view), target, sizeof target - 1) > 0);
        CHECK(readlink(target, spool, sizeof spool - 1) > 0);
        CHECK_MSG(!strncmp(spool, dir, strlen(dir)), "spooled at %s", spool);
    }
    lt_archive_close(a);
    CHECK(count_entries(dir) == 0);
    if (old)
        setenv("TMPDIR", old, 1);
    else
        unsetenv("TMPDIR");
    free(old);
}

/* tar sparse files: the holes read as zeros, the data where it was */
static void test_sparse(void)
{
    static const char *const files[] = {"gnu.tar", "pax.tar", "gnu.tar.gz"};
    for (size_t i = 0; i < 3; i++) {
        lt_error err;
        lt_archive *a = lt_archive_open(fmt("%s/sparse/%s", arch, files[i]), NULL, &err);
        CHECK_MSG(a && lt_archive_member_count(a) == 1 && lt_archive_member_size(a, 0) == 5u << 20, "%s: %s",
                  files[i], a ? "" : err.message);
        const char *one = a ? lt_archive_extract(a, "sparse.bin", &err) : NULL;
        size_t n = 0;
        unsigned char *data = one ? read_file(one, &n) : NULL;
        CHECK_MSG(data && n == 5u << 20, "%s", files[i]);
        if (data && n == 5u << 20) {
            unsigned char *want = calloc(n, 1);
            memcpy(want, "head", 4);
            memcpy(want + (3u << 20), "tail-data", 9);
            CHECK_MSG(memcmp(data, want, n) == 0, "%s: bytes differ", files[i]);
            free(want);
        }
        free(data);
        lt_archive_close(a);
    }
}

/* ---- refusals ---- */

typedef struct refusal {
    const char *file;
    const char *needles[2];   /* in the message */
} refusal;

static void test_refusals(void)
{
    static const refusal cases[] = {
        {"traversal.tar", {"'../x'", "'..'"}},
        {"traversal.zip", {"'../x'", "'..'"}},
        {"traversal-inner.tar", {"'a/../../x'", "'..'"}},
        {"absolute.tar", {"'/tmp/x'", "absolute"}},
        {"absolute.zip", {"'/tmp/x'", "absolute"}},
        {"symlink.tar", {"'link'", "symbolic link"}},
        {"symlink-escape.tar", {"'adapter_model.safetensors'", "/etc/passwd"}},
        {"symlink.zip", {"'adapter_model.safetensors'", "symbolic link"}},
        {"hardlink.tar", {"'copy.json'", "hard link"}},
        {"hardlink-escape.tar", {"'adapter_model.safetensors'", "hard link"}},
        {"fifo.tar", {"'pipe'", "FIFO"}},
        {"chardev.tar", {"'null'", "device"}},
        {"duplicate.tar", {"'adapter_config.json'", "twice"}},
        {"duplicate.zip", {"'adapter_config.json'", "twice"}},
        {"duplicate-dot.tar", {"'a/adapter_config.json'", "twice"}},
        {"file-and-folder.tar", {"'a'", "file and a folder"}},
        {"encrypted.zip", {"'adapter_config.json'", "encrypted"}},
        {"encrypted-flag.zip", {"'adapter_config.json'", "encrypted"}},
        {"many.tar.gz", {"10000 entries", "entries=N"}},
        {"huge-member.tar", {"'huge.bin'", "member=17179869184"}},
        {"bomb.tar.zst", {"'zeros.bin'", "ratio=1000"}},
        {"truncated.tar", {"truncated.tar", "runcated"}},
        {"truncated.tar.gz", {"truncated.tar.gz", "runcated"}},
        {"truncated.tar.xz", {"truncated.tar.xz", "not a readable archive"}},
        {"truncated.tar.zst", {"truncated.tar.zst", "runcated"}},
        {"truncated.zip", {"truncated.zip", "central directory"}},
        {"badsum-first.tar", {"badsum-first.tar", "checksum"}},
        {"badsum-second.tar", {"after member 'adapter_config.json'", "Damaged"}},
        {"not-tar.gz", {"not-tar.gz", "not a readable archive"}},
        {"twice.tar.gz.gz", {"twice.tar.gz.gz", "more than once"}},
        {"empty.zip", {"empty.zip", "zip"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lt_error err = {0};
        lt_archive *a = lt_archive_open(fmt("%s/hostile/%s", arch, cases[i].file), NULL, &err);
        CHECK_MSG(a == NULL && err.status == LT_ERR_INVALID, "%s opened or status %d", cases[i].file, err.status);
        for (size_t k = 0; k < 2; k++)
            CHECK_MSG(strstr(err.message, cases[i].needles[k]), "%s: message '%s' lacks '%s'", cases[i].file,
                      err.message, cases[i].needles[k]);
        CHECK_EQ_U64(lt_status_exit_code(err.status), 3);
    }
    /* the bomb stopped early: at most ratio x what was read, plus a block */
    lt_error err;
    CHECK(lt_archive_open(fmt("%s/hostile/bomb.tar.zst", arch), NULL, &err) == NULL);
    const char *at = strstr(err.message, "ratio=1000: ");
    unsigned long long out = 0, in = 0;
    CHECK(at && sscanf(at, "ratio=1000: %llu bytes out of %llu", &out, &in) == 2);
    CHECK_MSG(out < (256ull << 20) && out > 1000 * in, "%llu bytes out of %llu", out, in);
    /* a zip's CRC is checked as its member is spooled */
    lt_archive *a = lt_archive_open(fmt("%s/hostile/badcrc.zip", arch), NULL, &err);
    CHECK(a != NULL);
    CHECK(a && lt_archive_extract(a, "", &err) == NULL && err.status == LT_ERR_INVALID && strstr(err.message, "CRC") &&
          strstr(err.message, "'adapter_config.json'"));
    lt_archive_close(a);
}

/* limits decide: the same archives open under raised limits, and a lower
 * member limit refuses a good one */
static void test_limits_applied(void)
{
    lt_error err;
    lt_archive_limits lim;
    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    CHECK(lt_archive_limits_parse("entries=100001", &lim, &err) == LT_OK);
    lt_archive *a = lt_archive_open(fmt("%s/hostile/many.tar.gz", arch), &lim, &err);
    CHECK_MSG(a && lt_archive_member_count(a) == 100000, "%s", a ? "" : err.message);
    lt_archive_close(a);

    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    CHECK(lt_archive_limits_parse("member=30000", &lim, &err) == LT_OK);
    a = lt_archive_open(fmt("%s/good/root-gnu.tar.zst", arch), &lim, &err);
    CHECK(!a && err.status == LT_ERR_INVALID && strstr(err.message, "'adapter_model.safetensors'") &&
          strstr(err.message, "member=30000"));

    /* the zip bomb (32 MiB of zeros, deflate's ~1000:1) opens (sizes are
     * in the central directory) and is stopped while spooling */
    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    CHECK(lt_archive_limits_parse("ratio=100", &lim, &err) == LT_OK);
    a = lt_archive_open(fmt("%s/hostile/bomb.zip", arch), &lim, &err);
    CHECK(a != NULL);
    CHECK(a && lt_archive_extract(a, "zeros.bin", &err) == NULL && err.status == LT_ERR_INVALID &&
          strstr(err.message, "ratio=100:") && strstr(err.message, "'zeros.bin'"));
    lt_archive_close(a);
    a = lt_archive_open(fmt("%s/hostile/bomb.zip", arch), NULL, &err);   /* 1000: below deflate's most */
    const char *one = a ? lt_archive_extract(a, "zeros.bin", &err) : NULL;
    struct stat st;
    CHECK(one && stat(one, &st) == 0 && st.st_size == (32 << 20));
    lt_archive_close(a);
}

/* 2 GiB of zeros go through the first pass (the ratio raised) in bounded
 * memory: decompressed block by block, nothing kept */
static void test_memory_bounded(void)
{
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    lt_archive_limits lim;
    lt_error err;
    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    CHECK(lt_archive_limits_parse("ratio=1000000", &lim, &err) == LT_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lt_archive *a = lt_archive_open(fmt("%s/hostile/bomb.tar.zst", arch), &lim, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_MSG(a && lt_archive_member_count(a) == 1 && lt_archive_member_size(a, 0) == 2ull << 30, "%s",
              a ? "" : err.message);
    lt_archive_close(a);
    getrusage(RUSAGE_SELF, &after);
    long grown_kib = after.ru_maxrss - before.ru_maxrss;
    CHECK_MSG(grown_kib < 32 * 1024, "peak memory grew by %ld KiB", grown_kib);
    printf("  2 GiB of zeros read through in %.2f s, peak memory +%ld KiB\n",
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9, grown_kib);
}

/* ---- limits parsing ---- */

static void test_limits_parse(void)
{
    lt_archive_limits lim;
    lt_error err;
    lt_archive_default_limits(LT_ARCHIVE_ADAPTER, &lim);
    CHECK_EQ_U64(lim.member_bytes, 16ull << 30);
    CHECK_EQ_U64(lim.entries, 10000);
    CHECK_EQ_U64(lim.ratio, 1000);
    lt_archive_default_limits(LT_ARCHIVE_MODEL, &lim);
    CHECK_EQ_U64(lim.member_bytes, 512ull << 30);
    CHECK(lt_archive_limits_parse("member=1G,entries=5,ratio=7", &lim, &err) == LT_OK);
    CHECK_EQ_U64(lim.member_bytes, 1ull << 30);
    CHECK_EQ_U64(lim.entries, 5);
    CHECK_EQ_U64(lim.ratio, 7);
    CHECK(lt_archive_limits_parse("member=2k", &lim, &err) == LT_OK && lim.member_bytes == 2048);
    CHECK(lt_archive_limits_parse("member=3M", &lim, &err) == LT_OK && lim.member_bytes == 3ull << 20);
    CHECK(lt_archive_limits_parse("member=1t", &lim, &err) == LT_OK && lim.member_bytes == 1ull << 40);
    CHECK(lt_archive_limits_parse("member=12345", &lim, &err) == LT_OK && lim.member_bytes == 12345);
    CHECK(lt_archive_limits_parse("", &lim, &err) == LT_OK && lim.member_bytes == 12345);
    CHECK(lt_archive_limits_parse("ratio=3,ratio=4", &lim, &err) == LT_OK && lim.ratio == 4);
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"foo=1", "'foo=1'"},           {"member", "'member'"},           {"member=", "'member='"},
        {"member=1X", "'member=1X'"},   {"entries=1K", "'entries=1K'"},   {"ratio=0", "'ratio=0'"},
        {"member=-1", "'member=-1'"},   {"member=16777216T", "'member=16777216T'"},
        {"member=99999999999999999999", "'member=99999999999999999999'"},
        {"ratio=5,", "ends with ','"},  {"ratio=5,,entries=2", "''"},     {"Member=1", "'Member=1'"},
        {"entries=5,bogus=2", "'bogus=2'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lt_archive_limits before = lim;
        err.status = LT_OK;
        CHECK_MSG(lt_archive_limits_parse(bad[i].text, &lim, &err) == LT_ERR_USAGE && strstr(err.message, bad[i].needle),
                  "'%s': %s", bad[i].text, err.message);
        CHECK(memcmp(&before, &lim, sizeof lim) == 0);
    }
}

/* ---- writing ---- */

static void test_kind_for_path(void)
{
    static const struct {
        const char *path;
        lt_archive_kind kind;
    } cases[] = {
        {"a.zip", LT_ARCHIVE_ZIP},        {"x/a.ZIP", LT_ARCHIVE_ZIP},       {"a.tar", LT_ARCHIVE_TAR},
        {"a.tar.gz", LT_ARCHIVE_TAR_GZ},  {"a.tgz", LT_ARCHIVE_TAR_GZ},      {"a.Tar.Xz", LT_ARCHIVE_TAR_XZ},
        {"a.tar.zst", LT_ARCHIVE_TAR_ZST}, {"a.tar.bz2", LT_ARCHIVE_TAR_BZ2}, {"a.gz", LT_ARCHIVE_NONE},
        {"a.tar.lz4", LT_ARCHIVE_NONE},   {"out", LT_ARCHIVE_NONE},          {"zip", LT_ARCHIVE_NONE},
        {"dir/.zip", LT_ARCHIVE_NONE},    {"a.safetensors", LT_ARCHIVE_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK_MSG(lt_archive_kind_for_path(cases[i].path) == cases[i].kind, "%s", cases[i].path);
}

static const char *const KIND_SUFFIX[] = {"", "zip", "tar", "tar.gz", "tar.xz", "tar.zst", "tar.bz2"};

/* A directory with the adapter's files, three small files made in a
 * shuffled order, and a subdirectory (not written). */
static const char *make_out_dir(const char *name, time_t mtime)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", scratch, name);
    remove_tree(dir);
    mkdir(dir, 0755);
    static const char *const order[] = {"b.txt", "C.txt", "a.txt"};
    for (size_t i = 0; i < 3; i++)
        write_file(fmt("%s/%s", dir, order[i]), order[i], strlen(order[i]));
    for (size_t k = 0; k < 2; k++) {
        size_t n;
        unsigned char *data = read_file(fmt("%s/src/%s", arch, SRC_FILES[k]), &n);
        write_file(fmt("%s/%s", dir, SRC_FILES[k]), data, n);
        free(data);
    }
    mkdir(fmt("%s/sub", dir), 0755);
    write_file(fmt("%s/sub/x", dir), "x", 1);
    DIR *d = opendir(dir);
    const struct dirent *e;
    while (d && (e = readdir(d))) {
        struct timespec t[2] = {{mtime, 0}, {mtime, 0}};
        utimensat(dirfd(d), e->d_name, t, 0);
    }
    if (d)
        closedir(d);
    return dir;
}

static const char *const WRITTEN[] = {"C.txt", "a.txt", "adapter_config.json", "adapter_model.safetensors", "b.txt"};

static void test_write_read_back(void)
{
    const char *dir = strdup(make_out_dir("w1", 1234567));
    for (int kind = LT_ARCHIVE_ZIP; kind <= LT_ARCHIVE_TAR_BZ2; kind++) {
        const char *out = strdup(fmt("%s/out.%s", scratch, KIND_SUFFIX[kind]));
        lt_error err;
        CHECK_MSG(lt_archive_write_dir(dir, out, (lt_archive_kind)kind, 0, &err) == LT_OK, "%s: %s", out, err.message);
        CHECK(lt_archive_kind_for_path(out) == (lt_archive_kind)kind);
        /* our reader: root members, sorted, the same bytes */
        lt_archive *a = lt_archive_open(out, NULL, &err);
        CHECK_MSG(a != NULL, "%s", err.message);
        if (a) {
            CHECK_EQ_U64(lt_archive_member_count(a), 5);
            for (size_t i = 0; i < 5 && i < lt_archive_member_count(a); i++)
                CHECK_STR(lt_archive_member_name(a, i), WRITTEN[i]);
            const char *view = lt_archive_extract(a, "", &err);
            CHECK(view && count_entries(view) == 5);
            for (size_t i = 0; view && i < 5; i++)
                CHECK_MSG(same_bytes(fmt("%s/%s", view, WRITTEN[i]), fmt("%s/%s", dir, WRITTEN[i])), "%s %s", out,
                          WRITTEN[i]);
            lt_archive_close(a);
        }
        /* the peers: tar (or Python's zipfile) unpacks the same bytes */
        const char *x = strdup(fmt("%s/x-%s", scratch, KIND_SUFFIX[kind]));
        mkdir(x, 0755);
        const char *cmd = kind == LT_ARCHIVE_ZIP ? fmt("/usr/bin/python3 -m zipfile -e '%s' '%s'", out, x)
                                                 : fmt("tar -xf '%s' -C '%s'", out, x);
        CHECK_MSG(system(cmd) == 0, "%s", cmd);
        CHECK(count_entries(x) == 5);
        for (size_t i = 0; i < 5; i++)
            CHECK_MSG(same_bytes(fmt("%s/%s", x, WRITTEN[i]), fmt("%s/%s", dir, WRITTEN[i])), "%s %s", cmd,
                      WRITTEN[i]);
        /* and Python's tarfile/zipfile see the promised headers */
        if (kind != LT_ARCHIVE_TAR_ZST) {
            const char *py = fmt(
                "/usr/bin/python3 -c \"import sys, tarfile, zipfile\n"
                "p = sys.argv[1]\n"
                "if p.endswith('.zip'):\n"
                "    z = zipfile.ZipFile(p); assert z.testzip() is None\n"
                "    ms = [(i.filename, i.external_attr >> 16, i.date_time) for i in z.infolist()]\n"
                "    assert [m[0] for m in ms] == sorted(m[0] for m in ms), ms\n"
                "    assert all(m[1] == 0o100644 and m[2] == (1980, 1, 1, 0, 0, 0) for m in ms), ms\n"
                "else:\n"
                "    t = tarfile.open(p); ms = t.getmembers()\n"
                "    assert [m.name for m in ms] == sorted(m.name for m in ms)\n"
                "    assert all(m.mode == 0o644 and m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == ''\n"
                "               and m.gname == '' and not m.pax_headers and m.isreg() for m in ms), ms\n"
                "\" '%s'",
                out);
            CHECK_MSG(system(py) == 0, "python check of %s", out);
        }
        if (kind == LT_ARCHIVE_TAR_GZ) {   /* gzip header: no name, no time */
            size_t n;
            unsigned char *gz = read_file(out, &n);
            CHECK(gz && n > 10 && gz[0] == 0x1f && gz[1] == 0x8b && (gz[3] & 0x08) == 0 && !gz[4] && !gz[5] &&
                  !gz[6] && !gz[7]);
            free(gz);
        }
        remove_tree(x);
        free((void *)x);
        free((void *)out);
    }
    free((void *)dir);
}

static void test_write_reproducible(void)
{
    for (int kind = LT_ARCHIVE_ZIP; kind <= LT_ARCHIVE_TAR_BZ2; kind++) {
        lt_error err;
        const char *one = strdup(fmt("%s/r1.%s", scratch, KIND_SUFFIX[kind]));
        const char *two = strdup(fmt("%s/r2.%s", scratch, KIND_SUFFIX[kind]));
        const char *three = strdup(fmt("%s/r3.%s", scratch, KIND_SUFFIX[kind]));
        CHECK(lt_archive_write_dir(make_out_dir("r1", 1000), one, (lt_archive_kind)kind, 1700000000, &err) == LT_OK);
        CHECK(lt_archive_write_dir(make_out_dir("r2", 2000000), two, (lt_archive_kind)kind, 1700000000, &err) ==
              LT_OK);
        CHECK_MSG(same_bytes(one, two), "%s: two writes differ", KIND_SUFFIX[kind]);
        /* the time given is in the archive: another one changes the bytes */
        CHECK(lt_archive_write_dir(fmt("%s/r2", scratch), three, (lt_archive_kind)kind, 1600000000, &err) == LT_OK);
        CHECK_MSG(!same_bytes(one, three), "%s: the time is not in the archive", KIND_SUFFIX[kind]);
        free((void *)one);
        free((void *)two);
        free((void *)three);
    }
}

static void test_write_errors(void)
{
    lt_error err;
    const char *out = fmt("%s/fail.zip", scratch);
    CHECK(lt_archive_write_dir(fmt("%s/no-such-dir", scratch), out, LT_ARCHIVE_ZIP, 0, &err) == LT_ERR_IO);
    CHECK(!exists(out));
    CHECK(lt_archive_write_dir(fmt("%s/src", arch), out, LT_ARCHIVE_NONE, 0, &err) == LT_ERR_USAGE);
    CHECK(lt_archive_write_dir(fmt("%s/src", arch), out, LT_ARCHIVE_ZIP, -5, &err) == LT_ERR_USAGE);
    CHECK(!exists(out));
    CHECK(lt_archive_write_dir(fmt("%s/src", arch), fmt("%s/no-dir/x.zip", scratch), LT_ARCHIVE_ZIP, 0, &err) ==
          LT_ERR_IO);
    /* an existing archive is replaced whole, and nothing else is left */
    const char *tgz = fmt("%s/replace/x.tgz", scratch);
    mkdir(fmt("%s/replace", scratch), 0755);
    write_file(tgz, "old", 3);
    CHECK(lt_archive_write_dir(fmt("%s/src", arch), tgz, LT_ARCHIVE_TAR_GZ, 0, &err) == LT_OK);
    lt_archive *a = lt_archive_open(tgz, NULL, &err);
    CHECK(a && lt_archive_member_count(a) == 2);
    lt_archive_close(a);
    CHECK(count_entries(fmt("%s/replace", scratch)) == 1);
}

/* ---- real adapters: packed by tar and zip, opened like their folders ---- */

/* Every tensor of the adapter at A has the bytes of the same tensor at B. */
static bool same_adapter(const char *a_path, const char *b_path, const char *what)
{
    lt_error err;
    lt_adapter *a = lt_adapter_open(a_path, &err), *b = a ? lt_adapter_open(b_path, &err) : NULL;
    CHECK_MSG(a && b, "%s: %s", what, err.message);
    bool same = a && b && lt_adapter_module_count(a) == lt_adapter_module_count(b);
    lt_source *sa = a ? lt_adapter_source(a) : NULL, *sb = b ? lt_adapter_source(b) : NULL;
    same = same && lt_source_tensor_count(sa) == lt_source_tensor_count(sb);
    for (size_t i = 0; same && i < lt_source_tensor_count(sa); i++) {
        const lt_tensor_info *ta = lt_source_tensor(sa, i), *tb = lt_source_tensor(sb, i);
        same = !strcmp(ta->name, tb->name) && ta->n_bytes == tb->n_bytes;
        void *x = malloc(ta->n_bytes + 1), *y = malloc(ta->n_bytes + 1);
        same = same && x && y && lt_source_read(sa, i, 0, x, ta->n_bytes, &err) == LT_OK &&
               lt_source_read(sb, i, 0, y, tb->n_bytes, &err) == LT_OK && !memcmp(x, y, ta->n_bytes);
        free(x);
        free(y);
    }
    CHECK_MSG(same, "%s: tensors differ", what);
    lt_adapter_close(a);
    lt_adapter_close(b);
    return same;
}

static void test_corpus_adapters(void)
{
    const char *corpus = "../shared/corpus/adapters";
    struct dirent **names;
    int n = is_dir(corpus) ? scandir(corpus, &names, NULL, alphasort) : -1;
    if (n < 0) {
        printf("SKIP test_corpus_adapters: no %s\n", corpus);
        return;
    }
    int done = 0;
    for (int i = 0; i < n; i++) {
        const char *dir = fmt("%s/%s", corpus, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && exists(fmt("%s/adapter_config.json", dir))) {
            static const char *const kinds[] = {"tar.zst", "zip"};
            for (size_t k = 0; k < 2; k++) {
                const char *out = fmt("%s/corpus.%s", scratch, kinds[k]);
                remove(out);
                const char *cmd = k == 0 ? fmt("tar --zstd -cf '%s' -C '%s' .", out, dir)
                                         : fmt("cd '%s' && zip -q -r -X '%s' .", dir, out);
                CHECK_MSG(system(cmd) == 0, "%s", cmd);
                lt_error err;
                lt_archive *a = lt_archive_open(out, NULL, &err);
                const char *view = a ? lt_archive_extract(a, "", &err) : NULL;
                CHECK_MSG(view != NULL, "%s.%s: %s", names[i]->d_name, kinds[k], err.message);
                char what[300];
                snprintf(what, sizeof what, "%s as %s", names[i]->d_name, kinds[k]);
                if (view)
                    done += same_adapter(dir, view, what);
                lt_archive_close(a);
            }
        }
        free(names[i]);
    }
    free(names);
    CHECK(done >= 20);
}

/* A model (single file, sharded with its index) through a view: every
 * tensor as from the folder. */
static bool same_source(const char *a_path, const char *b_path, const char *what)
{
    lt_error err;
    lt_source *a = lt_source_open(a_path, &err), *b = a ? lt_source_open(b_path, &err) : NULL;
    CHECK_MSG(a && b, "%s: %s", what, err.message);
    bool same = a && b && lt_source_tensor_count(a) == lt_source_tensor_count(b) && lt_source_tensor_count(a) > 0 &&
                !strcmp(lt_source_format(a), lt_source_format(b));
    for (size_t i = 0; same && i < lt_source_tensor_count(a); i++) {
        const lt_tensor_info *ta = lt_source_tensor(a, i), *tb = lt_source_tensor(b, i);
        same = !strcmp(ta->name, tb->name) && ta->n_bytes == tb->n_bytes;
        void *x = malloc(ta->n_bytes + 1), *y = malloc(ta->n_bytes + 1);
        same = same && x && y && lt_source_read(a, i, 0, x, ta->n_bytes, &err) == LT_OK &&
               lt_source_read(b, i, 0, y, tb->n_bytes, &err) == LT_OK && !memcmp(x, y, ta->n_bytes);
        free(x);
        free(y);
    }
    CHECK_MSG(same, "%s: tensors differ", what);
    lt_source_close(a);
    lt_source_close(b);
    return same;
}

static void test_models(void)
{
    char sharded[4096];
    snprintf(sharded, sizeof sharded, "%s/../safetensors/sharded", arch);
    const char *dirs[] = {sharded, "../shared/corpus/models/lm-buddy_tiny_gpt2",
                          "../shared/corpus/models/lm-buddy_bert_tiniest"};
    int done = 0;
    for (size_t i = 0; i < 3; i++) {
        if (!exists(fmt("%s/model.safetensors", dirs[i])) && !exists(fmt("%s/model.safetensors.index.json", dirs[i])))
            continue;
        char abs[4096];
        if (!realpath(dirs[i], abs))
            continue;
        static const char *const kinds[] = {"tar.xz", "zip"};
        for (size_t k = 0; k < 2; k++) {
            const char *out = fmt("%s/model.%s", scratch, kinds[k]);
            remove(out);
            /* tar: under a top-level folder "model" (tar -h follows the
             * link to the folder); zip: under the folder's own name */
            const char *link = fmt("%s/model", scratch);
            remove(link);
            CHECK(k == 1 || symlink(abs, link) == 0);
            const char *cmd = k == 0 ? fmt("tar -chJf '%s' -C '%s' model", out, scratch)
                                     : fmt("cd '%s/..' && zip -q -r -X '%s' '%s'", abs, out, strrchr(abs, '/') + 1);
            CHECK_MSG(system(cmd) == 0, "%s", cmd);
            lt_archive_limits lim;
            lt_archive_default_limits(LT_ARCHIVE_MODEL, &lim);
            lt_error err;
            lt_archive *a = lt_archive_open(out, &lim, &err);
            const char *folder = k == 0 ? "model" : strrchr(abs, '/') + 1;
            const char *view = a ? lt_archive_extract(a, folder, &err) : NULL;
            CHECK_MSG(view != NULL, "%s as %s: %s", dirs[i], kinds[k], err.message);
            if (view)
                done += same_source(dirs[i], view, fmt("%s as %s", dirs[i], kinds[k]));
            lt_archive_close(a);
        }
    }
    if (done == 0)
        printf("SKIP test_models: no sharded fixture or corpus model\n");
    else
        CHECK(done >= 2);
}

/* ---- remove_view ---- */

static void test_remove_view(void)
{
    lt_error err;
    lt_archive *a = lt_archive_open(fmt("%s/good/two-py.zip", arch), NULL, &err);
    CHECK(a != NULL);
    if (!a)
        return;
    const char *view = lt_archive_extract(a, "a", &err);
    const char *one = lt_archive_extract(a, "b/adapter_config.json", &err);
    CHECK(view && one && is_dir(view));
    char *copy = one ? strdup(one) : NULL;
    char *one_dir = copy ? strdup(dirname(copy)) : NULL;
    if (view)
        lt_archive_remove_view(view);
    CHECK(view && !exists(view));
    if (one)
        lt_archive_remove_view(one);   /* a single file's link: its directory */
    CHECK(one_dir && !exists(one_dir));
    /* not one of ours: left alone */
    const char *other = fmt("%s/not-a-view", scratch);
    mkdir(other, 0700);
    write_file(fmt("%s/f", other), "f", 1);
    lt_archive_remove_view(other);
    lt_archive_remove_view("");
    lt_archive_remove_view("/");
    CHECK(exists(fmt("%s/not-a-view/f", scratch)));
    lt_archive_close(a);   /* after a removal: fine */
    free(copy);
    free(one_dir);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        char *copy = strdup(argv[1]);
        snprintf(arch, sizeof arch, "%s/archives", dirname(copy));
        free(copy);
    } else {
        snprintf(arch, sizeof arch, "build/testdata/archives");
    }
    if (!is_dir(fmt("%s/good", arch))) {
        printf("FAIL archive: no %s/good (made by testdata/make_archives.py)\n", arch);
        return 1;
    }
    snprintf(scratch, sizeof scratch, "%s", "/tmp/lt-test-archive-XXXXXX");
    if (!mkdtemp(scratch)) {
        printf("FAIL archive: mkdtemp\n");
        return 1;
    }
    RUN(test_probe);
    RUN(test_memory_bounded);
    RUN(test_members);
    RUN(test_extract);
    RUN(test_extract_errors);
    RUN(test_tmpdir);
    RUN(test_sparse);
    RUN(test_refusals);
    RUN(test_limits_applied);
    RUN(test_limits_parse);
    RUN(test_kind_for_path);
    RUN(test_write_read_back);
    RUN(test_write_reproducible);
    RUN(test_write_errors);
    RUN(test_remove_view);
    RUN(test_corpus_adapters);
    RUN(test_models);
    remove_tree(scratch);
    return check_done();
}
