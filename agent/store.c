/* store.c - Redis through hiredis 0.14's async API on the agent's libev loop.
 *
 * The only file that includes hiredis. Owns the command connection, the optional
 * pub/sub connection, their reconnect/backoff and handshake, per-request deadlines
 * and the hung-server watchdog. It must not know what the commands mean.
 *
 *   store_command/store_eval -> struct sreq (listed in s->reqs, deadline timer)
 *        -> hiredis pipeline (privdata = sreq), written once per loop iteration by
 *           on_flush -> on_reply -> user cb, exactly once
 *
 * Lifetimes: a struct rconn lives as long as the store and always outlives its
 * redisAsyncContext, so it is safe as hiredis privdata / ac->data. A struct sreq
 * lives until hiredis gives it back (reply, or NULL on disconnect/free), even
 * when its user callback already ran on a deadline.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <openssl/evp.h>

#include "config.h"
#include "log.h"
#include "stats.h"
#include "util.h"

/* The watchdog never fires before this much silence, whatever the deadlines. */
#define STORE_STALL_MIN_MS 1000
#define STORE_STALL_FACTOR 10

enum rconn_state {
    RC_IDLE = 0,   /* no context; maybe a retry timer pending */
    RC_HANDSHAKE,  /* context exists: TCP connect + AUTH/SELECT/PING in flight */
    RC_READY,      /* handshake answered; requests accepted */
    RC_FAILED,     /* context exists but is condemned; the reap timer frees it */
    RC_STATE_COUNT
};

enum rconn_kind {
    RC_CMD = 0,
    RC_SUB = 1,
    RC_KIND_COUNT
};

struct store;

/* One hiredis connection and everything needed to keep it alive. */
struct rconn {
    struct store *s;
    enum rconn_kind kind;
    enum rconn_state state;
    redisAsyncContext *ac;  /* NULL when idle; cleared BEFORE we free it ourselves */
    ev_timer connect_timer; /* TCP connect + handshake must finish within this */
    ev_timer retry_timer;   /* backoff before the next attempt */
    ev_timer reap_timer;    /* 0-delay: frees a condemned context outside hiredis */
    ev_timer stall_timer;   /* watchdog for a server that stopped answering */
    int64_t backoff_ms;     /* next retry delay (before jitter) */
    unsigned hs_pending;    /* handshake replies still expected */
    bool fail_logged;       /* failures after the first are logged at debug level */
    bool started;           /* the pub/sub connection is only started on demand */
    ev_tstamp last_progress; /* last reply, or when the pipeline became non-empty */
    bool timed_out;          /* a request passed its deadline since the last reply */
};

struct store_script {
    struct store_script *next;
    char *lua;
    size_t len;
    char sha[41];
};

struct store_sub {
    struct store_sub *next;
    char *channel;
    store_msg_cb cb;
    void *arg;
};

/* One caller request. hiredis holds a pointer to it, never to the caller. */
struct sreq {
    struct sreq *prev, *next; /* in s->reqs */
    struct store *s;
    store_cb cb;
    void *arg;
    ev_timer deadline;
    struct store_script *sc; /* eval only */
    size_t fmtlen;           /* eval only: length of fmt */
    size_t bytes; /* counted in s->pending_bytes until hiredis lets go */
    uint64_t sent_ns; /* when it entered hiredis (round-trip histogram) */
    bool done;    /* the user callback has run */
    bool retried; /* NOSCRIPT reload already tried */
    /* eval only: the formatted EVALSHA, kept for a NOSCRIPT retry. It lives in
     * the request's own allocation: one malloc per decision, not two. */
    char fmt[];
};

struct store {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct rconn cmd, sub;
    struct sreq *reqs; /* every live request, answered or not */
    /* Requests hiredis still holds (answered or timed out but not replied to)
     * and their command bytes: bounded by cfg_max_pending, so a stalled Redis
     * cannot grow the agent (a timed-out request stays until its late reply). */
    size_t npending, pending_bytes;
    /* Writes what this loop iteration queued on the command connection, once,
     * before the loop sleeps: see on_flush. Active only while there is some. */
    ev_prepare flush;
    struct store_script *scripts;
    struct store_sub *subs;
    bool closing;
    uint64_t rng;
    /* SHA-256 of the settings the connections use, so store_reconfigure can
     * tell a change without keeping the old config (or a password copy). */
    unsigned char conn_digest[32];
    char last_error[160];
};

_Static_assert(RC_STATE_COUNT == 4, "rconn states");

static void rconn_connect(struct rconn *rc);
static void rconn_fail(struct rconn *rc, const char *why);

static const char *rc_name(const struct rconn *rc)
{
    return rc->kind == RC_CMD ? "redis" : "redis pub/sub";
}

/* ---- small helpers ------------------------------------------------------ */

/* "what: detail" (or just "what") into s->last_error for store_last_error(). */
static void set_error(struct store *s, const char *what, const char *detail)
{
    snprintf(s->last_error, sizeof(s->last_error), "%s%s%s", what, detail ? ": " : "",
             detail ? detail : "");
}

static uint64_t rng_next(struct store *s)
{
    /* xorshift64: jitter only, not security. */
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

static int64_t stall_ms(const struct rconn *rc)
{
    int64_t ms = STORE_STALL_FACTOR * rc->s->cfg->redis_timeout_ms;
    return ms < STORE_STALL_MIN_MS ? STORE_STALL_MIN_MS : ms;
}

static bool use_unix(const struct cfg *c)
{
    return c->redis_unix != NULL && c->redis_unix[0] != '\0';
}

static bool has_password(const struct cfg *c)
{
    return c->redis_password != NULL && c->redis_password[0] != '\0';
}

static bool has_user(const struct cfg *c)
{
    return c->redis_user != NULL && c->redis_user[0] != '\0';
}

/* ---- requests ------------------------------------------------------------ */

static void sreq_free(struct sreq *q)
{
    struct store *s = q->s;
    s->npending--;
    s->pending_bytes -= q->bytes;
    ev_timer_stop(s->loop, &q->deadline);
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        s->reqs = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    free(q);
}

/* Run the user callback once; the sreq itself stays until hiredis lets go. */
static void sreq_finish(struct sreq *q, const redisReply *r, enum store_result res)
{
    ev_timer_stop(q->s->loop, &q->deadline);
    q->done = true;
    if (res == STORE_TIMEOUT) {
        STATS_INC(redis_timeouts);
    } else if (res == STORE_DOWN || (r != NULL && r->type == REDIS_REPLY_ERROR)) {
        STATS_INC(redis_errors);
    }
    q->cb((const struct store_reply *)r, res, q->arg);
}

static void stall_check(struct rconn *rc);

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct sreq *q = container_of(w, struct sreq, deadline);
    struct rconn *rc = &q->s->cmd;
    /* hiredis still holds q: the late reply (or the disconnect) frees it.
     * Arm the watchdog before the callback, which may issue new requests. */
    rc->timed_out = true;
    if (!ev_is_active(&rc->stall_timer)) {
        stall_check(rc);
    }
    sreq_finish(q, NULL, STORE_TIMEOUT);
}

static void note_progress(struct rconn *rc, const redisReply *r)
{
    if (r != NULL) {
        rc->last_progress = ev_now(rc->s->loop);
        rc->timed_out = false;
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct sreq *q = priv;
    struct rconn *rc = &q->s->cmd;
    redisReply *r = reply;

    if (r == NULL && rc->ac == ac && rc->state == RC_READY) {
        /* hiredis is tearing the connection down: callers invoked from here
         * must see "not connected" before onDisconnect tells us. */
        rc->state = RC_FAILED;
    }
    note_progress(rc, r);
    if (r != NULL) {
        stats_observe(&stats.redis_round_trip, q->sent_ns); /* late replies too: real trips */
    }
    if (q->done) {
        sreq_free(q); /* late reply to a request that timed out: swallow */
        return;
    }
    if (r == NULL) {
        sreq_finish(q, NULL, STORE_DOWN);
        sreq_free(q);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && q->sc != NULL && !q->retried &&
        strncmp(r->str, "NOSCRIPT", 8) == 0 && rc->ac == ac && rc->state == RC_READY) {
        /* The server lost the script (restart, SCRIPT FLUSH): load it and retry
         * once, pipelined behind the load, still under the same deadline. */
        q->retried = true;
        if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %b", q->sc->lua, q->sc->len) ==
                REDIS_OK &&
            redisAsyncFormattedCommand(ac, on_reply, q, q->fmt, q->fmtlen) == REDIS_OK) {
            log_debug("redis: NOSCRIPT for %s, reloaded and retried", q->sc->sha);
            return;
        }
    }
    sreq_finish(q, r, STORE_OK);
    sreq_free(q);
}

/* A new request with room for fmt_room bytes of formatted command. */
static struct sreq *sreq_new(struct store *s, int64_t timeout_ms, store_cb cb, void *arg,
                             size_t fmt_room)
{
    struct sreq *q = malloc(sizeof(*q) + fmt_room);
    if (q == NULL) {
        return NULL;
    }
    memset(q, 0, sizeof(*q));
    q->s = s;
    q->cb = cb;
    q->arg = arg;
    if (timeout_ms <= 0) {
        timeout_ms = s->cfg->redis_timeout_ms;
    }
    ev_timer_init(&q->deadline, on_deadline, (ev_tstamp)timeout_ms / 1000.0, 0.);
    return q;
}

/* Left to itself, hiredis' libev adapter turns on a write watcher for queued
 * commands and writes them on the next loop iteration: two epoll_ctl calls and
 * one more epoll_wait per batch, and a decision waits a whole iteration before
 * it reaches Redis. Instead, everything queued while handling this iteration's
 * events is written here, in one write, just before the loop would poll; the
 * adapter's watcher is then started and stopped in the same iteration, which
 * libev folds into no system call at all. Runs outside any hiredis callback. */
static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    UNUSED(revents);
    struct store *s = container_of(w, struct store, flush);
    struct rconn *rc = &s->cmd;
    ev_prepare_stop(loop, w);
    if (rc->state == RC_READY && rc->ac != NULL && sdslen(rc->ac->c.obuf) > 0) {
        /* On a write error hiredis tears the context down through the same
         * callbacks (on_reply with NULL, on_disconnect) as from its watcher. */
        redisAsyncHandleWrite(rc->ac);
    }
}

/* After a request entered hiredis: list it and arm its deadline. */
static void sreq_sent(struct sreq *q, bool pipeline_was_empty)
{
    struct store *s = q->s;
    struct rconn *rc = &s->cmd;
    if (!ev_is_active(&s->flush)) {
        ev_prepare_start(s->loop, &s->flush);
    }
    q->next = s->reqs;
    if (s->reqs != NULL) {
        s->reqs->prev = q;
    }
    s->reqs = q;
    ev_timer_start(s->loop, &q->deadline);
    s->npending++;
    s->pending_bytes += q->bytes;
    STATS_INC(redis_requests);
    q->sent_ns = stats_now_ns();
    if (pipeline_was_empty) {
        rc->last_progress = ev_now(s->loop); /* silence is counted from here */
    }
}

/* The watchdog. Rule: a READY command connection is deemed hung, and is
 * reconnected, when a request has passed its deadline, replies are still
 * outstanding, and no reply at all has arrived for stall_ms() = max(1 s,
 * 10 x redis_timeout_ms) (counted from the last reply, or from when the pipeline
 * last became non-empty). One slow reply or a short DEBUG SLEEP does not trip it;
 * a SIGSTOPped or wedged server does, about a second after the first timeout.
 * A command that legitimately runs longer than that, with a shorter request
 * timing out behind it, is treated as a hang too: the agent's deadlines are tens
 * of milliseconds, so such replies are useless anyway. */
static void stall_check(struct rconn *rc)
{
    struct ev_loop *loop = rc->s->loop;
    if (rc->state != RC_READY || rc->ac == NULL || rc->ac->replies.head == NULL ||
        !rc->timed_out) {
        return; /* nothing overdue: re-armed by the next deadline */
    }
    ev_tstamp silent = ev_now(loop) - rc->last_progress;
    ev_tstamp limit = (ev_tstamp)stall_ms(rc) / 1000.0;
    if (silent >= limit) {
        log_warn("%s: no reply for %.0f ms with requests outstanding, reconnecting",
                 rc_name(rc), silent * 1000.0);
        set_error(rc->s, "no reply from server (hung?)", NULL);
        rconn_fail(rc, NULL);
        return;
    }
    ev_timer_set(&rc->stall_timer, limit - silent, 0.);
    ev_timer_start(loop, &rc->stall_timer);
}

static void on_stall_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    stall_check(container_of(w, struct rconn, stall_timer));
}

/* ---- connections ----------------------------------------------------------- */

static void rconn_schedule_retry(struct rconn *rc)
{
    struct store *s = rc->s;
    if (s->closing || ev_is_active(&rc->retry_timer)) {
        return;
    }
    int64_t base = rc->backoff_ms;
    int64_t jitter = base / 5 > 0 ? (int64_t)(rng_next(s) % (uint64_t)(base / 5 + 1)) : 0;
    int64_t max = s->cfg->redis_reconnect_max_ms > 0 ? s->cfg->redis_reconnect_max_ms : 5000;
    rc->backoff_ms = base * 2 > max ? max : base * 2;
    ev_timer_set(&rc->retry_timer, (ev_tstamp)(base + jitter) / 1000.0, 0.);
    ev_timer_start(s->loop, &rc->retry_timer);
    log_debug("%s: next connection attempt in %lld ms", rc_name(rc),
              (long long)(base + jitter));
}

static void rconn_reset_backoff(struct rconn *rc)
{
    int64_t min = rc->s->cfg->redis_reconnect_min_ms;
    rc->backoff_ms = min > 0 ? min : 100;
}

/* Free our context now. Only from outside hiredis callbacks (timers, API calls):
 * hiredis runs every pending callback with a NULL reply from inside. */
static void rconn_close(struct rconn *rc)
{
    struct ev_loop *loop = rc->s->loop;
    ev_timer_stop(loop, &rc->connect_timer);
    ev_timer_stop(loop, &rc->reap_timer);
    ev_timer_stop(loop, &rc->stall_timer);
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL; /* first: our callbacks then see the context as foreign */
    rc->state = RC_IDLE;
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
}

/* Condemn the connection (safe inside hiredis callbacks): stop taking requests
 * now, free the context from the reap timer, then back off and retry. */
static void rconn_fail(struct rconn *rc, const char *why)
{
    if (why != NULL) {
        set_error(rc->s, why, NULL);
    }
    if (rc->ac == NULL) {
        rc->state = RC_IDLE;
        rconn_schedule_retry(rc);
        return;
    }
    rc->state = RC_FAILED;
    ev_timer_stop(rc->s->loop, &rc->connect_timer);
    ev_timer_stop(rc->s->loop, &rc->stall_timer);
    ev_timer_set(&rc->reap_timer, 0., 0.);
    ev_timer_start(rc->s->loop, &rc->reap_timer);
}

static void on_reap_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct rconn *rc = container_of(w, struct rconn, reap_timer);
    rconn_close(rc);
    rconn_schedule_retry(rc);
}

static void on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    rconn_connect(container_of(w, struct rconn, retry_timer));
}

static void on_connect_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct rconn *rc = container_of(w, struct rconn, connect_timer);
    if (!rc->fail_logged) {
        log_warn("%s: connect/handshake timed out after %lld ms", rc_name(rc),
                 (long long)rc->s->cfg->redis_connect_timeout_ms);
        rc->fail_logged = true;
    }
    set_error(rc->s, "connect/handshake timeout", NULL);
    rconn_close(rc); /* a timer callback: outside hiredis, safe to free */
    rconn_schedule_retry(rc);
}

static void log_failure(struct rconn *rc, const char *what, const char *detail)
{
    if (rc->fail_logged) {
        log_debug("%s: %s: %s", rc_name(rc), what, detail);
    } else {
        log_warn("%s: %s: %s (retrying with backoff)", rc_name(rc), what, detail);
        rc->fail_logged = true;
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;
    if (rc->ac != cac) {
        return;
    }
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this returns. */
        set_error(rc->s, "connect", cac->errstr);
        log_failure(rc, "connect failed", cac->errstr);
        rc->ac = NULL;
        rc->state = RC_IDLE;
        ev_timer_stop(rc->s->loop, &rc->connect_timer);
        ev_timer_stop(rc->s->loop, &rc->reap_timer);
        rconn_schedule_retry(rc);
        return;
    }
    if (!use_unix(rc->s->cfg)) {
        (void)redisEnableKeepAlive(&rc->ac->c);
    }
    log_debug("%s: socket connected, handshake in flight", rc_name(rc));
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;
    if (rc->ac != cac) {
        return; /* we freed it ourselves and already know */
    }
    /* hiredis freeing the context after an I/O error or server close. */
    const char *why = status == REDIS_OK ? "closed" : cac->errstr;
    set_error(rc->s, "disconnected", why);
    log_warn("%s: connection lost: %s", rc_name(rc), why);
    rc->fail_logged = true;
    rc->ac = NULL;
    rc->state = RC_IDLE;
    ev_timer_stop(rc->s->loop, &rc->connect_timer);
    ev_timer_stop(rc->s->loop, &rc->reap_timer);
    ev_timer_stop(rc->s->loop, &rc->stall_timer);
    rconn_schedule_retry(rc);
}

static void sub_send_subscribe(struct rconn *rc, struct store_sub *sb);
static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv);

static void rconn_ready(struct rconn *rc)
{
    struct store *s = rc->s;
    ev_timer_stop(s->loop, &rc->connect_timer);
    rc->state = RC_READY;
    rc->fail_logged = false;
    rc->timed_out = false;
    rconn_reset_backoff(rc);
    s->last_error[0] = '\0';
    STATS_INC(redis_reconnects);
    const struct cfg *c = s->cfg;
    if (use_unix(c)) {
        log_info("%s: connected to unix:%s db %u", rc_name(rc), c->redis_unix,
                 (unsigned)c->redis_db);
    } else {
        log_info("%s: connected to %s:%u db %u", rc_name(rc),
                 c->redis_host ? c->redis_host : "127.0.0.1", (unsigned)c->redis_port,
                 (unsigned)c->redis_db);
    }
    if (rc->kind == RC_SUB) {
        for (struct store_sub *sb = s->subs; sb != NULL; sb = sb->next) {
            sub_send_subscribe(rc, sb);
        }
    }
}

static void on_handshake(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *rc = priv;
    redisReply *r = reply;
    if (rc->ac != ac || rc->state != RC_HANDSHAKE || r == NULL) {
        return; /* stale context, or teardown (onDisconnect handles that) */
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* Redis' AUTH errors never echo the password. */
        set_error(rc->s, "handshake", r->str);
        log_failure(rc, "handshake refused", r->str);
        rconn_fail(rc, NULL);
        return;
    }
    if (--rc->hs_pending == 0) {
        rconn_ready(rc);
    }
}

static int send_handshake(struct rconn *rc)
{
    const struct cfg *c = rc->s->cfg;
    redisAsyncContext *ac = rc->ac;
    rc->hs_pending = 0;
    if (has_password(c)) {
        const char *argv[3] = {"AUTH", NULL, NULL};
        int argc = 2;
        if (has_user(c)) {
            argv[1] = c->redis_user;
            argv[2] = c->redis_password;
            argc = 3;
        } else {
            argv[1] = c->redis_password;
        }
        if (redisAsyncCommandArgv(ac, on_handshake, rc, argc, argv, NULL) != REDIS_OK) {
            return -1;
        }
        rc->hs_pending++;
    }
    if (rc->kind == RC_CMD && c->redis_db != 0) {
        if (redisAsyncCommand(ac, on_handshake, rc, "SELECT %u", (unsigned)c->redis_db) !=
            REDIS_OK) {
            return -1;
        }
        rc->hs_pending++;
    }
    if (rc->kind == RC_CMD) {
        /* Pipelined before the final PING, so scripts are loaded by "ready". */
        for (struct store_script *sc = rc->s->scripts; sc != NULL; sc = sc->next) {
            if (redisAsyncCommand(ac, on_script_loaded, sc, "SCRIPT LOAD %b", sc->lua,
                                  sc->len) != REDIS_OK) {
                return -1;
            }
        }
    }
    /* The PING answers last: the server took every step above. */
    if (redisAsyncCommand(ac, on_handshake, rc, "PING") != REDIS_OK) {
        return -1;
    }
    rc->hs_pending++;
    return 0;
}

static void rconn_connect(struct rconn *rc)
{
    struct store *s = rc->s;
    const struct cfg *c = s->cfg;
    if (s->closing || rc->ac != NULL) {
        return;
    }
    redisAsyncContext *ac = use_unix(c) ? redisAsyncConnectUnix(c->redis_unix)
                                        : redisAsyncConnect(c->redis_host ? c->redis_host
                                                                          : "127.0.0.1",
                                                            c->redis_port ? c->redis_port : 6379);
    if (ac == NULL) {
        set_error(s, "connect", "out of memory");
        log_failure(rc, "connect failed", "out of memory");
        rconn_schedule_retry(rc);
        return;
    }
    if (ac->err) {
        set_error(s, "connect", ac->errstr);
        log_failure(rc, "connect failed", ac->errstr);
        redisAsyncFree(ac); /* no callbacks registered yet */
        rconn_schedule_retry(rc);
        return;
    }
    ac->data = rc;
    if (redisLibevAttach(s->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        rconn_schedule_retry(rc);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->ac = ac;
    rc->state = RC_HANDSHAKE;
    if (send_handshake(rc) != 0) {
        set_error(s, "handshake: could not queue commands", NULL);
        rconn_close(rc);
        rconn_schedule_retry(rc);
        return;
    }
    int64_t ct = c->redis_connect_timeout_ms > 0 ? c->redis_connect_timeout_ms : 1000;
    ev_timer_set(&rc->connect_timer, (ev_tstamp)ct / 1000.0, 0.);
    ev_timer_start(s->loop, &rc->connect_timer);
}

static void rconn_init(struct store *s, struct rconn *rc, enum rconn_kind kind)
{
    rc->s = s;
    rc->kind = kind;
    rc->state = RC_IDLE;
    ev_timer_init(&rc->connect_timer, on_connect_timer, 1., 0.);
    ev_timer_init(&rc->retry_timer, on_retry_timer, 1., 0.);
    ev_timer_init(&rc->reap_timer, on_reap_timer, 0., 0.);
    ev_timer_init(&rc->stall_timer, on_stall_timer, 1., 0.);
    rconn_reset_backoff(rc);
}

static void rconn_stop(struct rconn *rc)
{
    ev_timer_stop(rc->s->loop, &rc->retry_timer);
    rconn_close(rc);
}

/* ---- scripts ----------------------------------------------------------------- */

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
    struct store_script *sc = priv;
    redisReply *r = reply;
    note_progress(ac->data, r);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_err("redis: SCRIPT LOAD %s failed: %s", sc->sha, r->str);
    }
}

struct store_script *store_script_new(struct store *s, const char *lua)
{
    struct store_script *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        return NULL;
    }
    sc->len = strlen(lua);
    sc->lua = strdup(lua);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (sc->lua == NULL || EVP_Digest(sc->lua, sc->len, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        mdlen != 20) {
        free(sc->lua);
        free(sc);
        return NULL;
    }
    for (unsigned i = 0; i < 20; i++) {
        snprintf(sc->sha + 2 * i, 3, "%02x", md[i]);
    }
    sc->next = s->scripts;
    s->scripts = sc;
    if (s->cmd.state == RC_READY) {
        /* Best effort: a failure here is healed by the NOSCRIPT retry. */
        if (s->cmd.ac->replies.head == NULL) {
            s->cmd.last_progress = ev_now(s->loop); /* as in sreq_sent */
        }
        (void)redisAsyncCommand(s->cmd.ac, on_script_loaded, sc, "SCRIPT LOAD %b", sc->lua,
                                sc->len);
    }
    return sc;
}

const char *store_script_sha(const struct store_script *sc)
{
    return sc->sha;
}

/* ---- pub/sub ------------------------------------------------------------------- */

static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv)
{
    UNUSED(ac);
    struct store_sub *sb = priv;
    redisReply *r = reply;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        return; /* teardown (NULL) or a malformed push */
    }
    if (strcmp(r->element[0]->str, "message") != 0) {
        log_debug("redis pub/sub: %s %s", r->element[0]->str,
                  r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "?");
        return; /* subscribe / unsubscribe confirmations */
    }
    const redisReply *ch = r->element[1], *msg = r->element[2];
    if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING) {
        return;
    }
    sb->cb(ch->str, (const uint8_t *)msg->str, msg->len, sb->arg);
}

static void sub_send_subscribe(struct rconn *rc, struct store_sub *sb)
{
    if (redisAsyncCommand(rc->ac, on_sub_message, sb, "SUBSCRIBE %s", sb->channel) != REDIS_OK) {
        log_warn("redis pub/sub: could not queue SUBSCRIBE %s", sb->channel);
        rconn_fail(rc, "subscribe: could not queue");
    }
}

int store_subscribe(struct store *s, const char *channel, store_msg_cb cb, void *arg)
{
    if (s->closing) {
        return -1;
    }
    struct store_sub *sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        return -1;
    }
    sb->channel = strdup(channel);
    if (sb->channel == NULL) {
        free(sb);
        return -1;
    }
    sb->cb = cb;
    sb->arg = arg;
    sb->next = s->subs;
    s->subs = sb;
    if (!s->sub.started) {
        s->sub.started = true;
        rconn_connect(&s->sub); /* subscribes every channel once ready */
    } else if (s->sub.state == RC_READY) {
        sub_send_subscribe(&s->sub, sb);
    }
    return 0;
}

/* ---- public API ------------------------------------------------------------------ */

static void digest_str(EVP_MD_CTX *ctx, const char *str)
{
    /* Length-prefixed so ("ab","c") and ("a","bc") differ; NULL and "" alike. */
    uint64_t len = str != NULL ? strlen(str) : 0;
    EVP_DigestUpdate(ctx, &len, sizeof(len));
    if (len > 0) {
        EVP_DigestUpdate(ctx, str, len);
    }
}

static void conn_digest(const struct cfg *c, unsigned char out[32])
{
    memset(out, 0, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return; /* all-zero: every reconfigure then reconnects, which is safe */
    }
    digest_str(ctx, c->redis_host);
    digest_str(ctx, c->redis_unix);
    digest_str(ctx, c->redis_user);
    digest_str(ctx, c->redis_password);
    uint32_t nums[2] = {c->redis_port, c->redis_db};
    EVP_DigestUpdate(ctx, nums, sizeof(nums));
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
}

struct store *store_new(struct ev_loop *loop, const struct cfg *c)
{
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->loop = loop;
    s->cfg = c;
    s->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)(ev_time() * 1e6) ^ 0x9e3779b97f4a7c15ull;
    if (s->rng == 0) {
        s->rng = 1;
    }
    conn_digest(c, s->conn_digest);
    ev_prepare_init(&s->flush, on_flush);
    rconn_init(s, &s->cmd, RC_CMD);
    rconn_init(s, &s->sub, RC_SUB);
    rconn_connect(&s->cmd);
    return s;
}

void store_free(struct store *s)
{
    if (s == NULL) {
        return;
    }
    s->closing = true;
    ev_prepare_stop(s->loop, &s->flush);
    /* Freeing the contexts runs every pending hiredis callback with NULL: each
     * unanswered request gets STORE_DOWN, each answered one is just freed. */
    rconn_stop(&s->cmd);
    rconn_stop(&s->sub);
    while (s->reqs != NULL) {
        /* Defensive: nothing should remain once hiredis let go of everything. */
        struct sreq *q = s->reqs;
        if (!q->done) {
            sreq_finish(q, NULL, STORE_DOWN);
        }
        sreq_free(q);
    }
    while (s->scripts != NULL) {
        struct store_script *sc = s->scripts;
        s->scripts = sc->next;
        free(sc->lua);
        free(sc);
    }
    while (s->subs != NULL) {
        struct store_sub *sb = s->subs;
        s->subs = sb->next;
        free(sb->channel);
        free(sb);
    }
    free(s);
}

bool store_connected(const struct store *s)
{
    return !s->closing && s->cmd.state == RC_READY;
}

const char *store_last_error(const struct store *s)
{
    return s->last_error;
}

void store_reconfigure(struct store *s, const struct cfg *c)
{
    unsigned char d[32];
    conn_digest(c, d);
    s->cfg = c;
    if (memcmp(d, s->conn_digest, sizeof(d)) == 0) {
        return;
    }
    memcpy(s->conn_digest, d, sizeof(d));
    log_info("redis: connection settings changed, reconnecting");
    struct rconn *rcs[2] = {&s->cmd, &s->sub};
    for (size_t i = 0; i < ARRAY_SIZE(rcs); i++) {
        struct rconn *rc = rcs[i];
        if (rc->kind == RC_SUB && !rc->started) {
            continue;
        }
        ev_timer_stop(s->loop, &rc->retry_timer);
        rconn_reset_backoff(rc);
        rconn_fail(rc, NULL); /* reap, then retry at once-ish with the new settings */
    }
}

static int cmd_ready(struct store *s)
{
    return !s->closing && s->cmd.state == RC_READY && s->cmd.ac != NULL ? 0 : -1;
}

/* Room for one more request of `bytes`? Counted as shed when not. */
static bool has_room(struct store *s, size_t bytes)
{
    size_t max = cfg_max_pending(s->cfg);
    if (s->npending >= max || s->pending_bytes + bytes > max * (size_t)2048) {
        STATS_INC(redis_shed);
        return false;
    }
    return true;
}

size_t store_pending(const struct store *s)
{
    return s->npending;
}

int store_command(struct store *s, int argc, const char **argv, const size_t *argvlen,
                  int64_t timeout_ms, store_cb cb, void *arg)
{
    if (cmd_ready(s) != 0 || argc <= 0) {
        return -1;
    }
    if (timeout_ms <= 0) {
        timeout_ms = s->cfg->redis_timeout_ms;
    }
    size_t bytes = 16 * (size_t)argc;
    for (int i = 0; i < argc; i++) {
        bytes += argvlen != NULL ? argvlen[i] : strlen(argv[i]);
    }
    if (!has_room(s, bytes)) {
        return -1;
    }
    struct sreq *q = sreq_new(s, timeout_ms, cb, arg, 0);
    if (q == NULL) {
        return -1;
    }
    q->bytes = bytes;
    bool empty = s->cmd.ac->replies.head == NULL;
    if (redisAsyncCommandArgv(s->cmd.ac, on_reply, q, argc, argv, argvlen) != REDIS_OK) {
        free(q);
        return -1;
    }
    sreq_sent(q, empty);
    return 0;
}

/* Decimal digits of v. */
static size_t dec_len(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* RESP bulk string "$<len>\r\n<bytes>\r\n" at p; returns the end. */
static char *put_bulk(char *p, const char *str, size_t len)
{
    *p++ = '$';
    p = util_u64_dec(p, len);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, str, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static size_t bulk_size(size_t len)
{
    return 1 + dec_len(len) + 2 + len + 2;
}

int store_eval(struct store *s, struct store_script *sc, int nkeys, int argc, const char **argv,
               const size_t *argvlen, int64_t timeout_ms, store_cb cb, void *arg)
{
    if (cmd_ready(s) != 0 || argc < 0 || nkeys < 0 || nkeys > argc) {
        return -1;
    }
    if (timeout_ms <= 0) {
        timeout_ms = s->cfg->redis_timeout_ms;
    }
    /* EVALSHA <sha> <nkeys> <argv...> in RESP, formatted here rather than by
     * redisFormatCommandArgv, which spends most of a decision's formatting time
     * in sprintf and needs argv copies: size it exactly, then one pass. */
    size_t nk = (size_t)nkeys;
    size_t total = 1 + dec_len((size_t)argc + 3) + 2 + bulk_size(7) + bulk_size(40) +
                   bulk_size(dec_len(nk));
    for (int i = 0; i < argc; i++) {
        total += bulk_size(argvlen != NULL ? argvlen[i] : strlen(argv[i]));
    }
    if (!has_room(s, total)) {
        return -1;
    }
    struct sreq *q = sreq_new(s, timeout_ms, cb, arg, total);
    if (q == NULL) {
        return -1;
    }
    q->bytes = total;
    q->sc = sc;
    char *p = q->fmt;
    char nkbuf[20];
    *p++ = '*';
    p = util_u64_dec(p, (size_t)argc + 3);
    *p++ = '\r';
    *p++ = '\n';
    p = put_bulk(p, "EVALSHA", 7);
    p = put_bulk(p, sc->sha, 40);
    p = put_bulk(p, nkbuf, (size_t)(util_u64_dec(nkbuf, nk) - nkbuf));
    for (int i = 0; i < argc; i++) {
        p = put_bulk(p, argv[i], argvlen != NULL ? argvlen[i] : strlen(argv[i]));
    }
    q->fmtlen = (size_t)(p - q->fmt);
    bool empty = s->cmd.ac->replies.head == NULL;
    if (redisAsyncFormattedCommand(s->cmd.ac, on_reply, q, q->fmt, q->fmtlen) != REDIS_OK) {
        free(q);
        return -1;
    }
    sreq_sent(q, empty);
    return 0;
}

/* ---- replies ------------------------------------------------------------------------ */

enum store_rtype store_reply_type(const struct store_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    switch (x != NULL ? x->type : REDIS_REPLY_NIL) {
    case REDIS_REPLY_INTEGER:
        return STORE_R_INT;
    case REDIS_REPLY_STRING:
        return STORE_R_STR;
    case REDIS_REPLY_ARRAY:
        return STORE_R_ARRAY;
    case REDIS_REPLY_ERROR:
        return STORE_R_ERR;
    case REDIS_REPLY_STATUS:
        return STORE_R_STATUS;
    default:
        return STORE_R_NIL;
    }
}

long long store_reply_int(const struct store_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    return x != NULL && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
}

const char *store_reply_str(const struct store_reply *r, size_t *len)
{
    const redisReply *x = (const redisReply *)r;
    if (x == NULL || (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_ERROR &&
                      x->type != REDIS_REPLY_STATUS)) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = x->len;
    }
    return x->str;
}

size_t store_reply_len(const struct store_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    return x != NULL && x->type == REDIS_REPLY_ARRAY ? x->elements : 0;
}

const struct store_reply *store_reply_elem(const struct store_reply *r, size_t i)
{
    const redisReply *x = (const redisReply *)r;
    if (x == NULL || x->type != REDIS_REPLY_ARRAY || i >= x->elements) {
        return NULL;
    }
    return (const struct store_reply *)x->element[i];
}
