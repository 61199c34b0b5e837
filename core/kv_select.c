#include "kv_select.h"

/* True when position a ranks below position b: a lower score, or an equal
 * score at a later position. */
static int worse(const float *s, int32_t a, int32_t b)
{
    return s[a] < s[b] || (s[a] == s[b] && a > b);
}

/* A min-heap (by rank) of the best positions seen so far. */
static void sift_down(const float *s, int32_t *h, int n, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && worse(s, h[c + 1], h[c]))
            c++;
        if (!worse(s, h[c], h[i]))
            return;
        int32_t t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

static void sift_max(int32_t *v, int n, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && v[c + 1] > v[c])
            c++;
        if (v[c] <= v[i])
            return;
        int32_t t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}

/* Heap sort: bounded time for budgets of thousands, no recursion. */
static void sort_ascending(int32_t *v, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_max(v, n, i);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_max(v, end, 0);
    }
}

int rk_select_top(const float *score, int n, int keep, int32_t *out, int32_t *heap)
{
    if (keep > n)
        keep = n;
    if (keep <= 0)
        return 0;
    for (int j = 0; j < keep; j++)
        heap[j] = j;
    for (int i = keep / 2 - 1; i >= 0; i--)
        sift_down(score, heap, keep, i);
    for (int j = keep; j < n; j++)
        if (worse(score, heap[0], j)) {
            heap[0] = j;
            sift_down(score, heap, keep, 0);
        }
    for (int j = 0; j < keep; j++)
        out[j] = heap[j];
    sort_ascending(out, keep);
    return keep;
}

void rk_maxpool1d(const float *in, int n, int kernel, float *out)
{
    const int r = kernel / 2;
    for (int j = 0; j < n; j++) {
        const int lo = j - r < 0 ? 0 : j - r, hi = j + r >= n ? n - 1 : j + r;
        float m = in[lo];
        for (int i = lo + 1; i <= hi; i++)
            m = in[i] > m ? in[i] : m;
        out[j] = m;
    }
}

/* KEEP[0..got) plus the positions [from, n): the tail every method keeps. */
static int append_tail(int32_t *keep, int got, int from, int n)
{
    for (int j = from; j < n; j++)
        keep[got++] = j;
    return got;
}

static int keep_all(int n, int32_t *keep) { return append_tail(keep, 0, 0, n); }

int rk_snapkv_select(const float *score, int n, int window, int budget, int kernel, int32_t *keep,
                     float *pooled, int32_t *heap)
{
    if (budget >= n)
        return keep_all(n, keep);
    const int prefix = n - window;
    rk_maxpool1d(score, prefix, kernel, pooled);
    int got = rk_select_top(pooled, prefix, budget - window, keep, heap);
    return append_tail(keep, got, prefix, n);
}

int rk_streaming_select(int n, int budget, int sinks, int32_t *keep)
{
    if (budget >= n)
        return keep_all(n, keep);
    int got = 0;
    for (int j = 0; j < sinks; j++)
        keep[got++] = j;
    return append_tail(keep, got, n - (budget - sinks), n);
}

int rk_h2o_select(const float *acc, int n, int budget, int recent, int32_t *keep, int32_t *heap)
{
    if (budget >= n)
        return keep_all(n, keep);
    int got = rk_select_top(acc, n - recent, budget - recent, keep, heap);
    return append_tail(keep, got, n - recent, n);
}
