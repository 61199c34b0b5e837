/* A GPT-NeoX model bound to a target: config, memory plan, weights and the
 * KV cache, and the forward pass. */
#ifndef RK_MODEL_H
#define RK_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "kv_cache.h"
#include "kv_policy.h"
#include "kv_precision.h"
#include "ops.h"
#include "plan.h"
#include "rank_ops.h"

/* What the memory plan is sized for. Asking for more is an RK_ELIMIT error. */
typedef struct {
    int max_prompt;     /* longest prompt (or scored window) */
    int max_new_tokens; /* tokens generated after the prompt */
    int prefill_chunk;  /* tokens per forward call */
    int logits_rows;    /* 1 for generation; prefill_chunk to score every position */
    rk_kv_format kv_format; /* one the target stores (rk_ops.kv_formats) */
    int kv_group;           /* channels per scale of int8/int4 rows, and KIVI's
                               positions per key scale; 0: RK_KV_GROUP_DEFAULT */
    int kv_residual;        /* KIVI's fp16 rows; 0: RK_KV_RESIDUAL_DEFAULT */
    double kv_bits_avg;     /* smartkv's average bits per element with scales;
                               0: RK_SMART_BITS_DEFAULT (kv_smart.h) */
    rk_kv_precision kv_precision; /* uniform: every layer kv_format; rank: each
                                     layer's from kv_profile (kv_precision.h) */
    const rk_profile *kv_profile; /* rank: the model's compiled profile */
    rk_kv_policy kv;    /* zero: the full cache */
    /* Rank measurement (calibrate, tests, the dynamic build): the ops and
     * the longest sequence measured; NULL in the static runtime. */
    const rk_rank_ops *rank;
    int rank_len;
} rk_limits;

/* Offsets of one layer's tensors inside the weights block. */
typedef struct {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, dense_w, dense_b;
    size_t ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} rk_layer_weights;

typedef struct {
    rk_config cfg;
    rk_limits lim;
    int cap; /* positions in a sequence: max_prompt + max_new_tokens */
    /* The KV cache's layout; each layer's rows are its policy's layer_cap
     * (kv_policy.c). */
    rk_kv_cache cache;
    size_t kv_bytes; /* K and V of all layers */
    const rk_ops *ops;
    void *ctx;

    rk_plan wplan; /* weights block */
    rk_plan plan;  /* the arena */
    void *wbase;
    void *base;

    size_t w_embed, w_lnf_w, w_lnf_b, w_unembed;
    rk_layer_weights w_layer[RK_MAX_LAYERS];

    /* Arena offsets. */
    size_t a_step, a_rope, a_x, a_h, a_h2, a_qkv, a_q, a_att, a_attn_out, a_mlp_h, a_mlp_out;
    size_t a_scratch, a_logits, a_top_vals, a_top_ids;
    /* A greedy run's step inputs (rk_model_decode_greedy), where the
     * target records one; absent (0) elsewhere. */
    size_t a_run;
    /* Compression: one layer's full-length K and V during prefill, its
     * attention mass and the kept rows. Absent (0) for the full cache. */
    size_t a_prefill_k, a_prefill_v, a_mass, a_keep;
    size_t a_rank_scratch; /* rank measurement, when the limits ask for it */
    size_t rank_scratch_bytes;

    /* Host staging, allocated with the model: logits_rows × vocab logits;
     * the step input (pos0, each layer's row0, the chunk's token ids), or a
     * greedy run's step inputs and then its ids; kept rows computed on the
     * host. */
    float *host_logits;
    int32_t *host_step;
    int32_t *host_keep;
    double *host_ranks; /* L × heads, for the dynamic budgets */
    int n_logits; /* rows of host_logits valid after the last forward */
    void *rank_ctx;
    /* The target holds a recording of the step of k rows for k = 1..this,
     * and, where run_recorded, of a greedy run (RK_GREEDY_SLOT). */
    int steps_recorded, run_recorded;
    size_t device_used_before; /* device bytes in use before the two allocations
                                  (targets that report it), for memory reports */
} rk_model;

/* Whether a sequence's first call passes its prompt through the prefill
 * region, whole: a compressing policy keeps some of its rows; a smartkv
 * cache places them in its tiers by the window's scores, which only exist
 * once the prompt has attended (kv_smart.h). Such a prompt is one chunk. */
int rk_limits_prompt_passes(const rk_limits *lim);

/* Whether OPS stores a KV cache of format F, in groups of GROUP channels (0:
 * RK_KV_GROUP_DEFAULT) and, for KIVI, a residual of RESIDUAL rows (0:
 * RK_KV_RESIDUAL_DEFAULT), for a model of CFG; RK_EDTYPE or RK_EINVAL with
 * the reason otherwise. rk_model_plan checks it. */
rk_status rk_model_check_kv_format(const rk_config *cfg, const rk_ops *ops, rk_kv_format f,
                                   int group, int residual);

/* Whether LIM's KV precision can be planned for a model of CFG on OPS.
 * Uniform always can; rank precision needs LIM's profile, of the model's
 * layer count, and every step of the ladder around LIM's format among those
 * OPS stores (a layer may get any of them). rk_model_plan checks it. */
rk_status rk_model_check_kv_precision(const rk_config *cfg, const rk_ops *ops,
                                      const rk_limits *lim);

/* Validates LIM against CFG and the target, and computes both plans without
 * allocating anything. */
rk_status rk_model_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim,
                        rk_model *m);

/* Reads DIR/config.json and the safetensors in DIR, plans, makes the two
 * allocations and uploads the weights. After this nothing allocates. */
rk_status rk_model_load(const char *dir, const rk_ops *ops, const rk_limits *lim,
                        rk_model **out);
void rk_model_free(rk_model *m);

void rk_model_print_plan(const rk_model *m, FILE *f);

/* One sequence on a model: the positions it has run and the rows each
 * layer's cache holds for it. What changes per sequence lives here; the
 * model (config, weights, plan, target) is loaded once. The plan holds one
 * sequence's cache, so one sequence at a time runs on a model. */
typedef struct {
    int n_past;              /* positions seen */
    int prompt;              /* positions of its prompt that were compressed (0: none) */
    int rows[RK_MAX_LAYERS]; /* cache rows in use per layer */
} rk_seq;

/* Makes S an empty sequence (a new prompt starts). */
void rk_seq_reset(rk_seq *s);

/* Rolls S back to its first N positions (a speculative decoder drops the
 * rejected draft tokens): their rows are forgotten, nothing is copied. A
 * policy can roll back only rows appended after the prompt, and the
 * evicting ones none at all; RK_EINVAL then. */
rk_status rk_seq_truncate(const rk_model *m, rk_seq *s, int n);

/* Runs N ≤ prefill_chunk tokens of S at its next positions, appending their
 * K/V to the cache; afterwards rk_model_logits holds the last
 * min(N, logits_rows) rows of logits. After the prompt, a step of N ≤
 * logits_rows rows (a target model verifying draft tokens) replays a
 * recording where the target has one. */
rk_status rk_model_forward(rk_model *m, rk_seq *s, const int32_t *tokens, int n);

/* rk_model_forward for greedy decoding: *NEXT gets the argmax of the last
 * row. Targets with a device top-k copy back only that token, and
 * rk_model_logits has no rows afterwards. */
rk_status rk_model_forward_argmax(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                  int32_t *next);

/* N greedy one-token steps after the prompt, the first fed TOKEN: OUT[i]
 * is the argmax after step i, which step i + 1 is fed. On a target with a
 * device top-k the argmax stays on the device for the next step to read,
 * and the host queues RK_GREEDY_RUN steps before it waits for their ids,
 * so that the device does not idle through a round trip to the host
 * between steps (copy back, wake, copy in, launch). Where the target also
 * records, a whole run is one replay: its steps' inputs go in with one
 * copy and its ids come out with one. On a failure the sequence stands
 * after the last step that ran. Elsewhere, N calls of
 * rk_model_forward_argmax. */
enum { RK_GREEDY_RUN = 16 };
/* Where the target records a run's RK_GREEDY_RUN steps, each with its
 * argmax, as one replay: after the slots of the steps of
 * 1..RK_MAX_RECORDED_STEP rows. */
enum { RK_GREEDY_SLOT = RK_MAX_RECORDED_STEP };
rk_status rk_model_decode_greedy(rk_model *m, rk_seq *s, int32_t token, int n, int32_t *out);

/* The same with the argmax of each of the last min(N, logits_rows) rows,
 * in order, into NEXT (that many ids). */
rk_status rk_model_forward_argmax_rows(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                       int32_t *next);

/* rk_model_forward for top-k sampling on targets with a device top-k
 * (ops->top_k): only the K (≤ RK_TOP_K_MAX) largest logits of each of the
 * last min(N, logits_rows) rows come back, row after row (K each, in any
 * order), for rk_sample_top_k. */
rk_status rk_model_forward_top_k(rk_model *m, rk_seq *s, const int32_t *tokens, int n, int k,
                                 float *vals, int32_t *ids);

/* Runs a prompt of any length ≤ max_prompt in chunks. */
rk_status rk_model_prefill(rk_model *m, rk_seq *s, const int32_t *tokens, int n);

/* rk_model_prefill for greedy decoding: *NEXT gets the argmax after the
 * prompt, from the last chunk by rk_model_forward_argmax, so that a target
 * with a device top-k copies back one id instead of a row of logits and
 * the host does not scan it. */
rk_status rk_model_prefill_argmax(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                  int32_t *next);

/* Effective ranks of the attention of TOKENS[0..n) (a sequence from
 * position 0, n ≤ rank_len and ≤ prefill_chunk): RANKS[l × heads + h] for
 * every layer and head. Needs rank ops in the limits. It runs in the
 * sequence's cache: a sequence on M starts again afterwards. */
rk_status rk_model_measure_ranks(rk_model *m, const int32_t *tokens, int n, double *ranks);

/* The positions of the rows layer LAYER keeps for S, head after head, into
 * OUT (n_heads × rows[layer] int32), for compressing policies. Evicting
 * policies keep them current; SnapKV records the prompt's rows, so call it
 * right after the prefill. */
rk_status rk_model_kept_positions(rk_model *m, const rk_seq *s, int layer, int32_t *out);

/* Scores TOKENS[0..n) as S continues: the last forward's logits (row 0)
 * predict the first, then each token is run one decode step at a time,
 * its logits predicting the next (the last is not run). *NLL gets the sum,
 * in nats. How compression is judged: after a prompt, through decode. */
rk_status rk_model_score_steps(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                               double *nll);

/* What rk_model_score_steps_each hands over for each scored token I: the
 * VOCAB logits that predicted it. */
typedef void (*rk_score_fn)(void *user, int i, const float *logits, int vocab);

/* rk_model_score_steps that also calls FN with each scored token's logits
 * (a quantized cache's distributions against a reference's). */
rk_status rk_model_score_steps_each(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                    double *nll, rk_score_fn fn, void *user);

/* Row R (0 = first row kept) of the logits of the last forward. */
const float *rk_model_logits(const rk_model *m, int r);

/* Negative log-likelihood of TARGET under the logits ROW (log-softmax in
 * double) into *NLL; RK_EINVAL when TARGET is outside [0, VOCAB) or a logit
 * is not finite. */
rk_status rk_nll(const float *row, int vocab, int target, double *nll);

/* Accessors for the tools, so that they need not reach the target. */

/* A human-readable name of the device M runs on. */
void rk_model_device_name(const rk_model *m, char *buf, size_t len);

/* Bytes this model holds: its weights block, its arena and its host
 * staging, as planned (not what else the device or process holds). */
size_t rk_model_memory_bytes(const rk_model *m);

/* Bytes of its KV cache (K and V of all layers), inside the arena. */
size_t rk_model_kv_bytes(const rk_model *m);

/* Bytes of weights a decode step reads: all of them but the input
 * embedding, of which it reads one row. */
size_t rk_model_step_weight_bytes(const rk_model *m);

/* Bytes of that cache holding rows once a prompt of PROMPT tokens and all
 * the planned new tokens have run (dynamic budgets reserve more than they
 * fill). */
size_t rk_model_kv_bytes_used(const rk_model *m, int prompt);

/* Device memory as the target reports it: *IN_USE all that is in use now
 * (other allocations included), *SINCE_LOAD how much more than before M's
 * weights and arena were allocated. 0 on targets that do not report it. */
int rk_model_device_used(const rk_model *m, size_t *in_use, size_t *since_load);

/* The K and V of position POS of layer LAYER of S, as host floats into K
 * and V: heads x head_dim each, head after head as the cache keeps them
 * (keys after rotary), read back from any storage format as attention reads
 * it (kv_quant.h). For analysis beside the
 * runtime (the ReKV study of rejected draft tokens, core/rekv.h): only the
 * full cache, whose rows are positions, and only positions S has run;
 * RK_EINVAL otherwise. Waits for the copy. */
rk_status rk_model_kv_row(const rk_model *m, const rk_seq *s, int layer, int pos, float *k,
                          float *v);

#endif
