/* The GPT-NeoX tensors a model needs: their names, shapes and places in the
 * weights block, and the checks that bind a checkpoint to a config. */
#ifndef RK_WEIGHTS_H
#define RK_WEIGHTS_H

#include "model.h"
#include "safetensors.h"

/* Calls FN for every tensor a model of CFG needs, in checkpoint order. */
typedef void (*rk_tensor_spec_fn)(const char *name, int ndim, const int64_t *shape, void *arg);
rk_status rk_weights_foreach(const rk_config *cfg, rk_tensor_spec_fn fn, void *arg);

/* Lays out every tensor of M->cfg in M->wplan and records the offsets. */
void rk_weights_plan(rk_model *m);

/* Binds ST to M->cfg before anything is allocated: every tensor the model
 * needs is present with a float dtype and the shape config.json implies, and
 * every other tensor of ST is one of the buffers older checkpoints carry
 * (attention.bias, attention.masked_bias, attention.rotary_emb.inv_freq of a
 * layer the config has). A tensor of a layer past num_hidden_layers is
 * RK_ECONFIG, any other extra tensor RK_EFORMAT, each named. */
rk_status rk_weights_check(rk_model *m, const rk_safetensors *st);

/* Uploads every needed tensor of ST, checked by rk_weights_check, into the
 * weights block through the target, refusing one that holds a NaN or an
 * infinity (named, with the element). */
rk_status rk_weights_load(rk_model *m, const rk_safetensors *st);

#endif
