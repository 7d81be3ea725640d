/* ctl_redis.h - "send, wait, read" Redis calls for stickyctl, on top of store.c.
 *
 * A one-shot CLI wants blocking semantics; the project's Redis client is async.
 * This runs a private libev loop until the store connects (the first failed
 * attempt is final: a CLI reports, it does not retry) and until each reply
 * arrives, and copies replies out of hiredis' borrowed memory. No hiredis here.
 */
#ifndef STICKYD_CTL_REDIS_H
#define STICKYD_CTL_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct ev_loop;
struct cfg;

/* An owned copy of a Redis reply. str is NUL-terminated (binary-safe: len). */
struct ctl_reply {
    enum store_rtype type;
    long long integer; /* INT */
    char *str;         /* STR, ERR, STATUS */
    size_t len;
    struct ctl_reply *elem; /* ARRAY */
    size_t n;
};

struct ctl_redis;

/* Connect with c's redis settings (c must outlive the handle) on loop and wait
 * at most timeout_ms for the connection and handshake. Returns the handle, or
 * NULL with a one-line reason in err (connection refused, timeout, AUTH...). */
struct ctl_redis *ctl_redis_open(struct ev_loop *loop, const struct cfg *c, int64_t timeout_ms,
                                 char *err, size_t errlen);
void ctl_redis_close(struct ctl_redis *r);

/* The store, for store_subscribe (watch). Borrowed. */
struct store *ctl_redis_store(struct ctl_redis *r);

/* Send one command, run the loop until its reply (bounded by the cfg's
 * redis_timeout_ms). 0 and *out (free with ctl_reply_free), or -1 with a
 * reason in err: not connected, timeout, connection lost, or an error reply
 * (its text). argvlen may be NULL for C strings. */
int ctl_redis_call(struct ctl_redis *r, struct ctl_reply *out, char *err, size_t errlen, int argc,
                   const char **argv, const size_t *argvlen) __attribute__((warn_unused_result));

/* In a Redis Cluster a command goes where argv[1] lives (EVAL/EVALSHA: the
 * first key), redirects followed by the store. Commands of one node (SCAN,
 * DBSIZE) go to each master in turn: node in [0, ctl_redis_nodes()), 1 standalone. */
size_t ctl_redis_nodes(struct ctl_redis *r);
int ctl_redis_call_node(struct ctl_redis *r, size_t node, struct ctl_reply *out, char *err,
                        size_t errlen, int argc, const char **argv, const size_t *argvlen)
    __attribute__((warn_unused_result));

void ctl_reply_free(struct ctl_reply *r);

/* In a flat HGETALL-style array (field, value, ...): the value of field, or
 * NULL. Borrowed from hash. */
const struct ctl_reply *ctl_reply_hget(const struct ctl_reply *hash, const char *field);

#endif
