/* progress.c - the progress line of resize, combine, extract and model
 * conversion (cli.h).  Progress is for a person watching a terminal: it
 * goes to stderr, and only when that is a terminal and stdout is not JSON. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* lt_progress_fn: the library serializes the calls. */
static void show(void *ctx, size_t done, size_t total)
{
    cli_progress *p = ctx;
    double t = now_s();
    if (done < total && t - p->last < 0.1)
        return;
    p->last = t;
    fprintf(stderr, "\r%s: %zu/%zu %s, %.0f s   ", p->what, done, total, p->unit, t - p->start);
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

lt_progress_fn cli_progress_start(cli_progress *p, const char *what, const char *unit, bool json)
{
    if (json || !isatty(STDERR_FILENO))
        return NULL;
    *p = (cli_progress){what, unit, now_s(), 0};
    return show;
}
