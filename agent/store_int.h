/* store_int.h - what store.c and store_cluster.c share, and nothing else includes.
 *
 * The connection, request and store structs, and the few functions one of the two
 * files calls in the other. It includes hiredis, so only store*.c may include it:
 * they stay the only files that see hiredis. Not an API: store.h is.
 */
#ifndef STICKYD_STORE_INT_H
#define STICKYD_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "slots.h"
#include "store.h"

/* Cluster: nodes known at most (masters, replicas, seeds). */
#define STORE_NODES_MAX 64

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
    bool fail_logged;       /* failures after the first are logged at debug level... */
    char fail_what[64];     /* ...unless their reason changes (e.g. refused -> closed) */
    bool role_denied_logged; /* store_check_role met an ACL without +role */
    bool reconnect_now;      /* the reap connects at once (reconnect_all) */
    bool started;           /* the pub/sub connection is only started on demand */
    ev_tstamp last_progress; /* last reply, or when the pipeline became non-empty */
    bool timed_out;          /* a request passed its deadline since the last reply */
    /* Cluster nodes only: the node's address, whether it serves slots in the
     * current map, and whether it is kept connected (masters; seeds and known
     * replicas only while no master answers). */
    char host[SLOTS_HOST_MAX];
    unsigned port;
    bool node, master, wanted;
    bool loss_noted; /* this outage already asked for a map refresh */
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
    struct rconn *rc; /* the connection hiredis holds it on */
    store_cb cb;
    void *arg;
    ev_timer deadline;
    struct store_script *sc; /* eval only */
    size_t fmtlen;           /* eval only: length of fmt */
    size_t bytes; /* counted in s->pending_bytes until hiredis lets go */
    uint64_t sent_ns; /* when it entered hiredis (round-trip histogram) */
    bool done;    /* the user callback has run */
    bool retried; /* NOSCRIPT reload already tried */
    unsigned redirects; /* MOVED/ASK followed */
    bool asking;        /* sent behind ASKING: a NOSCRIPT retry needs it again */
    /* The formatted command, kept for a NOSCRIPT retry or a redirect. It lives in
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
    struct store_sub *retired; /* unsubscribed: hiredis may still hold them, freed last */
    bool closing;
    uint64_t rng;
    /* SHA-256 of the settings the connections use, so store_reconfigure can
     * tell a change without keeping the old config (or a password copy). */
    unsigned char conn_digest[32];
    char last_error[160];
    /* Discovery hooks (store_on_event, store_set_addr, store_check_role). */
    store_event_cb event_cb;
    void *event_arg;
    bool role_check;
    bool has_addr;        /* addr_* replace redis.host/port */
    uint16_t addr_port;
    char addr_host[256];
    char name_cmd[24], name_sub[40]; /* log prefixes: "redis", "redis pub/sub" */
    /* Cluster mode: every node known (never freed before the store), the slot
     * map (index into nodes, or SLOTS_NONE) and its refresh. */
    bool cluster;
    struct rconn *nodes[STORE_NODES_MAX];
    size_t nnodes;
    uint16_t slot_node[SLOTS_COUNT];
    size_t map_slots;  /* slots the map covers */
    bool map_inflight; /* CLUSTER SLOTS sent, not answered */
    ev_tstamp map_sent; /* when; an answer overdue by STORE_MAP_DEGRADED_S x 4 is given up */
    bool map_want;     /* a refresh found no node to ask: ask the next one ready */
    ev_timer map_timer;
    size_t next_any; /* round robin for keyless commands */
};

_Static_assert(RC_STATE_COUNT == 4, "rconn states");

/* ---- store.c, for store_cluster.c ------------------------------------------ */

/* "what: detail" (or just "what") into s->last_error for store_last_error(). */
void store_set_error(struct store *s, const char *what, const char *detail);
/* A reply (r != NULL) arrived on rc: the watchdog counts silence from now. */
void store_note_progress(struct rconn *rc, const redisReply *r);
/* A new idle connection of kind, with its timers, owned by s. */
void store_rconn_init(struct store *s, struct rconn *rc, enum rconn_kind kind);
/* Start connecting rc (a no-op while it has a context or the store closes). */
void store_rconn_connect(struct rconn *rc);
/* Condemn rc (safe inside hiredis callbacks): the reap timer frees its context,
 * then it backs off and retries (a cluster node only while wanted). why: NULL, or
 * the reason for store_last_error. */
void store_rconn_fail(struct rconn *rc, const char *why);
/* Hand q's formatted command to rc, behind an ASKING when ask (a redirect).
 * 0, or -1 when rc cannot take it. */
int store_sreq_resend(struct sreq *q, struct rconn *rc, bool ask)
    __attribute__((warn_unused_result));
/* Restart rc's backoff from redis.reconnect_min. */
void store_rconn_reset_backoff(struct rconn *rc);

/* ---- store_cluster.c, for store.c ------------------------------------------ */

/* store_new: the map timer and an empty slot map; in cluster mode the seeds
 * (redis.nodes, or redis.host:port) connect and the first map read is scheduled. */
void store_cluster_init(struct store *s);
/* store_reconfigure in cluster mode: new seeds join the nodes known, every node
 * wanted reconnects with the new settings and the map is read again. */
void store_cluster_reconfigure(struct store *s);
/* The READY master for a request on key[0..keylen) (key NULL: any master, round
 * robin), or NULL (an unserved slot also asks for a map refresh). Cluster mode. */
struct rconn *store_cluster_route(struct store *s, const char *key, size_t keylen);
/* An error reply to q that may say the map moved (MOVED, ASK; CLUSTERDOWN,
 * TRYAGAIN and READONLY refresh the map). true when q was resent and is in flight
 * again; false when the caller is to get the reply. */
bool store_cluster_redirect(struct sreq *q, const redisReply *r);
/* Read the map again shortly (once for a burst of calls); a no-op standalone. */
void store_cluster_refresh_soon(struct store *s);
/* rc, a cluster node, finished its handshake: read the map if one was wanted. */
void store_cluster_node_ready(struct rconn *rc);
/* Every master of the map has a READY connection (and there is one). */
bool store_cluster_masters_ready(const struct store *s);
/* Point rc, the pub/sub connection of a cluster, at a READY master, else at any
 * node known (classic pub/sub is cluster-wide). */
void store_cluster_pick_sub(struct store *s, struct rconn *rc);

#endif
