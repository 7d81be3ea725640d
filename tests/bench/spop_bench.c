/* spop_bench.c - SPOP load generator: talks to stickyd exactly as HAProxy does.
 *
 * Opens N connections, says HAPROXY-HELLO on each and checks the AGENT-HELLO, then
 * keeps up to D NOTIFY frames in flight per connection (closed loop) or sends them
 * at a fixed rate (open loop), matches every ACK to its NOTIFY by (stream-id,
 * frame-id) and records NOTIFY->ACK latency in a log-linear histogram. Frames are
 * built and parsed with the project's codec (spop.h) only. One thread, raw epoll
 * plus a timerfd (libev's epoll backend sleeps in whole milliseconds, too coarse
 * for pacing an open loop).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spop.h"

#define NS_PER_SEC 1000000000LL
#define MAX_DEPTH 4096u
#define MAX_CONNS 1024u
#define MAX_ARGS 32u
#define WBUF_CAP (256u * 1024u)
#define READ_CHUNK (64u * 1024u)
#define DRAIN_NS (2 * NS_PER_SEC) /* in-flight frames get this long after the run */
#define CLOSE_NS (1 * NS_PER_SEC) /* AGENT-DISCONNECT gets this long after ours */
#define SID_RING 1024u            /* session ids learned from ACKs, for -k */
#define SID_MAX 256u
#define TALLY_MAX 16u /* distinct values of the -V variable */
#define TALLY_LEN 32u

/* ---- latency histogram ------------------------------------------------------
 * HDR-style log-linear: values below 2^(S+1) ns have their own bucket; above,
 * each power of two is split into 2^S buckets, so a recorded value is known to
 * within 1/2^S (0.8% for S = 7) whatever its magnitude, in a fixed 7 KiB table.
 * Percentiles walk the table once: no sample is stored or sorted. */
#define H_SUB_BITS 7u
#define H_SUB (1u << H_SUB_BITS)
#define H_BUCKETS ((65u - H_SUB_BITS) << H_SUB_BITS)

struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t total;
    uint64_t max;
    uint64_t min;
    long double sum;
};

static unsigned hist_index(uint64_t v)
{
    if (v < (2u * H_SUB)) {
        return (unsigned)v;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_SUB_BITS;
    return (shift << H_SUB_BITS) + (unsigned)(v >> shift);
}

/* Highest value that falls in bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    if (idx < 2u * H_SUB) {
        return idx;
    }
    unsigned shift = (idx >> H_SUB_BITS) - 1u;
    uint64_t top = idx - (shift << H_SUB_BITS);
    return ((top + 1u) << shift) - 1u;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    if (h->total == 0 || v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
    h->total++;
    h->sum += (long double)v;
}

/* Value at quantile q (0 < q <= 1): the upper edge of the bucket holding the
 * ceil(q * total)-th smallest sample, never above the exact maximum. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)ceil(q * (double)h->total);
    if (want < 1) {
        want = 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t v = hist_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---- options ------------------------------------------------------------- */

/* One argument of the NOTIFY message. A value containing "%n" is rebuilt for
 * every frame from the frame's global sequence number (unique uids, spread
 * source addresses); kind SID takes a session id learned from an earlier ACK
 * with probability -k, and is NULL otherwise. */
enum arg_kind { ARG_FIXED = 0, ARG_SEQ, ARG_SID, ARG_KIND_COUNT };

struct arg_spec {
    char *name;
    enum arg_kind kind;
    struct spop_data val; /* ARG_FIXED; for ARG_SEQ, the type */
    char *tmpl;           /* ARG_SEQ strings: text with one "%n" */
};

struct opts {
    const char *host;
    unsigned port;
    const char *unix_path;
    unsigned conns;
    unsigned depth;
    double duration;
    double warmup;
    double rate; /* 0: closed loop */
    unsigned tick_us;
    const char *msg;
    struct arg_spec args[MAX_ARGS];
    unsigned nargs;
    bool args_given;
    const char *backend;
    const char *sid;
    const char *inst;
    unsigned sid_reuse_pct;
    const char *sid_var;
    const char *tally_var;
    long agent_pid;
    bool machine;
    const char *label;
    uint32_t max_frame;
    const char *engine_id;
    bool quiet;
};

static struct opts o = {
    .host = "127.0.0.1",
    .conns = 4,
    .depth = 20,
    .duration = 5.0,
    .warmup = 1.0,
    .tick_us = 100,
    .msg = "noop",
    .backend = "ws",
    .inst = "bench",
    .sid_var = "sid",
    .max_frame = SPOP_DEFAULT_FRAME_SIZE,
    .engine_id = "spop-bench-0000-0000-000000000000",
};

/* ---- connections --------------------------------------------------------- */

struct slot {
    uint64_t stream_id;
    uint64_t frame_id;
    int64_t t_sent;
    bool busy;
};

enum bc_state {
    BC_HELLO = 0, /* HAPROXY-HELLO sent, waiting for AGENT-HELLO */
    BC_READY,     /* NOTIFY / ACK */
    BC_CLOSING,   /* HAPROXY-DISCONNECT sent, waiting for AGENT-DISCONNECT or EOF */
    BC_DONE,      /* fd closed */
    BC_STATE_COUNT
};

struct bconn {
    int fd;
    unsigned idx;
    enum bc_state st;
    uint32_t max_frame; /* negotiated: what the agent accepts */
    uint8_t *rbuf;
    size_t rcap, rlen;
    uint8_t *wbuf;
    size_t wlen, woff;
    bool want_out;
    bool touched; /* has unflushed frames queued this round */
    struct slot *slots;
    unsigned *freelist;
    unsigned nfree;
    uint64_t seq; /* frames sent on this connection */
};

struct counters {
    uint64_t sent;         /* NOTIFY frames written (whole run) */
    uint64_t acked;        /* ACKs matched (whole run) */
    uint64_t acked_window; /* ACKs matched during the measured window */
    uint64_t unmatched;    /* ACK for no frame in flight, or wrong ids */
    uint64_t bad_acks;     /* ACK without FIN, malformed or empty action list */
    uint64_t empty_acks;   /* ACK with no action at all (HAProxy 3.1 stalls on those) */
    uint64_t bad_frames;   /* undecodable or unexpected frames */
    uint64_t disconnects;  /* AGENT-DISCONNECT or EOF while the run was going */
    uint64_t lost;         /* frames never answered, even after the drain */
    uint64_t deferred;     /* open loop: frames sent late because no slot was free */
    uint64_t sids_learned;
    uint64_t tick_late_max; /* open loop: worst lateness of a pacing tick (ns) */
    uint64_t busy_max;      /* longest stretch the generator spent between waits (ns) */
};

static struct {
    struct bconn *conns;
    int ep;
    int tfd;
    unsigned ready;
    unsigned open;
    struct hist hist;
    struct hist tick_hist; /* open loop: lateness of each pacing tick (machine hiccups) */
    struct counters n;
    uint64_t gseq; /* global frame sequence, for %n */
    int64_t t0, t_meas, t_end;
    int64_t t_timer; /* when the pacing timer was armed */
    bool measuring, stopping, closing;
    int64_t t_close;
    /* open loop */
    uint64_t k_sent, k_due;
    unsigned rr;
    /* -k */
    char sids[SID_RING][SID_MAX];
    uint8_t sid_len[SID_RING];
    unsigned nsids, sid_next;
    uint64_t rng;
    /* resources */
    long clk_tck;
    double agent_cpu0, agent_cpu1;
    long agent_hwm_kb, agent_rss_kb; /* at the end of the window */
    double self_cpu0, self_cpu1;
    char last_disconnect[300];
    /* -V: how often each value of one ACK variable came back (whole run) */
    char tally_val[TALLY_MAX][TALLY_LEN];
    uint64_t tally_n[TALLY_MAX];
    unsigned ntally;
    uint64_t tally_other;
} g;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spop_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static double self_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid in seconds from /proc/<pid>/stat, or -1. The command
 * name may hold spaces and parentheses, so fields are counted after the last ')'. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return -1;
    }
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)g.clk_tck;
}

/* A "Key:   N kB" line of /proc/<pid>/status in KiB, or -1. */
static long proc_status_kb(long pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static uint64_t rng_next(void)
{
    /* xorshift64*: reproducible, and cheaper than rand() in the hot path */
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return g.rng * 2685821657736338717ull;
}

/* ---- frame building -------------------------------------------------------- */

/* Expand the "%n" of tmpl with n into out. Returns the length. */
static size_t expand_seq(const char *tmpl, uint64_t n, char *out, size_t cap)
{
    const char *pct = strstr(tmpl, "%n");
    int len = snprintf(out, cap, "%.*s%" PRIu64 "%s", (int)(pct - tmpl), tmpl, n, pct + 2);
    return len < 0 ? 0 : ((size_t)len < cap ? (size_t)len : cap - 1);
}

/* Queue one NOTIFY for slot s of c, stamped t_sent. 0, or -1 when it does not
 * fit (the caller flushes and retries later). */
static int queue_notify(struct bconn *c, unsigned s, int64_t t_sent)
{
    struct slot *sl = &c->slots[s];
    uint64_t n = ++g.gseq;
    c->seq++;
    /* Unique per connection while in flight, and the slot falls out of it again. */
    uint64_t stream_id = c->seq * o.depth + s;
    uint64_t frame_id = (c->seq & 0x3fff) + 1;

    struct spop_writer w;
    spop_w_init(&w, c->wbuf + c->wlen, WBUF_CAP - c->wlen, c->max_frame);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, stream_id, frame_id);
    spop_w_msg(&w, o.msg, strlen(o.msg), (uint8_t)o.nargs);
    char tbuf[SID_MAX + 64];
    for (unsigned i = 0; i < o.nargs; i++) {
        const struct arg_spec *a = &o.args[i];
        struct spop_data d = a->val;
        if (a->kind == ARG_SEQ) {
            switch (a->val.type) {
            case SPOP_T_STRING:
            case SPOP_T_BINARY:
                d.u.str.ptr = tbuf;
                d.u.str.len = expand_seq(a->tmpl, n, tbuf, sizeof(tbuf));
                break;
            case SPOP_T_IPV4:
                /* 10.x.y.z spread over 2^24 clients */
                d.u.ipv4[0] = 10;
                d.u.ipv4[1] = (uint8_t)(n >> 16);
                d.u.ipv4[2] = (uint8_t)(n >> 8);
                d.u.ipv4[3] = (uint8_t)n;
                break;
            case SPOP_T_INT32:
                d.u.i32 = (int32_t)n;
                break;
            case SPOP_T_UINT32:
                d.u.u32 = (uint32_t)n;
                break;
            case SPOP_T_INT64:
                d.u.i64 = (int64_t)n;
                break;
            case SPOP_T_UINT64:
                d.u.u64 = n;
                break;
            default:
                break;
            }
        } else if (a->kind == ARG_SID) {
            if (g.nsids > 0 && rng_next() % 100 < o.sid_reuse_pct) {
                unsigned k = (unsigned)(rng_next() % g.nsids);
                d = spop_d_str(g.sids[k], g.sid_len[k]);
            } else {
                d.type = SPOP_T_NULL;
            }
        }
        spop_w_kv(&w, a->name, &d);
    }
    if (spop_w_frame_end(&w) != 0) {
        g.gseq--;
        c->seq--;
        return -1;
    }
    c->wlen += w.len;
    sl->stream_id = stream_id;
    sl->frame_id = frame_id;
    sl->t_sent = t_sent;
    sl->busy = true;
    c->nfree--;
    c->touched = true;
    g.n.sent++;
    return 0;
}

/* Room for one more frame of the largest size the agent accepts. */
static bool has_room(const struct bconn *c)
{
    return WBUF_CAP - c->wlen >= (size_t)c->max_frame + SPOP_LEN_SIZE;
}

static void conn_close(struct bconn *c);

static void set_out(struct bconn *c, bool on)
{
    if (c->want_out == on) {
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.u32 = c->idx};
    if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->want_out = on;
}

/* Write what is queued, in one write() when the socket takes it all. 0, or -1
 * when the connection died (and was closed). */
static int conn_flush(struct bconn *c)
{
    c->touched = false;
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(c, true);
                return 0;
            }
            if (!g.closing) {
                g.n.disconnects++;
                snprintf(g.last_disconnect, sizeof(g.last_disconnect), "conn %u: write: %s", c->idx,
                         strerror(errno));
            }
            conn_close(c);
            return -1;
        }
        c->woff += (size_t)n;
    }
    c->woff = c->wlen = 0;
    set_out(c, false);
    return 0;
}

/* Closed loop: refill every free slot of c, stamped now. */
static void fill_closed(struct bconn *c, int64_t now)
{
    while (c->nfree > 0 && has_room(c)) {
        unsigned s = c->freelist[c->nfree - 1];
        if (queue_notify(c, s, now) != 0) {
            die("NOTIFY does not fit the agent's max-frame-size %" PRIu32, c->max_frame);
        }
    }
}

/* Open loop: frame k was due at t0 + k / rate. */
static int64_t due_time(uint64_t k)
{
    return g.t0 + (int64_t)((double)k * 1e9 / o.rate);
}

/* Open loop: send frames already due (k < k_due) on c while it has free slots.
 * They are late, so they are stamped with the time they were due: latency then
 * includes the wait for a slot instead of hiding it (coordinated omission). */
static void fill_backlog(struct bconn *c)
{
    while (g.k_sent < g.k_due && c->nfree > 0 && has_room(c)) {
        unsigned s = c->freelist[c->nfree - 1];
        if (queue_notify(c, s, due_time(g.k_sent)) != 0) {
            die("NOTIFY does not fit the agent's max-frame-size %" PRIu32, c->max_frame);
        }
        g.k_sent++;
        g.n.deferred++;
    }
}

/* ---- frame handling ------------------------------------------------------- */

static void send_hello(struct bconn *c)
{
    struct spop_writer w;
    spop_w_init(&w, c->wbuf + c->wlen, WBUF_CAP - c->wlen, o.max_frame);
    spop_w_frame_begin(&w, SPOP_FRAME_HAPROXY_HELLO, SPOP_FL_FIN, 0, 0);
    struct spop_data d = spop_d_str(SPOP_VERSION, strlen(SPOP_VERSION));
    spop_w_kv(&w, "supported-versions", &d);
    d = spop_d_u32(o.max_frame);
    spop_w_kv(&w, "max-frame-size", &d);
    d = spop_d_str("pipelining", strlen("pipelining"));
    spop_w_kv(&w, "capabilities", &d);
    d = spop_d_bool(false);
    spop_w_kv(&w, "healthcheck", &d);
    d = spop_d_str(o.engine_id, strlen(o.engine_id));
    spop_w_kv(&w, "engine-id", &d);
    if (spop_w_frame_end(&w) != 0) {
        die("cannot encode HAPROXY-HELLO");
    }
    c->wlen += w.len;
    (void)conn_flush(c);
}

static void send_disconnect(struct bconn *c)
{
    struct spop_writer w;
    spop_w_init(&w, c->wbuf + c->wlen, WBUF_CAP - c->wlen, c->max_frame);
    spop_w_frame_begin(&w, SPOP_FRAME_HAPROXY_DISCONNECT, SPOP_FL_FIN, 0, 0);
    struct spop_data d = spop_d_u32(SPOP_ST_NONE);
    spop_w_kv(&w, "status-code", &d);
    d = spop_d_str("", 0);
    spop_w_kv(&w, "message", &d);
    if (spop_w_frame_end(&w) != 0) {
        die("cannot encode HAPROXY-DISCONNECT");
    }
    c->wlen += w.len;
    c->st = BC_CLOSING;
    (void)conn_flush(c);
}

static bool data_as_u64(const struct spop_data *d, uint64_t *v)
{
    switch (d->type) {
    case SPOP_T_INT32:
        *v = d->u.i32 < 0 ? 0 : (uint64_t)d->u.i32;
        return d->u.i32 >= 0;
    case SPOP_T_UINT32:
        *v = d->u.u32;
        return true;
    case SPOP_T_INT64:
        *v = d->u.i64 < 0 ? 0 : (uint64_t)d->u.i64;
        return d->u.i64 >= 0;
    case SPOP_T_UINT64:
        *v = d->u.u64;
        return true;
    default:
        return false;
    }
}

/* AGENT-HELLO: version 2.0, a max-frame-size we can live with, pipelining when
 * more than one frame is to be in flight. Any failure ends the run. */
static void on_agent_hello(struct bconn *c, const struct spop_frame *f)
{
    struct spop_reader r = {f->payload, f->payload + f->payload_len};
    struct spop_str key;
    struct spop_data val;
    bool has_vsn = false, has_mfs = false, pipelining = false;
    uint64_t mfs = 0;
    enum spop_next rc;
    while ((rc = spop_next_kv(&r, &key, &val)) == SPOP_NEXT_ITEM) {
        if (spop_str_eq(key, "version")) {
            if (val.type != SPOP_T_STRING || !spop_str_eq(val.u.str, SPOP_VERSION)) {
                die("conn %u: AGENT-HELLO: version is not \"%s\"", c->idx, SPOP_VERSION);
            }
            has_vsn = true;
        } else if (spop_str_eq(key, "max-frame-size")) {
            if (!data_as_u64(&val, &mfs)) {
                die("conn %u: AGENT-HELLO: max-frame-size is not an integer", c->idx);
            }
            has_mfs = true;
        } else if (spop_str_eq(key, "capabilities")) {
            if (val.type != SPOP_T_STRING) {
                die("conn %u: AGENT-HELLO: capabilities is not a string", c->idx);
            }
            pipelining = spop_list_has(val.u.str, "pipelining");
        }
    }
    if (rc == SPOP_NEXT_MALFORMED) {
        die("conn %u: AGENT-HELLO: malformed KV-list", c->idx);
    }
    if (!has_vsn || !has_mfs) {
        die("conn %u: AGENT-HELLO without %s", c->idx, has_vsn ? "max-frame-size" : "version");
    }
    if (mfs < SPOP_MIN_FRAME_SIZE || mfs > o.max_frame) {
        die("conn %u: AGENT-HELLO: max-frame-size %" PRIu64 " outside [%u, %" PRIu32 "]", c->idx,
            mfs, SPOP_MIN_FRAME_SIZE, o.max_frame);
    }
    if (!pipelining && o.depth > 1) {
        die("conn %u: the agent does not offer pipelining; use -d 1", c->idx);
    }
    c->max_frame = (uint32_t)mfs;
    c->st = BC_READY;
    g.ready++;
}

static void on_disconnect(struct bconn *c, const struct spop_frame *f)
{
    struct spop_disconnect d;
    if (spop_disconnect_parse(f->payload, f->payload_len, &d) != 0) {
        d.has_status = false;
        d.message.ptr = "";
        d.message.len = 0;
    }
    if (c->st != BC_CLOSING) {
        g.n.disconnects++;
        snprintf(g.last_disconnect, sizeof(g.last_disconnect),
                 "conn %u: AGENT-DISCONNECT status %" PRIu32 " (%s) \"%.*s\"", c->idx,
                 d.has_status ? d.status : 0u, spop_status_str(d.has_status ? d.status : 0u),
                 (int)d.message.len, d.message.ptr);
        if (c->st == BC_HELLO) {
            die("%s", g.last_disconnect);
        }
    }
    conn_close(c);
}

/* Remember a session id the agent handed out, for -k. */
static void learn_sid(struct spop_str s)
{
    if (s.len == 0 || s.len >= SID_MAX) {
        return;
    }
    unsigned k = g.sid_next;
    memcpy(g.sids[k], s.ptr, s.len);
    g.sids[k][s.len] = '\0';
    g.sid_len[k] = (uint8_t)s.len;
    g.sid_next = (g.sid_next + 1) % SID_RING;
    if (g.nsids < SID_RING) {
        g.nsids++;
    }
    g.n.sids_learned++;
}

/* -V: count one value of the tallied variable (text values, and ints as text). */
static void tally(const struct spop_data *val)
{
    char text[TALLY_LEN];
    size_t len;
    if (val->type == SPOP_T_STRING || val->type == SPOP_T_BINARY) {
        len = val->u.str.len < TALLY_LEN - 1 ? val->u.str.len : TALLY_LEN - 1;
        memcpy(text, val->u.str.ptr, len);
    } else if (val->type == SPOP_T_INT64 || val->type == SPOP_T_INT32) {
        int n = snprintf(text, sizeof(text), "%" PRId64,
                         val->type == SPOP_T_INT64 ? val->u.i64 : (int64_t)val->u.i32);
        len = n < 0 ? 0 : (size_t)n;
    } else {
        len = (size_t)snprintf(text, sizeof(text), "(type %d)", (int)val->type);
    }
    text[len] = '\0';
    for (unsigned i = 0; i < g.ntally; i++) {
        if (strcmp(g.tally_val[i], text) == 0) {
            g.tally_n[i]++;
            return;
        }
    }
    if (g.ntally == TALLY_MAX) {
        g.tally_other++;
        return;
    }
    memcpy(g.tally_val[g.ntally], text, len + 1);
    g.tally_n[g.ntally++] = 1;
}

static void on_ack(struct bconn *c, const struct spop_frame *f, int64_t now)
{
    uint64_t s64 = f->stream_id % o.depth;
    struct slot *sl = &c->slots[s64];
    if (!sl->busy || sl->stream_id != f->stream_id || sl->frame_id != f->frame_id) {
        g.n.unmatched++;
        return;
    }
    /* Validate the action list: HAProxy parses it the same way. */
    struct spop_reader r = {f->payload, f->payload + f->payload_len};
    uint8_t type, scope;
    struct spop_str name;
    struct spop_data val;
    unsigned nact = 0;
    enum spop_next rc;
    while ((rc = spop_next_action(&r, &type, &scope, &name, &val)) == SPOP_NEXT_ITEM) {
        nact++;
        if (o.sid_reuse_pct > 0 && type == SPOP_ACT_SET_VAR && val.type == SPOP_T_STRING &&
            spop_str_eq(name, o.sid_var)) {
            learn_sid(val.u.str);
        }
        if (o.tally_var != NULL && type == SPOP_ACT_SET_VAR && spop_str_eq(name, o.tally_var)) {
            tally(&val);
        }
    }
    if (rc == SPOP_NEXT_MALFORMED || !(f->flags & SPOP_FL_FIN)) {
        g.n.bad_acks++;
    } else if (nact == 0) {
        g.n.empty_acks++;
    }
    sl->busy = false;
    c->freelist[c->nfree++] = (unsigned)s64;
    g.n.acked++;
    if (g.measuring && !g.stopping) {
        g.n.acked_window++;
        hist_add(&g.hist, (uint64_t)(now - sl->t_sent));
    }
}

static void on_readable(struct bconn *c, int64_t now)
{
    for (;;) {
        if (c->rcap - c->rlen < READ_CHUNK / 4) {
            die("conn %u: read buffer full (frame larger than %zu bytes?)", c->idx, c->rcap);
        }
        size_t asked = c->rcap - c->rlen;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, asked, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
        }
        if (n <= 0) {
            if (c->st != BC_CLOSING) {
                g.n.disconnects++;
                snprintf(g.last_disconnect, sizeof(g.last_disconnect), "conn %u: %s", c->idx,
                         n == 0 ? "EOF from the agent" : strerror(errno));
                if (c->st == BC_HELLO) {
                    die("%s during HELLO", g.last_disconnect);
                }
            }
            conn_close(c);
            return;
        }
        c->rlen += (size_t)n;
        size_t off = 0;
        for (;;) {
            struct spop_frame f;
            enum spop_status st = SPOP_ST_NONE;
            ssize_t used = spop_frame_decode(c->rbuf + off, c->rlen - off, o.max_frame, &f, &st);
            if (used == 0) {
                break;
            }
            if (used < 0) {
                g.n.bad_frames++;
                snprintf(g.last_disconnect, sizeof(g.last_disconnect),
                         "conn %u: undecodable frame (%s)", c->idx, spop_status_str(st));
                conn_close(c);
                return;
            }
            off += (size_t)used;
            if (f.type == SPOP_FRAME_ACK && c->st != BC_HELLO) {
                on_ack(c, &f, now);
            } else if (f.type == SPOP_FRAME_AGENT_HELLO && c->st == BC_HELLO) {
                on_agent_hello(c, &f);
            } else if (f.type == SPOP_FRAME_AGENT_DISCONNECT) {
                on_disconnect(c, &f);
                return;
            } else {
                g.n.bad_frames++;
                if (c->st == BC_HELLO) {
                    die("conn %u: frame type %u instead of AGENT-HELLO", c->idx, f.type);
                }
            }
        }
        if (off > 0) {
            memmove(c->rbuf, c->rbuf + off, c->rlen - off);
            c->rlen -= off;
        }
        if ((size_t)n < asked) {
            break; /* the socket is drained: save a recv() returning EAGAIN */
        }
    }
}

static void conn_close(struct bconn *c)
{
    if (c->st == BC_DONE) {
        return;
    }
    for (unsigned s = 0; s < o.depth; s++) {
        if (c->slots[s].busy) {
            c->slots[s].busy = false;
            g.n.lost++;
        }
    }
    if (c->st == BC_READY || c->st == BC_CLOSING) {
        g.ready--;
    }
    epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->st = BC_DONE;
    g.open--;
}

/* ---- setup ------------------------------------------------------------------ */

static int connect_agent(void)
{
    int fd;
    if (o.unix_path != NULL) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(o.unix_path) >= sizeof(sun.sun_path)) {
            die("unix socket path too long");
        }
        strcpy(sun.sun_path, o.unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
            die("connect %s: %s", o.unix_path, strerror(errno));
        }
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
        if (inet_pton(AF_INET, o.host, &sin.sin_addr) != 1) {
            die("bad IPv4 address %s", o.host);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
            die("connect %s:%u: %s", o.host, o.port, strerror(errno));
        }
        /* HAProxy disables Nagle on its SPOE connections too. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        die("fcntl: %s", strerror(errno));
    }
    return fd;
}

static void conns_open(void)
{
    g.conns = calloc(o.conns, sizeof(*g.conns));
    if (g.conns == NULL) {
        die("out of memory");
    }
    for (unsigned i = 0; i < o.conns; i++) {
        struct bconn *c = &g.conns[i];
        c->idx = i;
        c->st = BC_HELLO;
        c->max_frame = o.max_frame;
        c->rcap = 2u * ((size_t)o.max_frame + SPOP_LEN_SIZE) + READ_CHUNK;
        c->rbuf = malloc(c->rcap);
        c->wbuf = malloc(WBUF_CAP);
        c->slots = calloc(o.depth, sizeof(*c->slots));
        c->freelist = malloc(o.depth * sizeof(*c->freelist));
        if (c->rbuf == NULL || c->wbuf == NULL || c->slots == NULL || c->freelist == NULL) {
            die("out of memory");
        }
        for (unsigned s = 0; s < o.depth; s++) {
            c->freelist[s] = o.depth - 1 - s;
        }
        c->nfree = o.depth;
        c->fd = connect_agent();
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            die("epoll_ctl: %s", strerror(errno));
        }
        g.open++;
        send_hello(c);
    }
}

/* ---- the run ------------------------------------------------------------- */

static void start_timer(void)
{
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0) {
        die("timerfd_create: %s", strerror(errno));
    }
    struct itimerspec its = {
        .it_interval = {.tv_sec = 0, .tv_nsec = (long)o.tick_us * 1000},
        .it_value = {.tv_sec = 0, .tv_nsec = (long)o.tick_us * 1000},
    };
    g.t_timer = now_ns();
    if (timerfd_settime(g.tfd, 0, &its, NULL) != 0) {
        die("timerfd_settime: %s", strerror(errno));
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &ev) != 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
}

/* Open loop tick: frames that became due since the last tick go out now,
 * stamped now, round-robin over the connections with a free slot; what finds
 * no slot stays due and goes out, stamped with its due time, as ACKs free slots. */
static void on_tick(int64_t now)
{
    /* One read returns every expiration since the last one. */
    uint64_t exp = 0;
    if (read(g.tfd, &exp, sizeof(exp)) != (ssize_t)sizeof(exp)) {
        exp = 0;
    }
    if (g.stopping || now < g.t0) {
        return;
    }
    /* Ticks are due at t_timer + i * tick: how late is this one? A late tick
     * means the generator (or the machine) stalled, not the agent. */
    int64_t tick = (int64_t)o.tick_us * 1000;
    uint64_t tick_late = (uint64_t)((now - g.t_timer) % tick);
    if (exp > 1) {
        tick_late += (exp - 1) * (uint64_t)tick;
    }
    if (g.measuring && !g.stopping) {
        hist_add(&g.tick_hist, tick_late);
        if (tick_late > g.n.tick_late_max) {
            g.n.tick_late_max = tick_late;
        }
    }
    uint64_t backlog_end = g.k_due;
    g.k_due = (uint64_t)((double)(now - g.t0) * o.rate / 1e9);
    for (unsigned tried = 0; g.k_sent < g.k_due && tried < o.conns;) {
        struct bconn *c = &g.conns[g.rr];
        if (c->st != BC_READY || c->nfree == 0 || !has_room(c)) {
            g.rr = (g.rr + 1) % o.conns;
            tried++;
            continue;
        }
        bool late = g.k_sent < backlog_end;
        unsigned s = c->freelist[c->nfree - 1];
        if (queue_notify(c, s, late ? due_time(g.k_sent) : now) != 0) {
            die("NOTIFY does not fit the agent's max-frame-size %" PRIu32, c->max_frame);
        }
        if (late) {
            g.n.deferred++;
        }
        g.k_sent++;
        g.rr = (g.rr + 1) % o.conns;
        tried = 0;
    }
    for (unsigned i = 0; i < o.conns; i++) {
        if (g.conns[i].touched) {
            (void)conn_flush(&g.conns[i]);
        }
    }
}

static unsigned inflight(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < o.conns; i++) {
        if (g.conns[i].st == BC_READY) {
            n += o.depth - g.conns[i].nfree;
        }
    }
    return n;
}

static void end_window(int64_t now)
{
    g.stopping = true;
    g.t_end = now;
    g.self_cpu1 = self_cpu();
    if (o.agent_pid > 0) {
        g.agent_cpu1 = proc_cpu(o.agent_pid);
        g.agent_hwm_kb = proc_status_kb(o.agent_pid, "VmHWM");
        g.agent_rss_kb = proc_status_kb(o.agent_pid, "VmRSS");
    }
}

static void phase(int64_t now)
{
    if (!g.measuring && now >= g.t_meas) {
        g.measuring = true;
        g.t_meas = now;
        g.t_end = now + (int64_t)(o.duration * 1e9);
        g.self_cpu0 = self_cpu();
        if (o.agent_pid > 0) {
            g.agent_cpu0 = proc_cpu(o.agent_pid);
        }
    }
    if (g.measuring && !g.stopping && now >= g.t_end) {
        end_window(now);
    }
    if (g.stopping && !g.closing && (inflight() == 0 || now - g.t_end > DRAIN_NS)) {
        g.closing = true;
        g.t_close = now;
        for (unsigned i = 0; i < o.conns; i++) {
            if (g.conns[i].st == BC_READY) {
                send_disconnect(&g.conns[i]);
            }
        }
    }
}

static void run(void)
{
    struct epoll_event evs[64];
    bool started = false;
    int64_t t_wake = 0;
    for (;;) {
        int64_t now = now_ns();
        if (!started && g.ready == o.conns) {
            started = true;
            g.t0 = now;
            g.t_meas = now + (int64_t)(o.warmup * 1e9);
            if (o.rate > 0) {
                start_timer();
            } else {
                for (unsigned i = 0; i < o.conns; i++) {
                    fill_closed(&g.conns[i], now);
                    (void)conn_flush(&g.conns[i]);
                }
            }
        }
        if (started) {
            phase(now);
        }
        if (g.closing && (g.open == 0 || now - g.t_close > CLOSE_NS)) {
            break;
        }
        if (g.open == 0) {
            /* Report what was measured; the errors say why it ended early. */
            fprintf(stderr, "spop_bench: every connection is gone: %s\n", g.last_disconnect);
            if (!g.measuring) {
                die("no measurement: the connections died during the warm-up");
            }
            if (!g.stopping) {
                end_window(now);
            }
            break;
        }
        if (t_wake != 0 && g.measuring && !g.stopping && now - t_wake > (int64_t)g.n.busy_max) {
            g.n.busy_max = (uint64_t)(now - t_wake);
        }
        int n = epoll_wait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 10);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait: %s", strerror(errno));
        }
        now = now_ns();
        t_wake = now;
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX) {
                on_tick(now);
                continue;
            }
            struct bconn *c = &g.conns[id];
            if (c->st == BC_DONE) {
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (conn_flush(c) != 0) {
                    continue;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_readable(c, now);
            }
            if (c->st != BC_READY || g.stopping) {
                continue;
            }
            /* Batch: one write for everything this read freed. */
            if (o.rate > 0) {
                fill_backlog(c);
            } else if (started) {
                fill_closed(c, now);
            }
            if (c->touched && !c->want_out) {
                (void)conn_flush(c);
            }
        }
    }
    for (unsigned i = 0; i < o.conns; i++) {
        conn_close(&g.conns[i]);
    }
}

/* ---- report ------------------------------------------------------------------ */

static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...)
{
    if (!o.machine) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("%s%s=", o.label != NULL ? o.label : "", key);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

/* ns as a human figure: "812 ns", "143.2 us", "1.21 ms". */
static const char *fmt_ns(uint64_t ns, char *buf, size_t cap)
{
    if (ns < 1000) {
        snprintf(buf, cap, "%" PRIu64 " ns", ns);
    } else if (ns < 1000000) {
        snprintf(buf, cap, "%.1f us", (double)ns / 1e3);
    } else {
        snprintf(buf, cap, "%.2f ms", (double)ns / 1e6);
    }
    return buf;
}

static uint64_t total_errors(void)
{
    return g.n.unmatched + g.n.bad_acks + g.n.empty_acks + g.n.bad_frames + g.n.disconnects +
           g.n.lost;
}

static void report(void)
{
    double secs = (double)(g.t_end - g.t_meas) / 1e9;
    double rate = secs > 0 ? (double)g.n.acked_window / secs : 0;
    uint64_t p50 = hist_quantile(&g.hist, 0.50), p99 = hist_quantile(&g.hist, 0.99);
    uint64_t p999 = hist_quantile(&g.hist, 0.999), mx = g.hist.max;
    double mean = g.hist.total ? (double)(g.hist.sum / (long double)g.hist.total) : 0;
    char b1[32], b2[32], b3[32], b4[32], b5[32];

    if (!o.quiet) {
        if (o.rate > 0) {
            printf("  mode            open loop at %.0f/s, %u conns, up to %u in flight each, "
                   "message \"%s\"\n",
                   o.rate, o.conns, o.depth, o.msg);
        } else {
            printf("  mode            closed loop, %u conns x %u in flight, message \"%s\"\n",
                   o.conns, o.depth, o.msg);
        }
        printf("  window          %.2f s after %.2f s warm-up\n", secs, o.warmup);
        printf("  NOTIFY->ACK     %.0f/s  (%" PRIu64 " ACKs in the window)\n", rate,
               g.n.acked_window);
        printf("  latency         p50 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
               fmt_ns(p50, b1, sizeof(b1)), fmt_ns(p99, b2, sizeof(b2)),
               fmt_ns(p999, b3, sizeof(b3)), fmt_ns(mx, b4, sizeof(b4)),
               fmt_ns((uint64_t)mean, b5, sizeof(b5)));
        printf("  errors          %" PRIu64 " (unmatched %" PRIu64 ", bad ACK %" PRIu64
               ", empty ACK %" PRIu64 ", bad frame %" PRIu64 ", disconnects %" PRIu64
               ", lost %" PRIu64 ")\n",
               total_errors(), g.n.unmatched, g.n.bad_acks, g.n.empty_acks, g.n.bad_frames,
               g.n.disconnects, g.n.lost);
        if (g.last_disconnect[0] != '\0') {
            printf("  last error      %s\n", g.last_disconnect);
        }
        if (o.rate > 0) {
            printf("  sent late       %" PRIu64 " (no free slot when due)\n", g.n.deferred);
        }
        if (o.sid_reuse_pct > 0) {
            printf("  sids learned    %" PRIu64 "\n", g.n.sids_learned);
        }
        if (o.tally_var != NULL) {
            uint64_t all = g.tally_other;
            for (unsigned i = 0; i < g.ntally; i++) {
                all += g.tally_n[i];
            }
            printf("  var %-11s", o.tally_var);
            for (unsigned i = 0; i < g.ntally; i++) {
                printf(" %s %.1f%%", g.tally_val[i],
                       all ? 100.0 * (double)g.tally_n[i] / (double)all : 0);
            }
            if (g.tally_other > 0) {
                printf(" (others %" PRIu64 ")", g.tally_other);
            }
            printf("  (%" PRIu64 " ACKs carried it, whole run)\n", all);
        }
        printf("  generator       longest busy stretch %s", fmt_ns(g.n.busy_max, b1, sizeof(b1)));
        printf("\n");
        if (o.rate > 0) {
            /* The generator's own wake-ups: when these are late by as much as the
             * agent's tail, the tail belongs to the machine, not to the agent. */
            printf("  pacing ticks    late by p50 %s  p99 %s  p99.9 %s  max %s (machine "
                   "hiccups)\n",
                   fmt_ns(hist_quantile(&g.tick_hist, 0.5), b1, sizeof(b1)),
                   fmt_ns(hist_quantile(&g.tick_hist, 0.99), b2, sizeof(b2)),
                   fmt_ns(hist_quantile(&g.tick_hist, 0.999), b3, sizeof(b3)),
                   fmt_ns(g.n.tick_late_max, b4, sizeof(b4)));
        }
        double gen = g.self_cpu1 - g.self_cpu0;
        printf("  generator cpu   %.2f s (%.0f%% of a core)\n", gen,
               secs > 0 ? 100 * gen / secs : 0);
    }
    kv("mode", "%s", o.rate > 0 ? "open" : "closed");
    kv("conns", "%u", o.conns);
    kv("depth", "%u", o.depth);
    kv("target_rate", "%.0f", o.rate);
    kv("seconds", "%.3f", secs);
    kv("acks", "%" PRIu64, g.n.acked_window);
    kv("rate", "%.0f", rate);
    kv("p50_us", "%.1f", (double)p50 / 1e3);
    kv("p99_us", "%.1f", (double)p99 / 1e3);
    kv("p999_us", "%.1f", (double)p999 / 1e3);
    kv("max_us", "%.1f", (double)mx / 1e3);
    kv("mean_us", "%.1f", mean / 1e3);
    kv("errors", "%" PRIu64, total_errors());
    kv("unmatched", "%" PRIu64, g.n.unmatched);
    kv("disconnects", "%" PRIu64, g.n.disconnects);
    kv("lost", "%" PRIu64, g.n.lost);
    kv("deferred", "%" PRIu64, g.n.deferred);
    for (unsigned i = 0; i < g.ntally; i++) {
        char key[TALLY_LEN + 40];
        snprintf(key, sizeof(key), "var_%s_%s", o.tally_var, g.tally_val[i]);
        for (char *k = key; *k != '\0'; k++) {
            /* keys stay one shell-friendly word */
            if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
                  (*k >= '0' && *k <= '9'))) {
                *k = '_';
            }
        }
        kv(key, "%" PRIu64, g.tally_n[i]);
    }
    kv("gen_cpu_s", "%.3f", g.self_cpu1 - g.self_cpu0);
    kv("gen_busy_max_us", "%.1f", (double)g.n.busy_max / 1e3);
    kv("tick_late_p99_us", "%.1f", (double)hist_quantile(&g.tick_hist, 0.99) / 1e3);
    kv("tick_late_max_us", "%.1f", (double)g.n.tick_late_max / 1e3);

    if (o.agent_pid > 0) {
        bool cpu_known = g.agent_cpu0 >= 0 && g.agent_cpu1 >= 0;
        double cpu = cpu_known ? g.agent_cpu1 - g.agent_cpu0 : -1;
        long hwm = g.agent_hwm_kb, rss = g.agent_rss_kb;
        if (!o.quiet) {
            if (!cpu_known) {
                printf("  agent cpu       unknown (cannot read /proc/%ld/stat)\n", o.agent_pid);
            } else {
                printf("  agent cpu       %.2f s in the window (%.0f%% of a core, %.2f us per "
                       "request)\n",
                       cpu, secs > 0 ? 100 * cpu / secs : 0,
                       g.n.acked_window ? cpu * 1e6 / (double)g.n.acked_window : 0);
            }
            if (hwm < 0 || rss < 0) {
                printf("  agent memory    unknown (cannot read /proc/%ld/status)\n", o.agent_pid);
            } else {
                printf("  agent memory    peak RSS %.1f MiB (VmHWM), %.1f MiB at the end\n",
                       (double)hwm / 1024, (double)rss / 1024);
            }
        }
        kv("agent_cpu_s", "%.3f", cpu);
        kv("agent_us_per_req", "%.3f",
           cpu_known && g.n.acked_window ? cpu * 1e6 / (double)g.n.acked_window : -1.0);
        kv("agent_hwm_kb", "%ld", hwm);
        kv("agent_rss_kb", "%ld", rss);
    }
    fflush(stdout);
}

/* ---- command line ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: spop_bench [-H ADDR -p PORT | -u PATH] [-c CONNS] [-d DEPTH] [-t SECS]\n"
            "                  [-w SECS] [-r RATE] [-m MSG] [-a NAME=TYPE:VALUE]... [-P PID] [-M]\n"
            "  -H ADDR   agent IPv4 address (127.0.0.1)    -p PORT  agent port\n"
            "  -u PATH   agent unix socket instead\n"
            "  -c N      connections (4)                   -d N     frames in flight per\n"
            "                                                       connection (20)\n"
            "  -t SECS   measured duration (5)             -w SECS  warm-up, not measured (1)\n"
            "  -r RATE   open loop: NOTIFY frames per second over all connections;\n"
            "            0 (default) is closed loop, as fast as ACKs come back\n"
            "  -T USEC   open-loop pacing tick (100)\n"
            "  -m NAME   message name (noop: unknown to the agent, ACKed harmlessly;\n"
            "            sticky-assign: args backend, sid, inst, uid, src unless -a given)\n"
            "  -a N=T:V  add an argument; T is null bool int32 uint32 int64 uint64 ipv4\n"
            "            ipv6 str bin; a V containing %%n is rebuilt per frame from a\n"
            "            sequence number (str/bin: substituted; ipv4: 10.x.y.z; ints: n);\n"
            "            T sid: a session id learned from an ACK (-k), else NULL\n"
            "  -b NAME   sticky-assign backend (ws)        -i NAME  sticky-assign inst (bench)\n"
            "  -s SID    sticky-assign sid (default NULL, or learned with -k)\n"
            "  -k PCT    send a sid learned from earlier ACKs in PCT%% of frames\n"
            "  -K VAR    name of the ACK variable holding the sid (sid)\n"
            "  -V VAR    tally the values of ACK variable VAR (e.g. action: hit/new/...)\n"
            "  -F BYTES  max-frame-size offered in HAPROXY-HELLO (16380)\n"
            "  -P PID    agent pid: report its CPU seconds and peak RSS from /proc\n"
            "  -M        also print machine-readable key=value lines\n"
            "  -l PREFIX prefix of the key=value keys (e.g. \"noop.\")\n"
            "  -q        key=value lines only\n"
            "exit status: 0 clean run, 1 protocol or connection errors, 2 could not run\n");
}

static double parse_num(const char *s, const char *what, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        die("bad %s '%s' (expected %g..%g)", what, s, lo, hi);
    }
    return v;
}

static void add_arg(const char *name, enum arg_kind kind, struct spop_data val, const char *tmpl)
{
    if (o.nargs >= MAX_ARGS) {
        die("too many -a arguments (max %u)", MAX_ARGS);
    }
    struct arg_spec *a = &o.args[o.nargs++];
    a->name = strdup(name);
    a->kind = kind;
    a->val = val;
    a->tmpl = tmpl != NULL ? strdup(tmpl) : NULL;
    if (a->name == NULL || (tmpl != NULL && a->tmpl == NULL)) {
        die("out of memory");
    }
}

/* NAME=TYPE:VALUE */
static void parse_arg(const char *spec)
{
    static const struct {
        const char *name;
        enum spop_type type;
    } types[] = {
        {"null", SPOP_T_NULL},     {"bool", SPOP_T_BOOL},   {"int32", SPOP_T_INT32},
        {"uint32", SPOP_T_UINT32}, {"int64", SPOP_T_INT64}, {"uint64", SPOP_T_UINT64},
        {"ipv4", SPOP_T_IPV4},     {"ipv6", SPOP_T_IPV6},   {"str", SPOP_T_STRING},
        {"bin", SPOP_T_BINARY},    {"sid", SPOP_T_NULL},
    };
    char *copy = strdup(spec);
    if (copy == NULL) {
        die("out of memory");
    }
    char *eq = strchr(copy, '=');
    if (eq == NULL) {
        die("-a wants NAME=TYPE:VALUE, not '%s'", spec);
    }
    *eq = '\0';
    char *type = eq + 1;
    char *colon = strchr(type, ':');
    const char *value = "";
    if (colon != NULL) {
        *colon = '\0';
        value = colon + 1;
    }
    unsigned t;
    for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        if (strcmp(type, types[t].name) == 0) {
            break;
        }
    }
    if (t == sizeof(types) / sizeof(types[0])) {
        die("-a %s: unknown type '%s'", spec, type);
    }
    struct spop_data d = {.type = types[t].type};
    bool seq = strstr(value, "%n") != NULL;
    if (strcmp(type, "sid") == 0) {
        add_arg(copy, ARG_SID, d, NULL);
        free(copy);
        return;
    }
    char *end = NULL;
    switch (d.type) {
    case SPOP_T_NULL:
        break;
    case SPOP_T_BOOL:
        d.u.b = strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
        break;
    case SPOP_T_INT32:
        d.u.i32 = seq ? 0 : (int32_t)strtol(value, &end, 10);
        break;
    case SPOP_T_UINT32:
        d.u.u32 = seq ? 0 : (uint32_t)strtoul(value, &end, 10);
        break;
    case SPOP_T_INT64:
        d.u.i64 = seq ? 0 : strtoll(value, &end, 10);
        break;
    case SPOP_T_UINT64:
        d.u.u64 = seq ? 0 : strtoull(value, &end, 10);
        break;
    case SPOP_T_IPV4:
        if (!seq && inet_pton(AF_INET, value, d.u.ipv4) != 1) {
            die("-a %s: bad IPv4 address", spec);
        }
        break;
    case SPOP_T_IPV6:
        if (inet_pton(AF_INET6, value, d.u.ipv6) != 1) {
            die("-a %s: bad IPv6 address", spec);
        }
        seq = false;
        break;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        d.u.str.ptr = value;
        d.u.str.len = strlen(value);
        break;
    default:
        break;
    }
    if (end != NULL && *end != '\0') {
        die("-a %s: bad number", spec);
    }
    /* value stays referenced by d (strings), so copy is never freed. */
    add_arg(copy, seq ? ARG_SEQ : ARG_FIXED, d, seq ? value : NULL);
}

/* What HAProxy's reference stickyd.spoe sends for a WebSocket upgrade: the
 * backend, the client's session id (absent on a first visit), this HAProxy's
 * instance name, a unique request id and the client address. */
static void preset_sticky_assign(void)
{
    struct spop_data d = spop_d_str(o.backend, strlen(o.backend));
    add_arg("backend", ARG_FIXED, d, NULL);
    if (o.sid != NULL) {
        d = spop_d_str(o.sid, strlen(o.sid));
        add_arg("sid", ARG_FIXED, d, NULL);
    } else {
        d.type = SPOP_T_NULL;
        add_arg("sid", o.sid_reuse_pct > 0 ? ARG_SID : ARG_FIXED, d, NULL);
    }
    d = spop_d_str(o.inst, strlen(o.inst));
    add_arg("inst", ARG_FIXED, d, NULL);
    d = spop_d_str("", 0);
    add_arg("uid", ARG_SEQ, d, "bench-%n");
    d.type = SPOP_T_IPV4;
    add_arg("src", ARG_SEQ, d, NULL);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "H:p:u:c:d:t:w:r:T:m:a:b:i:s:k:K:V:F:P:Ml:qh")) != -1) {
        switch (opt) {
        case 'H':
            o.host = optarg;
            break;
        case 'p':
            o.port = (unsigned)parse_num(optarg, "port", 1, 65535);
            break;
        case 'u':
            o.unix_path = optarg;
            break;
        case 'c':
            o.conns = (unsigned)parse_num(optarg, "connection count", 1, MAX_CONNS);
            break;
        case 'd':
            o.depth = (unsigned)parse_num(optarg, "depth", 1, MAX_DEPTH);
            break;
        case 't':
            o.duration = parse_num(optarg, "duration", 0.1, 86400);
            break;
        case 'w':
            o.warmup = parse_num(optarg, "warm-up", 0, 3600);
            break;
        case 'r':
            o.rate = parse_num(optarg, "rate", 0, 1e8);
            break;
        case 'T':
            o.tick_us = (unsigned)parse_num(optarg, "tick", 10, 999999);
            break;
        case 'm':
            o.msg = optarg;
            break;
        case 'a':
            parse_arg(optarg);
            o.args_given = true;
            break;
        case 'b':
            o.backend = optarg;
            break;
        case 'i':
            o.inst = optarg;
            break;
        case 's':
            o.sid = optarg;
            break;
        case 'k':
            o.sid_reuse_pct = (unsigned)parse_num(optarg, "sid reuse percentage", 0, 100);
            break;
        case 'K':
            o.sid_var = optarg;
            break;
        case 'V':
            o.tally_var = optarg;
            break;
        case 'F':
            o.max_frame = (uint32_t)parse_num(optarg, "max-frame-size", SPOP_MIN_FRAME_SIZE,
                                              SPOP_MAX_FRAME_SIZE);
            break;
        case 'P':
            o.agent_pid = (long)parse_num(optarg, "pid", 1, 4194304);
            break;
        case 'M':
            o.machine = true;
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'q':
            o.quiet = true;
            o.machine = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o.unix_path == NULL && o.port == 0) {
        die("say where the agent is: -p PORT or -u PATH");
    }
    if (strlen(o.msg) == 0 || strlen(o.msg) > 255) {
        die("bad message name");
    }
    if (!o.args_given && strcmp(o.msg, "sticky-assign") == 0) {
        preset_sticky_assign();
    }
    g.clk_tck = sysconf(_SC_CLK_TCK);
    g.rng = 0x9e3779b97f4a7c15ull;
    g.agent_cpu0 = g.agent_cpu1 = -1;
    g.agent_hwm_kb = g.agent_rss_kb = -1;
    signal(SIGPIPE, SIG_IGN);

    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    conns_open();
    run();
    report();
    return total_errors() == 0 && g.n.acked_window > 0 ? 0 : 1;
}
