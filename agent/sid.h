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
 * Format "2" (the cookie that carries its server), 56 characters:
 *     "2" || b64url( kind[1] || rid[16] || issued[4] || stag[4] || mac[16] )
 *     mac = HMAC-SHA256(secret, "stickyd-sid-v2" || 0x00 || the 25 bytes before it)[0..16)
 *   kind: 1 = a session of its own (rid from the CSPRNG), 2 = the cookie that goes with an
 *   affinity key (rid = the first 16 bytes of the key's "k" MAC). issued: unix seconds,
 *   big-endian, when this cookie was issued: it tells the cookie's age, which bounds how
 *   long an affinity the store has forgotten may be adopted back. stag: the server tag.
 *   The session's record id is "2" || b64url(rid) (23 characters), whatever the tag:
 *   a repin reissues the cookie, never renames the record.
 *
 * Server tag: HMAC-SHA256(secret, "stickyd-srv-v1" || 0x00 || backend || 0x00 || server)[0..4),
 *   and as text (HAProxy's own persistence cookie) its b64url, 6 characters. Opaque to
 *   clients (they learn nothing of the topology) and bound into the signed cookie (they
 *   cannot pick a server). A "1" cookie has no tag and no age.
 *
 * Rotation: ids are signed with the current secret; the previous secret (if
 * any) still verifies "1" and "2" ids (a "2" id's tag is then the previous
 * secret's), and gives the "k" id a key had before the rotation so its record
 * can be carried over.
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
#define SID_V2_LEN 56u  /* "2" + 55 */
#define SID_RID_LEN 16u
#define SID_RECORD_LEN 23u /* "2" + 22: a "2" session's record id */
#define SID_STAG_LEN 4u
#define SID_STAG_TEXT_LEN 6u
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

/* What a cookie says, once verified. */
enum sid_kind {
    SID_KIND_V1 = 0,      /* a "1" cookie: rid is its nonce; no tag, no age */
    SID_KIND_SESSION = 1, /* a "2" cookie of a session of its own */
    SID_KIND_KEY = 2,     /* a "2" cookie that goes with an affinity key */
    SID_KIND_COUNT
};

struct sid_cookie {
    enum sid_kind kind;
    bool prev_secret; /* verified by the previous secret (its tag is that secret's) */
    uint8_t rid[SID_RID_LEN];
    uint32_t issued_s;          /* "2" only: unix seconds */
    uint8_t stag[SID_STAG_LEN]; /* "2" only */
};

/* Verify a "1" or "2" cookie s[0..len) and decode it into *out. False for
 * anything else (bad length, characters or encoding, unknown kind, a tag
 * signed by neither secret, a "k" id). Constant-time in the MAC. */
bool sid_parse(const struct sid_keys *k, const char *s, size_t len, struct sid_cookie *out);

/* Issue the "2" cookie of c (kind SESSION or KEY; rid, issued_s and stag
 * used; prev_secret ignored: always signed with the current secret) into out.
 * Returns its length (SID_V2_LEN) or -1. */
int sid_issue(const struct sid_keys *k, const struct sid_cookie *c, char out[SID_BUF])
    __attribute__((warn_unused_result));

/* A fresh random rid (CSPRNG). 0 or -1. */
int sid_new_rid(uint8_t rid[SID_RID_LEN]) __attribute__((warn_unused_result));

/* The record id "2" || b64url(rid) of a session into out; returns SID_RECORD_LEN. */
int sid_record_id(const uint8_t rid[SID_RID_LEN], char out[SID_BUF]);

/* The record id (and, for a "1" cookie, its legacy record id, else "") an
 * operator's input names: a "2" cookie, a "1" cookie, or a record id given as
 * is. Not verified: for operator tools, which hold no secret. Returns the
 * record id's length. */
int sid_record_of(const char *s, size_t len, char rid[SID_BUF], char legacy[SID_BUF]);

/* The rid of a key's cookie: the first 16 bytes of the key's "k" MAC under the
 * current secret. 0 or -1. */
int sid_key_rid(const struct sid_keys *k, const char *key, size_t len, uint8_t rid[SID_RID_LEN])
    __attribute__((warn_unused_result));

/* The server tag of backend/server under the current (previous == false) or
 * previous secret. 0, or -1 when that secret is not configured. */
int sid_server_tag(const struct sid_keys *k, bool previous, const char *backend, size_t blen,
                   const char *server, size_t slen, uint8_t tag[SID_STAG_LEN])
    __attribute__((warn_unused_result));

/* RFC 4648 base64url without padding. out must hold ((n + 2) / 3) * 4 + 1
 * bytes; returns the length written (NUL-terminated). */
size_t sid_b64url_encode(const uint8_t *in, size_t n, char *out);

/* Strict decoder: rejects bad characters, impossible lengths and non-zero
 * unused bits. Returns the number of bytes written (<= outcap) or -1. */
int sid_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
    __attribute__((warn_unused_result));

#endif
