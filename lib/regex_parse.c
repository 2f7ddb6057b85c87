/* regex_parse.c - Python `re` syntax into a parse tree (lib/regex.c has
 * the semantics, the limits, the program and the matcher). */
#include "regex_internal.h"

/* ---- character sets: one bit per byte value ---- */

static void charset_add_range(charset *cs, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++)
        cs->bits[c >> 5] |= 1u << (c & 31);
}

static void charset_invert(charset *cs)
{
    for (int i = 0; i < 8; i++)
        cs->bits[i] = ~cs->bits[i];
}

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

void lti_regex_fill_error(lt_error *err, lt_status status, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, LT_ERROR_MAX, fmt, ap);
    va_end(ap);
    /* one line: a pattern's control characters (a "\n" in a JSON string)
     * are shown as '?' */
    for (char *c = err->message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    err->status = status;
}

/* Records the first error only (later ones are consequences); returns -1. */
int lti_regex_parse_fail(parser *p, lt_status status, size_t offset, const char *fmt, ...)
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
    lti_regex_fill_error(p->err, status, "regex: %s at offset %zu in '%.*s%s'", what, offset,
               shown, p->pattern, p->len > 200 ? "..." : "");
    return -1;
}

/* Grows an array to hold need items; NULL (array untouched) on failure. */
void *lti_regex_grow_array(void *items, size_t *cap, size_t need, size_t item_size)
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
    node *nodes = lti_regex_grow_array(p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *nodes);
    if (!nodes)
        return lti_regex_parse_fail(p, LT_ERR_NOMEM, p->pos, "out of memory");
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
    charset *sets = lti_regex_grow_array(p->sets, &p->cap_sets, p->n_sets + 1, sizeof *sets);
    if (!sets)
        return lti_regex_parse_fail(p, LT_ERR_NOMEM, p->pos, "out of memory");
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
        return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "bad escape (end of pattern)"), false;
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
            return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "incomplete escape \\%c", c), false;
        if (value > 0x10FFFF)
            return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "bad escape \\U%08x", value), false;
        break;
    }
    case 'N':
        return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, at,
                          "unsupported construct '\\N' (named character)"), false;
    default:
        if (!is_digit(c))
            break;
        if (in_class) { /* octal, up to three digits; \8 \9 are errors */
            if (c > '7')
                return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "bad escape \\%c", c), false;
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
                return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "invalid group reference %u", group), false;
            return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, at,
                              "unsupported construct '\\%u' (backreference)", group), false;
        }
        if (value > 0377)
            return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "octal escape value outside of range 0-0o377"), false;
        break;
    }
    if (c == 'x' || c == 'u' || c == 'U' || is_digit(c)) {
        if (value >= 0x80)
            return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, at,
                              "unsupported non-ASCII character U+%04X", value), false;
        out->value = value;
    } else if (is_ascii_letter(c)) {
        return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "bad escape \\%c", c), false;
    }
    return true; /* any other escaped character stands for itself */
}

/* ---- classes, groups, sequences ---- */

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
            return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "unterminated character set");
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
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "unterminated character set");
            if (p->pattern[p->pos] == ']') { /* "a-]": a and '-' */
                charset_add_range(&cs, '-', '-');
                range = false;
            } else {
                if (!parse_class_member(p, &hi))
                    return -1;
                if (lo.kind != ESC_BYTE || hi.kind != ESC_BYTE || hi.value < lo.value)
                    return lti_regex_parse_fail(p, LT_ERR_INVALID, member_at, "bad character range %.*s",
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
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot use 'L' flag with a str pattern");
            *add |= bit;
            if ((bit & TYPE_FLAGS) && (*add & TYPE_FLAGS) != bit)
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: flags 'a', 'u' and 'L' are incompatible");
            c = peek(p);
            p->pos++;
            if (c == -1 || (c != ')' && c != '-' && c != ':' && !flag_bit(c)))
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: missing -, : or ) or unknown flag");
            if (c == ')' || c == '-' || c == ':')
                break;
        }
    }
    if (c == ')')
        return 1;
    if (*add & F_TEMPLATE)
        return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot turn on global flag");
    if (c == '-') {
        for (;;) {
            c = peek(p);
            p->pos++;
            if (c == -1 || !flag_bit(c))
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: missing flag or :");
            if (flag_bit(c) & (TYPE_FLAGS | F_TEMPLATE))
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: cannot turn off flag '%c'", c);
            *del |= flag_bit(c);
            if (peek(p) == ':') {
                p->pos++;
                break;
            }
        }
    }
    if (*add & *del)
        return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad inline flags: flag turned on and off");
    return 2;
}

/* A named group's name must be an identifier, used once. */
static bool parse_group_name(parser *p, size_t open)
{
    size_t start = p->pos, end = start;
    while (end < p->len && p->pattern[end] != '>')
        end++;
    if (end >= p->len)
        return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "missing >, unterminated name"), false;
    size_t n = end - start;
    bool ok = n > 0 && !is_digit((unsigned char)p->pattern[start]);
    for (size_t i = start; ok && i < end; i++)
        ok = is_word((unsigned char)p->pattern[i]);
    if (!ok)
        return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "bad character in group name '%.*s'", (int)n, p->pattern + start), false;
    for (size_t k = 0; k < p->n_names; k++)
        if (p->name_len[k] == n && memcmp(p->pattern + p->name_at[k], p->pattern + start, n) == 0)
            return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "redefinition of group name '%.*s'", (int)n, p->pattern + start), false;
    if (p->n_names == MAX_NAMED_GROUPS)
        return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, open, "more than %d named groups", MAX_NAMED_GROUPS), false;
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
            return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "unexpected end of pattern");
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
            return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "unknown extension ?P");
        } else if (c == '#') {
            while (p->pos < p->len && p->pattern[p->pos] != ')')
                p->pos++;
            if (p->pos++ >= p->len)
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "missing ), unterminated comment");
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
                return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, open, "unsupported construct '(?%c' (%s flag)",
                                  (add | del) & F_VERBOSE ? 'x' : 't', (add | del) & F_VERBOSE ? "verbose" : "template");
            if (kind == 1 && !global_flags_allowed)
                return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "global flags not at the start of the expression");
            p->flags = (p->flags | add) & ~del;
            if ((p->flags & F_ASCII) && (p->flags & F_UNICODE))
                return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, open, "flags 'a' and 'u' both in force");
            if (kind == 1)
                return NO_ITEM; /* flags for the whole pattern: they come first */
        } else {
            return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "unknown extension ?%c", c);
        }
        if (construct)
            return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, open, "unsupported construct '%s)", construct);
    } else {
        p->groups++;
    }
    if (++p->depth > MAX_NESTING)
        return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, open, "groups nested deeper than %d", MAX_NESTING);
    int body = lti_regex_parse_alternation(p);
    p->depth--;
    p->flags = saved_flags;
    if (body < 0)
        return -1;
    if (peek(p) != ')')
        return lti_regex_parse_fail(p, LT_ERR_INVALID, open, "missing ), unterminated subpattern");
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
        return lti_regex_parse_fail(p, LT_ERR_INVALID, p->pos, "the repetition number is too large");
    *min = has_lo ? (uint32_t)lo : 0;
    *max = has_hi ? (uint32_t)hi : REPEAT_INFINITE;
    if (*max < *min)
        return lti_regex_parse_fail(p, LT_ERR_INVALID, p->pos, "min repeat greater than max repeat");
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
            return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "nothing to repeat");
        if (last_is_repeat)
            return lti_regex_parse_fail(p, LT_ERR_INVALID, at, "multiple repeat");
        bool lazy = peek(p) == '?';
        p->pos += lazy;
        if (!lazy && peek(p) == '+')
            return lti_regex_parse_fail(p, LT_ERR_UNSUPPORTED, at, "unsupported construct '%.*s+' (possessive quantifier)",
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

int lti_regex_parse_alternation(parser *p)
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

