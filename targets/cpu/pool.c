#include "pool.h"

#include <pthread.h>

enum { MAX_THREADS = 64 };

static struct {
    pthread_t tid[MAX_THREADS];
    int threads; /* including the caller */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long generation;
    int pending, stopping;
    pool_fn fn;
    void *arg;
    int n, grain;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER};

static void part(int t, int *lo, int *hi)
{
    int units = (P.n + P.grain - 1) / P.grain;
    int a = (int)((long)units * t / P.threads), b = (int)((long)units * (t + 1) / P.threads);
    *lo = a * P.grain < P.n ? a * P.grain : P.n;
    *hi = b * P.grain < P.n ? b * P.grain : P.n;
}

static void *worker(void *arg)
{
    const int t = (int)(long)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (P.generation == seen && !P.stopping)
            pthread_cond_wait(&P.go, &P.mu);
        if (P.stopping)
            break;
        seen = P.generation;
        pthread_mutex_unlock(&P.mu);
        int lo, hi;
        part(t, &lo, &hi);
        if (lo < hi)
            P.fn(P.arg, lo, hi);
        pthread_mutex_lock(&P.mu);
        if (--P.pending == 0)
            pthread_cond_signal(&P.done);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

rk_status pool_start(int threads)
{
    if (P.threads)
        return RK_OK;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    P.threads = 1;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&P.tid[t], NULL, worker, (void *)(long)t) != 0)
            return rk_fail(RK_ENOMEM, "cannot start CPU worker thread %d", t);
        P.threads = t + 1;
    }
    return RK_OK;
}

void pool_stop(void)
{
    pthread_mutex_lock(&P.mu);
    P.stopping = 1;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    for (int t = 1; t < P.threads; t++)
        pthread_join(P.tid[t], NULL);
    /* New workers start from generation 0; a stale count would make them run
     * the last job of the old pool again. */
    P.threads = 0;
    P.stopping = 0;
    P.generation = 0;
}

int pool_threads(void) { return P.threads ? P.threads : 1; }

void pool_run(pool_fn fn, void *arg, int n, int grain)
{
    if (P.threads <= 1 || n <= grain) {
        if (n > 0)
            fn(arg, 0, n);
        return;
    }
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.arg = arg;
    P.n = n;
    P.grain = grain;
    P.pending = P.threads - 1;
    P.generation++;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);

    int lo, hi;
    part(0, &lo, &hi);
    if (lo < hi)
        fn(arg, lo, hi);

    pthread_mutex_lock(&P.mu);
    while (P.pending > 0)
        pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
}
