/* merge_write.c - handing filled output buffers from the merge's workers to
 * one writer at a time.
 *
 * Buffered writes to one file serialize on the file's lock in the kernel,
 * and a thread waiting there spins.  So writes are queued instead: the
 * worker that queues a buffer while nobody writes becomes the writer and
 * writes until the queue is empty; a worker that finds a writer busy goes
 * back to computing into its other buffer.  Each worker owns two slots;
 * a slot is reused only once written.  Offsets are fixed per item, so the
 * order of the writes does not change the file.  A slot may hold bytes
 * lent by an input's mapping instead (a copy, written without a copy into
 * our memory), given back once written.
 */
#include <stdlib.h>

#include "merge_internal.h"

struct merge_writer {
    lt_sink *sink;
    pthread_mutex_t lock;
    pthread_cond_t slot_written;
    out_slot **ring;            /* queued slots, guarded by lock          */
    size_t head, len, cap;
    bool writing;               /* a worker is writing, guarded by lock   */
    bool failed;                /* guarded by lock                        */
    lt_error error;             /* the first write error                  */
};

merge_writer *merge_writer_create(lt_sink *sink, size_t n_workers)
{
    merge_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cap = 2 * n_workers; /* every slot queued at once, at most */
    w->ring = calloc(w->cap, sizeof *w->ring);
    if (!w->ring) {
        free(w);
        return NULL;
    }
    w->sink = sink;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->slot_written, NULL);
    return w;
}

void merge_writer_free(merge_writer *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->slot_written);
    free(w->ring);
    free(w);
}

out_slot *merge_writer_slot(merge_writer *w, out_slot pair[2])
{
    pthread_mutex_lock(&w->lock);
    while (pair[0].queued && pair[1].queued)
        pthread_cond_wait(&w->slot_written, &w->lock);
    out_slot *free_slot = pair[0].queued ? &pair[1] : &pair[0];
    pthread_mutex_unlock(&w->lock);
    return free_slot;
}

void merge_writer_submit(merge_writer *w, out_slot *slot)
{
    pthread_mutex_lock(&w->lock);
    slot->queued = true;
    w->ring[(w->head + w->len++) % w->cap] = slot;
    if (w->writing) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->writing = true;
    while (w->len) {
        out_slot *next = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->len--;
        bool skip = w->failed;
        pthread_mutex_unlock(&w->lock);
        lt_error err;
        lt_status s = skip ? LT_OK
                           : lt_sink_write(w->sink, next->index, next->off, next->lent ? next->lent : next->data,
                                           next->len, &err);
        if (next->lent)
            lti_source_release(next->lent_from, next->lent_index, next->lent, next->len);
        next->lent = NULL;
        pthread_mutex_lock(&w->lock);
        if (s != LT_OK && !w->failed) {
            w->failed = true;
            w->error = err;
        }
        next->queued = false;
        pthread_cond_broadcast(&w->slot_written);
    }
    w->writing = false;
    pthread_mutex_unlock(&w->lock);
}

void merge_writer_drain(merge_writer *w, out_slot pair[2])
{
    pthread_mutex_lock(&w->lock);
    while (pair[0].queued || pair[1].queued)
        pthread_cond_wait(&w->slot_written, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

bool merge_writer_failed(merge_writer *w, lt_error *err)
{
    pthread_mutex_lock(&w->lock);
    bool failed = w->failed;
    if (failed && err)
        *err = w->error;
    pthread_mutex_unlock(&w->lock);
    return failed;
}
