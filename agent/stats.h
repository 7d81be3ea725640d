/* stats.h - process-wide counters, gauges and histograms, defined once in X-macro lists.
 *
 * The lists generate the struct, the names and every dump (the SIGUSR1 text, JSON and
 * the Prometheus exposition), so they cannot drift. Plain integers: the agent is
 * single-threaded. Nothing here does I/O beyond the FILE a dump is given.
 */
#ifndef STICKYD_STATS_H
#define STICKYD_STATS_H

#include <stdint.h>
#include <stdio.h>

/* Scalar counters: X(name, help). Field stats.name; text "name N";
 * Prometheus stickyd_<name>_total. */
#define STATS_COUNTERS(X)                                                                          \
    X(conn_accepted, "SPOP connections accepted")                                                  \
    X(conn_closed, "SPOP connections closed")                                                      \
    X(conn_rejected, "SPOP connections refused (limit reached)")                                   \
    X(conn_idle_timeout, "SPOP connections closed for idleness")                                   \
    X(conn_hello_timeout, "SPOP connections closed for sending no HAPROXY-HELLO in time")          \
    X(spop_frames_in, "SPOP frames received")                                                      \
    X(spop_frames_out, "SPOP frames queued for sending")                                           \
    X(hello, "HAPROXY-HELLO frames answered")                                                      \
    X(hello_healthcheck, "health-check HELLOs answered")                                           \
    X(notify, "NOTIFY frames received")                                                            \
    X(ack, "ACK frames sent")                                                                      \
    X(ack_dropped, "ACKs dropped because their connection was gone")                               \
    X(msg_unknown, "messages with no handler")                                                     \
    X(haproxy_disconnect, "HAPROXY-DISCONNECT frames received")                                    \
    X(proto_error, "connections closed on a protocol error")                                       \
    X(pace_on, "times the loop began collecting before each poll (pace.h)")                        \
    X(pace_off, "times it stopped collecting (load gone)")                                         \
    X(pace_holdoff, "times pacing cost a peer its rate and backed off")                            \
    X(action_dropped, "actions dropped for want of frame space")                                   \
    X(decision_local, "sticky-assign: answered without waiting on Redis (cookie tag, new)")        \
    X(decision_tag_fallback, "sticky-assign: Redis unavailable, pinned server from the tag")       \
    X(decision_late, "sticky-assign: arbitrations Redis refused to run past their deadline")       \
    X(record_moved, "session records an operator moved, seen by a touch or an event")              \
    X(cap_pin_full, "pinned sessions whose server was at its cap (limits.policy): moved or full")  \
    X(cap_queued, "every server at its cap, answered anyway for HAProxy to queue (when_full)")     \
    X(sid_minted, "session ids minted")                                                            \
    X(sid_invalid, "cookies that failed verification")                                             \
    X(redis_requests, "Redis commands sent")                                                       \
    X(redis_timeouts, "Redis commands past their deadline")                                        \
    X(redis_errors, "Redis error replies or disconnects")                                          \
    X(redis_reconnects, "Redis connections (re)established")                                       \
    X(redis_redirects, "Redis Cluster MOVED/ASK redirects followed")                               \
    X(redis_slot_maps, "Redis Cluster slot maps read (CLUSTER SLOTS)")                             \
    X(redis_shed, "requests refused because too many were waiting on Redis")                       \
    X(sentinel_discoveries, "rounds of asking the Sentinels for the master")                       \
    X(sentinel_master_changes, "times the Sentinels named a new master address")                   \
    X(ledger_batches, "batched writes sent (opens, closes, record touches)")                       \
    X(ledger_ops, "operations written in batches")                                                 \
    X(ledger_dropped, "operations dropped: queue bound reached, or stopped")                       \
    X(ledger_failed, "batched writes that failed or timed out")                                    \
    X(conn_opened_events, "connection-open events counted")                                        \
    X(conn_closed_events, "connection-close events counted")                                       \
    X(conn_close_duplicates, "close events for connections already closed")                        \
    X(syslog_lines, "syslog lines received")                                                       \
    X(syslog_bad_lines, "syslog lines not understood")                                             \
    X(syslog_closes, "tunnel-close lines handed to connection counting")                           \
    X(syslog_refused, "syslog datagrams and TCP clients from peers outside syslog.allow")          \
    X(syslog_tcp_refused, "TCP log clients refused (per-peer or total cap)")                       \
    X(syslog_tcp_idle_closed, "TCP log clients closed for silence (syslog.tcp_idle_timeout)")      \
    X(resyncs, "connection-count resyncs from HAProxy scur")                                       \
    X(haproxy_api_errors, "HAProxy runtime API failures")                                          \
    X(events_published, "change events published")                                                 \
    X(events_received, "change events received")

/* Labelled counter families: F(family, metric, label, LIST, help), LIST(X, family)
 * expanding to X(family, value, help). Field stats.<family>_<value> (so
 * STATS_INC(decision_hit)); text "<family>_<value> N"; Prometheus
 * stickyd_<metric>_total{<label>="<value>"}. A new member is one line of its list. */
#define STATS_DECISION_ACTIONS(X, f)                                                               \
    X(f, hit, "pinned server kept")                                                                \
    X(f, new, "new session assigned")                                                              \
    X(f, repin, "session moved off an unusable server")                                            \
    X(f, fallback, "Redis unavailable, hash fallback")                                             \
    X(f, none, "no decision, HAProxy balances")                                                    \
    X(f, full, "every usable server at its cap: refused (txn.sticky.full)")

/* Why a decision fell back to the local hash (each also counts decision_fallback). */
#define STATS_FALLBACK_CAUSES(X, f)                                                                \
    X(f, redis_down, "Redis not connected")                                                        \
    X(f, redis_saturated, "too many requests already waiting on Redis (redis.max_pending)")        \
    X(f, redis_timeout, "Redis did not answer within redis.timeout")                               \
    X(f, redis_disconnect, "the Redis connection dropped with the command in flight")              \
    X(f, late, "Redis refused to arbitrate past the decision's deadline")                          \
    X(f, script_error, "the decision script answered an error")                                    \
    X(f, bad_reply, "the decision script's reply was not understood")                              \
    X(f, no_store, "no Redis store configured")                                                    \
    X(f, internal, "key too long for the buffers, or out of memory")

#define STATS_RELOAD_RESULTS(X, f)                                                                 \
    X(f, ok, "configuration reloaded")                                                             \
    X(f, failed, "reload refused, the running configuration kept")

#define STATS_FAMILIES(F)                                                                          \
    F(decision, decisions, action, STATS_DECISION_ACTIONS, "sticky-assign decisions by action")   \
    F(fallback, fallbacks, cause, STATS_FALLBACK_CAUSES, "hash fallbacks by cause")                \
    F(reload, config_reloads, result, STATS_RELOAD_RESULTS, "SIGHUP reloads by result")

/* Counters indexed by an SPOP status code: X(name, help). Field stats.name[code]
 * (codes above STATS_SPOP_CODE_OTHER count there); text "name_<code> N";
 * Prometheus stickyd_<name>_total{code="<code>"}. */
#define STATS_SPOP_CODES 16
#define STATS_SPOP_CODE_OTHER 15
#define STATS_CODED(X)                                                                             \
    X(spop_disconnects_sent, "AGENT-DISCONNECT frames sent, by status code")                       \
    X(spop_disconnects_received, "HAPROXY-DISCONNECT frames received, by status code")

/* Gauges: X(name, help). Field stats.name (int64_t), set by their owner or by
 * the refresh hook before a dump; Prometheus stickyd_<name>. */
#define STATS_GAUGES(X)                                                                            \
    X(spop_connections, "live SPOP connections from HAProxy")                                      \
    X(redis_pending, "Redis commands in flight (sent, hiredis not yet done with them)")            \
    X(redis_connected, "1 when the Redis command connection is ready, else 0 (fallback)")          \
    X(config_last_reload_success, "1 when the last reload succeeded (or none was tried)")         \
    X(config_last_reload_timestamp_seconds, "unix time of the last reload attempt")

/* Histograms of durations: X(name, help). Field stats.name (struct stats_hist);
 * text "name_count N" and "name_sum_us N"; Prometheus stickyd_<name>_seconds. */
#define STATS_HISTOGRAMS(X)                                                                        \
    X(decision_latency, "NOTIFY frame received to its ACK queued (decisions)")                     \
    X(redis_round_trip, "Redis command sent to its reply received")

/* Upper bounds in microseconds, shared by every histogram; +Inf is implicit. */
#define STATS_HIST_BOUNDS_US                                                                       \
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000, 250000, 1000000
#define STATS_HIST_NBOUNDS 13

struct stats_hist {
    uint64_t bucket[STATS_HIST_NBOUNDS + 1]; /* per bucket (not cumulative); last: +Inf */
    uint64_t count;
    uint64_t sum_ns;
};

struct stats {
#define STATS_FIELD(name, help) uint64_t name;
#define STATS_MEMBER(f, v, help) uint64_t f##_##v;
#define STATS_FAMILY(f, metric, label, list, help) list(STATS_MEMBER, f)
#define STATS_CODED_FIELD(name, help) uint64_t name[STATS_SPOP_CODES];
#define STATS_GAUGE_FIELD(name, help) int64_t name;
#define STATS_HIST_FIELD(name, help) struct stats_hist name;
    STATS_COUNTERS(STATS_FIELD)
    STATS_FAMILIES(STATS_FAMILY)
    STATS_CODED(STATS_CODED_FIELD)
    STATS_GAUGES(STATS_GAUGE_FIELD)
    STATS_HISTOGRAMS(STATS_HIST_FIELD)
#undef STATS_FIELD
#undef STATS_MEMBER
#undef STATS_FAMILY
#undef STATS_CODED_FIELD
#undef STATS_GAUGE_FIELD
#undef STATS_HIST_FIELD
};

extern struct stats stats;

#define STATS_INC(name) (stats.name++)
#define STATS_ADD(name, n) (stats.name += (n))
/* A counter's address, for code that picks the counter at run time. */
#define STATS_REF(name) (&stats.name)
#define STATS_INC_CODE(name, code)                                                                 \
    (stats.name[(code) < STATS_SPOP_CODE_OTHER ? (code) : STATS_SPOP_CODE_OTHER]++)

/* Monotonic nanoseconds, for durations fed to stats_observe. */
uint64_t stats_now_ns(void);
/* Record one duration (now - start_ns) into h. Constant time, no allocation. */
void stats_observe(struct stats_hist *h, uint64_t start_ns);

/* One "name value" line per counter, gauge and histogram count/sum (SIGUSR1, stickyctl). */
void stats_dump_text(FILE *f);
/* A JSON object {"name": value, ...} of the same names; returns a new string to free(). */
char *stats_dump_json(void);
/* The Prometheus text exposition (format 0.0.4) of every list above, with HELP and TYPE. */
void stats_dump_prometheus(FILE *f);

#endif
