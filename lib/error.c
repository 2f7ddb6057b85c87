/* error.c - status names, exit codes and the error-filling helpers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "source_sink.h"

int lt_status_exit_code(lt_status status)
{
    switch (status) {
    case LT_OK: return 0;
    case LT_ERR_USAGE: return 2;
    case LT_ERR_INVALID:
    case LT_ERR_UNSUPPORTED: return 3;
    case LT_ERR_IO:
    case LT_ERR_NOMEM: return 4;
    }
    return 4;
}

const char *lt_status_name(lt_status status)
{
    switch (status) {
    case LT_OK: return "ok";
    case LT_ERR_USAGE: return "usage error";
    case LT_ERR_INVALID: return "invalid input";
    case LT_ERR_UNSUPPORTED: return "unsupported input";
    case LT_ERR_IO: return "I/O error";
    case LT_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}

/* The message is one printable line whatever a file put in the names it
 * quotes (a tensor name or JSON key holding "\n" or ESC): each control
 * character becomes \xNN, as the CLI shows them (the fuzzing of issue #11
 * found several); a message that no longer fits is cut. */
void lti_escape_controls(char *msg, size_t size)
{
    char copy[LT_ERROR_MAX];
    snprintf(copy, sizeof copy, "%s", msg);
    size_t o = 0;
    for (const char *c = copy; *c && o + 1 < size; c++) {
        unsigned char u = (unsigned char)*c;
        if (u < 0x20 || u == 0x7f) {
            if (o + 5 > size)
                break;
            o += (size_t)snprintf(msg + o, size - o, "\\x%02x", u);
        } else {
            msg[o++] = (char)u;
        }
    }
    msg[o] = '\0';
}

lt_status lti_fail(lt_error *err, lt_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        lti_escape_controls(err->message, sizeof err->message);
        err->status = status;
    }
    return status;
}

lt_status lti_fail_errno(lt_error *err, const char *path, const char *what)
{
    int saved = errno;
    return lti_fail(err, LT_ERR_IO, "%s: %s: %s", path, what, strerror(saved));
}

lt_status lti_fail_nomem(lt_error *err, const char *path)
{
    return lti_fail(err, LT_ERR_NOMEM, "%s: out of memory", path ? path : "loratool");
}
