/* assign.c - the `sticky-assign` handler (contract in assign.h).
 *
 *   NOTIFY args -> parse -> identity: tagged cookie | "1" cookie | key | new
 *     tagged cookie, its server usable --------------------------> hit   (local)
 *     no usable cookie, no key ------------------------------------> new   (local)
 *     tagged server unusable, "1" cookie, key -> decide.lua (deadline) -> hit/repin/new
 *        Redis slow, down or saturated -> the tag if usable, else the weighted hash
 *     -> txn vars, cookie reissued when the pin changed or aged -> req_done (once)
 *     -> ledger: the open, the record touch (written later, in a batch)
 * The cookie is the authority on where a session lives: Redis only arbitrates
 * what the cookie cannot decide alone, and its records follow the cookies.
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
#include "events.h"
#include "ledger.h"
#include "log.h"
#include "model.h"
#include "req.h"
#include "servers.h"
#include "sid.h"
#include "spop.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define SRC_MAX 46  /* INET6_ADDRSTRLEN */
#define UID_LOG_MAX 64
#define UID_MAX 256 /* a unique-id counted open (the close line carries it whole) */
#define REASON_MAX 48
#define TAGS_MAX 8192 /* server tags cached (backend, server, both secrets); more: recomputed */
#define MOVED_SLOTS 4096 /* records an operator moved, not yet consumed */
#define RATE_SLOTS 1024  /* servers with a new-session rate limit (direct-mapped) */
#define RESV_SLOTS 1024  /* servers chosen by arbitrations still waiting on Redis */
#define PEAK_MS 100      /* how long a peak of unacknowledged opens is remembered */
/* Past Redis' deadline for an arbitration the agent has answered without it.
 * The deadline sent is this much earlier than the agent's own, so that a reply
 * still in flight when the agent gives up was refused by the script. */
#define LATE_MARGIN_MS 2

/* What a decision knows about its session. */
struct ident {
    char rid[SID_BUF]; /* the record id */
    size_t rid_len;
    char legacy[SID_BUF]; /* a record to carry over ("1" cookie, previous key), or "" */
    size_t legacy_len;
    enum sid_kind kind; /* SESSION or KEY: the cookie this session gets */
    uint8_t rbytes[SID_RID_LEN]; /* the cookie's rid */
    bool minted;        /* a new session */
    bool cookie_fresh;  /* the cookie presented is the one to keep (same tag, young) */
    int tagged;         /* the server index the presented cookie names, or -1 */
    char cookie[SID_BUF]; /* the cookie in force (presented or reissued) */
    size_t cookie_len;
    char srvck[SID_STAG_TEXT_LEN + 1]; /* HAProxy's fallback cookie as presented, or "" */
};

/* One arbitration waiting on Redis. Lives on the freelist between decisions. */
struct assign_ctx {
    struct assign_ctx *next_free;
    struct req *req;
    char backend[SRV_NAME_MAX];
    struct ident id;
    char tagged[SRV_NAME_MAX]; /* the cookie's server, for the fallback ("" none) */
    char from[SRV_NAME_MAX];   /* the pin left, for logs and events */
    int src_af;
    uint8_t src[16];
    char uid_log[UID_LOG_MAX];
    char uid[UID_MAX];
    size_t uid_len; /* 0: not an upgrade to count */
    bool full;      /* every usable server is at its cap (arbitrated with none to choose) */
    char resv[SRV_NAME_MAX]; /* the server this arbitration chose, reserved ("" none) */
    bool queued;    /* ...and when_full is queue: answered anyway, txn.sticky.full set */
    /* A Redis Cluster keeps a legacy record in another slot than the record:
     * the agent reads it first (carry_reply) and hands it to decide.lua. */
    bool carry_read;
    char *carried; /* the legacy record's value (owned), or NULL */
};

struct tag_slot {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    uint8_t tag[2][SID_STAG_LEN]; /* current secret, previous secret */
    bool has_prev;
};

/* limits.new_rate: this agent's share (rate / live instances) of a server's new
 * sessions per second, as a token bucket holding at most one second of it. */
struct rate_slot {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    double tokens;
    int64_t last_ms;
};

/* Arbitrations in flight that chose a server: counted there until answered, so
 * that a storm of repins decided on one view does not all pick one server. */
struct resv_slot {
    char backend[SRV_NAME_MAX];
    char server[SRV_NAME_MAX];
    int64_t n;
    int64_t peak, peak_ms; /* recent peak of this agent's unacknowledged opens there */
};

struct moved_slot {
    char backend[SRV_NAME_MAX];
    char rid[SID_BUF];
    char server[SRV_NAME_MAX];
    int64_t until_ms;
};

/* Module state: one per process (the agent is single-threaded). */
static struct {
    const struct cfg *cfg;
    struct store *store;
    struct ledger *ledger;
    struct store_script *script;
    struct sid_keys keys;
    bool have_keys;
    bool shutting;
    struct assign_ctx *free_list;
    assign_publish_fn publish; /* NULL: no events */
    void *publish_arg;
    struct tag_slot *tags; /* open addressing, TAGS_MAX slots, lazily filled */
    size_t ntags;
    struct moved_slot *moved; /* direct-mapped by rid hash */
    struct rate_slot *rates;  /* direct-mapped by (backend, server) hash */
    struct resv_slot *resv;   /* the same */
    /* Scratch for one decision; used only inside the handler call. */
    struct aff_cand *cands;
    size_t cands_cap;
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
} A;

const char *assign_script(void)
{
    return model_lua_decide;
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
    x->id.tagged = -1;
    return x;
}

static void resv_add(const char *backend, const char *server, int64_t d);

static void ctx_put(struct assign_ctx *x)
{
    if (x->resv[0] != '\0') {
        resv_add(x->backend, x->resv, -1);
        x->resv[0] = '\0';
    }
    free(x->carried);
    x->carried = NULL;
    if (A.shutting) {
        free(x);
        return;
    }
    x->next_free = A.free_list;
    A.free_list = x;
}

/* ---- server tags and moved records ------------------------------------------ */

static uint64_t hash2(const char *a, size_t al, const char *b, size_t bl)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < al; i++) {
        h = (h ^ (unsigned char)a[i]) * 0x100000001b3ull;
    }
    h = (h ^ 0xffu) * 0x100000001b3ull;
    for (size_t i = 0; i < bl; i++) {
        h = (h ^ (unsigned char)b[i]) * 0x100000001b3ull;
    }
    return h;
}

/* The cached tags of backend/server, computed on first use; NULL on failure.
 * The cache is cleared when the secrets change (assign_reload). */
static const struct tag_slot *tags_of(const char *backend, const char *server)
{
    size_t bl = strlen(backend), sl = strlen(server);
    if (A.tags == NULL && (A.tags = calloc(TAGS_MAX, sizeof(*A.tags))) == NULL) {
        return NULL;
    }
    size_t i = hash2(backend, bl, server, sl) & (TAGS_MAX - 1);
    for (size_t probes = 0; probes < TAGS_MAX; probes++, i = (i + 1) & (TAGS_MAX - 1)) {
        struct tag_slot *t = &A.tags[i];
        if (t->server[0] == '\0') {
            if (A.ntags * 4 >= TAGS_MAX * 3) {
                static struct tag_slot spare; /* full enough: computed for this use only */
                t = &spare;
            } else {
                A.ntags++;
            }
            if (sid_server_tag(&A.keys, false, backend, bl, server, sl, t->tag[0]) != 0) {
                return NULL;
            }
            t->has_prev = sid_server_tag(&A.keys, true, backend, bl, server, sl, t->tag[1]) == 0;
            memcpy(t->backend, backend, bl + 1);
            memcpy(t->server, server, sl + 1);
            return t;
        }
        if (strcmp(t->server, server) == 0 && strcmp(t->backend, backend) == 0) {
            return t;
        }
    }
    return NULL;
}

/* The index in b of the server whose tag the cookie carries, or -1 (no server
 * has it, or two have: a 32-bit collision makes the tag ambiguous). */
static int tag_resolve(const struct srv_backend *b, const struct sid_cookie *ck)
{
    int found = -1;
    for (size_t i = 0; i < b->nservers; i++) {
        const struct tag_slot *t = tags_of(b->name, b->servers[i].name);
        if (t == NULL) {
            return -1;
        }
        const uint8_t *tag = ck->prev_secret ? t->tag[1] : t->tag[0];
        if ((!ck->prev_secret || t->has_prev) && memcmp(tag, ck->stag, SID_STAG_LEN) == 0) {
            if (found >= 0) {
                return -1;
            }
            found = (int)i;
        }
    }
    return found;
}

/* The server HAProxy's fallback cookie (srvck, the tag as text) names, or -1. */
static int srvck_resolve(const struct srv_backend *b, const char *text)
{
    struct sid_cookie ck = {0};
    if (text[0] == '\0' ||
        sid_b64url_decode(text, strlen(text), ck.stag, SID_STAG_LEN) != (int)SID_STAG_LEN) {
        return -1;
    }
    return tag_resolve(b, &ck);
}

static struct moved_slot *moved_slot(const char *backend, const char *rid, size_t rl)
{
    if (A.moved == NULL && (A.moved = calloc(MOVED_SLOTS, sizeof(*A.moved))) == NULL) {
        return NULL;
    }
    return &A.moved[hash2(backend, strlen(backend), rid, rl) & (MOVED_SLOTS - 1)];
}

/* The server an operator moved this record to, if known and not consumed. */
static const char *moved_find(const char *backend, const char *rid, size_t rl)
{
    struct moved_slot *m = A.moved != NULL ? moved_slot(backend, rid, rl) : NULL;
    if (m == NULL || m->server[0] == '\0' || strcmp(m->backend, backend) != 0 ||
        strlen(m->rid) != rl || memcmp(m->rid, rid, rl) != 0) {
        return NULL;
    }
    if (m->until_ms < util_now_ms()) {
        m->server[0] = '\0';
        return NULL;
    }
    return m->server;
}

static void moved_forget(const char *backend, const char *rid, size_t rl)
{
    if (moved_find(backend, rid, rl) != NULL) {
        moved_slot(backend, rid, rl)->server[0] = '\0';
    }
}

void assign_session_moved(const char *backend, size_t blen, const char *rid, size_t rl,
                          const char *server, size_t sl)
{
    struct moved_slot *m;
    if (blen == 0 || blen >= SRV_NAME_MAX || rl == 0 || rl > SID_MAX_LEN || sl == 0 ||
        sl >= SRV_NAME_MAX || memchr(backend, '\0', blen) != NULL) {
        return;
    }
    char b[SRV_NAME_MAX];
    memcpy(b, backend, blen);
    b[blen] = '\0';
    if ((m = moved_slot(b, rid, rl)) == NULL) {
        return;
    }
    memcpy(m->backend, b, blen + 1);
    memcpy(m->rid, rid, rl);
    m->rid[rl] = '\0';
    memcpy(m->server, server, sl);
    m->server[sl] = '\0';
    m->until_ms = util_now_ms() + cfg_refresh_ms(A.cfg) + A.cfg->session_ttl_ms;
    STATS_INC(record_moved);
}

static void on_ledger_moved(const char *backend, const char *rid, size_t rl, const char *server,
                            size_t sl, void *arg)
{
    UNUSED(arg);
    assign_session_moved(backend, strlen(backend), rid, rl, server, sl);
}

/* ---- reservations of arbitrations in flight ------------------------------------ */

static struct resv_slot *resv_slot(const char *backend, const char *server, bool make)
{
    if (A.resv == NULL && (!make || (A.resv = calloc(RESV_SLOTS, sizeof(*A.resv))) == NULL)) {
        return NULL;
    }
    size_t bl = strlen(backend), sl = strlen(server);
    struct resv_slot *r = &A.resv[hash2(backend, bl, server, sl) & (RESV_SLOTS - 1)];
    if (strcmp(r->server, server) == 0 && strcmp(r->backend, backend) == 0) {
        return r;
    }
    if (!make || r->n > 0) {
        return NULL; /* taken by another server (a collision): not reserved */
    }
    memcpy(r->backend, backend, bl + 1);
    memcpy(r->server, server, sl + 1);
    r->n = r->peak = r->peak_ms = 0;
    return r;
}

static void resv_add(const char *backend, const char *server, int64_t d)
{
    struct resv_slot *r = resv_slot(backend, server, d > 0);
    if (r != NULL) {
        r->n = r->n + d > 0 ? r->n + d : 0;
    }
}

static int64_t resv_of(const char *backend, const char *server)
{
    const struct resv_slot *r = resv_slot(backend, server, false);
    return r != NULL ? r->n : 0;
}

/* Note pending (this agent's unacknowledged opens on server, now) and return its
 * peak over the last PEAK_MS (aff_unseen). */
static int64_t pending_peak(const char *backend, const char *server, int64_t pending)
{
    struct resv_slot *r = resv_slot(backend, server, pending > 0);
    if (r == NULL) {
        return pending;
    }
    int64_t now = util_now_ms();
    if (pending >= r->peak || now - r->peak_ms > PEAK_MS) {
        r->peak = pending;
        r->peak_ms = now;
    }
    return r->peak;
}

/* ---- new-session rate limits ------------------------------------------------ */

/* The bucket of b/server refilled to now (NULL: out of memory). */
static struct rate_slot *rate_slot(const char *backend, const char *server, double per_s)
{
    if (A.rates == NULL && (A.rates = calloc(RATE_SLOTS, sizeof(*A.rates))) == NULL) {
        return NULL;
    }
    size_t bl = strlen(backend), sl = strlen(server);
    struct rate_slot *r = &A.rates[hash2(backend, bl, server, sl) & (RATE_SLOTS - 1)];
    int64_t now = util_now_ms();
    if (strcmp(r->server, server) != 0 || strcmp(r->backend, backend) != 0) {
        memcpy(r->backend, backend, bl + 1); /* a new one (or a collision): full bucket */
        memcpy(r->server, server, sl + 1);
        r->tokens = per_s > 1.0 ? per_s : 1.0;
        r->last_ms = now;
    }
    double cap = per_s > 1.0 ? per_s : 1.0;
    r->tokens += (double)(now - r->last_ms) * per_s / 1000.0;
    r->tokens = r->tokens > cap ? cap : r->tokens;
    r->last_ms = now;
    return r;
}

static double rate_share(const struct cfg_srv_limits *lim, unsigned ninst)
{
    return (double)lim->new_rate / (double)(ninst > 0 ? ninst : 1);
}

static bool rate_allows(const struct srv_backend *b, const struct srv *s,
                        const struct cfg_srv_limits *lim, const struct ledger_srv *v)
{
    if (lim->new_rate == 0) {
        return true;
    }
    struct rate_slot *r = rate_slot(b->name, s->name, rate_share(lim, v->ninst));
    return r == NULL || r->tokens >= 1.0;
}

/* A new session (or a repin) was placed on server: take its token. */
static void rate_take(const char *backend, const char *server)
{
    struct cfg_srv_limits lim;
    cfg_limits_of(A.cfg, backend, server, &lim);
    if (lim.new_rate == 0) {
        return;
    }
    struct ledger_srv v = {0};
    if (A.ledger != NULL) {
        ledger_server(A.ledger, backend, server, &v);
    }
    struct rate_slot *r = rate_slot(backend, server, rate_share(&lim, v.ninst));
    if (r != NULL && r->tokens >= 1.0) {
        r->tokens -= 1.0;
    }
}

/* ---- answers ------------------------------------------------------------ */

static void log_decision(const char *backend, const struct ident *id, const char *uid,
                         int src_af, const uint8_t *src, const char *action, const char *server,
                         const char *reason)
{
    if (!log_enabled(LOG_LVL_DEBUG)) {
        return;
    }
    char srcs[SRC_MAX] = "";
    if (src_af != 0 && inet_ntop(src_af, src, srcs, sizeof(srcs)) == NULL) {
        srcs[0] = '\0';
    }
    log_debug("assign backend=%s rid=%.10s%s action=%s server=%s%s%s src=%s uid=%s", backend,
              id != NULL ? id->rid : "-", id != NULL && id->minted ? "(new)" : "", action,
              server != NULL ? server : "-", reason != NULL ? " reason=" : "",
              reason != NULL ? reason : "", srcs[0] ? srcs : "-", uid[0] ? uid : "-");
}

/* action none: HAProxy balances on its own. */
static void answer_none(struct req *r, const char *backend, const char *reason)
{
    STATS_INC(decision_none);
    if (!req_orphaned(r)) {
        req_set_var_str(r, "action", "none", 4);
        req_set_var_str(r, "reason", reason, strlen(reason));
        req_set_var_int(r, "set_cookie", 0);
        req_set_var_int(r, "draining", 0);
    }
    log_debug("assign backend=%s action=none reason=%s (%s)", backend != NULL ? backend : "-",
              reason, req_ident(r));
    req_done(r);
}

/* action full: every usable server is at its cap and when_full is refuse. Sets
 * txn.sticky.full, which the reference config turns into a 503; nothing is
 * counted or recorded (the client was not served). */
static void answer_full(struct req *r, const char *backend)
{
    STATS_INC(decision_full);
    if (!req_orphaned(r)) {
        static const char why[] = "every server at its cap";
        req_set_var_str(r, "action", "full", 4);
        req_set_var_str(r, "reason", why, sizeof(why) - 1);
        req_set_var_int(r, "full", 1);
        req_set_var_int(r, "set_cookie", 0);
        req_set_var_int(r, "draining", 0);
    }
    log_debug("assign backend=%s action=full (%s)", backend, req_ident(r));
    req_done(r);
}

/* when_full is queue: the answer names a server anyway; txn.sticky.full tells. */
static void mark_queued(struct req *r)
{
    STATS_INC(cap_queued);
    if (!req_orphaned(r)) {
        req_set_var_int(r, "full", 1);
    }
}

static bool queue_when_full(const char *backend)
{
    struct cfg_srv_limits lim;
    cfg_limits_of(A.cfg, backend, NULL, &lim);
    return lim.queue;
}

/* txn.sticky.srvtag: the value of HAProxy's own fallback cookie for server, set
 * only when the client's copy (presented, "" for none) is not already it. */
static void set_srvtag(struct req *r, const char *backend, const char *server,
                       const char *presented)
{
    const struct tag_slot *t = tags_of(backend, server);
    char tag[SID_BUF];
    if (t != NULL && sid_b64url_encode(t->tag[0], SID_STAG_LEN, tag) > 0 &&
        strcmp(tag, presented) != 0) {
        req_set_var_str(r, "srvtag", tag, strlen(tag));
    }
}

static int64_t view_now(void);

/* The cookie for this session pinned to server: the presented one when it
 * still says so and is young, else a new one issued now. */
static bool cookie_for(const char *backend, struct ident *id, const char *server, bool same_pin)
{
    if (same_pin && id->cookie_fresh) {
        return false;
    }
    const struct tag_slot *t = tags_of(backend, server);
    if (t == NULL) {
        return false; /* keep the old one: affinity then rests on Redis alone */
    }
    /* issued on Redis' clock, the one every agent judges the cookie's age by */
    struct sid_cookie ck = {.kind = id->kind, .issued_s = (uint32_t)(view_now() / 1000)};
    memcpy(ck.rid, id->rbytes, SID_RID_LEN);
    memcpy(ck.stag, t->tag[0], SID_STAG_LEN);
    int n = sid_issue(&A.keys, &ck, id->cookie);
    if (n < 0) {
        return false;
    }
    id->cookie_len = (size_t)n;
    return true;
}

/* Answer server (action hit|new|repin|fallback), with the cookie that names it,
 * and queue what Redis must learn: the record touch and the open. */
static void answer(struct req *r, const char *backend, struct ident *id, const char *action,
                   const char *server, bool draining, bool same_pin, char touch,
                   const char *uid, size_t uid_len)
{
    bool reissue = cookie_for(backend, id, server, same_pin);
    if (reissue && touch == LEDGER_ADOPT) {
        touch = LEDGER_REFRESH; /* a new cookie age: renew the record with it */
    }
    if (!req_orphaned(r)) {
        req_set_var_str(r, "server", server, strlen(server));
        set_srvtag(r, backend, server, id->srvck);
        if (id->cookie_len > 0) {
            req_set_var_str(r, "sid", id->cookie, id->cookie_len);
        }
        req_set_var_int(r, "set_cookie", reissue ? 1 : 0);
        req_set_var_str(r, "action", action, strlen(action));
        req_set_var_int(r, "draining", draining ? 1 : 0);
    }
    if (touch != 0 && A.ledger != NULL) {
        (void)ledger_touch(A.ledger, backend, id->rid, id->rid_len, server, strlen(server),
                           touch);
    }
    if (uid_len > 0 && A.ledger != NULL) {
        (void)ledger_open(A.ledger, backend, uid, uid_len, server, strlen(server));
    }
}

void assign_set_publisher(assign_publish_fn fn, void *arg)
{
    A.publish = fn;
    A.publish_arg = arg;
}

/* session-assigned or session-repinned, when events.sessions asks for them. */
static void publish_decision(const char *backend, const struct ident *id, bool repin,
                             const char *server, const char *from, const char *why)
{
    if (A.publish == NULL || !A.cfg->events_sessions) {
        return;
    }
    struct event e = {.kind = repin ? EVENT_SESSION_REPINNED : EVENT_SESSION_ASSIGNED,
                      .ts_ms = util_now_ms(),
                      .origin = A.cfg->instance,
                      .backend = backend,
                      .sid = id->rid,
                      .server = server};
    if (repin) {
        e.from_server = from;
        e.reason = why;
    }
    A.publish(&e, A.publish_arg);
}

/* ---- candidates ---------------------------------------------------------------- */

static int64_t view_now(void);
static bool rate_allows(const struct srv_backend *b, const struct srv *s,
                        const struct cfg_srv_limits *lim, const struct ledger_srv *v);

/* Candidates of backend b in HRW order of the record id, with their flags
 * (HAProxy's state and the cluster's admin state) and fleet-wide loads. */
static int build_cands(const struct srv_backend *b, const struct ident *id, size_t *n)
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
    int64_t now = view_now();
    for (size_t i = 0; i < cnt; i++) {
        const struct srv *s = &b->servers[i];
        struct ledger_srv v = {.since_ms = MODEL_SINCE_NONE};
        struct cfg_srv_limits lim;
        if (A.ledger != NULL) {
            ledger_server(A.ledger, b->name, s->name, &v);
        }
        int64_t held = resv_of(b->name, s->name);
        v.conns += held;
        v.pending += held;
        cfg_limits_of(A.cfg, b->name, s->name, &lim);
        int64_t cap = lim.maxconn > 0 ? lim.maxconn : s->maxconn;
        A.cands[i] = (struct aff_cand){
            .name = s->name,
            .name_len = strlen(s->name),
            .weight = s->weight,
            .flags = aff_flags_admin(s->state, s->weight, v.admin),
            .conns = v.conns,
            .ramp = aff_ramp_permille(v.since_ms, now, lim.slowstart_ms),
            .room = cap > 0 ? cap - v.conns : INT64_MAX,
            /* full: the view and this agent's own opens reach the cap */
            .full = aff_room(v.conns - v.pending, v.pending, cap, 1, 0) <= 0,
            /* paced: this agent's share of the room is used (the others may be
             * filling theirs), or the server's new-session rate: taken only when
             * no other server may take the session */
            .paced = !rate_allows(b, s, &lim, &v) ||
                     (cap > 0 && aff_room(v.conns - v.pending +
                                              aff_unseen(pending_peak(b->name, s->name,
                                                                      v.pending),
                                                         v.ninst),
                                          v.pending, cap, v.ninst, v.rank) <= 0),
        };
    }
    aff_rank(id->rid, id->rid_len, A.cands, cnt);
    *n = cnt;
    return 0;
}

/* The least-loaded candidate with room (-1: none); *all_full: there are usable
 * candidates, but every one is at its cap (not set when none is usable). */
static int least_with_room(size_t nc, bool *all_full)
{
    int best = aff_least_loaded(A.cands, nc);
    *all_full = false;
    if (best < 0) {
        for (size_t i = 0; i < nc; i++) {
            *all_full |= A.cands[i].full && (A.cands[i].flags & AFF_F_NEW) != 0 &&
                         A.cands[i].weight > 0;
        }
    }
    return best;
}

/* when_full is queue: the least loaded, caps aside (HAProxy's own maxconn queues). */
static int least_ignoring_caps(size_t nc)
{
    for (size_t i = 0; i < nc; i++) {
        A.cands[i].full = false;
    }
    return aff_least_loaded(A.cands, nc);
}

/* May a session pinned to s keep its pin by the caps? (policy affinity: up to the
 * cap plus slack; balance: up to the cap.) */
static bool pin_fits(const struct srv_backend *b, const struct srv *s)
{
    struct cfg_srv_limits lim;
    cfg_limits_of(A.cfg, b->name, s->name, &lim);
    int64_t cap = lim.maxconn > 0 ? lim.maxconn : s->maxconn;
    if (cap <= 0) {
        return true;
    }
    struct ledger_srv v = {0};
    if (A.ledger != NULL) {
        ledger_server(A.ledger, b->name, s->name, &v);
    }
    v.pending += resv_of(b->name, s->name);
    int64_t pcap = aff_pin_cap(cap, lim.balance ? AFF_CAP_BALANCE : AFF_CAP_AFFINITY,
                               lim.slack_pct);
    return aff_room(v.conns - v.pending, v.pending, pcap, v.ninst, v.rank) > 0;
}

/* Redis' clock by the fleet view (the local one until a batch has told it). */
static int64_t view_now(void)
{
    int64_t now = A.ledger != NULL ? ledger_redis_now_ms(A.ledger) : 0;
    return now > 0 ? now : util_now_ms();
}

/* What the pin on server s of b may do under the current view, at time now. */
static enum aff_pin pin_rule_at(const struct srv_backend *b, const struct srv *s, int64_t now)
{
    struct ledger_srv v = {0};
    if (A.ledger != NULL) {
        ledger_server(A.ledger, b->name, s->name, &v);
    }
    return aff_pinned(s->state, v.admin, v.deadline_ms, now);
}

static enum aff_pin pin_rule(const struct srv_backend *b, const struct srv *s)
{
    return pin_rule_at(b, s, view_now());
}

static bool pin_stays(enum aff_pin p)
{
    return p == AFF_PIN_STAY || p == AFF_PIN_DRAINING;
}

/* ---- the answer without Redis ------------------------------------------------ */

/* Redis could not arbitrate (slow, down, saturated, or the script refused a
 * late run): the cookie's server when it is usable, else the weighted HRW hash
 * over the servers that may take new sessions. Same inputs on every agent,
 * same answer; nothing waits, and the cookie says where the client went.
 * cause is the counter of why: STATS_REF(fallback_<cause>) (stats.h). */
static void answer_fallback(struct req *r, struct assign_ctx *x, uint64_t *cause)
{
    const struct srv_backend *b = servers_find(x->backend, strlen(x->backend));
    size_t n = 0;
    if (b == NULL) {
        answer_none(r, x->backend, "unknown backend");
        return;
    }
    const struct srv *t = x->tagged[0] ? servers_find_server(b, x->tagged, strlen(x->tagged))
                                       : NULL;
    enum aff_pin p = t != NULL ? pin_rule(b, t) : AFF_PIN_DOWN;
    if (t != NULL && pin_stays(p)) {
        STATS_INC(decision_tag_fallback);
        STATS_INC(decision_fallback);
        (*cause)++;
        answer(r, x->backend, &x->id, "fallback", t->name, p == AFF_PIN_DRAINING, true,
               LEDGER_ADOPT, x->uid, x->uid_len);
        log_decision(x->backend, &x->id, x->uid_log, x->src_af, x->src, "fallback", t->name,
                     "tag");
        req_done(r);
        return;
    }
    if (build_cands(b, &x->id, &n) != 0) {
        answer_none(r, x->backend, "out of memory");
        return;
    }
    /* the hash among servers with room by the last view (stale without Redis, but
     * better than none): unpaced ones, else those below their cap, else all */
    int k = -1;
    for (int pass = 0; pass < 3 && k < 0; pass++) {
        if (pass > 0 && build_cands(b, &x->id, &n) != 0) {
            break;
        }
        for (size_t i = 0; i < n && pass < 2; i++) {
            if (A.cands[i].full || (pass == 0 && A.cands[i].paced)) {
                A.cands[i].flags &= ~AFF_F_NEW;
            }
        }
        k = aff_pick(x->id.rid, x->id.rid_len, A.cands, n, AFF_F_NEW);
    }
    if (k < 0) {
        answer_none(r, x->backend, "no usable server");
        return;
    }
    STATS_INC(decision_fallback);
    (*cause)++;
    /* the record is claimed for the hashed server once Redis is back: the
     * cookie issued now names it, and the cookie is the authority */
    answer(r, x->backend, &x->id, "fallback", A.cands[k].name, false, false, LEDGER_FORCE,
           x->uid, x->uid_len);
    log_decision(x->backend, &x->id, x->uid_log, x->src_af, x->src, "fallback", A.cands[k].name,
                 "hash");
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

/* The string at rep[i] when it is one of 1..SRV_NAME_MAX-1 bytes, else NULL. */
static const char *reply_name(const struct store_reply *rep, size_t i, size_t *len)
{
    const struct store_reply *e = store_reply_elem(rep, i);
    const char *p = store_reply_type(e) == STORE_R_STR ? store_reply_str(e, len) : NULL;
    return p != NULL && *len > 0 && *len < SRV_NAME_MAX ? p : NULL;
}

void assign_reply_parse(const struct store_reply *rep, struct assign_reply *out)
{
    static const char *const verdicts[] = {"", "late", "none", "hit", "repin", "new"};
    _Static_assert(ARRAY_SIZE(verdicts) == ASSIGN_V_COUNT, "one word per verdict");
    memset(out, 0, sizeof(*out));
    out->from = "";
    const struct store_reply *a = store_reply_type(rep) == STORE_R_ARRAY && store_reply_len(rep) >= 1
                                      ? store_reply_elem(rep, 0)
                                      : NULL;
    for (int v = ASSIGN_V_LATE; v < ASSIGN_V_COUNT; v++) {
        if (reply_str_is(a, verdicts[v])) {
            out->verdict = (enum assign_verdict)v;
        }
    }
    if (out->verdict == ASSIGN_V_BAD || out->verdict == ASSIGN_V_LATE) {
        return;
    }
    out->server = reply_name(rep, 1, &out->server_len);
    if (out->server == NULL && out->verdict == ASSIGN_V_NONE) {
        out->server = "no usable server"; /* decide.lua's reason, should it give none */
        out->server_len = strlen(out->server);
    } else if (out->server == NULL) {
        out->verdict = ASSIGN_V_BAD;
        out->server_len = 0;
        return;
    }
    const struct store_reply *third = store_reply_elem(rep, 2);
    if (out->verdict == ASSIGN_V_HIT) {
        out->moved = store_reply_type(third) == STORE_R_INT && store_reply_int(third) != 0;
    } else if (out->verdict == ASSIGN_V_REPIN) {
        const char *f = reply_name(rep, 2, &out->from_len);
        out->from = f != NULL ? f : "";
        out->from_len = f != NULL ? out->from_len : 0;
    }
}

/* The store's callback for decide.lua: runs exactly once per EVALSHA. */
static void carry_forget(const struct assign_ctx *x);

static void on_reply(const struct store_reply *rep, enum store_result res, void *arg)
{
    struct assign_ctx *x = arg;
    struct req *r = x->req;
    if (A.shutting || req_orphaned(r)) {
        req_done(r); /* nobody to answer: just release the request */
        ctx_put(x);
        return;
    }
    struct assign_reply ar;
    assign_reply_parse(res == STORE_OK ? rep : NULL, &ar);
    if (ar.verdict == ASSIGN_V_BAD || ar.verdict == ASSIGN_V_LATE) {
        uint64_t *cause = res == STORE_TIMEOUT ? STATS_REF(fallback_redis_timeout)
                          : res == STORE_DOWN  ? STATS_REF(fallback_redis_disconnect)
                                               : STATS_REF(fallback_bad_reply);
        if (res == STORE_OK && rep != NULL && store_reply_type(rep) == STORE_R_ERR) {
            size_t len = 0;
            const char *e = store_reply_str(rep, &len);
            log_warn("assign: script error, falling back: %.*s", (int)(len > 200 ? 200 : len), e);
            cause = STATS_REF(fallback_script_error);
        } else if (ar.verdict == ASSIGN_V_LATE) {
            STATS_INC(decision_late);
            cause = STATS_REF(fallback_late);
        } else if (res == STORE_OK) {
            log_warn("assign: unexpected script reply, falling back");
        }
        answer_fallback(r, x, cause);
        ctx_put(x);
        return;
    }
    if (x->carried != NULL) {
        carry_forget(x); /* decide.lua wrote the record from it */
    }
    char srv[SRV_NAME_MAX];
    snprintf(srv, sizeof(srv), "%.*s", (int)ar.server_len, ar.server);
    if (ar.verdict == ASSIGN_V_NONE) {
        if (x->full) {
            answer_full(r, x->backend);
        } else {
            answer_none(r, x->backend, srv);
        }
        ctx_put(x);
        return;
    }
    const struct srv_backend *b = servers_find(x->backend, strlen(x->backend));
    const struct srv *t = b != NULL ? servers_find_server(b, srv, strlen(srv)) : NULL;
    bool hit = ar.verdict == ASSIGN_V_HIT, repin = ar.verdict == ASSIGN_V_REPIN;
    if (t == NULL) {
        log_warn("assign: unexpected script reply, falling back");
        answer_fallback(r, x, STATS_REF(fallback_bad_reply));
        ctx_put(x);
        return;
    }
    bool draining = hit && pin_rule(b, t) == AFF_PIN_DRAINING;
    char touch = 0;
    if (hit) {
        touch = ar.moved ? LEDGER_FORCE : 0; /* an operator's move, now in the cookie */
        STATS_INC(decision_hit);
    } else if (repin) {
        snprintf(x->from, sizeof(x->from), "%.*s", (int)ar.from_len, ar.from);
        STATS_INC(decision_repin);
    } else {
        STATS_INC(decision_new);
    }
    bool same = x->id.tagged >= 0 && strcmp(x->tagged, t->name) == 0;
    const char *action = hit ? "hit" : repin ? "repin" : "new";
    answer(r, x->backend, &x->id, action, t->name, draining, same, touch, x->uid, x->uid_len);
    if (x->queued) {
        mark_queued(r);
    }
    if (!hit) {
        rate_take(x->backend, t->name);
        const struct srv *from = b != NULL && x->from[0]
                                     ? servers_find_server(b, x->from, strlen(x->from))
                                     : NULL;
        publish_decision(x->backend, &x->id, repin, t->name, x->from,
                         from != NULL ? aff_pin_reason(pin_rule(b, from)) : "removed");
    }
    log_decision(x->backend, &x->id, x->uid_log, x->src_af, x->src, action, t->name, NULL);
    req_done(r);
    ctx_put(x);
}

/* ---- the handler -------------------------------------------------------- */

/* The args we use, as borrowed views (valid during the handler call). */
struct assign_args {
    struct spop_str backend, sid, key, inst, uid, srvck;
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

/* The affinity key: text as it is, a number or an address as its text form,
 * NULL or empty as absent. False for a type that has no text form. */
static bool parse_key(const struct spop_data *v, struct assign_args *a)
{
    a->has_key = true;
    switch (v->type) {
    case SPOP_T_NULL:
        a->has_key = false;
        break;
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        a->key = v->u.str;
        a->has_key = v->u.str.len > 0;
        break;
    case SPOP_T_INT32:
        snprintf(a->key_text, sizeof(a->key_text), "%" PRId32, v->u.i32);
        break;
    case SPOP_T_UINT32:
        snprintf(a->key_text, sizeof(a->key_text), "%" PRIu32, v->u.u32);
        break;
    case SPOP_T_INT64:
        snprintf(a->key_text, sizeof(a->key_text), "%" PRId64, v->u.i64);
        break;
    case SPOP_T_UINT64:
        snprintf(a->key_text, sizeof(a->key_text), "%" PRIu64, v->u.u64);
        break;
    case SPOP_T_IPV4:
        inet_ntop(AF_INET, v->u.ipv4, a->key_text, sizeof(a->key_text));
        break;
    case SPOP_T_IPV6:
        inet_ntop(AF_INET6, v->u.ipv6, a->key_text, sizeof(a->key_text));
        break;
    default:
        return false;
    }
    if (a->has_key && !is_text(v)) {
        a->key.ptr = a->key_text;
        a->key.len = strlen(a->key_text);
    }
    return true;
}

/* Parse the message's args; NULL on success, else the reason for `none`. */
static const char *parse_args(const struct spop_msg *m, struct assign_args *a)
{
    memset(a, 0, sizeof(*a));
    for (unsigned i = 0; i < m->nargs; i++) {
        struct spop_str k = m->args[i].key;
        struct spop_data v = m->args[i].val;
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
            if (!parse_key(&v, a)) {
                return "bad key";
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
        } else if (spop_str_eq(k, "srvck")) {
            if (is_text(&v)) {
                a->srvck = v.u.str; /* HAProxy's fallback cookie (compared, never trusted) */
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
    if (!a->has_backend || a->backend.len == 0) {
        return "missing backend";
    }
    if (a->backend.len >= SRV_NAME_MAX || memchr(a->backend.ptr, '\0', a->backend.len) != NULL) {
        return "unknown backend";
    }
    return NULL;
}

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
    A.argv_cap = need;
    return 0;
}

/* Who is this session? Fills x->id (and x->tagged) from the args; false when no
 * id can be made (the CSPRNG failed). */
static bool identify(struct assign_ctx *x, const struct srv_backend *b,
                     const struct assign_args *a)
{
    struct ident *id = &x->id;
    struct sid_cookie ck;
    bool valid = a->has_sid && sid_parse(&A.keys, a->sid.ptr, a->sid.len, &ck);
    if (a->has_sid && !valid) {
        STATS_INC(sid_invalid);
    }
    if (a->has_key) {
        /* the key's record, and its cookie when the presented one goes with it */
        int n = sid_from_key(&A.keys, false, a->key.ptr, a->key.len, id->rid);
        if (n <= 0 || sid_key_rid(&A.keys, a->key.ptr, a->key.len, id->rbytes) != 0) {
            return false;
        }
        id->rid_len = (size_t)n;
        id->kind = SID_KIND_KEY;
        if (A.keys.prev_len > 0) {
            int p = sid_from_key(&A.keys, true, a->key.ptr, a->key.len, id->legacy);
            id->legacy_len = p > 0 ? (size_t)p : 0;
        }
        valid = valid && ck.kind == SID_KIND_KEY && memcmp(ck.rid, id->rbytes, SID_RID_LEN) == 0;
    } else if (valid) {
        memcpy(id->rbytes, ck.rid, SID_RID_LEN);
        id->rid_len = (size_t)sid_record_id(ck.rid, id->rid);
        id->kind = SID_KIND_SESSION;
        if (ck.kind == SID_KIND_V1) { /* its record, if any, is under the old name */
            memcpy(id->legacy, a->sid.ptr, a->sid.len);
            id->legacy[a->sid.len] = '\0';
            id->legacy_len = a->sid.len;
        }
        valid = ck.kind == SID_KIND_SESSION || ck.kind == SID_KIND_V1;
    } else {
        if (sid_new_rid(id->rbytes) != 0) {
            return false;
        }
        id->rid_len = (size_t)sid_record_id(id->rbytes, id->rid);
        id->kind = SID_KIND_SESSION;
        id->minted = true;
        STATS_INC(sid_minted);
    }
    if (valid) {
        memcpy(id->cookie, a->sid.ptr, a->sid.len);
        id->cookie_len = a->sid.len;
    }
    if (valid && ck.kind != SID_KIND_V1) {
        id->tagged = tag_resolve(b, &ck);
        int64_t age_ms = view_now() - (int64_t)ck.issued_s * 1000;
        if (age_ms > A.cfg->session_ttl_ms) {
            id->tagged = -1; /* too old to tell where it was: Redis decides */
        }
        id->cookie_fresh = !ck.prev_secret && age_ms < cfg_refresh_ms(A.cfg);
        if (id->tagged >= 0) {
            snprintf(x->tagged, sizeof(x->tagged), "%s", b->servers[id->tagged].name);
        }
    }
    return true;
}

static void arbitrate(struct req *r, struct assign_ctx *x, const struct srv_backend *b);

static void carry_done(const struct store_reply *rep, enum store_result res, void *arg)
{
    UNUSED(rep);
    UNUSED(res);
    UNUSED(arg);
}

/* The legacy record, carried over: deleted where it was (best effort). */
static void carry_forget(const struct assign_ctx *x)
{
    char legacy[MODEL_KEY_MAX];
    int ll = model_record_key(legacy, A.cfg, x->backend, x->id.legacy, x->id.legacy_len);
    const char *argv[] = {"DEL", legacy};
    if (ll > 0 && store_command(A.store, 2, argv, NULL, 0, carry_done, NULL) != 0) {
        log_debug("assign: legacy record %s not deleted (the store refused)", legacy);
    }
}

/* The legacy record read (a cluster): on to the arbitration, with its value when
 * it is a record of the current format (a "1" cookie's hash is never carried
 * over on a cluster, which has none: it starts empty). */
static void carry_reply(const struct store_reply *rep, enum store_result res, void *arg)
{
    struct assign_ctx *x = arg;
    struct req *r = x->req;
    if (A.shutting || req_orphaned(r)) {
        req_done(r);
        ctx_put(x);
        return;
    }
    x->carry_read = true;
    size_t len = 0;
    const char *v = res == STORE_OK && store_reply_type(rep) == STORE_R_STR
                        ? store_reply_str(rep, &len)
                        : NULL;
    struct model_record mr;
    if (v != NULL && model_record_parse(v, len, &mr) == 0 && (x->carried = malloc(len + 1))) {
        memcpy(x->carried, v, len);
        x->carried[len] = '\0';
    }
    const struct srv_backend *b = servers_find(x->backend, strlen(x->backend));
    if (b == NULL) {
        answer_none(r, x->backend, "unknown backend");
        ctx_put(x);
        return;
    }
    arbitrate(r, x, b);
}

/* Ask Redis to arbitrate (decide.lua); falls back at once when it cannot. On a
 * Redis Cluster a legacy record (another slot) is read first: one more round
 * trip, for "1" cookies and for keys while a previous secret is configured. */
static void arbitrate(struct req *r, struct assign_ctx *x, const struct srv_backend *b)
{
    if (A.cfg->redis_cluster && x->id.legacy_len > 0 && !x->carry_read && A.store != NULL) {
        char legacy[MODEL_KEY_MAX];
        int ll = model_record_key(legacy, A.cfg, x->backend, x->id.legacy, x->id.legacy_len);
        const char *argv[] = {"GET", legacy};
        if (ll > 0 && store_command(A.store, 2, argv, NULL, 0, carry_reply, x) == 0) {
            return;
        }
        x->carry_read = true; /* not queued: decide without it (or fall back below) */
    }
    size_t nc = 0;
    if (build_cands(b, &x->id, &nc) != 0) {
        answer_none(r, x->backend, "out of memory");
        ctx_put(x);
        return;
    }
    bool all_full = false;
    int best = least_with_room(nc, &all_full);
    if (best < 0 && all_full) {
        /* every server at its cap: a pin that fits still wins in the script; else
         * refused (x->full), or with when_full queue, placed caps aside */
        x->queued = queue_when_full(x->backend);
        x->full = !x->queued;
        best = x->queued ? least_ignoring_caps(nc) : -1;
    }
    char rec[MODEL_KEY_MAX], legacy[MODEL_KEY_MAX], dl[24], ttl[24];
    int kl = model_record_key(rec, A.cfg, x->backend, x->id.rid, x->id.rid_len);
    /* decide.lua touches one slot: a legacy record is its KEYS[2] only where it
     * shares the record's (standalone); a cluster's was read above, its value
     * goes in ARGV[5]. */
    bool carry = x->id.legacy_len > 0 && !A.cfg->redis_cluster;
    int ll = carry ? model_record_key(legacy, A.cfg, x->backend, x->id.legacy, x->id.legacy_len)
                   : kl;
    if (!carry && kl > 0) {
        memcpy(legacy, rec, (size_t)kl + 1);
    }
    if (A.store == NULL || A.script == NULL || kl < 0 || ll < 0 ||
        argv_reserve(7 + b->nservers) != 0) {
        answer_fallback(r, x, A.store == NULL || A.script == NULL ? STATS_REF(fallback_no_store)
                                                                  : STATS_REF(fallback_internal));
        ctx_put(x);
        return;
    }
    int64_t timeout = A.cfg->redis_timeout_ms;
    int64_t rnow = A.ledger != NULL ? ledger_redis_now_ms(A.ledger) : 0;
    int64_t deadline = rnow > 0 ? rnow + (timeout > LATE_MARGIN_MS * 2 ? timeout - LATE_MARGIN_MS
                                                                       : timeout / 2)
                                : 0;
    *util_u64_dec(dl, (uint64_t)deadline) = '\0';
    *util_u64_dec(ttl, (uint64_t)A.cfg->session_ttl_ms) = '\0';
    size_t i = 0;
    A.argv[i] = rec;
    A.argvlen[i++] = (size_t)kl;
    A.argv[i] = legacy;
    A.argvlen[i++] = (size_t)ll;
    A.argv[i] = dl;
    A.argvlen[i++] = strlen(dl);
    A.argv[i] = ttl;
    A.argvlen[i++] = strlen(ttl);
    A.argv[i] = A.cfg->instance;
    A.argvlen[i++] = strlen(A.cfg->instance);
    A.argv[i] = best >= 0 ? A.cands[best].name : "";
    A.argvlen[i++] = best >= 0 ? A.cands[best].name_len : 0;
    A.argv[i] = x->carried != NULL ? x->carried : "";
    A.argvlen[i++] = x->carried != NULL ? strlen(x->carried) : 0;
    int64_t now = view_now();
    for (size_t k = 0; k < b->nservers; k++) {
        if (pin_stays(pin_rule_at(b, &b->servers[k], now)) &&
            (x->queued || pin_fits(b, &b->servers[k]))) {
            A.argv[i] = b->servers[k].name;
            A.argvlen[i++] = strlen(b->servers[k].name);
        }
    }
    if (best >= 0) { /* counted there until the answer (ctx_put releases it) */
        snprintf(x->resv, sizeof(x->resv), "%s", A.cands[best].name);
        resv_add(x->backend, x->resv, 1);
    }
    if (store_eval(A.store, A.script, 2, (int)i, A.argv, A.argvlen, timeout, on_reply, x) != 0) {
        /* not queued (down, or too much pending): at once */
        answer_fallback(r, x, store_connected(A.store) ? STATS_REF(fallback_redis_saturated)
                                                       : STATS_REF(fallback_redis_down));
        ctx_put(x);
    }
}

/* The args, then what they name: NULL with *out set to the backend, else the
 * reason for `none`. */
static const char *check_request(const struct spop_msg *m, struct assign_args *a,
                                 const struct srv_backend **out)
{
    const char *bad = parse_args(m, a);
    if (bad != NULL) {
        return bad;
    }
    if (!A.have_keys) {
        return "no session secret";
    }
    *out = servers_find(a->backend.ptr, a->backend.len);
    return *out == NULL ? "unknown backend" : NULL;
}

/* Copy into x what the decision keeps of the args: they are borrowed for the
 * handler call only, and the decision may wait for Redis. */
static void ctx_take_args(struct assign_ctx *x, struct req *r, const struct assign_args *a)
{
    x->req = r;
    memcpy(x->backend, a->backend.ptr, a->backend.len);
    x->backend[a->backend.len] = '\0';
    x->src_af = a->src_af;
    memcpy(x->src, a->src, sizeof(x->src));
    /* The unique-id may carry client-controlled bytes: keep log lines one line. */
    size_t ul = a->uid.len < UID_LOG_MAX ? a->uid.len : UID_LOG_MAX - 1;
    for (size_t i = 0; i < ul; i++) {
        unsigned char ch = (unsigned char)a->uid.ptr[i];
        x->uid_log[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    x->uid_log[ul] = '\0';
    if (a->upgrade && a->uid.len > 0 && a->uid.len < UID_MAX) {
        memcpy(x->uid, a->uid.ptr, a->uid.len);
        x->uid_len = a->uid.len;
    }
    if (a->srvck.len == SID_STAG_TEXT_LEN) {
        memcpy(x->id.srvck, a->srvck.ptr, SID_STAG_TEXT_LEN);
        x->id.srvck[SID_STAG_TEXT_LEN] = '\0';
    }
}

static bool any_server_up(const struct srv_backend *b)
{
    bool any_up = false;
    for (size_t i = 0; i < b->nservers; i++) {
        any_up |= (aff_flags(b->servers[i].state, b->servers[i].weight) & AFF_F_UP) != 0;
    }
    return any_up;
}

/* Step 1: a cookie that names a usable server decides alone (an operator's
 * move, when known, names the server instead). True when answered (x is then
 * released); false when the pin does not stay, for Redis to arbitrate. */
static bool decide_by_cookie(struct req *r, struct assign_ctx *x, const struct srv_backend *b)
{
    struct ident *id = &x->id;
    const char *mv = moved_find(x->backend, id->rid, id->rid_len);
    const struct srv *s = mv != NULL ? servers_find_server(b, mv, strlen(mv)) : NULL;
    bool moved = s != NULL && pin_stays(pin_rule(b, s));
    if (!moved) {
        s = &b->servers[id->tagged];
    }
    enum aff_pin p = pin_rule(b, s);
    bool queued = false;
    if (pin_stays(p) && !pin_fits(b, s)) {
        /* its server is at its cap (limits.policy): move it where there is room
         * (Redis arbitrates, step 3), or when there is none, refuse or queue */
        size_t nc = 0;
        bool all_full = false;
        STATS_INC(cap_pin_full);
        if (build_cands(b, id, &nc) != 0) {
            answer_none(r, x->backend, "out of memory");
            ctx_put(x);
            return true;
        }
        if (least_with_room(nc, &all_full) >= 0 || !all_full) {
            p = AFF_PIN_DOWN; /* not kept: arbitrated below */
        } else if (!queue_when_full(x->backend)) {
            answer_full(r, x->backend);
            ctx_put(x);
            return true;
        } else {
            queued = true;
        }
    }
    if (!pin_stays(p)) {
        return false;
    }
    STATS_INC(decision_hit);
    STATS_INC(decision_local);
    if (moved) {
        moved_forget(x->backend, id->rid, id->rid_len);
    }
    answer(r, x->backend, id, "hit", s->name, p == AFF_PIN_DRAINING, !moved,
           moved ? LEDGER_FORCE : LEDGER_ADOPT, x->uid, x->uid_len);
    if (queued) {
        mark_queued(r);
    }
    log_decision(x->backend, id, x->uid_log, x->src_af, x->src, "hit", s->name, NULL);
    req_done(r);
    ctx_put(x);
    return true;
}

/* Step 2: a new session: the least loaded server by the fleet view - unless
 * HAProxy placed this client itself while the agent was away (its own cookie
 * names a server that may keep sessions): then it stays there, so a Socket.IO
 * handshake begun without the agent is not cut in two. Always answers and
 * releases x. */
static void decide_new_session(struct req *r, struct assign_ctx *x, const struct srv_backend *b)
{
    struct ident *id = &x->id;
    size_t nc = 0;
    int best = -1;
    bool all_full = false, queued = false;
    int placed = srvck_resolve(b, id->srvck);
    const char *srv = NULL;
    if (placed >= 0 && pin_stays(pin_rule(b, &b->servers[placed]))) {
        srv = b->servers[placed].name;
    } else if (build_cands(b, id, &nc) != 0 ||
               ((best = least_with_room(nc, &all_full)) < 0 && !all_full)) {
        answer_none(r, x->backend, "no usable server");
        ctx_put(x);
        return;
    } else if (best < 0 && !queue_when_full(x->backend)) {
        answer_full(r, x->backend);
        ctx_put(x);
        return;
    } else {
        queued = best < 0;
        best = queued ? least_ignoring_caps(nc) : best;
        srv = A.cands[best].name;
        rate_take(x->backend, srv);
    }
    STATS_INC(decision_new);
    STATS_INC(decision_local);
    answer(r, x->backend, id, "new", srv, false, false, LEDGER_NEW, x->uid, x->uid_len);
    if (queued) {
        mark_queued(r);
    }
    publish_decision(x->backend, id, false, srv, NULL, NULL);
    log_decision(x->backend, id, x->uid_log, x->src_af, x->src, "new", srv, NULL);
    req_done(r);
    ctx_put(x);
}

/* sticky-assign: check the request, identify the session, then decide in
 * three steps - its cookie (step 1), a new session (step 2), or Redis
 * arbitrates (step 3: a repin, a "1" cookie, an affinity key). */
static void assign_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    UNUSED(arg);
    struct assign_args a;
    const struct srv_backend *b = NULL;
    const char *bad = check_request(m, &a, &b);
    if (bad != NULL) {
        answer_none(r, NULL, bad);
        return;
    }
    struct assign_ctx *x = ctx_get();
    if (x == NULL) {
        answer_none(r, NULL, "out of memory");
        return;
    }
    ctx_take_args(x, r, &a);
    if (!identify(x, b, &a)) {
        answer_none(r, x->backend, "cannot make a session id");
        ctx_put(x);
        return;
    }
    if (!any_server_up(b)) {
        answer_none(r, x->backend, "no usable server");
        ctx_put(x);
        return;
    }
    if (x->id.kind == SID_KIND_SESSION && x->id.tagged >= 0 && decide_by_cookie(r, x, b)) {
        return;
    }
    if (x->id.minted) {
        decide_new_session(r, x, b);
        return;
    }
    arbitrate(r, x, b);
}

/* ---- sticky-established: HAProxy used another server ------------------------ */

static bool arg_text(const struct spop_data *v, struct spop_str *out)
{
    if (v->type != SPOP_T_STRING && v->type != SPOP_T_BINARY) {
        return false;
    }
    *out = v->u.str;
    return true;
}

/* A retry or redispatch put the tunnel on `server`, or the agent gave no
 * answer: count it there (moving the open assign counted), and when the
 * session is ours, make its record and its cookie follow. Every name is
 * checked against the view: nothing a peer sends creates keys of its choosing. */
static void established_handler(struct req *r, const struct spop_msg *m, void *arg)
{
    UNUSED(arg);
    struct spop_str backend = {0}, server = {0}, sid = {0}, uid = {0};
    int64_t status = 101; /* absent: trust the rule that sent it on 101 */
    for (unsigned i = 0; i < m->nargs; i++) {
        struct spop_str key = m->args[i].key;
        const struct spop_data v = m->args[i].val;
        if (spop_str_eq(key, "backend")) {
            (void)arg_text(&v, &backend);
        } else if (spop_str_eq(key, "server")) {
            (void)arg_text(&v, &server);
        } else if (spop_str_eq(key, "sid")) {
            (void)arg_text(&v, &sid);
        } else if (spop_str_eq(key, "uid")) {
            (void)arg_text(&v, &uid);
        } else if (spop_str_eq(key, "status")) {
            if (v.type == SPOP_T_INT32) {
                status = v.u.i32;
            } else if (v.type == SPOP_T_UINT32) {
                status = (int64_t)v.u.u32;
            } else if (v.type == SPOP_T_INT64) {
                status = v.u.i64;
            } else if (v.type == SPOP_T_UINT64) {
                status = (int64_t)v.u.u64;
            }
        }
    }
    const struct srv_backend *b = status == 101 && backend.len > 0
                                      ? servers_find(backend.ptr, backend.len)
                                      : NULL;
    const struct srv *s = b != NULL && server.len > 0
                              ? servers_find_server(b, server.ptr, server.len)
                              : NULL;
    int counted = 0;
    if (s != NULL && uid.len > 0 && uid.len < UID_MAX && A.ledger != NULL) {
        counted = ledger_open(A.ledger, b->name, uid.ptr, uid.len, s->name, strlen(s->name)) == 0;
    }
    struct sid_cookie ck;
    if (s != NULL && A.have_keys && sid.len > 0 && sid_parse(&A.keys, sid.ptr, sid.len, &ck) &&
        ck.kind != SID_KIND_KEY) {
        struct ident id = {.kind = SID_KIND_SESSION, .tagged = -1};
        memcpy(id.rbytes, ck.rid, SID_RID_LEN);
        id.rid_len = (size_t)sid_record_id(ck.rid, id.rid);
        if (cookie_for(b->name, &id, s->name, false)) {
            req_set_var_str(r, "sid", id.cookie, id.cookie_len);
            req_set_var_int(r, "set_cookie", 1);
        }
        set_srvtag(r, b->name, s->name, "");
        if (A.ledger != NULL) {
            (void)ledger_touch(A.ledger, b->name, id.rid, id.rid_len, s->name, strlen(s->name),
                               LEDGER_FORCE);
        }
        int was = ck.kind == SID_KIND_SESSION ? tag_resolve(b, &ck) : -1;
        log_info("assign: %s sid %.10s... served by %s (HAProxy moved it); pin corrected",
                 b->name, id.rid, s->name);
        publish_decision(b->name, &id, true, s->name, was >= 0 ? b->servers[was].name : "",
                         "corrected");
    }
    req_set_var_int(r, "counted", counted);
    req_done(r);
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

int assign_init(struct ev_loop *loop, const struct cfg *c, struct store *st, struct ledger *l)
{
    UNUSED(loop);
    memset(&A, 0, sizeof(A));
    A.cfg = c;
    A.store = st;
    A.ledger = l;
    if (c->secret_file == NULL || c->secret_file[0] == '\0') {
        log_warn("sticky-assign: no session.secret_file: every decision will be 'none'");
    } else if (load_keys(c, &A.keys) != 0) {
        return -1;
    } else {
        A.have_keys = true;
    }
    if (st != NULL && (A.script = store_script_new(st, model_lua_decide)) == NULL) {
        log_err("sticky-assign: cannot register the decision script");
        goto fail;
    }
    if (l != NULL) {
        ledger_on_moved(l, on_ledger_moved, NULL);
    }
    if (req_register(ASSIGN_MESSAGE, assign_handler, NULL) != 0 ||
        req_register(ASSIGN_ESTABLISHED, established_handler, NULL) != 0) {
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
    if (A.tags != NULL) { /* tags are the secrets' */
        memset(A.tags, 0, TAGS_MAX * sizeof(*A.tags));
        A.ntags = 0;
    }
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
    free(A.tags);
    free(A.moved);
    free(A.rates);
    free(A.resv);
    A.rates = NULL;
    A.resv = NULL;
    A.cands = NULL;
    A.argv = NULL;
    A.argvlen = NULL;
    A.tags = NULL;
    A.moved = NULL;
    A.cands_cap = A.argv_cap = 0;
    A.ntags = 0;
    if (A.ledger != NULL) {
        ledger_on_moved(A.ledger, NULL, NULL);
    }
    sid_keys_wipe(&A.keys);
    A.have_keys = false;
}
