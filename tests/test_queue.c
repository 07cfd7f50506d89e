/* Queue and JoinableQueue: semantics, sizes, many producers and
 * consumers, processes killed inside put and get, passing queues around. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"

#define KILL_TRIALS 200
#define SMALL_RING 4096 /* items over ~1 KiB are BIG, and the ring overflows soon */

static mp_queue_t *make_queue(size_t maxsize, bool joinable, size_t segment_bytes)
{
    mp_queue_opts_t o = {.maxsize = maxsize, .joinable = joinable, .segment_bytes = segment_bytes};
    mp_queue_t *q = NULL;
    ASSERT_OK(mp_queue_create(&q, &o));
    return q;
}

static mp_args_t *args_of(mp_handle_t *h1, mp_handle_t *h2, mp_handle_t *h3)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    if (h1) ASSERT_OK(mp_args_add_handle(a, h1));
    if (h2) ASSERT_OK(mp_args_add_handle(a, h2));
    if (h3) ASSERT_OK(mp_args_add_handle(a, h3));
    return a;
}

static mp_process_t *start_with(mp_target_fn fn, mp_handle_t *h1, mp_handle_t *h2, mp_handle_t *h3,
                                int64_t n)
{
    mp_args_t *a = args_of(h1, h2, h3);
    ASSERT_OK(mp_args_add_int(a, n));
    mp_process_t *p = start_proc(fn, a);
    mp_args_free(a);
    return p;
}

static uint32_t next_random(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- items that prove themselves: who sent it, its number, a checksum ---- */

typedef struct {
    uint32_t who, seq, len, sum;
} item_hdr_t;

static uint32_t fnv(const uint8_t *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Sizes from a header alone to past a SMALL_RING's quarter and ring. */
static size_t item_len(uint32_t who, uint32_t seq)
{
    static const size_t sizes[] = {16, 24, 72, 300, 1100, 16, 5000, 40, 2000, 9000};
    return sizes[(who * 7 + seq) % (sizeof sizes / sizeof *sizes)];
}

static void item_make(uint8_t *buf, uint32_t who, uint32_t seq, size_t len)
{
    item_hdr_t h = {who, seq, (uint32_t)len, 0};
    for (size_t i = sizeof h; i < len; i++)
        buf[i] = (uint8_t)(who * 31 + seq * 7 + i);
    h.sum = fnv(buf + sizeof h, len - sizeof h, 2166136261u ^ who ^ (seq << 8));
    memcpy(buf, &h, sizeof h);
}

/* 0 when buf is an intact item; fills who and seq. */
static int item_check(const uint8_t *buf, size_t len, uint32_t *who, uint32_t *seq)
{
    item_hdr_t h;
    if (len < sizeof h) return 1;
    memcpy(&h, buf, sizeof h);
    if (h.len != len) return 2;
    if (h.sum != fnv(buf + sizeof h, len - sizeof h, 2166136261u ^ h.who ^ (h.seq << 8))) return 3;
    *who = h.who;
    *seq = h.seq;
    return 0;
}

static int put_item(mp_queue_t *q, uint32_t who, uint32_t seq)
{
    uint8_t buf[16384];
    size_t len = item_len(who, seq);
    item_make(buf, who, seq, len);
    return mp_queue_put(q, buf, len, MP_FOREVER);
}

/* ---- basics ---- */

Test(queue, fifo_qsize_empty_full, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    ASSERT_RC(mp_queue_empty(q), 1);
    ASSERT_RC(mp_queue_full(q), 0);
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    size_t n = 0;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 1000);
    ASSERT_RC(mp_queue_empty(q), 0);
    ASSERT_RC(mp_queue_full(q), 0);
    for (int i = 0; i < 1000; i++) {
        int v = -1;
        size_t len = 0;
        ASSERT_OK(mp_queue_get_into(q, &v, sizeof v, &len, 0));
        cr_assert_eq(len, sizeof v);
        cr_assert_eq(v, i);
    }
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 0);
    int v;
    size_t len;
    ASSERT_RC(mp_queue_get_into(q, &v, sizeof v, &len, 0), MP_EEMPTY);
    ASSERT_RC(mp_queue_get_into(q, &v, sizeof v, &len, 30), MP_EEMPTY);
    mp_queue_free(q);
}

Test(queue, bad_arguments, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    void *buf;
    size_t len, n;
    char c;
    ASSERT_RC(mp_queue_create(NULL, NULL), MP_EINVAL);
    mp_queue_opts_t huge = {.segment_bytes = (size_t)1 << 40};
    mp_queue_t *q2 = NULL;
    ASSERT_RC(mp_queue_create(&q2, &huge), MP_EINVAL);
    ASSERT_RC(mp_queue_put(q, NULL, 1, 0), MP_EINVAL);
    ASSERT_RC(mp_queue_put(q, &c, SIZE_MAX, 0), MP_EMSGSIZE);
    ASSERT_RC(mp_queue_get(q, NULL, &len, 0), MP_EINVAL);
    ASSERT_RC(mp_queue_get(q, &buf, NULL, 0), MP_EINVAL);
    ASSERT_RC(mp_queue_get_into(q, NULL, 1, &len, 0), MP_EINVAL);
    ASSERT_RC(mp_queue_qsize(q, NULL), MP_EINVAL);
    ASSERT_RC(mp_queue_task_done(q), MP_ETYPE);
    ASSERT_RC(mp_queue_join(q, 0), MP_ETYPE);
    ASSERT_RC(mp_queue_put(NULL, &c, 1, 0), MP_EINVAL);
    ASSERT_RC(mp_queue_qsize(NULL, &n), MP_EINVAL);
    mp_lock_t *l;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_RC(mp_queue_put((mp_queue_t *)l, &c, 1, 0), MP_ETYPE);
    mp_lock_free(l);
    mp_queue_free(q);
    mp_queue_free(NULL);
}

Test(queue, zero_bytes_and_short_buffers, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    ASSERT_OK(mp_queue_put(q, NULL, 0, 0));
    ASSERT_OK(mp_queue_put(q, "hello", 5, 0));
    void *buf = NULL;
    size_t len = 99;
    ASSERT_OK(mp_queue_get(q, &buf, &len, 0));
    cr_assert_eq(len, 0);
    mp_free(buf);
    char small[3];
    len = 0;
    ASSERT_RC(mp_queue_get_into(q, small, sizeof small, &len, 0), MP_EMSGSIZE);
    cr_assert_eq(len, 5, "the size comes back with MP_EMSGSIZE");
    size_t n;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 1, "the item stays at the head");
    char big[8];
    ASSERT_OK(mp_queue_get_into(q, big, sizeof big, &len, 0));
    cr_assert(len == 5 && !memcmp(big, "hello", 5));
    ASSERT_OK(mp_queue_put(q, NULL, 0, 0));
    ASSERT_OK(mp_queue_get_into(q, NULL, 0, &len, 0));
    cr_assert_eq(len, 0);
    mp_queue_free(q);
}

/* Sizes around every boundary of the layout, several rings, in order. */
Test(queue, every_size_in_order, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    uint8_t *buf = malloc(3 * SMALL_RING);
    cr_assert_not_null(buf);
    size_t sizes[] = {0,    1,    7,    8,    9,    1015, 1016,
                      1017, 1024, 2047, 4088, 4096, 4097, 3 * SMALL_RING};
    size_t ns = sizeof sizes / sizeof *sizes;
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < ns; i++) {
            memset(buf, (int)(round * 16 + i), sizes[i]);
            ASSERT_OK(mp_queue_put(q, buf, sizes[i], 0));
        }
    uint8_t *got = malloc(3 * SMALL_RING);
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < ns; i++) {
            size_t len = 0;
            ASSERT_OK(mp_queue_get_into(q, got, 3 * SMALL_RING, &len, 0));
            cr_assert_eq(len, sizes[i]);
            for (size_t k = 0; k < len; k++)
                cr_assert_eq(got[k], (uint8_t)(round * 16 + i), "round %d size %zu", round, len);
        }
    ASSERT_RC(mp_queue_empty(q), 1);
    free(buf);
    free(got);
    mp_queue_free(q);
}

/* An item larger than the buffer, held in memory of its own, stays at
 * the head after MP_EMSGSIZE too. */
Test(queue, short_buffer_for_a_big_item, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    char big[10000];
    memset(big, 'x', sizeof big);
    ASSERT_OK(mp_queue_put(q, big, sizeof big, 0));
    ASSERT_OK(mp_queue_put(q, "after", 5, 0));
    char small[100];
    size_t len = 0;
    ASSERT_RC(mp_queue_get_into(q, small, sizeof small, &len, 0), MP_EMSGSIZE);
    cr_assert_eq(len, sizeof big);
    void *buf;
    ASSERT_OK(mp_queue_get(q, &buf, &len, 0));
    cr_assert(len == sizeof big && !memcmp(buf, big, len));
    mp_free(buf);
    ASSERT_OK(mp_queue_get_into(q, small, sizeof small, &len, 0));
    cr_assert(len == 5 && !memcmp(small, "after", 5));
    mp_queue_free(q);
}

/* ---- bounded queues ---- */

static int get_one_when_told(mp_args_t *a)
{
    mp_queue_t *q;
    mp_conn_t *c;
    if (mp_args_queue(a, 0, &q) || mp_args_conn(a, 1, &c)) return 10;
    char buf[8];
    size_t len;
    if (mp_conn_recv_bytes_into(c, buf, sizeof buf, &len)) return 11;
    int v = -1;
    if (mp_queue_get_into(q, &v, sizeof v, &len, JOIN_MS) || v != 0) return 12;
    return 0;
}

Test(queue, maxsize_blocks_and_times_out, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(2, false, 0);
    for (int i = 0; i < 2; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    ASSERT_RC(mp_queue_full(q), 1);
    int three = 3;
    ASSERT_RC(mp_queue_put(q, &three, sizeof three, 0), MP_EFULL);
    ASSERT_RC(mp_queue_put(q, &three, sizeof three, 50), MP_EFULL);
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_process_t *p = start_with(get_one_when_told, MP_HANDLE(q), MP_HANDLE(theirs), NULL, 0);
    ASSERT_OK(mp_conn_send_bytes(mine, "go", 2));
    ASSERT_OK(mp_queue_put(q, &three, sizeof three, JOIN_MS)); /* waits for the get */
    cr_assert_eq(join_code(p), 0);
    size_t n;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 2);
    int v;
    size_t len;
    ASSERT_OK(mp_queue_get_into(q, &v, sizeof v, &len, 0));
    cr_assert_eq(v, 1);
    ASSERT_OK(mp_queue_get_into(q, &v, sizeof v, &len, 0));
    cr_assert_eq(v, 3);
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_queue_free(q);
}

/* Maxsize counts items, whatever their bytes: ten items of two rings. */
Test(queue, maxsize_counts_items_not_bytes, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(10, false, SMALL_RING);
    char *big = calloc(1, 2 * SMALL_RING);
    for (int i = 0; i < 10; i++)
        ASSERT_OK(mp_queue_put(q, big, 2 * SMALL_RING, 0));
    ASSERT_RC(mp_queue_put(q, big, 1, 0), MP_EFULL);
    free(big);
    mp_queue_free(q);
}

/* ---- many producers, many consumers ---- */

#define PRODUCERS 4
#define PER_PRODUCER 3000

static int produce(mp_args_t *a)
{
    mp_queue_t *q;
    int64_t who;
    if (mp_args_queue(a, 0, &q) || mp_args_int(a, 1, &who)) return 10;
    for (uint32_t s = 0; s < PER_PRODUCER; s++)
        if (put_item(q, (uint32_t)who, s)) return 11;
    return 0;
}

Test(queue, fifo_per_producer_with_four_producers, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    mp_process_t *p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        p[i] = start_with(produce, MP_HANDLE(q), NULL, NULL, i);
    uint32_t next[PRODUCERS] = {0};
    uint8_t *buf = malloc(16384);
    for (int k = 0; k < PRODUCERS * PER_PRODUCER; k++) {
        size_t len;
        ASSERT_OK(mp_queue_get_into(q, buf, 16384, &len, JOIN_MS));
        uint32_t who, seq;
        cr_assert_eq(item_check(buf, len, &who, &seq), 0, "a torn item");
        cr_assert(who < PRODUCERS);
        cr_assert_eq(seq, next[who], "producer %u: item %u after %u", who, seq, next[who]);
        next[who]++;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    ASSERT_RC(mp_queue_empty(q), 1);
    free(buf);
    mp_queue_free(q);
}

/* Consumers take until an empty item, then report per producer how many
 * and whether each producer's items came in order. */
static int consume(mp_args_t *a)
{
    mp_queue_t *q, *results;
    if (mp_args_queue(a, 0, &q) || mp_args_queue(a, 1, &results)) return 10;
    uint32_t count[PRODUCERS] = {0};
    int64_t last[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        last[i] = -1;
    uint8_t *buf = malloc(16384);
    for (;;) {
        size_t len;
        if (mp_queue_get_into(q, buf, 16384, &len, JOIN_MS)) return 11;
        if (!len) break;
        uint32_t who, seq;
        if (item_check(buf, len, &who, &seq) || who >= PRODUCERS) return 12;
        if ((int64_t)seq <= last[who]) return 13;
        last[who] = seq;
        count[who]++;
    }
    free(buf);
    return mp_queue_put(results, count, sizeof count, MP_FOREVER) ? 14 : 0;
}

Test(queue, four_producers_three_consumers_exactly_once, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(64, false, SMALL_RING);
    mp_queue_t *results = make_queue(0, false, 0);
    mp_process_t *c[3], *p[PRODUCERS];
    for (int i = 0; i < 3; i++)
        c[i] = start_with(consume, MP_HANDLE(q), MP_HANDLE(results), NULL, 0);
    for (int i = 0; i < PRODUCERS; i++)
        p[i] = start_with(produce, MP_HANDLE(q), NULL, NULL, i);
    for (int i = 0; i < PRODUCERS; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_queue_put(q, NULL, 0, JOIN_MS));
    uint32_t total[PRODUCERS] = {0};
    for (int i = 0; i < 3; i++) {
        uint32_t count[PRODUCERS];
        size_t len;
        ASSERT_OK(mp_queue_get_into(results, count, sizeof count, &len, JOIN_MS));
        for (int k = 0; k < PRODUCERS; k++)
            total[k] += count[k];
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(join_code(c[i]), 0);
        mp_process_free(c[i]);
    }
    for (int k = 0; k < PRODUCERS; k++)
        cr_assert_eq(total[k], PER_PRODUCER, "producer %d: %u delivered", k, total[k]);
    mp_queue_free(q);
    mp_queue_free(results);
}

/* Takes one producer's items, in order. */
static int consume_in_order(mp_args_t *a)
{
    mp_queue_t *q;
    int64_t who;
    if (mp_args_queue(a, 0, &q) || mp_args_int(a, 1, &who)) return 10;
    uint8_t *buf = malloc(16384);
    int rc = buf ? 0 : 11;
    for (uint32_t s = 0; !rc && s < PER_PRODUCER; s++) {
        size_t len;
        uint32_t from, seq;
        if (mp_queue_get_into(q, buf, 16384, &len, JOIN_MS))
            rc = 12;
        else if (item_check(buf, len, &from, &seq) || from != who || seq != s)
            rc = 13;
    }
    free(buf);
    return rc;
}

/* The children's handles outlive the parent's, which it frees before they
 * can have taken the queue from their args (a spawned child takes it only
 * once started). */
Test(queue, children_keep_a_queue_their_parent_freed_at_start, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(64, false, SMALL_RING);
    mp_process_t *c = start_with(consume_in_order, MP_HANDLE(q), NULL, NULL, 5);
    mp_process_t *p = start_with(produce, MP_HANDLE(q), NULL, NULL, 5);
    mp_queue_free(q);
    cr_assert_eq(join_code(p), 0);
    cr_assert_eq(join_code(c), 0);
    mp_process_free(p);
    mp_process_free(c);
}

/* ---- no feeder thread: a producer may exit at once ---- */

static int put_then_exit(mp_args_t *a)
{
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    for (uint32_t s = 0; s < 2000; s++)
        if (put_item(q, 7, s)) return 11;
    return 0;
}

/* Nobody reads while the producer runs: it overflows the ring into
 * memory of its own, exits, is joined, and nothing is lost. */
Test(queue, producer_exits_right_after_put, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    mp_process_t *p = start_with(put_then_exit, MP_HANDLE(q), NULL, NULL, 0);
    cr_assert_eq(join_code(p), 0, "joining a producer never waits for a consumer");
    mp_process_free(p);
    size_t n;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 2000);
    uint8_t *buf = malloc(16384);
    for (uint32_t s = 0; s < 2000; s++) {
        size_t len;
        uint32_t who, seq;
        ASSERT_OK(mp_queue_get_into(q, buf, 16384, &len, 0));
        cr_assert_eq(item_check(buf, len, &who, &seq), 0);
        cr_assert(who == 7 && seq == s);
    }
    free(buf);
    mp_queue_free(q);
}

/* ---- any size ---- */

static uint8_t pattern(size_t i)
{
    return (uint8_t)((i * 2654435761u) >> 13);
}

/* Checks the item it gets, and with a second queue sends it back. */
static int check_big(mp_args_t *a)
{
    mp_queue_t *in, *out = NULL;
    if (mp_args_queue(a, 0, &in) || (mp_args_count(a) > 2 && mp_args_queue(a, 1, &out))) return 10;
    void *buf;
    size_t len;
    if (mp_queue_get(in, &buf, &len, JOIN_MS)) return 11;
    for (size_t i = 0; i < len; i++)
        if (((uint8_t *)buf)[i] != pattern(i)) return 12;
    int rc = out ? mp_queue_put(out, buf, len, MP_FOREVER) : 0;
    mp_free(buf);
    return rc ? 13 : 0;
}

static void send_big(size_t size, bool back)
{
    mp_queue_t *in = make_queue(0, false, 0), *out = back ? make_queue(0, false, 0) : NULL;
    uint8_t *buf = malloc(size);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = pattern(i);
    mp_process_t *p = start_with(check_big, MP_HANDLE(in), MP_HANDLE(out), NULL, 0);
    ASSERT_OK(mp_queue_put(in, buf, size, MP_FOREVER));
    if (back) {
        memset(buf, 0, size);
        size_t len = 0;
        ASSERT_OK(mp_queue_get_into(out, buf, size, &len, JOIN_MS));
        cr_assert_eq(len, size);
        for (size_t i = 0; i < size; i++)
            if (buf[i] != pattern(i)) cr_assert_fail("byte %zu differs", i);
    }
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    free(buf);
    mp_queue_free(in);
    if (out) mp_queue_free(out);
}

Test(queue, item_of_64_mib_there_and_back, .timeout = TEST_TIMEOUT)
{
    send_big((size_t)64 << 20, true);
}

Test(queue, item_of_256_mib_to_a_child, .timeout = TEST_TIMEOUT)
{
    send_big((size_t)256 << 20, false);
}

/* ---- JoinableQueue ---- */

static int work_and_mark_done(mp_args_t *a)
{
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    for (int i = 0; i < 100; i++) {
        int v;
        size_t len;
        if (mp_queue_get_into(q, &v, sizeof v, &len, JOIN_MS) || v != i) return 11;
        if (mp_queue_task_done(q)) return 12;
    }
    return 0;
}

Test(queue, joinable_task_done_and_join, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, true, 0);
    ASSERT_OK(mp_queue_join(q, 0)); /* nothing put: nothing to wait for */
    ASSERT_RC(mp_queue_task_done(q), MP_EINVAL);
    for (int i = 0; i < 100; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    ASSERT_RC(mp_queue_join(q, 0), MP_ETIMEDOUT);
    ASSERT_RC(mp_queue_join(q, 20), MP_ETIMEDOUT);
    mp_process_t *p = start_with(work_and_mark_done, MP_HANDLE(q), NULL, NULL, 0);
    ASSERT_OK(mp_queue_join(q, JOIN_MS));
    cr_assert_eq(join_code(p), 0);
    ASSERT_RC(mp_queue_task_done(q), MP_EINVAL);
    ASSERT_OK(mp_queue_join(q, 0));
    mp_process_free(p);
    mp_queue_free(q);
}

/* ---- close ---- */

static int put_after_parent_closed(mp_args_t *a)
{
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    return mp_queue_put(q, "child", 5, MP_FOREVER) ? 11 : 0;
}

Test(queue, close_ends_this_process_only, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    ASSERT_OK(mp_queue_put(q, "x", 1, 0));
    ASSERT_OK(mp_queue_close(q));
    ASSERT_RC(mp_queue_put(q, "y", 1, 0), MP_ECLOSED);
    char buf[8];
    size_t len;
    ASSERT_RC(mp_queue_get_into(q, buf, sizeof buf, &len, 0), MP_ECLOSED);
    size_t n;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 1);
    mp_process_t *p = start_with(put_after_parent_closed, MP_HANDLE(q), NULL, NULL, 0);
    cr_assert_eq(join_code(p), 0);
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 2);
    mp_process_free(p);
    mp_queue_free(q);
}

/* ---- killed processes ---- */

static int produce_forever(mp_args_t *a)
{
    mp_queue_t *q;
    mp_value_t *count;
    int64_t trial;
    if (mp_args_queue(a, 0, &q) || mp_args_value(a, 1, &count) || mp_args_int(a, 2, &trial))
        return 10;
    _Atomic uint64_t *n = mp_value_ptr(count);
    for (uint32_t s = 0;; s++) {
        if (put_item(q, (uint32_t)trial, s)) return 11;
        atomic_store(n, s + 1);
    }
}

/* Kills a producer at a random point KILL_TRIALS times. The items of each
 * trial must be its first c or c + 1 items (c: puts that returned), in
 * order and intact; the queue must go on working for the next producer. */
Test(queue, producer_killed_at_random, .timeout = 900)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    mp_value_t *count;
    ASSERT_OK(mp_value_create(&count, sizeof(uint64_t)));
    _Atomic uint64_t *n = mp_value_ptr(count);
    uint8_t *buf = malloc(16384);
    uint32_t seed = 4242;
    int in_flight_delivered = 0;
    for (int t = 0; t < test_kills(KILL_TRIALS); t++) {
        atomic_store(n, 0);
        mp_process_t *p = start_with(produce_forever, MP_HANDLE(q), MP_HANDLE(count), NULL, t);
        uint64_t target = next_random(&seed) % 200;
        while (atomic_load(n) < target && mp_process_is_alive(p) == 1)
            ;
        ASSERT_OK(mp_process_kill(p));
        cr_assert_eq(join_code(p), -9, "the producer failed instead of being killed");
        mp_process_free(p);
        uint64_t returned = atomic_load(n);
        size_t qn;
        ASSERT_OK(mp_queue_qsize(q, &qn)); /* also repairs after the dead owner */
        uint32_t got = 0;
        for (;;) {
            size_t len;
            int rc = mp_queue_get_into(q, buf, 16384, &len, 0);
            if (rc == MP_EEMPTY) break;
            ASSERT_OK(rc);
            uint32_t who, seq;
            cr_assert_eq(item_check(buf, len, &who, &seq), 0, "trial %d: a torn item", t);
            cr_assert_eq(who, (uint32_t)t, "trial %d: an item of trial %u", t, who);
            cr_assert_eq(seq, got, "trial %d: item %u after %u", t, seq, got);
            got++;
        }
        cr_assert(got == returned || got == returned + 1,
                  "trial %d: %u items delivered, %llu puts returned", t, got,
                  (unsigned long long)returned);
        cr_assert_eq(got, qn, "trial %d: qsize said %zu", t, qn);
        in_flight_delivered += got > returned;
    }
    cr_log_info("%d of %d kills left the put in flight delivered", in_flight_delivered,
                test_kills(KILL_TRIALS));
    ASSERT_OK(put_item(q, 999, 0));
    size_t len;
    ASSERT_OK(mp_queue_get_into(q, buf, 16384, &len, 0));
    free(buf);
    mp_value_free(count);
    mp_queue_free(q);
}

#define CONSUMER_BATCH 150

/* Takes items and writes each one's number to log[1 + k], then count
 * log[0], until killed. */
static int consume_forever(mp_args_t *a)
{
    mp_queue_t *q;
    mp_value_t *logv;
    if (mp_args_queue(a, 0, &q) || mp_args_value(a, 1, &logv)) return 10;
    _Atomic uint64_t *log = mp_value_ptr(logv);
    uint8_t *buf = malloc(16384);
    for (uint64_t k = 0;; k++) {
        size_t len;
        if (mp_queue_get_into(q, buf, 16384, &len, JOIN_MS)) return 11;
        uint32_t who, seq;
        if (item_check(buf, len, &who, &seq)) return 12;
        atomic_store(&log[1 + k], seq);
        atomic_store(&log[0], k + 1);
    }
}

/* Kills a consumer at a random point KILL_TRIALS times. Each trial's items
 * are what it logged and then what is left, in order, each once; at most
 * one is missing (the one it was taking when killed). */
Test(queue, consumer_killed_at_random, .timeout = 900)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING);
    mp_value_t *logv;
    ASSERT_OK(mp_value_create(&logv, (CONSUMER_BATCH + 1) * sizeof(uint64_t)));
    _Atomic uint64_t *log = mp_value_ptr(logv);
    uint8_t *buf = malloc(16384);
    uint32_t seed = 777;
    int lost = 0;
    for (int t = 0; t < test_kills(KILL_TRIALS); t++) {
        for (uint32_t s = 0; s < CONSUMER_BATCH; s++)
            ASSERT_OK(put_item(q, (uint32_t)t, s));
        atomic_store(&log[0], 0);
        mp_process_t *p = start_with(consume_forever, MP_HANDLE(q), MP_HANDLE(logv), NULL, 0);
        uint64_t target = next_random(&seed) % CONSUMER_BATCH;
        while (atomic_load(&log[0]) < target && mp_process_is_alive(p) == 1)
            ;
        ASSERT_OK(mp_process_kill(p));
        cr_assert_eq(join_code(p), -9, "the consumer failed instead of being killed");
        mp_process_free(p);
        uint64_t logged = atomic_load(&log[0]);
        uint32_t expect = 0;
        for (uint64_t k = 0; k < logged; k++, expect++)
            cr_assert_eq(atomic_load(&log[1 + k]), expect, "trial %d: logged out of order", t);
        bool skipped = false;
        for (;;) {
            size_t len;
            int rc = mp_queue_get_into(q, buf, 16384, &len, 0);
            if (rc == MP_EEMPTY) break;
            ASSERT_OK(rc);
            uint32_t who, seq;
            cr_assert_eq(item_check(buf, len, &who, &seq), 0, "trial %d: a torn item", t);
            cr_assert_eq(who, (uint32_t)t);
            if (seq == expect + 1 && !skipped && expect == logged) {
                skipped = true; /* the one taken when the consumer died */
                expect++;
            }
            cr_assert_eq(seq, expect, "trial %d: item %u, wanted %u", t, seq, expect);
            expect++;
        }
        if (expect == CONSUMER_BATCH - 1 && !skipped && logged < CONSUMER_BATCH) {
            skipped = true; /* it was taking the last one */
            expect++;
        }
        cr_assert_eq(expect, CONSUMER_BATCH, "trial %d: items missing", t);
        lost += skipped;
    }
    cr_log_info("%d of %d kills caught the consumer taking an item", lost, test_kills(KILL_TRIALS));
    free(buf);
    mp_value_free(logv);
    mp_queue_free(q);
}

#define CHAOS_KILLS 120
#define CHAOS_MAX_INCARNATIONS (4 + CHAOS_KILLS)

/* A producer incarnation: item numbers from 0, each counted in
 * returned[who] once its put returned. */
static int chaos_produce(mp_args_t *a)
{
    mp_queue_t *q;
    mp_value_t *v;
    int64_t who;
    if (mp_args_queue(a, 0, &q) || mp_args_value(a, 1, &v) || mp_args_int(a, 2, &who)) return 10;
    _Atomic uint64_t *returned = mp_value_ptr(v);
    for (uint32_t s = 0;; s++) {
        if (put_item(q, (uint32_t)who, s)) return 11;
        atomic_store(&returned[who], s + 1);
    }
}

/* Forwards items to the results queue until an empty item. */
static int chaos_consume(mp_args_t *a)
{
    mp_queue_t *q, *results;
    if (mp_args_queue(a, 0, &q) || mp_args_queue(a, 1, &results)) return 10;
    uint8_t *buf = malloc(16384);
    int rc = buf ? 0 : 13;
    while (!rc) {
        size_t len;
        if (mp_queue_get_into(q, buf, 16384, &len, MP_FOREVER))
            rc = 11;
        else if (!len)
            break;
        else if (mp_queue_put(results, buf, len, MP_FOREVER))
            rc = 12;
    }
    free(buf); /* valgrind checks the consumers that end normally */
    return rc;
}

static bool all_alive(mp_process_t **p, int n)
{
    for (int i = 0; i < n; i++)
        if (mp_process_is_alive(p[i]) != 1) return false;
    return true;
}

static uint64_t sum_returned(_Atomic uint64_t *returned)
{
    uint64_t n = 0;
    for (int i = 0; i < CHAOS_MAX_INCARNATIONS; i++)
        n += atomic_load(&returned[i]);
    return n;
}

/* Two producers and two consumers run while one of them, at random, is
 * killed and replaced, over and over. Nothing is delivered twice, nothing
 * is torn, and at most one item per killed consumer goes missing. */
Test(queue, producers_and_consumers_killed_while_both_run, .timeout = 900)
{
    mp_queue_t *q = make_queue(0, false, SMALL_RING), *results = make_queue(0, false, 0);
    mp_value_t *v;
    ASSERT_OK(mp_value_create(&v, CHAOS_MAX_INCARNATIONS * sizeof(uint64_t)));
    _Atomic uint64_t *returned = mp_value_ptr(v);
    mp_process_t *role[4];
    int next_who = 0, consumer_kills = 0;
    for (int r = 0; r < 4; r++)
        role[r] = r < 2 ? start_with(chaos_produce, MP_HANDLE(q), MP_HANDLE(v), NULL, next_who++)
                        : start_with(chaos_consume, MP_HANDLE(q), MP_HANDLE(results), NULL, 0);
    uint32_t seed = 99;
    for (int k = 0; k < test_kills(CHAOS_KILLS); k++) {
        uint64_t until = sum_returned(returned) + next_random(&seed) % 300;
        size_t qn = 0;
        while (sum_returned(returned) < until && !mp_queue_qsize(q, &qn) && qn < 20000 &&
               all_alive(role, 4))
            ;
        int r = (int)(next_random(&seed) % 4);
        ASSERT_OK(mp_process_kill(role[r]));
        cr_assert_eq(join_code(role[r]), -9, "role %d failed instead of being killed", r);
        mp_process_free(role[r]);
        consumer_kills += r >= 2;
        role[r] = r < 2 ? start_with(chaos_produce, MP_HANDLE(q), MP_HANDLE(v), NULL, next_who++)
                        : start_with(chaos_consume, MP_HANDLE(q), MP_HANDLE(results), NULL, 0);
    }
    for (int r = 0; r < 2; r++) {
        ASSERT_OK(mp_process_kill(role[r]));
        cr_assert_eq(join_code(role[r]), -9);
        mp_process_free(role[r]);
    }
    for (int r = 2; r < 4; r++)
        ASSERT_OK(mp_queue_put(q, NULL, 0, MP_FOREVER));
    for (int r = 2; r < 4; r++) {
        cr_assert_eq(join_code(role[r]), 0);
        mp_process_free(role[r]);
    }
    uint8_t *seen[CHAOS_MAX_INCARNATIONS];
    for (int i = 0; i < next_who; i++) {
        seen[i] = calloc(atomic_load(&returned[i]) + 1, 1);
        cr_assert_not_null(seen[i]);
    }
    uint8_t *buf = malloc(16384);
    size_t len;
    int rc;
    while ((rc = mp_queue_get_into(results, buf, 16384, &len, 0)) == 0) {
        uint32_t who, seq;
        cr_assert_eq(item_check(buf, len, &who, &seq), 0, "a torn item");
        cr_assert((int)who < next_who && seq <= atomic_load(&returned[who]),
                  "item %u of producer %u was never put", seq, who);
        cr_assert(!seen[who][seq], "item %u of producer %u delivered twice", seq, who);
        seen[who][seq] = 1;
    }
    ASSERT_RC(rc, MP_EEMPTY);
    uint64_t missing = 0, total = 0;
    for (int i = 0; i < next_who; i++) {
        uint64_t n = atomic_load(&returned[i]);
        total += n;
        for (uint64_t sq = 0; sq < n; sq++)
            missing += !seen[i][sq];
        free(seen[i]);
    }
    cr_log_info("%llu items, %llu missing, %d consumer kills", (unsigned long long)total,
                (unsigned long long)missing, consumer_kills);
    cr_assert(missing <= (uint64_t)consumer_kills, "%llu items lost with %d consumers killed",
              (unsigned long long)missing, consumer_kills);
    free(buf);
    mp_value_free(v);
    mp_queue_free(q);
    mp_queue_free(results);
}

/* ---- crossing into processes ---- */

/* Gets the export blob on a connection, imports the queue, takes the 100
 * numbers the parent put and puts them back negated. */
static int import_and_echo(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    void *blob;
    size_t len;
    if (mp_conn_recv_bytes(c, &blob, &len)) return 11;
    mp_handle_t *h;
    int rc = mp_handle_import(blob, len, &h);
    mp_free(blob);
    if (rc) return 12;
    mp_queue_t *q = (mp_queue_t *)h;
    int v[100];
    for (int i = 0; i < 100; i++) {
        size_t n;
        if (mp_queue_get_into(q, &v[i], sizeof v[i], &n, JOIN_MS)) return 13;
    }
    for (int i = 0; i < 100; i++) {
        v[i] = -v[i];
        if (mp_queue_put(q, &v[i], sizeof v[i], MP_FOREVER)) return 14;
    }
    mp_queue_free(q);
    return mp_conn_send_bytes(c, "done", 4) ? 15 : 0;
}

Test(queue, export_import_in_a_process_without_it, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a = args_of(MP_HANDLE(theirs), NULL, NULL);
    mp_process_t *p = start_proc(import_and_echo, a);
    mp_args_free(a);
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(MP_HANDLE(q), &blob, &len));
    ASSERT_OK(mp_conn_send_bytes(mine, blob, len));
    for (int i = 1; i <= 100; i++)
        ASSERT_OK(mp_queue_put(q, &i, sizeof i, 0));
    expect_msg(mine, "done");
    for (int i = 1; i <= 100; i++) {
        int v;
        size_t n;
        ASSERT_OK(mp_queue_get_into(q, &v, sizeof v, &n, 0));
        cr_assert_eq(v, -i);
    }
    cr_assert_eq(join_code(p), 0);
    /* Imported again here: a second handle on the same queue. */
    mp_handle_t *h;
    ASSERT_OK(mp_handle_import(blob, len, &h));
    ASSERT_OK(mp_queue_put((mp_queue_t *)h, "z", 1, 0));
    char c;
    size_t n;
    ASSERT_OK(mp_queue_get_into(q, &c, 1, &n, 0));
    cr_assert_eq(c, 'z');
    mp_queue_free((mp_queue_t *)h);
    ((uint8_t *)blob)[len - 1] ^= 0x5a;
    int rc = mp_handle_import(blob, len, &h);
    cr_assert(rc == MP_EPROTO || rc == MP_ENOTFOUND, "a corrupt blob: %s", mp_err_name(rc));
    mp_free(blob);
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_queue_free(q);
}

static int unused_child(mp_args_t *a)
{
    mp_queue_t *q;
    int64_t addr;
    if (mp_args_int(a, 0, &addr)) return 10;
    q = (mp_queue_t *)(intptr_t)addr;
    char c;
    size_t n;
    return mp_queue_get_into(q, &c, 1, &n, 0) == MP_ECLOSED ? 0 : 11;
}

/* A forked child keeps only the queues its args name. */
Test(queue, forked_child_without_the_queue, .timeout = TEST_TIMEOUT)
{
    if (mp_get_start_method() != MP_START_FORK) return;
    mp_queue_t *q = make_queue(0, false, 0);
    ASSERT_OK(mp_queue_put(q, "x", 1, 0));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_int(a, (int64_t)(intptr_t)q));
    mp_process_t *p = start_proc(unused_child, a);
    mp_args_free(a);
    cr_assert_eq(join_code(p), 0);
    size_t n;
    ASSERT_OK(mp_queue_qsize(q, &n));
    cr_assert_eq(n, 1);
    mp_process_free(p);
    mp_queue_free(q);
}

/* ---- mp_wait ---- */

static int put_when_told(mp_args_t *a)
{
    mp_queue_t *q;
    mp_conn_t *c;
    if (mp_args_queue(a, 0, &q) || mp_args_conn(a, 1, &c)) return 10;
    char buf[8];
    size_t len;
    if (mp_conn_recv_bytes_into(c, buf, sizeof buf, &len)) return 11;
    return mp_queue_put(q, "item", 4, MP_FOREVER) ? 12 : 0;
}

Test(queue, mp_wait_on_queues_and_connections, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0), *other = make_queue(0, false, 0);
    mp_conn_t *mine, *theirs, *quiet1, *quiet2;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_pipe(&quiet1, &quiet2, true));
    mp_handle_t *hs[] = {MP_HANDLE(quiet1), MP_HANDLE(other), MP_HANDLE(q)};
    size_t ready[3], nready = 9;
    ASSERT_OK(mp_wait(hs, 3, 30, ready, &nready));
    cr_assert_eq(nready, 0);
    mp_handle_t *only_queues[] = {MP_HANDLE(other), MP_HANDLE(q)};
    ASSERT_OK(mp_wait(only_queues, 2, 30, ready, &nready));
    cr_assert_eq(nready, 0);

    mp_process_t *p = start_with(put_when_told, MP_HANDLE(q), MP_HANDLE(theirs), NULL, 0);
    ASSERT_OK(mp_conn_send_bytes(mine, "go", 2));
    ASSERT_OK(mp_wait(hs, 3, JOIN_MS, ready, &nready));
    cr_assert(nready == 1 && ready[0] == 2);
    ASSERT_OK(mp_wait(only_queues, 2, 0, ready, &nready));
    cr_assert(nready == 1 && ready[0] == 1);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);

    /* Only queues, the ready one second in the list: woken by a put. */
    char buf[8];
    size_t len;
    ASSERT_OK(mp_queue_get_into(q, buf, sizeof buf, &len, 0));
    p = start_with(put_when_told, MP_HANDLE(q), MP_HANDLE(theirs), NULL, 0);
    ASSERT_OK(mp_conn_send_bytes(mine, "go", 2));
    ASSERT_OK(mp_wait(only_queues, 2, JOIN_MS, ready, &nready));
    cr_assert(nready == 1 && ready[0] == 1);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);

    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_conn_free(quiet1);
    mp_conn_free(quiet2);
    mp_queue_free(q);
    mp_queue_free(other);
}

/* ---- pool workers ---- */

static mp_queue_t *worker_queue;

static int keep_queue(mp_args_t *initargs)
{
    return mp_args_queue(initargs, 0, &worker_queue);
}

static int put_input(const void *in, size_t inlen, mp_buf_t *out)
{
    (void)out;
    return mp_queue_put(worker_queue, in, inlen, MP_FOREVER) ? mp_task_fail(out, "put") : 0;
}

/* The task's input is an export blob: the worker imports the queue. */
static int put_through_blob(const void *in, size_t inlen, mp_buf_t *out)
{
    mp_handle_t *h;
    if (mp_handle_import(in, inlen, &h)) return mp_task_fail(out, "import");
    int rc = mp_queue_put((mp_queue_t *)h, "blob", 4, MP_FOREVER);
    mp_queue_free((mp_queue_t *)h);
    return rc ? mp_task_fail(out, "put") : 0;
}

Test(queue, pool_workers_use_queues, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    mp_args_t *a = args_of(MP_HANDLE(q), NULL, NULL);
    mp_pool_opts_t o = {.processes = 2, .initializer = keep_queue, .initargs = a};
    mp_pool_t *pool;
    ASSERT_OK(mp_pool_create(&pool, &o));
    void *out;
    size_t outlen;
    for (int i = 0; i < 10; i++) {
        ASSERT_OK(mp_pool_apply(pool, put_input, &i, sizeof i, &out, &outlen));
        mp_free(out);
    }
    void *blob;
    size_t blen;
    ASSERT_OK(mp_handle_export(MP_HANDLE(q), &blob, &blen));
    ASSERT_OK(mp_pool_apply(pool, put_through_blob, blob, blen, &out, &outlen));
    mp_free(out);
    mp_free(blob);
    int seen = 0;
    for (int i = 0; i < 10; i++) {
        int v;
        size_t len;
        ASSERT_OK(mp_queue_get_into(q, &v, sizeof v, &len, 0));
        seen |= 1 << v;
    }
    cr_assert_eq(seen, 0x3ff);
    char buf[8];
    size_t len;
    ASSERT_OK(mp_queue_get_into(q, buf, sizeof buf, &len, 0));
    cr_assert(len == 4 && !memcmp(buf, "blob", 4));
    ASSERT_OK(mp_pool_close(pool));
    ASSERT_OK(mp_pool_join(pool, JOIN_MS));
    mp_pool_free(pool);
    mp_args_free(a);
    mp_queue_free(q);
}

/* ---- the seed programs (examples/queue_*.c) ---- */

static int writer(mp_args_t *a)
{
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    for (size_t i = 1; i < mp_args_count(a); i++) {
        const char *s;
        if (mp_args_str(a, i, &s) || mp_queue_put(q, s, strlen(s), MP_FOREVER)) return 11;
    }
    return 0;
}

/* Two writers (url1..url3, url4..url5) and the parent reading five. */
Test(queue, seed_two_writers_one_reader, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    mp_args_t *a1 = args_of(MP_HANDLE(q), NULL, NULL), *a2 = args_of(MP_HANDLE(q), NULL, NULL);
    ASSERT_OK(mp_args_add_str(a1, "url1"));
    ASSERT_OK(mp_args_add_str(a1, "url2"));
    ASSERT_OK(mp_args_add_str(a1, "url3"));
    ASSERT_OK(mp_args_add_str(a2, "url4"));
    ASSERT_OK(mp_args_add_str(a2, "url5"));
    mp_process_t *p1 = start_proc(writer, a1), *p2 = start_proc(writer, a2);
    cr_assert_eq(join_code(p1), 0);
    cr_assert_eq(join_code(p2), 0);
    int next1 = 1, next2 = 4;
    for (int i = 0; i < 5; i++) {
        char buf[16];
        size_t len;
        ASSERT_OK(mp_queue_get_into(q, buf, sizeof buf - 1, &len, 0));
        buf[len] = 0;
        int k = buf[3] - '0';
        int *next = k <= 3 ? &next1 : &next2;
        cr_assert_eq(k, *next, "got %s", buf);
        (*next)++;
    }
    cr_assert(next1 == 4 && next2 == 6);
    mp_process_free(p1);
    mp_process_free(p2);
    mp_args_free(a1);
    mp_args_free(a2);
    mp_queue_free(q);
}

/* A producer puts 'a'; the consumer (a child) gets it. */
static int get_a(mp_args_t *a)
{
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    char c;
    size_t len;
    if (mp_queue_get_into(q, &c, 1, &len, JOIN_MS) || len != 1) return 11;
    return c == 'a' ? 0 : 12;
}

Test(queue, seed_producer_consumer, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    mp_process_t *c = start_with(get_a, MP_HANDLE(q), NULL, NULL, 0);
    ASSERT_OK(mp_queue_put(q, "a", 1, MP_FOREVER));
    cr_assert_eq(join_code(c), 0);
    mp_process_free(c);
    mp_queue_free(q);
}

/* The dealer puts A K Q J 10; the player takes cards until empty(). */
static int deal(mp_args_t *a)
{
    static const char *const cards[] = {"A", "K", "Q", "J", "10"};
    mp_queue_t *q;
    if (mp_args_queue(a, 0, &q)) return 10;
    for (int i = 0; i < 5; i++)
        if (mp_queue_put(q, cards[i], strlen(cards[i]), MP_FOREVER)) return 11;
    return 0;
}

Test(queue, seed_card_dealing, .timeout = TEST_TIMEOUT)
{
    mp_queue_t *q = make_queue(0, false, 0);
    mp_process_t *p = start_with(deal, MP_HANDLE(q), NULL, NULL, 0);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    char hand[32] = "";
    while (mp_queue_empty(q) == 0) {
        char card[4];
        size_t len;
        ASSERT_OK(mp_queue_get_into(q, card, sizeof card - 1, &len, 0));
        card[len] = 0;
        strcat(hand, card);
        strcat(hand, " ");
    }
    cr_assert_str_eq(hand, "A K Q J 10 ");
    mp_queue_free(q);
}
