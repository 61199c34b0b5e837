#include "weights.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[RK_MAX_NAME];
    int ndim;
    int64_t shape[2];
    size_t offset;
} tensor_slot;

/* Calls EACH for every tensor in checkpoint order of appearance in HF's
 * GPTNeoXForCausalLM; the walk is shared by planning and loading so the two
 * can never disagree. Stops at the first non-OK status. */
typedef rk_status (*slot_fn)(rk_model *m, tensor_slot *s, size_t *field, void *arg);

static rk_status walk(rk_model *m, slot_fn each, void *arg)
{
    const rk_config *c = &m->cfg;
    const int64_t D = c->hidden, F = c->ffn, V = c->vocab;
    rk_status st;
    tensor_slot s;

#define SLOT(field, nd, d0, d1, ...)                                   \
    do {                                                               \
        snprintf(s.name, sizeof s.name, __VA_ARGS__);                  \
        s.ndim = (nd);                                                 \
        s.shape[0] = (d0);                                             \
        s.shape[1] = (d1);                                             \
        if ((st = each(m, &s, &(field), arg)) != RK_OK)                \
            return st;                                                 \
    } while (0)

    SLOT(m->w_embed, 2, V, D, "gpt_neox.embed_in.weight");
    for (int l = 0; l < c->n_layers; l++) {
        rk_layer_weights *w = &m->w_layer[l];
        const char *p = "gpt_neox.layers";
        SLOT(w->ln1_w, 1, D, 0, "%s.%d.input_layernorm.weight", p, l);
        SLOT(w->ln1_b, 1, D, 0, "%s.%d.input_layernorm.bias", p, l);
        SLOT(w->qkv_w, 2, 3 * D, D, "%s.%d.attention.query_key_value.weight", p, l);
        SLOT(w->qkv_b, 1, 3 * D, 0, "%s.%d.attention.query_key_value.bias", p, l);
        SLOT(w->dense_w, 2, D, D, "%s.%d.attention.dense.weight", p, l);
        SLOT(w->dense_b, 1, D, 0, "%s.%d.attention.dense.bias", p, l);
        SLOT(w->ln2_w, 1, D, 0, "%s.%d.post_attention_layernorm.weight", p, l);
        SLOT(w->ln2_b, 1, D, 0, "%s.%d.post_attention_layernorm.bias", p, l);
        SLOT(w->fc1_w, 2, F, D, "%s.%d.mlp.dense_h_to_4h.weight", p, l);
        SLOT(w->fc1_b, 1, F, 0, "%s.%d.mlp.dense_h_to_4h.bias", p, l);
        SLOT(w->fc2_w, 2, D, F, "%s.%d.mlp.dense_4h_to_h.weight", p, l);
        SLOT(w->fc2_b, 1, D, 0, "%s.%d.mlp.dense_4h_to_h.bias", p, l);
    }
    SLOT(m->w_lnf_w, 1, D, 0, "gpt_neox.final_layer_norm.weight");
    SLOT(m->w_lnf_b, 1, D, 0, "gpt_neox.final_layer_norm.bias");
    SLOT(m->w_unembed, 2, V, D, "embed_out.weight");
#undef SLOT
    return RK_OK;
}

static size_t slot_elems(const tensor_slot *s)
{
    return (size_t)s->shape[0] * (s->ndim == 2 ? (size_t)s->shape[1] : 1);
}

/* Tensors are grouped into a handful of printable regions; within a group
 * each tensor starts on the plan's alignment. */
typedef struct {
    size_t cursor;
} plan_state;

static const char *group_of(const char *name)
{
    if (strstr(name, "embed_in"))
        return "embed_in";
    if (strstr(name, "final_layer_norm"))
        return "final_layer_norm";
    if (strstr(name, "embed_out"))
        return "embed_out";
    return "layers";
}

static rk_status plan_slot(rk_model *m, tensor_slot *s, size_t *field, void *arg)
{
    rk_plan *p = &m->wplan;
    const char *g = group_of(s->name);
    size_t bytes = slot_elems(s) * m->ops->act_bytes;
    size_t padded = (bytes + RK_PLAN_ALIGN - 1) / RK_PLAN_ALIGN * RK_PLAN_ALIGN;
    rk_region *last = p->n_regions ? &p->regions[p->n_regions - 1] : NULL;
    if (!last || strcmp(last->name, g) != 0) {
        *field = rk_plan_add(p, g, padded);
        return RK_OK;
    }
    *field = last->offset + last->size;
    last->size += padded;
    p->total = last->offset + last->size;
    return RK_OK;
}

void rk_weights_plan(rk_model *m)
{
    rk_plan_init(&m->wplan, "weights");
    walk(m, plan_slot, NULL);
}

typedef struct {
    rk_tensor_spec_fn fn;
    void *arg;
} spec_walk;

static rk_status spec_slot(rk_model *m, tensor_slot *s, size_t *field, void *arg)
{
    const spec_walk *w = arg;
    w->fn(s->name, s->ndim, s->shape, w->arg);
    return RK_OK;
}

rk_status rk_weights_foreach(const rk_config *cfg, rk_tensor_spec_fn fn, void *arg)
{
    rk_model *m = calloc(1, sizeof *m);
    if (!m)
        return rk_fail(RK_ENOMEM, "out of memory listing tensors");
    m->cfg = *cfg;
    spec_walk w = {fn, arg};
    rk_status st = walk(m, spec_slot, &w);
    free(m);
    return st;
}

/* The checkpoint tensors the walk has matched, by address, to tell the
 * tensors a model uses from the ones it would silently leave out. */
typedef struct {
    const rk_safetensors *st;
    const rk_tensor **used;
    int n_used;
} check_state;

static rk_status check_slot(rk_model *m, tensor_slot *s, size_t *field, void *arg)
{
    check_state *c = arg;
    const rk_tensor *t = rk_st_find(c->st, s->name);
    if (!t)
        return rk_fail(RK_EMISSING, "checkpoint has no tensor '%s' (a gpt_neox model needs it)",
                       s->name);
    if (t->dtype == RK_DTYPE_OTHER)
        return rk_fail(RK_EDTYPE, "tensor '%s' has dtype %s; expected F16, BF16 or F32",
                       s->name, t->dtype_name);
    int ok = t->ndim == s->ndim;
    for (int d = 0; ok && d < s->ndim; d++)
        ok = t->shape[d] == s->shape[d];
    if (!ok) {
        char got[96] = "", want[64];
        size_t off = 0;
        for (int d = 0; d < t->ndim && off < sizeof got; d++)
            off += (size_t)snprintf(got + off, sizeof got - off, "%s%" PRId64, d ? ", " : "",
                                    t->shape[d]);
        if (s->ndim == 2)
            snprintf(want, sizeof want, "%" PRId64 ", %" PRId64, s->shape[0], s->shape[1]);
        else
            snprintf(want, sizeof want, "%" PRId64, s->shape[0]);
        return rk_fail(RK_ESHAPE, "tensor '%s' has shape [%s]; config.json implies [%s]",
                       s->name, got, want);
    }
    c->used[c->n_used++] = t;
    return RK_OK;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(const rk_tensor *const *)a, y = (uintptr_t)*(const rk_tensor *const *)b;
    return (x > y) - (x < y);
}

/* Buffers of older checkpoints that HF recomputes or never reads. */
static int ignored_buffer(const char *rest)
{
    return strcmp(rest, "attention.bias") == 0 || strcmp(rest, "attention.masked_bias") == 0 ||
           strcmp(rest, "attention.rotary_emb.inv_freq") == 0;
}

/* T is a tensor the walk did not match: refused, unless it is a buffer of
 * a layer the config has. A tensor of a layer beyond num_hidden_layers means
 * config.json describes a smaller model than the checkpoint holds. */
static rk_status check_unused(const rk_config *c, const rk_tensor *t)
{
    const char *prefix = "gpt_neox.layers.";
    const size_t plen = strlen(prefix);
    char *rest = NULL;
    long layer = -1;
    if (strncmp(t->name, prefix, plen) == 0 && t->name[plen] >= '0' && t->name[plen] <= '9') {
        layer = strtol(t->name + plen, &rest, 10);
        if (*rest != '.')
            layer = -1;
    }
    if (layer >= c->n_layers)
        return rk_fail(RK_ECONFIG,
                       "checkpoint tensor '%s' belongs to layer %ld, but config.json has "
                       "num_hidden_layers %d: the config and the checkpoint are different models",
                       t->name, layer, c->n_layers);
    if (layer >= 0 && ignored_buffer(rest + 1))
        return RK_OK;
    return rk_fail(RK_EFORMAT,
                   "checkpoint tensor '%s' is not one a gpt_neox model of this config uses; "
                   "refusing rather than running without it",
                   t->name);
}

rk_status rk_weights_check(rk_model *m, const rk_safetensors *st)
{
    const int n = rk_st_count(st);
    check_state c = {st, calloc((size_t)n + 1, sizeof *c.used), 0};
    rk_status status;
    if (!c.used)
        return rk_fail(RK_ENOMEM, "out of memory checking %d tensors", n);
    if ((status = walk(m, check_slot, &c)) == RK_OK) {
        qsort(c.used, (size_t)c.n_used, sizeof *c.used, by_address);
        for (int i = 0; i < n && status == RK_OK; i++) {
            const rk_tensor *t = rk_st_at(st, i);
            if (!bsearch(&t, c.used, (size_t)c.n_used, sizeof *c.used, by_address))
                status = check_unused(&m->cfg, t);
        }
    }
    free(c.used);
    return status;
}

static rk_status load_slot(rk_model *m, tensor_slot *s, size_t *field, void *arg)
{
    const rk_safetensors *st = arg;
    const rk_tensor *t = rk_st_find(st, s->name);
    rk_status status = rk_st_check_finite(st, t);
    if (status != RK_OK)
        return status;
    return m->ops->upload(m->ctx, (char *)m->wbase + *field, t->data, t->dtype,
                          slot_elems(s));
}

rk_status rk_weights_load(rk_model *m, const rk_safetensors *st)
{
    return walk(m, load_slot, (void *)st);
}
