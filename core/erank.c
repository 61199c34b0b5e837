#include <math.h>

#include "rank_ops.h"

/* exp(entropy of v / Σv) over the positive values, each first square-rooted
 * when ROOT is set (eigenvalues of A·Aᵀ are squared singular values). */
static double entropy_rank(const double *v, int n, int root)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (v[i] > 0)
            sum += root ? sqrt(v[i]) : v[i];
    if (!(sum > 0))
        return 0;
    double h = 0;
    for (int i = 0; i < n; i++) {
        if (!(v[i] > 0))
            continue;
        const double p = (root ? sqrt(v[i]) : v[i]) / sum;
        h -= p * log(p);
    }
    return exp(h);
}

double rk_erank_from_singular(const double *sigma, int n) { return entropy_rank(sigma, n, 0); }

double rk_erank_from_gram_eigen(const double *lambda, int n)
{
    return entropy_rank(lambda, n, 1);
}

void rk_erank_layer_means(const double *ranks, int layers, int heads, double *out)
{
    for (int l = 0; l < layers; l++) {
        out[l] = 0;
        for (int h = 0; h < heads; h++)
            out[l] += ranks[(size_t)l * heads + h] / heads;
    }
}
