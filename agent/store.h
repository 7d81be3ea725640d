/* store.h - Redis through hiredis' async API on the agent's libev loop.
 *
 * The only module that includes hiredis (store.c, store_cluster.c and their
 * private store_int.h). Owns one command connection (with reconnect and
 * exponential backoff, AUTH, SELECT), or one per master of a Redis Cluster, and
 * an optional pub/sub connection. Every request has its own deadline timer,
 * because hiredis 0.14 has no async timeout; its callback runs exactly once: with
 * the reply, or with r == NULL and res != STORE_OK on deadline, disconnect or
 * shutdown. A late reply to a request that already timed out is swallowed.
 */
#ifndef STICKYD_STORE_H
#define STICKYD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct store;
struct store_script;
/* A Redis reply, BORROWED: valid only during the callback. */
struct store_reply;

enum store_result {
    STORE_OK = 0,      /* r is the reply (may itself be an error reply) */
    STORE_TIMEOUT = 1, /* deadline passed first */
    STORE_DOWN = 2,    /* not connected, or the connection dropped */
    STORE_RESULT_COUNT
};

enum store_rtype {
    STORE_R_NIL = 0,
    STORE_R_INT = 1,
    STORE_R_STR = 2,
    STORE_R_ARRAY = 3,
    STORE_R_ERR = 4,
    STORE_R_STATUS = 5,
    STORE_RTYPE_COUNT
};

typedef void (*store_cb)(const struct store_reply *r, enum store_result res, void *arg);
typedef void (*store_msg_cb)(const char *channel, const uint8_t *msg, size_t len, void *arg);

/* New store using c's redis_* settings; connects in the background (retrying
 * with backoff from redis_reconnect_min_ms doubling to redis_reconnect_max_ms,
 * +0..20% jitter; redis_connect_timeout_ms bounds TCP connect + handshake).
 * "Connected" means AUTH (user+password, or password) and SELECT succeeded.
 * The config must outlive the store (or be replaced with store_reconfigure). */
struct store *store_new(struct ev_loop *loop, const struct cfg *c);
/* Fail every pending request with STORE_DOWN (each callback once), close, free.
 * Must not be called from inside a store callback. */
void store_free(struct store *s);
bool store_connected(const struct store *s);
/* Read settings from c from now on (c must outlive the store; it may be the
 * same struct, overwritten in place by a reload). Reconnects both connections
 * only when host, port, unix, user, password or db differ from those last
 * seen; the old config need not be alive any more. */
void store_reconfigure(struct store *s, const struct cfg *c);
/* The last connection problem ("" once connected); never contains the password. */
const char *store_last_error(const struct store *s);

/* Send one command in argv form (argvlen may be NULL for C strings). 0 when
 * queued; -1 when it could not be (not connected, or out of memory): cb is then
 * NOT called, so the caller can fall back at once. timeout_ms <= 0 means
 * cfg->redis_timeout_ms. On a deadline the callback gets STORE_TIMEOUT and the
 * late reply is dropped. A connection with requests outstanding that receives no
 * reply for max(1 s, 10 x redis_timeout_ms, 2 x longest deadline) is deemed hung
 * and reconnected (its pending requests get STORE_DOWN unless already timed out). */
int store_command(struct store *s, int argc, const char **argv, const size_t *argvlen,
                  int64_t timeout_ms, store_cb cb, void *arg) __attribute__((warn_unused_result));

/* The same, routed by key[0..keylen) instead of argv[1]. In cluster mode
 * (redis.cluster) store_command routes by argv[1] - the key of nearly every
 * command; PUBLISH's channel, which any node takes - and store_command_key by
 * the key given (NULL: any master). Standalone, both use the one connection.
 * A redirect (MOVED, ASK) is followed on the node named when it is connected,
 * under the same deadline; else the callback gets the error reply. */
int store_command_key(struct store *s, const char *key, size_t keylen, int argc,
                      const char **argv, const size_t *argvlen, int64_t timeout_ms, store_cb cb,
                      void *arg) __attribute__((warn_unused_result));

/* Per-node commands (SCAN, DBSIZE, INFO): the masters of the current slot map
 * (1 standalone), the i-th one's address into buf (returns buf), and a command
 * sent to it (-1 when i is out of range or that master is not connected). */
size_t store_nodes(const struct store *s);
const char *store_node_name(struct store *s, size_t i, char *buf, size_t len);
int store_command_node(struct store *s, size_t node, int argc, const char **argv,
                       const size_t *argvlen, int64_t timeout_ms, store_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Cluster mode: true when the slot map covers every slot and each master's
 * connection is ready (store_connected: some master is). Standalone: as
 * store_connected. */
bool store_settled(const struct store *s);
bool store_is_cluster(const struct store *s);

/* Requests sent and not yet let go by hiredis (a timed-out one stays until its
 * late reply or the disconnect). store_command and store_eval refuse a request
 * (returning -1, counted as redis_shed) once cfg_max_pending(cfg) are pending or
 * their bytes pass 2 KiB each. */
size_t store_pending(const struct store *s);

/* A Lua script known by SHA1; loaded on each (re)connect (on every node of a
 * cluster), run with EVALSHA, reloaded and retried once on NOSCRIPT. Owned by
 * the store. store_eval runs it where KEYS[1] (argv[0]) lives: in a cluster
 * every key the script touches must be declared and in that one slot. */
struct store_script *store_script_new(struct store *s, const char *lua);
int store_eval(struct store *s, struct store_script *sc, int nkeys, int argc, const char **argv,
               const size_t *argvlen, int64_t timeout_ms, store_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* The script's SHA1, 40 lowercase hex digits (borrowed, lives with the store). */
const char *store_script_sha(const struct store_script *sc);

/* Subscribe to channel on a dedicated connection (started on the first call,
 * same AUTH and backoff; resubscribes on reconnect). cb gets the channel (a C
 * string) and the payload bytes, both borrowed for the call. 0 or -1 (OOM). */
int store_subscribe(struct store *s, const char *channel, store_msg_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Stop receiving channel (subscribed with store_subscribe): no callback for it
 * runs after this call, and a reconnect does not subscribe it again. 0, or -1
 * when it was not subscribed. */
int store_unsubscribe(struct store *s, const char *channel);

/* ---- hooks for a discovery module (agent/sentinel.c) ----------------------- */

/* What happened on the command connection, for a module that must rediscover
 * where Redis is. READY: handshake done (ROLE said master when checked). DOWN: a
 * connection attempt failed or a live connection dropped. READONLY: a reply was
 * -READONLY (the node is a replica now). TIMEOUT: a request passed its deadline.
 * NOT_MASTER: the ROLE check found a replica (the connection is dropped). */
enum store_event {
    STORE_EV_READY = 0,
    STORE_EV_DOWN = 1,
    STORE_EV_READONLY = 2,
    STORE_EV_TIMEOUT = 3,
    STORE_EV_NOT_MASTER = 4,
    STORE_EVENT_COUNT
};
/* Runs inside store (and hiredis) callbacks: it must not free the store, and
 * should only note the event or start a timer. */
typedef void (*store_event_cb)(enum store_event ev, void *arg);

/* A store whose config names Sentinels (cfg->redis_sentinels.n > 0) does not
 * connect until it is given an address with store_set_addr. */
void store_on_event(struct store *s, store_event_cb cb, void *arg);
/* Connect both connections to host:port from now on, instead of redis.host and
 * redis.port (the other settings stay the config's). Reconnects at once when the
 * address differs from the current one, or when nothing is connected yet;
 * otherwise does nothing. 0, or -1 when host is too long. */
int store_set_addr(struct store *s, const char *host, uint16_t port)
    __attribute__((warn_unused_result));
/* The prefix of the store's log lines ("redis" unless set; at most 23 bytes). */
void store_set_label(struct store *s, const char *label);
/* Check ROLE in every handshake from now on: a node that does not say "master"
 * is disconnected (STORE_EV_NOT_MASTER) instead of becoming ready. */
void store_check_role(struct store *s, bool on);

/* Reply accessors (r is borrowed). Each takes NULL (what store_reply_elem gives past
 * the end or for a non-array) as a nil reply, so a reply of an unexpected shape can
 * be walked without checking every step. */
enum store_rtype store_reply_type(const struct store_reply *r);
long long store_reply_int(const struct store_reply *r);
const char *store_reply_str(const struct store_reply *r, size_t *len); /* STR, ERR, STATUS */
size_t store_reply_len(const struct store_reply *r);                   /* ARRAY elements */
const struct store_reply *store_reply_elem(const struct store_reply *r, size_t i);

#endif
