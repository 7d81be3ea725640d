/* admin.c - the cluster's drain/maint state -> the local HAProxy.
 *
 * Reads :state and a:<inst> per backend (states.lua), compares them with HAProxy's
 * view and sets what differs; never counts and never decides.
 */
#include "admin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hapi.h"
#include "ledger.h"
#include "log.h"
#include "model.h"
#include "servers.h"
#include "store.h"
#include "util.h"

#define ADMIN_OP_TIMEOUT_MS 1000 /* states are not on the decision path */
#define ADMIN_MAX_APPLIED 1024

/* What this agent last applied to its HAProxy for one server. */
struct applied {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    enum model_state state;
    int64_t deadline_ms;
    bool shutdown_done;
};

struct admin {
    const struct cfg *cfg;
    struct store *store;
    struct hapi *hapi;
    struct ledger *ledger;
    struct store_script *states_sc;
    struct applied *applied;
    size_t napplied;
};

static struct applied *applied_get(struct admin *ad, const char *backend, const char *server)
{
    for (size_t i = 0; i < ad->napplied; i++) {
        if (strcmp(ad->applied[i].backend, backend) == 0 &&
            strcmp(ad->applied[i].server, server) == 0) {
            return &ad->applied[i];
        }
    }
    if (ad->napplied == ADMIN_MAX_APPLIED) {
        return NULL;
    }
    if (ad->napplied % 32 == 0) {
        struct applied *a = realloc(ad->applied, (ad->napplied + 32) * sizeof(*a));
        if (a == NULL) {
            return NULL;
        }
        ad->applied = a;
    }
    struct applied *a = &ad->applied[ad->napplied];
    memset(a, 0, sizeof(*a));
    if (servers_copy_name(a->backend, backend, strlen(backend)) < 0 ||
        servers_copy_name(a->server, server, strlen(server)) < 0) {
        return NULL;
    }
    ad->napplied++;
    return a;
}

static void hapi_done(void *arg, bool ok, const char *text, size_t len)
{
    char *what = arg;
    if (!ok) {
        log_warn("admin: haproxy refused '%s': %.*s", what, (int)(len > 200 ? 200 : len),
                 text != NULL ? text : "no answer");
    }
    free(what);
}


static void remember_cb(const struct store_reply *r, enum store_result res, void *arg)
{
    UNUSED(r);
    UNUSED(arg);
    if (res != STORE_OK) {
        log_warn("admin: could not record an applied state in Redis; after a restart this "
                 "agent may not undo it");
    }
}

/* Record in a:<inst> what this instance set on its HAProxy, so that a restarted
 * agent still knows the DRAIN/MAINT there is its own to undo (an operator's own
 * drain on the HAProxy CLI, absent from the hash, is left alone). */
static void remember(struct admin *ad, const char *backend, const char *server, enum model_state st)
{
    char key[MODEL_KEY_MAX];
    const char *inst = ad->cfg->instance;
    if (model_key_id(key, ad->cfg->redis_prefix, backend, "a:", inst, strlen(inst)) < 0) {
        return;
    }
    const char *argv[] = {st == MODEL_READY ? "HDEL" : "HSET", key, server, model_state_name(st)};
    if (store_command(ad->store, st == MODEL_READY ? 3 : 4, argv, NULL, ADMIN_OP_TIMEOUT_MS,
                      remember_cb, NULL) < 0) {
        remember_cb(NULL, STORE_DOWN, NULL);
    }
}

static void hapi_apply(struct admin *ad, const struct srv_backend *b, const struct srv *s,
                       enum model_state want)
{
    const char *name = model_state_name(want);
    char *what = NULL;
    if (asprintf(&what, "set server %s/%s state %s", b->name, s->name, name) < 0) {
        return;
    }
    log_info("admin: %s", what);
    remember(ad, b->name, s->name, want);
    if (hapi_set_server_state(ad->hapi, b->name, s->name, name, hapi_done, what) < 0) {
        free(what);
    }
}

/* Does HAProxy's current view already reflect the admin state we want? */
static bool view_matches(enum model_state have, enum model_state want)
{
    switch (want) {
    case MODEL_DRAIN:
        /* a drained server failing its checks shows DOWN: still drained */
        return have == MODEL_DRAIN || have == MODEL_MAINT || have == MODEL_DOWN;
    case MODEL_MAINT:
        return have == MODEL_MAINT;
    default:
        return have != MODEL_DRAIN && have != MODEL_MAINT;
    }
}

struct state_ctx {
    struct admin *admin;
    char backend[SRV_NAME_MAX];
};

static void state_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct state_ctx *ctx = arg;
    struct admin *ad = ctx->admin;
    const struct srv_backend *b = servers_find(ctx->backend, strlen(ctx->backend));
    if (res != STORE_OK || store_reply_type(r) != STORE_R_ARRAY || store_reply_len(r) != 2 ||
        b == NULL) {
        free(ctx);
        return;
    }
    const struct store_reply *mine = store_reply_elem(r, 1);
    r = store_reply_elem(r, 0);
    if (store_reply_type(r) != STORE_R_ARRAY || store_reply_type(mine) != STORE_R_ARRAY) {
        free(ctx);
        return;
    }
    /* deadlines are set on Redis' clock (stickyctl, decide.lua): judged on it too,
     * never on this host's wall clock (a lower bound: a close is never early) */
    int64_t now = ledger_redis_now_ms(ad->ledger);
    for (size_t i = 0; i < b->nservers; i++) {
        const struct srv *s = &b->servers[i];
        enum model_state want = MODEL_READY;
        int64_t deadline = 0;
        bool close_at = false;
        bool recorded = false; /* a:<inst> says this instance set a state here */
        for (size_t j = 0; j + 1 < store_reply_len(mine); j += 2) {
            size_t nlen;
            const char *name = store_reply_str(store_reply_elem(mine, j), &nlen);
            if (name != NULL && nlen == strlen(s->name) && memcmp(name, s->name, nlen) == 0) {
                recorded = true;
            }
        }
        for (size_t j = 0; j + 1 < store_reply_len(r); j += 2) {
            size_t nlen, vlen;
            const char *name = store_reply_str(store_reply_elem(r, j), &nlen);
            const char *val = store_reply_str(store_reply_elem(r, j + 1), &vlen);
            if (name != NULL && val != NULL && nlen == strlen(s->name) &&
                memcmp(name, s->name, nlen) == 0 &&
                model_parse_state(val, vlen, &want, &deadline, &close_at) < 0) {
                log_warn("admin: %s/%s has an unknown state '%.*s' (ignored)", b->name,
                         s->name, (int)vlen, val);
                want = MODEL_READY;
            }
        }
        struct applied *a = applied_get(ad, b->name, s->name);
        if (a == NULL) {
            continue;
        }
        /* recorded: set by this instance before a restart, which a->state forgot */
        bool ours = a->state != MODEL_READY || recorded;
        if (want != a->state || (want != MODEL_READY && !view_matches(s->state, want)) ||
            (want == MODEL_READY && ours && !view_matches(s->state, want))) {
            if (want != MODEL_READY || ours) {
                hapi_apply(ad, b, s, want);
            }
            a->state = want;
        }
        if (a->deadline_ms != deadline) {
            a->deadline_ms = deadline;
            a->shutdown_done = false;
        }
        if (want == MODEL_DRAIN && close_at && deadline > 0 && now > 0 && now >= deadline &&
            !a->shutdown_done) {
            a->shutdown_done = true;
            char *what = NULL;
            if (asprintf(&what, "shutdown sessions server %s/%s", b->name, s->name) >= 0) {
                log_info("admin: drain deadline of %s/%s passed: %s", b->name, s->name, what);
                if (hapi_shutdown_sessions(ad->hapi, b->name, s->name, hapi_done, what) < 0) {
                    free(what);
                }
            }
        }
    }
    free(ctx);
}

/* Does any server of b ramp (limits.<b>.slowstart or a server's)? */
static bool slowstart_of(const struct cfg *c, const struct srv_backend *b)
{
    for (size_t i = 0; i < b->nservers; i++) {
        struct cfg_srv_limits lim;
        cfg_limits_of(c, b->name, b->servers[i].name, &lim);
        if (lim.slowstart_ms > 0) {
            return true;
        }
    }
    return false;
}

void admin_poll(struct admin *ad)
{
    if (ad == NULL || ad->hapi == NULL || !hapi_healthy(ad->hapi)) {
        return;
    }
    for (size_t i = 0; i < servers_count(); i++) {
        const struct srv_backend *b = servers_at(i);
        if (!b->http) {
            continue; /* drain/maint are WebSocket affinity states */
        }
        char key[MODEL_KEY_MAX], mine[MODEL_KEY_MAX];
        const char *inst = ad->cfg->instance;
        struct state_ctx *ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL || servers_copy_name(ctx->backend, b->name, strlen(b->name)) < 0 ||
            model_key(key, sizeof(key), ad->cfg->redis_prefix, b->name, strlen(b->name),
                      "state") < 0 ||
            model_key_id(mine, ad->cfg->redis_prefix, b->name, "a:", inst, strlen(inst)) < 0) {
            free(ctx);
            continue;
        }
        ctx->admin = ad;
        /* with a slow start, this view's server states: states.lua records when each
         * became usable (issue 13) */
        size_t nramp = slowstart_of(ad->cfg, b) ? b->nservers : 0;
        const char **argv = calloc(2 + 2 * nramp, sizeof(*argv));
        if (argv == NULL) {
            free(ctx);
            continue;
        }
        argv[0] = key;
        argv[1] = mine;
        for (size_t k = 0; k < nramp; k++) {
            argv[2 + 2 * k] = b->servers[k].name;
            argv[3 + 2 * k] = model_state_name(b->servers[k].state);
        }
        if (store_eval(ad->store, ad->states_sc, 2, (int)(2 + 2 * nramp), argv, NULL,
                       ADMIN_OP_TIMEOUT_MS, state_reply, ctx) < 0) {
            free(ctx);
        }
        free(argv);
    }
}

static void on_refresh(void *arg)
{
    /* a fresh HAProxy view: make sure it carries the cluster's states */
    admin_poll(arg);
}

struct admin *admin_new(const struct cfg *c, struct store *st, struct ledger *l, struct hapi *h)
{
    if (h == NULL) {
        return NULL;
    }
    struct admin *ad = calloc(1, sizeof(*ad));
    if (ad == NULL) {
        return NULL;
    }
    *ad = (struct admin){.cfg = c, .store = st, .hapi = h, .ledger = l};
    if ((ad->states_sc = store_script_new(st, model_lua_states)) == NULL) {
        free(ad);
        return NULL;
    }
    if (hapi_on_refresh(h, on_refresh, ad) < 0) {
        log_warn("admin: cannot hook HAProxy refreshes; states are applied on events only");
    }
    return ad;
}

void admin_free(struct admin *ad)
{
    if (ad == NULL) {
        return;
    }
    free(ad->applied);
    free(ad);
}
