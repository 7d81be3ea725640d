/* sid.c - session ids (see sid.h for the formats).
 *
 * Owns the secrets' bytes and the HMAC; must not know about Redis or SPOP.
 * Everything here is a pure function of its inputs except sid_mint (CSPRNG)
 * and sid_keys_load (reads two files).
 */
#include "sid.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

static const char sid_domain[] = "stickyd-sid-v1"; /* HMAC input prefix, NUL included */
static const char key_domain[] = "key";
static const char sid2_domain[] = "stickyd-sid-v2";
static const char srv_domain[] = "stickyd-srv-v1";

/* The "2" cookie's bytes: kind, rid, issued, stag, then the MAC of those. */
#define V2_BODY (1u + SID_RID_LEN + 4u + SID_STAG_LEN)
#define V2_RAW (V2_BODY + SID_TAG_LEN)
_Static_assert(1 + (V2_RAW * 4 + 2) / 3 == SID_V2_LEN, "v2 length");
_Static_assert(1 + (SID_RID_LEN * 4 + 2) / 3 == SID_RECORD_LEN, "record id length");
_Static_assert(SID_V2_LEN <= SID_MAX_LEN, "a cookie stays within 64 characters");

static const char b64url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sid_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alpha[v >> 18 & 63];
        out[o++] = b64url_alpha[v >> 12 & 63];
        out[o++] = b64url_alpha[v >> 6 & 63];
        out[o++] = b64url_alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alpha[v >> 18 & 63];
        out[o++] = b64url_alpha[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alpha[v >> 18 & 63];
        out[o++] = b64url_alpha[v >> 12 & 63];
        out[o++] = b64url_alpha[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

int sid_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
{
    if (n % 4 == 1) {
        return -1; /* 6 bits cannot end a byte */
    }
    size_t need = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    if (need > outcap) {
        return -1;
    }
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6 | (uint32_t)v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* The leftover bits of the last character must be zero, or two spellings
     * would decode to the same bytes. */
    if ((acc & ((1u << bits) - 1)) != 0) {
        return -1;
    }
    return (int)o;
}

/* HMAC-SHA256(secret, prefix || 0x00 || data) into mac_out[32].
 * One HMAC context per secret in use (the current and the previous one), each
 * keyed once: the key schedule (two SHA-256 blocks) was the largest cost of a
 * verification, and re-initialising a keyed context reuses it. A context is
 * matched by the secret's bytes, not its address, so a reload that reuses a
 * buffer can never sign with a stale key. The agent is single-threaded; this
 * module is not meant for threads. */
#define MAC_SLOTS 2
static struct mac_slot {
    EVP_MAC_CTX *ctx;
    uint8_t key[SID_SECRET_MAX];
    size_t len;    /* 0: not keyed */
    unsigned used; /* last use, for replacement */
} mac_slots[MAC_SLOTS];
static unsigned mac_clock;

static EVP_MAC_CTX *mac_ctx_new(void)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac == NULL) {
        return NULL;
    }
    EVP_MAC_CTX *h = EVP_MAC_CTX_new(hmac);
    EVP_MAC_free(hmac); /* the context keeps its own reference */
    if (h != NULL && EVP_MAC_CTX_set_params(h, params) != 1) {
        EVP_MAC_CTX_free(h);
        h = NULL;
    }
    return h;
}

/* A context ready for a new MAC under secret, or NULL. */
static EVP_MAC_CTX *mac_begin(const uint8_t *secret, size_t slen)
{
    struct mac_slot *victim = &mac_slots[0];
    for (size_t i = 0; i < MAC_SLOTS; i++) {
        struct mac_slot *m = &mac_slots[i];
        if (m->len == slen && m->ctx != NULL && memcmp(m->key, secret, slen) == 0) {
            m->used = ++mac_clock;
            /* NULL key: restart with the key already scheduled */
            return EVP_MAC_init(m->ctx, NULL, 0, NULL) == 1 ? m->ctx : NULL;
        }
        if (m->used < victim->used) {
            victim = m;
        }
    }
    if (victim->ctx == NULL && (victim->ctx = mac_ctx_new()) == NULL) {
        return NULL;
    }
    OPENSSL_cleanse(victim->key, sizeof(victim->key));
    victim->len = 0;
    if (EVP_MAC_init(victim->ctx, secret, slen, NULL) != 1) {
        return NULL;
    }
    memcpy(victim->key, secret, slen);
    victim->len = slen;
    victim->used = ++mac_clock;
    return victim->ctx;
}

static int mac(const uint8_t *secret, size_t slen, const char *prefix, const void *data,
               size_t dlen, uint8_t mac_out[32])
{
    EVP_MAC_CTX *h = mac_begin(secret, slen);
    size_t outlen = 0;
    if (h == NULL || EVP_MAC_update(h, (const unsigned char *)prefix, strlen(prefix) + 1) != 1 ||
        (dlen > 0 && EVP_MAC_update(h, data, dlen) != 1) ||
        EVP_MAC_final(h, mac_out, &outlen, 32) != 1 || outlen != 32) {
        return -1;
    }
    return 0;
}

int sid_mint_nonce(const struct sid_keys *k, const uint8_t nonce[SID_NONCE_LEN], char out[SID_BUF])
{
    uint8_t raw[SID_NONCE_LEN + SID_TAG_LEN];
    uint8_t m[32];
    _Static_assert(1 + ((SID_NONCE_LEN + SID_TAG_LEN) * 4 + 2) / 3 == SID_V1_LEN, "v1 length");
    if (k->cur_len == 0 || mac(k->cur, k->cur_len, sid_domain, nonce, SID_NONCE_LEN, m) != 0) {
        return -1;
    }
    memcpy(raw, nonce, SID_NONCE_LEN);
    memcpy(raw + SID_NONCE_LEN, m, SID_TAG_LEN);
    out[0] = '1';
    size_t n = sid_b64url_encode(raw, sizeof(raw), out + 1);
    OPENSSL_cleanse(m, sizeof(m));
    return (int)(n + 1);
}

int sid_mint(const struct sid_keys *k, char out[SID_BUF])
{
    uint8_t nonce[SID_NONCE_LEN];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
        return -1;
    }
    return sid_mint_nonce(k, nonce, out);
}

static bool tag_ok(const uint8_t *secret, size_t slen, const uint8_t *raw)
{
    uint8_t m[32];
    if (slen == 0 || mac(secret, slen, sid_domain, raw, SID_NONCE_LEN, m) != 0) {
        return false;
    }
    bool ok = CRYPTO_memcmp(m, raw + SID_NONCE_LEN, SID_TAG_LEN) == 0;
    OPENSSL_cleanse(m, sizeof(m));
    return ok;
}

bool sid_verify(const struct sid_keys *k, const char *s, size_t len)
{
    uint8_t raw[SID_NONCE_LEN + SID_TAG_LEN];
    if (s == NULL || len != SID_V1_LEN || s[0] != '1') {
        return false;
    }
    if (sid_b64url_decode(s + 1, len - 1, raw, sizeof(raw)) != (int)sizeof(raw)) {
        return false;
    }
    /* Both secrets are tried whatever the first answer, so timing does not
     * tell which one signed (or that neither did). */
    bool cur = tag_ok(k->cur, k->cur_len, raw);
    bool prev = tag_ok(k->prev, k->prev_len, raw);
    return cur | prev;
}

int sid_from_key(const struct sid_keys *k, bool previous, const char *key, size_t len,
                 char out[SID_BUF])
{
    const uint8_t *secret = previous ? k->prev : k->cur;
    size_t slen = previous ? k->prev_len : k->cur_len;
    uint8_t m[32];
    _Static_assert(1 + SID_KEY_MAC_LEN * 4 / 3 == SID_KEY_LEN, "k length");
    if (slen == 0 || mac(secret, slen, key_domain, key, len, m) != 0) {
        return -1;
    }
    out[0] = 'k';
    size_t n = sid_b64url_encode(m, SID_KEY_MAC_LEN, out + 1);
    return (int)(n + 1);
}

static bool v2_mac_ok(const uint8_t *secret, size_t slen, const uint8_t raw[V2_RAW])
{
    uint8_t m[32];
    if (slen == 0 || mac(secret, slen, sid2_domain, raw, V2_BODY, m) != 0) {
        return false;
    }
    bool ok = CRYPTO_memcmp(m, raw + V2_BODY, SID_TAG_LEN) == 0;
    OPENSSL_cleanse(m, sizeof(m));
    return ok;
}

bool sid_parse(const struct sid_keys *k, const char *s, size_t len, struct sid_cookie *out)
{
    uint8_t raw[V2_RAW];
    memset(out, 0, sizeof(*out));
    if (s != NULL && len == SID_V1_LEN && s[0] == '1') {
        if (sid_b64url_decode(s + 1, len - 1, raw, SID_NONCE_LEN + SID_TAG_LEN) !=
            (int)(SID_NONCE_LEN + SID_TAG_LEN)) {
            return false;
        }
        bool cur = tag_ok(k->cur, k->cur_len, raw);
        bool prev = tag_ok(k->prev, k->prev_len, raw);
        out->kind = SID_KIND_V1;
        out->prev_secret = !cur;
        memcpy(out->rid, raw, SID_RID_LEN);
        return cur | prev;
    }
    if (s == NULL || len != SID_V2_LEN || s[0] != '2' ||
        sid_b64url_decode(s + 1, len - 1, raw, sizeof(raw)) != (int)sizeof(raw)) {
        return false;
    }
    /* both secrets whatever the first answer: timing tells nothing */
    bool cur = v2_mac_ok(k->cur, k->cur_len, raw);
    bool prev = v2_mac_ok(k->prev, k->prev_len, raw);
    if (!(cur | prev) || (raw[0] != SID_KIND_SESSION && raw[0] != SID_KIND_KEY)) {
        return false;
    }
    out->kind = (enum sid_kind)raw[0];
    out->prev_secret = !cur;
    memcpy(out->rid, raw + 1, SID_RID_LEN);
    const uint8_t *t = raw + 1 + SID_RID_LEN;
    out->issued_s = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
    memcpy(out->stag, t + 4, SID_STAG_LEN);
    return true;
}

int sid_issue(const struct sid_keys *k, const struct sid_cookie *c, char out[SID_BUF])
{
    uint8_t raw[V2_RAW];
    uint8_t m[32];
    if (k->cur_len == 0 || (c->kind != SID_KIND_SESSION && c->kind != SID_KIND_KEY)) {
        return -1;
    }
    raw[0] = (uint8_t)c->kind;
    memcpy(raw + 1, c->rid, SID_RID_LEN);
    uint8_t *t = raw + 1 + SID_RID_LEN;
    t[0] = (uint8_t)(c->issued_s >> 24);
    t[1] = (uint8_t)(c->issued_s >> 16);
    t[2] = (uint8_t)(c->issued_s >> 8);
    t[3] = (uint8_t)c->issued_s;
    memcpy(t + 4, c->stag, SID_STAG_LEN);
    if (mac(k->cur, k->cur_len, sid2_domain, raw, V2_BODY, m) != 0) {
        return -1;
    }
    memcpy(raw + V2_BODY, m, SID_TAG_LEN);
    OPENSSL_cleanse(m, sizeof(m));
    out[0] = '2';
    return (int)(sid_b64url_encode(raw, sizeof(raw), out + 1) + 1);
}

int sid_new_rid(uint8_t rid[SID_RID_LEN])
{
    return RAND_bytes(rid, SID_RID_LEN) == 1 ? 0 : -1;
}

int sid_record_id(const uint8_t rid[SID_RID_LEN], char out[SID_BUF])
{
    out[0] = '2';
    return (int)(sid_b64url_encode(rid, SID_RID_LEN, out + 1) + 1);
}

int sid_record_of(const char *s, size_t len, char rid[SID_BUF], char legacy[SID_BUF])
{
    uint8_t raw[V2_RAW];
    legacy[0] = '\0';
    if (len == SID_V2_LEN && s[0] == '2' &&
        sid_b64url_decode(s + 1, len - 1, raw, sizeof(raw)) == (int)sizeof(raw)) {
        return sid_record_id(raw + 1, rid);
    }
    if (len == SID_V1_LEN && s[0] == '1' &&
        sid_b64url_decode(s + 1, len - 1, raw, SID_NONCE_LEN + SID_TAG_LEN) ==
            (int)(SID_NONCE_LEN + SID_TAG_LEN)) {
        memcpy(legacy, s, len);
        legacy[len] = '\0';
        return sid_record_id(raw, rid);
    }
    size_t n = len < SID_MAX_LEN ? len : SID_MAX_LEN;
    memcpy(rid, s, n);
    rid[n] = '\0';
    return (int)n;
}

int sid_key_rid(const struct sid_keys *k, const char *key, size_t len, uint8_t rid[SID_RID_LEN])
{
    uint8_t m[32];
    if (k->cur_len == 0 || mac(k->cur, k->cur_len, key_domain, key, len, m) != 0) {
        return -1;
    }
    memcpy(rid, m, SID_RID_LEN);
    OPENSSL_cleanse(m, sizeof(m));
    return 0;
}

int sid_server_tag(const struct sid_keys *k, bool previous, const char *backend, size_t blen,
                   const char *server, size_t slen, uint8_t tag[SID_STAG_LEN])
{
    const uint8_t *secret = previous ? k->prev : k->cur;
    size_t klen = previous ? k->prev_len : k->cur_len;
    uint8_t data[2 * 256 + 1];
    uint8_t m[32];
    if (klen == 0 || blen > 256 || slen > 256) {
        return -1;
    }
    memcpy(data, backend, blen);
    data[blen] = 0;
    memcpy(data + blen + 1, server, slen);
    if (mac(secret, klen, srv_domain, data, blen + 1 + slen, m) != 0) {
        return -1;
    }
    memcpy(tag, m, SID_STAG_LEN);
    return 0;
}

int sid_keys_set(struct sid_keys *k, const uint8_t *cur, size_t cur_len, const uint8_t *prev,
                 size_t prev_len)
{
    if (cur_len < SID_SECRET_MIN || cur_len > SID_SECRET_MAX ||
        (prev != NULL && (prev_len < SID_SECRET_MIN || prev_len > SID_SECRET_MAX))) {
        return -1;
    }
    sid_keys_wipe(k);
    memcpy(k->cur, cur, cur_len);
    k->cur_len = cur_len;
    if (prev != NULL) {
        memcpy(k->prev, prev, prev_len);
        k->prev_len = prev_len;
    }
    return 0;
}

void sid_keys_wipe(struct sid_keys *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
    k->cur_len = 0;
    k->prev_len = 0;
    /* the keyed contexts hold the key schedule: drop them too (rebuilt lazily) */
    for (size_t i = 0; i < MAC_SLOTS; i++) {
        EVP_MAC_CTX_free(mac_slots[i].ctx);
        OPENSSL_cleanse(&mac_slots[i], sizeof(mac_slots[i]));
    }
}

/* Read a whole secret file into buf; strip one trailing newline. */
static int read_secret(const char *path, uint8_t *buf, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* One byte more than allowed (plus the newline) tells "too long" apart. */
    uint8_t tmp[SID_SECRET_MAX + 2];
    size_t n = fread(tmp, 1, sizeof(tmp), f);
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (n > 0 && tmp[n - 1] == '\n') {
        n--;
    }
    if (n < SID_SECRET_MIN || n > SID_SECRET_MAX) {
        snprintf(err, errlen, "%s: a secret must be %u to %u bytes (got %s%zu)", path,
                 SID_SECRET_MIN, SID_SECRET_MAX, n > SID_SECRET_MAX ? "more than " : "", n);
        goto fail;
    }
    memcpy(buf, tmp, n);
    *len = n;
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return 0;
fail:
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return -1;
}

int sid_keys_load(struct sid_keys *k, const char *secret_file, const char *prev_file, char *err,
                  size_t errlen)
{
    sid_keys_wipe(k);
    if (secret_file == NULL || secret_file[0] == '\0') {
        snprintf(err, errlen, "session.secret_file is not set");
        return -1;
    }
    if (read_secret(secret_file, k->cur, &k->cur_len, err, errlen) != 0) {
        goto fail;
    }
    if (prev_file != NULL && prev_file[0] != '\0' &&
        read_secret(prev_file, k->prev, &k->prev_len, err, errlen) != 0) {
        goto fail;
    }
    return 0;
fail:
    sid_keys_wipe(k);
    return -1;
}
