/*
 * format.h - the plug-in interface of formats/: what a format offers the
 * registry (a bid on a path, an opener, a writer) and the registry's
 * list.  Not installed; lib/ never includes it.
 */
#ifndef LT_FORMAT_H
#define LT_FORMAT_H

#include "adapter.h"

/* ---- formats (formats/registry.c) ---- */

/* What a format sees when bidding for a path. */
typedef struct lti_probe {
    const char *path;
    bool is_dir;
    const unsigned char *head;   /* first bytes of a regular file */
    size_t head_len;
} lti_probe;

typedef struct lti_format {
    const char *name;
    /* 0 = not mine; higher = more certain (100 = magic bytes matched) */
    int (*bid)(const lti_probe *probe);
    lt_source *(*open)(const char *path, lt_error *err);
    /* NULL when the format cannot be written */
    lt_sink *(*create)(const char *path, const lt_sink_options *opts, lt_error *err);
    /* Adapters: the same bidding for lt_adapter_open (NULL: holds none). */
    int (*adapter_bid)(const lti_probe *probe);
    lt_adapter *(*open_adapter)(const char *path, lt_error *err);
} lti_format;

extern const lti_format lti_format_safetensors;
extern const lti_format lti_format_safetensors_sharded;
extern const lti_format lti_format_peft;
extern const lti_format lti_format_gguf;
extern const lti_format lti_format_torch_bin;

/* The GGUF writer (formats/gguf_write.c), the create op of lti_format_gguf. */
lt_sink *lti_gguf_sink_create(const char *path, const lt_sink_options *opts, lt_error *err);

#endif
