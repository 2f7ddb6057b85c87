/*
 * replay_main.c - a plain driver for a fuzz target, built with the normal
 * compiler (gcc) so `make test` replays every corpus file, plain and under
 * ASan+UBSan, without libFuzzer.
 *
 *   fuzz_<target> DIR|FILE...
 *
 * Runs LLVMFuzzerTestOneInput once per file (a directory's files in name
 * order) and prints "PASS fuzz:<target>: N inputs from DIR"; a broken
 * promise aborts inside the target (the run then counts as failed).
 */
#include <dirent.h>

#include "fuzz_common.h"

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char *data = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            data = realloc(data, cap);
            FUZZ_ASSERT(data != NULL);
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    FUZZ_ASSERT(!ferror(f));
    fclose(f);
    *size = len;
    return data;
}

static void run_file(const char *path)
{
    size_t size;
    unsigned char *data = read_all(path, &size);
    /* a copy of exactly the input's size, so ASan sees reads past its end */
    unsigned char *exact = malloc(size ? size : 1);
    FUZZ_ASSERT(exact != NULL);
    memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
    const char *target = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", target);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        size_t count = 0;
        if (lti_is_dir(argv[a])) {
            struct dirent **names;
            int n = scandir(argv[a], &names, NULL, by_name);
            if (n < 0) {
                perror(argv[a]);
                return 1;
            }
            for (int i = 0; i < n; i++) {
                char *path = lti_path_join(argv[a], names[i]->d_name);
                FUZZ_ASSERT(path != NULL);
                if (lti_is_file(path)) {
                    fprintf(stderr, "input %s\n", path);   /* which one, if it aborts */
                    run_file(path);
                    count++;
                }
                free(path);
                free(names[i]);
            }
            free(names);
        } else {
            run_file(argv[a]);
            count = 1;
        }
        if (count == 0) {
            printf("FAIL %s: no inputs in %s\n", target, argv[a]);
            return 1;
        }
        printf("PASS %s: %zu inputs from %s\n", target, count, argv[a]);
    }
    return 0;
}
