/*
 * peft.h - what the two halves of the PEFT reader share: the config parser
 * (formats/peft_config.c) and the weights' reader (formats/peft.c).
 */
#ifndef LT_PEFT_H
#define LT_PEFT_H

#include "adapter.h"
#include "format.h"
#include "regex.h"

#define CONFIG_NAME "adapter_config.json"

/* One rank_pattern / alpha_pattern entry, compiled as PEFT matches it:
 * re.match(rf"(.*\.)?({key})$", module_name). */
typedef struct pattern_entry {
    char *key;
    lti_regex *re;
    double value;
} pattern_entry;

/* One trainable_token_indices entry: the module it names (NULL for the
 * list form, which means the input embedding) and its token ids. */
typedef struct token_set {
    char *module;
    uint64_t *ids;
    size_t n;
} token_set;

typedef struct string_list {
    char **items;
    size_t count, cap;
} string_list;

/* What the config parser leaves for the weights' reader.  MODEL is the
 * model being filled (borrowed); the parser sets its config. */
typedef struct peft_parse {
    lt_adapter *model;
    const char *config_path;
    string_list targets, to_save, unknown;
    pattern_entry *rank_pattern, *alpha_pattern;
    size_t n_rank_pattern, n_alpha_pattern;
    token_set *token_sets;        /* trainable_token_indices             */
    size_t n_token_sets;
} peft_parse;

/* Parse adapter_config.json's TEXT into p->model's config and p. */
lt_status lti_peft_parse_config(peft_parse *p, const char *text, lt_error *err);
/* Free what p holds (not the model). */
void lti_peft_parse_free(peft_parse *p);
void lti_peft_patterns_free(pattern_entry *entries, size_t n);

#endif
