/* ReKV: what the KV rows of a rejected draft token are worth (issue #13).
 *
 * In greedy speculative decoding the draft proposes K tokens and the target
 * verifies them in one forward; at the first disagreement, window position
 * j (1..K) and absolute position p, the draft's token is rejected and the
 * target's own choice takes its place. The question is whether the KV rows
 * computed for the rejected token could stand in for the rows of the token
 * that replaces it. Two comparisons per event, each per layer, K and V
 * apart:
 *   draft vs target truth: the draft's K/V of its rejected token at p
 *     against the target's K/V of the token it chose at p (known once the
 *     target has run that token, the round after);
 *   target rejected vs target truth: the target's own K/V of the rejected
 *     token, computed while verifying, against the same truth. Same model,
 *     so no mapping: how much a wrong token at p moves p's rows at all.
 *
 * Layers map proportionally: draft layer i compares with target layer
 * round(i (L_t - 1) / (L_d - 1)) (a draft of one layer: layer 0). Heads:
 * the first min(H_d, H_t) of each model; dims: the first min(d_d, d_t) of
 * each head (pythia-nano 80 vs pythia-mini 64, Pythia-160M 64 vs 2.8B 80).
 * The limits of that alignment, which only the draft-vs-target comparison
 * has:
 *   - keys are cached after rotary, and GPT-NeoX rotates the FIRST
 *     rotary_dims of each head (rotate_half: dim i pairs with dim i +
 *     rotary_dims/2). Two models with different rotary_dims rotate
 *     different dims at different frequencies (base^(-2i/rotary_dims)), so
 *     the first min(d) dims mix one model's rotated dims with the other's
 *     rotated and unrotated ones; values carry no rotation;
 *   - head h of one model and head h of another are not the same head in
 *     any learned sense (separately trained weights, any permutation of
 *     heads is an equal model), and neither are the coordinates inside a
 *     head.
 * So a low cross-model cosine says that the rows cannot be used as they
 * are, which is what reusing them would do; it does not say that no map
 * between the two could recover one from the other.
 *
 * Similarity of one layer's rows: cosine is the MEAN OVER THE COMPARED HEADS
 * of each head's cosine over the compared dims, since attention uses each
 * head apart (a concatenated cosine would let the heads of largest norm
 * decide); L2 is the Euclidean distance over all compared elements of the
 * layer, in the cache's units (for draft vs target, two models' scales). The
 * verdict uses cosine only.
 *
 * Target-agnostic: it sees only host floats it is handed (rk_model_kv_row
 * reads them); no model calls.
 *
 * How a greedy speculative decoder feeds it, one rk_rekv_rows held between
 * rounds (rk_rekv_rows_alloc):
 *   1. drafting: keep rk_rekv_prob of each drafted token under the draft
 *      logits row it was taken from (the next draft forward replaces it);
 *   2. after the target's verifying forward, at a rejection at window
 *      position j and position p, before either sequence is truncated or
 *      runs again (rk_model_kv_row refuses positions past n_past, and the
 *      next forward at p overwrites row p): target_rank = rk_rekv_rank of
 *      the rejected token under the target logits row that predicted p
 *      (a forward that leaves the logits: rk_model_forward, not the
 *      device-argmax variants); the target's rows at p into rejected_*
 *      and the draft's into draft_*, every layer. The draft has a row at p
 *      only where it ran its token there: for j < K it did (to draft
 *      j + 1); for j = K only if the decoder runs the K-th token through
 *      the draft (needs_draft_rows, core/speculative.h), otherwise the
 *      event is dropped;
 *   3. the next round, once the target's forward has run its own token at
 *      p (p is never rolled back after that), its rows at p into truth_*,
 *      then rk_rekv_add. A rejection in the last round has no truth row
 *      unless the decoder runs one more target step.
 * core/rekv_spec.h is that decoder's side, for core/speculative.h. */
#ifndef RK_REKV_H
#define RK_REKV_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rk_error.h"

#define RK_REKV_MAX_K 64        /* longest draft window */
#define RK_REKV_CONF_BINS 5     /* [0,.2) [.2,.4) [.4,.6) [.6,.8) [.8,1] */
#define RK_REKV_RANK_BINS 5     /* 2, 3-5, 6-10, 11-100, >100 */
#define RK_REKV_HIST_BINS 20    /* cosine over [-1, 1], 0.1 wide */
#define RK_REKV_GO_ABOVE 0.7    /* verdict: a score above this is GO ... */
#define RK_REKV_CAUTION_FROM 0.5 /* ... from this to GO_ABOVE CAUTION, below NO-GO */

/* Draft layer I's target layer among TARGET_LAYERS, for a draft of
 * DRAFT_LAYERS: round(I (L_t - 1) / (L_d - 1)), halves up; 0 for a draft of
 * one layer. */
int rk_rekv_map_layer(int i, int draft_layers, int target_layers);

/* One layer's K (or V) rows compared: A is A_HEADS x A_DIM floats, head
 * after head, B likewise; heads 0..min(heads)-1 and, in each, dims
 * 0..min(dim)-1 are compared. *COS: the mean over those heads of each
 * head's cosine (1 where both of a head's vectors are zero, 0 where one
 * is); *L2: sqrt of the sum of squared differences over every compared
 * element. In double. */
void rk_rekv_compare(const float *a, int a_heads, int a_dim, const float *b, int b_heads,
                     int b_dim, double *cos, double *l2);

/* Softmax probability (temperature 1, in double) of TOKEN under LOGITS of
 * VOCAB: the draft's confidence in its token. NaN when TOKEN is outside
 * [0, VOCAB). */
double rk_rekv_prob(const float *logits, int vocab, int token);

/* 1-based rank of TOKEN under LOGITS (1: the argmax), ties broken as
 * rk_argmax breaks them (the lower id first), so a token greedy decoding
 * rejected has rank 2 or more. -1 when TOKEN is outside [0, VOCAB). */
int rk_rekv_rank(const float *logits, int vocab, int token);

/* The confidence bin of probability P in [0, 1] (the last bin holds 1), and
 * its name ("[0.0,0.2)" ... "[0.8,1.0]"). */
int rk_rekv_conf_bin(double p);
const char *rk_rekv_conf_bin_name(int bin);

/* The bin of target rank RANK ≥ 2 ("2", "3-5", "6-10", "11-100", ">100");
 * -1 for a rank below 2. */
int rk_rekv_rank_bin(int rank);
const char *rk_rekv_rank_bin_name(int bin);

typedef enum {
    RK_REKV_NO_DATA, /* no rejected token with its truth row was seen */
    RK_REKV_NO_GO,   /* score < CAUTION_FROM */
    RK_REKV_CAUTION, /* CAUTION_FROM <= score <= GO_ABOVE: name where it passes */
    RK_REKV_GO,      /* score > GO_ABOVE */
} rk_rekv_verdict;

/* The verdict of SCORE, the mean of the mean K and V cosines of draft vs
 * target truth (not for NO_DATA, which is the count's). */
rk_rekv_verdict rk_rekv_verdict_of(double score);
const char *rk_rekv_verdict_name(rk_rekv_verdict v); /* "GO", "CAUTION", "NO-GO", "NO-DATA" */

/* Similarities of one layer (or means over layers). */
typedef struct {
    double cos_k, cos_v, l2_k, l2_v;
} rk_rekv_sim;

/* One event as rk_rekv_add takes it. The rows are at p, every layer, layer
 * after layer, each layer heads x head_dim floats head after head (what
 * rk_model_kv_row writes): layer l of the draft's starts at
 * l * H_d * d_d, of the target's at l * H_t * d_t. */
typedef struct {
    int window_pos;        /* 1..K: the rejected token's place in the draft window */
    int position;          /* p, its absolute position in the sequence */
    int32_t draft_token;   /* the rejected token */
    int32_t target_token;  /* the target's choice at p */
    double draft_prob;     /* the draft's probability of draft_token (rk_rekv_prob) */
    int target_rank;       /* draft_token's rank under the target's logits at p (rk_rekv_rank) */
    float *draft_k, *draft_v;       /* the draft's, for draft_token (L_d layers) */
    float *rejected_k, *rejected_v; /* the target's, for draft_token, from verifying (L_t) */
    float *truth_k, *truth_v;       /* the target's, for target_token (L_t) */
} rk_rekv_rows;

/* An event as stored: its scalars and both comparisons' means over layers
 * (the per-layer values: rk_rekv_draft_sims, rk_rekv_self_sims). */
typedef struct {
    int window_pos, position;
    int32_t draft_token, target_token;
    double draft_prob;
    int target_rank;
    rk_rekv_sim draft; /* draft vs target truth, mean over draft layers */
    rk_rekv_sim self;  /* target rejected vs target truth, mean over target layers */
} rk_rekv_event;

/* The accumulator of one run with window K. Events grow without bound:
 * this is an offline analysis, beside the runtime, and its storage is
 * malloc'd and grown as events come (the no-allocation rule is the
 * inference runtime's: rk_model's forward never allocates). */
typedef struct {
    int k;
    int draft_layers, draft_heads, draft_dim;
    int target_layers, target_heads, target_dim;
    int heads, dims;         /* compared: min of each */
    int map[RK_MAX_LAYERS];  /* draft layer -> target layer */
    int n, cap;              /* events stored, room for */
    rk_rekv_event *events;
    rk_rekv_sim *draft_sims; /* n x draft_layers */
    rk_rekv_sim *self_sims;  /* n x target_layers */
} rk_rekv;

/* An accumulator for a DRAFT and a TARGET model (their configs) and a
 * window of K (1..RK_REKV_MAX_K) draft tokens. */
rk_status rk_rekv_new(const rk_config *draft, const rk_config *target, int k, rk_rekv **out);
void rk_rekv_free(rk_rekv *r);

/* Host buffers for one event's rows, sized for R's models (the scalars
 * zeroed); a speculative decoder keeps one for the event whose truth row
 * comes next round. */
rk_status rk_rekv_rows_alloc(const rk_rekv *r, rk_rekv_rows *rows);
void rk_rekv_rows_free(rk_rekv_rows *rows);

/* Compares ROWS (every draft layer with its mapped target layer; every
 * target layer with itself) and stores the event. RK_EINVAL, storing
 * nothing, when window_pos is outside 1..K, draft_prob outside [0, 1],
 * target_rank below 2 or a similarity is not finite (a NaN in the rows). */
rk_status rk_rekv_add(rk_rekv *r, const rk_rekv_rows *rows);

/* Event E's per-layer similarities: draft layer i vs target layer map[i]
 * (draft_layers of them), and target layer l vs itself (target_layers). */
const rk_rekv_sim *rk_rekv_draft_sims(const rk_rekv *r, int e);
const rk_rekv_sim *rk_rekv_self_sims(const rk_rekv *r, int e);

/* N comparisons and their means (zeros when N is 0). */
typedef struct {
    int n;
    rk_rekv_sim mean;
} rk_rekv_stat;

/* Both comparisons over the same events, means of each event's mean over
 * layers. */
typedef struct {
    rk_rekv_stat draft, self;
} rk_rekv_pair;

/* The aggregates of a run. Large (tens of KiB): allocate it, or keep it
 * static. */
typedef struct {
    int k, events;
    int draft_layers, target_layers, heads, dims;
    int map[RK_MAX_LAYERS];
    rk_rekv_pair all;
    rk_rekv_stat by_draft_layer[RK_MAX_LAYERS];  /* draft vs truth: draft layer i, target map[i] */
    rk_rekv_stat by_target_layer[RK_MAX_LAYERS]; /* target rejected vs truth, per target layer */
    rk_rekv_pair by_window[RK_REKV_MAX_K];       /* [j - 1]; .draft.n: rejections at j */
    rk_rekv_pair by_conf[RK_REKV_CONF_BINS];
    rk_rekv_pair by_rank[RK_REKV_RANK_BINS];
    /* Cosines of every (event, layer), counted in RK_REKV_HIST_BINS bins of
     * [-1, 1] (1 in the last). */
    int hist_draft_k[RK_REKV_HIST_BINS], hist_draft_v[RK_REKV_HIST_BINS];
    int hist_self_k[RK_REKV_HIST_BINS], hist_self_v[RK_REKV_HIST_BINS];
    double score; /* (all.draft.mean.cos_k + cos_v) / 2 */
    rk_rekv_verdict verdict;
    /* Which draft layers and confidence bins have events and a mean K/V
     * cosine above RK_REKV_GO_ABOVE (what a CAUTION verdict names). */
    unsigned char layer_passes[RK_MAX_LAYERS], conf_passes[RK_REKV_CONF_BINS];
} rk_rekv_summary;

void rk_rekv_summarize(const rk_rekv *r, rk_rekv_summary *s);

/* The verdict in a line: its name and score, K and V apart, and for
 * CAUTION the draft layers (with their target layers) and confidence bins
 * that pass, or that none does. Truncated to LEN. */
void rk_rekv_verdict_text(const rk_rekv_summary *s, char *buf, size_t len);

#endif
