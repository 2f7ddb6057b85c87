/* merge_run.c - streaming a merge plan into a sink with worker threads.
 *
 * The output is cut into work items (byte ranges to copy, element ranges to
 * convert, row blocks to merge); threads take items in order from a shared
 * counter.  The arithmetic of a row block is merge_rows.c's: each element's
 * value does not depend on the thread that computes it or on how rows are
 * blocked, so the bytes do not depend on the thread count.  Filled output
 * buffers are written by one thread at a time (merge_write.c).  Memory:
 * each thread holds one item's buffers and two output slots (a few MiB),
 * plus the adapters' factors held by the plan; never a whole base tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge_internal.h"

#define COPY_CHUNK_BYTES (2u << 20)
/* Elements per merge item: large items mean fewer write and madvise calls
 * a byte (1M measured best); with many threads smaller, so that the
 * threads' buffers (at most about 32 bytes an element) stay within
 * BUFFERS_BYTES in all. */
#define MAX_BLOCK_ELEMS (1024u << 10)
#define MIN_BLOCK_ELEMS (64u << 10)
#define BUFFERS_BYTES (128u << 20)

typedef struct work_item {
    size_t tensor;
    uint64_t first, count;   /* bytes (copy), rows (merge) or elements */
    uint64_t out_bytes;
    bool last;               /* the tensor's last item                 */
} work_item;

typedef struct run_state {
    lt_merge_plan *plan;
    lt_sink *sink;
    work_item *items;
    size_t n_items;
    size_t next_item;            /* guarded by lock */
    pthread_mutex_t lock;
    bool failed;                 /* guarded by lock */
    lt_error error;              /* guarded by lock: the error of ...   */
    size_t failed_tensor;        /* ... the first failing item in file  */
    uint64_t failed_first;       /*     order, whatever the threads     */
    size_t block_elems;          /* the merge items' size           */
    size_t max_block_elems;      /* ... or a longer row             */
    lt_merge_progress progress;  /* guarded by lock */
    uint64_t reported_bytes;
    merge_writer *writer;
} run_state;

typedef struct thread_buffers {
    unsigned char *raw;    /* input bytes of one item            */
    double *acc;           /* the item's values in double        */
    out_slot slots[2];     /* output bytes, filled then queued   */
    out_slot *slot;        /* the one this item fills            */
    uint64_t *redo;        /* vector kernel: elements to redo    */
} thread_buffers;

static bool item_is_merge(const plan_tensor *t) { return t->action == ACT_MERGE; }

/* The input bytes of an item: in place from the source's mapping when it
 * lends them (no copy), else read into the thread's buffer.  A borrowed
 * range is given back with lti_source_release once used. */
static lt_status fetch(lt_source *src, size_t index, uint64_t off, size_t len, thread_buffers *buf,
                       const unsigned char **out, lt_error *err)
{
    const unsigned char *lent = lti_source_borrow(src, index, off, len);
    if (lent) {
        *out = lent;
        return LT_OK;
    }
    *out = buf->raw;
    return lt_source_read(src, index, off, buf->raw, len, err);
}

/* Where an item's output goes. */
static void aim_slot(out_slot *slot, const run_state *st, const plan_tensor *t, uint64_t off, uint64_t len)
{
    slot->index = (long)(t - st->plan->tensors);
    slot->off = off;
    slot->len = (size_t)len;
    slot->lent = NULL;
}

static void aim_rows(thread_buffers *buf, const run_state *st, const plan_tensor *t, const work_item *w)
{
    aim_slot(buf->slot, st, t, merge_bytes_of(t->out_dtype, w->first * t->cols), merge_bytes_of(t->out_dtype, w->count * t->cols));
}

static lt_status run_merge_item(run_state *st, const plan_tensor *t, const work_item *w,
                                thread_buffers *buf, lt_error *err)
{
    lt_source *base = st->plan->base;
    size_t len = (size_t)merge_bytes_of(t->in_dtype, w->count * t->cols);
    const unsigned char *raw;
    lt_status s = fetch(base, (size_t)t->base_index, merge_bytes_of(t->in_dtype, w->first * t->cols), len, buf, &raw, err);
    if (s != LT_OK)
        return s;
    s = merge_rows(t, w->first, w->count, raw, buf->slot->data, buf->acc, buf->redo, err);
    if (s == LT_OK)
        aim_rows(buf, st, t, w);
    if (raw != buf->raw)
        lti_source_release(base, (size_t)t->base_index, raw, len);
    return s;
}

/* Copy, convert, replace and add: byte or element ranges, no arithmetic
 * but one rounding when the dtype narrows. */
static lt_status run_plain_item(run_state *st, const plan_tensor *t, const work_item *w,
                                thread_buffers *buf, lt_error *err)
{
    lt_merge_plan *plan = st->plan;
    lt_source *src = plan->base;
    size_t src_index = (size_t)t->base_index;
    if (t->action == ACT_REPLACE || t->action == ACT_ADD) {
        src = lt_adapter_source(plan->inputs[t->replace_input].adapter);
        src_index = (size_t)t->replace_tensor;
    }
    bool copy = t->action == ACT_COPY; /* first/count are bytes */
    uint64_t in_off = copy ? w->first : merge_bytes_of(t->in_dtype, w->first);
    size_t in_len = (size_t)(copy ? w->count : merge_bytes_of(t->in_dtype, w->count));
    if (copy || t->in_dtype == t->out_dtype) {
        /* written straight from the input's mapping where it lends one (the
         * range is mapped in one call, not fault by fault), else read */
        out_slot *slot = buf->slot;
        aim_slot(slot, st, t, in_off, in_len);
        slot->lent = lti_source_borrow(src, src_index, in_off, in_len);
        slot->lent_from = src;
        slot->lent_index = src_index;
        return slot->lent ? LT_OK : lt_source_read(src, src_index, in_off, slot->data, in_len, err);
    }
    const unsigned char *raw;
    lt_status s = fetch(src, src_index, in_off, in_len, buf, &raw, err);
    if (s != LT_OK)
        return s;
    if (lt_convert_to_f64(t->in_dtype, raw, buf->acc, (size_t)w->count) != LT_OK ||
        lt_convert_from_f64(t->out_dtype, buf->acc, buf->slot->data, (size_t)w->count) != LT_OK)
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "merge: tensor '%s': cannot convert %s to %s", t->name,
                    lt_dtype_name(t->in_dtype), lt_dtype_name(t->out_dtype));
    aim_slot(buf->slot, st, t, merge_bytes_of(t->out_dtype, w->first), merge_bytes_of(t->out_dtype, w->count));
    if (raw != buf->raw)
        lti_source_release(src, src_index, raw, in_len);
    return s;
}

static void report_progress(run_state *st, const work_item *w)
{
    st->progress.bytes_done += w->out_bytes;
    if (w->last)
        st->progress.tensors_done++;
    lt_merge_options *o = &st->plan->opts;
    if (o->progress && (st->progress.bytes_done - st->reported_bytes >= (16u << 20) ||
                        st->progress.bytes_done == st->progress.bytes_total)) {
        st->reported_bytes = st->progress.bytes_done;
        o->progress(o->progress_ctx, &st->progress);
    }
}

/* After a failure only the items before it in file order still run (and
 * may fail first), so the error reported is the same for any thread
 * count.  Call with the lock held. */
static bool before_failure(const run_state *st, const work_item *w)
{
    return !st->failed || w->tensor < st->failed_tensor ||
           (w->tensor == st->failed_tensor && w->first < st->failed_first);
}

static void *worker(void *arg)
{
    run_state *st = arg;
    thread_buffers buf = {0};
    /* (untouched pages of these cost no memory) */
    size_t acc_bytes = st->max_block_elems * sizeof(double);
    size_t slot_bytes = acc_bytes > COPY_CHUNK_BYTES ? acc_bytes : COPY_CHUNK_BYTES;
    buf.raw = malloc(slot_bytes);
    buf.acc = malloc(acc_bytes);
    buf.slots[0].data = malloc(slot_bytes);
    buf.slots[1].data = malloc(slot_bytes);
    buf.redo = malloc(st->max_block_elems * sizeof *buf.redo);
    lt_error err;
    bool ok = buf.raw && buf.acc && buf.slots[0].data && buf.slots[1].data && buf.redo;
    if (!ok)
        lti_fail_nomem(&err, "merge");
    for (;;) {
        bool write_failed = merge_writer_failed(st->writer, NULL);
        pthread_mutex_lock(&st->lock);
        if (!ok && !st->failed) {
            st->failed = true;
            st->error = err;
            st->failed_tensor = 0, st->failed_first = 0;
        }
        if (!ok || write_failed || st->next_item >= st->n_items) {
            pthread_mutex_unlock(&st->lock);
            break;
        }
        const work_item *w = &st->items[st->next_item++];
        bool wanted = before_failure(st, w);
        pthread_mutex_unlock(&st->lock);
        if (!wanted)
            continue;
        const plan_tensor *t = &st->plan->tensors[w->tensor];
        buf.slot = merge_writer_slot(st->writer, buf.slots);
        lt_status s = item_is_merge(t) ? run_merge_item(st, t, w, &buf, &err)
                                       : run_plain_item(st, t, w, &buf, &err);
        pthread_mutex_lock(&st->lock);
        if (s != LT_OK) {
            if (before_failure(st, w)) {
                st->failed = true;
                st->error = err;
                st->failed_tensor = w->tensor, st->failed_first = w->first;
            }
        } else {
            report_progress(st, w);
        }
        bool submit = s == LT_OK && !st->failed;
        pthread_mutex_unlock(&st->lock);
        if (submit) {
            merge_writer_submit(st->writer, buf.slot);
        } else if (buf.slot->lent) {
            lti_source_release(buf.slot->lent_from, buf.slot->lent_index, buf.slot->lent, buf.slot->len);
            buf.slot->lent = NULL;
        }
    }
    merge_writer_drain(st->writer, buf.slots);
    free(buf.raw);
    free(buf.acc);
    free(buf.slots[0].data);
    free(buf.slots[1].data);
    free(buf.redo);
    return NULL;
}

static lt_status push_item(run_state *st, size_t *cap, size_t tensor, uint64_t first, uint64_t count,
                           lt_error *err)
{
    if (!lti_grow((void **)&st->items, cap, st->n_items + 1, sizeof *st->items))
        return lti_fail_nomem(err, "merge");
    const plan_tensor *t = &st->plan->tensors[tensor];
    uint64_t out_bytes = t->action == ACT_COPY ? count
                         : item_is_merge(t)   ? merge_bytes_of(t->out_dtype, count * t->cols)
                                              : merge_bytes_of(t->out_dtype, count);
    st->items[st->n_items++] = (work_item){tensor, first, count, out_bytes, false};
    return LT_OK;
}

/* Reorder the items so that the merges (computing) and the rest (mostly
 * reading and writing) are spread evenly over the run: each kind at the
 * same share of its bytes at every point.  A run in tensor order would
 * start and end with long copies (embeddings, lm_head) that keep one
 * worker writing while the others wait for it.  The file does not depend
 * on the order: every item writes at its own offset. */
static lt_status interleave_items(run_state *st, lt_error *err)
{
    work_item *sorted = malloc((st->n_items + 1) * sizeof *sorted);
    if (!sorted)
        return lti_fail_nomem(err, "merge");
    uint64_t total[2] = {0, 0}, done[2] = {0, 0};
    for (size_t i = 0; i < st->n_items; i++)
        total[item_is_merge(&st->plan->tensors[st->items[i].tensor])] += st->items[i].out_bytes + 1;
    size_t next[2] = {0, 0}, n = 0;
    while (n < st->n_items) {
        /* the kind that is further behind its share goes next */
        for (int kind = 0; kind < 2; kind++)
            while (next[kind] < st->n_items &&
                   item_is_merge(&st->plan->tensors[st->items[next[kind]].tensor]) != kind)
                next[kind]++;
        int kind;
        if (next[0] == st->n_items)
            kind = 1;
        else if (next[1] == st->n_items)
            kind = 0;
        else /* done[0] / total[0] <= done[1] / total[1], without division */
            kind = (double)done[0] * (double)total[1] <= (double)done[1] * (double)total[0] ? 0 : 1;
        sorted[n++] = st->items[next[kind]];
        done[kind] += st->items[next[kind]].out_bytes + 1;
        next[kind]++;
    }
    free(st->items);
    st->items = sorted;
    return LT_OK;
}

/* Cut every tensor into items, and size the per-thread buffers. */
static lt_status make_items(run_state *st, lt_error *err)
{
    size_t cap = 0;
    st->max_block_elems = st->block_elems;
    for (size_t i = 0; i < st->plan->n_tensors; i++) {
        const plan_tensor *t = &st->plan->tensors[i];
        uint64_t total, step;
        if (t->action == ACT_COPY) {
            total = lt_sink_tensor_bytes(st->sink, (long)i);
            step = COPY_CHUNK_BYTES;
        } else if (item_is_merge(t)) {
            total = t->rows;
            step = t->cols >= st->block_elems ? 1 : st->block_elems / t->cols;
            if (t->cols > st->max_block_elems)
                st->max_block_elems = t->cols;
            if (t->cols > (SIZE_MAX / 8) / 4)
                return lti_fail(err, LT_ERR_UNSUPPORTED, "merge: tensor '%s' has rows too long", t->name);
        } else {
            total = t->n_elems;
            step = st->block_elems;
        }
        if (total == 0) {
            lt_status s = push_item(st, &cap, i, 0, 0, err);
            if (s != LT_OK)
                return s;
        }
        for (uint64_t first = 0; first < total; first += step) {
            lt_status s = push_item(st, &cap, i, first, total - first < step ? total - first : step, err);
            if (s != LT_OK)
                return s;
        }
        st->items[st->n_items - 1].last = true;
    }
    return interleave_items(st, err);
}

static lt_status declare_outputs(lt_merge_plan *plan, lt_sink *sink, lt_error *err)
{
    for (size_t i = 0; i < plan->n_tensors; i++) {
        const plan_tensor *t = &plan->tensors[i];
        if (lt_sink_add_tensor(sink, t->name, t->out_dtype, t->n_dims, t->shape, err) < 0)
            return err ? err->status : LT_ERR_USAGE;
    }
    if (sink->ops->typed_kvs) { /* the base's typed keys, where the output holds them */
        lt_status kv = lt_sink_copy_kvs(sink, plan->base, err);
        if (kv != LT_OK)
            return kv;
    }
    /* the base's metadata, unless the caller already set that key */
    for (size_t i = 0; i < lt_source_meta_count(plan->base); i++) {
        const char *key = lt_source_meta_key(plan->base, i);
        bool set = false;
        for (size_t k = 0; k < sink->n_meta && !set; k++)
            set = strcmp(sink->meta_keys[k], key) == 0;
        if (!set) {
            lt_status s = lt_sink_set_meta(sink, key, lt_source_meta_value(plan->base, i), err);
            if (s != LT_OK)
                return s;
        }
    }
    return lt_sink_begin(sink, err);
}

lt_status lt_merge_run(lt_merge_plan *plan, lt_sink *sink, lt_merge_stats *stats, lt_error *err)
{
    run_state st;
    memset(&st, 0, sizeof st);
    st.plan = plan;
    st.sink = sink;
    size_t n_threads = lti_thread_count(plan->opts.threads);
    st.block_elems = BUFFERS_BYTES / 32 / n_threads;
    st.block_elems = st.block_elems > MAX_BLOCK_ELEMS ? MAX_BLOCK_ELEMS
                     : st.block_elems < MIN_BLOCK_ELEMS ? MIN_BLOCK_ELEMS
                                                         : st.block_elems;
    lt_status s = declare_outputs(plan, sink, err);
    if (s == LT_OK)
        s = make_items(&st, err);
    if (s != LT_OK) {
        free(st.items);
        lt_sink_abort(sink);
        return s;
    }
    st.progress.tensors_total = plan->n_tensors;
    st.progress.bytes_total = plan->stats.bytes_written;
    if (n_threads > st.n_items)
        n_threads = st.n_items ? st.n_items : 1;
    st.writer = merge_writer_create(sink, n_threads);
    if (!st.writer) {
        free(st.items);
        lt_sink_abort(sink);
        return lti_fail_nomem(err, "merge");
    }
    pthread_mutex_init(&st.lock, NULL);
    pthread_t threads[LT_MAX_THREADS];
    size_t started = 0;
    for (; started + 1 < n_threads; started++)
        if (pthread_create(&threads[started], NULL, worker, &st) != 0)
            break;
    worker(&st); /* the calling thread works too */
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&st.lock);
    free(st.items);
    if (!st.failed && merge_writer_failed(st.writer, &st.error))
        st.failed = true;
    merge_writer_free(st.writer);
    if (st.failed) {
        if (err)
            *err = st.error;
        lt_sink_abort(sink);
        return st.error.status;
    }
    s = lt_sink_commit(sink, err);
    if (s == LT_OK && stats)
        *stats = plan->stats;
    return s;
}
