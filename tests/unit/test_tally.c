/* The workers' shared counts: ids, sums, the address table, a dead worker forgotten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally.h"

typedef struct {
    ws_tally_t *sup, *w1, *w2;
    int fd;
} fx_t;

static int setup(void **state)
{
    static fx_t f;
    f.sup = ws_tally_create(2, 64, &f.fd);
    assert_non_null(f.sup);
    f.w1 = ws_tally_attach(f.fd, 1);
    f.w2 = ws_tally_attach(f.fd, 2);
    assert_non_null(f.w1);
    assert_non_null(f.w2);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    ws_tally_unmap(f->w1);
    ws_tally_unmap(f->w2);
    ws_tally_unmap(f->sup);
    close(f->fd);
    return 0;
}

static void test_tally_attach_refuses_a_worker_out_of_range(void **state)
{
    fx_t *f = *state;
    assert_null(ws_tally_attach(f->fd, 0));
    assert_null(ws_tally_attach(f->fd, 3));
    assert_int_equal(ws_tally_workers(f->w2), 2);
    assert_int_equal(ws_tally_worker(f->w2), 2);
    int fd;
    assert_null(ws_tally_create(0, 0, &fd));
    assert_null(ws_tally_create(WS_TALLY_MAX_WORKERS + 1, 0, &fd));
}

static void test_tally_ids_are_unique_across_workers_and_processes(void **state)
{
    fx_t *f = *state;
    uint64_t a = ws_tally_next_id(f->w1), b = ws_tally_next_id(f->w2);
    assert_true(a != b);
    /* A child process (a worker is one) takes from the same counter. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        ws_tally_t *t = ws_tally_attach(f->fd, 2);
        uint64_t id = 0;
        for (int i = 0; i < 1000; i++)
            id = ws_tally_next_id(t);
        int ok = write(p[1], &id, sizeof id) == sizeof id;
        ws_tally_unmap(t);
        _exit(ok ? 0 : 1);
    }
    for (int i = 0; i < 1000; i++)
        ws_tally_next_id(f->w1);
    int st;
    waitpid(pid, &st, 0);
    uint64_t child_last;
    assert_int_equal(read(p[0], &child_last, sizeof child_last), sizeof child_last);
    close(p[0]);
    close(p[1]);
    /* 2002 ids were taken in all; the next one is past all of them. */
    assert_int_equal(ws_tally_next_id(f->w1), b + 2001);
    assert_true(child_last > b && child_last <= b + 2000);
}

static void test_tally_sums_every_workers_open_and_memory(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 3; i++)
        assert_true(ws_tally_open_hold(f->w1, 100));
    for (int i = 0; i < 5; i++)
        assert_true(ws_tally_open_hold(f->w2, 100));
    ws_tally_open_release(f->w2);
    ws_tally_set_mem(f->w1, 1000);
    ws_tally_set_mem(f->w2, 24);
    assert_int_equal(ws_tally_open(f->sup), 7);
    assert_int_equal(ws_tally_mem(f->w1), 1024);
    ws_tally_relay(f->w2, 5, 6, 7);
    ws_tally_figures_t fig;
    ws_tally_figures(f->sup, 2, &fig);
    assert_int_equal(fig.open, 4);
    assert_int_equal(fig.relayed, 5);
    assert_int_equal(fig.received, 6);
    assert_int_equal(fig.dropped, 7);
    /* The supervisor forgets a dead worker: its share leaves the sums. */
    ws_tally_forget(f->sup, 2);
    assert_int_equal(ws_tally_open(f->sup), 3);
    assert_int_equal(ws_tally_mem(f->sup), 1000);
}

static void test_tally_holds_no_more_open_places_than_the_limit(void **state)
{
    fx_t *f = *state;
    /* Two processes take places as fast as they can: together they get
     * exactly the limit, never one more. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        ws_tally_t *t = ws_tally_attach(f->fd, 2);
        int got = 0;
        for (int i = 0; i < 100000; i++)
            got += ws_tally_open_hold(t, 5000);
        ws_tally_unmap(t);
        _exit(write(p[1], &got, sizeof got) == sizeof got ? 0 : 1);
    }
    int mine = 0;
    for (int i = 0; i < 100000; i++)
        mine += ws_tally_open_hold(f->w1, 5000);
    int st, theirs = -1;
    waitpid(pid, &st, 0);
    assert_int_equal(read(p[0], &theirs, sizeof theirs), sizeof theirs);
    close(p[0]);
    close(p[1]);
    assert_int_equal(mine + theirs, 5000);
    assert_int_equal(ws_tally_open(f->sup), 5000);
    ws_tally_figures_t fig;
    ws_tally_figures(f->sup, 1, &fig);
    assert_int_equal(fig.open, (uint64_t)mine);
    /* A dead worker's places come back. */
    ws_tally_forget(f->sup, 2);
    assert_int_equal(ws_tally_open(f->sup), (uint64_t)mine);
    assert_true(ws_tally_open_hold(f->w1, 5000) == (mine < 5000));
}

static void test_tally_counts_an_address_over_the_whole_server(void **state)
{
    fx_t *f = *state;
    assert_int_equal(ws_tally_ip_inc(f->w1, WS_TALLY_IP_WS, "10.0.0.1"), 1);
    assert_int_equal(ws_tally_ip_inc(f->w2, WS_TALLY_IP_WS, "10.0.0.1"), 2);
    assert_int_equal(ws_tally_ip_inc(f->w2, WS_TALLY_IP_WS, "10.0.0.1"), 3);
    /* The kinds are apart, and so are addresses. */
    assert_int_equal(ws_tally_ip_inc(f->w1, WS_TALLY_IP_TCP, "10.0.0.1"), 1);
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_WS, "10.0.0.2"), 0);
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_WS, "10.0.0.1"), 3);
    ws_tally_ip_dec(f->w2, WS_TALLY_IP_WS, "10.0.0.1");
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_WS, "10.0.0.1"), 2);
    /* A worker takes back only what it counted. */
    ws_tally_ip_dec(f->w1, WS_TALLY_IP_WS, "10.0.0.1");
    ws_tally_ip_dec(f->w1, WS_TALLY_IP_WS, "10.0.0.1");
    assert_int_equal(ws_tally_ip_count(f->w2, WS_TALLY_IP_WS, "10.0.0.1"), 1);
    /* Worker 2 dies: its counts go. */
    ws_tally_forget(f->sup, 2);
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_WS, "10.0.0.1"), 0);
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_TCP, "10.0.0.1"), 1);
}

static void test_tally_table_survives_churn_and_says_when_full(void **state)
{
    fx_t *f = *state;
    char ip[48];
    /* Many more adds and removes than slots: tombstones are reclaimed. */
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 20; i++) {
            snprintf(ip, sizeof ip, "10.%d.0.%d", round, i);
            assert_int_equal(ws_tally_ip_inc(f->w1, WS_TALLY_IP_WS, ip), 1);
        }
        for (int i = 0; i < 20; i++) {
            snprintf(ip, sizeof ip, "10.%d.0.%d", round, i);
            ws_tally_ip_dec(f->w1, WS_TALLY_IP_WS, ip);
        }
    }
    /* 64 slots hold 32 live entries at most. */
    int full = -1;
    for (int i = 0; i < 64 && full < 0; i++) {
        snprintf(ip, sizeof ip, "192.168.0.%d", i);
        if (ws_tally_ip_inc(f->w1, WS_TALLY_IP_WS, ip) == UINT32_MAX)
            full = i;
    }
    assert_int_equal(full, 32);
    /* The ones counted are still there. */
    assert_int_equal(ws_tally_ip_count(f->w2, WS_TALLY_IP_WS, "192.168.0.31"), 1);
    ws_tally_forget(f->sup, 1);
    assert_int_equal(ws_tally_ip_inc(f->w1, WS_TALLY_IP_WS, "192.168.0.40"), 1);
}

static void test_tally_without_an_address_table(void **state)
{
    (void)state;
    int fd;
    ws_tally_t *t = ws_tally_create(1, 0, &fd);
    ws_tally_t *w = ws_tally_attach(fd, 1);
    assert_int_equal(ws_tally_ip_count(w, WS_TALLY_IP_WS, "1.2.3.4"), 0);
    assert_int_equal(ws_tally_ip_inc(w, WS_TALLY_IP_WS, "1.2.3.4"), UINT32_MAX);
    ws_tally_ip_dec(w, WS_TALLY_IP_WS, "1.2.3.4");
    ws_tally_unmap(w);
    ws_tally_unmap(t);
    close(fd);
}

static void test_tally_a_count_made_in_another_process_is_seen(void **state)
{
    fx_t *f = *state;
    pid_t pid = fork();
    if (pid == 0) {
        ws_tally_t *t = ws_tally_attach(f->fd, 2);
        ws_tally_ip_inc(t, WS_TALLY_IP_WS, "10.9.9.9");
        ws_tally_unmap(t);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(ws_tally_ip_count(f->w1, WS_TALLY_IP_WS, "10.9.9.9"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tally_attach_refuses_a_worker_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tally_ids_are_unique_across_workers_and_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tally_sums_every_workers_open_and_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tally_holds_no_more_open_places_than_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tally_counts_an_address_over_the_whole_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tally_table_survives_churn_and_says_when_full, setup, teardown),
        cmocka_unit_test(test_tally_without_an_address_table),
        cmocka_unit_test_setup_teardown(test_tally_a_count_made_in_another_process_is_seen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
