/* registry.c - the table of formats, and opening a path by bidding: each
 * format looks at the path (directory contents or a file's first bytes)
 * and bids; the highest bid opens it. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

static const lti_format *const all_formats[] = {
    &lti_format_peft,
    &lti_format_bnb,
    &lti_format_safetensors_sharded,
    &lti_format_safetensors,
    &lti_format_torch_bin,
    &lti_format_gguf,
    &lti_format_loralib,
    NULL,
};

/* What the formats bid on: is PATH a directory, and a file's first bytes
 * (HEAD, 64 bytes). */
static lt_status probe_path(const char *path, unsigned char *head, lti_probe *probe, lt_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return lti_fail_errno(err, path, "cannot open");
    *probe = (lti_probe){.path = path, .is_dir = S_ISDIR(st.st_mode), .head = head, .head_len = 0};
    if (!probe->is_dir) {
        int fd;
        lt_status opened = lti_open_regular(path, &fd, &st, err);
        if (opened != LT_OK)
            return opened;
        ssize_t got = read(fd, head, 64);
        close(fd);
        if (got < 0)
            return lti_fail_errno(err, path, "cannot read");
        probe->head_len = (size_t)got;
    }
    return LT_OK;
}

/* The format that bids highest for PROBE as a source or as an adapter
 * (the first among equals), or NULL when none bids. */
static const lti_format *highest_bidder(const lti_probe *probe, bool adapter)
{
    const lti_format *best = NULL;
    int best_bid = 0;
    for (size_t i = 0; all_formats[i]; i++) {
        const lti_format *f = all_formats[i];
        int bid = adapter ? (f->adapter_bid ? f->adapter_bid(probe) : 0) : f->bid(probe);
        if (bid > best_bid) {
            best_bid = bid;
            best = f;
        }
    }
    return best;
}

lt_adapter *lt_adapter_open(const char *path, lt_error *err)
{
    return lt_adapter_open_with(path, NULL, err);
}

lt_adapter *lt_adapter_open_with(const char *path, const lt_adapter_open_options *opts, lt_error *err)
{
    unsigned char head[64];
    lti_probe probe;
    if (probe_path(path, head, &probe, err) != LT_OK)
        return NULL;
    const lti_format *best = highest_bidder(&probe, true);
    if (!best) {
        lti_fail(err, LT_ERR_UNSUPPORTED, "%s: not an adapter", path);
        return NULL;
    }
    return best->open_adapter_with ? best->open_adapter_with(path, opts, err) : best->open_adapter(path, err);
}

lt_source *lt_source_open(const char *path, lt_error *err)
{
    unsigned char head[64];
    lti_probe probe;
    if (probe_path(path, head, &probe, err) != LT_OK)
        return NULL;
    const lti_format *best = highest_bidder(&probe, false);
    if (!best) {
        lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unrecognized format%s", path,
                probe.is_dir ? " (directory holds no adapter_config.json, "
                               "model.safetensors.index.json or model.safetensors)"
                             : "");
        return NULL;
    }
    return best->open(path, err);
}

lt_sink *lt_sink_create(const char *format, const char *path,
                        const lt_sink_options *opts, lt_error *err)
{
    for (size_t i = 0; all_formats[i]; i++)
        if (strcmp(all_formats[i]->name, format) == 0 && all_formats[i]->create)
            return all_formats[i]->create(path, opts, err);
    lti_fail(err, LT_ERR_USAGE, "%s: cannot write format '%s'", path, format);
    return NULL;
}
