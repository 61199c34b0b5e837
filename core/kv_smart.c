#include "kv_smart.h"

#include <math.h>
#include <string.h>

#include "kv_quant.h"

static const rk_kv_format tiers[RK_SMART_TIERS] = {RK_KV_FP16, RK_KV_INT8, RK_KV_INT4,
                                                   RK_KV_INT2};

rk_kv_format rk_smart_tier_format(int t) { return tiers[t]; }

double rk_smart_tier_bits(int t, int head_dim, int group)
{
    return 8.0 * (double)rk_kv_row_bytes(tiers[t], head_dim, group) / head_dim;
}

rk_status rk_smart_check(double bits, int head_dim, int group)
{
    const double lo = rk_smart_tier_bits(RK_SMART_TIERS - 1, head_dim, group);
    if (!(bits >= lo && bits <= 16.0))
        return rk_fail(RK_EINVAL,
                       "--kv-bits-avg %g is outside [%g, 16] (bits per element with scales: "
                       "int2 rows in groups of %d have %g, fp16 rows 16)",
                       bits, lo, group, lo);
    return RK_OK;
}

/* The header's capacities of a layer of CAP rows. */
static void tier_caps(int head_dim, int group, double bits, int cap, int n[RK_SMART_TIERS])
{
    const int fp16 = cap < RK_SMART_SINKS + RK_SMART_WINDOW ? cap : RK_SMART_SINKS + RK_SMART_WINDOW;
    const int rest = cap - fp16;
    memset(n, 0, RK_SMART_TIERS * sizeof *n);
    n[0] = fp16;
    if (rest == 0)
        return;
    const double a = (bits * cap - 16.0 * fp16) / rest;
    int t = 0;
    while (t < RK_SMART_TIERS - 1 && a < rk_smart_tier_bits(t + 1, head_dim, group))
        t++;
    if (t == RK_SMART_TIERS - 1) {
        n[t] += rest;
        return;
    }
    const double hi = rk_smart_tier_bits(t, head_dim, group);
    const double lo = rk_smart_tier_bits(t + 1, head_dim, group);
    /* The epsilon keeps an exact quotient from rounding down a row. */
    int upper = (int)floor(rest * (a - lo) / (hi - lo) + 1e-9);
    upper = upper > rest ? rest : upper;
    n[t] += upper;
    n[t + 1] += rest - upper;
}

static size_t align4(size_t b) { return (b + 3) & ~(size_t)3; }

rk_smart_side rk_smart_side_of(int is_v, int head_dim, int group, double bits, int cap)
{
    rk_smart_side s = {0};
    tier_caps(head_dim, group, bits, cap, s.cap);
    size_t off = 0;
    int first = 0;
    for (int t = 0; t < RK_SMART_TIERS; t++) {
        s.first[t] = first;
        s.row[t] = rk_kv_row_bytes(tiers[t], head_dim, group);
        s.off[t] = off;
        off += (size_t)s.cap[t] * s.row[t];
        first += s.cap[t];
    }
    s.maps = align4(off);
    s.bytes = is_v ? s.maps : s.maps + 2 * (size_t)cap * sizeof(int32_t);
    return s;
}

/* One head of a layer as the calls below walk it: the tiers' layout (K's
 * and V's alike; K's slot maps follow its tiers), where each side's block
 * starts, and the maps, row to slot and slot to row. Made once a call, so
 * that reading or writing a row costs its own bytes only. */
typedef struct {
    rk_smart_side s;
    char *block[2];
    int32_t *where, *owner;
} smart_head;

static smart_head head_of(const rk_kv_layer *c, int h)
{
    /* V's side is K's tiers without the maps: a V head is s.maps bytes. */
    smart_head x = {.s = rk_smart_side_of(0, c->head_dim, c->group, c->bits_avg, c->cap)};
    x.block[0] = (char *)c->k + (size_t)h * x.s.bytes;
    x.block[1] = (char *)c->v + (size_t)h * x.s.maps;
    x.where = (int32_t *)(x.block[0] + x.s.maps);
    x.owner = x.where + c->cap;
    return x;
}

static int tier_of_slot(const rk_smart_side *s, int slot)
{
    int t = RK_SMART_TIERS - 1;
    while (slot < s->first[t])
        t--;
    return t;
}

static char *slot_at(const smart_head *x, int is_v, int slot)
{
    const int t = tier_of_slot(&x->s, slot);
    return x->block[is_v] + x->s.off[t] + (size_t)(slot - x->s.first[t]) * x->s.row[t];
}

static void store(const rk_kv_layer *c, const smart_head *x, int slot, const float *k,
                  const float *v)
{
    const rk_kv_format f = tiers[tier_of_slot(&x->s, slot)];
    rk_kv_quantize_row(f, c->head_dim, c->group, k, slot_at(x, 0, slot));
    rk_kv_quantize_row(f, c->head_dim, c->group, v, slot_at(x, 1, slot));
}

static void load(const rk_kv_layer *c, const smart_head *x, int is_v, int slot, float *out)
{
    rk_kv_dequantize_row(tiers[tier_of_slot(&x->s, slot)], c->head_dim, c->group,
                         slot_at(x, is_v, slot), out);
}

static float score_of(const rk_kv_layer *c, int h, int r)
{
    return c->score[(size_t)h * c->cap + r];
}

/* Importance order: A below B when A's score is lower, or equal and A is
 * the later row (earlier rows win ties, as SnapKV's selection does). A NaN
 * score (attention over an overflowed activation) ranks below every number,
 * so that the order stays total: the sort then places every row, and the
 * CUDA target's reductions, which need a total order to agree across
 * lanes, choose the same rows. */
static int below(const rk_kv_layer *c, int h, int32_t a, int32_t b)
{
    const float sa = score_of(c, h, a), sb = score_of(c, h, b);
    if (isnan(sa) || isnan(sb))
        return isnan(sa) && (!isnan(sb) || a > b);
    return sa < sb || (sa == sb && a > b);
}

void rk_smart_append(const rk_kv_layer *c, int h, int row, const float *k, const float *v)
{
    const smart_head x = head_of(c, h);
    const rk_smart_side *const s = &x.s;
    int32_t *where = x.where, *owner = x.owner;
    float kx[RK_KV_MAX_HEAD_DIM], vx[RK_KV_MAX_HEAD_DIM];
    memcpy(kx, k, (size_t)c->head_dim * sizeof(float));
    memcpy(vx, v, (size_t)c->head_dim * sizeof(float));
    int r = row;
    for (int t = 0; t < RK_SMART_TIERS; t++) {
        if (s->cap[t] == 0)
            continue;
        int free_slot = -1, victim = -1;
        for (int i = s->first[t]; i < s->first[t] + s->cap[t]; i++) {
            const int o = owner[i];
            if (o < 0) {
                free_slot = i;
                break;
            }
            /* fp16 keeps the sinks and the newest rows: its oldest other
             * row leaves; a quantized tier keeps the most important. */
            if (t == 0 ? o >= RK_SMART_SINKS && (victim < 0 || o < owner[victim])
                       : victim < 0 || below(c, h, o, owner[victim]))
                victim = i;
        }
        if (free_slot >= 0) {
            store(c, &x, free_slot, kx, vx);
            owner[free_slot] = r;
            where[r] = free_slot;
            return;
        }
        if (t > 0 && below(c, h, r, owner[victim]))
            continue; /* the arriving row is the least important: it goes on down */
        const int out = owner[victim];
        float ko[RK_KV_MAX_HEAD_DIM], vo[RK_KV_MAX_HEAD_DIM];
        load(c, &x, 0, victim, ko);
        load(c, &x, 1, victim, vo);
        store(c, &x, victim, kx, vx);
        owner[victim] = r;
        where[r] = victim;
        memcpy(kx, ko, sizeof ko);
        memcpy(vx, vo, sizeof vo);
        r = out;
    }
}


static void sift(const rk_kv_layer *c, int h, int32_t *x, int i, int n)
{
    for (;;) {
        int least = i;
        const int l = 2 * i + 1, r = l + 1;
        if (l < n && below(c, h, x[l], x[least]))
            least = l;
        if (r < n && below(c, h, x[r], x[least]))
            least = r;
        if (least == i)
            return;
        const int32_t t = x[i];
        x[i] = x[least];
        x[least] = t;
        i = least;
    }
}

/* X's N rows by score, the most important first: heapsort over a min-heap. */
static void sort_by_score(const rk_kv_layer *c, int h, int32_t *x, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift(c, h, x, i, n);
    for (int end = n - 1; end > 0; end--) {
        const int32_t t = x[0];
        x[0] = x[end];
        x[end] = t;
        sift(c, h, x, 0, end);
    }
}

void rk_smart_place(const rk_kv_layer *c, int h, int rows)
{
    const smart_head x = head_of(c, h);
    const rk_smart_side *s = &x.s;
    int32_t *where = x.where, *owner = x.owner;
    const int window = s->cap[0] - RK_SMART_SINKS;
    int next[RK_SMART_TIERS], ranked = 0;
    memcpy(next, s->first, sizeof next);
    /* The slot-to-row map is free until the end: the ranking's scratch. */
    for (int r = 0; r < rows; r++) {
        if (rows <= s->cap[0] || r < RK_SMART_SINKS || r >= rows - window)
            where[r] = next[0]++;
        else
            owner[ranked++] = r;
    }
    sort_by_score(c, h, owner, ranked);
    int t = 1;
    for (int i = 0; i < ranked; i++) {
        while (next[t] == s->first[t] + s->cap[t])
            t++;
        where[owner[i]] = next[t]++;
    }
    for (int i = 0; i < c->cap; i++)
        owner[i] = -1;
    for (int r = 0; r < rows; r++)
        owner[where[r]] = r;
}

void rk_smart_write(const rk_kv_layer *c, int h, int r, const float *k, const float *v)
{
    const smart_head x = head_of(c, h);
    store(c, &x, x.where[r], k, v);
}

void rk_smart_gather(const rk_kv_layer *c, int h, const rk_kv_layer *src, const int32_t *kept,
                     int keep)
{
    rk_smart_place(c, h, keep);
    const smart_head x = head_of(c, h);
    float k[RK_KV_MAX_HEAD_DIM], v[RK_KV_MAX_HEAD_DIM];
    for (int j = 0; j < keep; j++) {
        rk_kv_read_rows(src, 0, h, 0, kept[j], 1, k);
        rk_kv_read_rows(src, 1, h, 0, kept[j], 1, v);
        store(c, &x, x.where[j], k, v);
    }
}

void rk_smart_read_rows(const rk_kv_layer *c, int is_v, int h, int r0, int n, float *x)
{
    const smart_head head = head_of(c, h);
    for (int r = 0; r < n; r++)
        load(c, &head, is_v, head.where[r0 + r], x + (size_t)r * c->head_dim);
}

void rk_smart_read(const rk_kv_layer *c, int is_v, int h, int r, float *x)
{
    rk_smart_read_rows(c, is_v, h, r, 1, x);
}

int rk_smart_tier_of(const rk_kv_layer *c, int h, int r)
{
    const smart_head x = head_of(c, h);
    return tier_of_slot(&x.s, x.where[r]);
}
