#include "plan.h"

#include <stdlib.h>
#include <string.h>

void rk_plan_init(rk_plan *p, const char *name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
}

size_t rk_plan_add(rk_plan *p, const char *name, size_t size)
{
    if (p->n_regions >= RK_PLAN_MAX_REGIONS) {
        fprintf(stderr, "rankkv: plan '%s' has more than %d regions\n", p->name,
                RK_PLAN_MAX_REGIONS);
        abort();
    }
    size_t off = (p->total + RK_PLAN_ALIGN - 1) / RK_PLAN_ALIGN * RK_PLAN_ALIGN;
    rk_region *r = &p->regions[p->n_regions++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->offset = off;
    r->size = size;
    p->total = off + size;
    return off;
}

const rk_region *rk_plan_find(const rk_plan *p, const char *name)
{
    for (int i = 0; i < p->n_regions; i++)
        if (strcmp(p->regions[i].name, name) == 0)
            return &p->regions[i];
    return NULL;
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

void rk_plan_print(const rk_plan *p, FILE *f)
{
    fprintf(f, "plan %s: %d regions\n", p->name, p->n_regions);
    fprintf(f, "  %-24s %14s %14s %13s\n", "region", "offset", "bytes", "");
    for (int i = 0; i < p->n_regions; i++) {
        const rk_region *r = &p->regions[i];
        fprintf(f, "  %-24s %14zu %14zu ", r->name, r->offset, r->size);
        print_bytes(f, r->size);
        fputc('\n', f);
    }
    fprintf(f, "  %-24s %14s %14zu ", "total", "", p->total);
    print_bytes(f, p->total);
    fputc('\n', f);
}
