/* spop.c - the SPOP 2.0 codec (see spop.h for the contract).
 *
 * Decoders work on a local cursor, check bounds before every read and commit
 * only on success; encoders go through a writer whose failure sticks. No
 * allocation, no I/O: this file must stay linkable alone (the fuzz target does).
 */
#include "spop.h"

#include <string.h>

/* Wire sizes the code below relies on. */
_Static_assert(SPOP_FRAME_MIN_LEN == 1 + 4 + 1 + 1, "type + flags + two 1-byte varints");
_Static_assert(SPOP_T_COUNT == 10, "SPOP 2.0 defines exactly ten data types");
_Static_assert(SPOP_SCOPE_COUNT == 5, "SPOP 2.0 defines five variable scopes");

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- varints ---------------------------------------------------------------
 * HAProxy's scheme: values < 240 are one byte. Otherwise the first byte carries
 * the low 4 bits with 0xF0 set, and each following byte adds its full 8 bits
 * shifted by 4, 11, 18, ...; a byte < 128 ends the varint. The 10th byte is
 * shifted by 60, so it may only carry 4 bits: anything more would wrap, and we
 * refuse it rather than silently decode a different number. */

/* Returns bytes used (> 0), 0 if [p, end) ends first (under 10 bytes), -1 if
 * malformed (unfinished after 10 bytes, or over 64 bits). */
static inline int varint_get(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    if (UNLIKELY(p >= end)) {
        return 0;
    }
    uint64_t v = p[0];
    if (LIKELY(v < 240)) {
        *out = v;
        return 1;
    }
    unsigned shift = 4;
    for (unsigned i = 1; i < SPOP_VARINT_MAX; i++, shift += 7) {
        if (p + i >= end) {
            return 0;
        }
        uint64_t b = p[i];
        if (shift == 60) {
            /* last possible byte: must end here and not overflow */
            if (b >= 128 || (b >> 4) != 0) {
                return -1;
            }
            uint64_t add = b << 60;
            if (v + add < v) {
                return -1;
            }
            *out = v + add;
            return (int)i + 1;
        }
        v += b << shift;
        if (b < 128) {
            *out = v;
            return (int)i + 1;
        }
    }
    return -1; /* not reached: the loop returns at shift 60 */
}

int spop_varint_decode(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    return varint_get(p, end, out);
}

size_t spop_varint_encode(uint64_t v, uint8_t *out)
{
    if (v < 240) {
        out[0] = (uint8_t)v;
        return 1;
    }
    size_t n = 0;
    out[n++] = (uint8_t)(v | 240);
    v = (v - 240) >> 4;
    while (v >= 128) {
        out[n++] = (uint8_t)(v | 128);
        v = (v - 128) >> 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* ---- payload decoding ------------------------------------------------------
 * Inside a complete frame nothing is "need more": running out is malformed. */

/* A varint inside [r->p, r->end). The spop_read_* convention: true and r
 * advanced, or false (malformed) and r left alone. */
static inline bool read_varint(struct spop_reader *r, uint64_t *v)
{
    int n = varint_get(r->p, r->end, v);
    if (UNLIKELY(n <= 0)) {
        return false;
    }
    r->p += n;
    return true;
}

/* A varint-length string view; same convention. */
static inline bool read_str(struct spop_reader *r, struct spop_str *s)
{
    struct spop_reader c = *r;
    uint64_t n;
    if (!read_varint(&c, &n) || n > (uint64_t)(c.end - c.p)) {
        return false;
    }
    s->ptr = (const char *)c.p;
    s->len = (size_t)n;
    r->p = c.p + n;
    return true;
}

bool spop_read_data(struct spop_reader *r, struct spop_data *out)
{
    struct spop_reader c = *r;
    if (UNLIKELY(c.p >= c.end)) {
        return false;
    }
    uint8_t tb = *c.p++;
    uint8_t t = tb & SPOP_T_MASK;
    uint64_t v;
    switch (t) {
    case SPOP_T_NULL:
        break;
    case SPOP_T_BOOL:
        out->u.b = (tb & SPOP_T_FL_TRUE) != 0;
        break;
    case SPOP_T_INT32:
        /* negatives arrive as the int64 two's complement cast to uint64 */
        if (!read_varint(&c, &v) || (int64_t)v < INT32_MIN || (int64_t)v > INT32_MAX) {
            return false;
        }
        out->u.i32 = (int32_t)(int64_t)v;
        break;
    case SPOP_T_UINT32:
        if (!read_varint(&c, &v) || v > UINT32_MAX) {
            return false;
        }
        out->u.u32 = (uint32_t)v;
        break;
    case SPOP_T_INT64:
        if (!read_varint(&c, &v)) {
            return false;
        }
        out->u.i64 = (int64_t)v;
        break;
    case SPOP_T_UINT64:
        if (!read_varint(&c, &out->u.u64)) {
            return false;
        }
        break;
    case SPOP_T_IPV4:
        if (c.end - c.p < 4) {
            return false;
        }
        memcpy(out->u.ipv4, c.p, 4);
        c.p += 4;
        break;
    case SPOP_T_IPV6:
        if (c.end - c.p < 16) {
            return false;
        }
        memcpy(out->u.ipv6, c.p, 16);
        c.p += 16;
        break;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        if (!read_str(&c, &out->u.str)) {
            return false;
        }
        break;
    default:
        return false; /* reserved types 10..15 cannot be sized */
    }
    out->type = (enum spop_type)t;
    r->p = c.p;
    return true;
}

enum spop_next spop_next_kv(struct spop_reader *r, struct spop_str *key, struct spop_data *val)
{
    if (r->p >= r->end) {
        return SPOP_NEXT_END;
    }
    struct spop_reader c = *r;
    if (!read_str(&c, key) || !spop_read_data(&c, val)) {
        return SPOP_NEXT_MALFORMED;
    }
    r->p = c.p;
    return SPOP_NEXT_ITEM;
}

enum spop_notify_result spop_notify_parse(const uint8_t *p, size_t len, struct spop_notify *n)
{
    struct spop_reader c = {p, len != 0 ? p + len : p}; /* no NULL + 0 */
    size_t nmsgs = 0, nkvs = 0;
    while (c.p < c.end) {
        struct spop_str name;
        if (!read_str(&c, &name) || c.p >= c.end) {
            return SPOP_NOTIFY_MALFORMED;
        }
        unsigned nargs = *c.p++;
        /* past the arrays' room: keep validating and counting, store nothing */
        bool store = nmsgs < n->msgs_cap && nkvs + nargs <= n->kvs_cap;
        struct spop_kv scratch;
        for (unsigned i = 0; i < nargs; i++) {
            struct spop_kv *kv = store ? &n->kvs[nkvs + i] : &scratch;
            if (!read_str(&c, &kv->key) || !spop_read_data(&c, &kv->val)) {
                return SPOP_NOTIFY_MALFORMED;
            }
        }
        if (store) {
            /* no NULL + 0 when the caller gave no kvs */
            const struct spop_kv *args = n->kvs != NULL ? n->kvs + nkvs : NULL;
            n->msgs[nmsgs] = (struct spop_msg){name, nargs, args};
        }
        nmsgs++;
        nkvs += nargs;
    }
    bool fits = nmsgs <= n->msgs_cap && nkvs <= n->kvs_cap;
    n->nmsgs = nmsgs;
    n->nkvs = nkvs;
    return fits ? SPOP_NOTIFY_OK : SPOP_NOTIFY_NO_ROOM;
}

/* An integer of any of the four integer types that fits a uint32. */
static bool data_u32(const struct spop_data *d, uint32_t *out)
{
    switch (d->type) {
    case SPOP_T_UINT32:
        *out = d->u.u32;
        return true;
    case SPOP_T_INT32:
        if (d->u.i32 < 0) {
            return false;
        }
        *out = (uint32_t)d->u.i32;
        return true;
    case SPOP_T_UINT64:
        if (d->u.u64 > UINT32_MAX) {
            return false;
        }
        *out = (uint32_t)d->u.u64;
        return true;
    case SPOP_T_INT64:
        if (d->u.i64 < 0 || d->u.i64 > (int64_t)UINT32_MAX) {
            return false;
        }
        *out = (uint32_t)d->u.i64;
        return true;
    default:
        return false;
    }
}

int spop_hello_parse(const uint8_t *p, size_t len, struct spop_hello *h)
{
    struct spop_reader r = {p, len != 0 ? p + len : p}; /* no NULL + 0 */
    struct spop_str k;
    struct spop_data d;
    enum spop_next rc;
    memset(h, 0, sizeof(*h));
    while ((rc = spop_next_kv(&r, &k, &d)) == SPOP_NEXT_ITEM) {
        if (spop_str_eq(k, "supported-versions")) {
            if (d.type != SPOP_T_STRING) {
                return -1;
            }
            h->versions = d.u.str;
            h->has_versions = true;
        } else if (spop_str_eq(k, "max-frame-size")) {
            if (!data_u32(&d, &h->max_frame_size)) {
                return -1;
            }
            h->has_frame_size = true;
        } else if (spop_str_eq(k, "capabilities")) {
            if (d.type != SPOP_T_STRING) {
                return -1;
            }
            h->caps = d.u.str;
            h->has_caps = true;
        } else if (spop_str_eq(k, "healthcheck")) {
            if (d.type != SPOP_T_BOOL) {
                return -1;
            }
            h->healthcheck = d.u.b;
        } else if (spop_str_eq(k, "engine-id")) {
            if (d.type != SPOP_T_STRING) {
                return -1;
            }
            h->engine_id = d.u.str;
        }
        /* other keys: skipped, the spec allows extensions */
    }
    return rc == SPOP_NEXT_END ? 0 : -1;
}

int spop_disconnect_parse(const uint8_t *p, size_t len, struct spop_disconnect *dc)
{
    struct spop_reader r = {p, len != 0 ? p + len : p}; /* no NULL + 0 */
    struct spop_str k;
    struct spop_data d;
    enum spop_next rc;
    memset(dc, 0, sizeof(*dc));
    while ((rc = spop_next_kv(&r, &k, &d)) == SPOP_NEXT_ITEM) {
        if (spop_str_eq(k, "status-code")) {
            if (!data_u32(&d, &dc->status)) {
                return -1;
            }
            dc->has_status = true;
        } else if (spop_str_eq(k, "message")) {
            if (d.type != SPOP_T_STRING) {
                return -1;
            }
            dc->message = d.u.str;
        }
    }
    return rc == SPOP_NEXT_END ? 0 : -1;
}

enum spop_next spop_next_action(struct spop_reader *r, uint8_t *type, uint8_t *scope,
                                struct spop_str *name, struct spop_data *val)
{
    if (r->p >= r->end) {
        return SPOP_NEXT_END;
    }
    struct spop_reader c = *r;
    if (c.end - c.p < 3) {
        return SPOP_NEXT_MALFORMED;
    }
    uint8_t t = c.p[0], nargs = c.p[1], sc = c.p[2];
    c.p += 3;
    if (sc >= SPOP_SCOPE_COUNT) {
        return SPOP_NEXT_MALFORMED;
    }
    struct spop_str n;
    struct spop_data v = {.type = SPOP_T_NULL};
    if (t == SPOP_ACT_SET_VAR && nargs == 3) {
        if (!read_str(&c, &n) || !spop_read_data(&c, &v)) {
            return SPOP_NEXT_MALFORMED;
        }
    } else if (t == SPOP_ACT_UNSET_VAR && nargs == 2) {
        if (!read_str(&c, &n)) {
            return SPOP_NEXT_MALFORMED;
        }
    } else {
        return SPOP_NEXT_MALFORMED; /* unknown action, or wrong arg count: cannot be sized */
    }
    *type = t;
    *scope = sc;
    *name = n;
    *val = v;
    r->p = c.p;
    return SPOP_NEXT_ITEM;
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

ssize_t spop_frame_decode(const uint8_t *buf, size_t len, uint32_t max_frame_size,
                          struct spop_frame *f, enum spop_status *st)
{
    if (len < SPOP_LEN_SIZE) {
        return 0;
    }
    uint32_t flen = get_be32(buf);
    uint32_t limit = max_frame_size != 0 ? max_frame_size : SPOP_MAX_FRAME_SIZE;
    if (flen > limit) {
        *st = SPOP_ST_TOO_BIG;
        return -1;
    }
    if (flen < SPOP_FRAME_MIN_LEN) {
        *st = SPOP_ST_INVALID;
        return -1;
    }
    if (len - SPOP_LEN_SIZE < flen) {
        return 0;
    }
    struct spop_reader c = {buf + SPOP_LEN_SIZE, buf + SPOP_LEN_SIZE + flen};
    uint8_t type = c.p[0];
    uint32_t flags = get_be32(c.p + 1);
    c.p += 5;
    uint64_t sid, fid;
    if (!read_varint(&c, &sid) || !read_varint(&c, &fid)) {
        *st = SPOP_ST_INVALID;
        return -1;
    }
    f->type = type;
    f->flags = flags;
    f->stream_id = sid;
    f->frame_id = fid;
    f->payload = c.p;
    f->payload_len = (size_t)(c.end - c.p);
    return (ssize_t)(SPOP_LEN_SIZE + flen);
}

/* ---- small helpers ---------------------------------------------------------- */

bool spop_str_eq(struct spop_str a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

static inline bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

bool spop_list_has(struct spop_str list, const char *word)
{
    if (list.len == 0) {
        return false; /* also keeps NULL + 0 out of the pointer arithmetic */
    }
    size_t wl = strlen(word);
    const char *p = list.ptr, *end = list.ptr + list.len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma != NULL ? comma : end;
        const char *b = p;
        while (b < e && is_blank(*b)) {
            b++;
        }
        const char *t = e;
        while (t > b && is_blank(t[-1])) {
            t--;
        }
        if ((size_t)(t - b) == wl && memcmp(b, word, wl) == 0) {
            return true;
        }
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    return false;
}

const char *spop_status_str(uint32_t status)
{
    /* The wording of SPOE.txt section 3.5. */
    static const char *const names[] = {
        [SPOP_ST_NONE] = "normal",
        [SPOP_ST_IO] = "I/O error",
        [SPOP_ST_TIMEOUT] = "a timeout occurred",
        [SPOP_ST_TOO_BIG] = "frame is too big",
        [SPOP_ST_INVALID] = "invalid frame received",
        [SPOP_ST_NO_VSN] = "version value not found",
        [SPOP_ST_NO_FRAME_SIZE] = "max-frame-size value not found",
        [SPOP_ST_NO_CAP] = "capabilities value not found",
        [SPOP_ST_BAD_VSN] = "unsupported version",
        [SPOP_ST_BAD_FRAME_SIZE] = "max-frame-size too big or too small",
        [SPOP_ST_FRAG_NOT_SUPPORTED] = "payload fragmentation is not supported",
        [SPOP_ST_INTERLACED_FRAMES] = "invalid interlaced frames",
        [SPOP_ST_FRAMEID_NOTFOUND] = "frame-id not found",
        [SPOP_ST_RES] = "resource allocation error",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) == SPOP_ST_RES + 1, "one name per status");
    if (status < sizeof(names) / sizeof(names[0])) {
        return names[status];
    }
    return status == SPOP_ST_UNKNOWN ? "an unknown error occurred" : "unknown status code";
}

/* ---- encoding --------------------------------------------------------------- */

void spop_w_init(struct spop_writer *w, uint8_t *buf, size_t cap, uint32_t max_frame)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->frame_start = 0;
    w->max_frame = max_frame;
    w->in_frame = false;
    w->failed = false;
}

/* Room for n more bytes under both limits? Sets `failed` when not. The frame
 * limit counts the frame's length field value: everything after the prefix. */
static inline bool w_room(struct spop_writer *w, size_t n)
{
    if (UNLIKELY(w->failed)) {
        return false;
    }
    if (UNLIKELY(n > w->cap - w->len)) {
        w->failed = true;
        return false;
    }
    if (w->in_frame && w->max_frame != 0 &&
        UNLIKELY(w->len + n - w->frame_start - SPOP_LEN_SIZE > w->max_frame)) {
        w->failed = true;
        return false;
    }
    return true;
}

void spop_w_bytes(struct spop_writer *w, const void *p, size_t n)
{
    if (w_room(w, n) && n != 0) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    }
}

void spop_w_u8(struct spop_writer *w, uint8_t v)
{
    if (w_room(w, 1)) {
        w->buf[w->len++] = v;
    }
}

void spop_w_varint(struct spop_writer *w, uint64_t v)
{
    if (LIKELY(v < 240)) {
        spop_w_u8(w, (uint8_t)v);
        return;
    }
    uint8_t tmp[SPOP_VARINT_MAX];
    spop_w_bytes(w, tmp, spop_varint_encode(v, tmp));
}

void spop_w_str(struct spop_writer *w, const char *p, size_t n)
{
    spop_w_varint(w, n);
    spop_w_bytes(w, p, n);
}

void spop_w_data(struct spop_writer *w, const struct spop_data *d)
{
    switch (d->type) {
    case SPOP_T_NULL:
        spop_w_u8(w, SPOP_T_NULL);
        break;
    case SPOP_T_BOOL:
        spop_w_u8(w, (uint8_t)(SPOP_T_BOOL | (d->u.b ? SPOP_T_FL_TRUE : 0)));
        break;
    case SPOP_T_INT32:
        spop_w_u8(w, SPOP_T_INT32);
        spop_w_varint(w, (uint64_t)(int64_t)d->u.i32);
        break;
    case SPOP_T_UINT32:
        spop_w_u8(w, SPOP_T_UINT32);
        spop_w_varint(w, d->u.u32);
        break;
    case SPOP_T_INT64:
        spop_w_u8(w, SPOP_T_INT64);
        spop_w_varint(w, (uint64_t)d->u.i64);
        break;
    case SPOP_T_UINT64:
        spop_w_u8(w, SPOP_T_UINT64);
        spop_w_varint(w, d->u.u64);
        break;
    case SPOP_T_IPV4:
        spop_w_u8(w, SPOP_T_IPV4);
        spop_w_bytes(w, d->u.ipv4, 4);
        break;
    case SPOP_T_IPV6:
        spop_w_u8(w, SPOP_T_IPV6);
        spop_w_bytes(w, d->u.ipv6, 16);
        break;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        spop_w_u8(w, (uint8_t)d->type);
        spop_w_str(w, d->u.str.ptr, d->u.str.len);
        break;
    default:
        w->failed = true; /* no wire form */
        break;
    }
}

void spop_w_kv(struct spop_writer *w, const char *key, const struct spop_data *d)
{
    spop_w_str(w, key, strlen(key));
    spop_w_data(w, d);
}

void spop_w_set_var(struct spop_writer *w, enum spop_scope scope, const char *name, size_t name_len,
                    const struct spop_data *val)
{
    if ((unsigned)scope >= SPOP_SCOPE_COUNT) {
        w->failed = true;
        return;
    }
    uint8_t hdr[3] = {SPOP_ACT_SET_VAR, 3, (uint8_t)scope};
    spop_w_bytes(w, hdr, sizeof(hdr));
    spop_w_str(w, name, name_len);
    spop_w_data(w, val);
}

void spop_w_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      size_t name_len)
{
    if ((unsigned)scope >= SPOP_SCOPE_COUNT) {
        w->failed = true;
        return;
    }
    uint8_t hdr[3] = {SPOP_ACT_UNSET_VAR, 2, (uint8_t)scope};
    spop_w_bytes(w, hdr, sizeof(hdr));
    spop_w_str(w, name, name_len);
}

void spop_w_msg(struct spop_writer *w, const char *name, size_t name_len, uint8_t nargs)
{
    spop_w_str(w, name, name_len);
    spop_w_u8(w, nargs);
}

void spop_w_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                        uint64_t frame_id)
{
    if (w->in_frame) {
        w->failed = true; /* frames do not nest */
        return;
    }
    uint8_t hdr[SPOP_LEN_SIZE + 5] = {
        0,
        0,
        0,
        0,
        type,
        (uint8_t)(flags >> 24),
        (uint8_t)(flags >> 16),
        (uint8_t)(flags >> 8),
        (uint8_t)flags,
    };
    size_t start = w->len;
    /* the prefix is outside the frame limit: put it before opening the frame */
    spop_w_bytes(w, hdr, SPOP_LEN_SIZE);
    w->frame_start = start;
    w->in_frame = true;
    spop_w_bytes(w, hdr + SPOP_LEN_SIZE, 5);
    spop_w_varint(w, stream_id);
    spop_w_varint(w, frame_id);
}

int spop_w_frame_end(struct spop_writer *w)
{
    if (!w->in_frame) {
        w->failed = true;
    }
    w->in_frame = false;
    if (w->failed) {
        return -1;
    }
    size_t n = w->len - w->frame_start - SPOP_LEN_SIZE;
    uint8_t *p = w->buf + w->frame_start;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    return 0;
}

int spop_w_agent_hello(struct spop_writer *w, uint32_t max_frame_size, const char *caps)
{
    spop_w_frame_begin(w, SPOP_FRAME_AGENT_HELLO, SPOP_FL_FIN, 0, 0);
    struct spop_data d = spop_d_str(SPOP_VERSION, sizeof(SPOP_VERSION) - 1);
    spop_w_kv(w, "version", &d);
    d = spop_d_u32(max_frame_size);
    spop_w_kv(w, "max-frame-size", &d);
    d = spop_d_str(caps != NULL ? caps : "", caps != NULL ? strlen(caps) : 0);
    spop_w_kv(w, "capabilities", &d);
    return spop_w_frame_end(w);
}

int spop_w_agent_disconnect(struct spop_writer *w, uint32_t status, const char *message)
{
    size_t n = message != NULL ? strnlen(message, SPOP_MAX_MSG_LEN) : 0;
    spop_w_frame_begin(w, SPOP_FRAME_AGENT_DISCONNECT, SPOP_FL_FIN, 0, 0);
    struct spop_data d = spop_d_u32(status);
    spop_w_kv(w, "status-code", &d);
    d = spop_d_str(message != NULL ? message : "", n);
    spop_w_kv(w, "message", &d);
    return spop_w_frame_end(w);
}

int spop_w_ack(struct spop_writer *w, uint64_t stream_id, uint64_t frame_id, const uint8_t *actions,
               size_t len)
{
    spop_w_frame_begin(w, SPOP_FRAME_ACK, SPOP_FL_FIN, stream_id, frame_id);
    spop_w_bytes(w, actions, len);
    return spop_w_frame_end(w);
}

bool spop_data_eq(const struct spop_data *a, const struct spop_data *b)
{
    if (a->type != b->type) {
        return false;
    }
    switch (a->type) {
    case SPOP_T_NULL:
        return true;
    case SPOP_T_BOOL:
        return a->u.b == b->u.b;
    case SPOP_T_INT32:
        return a->u.i32 == b->u.i32;
    case SPOP_T_UINT32:
        return a->u.u32 == b->u.u32;
    case SPOP_T_INT64:
        return a->u.i64 == b->u.i64;
    case SPOP_T_UINT64:
        return a->u.u64 == b->u.u64;
    case SPOP_T_IPV4:
        return memcmp(a->u.ipv4, b->u.ipv4, 4) == 0;
    case SPOP_T_IPV6:
        return memcmp(a->u.ipv6, b->u.ipv6, 16) == 0;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        return a->u.str.len == b->u.str.len &&
               (a->u.str.len == 0 || memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0);
    default:
        return false;
    }
}
