/* metrics.h - the HTTP endpoint for Prometheus and health checks, on the agent's loop.
 *
 * Served by libmicrohttpd in its external epoll mode: MHD's epoll fd sits under an
 * ev_io and MHD_get_timeout() drives an ev_timer, so no thread and no HTTP parser of
 * ours. Every socket is non-blocking; a connection limit, a per-connection memory
 * cap and an idle timeout keep slow or abusive clients from costing decisions
 * more than the few microseconds of the loop iterations that serve them.
 *   GET /metrics  Prometheus text format 0.0.4 (stats.h lists, this agent's view of each
 *                 server: HAProxy state, weight, scur, and the ledger's cluster-wide
 *                 connections and admin state, build info)
 *   GET /healthz  200 "ok": the process runs its loop
 *   GET /readyz   200 once metrics_set_ready(true) (listeners up, config loaded), else
 *                 503; the body names the Redis state (connected | fallback), which
 *                 never fails readiness: fallback is a designed mode.
 * Knows nothing of the modules above it: what it needs comes through struct metrics_hooks.
 */
#ifndef STICKYD_METRICS_H
#define STICKYD_METRICS_H

#include <stdbool.h>
#include <stdio.h>

struct ev_loop;
struct cfg;
struct ledger;
struct metrics;

struct metrics_hooks {
    /* Before every /metrics dump: bring gauges in struct stats up to date. May be NULL. */
    void (*refresh)(void *arg);
    /* The fleet view the decisions read (cluster-wide connections, admin states),
     * shown per server; borrowed, must outlive the metrics. May be NULL. */
    const struct ledger *ledger;
    /* The live configuration (its limits: slow start, caps), borrowed, must outlive
     * the metrics (main.c swaps its contents in place on reload). May be NULL. */
    const struct cfg *cfg;
    /* Is the Redis command connection ready? (for /readyz). May be NULL: "fallback". */
    bool (*redis_up)(void *arg);
    void *arg;
    const char *version; /* stickyd_build_info{version=...} */
};

/* Listen on addr ("ADDR:PORT" or "[IPv6]:PORT"; port 0 picks one) and serve on loop.
 * hooks is copied. NULL with the reason in err on failure. */
struct metrics *metrics_new(struct ev_loop *loop, const char *addr,
                            const struct metrics_hooks *hooks, char *err, size_t errlen);
/* /readyz answers 200 from now on (true) or 503 (false, e.g. while draining). */
void metrics_set_ready(struct metrics *m, bool ready);
/* The bound TCP port (useful after port 0). */
unsigned metrics_port(const struct metrics *m);
/* Close every connection and the listener; m may be NULL. */
void metrics_free(struct metrics *m);

/* The /metrics body: the caller frees *out. 0, or -1 when out of memory. Exposed for
 * tests and for the exposition check (promtool). */
int metrics_render(struct metrics *m, char **out, size_t *len) __attribute__((warn_unused_result));

#endif
