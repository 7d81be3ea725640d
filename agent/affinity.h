/* affinity.h - the pure parts of the affinity decision.
 *
 * Owns the rendezvous (HRW) hash that orders candidates and picks a server when
 * Redis is unavailable, and the mapping from HAProxy's server state to the
 * flags the decision script reads. No I/O, no Redis, no clock.
 *
 * The hash, identical on every agent and documented so other tools can
 * reproduce it:
 *     h = splitmix64_finalize( FNV-1a-64( id || 0x00 || server ) )
 *   FNV-1a-64: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
 *   splitmix64_finalize(z): z ^= z >> 30; z *= 0xbf58476d1ce4e5b9;
 *                           z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31.
 * Ordering (tie-break among equally loaded servers): h descending, then name
 * ascending (bytewise) for the astronomically rare equal h.
 * Weighted choice (fallback): u = ((h >> 12) + 0.5) / 2^52, in (0, 1);
 * score = -weight / ln(u); the highest score wins, ties as above. This is the
 * weighted rendezvous hash: each server wins with probability proportional to
 * its weight, and removing one moves only the ids it held.
 */
#ifndef STICKYD_AFFINITY_H
#define STICKYD_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "servers.h"

/* Candidate flags, as passed to the decision script (decimal in ARGV). */
#define AFF_F_UP 0x1u    /* HAProxy can send traffic there: READY or DRAIN */
#define AFF_F_NEW 0x2u   /* may take new sessions: READY and weight > 0 */
#define AFF_F_DRAIN 0x4u /* HAProxy reports it DRAIN */

/* One server considered for a decision. name is borrowed (usually from the
 * servers view) and need not be NUL-terminated. */
struct aff_cand {
    const char *name;
    size_t name_len;
    uint32_t weight;
    unsigned flags;
    int64_t conns; /* live connections across the fleet, for aff_least_loaded */
    uint64_t hash; /* aff_hash(id, name), filled by aff_rank */
    uint32_t ramp; /* slow start: weight share in permille (aff_ramp_permille); 0 = 1000 */
    bool full;     /* at its cap for this agent (aff_room <= 0): no new sessions */
    bool paced;    /* this agent's share of its room is used, or past its new-session
                    * rate: chosen only when no other may take the session */
    int64_t room;  /* cap - live count by the view, for paced ones (INT64_MAX: no cap) */
};

/* Flags of a server in HAProxy state st with configured weight w. */
unsigned aff_flags(enum model_state st, uint32_t weight);

/* The same, with the cluster-wide admin state: a server in drain or maint takes
 * no new sessions, and one in drain is flagged draining. */
unsigned aff_flags_admin(enum model_state st, uint32_t weight, enum model_state adm);

/* The one rule for a session pinned to a server (every decision path uses it). */
enum aff_pin {
    AFF_PIN_STAY = 0,     /* keep it */
    AFF_PIN_DRAINING = 1, /* keep it, the server is draining (deadline not passed) */
    AFF_PIN_DOWN = 2,     /* move: HAProxy cannot send there (DOWN, MAINT) */
    AFF_PIN_MAINT = 3,    /* move: the cluster put it in maintenance */
    AFF_PIN_DEADLINE = 4, /* move: drained past its deadline */
    AFF_PIN_COUNT
};
/* st: HAProxy's state; adm, deadline_ms: the cluster's (Redis time); now_ms:
 * Redis time now (0 when unknown: no deadline has passed). */
enum aff_pin aff_pinned(enum model_state st, enum model_state adm, int64_t deadline_ms,
                        int64_t now_ms);
/* "stay", "draining", "down", "maint", "drain-deadline". */
const char *aff_pin_reason(enum aff_pin p);

/* The least-loaded candidate that may take new sessions and has room: the
 * lowest conns / (weight x ramp), the first one in c's order among equals (rank
 * c with aff_rank first, so that every agent breaks ties the same way). When
 * every one is paced, the one with the most room (a storm is spread by what is
 * left, never poured onto the least loaded). Index, or -1 when none. */
int aff_least_loaded(const struct aff_cand *c, size_t n);

/* ---- slow start and fleet-wide caps (issue 13) ----
 * Slow start: a server that joined or returned at since_ms (Redis time, recorded
 * in the :state hash so every agent ramps from the same moment) takes new
 * sessions at a weight of weight x elapsed / ramp, which in the least-loaded rule
 * means its live count tracks that share of its peers' until the ramp ends.
 * Caps: a server's live count across the fleet is bounded by its maxconn. Between
 * two refreshes of the fleet view every agent places at most its share of the
 * remaining room (1/n of it, the remainder to the lowest ranks), so n agents
 * together never overshoot a cap however fast they decide. */
#define AFF_SINCE_NONE (-1) /* no change recorded: full weight */
#define AFF_RAMP_FULL 1000u

/* Weight share in permille (1..1000) of a server whose state changed at since_ms,
 * at now_ms, for a ramp of ramp_ms: 1000 when ramp_ms <= 0, since_ms is
 * AFF_SINCE_NONE or the ramp is over; since_ms == 0 (seen, not recorded yet) is
 * the ramp's start. Never 0, so that a ramping fleet still takes sessions. */
uint32_t aff_ramp_permille(int64_t since_ms, int64_t now_ms, int64_t ramp_ms);

/* What happens to a pinned session whose server is at its cap. */
enum aff_cap_policy {
    AFF_CAP_AFFINITY = 0, /* keep it up to cap x (1 + slack) */
    AFF_CAP_BALANCE = 1,  /* move it at the cap */
    AFF_CAP_COUNT
};

/* The room this agent may use on a server with cap (0: no cap, INT64_MAX), given
 * fleet, its live count in the last view; pending, this agent's opens there not
 * in that view yet; ninst, the live instances (0 counts as 1) and rank, this
 * one's 0-based rank among them. <= 0 means full for this agent. */
int64_t aff_room(int64_t fleet, int64_t pending, int64_t cap, unsigned ninst, unsigned rank);

/* What a view cannot show yet: the other agents' opens in flight, estimated from
 * this agent's own recent peak of unacknowledged opens on the server (agents behind
 * one balancer tier see similar loads): (ninst - 1) x peak. Added to the view's
 * count before aff_room, so that a re-split of the room after this agent's opens
 * are acknowledged does not hand out what the others are still placing. */
int64_t aff_unseen(int64_t peak, unsigned ninst);

/* The cap a pinned session is held to under policy: cap for balance, cap plus
 * slack_pct percent (at least cap) for affinity; 0 (no cap) stays 0. */
int64_t aff_pin_cap(int64_t cap, enum aff_cap_policy policy, unsigned slack_pct);

/* "affinity" / "balance"; and back: 0, or -1 for anything else. */
const char *aff_cap_policy_name(enum aff_cap_policy p);
int aff_cap_policy_parse(const char *s, enum aff_cap_policy *out)
    __attribute__((warn_unused_result));

/* The HRW hash of (id, server) described above. */
uint64_t aff_hash(const char *id, size_t id_len, const char *srv, size_t srv_len);

/* The weighted score -weight / ln(u) of a hash (0 for weight 0). */
double aff_score(uint64_t h, uint32_t weight);

/* Fill c[i].hash for id and sort c[0..n) by the HRW order (hash descending,
 * name ascending). */
void aff_rank(const char *id, size_t id_len, struct aff_cand *c, size_t n);

/* Weighted HRW choice of id among the candidates having every flag of
 * `need` and weight > 0. Returns the index in c, or -1 when none qualifies.
 * Does not reorder c. */
int aff_pick(const char *id, size_t id_len, const struct aff_cand *c, size_t n, unsigned need);

#endif
