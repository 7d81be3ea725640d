/* fleet.c - live connection counts across every HAProxy instance.
 *
 *   opens (assign.c), log line at tunnel end --slog--> ledger (batched, once per uid)
 *   every resync period --> ledger flushed, resync.lua      (share := HAProxy scur,
 *                                                            drop dead instances,
 *                                                            conns := sum of shares)
 *
 * Each script touches only one backend's keys (one hash tag, one cluster slot)
 * and runs atomically, so `conns` never goes negative and always equals the sum
 * of the live instances' shares after a resync. The drain/maint state is admin.c's.
 */
#include "fleet.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "config.h"
#include "events.h"
#include "hapi.h"
#include "ledger.h"
#include "log.h"
#include "model.h"
#include "servers.h"
#include "slog.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define FLEET_OP_TIMEOUT_MS 1000 /* counts are not on the decision path */
#define FLEET_MAX_PIDS 8 /* HAProxy processes of this instance alive at once (reloads) */

struct fleet {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct store *store;
    struct hapi *hapi;
    struct ledger *ledger;
    struct channel *channel; /* joins and leaves are announced there */
    struct store_script *resync_sc;
    ev_timer resync_timer;
    bool resync_due; /* reset the shares from scur after the next HAProxy refresh */
    long pids[FLEET_MAX_PIDS]; /* this instance's HAProxy processes seen, still running */
    size_t npids;
    char older[FLEET_MAX_PIDS * 21]; /* those but the one answering now, for resync_lua */
    bool joined;
    bool left; /* fleet_leave ran: count nothing more */
};

/* ---- keys and small helpers -------------------------------------------- */

/* Keys of one backend for this instance, in resync.lua's order. */
struct fleet_keys {
    char conns[MODEL_KEY_MAX], share[MODEL_KEY_MAX], open[MODEL_KEY_MAX];
    char insts[MODEL_KEY_MAX], extra[MODEL_KEY_MAX], kp[MODEL_KEY_MAX], pids[MODEL_KEY_MAX];
    char old[MODEL_KEY_MAX];
};

/* -1 rather than a cut key (a cut instance name would split its keys from the
 * ones the ledger writes). */
static int keys_for(const struct fleet *f, const char *backend, struct fleet_keys *k)
{
    const char *p = f->cfg->redis_prefix, *inst = f->cfg->instance;
    size_t blen = strlen(backend), ilen = strlen(inst);
    if (model_key_id(k->share, p, backend, "i:", inst, ilen) < 0 ||
        model_key_id(k->open, p, backend, "o:", inst, ilen) < 0 ||
        model_key_id(k->pids, p, backend, "p:", inst, ilen) < 0 ||
        model_key_id(k->old, p, backend, "o2:", inst, ilen) < 0 ||
        model_key(k->conns, sizeof(k->conns), p, backend, blen, "conns") < 0 ||
        model_key(k->insts, sizeof(k->insts), p, backend, blen, "insts") < 0 ||
        model_key(k->extra, sizeof(k->extra), p, backend, blen, "servers") < 0 ||
        model_key(k->kp, sizeof(k->kp), p, backend, blen, "") < 0) {
        return -1;
    }
    return 0;
}

static void fmt_i64(char *buf, size_t len, int64_t v)
{
    snprintf(buf, len, "%lld", (long long)v);
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
        channel_publish(f->channel, &e);
    }
    for (size_t i = 0; f != NULL && i < store_reply_len(r); i++) {
        size_t len;
        const char *inst = store_reply_str(store_reply_elem(r, i), &len);
        if (inst == NULL) {
            continue;
        }
        char name[SRV_NAME_MAX];
        if (servers_copy_name(name, inst, len) < 0) {
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
        channel_publish(f->channel, &e);
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
    if (keys_for(f, b->name, &k) < 0) {
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
        snprintf(nums[i][2], sizeof(nums[i][2]), "%s %u", model_state_name(b->servers[i].state),
                 b->servers[i].maxconn);
        argv[argc++] = b->servers[i].maxconn > 0 ? nums[i][2]
                                                 : model_state_name(b->servers[i].state);
    }
    /* a goodbye's reply may arrive after fleet_free: it must not reach f */
    ctx->fleet = strcmp(mode, "leave") == 0 ? NULL : f;
    ctx->leave = lw;
    ctx->store = f->store;
    ctx->sc = f->resync_sc;
    if (servers_copy_name(ctx->backend, b->name, strlen(b->name)) < 0) {
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

static void on_refresh(void *arg)
{
    struct fleet *f = arg;
    track_pids(f);
    if (f->resync_due && !f->left) {
        f->resync_due = false;
        resync_all(f); /* scur read just now: nothing counted since is lost */
    }
}

/* ---- lifecycle ----------------------------------------------------------- */

struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct ledger *l, struct hapi *h, struct channel *ch)
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
    f->channel = ch;
    if ((f->resync_sc = store_script_new(st, model_lua_resync)) == NULL) {
        free(f);
        return NULL;
    }
    if (h != NULL && hapi_on_refresh(h, on_refresh, f) < 0) {
        log_warn("fleet: cannot hook HAProxy refreshes; shares are reset from scur later");
    }
    double resync = (double)c->resync_ms / 1000.0;
    ev_timer_init(&f->resync_timer, resync_timer_cb, 0.2, resync);
    ev_timer_start(loop, &f->resync_timer);
    return f;
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
    channel_publish(f->channel, &e);
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
    free(f);
}
