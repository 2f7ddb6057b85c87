/*
 * regex.h - Python-compatible regular expressions for the patterns in PEFT
 * configs (target_modules, rank_pattern, alpha_pattern, layer patterns).
 * Internal to libloratool: used by lib/ and formats/, and by the tests.
 */
#ifndef LT_REGEX_H
#define LT_REGEX_H

#include "loratool.h"

/* A compiled pattern with the semantics of Python's `re` module for the
 * constructs PEFT configs use: literals and escapes, '.', classes with
 * ranges and \d \w \s \D \W \S, groups (capturing, (?:...)), alternation,
 * greedy and lazy quantifiers * + ? {m} {m,} {m,n}, anchors ^ $ \A \Z \b \B,
 * lookahead (?=...) (?!...).  Anything else fails to compile. */
typedef struct lti_regex lti_regex;

/* Compile; NULL with err set (LT_ERR_UNSUPPORTED or LT_ERR_INVALID naming
 * the construct and its position). */
lti_regex *lti_regex_compile(const char *pattern, lt_error *err);
void lti_regex_free(lti_regex *re);
/* re.fullmatch(pattern, s) is not None; a give-up (below) reads as false,
 * so these two are for the tests only: callers use lti_regex_exec. */
bool lti_regex_fullmatch(const lti_regex *re, const char *s);
/* re.search(pattern, s) is not None (give-up: false, as above) */
bool lti_regex_search(const lti_regex *re, const char *s);

/* Match with the outcome made visible: 1 match, 0 no match, -1 when a
 * documented budget ran out (steps, choice points, memo; lib/regex.c).
 * Callers must report -1 as an error naming the pattern, never take it as
 * a mismatch; lti_regex_fullmatch/search are only for patterns whose
 * give-ups the caller has ruled out. */
int lti_regex_exec(const lti_regex *re, const char *subject, bool search);
/* lti_regex_exec with the memo switched on after memo_after_steps steps
 * (lti_regex_exec: MEMO_AFTER_STEPS); for the tests, which run the
 * Python cases with the memo on from the first step. */
int lti_regex_exec_memo(const lti_regex *re, const char *subject, bool search, uint64_t memo_after_steps);

#endif
