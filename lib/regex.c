/*
 * regex.c - regular expressions with the syntax and results of Python's `re`.
 *
 * PEFT matches a string `target_modules` with re.fullmatch and the keys of
 * rank_pattern / alpha_pattern with re.match, so real adapter configs hold
 * patterns written for Python: lazy quantifiers, \b, \d inside classes,
 * (?:...), lookahead.  POSIX regex has none of these.  This file implements
 * the part of `re` that configs use, following CPython 3.11's parser
 * (Lib/re/_parser.py) for what is accepted or rejected, and its matcher for
 * the results.  Whatever else Python accepts is refused with
 * LT_ERR_UNSUPPORTED naming the construct, never matched differently.
 *
 * How: the pattern is parsed into a small tree, the tree is compiled into a
 * program for a backtracking machine, and the machine keeps its choice
 * points on a heap stack, so a long subject never deepens the C stack.  C
 * recursion is bounded by the nesting of the pattern (MAX_NESTING): in the
 * parser, in the compiler, and once per nested lookahead while matching.
 * A compiled lt_regex is never written after compilation, so any number of
 * threads may match with it at once.
 *
 * Where results can differ from Python's default (Unicode) mode:
 *   - Matching is over bytes.  A pattern must be ASCII (else
 *     LT_ERR_UNSUPPORTED).  A subject byte >= 0x80 is one character that is
 *     not a word character, digit or space: '.', negated classes and \D \W
 *     \S match it byte by byte, so counted repeats over non-ASCII text count
 *     bytes where Python counts code points.  For ASCII subjects (module
 *     names) results equal Python's, including \s matching \x1c-\x1f unless
 *     (?a) is given, and \B never matching in an empty string.
 *   - (?i) folds ASCII letters only.
 *
 * Limits (documented budgets, not Python behaviour):
 *   - a pattern longer than MAX_PATTERN_BYTES or with groups nested deeper
 *     than MAX_NESTING is refused (LT_ERR_UNSUPPORTED);
 *   - one fullmatch or search may run at most STEP_BUDGET machine steps and
 *     hold at most MAX_BACKTRACK_ENTRIES choice points.  Past either it gives
 *     up and answers "no match" where Python would keep going, possibly for
 *     hours ((a*)*b against forty 'a's).  lt_regex_exec() returns -1 for a
 *     give-up, so callers that care can tell it from a mismatch.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loratool.h"

#define MAX_PATTERN_BYTES 65536
#define MAX_NESTING 100
#define MAX_NAMED_GROUPS 100
#define STEP_BUDGET 10000000u
#define MAX_BACKTRACK_ENTRIES (1u << 20)
#define REPEAT_INFINITE UINT32_MAX /* Python's MAXREPEAT; larger counts are errors */

/* 1 match, 0 no match, -1 gave up (step budget, choice points or memory).
 * Not in loratool.h: for the tests and for callers that report give-ups. */
int lt_regex_exec(const lt_regex *re, const char *subject, bool search);

/* ---- character sets: one bit per byte value ---- */

typedef struct charset {
    uint32_t bits[8];
} charset;

static void charset_add_range(charset *cs, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++)
        cs->bits[c >> 5] |= 1u << (c & 31);
}

static bool charset_has(const charset *cs, unsigned char c)
{
    return (cs->bits[c >> 5] >> (c & 31)) & 1;
}

static void charset_invert(charset *cs)
{
    for (int i = 0; i < 8; i++)
        cs->bits[i] = ~cs->bits[i];
}

static bool is_ascii_letter(unsigned c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_digit(unsigned c) { return c >= '0' && c <= '9'; }
static bool is_word(unsigned c) { return is_ascii_letter(c) || is_digit(c) || c == '_'; }

/* \d \w \s for a lowercase letter, their complements for an uppercase one.
 * Without (?a) Python's \s also holds \x1c-\x1f (str.isspace()). */
static void charset_add_category(charset *cs, char letter, bool ascii_only)
{
    charset cat = {{0}};
    switch (letter | 0x20) {
    case 'd': charset_add_range(&cat, '0', '9'); break;
    case 'w':
        charset_add_range(&cat, 'a', 'z');
        charset_add_range(&cat, 'A', 'Z');
        charset_add_range(&cat, '0', '9');
        charset_add_range(&cat, '_', '_');
        break;
    default:
        charset_add_range(&cat, '\t', '\r');
        charset_add_range(&cat, ' ', ' ');
        if (!ascii_only)
            charset_add_range(&cat, 0x1c, 0x1f);
    }
    if (letter >= 'A' && letter <= 'Z')
        charset_invert(&cat);
    for (int i = 0; i < 8; i++)
        cs->bits[i] |= cat.bits[i];
}

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

static unsigned flag_bit(int c)
{
    switch (c) {
    case 'i': return F_ICASE;
    case 'm': return F_MULTILINE;
    case 's': return F_DOTALL;
    case 'a': return F_ASCII;
    case 'u': return F_UNICODE;
    case 'L': return F_LOCALE;
    case 'x': return F_VERBOSE;
    case 't': return F_TEMPLATE;
    }
    return 0;
}

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

static void fill_error(lt_error *err, lt_status status, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, LT_ERROR_MAX, fmt, ap);
    va_end(ap);
    err->status = status;
}

/* Records the first error only (later ones are consequences); returns -1. */
static int parse_fail(parser *p, lt_status status, size_t offset, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = true;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    int shown = p->len > 200 ? 200 : (int)p->len;
    fill_error(p->err, status, "regex: %s at offset %zu in '%.*s%s'", what, offset,
               shown, p->pattern, p->len > 200 ? "..." : "");
    return -1;
}

/* Grows an array to hold need items; NULL (array untouched) on failure. */
static void *grow_array(void *items, size_t *cap, size_t need, size_t item_size)
{
    if (need <= *cap)
        return items;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    if (n > SIZE_MAX / item_size)
        return NULL;
    void *grown = realloc(items, n * item_size);
    if (grown)
        *cap = n;
    return grown;
}

static int new_node(parser *p, enum node_type type)
{
    node *nodes = grow_array(p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *nodes);
    if (!nodes)
        return parse_fail(p, LT_ERR_NOMEM, p->pos, "out of memory");
    p->nodes = nodes;
    nodes[p->n_nodes] = (node){.type = type, .child = -1, .next = -1};
    return (int)p->n_nodes++;
}

/* A set node; under (?i) every letter brings its other case, then the set
 * is negated if asked ([^a] with (?i) matches neither a nor A, as in Python). */
static int set_node(parser *p, charset cs, bool negate)
{
    if (p->flags & F_ICASE)
        for (unsigned c = 'A'; c <= 'Z'; c++)
            if (charset_has(&cs, (unsigned char)c) || charset_has(&cs, (unsigned char)(c | 0x20))) {
                charset_add_range(&cs, c, c);
                charset_add_range(&cs, c | 0x20, c | 0x20);
            }
    if (negate)
        charset_invert(&cs);
    charset *sets = grow_array(p->sets, &p->cap_sets, p->n_sets + 1, sizeof *sets);
    if (!sets)
        return parse_fail(p, LT_ERR_NOMEM, p->pos, "out of memory");
    p->sets = sets;
    sets[p->n_sets] = cs;
    int n = new_node(p, N_SET);
    if (n >= 0)
        p->nodes[n].arg = (uint32_t)p->n_sets++;
    return n;
}

static int byte_node(parser *p, unsigned char c)
{
    if ((p->flags & F_ICASE) && is_ascii_letter(c)) {
        charset cs = {{0}};
        charset_add_range(&cs, c, c);
        return set_node(p, cs, false);
    }
    int n = new_node(p, N_BYTE);
    if (n >= 0)
        p->nodes[n].arg = c;
    return n;
}

static int assert_node(parser *p, enum assertion kind)
{
    int n = new_node(p, N_ASSERT);
    if (n >= 0)
        p->nodes[n].flag = (uint8_t)kind;
    return n;
}

static int peek(const parser *p) { return p->pos < p->len ? (unsigned char)p->pattern[p->pos] : -1; }

/* ---- escapes ---- */

typedef struct escape {
    enum { ESC_BYTE, ESC_CATEGORY, ESC_ASSERT } kind;
    unsigned value; /* the byte, the category letter, or the assertion */
} escape;

static int hex_value(int c)
{
    if (is_digit((unsigned)c)) return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Reads up to max_digits digits of base 8 or 16 at p->pos into *value. */
static size_t read_number(parser *p, int base, size_t max_digits, uint32_t *value)
{
    size_t n = 0;
    int d;
    while (n < max_digits && (d = hex_value(peek(p))) >= 0 && d < base) {
        *value = *value * (uint32_t)base + (uint32_t)d;
        p->pos++;
        n++;
    }
    return n;
}

/* The escape at p->pos (a backslash), as Python's _escape (outside classes)
 * or _class_escape (inside) reads it.  False after reporting an error. */
static bool parse_escape(parser *p, bool in_class, escape *out)
{
    size_t at = p->pos;
    if (at + 1 >= p->len)
        return parse_fail(p, LT_ERR_INVALID, at, "bad escape (end of pattern)"), false;
    unsigned c = (unsigned char)p->pattern[at + 1];
    p->pos = at + 2;
    *out = (escape){ESC_BYTE, c};
    if (c && strchr("dDwWsS", (int)c)) {
        out->kind = ESC_CATEGORY;
        return true;
    }
    if (!in_class && c && strchr("AZbB", (int)c)) {
        out->kind = ESC_ASSERT;
        out->value = c == 'A' ? AT_START : c == 'Z' ? AT_TEXT_END
                     : c == 'b' ? AT_WORD_BOUNDARY : AT_NOT_WORD_BOUNDARY;
        return true;
    }
    uint32_t value = 0;
    switch (c) {
    case 'a': out->value = '\a'; return true;
    case 'b': out->value = '\b'; return true; /* only reached inside a class */
    case 'f': out->value = '\f'; return true;
    case 'n': out->value = '\n'; return true;
    case 'r': out->value = '\r'; return true;
    case 't': out->value = '\t'; return true;
    case 'v': out->value = '\v'; return true;
    case 'x': case 'u': case 'U': {
        size_t want = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (read_number(p, 16, want, &value) != want)
            return parse_fail(p, LT_ERR_INVALID, at, "incomplete escape \\%c", c), false;
        if (value > 0x10FFFF)
            return parse_fail(p, LT_ERR_INVALID, at, "bad escape \\U%08x", value), false;
        break;
    }
    case 'N':
        return parse_fail(p, LT_ERR_UNSUPPORTED, at,
                          "unsupported construct '\\N' (named character)"), false;
    default:
        if (!is_digit(c))
            break;
        if (in_class) { /* octal, up to three digits; \8 \9 are errors */
            if (c > '7')
                return parse_fail(p, LT_ERR_INVALID, at, "bad escape \\%c", c), false;
            value = c - '0';
            read_number(p, 8, 2, &value);
        } else if (c == '0') {
            read_number(p, 8, 2, &value);
        } else if (is_digit((unsigned)peek(p)) && c <= '7' && peek(p) <= '7' && p->pos + 1 < p->len
                   && p->pattern[p->pos + 1] >= '0' && p->pattern[p->pos + 1] <= '7') {
            value = c - '0';
            read_number(p, 8, 2, &value); /* three octal digits: octal escape */
        } else { /* \N or \NN: a backreference */
            unsigned group = c - '0';
            if (is_digit((unsigned)peek(p)))
                group = group * 10 + (unsigned)(p->pattern[p->pos++] - '0');
            if (group > p->groups)
                return parse_fail(p, LT_ERR_INVALID, at, "invalid group reference %u", group), false;
            return parse_fail(p, LT_ERR_UNSUPPORTED, at,
                              "unsupported construct '\\%u' (backreference)", group), false;
        }
        if (value > 0377)
            return parse_fail(p, LT_ERR_INVALID, at, "octal escape value outside of range 0-0o377"), false;
        break;
    }
    if (c == 'x' || c == 'u' || c == 'U' || is_digit(c)) {
        if (value >= 0x80)
            return parse_fail(p, LT_ERR_UNSUPPORTED, at,
                              "unsupported non-ASCII character U+%04X", value), false;
        out->value = value;
    } else if (is_ascii_letter(c)) {
        return parse_fail(p, LT_ERR_INVALID, at, "bad escape \\%c", c), false;
    }
    return true; /* any other escaped character stands for itself */
}

/* ---- classes, groups, sequences ---- */

static int parse_alternation(parser *p);

/* One class member at p->pos: a byte or an escape. */
static bool parse_class_member(parser *p, escape *out)
{
    if (peek(p) == '\\')
        return parse_escape(p, true, out);
    *out = (escape){ESC_BYTE, (unsigned char)p->pattern[p->pos++]};
    return true;
}

static int parse_class(parser *p)
{
    size_t open = p->pos++;
    bool negate = peek(p) == '^';
    p->pos += negate;
    charset cs = {{0}};
    for (bool first = true;; first = false) {
        if (p->pos >= p->len)
            return parse_fail(p, LT_ERR_INVALID, open, "unterminated character set");
        if (p->pattern[p->pos] == ']' && !first) { /* ']' first is a member */
            p->pos++;
            break;
        }
        size_t member_at = p->pos;
        escape lo, hi;
        if (!parse_class_member(p, &lo))
            return -1;
        bool range = peek(p) == '-';
        if (range) {
            p->pos++;
            if (p->pos >= p->len)
                return parse_fail(p, LT_ERR_INVALID, open, "unterminated character set");
            if (p->pattern[p->pos] == ']') { /* "a-]": a and '-' */
                charset_add_range(&cs, '-', '-');
                range = false;
            } else {
                if (!parse_class_member(p, &hi))
                    return -1;
                if (lo.kind != ESC_BYTE || hi.kind != ESC_BYTE || hi.value < lo.value)
                    return parse_fail(p, LT_ERR_INVALID, member_at, "bad character range %.*s",
                                      (int)(p->pos - member_at), p->pattern + member_at);
                charset_add_range(&cs, lo.value, hi.value);
            }
        }
        if (!range && lo.kind == ESC_CATEGORY)
            charset_add_category(&cs, (char)lo.value, p->flags & F_ASCII);
        else if (!range)
            charset_add_range(&cs, lo.value, lo.value);
    }
    return set_node(p, cs, negate);
}

/* Inline flags after "(?" (Python's _parse_flags).  Returns 1 for global
 * flags "(?ims)", 2 for a scoped group "(?i-s:", -1 on error. */
static int parse_flags(parser *p, size_t open, unsigned *add, unsigned *del)
{
    int c = peek(p);
    p->pos++;
    if (c != '-') {
        for (;;) {
            unsigned bit = flag_bit(c);
            if (bit == F_LOCALE)
                return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot use 'L' flag with a str pattern");
            *add |= bit;
            if ((bit & TYPE_FLAGS) && (*add & TYPE_FLAGS) != bit)
                return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: flags 'a', 'u' and 'L' are incompatible");
            c = peek(p);
            p->pos++;
            if (c == -1 || (c != ')' && c != '-' && c != ':' && !flag_bit(c)))
                return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: missing -, : or ) or unknown flag");
            if (c == ')' || c == '-' || c == ':')
                break;
        }
    }
    if (c == ')')
        return 1;
    if (*add & F_TEMPLATE)
        return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot turn on global flag");
    if (c == '-') {
        for (;;) {
            c = peek(p);
            p->pos++;
            if (c == -1 || !flag_bit(c))
                return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: missing flag or :");
            if (flag_bit(c) & (TYPE_FLAGS | F_TEMPLATE))
                return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot turn off flag '%c'", c);
            *del |= flag_bit(c);
            if (peek(p) == ':') {
                p->pos++;
                break;
            }
        }
    }
    if (*add & *del)
        return parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: flag turned on and off");
    return 2;
}

/* A named group's name must be an identifier, used once. */
static bool parse_group_name(parser *p, size_t open)
{
    size_t start = p->pos, end = start;
    while (end < p->len && p->pattern[end] != '>')
        end++;
    if (end >= p->len)
        return parse_fail(p, LT_ERR_INVALID, open, "missing >, unterminated name"), false;
    size_t n = end - start;
    bool ok = n > 0 && !is_digit((unsigned char)p->pattern[start]);
    for (size_t i = start; ok && i < end; i++)
        ok = is_word((unsigned char)p->pattern[i]);
    if (!ok)
        return parse_fail(p, LT_ERR_INVALID, open, "bad character in group name '%.*s'", (int)n, p->pattern + start), false;
    for (size_t k = 0; k < p->n_names; k++)
        if (p->name_len[k] == n && memcmp(p->pattern + p->name_at[k], p->pattern + start, n) == 0)
            return parse_fail(p, LT_ERR_INVALID, open, "redefinition of group name '%.*s'", (int)n, p->pattern + start), false;
    if (p->n_names == MAX_NAMED_GROUPS)
        return parse_fail(p, LT_ERR_UNSUPPORTED, open, "more than %d named groups", MAX_NAMED_GROUPS), false;
    p->name_at[p->n_names] = start;
    p->name_len[p->n_names++] = n;
    p->pos = end + 1;
    return true;
}

/* A group at p->pos ('('): the node of its contents, NO_ITEM, or -1. */
static int parse_group(parser *p, bool global_flags_allowed)
{
    size_t open = p->pos++;
    bool lookahead = false, negated = false;
    unsigned saved_flags = p->flags;
    if (peek(p) == '?') {
        p->pos++;
        int c = peek(p);
        p->pos++;
        const char *construct = NULL;
        if (c == -1)
            return parse_fail(p, LT_ERR_INVALID, open, "unexpected end of pattern");
        if (c == ':') {
            /* plain non-capturing group */
        } else if (c == 'P' && peek(p) == '<') {
            p->pos++;
            if (!parse_group_name(p, open))
                return -1;
            p->groups++;
        } else if (c == 'P' && peek(p) == '=') {
            construct = "(?P=' (named backreference";
        } else if (c == 'P') {
            return parse_fail(p, LT_ERR_INVALID, open, "unknown extension ?P");
        } else if (c == '#') {
            while (p->pos < p->len && p->pattern[p->pos] != ')')
                p->pos++;
            if (p->pos++ >= p->len)
                return parse_fail(p, LT_ERR_INVALID, open, "missing ), unterminated comment");
            return NO_ITEM;
        } else if (c == '=' || c == '!') {
            lookahead = true;
            negated = c == '!';
        } else if (c == '<' && (peek(p) == '=' || peek(p) == '!')) {
            construct = peek(p) == '=' ? "(?<=' (lookbehind" : "(?<!' (negative lookbehind";
        } else if (c == '(') {
            construct = "(?(' (conditional group";
        } else if (c == '>') {
            construct = "(?>' (atomic group";
        } else if (flag_bit(c) || c == '-') {
            unsigned add = 0, del = 0;
            p->pos--;
            int kind = parse_flags(p, open, &add, &del);
            if (kind < 0)
                return -1;
            if ((add | del) & (F_VERBOSE | F_TEMPLATE))
                return parse_fail(p, LT_ERR_UNSUPPORTED, open, "unsupported construct '(?%c' (%s flag)",
                                  (add | del) & F_VERBOSE ? 'x' : 't', (add | del) & F_VERBOSE ? "verbose" : "template");
            if (kind == 1 && !global_flags_allowed)
                return parse_fail(p, LT_ERR_INVALID, open, "global flags not at the start of the expression");
            p->flags = (p->flags | add) & ~del;
            if ((p->flags & F_ASCII) && (p->flags & F_UNICODE))
                return parse_fail(p, LT_ERR_UNSUPPORTED, open, "flags 'a' and 'u' both in force");
            if (kind == 1)
                return NO_ITEM; /* flags for the whole pattern: they come first */
        } else {
            return parse_fail(p, LT_ERR_INVALID, open, "unknown extension ?%c", c);
        }
        if (construct)
            return parse_fail(p, LT_ERR_UNSUPPORTED, open, "unsupported construct '%s)", construct);
    } else {
        p->groups++;
    }
    if (++p->depth > MAX_NESTING)
        return parse_fail(p, LT_ERR_UNSUPPORTED, open, "groups nested deeper than %d", MAX_NESTING);
    int body = parse_alternation(p);
    p->depth--;
    p->flags = saved_flags;
    if (body < 0)
        return -1;
    if (peek(p) != ')')
        return parse_fail(p, LT_ERR_INVALID, open, "missing ), unterminated subpattern");
    p->pos++;
    if (!lookahead)
        return body;
    int n = new_node(p, N_LOOKAHEAD);
    if (n >= 0) {
        p->nodes[n].flag = negated;
        p->nodes[n].child = body;
    }
    return n;
}

/* Reads a decimal repeat count; counts >= MAXREPEAT are errors as in Python. */
static uint64_t read_count(const char *s, size_t *i, size_t len)
{
    uint64_t v = 0;
    while (*i < len && is_digit((unsigned char)s[*i])) {
        v = v * 10 + (uint64_t)(s[*i] - '0');
        if (v > REPEAT_INFINITE)
            v = (uint64_t)REPEAT_INFINITE + 1; /* saturate: too large anyway */
        (*i)++;
    }
    return v;
}

/* A quantifier at p->pos: 1 (parsed into min/max), 0 (none here: a '{'
 * that does not form {m}, {m,}, {,n} or {m,n} is a literal), -1 error. */
static int parse_quantifier(parser *p, uint32_t *min, uint32_t *max)
{
    int c = peek(p);
    if (c == '*' || c == '+' || c == '?') {
        *min = c == '+';
        *max = c == '?' ? 1 : REPEAT_INFINITE;
        p->pos++;
        return 1;
    }
    size_t i = p->pos + 1;
    if (c != '{' || (i < p->len && p->pattern[i] == '}'))
        return 0;
    size_t lo_at = i;
    uint64_t lo = read_count(p->pattern, &i, p->len), hi = lo;
    bool has_lo = i > lo_at, has_hi = has_lo;
    if (i < p->len && p->pattern[i] == ',') {
        size_t hi_at = ++i;
        hi = read_count(p->pattern, &i, p->len);
        has_hi = i > hi_at;
    }
    if (i >= p->len || p->pattern[i] != '}')
        return 0;
    if (lo >= REPEAT_INFINITE || (has_hi && hi >= REPEAT_INFINITE))
        return parse_fail(p, LT_ERR_INVALID, p->pos, "the repetition number is too large");
    *min = has_lo ? (uint32_t)lo : 0;
    *max = has_hi ? (uint32_t)hi : REPEAT_INFINITE;
    if (*max < *min)
        return parse_fail(p, LT_ERR_INVALID, p->pos, "min repeat greater than max repeat");
    p->pos = i + 1;
    return 1;
}

/* One item at p->pos (not a quantifier, '|' or ')'). *anchor is set for
 * ^ $ \A \Z \b \B, which Python refuses to repeat. */
static int parse_item(parser *p, bool global_flags_allowed, bool *anchor)
{
    unsigned char c = (unsigned char)p->pattern[p->pos];
    *anchor = false;
    if (c == '(')
        return parse_group(p, global_flags_allowed);
    if (c == '[')
        return parse_class(p);
    if (c == '.') {
        p->pos++;
        charset cs = {{0}};
        charset_add_range(&cs, 0, 255);
        if (!(p->flags & F_DOTALL))
            cs.bits['\n' >> 5] &= ~(1u << ('\n' & 31));
        unsigned saved = p->flags; /* '.' is not a letter set to case-fold */
        p->flags &= ~(unsigned)F_ICASE;
        int n = set_node(p, cs, false);
        p->flags = saved;
        return n;
    }
    if (c == '^' || c == '$') {
        p->pos++;
        *anchor = true;
        bool lines = p->flags & F_MULTILINE;
        return assert_node(p, c == '^' ? (lines ? AT_LINE_START : AT_START) : (lines ? AT_LINE_END : AT_END));
    }
    if (c != '\\') {
        p->pos++;
        return byte_node(p, c);
    }
    escape e;
    if (!parse_escape(p, false, &e))
        return -1;
    if (e.kind == ESC_ASSERT) {
        *anchor = true;
        return assert_node(p, (enum assertion)e.value);
    }
    if (e.kind == ESC_BYTE)
        return byte_node(p, (unsigned char)e.value);
    charset cs = {{0}};
    charset_add_category(&cs, (char)e.value, p->flags & F_ASCII);
    return set_node(p, cs, false);
}

/* Items up to '|', ')' or the end, each with its quantifiers. */
static int parse_sequence(parser *p, bool first_alternative)
{
    int seq = new_node(p, N_SEQUENCE);
    if (seq < 0)
        return -1;
    int last = -1; /* what a quantifier applies to: the last item added */
    bool last_is_anchor = false, last_is_repeat = false;
    while (p->pos < p->len && p->pattern[p->pos] != '|' && p->pattern[p->pos] != ')') {
        size_t at = p->pos;
        uint32_t min = 0, max = 0;
        int q = parse_quantifier(p, &min, &max);
        if (q < 0)
            return -1;
        if (q == 0) {
            bool anchor;
            int item = parse_item(p, first_alternative && last < 0, &anchor);
            if (item == NO_ITEM)
                continue;
            if (item < 0)
                return -1;
            if (last < 0)
                p->nodes[seq].child = item;
            else
                p->nodes[last].next = item;
            last = item;
            last_is_anchor = anchor;
            last_is_repeat = false;
            continue;
        }
        if (last < 0 || last_is_anchor)
            return parse_fail(p, LT_ERR_INVALID, at, "nothing to repeat");
        if (last_is_repeat)
            return parse_fail(p, LT_ERR_INVALID, at, "multiple repeat");
        bool lazy = peek(p) == '?';
        p->pos += lazy;
        if (!lazy && peek(p) == '+')
            return parse_fail(p, LT_ERR_UNSUPPORTED, at, "unsupported construct '%.*s+' (possessive quantifier)",
                              (int)(p->pos - at), p->pattern + at);
        /* The item's slot becomes the repeat, so the sequence's links stay
         * valid; the item moves to a new slot. */
        int moved = new_node(p, N_BYTE);
        if (moved < 0)
            return -1;
        p->nodes[moved] = p->nodes[last];
        p->nodes[last] = (node){.type = N_REPEAT, .flag = lazy, .min = min, .max = max,
                                .child = moved, .next = -1};
        last_is_repeat = true;
    }
    return seq;
}

static int parse_alternation(parser *p)
{
    bool top = p->depth == 0;
    int first = parse_sequence(p, top);
    if (first < 0 || peek(p) != '|')
        return first;
    int alt = new_node(p, N_ALTERNATION);
    if (alt < 0)
        return -1;
    p->nodes[alt].child = first;
    for (int last = first; peek(p) == '|'; ) {
        p->pos++;
        int branch = parse_sequence(p, false);
        if (branch < 0)
            return -1;
        p->nodes[last].next = branch;
        last = branch;
    }
    return alt;
}

/* ---- the program ---- */

enum opcode {
    OP_BYTE,          /* x: byte                                            */
    OP_SET,           /* x: set                                             */
    OP_ASSERT,        /* flag: assertion                                    */
    OP_JUMP,          /* x: target                                          */
    OP_SPLIT,         /* try x; on failure y                                */
    OP_LOOKAHEAD,     /* flag: negated; body from pc+1 ends in OP_MATCH; y: after it */
    OP_REPEAT_ONE,    /* x: repeat of one byte or set, matched in a loop here */
    OP_REPEAT_START,  /* x: repeat; count = 0, no iteration yet            */
    OP_REPEAT_STEP,   /* x: repeat; decide: next iteration (pc+1) or exit   */
    OP_REPEAT_ENTER,  /* x: repeat; remember where this iteration starts    */
    OP_REPEAT_END,    /* x: repeat; count++, back to the step               */
    OP_MATCH
};

typedef struct inst {
    uint8_t op, flag;
    uint32_t x, y;
} inst;

typedef struct repeat {
    uint32_t min, max;
    bool lazy;
    uint8_t item_op;   /* OP_REPEAT_ONE: OP_BYTE or OP_SET, with item_arg */
    uint32_t item_arg;
    uint32_t step_pc, exit_pc;
} repeat;

struct lt_regex {
    inst *code;
    size_t n_code, cap_code;
    charset *sets;
    repeat *repeats;
    size_t n_repeats, cap_repeats;
};

static long emit(lt_regex *re, enum opcode op, unsigned flag, uint32_t x, uint32_t y)
{
    inst *code = grow_array(re->code, &re->cap_code, re->n_code + 1, sizeof *code);
    if (!code)
        return -1;
    re->code = code;
    code[re->n_code] = (inst){(uint8_t)op, (uint8_t)flag, x, y};
    return (long)re->n_code++;
}

static long add_repeat(lt_regex *re, const node *n)
{
    repeat *reps = grow_array(re->repeats, &re->cap_repeats, re->n_repeats + 1, sizeof *reps);
    if (!reps)
        return -1;
    re->repeats = reps;
    reps[re->n_repeats] = (repeat){.min = n->min, .max = n->max, .lazy = n->flag};
    return (long)re->n_repeats++;
}

/* Emits node idx; false when out of memory.  Jumps hold absolute targets. */
static bool compile_node(lt_regex *re, const node *nodes, int idx)
{
    const node *n = &nodes[idx];
    switch ((enum node_type)n->type) {
    case N_BYTE: return emit(re, OP_BYTE, 0, n->arg, 0) >= 0;
    case N_SET: return emit(re, OP_SET, 0, n->arg, 0) >= 0;
    case N_ASSERT: return emit(re, OP_ASSERT, n->flag, 0, 0) >= 0;
    case N_SEQUENCE:
        for (int k = n->child; k >= 0; k = nodes[k].next)
            if (!compile_node(re, nodes, k))
                return false;
        return true;
    case N_ALTERNATION: {
        /* SPLIT b1,next; b1; JUMP end; next: SPLIT b2,next2; ... bN; end:
         * The JUMPs are chained through x until end is known. */
        long jumps = -1;
        for (int k = n->child; k >= 0; k = nodes[k].next) {
            long split = nodes[k].next >= 0 ? emit(re, OP_SPLIT, 0, 0, 0) : 0;
            if (split < 0 || !compile_node(re, nodes, k))
                return false;
            if (nodes[k].next < 0)
                break;
            long jump = emit(re, OP_JUMP, 0, (uint32_t)jumps, 0);
            if (jump < 0)
                return false;
            jumps = jump;
            re->code[split].x = (uint32_t)split + 1;
            re->code[split].y = (uint32_t)re->n_code;
        }
        while (jumps >= 0) {
            long prev = (long)(int32_t)re->code[jumps].x;
            re->code[jumps].x = (uint32_t)re->n_code;
            jumps = prev;
        }
        return true;
    }
    case N_LOOKAHEAD: {
        long look = emit(re, OP_LOOKAHEAD, n->flag, 0, 0);
        if (look < 0 || !compile_node(re, nodes, n->child) || emit(re, OP_MATCH, 0, 0, 0) < 0)
            return false;
        re->code[look].y = (uint32_t)re->n_code;
        return true;
    }
    case N_REPEAT: {
        /* "(?:x)*" and "(x)*" repeat x itself: look through one-item groups */
        int item_idx = n->child;
        while (nodes[item_idx].type == N_SEQUENCE && nodes[item_idx].child >= 0
               && nodes[nodes[item_idx].child].next < 0)
            item_idx = nodes[item_idx].child;
        const node *item = &nodes[item_idx];
        if (n->max == 0)
            return true; /* x{0} matches the empty string */
        if (n->min == 1 && n->max == 1)
            return compile_node(re, nodes, n->child);
        if (item->type == N_BYTE || item->type == N_SET) {
            long r = add_repeat(re, n);
            if (r < 0)
                return false;
            re->repeats[r].item_op = item->type == N_BYTE ? OP_BYTE : OP_SET;
            re->repeats[r].item_arg = item->arg;
            return emit(re, OP_REPEAT_ONE, 0, (uint32_t)r, 0) >= 0;
        }
        if (n->min == 0 && n->max == 1) { /* x? needs no counter */
            long split = emit(re, OP_SPLIT, 0, 0, 0);
            if (split < 0 || !compile_node(re, nodes, n->child))
                return false;
            uint32_t body = (uint32_t)split + 1, after = (uint32_t)re->n_code;
            re->code[split].x = n->flag ? after : body;
            re->code[split].y = n->flag ? body : after;
            return true;
        }
        long r = add_repeat(re, n);
        if (r < 0 || emit(re, OP_REPEAT_START, 0, (uint32_t)r, 0) < 0)
            return false;
        long step = emit(re, OP_REPEAT_STEP, 0, (uint32_t)r, 0);
        if (step < 0 || emit(re, OP_REPEAT_ENTER, 0, (uint32_t)r, 0) < 0
            || !compile_node(re, nodes, n->child) || emit(re, OP_REPEAT_END, 0, (uint32_t)r, 0) < 0)
            return false;
        re->repeats[r].step_pc = (uint32_t)step;
        re->repeats[r].exit_pc = (uint32_t)re->n_code;
        return true;
    }
    }
    return false;
}

void lt_regex_free(lt_regex *re)
{
    if (!re)
        return;
    free(re->code);
    free(re->sets);
    free(re->repeats);
    free(re);
}

lt_regex *lt_regex_compile(const char *pattern, lt_error *err)
{
    if (!pattern) {
        fill_error(err, LT_ERR_USAGE, "regex: no pattern given");
        return NULL;
    }
    parser p = {.pattern = pattern, .len = strlen(pattern), .err = err};
    if (p.len > MAX_PATTERN_BYTES) {
        parse_fail(&p, LT_ERR_UNSUPPORTED, 0, "pattern longer than %d bytes", MAX_PATTERN_BYTES);
        return NULL;
    }
    for (size_t i = 0; i < p.len; i++)
        if ((unsigned char)pattern[i] >= 0x80) {
            parse_fail(&p, LT_ERR_UNSUPPORTED, i, "unsupported non-ASCII character");
            return NULL;
        }
    lt_regex *re = NULL;
    int root = parse_alternation(&p);
    if (root >= 0 && p.pos < p.len) /* only a ')' stops the top level early */
        root = parse_fail(&p, LT_ERR_INVALID, p.pos, "unbalanced parenthesis");
    if (root >= 0 && !(re = calloc(1, sizeof *re)))
        parse_fail(&p, LT_ERR_NOMEM, 0, "out of memory");
    if (re && (!compile_node(re, p.nodes, root) || emit(re, OP_MATCH, 0, 0, 0) < 0)) {
        parse_fail(&p, LT_ERR_NOMEM, 0, "out of memory");
        lt_regex_free(re);
        re = NULL;
    }
    if (re) {
        re->sets = p.sets; /* handed over */
        p.sets = NULL;
    }
    free(p.nodes);
    free(p.sets);
    return re;
}

/* ---- the backtracking machine ---- */

/* A choice point, or an undo record for a repeat's registers.  They share
 * one stack so that backtracking restores registers in the right order. */
enum entry_kind { BT_THREAD, BT_UNDO_COUNT, BT_UNDO_START, BT_GREEDY_ONE, BT_LAZY_ONE };

typedef struct bt_entry {
    uint32_t kind;
    uint32_t id; /* pc to resume at, or repeat index              */
    size_t a, b; /* position(s) or saved register value           */
} bt_entry;

enum { RUN_NOMATCH = 0, RUN_MATCH = 1, RUN_GAVE_UP = -1 };
#define NO_POSITION SIZE_MAX

typedef struct matcher {
    const lt_regex *re;
    const unsigned char *s;
    size_t len;
    bool full;               /* fullmatch: the top level must end at len */
    size_t *count, *start;   /* per repeat: iterations, start of the last one */
    bt_entry *stack;
    size_t top, cap;
    bool stack_on_heap;
    uint64_t steps;
} matcher;

static bool push(matcher *m, enum entry_kind kind, uint32_t id, size_t a, size_t b)
{
    if (m->top == m->cap) {
        if (m->cap >= MAX_BACKTRACK_ENTRIES)
            return false;
        size_t cap = m->cap * 2;
        bt_entry *grown = m->stack_on_heap ? realloc(m->stack, cap * sizeof *grown)
                                           : malloc(cap * sizeof *grown);
        if (!grown)
            return false;
        if (!m->stack_on_heap)
            memcpy(grown, m->stack, m->top * sizeof *grown);
        m->stack = grown;
        m->cap = cap;
        m->stack_on_heap = true;
    }
    m->stack[m->top++] = (bt_entry){kind, id, a, b};
    return true;
}

static bool set_register(matcher *m, size_t *regs, enum entry_kind undo, uint32_t r, size_t value)
{
    if (regs[r] == value)
        return true;
    if (!push(m, undo, r, regs[r], 0))
        return false;
    regs[r] = value;
    return true;
}

static bool item_matches(const lt_regex *re, const repeat *rp, unsigned char c)
{
    return rp->item_op == OP_BYTE ? c == rp->item_arg : charset_has(&re->sets[rp->item_arg], c);
}

static bool assertion_holds(const matcher *m, enum assertion kind, size_t pos)
{
    const unsigned char *s = m->s;
    size_t len = m->len;
    switch (kind) {
    case AT_START: return pos == 0;
    case AT_LINE_START: return pos == 0 || s[pos - 1] == '\n';
    case AT_END: return pos == len || (pos + 1 == len && s[pos] == '\n');
    case AT_LINE_END: return pos == len || s[pos] == '\n';
    case AT_TEXT_END: return pos == len;
    case AT_WORD_BOUNDARY:
    case AT_NOT_WORD_BOUNDARY: {
        if (len == 0) /* Python: neither \b nor \B matches in an empty string */
            return false;
        bool before = pos > 0 && is_word(s[pos - 1]), after = pos < len && is_word(s[pos]);
        return (before != after) == (kind == AT_WORD_BOUNDARY);
    }
    }
    return false;
}

/* Pops to the next choice point above base, undoing register changes on
 * the way; false when none is left. */
static bool backtrack(matcher *m, size_t base, uint32_t *pc, size_t *pos)
{
    while (m->top > base) {
        bt_entry *e = &m->stack[m->top - 1];
        switch ((enum entry_kind)e->kind) {
        case BT_THREAD:
            *pc = e->id;
            *pos = e->a;
            m->top--;
            return true;
        case BT_UNDO_COUNT: m->count[e->id] = e->a; m->top--; break;
        case BT_UNDO_START: m->start[e->id] = e->a; m->top--; break;
        case BT_GREEDY_ONE: /* a: shortest end, b: end tried last (> a) */
            *pos = --e->b;
            *pc = e->id;
            if (e->b == e->a)
                m->top--;
            return true;
        case BT_LAZY_ONE: { /* id: the REPEAT_ONE, a: end tried last, b: items still allowed */
            const repeat *rp = &m->re->repeats[m->re->code[e->id].x];
            if (e->b > 0 && e->a < m->len && item_matches(m->re, rp, m->s[e->a])) {
                *pos = ++e->a;
                e->b--;
                *pc = e->id + 1;
                return true;
            }
            m->top--;
            break;
        }
        }
    }
    return false;
}

/* Runs the program from pc at pos.  toplevel is false inside a lookahead,
 * whose OP_MATCH accepts any end. */
static int run(matcher *m, uint32_t pc, size_t pos, bool toplevel)
{
    const lt_regex *re = m->re;
    const size_t base = m->top;
    for (;;) {
        if (++m->steps > STEP_BUDGET)
            return RUN_GAVE_UP;
        const inst *in = &re->code[pc];
        bool ok = true;
        switch ((enum opcode)in->op) {
        case OP_BYTE:
            ok = pos < m->len && m->s[pos] == in->x;
            pos++, pc++;
            break;
        case OP_SET:
            ok = pos < m->len && charset_has(&re->sets[in->x], m->s[pos]);
            pos++, pc++;
            break;
        case OP_ASSERT:
            ok = assertion_holds(m, (enum assertion)in->flag, pos);
            pc++;
            break;
        case OP_JUMP:
            pc = in->x;
            break;
        case OP_SPLIT:
            if (!push(m, BT_THREAD, in->y, pos, 0))
                return RUN_GAVE_UP;
            pc = in->x;
            break;
        case OP_LOOKAHEAD: {
            /* The body's own choices are dropped once it is decided, as in
             * Python (lookarounds are atomic); pos does not move. */
            int r = run(m, pc + 1, pos, false);
            if (r == RUN_GAVE_UP)
                return r;
            ok = (r == RUN_MATCH) != (in->flag != 0);
            pc = in->y;
            break;
        }
        case OP_REPEAT_ONE: {
            const repeat *rp = &re->repeats[in->x];
            size_t limit = m->len - pos, n = 0;
            if ((rp->lazy ? rp->min : rp->max) < limit)
                limit = rp->lazy ? rp->min : rp->max;
            while (n < limit && item_matches(re, rp, m->s[pos + n]))
                n++;
            m->steps += n;
            if (n < rp->min) {
                ok = false;
                break;
            }
            if (rp->lazy && rp->max > rp->min) {
                size_t more = rp->max == REPEAT_INFINITE ? SIZE_MAX : rp->max - rp->min;
                if (!push(m, BT_LAZY_ONE, pc, pos + n, more))
                    return RUN_GAVE_UP;
            } else if (!rp->lazy && n > rp->min) {
                if (!push(m, BT_GREEDY_ONE, pc + 1, pos + rp->min, pos + n))
                    return RUN_GAVE_UP;
            }
            pos += n;
            pc++;
            break;
        }
        case OP_REPEAT_START:
            if (!set_register(m, m->count, BT_UNDO_COUNT, in->x, 0)
                || !set_register(m, m->start, BT_UNDO_START, in->x, NO_POSITION))
                return RUN_GAVE_UP;
            pc++;
            break;
        case OP_REPEAT_STEP: {
            /* As Python: below min, iterate; then stop after an iteration
             * that matched the empty string (it would loop forever). */
            const repeat *rp = &re->repeats[in->x];
            size_t done = m->count[in->x];
            if (done < rp->min) {
                pc++;
            } else if (done < rp->max && m->start[in->x] != pos) {
                uint32_t enter = pc + 1, leave = rp->exit_pc;
                if (!push(m, BT_THREAD, rp->lazy ? enter : leave, pos, 0))
                    return RUN_GAVE_UP;
                pc = rp->lazy ? leave : enter;
            } else {
                pc = rp->exit_pc;
            }
            break;
        }
        case OP_REPEAT_ENTER:
            if (!set_register(m, m->start, BT_UNDO_START, in->x, pos))
                return RUN_GAVE_UP;
            pc++;
            break;
        case OP_REPEAT_END:
            if (!set_register(m, m->count, BT_UNDO_COUNT, in->x, m->count[in->x] + 1))
                return RUN_GAVE_UP;
            pc = re->repeats[in->x].step_pc;
            break;
        case OP_MATCH:
            if (toplevel && m->full && pos != m->len) {
                ok = false;
                break;
            }
            m->top = base;
            return RUN_MATCH;
        }
        if (!ok && !backtrack(m, base, &pc, &pos))
            return RUN_NOMATCH;
    }
}

int lt_regex_exec(const lt_regex *re, const char *subject, bool search)
{
    if (!re || !subject)
        return 0;
    enum { LOCAL_ENTRIES = 64, LOCAL_REPEATS = 16 };
    bt_entry local_stack[LOCAL_ENTRIES];
    size_t local_registers[2 * LOCAL_REPEATS];
    matcher m = {.re = re, .s = (const unsigned char *)subject, .len = strlen(subject),
                 .full = !search, .stack = local_stack, .cap = LOCAL_ENTRIES};
    size_t *registers = local_registers;
    if (re->n_repeats > LOCAL_REPEATS && !(registers = malloc(2 * re->n_repeats * sizeof *registers)))
        return -1;
    m.count = registers;
    m.start = registers + re->n_repeats;
    for (size_t r = 0; r < re->n_repeats; r++)
        m.count[r] = 0, m.start[r] = NO_POSITION;
    int result = RUN_NOMATCH;
    size_t last_start = search ? m.len : 0;
    for (size_t start = 0; start <= last_start && result == RUN_NOMATCH; start++)
        result = run(&m, 0, start, true);
    if (m.stack_on_heap)
        free(m.stack);
    if (registers != local_registers)
        free(registers);
    return result == RUN_GAVE_UP ? -1 : result;
}

bool lt_regex_fullmatch(const lt_regex *re, const char *s)
{
    return lt_regex_exec(re, s, false) == 1;
}

bool lt_regex_search(const lt_regex *re, const char *s)
{
    return lt_regex_exec(re, s, true) == 1;
}
