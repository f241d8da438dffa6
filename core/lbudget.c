/* The time budget of Lua callbacks (--lua-timeout): a callback that has not
 * returned in time is stopped by an error raised inside it, so a loop that
 * never ends cannot hang the server.
 *
 * A count hook left on the main thread would do it, but with any hook set
 * Lua's VM leaves its fast path on every instruction: ~5 % of a pipelined
 * echo. So the main thread runs without one. A watchdog thread looks at the
 * running callback's deadline a few times per budget and, once it has passed,
 * signals the loop thread, whose handler sets a count hook (what lua.c does
 * for Ctrl-C: lua_sethook is safe in a signal handler). The hook raises the
 * error. Coroutines are Lua threads of their own that a hook on the main
 * thread does not reach, so coroutine.create and coroutine.wrap make theirs
 * with a count hook that checks the clock every HOOK_COUNT instructions.
 *
 * In a test's state (wspush.testing) there is no watchdog: a count hook is
 * set on the calling thread for the length of each callback, and coroutines
 * made meanwhile inherit it.
 *
 * Process-wide: the watchdog thread, the SIGRTMIN handler, and the deadline
 * of the callback running now (one loop thread per process). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lbind.h"
#include "log.h"
#include "stats.h"

#define HOOK_COUNT 100000

/* The loop thread's Lua state, for the signal handler (one server per process). */
static lua_State *volatile overdue_L;

static pthread_t loop_thread, watchdog;
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond;
static int wd_running, wd_stop;
static uint64_t wd_period_ns;
/* uv_hrtime() by which the running outermost callback must return; 0 = none.
 * Written by the loop thread, read by the hook and the watchdog. */
static _Atomic uint64_t wd_deadline;
/* The budget of the callback running now, for the message. */
static double wd_timeout;
/* The signal handler hooked a task's coroutine: its hook is cleared when
 * the run ends (a flag, not a lua_gethook per run). */
static volatile sig_atomic_t hooked;
/* The coroutine of the task running now (NULL while none runs, or while a
 * failed one closes its variables), and the one the hook made yield. */
static lua_State *task_co, *stopped_co;

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    uint64_t d = atomic_load_explicit(&wd_deadline, memory_order_relaxed);
    int overdue = d && uv_hrtime() > d;
    if (overdue && L == task_co && lua_isyieldable(L)) {
        /* A task is stopped by a yield, not an error: Lua 5.4 restores
         * hooks after an error raised in a hook only in a pcall, so a
         * coroutine failed that way could never be stopped again, and a
         * pcall in the handler would catch the error and go on. Only a
         * count event may yield: one comes at the next instruction. */
        if (ar->event != LUA_HOOKCOUNT) {
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
            return;
        }
        lua_sethook(L, NULL, 0, 0);
        ws_stats_inc(WS_STAT_LUA_TIMEOUTS);
        stopped_co = L;
        lua_yield(L, 0);
        return;
    }
    /* The watchdog's hook on the main thread is for one check (without a
     * watchdog the count hook stays, see ws__lbudget_init). */
    if (L == overdue_L && wd_running)
        lua_sethook(L, NULL, 0, 0);
    if (overdue) {
        ws_stats_inc(WS_STAT_LUA_TIMEOUTS);
        luaL_error(L, "callback exceeded its time budget (--lua-timeout %f s)", wd_timeout);
    }
}

static void on_overdue(int sig)
{
    (void)sig;
    lua_State *L = overdue_L;
    if (L) {
        hooked = 1;
        lua_sethook(L, budget_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    }
}

static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    while (!wd_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_nsec + wd_period_ns;
        ts.tv_sec += (time_t)(t / 1000000000u);
        ts.tv_nsec = (long)(t % 1000000000u);
        pthread_cond_timedwait(&wd_cond, &wd_mu, &ts);
        uint64_t d = atomic_load_explicit(&wd_deadline, memory_order_relaxed);
        /* Again every period while overdue: a hook can be cleared before it
         * ran (a coroutine being created restores the caller's hook). */
        if (!wd_stop && d && uv_hrtime() > d)
            pthread_kill(loop_thread, SIGRTMIN);
    }
    pthread_mutex_unlock(&wd_mu);
    return NULL;
}

/* coroutine.create / coroutine.wrap (upvalue 1: the original): a new Lua
 * thread copies its creator's hook, so create it under the count hook. */
static int create_hooked(lua_State *L)
{
    lua_Hook h = lua_gethook(L);
    int mask = lua_gethookmask(L), count = lua_gethookcount(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int r = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    lua_sethook(L, h, mask, count);
    return r == LUA_OK ? lua_gettop(L) : lua_error(L);
}

static void hook_coroutines(lua_State *L)
{
    static const char *const names[] = {"create", "wrap"};
    lua_getglobal(L, "coroutine");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        lua_getfield(L, -1, names[i]);
        lua_pushcclosure(L, create_hooked, 1);
        lua_setfield(L, -2, names[i]);
    }
    lua_pop(L, 1);
}

/* setmetatable / debug.setmetatable (upvalue 1: the original), refusing a
 * metatable with __gc: Lua runs finalizers with hooks off, so no budget can
 * stop one that never returns, and the collector runs them at any
 * allocation. Lua marks an object for finalization only if __gc is there
 * when the metatable is set, so checking then is enough. */
static int setmetatable_no_gc(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "wspush: __gc metamethods are not allowed: a finalizer runs "
                                 "outside any time budget (use on_close or on_shutdown)");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void deny_finalizers(lua_State *L)
{
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, setmetatable_no_gc, 1);
    lua_setglobal(L, "setmetatable");
    if (lua_getglobal(L, "debug") == LUA_TTABLE) {
        lua_getfield(L, -1, "setmetatable");
        lua_pushcclosure(L, setmetatable_no_gc, 1);
        lua_setfield(L, -2, "setmetatable");
    }
    lua_pop(L, 1);
}

void ws__lbudget_init(ws_lhost_t *lh)
{
    lh->budget_ns = (uint64_t)(lh->lua_timeout * 1e9);
    if (!lh->own_state)
        return;
    /* One server host per process: the message names its budget. */
    wd_timeout = lh->lua_timeout;
    hook_coroutines(lh->L);
    deny_finalizers(lh->L);
    if (wd_running)
        return;
    /* Checked four times per budget: a stuck callback is stopped within
     * 1.25 budgets, between 10 ms and 250 ms late. */
    double p = lh->lua_timeout / 4;
    p = p < 0.01 ? 0.01 : p > 0.25 ? 0.25 : p;
    wd_period_ns = (uint64_t)(p * 1e9);
    overdue_L = lh->L;
    loop_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_overdue;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN, &sa, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd_cond, &ca);
    pthread_condattr_destroy(&ca);
    /* The watchdog never takes the signal itself. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    wd_stop = 0;
    int rc = pthread_create(&watchdog, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        /* Without a watchdog the count hook stays on, as it always was. */
        ws_log_warn("lua-timeout watchdog: %s; using a count hook", strerror(rc));
        lua_sethook(lh->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
        return;
    }
    wd_running = 1;
}

void ws__lbudget_free(ws_lhost_t *lh)
{
    if (!lh->own_state)
        return;
    if (overdue_L == lh->L)
        overdue_L = NULL;
    if (!wd_running)
        return;
    pthread_mutex_lock(&wd_mu);
    wd_stop = 1;
    pthread_cond_signal(&wd_cond);
    pthread_mutex_unlock(&wd_mu);
    pthread_join(watchdog, NULL);
    pthread_cond_destroy(&wd_cond);
    wd_running = 0;
}

const char *ws__lbudget_stopped(lua_State *co)
{
    static char msg[96];
    task_co = NULL;
    if (stopped_co != co)
        return NULL;
    stopped_co = NULL;
    snprintf(msg, sizeof msg, "callback exceeded its time budget (--lua-timeout %f s)", wd_timeout);
    return msg;
}

void ws__lbudget_close(ws_lhost_t *lh, void (*close)(lua_State *L))
{
    /* lua_close runs the finalizers still due, which are user code. The
     * watchdog would signal a state that may be gone by then, so they run
     * under a count hook and one budget for all of them. */
    ws__lbudget_free(lh);
    lua_State *L = lh->L;
    wd_timeout = lh->lua_timeout;
    atomic_store_explicit(&wd_deadline, uv_hrtime() + lh->budget_ns, memory_order_relaxed);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    close(L);
    atomic_store_explicit(&wd_deadline, 0, memory_order_relaxed);
}

void ws__lbudget_start(ws_lhost_t *lh)
{
    if (lh->depth++ != 0)
        return;
    uint64_t budget = lh->budget_ns;
    if (lh->own_state) {
        /* From the loop's cached time: no clock read per call. */
        uint64_t now = uv_now(lh->hub->loop) * 1000000ULL;
        atomic_store_explicit(&wd_deadline, now + budget, memory_order_relaxed);
        return;
    }
    wd_timeout = lh->lua_timeout;
    /* A test's loop does not run: its cached time is stale. */
    atomic_store_explicit(&wd_deadline, uv_hrtime() + budget, memory_order_relaxed);
    /* A hook of the test's own (a coverage tool) comes back afterwards. */
    lh->saved_hook = lua_gethook(lh->L);
    lh->saved_mask = lua_gethookmask(lh->L);
    lh->saved_count = lua_gethookcount(lh->L);
    lua_sethook(lh->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
}

void ws__lbudget_end(ws_lhost_t *lh)
{
    if (--lh->depth != 0)
        return;
    atomic_store_explicit(&wd_deadline, 0, memory_order_relaxed);
    if (!lh->own_state)
        lua_sethook(lh->L, lh->saved_hook, lh->saved_mask, lh->saved_count);
}

void ws__lbudget_task_start(ws_lhost_t *lh, ws_ltask_t *t, int outermost, lua_State **saved)
{
    /* The clock, not the loop's cached time: the callbacks before this one
     * in the loop turn (other connections' messages) took their share of
     * it, and a budget counts from the callback's own start. */
    uint64_t now = uv_hrtime();
    if (lh->depth++ == 0) {
        uint64_t left = t->used_ns < lh->budget_ns ? lh->budget_ns - t->used_ns : 0;
        atomic_store_explicit(&wd_deadline, now + left, memory_order_relaxed);
    }
    /* Only the outermost task's run is its own time: a nested one (an
     * on_close run by a handler's conn:close) runs on the outer one's. */
    t->t_step = outermost ? now : 0;
    *saved = task_co;
    task_co = t->co;
    if (lh->own_state) {
        overdue_L = t->co;
    } else {
        /* No watchdog in a test's state: the count hook, on this coroutine. */
        wd_timeout = lh->lua_timeout;
        lua_sethook(t->co, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
}

void ws__lbudget_task_next(ws_lhost_t *lh, ws_ltask_t *t)
{
    /* A nested task runs on the outer one's time (see task_start). */
    if (!t->t_step)
        return;
    uint64_t now = uv_hrtime(); /* as in task_start */
    t->used_ns = 0;
    t->t_step = now;
    if (lh->depth == 1)
        atomic_store_explicit(&wd_deadline, now + lh->budget_ns, memory_order_relaxed);
}

void ws__lbudget_task_end(ws_lhost_t *lh, ws_ltask_t *t, lua_State *saved, int waits)
{
    if (waits && t->t_step)
        t->used_ns += uv_hrtime() - t->t_step;
    task_co = saved;
    if (lh->own_state) {
        overdue_L = saved ? saved : lh->L;
        /* The watchdog may have hooked it: a waiting or pooled coroutine
         * must not keep the VM off its fast path. */
        if (hooked) {
            hooked = 0;
            lua_sethook(t->co, NULL, 0, 0);
        }
    } else {
        lua_sethook(t->co, NULL, 0, 0);
    }
    if (--lh->depth == 0)
        atomic_store_explicit(&wd_deadline, 0, memory_order_relaxed);
}
