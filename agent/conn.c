/* conn.c - one HAProxy SPOP connection: state machine, buffers, watchers.
 *
 * Owns the socket, its input/output buffers and the requests in flight on it.
 * Must not decode wire bytes itself (spop.c does) nor know what a handler does
 * (req.c dispatches).
 *
 *   socket --read 64K--> in buf --spop_frame_decode--> frames
 *     HELLO ------------> AGENT-HELLO ---------------------------.
 *     NOTIFY -> spop_notify_parse (decoded and validated once)    |
 *            -> req_new -> req_dispatch(decoded) -> handlers      |
 *                                 (sync now, or async later)      |
 *              req_done... -> (callback) conn_req_complete -> ACK +--> out buf
 *     HAPROXY-DISCONNECT -> AGENT-DISCONNECT(0) -> CLOSING        |
 *     protocol error ----> AGENT-DISCONNECT(st) -> CLOSING -------'
 *   out buf --one write per loop iteration (end of read, or ev_prepare)--> socket
 *   CLOSING: flush, shutdown(SHUT_WR), discard input until EOF or timer -> conn_free
 */
#include "conn.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "req_engine.h"
#include "spop.h"
#include "stats.h"
#include "util.h"

enum conn_state {
    CONN_HELLO = 0, /* waiting for HAPROXY-HELLO */
    CONN_READY,     /* NOTIFYs flow */
    CONN_DRAINING,  /* shutting down: no more reading, requests in flight finish */
    CONN_CLOSING,   /* DISCONNECT queued: flush, half-close, wait for EOF */
    CONN_STATE_COUNT
};

static const char *const state_names[] = {"hello", "ready", "draining", "closing"};
_Static_assert(ARRAY_SIZE(state_names) == CONN_STATE_COUNT, "state names");

struct conn {
    struct ev_loop *loop;
    int fd;
    enum conn_state state;
    ev_io rw, ww;
    ev_timer idle_w;
    ev_timer close_w;
    ev_prepare flush_w; /* flushes ACKs completed outside the read callback */
    struct buf in, out;
    uint32_t max_frame; /* ours before HELLO, the negotiated size after */
    bool healthcheck;
    bool in_read;       /* inside the read callback: it flushes at its end */
    bool broken;        /* the socket or a buffer failed: free at the next chance */
    bool wr_shut;       /* shutdown(SHUT_WR) done */
    struct req *reqs;   /* requests in flight */
    struct conn *prev, *next;
    char ident[72];
};

static struct conn *conns;
static unsigned nconns;
static uint32_t eng_max_frame = SPOP_DEFAULT_FRAME_SIZE;
static double eng_idle_s = 30.0;
static double eng_hello_s = 5.0; /* a connection that never says HELLO is closed */
static void (*shutdown_cb)(void);
static bool shutting_down;

static void conn_after(struct conn *c);
static void conn_close_with(struct conn *c, uint32_t status, const char *msg);

/* ---- settings ---------------------------------------------------------- */

void conn_configure(const struct cfg *cf)
{
    uint32_t mfs = cf->max_frame_size;
    if (mfs < SPOP_MIN_FRAME_SIZE) {
        mfs = SPOP_MIN_FRAME_SIZE;
    }
    if (mfs > SPOP_MAX_FRAME_SIZE) {
        mfs = SPOP_MAX_FRAME_SIZE;
    }
    eng_max_frame = mfs;
    eng_idle_s = cf->idle_timeout_ms > 0 ? (double)cf->idle_timeout_ms / 1000.0 : 0.0;
    eng_hello_s = (double)cf->hello_timeout_ms / 1000.0;
    /* A live connection keeps its frame size: its input buffer was sized for it. */
    for (struct conn *c = conns; c != NULL; c = c->next) {
        if (c->state == CONN_HELLO) {
            continue; /* its HELLO deadline stands */
        }
        c->idle_w.repeat = eng_idle_s;
        if (eng_idle_s > 0 && c->state != CONN_CLOSING) {
            ev_timer_again(c->loop, &c->idle_w);
        } else {
            ev_timer_stop(c->loop, &c->idle_w);
        }
    }
}

unsigned conn_count(void)
{
    return nconns;
}

/* ---- output ------------------------------------------------------------ */

/* Room for a frame of up to n payload bytes: prefix, header, varints. */
static uint8_t *out_reserve(struct conn *c, size_t n, size_t *cap)
{
    if (buf_reserve(&c->out, n + SPOP_LEN_SIZE + SPOP_FRAME_MIN_LEN + 2 * SPOP_VARINT_MAX) != 0) {
        log_err("%s: output buffer full (%zu bytes queued), dropping connection", c->ident,
                buf_len(&c->out));
        c->broken = true;
        return NULL;
    }
    *cap = buf_avail(&c->out);
    return buf_wptr(&c->out);
}

static void out_disconnect(struct conn *c, uint32_t status, const char *msg)
{
    size_t cap;
    uint8_t *p = out_reserve(c, 3 * 16 + SPOP_MAX_MSG_LEN, &cap);
    if (p == NULL) {
        return;
    }
    struct spop_writer w;
    /* Never bound by the negotiated size: a DISCONNECT is small and must go out. */
    spop_w_init(&w, p, cap, 0);
    if (spop_w_agent_disconnect(&w, status, msg) != 0) {
        log_err("%s: cannot encode AGENT-DISCONNECT", c->ident);
        c->broken = true;
        return;
    }
    buf_commit(&c->out, w.len);
    STATS_INC(spop_frames_out);
    STATS_INC_CODE(spop_disconnects_sent, status);
}

/* Write as much as the socket takes. -1 on a socket error. */
static int conn_flush(struct conn *c)
{
    while (buf_len(&c->out) > 0) {
        ssize_t n = send(c->fd, buf_rptr(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&c->ww)) {
                ev_io_start(c->loop, &c->ww);
            }
            return 0;
        }
        if (c->healthcheck || errno == EPIPE || errno == ECONNRESET) {
            log_debug("%s: write: %s", c->ident, strerror(errno));
        } else {
            log_warn("%s: write: %s", c->ident, strerror(errno));
        }
        return -1;
    }
    if (ev_is_active(&c->ww)) {
        ev_io_stop(c->loop, &c->ww);
    }
    return 0;
}

/* The end of every callback: flush, advance CLOSING/DRAINING, set the read
 * watcher for back-pressure, and free the connection when it is done. */
static void conn_after(struct conn *c)
{
    if (!c->broken && conn_flush(c) != 0) {
        c->broken = true;
    }
    if (c->broken) {
        conn_free(c);
        return;
    }
    if (c->state == CONN_DRAINING && c->reqs == NULL) {
        conn_close_with(c, SPOP_ST_NONE, "shutting down");
        if (c->broken || conn_flush(c) != 0) {
            conn_free(c);
            return;
        }
    }
    bool want_read;
    if (c->state == CONN_CLOSING) {
        if (buf_len(&c->out) == 0 && !c->wr_shut) {
            /* FIN after our last frame; keep reading so that unread input does
             * not turn our close into a reset that could destroy the frame. */
            shutdown(c->fd, SHUT_WR);
            c->wr_shut = true;
        }
        want_read = c->wr_shut;
    } else if (c->state == CONN_DRAINING) {
        want_read = false;
    } else if (ev_is_active(&c->rw)) {
        want_read = buf_len(&c->out) < CONN_OUT_HIGH_WATER;
    } else {
        want_read = buf_len(&c->out) < CONN_OUT_LOW_WATER;
    }
    if (want_read && !ev_is_active(&c->rw)) {
        ev_io_start(c->loop, &c->rw);
    } else if (!want_read && ev_is_active(&c->rw)) {
        ev_io_stop(c->loop, &c->rw);
    }
}

/* Queue AGENT-DISCONNECT and stop taking frames. The caller ends in
 * conn_after, which flushes and half-closes. */
static void conn_close_with(struct conn *c, uint32_t status, const char *msg)
{
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (status != SPOP_ST_NONE) {
        STATS_INC(proto_error);
        log_warn("%s: protocol error %u (%s): %s; disconnecting", c->ident, (unsigned)status,
                 spop_status_str(status), msg);
    } else {
        log_debug("%s: disconnecting: %s", c->ident, msg);
    }
    out_disconnect(c, status, msg);
    c->state = CONN_CLOSING;
    ev_timer_stop(c->loop, &c->idle_w);
    ev_timer_set(&c->close_w, CONN_CLOSE_TIMEOUT, 0.0);
    ev_timer_start(c->loop, &c->close_w);
}

/* req_complete_fn: every message of r is done; queue its ACK. req.c frees r
 * when this returns. */
static void conn_req_complete(struct req *r, const struct req_ack *ack, void *arg)
{
    struct conn *c = arg;
    size_t cap;
    uint8_t *p = NULL;
    if (c->state == CONN_CLOSING) {
        /* the DISCONNECT is queued: nothing may follow it */
        STATS_INC(ack_dropped);
    } else {
        p = out_reserve(c, ack->actions_len, &cap);
    }
    if (p != NULL) {
        struct spop_writer w;
        spop_w_init(&w, p, cap, c->max_frame);
        if (spop_w_ack(&w, ack->stream_id, ack->frame_id, ack->actions, ack->actions_len) == 0) {
            buf_commit(&c->out, w.len);
            STATS_INC(ack);
            STATS_INC(spop_frames_out);
        } else {
            log_err("%s: ACK does not fit %u bytes, dropped", req_ident(r), c->max_frame);
            STATS_INC(ack_dropped);
        }
    }
    req_unlink(&c->reqs, r);
    if (!c->in_read && !ev_is_active(&c->flush_w)) {
        ev_prepare_start(c->loop, &c->flush_w);
    }
}

/* ---- frames ------------------------------------------------------------ */

/* The decoded NOTIFY, shared by every connection: dispatch is synchronous and
 * handlers copy what they keep, so one set of arrays serves every frame. It
 * starts in static storage and grows on the heap for a frame with more
 * messages or args than ever before; it never shrinks (conn_free_all frees it). */
#define CONN_NOTIFY_MSGS 16u
#define CONN_NOTIFY_KVS 128u
static struct spop_msg decoded_msgs0[CONN_NOTIFY_MSGS];
static struct spop_kv decoded_kvs0[CONN_NOTIFY_KVS];
static struct spop_notify decoded = {decoded_msgs0, CONN_NOTIFY_MSGS, decoded_kvs0,
                                     CONN_NOTIFY_KVS, 0, 0};

/* Grow `decoded` to hold nmsgs messages and nkvs args. 0 or -1 (ENOMEM; the
 * arrays it had stay). */
static int decoded_grow(size_t nmsgs, size_t nkvs)
{
    if (nmsgs > decoded.msgs_cap) {
        struct spop_msg *m = decoded.msgs == decoded_msgs0 ? NULL : decoded.msgs;
        m = realloc(m, nmsgs * sizeof(*m));
        if (m == NULL) {
            return -1;
        }
        decoded.msgs = m;
        decoded.msgs_cap = nmsgs;
    }
    if (nkvs > decoded.kvs_cap) {
        struct spop_kv *k = decoded.kvs == decoded_kvs0 ? NULL : decoded.kvs;
        k = realloc(k, nkvs * sizeof(*k));
        if (k == NULL) {
            return -1;
        }
        decoded.kvs = k;
        decoded.kvs_cap = nkvs;
    }
    return 0;
}

static void decoded_release(void)
{
    if (decoded.msgs != decoded_msgs0) {
        free(decoded.msgs);
    }
    if (decoded.kvs != decoded_kvs0) {
        free(decoded.kvs);
    }
    decoded = (struct spop_notify){decoded_msgs0, CONN_NOTIFY_MSGS, decoded_kvs0,
                                   CONN_NOTIFY_KVS, 0, 0};
}

/* Decode f's message list into `decoded`, growing it once if the frame needs
 * more room: OK, MALFORMED, or NO_ROOM when memory ran out. */
static enum spop_notify_result decode_notify(const struct spop_frame *f)
{
    enum spop_notify_result rc = spop_notify_parse(f->payload, f->payload_len, &decoded);
    if (rc == SPOP_NOTIFY_NO_ROOM) {
        if (decoded_grow(decoded.nmsgs, decoded.nkvs) != 0) {
            return SPOP_NOTIFY_NO_ROOM;
        }
        rc = spop_notify_parse(f->payload, f->payload_len, &decoded);
    }
    return rc;
}

static void on_hello(struct conn *c, const struct spop_frame *f)
{
    if (f->type != SPOP_FRAME_HAPROXY_HELLO) {
        conn_close_with(c, SPOP_ST_INVALID, "expected HAPROXY-HELLO first");
        return;
    }
    struct spop_hello h;
    if (spop_hello_parse(f->payload, f->payload_len, &h) != 0) {
        conn_close_with(c, SPOP_ST_INVALID, "malformed HAPROXY-HELLO");
        return;
    }
    if (!h.has_versions) {
        conn_close_with(c, SPOP_ST_NO_VSN, "supported-versions missing");
        return;
    }
    if (!spop_list_has(h.versions, SPOP_VERSION)) {
        conn_close_with(c, SPOP_ST_BAD_VSN, "only version " SPOP_VERSION " is supported");
        return;
    }
    if (!h.has_frame_size) {
        conn_close_with(c, SPOP_ST_NO_FRAME_SIZE, "max-frame-size missing");
        return;
    }
    if (h.max_frame_size < SPOP_MIN_FRAME_SIZE) {
        conn_close_with(c, SPOP_ST_BAD_FRAME_SIZE, "max-frame-size below 256");
        return;
    }
    if (!h.has_caps) {
        conn_close_with(c, SPOP_ST_NO_CAP, "capabilities missing");
        return;
    }
    uint32_t mfs = eng_max_frame < h.max_frame_size ? eng_max_frame : h.max_frame_size;
    size_t cap;
    uint8_t *p = out_reserve(c, 128, &cap);
    if (p == NULL) {
        return;
    }
    struct spop_writer w;
    spop_w_init(&w, p, cap, mfs);
    if (spop_w_agent_hello(&w, mfs, "pipelining") != 0) {
        conn_close_with(c, SPOP_ST_UNKNOWN, "cannot encode AGENT-HELLO");
        return;
    }
    buf_commit(&c->out, w.len);
    c->max_frame = mfs;
    c->healthcheck = h.healthcheck;
    c->state = CONN_READY;
    /* from now on the idle timer; until now, bytes did not push the HELLO deadline */
    c->idle_w.repeat = eng_idle_s;
    if (eng_idle_s > 0) {
        ev_timer_again(c->loop, &c->idle_w);
    } else {
        ev_timer_stop(c->loop, &c->idle_w);
    }
    STATS_INC(hello);
    STATS_INC(spop_frames_out);
    if (h.healthcheck) {
        STATS_INC(hello_healthcheck);
    }
    log_debug("%s: HELLO ok, max-frame-size %u (theirs %u)%s", c->ident, mfs, h.max_frame_size,
              h.healthcheck ? ", health check" : "");
}

static void on_notify(struct conn *c, const struct spop_frame *f)
{
    if (!(f->flags & SPOP_FL_FIN)) {
        conn_close_with(c, SPOP_ST_FRAG_NOT_SUPPORTED, "fragmented NOTIFY not supported");
        return;
    }
    /* Decode and validate every message before any handler runs: a bad frame
     * must not half-execute. */
    enum spop_notify_result rc = decode_notify(f);
    if (rc == SPOP_NOTIFY_MALFORMED) {
        log_hexdump(LOG_LVL_DEBUG, c->ident, f->payload,
                    f->payload_len < 64 ? f->payload_len : 64);
        conn_close_with(c, SPOP_ST_INVALID, "malformed NOTIFY message list");
        return;
    }
    if (rc != SPOP_NOTIFY_OK) {
        conn_close_with(c, SPOP_ST_RES, "out of memory");
        return;
    }
    STATS_INC(notify);
    struct req *r = req_new(conn_req_complete, c, c->ident, f->stream_id, f->frame_id,
                            c->max_frame);
    if (r == NULL) {
        conn_close_with(c, SPOP_ST_RES, "out of memory");
        return;
    }
    req_link(&c->reqs, r);
    req_dispatch(r, &decoded);
}

static void on_frame(struct conn *c, const struct spop_frame *f)
{
    if (log_enabled(LOG_LVL_DEBUG)) {
        log_debug("%s: frame type %u flags %#x sid %llu fid %llu len %zu", c->ident, f->type,
                  (unsigned)f->flags, (unsigned long long)f->stream_id,
                  (unsigned long long)f->frame_id, f->payload_len);
    }
    if (c->state == CONN_HELLO) {
        on_hello(c, f);
        return;
    }
    switch (f->type) {
    case SPOP_FRAME_NOTIFY:
        on_notify(c, f);
        break;
    case SPOP_FRAME_HAPROXY_DISCONNECT: {
        STATS_INC(haproxy_disconnect);
        struct spop_disconnect d = {0};
        bool parsed = spop_disconnect_parse(f->payload, f->payload_len, &d) == 0;
        STATS_INC_CODE(spop_disconnects_received, parsed && d.has_status ? d.status : 0);
        if (parsed && d.has_status && d.status != SPOP_ST_NONE) {
            log_info("%s: HAProxy disconnects: status %u (%s) '%.*s'", c->ident,
                     (unsigned)d.status, spop_status_str(d.status), (int)d.message.len,
                     d.message.ptr);
        }
        conn_close_with(c, SPOP_ST_NONE, "bye");
        break;
    }
    case SPOP_FRAME_UNSET:
        conn_close_with(c, SPOP_ST_FRAG_NOT_SUPPORTED, "frame type UNSET: fragmentation");
        break;
    case SPOP_FRAME_HAPROXY_HELLO:
        conn_close_with(c, SPOP_ST_INVALID, "second HAPROXY-HELLO");
        break;
    default:
        log_debug("%s: frame type %u skipped", c->ident, f->type);
        break;
    }
}

/* Handle every complete frame in the input buffer. */
static void conn_parse(struct conn *c)
{
    while (c->state == CONN_HELLO || c->state == CONN_READY) {
        struct spop_frame f;
        enum spop_status st = SPOP_ST_INVALID;
        ssize_t n = spop_frame_decode(buf_rptr(&c->in), buf_len(&c->in), c->max_frame, &f, &st);
        if (n == 0) {
            return;
        }
        if (n < 0) {
            size_t len = buf_len(&c->in);
            log_hexdump(LOG_LVL_DEBUG, c->ident, buf_rptr(&c->in), len < 64 ? len : 64);
            conn_close_with(c, st, st == SPOP_ST_TOO_BIG ? "frame is too big" : "malformed frame");
            return;
        }
        STATS_INC(spop_frames_in);
        /* a whole frame is activity; bytes of one that never completes are not */
        if (eng_idle_s > 0 && c->state == CONN_READY) {
            ev_timer_again(c->loop, &c->idle_w);
        }
        on_frame(c, &f);
        buf_consume(&c->in, (size_t)n);
        if (c->broken) {
            return;
        }
    }
}

/* ---- callbacks --------------------------------------------------------- */

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct conn *c = container_of(w, struct conn, rw);
    if (c->state == CONN_CLOSING) {
        /* discard until EOF; our DISCONNECT is already on its way */
        uint8_t sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
            conn_free(c);
        }
        return;
    }
    /* Frames never exceed max_frame and complete ones are consumed, so a chunk
     * always fits under the buffer's cap. */
    if (buf_reserve(&c->in, CONN_READ_CHUNK) != 0) {
        log_err("%s: input buffer full", c->ident);
        conn_free(c);
        return;
    }
    ssize_t n = recv(c->fd, buf_wptr(&c->in), buf_avail(&c->in), 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        if (n == 0) {
            log_debug("%s: peer closed (%s, %zu bytes unparsed)", c->ident,
                      state_names[c->state], buf_len(&c->in));
        } else if (c->healthcheck || errno == ECONNRESET) {
            log_debug("%s: read: %s", c->ident, strerror(errno));
        } else {
            log_warn("%s: read: %s", c->ident, strerror(errno));
        }
        conn_free(c);
        return;
    }
    buf_commit(&c->in, (size_t)n); /* the timers move on whole frames (conn_parse) */
    c->in_read = true;
    conn_parse(c);
    c->in_read = false;
    conn_after(c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    conn_after(container_of(w, struct conn, ww));
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    UNUSED(revents);
    ev_prepare_stop(loop, w);
    conn_after(container_of(w, struct conn, flush_w));
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct conn *c = container_of(w, struct conn, idle_w);
    if (c->state == CONN_HELLO) {
        STATS_INC(conn_hello_timeout);
        log_info("%s: no HAPROXY-HELLO within %.1f s, closing", c->ident, eng_hello_s);
        conn_close_with(c, SPOP_ST_TIMEOUT, "hello timeout");
        conn_after(c);
        return;
    }
    if (c->reqs != NULL) {
        ev_timer_again(c->loop, &c->idle_w); /* waiting on us is not idleness */
        return;
    }
    STATS_INC(conn_idle_timeout);
    log_info("%s: idle for %.1f s, closing", c->ident, eng_idle_s);
    conn_close_with(c, SPOP_ST_TIMEOUT, "idle timeout");
    conn_after(c);
}

static void close_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct conn *c = container_of(w, struct conn, close_w);
    log_debug("%s: close timer expired (%zu bytes unsent)", c->ident, buf_len(&c->out));
    conn_free(c);
}

/* ---- life cycle -------------------------------------------------------- */

struct conn *conn_new(struct ev_loop *loop, int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto err_close_fd;
    }
    size_t in_max = (size_t)eng_max_frame + SPOP_LEN_SIZE + CONN_READ_CHUNK;
    if (buf_init(&c->in, CONN_READ_CHUNK, in_max) != 0) {
        goto err_free_conn;
    }
    /* Generous: reading stops at the high-water mark, but async requests
     * already in flight may still complete. */
    if (buf_init(&c->out, CONN_READ_CHUNK, 64u * 1024u * 1024u) != 0) {
        goto err_free_in;
    }
    c->loop = loop;
    c->fd = fd;
    c->state = CONN_HELLO;
    c->max_frame = eng_max_frame;
    snprintf(c->ident, sizeof(c->ident), "%s fd=%d", peer, fd);
    ev_io_init(&c->rw, read_cb, fd, EV_READ);
    ev_io_init(&c->ww, write_cb, fd, EV_WRITE);
    ev_init(&c->idle_w, idle_cb);
    c->idle_w.repeat = eng_hello_s; /* until HELLO: one deadline, not reset by bytes */
    ev_init(&c->close_w, close_cb);
    ev_prepare_init(&c->flush_w, flush_cb);
    ev_io_start(loop, &c->rw);
    ev_timer_again(loop, &c->idle_w);
    c->next = conns;
    if (conns != NULL) {
        conns->prev = c;
    }
    conns = c;
    nconns++;
    STATS_INC(conn_accepted);
    log_debug("%s: connection accepted (%u live)", c->ident, nconns);
    return c;

err_free_in:
    buf_release(&c->in);
err_free_conn:
    free(c);
err_close_fd:
    log_err("connection from %s: out of memory", peer);
    close(fd);
    return NULL;
}

void conn_free(struct conn *c)
{
    ev_io_stop(c->loop, &c->rw);
    ev_io_stop(c->loop, &c->ww);
    ev_timer_stop(c->loop, &c->idle_w);
    ev_timer_stop(c->loop, &c->close_w);
    ev_prepare_stop(c->loop, &c->flush_w);
    close(c->fd);
    unsigned orphaned = 0;
    while (c->reqs != NULL) {
        struct req *r = c->reqs;
        req_unlink(&c->reqs, r);
        req_orphan(r);
        orphaned++;
    }
    if (orphaned > 0) {
        log_info("%s: closed with %u requests in flight", c->ident, orphaned);
    }
    buf_release(&c->in);
    buf_release(&c->out);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    nconns--;
    STATS_INC(conn_closed);
    log_debug("%s: connection closed (%u live)", c->ident, nconns);
    free(c);
    if (shutting_down && nconns == 0 && shutdown_cb != NULL) {
        void (*cb)(void) = shutdown_cb;
        shutdown_cb = NULL;
        cb();
    }
}

void conn_shutdown_all(void (*on_idle)(void))
{
    shutting_down = true;
    shutdown_cb = on_idle;
    if (nconns == 0) {
        shutdown_cb = NULL;
        if (on_idle != NULL) {
            on_idle();
        }
        return;
    }
    struct conn *c = conns;
    while (c != NULL) {
        struct conn *next = c->next; /* conn_after may free c */
        if (c->state == CONN_HELLO || c->state == CONN_READY) {
            c->state = CONN_DRAINING;
        }
        conn_after(c);
        c = next;
    }
}

void conn_free_all(void)
{
    while (conns != NULL) {
        struct conn *c = conns;
        if (c->state != CONN_CLOSING && !c->broken) {
            /* best effort: tell HAProxy why, if the socket takes it now */
            out_disconnect(c, SPOP_ST_NONE, "shutting down");
            (void)conn_flush(c);
        }
        conn_free(c);
    }
    decoded_release();
}
