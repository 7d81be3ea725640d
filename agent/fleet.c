/* fleet.c - live connection counts across every HAProxy instance, and the
 * cluster-wide drain/maint state applied to the local HAProxy.
 *
 *   opens (assign.c), log line at tunnel end --slog--> ledger (batched, once per uid)
 *   every resync period --> ledger flushed, resync.lua      (share := HAProxy scur,
 *                                                            drop dead instances,
 *                                                            conns := sum of shares)
 *   after every HAProxy refresh, and on a state event
 *                    --> HGETALL state --> set server state / shutdown sessions
 *
 * Each script touches only one backend's keys (one hash tag, one cluster slot)
 * and runs atomically, so `conns` never goes negative and always equals the sum
 * of the live instances' shares after a resync.
 */
#include "fleet.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "hapi.h"
#include "ledger.h"
#include "log.h"
#include "model.h"
#include "req.h"
#include "servers.h"
#include "slog.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define FLEET_KEY_MAX 256
#define FLEET_OP_TIMEOUT_MS 1000 /* counts are not on the decision path */
#define FLEET_MAX_APPLIED 1024
#define FLEET_MAX_PIDS 8 /* HAProxy processes of this instance alive at once (reloads) */





/* What this agent last applied to its HAProxy for one server. */
struct applied {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    enum model_admin state;
    int64_t deadline_ms;
    bool shutdown_done;
};

struct fleet {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct store *store;
    struct hapi *hapi;
    struct ledger *ledger;
    struct store_script *resync_sc, *states_sc;
    ev_timer resync_timer;
    bool resync_due; /* reset the shares from scur after the next HAProxy refresh */
    long pids[FLEET_MAX_PIDS]; /* this instance's HAProxy processes seen, still running */
    size_t npids;
    char older[FLEET_MAX_PIDS * 21]; /* those but the one answering now, for resync_lua */
    bool joined;
    bool left; /* fleet_leave ran: count nothing more */
    struct applied *applied;
    size_t napplied;
    fleet_moved_fn moved;
    void *moved_arg;
    char *channel; /* the events channel subscribed (a copy: cfg is swapped on reload) */
};

void fleet_on_moved(struct fleet *f, fleet_moved_fn fn, void *arg)
{
    f->moved = fn;
    f->moved_arg = arg;
}

/* ---- keys and small helpers -------------------------------------------- */

/* Keys of one backend for this instance, in script order. */
struct fleet_keys {
    char conns[FLEET_KEY_MAX], share[FLEET_KEY_MAX], open[FLEET_KEY_MAX];
    char insts[FLEET_KEY_MAX], extra[FLEET_KEY_MAX], kp[FLEET_KEY_MAX], pids[FLEET_KEY_MAX];
    char old[FLEET_KEY_MAX];
};

/* "<tag><instance>" into buf[SRV_NAME_MAX + 8]; -1 rather than a cut name (a
 * cut instance name would split its keys from the ones the ledger writes). */
static int inst_suffix(char *buf, const char *tag, const char *inst)
{
    size_t t = strlen(tag), n = strlen(inst);
    if (t + n >= SRV_NAME_MAX + 8) {
        return -1;
    }
    memcpy(buf, tag, t);
    memcpy(buf + t, inst, n + 1);
    return 0;
}

/* A name from the view into a fixed field: -1 when it does not fit (never cut). */
static int copy_name(char dst[SRV_NAME_MAX], const char *s, size_t n)
{
    if (n >= SRV_NAME_MAX) {
        return -1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int keys_for(const struct fleet *f, const char *backend, size_t blen,
                    struct fleet_keys *k)
{
    const char *p = f->cfg->redis_prefix;
    char s_share[SRV_NAME_MAX + 8], s_open[SRV_NAME_MAX + 8], s_pids[SRV_NAME_MAX + 8];
    char s_old[SRV_NAME_MAX + 8];
    if (inst_suffix(s_share, "i:", f->cfg->instance) < 0 ||
        inst_suffix(s_open, "o:", f->cfg->instance) < 0 ||
        inst_suffix(s_pids, "p:", f->cfg->instance) < 0 ||
        model_key(k->pids, sizeof(k->pids), p, backend, blen, s_pids) < 0 ||
        inst_suffix(s_old, "o2:", f->cfg->instance) < 0 ||
        model_key(k->old, sizeof(k->old), p, backend, blen, s_old) < 0 ||
        model_key(k->conns, sizeof(k->conns), p, backend, blen, "conns") < 0 ||
        model_key(k->share, sizeof(k->share), p, backend, blen, s_share) < 0 ||
        model_key(k->open, sizeof(k->open), p, backend, blen, s_open) < 0 ||
        model_key(k->insts, sizeof(k->insts), p, backend, blen, "insts") < 0 ||
        model_key(k->kp, sizeof(k->kp), p, backend, blen, "") < 0) {
        return -1;
    }
    return 0;
}

static void fmt_i64(char *buf, size_t len, int64_t v)
{
    snprintf(buf, len, "%lld", (long long)v);
}

static void publish_cb(const struct store_reply *r, enum store_result res, void *arg)
{
    UNUSED(r);
    UNUSED(arg);
    if (res != STORE_OK) {
        log_debug("fleet: event not published (%s)", res == STORE_TIMEOUT ? "timeout" : "down");
    }
}

void fleet_publish(struct fleet *f, const struct event *e)
{
    uint8_t *buf;
    size_t len;
    if (events_encode(e, &buf, &len) < 0) {
        return;
    }
    const char *argv[] = {"PUBLISH", f->cfg->events_channel, (const char *)buf};
    size_t argvlen[] = {7, strlen(f->cfg->events_channel), len};
    if (store_command(f->store, 3, argv, argvlen, FLEET_OP_TIMEOUT_MS, publish_cb, NULL) == 0) {
        STATS_INC(events_published);
    }
    free(buf);
}

/* ---- closes from the log ------------------------------------------------ */

void fleet_on_close(const struct slog_close *c, void *arg)
{
    struct fleet *f = arg;
    /* Any status: assign counts an upgrade open when it decides, so an upgrade
     * the server refused (no 101) must be released by its line too. A line for
     * a uid that was never counted is a no-op in the ledger's script. */
    if (f->left || c->uid.len == 0) {
        return;
    }
    if (ledger_close(f->ledger, c->backend.ptr, c->backend.len, c->uid.ptr, c->uid.len) < 0) {
        log_debug("fleet: close of %.*s not queued; the next resync corrects it",
                  (int)(c->uid.len > 64 ? 64 : c->uid.len), c->uid.ptr);
    }
}

/* ---- resync: share from scur, heartbeat, dead instances ----------------- */

/* fleet_leave's goodbyes in flight; lives until the last one completes. */
struct leave_wait {
    size_t pending;
    fleet_left_fn done;
    void *arg;
};

/* One goodbye completed (or failed, or was never sent): the last one tells. */
static void leave_step(struct leave_wait *lw)
{
    if (lw != NULL && --lw->pending == 0) {
        if (lw->done != NULL) {
            lw->done(lw->arg);
        }
        free(lw);
    }
}

struct resync_ctx {
    struct fleet *fleet;      /* NULL for a goodbye (fleet_free may come first): only log */
    struct leave_wait *leave; /* a goodbye: step it on completion */
    char backend[SRV_NAME_MAX];
    /* Between the two steps (the instances read, then the script run): the store
     * (it outlives a goodbye), the script and its arguments, owned. resync.lua
     * declares every instance's keys, so it needs their names first. */
    struct store *store;
    struct store_script *sc;
    int argc;
    char **argv;
};

static void ctx_free(struct resync_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    for (int i = 0; i < ctx->argc; i++) {
        free(ctx->argv[i]);
    }
    free(ctx->argv);
    free(ctx);
}

static void resync_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct resync_ctx *ctx = arg;
    struct fleet *f = ctx->fleet;
    if (res != STORE_OK || store_reply_type(r) != STORE_R_ARRAY) {
        if (res == STORE_OK) {
            size_t len;
            const char *msg = store_reply_str(r, &len);
            log_warn("fleet: resync of %s failed: %.*s", ctx->backend, (int)len,
                     msg ? msg : "?");
        }
        leave_step(ctx->leave);
        ctx_free(ctx);
        return;
    }
    STATS_INC(resyncs);
    if (f != NULL && !f->joined) {
        f->joined = true;
        struct event e = {.kind = EVENT_INSTANCE_JOINED, .ts_ms = util_now_ms(),
                          .origin = f->cfg->instance, .instance = f->cfg->instance};
        fleet_publish(f, &e);
    }
    for (size_t i = 0; f != NULL && i < store_reply_len(r); i++) {
        size_t len;
        const char *inst = store_reply_str(store_reply_elem(r, i), &len);
        if (inst == NULL) {
            continue;
        }
        char name[SRV_NAME_MAX];
        if (copy_name(name, inst, len) < 0) {
            log_warn("fleet: an instance of %s with a %zu-byte name (over %d) was dropped",
                     ctx->backend, len, SRV_NAME_MAX - 1);
            continue;
        }
        bool me = strcmp(name, f->cfg->instance) == 0;
        if (!me) {
            log_info("fleet: instance %s left %s (heartbeat expired); its share was dropped",
                     name, ctx->backend);
        }
        struct event e = {.kind = EVENT_INSTANCE_LEFT, .ts_ms = util_now_ms(),
                          .origin = f->cfg->instance, .instance = name,
                          .reason = me ? "shutdown" : "heartbeat-expired"};
        fleet_publish(f, &e);
    }
    leave_step(ctx->leave);
    ctx_free(ctx);
}

/* Step two: the instances of the backend are known (ZRANGE insts); run
 * resync.lua with their shares and open maps declared as KEYS[6..]. */
/* resync.lua's own keys: conns, share, open map, insts, servers, pids, old. */
#define RESYNC_OWN_KEYS 7

static void resync_insts_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct resync_ctx *ctx = arg;
    if (res != STORE_OK || store_reply_type(r) != STORE_R_ARRAY) {
        log_warn("fleet: resync of %s: instances not read (%s)", ctx->backend,
                 res == STORE_OK ? "error reply" : res == STORE_TIMEOUT ? "timeout" : "down");
        leave_step(ctx->leave);
        ctx_free(ctx);
        return;
    }
    size_t ninst = store_reply_len(r);
    /* ctx->argv: resync.lua's own 7 keys, then ARGV[1] "<prefix>{<backend>}:" ... */
    const char *kp = ctx->argv[RESYNC_OWN_KEYS];
    size_t kpl = strlen(kp);
    static const char *const inst_keys[] = {"i:", "o:", "p:", "o2:"};
    const size_t nik = ARRAY_SIZE(inst_keys);
    const char **argv = calloc((size_t)ctx->argc + nik * ninst, sizeof(*argv));
    char *names = calloc(ninst ? ninst : 1, nik * (kpl + 3 + SRV_NAME_MAX + 1));
    int nk = RESYNC_OWN_KEYS;
    if (argv == NULL || names == NULL) {
        goto fail;
    }
    for (int i = 0; i < RESYNC_OWN_KEYS; i++) {
        argv[i] = ctx->argv[i];
    }
    char *p = names;
    for (size_t i = 0; i < ninst; i++) {
        size_t len;
        const char *inst = store_reply_str(store_reply_elem(r, i), &len);
        if (inst == NULL || len >= SRV_NAME_MAX) {
            continue;
        }
        for (size_t k = 0; k < nik; k++) {
            argv[nk++] = p;
            p += sprintf(p, "%s%s%.*s", kp, inst_keys[k], (int)len, inst) + 1;
        }
    }
    int argc = nk;
    for (int i = RESYNC_OWN_KEYS; i < ctx->argc; i++) {
        argv[argc++] = ctx->argv[i];
    }
    if (store_eval(ctx->store, ctx->sc, nk, argc, argv, NULL, FLEET_OP_TIMEOUT_MS, resync_reply,
                   ctx) == 0) {
        free(argv);
        free(names);
        return;
    }
fail:
    free(argv);
    free(names);
    leave_step(ctx->leave);
    ctx_free(ctx);
}

/* mode: "scur", "beat" or "leave" (then lw counts the goodbye: stepped once,
 * here on failure or from the reply). */
static void resync_backend(struct fleet *f, const struct srv_backend *b, const char *mode,
                           struct leave_wait *lw)
{
    struct fleet_keys k;
    char hb[24], life[24];
    if (!b->http) {
        return; /* no WebSocket there (the SPOE agents' own backend): nothing to count */
    }
    if (lw != NULL) {
        lw->pending++;
    }
    if (keys_for(f, b->name, strlen(b->name), &k) < 0 ||
        model_key(k.extra, sizeof(k.extra), f->cfg->redis_prefix, b->name, strlen(b->name),
                  "servers") < 0) {
        leave_step(lw);
        return;
    }
    size_t n = b->nservers;
    const char **argv = calloc(13 + 4 * n, sizeof(*argv));
    char(*nums)[3][24] = calloc(n ? n : 1, sizeof(*nums));
    struct resync_ctx *ctx = calloc(1, sizeof(*ctx));
    if (argv == NULL || nums == NULL || ctx == NULL) {
        goto out;
    }
    fmt_i64(hb, sizeof(hb), f->cfg->heartbeat_ttl_ms);
    fmt_i64(life, sizeof(life), model_open_ttl_ms(f->cfg));
    int argc = 0;
    argv[argc++] = k.conns;
    argv[argc++] = k.share;
    argv[argc++] = k.open;
    argv[argc++] = k.insts;
    argv[argc++] = k.extra;
    argv[argc++] = k.pids;
    argv[argc++] = k.old;
    argv[argc++] = k.kp;
    argv[argc++] = f->cfg->instance;
    argv[argc++] = life; /* the open map's lifetime; the script reads Redis' TIME */
    argv[argc++] = hb;
    argv[argc++] = mode;
    argv[argc++] = f->older;
    for (size_t i = 0; i < n; i++) {
        snprintf(nums[i][0], sizeof(nums[i][0]), "%u", b->servers[i].scur);
        snprintf(nums[i][1], sizeof(nums[i][1]), "%u", b->servers[i].weight);
        argv[argc++] = b->servers[i].name;
        argv[argc++] = nums[i][0];
        argv[argc++] = nums[i][1];
        /* "<state> <maxconn>" when HAProxy has one: stickyctl status shows the cap */
        snprintf(nums[i][2], sizeof(nums[i][2]), "%s %u", srv_state_name(b->servers[i].state),
                 b->servers[i].maxconn);
        argv[argc++] = b->servers[i].maxconn > 0 ? nums[i][2]
                                                 : srv_state_name(b->servers[i].state);
    }
    /* a goodbye's reply may arrive after fleet_free: it must not reach f */
    ctx->fleet = strcmp(mode, "leave") == 0 ? NULL : f;
    ctx->leave = lw;
    ctx->store = f->store;
    ctx->sc = f->resync_sc;
    if (copy_name(ctx->backend, b->name, strlen(b->name)) < 0) {
        goto out;
    }
    if ((ctx->argv = calloc((size_t)argc, sizeof(*ctx->argv))) == NULL) {
        goto out;
    }
    for (; ctx->argc < argc; ctx->argc++) {
        if ((ctx->argv[ctx->argc] = strdup(argv[ctx->argc])) == NULL) {
            goto out;
        }
    }
    const char *zargv[] = {"ZRANGE", k.insts, "0", "-1"};
    if (store_command(f->store, 4, zargv, NULL, FLEET_OP_TIMEOUT_MS, resync_insts_reply, ctx) ==
        0) {
        ctx = NULL;
        lw = NULL; /* the reply steps it */
    }
out:
    leave_step(lw);
    ctx_free(ctx);
    free(nums);
    free(argv);
}

/* Track the HAProxy processes behind the stats socket: after a reload the old
 * one keeps its tunnels until they close, and only the new one answers there.
 * Fills f->older with the running ones other than the one answering now. */
static void track_pids(struct fleet *f)
{
    long cur = hapi_pid(f->hapi);
    bool seen = cur <= 0;
    for (size_t i = 0; i < f->npids; i++) {
        seen = seen || f->pids[i] == cur;
    }
    if (!seen) {
        if (f->npids == FLEET_MAX_PIDS) { /* the oldest is forgotten */
            memmove(f->pids, f->pids + 1, (FLEET_MAX_PIDS - 1) * sizeof(f->pids[0]));
            f->npids--;
        }
        f->pids[f->npids++] = cur;
    }
    size_t len = 0, kept = 0;
    f->older[0] = '\0';
    for (size_t i = 0; i < f->npids; i++) {
        long p = f->pids[i];
        /* same host as the agent (it runs beside its HAProxy); EPERM: alive */
        if (p != cur && kill((pid_t)p, 0) < 0 && errno != EPERM) {
            continue; /* gone: its tunnels were closed with it */
        }
        f->pids[kept++] = p;
        if (p != cur) {
            int w = snprintf(f->older + len, sizeof(f->older) - len, "%s%ld", len ? " " : "", p);
            if (w > 0 && (size_t)w < sizeof(f->older) - len) { /* else: left out, not cut */
                len += (size_t)w;
            } else {
                f->older[len] = '\0';
            }
        }
    }
    f->npids = kept;
}

static void resync_all(struct fleet *f)
{
    /* what the ledger holds was decided before this scur: let it land first */
    ledger_flush(f->ledger);
    /* a stale view (HAProxy unreachable since) must not overwrite the share */
    const char *mode = f->hapi != NULL && hapi_healthy(f->hapi) ? "scur" : "beat";
    for (size_t i = 0; i < servers_count(); i++) {
        resync_backend(f, servers_at(i), mode, NULL);
    }
}

static void resync_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct fleet *f = container_of(w, struct fleet, resync_timer);
    if (f->hapi == NULL || !hapi_healthy(f->hapi)) {
        resync_all(f); /* a heartbeat only */
        return;
    }
    /* The cached view can be a whole refresh period old: a share reset from its
     * scur would wipe the opens counted since (conns dips below the live sockets
     * until the next refresh). Beat now, so the heartbeat never waits for a slow
     * refresh, and reset the shares right after the next refresh (on_refresh). */
    f->resync_due = true;
    for (size_t i = 0; i < servers_count(); i++) {
        resync_backend(f, servers_at(i), "beat", NULL);
    }
}

/* ---- cluster state -> local HAProxy ------------------------------------ */

static struct applied *applied_get(struct fleet *f, const char *backend, const char *server)
{
    for (size_t i = 0; i < f->napplied; i++) {
        if (strcmp(f->applied[i].backend, backend) == 0 &&
            strcmp(f->applied[i].server, server) == 0) {
            return &f->applied[i];
        }
    }
    if (f->napplied == FLEET_MAX_APPLIED) {
        return NULL;
    }
    if (f->napplied % 32 == 0) {
        struct applied *a = realloc(f->applied, (f->napplied + 32) * sizeof(*a));
        if (a == NULL) {
            return NULL;
        }
        f->applied = a;
    }
    struct applied *a = &f->applied[f->napplied];
    memset(a, 0, sizeof(*a));
    if (copy_name(a->backend, backend, strlen(backend)) < 0 ||
        copy_name(a->server, server, strlen(server)) < 0) {
        return NULL;
    }
    f->napplied++;
    return a;
}

static void hapi_done(void *arg, bool ok, const char *text, size_t len)
{
    char *what = arg;
    if (!ok) {
        log_warn("fleet: haproxy refused '%s': %.*s", what, (int)(len > 200 ? 200 : len),
                 text != NULL ? text : "no answer");
    }
    free(what);
}

static const char *const admin_names[] = {"ready", "drain", "maint"};
_Static_assert(sizeof(admin_names) / sizeof(admin_names[0]) == MODEL_ADMIN_COUNT, "admin names");

static void remember_cb(const struct store_reply *r, enum store_result res, void *arg)
{
    UNUSED(r);
    UNUSED(arg);
    if (res != STORE_OK) {
        log_warn("fleet: could not record an applied state in Redis; after a restart this "
                 "agent may not undo it");
    }
}

/* Record in a:<inst> what this instance set on its HAProxy, so that a restarted
 * agent still knows the DRAIN/MAINT there is its own to undo (an operator's own
 * drain on the HAProxy CLI, absent from the hash, is left alone). */
static void remember(struct fleet *f, const char *backend, const char *server, enum model_admin st)
{
    char key[FLEET_KEY_MAX], suffix[SRV_NAME_MAX + 8];
    if (inst_suffix(suffix, "a:", f->cfg->instance) < 0 ||
        model_key(key, sizeof(key), f->cfg->redis_prefix, backend, strlen(backend), suffix) < 0) {
        return;
    }
    const char *argv[] = {st == MODEL_READY ? "HDEL" : "HSET", key, server, admin_names[st]};
    if (store_command(f->store, st == MODEL_READY ? 3 : 4, argv, NULL, FLEET_OP_TIMEOUT_MS,
                      remember_cb, NULL) < 0) {
        remember_cb(NULL, STORE_DOWN, NULL);
    }
}

static void hapi_apply(struct fleet *f, const struct srv_backend *b, const struct srv *s,
                       enum model_admin want)
{
    const char *const *names = admin_names;
    char *what = NULL;
    if (asprintf(&what, "set server %s/%s state %s", b->name, s->name, names[want]) < 0) {
        return;
    }
    log_info("fleet: %s", what);
    remember(f, b->name, s->name, want);
    if (hapi_set_server_state(f->hapi, b->name, s->name, names[want], hapi_done, what) < 0) {
        free(what);
    }
}

/* Does HAProxy's current view already reflect the admin state we want? */
static bool view_matches(enum srv_state have, enum model_admin want)
{
    switch (want) {
    case MODEL_DRAIN:
        /* a drained server failing its checks shows DOWN: still drained */
        return have == SRV_DRAIN || have == SRV_MAINT || have == SRV_DOWN;
    case MODEL_MAINT:
        return have == SRV_MAINT;
    default:
        return have != SRV_DRAIN && have != SRV_MAINT;
    }
}

struct state_ctx {
    struct fleet *fleet;
    char backend[SRV_NAME_MAX];
};

static void state_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct state_ctx *ctx = arg;
    struct fleet *f = ctx->fleet;
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
    int64_t now = ledger_redis_now_ms(f->ledger);
    for (size_t i = 0; i < b->nservers; i++) {
        const struct srv *s = &b->servers[i];
        enum model_admin want = MODEL_READY;
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
                log_warn("fleet: %s/%s has an unknown state '%.*s' (ignored)", b->name,
                         s->name, (int)vlen, val);
                want = MODEL_READY;
            }
        }
        struct applied *a = applied_get(f, b->name, s->name);
        if (a == NULL) {
            continue;
        }
        /* recorded: set by this instance before a restart, which a->state forgot */
        bool ours = a->state != MODEL_READY || recorded;
        if (want != a->state || (want != MODEL_READY && !view_matches(s->state, want)) ||
            (want == MODEL_READY && ours && !view_matches(s->state, want))) {
            if (want != MODEL_READY || ours) {
                hapi_apply(f, b, s, want);
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
                log_info("fleet: drain deadline of %s/%s passed: %s", b->name, s->name, what);
                if (hapi_shutdown_sessions(f->hapi, b->name, s->name, hapi_done, what) < 0) {
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

static void poll_states(struct fleet *f)
{
    if (f->hapi == NULL || !hapi_healthy(f->hapi)) {
        return;
    }
    for (size_t i = 0; i < servers_count(); i++) {
        const struct srv_backend *b = servers_at(i);
        if (!b->http) {
            continue; /* drain/maint are WebSocket affinity states */
        }
        char key[FLEET_KEY_MAX], mine[FLEET_KEY_MAX], suffix[SRV_NAME_MAX + 8];
        struct state_ctx *ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL || inst_suffix(suffix, "a:", f->cfg->instance) < 0 ||
            copy_name(ctx->backend, b->name, strlen(b->name)) < 0 ||
            model_key(key, sizeof(key), f->cfg->redis_prefix, b->name, strlen(b->name),
                      "state") < 0 ||
            model_key(mine, sizeof(mine), f->cfg->redis_prefix, b->name, strlen(b->name),
                      suffix) < 0) {
            free(ctx);
            continue;
        }
        ctx->fleet = f;
        /* with a slow start, this view's server states: states.lua records when each
         * became usable (issue 13) */
        size_t nramp = slowstart_of(f->cfg, b) ? b->nservers : 0;
        const char **argv = calloc(2 + 2 * nramp, sizeof(*argv));
        if (argv == NULL) {
            free(ctx);
            continue;
        }
        argv[0] = key;
        argv[1] = mine;
        for (size_t k = 0; k < nramp; k++) {
            argv[2 + 2 * k] = b->servers[k].name;
            argv[3 + 2 * k] = srv_state_name(b->servers[k].state);
        }
        if (store_eval(f->store, f->states_sc, 2, (int)(2 + 2 * nramp), argv, NULL,
                       FLEET_OP_TIMEOUT_MS, state_reply, ctx) < 0) {
            free(ctx);
        }
        free(argv);
    }
}

static void on_refresh(void *arg)
{
    struct fleet *f = arg;
    /* a fresh HAProxy view: make sure it carries the cluster's states */
    poll_states(f);
    track_pids(f);
    if (f->resync_due && !f->left) {
        f->resync_due = false;
        resync_all(f); /* scur read just now: nothing counted since is lost */
    }
}

static void on_event(const char *channel, const uint8_t *msg, size_t len, void *arg)
{
    UNUSED(channel);
    struct fleet *f = arg;
    struct event e;
    if (events_decode(msg, len, &e) < 0) {
        log_debug("fleet: undecodable event on the channel (%zu bytes)", len);
        return;
    }
    STATS_INC(events_received);
    if (e.kind == EVENT_SERVER_STATE) {
        /* react now rather than at the next poll, here and in the decisions' view */
        poll_states(f);
        ledger_refresh(f->ledger);
    } else if (e.kind == EVENT_SESSION_MOVED && f->moved != NULL && e.backend != NULL &&
               e.sid != NULL && e.server != NULL) {
        f->moved(e.backend, e.sid, e.server, f->moved_arg);
    }
    events_release(&e);
}

/* ---- lifecycle ----------------------------------------------------------- */

struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct ledger *l, struct hapi *h)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->loop = loop;
    f->cfg = c;
    f->store = st;
    f->hapi = h;
    f->ledger = l;
    f->resync_sc = store_script_new(st, model_lua_resync);
    f->states_sc = store_script_new(st, model_lua_states);
    if (f->resync_sc == NULL || f->states_sc == NULL) {
        free(f);
        return NULL;
    }
    if (h != NULL && hapi_on_refresh(h, on_refresh, f) < 0) {
        log_warn("fleet: cannot hook HAProxy refreshes; states are applied by polling only");
    }
    if ((f->channel = strdup(c->events_channel)) == NULL ||
        store_subscribe(st, c->events_channel, on_event, f) < 0) {
        log_warn("fleet: cannot subscribe to %s; state changes are seen by polling only",
                 c->events_channel);
    }
    double resync = (double)c->resync_ms / 1000.0;
    ev_timer_init(&f->resync_timer, resync_timer_cb, 0.2, resync);
    ev_timer_start(loop, &f->resync_timer);
    return f;
}

int fleet_reload(struct fleet *f, const struct cfg *next)
{
    if (f == NULL || (f->channel != NULL && strcmp(f->channel, next->events_channel) == 0)) {
        return 0;
    }
    char *ch = strdup(next->events_channel);
    if (ch == NULL || store_subscribe(f->store, ch, on_event, f) < 0) {
        free(ch);
        return -1;
    }
    if (f->channel != NULL) {
        (void)store_unsubscribe(f->store, f->channel);
        log_info("fleet: events channel %s -> %s (resubscribed)", f->channel, ch);
    }
    free(f->channel);
    f->channel = ch;
    return 0;
}

void fleet_leave(struct fleet *f, fleet_left_fn done, void *arg)
{
    struct leave_wait *lw = NULL;
    if (f == NULL || f->left || (lw = calloc(1, sizeof(*lw))) == NULL) {
        if (f != NULL) {
            f->left = true;
            ledger_stop(f->ledger);
            ev_timer_stop(f->loop, &f->resync_timer);
        }
        if (done != NULL) {
            done(arg);
        }
        return;
    }
    /* held by this call too, so a goodbye failing at once cannot finish it early */
    *lw = (struct leave_wait){.pending = 1, .done = done, .arg = arg};
    f->left = true;
    /* no batch after the goodbye may bring the instance back */
    ledger_stop(f->ledger);
    ev_timer_stop(f->loop, &f->resync_timer);
    struct event e = {.kind = EVENT_INSTANCE_LEFT,
                      .ts_ms = util_now_ms(),
                      .origin = f->cfg->instance,
                      .instance = f->cfg->instance,
                      .reason = "shutdown"};
    fleet_publish(f, &e);
    for (size_t i = 0; i < servers_count(); i++) {
        resync_backend(f, servers_at(i), "leave", lw);
    }
    leave_step(lw);
}

void fleet_free(struct fleet *f)
{
    if (f == NULL) {
        return;
    }
    ev_timer_stop(f->loop, &f->resync_timer);
    free(f->applied);
    free(f->channel);
    free(f);
}
