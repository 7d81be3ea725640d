/* store_cluster.c - Redis Cluster for store.c: the nodes, the slot map, routing.
 *
 * hiredis 0.14 has no cluster client, so this file keeps one connection per
 * master (struct rconn, connected by store.c), reads CLUSTER SLOTS from the seeds
 * and again on redirects, lost nodes and cluster errors, routes a request by the
 * slot of its key and follows MOVED/ASK. The slot arithmetic and the redirect
 * texts are slots.c's. With store.c, the only files that include hiredis.
 *
 *   seeds -> CLUSTER SLOTS (on_slots) -> map_apply: masters connected, others let
 *   go; read again on redirects, lost nodes, cluster errors, and every
 *   STORE_MAP_REFRESH_S (STORE_MAP_DEGRADED_S while degraded)
 */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "stats.h"
#include "util.h"

/* Redirects followed per request, and how often the slot map is read again:
 * healthy, and while a master is unreachable or slots are unserved (a failover
 * in progress). */
#define STORE_REDIRECTS_MAX 5
#define STORE_MAP_REFRESH_S 10.0
#define STORE_MAP_DEGRADED_S 0.5
#define STORE_MAP_SOON_S 0.05

/* ---- nodes and the slot map ------------------------------------------------------ */

/* The node at host:port, added (idle, not wanted) when new; NULL when the table
 * is full or out of memory. */
static struct rconn *node_get(struct store *s, const char *host, unsigned port)
{
    for (size_t i = 0; i < s->nnodes; i++) {
        if (s->nodes[i]->port == port && strcmp(s->nodes[i]->host, host) == 0) {
            return s->nodes[i];
        }
    }
    if (s->nnodes == STORE_NODES_MAX || strlen(host) >= SLOTS_HOST_MAX) {
        return NULL;
    }
    struct rconn *rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        return NULL;
    }
    store_rconn_init(s, rc, RC_CMD);
    rc->node = true;
    snprintf(rc->host, sizeof(rc->host), "%s", host);
    rc->port = port;
    s->nodes[s->nnodes++] = rc;
    return rc;
}

/* The seeds: redis.nodes, or redis.host:redis.port. Wanted until a map says
 * which nodes are masters. */
static void add_seeds(struct store *s)
{
    const struct cfg *c = s->cfg;
    const char *p = c->redis_nodes;
    if (p == NULL) {
        struct rconn *rc = node_get(s, c->redis_host ? c->redis_host : "127.0.0.1",
                                    c->redis_port ? c->redis_port : 6379);
        if (rc != NULL) {
            rc->wanted = true;
        }
        return;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, " ,");
        char host[SLOTS_HOST_MAX];
        unsigned port;
        if (n > 0 && slots_parse_hostport(p, n, host, &port) == 0) {
            struct rconn *rc = node_get(s, host, port);
            if (rc != NULL) {
                rc->wanted = true;
            }
        }
        p += n;
        p += strspn(p, " ,");
    }
}

bool store_cluster_masters_ready(const struct store *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nnodes; i++) {
        if (s->nodes[i]->master) {
            if (s->nodes[i]->state != RC_READY) {
                return false;
            }
            n++;
        }
    }
    return n > 0;
}

static void map_schedule(struct store *s, ev_tstamp after)
{
    if (s->closing) {
        return;
    }
    if (ev_is_active(&s->map_timer) && ev_timer_remaining(s->loop, &s->map_timer) <= after) {
        return;
    }
    ev_timer_stop(s->loop, &s->map_timer);
    ev_timer_set(&s->map_timer, after, 0.);
    ev_timer_start(s->loop, &s->map_timer);
}

/* A redirect, a lost node or a cluster error: read the map again shortly (once
 * for a burst of them). */
void store_cluster_refresh_soon(struct store *s)
{
    if (s->cluster) {
        map_schedule(s, STORE_MAP_SOON_S);
    }
}

static void on_slots(redisAsyncContext *ac, void *reply, void *priv);

/* Ask a connected node for CLUSTER SLOTS; with none connected, connect every
 * node known (seeds, masters, replicas) and ask the first that answers. */
static void map_refresh(struct store *s)
{
    if (s->closing) {
        return;
    }
    if (s->map_inflight && ev_now(s->loop) - s->map_sent < 4 * STORE_MAP_DEGRADED_S) {
        map_schedule(s, STORE_MAP_DEGRADED_S);
        return;
    }
    s->map_inflight = false; /* none, or its node is silent: ask another */
    struct rconn *via = NULL;
    for (size_t pass = 0; pass < 2 && via == NULL; pass++) {
        for (size_t i = 0; i < s->nnodes && via == NULL; i++) {
            struct rconn *rc = s->nodes[(i + s->next_any) % s->nnodes];
            if (rc->state == RC_READY && rc->ac != NULL && (pass == 1 || rc->master)) {
                via = rc;
            }
        }
    }
    s->next_any++;
    if (via == NULL) {
        s->map_want = true;
        for (size_t i = 0; i < s->nnodes; i++) {
            struct rconn *rc = s->nodes[i];
            rc->wanted = true;
            if (rc->state == RC_IDLE && !ev_is_active(&rc->retry_timer)) {
                store_rconn_connect(rc);
            }
        }
        map_schedule(s, STORE_MAP_DEGRADED_S);
        return;
    }
    if (via->ac->replies.head == NULL) {
        via->last_progress = ev_now(s->loop);
    }
    if (redisAsyncCommand(via->ac, on_slots, via, "CLUSTER SLOTS") == REDIS_OK) {
        s->map_inflight = true;
        s->map_sent = ev_now(s->loop);
        if (!ev_is_active(&s->flush)) {
            ev_prepare_start(s->loop, &s->flush);
        }
    }
    map_schedule(s, STORE_MAP_DEGRADED_S); /* the answer sets the next period */
}

static void on_map_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    map_refresh(container_of(w, struct store, map_timer));
}

/* Install a CLUSTER SLOTS reply as the map: masters wanted and connected, other
 * nodes remembered (a replica may be promoted) but let go. */
static void map_apply(struct store *s, struct rconn *via, const redisReply *r)
{
    struct slots_range ranges[512] = {{0}};
    size_t n = 0;
    char err[128];
    for (size_t i = 0; i < r->elements && n < ARRAY_SIZE(ranges); i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            log_warn("redis: CLUSTER SLOTS from %s:%u: unexpected reply shape", via->host,
                     via->port);
            return;
        }
        const redisReply *m = e->element[2];
        /* an empty or "?" endpoint means "the address you reached me at" */
        bool same = m->element[0]->len == 0 || strcmp(m->element[0]->str, "?") == 0;
        ranges[n++] = (struct slots_range){
            .lo = e->element[0]->integer < 0 ? SLOTS_COUNT : (unsigned)e->element[0]->integer,
            .hi = e->element[1]->integer < 0 ? SLOTS_COUNT : (unsigned)e->element[1]->integer,
            .host = same ? via->host : m->element[0]->str,
            .host_len = same ? strlen(via->host) : m->element[0]->len,
            .port = m->element[1]->integer < 0 ? 0 : (unsigned)m->element[1]->integer};
    }
    int covered = slots_check(ranges, n, err, sizeof(err));
    if (covered < 0) {
        log_warn("redis: CLUSTER SLOTS from %s:%u refused: %s", via->host, via->port, err);
        return;
    }
    bool is_master[STORE_NODES_MAX] = {false};
    for (size_t i = 0; i < SLOTS_COUNT; i++) {
        s->slot_node[i] = SLOTS_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        char host[SLOTS_HOST_MAX];
        snprintf(host, sizeof(host), "%.*s", (int)ranges[i].host_len, ranges[i].host);
        struct rconn *m = node_get(s, host, ranges[i].port);
        size_t idx = 0;
        while (m != NULL && s->nodes[idx] != m) {
            idx++;
        }
        if (m == NULL) {
            log_warn("redis: more than %d cluster nodes; slots %u-%u left unrouted",
                     STORE_NODES_MAX, ranges[i].lo, ranges[i].hi);
            continue;
        }
        is_master[idx] = true;
        for (unsigned sl = ranges[i].lo; sl <= ranges[i].hi; sl++) {
            s->slot_node[sl] = (uint16_t)idx;
        }
        /* the replicas: known, for the day their master is gone */
        const redisReply *e = r->element[i];
        for (size_t k = 3; k < e->elements; k++) {
            const redisReply *rp = e->element[k];
            if (rp->type == REDIS_REPLY_ARRAY && rp->elements >= 2 &&
                rp->element[0]->type == REDIS_REPLY_STRING && rp->element[0]->len > 0 &&
                rp->element[1]->type == REDIS_REPLY_INTEGER && rp->element[1]->integer > 0) {
                (void)node_get(s, rp->element[0]->str, (unsigned)rp->element[1]->integer);
            }
        }
    }
    s->map_slots = (size_t)covered;
    for (size_t i = 0; i < s->nnodes; i++) {
        struct rconn *rc = s->nodes[i];
        bool was = rc->master;
        rc->master = is_master[i];
        rc->wanted = is_master[i];
        if (rc->master && rc->state == RC_IDLE && !ev_is_active(&rc->retry_timer)) {
            store_rconn_connect(rc); /* a new master; one down already retries with backoff */
        } else if (!rc->master && rc->state != RC_IDLE) {
            store_rconn_fail(rc, NULL); /* reaped outside hiredis; not retried */
        } else if (!rc->master) {
            ev_timer_stop(s->loop, &rc->retry_timer);
        }
        if (was != rc->master) {
            log_info("redis: %s:%u %s", rc->host, rc->port,
                     rc->master ? "serves slots (master)" : "no longer serves slots");
        }
    }
    if (covered != (int)SLOTS_COUNT) {
        log_warn("redis: the cluster serves %d of %u slots", covered, SLOTS_COUNT);
    }
}

static void on_slots(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *via = priv;
    struct store *s = via->s;
    redisReply *r = reply;
    store_note_progress(via, r);
    s->map_inflight = false;
    if (r == NULL || via->ac != ac) {
        store_cluster_refresh_soon(s); /* its connection went down first: ask another node */
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        store_set_error(s, "CLUSTER SLOTS", r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        log_warn("redis: CLUSTER SLOTS from %s:%u: %s", via->host, via->port,
                 r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        map_schedule(s, STORE_MAP_DEGRADED_S);
        return;
    }
    STATS_INC(redis_slot_maps);
    map_apply(s, via, r);
    bool healthy = s->map_slots == SLOTS_COUNT && store_cluster_masters_ready(s);
    map_schedule(s, healthy ? STORE_MAP_REFRESH_S : STORE_MAP_DEGRADED_S);
}

/* ---- routing ---------------------------------------------------------------------- */

struct rconn *store_cluster_route(struct store *s, const char *key, size_t keylen)
{
    struct rconn *rc = NULL;
    if (key != NULL) {
        uint16_t n = s->slot_node[slots_key_slot(key, keylen)];
        rc = n == SLOTS_NONE ? NULL : s->nodes[n];
        if (rc == NULL) {
            store_cluster_refresh_soon(s); /* an unserved slot: the map may be stale */
        }
    } else {
        for (size_t i = 0; i < s->nnodes && rc == NULL; i++) {
            struct rconn *c = s->nodes[(i + s->next_any) % s->nnodes];
            if (c->master && c->state == RC_READY) {
                rc = c;
            }
        }
        s->next_any++;
    }
    return rc != NULL && rc->state == RC_READY && rc->ac != NULL ? rc : NULL;
}

/* MOVED updates the slot and schedules a full refresh; ASK is one-off. Resends q
 * when the node that owns the slot is connected (true: q is in flight again);
 * otherwise the caller gets the error, and the refresh connects that node for the
 * next request. */
bool store_cluster_redirect(struct sreq *q, const redisReply *r)
{
    struct store *s = q->s;
    struct slots_redirect rd;
    if (slots_parse_redirect(r->str, r->len, &rd) < 0) {
        if (strncmp(r->str, "CLUSTERDOWN", 11) == 0 || strncmp(r->str, "TRYAGAIN", 8) == 0 ||
            strncmp(r->str, "READONLY", 8) == 0) {
            store_cluster_refresh_soon(s);
        }
        return false;
    }
    STATS_INC(redis_redirects);
    struct rconn *to = node_get(s, rd.host, rd.port);
    if (to == NULL) {
        return false;
    }
    if (!rd.ask) {
        for (size_t i = 0; i < s->nnodes; i++) {
            if (s->nodes[i] == to) {
                s->slot_node[rd.slot] = (uint16_t)i;
            }
        }
        if (!to->wanted) {
            to->wanted = true;
            to->master = true;
        }
        if (to->state == RC_IDLE && !ev_is_active(&to->retry_timer)) {
            store_rconn_connect(to);
        }
        store_cluster_refresh_soon(s);
    }
    if (q->redirects >= STORE_REDIRECTS_MAX) {
        return false;
    }
    q->redirects++;
    log_debug("redis: %s slot %u -> %s:%u", rd.ask ? "ASK" : "MOVED", rd.slot, rd.host, rd.port);
    return store_sreq_resend(q, to, rd.ask) == 0;
}

/* ---- the store's life ------------------------------------------------------------- */

void store_cluster_init(struct store *s)
{
    ev_timer_init(&s->map_timer, on_map_timer, 0., 0.);
    for (size_t i = 0; i < SLOTS_COUNT; i++) {
        s->slot_node[i] = SLOTS_NONE;
    }
    if (s->cluster) {
        /* the seeds connect; the first one ready reads the map (rconn_ready) */
        add_seeds(s);
        for (size_t i = 0; i < s->nnodes; i++) {
            store_rconn_connect(s->nodes[i]);
        }
        map_schedule(s, STORE_MAP_DEGRADED_S);
    }
}

void store_cluster_reconfigure(struct store *s)
{
    add_seeds(s);
    for (size_t i = 0; i < s->nnodes; i++) {
        struct rconn *rc = s->nodes[i];
        ev_timer_stop(s->loop, &rc->retry_timer);
        store_rconn_reset_backoff(rc);
        if (rc->wanted || rc->master) {
            store_rconn_fail(rc, NULL);
        }
    }
    store_cluster_refresh_soon(s);
}

void store_cluster_node_ready(struct rconn *rc)
{
    struct store *s = rc->s;
    if (s->map_want || s->map_slots == 0) {
        s->map_want = false;
        store_cluster_refresh_soon(s);
    }
}

void store_cluster_pick_sub(struct store *s, struct rconn *rc)
{
    struct rconn *via = NULL;
    for (size_t i = 0; i < s->nnodes && via == NULL; i++) {
        if (s->nodes[i]->master && s->nodes[i]->state == RC_READY) {
            via = s->nodes[i];
        }
    }
    for (size_t i = 0; i < s->nnodes && via == NULL; i++) {
        via = s->nodes[(i + s->next_any++) % s->nnodes];
    }
    if (via != NULL) {
        memcpy(rc->host, via->host, sizeof(rc->host));
        rc->port = via->port;
    }
}
