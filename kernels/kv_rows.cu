#include "kv_rows.cuh"

extern "C" size_t rk_k_kv_row_bytes(const rk_k_kv *c)
{
    return kv_row_bytes(c->bits, c->head_dim, c->group);
}
