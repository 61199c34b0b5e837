/* The op interface between core and a target. Core owns every decision
 * (shapes, memory plan, order of operations, sampling); a target owns only
 * how each op runs on its hardware. Buffers are addresses inside the one
 * arena (or the weights block) that the target allocated, so on an
 * accelerator they are device addresses that core never dereferences.
 *
 * Element types: weights and activations use the target's compute type
 * (act_bytes per element); the rotary table and logits are always fp32. */
#ifndef RK_OPS_H
#define RK_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kv_cache.h"
#include "rk_error.h"
#include "safetensors.h"

/* Where a LayerNorm writes, with its weight and bias: y = LN(x) * w + b. */
typedef struct {
    void *y;
    const void *w, *b;
} rk_norm_out;

/* One matrix product: y[n, out] = x[n, in] · W[out, in]ᵀ + bias (bias may be
 * NULL), exact GELU (erf) after the bias when gelu is set. */
typedef struct {
    void *y;
    const void *x, *w, *bias;
    int in, out, gelu;
} rk_product;

#define RK_TOP_K_MAX 64
/* The most rows of a step after the prompt that a target records (draft
 * tokens verified at once); longer steps run unrecorded. */
#define RK_MAX_RECORDED_STEP 16
#define RK_RECORDED_SLOTS (RK_MAX_RECORDED_STEP + 1)

typedef struct rk_ops {
    const char *name;
    size_t act_bytes;
    rk_kv_format kv_format; /* how its KV cache stores elements unless asked otherwise */
    /* Every format its cache ops handle (RK_KV_FORMAT_BIT of each); the
     * plan refuses the others. */
    unsigned kv_formats;

    /* Optional: refuses a model shape, or a KV format at that shape, the
     * target's kernels are not built for (checked for every format a plan
     * stores, before anything is allocated). */
    rk_status (*supports)(const rk_config *cfg, rk_kv_format f);
    /* Optional: the most rows a KIVI or smartkv cache takes in one call (a
     * chunk's appends, a gather's kept rows), where the target passes them
     * through a buffer of its own; the plan refuses more. */
    int (*staged_rows)(const rk_config *cfg);
    /* Start-up: detect the device; ctx is the target's private state. */
    rk_status (*init)(void **ctx);
    void (*shutdown)(void *ctx);
    /* A human-readable name of the device, for benchmark records. */
    void (*device_name)(void *ctx, char *buf, size_t len);
    /* The only allocations a target makes: the weights block and the arena. */
    rk_status (*alloc)(void *ctx, size_t bytes, void **base);
    void (*release)(void *ctx, void *base);
    /* Arena bytes the target needs for its own work (attention scores or
     * partial results, GEMM workspace) for CHUNK queries against up to CTX
     * cached positions; after allocation, bind_scratch hands it the region. */
    size_t (*scratch_bytes)(const rk_config *cfg, int chunk, int ctx);
    void (*bind_scratch)(void *ctx, void *scratch, size_t bytes);
    /* Optional: start-up work for every op shape the plan can produce (a
     * linear has 1..CHUNK rows, the logits 1..LOGITS_ROWS), such as choosing
     * GEMM algorithms, so that none is chosen while generating. */
    rk_status (*prepare)(void *ctx, const rk_config *cfg, int chunk, int logits_rows);

    /* Host to buffer: converts COUNT elements of SRC_DTYPE to the compute type. */
    rk_status (*upload)(void *ctx, void *dst, const void *src, rk_dtype src_dtype, size_t count);
    /* Host to buffer, raw bytes (fp32 tables, token ids). */
    rk_status (*copy_in)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Buffer to host, raw bytes (fp32 logits, token ids); DST holds them
     * once the next sync has returned, not before. */
    rk_status (*copy_out)(void *ctx, void *dst, const void *src, size_t bytes);
    /* Waits for queued work; reports an asynchronous device error. */
    rk_status (*sync)(void *ctx);

    /* x[i, :] = table[tokens[i], :]; tokens is an int32 buffer in the arena. */
    void (*embed)(void *ctx, void *x, const void *table, const void *tokens, int n, int dim);
    /* The residual stream's step between sublayers, over N rows of DIM:
     * x += a (+ b) when a is not NULL; then out1 = LayerNorm(x) and, when
     * out2.y is not NULL, out2 = LayerNorm(x) with its own weights (a
     * parallel-residual block normalises the same x twice). Statistics in
     * fp32. One op so that a target can do it in one pass over x. */
    void (*add_layernorm)(void *ctx, void *x, const void *a, const void *b, rk_norm_out out1,
                          rk_norm_out out2, int n, int dim, float eps);
    /* P over N rows. */
    void (*linear)(void *ctx, const rk_product *p, int n);
    /* Two products of the same N rows that do not depend on each other, in
     * one pass over both weights or side by side where the target can: a
     * parallel-residual layer's QKV and first MLP products read two norms
     * of the same x. Core reads B's output first in the layer's linear_sum,
     * and changes neither input before it, so a target may still be
     * computing B while the attention runs. */
    void (*linear_pair)(void *ctx, const rk_product *a, const rk_product *b, int n);
    /* a.y = A + B (both biases, no GELU; a.out == b.out, b.y unused): a
     * parallel-residual layer's attention output and MLP output, whose sum
     * is all its residual stream takes. Core promises that b.x is final
     * before the op before this one starts (the layer writes it with
     * linear_pair, then runs its attention), so a target may read it while
     * that op still runs. */
    void (*linear_sum)(void *ctx, const rk_product *a, const rk_product *b, int n);
    /* Same as linear but y is fp32 whatever the compute type (logits). */
    void (*linear_f32out)(void *ctx, float *y, const void *x, const void *w,
                          int n, int in, int out);
    /* Positions and cache rows are int32s in the arena, read by the ops
     * rather than passed by value, so that a captured sequence of ops (a CUDA
     * graph) replays at any step: POS holds pos0, the position of the first
     * current token (for rotary), ROW holds row0, the cache row it goes to.
     * They differ once a compressed cache keeps fewer rows than positions;
     * cached keys carry their rotation, so rows need not be in order. */

    /* Splits fused qkv rows ([n, heads, 3, head_dim], per head [q|k|v]),
     * applies rotary (rotate_half layout on the first rot_dims dims) at
     * positions pos0.., writes q as [heads, n, head_dim] and the k, v rows to
     * CACHE at rows row0.., stored in CACHE's format (quantized on append;
     * kv_quant.h). The ops that read the cache read rows in its format. */
    void (*qkv_rotary)(void *ctx, void *q, const rk_kv_layer *cache, const void *qkv,
                       const float *rope, const void *pos, const void *row, int n, int rot_dims);
    /* Causal attention of n queries over CACHE's rows 0..row0+n-1, query i
     * seeing rows 0..row0+i; out is [n, heads * head_dim]. */
    void (*attention)(void *ctx, void *out, const void *q, const rk_kv_layer *cache,
                      const void *row, int n);
    /* Optional: qkv_rotary and then attention of the same rows, as one op
     * for a target that does both in one pass where it can; core calls it
     * in place of the two when present. */
    void (*qkv_attention)(void *ctx, void *out, void *q, const rk_kv_layer *cache,
                          const void *qkv, const float *rope, const void *pos, const void *row,
                          int n, int rot_dims);

    /* KV compression (optional: without them a target refuses compressing
     * policies when the plan is made). */

    /* The attention mass each row of CACHE receives from queries FROM..n-1
     * of the same call to attention: the score of row c = sum over those
     * queries of their softmax probability of row c (rows 0..row0+n-1).
     * With ADD the sums are added to the scores of rows before row0 (this
     * call's own rows start from zero), otherwise they replace them. It
     * follows that call with no other attention in between: a target may
     * read what its attention left for these queries (the CUDA target: their
     * softmax statistics, so that the scores take one pass, not two, and
     * after a decode step over a cache that keeps scores, the scores). */
    void (*attention_mass)(void *ctx, rk_kv_scores scores, const void *q,
                           const rk_kv_layer *cache, const void *row, int n, int from, int add);
    /* Per head, the rows to keep of a layer of N rows: the last TAIL, and the
     * BUDGET - TAIL best of the others by score max-pooled over POOL
     * neighbours (1: as is), ties to the earlier row; all N when N <= BUDGET.
     * Writes keep = min(budget, n) rows ascending to idx[h, 0..keep), head
     * after head (stride keep).
     * The rule is rk_snapkv_select's (kv_select.h). */
    void (*kv_keep)(void *ctx, int32_t *idx, const float *score, int n, int heads, int stride,
                    int pool, int budget, int tail);
    /* Copies rows idx[h, 0..keep) (stride KEEP) of SRC to rows 0..keep of
     * DST, sets DST's pos of row j, where it keeps positions (a full cache
     * gathered into smartkv's tiers does not), to idx[h, j] and, where DST
     * keeps scores, its score to SRC_SCORES' of the row. */
    void (*kv_gather)(void *ctx, const rk_kv_layer *dst, const rk_kv_layer *src,
                      rk_kv_scores src_scores, const int32_t *idx, int keep);
    /* A decode step of an evicting policy, after its attention: with Q
     * (that attention's one query, or NULL) the mass Q gave each row is
     * first added to CACHE's scores, as attention_mass(Q, from 0, add)
     * would, so that a target may do both in one pass; the token just
     * written to row row0 gets position pos0; then, when row0 has reached
     * BUDGET (the cache holds budget + 1 rows, cap), each head evicts one
     * row and moves the new one into its place. Candidates are rows whose
     * position is at least SINKS and at most pos0 - RECENT; the victim has
     * the lowest score where CACHE keeps scores, else the lowest position;
     * ties to the lower row. */
    void (*kv_evict)(void *ctx, const rk_kv_layer *cache, const void *q, const void *pos,
                     const void *row, int budget, int sinks, int recent);
    /* kv_keep, kv_gather and kv_evict touch nothing but KV state: caches,
     * their positions and scores, the prompt's rows and mass, the kept
     * indices; attention_mass writes nothing else. No product, norm or
     * embedding reads those, so a target may run them beside the ops that
     * follow, provided they are done before the next op that touches what
     * they read or write (the next layer's qkv_rotary and attention reuse
     * the prompt's rows and mass, and the queries) and before the logits
     * product, any copy and any sync. */

    /* Optional: the K (1..RK_TOP_K_MAX) largest of the VOCAB fp32 logits,
     * their values to VALS and ids to IDS (arena buffers), in any order; for
     * K = 1 the first id on ties, as argmax. Decoding then copies a few bytes
     * back instead of the logits. */
    void (*top_k)(void *ctx, float *vals, int32_t *ids, const float *logits, int vocab, int k);

    /* Optional (NULL where the target has no graphs): the ops issued between
     * capture_begin and capture_end are recorded, not run, as recording SLOT
     * (0..RK_RECORDED_SLOTS-1), and replay runs it. Core records the steps of
     * 1..k rows after the prompt once, in slots 0..k-1, and where the target
     * has top_k a run of greedy steps in the last slot (core/model.h). */
    rk_status (*capture_begin)(void *ctx);
    rk_status (*capture_end)(void *ctx, int slot);
    rk_status (*replay)(void *ctx, int slot);
    /* Optional: bytes of device memory in use, for memory reports. */
    size_t (*device_used_bytes)(void *ctx);
    /* Optional: what a device-to-device copy moves, in bytes per second,
     * each byte counted once read and once written: the bench's yardstick
     * for a decode step's bytes. It allocates its own buffers and frees
     * them, so it runs before any model is loaded. */
    rk_status (*copy_bandwidth)(double *bytes_per_s);
} rk_ops;

#endif
