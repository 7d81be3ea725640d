/* test_sid.c - session ids: round trips, every tamper, every truncation,
 * garbage, wrong and rotated secrets, key-derived ids, secret files.
 * The two known-answer vectors were computed with Python's hmac/base64
 * modules, an implementation independent of this one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "sid.h"

static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void set_keys(struct sid_keys *k, const char *cur, const char *prev)
{
    int rc = sid_keys_set(k, (const uint8_t *)cur, strlen(cur), (const uint8_t *)prev,
                          prev != NULL ? strlen(prev) : 0);
    CHECK_EQ_INT(rc, 0);
}

static void test_known_answers(void)
{
    static struct sid_keys k;
    uint8_t nonce[SID_NONCE_LEN];
    char out[SID_BUF];
    for (unsigned i = 0; i < sizeof(nonce); i++) {
        nonce[i] = (uint8_t)i;
    }
    set_keys(&k, "0123456789abcdef", NULL);
    CHECK_EQ_INT(sid_mint_nonce(&k, nonce, out), SID_V1_LEN);
    CHECK(strcmp(out, "1AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiIo") == 0);
    CHECK(sid_verify(&k, out, strlen(out)));
    CHECK_EQ_INT(sid_from_key(&k, false, "user-42", 7, out), SID_KEY_LEN);
    CHECK(strcmp(out, "kQMUCTGt_bRyw6sxqnpanBYeB") == 0);
}

static void test_mint_round_trip(void)
{
    static struct sid_keys k;
    char a[SID_BUF], b[SID_BUF];
    set_keys(&k, "a secret of more than sixteen bytes", NULL);
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_INT(sid_mint(&k, a), SID_V1_LEN);
        CHECK_EQ_INT(strlen(a), SID_V1_LEN);
        CHECK(a[0] == '1');
        CHECK(strspn(a + 1, alpha) == SID_V1_LEN - 1);
        CHECK(sid_verify(&k, a, strlen(a)));
        CHECK_EQ_INT(sid_mint(&k, b), SID_V1_LEN);
        CHECK(strcmp(a, b) != 0); /* 128 random bits: never equal */
    }
}

static void test_every_tamper(void)
{
    static struct sid_keys k;
    char id[SID_BUF], t[SID_BUF];
    set_keys(&k, "tamper-test-secret-0001", NULL);
    CHECK_EQ_INT(sid_mint(&k, id), SID_V1_LEN);
    const char extra[] = "=+/.~ \x01\x7f\xff";
    unsigned bad = 0, tried = 0;
    for (size_t pos = 0; pos < SID_V1_LEN; pos++) {
        for (size_t j = 0; j < sizeof(alpha) - 1 + sizeof(extra) - 1; j++) {
            char c = j < sizeof(alpha) - 1 ? alpha[j] : extra[j - (sizeof(alpha) - 1)];
            if (c == id[pos]) {
                continue;
            }
            memcpy(t, id, sizeof(t));
            t[pos] = c;
            tried++;
            if (sid_verify(&k, t, SID_V1_LEN)) {
                bad++;
                fprintf(stderr, "tamper accepted: pos %zu char 0x%02x\n", pos, (unsigned char)c);
            }
        }
    }
    CHECK(tried > SID_V1_LEN * 60);
    CHECK_EQ_INT(bad, 0);
    /* and every single-bit flip of every byte */
    bad = 0;
    for (size_t pos = 0; pos < SID_V1_LEN; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(t, id, sizeof(t));
            t[pos] = (char)(t[pos] ^ (1 << bit));
            bad += sid_verify(&k, t, SID_V1_LEN);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_truncation_and_extension(void)
{
    static struct sid_keys k;
    char id[SID_BUF], t[SID_BUF + 8];
    set_keys(&k, "truncation-secret-0001", NULL);
    CHECK_EQ_INT(sid_mint(&k, id), SID_V1_LEN);
    unsigned bad = 0;
    for (size_t len = 0; len < SID_V1_LEN; len++) {
        memcpy(t, id, len);
        t[len] = '\0';
        bad += sid_verify(&k, t, len);
        /* the length is what counts, not the NUL */
        bad += sid_verify(&k, id, len);
    }
    CHECK_EQ_INT(bad, 0);
    for (size_t j = 0; j < sizeof(alpha) - 1; j++) {
        snprintf(t, sizeof(t), "%s%c", id, alpha[j]);
        bad += sid_verify(&k, t, strlen(t));
    }
    CHECK_EQ_INT(bad, 0);
    /* the id followed by its own tail again (too long) */
    char long_id[2 * SID_BUF];
    snprintf(long_id, sizeof(long_id), "%s%s", id, id + 1);
    CHECK(!sid_verify(&k, long_id, strlen(long_id)));
}

static void test_garbage(void)
{
    static struct sid_keys k;
    set_keys(&k, "garbage-secret-00001", NULL);
    const char *g[] = {
        "",
        "1",
        "0AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiIo",
        "2AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiIo",
        "1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1//////////////////////////////////////////",
        "1+++++++++++++++++++++++++++++++++++++++++++",
        "1AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiI=",
        "kQMUCTGt_bRyw6sxqnpanBYeB",
        "server1",
        "../../etc/passwd",
        "1AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiIo1AAECAwQFBgcICQoLDA0OD1AC8C",
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        CHECK(!sid_verify(&k, g[i], strlen(g[i])));
    }
    CHECK(!sid_verify(&k, NULL, 0));
    /* random bytes of every length up to 80 */
    unsigned bad = 0;
    srand(7);
    for (int round = 0; round < 2000; round++) {
        char buf[80];
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            buf[i] = (char)(rand() & 0xff);
        }
        if (n > 0 && round % 2 == 0) {
            buf[0] = '1';
        }
        bad += sid_verify(&k, buf, n);
    }
    CHECK_EQ_INT(bad, 0);
    /* an embedded NUL at the right length */
    char id[SID_BUF];
    CHECK_EQ_INT(sid_mint(&k, id), SID_V1_LEN);
    id[20] = '\0';
    CHECK(!sid_verify(&k, id, SID_V1_LEN));
}

static void test_secrets_and_rotation(void)
{
    static struct sid_keys a, b, ba, ab, none;
    char ida[SID_BUF], idb[SID_BUF];
    set_keys(&a, "secret-A-0123456789", NULL);
    set_keys(&b, "secret-B-0123456789", NULL);
    set_keys(&ba, "secret-B-0123456789", "secret-A-0123456789");
    set_keys(&ab, "secret-A-0123456789", "secret-B-0123456789");
    CHECK_EQ_INT(sid_mint(&a, ida), SID_V1_LEN);
    CHECK_EQ_INT(sid_mint(&b, idb), SID_V1_LEN);
    /* another cluster's cookie */
    CHECK(!sid_verify(&b, ida, SID_V1_LEN));
    CHECK(!sid_verify(&a, idb, SID_V1_LEN));
    /* rotation: the old secret still verifies, new ids use the new one */
    CHECK(sid_verify(&ba, ida, SID_V1_LEN));
    CHECK(sid_verify(&ba, idb, SID_V1_LEN));
    CHECK(sid_verify(&ab, ida, SID_V1_LEN));
    char idba[SID_BUF];
    CHECK_EQ_INT(sid_mint(&ba, idba), SID_V1_LEN);
    CHECK(sid_verify(&b, idba, SID_V1_LEN));
    CHECK(!sid_verify(&a, idba, SID_V1_LEN));
    /* secrets that differ in one byte, or in length only */
    static struct sid_keys a2, a3;
    set_keys(&a2, "secret-A-0123456788", NULL);
    set_keys(&a3, "secret-A-01234567890", NULL);
    CHECK(!sid_verify(&a2, ida, SID_V1_LEN));
    CHECK(!sid_verify(&a3, ida, SID_V1_LEN));
    /* bounds on secret lengths */
    CHECK_EQ_INT(sid_keys_set(&none, (const uint8_t *)"short-15-bytes!", 15, NULL, 0), -1);
    CHECK_EQ_INT(sid_keys_set(&none, (const uint8_t *)"exactly-16-bytes", 16, NULL, 0), 0);
    CHECK_EQ_INT(
        sid_keys_set(&none, (const uint8_t *)"exactly-16-bytes", 16, (const uint8_t *)"short", 5),
        -1);
    /* a wiped key set verifies nothing and mints nothing */
    sid_keys_wipe(&none);
    CHECK(!sid_verify(&none, ida, SID_V1_LEN));
    CHECK_EQ_INT(sid_mint(&none, idb), -1);
}

static void test_key_ids(void)
{
    static struct sid_keys a, b, ba;
    char k1[SID_BUF], k2[SID_BUF], k3[SID_BUF];
    set_keys(&a, "secret-A-0123456789", NULL);
    set_keys(&b, "secret-B-0123456789", NULL);
    set_keys(&ba, "secret-B-0123456789", "secret-A-0123456789");
    CHECK_EQ_INT(sid_from_key(&a, false, "alice", 5, k1), SID_KEY_LEN);
    CHECK_EQ_INT(sid_from_key(&a, false, "alice", 5, k2), SID_KEY_LEN);
    CHECK(strcmp(k1, k2) == 0);
    CHECK(k1[0] == 'k' && strspn(k1 + 1, alpha) == SID_KEY_LEN - 1);
    CHECK(!sid_verify(&a, k1, strlen(k1)));
    CHECK_EQ_INT(sid_from_key(&a, false, "alicf", 5, k2), SID_KEY_LEN);
    CHECK(strcmp(k1, k2) != 0);
    /* binary-safe: an embedded NUL is part of the key */
    CHECK_EQ_INT(sid_from_key(&a, false, "a\0b", 3, k2), SID_KEY_LEN);
    CHECK_EQ_INT(sid_from_key(&a, false, "a", 1, k3), SID_KEY_LEN);
    CHECK(strcmp(k2, k3) != 0);
    /* empty and very long keys are bounded ids */
    CHECK_EQ_INT(sid_from_key(&a, false, "", 0, k2), SID_KEY_LEN);
    static char big[100000];
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(sid_from_key(&a, false, big, sizeof(big), k2), SID_KEY_LEN);
    /* another secret gives another id; the previous secret gives the old one */
    CHECK_EQ_INT(sid_from_key(&b, false, "alice", 5, k2), SID_KEY_LEN);
    CHECK(strcmp(k1, k2) != 0);
    CHECK_EQ_INT(sid_from_key(&ba, true, "alice", 5, k3), SID_KEY_LEN);
    CHECK(strcmp(k1, k3) == 0);
    CHECK_EQ_INT(sid_from_key(&ba, false, "alice", 5, k3), SID_KEY_LEN);
    CHECK(strcmp(k2, k3) == 0);
    CHECK_EQ_INT(sid_from_key(&a, true, "alice", 5, k3), -1);
}

static void test_b64url(void)
{
    uint8_t in[64], out[64];
    char enc[100];
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (uint8_t)(i * 37 + 11);
    }
    for (size_t n = 0; n <= 40; n++) {
        size_t e = sid_b64url_encode(in, n, enc);
        CHECK_EQ_INT(e, (n * 4 + 2) / 3);
        CHECK_EQ_INT(sid_b64url_decode(enc, e, out, sizeof(out)), n);
        CHECK(memcmp(in, out, n) == 0);
        if (n > 0) {
            CHECK_EQ_INT(sid_b64url_decode(enc, e, out, n - 1), -1); /* too small */
        }
    }
    CHECK_EQ_INT(sid_b64url_decode("A", 1, out, sizeof(out)), -1);
    CHECK_EQ_INT(sid_b64url_decode("AB", 2, out, sizeof(out)), -1); /* unused bits set */
    CHECK_EQ_INT(sid_b64url_decode("AQ", 2, out, sizeof(out)), 1);
    CHECK_EQ_INT(sid_b64url_decode("AQ==", 4, out, sizeof(out)), -1); /* no padding */
    CHECK_EQ_INT(sid_b64url_decode("+/", 2, out, sizeof(out)), -1);   /* not url-safe */
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static void test_load_files(void)
{
    char dir[] = "/tmp/test_sid.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p1[64], p2[64], err[256];
    snprintf(p1, sizeof(p1), "%s/cur", dir);
    snprintf(p2, sizeof(p2), "%s/prev", dir);
    static struct sid_keys k, ref;
    uint8_t nonce[SID_NONCE_LEN] = {1, 2, 3};
    char a[SID_BUF], b[SID_BUF];

    /* one trailing newline is stripped */
    CHECK_EQ_INT(write_file(p1, "0123456789abcdef\n", 17), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), 0);
    CHECK_EQ_INT(k.cur_len, 16);
    set_keys(&ref, "0123456789abcdef", NULL);
    CHECK_EQ_INT(sid_mint_nonce(&k, nonce, a), SID_V1_LEN);
    CHECK_EQ_INT(sid_mint_nonce(&ref, nonce, b), SID_V1_LEN);
    CHECK(strcmp(a, b) == 0);
    /* only one */
    CHECK_EQ_INT(write_file(p1, "0123456789abcdef\n\n", 18), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), 0);
    CHECK_EQ_INT(k.cur_len, 17);
    /* 15 bytes (+ newline) is too short */
    CHECK_EQ_INT(write_file(p1, "0123456789abcde\n", 16), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), -1);
    CHECK(strstr(err, "secret must be") != NULL);
    CHECK_EQ_INT(k.cur_len, 0);
    /* binary with NULs */
    uint8_t bin[32];
    for (size_t i = 0; i < sizeof(bin); i++) {
        bin[i] = (uint8_t)(i % 3 == 0 ? 0 : i * 7);
    }
    CHECK_EQ_INT(write_file(p1, bin, sizeof(bin)), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), 0);
    CHECK_EQ_INT(k.cur_len, sizeof(bin));
    CHECK(memcmp(k.cur, bin, sizeof(bin)) == 0);
    /* too long */
    static uint8_t huge[SID_SECRET_MAX + 10];
    memset(huge, 'z', sizeof(huge));
    CHECK_EQ_INT(write_file(p1, huge, sizeof(huge)), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), -1);
    CHECK_EQ_INT(write_file(p1, huge, SID_SECRET_MAX), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, NULL, err, sizeof(err)), 0);
    /* missing files, unset path, a bad previous secret */
    CHECK_EQ_INT(sid_keys_load(&k, "/nonexistent/secret", NULL, err, sizeof(err)), -1);
    CHECK(strstr(err, "/nonexistent/secret") != NULL);
    CHECK_EQ_INT(sid_keys_load(&k, NULL, NULL, err, sizeof(err)), -1);
    CHECK_EQ_INT(write_file(p1, "current-secret-0123", 19), 0);
    CHECK_EQ_INT(write_file(p2, "short", 5), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, p2, err, sizeof(err)), -1);
    CHECK_EQ_INT(k.cur_len, 0);
    /* both files: the previous one verifies */
    CHECK_EQ_INT(write_file(p2, "previous-secret-0123\n", 21), 0);
    CHECK_EQ_INT(sid_keys_load(&k, p1, p2, err, sizeof(err)), 0);
    set_keys(&ref, "previous-secret-0123", NULL);
    CHECK_EQ_INT(sid_mint(&ref, a), SID_V1_LEN);
    CHECK(sid_verify(&k, a, SID_V1_LEN));
    /* an empty previous path means none */
    CHECK_EQ_INT(sid_keys_load(&k, p1, "", err, sizeof(err)), 0);
    CHECK(!sid_verify(&k, a, SID_V1_LEN));
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

/* The "2" cookie: a known answer (Python's hmac), round trips, every
 * single-character change, truncations, the previous secret, kinds. */
static void test_v2(void)
{
    static struct sid_keys k, other, rot;
    set_keys(&k, "0123456789abcdef", NULL);
    uint8_t tag[SID_STAG_LEN];
    char text[SID_BUF], out[SID_BUF], legacy[SID_BUF];
    CHECK_EQ_INT(sid_server_tag(&k, false, "be_ws", 5, "ws1", 3, tag), 0);
    sid_b64url_encode(tag, sizeof(tag), text);
    CHECK(strcmp(text, "pUgxLA") == 0);
    CHECK_EQ_INT(sid_server_tag(&k, true, "be_ws", 5, "ws1", 3, tag), -1); /* no previous */
    struct sid_cookie c = {.kind = SID_KIND_SESSION, .issued_s = 0x01020304};
    for (unsigned i = 0; i < SID_RID_LEN; i++) {
        c.rid[i] = (uint8_t)i;
    }
    CHECK_EQ_INT(sid_server_tag(&k, false, "be_ws", 5, "ws1", 3, c.stag), 0);
    CHECK_EQ_INT(sid_issue(&k, &c, out), SID_V2_LEN);
    CHECK(strcmp(out, "2AQABAgMEBQYHCAkKCwwNDg8BAgMEpUgxLL3ne1MyMPZHjDQ92rFytB4") == 0);
    CHECK_EQ_INT(sid_record_id(c.rid, text), SID_RECORD_LEN);
    CHECK(strcmp(text, "2AAECAwQFBgcICQoLDA0ODw") == 0);
    struct sid_cookie p;
    CHECK(sid_parse(&k, out, strlen(out), &p));
    CHECK_EQ_INT(p.kind, SID_KIND_SESSION);
    CHECK(!p.prev_secret);
    CHECK(p.issued_s == 0x01020304u);
    CHECK(memcmp(p.rid, c.rid, SID_RID_LEN) == 0 && memcmp(p.stag, c.stag, SID_STAG_LEN) == 0);
    CHECK(!sid_verify(&k, out, strlen(out))); /* the v1 checker knows only "1" */
    /* every single-character change is refused */
    for (size_t i = 0; i < SID_V2_LEN; i++) {
        for (const char *a = alpha; *a; a++) {
            char t[SID_BUF];
            memcpy(t, out, SID_V2_LEN + 1);
            if (t[i] == *a) {
                continue;
            }
            t[i] = *a;
            CHECK(!sid_parse(&k, t, SID_V2_LEN, &p));
        }
    }
    for (size_t n = 0; n < SID_V2_LEN; n++) {
        CHECK(!sid_parse(&k, out, n, &p));
    }
    set_keys(&other, "another secret of sixteen+", NULL);
    CHECK(!sid_parse(&other, out, strlen(out), &p));
    /* after a rotation the old cookie still parses, flagged */
    set_keys(&rot, "the new secret, 16+ bytes", "0123456789abcdef");
    CHECK(sid_parse(&rot, out, strlen(out), &p));
    CHECK(p.prev_secret);
    CHECK_EQ_INT(sid_server_tag(&rot, true, "be_ws", 5, "ws1", 3, tag), 0);
    CHECK(memcmp(tag, c.stag, SID_STAG_LEN) == 0);
    /* a key's cookie, and a "1" cookie through the same parser */
    c.kind = SID_KIND_KEY;
    CHECK_EQ_INT(sid_key_rid(&k, "user-42", 7, c.rid), 0);
    CHECK_EQ_INT(sid_issue(&k, &c, out), SID_V2_LEN);
    CHECK(sid_parse(&k, out, strlen(out), &p) && p.kind == SID_KIND_KEY);
    c.kind = SID_KIND_V1;
    CHECK_EQ_INT(sid_issue(&k, &c, out), -1);
    char v1[SID_BUF];
    CHECK_EQ_INT(sid_mint(&k, v1), SID_V1_LEN);
    CHECK(sid_parse(&k, v1, strlen(v1), &p) && p.kind == SID_KIND_V1 && !p.prev_secret);
    /* operator input: cookie of either format, or a record id as is */
    CHECK_EQ_INT(sid_record_of(v1, strlen(v1), text, legacy), SID_RECORD_LEN);
    CHECK(strcmp(legacy, v1) == 0);
    CHECK_EQ_INT(sid_record_of("2AQABAgMEBQYHCAkKCwwNDg8BAgMEpUgxLL3ne1MyMPZHjDQ92rFytB4",
                               SID_V2_LEN, text, legacy),
                 SID_RECORD_LEN);
    CHECK(strcmp(text, "2AAECAwQFBgcICQoLDA0ODw") == 0 && legacy[0] == '\0');
    CHECK_EQ_INT(sid_record_of("2AAECAwQFBgcICQoLDA0ODw", SID_RECORD_LEN, text, legacy),
                 SID_RECORD_LEN);
    CHECK(strcmp(text, "2AAECAwQFBgcICQoLDA0ODw") == 0);
}

int main(void)
{
    test_v2();
    test_known_answers();
    test_mint_round_trip();
    test_every_tamper();
    test_truncation_and_extension();
    test_garbage();
    test_secrets_and_rotation();
    test_key_ids();
    test_b64url();
    test_load_files();
    return check_summary("test_sid");
}
