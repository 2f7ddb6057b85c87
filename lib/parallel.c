/* parallel.c - run n independent tasks on a few threads. */
#include <stdatomic.h>
#include <unistd.h>

#include "source_sink.h"

typedef struct parallel_job {
    void (*fn)(void *ctx, size_t i);
    void *ctx;
    size_t n;
    atomic_size_t next;
} parallel_job;

static void *parallel_worker(void *arg)
{
    parallel_job *job = arg;
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->n;)
        job->fn(job->ctx, i);
    return NULL;
}

unsigned lti_thread_count(unsigned asked)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = asked ? asked : online > 0 ? (unsigned)online : 1;
    return n > LT_MAX_THREADS ? LT_MAX_THREADS : n;
}

void lti_parallel_for(size_t n, unsigned threads, void (*fn)(void *ctx, size_t i), void *ctx)
{
    parallel_job job = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&job.next, 0);
    size_t wanted = lti_thread_count(threads);
    if (wanted > n)
        wanted = n;
    pthread_t tid[LT_MAX_THREADS];
    size_t started = 0;
    for (; started + 1 < wanted; started++)
        if (pthread_create(&tid[started], NULL, parallel_worker, &job) != 0)
            break;
    parallel_worker(&job); /* the calling thread works too; it alone if none started */
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}
