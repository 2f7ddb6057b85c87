/* peft.c - PEFT adapter directories: adapter_config.json + weights.
 *
 * The config is parsed by formats/peft_config.c; the weights file is
 * opened as a tensor source and every key is classified (spec/peft.md):
 * LoRA factors grouped into modules, everything else a replacement tensor,
 * all filled into the core model (lib/adapter.h).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "merged_linear.h"
#include "peft.h"

#define CONFIG_MAX_BYTES (16u << 20)
#define PEFT_PREFIX "base_model.model."

/* ---- weights: key classification ---- */

typedef enum key_role {
    ROLE_A, ROLE_B, ROLE_E, ROLE_BIAS, ROLE_EMB_A, ROLE_EMB_B, ROLE_MAGNITUDE
} key_role;

static const struct {
    const char *suffix;
    key_role role;
} lora_suffixes[] = {
    {".lora_A.weight", ROLE_A},
    {".lora_B.weight", ROLE_B},
    {".lora_B.bias", ROLE_BIAS},
    {".lora_embedding_A", ROLE_EMB_A},
    {".lora_embedding_B", ROLE_EMB_B},
    {".lora_magnitude_vector.weight", ROLE_MAGNITUDE},
    {".lora_magnitude_vector", ROLE_MAGNITUDE},
    {".lora_A", ROLE_A}, /* AdaLoRA saves its factors without ".weight" */
    {".lora_B", ROLE_B},
    {".lora_E", ROLE_E},
};

/* Markers of PEFT / LyCORIS methods that are not LoRA. */
static const struct {
    const char *marker;
    const char *type;
} foreign_markers[] = {
    {"hada_w", "LOHA"},        {"lokr_w", "LOKR"},         {"ia3_l", "IA3"},
    {"vera_lambda", "VERA"},   {"oft_r", "OFT"},           {"oft_R", "OFT"},
    {"boft_R", "BOFT"},        {"prompt_embeddings", "PROMPT_TUNING"},
    {".lora_up.", "kohya LoRA"}, {".lora_down.", "kohya LoRA"},
};

static lt_status add_replacement(lt_adapter *ad, const lt_tensor_info *t, long index,
                                 const char *target, lt_replacement_kind kind, lt_error *err)
{
    lt_replacement r = {.key = t->name, .target = target, .kind = kind, .tensor = index, .n_params = t->n_elems};
    return lti_adapter_add_replacement(ad, &r, err);
}

static lt_status classify_key(lt_adapter *ad, long index, lt_error *err)
{
    lt_source *weights = lt_adapter_source(ad);
    const lt_tensor_info *t = lt_source_tensor(weights, (size_t)index);
    const char *key = t->name;
    const char *path = lt_source_path(weights);
    if (strncmp(key, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0)
        key += strlen(PEFT_PREFIX);
    size_t len = strlen(key);

    for (size_t i = 0; i < sizeof lora_suffixes / sizeof *lora_suffixes; i++) {
        if (!lti_ends_with(key, lora_suffixes[i].suffix))
            continue;
        size_t name_len = len - strlen(lora_suffixes[i].suffix);
        if (name_len == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: key '%s' names no module", path, t->name);
        lt_lora_module *m = NULL;
        lt_status s = lti_adapter_module(ad, key, name_len, &m, err);
        if (s != LT_OK)
            return s;
        long *slot = NULL;
        switch (lora_suffixes[i].role) {
        case ROLE_A: slot = &m->tensor_a; break;
        case ROLE_B: slot = &m->tensor_b; break;
        case ROLE_E: slot = &m->tensor_e; break;
        case ROLE_BIAS: slot = &m->tensor_bias; break;
        case ROLE_MAGNITUDE: slot = &m->tensor_magnitude; break;
        case ROLE_EMB_A: slot = &m->tensor_a; m->kind = LT_MODULE_EMBEDDING; break;
        case ROLE_EMB_B: slot = &m->tensor_b; m->kind = LT_MODULE_EMBEDDING; break;
        }
        if (*slot >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has two tensors for '%s'", path,
                           m->name, lora_suffixes[i].suffix + 1);
        *slot = index;
        return LT_OK;
    }
    for (size_t i = 0; i < sizeof foreign_markers / sizeof *foreign_markers; i++)
        if (strstr(key, foreign_markers[i].marker))
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unsupported adapter type %s (key '%s')",
                           path, foreign_markers[i].type, t->name);
    if (strstr(key, ".lora_"))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unrecognized LoRA key '%s'", path, t->name);

    static const char token_suffix[] = ".token_adapter.trainable_tokens_delta";
    if (lti_ends_with(key, token_suffix)) {
        char *target = lti_asprintf("%.*s.weight", (int)(len - strlen(token_suffix)), key);
        if (!target)
            return lti_fail_nomem(err, path);
        lt_status s = add_replacement(ad, t, index, target, LT_REPLACE_TOKEN_ROWS, err);
        free(target);
        return s;
    }
    return add_replacement(ad, t, index, key, LT_REPLACE_FULL, err);
}

/* Rank from rank_pattern, then r (PEFT's get_pattern_key: first key that
 * matches wins, in the config's order).  *found is NULL when none matches;
 * a key whose match ran out of the regex budget is an error, never a
 * mismatch. */
static lt_status find_pattern(const peft_parse *p, const char *what, const pattern_entry *entries, size_t n,
                              const char *name, const pattern_entry **found, lt_error *err)
{
    *found = NULL;
    for (size_t i = 0; i < n; i++) {
        int r = lti_regex_exec(entries[i].re, name, false);
        if (r < 0)
            return lti_fail(err, LT_ERR_UNSUPPORTED,
                            "%s: %s key '%s': the match exceeds the regex budget (module '%s')",
                            p->config_path, what, entries[i].key, name);
        if (r == 1) {
            *found = &entries[i];
            break;
        }
    }
    return LT_OK;
}

static uint64_t elems_of(const lt_adapter *ad, long index)
{
    return index >= 0 ? lt_source_tensor(lt_adapter_source(ad), (size_t)index)->n_elems : 0;
}

static lt_status check_module(const peft_parse *p, lt_lora_module *m, lt_error *err)
{
    lt_adapter *ad = p->model;
    lt_source *weights = lt_adapter_source(ad);
    const char *path = lt_source_path(weights);
    const lt_peft_config *cfg = lt_adapter_config(ad);
    bool adalora = strcmp(cfg->peft_type, "ADALORA") == 0;
    if (m->tensor_a < 0 || m->tensor_b < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has %s but no %s", path, m->name,
                       m->tensor_a < 0 ? "lora_B" : "lora_A", m->tensor_a < 0 ? "lora_A" : "lora_B");
    const lt_tensor_info *a = lt_source_tensor(weights, (size_t)m->tensor_a);
    const lt_tensor_info *b = lt_source_tensor(weights, (size_t)m->tensor_b);
    if (!lt_dtype_is_float(a->dtype) || !lt_dtype_is_float(b->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': LoRA factors of dtype %s/%s", path,
                       m->name, lt_dtype_name(a->dtype), lt_dtype_name(b->dtype));
    if (a->n_dims < 2 || b->n_dims < 2)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_A and lora_B must have at least 2 dimensions",
                       path, m->name);
    if (m->kind == LT_MODULE_EMBEDDING) {
        /* A [r, vocab], B [dim, r]; the base weight is [vocab, dim] */
        if (a->n_dims != 2 || b->n_dims != 2 || b->shape[1] != a->shape[0])
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': lora_embedding_B [%llu, %llu] does not fit lora_embedding_A [%llu, %llu]",
                           path, m->name, (unsigned long long)b->shape[0], (unsigned long long)b->shape[1],
                           (unsigned long long)a->shape[0], (unsigned long long)a->shape[1]);
        m->rank = (uint32_t)a->shape[0];
        m->out_features = a->shape[1];
        m->in_features = b->shape[0];
    } else {
        /* Linear: A [r, in], B [out, r].  Conv: A [r, in, k...], B [out, r, 1...] */
        uint64_t kernel = 1;
        for (uint32_t d = 2; d < a->n_dims; d++)
            kernel *= a->shape[d];
        for (uint32_t d = 2; d < b->n_dims; d++)
            if (b->shape[d] != 1 && !(b->n_dims == 3 && a->n_dims == 2))
                return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B must be 1x1 over the kernel",
                               path, m->name);
        /* PEFT 0.3 enable_lora (merged QKV): A [r * groups, in] is a Linear,
         * B [out, r, 1] a grouped Conv1d; taken as a linear module with
         * B [out, r] (the kernel axis is 1) and rank r */
        bool grouped = b->n_dims == 3 && a->n_dims == 2;
        if (grouped && (b->shape[2] != 1 || b->shape[1] == 0 || a->shape[0] % b->shape[1] != 0))
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': legacy grouped lora_B [%llu, %llu, %llu] does not fit lora_A [%llu, %llu]",
                           path, m->name, (unsigned long long)b->shape[0], (unsigned long long)b->shape[1],
                           (unsigned long long)b->shape[2], (unsigned long long)a->shape[0],
                           (unsigned long long)a->shape[1]);
        if (grouped) {
            m->kind = LT_MODULE_LINEAR;
            m->rank = (uint32_t)b->shape[1];
            m->out_features = b->shape[0];
            m->in_features = a->shape[1];
        } else if (a->n_dims != b->n_dims || b->shape[1] != a->shape[0])
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': lora_B %s[%llu, %llu] does not fit lora_A [%llu, %llu] (rank mismatch)",
                           path, m->name, b->n_dims > 2 ? "(conv) " : "", (unsigned long long)b->shape[0],
                           (unsigned long long)b->shape[1], (unsigned long long)a->shape[0],
                           (unsigned long long)a->shape[1]);
        if (!grouped) {
            m->kind = a->n_dims > 2 ? LT_MODULE_CONV : LT_MODULE_LINEAR;
            m->rank = (uint32_t)a->shape[0];
            m->out_features = b->shape[0];
            if (!lti_mul_u64(a->shape[1], kernel, &m->in_features))
                return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': shape overflows", path, m->name);
        }
    }
    if (a->shape[0] == 0 || a->shape[0] > 0xFFFFFFFFu)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has rank %llu", path, m->name,
                       (unsigned long long)a->shape[0]);
    if (m->tensor_e >= 0) {
        const lt_tensor_info *e = lt_source_tensor(weights, (size_t)m->tensor_e);
        if (e->n_elems != m->rank)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_E has %llu elements, rank is %u",
                           path, m->name, (unsigned long long)e->n_elems, m->rank);
    } else if (adalora) {
        return lti_fail(err, LT_ERR_INVALID, "%s: AdaLoRA module '%s' has no lora_E", path, m->name);
    }
    if (m->tensor_magnitude >= 0 &&
        lt_source_tensor(weights, (size_t)m->tensor_magnitude)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': DoRA magnitude has %llu elements, expected %llu",
                       path, m->name,
                       (unsigned long long)lt_source_tensor(weights, (size_t)m->tensor_magnitude)->n_elems,
                       (unsigned long long)m->out_features);
    if (m->tensor_bias >= 0 &&
        lt_source_tensor(weights, (size_t)m->tensor_bias)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B.bias has %llu elements, expected %llu",
                       path, m->name,
                       (unsigned long long)lt_source_tensor(weights, (size_t)m->tensor_bias)->n_elems,
                       (unsigned long long)m->out_features);

    const pattern_entry *rank_entry, *alpha_entry;
    lt_status found = find_pattern(p, "rank_pattern", p->rank_pattern, p->n_rank_pattern, m->name, &rank_entry, err);
    if (found == LT_OK)
        found = find_pattern(p, "alpha_pattern", p->alpha_pattern, p->n_alpha_pattern, m->name, &alpha_entry, err);
    if (found != LT_OK)
        return found;
    uint64_t config_rank = rank_entry ? (uint64_t)rank_entry->value : cfg->r;
    if (!adalora && config_rank != m->rank)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: module '%s': lora_A has %u rows but the config gives rank %llu (%s)", path,
                       m->name, m->rank, (unsigned long long)config_rank,
                       rank_entry ? "rank_pattern" : "r");
    m->alpha = alpha_entry ? alpha_entry->value : cfg->lora_alpha;
    if (adalora) {
        /* SVDLinear: scaling = lora_alpha if > 0 else r, divided by
         * ranknum + 1e-5 where ranknum (never saved) is init_r; PEFT
         * builds the layers with r = init_r, hence the fallback */
        double scaling = m->alpha > 0 ? m->alpha : (double)cfg->adalora_init_r;
        m->scale = scaling / ((double)cfg->adalora_init_r + 1e-5);
    } else {
        m->scale = cfg->use_rslora ? m->alpha / sqrt((double)m->rank) : m->alpha / (double)m->rank;
    }
    m->fan_in_fan_out = cfg->fan_in_fan_out;
    char *target = lti_asprintf("%s.weight", m->name);
    lt_status s = target ? lti_adapter_set_target(ad, m, target, strlen(target), err) : lti_fail_nomem(err, path);
    free(target);
    if (s != LT_OK)
        return s;
    m->n_params = elems_of(ad, m->tensor_a) + elems_of(ad, m->tensor_b) + elems_of(ad, m->tensor_e) +
                  elems_of(ad, m->tensor_magnitude) + elems_of(ad, m->tensor_bias);
    return LT_OK;
}

/* The token ids a trainable_tokens_delta's rows go to: the
 * trainable_token_indices entry naming its module (exactly, or as its last
 * components), else the list form. */
static lt_status attach_token_ids(const peft_parse *p, lt_replacement *r, lt_error *err)
{
    lt_source *weights = lt_adapter_source(p->model);
    const char *path = lt_source_path(weights);
    size_t module_len = strlen(r->target) - strlen(".weight");
    const token_set *found = NULL;
    for (size_t i = 0; i < p->n_token_sets && !found; i++) {
        const token_set *set = &p->token_sets[i];
        size_t n = set->module ? strlen(set->module) : 0;
        if (set->module && n <= module_len && strncmp(r->target + module_len - n, set->module, n) == 0 &&
            (n == module_len || r->target[module_len - n - 1] == '.'))
            found = set;
    }
    for (size_t i = 0; i < p->n_token_sets && !found; i++)
        if (!p->token_sets[i].module)
            found = &p->token_sets[i];
    if (!found)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' has no trainable_token_indices in the config", path, r->key);
    const lt_tensor_info *t = lt_source_tensor(weights, (size_t)r->tensor);
    if (t->n_dims != 2 || t->shape[0] != found->n)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' has %llu rows for %zu trainable token ids", path, r->key,
                       (unsigned long long)(t->n_dims ? t->shape[0] : 0), found->n);
    r->token_indices = found->ids;
    r->n_token_indices = found->n;
    return LT_OK;
}

/* The weights file of an adapter directory, malloc'd; NULL if none.  Any
 * entry of the name counts (opening it refuses a FIFO or directory). */
static char *find_weights(const char *dir, lt_error *err)
{
    char *path = lti_path_join(dir, "adapter_model.safetensors");
    if (path && access(path, F_OK) == 0)
        return path;
    free(path);
    path = lti_path_join(dir, "adapter_model.bin");
    if (path && access(path, F_OK) == 0)
        return path; /* legacy torch.save weights (formats/torch_bin.c) */
    lti_fail(err, LT_ERR_INVALID, "%s: no adapter_model.safetensors or adapter_model.bin in the adapter directory",
            dir);
    free(path);
    return NULL;
}

/* A lone weights file is not a PEFT adapter; name the method when its keys
 * show one (kohya/LyCORIS files, for instance), so the refusal is useful. */
static void refuse_single_file(const char *path, lt_error *err)
{
    lt_source *src = lt_source_open(path, err);
    if (!src)
        return;
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const char *key = lt_source_tensor(src, i)->name;
        for (size_t k = 0; k < sizeof foreign_markers / sizeof *foreign_markers; k++) {
            if (strstr(key, foreign_markers[k].marker)) {
                lti_fail(err, LT_ERR_UNSUPPORTED,
                        "%s: unsupported adapter type %s (not a PEFT directory; key '%s')", path,
                        foreign_markers[k].type, key);
                lt_source_close(src);
                return;
            }
        }
    }
    lt_source_close(src);
    lti_fail(err, LT_ERR_INVALID, "%s: a weights file, not a PEFT adapter directory (needs %s)", path,
            CONFIG_NAME);
}

/* ---- as a tensor source: lt_source_open on an adapter directory ---- */

static int peft_bid(const lti_probe *probe)
{
    if (!probe->is_dir)
        return 0;
    char *config = lti_path_join(probe->path, CONFIG_NAME);
    int bid = config && lti_is_file(config) ? 100 : 0;
    free(config);
    return bid;
}

static lt_source *peft_open(const char *path, lt_error *err)
{
    char *weights = find_weights(path, err);
    if (!weights)
        return NULL;
    lt_source *src = lt_source_open(weights, err);
    free(weights);
    if (src)
        src->format = "peft";
    return src;
}

/* PEFT <= 0.3's merged layers (lora_B a grouped Conv1d [rows, r, 1]) as
 * one LoRA on the fused weight, as loralib checkpoints are read
 * (formats/merged_linear.c); the groups come from the config's
 * enable_lora. */
static lt_status expand_merged_layers(peft_parse *p, lt_error *err)
{
    lt_adapter *ad = p->model;
    lt_source *mem = NULL;
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        lt_lora_module *m = lti_adapter_module_mut(ad, i);
        lt_source *src = lt_adapter_source(ad);
        if (m->kind != LT_MODULE_LINEAR || lt_source_tensor(src, (size_t)m->tensor_b)->n_dims != 3)
            continue;
        if (!p->enable_lora)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B is a grouped Conv1d but the config has no enable_lora",
                           p->config_path, m->name);
        if (!mem && !(mem = lti_adapter_wrap_source(ad, err)))
            return err ? err->status : LT_ERR_NOMEM;
        lti_merged_groups g = {.mask = p->enable_lora, .n_groups = p->n_enable_lora, .r = m->rank, .alpha = m->alpha};
        lt_status s = lti_merged_linear_expand(ad, mem, m, &g, err);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

/* Read the weights of P's model and fill its modules and replacements. */
static lt_status read_weights(peft_parse *p, const char *dir, lt_error *err)
{
    lt_adapter *ad = p->model;
    char *weights = find_weights(dir, err);
    lt_source *src = weights ? lt_source_open(weights, err) : NULL;
    free(weights);
    if (!src)
        return err ? err->status : LT_ERR_INVALID;
    src->format = "peft";
    lti_adapter_set_source(ad, src);
    lt_status s = LT_OK;
    for (size_t i = 0; i < lt_source_tensor_count(src) && s == LT_OK; i++)
        s = classify_key(ad, (long)i, err);
    for (size_t i = 0; i < lt_adapter_module_count(ad) && s == LT_OK; i++)
        s = check_module(p, lti_adapter_module_mut(ad, i), err);
    if (s == LT_OK)
        s = expand_merged_layers(p, err);
    for (size_t i = 0; i < lt_adapter_replacement_count(ad) && s == LT_OK; i++)
        if (lt_adapter_replacement(ad, i)->kind == LT_REPLACE_TOKEN_ROWS)
            s = attach_token_ids(p, lti_adapter_replacement_mut(ad, i), err);
    /* the token ids now belong to the model (replacements point at them) */
    for (size_t i = 0; i < p->n_token_sets && s == LT_OK; i++) {
        if (!lti_adapter_keep(ad, p->token_sets[i].ids))
            s = lti_fail_nomem(err, dir);
        p->token_sets[i].ids = NULL;
    }
    if (s == LT_OK && lt_adapter_module_count(ad) == 0 && lt_adapter_replacement_count(ad) == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: adapter has no tensors", lt_source_path(src));
    return s;
}

static lt_adapter *peft_open_adapter(const char *dir, lt_error *err)
{
    if (!lti_is_dir(dir)) {
        refuse_single_file(dir, err);
        return NULL;
    }
    char *config_path = lti_path_join(dir, CONFIG_NAME);
    lt_adapter *ad = config_path ? lti_adapter_new(dir, config_path, err) : NULL;
    if (!ad) {
        if (!config_path)
            lti_fail_nomem(err, dir);
        free(config_path);
        return NULL;
    }
    peft_parse p = {.model = ad, .config_path = lti_adapter_config_path(ad)};
    char *text = NULL;
    lt_status s = access(config_path, F_OK) != 0 && errno == ENOENT
                      ? lti_fail(err, LT_ERR_INVALID, "%s: not an adapter directory (no %s)", dir, CONFIG_NAME)
                      : lti_read_small_file(config_path, CONFIG_MAX_BYTES, &text, NULL, err);
    free(config_path);
    if (s == LT_OK)
        s = lti_peft_parse_config(&p, text, err);
    free(text);
    if (s == LT_OK)
        s = read_weights(&p, dir, err);
    lti_peft_parse_free(&p);
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    return ad;
}

/* Any directory is for the PEFT reader to judge (it names what is
 * missing); so is a lone weights file (it names the method it holds). */
static int peft_adapter_bid(const lti_probe *probe)
{
    return peft_bid(probe) ? 100 : 1;
}

const lti_format lti_format_peft = {
    .name = "peft",
    .bid = peft_bid,
    .open = peft_open,
    .create = NULL,
    .adapter_bid = peft_adapter_bid,
    .open_adapter = peft_open_adapter,
};
