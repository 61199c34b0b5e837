/* libFuzzer target: arbitrary bytes as config.json text. An accepted config
 * must satisfy the invariants the runtime relies on. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_config c;

    rk_fail(RK_OK, "%s", "");
    if (rk_config_parse((const char *)data, size, &c) != RK_OK) {
        if (rk_last_error()[0] == '\0')
            __builtin_trap();
        return 0;
    }
    if (c.n_layers < 1 || c.n_layers > RK_MAX_LAYERS || c.hidden < 1 || c.n_heads < 1 ||
        c.head_dim * c.n_heads != c.hidden || c.head_dim % 2 != 0 || c.ffn < 1 || c.vocab < 1 ||
        c.max_pos < 1 || c.rotary_dims < 0 || c.rotary_dims > c.head_dim || c.rotary_dims % 2 != 0 ||
        !(c.rope_base > 0.0) || !(c.ln_eps > 0.0f && c.ln_eps < 1.0f) || c.bos_id < 0 ||
        c.bos_id >= c.vocab || c.eos_id < 0 || c.eos_id >= c.vocab)
        __builtin_trap();
    return 0;
}
