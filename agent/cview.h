/* cview.h - this agent's copy of the cluster-wide live connection counts, for metrics.
 *
 * Every period it asks Redis for each counted backend's `conns` hash (HGETALL, the
 * key named by fleet_key) and keeps the last answer; a dump writes it as the gauge
 * stickyd_server_connections{backend,server}. Only started when metrics are served,
 * so an agent without a scraper sends Redis nothing more. Reads, never writes, Redis.
 */
#ifndef STICKYD_CVIEW_H
#define STICKYD_CVIEW_H

#include <stdint.h>
#include <stdio.h>

struct ev_loop;
struct store;
struct cview;

/* Poll every period_ms with st (which must outlive the cview: free the store
 * first, its callbacks still reach the cview). prefix is copied. NULL on OOM. */
struct cview *cview_new(struct ev_loop *loop, struct store *st, const char *prefix,
                        int64_t period_ms);
/* The last counts of the backends still in the servers view, Prometheus text. */
void cview_dump_prometheus(struct cview *v, FILE *f);
/* Stop polling (before store_free); the replies still due are then ignored. */
void cview_stop(struct cview *v);
/* Free; after store_free. v may be NULL. */
void cview_free(struct cview *v);

#endif
