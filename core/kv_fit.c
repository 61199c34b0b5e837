#include "kv_fit.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

size_t rk_kv_fit_bytes(const rk_config *cfg, const rk_kv_policy *p, rk_kv_format f, int group,
                       int max_prompt, int max_new)
{
    const rk_kv_hooks *hooks = rk_kv_hooks_of(p);
    size_t rows = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        rows += (size_t)hooks->layer_cap(p, p->budget[l], max_prompt, max_new);
    const int g = rk_kv_group_of(group);
    return 2 * rows * (size_t)cfg->n_heads * rk_kv_row_bytes(f, cfg->head_dim, g);
}

/* The policy OPT describes at AVERAGE (0: the full cache). */
static rk_status make(const rk_kv_options *opt, int layers, int max_prompt, int average,
                      rk_kv_policy *p)
{
    rk_kv_options o = *opt;
    o.average = average;
    o.max_rows = max_prompt;
    rk_status st = rk_kv_policy_make(&o, layers, p);
    return st == RK_OK ? rk_kv_policy_check(p, layers, max_prompt) : st;
}

/* The largest average in [LO, HI] whose cache of format F fits MEMORY
 * (LO's must), by bisection: the bytes grow with the average. */
static int largest_fit(const rk_config *cfg, const rk_kv_options *opt, rk_kv_format f, int group,
                       int max_prompt, int max_new, size_t memory, int lo, int hi)
{
    rk_kv_policy p;
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (make(opt, cfg->n_layers, max_prompt, mid, &p) == RK_OK &&
            rk_kv_fit_bytes(cfg, &p, f, group, max_prompt, max_new) <= memory)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

rk_status rk_kv_fit_memory(const rk_config *cfg, unsigned formats, int group,
                           const rk_kv_options *opt, int max_prompt, int max_new, size_t memory,
                           rk_kv_fit *out)
{
    if (opt->average || opt->budgets)
        return rk_fail(RK_EINVAL, "the KV memory sets the budget; give one or the other");
    if (max_prompt < 1 || max_new < 0)
        return rk_fail(RK_EINVAL, "a KV memory for prompts of %d and %d new tokens", max_prompt,
                       max_new);
    /* Formats in the rule's order: the enum runs from most bits to fewest. */
    rk_kv_format order[RK_KV_N_FORMATS];
    int n = 0;
    for (int f = 0; f < RK_KV_N_FORMATS; f++)
        if (formats & RK_KV_FORMAT_BIT(f))
            order[n++] = (rk_kv_format)f;
    if (n == 0)
        return rk_fail(RK_EINVAL, "no KV format to fit a memory with");
    /* Only the full cache is made without a budget; a compressing policy
     * keeping the whole prompt is rule 1's. */
    rk_kv_policy p;
    rk_status st;
    const int compress = make(opt, cfg->n_layers, max_prompt, 0, &p) != RK_OK;
    if (compress && (st = make(opt, cfg->n_layers, max_prompt, max_prompt, &p)) != RK_OK)
        return st;
    const int whole = compress ? max_prompt : 0;
    for (int i = 0; i < n; i++) {
        const size_t bytes = rk_kv_fit_bytes(cfg, &p, order[i], group, max_prompt, max_new);
        if (bytes <= memory) {
            *out = (rk_kv_fit){order[i], whole, 1, bytes};
            return RK_OK;
        }
    }
    const rk_kv_format fewest = order[n - 1];
    if (!compress)
        return rk_fail(RK_ELIMIT,
                       "%zu bytes hold no full KV cache of %d positions: it needs %zu at %s; "
                       "give more, or a compressing --kv",
                       memory, max_prompt + max_new,
                       rk_kv_fit_bytes(cfg, &p, fewest, group, max_prompt, max_new),
                       rk_kv_format_name(fewest));
    /* The policy's smallest average: the budgets it refuses are the low
     * ones (below its window, sinks or recent rows). */
    int lo = 1, hi = max_prompt;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (make(opt, cfg->n_layers, max_prompt, mid, &p) == RK_OK)
            hi = mid;
        else
            lo = mid + 1;
    }
    const int smallest = lo;
    if ((st = make(opt, cfg->n_layers, max_prompt, smallest, &p)) != RK_OK)
        return st;
    int eight = n - 1;
    while (eight > 0 && rk_kv_format_bits(order[eight]) < 8)
        eight--;
    const rk_kv_format tries[2] = {order[eight], fewest};
    for (int i = 0; i < 2; i++) {
        if (rk_kv_fit_bytes(cfg, &p, tries[i], group, max_prompt, max_new) > memory)
            continue;
        const int average = largest_fit(cfg, opt, tries[i], group, max_prompt, max_new, memory,
                                        smallest, max_prompt);
        rk_kv_policy chosen;
        if ((st = make(opt, cfg->n_layers, max_prompt, average, &chosen)) != RK_OK)
            return st;
        *out = (rk_kv_fit){tries[i], average, 0,
                           rk_kv_fit_bytes(cfg, &chosen, tries[i], group, max_prompt, max_new)};
        return RK_OK;
    }
    return rk_fail(RK_ELIMIT,
                   "%zu bytes are too few for %s: its smallest cache (average %d positions per "
                   "layer, %s) needs %zu",
                   memory, rk_kv_policy_name(&p), smallest, rk_kv_format_name(fewest),
                   rk_kv_fit_bytes(cfg, &p, fewest, group, max_prompt, max_new));
}

rk_status rk_bytes_parse(const char *s, size_t *bytes)
{
    /* The digits as one integer and a power of ten, so that 1.5GiB and
     * 0.3GB are exact. */
    const char *c = s;
    uint64_t digits = 0;
    int n_digits = 0, fraction = 0;
    for (; isdigit((unsigned char)*c) && n_digits < 18; c++, n_digits++)
        digits = digits * 10 + (uint64_t)(*c - '0');
    if (*c == '.')
        for (c++; isdigit((unsigned char)*c) && n_digits < 18; c++, n_digits++, fraction++)
            digits = digits * 10 + (uint64_t)(*c - '0');
    static const char prefixes[] = "kmgt";
    double unit = 1;
    const char *prefix = *c ? strchr(prefixes, tolower((unsigned char)*c)) : NULL;
    if (prefix) {
        const int binary = c[1] == 'i';
        unit = pow(binary ? 1024.0 : 1000.0, (double)(prefix - prefixes + 1));
        c += 1 + binary;
        /* A prefix without B (1.5G) is refused rather than guessed at. */
        c = *c == 'B' ? c + 1 : "?";
    } else if (*c == 'B') {
        c++;
    }
    const double total = floor((double)digits * unit / pow(10.0, fraction));
    /* Below 2^62 a double converts to size_t exactly, and no cache is near. */
    if (n_digits == 0 || *c || !(total >= 1) || total >= 0x1p62)
        return rk_fail(RK_EINVAL,
                       "'%s' is not a size in bytes (such as 200MB, 1.5GiB or 123456789)", s);
    *bytes = (size_t)total;
    return RK_OK;
}
