/*
 * timer.h on a clock the test passes in: firing order, repeats, callbacks
 * that start and stop timers, and one run never firing a timer twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "timer.h"

/* A timer that writes its name into a log when it fires. */
typedef struct tt_s {
    ws_timer_t t; /* first: the callback gets it back from its ws_timer_t */
    char name;
    ws_timers_t *ts;
    uint64_t now;        /* the run's time, for callbacks that start timers */
    struct tt_s *other;  /* what a callback acts on */
    int active_in_cb;    /* ws_timer_active seen from inside the callback */
    uint64_t due_in_cb;
    int fired;
} tt_t;

static char order[128];
static size_t norder;

static void reset_log(void)
{
    norder = 0;
    order[0] = '\0';
}

static void record(ws_timer_t *t)
{
    tt_t *x = (tt_t *)t;
    x->fired++;
    x->active_in_cb = ws_timer_active(t);
    x->due_in_cb = t->due;
    if (norder + 1 < sizeof order) {
        order[norder++] = x->name;
        order[norder] = '\0';
    }
}

static void init_tt(tt_t *x, char name, ws_timers_t *ts)
{
    memset(x, 0, sizeof *x);
    x->name = name;
    x->ts = ts;
}

static void test_timer_fires_by_due_time_then_start_order(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t a, b, c, d, e;
    init_tt(&a, 'A', &ts);
    init_tt(&b, 'B', &ts);
    init_tt(&c, 'C', &ts);
    init_tt(&d, 'D', &ts);
    init_tt(&e, 'E', &ts);
    ws_timer_start(&ts, &a.t, 0, 30, 0, record);
    ws_timer_start(&ts, &b.t, 0, 10, 0, record);
    ws_timer_start(&ts, &c.t, 0, 10, 0, record);
    ws_timer_start(&ts, &d.t, 0, 20, 0, record);
    ws_timer_start(&ts, &e.t, 0, 10, 0, record);
    assert_int_equal(ws_timers_next(&ts), 10);
    assert_int_equal(ws_timers_run(&ts, 9), 0);
    assert_string_equal(order, "");
    assert_int_equal(ws_timers_run(&ts, 20), 4);
    assert_string_equal(order, "BCED");
    assert_int_equal(ws_timers_next(&ts), 30);
    assert_int_equal(ws_timers_run(&ts, 100), 1);
    assert_string_equal(order, "BCEDA");
    assert_false(ws_timer_active(&a.t));
    assert_int_equal(ws_timers_next(&ts), UINT64_MAX);
    ws_timers_free(&ts);
}

static void test_timer_ties_keep_start_order_through_the_heap(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    /* Enough to make the heap several levels deep; stops from its middle
     * must not disturb the order of the rest. */
    enum { N = 40 };
    tt_t x[N];
    for (int i = 0; i < N; i++) {
        init_tt(&x[i], (char)('0' + i), &ts);
        ws_timer_start(&ts, &x[i].t, 0, (uint64_t)(i % 3 == 0 ? 5 : 7), 0, record);
    }
    for (int i = 1; i < N; i += 4)
        ws_timer_stop(&ts, &x[i].t);
    ws_timer_stop(&ts, &x[1].t); /* again: nothing happens */
    char want[N + 1];
    size_t k = 0;
    for (int due = 5; due <= 7; due += 2)
        for (int i = 0; i < N; i++)
            if ((i % 3 == 0 ? 5 : 7) == due && i % 4 != 1)
                want[k++] = (char)('0' + i);
    want[k] = '\0';
    assert_int_equal(ws_timers_run(&ts, 7), k);
    assert_string_equal(order, want);
    ws_timers_free(&ts);
}

static void test_timer_restart_goes_behind_timers_due_at_the_same_time(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t a, b;
    init_tt(&a, 'A', &ts);
    init_tt(&b, 'B', &ts);
    ws_timer_start(&ts, &a.t, 0, 10, 0, record);
    ws_timer_start(&ts, &b.t, 0, 10, 0, record);
    ws_timer_start(&ts, &a.t, 0, 10, 0, record);
    assert_int_equal(ws_timers_run(&ts, 10), 2);
    assert_string_equal(order, "BA");
    ws_timers_free(&ts);
}

static void test_timer_repeat_rearms_at_run_time_plus_repeat(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t r;
    init_tt(&r, 'R', &ts);
    ws_timer_start(&ts, &r.t, 0, 10, 50, record);
    /* Run late: the next one is 50 after this run, not after the due time. */
    assert_int_equal(ws_timers_run(&ts, 15), 1);
    assert_true(r.active_in_cb);
    assert_int_equal(r.due_in_cb, 65);
    assert_true(ws_timer_active(&r.t));
    assert_int_equal(ws_timers_next(&ts), 65);
    assert_int_equal(ws_timers_run(&ts, 64), 0);
    assert_int_equal(ws_timers_run(&ts, 65), 1);
    assert_int_equal(ws_timers_next(&ts), 115);
    /* Far behind: one firing, not one per missed period. */
    assert_int_equal(ws_timers_run(&ts, 1000), 1);
    assert_int_equal(ws_timers_next(&ts), 1050);
    assert_string_equal(order, "RRR");
    ws_timers_free(&ts);
    assert_false(ws_timer_active(&r.t));
}

static void test_timer_one_shot_is_inactive_in_its_callback(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t a;
    init_tt(&a, 'A', &ts);
    ws_timer_start(&ts, &a.t, 100, 0, 0, record);
    assert_int_equal(ws_timers_run(&ts, 100), 1);
    assert_false(a.active_in_cb);
    assert_int_equal(ws_timers_run(&ts, 200), 0);
    assert_int_equal(a.fired, 1);
    ws_timers_free(&ts);
}

static void stop_other(ws_timer_t *t)
{
    tt_t *x = (tt_t *)t;
    record(t);
    ws_timer_stop(x->ts, &x->other->t);
}

static void test_timer_callback_stops_another_due_in_the_same_run(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t a, b, c, d;
    init_tt(&a, 'A', &ts);
    init_tt(&b, 'B', &ts);
    init_tt(&c, 'C', &ts);
    init_tt(&d, 'D', &ts);
    a.other = &c;
    ws_timer_start(&ts, &a.t, 0, 10, 0, stop_other);
    ws_timer_start(&ts, &b.t, 0, 10, 0, record);
    ws_timer_start(&ts, &c.t, 0, 10, 0, record);
    ws_timer_start(&ts, &d.t, 0, 20, 0, record);
    assert_int_equal(ws_timers_run(&ts, 20), 3);
    assert_string_equal(order, "ABD");
    assert_int_equal(c.fired, 0);
    assert_false(ws_timer_active(&c.t));
    ws_timers_free(&ts);
}

static void stop_self_second_time(ws_timer_t *t)
{
    tt_t *x = (tt_t *)t;
    record(t);
    if (x->fired == 2)
        ws_timer_stop(x->ts, t);
}

static void test_timer_repeating_callback_stops_itself(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t r, o;
    init_tt(&r, 'R', &ts);
    init_tt(&o, 'O', &ts);
    ws_timer_start(&ts, &r.t, 0, 10, 10, stop_self_second_time);
    ws_timer_start(&ts, &o.t, 0, 25, 0, record);
    assert_int_equal(ws_timers_run(&ts, 10), 1);
    assert_int_equal(ws_timers_run(&ts, 20), 1);
    assert_false(ws_timer_active(&r.t));
    assert_int_equal(ws_timers_next(&ts), 25);
    assert_int_equal(ws_timers_run(&ts, 100), 1);
    assert_string_equal(order, "RRO");
    ws_timers_free(&ts);
}

static void start_other_now(ws_timer_t *t)
{
    tt_t *x = (tt_t *)t;
    record(t);
    /* 0 ms, repeating every 0 ms would be a spin; every 5 ms it is a timer
     * due right now started from inside the run. */
    ws_timer_start(x->ts, &x->other->t, x->now, 0, 5, record);
}

static void restart_self_now(ws_timer_t *t)
{
    tt_t *x = (tt_t *)t;
    record(t);
    ws_timer_start(x->ts, t, x->now, 0, 0, restart_self_now);
}

static void test_timer_zero_ms_timer_started_in_a_callback_waits_for_the_next_run(void **state)
{
    (void)state;
    ws_timers_t ts;
    ws_timers_init(&ts);
    reset_log();
    tt_t a, z, s;
    init_tt(&a, 'A', &ts);
    init_tt(&z, 'Z', &ts);
    init_tt(&s, 'S', &ts);
    a.other = &z;
    a.now = s.now = 100;
    ws_timer_start(&ts, &a.t, 100, 0, 0, start_other_now);
    ws_timer_start(&ts, &s.t, 100, 0, 0, restart_self_now);
    assert_int_equal(ws_timers_run(&ts, 100), 2);
    assert_string_equal(order, "AS");
    assert_true(ws_timer_active(&z.t));
    assert_true(ws_timer_active(&s.t));
    /* Each fires once per run, however often the run is repeated. */
    assert_int_equal(ws_timers_run(&ts, 100), 2);
    assert_string_equal(order, "ASZS");
    assert_int_equal(ws_timers_run(&ts, 100), 1);
    assert_string_equal(order, "ASZSS");
    assert_int_equal(z.fired, 1);
    assert_int_equal(ws_timers_next(&ts), 100);
    ws_timers_free(&ts);
    assert_false(ws_timer_active(&z.t));
    assert_false(ws_timer_active(&s.t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_fires_by_due_time_then_start_order),
        cmocka_unit_test(test_timer_ties_keep_start_order_through_the_heap),
        cmocka_unit_test(test_timer_restart_goes_behind_timers_due_at_the_same_time),
        cmocka_unit_test(test_timer_repeat_rearms_at_run_time_plus_repeat),
        cmocka_unit_test(test_timer_one_shot_is_inactive_in_its_callback),
        cmocka_unit_test(test_timer_callback_stops_another_due_in_the_same_run),
        cmocka_unit_test(test_timer_repeating_callback_stops_itself),
        cmocka_unit_test(test_timer_zero_ms_timer_started_in_a_callback_waits_for_the_next_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
