/* model.h - the one home of stickyd's data model in Redis.
 *
 * Key names, the session record's value, the admin-state values, and the Lua
 * scripts (agent/lua/, one .lua file each, embedded by a make rule) are defined here and
 * nowhere else; the agent and stickyctl both build and parse them through this
 * module. Pure: no I/O, no hiredis.
 *
 * Keys, per backend <b> (every key but the record carries the hash tag {<b>}, so a
 * backend's counts and states are one Redis Cluster slot):
 *   <prefix>{<b>}:s:<rid>     string, TTL = session.ttl: the session record (below);
 *                             with redis.cluster: <prefix><b>:s:{<rid>}, the record's
 *                             own slot, so that a backend's records spread over every
 *                             master (standalone keeps the name it always had)
 *   <prefix>{<b>}:conns       hash server -> live connections, all live instances
 *   <prefix>{<b>}:i:<inst>    hash server -> that instance's share (TTL = heartbeat)
 *   <prefix>{<b>}:o:<inst>    hash unique-id -> server: that instance's open tunnels
 *   <prefix>{<b>}:o2:<inst>   the same, the previous generation (rotated by resync.lua)
 *   <prefix>{<b>}:p:<inst>    hash "<pid> <server>" -> that instance's open tunnels whose
 *                             unique-id ends in ":<pid>" (kept by ledger.lua, read by
 *                             resync.lua beside an older HAProxy process)
 *   <prefix>{<b>}:a:<inst>    hash server -> "drain" | "maint" that instance set on its HAProxy
 *   <prefix>{<b>}:insts       zset instance -> last heartbeat (unix ms)
 *   <prefix>{<b>}:state       hash server -> "drain:<deadline ms>[:close]" | "maint" |
 *                             "ready:<ms>" (slow start: ready since then, Redis time;
 *                             "ready:0": seen unusable, the ramp starts when it is up)
 *   <prefix>{<b>}:servers     hash server -> "<weight> <haproxy state>[ <maxconn>]" (last
 *                             agent's view; maxconn: HAProxy's on the server line, if any)
 *
 * Session record value: "<server> <created ms> <seen ms> <flag> <inst>" (written by
 * the Lua scripts, each with one record() helper; read here), where
 * flag is "-" or "m" (moved by an operator: the record then wins over the
 * cookie's tag until an agent has reissued the cookie). inst is last because it
 * may hold spaces. A string, not a hash: about 60 bytes less per session.
 */
#ifndef STICKYD_MODEL_H
#define STICKYD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;

#define MODEL_KEY_MAX 256 /* prefix (<=64) + {backend} (<=65) + ":" + suffix */

/* A server's state: the one enum for it in the tree. The cluster's admin state
 * (the :state hash, the events channel, stickyctl) is one of the first three;
 * HAProxy's view of a server (servers.h, from its runtime API) may also be DOWN. */
enum model_state {
    MODEL_READY = 0, /* in service */
    MODEL_DRAIN = 1, /* no new sessions (HAProxy's weight forced to 0); pinned ones stay */
    MODEL_MAINT = 2, /* out of service */
    MODEL_DOWN = 3,  /* HAProxy's view only (failed checks, stopped): never set by the cluster */
    MODEL_STATE_COUNT
};
/* The admin states are those below MODEL_DOWN: tables of them have this many entries. */
#define MODEL_ADMIN_COUNT MODEL_DOWN

/* "ready", "drain", "maint" or "down"; "unknown" for any other value. Static. */
const char *model_state_name(enum model_state s);

/* "<prefix>{<backend>}:<suffix>" into buf[len]. Returns the length, or -1 if it
 * does not fit. */
int model_key(char *buf, size_t len, const char *prefix, const char *backend, size_t blen,
              const char *suffix) __attribute__((warn_unused_result));

/* "<prefix>{<backend>}:<suffix><id>" (id need not be NUL-terminated) into
 * buf[MODEL_KEY_MAX]: no printf, it is on the decision path. Length or -1. */
int model_key_id(char *buf, const char *prefix, const char *backend, const char *suffix,
                 const char *id, size_t id_len) __attribute__((warn_unused_result));

/* The session record key of id[0..id_len) in backend (model.h's layout for
 * c->redis_cluster) into buf[MODEL_KEY_MAX]: no printf, it is on the decision
 * path. Length or -1. */
int model_record_key(char *buf, const struct cfg *c, const char *backend, const char *id,
                     size_t id_len) __attribute__((warn_unused_result));

/* Parse a :state value: 0 and the out-params, or -1 when v is not one of
 * "maint", "drain:<ms>", "drain:<ms>:close", "ready:<ms>" (MODEL_READY). */
int model_parse_state(const char *v, size_t len, enum model_state *st, int64_t *deadline_ms,
                      bool *close_at_deadline) __attribute__((warn_unused_result));

/* The moment a "ready:<ms>" value says the server became usable (Redis time; 0:
 * seen unusable, not up yet), or MODEL_SINCE_NONE for any other value. Written
 * by states.lua only for backends with a slow start (agent/admin.c). */
#define MODEL_SINCE_NONE (-1)
int64_t model_state_since(const char *v, size_t len);

/* A session record, parsed. Views point into the parsed value. */
struct model_record {
    const char *server;
    size_t server_len;
    int64_t created_ms, seen_ms;
    bool moved; /* flag "m" */
    const char *inst;
    size_t inst_len;
};

/* Parse a record value; 0 or -1 (not a record of this format). */
int model_record_parse(const char *v, size_t len, struct model_record *out)
    __attribute__((warn_unused_result));

/* The open map's TTL for this configuration: max(session TTL, 24 h). */
int64_t model_open_ttl_ms(const struct cfg *c);

/* The Lua scripts (agent/lua/<name>.lua), NUL-terminated. */
extern const char model_lua_decide[]; /* one arbitrated decision (repin, legacy, key) */
extern const char model_lua_ledger[]; /* a batch of opens, closes and record touches */
extern const char model_lua_resync[]; /* an instance's share from scur, dead instances */
extern const char model_lua_states[]; /* the cluster's admin states and this instance's */
extern const char model_lua_move[];   /* stickyctl move */

#endif
