/* A KV-cache policy: which method compresses the cache and how many
 * positions each layer keeps. The plan sizes every layer's cache from it,
 * and the forward pass follows it through the method's hooks; the same
 * policy drives every target.
 *
 * A policy users name (snapkv, pyramidkv, rankkv, ...) is an entry of the
 * table in kv_policy.c: its name, the method that keeps and evicts rows,
 * and how its per-layer budgets are made. A method is a set of hooks. */
#ifndef RK_KV_POLICY_H
#define RK_KV_POLICY_H

#include "config.h"
#include "kv_cache.h"
#include "ops.h"
#include "profile.h"
#include "rank_budget.h"
#include "rk_error.h"

typedef enum {
    RK_KV_FULL,      /* no compression */
    RK_KV_SNAPKV,    /* compress once after prefill by window scores */
    RK_KV_H2O,       /* heavy hitters + recent, evicting while decoding */
    RK_KV_STREAMING, /* attention sinks + recent, evicting while decoding */
} rk_kv_method;

#define RK_KV_WINDOW 32 /* SnapKV's observation window */
#define RK_KV_POOL 7    /* SnapKV's max-pool kernel */
#define RK_KV_SINKS 4   /* StreamingLLM's attention sinks */
#define RK_KV_BETA 20.0 /* PyramidKV's schedule parameter */
/* rankkv-dynamic measures the ranks of a prompt's first tokens up to this
 * many, the calibration length: the attention of a longer prompt's prefix
 * is the attention of that prefix alone, and SVDs grow as n³. */
#define RK_KV_DYNAMIC_RANK_LEN 1024

typedef struct {
    const char *name; /* as users named it: kept in plans, records and tables */
    rk_kv_method method;
    int average;               /* layers × average positions in all */
    int budget[RK_MAX_LAYERS]; /* positions each layer keeps after prefill */
    int window, pool;          /* SnapKV */
    int sinks;                 /* StreamingLLM */
    int recent;                /* H2O's recent window; 0: half of each layer's budget */
    /* RankKV (SnapKV's selection with rank-driven budgets): the compiled
     * profile the budgets came from (static), or DYNAMIC, whose budgets are
     * made from the ranks of each prompt by the same strategy. */
    const rk_profile *profile;
    int dynamic;
    rk_rank_allocation rank;
} rk_kv_policy;

/* Options as users give them; zero fields take the defaults above. */
typedef struct {
    const char *method; /* one of RK_KV_METHODS */
    int average;
    const int *budgets; /* explicit per-layer array, or NULL */
    int n_budgets;
    int window, pool, sinks, recent;
    double beta;
    const rk_profile *profile; /* rankkv: the compiled profile of the model */
    rk_rank_allocation rank;   /* rankkv, rankkv-dynamic */
    /* The most rows a layer can keep, the prompt limit (0: no limit): a
     * schedule (pyramid, profile) that gives a layer more passes the
     * surplus to the others (rk_budget_cap). Uniform and explicit budgets
     * are checked by the plan, not changed. */
    int max_rows;
} rk_kv_options;

/* The method names users can give, for help texts. */
#define RK_KV_METHODS                                                                        \
    "full, snapkv, pyramidkv, h2o, streamingllm, rankkv, rankkv-dynamic, pyramidkv-rankkv"

/* For a policy that takes its budgets from a RankKV profile and was given
 * none: the one compiled in for the model in DIR, found by its identity;
 * an error naming the model when there is none. */
rk_status rk_kv_options_find_profile(rk_kv_options *opt, const char *dir);

/* Builds the policy for a model of LAYERS layers: the method, then uniform
 * budgets (snapkv, h2o, streamingllm), PyramidKV's schedule (pyramidkv), the
 * profile's (rankkv), PyramidKV's schedule modulated by the profile's ranks
 * (pyramidkv-rankkv, rk_budget_pyramid_ranks), uniform until a prompt's ranks are known
 * (rankkv-dynamic) or the explicit array, which must sum to layers ×
 * average. */
rk_status rk_kv_policy_make(const rk_kv_options *opt, int layers, rk_kv_policy *out);

/* Whether the policy NAME takes its budgets from the model's compiled
 * profile (rankkv, pyramidkv-rankkv): the tools find it before making it. */
int rk_kv_needs_profile(const char *name);

/* What a method's hooks get for one layer from the forward pass. */
typedef struct {
    const rk_ops *ops;
    void *ctx;
    const rk_kv_layer *cache;  /* the layer's cache */
    const rk_kv_layer *prompt; /* a compressing prefill: the prompt's K/V, rows = positions */
    const void *q;             /* the queries attention just used */
    int n;                     /* queries in this call */
    const void *pos, *row;     /* the step input's pos0 and the layer's row0 (both 0 in a
                                  compressing prefill) */
    rk_kv_scores mass;         /* scratch: each prompt row's attention mass */
    int32_t *keep;             /* scratch: the rows to keep, in target memory */
    int32_t *host_keep;        /* host staging for rows chosen on the host */
    int budget;                /* the layer's */
} rk_kv_layer_step;

typedef struct {
    /* The fewest positions a layer may keep. */
    int (*min_budget)(const rk_kv_policy *p);
    /* Rows a layer's cache needs for BUDGET, prompts of up to MAX_PROMPT
     * tokens and MAX_NEW after them. */
    int (*layer_cap)(const rk_kv_policy *p, int budget, int max_prompt, int max_new);
    /* Rows in use after a call of N tokens on a cache of ROWS; PROMPT: the
     * call is a compressing prefill. */
    int (*rows_after)(int rows, int n, int budget, int prompt);
    /* After a compressing prefill's attention in a layer: the rows to keep,
     * moved into the layer's cache with their positions (NULL: none). */
    rk_status (*after_prefill_layer)(const rk_kv_policy *p, const rk_kv_layer_step *s);
    /* After a decode step's attention in a layer (NULL: nothing). A method
     * that has it takes one token per step. */
    void (*after_decode_attention)(const rk_kv_policy *p, const rk_kv_layer_step *s);
    /* Its caches keep each row's accumulated attention. */
    int keeps_scores;
    /* layer_cap in words, for printed plans. */
    const char *cap_rule;
} rk_kv_hooks;

/* Whether P compresses the prompt (every policy but the full cache). */
int rk_kv_compresses(const rk_kv_policy *p);

const rk_kv_hooks *rk_kv_hooks_of(const rk_kv_policy *p);

/* Steps a smartkv cache (kv_smart.h) takes where its policy has no hook of
 * its own, the full cache: after the prompt's attention, every row's
 * SnapKV window score and every row gathered into the tiers by it; after
 * a decode step's, H2O's accumulated attention, which it demotes by. */
rk_status rk_kv_place_all_after_prefill(const rk_kv_policy *p, const rk_kv_layer_step *s);
void rk_kv_accumulate_attention(const rk_kv_layer_step *s);

/* The smallest budget a layer may have: SnapKV keeps at least its window;
 * the evicting methods need a row outside their sinks or recent window. */
int rk_kv_min_budget(const rk_kv_policy *p);


/* Rows layer L's cache holds once a prompt of PROMPT tokens has been
 * compressed and MAX_NEW generated, for memory reports; CAP is the planned
 * capacity. */
int rk_kv_rows_used(const rk_kv_policy *p, int l, int prompt, int max_new, int cap);

/* Checks a policy against a plan whose caches hold up to MAX_CONTEXT
 * positions. */
rk_status rk_kv_policy_check(const rk_kv_policy *p, int layers, int max_context);


/* Refuses a policy that evicts rows while decoding (h2o, streamingllm) over
 * a KIVI format: a key belongs to a group of positions quantized per
 * channel together, and one row cannot leave it or take a victim's place. */
rk_status rk_kv_policy_stores(const rk_kv_policy *p, rk_kv_format f);

/* The name users gave the policy (full for a zero policy). */
const char *rk_kv_policy_name(const rk_kv_policy *p);

#endif
