/* spop.h - the SPOP 2.0 codec, as HAProxy 2.6 and 3.x speak it.
 *
 * Owns the wire format: frame headers, varints, typed data, KV-lists, NOTIFY
 * message lists and ACK action lists. Pure code: no sockets, no libev, no
 * allocation. Decoders return views ({ptr, len}) into the caller's bytes and
 * never read past the end they are given; encoders write through a writer whose
 * failure sticks and which refuses to exceed the negotiated max-frame-size.
 */
#ifndef STICKYD_SPOP_H
#define STICKYD_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPOP_VERSION "2.0"
#define SPOP_MIN_FRAME_SIZE 256u        /* spec: peers support at least 256 */
#define SPOP_DEFAULT_FRAME_SIZE 16380u  /* HAProxy's default max-frame-size */
#define SPOP_MAX_FRAME_SIZE (1u << 24)  /* our hard ceiling, whatever is offered */
#define SPOP_LEN_SIZE 4u                /* the big-endian length prefix */
#define SPOP_VARINT_MAX 10u             /* a 64-bit varint never needs more */
#define SPOP_MAX_MSG_LEN 255u           /* DISCONNECT message cap */

/* The fixed part of a frame after the length: type(1) + flags(4) + two varints
 * of at least one byte each. */
#define SPOP_FRAME_MIN_LEN 7u

enum spop_frame_type {
    SPOP_FRAME_UNSET = 0,
    SPOP_FRAME_HAPROXY_HELLO = 1,
    SPOP_FRAME_HAPROXY_DISCONNECT = 2,
    SPOP_FRAME_NOTIFY = 3,
    SPOP_FRAME_AGENT_HELLO = 101,
    SPOP_FRAME_AGENT_DISCONNECT = 102,
    SPOP_FRAME_ACK = 103,
};

#define SPOP_FL_FIN 0x00000001u
#define SPOP_FL_ABORT 0x00000002u

/* Typed data: the type sits in the low nibble, flags in the high nibble. */
enum spop_type {
    SPOP_T_NULL = 0,
    SPOP_T_BOOL = 1,
    SPOP_T_INT32 = 2,
    SPOP_T_UINT32 = 3,
    SPOP_T_INT64 = 4,
    SPOP_T_UINT64 = 5,
    SPOP_T_IPV4 = 6,
    SPOP_T_IPV6 = 7,
    SPOP_T_STRING = 8,
    SPOP_T_BINARY = 9,
    SPOP_T_COUNT
};
#define SPOP_T_MASK 0x0fu
#define SPOP_T_FL_TRUE 0x10u /* BOOL true: 0x11 */

/* Variable scopes of SET-VAR / UNSET-VAR. */
enum spop_scope {
    SPOP_SCOPE_PROC = 0,
    SPOP_SCOPE_SESS = 1,
    SPOP_SCOPE_TXN = 2,
    SPOP_SCOPE_REQ = 3,
    SPOP_SCOPE_RES = 4,
    SPOP_SCOPE_COUNT
};

enum spop_action {
    SPOP_ACT_SET_VAR = 1,   /* 3 args: scope, name, value */
    SPOP_ACT_UNSET_VAR = 2, /* 2 args: scope, name */
};

/* DISCONNECT status codes (SPOE.txt section 3.2.9). */
enum spop_status {
    SPOP_ST_NONE = 0,
    SPOP_ST_IO = 1,
    SPOP_ST_TIMEOUT = 2,
    SPOP_ST_TOO_BIG = 3,
    SPOP_ST_INVALID = 4,
    SPOP_ST_NO_VSN = 5,
    SPOP_ST_NO_FRAME_SIZE = 6,
    SPOP_ST_NO_CAP = 7,
    SPOP_ST_BAD_VSN = 8,
    SPOP_ST_BAD_FRAME_SIZE = 9,
    SPOP_ST_FRAG_NOT_SUPPORTED = 10,
    SPOP_ST_INTERLACED_FRAMES = 11,
    SPOP_ST_FRAMEID_NOTFOUND = 12,
    SPOP_ST_RES = 13,
    SPOP_ST_UNKNOWN = 99,
};

/* A borrowed view: valid as long as the bytes it points into. */
struct spop_str {
    const char *ptr;
    size_t len;
};

struct spop_data {
    enum spop_type type;
    union {
        bool b;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        uint8_t ipv4[4];
        uint8_t ipv6[16];
        struct spop_str str; /* STRING and BINARY */
    } u;
};

/* One decoded frame. payload points into the caller's buffer. */
struct spop_frame {
    uint8_t type;
    uint32_t flags;
    uint64_t stream_id;
    uint64_t frame_id;
    const uint8_t *payload;
    size_t payload_len;
};

/* A read cursor over [p, end). Decoders move p only on success. */
struct spop_reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* One argument of a NOTIFY message: name (may be empty) and typed value, both
 * views into the frame. */
struct spop_kv {
    struct spop_str key;
    struct spop_data val;
};

/* One message of a NOTIFY frame, decoded: its nargs arguments in wire order.
 * Everything points into the frame or into the spop_notify that holds it. */
struct spop_msg {
    struct spop_str name;
    unsigned nargs;
    const struct spop_kv *args;
};

/* A NOTIFY payload decoded once, for the engine's check and every handler.
 * The caller provides the arrays (no allocation here) and their capacities;
 * spop_notify_parse fills nmsgs messages whose args are slices of kvs. */
struct spop_notify {
    struct spop_msg *msgs;
    size_t msgs_cap;
    struct spop_kv *kvs;
    size_t kvs_cap;
    size_t nmsgs; /* messages decoded (on NO_ROOM: how many the payload holds) */
    size_t nkvs;  /* arguments decoded, all messages together (same) */
};

/* The parts of a HAPROXY-HELLO the agent cares about. */
struct spop_hello {
    bool has_versions, has_frame_size, has_caps;
    struct spop_str versions; /* "supported-versions", e.g. "2.0" */
    uint32_t max_frame_size;
    struct spop_str caps;      /* "capabilities", e.g. "pipelining,async" */
    bool healthcheck;
    struct spop_str engine_id; /* may be empty */
};

/* The parts of a DISCONNECT frame (either direction). */
struct spop_disconnect {
    bool has_status;
    uint32_t status;
    struct spop_str message;
};

/* ---- decoding -------------------------------------------------------------
 * Each return means one thing, and the name says which convention applies:
 *  - spop_*_decode (a varint, a frame, from bytes that may still be arriving):
 *    bytes consumed (> 0), 0 when more bytes are needed, -1 when malformed.
 *  - spop_read_* (one item at a cursor over complete bytes): true when read and
 *    the cursor advanced, false when malformed (cursor left alone).
 *  - spop_next_* (iterate a list): an enum spop_next, END / ITEM / MALFORMED.
 *  - spop_*_parse (a whole payload): 0 when parsed, -1 when malformed; only
 *    spop_notify_parse, which decodes into the caller's arrays, also says when
 *    they are too small, with an enum spop_notify_result.
 * None of them reads past the end it is given. */

/* The result of a spop_next_* iterator. */
enum spop_next {
    SPOP_NEXT_END = 0,   /* the reader is at its end: nothing read */
    SPOP_NEXT_ITEM,      /* one item read; the reader moved past it */
    SPOP_NEXT_MALFORMED, /* the bytes at the reader are no item; the reader is left alone */
};

/* Decode a varint from [p, end). Bounded to SPOP_VARINT_MAX bytes: a varint that
 * is not finished by then is malformed even if more bytes follow, and so is a
 * 10th byte that would carry the value past 64 bits. 0 (need more) only when
 * end comes first. *out is written on success only. */
int spop_varint_decode(const uint8_t *p, const uint8_t *end, uint64_t *out)
    __attribute__((warn_unused_result));

/* Decode one complete frame from the start of buf (length prefix included).
 * A frame whose announced length exceeds max_frame_size is malformed with
 * *st = SPOP_ST_TOO_BIG before any of its body is needed; a body too short for
 * type/flags/ids, or ids whose varints overrun the frame, is SPOP_ST_INVALID.
 * Returns SPOP_LEN_SIZE + length when the whole frame is in buf.
 * Details: max_frame_size bounds the length field's value (the prefix is not
 * counted), 0 meaning SPOP_MAX_FRAME_SIZE; TOO_BIG is checked before the
 * minimum length; *st is written only when -1 is returned; type and flags are
 * not checked here (unknown types are the caller's policy). */
ssize_t spop_frame_decode(const uint8_t *buf, size_t len, uint32_t max_frame_size,
                          struct spop_frame *f, enum spop_status *st)
    __attribute__((warn_unused_result));

/* Typed data at r->p. True, r advanced, on success; false when truncated or
 * of a reserved type (10..15, which cannot be sized). The high-nibble flags
 * matter only for BOOL (0x10 = true). INT32/INT64 take the two's complement
 * as HAProxy sends it (-1 is ten bytes); an INT32 outside int32 or a UINT32
 * above UINT32_MAX is malformed. r is left alone on failure. */
bool spop_read_data(struct spop_reader *r, struct spop_data *out)
    __attribute__((warn_unused_result));

/* Next KV entry (raw-string key, typed value). */
enum spop_next spop_next_kv(struct spop_reader *r, struct spop_str *key, struct spop_data *val)
    __attribute__((warn_unused_result));

/* The result of spop_notify_parse. */
enum spop_notify_result {
    SPOP_NOTIFY_OK = 0,    /* every message decoded into n */
    SPOP_NOTIFY_MALFORMED, /* the message list is not valid SPOP: nothing may run */
    SPOP_NOTIFY_NO_ROOM,   /* valid, but n's arrays are too small: n->nmsgs and
                            * n->nkvs say how much it needs; grow and parse again */
};

/* Decode and validate a whole NOTIFY payload [p, p + len) in one walk, into the
 * caller's arrays of n (msgs_cap, kvs_cap; either may be 0). Names and string
 * values are views into [p, p + len), args views into n->kvs: valid while both
 * are. Messages and arg names may be empty; an empty payload is OK with no
 * message. On MALFORMED the contents of n are unspecified. */
enum spop_notify_result spop_notify_parse(const uint8_t *p, size_t len, struct spop_notify *n)
    __attribute__((warn_unused_result));

/* Parse a HAPROXY-HELLO payload; unknown keys are skipped. 0 or -1. Missing
 * keys are reported through the has_* flags, not as errors. A known key of the
 * wrong type is malformed (-1); max-frame-size may be any integer type that
 * fits a uint32 (HAProxy sends UINT32). Views point into [p, p + len). */
int spop_hello_parse(const uint8_t *p, size_t len, struct spop_hello *h)
    __attribute__((warn_unused_result));

/* Parse a DISCONNECT payload; unknown keys skipped. 0 or -1. */
int spop_disconnect_parse(const uint8_t *p, size_t len, struct spop_disconnect *d)
    __attribute__((warn_unused_result));

/* Parse an ACK payload action by action (used by the benchmark and tests).
 * Fills the out-params on ITEM. For UNSET-VAR, *val is set to type NULL. An
 * unknown action type, a wrong arg count (SET-VAR 3, UNSET-VAR 2) or a scope
 * > SPOP_SCOPE_RES is MALFORMED. */
enum spop_next spop_next_action(struct spop_reader *r, uint8_t *type, uint8_t *scope,
                                struct spop_str *name, struct spop_data *val)
    __attribute__((warn_unused_result));

/* True when the comma-separated list `list` contains `word` (spaces ignored). */
bool spop_list_has(struct spop_str list, const char *word);

/* Two typed values equal: same type and same value (bytes for STRING/BINARY,
 * the flag for BOOL). Pure; used by tests and the fuzz round trips. */
bool spop_data_eq(const struct spop_data *a, const struct spop_data *b);

/* Two views equal / a view equal to a C string. */
bool spop_str_eq(struct spop_str a, const char *s);

/* Canonical name of a status code, for logs ("frame is too big", ...). */
const char *spop_status_str(uint32_t status);

/* ---- encoding -------------------------------------------------------------
 * A writer appends to [buf, buf + cap). Any put that does not fit sets
 * `failed`, which sticks: chain the puts and check once. When a frame is open,
 * its length may not exceed `max_frame` either (the length field's value:
 * type + flags + ids + payload, not the 4-byte prefix). After a failure the
 * bytes in buf are garbage: never commit w.len of a failed writer. The codec
 * encodes an ACK with an empty action list if asked to: never sending one
 * (HAProxy 3.1) is req.c's policy. Values of an unknown type or a scope
 * outside enum spop_scope fail the writer. */
struct spop_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    size_t frame_start; /* offset of the open frame's length prefix */
    uint32_t max_frame; /* 0: no frame limit beyond cap */
    bool in_frame;
    bool failed;
};

void spop_w_init(struct spop_writer *w, uint8_t *buf, size_t cap, uint32_t max_frame);

/* Encode v into out (at least SPOP_VARINT_MAX bytes); returns the length. */
size_t spop_varint_encode(uint64_t v, uint8_t *out);

void spop_w_bytes(struct spop_writer *w, const void *p, size_t n);
void spop_w_u8(struct spop_writer *w, uint8_t v);
void spop_w_varint(struct spop_writer *w, uint64_t v);
void spop_w_str(struct spop_writer *w, const char *p, size_t n); /* varint length + bytes */
void spop_w_data(struct spop_writer *w, const struct spop_data *d);
void spop_w_kv(struct spop_writer *w, const char *key, const struct spop_data *d);

/* SET-VAR / UNSET-VAR action entries for an ACK payload. */
void spop_w_set_var(struct spop_writer *w, enum spop_scope scope, const char *name, size_t name_len,
                    const struct spop_data *val);
void spop_w_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      size_t name_len);

/* A NOTIFY message header: name and arg count; the caller then puts nargs KVs.
 * Used by the benchmark client and tests. */
void spop_w_msg(struct spop_writer *w, const char *name, size_t name_len, uint8_t nargs);

/* Open a frame: reserve the length prefix, put type, flags and ids. */
void spop_w_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                        uint64_t frame_id);

/* Close the open frame: fill in its length. Returns 0, or -1 when the writer
 * failed (too big for cap or max_frame, or no frame open). */
int spop_w_frame_end(struct spop_writer *w) __attribute__((warn_unused_result));

/* Whole frames in one call, for the connection engine. Each returns 0 or -1
 * (the writer failed). */
int spop_w_agent_hello(struct spop_writer *w, uint32_t max_frame_size, const char *caps)
    __attribute__((warn_unused_result));
/* message is truncated to SPOP_MAX_MSG_LEN bytes. */
int spop_w_agent_disconnect(struct spop_writer *w, uint32_t status, const char *message)
    __attribute__((warn_unused_result));
/* An ACK frame whose action list is the already-encoded bytes [actions, +len). */
int spop_w_ack(struct spop_writer *w, uint64_t stream_id, uint64_t frame_id, const uint8_t *actions,
               size_t len) __attribute__((warn_unused_result));

/* Convenience constructors for typed values. */
static inline struct spop_data spop_d_str(const char *p, size_t n)
{
    struct spop_data d = {.type = SPOP_T_STRING};
    d.u.str.ptr = p;
    d.u.str.len = n;
    return d;
}
static inline struct spop_data spop_d_u32(uint32_t v)
{
    struct spop_data d = {.type = SPOP_T_UINT32};
    d.u.u32 = v;
    return d;
}
static inline struct spop_data spop_d_i64(int64_t v)
{
    struct spop_data d = {.type = SPOP_T_INT64};
    d.u.i64 = v;
    return d;
}
static inline struct spop_data spop_d_bool(bool v)
{
    struct spop_data d = {.type = SPOP_T_BOOL};
    d.u.b = v;
    return d;
}

#endif
