/* The ReKV analysis's outputs (core/rekv.h), for the tool that runs the
 * speculative decoder: per draft window K, summary_K{K}.json (aggregates
 * and verdict), events_K{K}.json (every event, per layer) and six plots in
 * plots/; over a sweep of K, combined_results.json. Every file is written
 * whole or not at all (cli_out_open); a plot is its PNG.dat and PNG.gp,
 * and the PNG where gnuplot is installed (cli_plot says so where it is
 * not). Failures exit as every cli helper does. */
#ifndef RK_REKV_REPORT_H
#define RK_REKV_REPORT_H

#include "rekv.h"

/* What the analysis does not hold: which models ran, and how the run went. */
typedef struct {
    const char *draft_model, *target_model; /* names, as records name models */
    long rounds;   /* verification rounds */
    long drafted;  /* draft tokens proposed */
    long accepted; /* of them, accepted */
    long truth_steps; /* target steps run after a generation for the truth row of a
                         rejection in its last round (rk_rekv_generate) */
} rekv_report_meta;

/* The plots of one K, in plots/ (each with PNG.dat and PNG.gp beside it). */
enum { REKV_REPORT_PLOTS = 6 };
extern const char *const rekv_report_plot_names[REKV_REPORT_PLOTS];

/* Before the work: DIR must exist; DIR/plots is made when absent; every
 * output of the windows KS[0..n) and combined_results.json must be writable
 * as rk_out_check says and none of the run's inputs (cli_check_output). An
 * error exit naming the path otherwise. */
void rekv_report_check(const char *dir, const int *ks, int n);

/* Writes R's summary_K{K}.json, events_K{K}.json and plots into DIR (and
 * DIR/plots, which must exist: rekv_report_check makes it). Without events
 * there is nothing to plot: the JSON says NO-DATA and stderr that no plot
 * was drawn. */
void rekv_report_write(const char *dir, const rk_rekv *r, const rekv_report_meta *meta);

/* DIR/combined_results.json: one row per run of RUNS[0..n) (a K sweep, with
 * METAS[i] for RUNS[i]): K, acceptance, events, both comparisons' means and
 * the verdict. */
void rekv_report_combined(const char *dir, const rk_rekv *const *runs,
                          const rekv_report_meta *metas, int n);

#endif
