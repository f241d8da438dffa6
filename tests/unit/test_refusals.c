/* Refusals logged once per episode of one kind, with a count at its end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <string.h>

#include "log.h"
#include "refusals.h"

static char logged[16][256];
static int nlogged;

static void sink(void *ud, ws_log_level_t level, const char *msg)
{
    (void)ud, (void)level;
    if (nlogged < 16)
        snprintf(logged[nlogged++], sizeof logged[0], "%s", msg);
}

static int setup(void **state)
{
    (void)state;
    nlogged = 0;
    ws_log_set_sink(sink, NULL, NULL);
    return 0;
}

static void test_refusals_one_line_per_episode_and_a_count_at_its_end(void **state)
{
    (void)state;
    ws_refusals_t r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 5; i++)
        ws_refusals_note(&r, 1000 + (uint64_t)i, 503, "too many connections", "10.0.0.1");
    ws_refusals_note(&r, 1010, 403, "cross-origin request refused", "10.0.0.2");
    assert_int_equal(nlogged, 2);
    assert_non_null(strstr(logged[0], "503 too many connections (first: 10.0.0.1)"));
    assert_non_null(strstr(logged[1], "403 cross-origin"));
    ws_refusals_tick(&r, 1004 + WS_REFUSALS_QUIET_MS - 1);
    assert_int_equal(nlogged, 2); /* not quiet long enough */
    ws_refusals_tick(&r, 1004 + WS_REFUSALS_QUIET_MS);
    assert_int_equal(nlogged, 3);
    assert_non_null(strstr(logged[2], "refused 5 requests with 503 too many connections"));
    /* a single refusal ends without a summary */
    ws_refusals_tick(&r, 1010 + WS_REFUSALS_QUIET_MS);
    assert_int_equal(nlogged, 3);
    /* and a new episode is news again */
    ws_refusals_note(&r, 20000, 503, "too many connections", "10.0.0.3");
    assert_int_equal(nlogged, 4);
}

static void test_refusals_more_kinds_than_slots_end_the_quietest(void **state)
{
    (void)state;
    ws_refusals_t r;
    memset(&r, 0, sizeof r);
    char reason[32];
    for (int i = 0; i < WS_REFUSALS_KINDS; i++) {
        snprintf(reason, sizeof reason, "reason %d", i);
        ws_refusals_note(&r, 100 + (uint64_t)i, 503, reason, "x");
        ws_refusals_note(&r, 100 + (uint64_t)i, 503, reason, "x");
    }
    assert_int_equal(nlogged, WS_REFUSALS_KINDS);
    ws_refusals_note(&r, 500, 429, "too fast", "x");
    /* reason 0 (the quietest) was summed up to make room, then the new one began */
    assert_int_equal(nlogged, WS_REFUSALS_KINDS + 2);
    assert_non_null(strstr(logged[WS_REFUSALS_KINDS], "refused 2 requests with 503 reason 0"));
    assert_non_null(strstr(logged[WS_REFUSALS_KINDS + 1], "429 too fast"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_refusals_one_line_per_episode_and_a_count_at_its_end, setup),
        cmocka_unit_test_setup(test_refusals_more_kinds_than_slots_end_the_quietest, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
