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

/* Checks every needed tensor of ST (present, float dtype, shape) and uploads
 * it into the weights block through the target. */
rk_status rk_weights_load(rk_model *m, const rk_safetensors *st);

#endif
