/* ledger.h - what this agent owes Redis, written in coalesced batches, and the
 * fleet view it reads back.
 *
 * Decisions are answered before Redis hears of them (assign.c). What they and
 * the close lines change in Redis - tunnel opens and closes (counted once per
 * unique-id), session-record touches (adopt, refresh, correct) - is queued here
 * per backend and written at most every redis.batch_interval as one script run
 * per backend (agent/lua/ledger.lua), at most one batch in flight per backend;
 * on a Redis Cluster the record touches go apart, one run each on the record's
 * own slot (not counted in flight; dropped and counted when the store refuses).
 * Each reply carries back the fleet view the decisions read: cluster-wide
 * connection counts, the admin states (drain/maint) and Redis' clock.
 *
 * Bounded: at most LEDGER_MAX_OPS queued operations per backend, LEDGER_BATCH_OPS
 * per batch; past the bound an operation is dropped and counted (the next resync
 * corrects counts; a record is adopted at the session's next touch). Memory stays
 * flat however long Redis stalls. Must not block, and never calls up: moved
 * records go to the callback its owner gave.
 */
#ifndef STICKYD_LEDGER_H
#define STICKYD_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct ev_loop;
struct cfg;
struct store;
struct ledger;

#define LEDGER_MAX_OPS 32768u  /* queued per backend */
#define LEDGER_BATCH_OPS 1024u /* written per script run */

/* Record touch modes (ledger.lua). */
#define LEDGER_NEW 'n'     /* a new session: create the record */
#define LEDGER_ADOPT 'a'   /* a hit: create the record if Redis lost it, follow the cookie */
#define LEDGER_REFRESH 'r' /* the same, and renew the record's TTL */
#define LEDGER_FORCE 'f'   /* a correction: write this server, clear an operator's move */

/* A record an operator moved (stickyctl move) while the cookie said otherwise:
 * rid and server are borrowed for the call. */
typedef void (*ledger_moved_fn)(const char *backend, const char *rid, size_t rid_len,
                                const char *server, size_t server_len, void *arg);

/* New ledger writing through st (which must outlive it) with c's settings. */
struct ledger *ledger_new(struct ev_loop *loop, const struct cfg *c, struct store *st);
/* Drop what is queued and free. Store callbacks still pending are disarmed. */
void ledger_free(struct ledger *l);
/* Stop writing (a graceful shutdown left the cluster): every later op is dropped. */
void ledger_stop(struct ledger *l);
void ledger_on_moved(struct ledger *l, ledger_moved_fn fn, void *arg);

/* Queue a tunnel open of uid on server (a uid counted on another server is
 * moved), a close of uid, or a record touch (rid: the record id). Names are
 * copied. 0, or -1 when dropped (bound reached, name too long, stopped). */
int ledger_open(struct ledger *l, const char *backend, const char *uid, size_t uid_len,
                const char *server, size_t server_len);
int ledger_close(struct ledger *l, const char *backend, size_t backend_len, const char *uid,
                 size_t uid_len);
int ledger_touch(struct ledger *l, const char *backend, const char *rid, size_t rid_len,
                 const char *server, size_t server_len, char mode);
/* Write what is queued now, even with a batch in flight (before a resync, so
 * that it applies to the counts the resync resets). */
void ledger_flush(struct ledger *l);

/* Read the fleet view now (a change event said it moved), one batch per backend
 * with nothing in flight; it is also read with every batch, and every
 * min(haproxy.refresh, 1 s) when nothing is written. */
void ledger_refresh(struct ledger *l);

/* The fleet view of one server: live connections across every instance as of
 * the last batch, plus this agent's own opens and closes not yet acknowledged;
 * and its cluster admin state. Unknown servers read as 0 connections, READY. */
struct ledger_srv {
    int64_t conns;
    int64_t pending; /* of conns, this agent's opens not acknowledged yet */
    enum model_state admin;
    int64_t deadline_ms; /* drain deadline, Redis time (0: none) */
    int64_t since_ms;    /* slow start: ready since (Redis time; 0: not up yet), or
                          * MODEL_SINCE_NONE when nothing is recorded */
    unsigned ninst;      /* live instances of the backend in the last view (0: unknown) */
    unsigned rank;       /* this instance's 0-based rank among them, by name */
};
void ledger_server(const struct ledger *l, const char *backend, const char *server,
                   struct ledger_srv *out);

/* Redis' clock now, estimated from the batches' TIME (a lower bound: never
 * ahead of Redis by more than the clock drift since the last sample); 0 when no
 * batch has been answered yet. */
int64_t ledger_redis_now_ms(const struct ledger *l);

/* ---- the batch reply, parsed without I/O (exposed for fuzz_reply) ---- */

/* ledger.lua's reply {now_ms, HGETALL conns, HGETALL state, opened, closed, moved}
 * with each part's type checked. The hashes and moved are views into the reply
 * (borrowed, as the reply). */
struct store_reply;
struct ledger_reply {
    int64_t redis_ms; /* >= 0 */
    const struct store_reply *conns, *state, *moved; /* arrays */
    int64_t opened, closed;                          /* >= 0 */
    /* the live instances and this one's rank among them (caps' room), when the
     * reply carries them (8 elements; a touches-only reply has 6) */
    bool has_rank;
    uint32_t ninst, rank; /* ninst > rank */
};
/* 0 with *out filled, or -1 when r is not such a reply (not 6 or 8 elements, a part of
 * another type, a negative count or time). Pure. */
int ledger_reply_parse(const struct store_reply *r, struct ledger_reply *out)
    __attribute__((warn_unused_result));
/* The i-th entry of moved, {k, server}: 0 with *k (1-based index of the batch's
 * touches) and the server name view, or -1 when that entry is malformed (to skip). */
int ledger_reply_moved(const struct ledger_reply *x, size_t i, long long *k, const char **srv,
                       size_t *len) __attribute__((warn_unused_result));

#endif
