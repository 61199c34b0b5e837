#include "plan.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *rk_phase_name(rk_phase phase)
{
    switch (phase) {
    case RK_PHASE_ALWAYS: return "always";
    case RK_PHASE_PREFILL: return "prefill";
    case RK_PHASE_DECODE: return "decode";
    }
    return "?";
}

void rk_plan_init(rk_plan *p, const char *name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
}

static _Noreturn void misuse(const rk_plan *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rankkv: plan '%s': ", p->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static size_t align_up(size_t n) { return (n + RK_PLAN_ALIGN - 1) / RK_PLAN_ALIGN * RK_PLAN_ALIGN; }

static rk_region *push(rk_plan *p, const char *prefix, const char *name, size_t offset,
                       size_t size, rk_phase phase)
{
    if (p->n_regions >= RK_PLAN_MAX_REGIONS)
        misuse(p, "more than %d regions", RK_PLAN_MAX_REGIONS);
    rk_region *r = &p->regions[p->n_regions++];
    const int len = prefix ? snprintf(r->name, sizeof r->name, "%s.%s", prefix, name)
                           : snprintf(r->name, sizeof r->name, "%s", name);
    /* A truncated name could make two regions one to rk_plan_find. */
    if (len < 0 || (size_t)len >= sizeof r->name)
        misuse(p, "region name '%s%s%s' is longer than %d bytes", prefix ? prefix : "",
               prefix ? "." : "", name, RK_PLAN_NAME_LEN - 1);
    r->offset = offset;
    r->size = size;
    r->phase = phase;
    if (offset + size > p->total)
        p->total = offset + size;
    return r;
}

size_t rk_plan_add(rk_plan *p, const char *name, size_t size)
{
    return rk_plan_add_phase(p, name, size, RK_PHASE_ALWAYS);
}

/* Where the regions of PHASE laid out so far end (SHARED when none are);
 * those of appended plans lie below SHARED, inside their blocks. */
static size_t phase_end(const rk_plan *p, rk_phase phase)
{
    size_t end = p->shared;
    for (int i = 0; i < p->n_regions; i++) {
        const rk_region *r = &p->regions[i];
        if (r->phase == phase && r->offset >= p->shared && r->offset + r->size > end)
            end = r->offset + r->size;
    }
    return end;
}

size_t rk_plan_add_phase(rk_plan *p, const char *name, size_t size, rk_phase phase)
{
    if (phase == RK_PHASE_ALWAYS) {
        /* Before the first phase region the always part ends at the total,
         * which a plan grown in place (weights.c) also keeps current. */
        if (p->phased)
            misuse(p, "always region '%s' after the phase regions", name);
        return push(p, NULL, name, align_up(p->total), size, phase)->offset;
    }
    if (!p->phased) {
        p->phased = 1;
        p->shared = align_up(p->total);
    }
    return push(p, NULL, name, align_up(phase_end(p, phase)), size, phase)->offset;
}

size_t rk_plan_append(rk_plan *dst, const rk_plan *src, const char *prefix)
{
    if (dst->phased)
        misuse(dst, "plan '%s' appended after the phase regions", src->name);
    const size_t base = align_up(dst->total);
    for (int i = 0; i < src->n_regions; i++) {
        const rk_region *r = &src->regions[i];
        push(dst, prefix, r->name, base + r->offset, r->size, r->phase);
    }
    return base;
}

const rk_region *rk_plan_find(const rk_plan *p, const char *name)
{
    for (int i = 0; i < p->n_regions; i++)
        if (strcmp(p->regions[i].name, name) == 0)
            return &p->regions[i];
    return NULL;
}

size_t rk_plan_peak(const rk_plan *p, rk_phase phase)
{
    size_t peak = 0;
    for (int i = 0; i < p->n_regions; i++) {
        const rk_region *r = &p->regions[i];
        if ((r->phase == RK_PHASE_ALWAYS || r->phase == phase) && r->offset + r->size > peak)
            peak = r->offset + r->size;
    }
    return peak;
}

static void print_bytes(FILE *f, size_t b)
{
    if (b >= (size_t)1 << 30)
        fprintf(f, "%9.2f GiB", (double)b / (1 << 30));
    else if (b >= (size_t)1 << 20)
        fprintf(f, "%9.2f MiB", (double)b / (1 << 20));
    else
        fprintf(f, "%9.2f KiB", (double)b / (1 << 10));
}

static void print_sum(FILE *f, const char *what, size_t bytes)
{
    fprintf(f, "  %-32s %-7s %14s %14zu ", what, "", "", bytes);
    print_bytes(f, bytes);
    fputc('\n', f);
}

static int has_phases(const rk_plan *p)
{
    for (int i = 0; i < p->n_regions; i++)
        if (p->regions[i].phase != RK_PHASE_ALWAYS)
            return 1;
    return 0;
}

void rk_plan_print(const rk_plan *p, FILE *f)
{
    fprintf(f, "plan %s: %d regions\n", p->name, p->n_regions);
    fprintf(f, "  %-32s %-7s %14s %14s %13s\n", "region", "phase", "offset", "bytes", "");
    for (int i = 0; i < p->n_regions; i++) {
        const rk_region *r = &p->regions[i];
        fprintf(f, "  %-32s %-7s %14zu %14zu ", r->name, rk_phase_name(r->phase), r->offset,
                r->size);
        print_bytes(f, r->size);
        fputc('\n', f);
    }
    print_sum(f, "total", p->total);
    /* What each phase reaches shows what the shared range saves; a plan
     * whose regions all live always needs its total in every phase. */
    if (has_phases(p)) {
        print_sum(f, "prefill peak", rk_plan_peak(p, RK_PHASE_PREFILL));
        print_sum(f, "decode peak", rk_plan_peak(p, RK_PHASE_DECODE));
    }
}
