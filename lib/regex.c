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
 * A compiled lti_regex is never written after compilation, so any number of
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
 *   - one fullmatch or search may run at most STEP_BUDGET machine steps,
 *     hold at most MAX_BACKTRACK_ENTRIES choice points and MAX_MEMO_BYTES of
 *     memo.  Past any of them lti_regex_exec() returns -1 ("gave up"), which
 *     callers must report as an error: it is never a "no match".
 *
 * Why the budget is rarely reached: once a match has run MEMO_AFTER_STEPS
 * steps, the machine remembers the states it has entered at its join points
 * (each OP_SPLIT, OP_REPEAT_STEP and the instruction after an OP_REPEAT_ONE)
 * and never enters one twice.  This is sound because nothing but the state
 * decides what follows: there are no backreferences (refused at compile
 * time), captures are never observed, and the answer is whether any path
 * reaches OP_MATCH (the order of lazy/greedy choices decides which match
 * Python reports, never whether one exists).  A state is
 *   (pc, pos, where the innermost lookahead began,
 *    for each counted repeat whose loop holds pc: its count, clamped to min
 *    when max is unbounded, and whether its current iteration began at pos)
 * - the last bit is all of the iteration's start that matters, since pos
 * never moves backwards inside an iteration.  A state entered before either
 * failed everywhere it led, or is an ancestor of the current path (a cycle
 * that consumed nothing), so skipping it loses no match: ordinary
 * depth-first reachability with a visited set.  The start of the innermost
 * lookahead is part of the state because a lookahead body that succeeded
 * left states on its success path marked; the result of each (lookahead,
 * pos) is remembered instead, so the same body never runs twice from the
 * same position.  (a*)*b, (a|aa)*b, (?:(a+)+b|a+) then take time
 * polynomial in the subject's length.
 */
#include "regex_internal.h"

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
    bool counted;      /* a general repeat with registers (not OP_REPEAT_ONE) */
    int32_t parent;    /* counted repeat whose loop holds this one's, or -1 */
    uint8_t item_op;   /* OP_REPEAT_ONE: OP_BYTE or OP_SET, with item_arg */
    uint32_t item_arg;
    uint32_t step_pc, exit_pc;
} repeat;

struct lti_regex {
    inst *code;
    size_t n_code, cap_code;
    charset *sets;
    repeat *repeats;
    size_t n_repeats, cap_repeats;
    /* per pc: the innermost counted repeat whose loop [step_pc, exit_pc)
     * holds it, or -1; and whether the machine memoizes states there */
    int32_t *scope;
    bool *join;
};

static long emit(lti_regex *re, enum opcode op, unsigned flag, uint32_t x, uint32_t y)
{
    inst *code = lti_regex_grow_array(re->code, &re->cap_code, re->n_code + 1, sizeof *code);
    if (!code)
        return -1;
    re->code = code;
    code[re->n_code] = (inst){(uint8_t)op, (uint8_t)flag, x, y};
    return (long)re->n_code++;
}

static long add_repeat(lti_regex *re, const node *n)
{
    repeat *reps = lti_regex_grow_array(re->repeats, &re->cap_repeats, re->n_repeats + 1, sizeof *reps);
    if (!reps)
        return -1;
    re->repeats = reps;
    reps[re->n_repeats] = (repeat){.min = n->min, .max = n->max, .lazy = n->flag};
    return (long)re->n_repeats++;
}

/* Emits node idx; false when out of memory.  Jumps hold absolute targets. */
static bool compile_node(lti_regex *re, const node *nodes, int idx)
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
        re->repeats[r].counted = true;
        return true;
    }
    }
    return false;
}

void lti_regex_free(lti_regex *re)
{
    if (!re)
        return;
    free(re->code);
    free(re->sets);
    free(re->repeats);
    free(re->scope);
    free(re->join);
    free(re);
}

/* Fills re->scope and re->join.  Counted repeats are numbered in the order
 * of their step_pc and their loops nest, so one sweep with a stack of open
 * loops finds each pc's innermost loop. */
static bool find_scopes(lti_regex *re)
{
    re->scope = malloc((re->n_code + 1) * sizeof *re->scope);
    re->join = calloc(re->n_code + 1, sizeof *re->join);
    if (!re->scope || !re->join)
        return false;
    int32_t open = -1;
    size_t next = 0;
    for (size_t pc = 0; pc < re->n_code; pc++) {
        while (open >= 0 && re->repeats[open].exit_pc <= pc)
            open = re->repeats[open].parent;
        while (next < re->n_repeats && (!re->repeats[next].counted || re->repeats[next].step_pc < pc))
            next++;
        if (next < re->n_repeats && re->repeats[next].step_pc == pc) {
            re->repeats[next].parent = open;
            open = (int32_t)next++;
        }
        re->scope[pc] = open;
        uint8_t op = re->code[pc].op;
        if (op == OP_SPLIT || op == OP_REPEAT_STEP)
            re->join[pc] = true;
        if (op == OP_REPEAT_ONE)
            re->join[pc + 1] = true; /* the code always ends in OP_MATCH */
    }
    return true;
}

lti_regex *lti_regex_compile(const char *pattern, lt_error *err)
{
    if (!pattern) {
        lti_regex_fill_error(err, LT_ERR_USAGE, "regex: no pattern given");
        return NULL;
    }
    parser p = {.pattern = pattern, .len = strlen(pattern), .err = err};
    if (p.len > MAX_PATTERN_BYTES) {
        lti_regex_parse_fail(&p, LT_ERR_UNSUPPORTED, 0, "pattern longer than %d bytes", MAX_PATTERN_BYTES);
        return NULL;
    }
    for (size_t i = 0; i < p.len; i++)
        if ((unsigned char)pattern[i] >= 0x80) {
            lti_regex_parse_fail(&p, LT_ERR_UNSUPPORTED, i, "unsupported non-ASCII character");
            return NULL;
        }
    lti_regex *re = NULL;
    int root = lti_regex_parse_alternation(&p);
    if (root >= 0 && p.pos < p.len) /* only a ')' stops the top level early */
        root = lti_regex_parse_fail(&p, LT_ERR_INVALID, p.pos, "unbalanced parenthesis");
    if (root >= 0 && !(re = calloc(1, sizeof *re)))
        lti_regex_parse_fail(&p, LT_ERR_NOMEM, 0, "out of memory");
    if (re && (!compile_node(re, p.nodes, root) || emit(re, OP_MATCH, 0, 0, 0) < 0 || !find_scopes(re))) {
        lti_regex_parse_fail(&p, LT_ERR_NOMEM, 0, "out of memory");
        lti_regex_free(re);
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
#define LOOKAHEAD_RESULT (SIZE_MAX - 1) /* in a lookahead's key, where a state's has origin */

/* The memo: a set of states (and lookahead results), open addressing over
 * slots that point into an arena of key words. */
typedef struct memo_slot {
    uint64_t hash;    /* 0: empty */
    uint32_t key_at;  /* index of the key's first word in the arena */
    uint16_t key_len; /* words */
    uint16_t value;   /* a lookahead's result; unused for states */
} memo_slot;

typedef struct memo {
    memo_slot *slots;
    size_t n_slots, used;
    uint64_t *words;
    size_t n_words, cap_words;
} memo;

typedef struct matcher {
    const lti_regex *re;
    const unsigned char *s;
    size_t len;
    bool full;               /* fullmatch: the top level must end at len */
    size_t *count, *start;   /* per repeat: iterations, start of the last one */
    bt_entry *stack;
    size_t top, cap;
    bool stack_on_heap;
    uint64_t steps;
    bool memo_on;            /* from memo_after_steps steps on */
    uint64_t memo_after_steps;
    memo memo;
    uint64_t key[MAX_NESTING + 4];
} matcher;

static uint64_t hash_words(const uint64_t *w, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < n; i++) {
        h ^= w[i];
        h *= 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    return h | 1; /* never 0, the mark of an empty slot */
}

static void memo_free(memo *mm)
{
    free(mm->slots);
    free(mm->words);
}

static bool memo_grow(memo *mm)
{
    size_t n = mm->n_slots ? 2 * mm->n_slots : 1024;
    if (n * sizeof(memo_slot) + mm->cap_words * sizeof(uint64_t) > MAX_MEMO_BYTES)
        return false;
    memo_slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < mm->n_slots; i++) {
        if (!mm->slots[i].hash)
            continue;
        size_t j = mm->slots[i].hash & (n - 1);
        while (slots[j].hash)
            j = (j + 1) & (n - 1);
        slots[j] = mm->slots[i];
    }
    free(mm->slots);
    mm->slots = slots;
    mm->n_slots = n;
    return true;
}

/* The slot holding key[0..n), or NULL; *hash_out receives its hash for
 * memo_insert. */
static memo_slot *memo_find(const memo *mm, const uint64_t *key, size_t n, uint64_t *hash_out)
{
    uint64_t h = hash_words(key, n);
    *hash_out = h;
    if (!mm->n_slots)
        return NULL;
    for (size_t j = h & (mm->n_slots - 1); mm->slots[j].hash; j = (j + 1) & (mm->n_slots - 1)) {
        memo_slot *sl = &mm->slots[j];
        if (sl->hash == h && sl->key_len == n && memcmp(mm->words + sl->key_at, key, n * sizeof *key) == 0)
            return sl;
    }
    return NULL;
}

/* Adds key[0..n) (absent) with its value; false past MAX_MEMO_BYTES. */
static bool memo_insert(memo *mm, const uint64_t *key, size_t n, uint64_t h, bool value)
{
    if ((mm->used + 1) * 2 > mm->n_slots && !memo_grow(mm))
        return false;
    if (mm->n_words + n > mm->cap_words) {
        size_t cap = mm->cap_words ? 2 * mm->cap_words : 4096;
        if (cap > UINT32_MAX || cap * sizeof(uint64_t) + mm->n_slots * sizeof(memo_slot) > MAX_MEMO_BYTES)
            return false;
        uint64_t *words = realloc(mm->words, cap * sizeof *words);
        if (!words)
            return false;
        mm->words = words;
        mm->cap_words = cap;
    }
    memcpy(mm->words + mm->n_words, key, n * sizeof *key);
    size_t j = h & (mm->n_slots - 1);
    while (mm->slots[j].hash)
        j = (j + 1) & (mm->n_slots - 1);
    mm->slots[j] = (memo_slot){h, (uint32_t)mm->n_words, (uint16_t)n, value};
    mm->n_words += n;
    mm->used++;
    return true;
}

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

static bool item_matches(const lti_regex *re, const repeat *rp, unsigned char c)
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

/* The state at a join point (see the top of this file) into m->key;
 * its length in words, or 0 when the repeats nest too deep to say. */
static size_t state_key(matcher *m, uint32_t pc, size_t pos, size_t origin)
{
    const lti_regex *re = m->re;
    size_t n = 0;
    m->key[n++] = pc;
    m->key[n++] = pos;
    m->key[n++] = origin;
    for (int32_t r = re->scope[pc]; r >= 0; r = re->repeats[r].parent) {
        if (n == sizeof m->key / sizeof *m->key)
            return 0;
        const repeat *rp = &re->repeats[r];
        uint64_t count = m->count[r];
        if (rp->max == REPEAT_INFINITE && count > rp->min)
            count = rp->min;
        m->key[n++] = count << 1 | (m->start[r] == pos);
    }
    return n;
}

/* At a join point with the memo on: RUN_MATCH when the state is new (and
 * now remembered), RUN_NOMATCH when it was entered before, RUN_GAVE_UP past
 * the memo's budget. */
static int enter_state(matcher *m, uint32_t pc, size_t pos, size_t origin)
{
    size_t n = state_key(m, pc, pos, origin);
    uint64_t h;
    if (n == 0)
        return RUN_GAVE_UP;
    if (memo_find(&m->memo, m->key, n, &h))
        return RUN_NOMATCH;
    return memo_insert(&m->memo, m->key, n, h, false) ? RUN_MATCH : RUN_GAVE_UP;
}

static int run(matcher *m, uint32_t pc, size_t pos, size_t origin);

/* The result of the lookahead body after pc from pos (not yet negated),
 * from the memo when it has been decided there before. */
static int lookahead(matcher *m, uint32_t pc, size_t pos)
{
    uint64_t key[3] = {pc, pos, LOOKAHEAD_RESULT}, h;
    const memo_slot *known = m->memo_on ? memo_find(&m->memo, key, 3, &h) : NULL;
    if (known)
        return known->value ? RUN_MATCH : RUN_NOMATCH;
    int r = run(m, pc + 1, pos, pos);
    if (r != RUN_GAVE_UP && m->memo_on && !memo_find(&m->memo, key, 3, &h)
        && !memo_insert(&m->memo, key, 3, h, r == RUN_MATCH))
        return RUN_GAVE_UP;
    return r;
}

/* Runs the program from pc at pos.  origin is NO_POSITION at the top
 * level, else where the innermost lookahead began: its OP_MATCH accepts
 * any end. */
static int run(matcher *m, uint32_t pc, size_t pos, size_t origin)
{
    const lti_regex *re = m->re;
    const size_t base = m->top;
    const bool toplevel = origin == NO_POSITION;
    for (;;) {
        if (++m->steps > STEP_BUDGET)
            return RUN_GAVE_UP;
        m->memo_on |= m->steps > m->memo_after_steps;
        const inst *in = &re->code[pc];
        bool ok = true;
        if (m->memo_on && re->join[pc]) {
            int fresh = enter_state(m, pc, pos, origin);
            if (fresh == RUN_GAVE_UP)
                return fresh;
            if (fresh == RUN_NOMATCH) {
                if (!backtrack(m, base, &pc, &pos))
                    return RUN_NOMATCH;
                continue;
            }
        }
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
            int r = lookahead(m, pc, pos);
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

int lti_regex_exec(const lti_regex *re, const char *subject, bool search)
{
    return lti_regex_exec_memo(re, subject, search, MEMO_AFTER_STEPS);
}

int lti_regex_exec_memo(const lti_regex *re, const char *subject, bool search, uint64_t memo_after_steps)
{
    if (!re || !subject)
        return 0;
    enum { LOCAL_ENTRIES = 64, LOCAL_REPEATS = 16 };
    bt_entry local_stack[LOCAL_ENTRIES];
    size_t local_registers[2 * LOCAL_REPEATS];
    matcher m = {.re = re, .s = (const unsigned char *)subject, .len = strlen(subject),
                 .full = !search, .stack = local_stack, .cap = LOCAL_ENTRIES,
                 .memo_after_steps = memo_after_steps};
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
        result = run(&m, 0, start, NO_POSITION);
    memo_free(&m.memo);
    if (m.stack_on_heap)
        free(m.stack);
    if (registers != local_registers)
        free(registers);
    return result == RUN_GAVE_UP ? -1 : result;
}

bool lti_regex_fullmatch(const lti_regex *re, const char *s)
{
    return lti_regex_exec(re, s, false) == 1;
}

bool lti_regex_search(const lti_regex *re, const char *s)
{
    return lti_regex_exec(re, s, true) == 1;
}

