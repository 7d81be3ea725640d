/* sid.h - session ids: minting, verification, and ids derived from a key.
 *
 * Owns the signing secrets and the id formats. Pure apart from the CSPRNG and
 * the secret files: no sockets, no Redis. A client can never choose an id that
 * verifies, so it can neither choose its server nor fill Redis with ids of its
 * own making.
 *
 * Format "1" (minted, carried in the session cookie), 44 characters:
 *     "1" || b64url( nonce[16] || tag[16] )
 *     tag = HMAC-SHA256(secret, "stickyd-sid-v1" || 0x00 || nonce)[0..16)
 *   nonce: 128 bits from RAND_bytes. b64url is RFC 4648 section 5 without
 *   padding; 32 bytes give 43 characters whose last one carries 2 unused bits,
 *   which must be zero (one canonical spelling per id, so every byte matters).
 *
 * Format "k" (derived from an operator-chosen affinity key), 25 characters:
 *     "k" || b64url( HMAC-SHA256(secret, "key" || 0x00 || key)[0..18) )
 *   Deterministic: every agent sharing the secret derives the same record id
 *   for the same key, and the id is bounded whatever the key's length. Never
 *   accepted from a cookie.
 *
 * Rotation: ids are signed with the current secret; the previous secret (if
 * any) still verifies "1" ids, and gives the "k" id a key had before the
 * rotation so its record can be carried over.
 * Verification is constant-time in the tag (CRYPTO_memcmp).
 */
#ifndef STICKYD_SID_H
#define STICKYD_SID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SID_SECRET_MIN 16u   /* bytes, after stripping one trailing newline */
#define SID_SECRET_MAX 4096u /* a larger file is surely not a secret */
#define SID_NONCE_LEN 16u
#define SID_TAG_LEN 16u
#define SID_KEY_MAC_LEN 18u
#define SID_V1_LEN 44u  /* "1" + 43 */
#define SID_KEY_LEN 25u /* "k" + 24 */
#define SID_MAX_LEN 64u /* every format fits; longer cookies are rejected unread */
#define SID_BUF (SID_MAX_LEN + 1u)

/* The signing secrets. Plain data: copy-free, wiped by sid_keys_wipe. */
struct sid_keys {
    uint8_t cur[SID_SECRET_MAX];
    size_t cur_len;
    uint8_t prev[SID_SECRET_MAX];
    size_t prev_len; /* 0: no previous secret */
};

/* Read the secret file (binary-safe; one trailing "\n" stripped; at least
 * SID_SECRET_MIN bytes) and, if prev_file is non-NULL and non-empty, the
 * previous one under the same rules. 0, or -1 with a message in err and *k
 * wiped. */
int sid_keys_load(struct sid_keys *k, const char *secret_file, const char *prev_file, char *err,
                  size_t errlen) __attribute__((warn_unused_result));

/* Install secrets from memory (tests). prev may be NULL. 0, or -1 when a
 * length is out of [SID_SECRET_MIN, SID_SECRET_MAX]. */
int sid_keys_set(struct sid_keys *k, const uint8_t *cur, size_t cur_len, const uint8_t *prev,
                 size_t prev_len) __attribute__((warn_unused_result));

/* Overwrite the secrets (OPENSSL_cleanse). */
void sid_keys_wipe(struct sid_keys *k);

/* Mint a new "1" id into out (NUL-terminated). Returns its length, or -1 when
 * the CSPRNG fails. */
int sid_mint(const struct sid_keys *k, char out[SID_BUF]) __attribute__((warn_unused_result));

/* The same from a given nonce (deterministic; tests). */
int sid_mint_nonce(const struct sid_keys *k, const uint8_t nonce[SID_NONCE_LEN], char out[SID_BUF])
    __attribute__((warn_unused_result));

/* True when s[0..len) is a well-formed "1" id signed by the current or the
 * previous secret. Any other input (wrong length, bad characters, non-canonical
 * encoding, another secret's tag, a "k" id) is false. */
bool sid_verify(const struct sid_keys *k, const char *s, size_t len);

/* The "k" id of key[0..len) under the current secret (previous == false) or
 * the previous one (previous == true). Returns its length, or -1 when asked
 * for a previous secret that is not configured. */
int sid_from_key(const struct sid_keys *k, bool previous, const char *key, size_t len,
                 char out[SID_BUF]) __attribute__((warn_unused_result));

/* RFC 4648 base64url without padding. out must hold ((n + 2) / 3) * 4 + 1
 * bytes; returns the length written (NUL-terminated). */
size_t sid_b64url_encode(const uint8_t *in, size_t n, char *out);

/* Strict decoder: rejects bad characters, impossible lengths and non-zero
 * unused bits. Returns the number of bytes written (<= outcap) or -1. */
int sid_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
    __attribute__((warn_unused_result));

#endif
