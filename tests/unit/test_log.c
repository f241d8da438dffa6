/* The log over a stderr that stalls: whole records, drops counted and said,
 * and fields escaped. No loop here: each record first writes what waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define N 2000
#define SIZE 1000

/* Everything the pipe holds now. */
static void slurp(int fd, ws_buf_t *b)
{
    char chunk[65536];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof chunk)) > 0)
        ws_buf_append(b, chunk, (size_t)r);
}

static void test_log_stalled_stderr_drops_whole_records_and_says_how_many(void **state)
{
    (void)state;
    int saved = dup(2), p[2];
    assert_int_equal(pipe(p), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    dup2(p[1], 2);
    close(p[1]);
    static char x[SIZE + 1];
    memset(x, 'x', SIZE);
    /* Nobody reads: the pipe (64 KiB) and the queue (1 MiB) fill, and
     * no call waits for a reader. */
    for (int i = 0; i < N; i++)
        ws_log_info("r %d %s", i, x);
    uint64_t dropped = ws_log_dropped();
    /* Read, and log on, until the log has caught up and said so. */
    ws_buf_t b;
    ws_buf_init(&b);
    int said = 0;
    for (int round = 0; round < 1000 && !said; round++) {
        slurp(p[0], &b);
        ws_log_info("tick");
        ws_buf_append(&b, "", 1);
        said = strstr((char *)b.data, "were dropped") != NULL;
        b.len--;
    }
    slurp(p[0], &b);
    dup2(saved, 2);
    close(saved);
    close(p[0]);
    ws_buf_append(&b, "", 1);
    assert_true(said);
    assert_true(dropped > 0);
    /* Every line whole: a time stamp first; every "r" record its full size. */
    int seen = 0;
    unsigned long long told = 0;
    for (char *line = (char *)b.data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        assert_true(strlen(line) > 30 && line[4] == '-' && line[23] == 'Z');
        char *m = strstr(line, "] ") + 2;
        int i;
        if (sscanf(m, "r %d ", &i) == 1) {
            assert_int_equal(strlen(strchr(m + 2, ' ') + 1), SIZE);
            seen++;
        } else if (strstr(m, "were dropped")) {
            assert_int_equal(sscanf(m, "%llu log records were dropped", &told), 1);
        }
    }
    assert_int_equal(told, dropped);
    assert_int_equal((unsigned long long)seen + told, N);
    ws_buf_free(&b);
}

static char got[512];
static void capture(void *ud, ws_log_level_t level, const char *msg)
{
    (void)ud, (void)level;
    snprintf(got, sizeof got, "%s", msg);
}

static void test_log_access_fields_are_key_values_with_escaped_strings(void **state)
{
    (void)state;
    ws_log_set_sink(capture, NULL, NULL);
    ws_log_field_t f[] = {
        WS_LOG_STR("path", "/a\nb\"c", 6),
        WS_LOG_INT("status", 403),
        WS_LOG_NUM("ms", 1.5, 1),
    };
    ws_log_access(f, 3);
    ws_log_set_sink(NULL, NULL, NULL);
    assert_string_equal(got, "access path=\"/a\\nb\\\"c\" status=403 ms=1.5");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_stalled_stderr_drops_whole_records_and_says_how_many),
        cmocka_unit_test(test_log_access_fields_are_key_values_with_escaped_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
