/* Speculative decoding, greedy and exact: a small draft model proposes K
 * tokens, one argmax step each; the target scores the last accepted token
 * and the K proposals in one forward of K + 1 rows, whose per-row argmax
 * says what the target would have generated after each; the longest prefix
 * of proposals it agrees with is kept, followed by the target's own next
 * token. Every token out is the target's argmax for its context, so the
 * output is the target's greedy output, as long as a step of K + 1 rows
 * rounds as a step of one does (on the CPU, in fp32, its GEMM sums in
 * another order than the one-row GEMV: only a near tie could resolve
 * otherwise; fp16 on CUDA likewise). Both sequences then drop their
 * rejected rows with rk_seq_truncate: positions reset, nothing copied.
 *
 * Memory: each model keeps its own plan and its own arena, both made and
 * allocated at its rk_model_load; the two loads are the only allocations
 * (with, here, a buffer for the draft's logits when an observer asks for
 * them, made by rk_spec_init), and decoding allocates nothing. One arena
 * per model keeps each plan whole and printable (--print-plan prints both),
 * and each target keeps its own recorded steps; one arena could hold both
 * once the planner prefixes region names.
 *
 * Plans: the target needs logits_rows ≥ K + 1 (at most RK_SPEC_MAX_K + 1,
 * the longest step a target records); a draft with logits_rows ≥ 2 runs a
 * catch-up step of two rows as a recorded step. Both hold the prompt and
 * max_new positions after it: a round never runs beyond the positions
 * plain greedy decoding would reach, since K is cut to what remains.
 * KV policies that roll back after the prompt (full, SnapKV-style prompt
 * compression) are accepted; the evicting ones (H2O, StreamingLLM) are
 * refused, since a rejected row's eviction cannot be undone. */
#ifndef RK_SPECULATIVE_H
#define RK_SPECULATIVE_H

#include <stdint.h>

#include "model.h"
#include "rk_error.h"

/* The most proposals a round verifies: the target runs K + 1 rows, and a
 * target records steps of up to RK_MAX_RECORDED_STEP rows. */
enum { RK_SPEC_MAX_K = RK_MAX_RECORDED_STEP - 1 };

/* One round as the target verified it, passed to an observer BEFORE either
 * sequence is rolled back: both caches still hold every row the round
 * wrote. Positions are sequence positions. */
typedef struct {
    const rk_model *target, *draft;
    /* The target has run TOKENS (n_past = pos + k + 1); the draft has run
     * them but the last proposal (n_past = pos + k), or all of them where
     * the observer needs_draft_rows or where its last proposal was refused
     * for the target's vocabulary. */
    const rk_seq *target_seq, *draft_seq;
    int round; /* 0 for the first after the prompt */
    int pos;   /* position of TOKENS[0], the last accepted token */
    int k;     /* proposals verified (0: a round that ran the target's token alone) */
    const int32_t *tokens;      /* k + 1: the last accepted token, then the proposals */
    const int32_t *target_next; /* k + 1: the target's argmax after each of TOKENS */
    int accepted;               /* proposals kept, 0..k: TOKENS[1..accepted] */
    int first_rejected;         /* pos + 1 + accepted, the position of the proposal
                                   the target rejected; -1 when none was: all k
                                   kept, or an end of text among the kept ones
                                   (then the last of them) ended the output */
    /* With needs_logits: row i (0..k-1) of DRAFT_LOGITS is the draft's
     * logits that proposed TOKENS[i + 1] (draft vocabulary wide); row r
     * (0..k) of TARGET_LOGITS is the target's after TOKENS[r]. NULL
     * otherwise. */
    const float *draft_logits, *target_logits;
} rk_spec_round;

/* Hooks for an analysis that watches each round (the rejected KV rows
 * before they are dropped). A non-OK status from on_round ends decoding
 * with that status. */
typedef struct {
    void *user;
    /* The rounds' logits rows for the analysis: both models then copy
     * their logits back (rk_model_forward + host argmax) instead of a
     * device argmax; slower on targets that have one. */
    int needs_logits;
    /* The draft's KV row of every proposal, the last one included: the
     * draft runs each round's last proposal in a step of its own before the
     * target verifies (one draft step more a round, counted in draft_steps),
     * where it would otherwise run it only after a round that kept it, with
     * the next round's first token. A rejected last proposal would have no
     * draft row at all. */
    int needs_draft_rows;
    rk_status (*on_round)(void *user, const rk_spec_round *r);
} rk_spec_observer;

typedef struct {
    int k;          /* proposals per round, 1..rk_spec_max_k(target) */
    int adaptive;   /* K + 1 after a round that kept every proposal, K − 1 after one that did
                       not, within 1..rk_spec_max_k; off: K is fixed */
    int max_new;    /* tokens to generate, ≥ 1 */
    int ignore_eos; /* go on after the target's end-of-text token (which is emitted) */
} rk_spec_options;

/* What one generation did. Rounds are the target's forwards after the
 * prompt; a round after which one token remains runs with no proposals. */
typedef struct {
    int prompt_tokens;
    int generated;
    int rounds;
    long proposed, accepted;    /* draft tokens verified, and kept */
    int target_forwards;        /* the prompt's chunks + rounds */
    int draft_forwards;         /* the prompt's chunks + draft steps */
    int draft_steps;            /* draft forwards after the prompt; the last proposal of a
                                   round that kept all rides with the next round's first
                                   (with needs_draft_rows it runs in a step of its own) */
    int accepted_hist[RK_SPEC_MAX_K + 1]; /* rounds that kept 0, 1, ... proposals */
    int k_last;                 /* K at the end (adaptive) */
    double prefill_s;           /* both prompts, until the first token */
    double decode_s;            /* the rounds */
} rk_spec_stats;

/* The decoder: two models, a sequence on each, and the observer. */
typedef struct {
    rk_model *target, *draft;
    rk_seq target_seq, draft_seq;
    rk_spec_observer obs;       /* zero: none */
    float *draft_logits;        /* RK_SPEC_MAX_K rows of the draft's vocabulary, for an
                                   observer that needs logits */
} rk_spec;

/* The proposals a round may verify on TARGET: min(logits_rows − 1,
 * RK_SPEC_MAX_K) (0 for a plan of one row, which cannot verify). */
int rk_spec_max_k(const rk_model *target);

/* Whether limits for the target and the draft can decode speculatively
 * with up to K_MAX proposals: the target's logits rows ≥ k_max + 1 and
 * k_max in 1..RK_SPEC_MAX_K, and neither policy evicts; a message
 * otherwise (for tools, before anything is loaded). */
rk_status rk_spec_check_limits(const rk_limits *target, const rk_limits *draft, int k_max);

/* Whether the models in TARGET_DIR and DRAFT_DIR share a tokenizer: the
 * same vocabulary (token → id), merges (in rank order) and added tokens
 * in their tokenizer.json, the first difference named otherwise; and
 * every id it emits is below both models' vocab_size (TARGET_VOCAB,
 * DRAFT_VOCAB), which may differ (Pythia pads it by model size). */
rk_status rk_spec_check_tokenizers(const char *target_dir, const char *draft_dir,
                                   int target_vocab, int draft_vocab);

/* Sets up S for TARGET and DRAFT (loaded, their limits as
 * rk_spec_check_limits wants them) with OBS (NULL: none). Allocates only
 * the draft's logits rows, when OBS needs logits. */
rk_status rk_spec_init(rk_spec *s, rk_model *target, rk_model *draft,
                       const rk_spec_observer *obs);
void rk_spec_release(rk_spec *s);

/* Greedy generation of PROMPT[0..n) by speculative decoding: OUT gets
 * stats->generated ≤ o->max_new tokens (ending at the target's
 * end-of-text token unless ignore_eos). The prompt and max_new must fit
 * both plans; K out of 1..rk_spec_max_k is an error. Allocates nothing. */
rk_status rk_spec_generate(rk_spec *s, const int32_t *prompt, int n, const rk_spec_options *o,
                           int32_t *out, rk_spec_stats *stats);

/* The same generation by the target alone, one greedy step per token
 * (the baseline speculative decoding must equal): rounds are its decode
 * steps, nothing proposed. Uses and overwrites S's target sequence. */
rk_status rk_spec_greedy(rk_spec *s, const int32_t *prompt, int n, const rk_spec_options *o,
                         int32_t *out, rk_spec_stats *stats);

/* Expected tokens a round yields when each proposal is kept with
 * probability A independently and the round stops at the first rejection:
 * 1 + a + ... + a^K = (1 − a^{K+1}) / (1 − a) (K + 1 at a = 1). */
double rk_spec_expected_tokens(double a, int k);

/* Speedup over the target alone of rounds of K proposals at acceptance A,
 * from the costs of one draft step, one verification of K + 1 rows and one
 * target decode step: expected tokens × t_target / (K · t_draft + t_verify). */
double rk_spec_speedup(double a, int k, double t_draft, double t_verify, double t_target);

#endif
