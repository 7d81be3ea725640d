/* store.c - Redis through hiredis 0.14's async API on the agent's libev loop.
 *
 * With store_cluster.c (a Redis Cluster's nodes, slot map and routing), the only
 * files that include hiredis. Owns the command connection (or, in a cluster, the
 * mechanics of one per master), the optional pub/sub connection, their
 * reconnect/backoff and handshake, per-request deadlines and the hung-server
 * watchdog. It must not know what the commands mean: a cluster command is routed
 * by the key its caller names (argv[1], KEYS[1]), by store_cluster.c.
 *
 *   store_command/store_eval -> route (cluster: slot -> master) -> struct sreq
 *        (listed in s->reqs, deadline timer) -> that connection's hiredis pipeline
 *        (privdata = sreq), written once per loop iteration by on_flush
 *        -> on_reply [MOVED/ASK: the same sreq resent on the node named] -> user
 *           cb, exactly once
 *
 * Lifetimes: a struct rconn lives as long as the store (cluster nodes too: never
 * freed before it) and always outlives its redisAsyncContext, so it is safe as
 * hiredis privdata / ac->data. A struct sreq lives until hiredis gives it back
 * (reply, or NULL on disconnect/free), even when its user callback already ran
 * on a deadline; q->rc is the connection holding it now.
 */
#include "store_int.h"

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

static const char *rc_name(const struct rconn *rc)
{
    if (rc->node) {
        static char buf[SLOTS_HOST_MAX + 32];
        snprintf(buf, sizeof(buf), "redis %s:%u", rc->host, rc->port);
        return buf;
    }
    return rc->kind == RC_CMD ? rc->s->name_cmd : rc->s->name_sub;
}

/* ---- small helpers ------------------------------------------------------ */

/* "what: detail" (or just "what") into s->last_error for store_last_error(). */
void store_set_error(struct store *s, const char *what, const char *detail)
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

/* ---- discovery hooks ------------------------------------------------------ */

static void emit(struct rconn *rc, enum store_event ev)
{
    if (rc->kind == RC_CMD && rc->s->event_cb != NULL && !rc->s->closing) {
        rc->s->event_cb(ev, rc->s->event_arg);
    }
}

/* Where the connections go: store_set_addr's address, else the config's. */
static const char *target_host(const struct store *s)
{
    return s->has_addr ? s->addr_host
                       : s->cfg->redis_host != NULL ? s->cfg->redis_host : "127.0.0.1";
}

static uint16_t target_port(const struct store *s)
{
    return s->has_addr ? s->addr_port : s->cfg->redis_port ? s->cfg->redis_port : 6379;
}

static bool target_unix(const struct store *s)
{
    return !s->has_addr && use_unix(s->cfg);
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
    struct rconn *rc = q->rc;
    /* hiredis still holds q: the late reply (or the disconnect) frees it.
     * Arm the watchdog before the callback, which may issue new requests. */
    rc->timed_out = true;
    if (!ev_is_active(&rc->stall_timer)) {
        stall_check(rc);
    }
    sreq_finish(q, NULL, STORE_TIMEOUT);
    emit(rc, STORE_EV_TIMEOUT);
}

void store_note_progress(struct rconn *rc, const redisReply *r)
{
    if (r != NULL) {
        rc->last_progress = ev_now(rc->s->loop);
        rc->timed_out = false;
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Hand q's formatted command to rc, behind an ASKING when ask. rc may still be
 * in its handshake (a node just learnt from MOVED): hiredis queues the command
 * behind AUTH and PING, and a failed handshake ends it with STORE_DOWN. 0 or -1. */
int store_sreq_resend(struct sreq *q, struct rconn *rc, bool ask)
{
    struct store *s = q->s;
    if ((rc->state != RC_READY && rc->state != RC_HANDSHAKE) || rc->ac == NULL) {
        return -1;
    }
    if (rc->ac->replies.head == NULL) {
        rc->last_progress = ev_now(s->loop);
    }
    if (ask && redisAsyncCommand(rc->ac, NULL, NULL, "ASKING") != REDIS_OK) {
        return -1;
    }
    if (redisAsyncFormattedCommand(rc->ac, on_reply, q, q->fmt, q->fmtlen) != REDIS_OK) {
        return -1;
    }
    q->rc = rc;
    q->asking = ask;
    if (!ev_is_active(&s->flush)) {
        ev_prepare_start(s->loop, &s->flush);
    }
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct sreq *q = priv;
    struct rconn *rc = q->rc;
    redisReply *r = reply;

    if (r == NULL && rc->ac == ac && rc->state == RC_READY) {
        /* hiredis is tearing the connection down: callers invoked from here
         * must see "not connected" before onDisconnect tells us. */
        rc->state = RC_FAILED;
    }
    store_note_progress(rc, r);
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
    if (r->type == REDIS_REPLY_ERROR && q->s->cluster && store_cluster_redirect(q, r)) {
        return; /* in flight again, on the node that owns the slot */
    }
    if (r->type == REDIS_REPLY_ERROR && q->sc != NULL && !q->retried &&
        strncmp(r->str, "NOSCRIPT", 8) == 0 && rc->ac == ac && rc->state == RC_READY) {
        /* The server lost the script (restart, SCRIPT FLUSH): load it and retry
         * once, pipelined behind the load, still under the same deadline. */
        q->retried = true;
        if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %b", q->sc->lua, q->sc->len) ==
                REDIS_OK &&
            (!q->asking || redisAsyncCommand(ac, NULL, NULL, "ASKING") == REDIS_OK) &&
            redisAsyncFormattedCommand(ac, on_reply, q, q->fmt, q->fmtlen) == REDIS_OK) {
            log_debug("redis: NOSCRIPT for %s, reloaded and retried", q->sc->sha);
            return;
        }
    }
    bool readonly = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0;
    sreq_finish(q, r, STORE_OK);
    sreq_free(q);
    if (readonly && rc->ac == ac) {
        emit(rc, STORE_EV_READONLY); /* the node was demoted under us */
    }
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
    ev_prepare_stop(loop, w);
    for (size_t i = 0; i <= s->nnodes; i++) {
        struct rconn *rc = i == 0 ? &s->cmd : s->nodes[i - 1];
        if (rc->state == RC_READY && rc->ac != NULL && sdslen(rc->ac->c.obuf) > 0) {
            /* On a write error hiredis tears the context down through the same
             * callbacks (on_reply with NULL, on_disconnect) as from its watcher. */
            redisAsyncHandleWrite(rc->ac);
        }
    }
}

/* After a request entered hiredis: list it and arm its deadline. */
static void sreq_sent(struct sreq *q, bool pipeline_was_empty)
{
    struct store *s = q->s;
    struct rconn *rc = q->rc;
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
        store_set_error(rc->s, "no reply from server (hung?)", NULL);
        store_rconn_fail(rc, NULL);
        emit(rc, STORE_EV_DOWN);
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
    if (rc->node && !rc->loss_noted) {
        rc->loss_noted = true; /* once per outage: the degraded period polls after that */
        store_cluster_refresh_soon(s);   /* a node lost: the map may have changed (a failover) */
    }
    if (s->closing || ev_is_active(&rc->retry_timer) || (rc->node && !rc->wanted)) {
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

void store_rconn_reset_backoff(struct rconn *rc)
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
void store_rconn_fail(struct rconn *rc, const char *why)
{
    if (why != NULL) {
        store_set_error(rc->s, why, NULL);
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
    if (rc->reconnect_now) {
        rc->reconnect_now = false;
        store_rconn_connect(rc); /* new settings or a new master: no backoff to wait */
        return;
    }
    rconn_schedule_retry(rc);
}

static void on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    store_rconn_connect(container_of(w, struct rconn, retry_timer));
}

static void log_failure(struct rconn *rc, const char *what, const char *detail);

static void on_connect_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct rconn *rc = container_of(w, struct rconn, connect_timer);
    char after[32];
    snprintf(after, sizeof(after), "after %lld ms",
             (long long)rc->s->cfg->redis_connect_timeout_ms);
    log_failure(rc, "connect/handshake timed out", after);
    store_set_error(rc->s, "connect/handshake timeout", NULL);
    rconn_close(rc); /* a timer callback: outside hiredis, safe to free */
    rconn_schedule_retry(rc);
    emit(rc, STORE_EV_DOWN);
}

static void log_failure(struct rconn *rc, const char *what, const char *detail)
{
    char now[sizeof(rc->fail_what)];
    snprintf(now, sizeof(now), "%s: %s", what, detail);
    if (strcmp(now, rc->fail_what) != 0) {
        memcpy(rc->fail_what, now, sizeof(now));
        rc->fail_logged = false; /* a new reason is news */
    }
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
        store_set_error(rc->s, "connect", cac->errstr);
        log_failure(rc, "connect failed", cac->errstr);
        rc->ac = NULL;
        rc->state = RC_IDLE;
        ev_timer_stop(rc->s->loop, &rc->connect_timer);
        ev_timer_stop(rc->s->loop, &rc->reap_timer);
        rconn_schedule_retry(rc);
        emit(rc, STORE_EV_DOWN);
        return;
    }
    if (!target_unix(rc->s) || rc->s->cluster) {
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
    store_set_error(rc->s, "disconnected", why);
    log_failure(rc, "connection lost", why);
    rc->reconnect_now = false; /* the reap it was meant for will not run */
    rc->ac = NULL;
    rc->state = RC_IDLE;
    ev_timer_stop(rc->s->loop, &rc->connect_timer);
    ev_timer_stop(rc->s->loop, &rc->reap_timer);
    ev_timer_stop(rc->s->loop, &rc->stall_timer);
    rconn_schedule_retry(rc);
    emit(rc, STORE_EV_DOWN);
}

static void sub_send_subscribe(struct rconn *rc, struct store_sub *sb);
static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv);

static void rconn_ready(struct rconn *rc)
{
    struct store *s = rc->s;
    ev_timer_stop(s->loop, &rc->connect_timer);
    rc->state = RC_READY;
    rc->fail_logged = false;
    rc->loss_noted = false;
    rc->timed_out = false;
    store_rconn_reset_backoff(rc);
    s->last_error[0] = '\0';
    STATS_INC(redis_reconnects);
    const struct cfg *c = s->cfg;
    if (rc->node || (s->cluster && rc->kind == RC_SUB)) {
        log_info("%s: connected to %s:%u (cluster)", rc_name(rc), rc->host, rc->port);
    } else if (target_unix(s)) {
        log_info("%s: connected to unix:%s db %u", rc_name(rc), c->redis_unix,
                 (unsigned)c->redis_db);
    } else {
        log_info("%s: connected to %s:%u db %u", rc_name(rc), target_host(s),
                 (unsigned)target_port(s), (unsigned)c->redis_db);
    }
    if (rc->kind == RC_SUB) {
        for (struct store_sub *sb = s->subs; sb != NULL; sb = sb->next) {
            sub_send_subscribe(rc, sb);
        }
    }
    emit(rc, STORE_EV_READY);
    if (rc->node) {
        store_cluster_node_ready(rc);
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
        store_set_error(rc->s, "handshake", r->str);
        log_failure(rc, "handshake refused", r->str);
        store_rconn_fail(rc, NULL);
        emit(rc, STORE_EV_DOWN);
        return;
    }
    if (--rc->hs_pending == 0) {
        rconn_ready(rc);
    }
}

/* store_check_role: ROLE's first element must be "master". */
static void on_role(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *rc = priv;
    redisReply *r = reply;
    if (rc->ac != ac || rc->state != RC_HANDSHAKE || r == NULL) {
        return;
    }
    bool master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (!master && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0) {
        /* An ACL user without +role: trust the discovery; a replica still shows
         * itself with -READONLY on the first write. */
        if (!rc->role_denied_logged) {
            log_warn("%s: ROLE refused (%s); trusting the Sentinels (grant the user +role)",
                     rc_name(rc), r->str);
            rc->role_denied_logged = true;
        }
        master = true;
    }
    if (master) {
        if (--rc->hs_pending == 0) {
            rconn_ready(rc);
        }
        return;
    }
    const char *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                               r->element[0]->type == REDIS_REPLY_STRING
                           ? r->element[0]->str
                       : r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "?";
    char why[160];
    snprintf(why, sizeof(why), "%.64s:%u is not a master (ROLE: %.60s)", target_host(rc->s),
             (unsigned)target_port(rc->s), role);
    log_failure(rc, why, "asking for the master again");
    store_rconn_fail(rc, why);
    emit(rc, STORE_EV_NOT_MASTER);
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
    if (rc->s->role_check) {
        if (redisAsyncCommand(ac, on_role, rc, "ROLE") != REDIS_OK) {
            return -1;
        }
        rc->hs_pending++;
    }
    /* The PING answers last: the server took every step above. */
    if (redisAsyncCommand(ac, on_handshake, rc, "PING") != REDIS_OK) {
        return -1;
    }
    rc->hs_pending++;
    return 0;
}

void store_rconn_connect(struct rconn *rc)
{
    struct store *s = rc->s;
    const struct cfg *c = s->cfg;
    if (s->closing || rc->ac != NULL) {
        return;
    }
    if (!s->cluster && !s->has_addr && c->redis_sentinels.n > 0) {
        return; /* store_set_addr connects once the master is known */
    }
    if (s->cluster && rc->kind == RC_SUB) {
        store_cluster_pick_sub(s, rc); /* any node will do, a master preferably */
    }
    bool by_addr = rc->node || (s->cluster && rc->kind == RC_SUB);
    redisAsyncContext *ac = by_addr         ? redisAsyncConnect(rc->host, (int)rc->port)
                            : target_unix(s) ? redisAsyncConnectUnix(c->redis_unix)
                                             : redisAsyncConnect(target_host(s), target_port(s));
    if (ac == NULL) {
        store_set_error(s, "connect", "out of memory");
        log_failure(rc, "connect failed", "out of memory");
        rconn_schedule_retry(rc);
        emit(rc, STORE_EV_DOWN);
        return;
    }
    if (ac->err) {
        store_set_error(s, "connect", ac->errstr);
        log_failure(rc, "connect failed", ac->errstr);
        redisAsyncFree(ac); /* no callbacks registered yet */
        rconn_schedule_retry(rc);
        emit(rc, STORE_EV_DOWN);
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
        store_set_error(s, "handshake: could not queue commands", NULL);
        rconn_close(rc);
        rconn_schedule_retry(rc);
        return;
    }
    int64_t ct = c->redis_connect_timeout_ms > 0 ? c->redis_connect_timeout_ms : 1000;
    ev_timer_set(&rc->connect_timer, (ev_tstamp)ct / 1000.0, 0.);
    ev_timer_start(s->loop, &rc->connect_timer);
}

void store_rconn_init(struct store *s, struct rconn *rc, enum rconn_kind kind)
{
    rc->s = s;
    rc->kind = kind;
    rc->state = RC_IDLE;
    ev_timer_init(&rc->connect_timer, on_connect_timer, 1., 0.);
    ev_timer_init(&rc->retry_timer, on_retry_timer, 1., 0.);
    ev_timer_init(&rc->reap_timer, on_reap_timer, 0., 0.);
    ev_timer_init(&rc->stall_timer, on_stall_timer, 1., 0.);
    store_rconn_reset_backoff(rc);
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
    store_note_progress(ac->data, r);
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
    for (size_t i = 0; i <= s->nnodes; i++) { /* every node of a cluster loads it */
        struct rconn *rc = i == 0 ? &s->cmd : s->nodes[i - 1];
        if (rc->state != RC_READY || rc->ac == NULL) {
            continue;
        }
        /* Best effort: a failure here is healed by the NOSCRIPT retry. */
        if (rc->ac->replies.head == NULL) {
            rc->last_progress = ev_now(s->loop); /* as in sreq_sent */
        }
        (void)redisAsyncCommand(rc->ac, on_script_loaded, sc, "SCRIPT LOAD %b", sc->lua, sc->len);
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
    if (sb->cb == NULL) {
        return; /* unsubscribed: a message sent before the UNSUBSCRIBE landed */
    }
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
        store_rconn_fail(rc, "subscribe: could not queue");
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
        store_rconn_connect(&s->sub); /* subscribes every channel once ready */
    } else if (s->sub.state == RC_READY) {
        sub_send_subscribe(&s->sub, sb);
    }
    return 0;
}

int store_unsubscribe(struct store *s, const char *channel)
{
    for (struct store_sub **pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        struct store_sub *sb = *pp;
        if (strcmp(sb->channel, channel) != 0) {
            continue;
        }
        *pp = sb->next;       /* a reconnect no longer subscribes it */
        sb->cb = NULL;        /* nor does a late message reach the caller */
        sb->next = s->retired;
        s->retired = sb;
        if (s->sub.state == RC_READY &&
            redisAsyncCommand(s->sub.ac, NULL, NULL, "UNSUBSCRIBE %s", channel) != REDIS_OK) {
            store_rconn_fail(&s->sub, "unsubscribe: could not queue"); /* reconnects without it */
        }
        return 0;
    }
    return -1;
}

/* The connection for a request on key[0..keylen) (key NULL: any master), READY,
 * or NULL. Standalone: the one connection, without a call out of this file. */
static struct rconn *route(struct store *s, const char *key, size_t keylen)
{
    if (s->closing) {
        return NULL;
    }
    if (!s->cluster) {
        return s->cmd.state == RC_READY && s->cmd.ac != NULL ? &s->cmd : NULL;
    }
    return store_cluster_route(s, key, keylen);
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
    digest_str(ctx, c->redis_nodes);
    uint32_t nums[3] = {c->redis_port, c->redis_db, c->redis_cluster};
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
    store_set_label(s, "redis");
    ev_prepare_init(&s->flush, on_flush);
    store_rconn_init(s, &s->cmd, RC_CMD);
    store_rconn_init(s, &s->sub, RC_SUB);
    s->cluster = c->redis_cluster;
    store_cluster_init(s); /* a cluster's seeds connect there */
    if (!s->cluster) {
        store_rconn_connect(&s->cmd);
    }
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
    ev_timer_stop(s->loop, &s->map_timer);
    rconn_stop(&s->cmd);
    rconn_stop(&s->sub);
    for (size_t i = 0; i < s->nnodes; i++) {
        rconn_stop(s->nodes[i]);
    }
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
    while (s->retired != NULL) {
        struct store_sub *sb = s->retired;
        s->retired = sb->next;
        free(sb->channel);
        free(sb);
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        free(s->nodes[i]);
    }
    free(s);
}

bool store_connected(const struct store *s)
{
    if (s->closing) {
        return false;
    }
    if (!s->cluster) {
        return s->cmd.state == RC_READY;
    }
    for (size_t i = 0; i < s->nnodes && s->map_slots > 0; i++) {
        if (s->nodes[i]->master && s->nodes[i]->state == RC_READY) {
            return true;
        }
    }
    return false;
}

bool store_settled(const struct store *s)
{
    if (!s->cluster) {
        return store_connected(s);
    }
    return !s->closing && s->map_slots == SLOTS_COUNT && store_cluster_masters_ready(s);
}

bool store_is_cluster(const struct store *s)
{
    return s->cluster;
}

const char *store_last_error(const struct store *s)
{
    return s->last_error;
}

static void reconnect_all(struct store *s);

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
    if (c->redis_cluster != s->cluster) {
        log_warn("redis: redis.cluster changes take a restart; still %s",
                 s->cluster ? "in cluster mode" : "standalone");
    }
    if (s->cluster) {
        /* new seeds join the nodes known; every node reconnects with the new
         * credentials and the map is read again */
        store_cluster_reconfigure(s);
    }
    reconnect_all(s);
}

static void reconnect_all(struct store *s)
{
    struct rconn *rcs[2] = {&s->cmd, &s->sub};
    for (size_t i = 0; i < ARRAY_SIZE(rcs); i++) {
        struct rconn *rc = rcs[i];
        if ((rc->kind == RC_SUB && !rc->started) || (rc->kind == RC_CMD && s->cluster)) {
            continue;
        }
        ev_timer_stop(s->loop, &rc->retry_timer);
        store_rconn_reset_backoff(rc);
        if (rc->ac == NULL) {
            store_rconn_connect(rc); /* nothing to tear down: go now */
        } else {
            store_rconn_fail(rc, NULL); /* reap, then connect at once with the new settings */
            rc->reconnect_now = true;
        }
    }
}

void store_on_event(struct store *s, store_event_cb cb, void *arg)
{
    s->event_cb = cb;
    s->event_arg = arg;
}

void store_set_label(struct store *s, const char *label)
{
    snprintf(s->name_cmd, sizeof(s->name_cmd), "%s", label);
    snprintf(s->name_sub, sizeof(s->name_sub), "%s pub/sub", s->name_cmd);
}

void store_check_role(struct store *s, bool on)
{
    s->role_check = on;
}

int store_set_addr(struct store *s, const char *host, uint16_t port)
{
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof(s->addr_host)) {
        return -1;
    }
    bool same = s->has_addr && s->addr_port == port && strcmp(s->addr_host, host) == 0;
    if (same && (s->cmd.state != RC_IDLE || ev_is_active(&s->cmd.retry_timer))) {
        return 0; /* connected or reconnecting there already */
    }
    memcpy(s->addr_host, host, len + 1);
    s->addr_port = port;
    s->has_addr = true;
    if (!same) {
        log_info("redis: the master is now %s:%u, reconnecting", host, (unsigned)port);
    }
    reconnect_all(s);
    return 0;
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

/* Queue a command on rc (READY): formatted into the request, so that a redirect
 * or a retry can send the same bytes again. */
static int command_on(struct store *s, struct rconn *rc, int argc, const char **argv,
                      const size_t *argvlen, int64_t timeout_ms, store_cb cb, void *arg)
{
    if (rc == NULL || argc <= 0) {
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
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return -1;
    }
    struct sreq *q = sreq_new(s, timeout_ms, cb, arg, (size_t)len);
    if (q == NULL) {
        free(cmd);
        return -1;
    }
    memcpy(q->fmt, cmd, (size_t)len);
    free(cmd);
    q->fmtlen = (size_t)len;
    q->bytes = bytes;
    q->rc = rc;
    bool empty = rc->ac->replies.head == NULL;
    if (redisAsyncFormattedCommand(rc->ac, on_reply, q, q->fmt, q->fmtlen) != REDIS_OK) {
        free(q);
        return -1;
    }
    sreq_sent(q, empty);
    return 0;
}

int store_command(struct store *s, int argc, const char **argv, const size_t *argvlen,
                  int64_t timeout_ms, store_cb cb, void *arg)
{
    if (argc <= 0) {
        return -1;
    }
    const char *key = argc >= 2 ? argv[1] : NULL;
    size_t keylen = key == NULL ? 0 : argvlen != NULL ? argvlen[1] : strlen(key);
    return command_on(s, route(s, key, keylen), argc, argv, argvlen, timeout_ms, cb, arg);
}

int store_command_key(struct store *s, const char *key, size_t keylen, int argc,
                      const char **argv, const size_t *argvlen, int64_t timeout_ms, store_cb cb,
                      void *arg)
{
    return command_on(s, route(s, key, keylen), argc, argv, argvlen, timeout_ms, cb, arg);
}

size_t store_nodes(const struct store *s)
{
    if (!s->cluster) {
        return 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nnodes; i++) {
        n += s->nodes[i]->master;
    }
    return n;
}

/* The i-th master (in the order nodes were learnt), or the one connection. */
static struct rconn *nth_master(struct store *s, size_t i)
{
    if (!s->cluster) {
        return i == 0 ? &s->cmd : NULL;
    }
    for (size_t k = 0; k < s->nnodes; k++) {
        if (s->nodes[k]->master && i-- == 0) {
            return s->nodes[k];
        }
    }
    return NULL;
}

const char *store_node_name(struct store *s, size_t i, char *buf, size_t len)
{
    struct rconn *rc = nth_master(s, i);
    if (rc == NULL) {
        snprintf(buf, len, "?");
    } else if (rc->node) {
        snprintf(buf, len, strchr(rc->host, ':') ? "[%s]:%u" : "%s:%u", rc->host, rc->port);
    } else if (use_unix(s->cfg)) {
        snprintf(buf, len, "unix:%s", s->cfg->redis_unix);
    } else {
        snprintf(buf, len, "%s:%u", s->cfg->redis_host ? s->cfg->redis_host : "127.0.0.1",
                 (unsigned)s->cfg->redis_port);
    }
    return buf;
}

int store_command_node(struct store *s, size_t node, int argc, const char **argv,
                       const size_t *argvlen, int64_t timeout_ms, store_cb cb, void *arg)
{
    struct rconn *rc = s->closing ? NULL : nth_master(s, node);
    if (rc == NULL || rc->state != RC_READY || rc->ac == NULL) {
        return -1;
    }
    return command_on(s, rc, argc, argv, argvlen, timeout_ms, cb, arg);
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
    if (argc < 0 || nkeys < 0 || nkeys > argc) {
        return -1;
    }
    /* a cluster runs a script where KEYS[1] lives (the scripts touch one slot) */
    struct rconn *rc = route(s, nkeys > 0 ? argv[0] : NULL,
                             nkeys > 0 ? (argvlen != NULL ? argvlen[0] : strlen(argv[0])) : 0);
    if (rc == NULL) {
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
    q->rc = rc;
    bool empty = rc->ac->replies.head == NULL;
    if (redisAsyncFormattedCommand(rc->ac, on_reply, q, q->fmt, q->fmtlen) != REDIS_OK) {
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
