/* fleet.h - cluster-wide live connection counts and server states.
 *
 * Owns, per backend, the Redis keys that say how loaded and how usable each
 * server is across every HAProxy instance:
 *   <prefix>{<backend>}:conns       hash server -> live connections, all live instances
 *   <prefix>{<backend>}:i:<inst>    hash server -> this instance's share (TTL = heartbeat)
 *   <prefix>{<backend>}:o:<inst>    hash unique-id -> server, this instance's open tunnels
 *                                   (TTL set when created, never extended, so the uids of
 *                                   lost close lines do not pile up; when it expires, the
 *                                   closes of older tunnels are ignored and the resync
 *                                   corrects the counts)
 *   <prefix>{<backend>}:insts       zset instance -> last heartbeat (unix ms)
 *   <prefix>{<backend>}:state       hash server -> "drain:<deadline ms>[:close]" | "maint"
 *   <prefix>{<backend>}:servers     hash server -> "<weight> <haproxy state>" (last agent's view)
 *   <prefix>{<backend>}:a:<inst>    hash server -> "drain" | "maint": what this instance set
 *                                   on its HAProxy (no TTL: a restarted agent must still
 *                                   know a DRAIN/MAINT there is its own to undo)
 * Opens come from the `sticky-established` SPOE message, closes from HAProxy's
 * log (slog.c), and every resync period the instance's share is reset from
 * HAProxy's own scur, dead instances are dropped and `conns` is recomputed as
 * the sum of live shares, so a lost event never leaves drift.
 * Cluster state changes (drain/maint) are applied to the local HAProxy.
 */
#ifndef STICKYD_FLEET_H
#define STICKYD_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct store;
struct hapi;
struct slog_close;
struct event;

struct fleet;

/* Start counting for this agent's instance (cfg->instance): registers the
 * `sticky-established` handler, starts the resync and state-poll timers and
 * subscribes to the events channel. h may be NULL (static server list: no scur
 * resync, no state applied to HAProxy). NULL on failure. */
struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct hapi *h);

/* Leave the cluster: drop this instance's share from every backend (sent
 * best-effort; the heartbeat TTL covers a lost one) and count nothing more.
 * Call at the start of a graceful shutdown, and keep the loop running until
 * done(arg) runs: once, when every goodbye was answered or failed (each has
 * the store's per-command deadline), possibly from inside this call. Breaking
 * the loop sooner loses the goodbye (it is still in hiredis' output buffer).
 * done may be NULL; f may be NULL (done runs at once). */
typedef void (*fleet_left_fn)(void *arg);
void fleet_leave(struct fleet *f, fleet_left_fn done, void *arg);

/* Free. Call hapi_free() first: fleet hooks HAProxy refreshes and has no way
 * to unhook; pending store callbacks must have run (store_free) too. The leave is sent
 * best-effort; the heartbeat TTL covers the case where it is lost. */
void fleet_free(struct fleet *f);

/* slog callback: a tunnel closed (arg is the struct fleet). */
void fleet_on_close(const struct slog_close *c, void *arg);

/* Publish a change event on the configured channel (best effort). */
void fleet_publish(struct fleet *f, const struct event *e);

/* Parse a state hash value: returns 0 and fills the out-params, -1 when the
 * value is not one of "maint", "drain:<ms>", "drain:<ms>:close". Pure. */
enum fleet_admin {
    FLEET_READY = 0,
    FLEET_DRAIN = 1,
    FLEET_MAINT = 2,
    FLEET_ADMIN_COUNT
};
int fleet_parse_state(const char *v, size_t len, enum fleet_admin *st, int64_t *deadline_ms,
                      bool *close_at_deadline) __attribute__((warn_unused_result));

/* Lua shared by the scripts that count a tunnel open (fleet's established
 * script, and assign's decision script when the request is an upgrade):
 *   count_open(conns, share, open, uid, srv, ottl) -> 1 when counted now
 * Counts uid on srv in the instance's share and in conns, once per uid; a uid
 * already counted on another server is moved. The open map's TTL is set once,
 * never extended (the uids of lost close lines go with it). The caller keeps
 * the heartbeat (share TTL, insts). */
#define FLEET_LUA_COUNT_OPEN                                                                       \
    "local function count_open(conns, share, open, uid, srv, ottl)\n"                               \
    "  local prev = redis.call('HGET', open, uid)\n"                                               \
    "  if prev == srv then return 0 end\n"                                                         \
    "  if prev then\n"                                                                             \
    "    for _, key in ipairs({share, conns}) do\n"                                                \
    "      if tonumber(redis.call('HINCRBY', key, prev, -1)) <= 0 then\n"                          \
    "        redis.call('HDEL', key, prev)\n"                                                      \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  redis.call('HSET', open, uid, srv)\n"                                                       \
    "  redis.call('HINCRBY', share, srv, 1)\n"                                                     \
    "  redis.call('HINCRBY', conns, srv, 1)\n"                                                     \
    "  if redis.call('PTTL', open) == -1 then redis.call('PEXPIRE', open, ottl) end\n"             \
    "  return 1\n"                                                                                 \
    "end\n"

/* The open map's TTL for this configuration: max(session TTL, 24 h). */
int64_t fleet_open_ttl_ms(const struct cfg *c);

/* Build "<prefix>{<backend>}:<suffix>" into buf. Returns the length, or -1 if
 * it does not fit. Shared by every module that names a backend key. */
int fleet_key(char *buf, size_t len, const char *prefix, const char *backend, size_t blen,
              const char *suffix) __attribute__((warn_unused_result));

#endif
