/* fuzz_spop.c - libFuzzer target over the SPOP codec (links agent/spop.c only).
 *
 * The input is a byte stream of frames, as a connection would read it. Every
 * frame found goes through every payload decoder (whatever its type), and the
 * whole input is also fed to them as a bare payload. Where the decode succeeds
 * the result is re-encoded with the writer and decoded again: the two decodes
 * must agree, and encoding the second gives the same bytes (the encoder is
 * canonical). ASan catches over-reads: libFuzzer's input buffer is exact-size.
 */
#include "spop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_spop: invariant failed at line %d: %s\n", __LINE__, #c);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool in(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
    const uint8_t *b = p;
    return n == 0 || (b >= lo && b + n <= hi && b + n >= b);
}

static bool str_same(struct spop_str a, struct spop_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void check_data(const struct spop_data *d, const uint8_t *lo, const uint8_t *hi)
{
    REQUIRE((unsigned)d->type < SPOP_T_COUNT);
    if (d->type == SPOP_T_STRING || d->type == SPOP_T_BINARY) {
        REQUIRE(in(d->u.str.ptr, d->u.str.len, lo, hi));
    }
}

/* Decode a NOTIFY message list into arrays of its own (grown to what the
 * payload needs, through the NO_ROOM path), checking the counts agree. */
struct decoded {
    struct spop_notify n;
    enum spop_notify_result rc;
};

static void decode_msgs(const uint8_t *p, size_t len, struct decoded *d)
{
    /* first with no room at all: only validation and counting */
    d->n = (struct spop_notify){NULL, 0, NULL, 0, 0, 0};
    d->rc = spop_notify_parse(p, len, &d->n);
    REQUIRE(d->rc == SPOP_NOTIFY_OK || d->rc == SPOP_NOTIFY_MALFORMED ||
            d->rc == SPOP_NOTIFY_NO_ROOM);
    if (d->rc != SPOP_NOTIFY_NO_ROOM) {
        REQUIRE(d->rc == SPOP_NOTIFY_MALFORMED || d->n.nmsgs == 0);
        return;
    }
    size_t nmsgs = d->n.nmsgs, nkvs = d->n.nkvs;
    REQUIRE(nmsgs > 0 && nmsgs * 2 <= len && nkvs * 2 <= len);
    d->n.msgs = malloc(nmsgs * sizeof(*d->n.msgs));
    d->n.kvs = nkvs > 0 ? malloc(nkvs * sizeof(*d->n.kvs)) : NULL;
    REQUIRE(d->n.msgs != NULL && (nkvs == 0 || d->n.kvs != NULL));
    d->n.msgs_cap = nmsgs;
    d->n.kvs_cap = nkvs;
    /* one arg short of room is still NO_ROOM, with the same counts */
    if (nkvs > 0) {
        d->n.kvs_cap = nkvs - 1;
        REQUIRE(spop_notify_parse(p, len, &d->n) == SPOP_NOTIFY_NO_ROOM);
        REQUIRE(d->n.nmsgs == nmsgs && d->n.nkvs == nkvs);
        d->n.kvs_cap = nkvs;
    }
    d->rc = spop_notify_parse(p, len, &d->n);
    REQUIRE(d->rc == SPOP_NOTIFY_OK && d->n.nmsgs == nmsgs && d->n.nkvs == nkvs);
}

static void decoded_free(struct decoded *d)
{
    free(d->n.msgs);
    free(d->n.kvs);
}

/* Re-encode a decoded NOTIFY message list; returns the encoded length, 0 if it
 * did not fit (large inputs), which is not an error. */
static size_t reencode_msgs(const struct spop_notify *n, uint8_t *out, size_t cap)
{
    struct spop_writer w;
    spop_w_init(&w, out, cap, 0);
    for (size_t i = 0; i < n->nmsgs; i++) {
        const struct spop_msg *m = &n->msgs[i];
        spop_w_msg(&w, m->name.ptr, m->name.len, (uint8_t)m->nargs);
        for (unsigned k = 0; k < m->nargs; k++) {
            spop_w_str(&w, m->args[k].key.ptr, m->args[k].key.len);
            spop_w_data(&w, &m->args[k].val);
        }
    }
    return w.failed ? 0 : w.len;
}

/* Two decoded message lists hold the same messages. */
static void same_msgs(const struct spop_notify *a, const struct spop_notify *b)
{
    REQUIRE(a->nmsgs == b->nmsgs && a->nkvs == b->nkvs);
    for (size_t i = 0; i < a->nmsgs; i++) {
        const struct spop_msg *ma = &a->msgs[i], *mb = &b->msgs[i];
        REQUIRE(str_same(ma->name, mb->name) && ma->nargs == mb->nargs);
        for (unsigned k = 0; k < ma->nargs; k++) {
            REQUIRE(str_same(ma->args[k].key, mb->args[k].key) &&
                    spop_data_eq(&ma->args[k].val, &mb->args[k].val));
        }
    }
}

static uint8_t enc1[1 << 17], enc2[1 << 17];

static void fuzz_msgs(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    struct decoded d;
    decode_msgs(p, len, &d);
    if (d.rc == SPOP_NOTIFY_OK) {
        size_t nkvs = 0;
        for (size_t i = 0; i < d.n.nmsgs; i++) {
            const struct spop_msg *m = &d.n.msgs[i];
            REQUIRE(in(m->name.ptr, m->name.len, p, end));
            /* the args of each message follow the previous message's */
            REQUIRE(m->nargs == 0 || m->args == d.n.kvs + nkvs);
            for (unsigned k = 0; k < m->nargs; k++) {
                REQUIRE(in(m->args[k].key.ptr, m->args[k].key.len, p, end));
                check_data(&m->args[k].val, p, end);
            }
            nkvs += m->nargs;
        }
        REQUIRE(nkvs == d.n.nkvs);
    }
    if (d.rc == SPOP_NOTIFY_OK && len <= sizeof(enc1) / 2) {
        size_t n1 = reencode_msgs(&d.n, enc1, sizeof(enc1));
        REQUIRE(n1 != 0 || len == 0);
        struct decoded d1, d2;
        decode_msgs(enc1, n1, &d1);
        REQUIRE(d1.rc == SPOP_NOTIFY_OK);
        same_msgs(&d.n, &d1.n);
        size_t n2 = reencode_msgs(&d1.n, enc2, sizeof(enc2));
        REQUIRE(n2 == n1 && memcmp(enc1, enc2, n1) == 0);
        decode_msgs(enc2, n2, &d2);
        same_msgs(&d1.n, &d2.n);
        decoded_free(&d1);
        decoded_free(&d2);
    }
    decoded_free(&d);
}

static void fuzz_kvs(const uint8_t *p, size_t len)
{
    struct spop_reader r = {p, p + len};
    struct spop_str k;
    struct spop_data d;
    enum spop_next rc;
    while ((rc = spop_next_kv(&r, &k, &d)) == SPOP_NEXT_ITEM) {
        REQUIRE(in(k.ptr, k.len, p, p + len));
        check_data(&d, p, p + len);
        /* one KV round trip */
        uint8_t buf[64];
        struct spop_writer w;
        spop_w_init(&w, buf, sizeof(buf), 0);
        spop_w_str(&w, k.ptr, k.len);
        spop_w_data(&w, &d);
        if (!w.failed) {
            struct spop_reader r2 = {buf, buf + w.len};
            struct spop_str k2;
            struct spop_data d2;
            REQUIRE(spop_next_kv(&r2, &k2, &d2) == SPOP_NEXT_ITEM && r2.p == buf + w.len);
            REQUIRE(str_same(k, k2) && spop_data_eq(&d, &d2));
        }
    }
    REQUIRE(rc == SPOP_NEXT_END || rc == SPOP_NEXT_MALFORMED);

    struct spop_hello h;
    if (spop_hello_parse(p, len, &h) == 0) {
        REQUIRE(in(h.versions.ptr, h.versions.len, p, p + len));
        REQUIRE(in(h.caps.ptr, h.caps.len, p, p + len));
        REQUIRE(in(h.engine_id.ptr, h.engine_id.len, p, p + len));
        (void)spop_list_has(h.versions, SPOP_VERSION);
        (void)spop_list_has(h.caps, "pipelining");
    }
    struct spop_disconnect dc;
    if (spop_disconnect_parse(p, len, &dc) == 0) {
        REQUIRE(in(dc.message.ptr, dc.message.len, p, p + len));
        (void)spop_status_str(dc.status);
    }
}

static void fuzz_actions(const uint8_t *p, size_t len)
{
    struct spop_reader r = {p, p + len};
    uint8_t type, scope;
    struct spop_str name;
    struct spop_data val;
    struct spop_writer w;
    spop_w_init(&w, enc1, sizeof(enc1), 0);
    enum spop_next rc;
    while ((rc = spop_next_action(&r, &type, &scope, &name, &val)) == SPOP_NEXT_ITEM) {
        REQUIRE(in(name.ptr, name.len, p, p + len));
        REQUIRE(scope < SPOP_SCOPE_COUNT);
        check_data(&val, p, p + len);
        if (type == SPOP_ACT_SET_VAR) {
            spop_w_set_var(&w, (enum spop_scope)scope, name.ptr, name.len, &val);
        } else {
            REQUIRE(type == SPOP_ACT_UNSET_VAR && val.type == SPOP_T_NULL);
            spop_w_unset_var(&w, (enum spop_scope)scope, name.ptr, name.len);
        }
    }
    REQUIRE(rc == SPOP_NEXT_END || rc == SPOP_NEXT_MALFORMED);
    if (rc == SPOP_NEXT_END && !w.failed) {
        /* the re-encoded list decodes to the same actions */
        struct spop_reader a = {p, p + len}, b = {enc1, enc1 + w.len};
        uint8_t t2, s2;
        struct spop_str n2;
        struct spop_data v2;
        enum spop_next ra, rb;
        do {
            ra = spop_next_action(&a, &type, &scope, &name, &val);
            rb = spop_next_action(&b, &t2, &s2, &n2, &v2);
            REQUIRE(ra == rb);
            if (ra == SPOP_NEXT_ITEM) {
                REQUIRE(type == t2 && scope == s2 && str_same(name, n2) && spop_data_eq(&val, &v2));
            }
        } while (ra == SPOP_NEXT_ITEM);
        REQUIRE(ra == SPOP_NEXT_END);
    }
}

static void fuzz_frame(const struct spop_frame *f, const uint8_t *lo, const uint8_t *hi)
{
    REQUIRE(in(f->payload, f->payload_len, lo, hi));
    fuzz_msgs(f->payload, f->payload_len);
    fuzz_kvs(f->payload, f->payload_len);
    fuzz_actions(f->payload, f->payload_len);

    /* re-frame the payload: same header fields come back */
    struct spop_writer w;
    spop_w_init(&w, enc2, sizeof(enc2), 0);
    spop_w_frame_begin(&w, f->type, f->flags, f->stream_id, f->frame_id);
    spop_w_bytes(&w, f->payload, f->payload_len);
    if (spop_w_frame_end(&w) == 0) {
        struct spop_frame g;
        enum spop_status st = SPOP_ST_NONE;
        REQUIRE(spop_frame_decode(enc2, w.len, 0, &g, &st) == (ssize_t)w.len);
        REQUIRE(g.type == f->type && g.flags == f->flags && g.stream_id == f->stream_id &&
                g.frame_id == f->frame_id && g.payload_len == f->payload_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *end = data + size;

    /* a varint at the start */
    uint64_t v;
    int n = spop_varint_decode(data, end, &v);
    REQUIRE(n >= -1 && n <= (int)SPOP_VARINT_MAX && (size_t)(n > 0 ? n : 0) <= size);
    if (n > 0) {
        uint8_t buf[SPOP_VARINT_MAX];
        size_t m = spop_varint_encode(v, buf);
        /* the scheme is bijective: the canonical form is what was read */
        REQUIRE(m == (size_t)n && memcmp(buf, data, m) == 0);
    }

    /* the input as a stream of frames; the first two input bytes also pick a
     * small max-frame-size to exercise TOO_BIG */
    uint32_t small = size >= 2 ? (uint32_t)data[0] << 8 | data[1] : 0;
    const uint8_t *p = data;
    while (p < end) {
        struct spop_frame f;
        enum spop_status st = SPOP_ST_NONE;
        ssize_t r = spop_frame_decode(p, (size_t)(end - p), SPOP_MAX_FRAME_SIZE, &f, &st);
        if (r <= 0) {
            REQUIRE(r == 0 || st == SPOP_ST_TOO_BIG || st == SPOP_ST_INVALID);
            break;
        }
        REQUIRE((size_t)r <= (size_t)(end - p) && (size_t)r >= SPOP_LEN_SIZE + SPOP_FRAME_MIN_LEN);
        /* one byte less is never malformed, only incomplete */
        struct spop_frame f2;
        REQUIRE(spop_frame_decode(p, (size_t)r - 1, SPOP_MAX_FRAME_SIZE, &f2, &st) == 0);
        ssize_t rs = spop_frame_decode(p, (size_t)r, small, &f2, &st);
        REQUIRE(rs == r || (rs == -1 && st == SPOP_ST_TOO_BIG));
        fuzz_frame(&f, p, p + r);
        p += r;
    }

    /* the input as a bare payload */
    fuzz_msgs(data, size);
    fuzz_kvs(data, size);
    fuzz_actions(data, size);
    return 0;
}
