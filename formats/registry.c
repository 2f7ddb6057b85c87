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
    &lti_format_safetensors_sharded,
    &lti_format_safetensors,
    &lti_format_torch_bin,
    &lti_format_gguf,
    NULL,
};

lt_source *lt_source_open(const char *path, lt_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        lti_fail_errno(err, path, "cannot open");
        return NULL;
    }
    unsigned char head[64];
    lti_probe probe = {.path = path, .is_dir = S_ISDIR(st.st_mode), .head = head, .head_len = 0};
    if (!probe.is_dir) {
        int fd;
        if (lti_open_regular(path, &fd, &st, err) != LT_OK)
            return NULL;
        ssize_t got = read(fd, head, sizeof head);
        close(fd);
        if (got < 0) {
            lti_fail_errno(err, path, "cannot read");
            return NULL;
        }
        probe.head_len = (size_t)got;
    }
    const lti_format *best = NULL;
    int best_bid = 0;
    for (size_t i = 0; all_formats[i]; i++) {
        int bid = all_formats[i]->bid(&probe);
        if (bid > best_bid) {
            best_bid = bid;
            best = all_formats[i];
        }
    }
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
