/* stats.h - process-wide counters, defined once in an X-macro list.
 *
 * The list generates the struct, the names and the dumps, so they cannot drift.
 * Counters are plain uint64_t: the agent is single-threaded.
 */
#ifndef STICKYD_STATS_H
#define STICKYD_STATS_H

#include <stdint.h>
#include <stdio.h>

#define STATS_COUNTERS(X)                                                                          \
    X(conn_accepted, "SPOP connections accepted")                                                  \
    X(conn_closed, "SPOP connections closed")                                                      \
    X(conn_rejected, "SPOP connections refused (limit reached)")                                   \
    X(conn_idle_timeout, "SPOP connections closed for idleness")                                   \
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
    X(decision_hit, "sticky-assign: pinned server kept")                                           \
    X(decision_new, "sticky-assign: new session assigned")                                         \
    X(decision_repin, "sticky-assign: session moved off an unusable server")                       \
    X(decision_fallback, "sticky-assign: Redis unavailable, hash fallback")                        \
    X(decision_none, "sticky-assign: no decision, HAProxy balances")                               \
    X(sid_minted, "session ids minted")                                                            \
    X(sid_invalid, "cookies that failed verification")                                             \
    X(redis_requests, "Redis commands sent")                                                       \
    X(redis_timeouts, "Redis commands past their deadline")                                        \
    X(redis_errors, "Redis error replies or disconnects")                                          \
    X(redis_reconnects, "Redis connections (re)established")                                       \
    X(conn_opened_events, "connection-open events counted")                                        \
    X(conn_closed_events, "connection-close events counted")                                       \
    X(conn_close_duplicates, "close events for connections already closed")                        \
    X(syslog_lines, "syslog lines received")                                                       \
    X(syslog_bad_lines, "syslog lines not understood")                                             \
    X(resyncs, "connection-count resyncs from HAProxy scur")                                       \
    X(haproxy_api_errors, "HAProxy runtime API failures")                                          \
    X(events_published, "change events published")                                                 \
    X(events_received, "change events received")

struct stats {
#define STATS_FIELD(name, desc) uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
};

extern struct stats stats;

#define STATS_INC(name) (stats.name++)
#define STATS_ADD(name, n) (stats.name += (n))

/* One "name value" line per counter (used by SIGUSR1 and stickyctl). */
void stats_dump_text(FILE *f);
/* A JSON object {"name": value, ...}; returns a new string to free(). */
char *stats_dump_json(void);

#endif
