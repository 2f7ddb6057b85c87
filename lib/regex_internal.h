/* regex_internal.h - what the two halves of the Python-compatible regex
 * share: lib/regex_parse.c (pattern -> parse tree) and lib/regex.c (tree ->
 * program, and the backtracking machine).  See lib/regex.c for the
 * semantics and the limits. */
#ifndef LT_REGEX_INTERNAL_H
#define LT_REGEX_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "regex.h"

#if defined(__GNUC__)
#define LT_REGEX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LT_REGEX_PRINTF(a, b)
#endif

#define MAX_PATTERN_BYTES 65536
#define MAX_NESTING 100
#define MAX_NAMED_GROUPS 100
#define STEP_BUDGET 10000000u
#define MAX_BACKTRACK_ENTRIES (1u << 20)
#define MAX_MEMO_BYTES (64u << 20)   /* remembered states of one match */
#define MEMO_AFTER_STEPS 4096u       /* matches shorter than this keep no memo */
#define REPEAT_INFINITE UINT32_MAX /* Python's MAXREPEAT; larger counts are errors */

/* ---- character sets: one bit per byte value ---- */

typedef struct charset {
    uint32_t bits[8];
} charset;

static inline bool charset_has(const charset *cs, unsigned char c)
{
    return (cs->bits[c >> 5] >> (c & 31)) & 1;
}

static inline bool is_ascii_letter(unsigned c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline bool is_digit(unsigned c) { return c >= '0' && c <= '9'; }
static inline bool is_word(unsigned c) { return is_ascii_letter(c) || is_digit(c) || c == '_'; }

/* ---- the parse tree ---- */

enum node_type { N_BYTE, N_SET, N_ASSERT, N_LOOKAHEAD, N_SEQUENCE, N_ALTERNATION, N_REPEAT };

enum assertion {
    AT_START,            /* ^ and \A                                        */
    AT_LINE_START,       /* ^ with (?m)                                      */
    AT_END,              /* $: end, or before a newline that ends the text   */
    AT_LINE_END,         /* $ with (?m)                                      */
    AT_TEXT_END,         /* \Z                                              */
    AT_WORD_BOUNDARY,    /* \b                                              */
    AT_NOT_WORD_BOUNDARY /* \B                                              */
};

typedef struct node {
    uint8_t type;
    uint8_t flag;      /* N_ASSERT: assertion; N_LOOKAHEAD: negated; N_REPEAT: lazy */
    uint32_t arg;      /* N_BYTE: the byte; N_SET: index of the set            */
    uint32_t min, max; /* N_REPEAT                                             */
    int child;         /* first element, branch, body or repeated item         */
    int next;          /* next element of the enclosing sequence/alternation   */
} node;

/* Python's flag letters; TYPE_FLAGS are the mutually exclusive a, L, u. */
enum { F_ICASE = 1, F_MULTILINE = 2, F_DOTALL = 4, F_ASCII = 8, F_UNICODE = 16,
       F_LOCALE = 32, F_VERBOSE = 64, F_TEMPLATE = 128 };
#define TYPE_FLAGS (F_ASCII | F_LOCALE | F_UNICODE)

typedef struct parser {
    const char *pattern;
    size_t len, pos;
    lt_error *err;
    bool failed;
    unsigned flags;     /* in force at pos; scoped groups save and restore */
    unsigned groups;    /* capturing groups opened so far (for \N)         */
    unsigned depth;     /* groups open at pos                              */
    node *nodes;
    size_t n_nodes, cap_nodes;
    charset *sets;
    size_t n_sets, cap_sets;
    size_t name_at[MAX_NAMED_GROUPS], name_len[MAX_NAMED_GROUPS];
    size_t n_names;
} parser;

#define NO_ITEM (-2) /* a comment or global flags: parsed, but nothing to add */

/* lib/regex_parse.c */
void lti_regex_fill_error(lt_error *err, lt_status status, const char *fmt, ...) LT_REGEX_PRINTF(3, 4);
int lti_regex_parse_fail(parser *p, lt_status status, size_t offset, const char *fmt, ...) LT_REGEX_PRINTF(4, 5);
void *lti_regex_grow_array(void *items, size_t *cap, size_t need, size_t item_size);
int lti_regex_parse_alternation(parser *p);

#endif
