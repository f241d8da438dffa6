/* The metrics tables: the script's series (names, definitions, bounds, the
 * text) and the built-in figures, each summed over workers through the tally,
 * a dead worker's counters kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "series.h"
#include "stats.h"
#include "tally.h"

static char *text(ws_series_t *s)
{
    static char out[1 << 16];
    ws_buf_t b;
    ws_buf_init(&b);
    ws_series_render(s, &b);
    snprintf(out, sizeof out, "%.*s", (int)b.len, b.len ? (char *)b.data : "");
    ws_buf_free(&b);
    return out;
}

static char *value(double v)
{
    static char out[64];
    ws_buf_t b;
    ws_buf_init(&b);
    ws_stats_value(&b, v);
    snprintf(out, sizeof out, "%.*s", (int)b.len, (char *)b.data);
    ws_buf_free(&b);
    return out;
}

static void test_series_names_follow_the_grammar(void **state)
{
    (void)state;
    assert_true(ws_series_valid_name("app_hits_total"));
    assert_true(ws_series_valid_name("a:b_c9"));
    assert_true(ws_series_valid_name("_x"));
    assert_false(ws_series_valid_name(""));
    assert_false(ws_series_valid_name("9lives"));
    assert_false(ws_series_valid_name("a-b"));
    assert_false(ws_series_valid_name("a b"));
    char longname[80];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_false(ws_series_valid_name(longname));
    assert_true(ws_series_valid_label("kind"));
    assert_false(ws_series_valid_label("__reserved"));
    assert_false(ws_series_valid_label("a:b"));
    assert_false(ws_series_valid_label("1a"));
}

static void test_series_values_are_written_as_prometheus_reads_them(void **state)
{
    (void)state;
    assert_string_equal(value(3), "3");
    assert_string_equal(value(-2), "-2");
    assert_string_equal(value(0.1), "0.1");
    assert_string_equal(value(2.5e-7), "2.5e-07");
    assert_string_equal(value(1.0 / 3), "0.33333333333333331");
    assert_string_equal(value(INFINITY), "+Inf");
    assert_string_equal(value(-INFINITY), "-Inf");
    assert_string_equal(value(NAN), "NaN");
}

static void test_series_a_family_defined_again_is_the_same_unless_it_differs(void **state)
{
    (void)state;
    ws_series_t *s = ws_series_new_private();
    char err[256];
    const char *l[] = {"kind"};
    int a = ws_series_family(s, "a_total", "A.", WS_SERIES_COUNTER, l, 1, NULL, 0, err, sizeof err);
    assert_int_equal(a, 0);
    /* a reload defines it again: the same family, its values kept */
    long cell = ws_series_get(s, a, (const char *[]){"x"}, (size_t[]){1}, 1);
    ws_series_add(s, cell, 2);
    assert_int_equal(ws_series_family(s, "a_total", "A again.", WS_SERIES_COUNTER, l, 1, NULL, 0,
                                      err, sizeof err),
                     a);
    assert_int_equal(ws_series_get(s, a, (const char *[]){"x"}, (size_t[]){1}, 1), cell);
    assert_non_null(strstr(text(s), "a_total{kind=\"x\"} 2\n"));
    assert_non_null(strstr(text(s), "# HELP a_total A again.\n"));
    /* another kind, other labels: an error naming what it was */
    assert_int_equal(ws_series_family(s, "a_total", "A.", WS_SERIES_GAUGE, l, 1, NULL, 0, err,
                                      sizeof err),
                     -1);
    assert_non_null(strstr(err, "defined already as a counter"));
    assert_int_equal(ws_series_family(s, "a_total", "A.", WS_SERIES_COUNTER, NULL, 0, NULL, 0,
                                      err, sizeof err),
                     -1);
    ws_series_free(s);
}

static void test_series_beyond_the_bound_are_refused_and_counted(void **state)
{
    (void)state;
    ws_series_t *s = ws_series_new_private();
    char err[256];
    const char *l[] = {"n"};
    int f = ws_series_family(s, "many", "Many.", WS_SERIES_GAUGE, l, 1, NULL, 0, err, sizeof err);
    char v[16];
    for (int i = 0; i < WS_SERIES_MAX; i++) {
        size_t n = (size_t)snprintf(v, sizeof v, "%d", i);
        assert_true(ws_series_get(s, f, (const char *[]){v}, &n, 1) >= 0);
    }
    uint64_t refused = ws_stats->v[WS_STAT_SERIES_REFUSED];
    size_t n = 3;
    assert_int_equal(ws_series_get(s, f, (const char *[]){"new"}, &n, 1), -1);
    assert_int_equal(ws_stats->v[WS_STAT_SERIES_REFUSED], refused + 1);
    /* one made before is still found */
    n = 1;
    assert_true(ws_series_get(s, f, (const char *[]){"7"}, &n, 1) >= 0);
    /* label text past its room: not refused, wrong (the caller errors) */
    char big[400];
    memset(big, 'x', sizeof big);
    n = sizeof big;
    assert_int_equal(ws_series_get(s, f, (const char *[]){big}, &n, 1), -2);
    ws_series_free(s);
}

static void test_series_render_escapes_and_accumulates_histograms(void **state)
{
    (void)state;
    ws_series_t *s = ws_series_new_private();
    char err[256];
    const char *l[] = {"room"};
    int h = ws_series_family(s, "lat_seconds", "Latency\nwith \\ in it.", WS_SERIES_HISTOGRAM, l, 1,
                             (const double[]){0.1, 1}, 2, err, sizeof err);
    assert_true(h >= 0);
    size_t n = 6;
    long c = ws_series_get(s, h, (const char *[]){"a\"b\\\nc"}, &n, 1);
    ws_series_observe(s, h, c, 0.05);
    ws_series_observe(s, h, c, 0.5);
    ws_series_observe(s, h, c, 7);
    ws_series_observe(s, h, c, 1); /* on a bound: in that bucket (le) */
    /* a cell from elsewhere (Lua could make one up) is told apart */
    assert_true(ws_series_valid_cell(s, h, c));
    assert_false(ws_series_valid_cell(s, h, c + 1));
    assert_false(ws_series_valid_cell(s, h + 1, c));
    assert_false(ws_series_valid_cell(s, h, -1));
    assert_string_equal(text(s),
                        "# HELP lat_seconds Latency\\nwith \\\\ in it.\n"
                        "# TYPE lat_seconds histogram\n"
                        "lat_seconds_bucket{room=\"a\\\"b\\\\\\nc\",le=\"0.1\"} 1\n"
                        "lat_seconds_bucket{room=\"a\\\"b\\\\\\nc\",le=\"1\"} 3\n"
                        "lat_seconds_bucket{room=\"a\\\"b\\\\\\nc\",le=\"+Inf\"} 4\n"
                        "lat_seconds_sum{room=\"a\\\"b\\\\\\nc\"} 8.55\n"
                        "lat_seconds_count{room=\"a\\\"b\\\\\\nc\"} 4\n");
    ws_series_free(s);
}

static void test_series_workers_sum_and_a_dead_ones_counters_stay(void **state)
{
    (void)state;
    int fd;
    ws_tally_t *sup = ws_tally_create(2, 0, &fd);
    ws_tally_t *w1 = ws_tally_attach(fd, 1), *w2 = ws_tally_attach(fd, 2);
    assert_non_null(w1);
    assert_non_null(w2);
    ws_series_t *s1 = ws_tally_series(w1), *s2 = ws_tally_series(w2);
    char err[256];
    int c = ws_series_family(s1, "c_total", "C.", WS_SERIES_COUNTER, NULL, 0, NULL, 0, err, sizeof err);
    int g = ws_series_family(s2, "g", "G.", WS_SERIES_GAUGE, NULL, 0, NULL, 0, err, sizeof err);
    /* the other worker finds the same families and cells */
    assert_int_equal(ws_series_family(s2, "c_total", "C.", WS_SERIES_COUNTER, NULL, 0, NULL, 0,
                                      err, sizeof err),
                     c);
    long cc = ws_series_get(s1, c, NULL, NULL, 0), gc = ws_series_get(s1, g, NULL, NULL, 0);
    assert_int_equal(ws_series_get(s2, c, NULL, NULL, 0), cc);
    ws_series_add(s1, cc, 3);
    ws_series_add(s2, cc, 4);
    ws_series_set(s1, gc, 10);
    ws_series_set(s2, gc, 5);
    assert_non_null(strstr(text(s1), "c_total 7\n"));
    assert_non_null(strstr(text(s2), "g 15\n"));
    /* the built-in figures: each worker's block, summed */
    ws_tally_stats(w1)->v[WS_STAT_MSGS_IN] = 2;
    ws_tally_stats(w2)->v[WS_STAT_MSGS_IN] = 5;
    ws_tally_stats(w2)->v[WS_STAT_OPEN] = 9;
    ws_stats_t sum;
    ws_tally_stats_sum(w1, &sum);
    assert_int_equal(sum.v[WS_STAT_MSGS_IN], 7);
    assert_int_equal(sum.v[WS_STAT_OPEN], 9);
    /* worker 2 dies: its counters stay in the sums, its gauges go */
    ws_tally_forget(sup, 2);
    assert_non_null(strstr(text(s1), "c_total 7\n"));
    assert_non_null(strstr(text(s1), "g 10\n"));
    ws_tally_stats_sum(w1, &sum);
    assert_int_equal(sum.v[WS_STAT_MSGS_IN], 7);
    assert_int_equal(sum.v[WS_STAT_OPEN], 0);
    /* its successor starts from nothing and adds to them */
    ws_series_add(s2, cc, 1);
    assert_non_null(strstr(text(s1), "c_total 8\n"));
    ws_tally_unmap(w1);
    ws_tally_unmap(w2);
    ws_tally_unmap(sup);
    close(fd);
}

static void test_stats_render_one_help_and_type_per_family(void **state)
{
    (void)state;
    ws_stats_t v = {0};
    v.v[WS_STAT_CLOSE_FIRST] = 4;
    v.v[WS_STAT_CLOSE_OTHER] = 2;
    v.v[WS_STAT_IDLE_NS] = 1500000000;
    ws_buf_t b;
    ws_buf_init(&b);
    ws_stats_render(&v, &b);
    ws_buf_append(&b, "", 1);
    const char *t = (const char *)b.data;
    assert_non_null(strstr(t, "wspush_connections_closed_total{code=\"1000\"} 4\n"));
    assert_non_null(strstr(t, "wspush_connections_closed_total{code=\"other\"} 2\n"));
    assert_null(strstr(t, "code=\"1004\""));
    assert_non_null(strstr(t, "wspush_event_loop_idle_seconds_total 1.5\n"));
    const char *first = strstr(t, "# TYPE wspush_connections_closed_total counter\n");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE wspush_connections_closed_total"));
    assert_non_null(strstr(t, "# TYPE wspush_connections_open gauge\n"));
    ws_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_names_follow_the_grammar),
        cmocka_unit_test(test_series_values_are_written_as_prometheus_reads_them),
        cmocka_unit_test(test_series_a_family_defined_again_is_the_same_unless_it_differs),
        cmocka_unit_test(test_series_beyond_the_bound_are_refused_and_counted),
        cmocka_unit_test(test_series_render_escapes_and_accumulates_histograms),
        cmocka_unit_test(test_series_workers_sum_and_a_dead_ones_counters_stay),
        cmocka_unit_test(test_stats_render_one_help_and_type_per_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
