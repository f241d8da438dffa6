/*
 * shmutex.h: a mutex in memory that processes share (the tally's address
 * table, the metrics table), robust: a worker killed while it holds the
 * lock must not stop the others; at worst the entry it was changing is off.
 */
#ifndef WS_SHMUTEX_H
#define WS_SHMUTEX_H

#include <errno.h>
#include <pthread.h>

static inline void ws_shmutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static inline void ws_shmutex_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) == EOWNERDEAD)
        pthread_mutex_consistent(m);
}

#endif
