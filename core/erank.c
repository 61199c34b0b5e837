#include <math.h>

#include "rank_ops.h"

double rk_erank_from_singular(const double *sigma, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += sigma[i] > 0 ? sigma[i] : 0;
    if (!(sum > 0))
        return 0;
    double h = 0;
    for (int i = 0; i < n; i++) {
        if (!(sigma[i] > 0))
            continue;
        const double p = sigma[i] / sum;
        h -= p * log(p);
    }
    return exp(h);
}

double rk_erank_from_gram_eigen(const double *lambda, int n)
{
    /* σ_i = sqrt(λ_i) without a copy: the entropy needs Σσ first. */
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += lambda[i] > 0 ? sqrt(lambda[i]) : 0;
    if (!(sum > 0))
        return 0;
    double h = 0;
    for (int i = 0; i < n; i++) {
        if (!(lambda[i] > 0))
            continue;
        const double p = sqrt(lambda[i]) / sum;
        h -= p * log(p);
    }
    return exp(h);
}
