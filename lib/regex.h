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
/* re.fullmatch(pattern, s) is not None */
bool lti_regex_fullmatch(const lti_regex *re, const char *s);
/* re.search(pattern, s) is not None */
bool lti_regex_search(const lti_regex *re, const char *s);

/* Match with the outcome made visible: 1 match, 0 no match, -1 when the
 * step budget ran out (lti_regex_fullmatch/search report -1 as no match). */
int lti_regex_exec(const lti_regex *re, const char *subject, bool search);

#endif
