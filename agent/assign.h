/* assign.h - the `sticky-assign` message: one affinity decision per upgrade.
 *
 * Owns the decision rules' application, the per-decision contexts and the
 * answer when Redis cannot arbitrate in time. Reads the servers view
 * (servers.h) and the fleet view (ledger.h), signs and verifies cookies
 * (sid.h), ranks servers (affinity.h); talks to Redis only through store.h
 * (arbitrations) and ledger.h (everything written after the answer).
 *
 * SPOE message `sticky-assign`, named args:
 *   backend (string, required)  sid (string|NULL: the session cookie)
 *   key (string|binary|int|ip|NULL, optional: affinity follows it, not the cookie;
 *       ints and ips are hashed as their text, so "10.0.0.1" and 10.0.0.1 agree)
 *   An empty sid or key counts as absent; unknown args are ignored.
 *   inst (string: HAProxy instance)  uid (string: unique-id)  src (ip, for logs)
 *   upgrade (string|NULL: present on a WebSocket upgrade, which is counted open)
 * ACK, txn scope: server (string), sid (string: the cookie in force), set_cookie
 *   (int 0/1: send sid to the client), action (string: hit|new|repin|fallback|none),
 *   draining (int 0/1), and with action none: reason (string). Malformed input
 *   gives none.
 *
 * Rules (affinity.h has the one rule for a pinned server, aff_pinned):
 *   - a "2" cookie whose tag names a server that may keep its pins: hit, answered
 *     at once, whatever Redis is doing; its record is adopted or refreshed later
 *     by the ledger. A record an operator moved (stickyctl move) wins instead.
 *   - no valid cookie and no key: new, the least-loaded server by the fleet view
 *     (ties in HRW order of the record id), answered at once.
 *   - otherwise (the tagged server must be left, a "1" cookie, an affinity key):
 *     Redis arbitrates with agent/lua/decide.lua, so racing agents agree; its
 *     deadline is in Redis time, so a late run writes nothing.
 *   - Redis slow, down or saturated: fallback, to the tagged server if it may
 *     stay, else by the weighted HRW hash of the record id.
 *   Every answer carries a cookie naming its server (reissued on a repin, a move,
 *   a fallback, and once older than cfg_refresh_ms).
 */
#ifndef STICKYD_ASSIGN_H
#define STICKYD_ASSIGN_H

#include <stdbool.h>
#include <stddef.h>

#include <stddef.h>

#include "sid.h"

struct ev_loop;
struct cfg;
struct store;
struct ledger;
struct event;

#define ASSIGN_MESSAGE "sticky-assign"
/* On a 101 that did not go where the agent said (args backend, server, sid, uid,
 * status): counts the tunnel there and makes the session follow (txn.sticky.counted,
 * and a reissued sid with set_cookie 1). */
#define ASSIGN_ESTABLISHED "sticky-established"
/* More candidates than this in one backend: only the first ones are offered. */
#define ASSIGN_MAX_CANDIDATES 1000

/* Load the secrets, register the script with st (which may be NULL: every
 * decision is then local or a fallback) and the handler for ASSIGN_MESSAGE.
 * c is borrowed for the agent's life and read at each decision (main swaps its
 * contents on reload); l (may be NULL) receives the writes and gives the fleet
 * view. Without a secret_file the handler answers none ("no session secret").
 * 0, or -1 (logged). */
int assign_init(struct ev_loop *loop, const struct cfg *c, struct store *st, struct ledger *l)
    __attribute__((warn_unused_result));

/* Where decisions are announced when events.sessions is set: new ones as
 * session-assigned, repins as session-repinned. fn gets a borrowed event, valid
 * during the call; NULL: no events. */
typedef void (*assign_publish_fn)(const struct event *e, void *arg);
void assign_set_publisher(assign_publish_fn fn, void *arg);

/* An operator moved record rid of backend to server (a session-moved event):
 * the session's next connection goes there. Copies what it keeps. */
void assign_session_moved(const char *backend, size_t blen, const char *rid, size_t rid_len,
                          const char *server, size_t server_len);

/* Re-read the secrets of next (SIGHUP). On failure the old ones stay. 0/-1. */
int assign_reload(const struct cfg *next) __attribute__((warn_unused_result));

/* Free idle contexts and wipe the secrets. Decisions still waiting on Redis
 * finish (req_done) and free their context when the store calls back. */
void assign_shutdown(void);

/* The Lua text of the arbitration script (static storage). */
const char *assign_script(void);

/* ---- decide.lua's reply, parsed without I/O (exposed for fuzz_reply) ---- */

enum assign_verdict {
    ASSIGN_V_BAD = 0, /* not a reply decide.lua gives: fall back */
    ASSIGN_V_LATE,    /* {'late'}: past its deadline in Redis time, wrote nothing */
    ASSIGN_V_NONE,    /* {'none', reason} */
    ASSIGN_V_HIT,     /* {'hit', server, moved 0|1} */
    ASSIGN_V_REPIN,   /* {'repin', server, from} */
    ASSIGN_V_NEW,     /* {'new', server} */
    ASSIGN_V_COUNT
};
struct store_reply;
struct assign_reply {
    enum assign_verdict verdict;
    const char *server; /* the chosen server (none: the reason); views into the reply */
    size_t server_len;
    const char *from; /* repin: the server left ("" when absent) */
    size_t from_len;
    bool moved; /* hit: an operator's move, now in the cookie */
};
/* Parse rep (borrowed; NULL is BAD) into *out: HIT, REPIN and NEW have a server of
 * 1..SRV_NAME_MAX-1 bytes, else they are BAD; NONE has a reason (of that length, or
 * "no usable server"). Pure. */
void assign_reply_parse(const struct store_reply *rep, struct assign_reply *out);

#endif
