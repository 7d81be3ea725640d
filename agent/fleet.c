/* fleet.c - live connection counts across every HAProxy instance, and the
 * cluster-wide drain/maint state applied to the local HAProxy.
 *
 *   101 response --SPOE sticky-established--> open script  (count +1, dedup by uid,
 *                                                            correct a skipped pin)
 *   log line at tunnel end --slog--> close script           (count -1 once per uid)
 *   every resync period --> resync script                   (share := HAProxy scur,
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
#include "log.h"
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

/* KEYS: conns, share, open, insts, session. ARGV: inst, uid, server, now,
 * heartbeat ttl, open-map ttl, has-session (0/1).
 * Returns {counted (0/1), previously pinned server or ""}. */
static const char open_lua[] =
    FLEET_LUA_COUNT_OPEN
    "local conns, share, open, insts, sess = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    "local inst, uid, srv = ARGV[1], ARGV[2], ARGV[3]\n"
    "local now, hb, ottl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local counted = count_open(conns, share, open, uid, srv, ottl)\n"
    "redis.call('ZADD', insts, now, inst)\n"
    "redis.call('PEXPIRE', share, hb)\n"
    "local corrected = ''\n"
    "if ARGV[7] == '1' then\n"
    "  local pinned = redis.call('HGET', sess, 'server')\n"
    "  if pinned and pinned ~= srv then\n"
    "    redis.call('HSET', sess, 'server', srv)\n"
    "    corrected = pinned\n"
    "  end\n"
    "end\n"
    "return {counted, corrected}\n";

/* KEYS: conns, share, open, insts. ARGV: inst, uid, now, heartbeat ttl.
 * Returns 1 when the connection was open (counted closed now), 0 otherwise. */
static const char close_lua[] =
    "local conns, share, open, insts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local srv = redis.call('HGET', open, ARGV[2])\n"
    "if not srv then return 0 end\n"
    "redis.call('HDEL', open, ARGV[2])\n"
    "for _, key in ipairs({share, conns}) do\n"
    "  if tonumber(redis.call('HINCRBY', key, srv, -1)) <= 0 then\n"
    "    redis.call('HDEL', key, srv)\n"
    "  end\n"
    "end\n"
    "redis.call('ZADD', insts, tonumber(ARGV[3]), ARGV[1])\n"
    "redis.call('PEXPIRE', share, tonumber(ARGV[4]))\n"
    "return 1\n";

/* KEYS: conns, share, open, insts, servers. ARGV: key prefix of the backend
 * ("<prefix>{<backend>}:"), inst, now, heartbeat ttl, mode ("scur": reset the
 * share from the pairs, "beat": keep it, "leave": remove this instance),
 * the pids of this instance's older, still running HAProxy processes
 * (space separated, "" for none), then quadruples server, scur, weight,
 * haproxy-state. In "scur" mode the older processes' tunnels (open-map uids
 * ending in ":<pid>", decimal or zero-padded hex (%{+X}o), as the reference
 * unique-id-format makes them) are added to the share: they are live, but only
 * the newest process answers "show stat", so its scur alone would forget them.
 * Drops instances whose heartbeat is older than the ttl, recomputes conns as
 * the sum of the live shares, rewrites the servers view.
 * Returns the list of instances dropped (the leaving one included). */
static const char resync_lua[] =
    "local conns, share, open, insts, servers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    "local kp, inst, now, hb, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),"
    " ARGV[5]\n"
    "if mode == 'scur' then\n"
    "  redis.call('DEL', share)\n"
    "  for i = 7, #ARGV, 4 do\n"
    "    local n = tonumber(ARGV[i + 1])\n"
    "    if n > 0 then redis.call('HSET', share, ARGV[i], n) end\n"
    "  end\n"
    "  if ARGV[6] ~= '' then\n"
    "    local older = {}\n"
    "    for p in string.gmatch(ARGV[6], '%d+') do\n"
    "      older[tonumber(p)] = true\n"
    "    end\n"
    "    local o = redis.call('HGETALL', open)\n"
    "    for i = 1, #o, 2 do\n"
    "      local p = string.match(o[i], ':(%x+)$')\n"
    "      if p and (older[tonumber(p, 10) or -1] or older[tonumber(p, 16)]) then\n"
    "        redis.call('HINCRBY', share, o[i + 1], 1)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local dropped = {}\n"
    "if mode == 'leave' then\n"
    "  redis.call('ZREM', insts, inst)\n"
    "  redis.call('DEL', share, open)\n"
    "  dropped[1] = inst\n"
    "else\n"
    "  redis.call('ZADD', insts, now, inst)\n"
    "  redis.call('PEXPIRE', share, hb)\n"
    "  if redis.call('PTTL', open) == -1 then\n"
    "    redis.call('PEXPIRE', open, math.max(hb, 86400000))\n"
    "  end\n"
    "  if #ARGV >= 7 then\n"
    "    redis.call('DEL', servers)\n"
    "    for i = 7, #ARGV, 4 do\n"
    "      redis.call('HSET', servers, ARGV[i], ARGV[i + 2] .. ' ' .. ARGV[i + 3])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for _, d in ipairs(redis.call('ZRANGEBYSCORE', insts, '-inf', '(' .. (now - hb))) do\n"
    "  redis.call('ZREM', insts, d)\n"
    "  redis.call('DEL', kp .. 'i:' .. d, kp .. 'o:' .. d)\n"
    "  dropped[#dropped + 1] = d\n"
    "end\n"
    "local sum = {}\n"
    "for _, l in ipairs(redis.call('ZRANGE', insts, 0, -1)) do\n"
    "  local h = redis.call('HGETALL', kp .. 'i:' .. l)\n"
    "  for i = 1, #h, 2 do sum[h[i]] = (sum[h[i]] or 0) + tonumber(h[i + 1]) end\n"
    "end\n"
    "redis.call('DEL', conns)\n"
    "for k, v in pairs(sum) do\n"
    "  if v > 0 then redis.call('HSET', conns, k, v) end\n"
    "end\n"
    "return dropped\n";

/* KEYS: state, applied (a:<inst>). Returns {HGETALL state, HGETALL applied}:
 * the cluster's wish and what this instance last set on its HAProxy. */
static const char states_lua[] =
    "return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}\n";

/* What this agent last applied to its HAProxy for one server. */
struct applied {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    enum fleet_admin state;
    int64_t deadline_ms;
    bool shutdown_done;
};

struct fleet {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct store *store;
    struct hapi *hapi;
    struct store_script *open_sc, *close_sc, *resync_sc, *states_sc;
    ev_timer resync_timer;
    bool resync_due; /* reset the shares from scur after the next HAProxy refresh */
    long pids[FLEET_MAX_PIDS]; /* this instance's HAProxy processes seen, still running */
    size_t npids;
    char older[FLEET_MAX_PIDS * 21]; /* those but the one answering now, for resync_lua */
    bool joined;
    bool left; /* fleet_leave ran: count nothing more */
    struct applied *applied;
    size_t napplied;
};

/* ---- keys and small helpers -------------------------------------------- */

int fleet_key(char *buf, size_t len, const char *prefix, const char *backend, size_t blen,
              const char *suffix)
{
    int n = snprintf(buf, len, "%s{%.*s}:%s", prefix, (int)blen, backend, suffix);
    return n < 0 || (size_t)n >= len ? -1 : n;
}

int64_t fleet_open_ttl_ms(const struct cfg *c)
{
    return c->session_ttl_ms > 86400000 ? c->session_ttl_ms : 86400000;
}

int fleet_parse_state(const char *v, size_t len, enum fleet_admin *st, int64_t *deadline_ms,
                      bool *close_at_deadline)
{
    *deadline_ms = 0;
    *close_at_deadline = false;
    if (len == 5 && memcmp(v, "maint", 5) == 0) {
        *st = FLEET_MAINT;
        return 0;
    }
    if (len < 7 || memcmp(v, "drain:", 6) != 0) {
        return -1;
    }
    size_t i = 6;
    int64_t ms = 0;
    while (i < len && v[i] >= '0' && v[i] <= '9') {
        if (ms > (INT64_MAX - 9) / 10) {
            return -1;
        }
        ms = ms * 10 + (v[i] - '0');
        i++;
    }
    if (i == 6) {
        return -1;
    }
    if (i < len) {
        if (len - i != 6 || memcmp(v + i, ":close", 6) != 0) {
            return -1;
        }
        *close_at_deadline = true;
    }
    *st = FLEET_DRAIN;
    *deadline_ms = ms;
    return 0;
}

/* Keys of one backend for this instance, in script order. */
struct fleet_keys {
    char conns[FLEET_KEY_MAX], share[FLEET_KEY_MAX], open[FLEET_KEY_MAX];
    char insts[FLEET_KEY_MAX], extra[FLEET_KEY_MAX], kp[FLEET_KEY_MAX];
};

static int keys_for(const struct fleet *f, const char *backend, size_t blen,
                    struct fleet_keys *k)
{
    const char *p = f->cfg->redis_prefix;
    char s_share[SRV_NAME_MAX + 8], s_open[SRV_NAME_MAX + 8];
    snprintf(s_share, sizeof(s_share), "i:%s", f->cfg->instance);
    snprintf(s_open, sizeof(s_open), "o:%s", f->cfg->instance);
    if (fleet_key(k->conns, sizeof(k->conns), p, backend, blen, "conns") < 0 ||
        fleet_key(k->share, sizeof(k->share), p, backend, blen, s_share) < 0 ||
        fleet_key(k->open, sizeof(k->open), p, backend, blen, s_open) < 0 ||
        fleet_key(k->insts, sizeof(k->insts), p, backend, blen, "insts") < 0 ||
        fleet_key(k->kp, sizeof(k->kp), p, backend, blen, "") < 0) {
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

/* ---- sticky-established ---------------------------------------------- */

struct est_ctx {
    struct fleet *fleet;
    struct req *req;
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    char sid[128];
};

static bool arg_str(const struct spop_data *v, struct spop_str *out)
{
    if (v->type != SPOP_T_STRING && v->type != SPOP_T_BINARY) {
        return false;
    }
    *out = v->u.str;
    return true;
}

static bool arg_int(const struct spop_data *v, int64_t *out)
{
    switch (v->type) {
    case SPOP_T_INT32:
        *out = v->u.i32;
        return true;
    case SPOP_T_UINT32:
        *out = v->u.u32;
        return true;
    case SPOP_T_INT64:
        *out = v->u.i64;
        return true;
    case SPOP_T_UINT64:
        *out = (int64_t)v->u.u64;
        return true;
    default:
        return false;
    }
}

static bool copy_view(char *dst, size_t cap, struct spop_str s)
{
    if (s.len == 0 || s.len >= cap) {
        return false;
    }
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = '\0';
    return true;
}

static void established_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct est_ctx *ctx = arg;
    int64_t counted = 0;
    if (res == STORE_OK && store_reply_type(r) == STORE_R_ARRAY && store_reply_len(r) == 2) {
        counted = store_reply_int(store_reply_elem(r, 0));
        size_t plen;
        const char *prev = store_reply_str(store_reply_elem(r, 1), &plen);
        if (counted) {
            STATS_INC(conn_opened_events);
        }
        if (prev != NULL && plen > 0) {
            char from[SRV_NAME_MAX];
            snprintf(from, sizeof(from), "%.*s", (int)plen, prev);
            log_info("fleet: %s sid %.8s... pinned to %s was served by %s; pin corrected",
                     ctx->backend, ctx->sid, from, ctx->server);
            struct event e = {.kind = EVENT_SESSION_REPINNED, .ts_ms = util_now_ms(),
                              .origin = ctx->fleet->cfg->instance, .backend = ctx->backend,
                              .sid = ctx->sid, .from_server = from, .server = ctx->server,
                              .reason = "corrected"};
            fleet_publish(ctx->fleet, &e);
        }
    } else {
        log_debug("fleet: open not counted (%s); the next resync corrects it",
                  res == STORE_OK ? "unexpected reply" : "redis unavailable");
    }
    req_set_var_int(ctx->req, "counted", counted);
    req_done(ctx->req);
    free(ctx);
}

static void established_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    struct fleet *f = arg;
    struct spop_reader it = m->args;
    struct spop_str key, backend = {0}, server = {0}, sid = {0}, uid = {0};
    struct spop_data v;
    int64_t status = 101; /* absent: trust the rule that sent it on 101 */
    while (spop_kv_next(&it, &key, &v) == 1) {
        if (spop_str_eq(key, "backend")) {
            (void)arg_str(&v, &backend);
        } else if (spop_str_eq(key, "server")) {
            (void)arg_str(&v, &server);
        } else if (spop_str_eq(key, "sid")) {
            (void)arg_str(&v, &sid);
        } else if (spop_str_eq(key, "uid")) {
            (void)arg_str(&v, &uid);
        } else if (spop_str_eq(key, "status")) {
            (void)arg_int(&v, &status);
        }
    }
    struct est_ctx *ctx = f->left ? NULL : calloc(1, sizeof(*ctx));
    struct fleet_keys k;
    char uidbuf[256], now[24], hb[24], ottl[24];
    if (ctx == NULL || status != 101 || !copy_view(ctx->backend, sizeof(ctx->backend), backend) ||
        !copy_view(ctx->server, sizeof(ctx->server), server) ||
        !copy_view(uidbuf, sizeof(uidbuf), uid) ||
        keys_for(f, ctx->backend, strlen(ctx->backend), &k) < 0) {
        req_set_var_int(r, "counted", 0);
        req_done(r);
        free(ctx);
        return;
    }
    bool has_sid = copy_view(ctx->sid, sizeof(ctx->sid), sid);
    char s_sess[160];
    snprintf(s_sess, sizeof(s_sess), "s:%s", has_sid ? ctx->sid : "");
    if (fleet_key(k.extra, sizeof(k.extra), f->cfg->redis_prefix, ctx->backend,
                  strlen(ctx->backend), s_sess) < 0) {
        has_sid = false;
    }
    ctx->fleet = f;
    ctx->req = r;
    fmt_i64(now, sizeof(now), util_now_ms());
    fmt_i64(hb, sizeof(hb), f->cfg->heartbeat_ttl_ms);
    fmt_i64(ottl, sizeof(ottl), fleet_open_ttl_ms(f->cfg));
    const char *argv[] = {k.conns, k.share, k.open, k.insts, k.extra, f->cfg->instance, uidbuf,
                          ctx->server, now, hb, ottl, has_sid ? "1" : "0"};
    if (store_eval(f->store, f->open_sc, 5, 12, argv, NULL, FLEET_OP_TIMEOUT_MS,
                   established_reply, ctx) < 0) {
        established_reply(NULL, STORE_DOWN, ctx);
    }
}

/* ---- closes from the log ------------------------------------------------ */

static void close_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    UNUSED(arg);
    if (res == STORE_OK && store_reply_type(r) == STORE_R_INT) {
        if (store_reply_int(r) == 1) {
            STATS_INC(conn_closed_events);
        } else {
            STATS_INC(conn_close_duplicates);
        }
    }
}

void fleet_on_close(const struct slog_close *c, void *arg)
{
    struct fleet *f = arg;
    /* Any status: assign counts an upgrade open when it decides, so an upgrade
     * the server refused (no 101) must be released by its line too. A line for
     * a uid that was never counted is a no-op in the script. */
    if (f->left) {
        return;
    }
    struct fleet_keys k;
    char uid[256], now[24], hb[24];
    if (!copy_view(uid, sizeof(uid), c->uid) ||
        keys_for(f, c->backend.ptr, c->backend.len, &k) < 0) {
        return;
    }
    fmt_i64(now, sizeof(now), util_now_ms());
    fmt_i64(hb, sizeof(hb), f->cfg->heartbeat_ttl_ms);
    const char *argv[] = {k.conns, k.share, k.open, k.insts, f->cfg->instance, uid, now, hb};
    if (store_eval(f->store, f->close_sc, 4, 8, argv, NULL, FLEET_OP_TIMEOUT_MS, close_reply,
                   NULL) < 0) {
        log_debug("fleet: close of %s not counted (redis down); the next resync corrects it",
                  uid);
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
};

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
        free(ctx);
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
        snprintf(name, sizeof(name), "%.*s", (int)len, inst);
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
    free(ctx);
}

/* mode: "scur", "beat" or "leave" (then lw counts the goodbye: stepped once,
 * here on failure or from the reply). */
static void resync_backend(struct fleet *f, const struct srv_backend *b, const char *mode,
                           struct leave_wait *lw)
{
    struct fleet_keys k;
    char now[24], hb[24];
    if (!b->http) {
        return; /* no WebSocket there (the SPOE agents' own backend): nothing to count */
    }
    if (lw != NULL) {
        lw->pending++;
    }
    if (keys_for(f, b->name, strlen(b->name), &k) < 0 ||
        fleet_key(k.extra, sizeof(k.extra), f->cfg->redis_prefix, b->name, strlen(b->name),
                  "servers") < 0) {
        leave_step(lw);
        return;
    }
    size_t n = b->nservers;
    const char **argv = calloc(11 + 4 * n, sizeof(*argv));
    char(*nums)[2][16] = calloc(n ? n : 1, sizeof(*nums));
    struct resync_ctx *ctx = calloc(1, sizeof(*ctx));
    if (argv == NULL || nums == NULL || ctx == NULL) {
        goto out;
    }
    fmt_i64(now, sizeof(now), util_now_ms());
    fmt_i64(hb, sizeof(hb), f->cfg->heartbeat_ttl_ms);
    int argc = 0;
    argv[argc++] = k.conns;
    argv[argc++] = k.share;
    argv[argc++] = k.open;
    argv[argc++] = k.insts;
    argv[argc++] = k.extra;
    argv[argc++] = k.kp;
    argv[argc++] = f->cfg->instance;
    argv[argc++] = now;
    argv[argc++] = hb;
    argv[argc++] = mode;
    argv[argc++] = f->older;
    for (size_t i = 0; i < n; i++) {
        snprintf(nums[i][0], sizeof(nums[i][0]), "%u", b->servers[i].scur);
        snprintf(nums[i][1], sizeof(nums[i][1]), "%u", b->servers[i].weight);
        argv[argc++] = b->servers[i].name;
        argv[argc++] = nums[i][0];
        argv[argc++] = nums[i][1];
        argv[argc++] = srv_state_name(b->servers[i].state);
    }
    /* a goodbye's reply may arrive after fleet_free: it must not reach f */
    ctx->fleet = strcmp(mode, "leave") == 0 ? NULL : f;
    ctx->leave = lw;
    snprintf(ctx->backend, sizeof(ctx->backend), "%s", b->name);
    if (store_eval(f->store, f->resync_sc, 5, argc, argv, NULL, FLEET_OP_TIMEOUT_MS,
                   resync_reply, ctx) == 0) {
        ctx = NULL;
        lw = NULL; /* the reply steps it */
    }
out:
    leave_step(lw);
    free(ctx);
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
    struct applied *a = &f->applied[f->napplied++];
    memset(a, 0, sizeof(*a));
    snprintf(a->backend, sizeof(a->backend), "%s", backend);
    snprintf(a->server, sizeof(a->server), "%s", server);
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
_Static_assert(sizeof(admin_names) / sizeof(admin_names[0]) == FLEET_ADMIN_COUNT, "admin names");

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
static void remember(struct fleet *f, const char *backend, const char *server, enum fleet_admin st)
{
    char key[FLEET_KEY_MAX], suffix[SRV_NAME_MAX + 8];
    snprintf(suffix, sizeof(suffix), "a:%s", f->cfg->instance);
    if (fleet_key(key, sizeof(key), f->cfg->redis_prefix, backend, strlen(backend), suffix) < 0) {
        return;
    }
    const char *argv[] = {st == FLEET_READY ? "HDEL" : "HSET", key, server, admin_names[st]};
    if (store_command(f->store, st == FLEET_READY ? 3 : 4, argv, NULL, FLEET_OP_TIMEOUT_MS,
                      remember_cb, NULL) < 0) {
        remember_cb(NULL, STORE_DOWN, NULL);
    }
}

static void hapi_apply(struct fleet *f, const struct srv_backend *b, const struct srv *s,
                       enum fleet_admin want)
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
static bool view_matches(enum srv_state have, enum fleet_admin want)
{
    switch (want) {
    case FLEET_DRAIN:
        /* a drained server failing its checks shows DOWN: still drained */
        return have == SRV_DRAIN || have == SRV_MAINT || have == SRV_DOWN;
    case FLEET_MAINT:
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
    int64_t now = util_now_ms();
    for (size_t i = 0; i < b->nservers; i++) {
        const struct srv *s = &b->servers[i];
        enum fleet_admin want = FLEET_READY;
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
                fleet_parse_state(val, vlen, &want, &deadline, &close_at) < 0) {
                log_warn("fleet: %s/%s has an unknown state '%.*s' (ignored)", b->name,
                         s->name, (int)vlen, val);
                want = FLEET_READY;
            }
        }
        struct applied *a = applied_get(f, b->name, s->name);
        if (a == NULL) {
            continue;
        }
        /* recorded: set by this instance before a restart, which a->state forgot */
        bool ours = a->state != FLEET_READY || recorded;
        if (want != a->state || (want != FLEET_READY && !view_matches(s->state, want)) ||
            (want == FLEET_READY && ours && !view_matches(s->state, want))) {
            if (want != FLEET_READY || ours) {
                hapi_apply(f, b, s, want);
            }
            a->state = want;
        }
        if (a->deadline_ms != deadline) {
            a->deadline_ms = deadline;
            a->shutdown_done = false;
        }
        if (want == FLEET_DRAIN && close_at && deadline > 0 && now >= deadline &&
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
        snprintf(suffix, sizeof(suffix), "a:%s", f->cfg->instance);
        struct state_ctx *ctx = calloc(1, sizeof(*ctx));
        if (ctx == NULL ||
            fleet_key(key, sizeof(key), f->cfg->redis_prefix, b->name, strlen(b->name),
                      "state") < 0 ||
            fleet_key(mine, sizeof(mine), f->cfg->redis_prefix, b->name, strlen(b->name),
                      suffix) < 0) {
            free(ctx);
            continue;
        }
        ctx->fleet = f;
        snprintf(ctx->backend, sizeof(ctx->backend), "%s", b->name);
        const char *argv[] = {key, mine};
        if (store_eval(f->store, f->states_sc, 2, 2, argv, NULL, FLEET_OP_TIMEOUT_MS,
                       state_reply, ctx) < 0) {
            free(ctx);
        }
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
        /* react now rather than at the next poll */
        poll_states(f);
    }
    events_release(&e);
}

/* ---- lifecycle ----------------------------------------------------------- */

struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct hapi *h)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    f->loop = loop;
    f->cfg = c;
    f->store = st;
    f->hapi = h;
    f->open_sc = store_script_new(st, open_lua);
    f->close_sc = store_script_new(st, close_lua);
    f->resync_sc = store_script_new(st, resync_lua);
    f->states_sc = store_script_new(st, states_lua);
    if (f->open_sc == NULL || f->close_sc == NULL || f->resync_sc == NULL ||
        f->states_sc == NULL ||
        req_register("sticky-established", established_handler, f) < 0) {
        free(f);
        return NULL;
    }
    if (h != NULL && hapi_on_refresh(h, on_refresh, f) < 0) {
        log_warn("fleet: cannot hook HAProxy refreshes; states are applied by polling only");
    }
    if (store_subscribe(st, c->events_channel, on_event, f) < 0) {
        log_warn("fleet: cannot subscribe to %s; state changes are seen by polling only",
                 c->events_channel);
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
    free(f);
}
