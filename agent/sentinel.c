/* sentinel.c - Redis master discovery through Sentinel (see sentinel.h).
 *
 * Owns one struct store per Sentinel being asked (a probe), one kept on the
 * Sentinel that answered last (the watch, subscribed to +switch-master), and
 * the order in which the Sentinels are asked. Store callbacks only note what
 * happened and arm a timer; stores are created and freed from timers, never
 * from inside their own callbacks.
 *
 *   kick (data store down / -READONLY / timeout / not master, or start-up)
 *     -> for each Sentinel, front first: connect, SENTINEL get-master-addr-by-name
 *          -> answer: Sentinel to the front, store_set_addr(data), watch it
 *          -> no answer / error / timeout: the next one
 *     -> none answered: retry with backoff
 *   after an answer: SENTINEL sentinels <name> on the watch adds the Sentinels
 *   it names to the list (never removes one), up to SN_MAX_NODES
 */
#include "sentinel.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define SN_CHANNEL "+switch-master"
/* Discoveries start at most this often, whatever the data store reports. */
#define SN_MIN_INTERVAL_S 0.25
/* A data-store timeout asks again only when the last discovery is this old. */
#define SN_TIMEOUT_INTERVAL_S 1.0
/* Configured plus learned Sentinels (the config allows 16). */
#define SN_MAX_NODES 32

/* One Sentinel: its address and the settings its stores read (they keep a
 * pointer to cfg, so a node never moves: the order is an array of pointers). */
struct sn_node {
    struct cfg cfg; /* owned: host, user, password, timeouts; nothing else */
    char name[80];  /* "host:port" for messages */
};

enum sn_state {
    SN_IDLE = 0, /* no discovery running */
    SN_ASKING,   /* probe connecting to, or asked, order[idx] */
    SN_NEXT,     /* order[idx] failed; the step timer moves on */
    SN_STATE_COUNT
};

struct sentinel {
    struct ev_loop *loop;
    struct store *data; /* borrowed */
    char *master_name;
    struct sn_node *nodes;  /* SN_MAX_NODES slots, never moved: stores point into them */
    struct sn_node **order; /* the asking order, the last one to answer first */
    size_t n;               /* nodes in use: the configured ones first, then learned */
    size_t nconfigured;
    enum sn_state state;
    size_t idx;            /* order[idx] is being asked */
    unsigned gen;          /* bumped per question: a late answer is not order[idx]'s */
    struct store *probe;   /* store on order[idx] */
    struct store *watch;   /* store subscribed to SN_CHANNEL */
    struct store *retired; /* a former watch, freed by the step timer */
    struct sn_node *watch_node;
    bool freeing;   /* inside store_free of one of ours: ignore callbacks */
    bool again;     /* a discovery is due (run by the step timer) */
    bool via_watch; /* order[idx] is asked through the watch, not a probe */
    bool gave_up;
    ev_timer step; /* probe deadline; 0-delay moves; backoff between rounds */
    ev_tstamp last_start;
    int64_t backoff_ms;
    int64_t connect_timeout_ms, reconnect_min_ms, reconnect_max_ms;
    bool known;
    uint16_t master_port;
    char master_host[64];
    char last_error[256];
};

_Static_assert(SN_STATE_COUNT == 3, "sentinel states");

static void sn_kick(struct sentinel *sn, const char *why);
static void on_watch_event(enum store_event ev, void *arg);

/* ---- nodes --------------------------------------------------------------- */

/* A Sentinel at addr ("HOST:PORT"), with AUTH user/password (either NULL). */
static int node_init(struct sn_node *nd, const char *addr, const char *user, const char *password)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    char err[160], host[INET6_ADDRSTRLEN];
    uint16_t port;
    memset(&nd->cfg, 0, sizeof(nd->cfg)); /* cfg_release-able whatever happens */
    if (util_parse_addr(addr, &ss, &sslen, err, sizeof(err)) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
        return -1; /* the config checked its own; a learned one may be anything */
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        port = ntohs(in4->sin_port);
    }
    snprintf(nd->name, sizeof(nd->name), "%s", addr);
    nd->cfg.redis_host = strdup(host);
    nd->cfg.redis_port = port;
    if (user != NULL) {
        nd->cfg.redis_user = strdup(user);
    }
    if (password != NULL) {
        nd->cfg.redis_password = strdup(password);
    }
    if (nd->cfg.redis_host == NULL || (user != NULL && !nd->cfg.redis_user) ||
        (password != NULL && !nd->cfg.redis_password)) {
        return -1;
    }
    return 0;
}

/* Timeouts from c. A Sentinel query gets the connect timeout, not the per-decision
 * one: it is rare, and a remote Sentinel may be farther away than 20 ms. */
static void node_timeouts(struct sn_node *nd, const struct cfg *c)
{
    nd->cfg.redis_timeout_ms = c->redis_connect_timeout_ms;
    nd->cfg.redis_connect_timeout_ms = c->redis_connect_timeout_ms;
    nd->cfg.redis_reconnect_min_ms = c->redis_reconnect_min_ms;
    nd->cfg.redis_reconnect_max_ms = c->redis_reconnect_max_ms;
}

static void free_store(struct sentinel *sn, struct store **st)
{
    if (*st != NULL) {
        struct store *s = *st;
        *st = NULL;
        sn->freeing = true; /* its pending callbacks run now, with STORE_DOWN */
        store_free(s);
        sn->freeing = false;
    }
}

/* ---- discovery -------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static void set_error(struct sentinel *sn, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sn->last_error, sizeof(sn->last_error), fmt, ap);
    va_end(ap);
}

static void step_in(struct sentinel *sn, double secs)
{
    ev_timer_stop(sn->loop, &sn->step);
    ev_timer_set(&sn->step, secs, 0.);
    ev_timer_start(sn->loop, &sn->step);
}

/* order[idx] failed (already recorded in last_error): move on from the timer. */
static void probe_failed(struct sentinel *sn)
{
    log_debug("sentinel: %s", sn->last_error);
    sn->state = SN_NEXT;
    step_in(sn, 0.);
}

static void on_switch(const char *channel, const uint8_t *msg, size_t len, void *arg)
{
    UNUSED(channel);
    struct sentinel *sn = arg;
    char buf[512], name[256], oldh[64], newh[64];
    unsigned oldp, newp;
    if (sn->freeing || len >= sizeof(buf)) {
        return;
    }
    memcpy(buf, msg, len);
    buf[len] = '\0';
    /* "<master name> <old ip> <old port> <new ip> <new port>" */
    if (sscanf(buf, "%255s %63s %u %63s %u", name, oldh, &oldp, newh, &newp) != 5 || newp == 0 ||
        newp > 65535) {
        log_warn("sentinel: unreadable %s message: %s", SN_CHANNEL, buf);
        return;
    }
    if (strcmp(name, sn->master_name) != 0) {
        return; /* another master the same Sentinels watch */
    }
    log_info("sentinel: %s: master %s moved from %s:%u to %s:%u", SN_CHANNEL, name, oldh, oldp,
             newh, newp);
    if (!sn->known || sn->master_port != newp || strcmp(sn->master_host, newh) != 0) {
        STATS_INC(sentinel_master_changes);
    }
    snprintf(sn->master_host, sizeof(sn->master_host), "%s", newh);
    sn->master_port = (uint16_t)newp;
    sn->known = true;
    if (store_set_addr(sn->data, newh, (uint16_t)newp) < 0) {
        log_warn("sentinel: master address %s too long", newh);
    }
}

/* A Sentinel named in a SENTINEL sentinels reply: add it unless known. */
static void learn(struct sentinel *sn, const char *ip, size_t iplen, const char *port,
                  size_t portlen, const char *from)
{
    char addr[80];
    if (iplen == 0 || iplen > 45 || portlen == 0 || portlen > 5) {
        return;
    }
    bool v6 = memchr(ip, ':', iplen) != NULL;
    snprintf(addr, sizeof(addr), "%s%.*s%s:%.*s", v6 ? "[" : "", (int)iplen, ip, v6 ? "]" : "",
             (int)portlen, port);
    struct sn_node probe_nd;
    if (node_init(&probe_nd, addr, NULL, NULL) < 0) {
        cfg_release(&probe_nd.cfg);
        return; /* not a numeric address: not something we can connect to without DNS */
    }
    bool known = false;
    for (size_t i = 0; i < sn->n && !known; i++) {
        known = sn->nodes[i].cfg.redis_port == probe_nd.cfg.redis_port &&
                strcmp(sn->nodes[i].cfg.redis_host, probe_nd.cfg.redis_host) == 0;
    }
    cfg_release(&probe_nd.cfg);
    if (known || sn->n >= SN_MAX_NODES) {
        return;
    }
    struct sn_node *nd = &sn->nodes[sn->n];
    const struct cfg *first = &sn->nodes[0].cfg;
    if (node_init(nd, addr, first->redis_user, first->redis_password) < 0) {
        cfg_release(&nd->cfg);
        return;
    }
    nd->cfg.redis_timeout_ms = first->redis_timeout_ms;
    nd->cfg.redis_connect_timeout_ms = first->redis_connect_timeout_ms;
    nd->cfg.redis_reconnect_min_ms = first->redis_reconnect_min_ms;
    nd->cfg.redis_reconnect_max_ms = first->redis_reconnect_max_ms;
    sn->order[sn->n] = nd; /* asked last */
    sn->n++;
    log_info("sentinel: learned Sentinel %s from %s", addr, from);
}

static void on_sentinels(const struct store_reply *r, enum store_result res, void *arg)
{
    struct sentinel *sn = arg;
    if (sn->freeing || res != STORE_OK || store_reply_type(r) != STORE_R_ARRAY) {
        return; /* best effort: the list stays as it is */
    }
    const char *from = sn->watch_node != NULL ? sn->watch_node->name : "a Sentinel";
    for (size_t i = 0; i < store_reply_len(r); i++) {
        const struct store_reply *e = store_reply_elem(r, i);
        const char *ip = NULL, *port = NULL;
        size_t iplen = 0, portlen = 0;
        for (size_t j = 0; e != NULL && j + 1 < store_reply_len(e); j += 2) {
            size_t klen;
            const char *k = store_reply_str(store_reply_elem(e, j), &klen);
            if (k != NULL && klen == 2 && memcmp(k, "ip", 2) == 0) {
                ip = store_reply_str(store_reply_elem(e, j + 1), &iplen);
            } else if (k != NULL && klen == 4 && memcmp(k, "port", 4) == 0) {
                port = store_reply_str(store_reply_elem(e, j + 1), &portlen);
            }
        }
        if (ip != NULL && port != NULL) {
            learn(sn, ip, iplen, port, portlen, from);
        }
    }
}

/* Ask the watched Sentinel which other Sentinels watch the master. */
static void refresh_list(struct sentinel *sn)
{
    if (sn->watch == NULL || !store_connected(sn->watch)) {
        return;
    }
    const char *argv[3] = {"SENTINEL", "sentinels", sn->master_name};
    if (store_command(sn->watch, 3, argv, NULL, sn->connect_timeout_ms, on_sentinels, sn) < 0) {
        log_debug("sentinel: could not ask for the other Sentinels");
    }
}

/* The Sentinel at order[idx] named the master. */
static void found(struct sentinel *sn, const char *host, uint16_t port)
{
    struct sn_node *nd = sn->order[sn->idx];
    memmove(sn->order + 1, sn->order, sn->idx * sizeof(*sn->order)); /* to the front */
    sn->order[0] = nd;
    bool moved = !sn->known || sn->master_port != port || strcmp(sn->master_host, host) != 0;
    snprintf(sn->master_host, sizeof(sn->master_host), "%s", host);
    sn->master_port = port;
    sn->known = true;
    sn->gave_up = false;
    sn->last_error[0] = '\0';
    sn->backoff_ms = sn->reconnect_min_ms;
    if (moved) {
        log_info("sentinel: %s says master %s is at %s:%u", nd->name, sn->master_name, host,
                 (unsigned)port);
        STATS_INC(sentinel_master_changes);
    }
    if (store_set_addr(sn->data, host, port) < 0) {
        log_warn("sentinel: master address %s too long", host);
    }
    /* The probe becomes the watch; the previous watch is retired. */
    if (!sn->via_watch && (sn->watch_node != nd || sn->watch == NULL)) {
        if (store_subscribe(sn->probe, SN_CHANNEL, on_switch, sn) == 0) {
            sn->retired = sn->watch;
            sn->watch = sn->probe;
            sn->watch_node = nd;
            sn->probe = NULL;
            store_on_event(sn->watch, on_watch_event, sn);
        }
    }
    if (sn->watch_node == nd) {
        refresh_list(sn);
    }
    sn->state = SN_IDLE;
    step_in(sn, 0.); /* frees the probe or the retired watch, runs a pending kick */
}

/* One question in flight; freed by its callback, which runs exactly once. */
struct sn_ask {
    struct sentinel *sn;
    unsigned gen;
};

static void on_master_addr(const struct store_reply *r, enum store_result res, void *arg)
{
    struct sn_ask *q = arg;
    struct sentinel *sn = q->sn;
    bool current = q->gen == sn->gen;
    free(q);
    if (sn->freeing || sn->state != SN_ASKING || !current) {
        return;
    }
    const char *who = sn->order[sn->idx]->name;
    if (res != STORE_OK) {
        set_error(sn, "Sentinel %s: %s", who,
                  res == STORE_TIMEOUT ? "no reply to SENTINEL get-master-addr-by-name"
                                       : "connection lost");
        probe_failed(sn);
        return;
    }
    if (store_reply_type(r) == STORE_R_ERR) {
        set_error(sn, "Sentinel %s: %s", who, store_reply_str(r, NULL));
        probe_failed(sn);
        return;
    }
    const struct store_reply *h = store_reply_len(r) == 2 ? store_reply_elem(r, 0) : NULL;
    const struct store_reply *p = store_reply_len(r) == 2 ? store_reply_elem(r, 1) : NULL;
    if (h == NULL || p == NULL || store_reply_type(h) != STORE_R_STR ||
        store_reply_type(p) != STORE_R_STR) {
        set_error(sn, "Sentinel %s does not know a master named %s", who, sn->master_name);
        probe_failed(sn);
        return;
    }
    char host[64], *end;
    size_t hlen, plen;
    const char *hs = store_reply_str(h, &hlen), *ps = store_reply_str(p, &plen);
    unsigned long port = plen > 0 && plen < 6 ? strtoul(ps, &end, 10) : 0;
    if (hlen == 0 || hlen >= sizeof(host) || port == 0 || port > 65535 || end != ps + plen) {
        set_error(sn, "Sentinel %s: unusable master address", who);
        probe_failed(sn);
        return;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    found(sn, host, (uint16_t)port);
}

/* Send the question to order[idx] through st (connected). */
static void ask(struct sentinel *sn, struct store *st)
{
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", sn->master_name};
    struct sn_ask *q = malloc(sizeof(*q));
    if (q == NULL) {
        set_error(sn, "Sentinel %s: out of memory", sn->order[sn->idx]->name);
        probe_failed(sn);
        return;
    }
    q->sn = sn;
    q->gen = sn->gen;
    if (store_command(st, 3, argv, NULL, sn->connect_timeout_ms, on_master_addr, q) < 0) {
        free(q); /* not queued: the callback will not run */
        set_error(sn, "Sentinel %s: could not send the query", sn->order[sn->idx]->name);
        probe_failed(sn);
    }
}

static void on_probe_event(enum store_event ev, void *arg)
{
    struct sentinel *sn = arg;
    if (sn->freeing || sn->state != SN_ASKING || sn->via_watch) {
        return;
    }
    if (ev == STORE_EV_READY) {
        ask(sn, sn->probe);
    } else if (ev == STORE_EV_DOWN) {
        set_error(sn, "Sentinel %s: %s", sn->order[sn->idx]->name, store_last_error(sn->probe));
        probe_failed(sn);
    }
}

/* Ask order[idx], or end the round when every Sentinel was asked. */
static void probe_start(struct sentinel *sn)
{
    free_store(sn, &sn->probe);
    if (sn->idx >= sn->n) {
        sn->gave_up = true;
        sn->state = SN_IDLE;
        log_warn("sentinel: no Sentinel named master %s (last: %s); asking again in %lld ms",
                 sn->master_name, sn->last_error, (long long)sn->backoff_ms);
        step_in(sn, (double)sn->backoff_ms / 1000.0);
        sn->again = true; /* the step timer starts the next round */
        sn->backoff_ms =
            sn->backoff_ms * 2 > sn->reconnect_max_ms ? sn->reconnect_max_ms : sn->backoff_ms * 2;
        return;
    }
    sn->state = SN_ASKING;
    sn->gen++;
    /* Connect + handshake + query: the stores' own timers bound each step; this
     * deadline is the backstop for the whole exchange. */
    step_in(sn, (double)(3 * sn->connect_timeout_ms) / 1000.0);
    sn->via_watch =
        sn->watch != NULL && sn->order[sn->idx] == sn->watch_node && store_connected(sn->watch);
    if (sn->via_watch) {
        ask(sn, sn->watch); /* the Sentinel we listen to is up: no new connection */
        return;
    }
    sn->probe = store_new(sn->loop, &sn->order[sn->idx]->cfg);
    if (sn->probe == NULL) {
        set_error(sn, "Sentinel %s: out of memory", sn->order[sn->idx]->name);
        probe_failed(sn);
        return;
    }
    store_set_label(sn->probe, "sentinel");
    store_on_event(sn->probe, on_probe_event, sn);
    if (store_last_error(sn->probe)[0] != '\0') {
        /* the connect failed inside store_new (e.g. network unreachable) */
        set_error(sn, "Sentinel %s: %s", sn->order[sn->idx]->name, store_last_error(sn->probe));
        probe_failed(sn);
    }
}

static void on_step(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct sentinel *sn = container_of(w, struct sentinel, step);
    free_store(sn, &sn->retired);
    switch (sn->state) {
    case SN_ASKING: /* the backstop deadline */
        set_error(sn, "Sentinel %s: no answer in time", sn->order[sn->idx]->name);
        log_debug("sentinel: %s", sn->last_error);
        sn->idx++;
        probe_start(sn);
        return;
    case SN_NEXT:
        sn->idx++;
        probe_start(sn);
        return;
    case SN_IDLE:
    case SN_STATE_COUNT:
        break;
    }
    free_store(sn, &sn->probe);
    if (!sn->again) {
        return;
    }
    ev_tstamp wait = sn->last_start + SN_MIN_INTERVAL_S - ev_now(sn->loop);
    if (wait > 0) {
        step_in(sn, wait); /* rate limit: a flapping master cannot flood the Sentinels */
        return;
    }
    sn->again = false;
    sn->idx = 0;
    sn->last_start = ev_now(sn->loop);
    STATS_INC(sentinel_discoveries);
    probe_start(sn);
}

/* Ask for a discovery: at once when none runs and the last one is old enough,
 * else after the running one, or as soon as the rate limit allows. Safe inside
 * store callbacks (it only arms the timer). */
static void sn_kick(struct sentinel *sn, const char *why)
{
    if (!sn->again) {
        log_debug("sentinel: asking for master %s (%s)", sn->master_name, why);
    }
    sn->again = true;
    if (sn->state == SN_IDLE && !ev_is_active(&sn->step)) {
        step_in(sn, 0.);
    }
}

static void on_data_event(enum store_event ev, void *arg)
{
    struct sentinel *sn = arg;
    switch (ev) {
    case STORE_EV_READY:
        return;
    case STORE_EV_DOWN:
        sn_kick(sn, "connection to the master down");
        return;
    case STORE_EV_READONLY:
        sn_kick(sn, "-READONLY from the master");
        return;
    case STORE_EV_NOT_MASTER:
        sn_kick(sn, "ROLE is not master");
        return;
    case STORE_EV_TIMEOUT:
        if (ev_now(sn->loop) - sn->last_start >= SN_TIMEOUT_INTERVAL_S) {
            sn_kick(sn, "a request timed out");
        }
        return;
    case STORE_EVENT_COUNT:
        break;
    }
}

/* The watch's own connection dropping means that Sentinel may be gone: find
 * one that answers (it becomes the watch). */
static void on_watch_event(enum store_event ev, void *arg)
{
    struct sentinel *sn = arg;
    if (!sn->freeing && ev == STORE_EV_DOWN) {
        sn_kick(sn, "connection to the watched Sentinel down");
    }
}

/* ---- public API ---------------------------------------------------------------- */

struct sentinel *sentinel_new(struct ev_loop *loop, const struct cfg *c, struct store *data)
{
    if (c->redis_sentinels.n == 0 || c->redis_master_name == NULL) {
        return NULL;
    }
    struct sentinel *sn = calloc(1, sizeof(*sn));
    if (sn == NULL) {
        return NULL;
    }
    sn->loop = loop;
    sn->data = data;
    sn->n = sn->nconfigured = c->redis_sentinels.n;
    sn->nodes = calloc(SN_MAX_NODES, sizeof(*sn->nodes));
    sn->order = calloc(SN_MAX_NODES, sizeof(*sn->order));
    sn->master_name = strdup(c->redis_master_name);
    if (sn->nodes == NULL || sn->order == NULL || sn->master_name == NULL) {
        goto err_free;
    }
    for (size_t i = 0; i < sn->n; i++) {
        if (node_init(&sn->nodes[i], c->redis_sentinels.v[i], c->redis_sentinel_user,
                      c->redis_sentinel_password) < 0) {
            goto err_free;
        }
        sn->order[i] = &sn->nodes[i];
    }
    ev_timer_init(&sn->step, on_step, 0., 0.);
    sentinel_reconfigure(sn, c);
    sn->backoff_ms = sn->reconnect_min_ms;
    sn->last_start = ev_now(loop) - SN_MIN_INTERVAL_S;
    store_check_role(data, true);
    store_on_event(data, on_data_event, sn);
    sn_kick(sn, "start");
    return sn;

err_free:
    sentinel_free(sn);
    return NULL;
}

void sentinel_free(struct sentinel *sn)
{
    if (sn == NULL) {
        return;
    }
    if (sn->data != NULL) {
        store_on_event(sn->data, NULL, NULL);
    }
    if (sn->loop != NULL) {
        ev_timer_stop(sn->loop, &sn->step);
    }
    free_store(sn, &sn->probe);
    free_store(sn, &sn->watch);
    free_store(sn, &sn->retired);
    for (size_t i = 0; sn->nodes != NULL && i < sn->n; i++) {
        cfg_release(&sn->nodes[i].cfg);
    }
    free(sn->nodes);
    free(sn->order);
    free(sn->master_name);
    free(sn);
}

static bool same_str(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

void sentinel_reconfigure(struct sentinel *sn, const struct cfg *c)
{
    bool same = c->redis_sentinels.n == sn->nconfigured &&
                same_str(c->redis_master_name, sn->master_name) &&
                same_str(c->redis_sentinel_user, sn->nodes[0].cfg.redis_user) &&
                same_str(c->redis_sentinel_password, sn->nodes[0].cfg.redis_password);
    for (size_t i = 0; same && i < sn->nconfigured; i++) {
        same = strcmp(c->redis_sentinels.v[i], sn->nodes[i].name) == 0;
    }
    if (!same) {
        log_warn("reload: redis.sentinels, master_name or the Sentinel credentials changed; this "
                 "needs a restart (still following %s)",
                 sn->master_name);
    }
    sn->connect_timeout_ms = c->redis_connect_timeout_ms > 0 ? c->redis_connect_timeout_ms : 1000;
    sn->reconnect_min_ms = c->redis_reconnect_min_ms > 0 ? c->redis_reconnect_min_ms : 100;
    sn->reconnect_max_ms = c->redis_reconnect_max_ms > 0 ? c->redis_reconnect_max_ms : 5000;
    for (size_t i = 0; i < sn->n; i++) {
        node_timeouts(&sn->nodes[i], c);
    }
}

const char *sentinel_master(const struct sentinel *sn, uint16_t *port)
{
    if (!sn->known) {
        return NULL;
    }
    *port = sn->master_port;
    return sn->master_host;
}

bool sentinel_gave_up(const struct sentinel *sn)
{
    return sn->gave_up;
}

const char *sentinel_last_error(const struct sentinel *sn)
{
    return sn->last_error;
}
