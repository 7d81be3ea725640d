/* assign.h - the `sticky-assign` message: one affinity decision per upgrade.
 *
 * Owns the decision script and its contract, the per-decision contexts and the
 * fallback when Redis cannot answer in time. Reads the servers view
 * (servers.h), signs and verifies ids (sid.h), ranks servers (affinity.h);
 * talks to Redis only through store.h.
 *
 * SPOE message `sticky-assign`, named args:
 *   backend (string, required)  sid (string|NULL: the session cookie)
 *   key (string|binary|int|ip|NULL, optional: affinity follows it, not the cookie;
 *       ints and ips are hashed as their text, so "10.0.0.1" and 10.0.0.1 agree)
 *   An empty sid or key counts as absent; unknown args are ignored.
 *   inst (string: HAProxy instance)  uid (string: unique-id)  src (ip, for logs)
 * ACK, txn scope: server (string), sid (string), set_cookie (int 0/1),
 *   action (string: hit|new|repin|fallback|none), draining (int 0/1),
 *   and with action none: reason (string). Malformed input gives none.
 *
 * Redis script (one EVALSHA per decision, see assign_script()):
 *   KEYS[1] <prefix>{<backend>}:s:<id>   session record (hash)
 *   KEYS[2] <prefix>{<backend>}:conns    server -> live connections (read only)
 *   KEYS[3] <prefix>{<backend>}:state    server -> "drain:<ms>[:close]" | "maint"
 *   KEYS[4] (optional) the record id of the same key under the previous
 *           secret: renamed to KEYS[1] when only it exists (key rotation)
 *   ARGV[1] session TTL in ms   ARGV[2] instance name   ARGV[3] n
 *   ARGV[4..] n triples: server name, weight, flags (AFF_F_* in decimal),
 *           in HRW order of the id: the first least-loaded server wins ties.
 *   Returns {"hit"|"new", server, draining 0/1},
 *   {"repin", server, 0, previous server, why: removed|down|maint|drain-deadline}
 *   or {"none", reason}.
 *   Time is Redis' TIME, so every agent judges drain deadlines by one clock.
 */
#ifndef STICKYD_ASSIGN_H
#define STICKYD_ASSIGN_H

struct ev_loop;
struct cfg;
struct store;
struct event;

#define ASSIGN_MESSAGE "sticky-assign"
/* More candidates than this in one backend: only the first ones are offered. */
#define ASSIGN_MAX_CANDIDATES 1000

/* Load the secrets, register the script with st (which may be NULL: every
 * decision is then a fallback) and the handler for ASSIGN_MESSAGE. c is
 * borrowed for the agent's life and read at each decision (main swaps its
 * contents on reload). Without a secret_file the handler answers none
 * ("no session secret"). 0, or -1 (logged). */
int assign_init(struct ev_loop *loop, const struct cfg *c, struct store *st)
    __attribute__((warn_unused_result));

/* Where decisions are announced: new ones as session-assigned, repins as
 * session-repinned (reason from the script). Hits, the common case, publish
 * nothing. fn gets a borrowed event, valid during the call; NULL: no events. */
typedef void (*assign_publish_fn)(const struct event *e, void *arg);
void assign_set_publisher(assign_publish_fn fn, void *arg);

/* Re-read the secrets of next (SIGHUP). On failure the old ones stay. 0/-1. */
int assign_reload(const struct cfg *next) __attribute__((warn_unused_result));

/* Free idle contexts and wipe the secrets. Decisions still waiting on Redis
 * finish (req_done) and free their context when the store calls back. */
void assign_shutdown(void);

/* The Lua text of the decision script (static storage). */
const char *assign_script(void);

#endif
