/* Byte-level BPE tokenizer read from a Hugging Face tokenizer.json
 * (NFC normaliser, GPT-2/NeoX ByteLevel pre-tokenizer, merge ranks, added
 * tokens). Produces exactly the ids of HF tokenizers. */
#ifndef RK_TOKENIZER_H
#define RK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rk_error.h"

typedef struct rk_tokenizer rk_tokenizer;

rk_status rk_tok_load(const char *path, rk_tokenizer **out);
rk_status rk_tok_load_memory(const char *json, size_t len, rk_tokenizer **out);
void rk_tok_free(rk_tokenizer *tok);

/* Encodes LEN bytes of UTF-8 TEXT. *IDS is malloc'd (caller frees).
 * Invalid UTF-8 is refused with RK_EINVAL. */
rk_status rk_tok_encode(const rk_tokenizer *tok, const char *text, size_t len,
                        int32_t **ids, size_t *n_ids);

/* Decodes ids to text as HF's decode(skip_special_tokens=False) does.
 * *TEXT is malloc'd and NUL-terminated (caller frees). */
rk_status rk_tok_decode(const rk_tokenizer *tok, const int32_t *ids, size_t n,
                        char **text, size_t *len);

/* The raw bytes one token stands for (byte-level alphabet undone), for
 * streaming output without allocating. Returns 0 bytes for unknown ids. */
size_t rk_tok_token_bytes(const rk_tokenizer *tok, int32_t id, const char **bytes);

/* Number of ids (largest id + 1 over the vocabulary and added tokens). */
int rk_tok_vocab_size(const rk_tokenizer *tok);

/* Whether a text cut at a single space between two printable ASCII
 * characters ("a b") tokenizes as its pieces do, joined: true for the
 * GPT-2 pre-tokenizer without a prefix space and with no added token that
 * mixes a space with other characters (Pythia's), so a long text can be
 * tokenized a piece at a time. */
bool rk_tok_splits_at_spaces(const rk_tokenizer *tok);

/* Where a long text may be cut (rk_tok_splits_at_spaces) after about 64
 * KiB: S[0..end) tokenizes as the start of S does. LEN when S is short or
 * TOK cannot be cut. */
size_t rk_tok_piece_end(const rk_tokenizer *tok, const char *s, size_t len);

/* Appends the ids of LEN bytes of TEXT to *IDS (*N in use of *CAP, grown
 * with realloc); AT, the bytes' offset in a longer text, places an error. */
rk_status rk_tok_encode_append(const rk_tokenizer *tok, const char *text, size_t len,
                               size_t at, int32_t **ids, size_t *n, size_t *cap);

/* The ids of TEXT, tokenized a piece at a time until at least LIMIT are
 * made (0: all): the first ids of the whole text's, so a prompt can be
 * refused by its length without tokenizing all of it. */
rk_status rk_tok_encode_prefix(const rk_tokenizer *tok, const char *text, size_t len,
                               size_t limit, int32_t **ids, size_t *n);

/* RK_OK when every id TOK can emit is below VOCAB (a model's vocab_size):
 * the model has an embedding and a logit for each; a message otherwise. */
rk_status rk_tok_check_vocab(const rk_tokenizer *tok, int vocab);

/* Id of an added/special token by its content, or -1. */
int32_t rk_tok_special_id(const rk_tokenizer *tok, const char *content);

#endif
