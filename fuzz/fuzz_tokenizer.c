/* libFuzzer target: the input is a tokenizer.json. Loading must either fail
 * with a message or give a tokenizer that encodes and decodes without
 * memory errors. Seed it with models/pythia-nano/tokenizer.json (run with a
 * -max_len large enough to hold it) and small hand-written files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static void exercise(const rk_tokenizer *tok)
{
    static const char *const probes[] = {
        "Hello world", " Hello  world  ", "don't stop", "naïve café 日本語 🙂",
        "tabs\tand\nnewlines\r\n", "<|endoftext|>x<|padding|>", "e\xCC\x81", "12345 !!",
    };
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (rk_tok_encode(tok, probes[i], strlen(probes[i]), &ids, &n) != RK_OK)
            abort();
        char *text = NULL;
        size_t len = 0;
        if (rk_tok_decode(tok, ids, n, &text, &len) != RK_OK || text[len] != '\0')
            abort();
        free(text);
        free(ids);
    }
    int size = rk_tok_vocab_size(tok);
    int32_t some[] = {-1, 0, 1, size - 1, size, size + 1, INT32_MAX};
    char *text = NULL;
    size_t len = 0;
    if (rk_tok_decode(tok, some, sizeof some / sizeof *some, &text, &len) != RK_OK)
        abort();
    free(text);
    for (int32_t id = 0; id < size && id < 4096; id++) {
        const char *bytes = NULL;
        size_t n = rk_tok_token_bytes(tok, id, &bytes);
        if (n && !bytes)
            abort();
    }
    rk_tok_special_id(tok, "<|endoftext|>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_tokenizer *tok = NULL;
    if (rk_tok_load_memory((const char *)data, size, &tok) != RK_OK) {
        if (tok || rk_last_error()[0] == '\0')
            abort();
        return 0;
    }
    exercise(tok);
    rk_tok_free(tok);
    return 0;
}
