/* assign.c - the `sticky-assign` handler (contract in assign.h).
 *
 *   NOTIFY args -> parse (copy what outlives the call) -> id: verify / mint / key
 *     -> candidates from the servers view, HRW-ordered -> EVALSHA (deadline)
 *     -> reply: hit/new/repin/none   |  timeout/down/error: weighted HRW fallback
 *     -> txn vars -> req_done (exactly once)
 * Must not block, allocate per decision in steady state, or trust the cookie.
 */
#include "assign.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"
#include "config.h"
#include "fleet.h"
#include "events.h"
#include "log.h"
#include "req.h"
#include "servers.h"
#include "sid.h"
#include "spop.h"
#include "stats.h"
#include "store.h"
#include "util.h"

static const char assign_lua[] =
    "-- stickyd sticky-assign v1 (contract in agent/assign.h)\n"
    FLEET_LUA_COUNT_OPEN
    "local rec, ttl, inst = KEYS[1], ARGV[1], ARGV[2]\n"
    "local n = tonumber(ARGV[3])\n"
    "if n == nil or n < 1 then return {'none', 'no usable server'} end\n"
    "-- Redis < 5 replicates scripts verbatim: TIME would forbid the writes after it\n"
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local nows = string.format('%d', now)\n"
    "if KEYS[4] and KEYS[4] ~= rec and redis.call('EXISTS', rec) == 0 and\n"
    "   redis.call('EXISTS', KEYS[4]) == 1 then\n"
    "  redis.call('RENAME', KEYS[4], rec)\n"
    "end\n"
    "local names, weights, flags = {}, {}, {}\n"
    "for i = 1, n do\n"
    "  local b = 3 + (i - 1) * 3\n"
    "  names[i] = ARGV[b + 1]\n"
    "  weights[i] = tonumber(ARGV[b + 2]) or 0\n"
    "  flags[i] = tonumber(ARGV[b + 3]) or 0\n"
    "end\n"
    "-- an upgrade is counted open on its server in the same atomic step\n"
    "local function count(srv)\n"
    "  if #KEYS >= 6 then\n"
    "    local b = 4 + 3 * n\n"
    "    count_open(KEYS[2], KEYS[5], KEYS[6], ARGV[b], srv, tonumber(ARGV[b + 2]))\n"
    "    if redis.call('PTTL', KEYS[5]) == -1 then\n"
    "      redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[b + 1]))\n"
    "    end\n"
    "  end\n"
    "end\n"
    "-- admin state from Redis: 0 ready, 1 draining (stays), 2 unusable\n"
    "local st = redis.call('HMGET', KEYS[3], unpack(names))\n"
    "local adm = {}\n"
    "for i = 1, n do\n"
    "  local v, a = st[i], 0\n"
    "  if v == 'maint' then\n"
    "    a = 2\n"
    "  elseif v then\n"
    "    local d = string.match(v, '^drain:(%d+)')\n"
    "    if d then\n"
    "      d = tonumber(d)\n"
    "      if d == 0 or now < d then a = 1 else a = 2 end\n"
    "    end\n"
    "  end\n"
    "  adm[i] = a\n"
    "end\n"
    "local pinned = redis.call('HGET', rec, 'server')\n"
    "local why = 'removed'\n"
    "if pinned then\n"
    "  for i = 1, n do\n"
    "    if names[i] == pinned then\n"
    "      if flags[i] % 2 == 1 and adm[i] < 2 then\n"
    "        redis.call('HSET', rec, 'seen', nows, 'inst', inst)\n"
    "        redis.call('HINCRBY', rec, 'reconnects', 1)\n"
    "        redis.call('PEXPIRE', rec, ttl)\n"
    "        local dr = 0\n"
    "        if adm[i] == 1 or math.floor(flags[i] / 4) % 2 == 1 then dr = 1 end\n"
    "        count(pinned)\n"
    "        return {'hit', pinned, dr}\n"
    "      end\n"
    "      if adm[i] < 2 then why = 'down' elseif st[i] == 'maint' then why = 'maint'\n"
    "      else why = 'drain-deadline' end\n"
    "      break\n"
    "    end\n"
    "  end\n"
    "end\n"
    "-- least loaded: conns/weight, compared cross-multiplied; first minimum wins\n"
    "local conns = redis.call('HMGET', KEYS[2], unpack(names))\n"
    "local best, bc, bw = nil, 0, 1\n"
    "for i = 1, n do\n"
    "  if math.floor(flags[i] / 2) % 2 == 1 and adm[i] == 0 and weights[i] > 0 then\n"
    "    local c = tonumber(conns[i]) or 0\n"
    "    if c < 0 then c = 0 end\n"
    "    if best == nil or c * bw < bc * weights[i] then best, bc, bw = i, c, weights[i] end\n"
    "  end\n"
    "end\n"
    "if best == nil then return {'none', 'no usable server'} end\n"
    "local srv = names[best]\n"
    "if pinned then\n"
    "  redis.call('HSET', rec, 'server', srv, 'seen', nows, 'inst', inst)\n"
    "  redis.call('HINCRBY', rec, 'reconnects', 1)\n"
    "  redis.call('PEXPIRE', rec, ttl)\n"
    "  count(srv)\n"
    "  return {'repin', srv, 0, pinned, why}\n"
    "end\n"
    "redis.call('HSET', rec, 'server', srv, 'created', nows, 'seen', nows,\n"
    "           'reconnects', 0, 'inst', inst)\n"
    "redis.call('PEXPIRE', rec, ttl)\n"
    "count(srv)\n"
    "return {'new', srv, 0}\n";

#define KEY_MAX 256 /* prefix (<=64) + {backend} (<=65) + ":s:" + id (<=64) */
#define SRC_MAX 46  /* INET6_ADDRSTRLEN */
#define UID_MAX 64  /* enough of a unique-id for a log line */
#define REASON_MAX 48

/* One decision waiting on Redis. Lives on the freelist between decisions. */
struct assign_ctx {
    struct assign_ctx *next_free;
    struct req *req;
    char backend[SRV_NAME_MAX];
    char id[SID_BUF];
    size_t id_len;
    bool minted;
    int src_af; /* AF_INET, AF_INET6, or 0: no address (kept raw: text only for logs) */
    uint8_t src[16];
    char uid[UID_MAX];
    bool counting; /* the script counts this upgrade open with the decision */
};

/* Module state: one per process (the agent is single-threaded). */
static struct {
    const struct cfg *cfg;
    struct store *store;
    struct store_script *script;
    struct sid_keys keys;
    bool have_keys;
    bool shutting;
    struct assign_ctx *free_list;
    assign_publish_fn publish; /* NULL: no events */
    void *publish_arg;
    /* Scratch for building one EVALSHA; used only inside the handler call. */
    struct aff_cand *cands;
    size_t cands_cap;
    const char **argv;
    size_t *argvlen;
    char (*nums)[2][12];
    size_t argv_cap;
} A;

const char *assign_script(void)
{
    return assign_lua;
}

/* ---- contexts ----------------------------------------------------------- */

static struct assign_ctx *ctx_get(void)
{
    struct assign_ctx *x = A.free_list;
    if (x != NULL) {
        A.free_list = x->next_free;
    } else if ((x = malloc(sizeof(*x))) == NULL) {
        return NULL;
    }
    memset(x, 0, sizeof(*x));
    return x;
}

static void ctx_put(struct assign_ctx *x)
{
    if (A.shutting) {
        free(x);
        return;
    }
    x->next_free = A.free_list;
    A.free_list = x;
}

/* ---- answers ------------------------------------------------------------ */

static void log_decision(const struct assign_ctx *x, const char *action, const char *server,
                         const char *reason)
{
    if (!log_enabled(LOG_LVL_DEBUG)) {
        return;
    }
    char src[SRC_MAX] = "";
    if (x->src_af != 0 && inet_ntop(x->src_af, x->src, src, sizeof(src)) == NULL) {
        src[0] = '\0';
    }
    log_debug("assign backend=%s sid=%.8s%s action=%s server=%s%s%s src=%s uid=%s", x->backend,
              x->id, x->minted ? "(new)" : "", action, server != NULL ? server : "-",
              reason != NULL ? " reason=" : "", reason != NULL ? reason : "",
              src[0] ? src : "-", x->uid[0] ? x->uid : "-");
}

static void set_vars(struct req *r, const struct assign_ctx *x, const char *action,
                     const char *server, size_t server_len, bool draining)
{
    req_set_var_str(r, "server", server, server_len);
    req_set_var_str(r, "sid", x->id, x->id_len);
    req_set_var_int(r, "set_cookie", x->minted ? 1 : 0);
    req_set_var_str(r, "action", action, strlen(action));
    req_set_var_int(r, "draining", draining ? 1 : 0);
}

/* action none: HAProxy balances on its own. x may be NULL (nothing parsed). */
static void answer_none(struct req *r, struct assign_ctx *x, const char *reason)
{
    STATS_INC(decision_none);
    if (!req_orphaned(r)) {
        req_set_var_str(r, "action", "none", 4);
        req_set_var_str(r, "reason", reason, strlen(reason));
        req_set_var_int(r, "set_cookie", 0);
        req_set_var_int(r, "draining", 0);
    }
    if (x != NULL) {
        log_decision(x, "none", NULL, reason);
    } else {
        log_debug("assign action=none reason=%s (%s)", reason, req_ident(r));
    }
    req_done(r);
}

/* Candidates of backend b in HRW order of id, into the scratch array. */
static int build_cands(const struct srv_backend *b, const char *id, size_t id_len, size_t *n)
{
    size_t cnt = b->nservers < ASSIGN_MAX_CANDIDATES ? b->nservers : ASSIGN_MAX_CANDIDATES;
    if (cnt > A.cands_cap) {
        struct aff_cand *c = realloc(A.cands, cnt * sizeof(*c));
        if (c == NULL) {
            return -1;
        }
        A.cands = c;
        A.cands_cap = cnt;
    }
    for (size_t i = 0; i < cnt; i++) {
        const struct srv *s = &b->servers[i];
        A.cands[i] = (struct aff_cand){
            .name = s->name,
            .name_len = strlen(s->name),
            .weight = s->weight,
            .flags = aff_flags(s->state, s->weight),
        };
    }
    aff_rank(id, id_len, A.cands, cnt);
    *n = cnt;
    return 0;
}

/* Redis could not answer: weighted HRW over the local view's servers that may
 * take new sessions. Same inputs on every agent, same answer. */
static void answer_fallback(struct req *r, struct assign_ctx *x)
{
    const struct srv_backend *b = servers_find(x->backend, strlen(x->backend));
    size_t n = 0;
    if (b == NULL) {
        answer_none(r, x, "unknown backend");
        return;
    }
    if (build_cands(b, x->id, x->id_len, &n) != 0) {
        answer_none(r, x, "out of memory");
        return;
    }
    int p = aff_pick(x->id, x->id_len, A.cands, n, AFF_F_NEW);
    if (p < 0) {
        answer_none(r, x, "no usable server");
        return;
    }
    STATS_INC(decision_fallback);
    if (!req_orphaned(r)) {
        set_vars(r, x, "fallback", A.cands[p].name, A.cands[p].name_len, false);
    }
    log_decision(x, "fallback", A.cands[p].name, NULL);
    req_done(r);
}

static bool reply_str_is(const struct store_reply *e, const char *s)
{
    size_t len = 0;
    const char *p;
    if (e == NULL || store_reply_type(e) != STORE_R_STR) {
        return false;
    }
    p = store_reply_str(e, &len);
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

void assign_set_publisher(assign_publish_fn fn, void *arg)
{
    A.publish = fn;
    A.publish_arg = arg;
}

/* session-assigned (new) or session-repinned (repin: the script's elements 4
 * and 5 name the previous server and why it was left). Hits publish nothing. */
static void publish_decision(const struct assign_ctx *x, bool repin, const char *server,
                             size_t server_len, const struct store_reply *rep)
{
    char srv[SRV_NAME_MAX], from[SRV_NAME_MAX], why[REASON_MAX];
    snprintf(srv, sizeof(srv), "%.*s", (int)server_len, server);
    struct event e = {.kind = repin ? EVENT_SESSION_REPINNED : EVENT_SESSION_ASSIGNED,
                      .ts_ms = util_now_ms(),
                      .origin = A.cfg->instance,
                      .backend = x->backend,
                      .sid = x->id,
                      .server = srv};
    if (repin) {
        const struct store_reply *f = store_reply_elem(rep, 3);
        const struct store_reply *w = store_reply_elem(rep, 4);
        size_t fl = 0, wl = 0;
        const char *fp =
            f != NULL && store_reply_type(f) == STORE_R_STR ? store_reply_str(f, &fl) : NULL;
        const char *wp =
            w != NULL && store_reply_type(w) == STORE_R_STR ? store_reply_str(w, &wl) : NULL;
        snprintf(from, sizeof(from), "%.*s", fp != NULL ? (int)fl : 0, fp != NULL ? fp : "");
        snprintf(why, sizeof(why), "%.*s", wp != NULL ? (int)wl : 0, wp != NULL ? wp : "");
        e.from_server = from;
        e.reason = why;
    }
    A.publish(&e, A.publish_arg);
}

/* The store's callback: runs exactly once per EVALSHA. */
static void on_reply(const struct store_reply *rep, enum store_result res, void *arg)
{
    struct assign_ctx *x = arg;
    struct req *r = x->req;
    if (A.shutting || req_orphaned(r)) {
        req_done(r); /* nobody to answer: just release the request */
        ctx_put(x);
        return;
    }
    if (res != STORE_OK || rep == NULL || store_reply_type(rep) != STORE_R_ARRAY ||
        store_reply_len(rep) < 2) {
        if (res == STORE_OK && rep != NULL && store_reply_type(rep) == STORE_R_ERR) {
            size_t len = 0;
            const char *e = store_reply_str(rep, &len);
            log_warn("assign: script error, falling back: %.*s", (int)(len > 200 ? 200 : len), e);
        }
        answer_fallback(r, x);
        ctx_put(x);
        return;
    }
    const struct store_reply *a = store_reply_elem(rep, 0);
    const struct store_reply *s = store_reply_elem(rep, 1);
    size_t slen = 0;
    const char *sp =
        s != NULL && store_reply_type(s) == STORE_R_STR ? store_reply_str(s, &slen) : NULL;
    if (reply_str_is(a, "none")) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "%.*s", sp != NULL ? (int)slen : 0, sp != NULL ? sp : "");
        answer_none(r, x, reason[0] ? reason : "no usable server");
        ctx_put(x);
        return;
    }
    const char *action = reply_str_is(a, "hit")     ? "hit"
                         : reply_str_is(a, "new")   ? "new"
                         : reply_str_is(a, "repin") ? "repin"
                                                    : NULL;
    if (action == NULL || sp == NULL || slen == 0 || slen >= SRV_NAME_MAX ||
        store_reply_len(rep) < 3) {
        log_warn("assign: unexpected script reply, falling back");
        answer_fallback(r, x);
        ctx_put(x);
        return;
    }
    const struct store_reply *d = store_reply_elem(rep, 2);
    bool draining = d != NULL && store_reply_type(d) == STORE_R_INT && store_reply_int(d) != 0;
    if (x->counting) {
        STATS_INC(conn_opened_events);
    }
    if (action[0] == 'h') {
        STATS_INC(decision_hit);
    } else if (action[0] == 'n') {
        STATS_INC(decision_new);
    } else {
        STATS_INC(decision_repin);
    }
    set_vars(r, x, action, sp, slen, draining);
    if (A.publish != NULL && action[0] != 'h') {
        publish_decision(x, action[0] == 'r', sp, slen, rep);
    }
    if (log_enabled(LOG_LVL_DEBUG)) {
        char srv[SRV_NAME_MAX];
        snprintf(srv, sizeof(srv), "%.*s", (int)slen, sp);
        log_decision(x, action, srv, NULL);
    }
    req_done(r);
    ctx_put(x);
}

/* ---- the handler -------------------------------------------------------- */

/* The args we use, as borrowed views (valid during the handler call). */
struct assign_args {
    struct spop_str backend, sid, key, inst, uid;
    bool has_backend, has_sid, has_key, has_inst;
    bool upgrade; /* a WebSocket upgrade: count it open with the decision */
    char key_text[64]; /* a non-string key, as text */
    int src_af;        /* 0: absent */
    uint8_t src[16];
};

static bool is_text(const struct spop_data *v)
{
    return v->type == SPOP_T_STRING || v->type == SPOP_T_BINARY;
}

/* Parse the message's args; NULL on success, else the reason for `none`. */
static const char *parse_args(const struct spop_msg *m, struct assign_args *a)
{
    struct spop_reader rd = m->args;
    struct spop_str k;
    struct spop_data v;
    int rc;
    memset(a, 0, sizeof(*a));
    while ((rc = spop_kv_next(&rd, &k, &v)) == 1) {
        if (spop_str_eq(k, "backend")) {
            if (v.type != SPOP_T_STRING) {
                return "bad backend";
            }
            a->backend = v.u.str;
            a->has_backend = true;
        } else if (spop_str_eq(k, "sid")) {
            if (v.type == SPOP_T_NULL) {
                a->has_sid = false;
            } else if (is_text(&v)) {
                a->sid = v.u.str;
                a->has_sid = v.u.str.len > 0;
            } else {
                return "bad sid";
            }
        } else if (spop_str_eq(k, "key")) {
            a->has_key = true;
            switch (v.type) {
            case SPOP_T_NULL:
                a->has_key = false;
                break;
            case SPOP_T_STRING:
            case SPOP_T_BINARY:
                a->key = v.u.str;
                a->has_key = v.u.str.len > 0;
                break;
            case SPOP_T_INT32:
                snprintf(a->key_text, sizeof(a->key_text), "%" PRId32, v.u.i32);
                break;
            case SPOP_T_UINT32:
                snprintf(a->key_text, sizeof(a->key_text), "%" PRIu32, v.u.u32);
                break;
            case SPOP_T_INT64:
                snprintf(a->key_text, sizeof(a->key_text), "%" PRId64, v.u.i64);
                break;
            case SPOP_T_UINT64:
                snprintf(a->key_text, sizeof(a->key_text), "%" PRIu64, v.u.u64);
                break;
            case SPOP_T_IPV4:
                inet_ntop(AF_INET, v.u.ipv4, a->key_text, sizeof(a->key_text));
                break;
            case SPOP_T_IPV6:
                inet_ntop(AF_INET6, v.u.ipv6, a->key_text, sizeof(a->key_text));
                break;
            default:
                return "bad key";
            }
            if (a->has_key && !is_text(&v)) {
                a->key.ptr = a->key_text;
                a->key.len = strlen(a->key_text);
            }
        } else if (spop_str_eq(k, "inst")) {
            if (v.type == SPOP_T_STRING) {
                a->inst = v.u.str;
                a->has_inst = v.u.str.len > 0;
            } else if (v.type != SPOP_T_NULL) {
                return "bad inst";
            }
        } else if (spop_str_eq(k, "uid")) {
            if (is_text(&v)) {
                a->uid = v.u.str;
            }
        } else if (spop_str_eq(k, "upgrade")) {
            /* req.hdr(upgrade): "websocket" on an upgrade, NULL (absent) on a
             * Socket.IO polling request, which holds no tunnel to count */
            a->upgrade = (is_text(&v) && v.u.str.len > 0) || (v.type == SPOP_T_BOOL && v.u.b);
        } else if (spop_str_eq(k, "src")) {
            if (v.type == SPOP_T_IPV4) {
                a->src_af = AF_INET;
                memcpy(a->src, v.u.ipv4, 4);
            } else if (v.type == SPOP_T_IPV6) {
                a->src_af = AF_INET6;
                memcpy(a->src, v.u.ipv6, 16);
            }
        }
    }
    if (rc < 0) {
        return "malformed args";
    }
    if (!a->has_backend || a->backend.len == 0) {
        return "missing backend";
    }
    if (a->backend.len >= SRV_NAME_MAX || memchr(a->backend.ptr, '\0', a->backend.len) != NULL) {
        return "unknown backend";
    }
    return NULL;
}

/* Grow the argv scratch to hold `need` entries. */
static int argv_reserve(size_t need)
{
    if (need <= A.argv_cap) {
        return 0;
    }
    const char **v = realloc(A.argv, need * sizeof(*v));
    if (v == NULL) {
        return -1;
    }
    A.argv = v;
    size_t *l = realloc(A.argvlen, need * sizeof(*l));
    if (l == NULL) {
        return -1;
    }
    A.argvlen = l;
    char(*nums)[2][12] = realloc(A.nums, need * sizeof(*nums));
    if (nums == NULL) {
        return -1;
    }
    A.nums = nums;
    A.argv_cap = need;
    return 0;
}

/* "<prefix>{<backend>}:<suffix><id>" into buf[KEY_MAX]: its length, or -1 when
 * it does not fit. Plain copies: snprintf was a visible share of a decision. */
static int key_name(char *buf, const char *backend, const char *suffix, const char *id,
                    size_t id_len)
{
    const char *prefix = A.cfg->redis_prefix != NULL ? A.cfg->redis_prefix : "sticky:";
    size_t pl = strlen(prefix), bl = strlen(backend), sl = strlen(suffix);
    size_t n = pl + 1 + bl + 2 + sl + id_len;
    if (n >= KEY_MAX) {
        return -1;
    }
    char *p = buf;
    memcpy(p, prefix, pl);
    p += pl;
    *p++ = '{';
    memcpy(p, backend, bl);
    p += bl;
    *p++ = '}';
    *p++ = ':';
    memcpy(p, suffix, sl);
    p += sl;
    memcpy(p, id, id_len);
    p[id_len] = '\0';
    return (int)n;
}

/* v in decimal into out, NUL-terminated (room: 21 bytes); returns the length. */
static size_t u64_dec(char *out, uint64_t v)
{
    char *end = util_u64_dec(out, v);
    *end = '\0';
    return (size_t)(end - out);
}

static void assign_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    UNUSED(arg);
    struct assign_args a;
    const char *bad = parse_args(m, &a);
    if (bad != NULL) {
        answer_none(r, NULL, bad);
        return;
    }
    if (!A.have_keys) {
        answer_none(r, NULL, "no session secret");
        return;
    }
    const struct srv_backend *b = servers_find(a.backend.ptr, a.backend.len);
    if (b == NULL) {
        answer_none(r, NULL, "unknown backend");
        return;
    }
    struct assign_ctx *x = ctx_get();
    if (x == NULL) {
        answer_none(r, NULL, "out of memory");
        return;
    }
    x->req = r;
    memcpy(x->backend, a.backend.ptr, a.backend.len);
    x->backend[a.backend.len] = '\0';
    x->src_af = a.src_af;
    memcpy(x->src, a.src, sizeof(x->src));
    /* The unique-id may carry client-controlled bytes: keep log lines one line. */
    size_t ul = a.uid.len < UID_MAX ? a.uid.len : UID_MAX - 1;
    for (size_t i = 0; i < ul; i++) {
        unsigned char ch = (unsigned char)a.uid.ptr[i];
        x->uid[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    x->uid[ul] = '\0';

    /* The record id: the key's, a verified cookie, or a new one. */
    char prev_id[SID_BUF];
    int prev_len = -1;
    int n;
    if (a.has_key) {
        n = sid_from_key(&A.keys, false, a.key.ptr, a.key.len, x->id);
        if (A.keys.prev_len > 0) {
            prev_len = sid_from_key(&A.keys, true, a.key.ptr, a.key.len, prev_id);
        }
    } else if (a.has_sid && sid_verify(&A.keys, a.sid.ptr, a.sid.len)) {
        memcpy(x->id, a.sid.ptr, a.sid.len);
        x->id[a.sid.len] = '\0';
        n = (int)a.sid.len;
    } else {
        if (a.has_sid) {
            STATS_INC(sid_invalid);
        }
        n = sid_mint(&A.keys, x->id);
        x->minted = n > 0;
        if (x->minted) {
            STATS_INC(sid_minted);
        }
    }
    if (n <= 0) {
        answer_none(r, x, "cannot make a session id");
        ctx_put(x);
        return;
    }
    x->id_len = (size_t)n;

    size_t nc = 0;
    if (build_cands(b, x->id, x->id_len, &nc) != 0) {
        answer_none(r, x, "out of memory");
        ctx_put(x);
        return;
    }
    bool any_up = false;
    for (size_t i = 0; i < nc; i++) {
        any_up |= (A.cands[i].flags & AFF_F_UP) != 0;
    }
    if (!any_up) {
        answer_none(r, x, "no usable server");
        ctx_put(x);
        return;
    }
    if (A.store == NULL || A.script == NULL) {
        answer_fallback(r, x);
        ctx_put(x);
        return;
    }

    /* KEYS then ARGV; everything is copied by the store before it returns. */
    char keys[6][KEY_MAX], ttl[24], hb[24], ottl[24];
    const char *inst = A.cfg->instance != NULL ? A.cfg->instance : "";
    size_t inst_len = strlen(inst);
    /* Counting needs the whole unique-id (the close line carries it whole). */
    bool count = a.upgrade && a.uid.len > 0 && a.uid.len < 256;
    size_t nkeys = count ? 6 : prev_len > 0 ? 4 : 3;
    x->counting = count;
    int kl[6] = {0};
    kl[0] = key_name(keys[0], x->backend, "s:", x->id, x->id_len);
    kl[1] = key_name(keys[1], x->backend, "conns", "", 0);
    kl[2] = key_name(keys[2], x->backend, "state", "", 0);
    if (prev_len > 0) {
        kl[3] = key_name(keys[3], x->backend, "s:", prev_id, (size_t)prev_len);
    } else if (count) {
        /* no previous id: KEYS[4] repeats KEYS[1] (never "": one cluster slot) */
        memcpy(keys[3], keys[0], (size_t)(kl[0] > 0 ? kl[0] : 0));
        kl[3] = kl[0];
    }
    if (count) {
        kl[4] = key_name(keys[4], x->backend, "i:", inst, inst_len);
        kl[5] = key_name(keys[5], x->backend, "o:", inst, inst_len);
    }
    size_t argc = nkeys + 3 + 3 * nc + (count ? 3 : 0);
    if (kl[0] < 0 || kl[1] < 0 || kl[2] < 0 || kl[3] < 0 || kl[4] < 0 || kl[5] < 0 ||
        argv_reserve(argc) != 0) {
        answer_fallback(r, x);
        ctx_put(x);
        return;
    }
    size_t i = 0;
    for (size_t k = 0; k < nkeys; k++, i++) {
        A.argv[i] = keys[k];
        A.argvlen[i] = (size_t)kl[k];
    }
    A.argv[i] = ttl;
    A.argvlen[i++] = u64_dec(ttl, A.cfg->session_ttl_ms > 0 ? (uint64_t)A.cfg->session_ttl_ms
                                                             : 86400000u);
    if (a.has_inst) {
        A.argv[i] = a.inst.ptr;
        A.argvlen[i++] = a.inst.len;
    } else {
        A.argv[i] = A.cfg->instance != NULL ? A.cfg->instance : "";
        A.argvlen[i] = strlen(A.argv[i]);
        i++;
    }
    char ncs[24];
    A.argv[i] = ncs;
    A.argvlen[i++] = u64_dec(ncs, nc);
    for (size_t c = 0; c < nc; c++) {
        A.argv[i] = A.cands[c].name;
        A.argvlen[i++] = A.cands[c].name_len;
        A.argv[i] = A.nums[c][0];
        A.argvlen[i++] = u64_dec(A.nums[c][0], A.cands[c].weight);
        A.argv[i] = A.nums[c][1];
        A.argvlen[i++] = u64_dec(A.nums[c][1], A.cands[c].flags);
    }
    if (count) {
        A.argv[i] = a.uid.ptr;
        A.argvlen[i++] = a.uid.len;
        A.argv[i] = hb;
        A.argvlen[i++] = u64_dec(hb, (uint64_t)A.cfg->heartbeat_ttl_ms);
        A.argv[i] = ottl;
        A.argvlen[i++] = u64_dec(ottl, (uint64_t)fleet_open_ttl_ms(A.cfg));
    }
    int64_t deadline = A.cfg->redis_timeout_ms > 0 ? A.cfg->redis_timeout_ms : 20;
    if (store_eval(A.store, A.script, (int)nkeys, (int)argc, A.argv, A.argvlen, deadline, on_reply,
                   x) != 0) {
        answer_fallback(r, x); /* not queued: the callback will not run */
        ctx_put(x);
    }
}

/* ---- life cycle --------------------------------------------------------- */

static int load_keys(const struct cfg *c, struct sid_keys *k)
{
    char err[512];
    if (sid_keys_load(k, c->secret_file, c->previous_secret_file, err, sizeof(err)) != 0) {
        log_err("sticky-assign: %s", err);
        return -1;
    }
    return 0;
}

int assign_init(struct ev_loop *loop, const struct cfg *c, struct store *st)
{
    UNUSED(loop);
    memset(&A, 0, sizeof(A));
    A.cfg = c;
    A.store = st;
    if (c->secret_file == NULL || c->secret_file[0] == '\0') {
        log_warn("sticky-assign: no session.secret_file: every decision will be 'none'");
    } else if (load_keys(c, &A.keys) != 0) {
        return -1;
    } else {
        A.have_keys = true;
    }
    if (st != NULL && (A.script = store_script_new(st, assign_lua)) == NULL) {
        log_err("sticky-assign: cannot register the decision script");
        goto fail;
    }
    if (req_register(ASSIGN_MESSAGE, assign_handler, NULL) != 0) {
        log_err("sticky-assign: cannot register the handler");
        goto fail;
    }
    return 0;
fail:
    sid_keys_wipe(&A.keys);
    A.have_keys = false;
    return -1;
}

int assign_reload(const struct cfg *next)
{
    static struct sid_keys k; /* 8 KiB: not on the stack */
    if (next->secret_file == NULL || next->secret_file[0] == '\0') {
        log_warn("sticky-assign: reload without session.secret_file: keeping the old secrets");
        return -1;
    }
    if (load_keys(next, &k) != 0) {
        return -1;
    }
    A.keys = k;
    A.have_keys = true;
    sid_keys_wipe(&k);
    return 0;
}

void assign_shutdown(void)
{
    A.shutting = true;
    while (A.free_list != NULL) {
        struct assign_ctx *x = A.free_list;
        A.free_list = x->next_free;
        free(x);
    }
    free(A.cands);
    free(A.argv);
    free(A.argvlen);
    free(A.nums);
    A.cands = NULL;
    A.argv = NULL;
    A.argvlen = NULL;
    A.nums = NULL;
    A.cands_cap = A.argv_cap = 0;
    sid_keys_wipe(&A.keys);
    A.have_keys = false;
}
