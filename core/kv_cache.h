/* The KV cache as core plans it and the ops see it. One layer's cache is a
 * descriptor: where its K and V rows are, how many rows each head has, the
 * storage format, and the per-row metadata compressing policies keep. The
 * cache ops take descriptors instead of runs of pointers and sizes, so that
 * a storage format with codes and group scales changes the descriptor and
 * the ops, not every call site; and so that layers of one cache can store
 * rows in different formats (--kv-precision rank, kv_precision.h). */
#ifndef RK_KV_CACHE_H
#define RK_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* How cached K and V elements are stored: the cache's own type, not a file
 * dtype. fp32 and fp16 hold each element; int8, int4 and int2 hold a code
 * per element, with one fp16 scale and one fp16 minimum per group of
 * channels of a row (kv_quant.h). These row formats keep a row (one head's
 * head_dim values at one position) self-contained, so the ops move rows as
 * bytes; the enum lists them from most bits to fewest, each step halving
 * the bits, the ladder --kv-memory and --kv-precision rank climb. int2 is
 * the step below int4 that rank precision pays for its upgrades with.
 * The KIVI formats do not (kv_kivi.h): keys are quantized per channel over
 * groups of positions and the newest positions wait in an fp16 residual,
 * so a head's rows are one block that only grows at its end. kivi has 2-bit
 * keys and 4-bit values, kivi2 2/2, kivi4 4/4. smartkv (kv_smart.h) is
 * not a row format either: a head's rows sit in tiers of fp16, int8, int4
 * and int2 slots, each row in a slot by its importance. */
typedef enum {
    RK_KV_FP32,
    RK_KV_FP16,
    RK_KV_INT8,
    RK_KV_INT4,
    RK_KV_INT2,
    RK_KV_KIVI,
    RK_KV_KIVI2,
    RK_KV_KIVI4,
    RK_KV_SMART,
    RK_KV_N_FORMATS
} rk_kv_format;

/* The names users give, for help texts. */
#define RK_KV_FORMATS "fp32, fp16, int8, int4, int2, kivi, kivi2, kivi4, smartkv"
/* A target's set of formats (rk_ops.kv_formats) has bit RK_KV_FORMAT_BIT(f). */
#define RK_KV_FORMAT_BIT(f) (1u << (unsigned)(f))
/* Channels sharing a scale in int8 and int4 rows when none is asked for:
 * 16 divides every Pythia head_dim (80 and 64; KIVI's 32 does not divide
 * 80) and halves the error of a scale per row (README, "Quantized KV
 * cache"). */
#define RK_KV_GROUP_DEFAULT 16
/* A KIVI cache's fp16 residual when none is asked for: the newest positions
 * up to this many stay fp16 and are quantized 64 at a time, four key
 * groups of 16 positions, KIVI's own ratio (residual 128, group 32) at the
 * group that divides Pythia's head_dim (kv_kivi.h). */
#define RK_KV_RESIDUAL_DEFAULT 64
/* A group or residual as given (0: none given) and as used. */
static inline int rk_kv_group_of(int group) { return group ? group : RK_KV_GROUP_DEFAULT; }
static inline int rk_kv_residual_of(int residual)
{
    return residual ? residual : RK_KV_RESIDUAL_DEFAULT;
}
/* Rows of every format but fp32 are widened through stack buffers of this
 * many floats per row. */
#define RK_KV_MAX_HEAD_DIM 512
/* The widest row of such a format: int8 in groups of 1 channel, a code and
 * 4 bytes of scale and minimum per element. */
#define RK_KV_MAX_ROW_BYTES (5 * RK_KV_MAX_HEAD_DIM)

const char *rk_kv_format_name(rk_kv_format f);

/* The format named NAME (one of RK_KV_FORMATS); RK_EINVAL otherwise. */
rk_status rk_kv_format_parse(const char *name, rk_kv_format *f);

/* Whether F is a row format (fp32, fp16, int8, int4, int2). */
int rk_kv_format_row(rk_kv_format f);

/* Bits of one element's code: 32, 16, 8, 4 or 2; a KIVI format's mean of its
 * key and value bits (kivi 3, kivi2 2, kivi4 4); smartkv's default average,
 * 8 (its plan's average is --kv-bits-avg). */
int rk_kv_format_bits(rk_kv_format f);

/* Bits of a KIVI format's key (IS_V 0) or value (1) codes. */
int rk_kv_kivi_bits(rk_kv_format f, int is_v);

/* Whether rows of F carry group scales (int8, int4, int2, the KIVI
 * formats). */
int rk_kv_format_grouped(rk_kv_format f);

/* Whether F is a KIVI format. */
int rk_kv_format_kivi(rk_kv_format f);

/* What a compressing prefill holds the prompt's rows in: the cache's own
 * format, but fp16 for the KIVI formats and smartkv, whose kept rows are
 * quantized only once they are gathered (kv_kivi.h, kv_smart.h). */
rk_kv_format rk_kv_prompt_format(rk_kv_format f);

/* Refuses a GROUP that does not divide HEAD_DIM for a grouped format, a
 * HEAD_DIM beyond RK_KV_MAX_HEAD_DIM for any format but fp32, and for int2
 * a HEAD_DIM whose codes do not fill whole bytes. */
rk_status rk_kv_format_check(rk_kv_format f, int head_dim, int group);

/* Refuses, for a KIVI format, a RESIDUAL that is not a multiple of GROUP
 * (keys are quantized in groups of GROUP positions as RESIDUAL positions
 * leave the residual) and a HEAD_DIM whose 2-bit codes do not fill whole
 * bytes. */
rk_status rk_kv_residual_check(rk_kv_format f, int head_dim, int group, int residual);

/* Bytes of one head's row of HEAD_DIM elements, the unit a row format's
 * cache is counted in: the codes (HEAD_DIM x bits / 8, the payload) and, for
 * grouped formats, 4 bytes (fp16 scale + fp16 minimum) per GROUP channels.
 * GROUP is ignored by fp32 and fp16. For a KIVI format, a quantized row's
 * mean over K and V (a key's share of its group's per-channel scales is
 * also 4 bytes per GROUP elements); its residual is not in it. */
size_t rk_kv_row_bytes(rk_kv_format f, int head_dim, int group);

/* The payload alone: HEAD_DIM x bits / 8. */
size_t rk_kv_row_payload_bytes(rk_kv_format f, int head_dim);

/* Bytes of one head's K (IS_V 0) or V (1) in a layer cache of CAP rows:
 * CAP rows of a row format; for a KIVI format, its layout's (kv_kivi.h):
 * the codes and scales of the CAP rows rounded down to RESIDUAL, and
 * min(RESIDUAL, CAP) fp16 rows; for smartkv, its tiers' slots at the
 * average BITS_AVG (and, on K, its slot maps: kv_smart.h). */
size_t rk_kv_head_bytes(rk_kv_format f, int is_v, int head_dim, int group, int residual,
                        double bits_avg, int cap);

/* One layer's cache (or a region laid out like one, such as the prompt's
 * full K/V while a compressing prefill runs). Rows are [heads][cap], each
 * rk_kv_row_bytes(format, head_dim, group) bytes. */
typedef struct {
    void *k, *v;
    /* Per row, the position it holds, where rows are not positions
     * (compressed caches); NULL otherwise. */
    int32_t *pos;
    /* Per row, the attention it has received (H2O's heavy hitters); NULL
     * for policies that keep none. */
    float *score;
    int cap;
    int heads, head_dim;
    rk_kv_format format;
    int group;    /* channels per scale of grouped formats; KIVI's key positions too */
    int residual; /* KIVI: fp16 rows before a flush */
    double bits_avg; /* smartkv: --kv-bits-avg */
} rk_kv_layer;

/* Head H's K (IS_V 0) or V (1) in layer C: its CAP rows in a row format,
 * its KIVI block otherwise. */
void *rk_kv_layer_head(const rk_kv_layer *c, int is_v, int h);

/* Per-head fp32 scores of rows (attention mass, accumulated attention):
 * head h's score of row r is s[h * stride + r]. */
typedef struct {
    float *s;
    int stride;
} rk_kv_scores;

/* The whole cache as the plan lays it out: each layer's format and rows
 * and where they start, as offsets from the arena base. */
typedef struct {
    rk_kv_format dtype;                 /* the one named (--kv-dtype) */
    rk_kv_format format[RK_MAX_LAYERS]; /* each layer's: DTYPE everywhere but
                                           under --kv-precision rank */
    int group, residual;
    double bits_avg; /* smartkv's average bits per element (kv_smart.h) */
    int layers, heads, head_dim;
    int cap[RK_MAX_LAYERS];        /* rows per head of each layer */
    size_t row_off[RK_MAX_LAYERS]; /* rows per head before layer l's */
    size_t rows;                   /* all layers' rows per head */
    /* Bytes of K (0) and V (1) before layer l's, and of all layers: a
     * KIVI layer's bytes are not proportional to its rows. */
    size_t side_off[2][RK_MAX_LAYERS];
    size_t side_bytes[2];
    size_t k, v, pos, score;       /* arena offsets; pos and score 0 when absent */
} rk_kv_cache;

/* Sets C's row_off, rows, side_off and side_bytes from its formats, shape
 * and caps. */
void rk_kv_cache_lay_out(rk_kv_cache *c);

/* Bytes of K and V together. */
size_t rk_kv_cache_bytes(const rk_kv_cache *c);

/* Bytes of layer L's K and V together. */
size_t rk_kv_cache_layer_bytes(const rk_kv_cache *c, int l);

/* The same were layer L stored at format F (its cap and the cache's group,
 * residual and average bits unchanged): the bytes --kv-precision rank
 * weighs a step by. */
size_t rk_kv_cache_layer_bytes_as(const rk_kv_cache *c, int l, rk_kv_format f);

/* Layer L's descriptor, for an arena at BASE. */
rk_kv_layer rk_kv_cache_layer(const rk_kv_cache *c, void *base, int l);

#endif
