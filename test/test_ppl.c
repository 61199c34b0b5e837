/* rankkv-ppl against goldens.json's ppl_full_cache: runs the tool as a user
 * would (64 windows of 1024 tokens) and compares its JSON line: within 0.05 %
 * on the fp32 CPU target, 0.5 % on the fp16 CUDA target.
 * usage: test_ppl MODEL_DIR TEXT_FILE GOLDEN_KEY [cpu|cuda] */
#include <math.h>
#include <string.h>

#include "golden.h"
#include "target_test.h"

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: test_ppl MODEL_DIR TEXT_FILE GOLDEN_KEY [cpu|cuda]\n");
        return 2;
    }
    const char *model = argv[1], *text = argv[2], *key = argv[3];
    const char *target = argc == 5 ? argv[4] : "cpu";
    char path[4096];
    snprintf(path, sizeof path, "%s/goldens.json", model);
    rk_test_require_path(path);
    rk_test_require_path(text);
    const double tolerance = rk_test_require_target(target)->act_bytes == 4 ? 5e-4 : 5e-3;
    cJSON *g = golden_load(model);
    const cJSON *want = golden_path(g, "ppl_full_cache", key, NULL);
    CHECK(want != NULL);
    if (!want)
        return rk_test_finish("test_ppl");
    double want_ppl = cJSON_GetObjectItem(want, "ppl")->valuedouble;
    int window = cJSON_GetObjectItem(want, "window")->valueint;
    int scored = cJSON_GetObjectItem(want, "tokens_scored")->valueint;

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/rankkv-ppl' --model '%s' --text '%s' --window %d --max-windows %d "
             "--target %s --json",
             RK_BIN_DIR, model, text, window, scored / window, target);
    printf("%s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    char line[4096], last[4096] = "";
    while (p && fgets(line, sizeof line, p))
        if (line[0] == '{')
            snprintf(last, sizeof last, "%s", line);
    CHECK(p && pclose(p) == 0);
    cJSON *got = cJSON_Parse(last);
    CHECKF(got != NULL, "no JSON line from rankkv-ppl");
    if (got) {
        double ppl = cJSON_GetObjectItem(got, "ppl")->valuedouble;
        double rel = fabs(ppl - want_ppl) / want_ppl;
        printf("%s %s: ppl %.4f, HF %.4f, relative difference %.2e over %d tokens\n", model, key,
               ppl, want_ppl, rel, cJSON_GetObjectItem(got, "tokens_scored")->valueint);
        CHECK(cJSON_GetObjectItem(got, "tokens_scored")->valueint == scored);
        CHECK(cJSON_GetObjectItem(got, "window")->valueint == window);
        CHECK(cJSON_GetObjectItemCaseSensitive(got, "model") != NULL);
        CHECKF(rel <= tolerance, "ppl %.4f vs %.4f (tolerance %.1e)", ppl, want_ppl, tolerance);
        cJSON_Delete(got);
    }
    cJSON_Delete(g);
    return rk_test_finish("test_ppl");
}
