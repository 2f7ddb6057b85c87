/*
 * fuzz_regex.c - the Python-compatible regex compiler and matcher
 * (lib/regex*.c) that PEFT patterns (target_modules, rank_pattern,
 * alpha_pattern) go through.
 *
 * Input: the pattern, then NUL, then up to 8 NUL-separated subjects of at
 * most 64 bytes (module names are short); without subjects a few typical
 * module names are tried.  A pattern that does not compile must say why in
 * one line; a compiled one must answer every subject within its step
 * budget (1, 0 or -1), and a full match implies a match by search.
 */
#include "fuzz_common.h"
#include "regex.h"

#define MAX_SUBJECTS 8
#define MAX_SUBJECT_LEN 64

static const char *const default_subjects[] = {
    "model.layers.0.self_attn.q_proj",
    "base_model.model.model.layers.12.mlp.down_proj",
    "lm_head",
    "",
};

static void check_subject(const lti_regex *re, const char *subject)
{
    int full = lti_regex_exec(re, subject, false);
    int search = lti_regex_exec(re, subject, true);
    FUZZ_ASSERT(full >= -1 && full <= 1 && search >= -1 && search <= 1);
    if (full == 1)
        FUZZ_ASSERT(search != 0);
    FUZZ_ASSERT(lti_regex_fullmatch(re, subject) == (full == 1));
    FUZZ_ASSERT(lti_regex_search(re, subject) == (search == 1));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const unsigned char *nul = memchr(data, 0, size);
    size_t pattern_len = nul ? (size_t)(nul - data) : size;
    char *pattern = malloc(pattern_len + 1);
    FUZZ_ASSERT(pattern != NULL);
    memcpy(pattern, data, pattern_len);
    pattern[pattern_len] = '\0';
    lt_error err;
    fuzz_error_reset(&err);
    lti_regex *re = lti_regex_compile(pattern, &err);
    free(pattern);
    if (!re) {
        fuzz_check_error(&err);
        return 0;
    }
    fuzz_note_ok("pattern compiled");
    size_t n_subjects = 0;
    if (nul) {
        size_t pos = pattern_len + 1;
        while (pos <= size && n_subjects < MAX_SUBJECTS) {
            const unsigned char *end = memchr(data + pos, 0, size - pos);
            size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
            char subject[MAX_SUBJECT_LEN + 1];
            size_t take = len < MAX_SUBJECT_LEN ? len : MAX_SUBJECT_LEN;
            memcpy(subject, data + pos, take);
            subject[take] = '\0';
            check_subject(re, subject);
            n_subjects++;
            pos += len + 1;
        }
    }
    if (n_subjects == 0)
        for (size_t i = 0; i < sizeof default_subjects / sizeof *default_subjects; i++)
            check_subject(re, default_subjects[i]);
    lti_regex_free(re);
    return 0;
}
