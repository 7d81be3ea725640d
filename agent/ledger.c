/* ledger.c - coalesced writes to Redis and the fleet view they bring back
 * (contract in ledger.h).
 *
 *   ledger_open/close/touch --queue per backend (bounded)--> flush timer (batch_interval)
 *     --> one EVALSHA ledger.lua per backend, at most one in flight (in a Redis
 *         Cluster: the counts in that one, each record touch in one of its own,
 *         on the record's slot)
 *     --> reply: conns, states, Redis TIME, moved records --> view, clock, callback
 *
 * Owns the queued operations and the per-backend view; must not decide anything
 * and must not call up (moved records go through the owner's callback).
 */
#include "ledger.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "servers.h"
#include "slots.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define LEDGER_TIMEOUT_MS 1000   /* a batch is not on the decision path */
#define LEDGER_ARENA_MAX (4u << 20) /* bytes of queued names per backend */
#define LEDGER_ID_MAX 255u
#define CLOCK_SAMPLES 8
#define LEDGER_PIPELINE 4 /* full batches in flight at once per backend, in a storm */

/* One queued operation; its strings live in the backend's arena. */
/* ledger.lua's count keys (ARGV[7]): conns, share, open map, insts, state,
 * per-process counts, the open map's previous generation. */
#define LEDGER_COUNT_KEYS 7
#define LEDGER_COUNT_KEYS_STR "7"

struct lop {
    uint32_t id_off, srv_off;
    uint16_t id_len, srv_len;
    char kind; /* 'o' open, 'c' close, 't' touch */
    char mode; /* touch mode */
};

/* One server of the view: an open-addressing table keyed by name. */
struct lsrv {
    char name[SRV_NAME_MAX]; /* "" = free slot */
    int64_t conns;           /* as Redis answered in the last batch */
    int64_t queued, flying;  /* own opens queued / in flight, not in conns yet */
    enum model_state admin;
    int64_t deadline_ms;
    bool has_since; /* the state hash says "ready:<since_ms>" (slow start) */
    int64_t since_ms;
};

struct lback {
    struct lback *next;
    struct ledger *l;
    char name[SRV_NAME_MAX];
    struct lsrv *tab;
    size_t tab_cap, tab_used; /* cap: a power of two, or 0 */
    struct lop *ops;
    size_t nops, ops_cap;
    char *arena;
    size_t alen, acap;
    unsigned inflight;
    unsigned ninst, rank; /* live instances in the last reply, this one's rank by name */
};

/* A batch in flight: what its reply needs to settle the view. */
struct lbatch {
    struct lback *b; /* NULL once the ledger is gone: the reply is ignored */
    struct lbatch *next_live;
    bool touch_only; /* a cluster's record touch: no counts, no view, not inflight */
    size_t ntouch, nclose;
    /* per touch: rid; then per distinct server opened: name and count */
    size_t nsrv;
    char *strs; /* touch rids, NUL separated, then server names, NUL separated */
    int64_t *counts;
};

struct ledger {
    struct ev_loop *loop;
    const struct cfg *cfg;
    struct store *store;
    struct store_script *script;
    struct lback *backends;
    struct lbatch *live; /* batches in flight, to disarm on free */
    ev_timer flush_timer;
    ev_timer view_timer;
    bool stopped;
    int64_t clock_lo[CLOCK_SAMPLES]; /* Redis minus local ms, lower bounds */
    size_t nclock, clock_next;
    ledger_moved_fn moved;
    void *moved_arg;
    /* scratch for building one batch */
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
    char (*keys)[MODEL_KEY_MAX];
    size_t keys_cap;
    char num[5][24]; /* a batch's numeric ARGV, until the store has copied them */
};

/* ---- the view's server table -------------------------------------------- */

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    }
    return h;
}

static struct lsrv *srv_find(const struct lback *b, const char *name, size_t n)
{
    if (b->tab_cap == 0 || n == 0 || n >= SRV_NAME_MAX) {
        return NULL;
    }
    size_t mask = b->tab_cap - 1;
    for (size_t i = name_hash(name, n) & mask;; i = (i + 1) & mask) {
        struct lsrv *s = &b->tab[i];
        if (s->name[0] == '\0') {
            return NULL;
        }
        if (memcmp(s->name, name, n) == 0 && s->name[n] == '\0') {
            return s;
        }
    }
}

static int srv_grow(struct lback *b)
{
    size_t cap = b->tab_cap ? b->tab_cap * 2 : 16;
    struct lsrv *t = calloc(cap, sizeof(*t));
    if (t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < b->tab_cap; i++) {
        struct lsrv *s = &b->tab[i];
        if (s->name[0] != '\0') {
            size_t j = name_hash(s->name, strlen(s->name)) & (cap - 1);
            while (t[j].name[0] != '\0') {
                j = (j + 1) & (cap - 1);
            }
            t[j] = *s;
        }
    }
    free(b->tab);
    b->tab = t;
    b->tab_cap = cap;
    return 0;
}

/* The entry of name, created when absent; NULL when it cannot be. */
static struct lsrv *srv_get(struct lback *b, const char *name, size_t n)
{
    struct lsrv *s = srv_find(b, name, n);
    if (s != NULL || n == 0 || n >= SRV_NAME_MAX) {
        return s;
    }
    if ((b->tab_used + 1) * 2 > b->tab_cap && srv_grow(b) != 0) {
        return NULL;
    }
    size_t mask = b->tab_cap - 1;
    size_t i = name_hash(name, n) & mask;
    while (b->tab[i].name[0] != '\0') {
        i = (i + 1) & mask;
    }
    s = &b->tab[i];
    memset(s, 0, sizeof(*s));
    memcpy(s->name, name, n);
    s->name[n] = '\0';
    b->tab_used++;
    return s;
}

/* ---- backends and the queue --------------------------------------------- */

static struct lback *back_find(const struct ledger *l, const char *name, size_t n)
{
    for (struct lback *b = l->backends; b != NULL; b = b->next) {
        if (memcmp(b->name, name, n) == 0 && b->name[n] == '\0') {
            return b;
        }
    }
    return NULL;
}

static struct lback *back_get(struct ledger *l, const char *name, size_t n)
{
    struct lback *b = back_find(l, name, n);
    if (b != NULL || n == 0 || n >= SRV_NAME_MAX) {
        return b;
    }
    if ((b = calloc(1, sizeof(*b))) == NULL) {
        return NULL;
    }
    b->l = l;
    memcpy(b->name, name, n);
    b->name[n] = '\0';
    b->next = l->backends;
    l->backends = b;
    return b;
}

/* Copy s[0..n) into the arena; its offset, or -1. */
static int64_t arena_put(struct lback *b, const char *s, size_t n)
{
    if (b->alen + n > b->acap) {
        size_t cap = b->acap ? b->acap : 4096;
        while (cap < b->alen + n) {
            cap *= 2;
        }
        if (cap > LEDGER_ARENA_MAX) {
            return -1;
        }
        char *a = realloc(b->arena, cap);
        if (a == NULL) {
            return -1;
        }
        b->arena = a;
        b->acap = cap;
    }
    memcpy(b->arena + b->alen, s, n);
    b->alen += n;
    return (int64_t)(b->alen - n);
}

static void flush_soon(struct ledger *l)
{
    if (!ev_is_active(&l->flush_timer)) {
        double s = (double)l->cfg->redis_batch_interval_ms / 1000.0;
        ev_timer_set(&l->flush_timer, s, 0.);
        ev_timer_start(l->loop, &l->flush_timer);
    }
}

static int enqueue(struct ledger *l, const char *backend, size_t blen, char kind, char mode,
                   const char *id, size_t id_len, const char *srv, size_t srv_len)
{
    struct lback *b;
    if (l->stopped || id_len == 0 || id_len > LEDGER_ID_MAX || srv_len >= SRV_NAME_MAX ||
        (b = back_get(l, backend, blen)) == NULL || b->nops >= LEDGER_MAX_OPS) {
        STATS_INC(ledger_dropped);
        return -1;
    }
    if (b->nops == b->ops_cap) {
        size_t cap = b->ops_cap ? b->ops_cap * 2 : 256;
        struct lop *o = realloc(b->ops, cap * sizeof(*o));
        if (o == NULL) {
            STATS_INC(ledger_dropped);
            return -1;
        }
        b->ops = o;
        b->ops_cap = cap;
    }
    size_t mark = b->alen;
    int64_t io = arena_put(b, id, id_len);
    int64_t so = srv_len > 0 ? arena_put(b, srv, srv_len) : 0;
    struct lsrv *s = kind == 'o' ? srv_get(b, srv, srv_len) : NULL;
    if (io < 0 || so < 0 || (kind == 'o' && s == NULL)) {
        b->alen = mark;
        STATS_INC(ledger_dropped);
        return -1;
    }
    if (s != NULL) {
        s->queued++;
    }
    b->ops[b->nops++] = (struct lop){.id_off = (uint32_t)io,
                                     .srv_off = (uint32_t)so,
                                     .id_len = (uint16_t)id_len,
                                     .srv_len = (uint16_t)srv_len,
                                     .kind = kind,
                                     .mode = mode};
    flush_soon(l);
    return 0;
}

int ledger_open(struct ledger *l, const char *backend, const char *uid, size_t uid_len,
                const char *server, size_t server_len)
{
    return enqueue(l, backend, strlen(backend), 'o', 0, uid, uid_len, server, server_len);
}

int ledger_close(struct ledger *l, const char *backend, size_t backend_len, const char *uid,
                 size_t uid_len)
{
    return enqueue(l, backend, backend_len, 'c', 0, uid, uid_len, NULL, 0);
}

int ledger_touch(struct ledger *l, const char *backend, const char *rid, size_t rid_len,
                 const char *server, size_t server_len, char mode)
{
    if (server_len == 0) {
        return -1;
    }
    return enqueue(l, backend, strlen(backend), 't', mode, rid, rid_len, server, server_len);
}

/* ---- the view ------------------------------------------------------------ */

void ledger_server(const struct ledger *l, const char *backend, const char *server,
                   struct ledger_srv *out)
{
    *out = (struct ledger_srv){0};
    const struct lback *b = back_find(l, backend, strlen(backend));
    const struct lsrv *s = b != NULL ? srv_find(b, server, strlen(server)) : NULL;
    if (s != NULL) {
        out->conns = s->conns + s->queued + s->flying;
        out->pending = s->queued + s->flying;
        out->admin = s->admin;
        out->deadline_ms = s->deadline_ms;
    }
    out->since_ms = s != NULL && s->has_since ? s->since_ms : MODEL_SINCE_NONE;
    out->ninst = b != NULL ? b->ninst : 0;
    out->rank = b != NULL ? b->rank : 0;
}

int64_t ledger_redis_now_ms(const struct ledger *l)
{
    if (l->nclock == 0) {
        return 0;
    }
    int64_t lo = l->clock_lo[0];
    for (size_t i = 1; i < l->nclock; i++) {
        lo = l->clock_lo[i] > lo ? l->clock_lo[i] : lo;
    }
    return util_now_ms() + lo;
}

void ledger_on_moved(struct ledger *l, ledger_moved_fn fn, void *arg)
{
    l->moved = fn;
    l->moved_arg = arg;
}

/* Replace the view's counts and states with a batch reply's. */
static void view_apply(struct lback *b, const struct store_reply *conns,
                       const struct store_reply *state)
{
    for (size_t i = 0; i < b->tab_cap; i++) {
        b->tab[i].conns = 0;
        b->tab[i].admin = MODEL_READY;
        b->tab[i].deadline_ms = 0;
        b->tab[i].has_since = false;
    }
    for (size_t i = 0; i + 1 < store_reply_len(conns); i += 2) {
        size_t nl, vl;
        const char *n = store_reply_str(store_reply_elem(conns, i), &nl);
        const char *v = store_reply_str(store_reply_elem(conns, i + 1), &vl);
        struct lsrv *s = n != NULL && v != NULL ? srv_get(b, n, nl) : NULL;
        if (s != NULL) {
            s->conns = strtoll(v, NULL, 10);
        }
    }
    for (size_t i = 0; i + 1 < store_reply_len(state); i += 2) {
        size_t nl, vl;
        const char *n = store_reply_str(store_reply_elem(state, i), &nl);
        const char *v = store_reply_str(store_reply_elem(state, i + 1), &vl);
        struct lsrv *s = n != NULL && v != NULL ? srv_get(b, n, nl) : NULL;
        bool close_at;
        if (s != NULL && model_parse_state(v, vl, &s->admin, &s->deadline_ms, &close_at) < 0) {
            s->admin = MODEL_READY; /* unknown values are ignored, as admin.c does */
            s->deadline_ms = 0;
        }
        if (s != NULL) {
            s->since_ms = model_state_since(v, vl);
            s->has_since = s->since_ms != MODEL_SINCE_NONE;
        }
    }
}

int ledger_reply_parse(const struct store_reply *r, struct ledger_reply *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = r != NULL && store_reply_type(r) == STORE_R_ARRAY ? store_reply_len(r) : 0;
    if (n != 6 && n != 8) {
        return -1;
    }
    static const enum store_rtype want[6] = {STORE_R_INT, STORE_R_ARRAY, STORE_R_ARRAY,
                                             STORE_R_INT, STORE_R_INT, STORE_R_ARRAY};
    for (size_t i = 0; i < 6; i++) {
        if (store_reply_type(store_reply_elem(r, i)) != want[i]) {
            return -1;
        }
    }
    out->redis_ms = store_reply_int(store_reply_elem(r, 0));
    out->conns = store_reply_elem(r, 1);
    out->state = store_reply_elem(r, 2);
    out->opened = store_reply_int(store_reply_elem(r, 3));
    out->closed = store_reply_int(store_reply_elem(r, 4));
    out->moved = store_reply_elem(r, 5);
    if (n == 8) {
        const struct store_reply *ni = store_reply_elem(r, 6), *rk = store_reply_elem(r, 7);
        long long nv = store_reply_int(ni), rv = store_reply_int(rk);
        if (store_reply_type(ni) != STORE_R_INT || store_reply_type(rk) != STORE_R_INT ||
            nv <= 0 || nv > 1000000 || rv < 0 || rv >= nv) {
            return -1;
        }
        out->has_rank = true;
        out->ninst = (uint32_t)nv;
        out->rank = (uint32_t)rv;
    }
    /* a time or count below 0 is no reply of ledger.lua; it would also overflow the
     * clock offset and the duplicate count */
    return out->redis_ms < 0 || out->opened < 0 || out->closed < 0 ? -1 : 0;
}

int ledger_reply_moved(const struct ledger_reply *x, size_t i, long long *k, const char **srv,
                       size_t *len)
{
    const struct store_reply *e = store_reply_elem(x->moved, i);
    if (e == NULL || store_reply_type(e) != STORE_R_ARRAY || store_reply_len(e) != 2 ||
        store_reply_type(store_reply_elem(e, 0)) != STORE_R_INT ||
        store_reply_type(store_reply_elem(e, 1)) != STORE_R_STR) {
        return -1;
    }
    *k = store_reply_int(store_reply_elem(e, 0));
    *srv = store_reply_str(store_reply_elem(e, 1), len);
    return 0;
}

/* ---- batches ------------------------------------------------------------- */

static void batch_unlink(struct ledger *l, struct lbatch *x)
{
    for (struct lbatch **p = &l->live; *p != NULL; p = &(*p)->next_live) {
        if (*p == x) {
            *p = x->next_live;
            return;
        }
    }
}

static void batch_free(struct lbatch *x)
{
    free(x->strs);
    free(x->counts);
    free(x);
}

static void send_batch(struct lback *b);

/* The records an operator moved, from a reply's moved list: to the callback. */
static void report_moved(struct ledger *l, struct lback *b, const struct lbatch *x,
                         const struct ledger_reply *lr)
{
    for (size_t i = 0; l->moved != NULL && i < store_reply_len(lr->moved); i++) {
        long long k;
        size_t sl;
        const char *srv;
        if (ledger_reply_moved(lr, i, &k, &srv, &sl) < 0) {
            continue;
        }
        const char *rid = x->strs;
        for (long long j = 1; j < k && (size_t)j < x->ntouch; j++) {
            rid += strlen(rid) + 1;
        }
        if (k >= 1 && (size_t)k <= x->ntouch) {
            l->moved(b->name, rid, strlen(rid), srv, sl, l->moved_arg);
        }
    }
}

static void log_failure(const struct lback *b, const struct store_reply *r, enum store_result res)
{
    STATS_INC(ledger_failed);
    if (res == STORE_OK && store_reply_type(r) == STORE_R_ERR) {
        size_t len;
        const char *e = store_reply_str(r, &len);
        log_warn("ledger: batch for %s failed: %.*s", b->name, (int)(len > 200 ? 200 : len), e);
    }
}

static void batch_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct lbatch *x = arg;
    struct lback *b = x->b;
    if (b == NULL) { /* the ledger was freed */
        batch_free(x);
        return;
    }
    struct ledger *l = b->l;
    batch_unlink(l, x);
    if (x->touch_only) {
        struct ledger_reply lr;
        if (res == STORE_OK && ledger_reply_parse(r, &lr) == 0) {
            report_moved(l, b, x, &lr);
        } else {
            log_failure(b, r, res);
        }
        batch_free(x);
        return;
    }
    b->inflight--;
    /* this batch's opens are in Redis' counts now, or lost: either way not flying */
    const char *p = x->strs;
    for (size_t i = 0; i < x->ntouch; i++) {
        p += strlen(p) + 1;
    }
    for (size_t i = 0; i < x->nsrv; i++) {
        struct lsrv *s = srv_find(b, p, strlen(p));
        if (s != NULL) {
            s->flying -= x->counts[i];
        }
        p += strlen(p) + 1;
    }
    struct ledger_reply lr;
    if (res == STORE_OK && ledger_reply_parse(r, &lr) == 0) {
        if (lr.has_rank) { /* live instances and this one's rank (caps' room) */
            b->ninst = lr.ninst;
            b->rank = lr.rank;
        }
        int64_t now = util_now_ms();
        l->clock_lo[l->clock_next] = lr.redis_ms - now;
        l->clock_next = (l->clock_next + 1) % CLOCK_SAMPLES;
        if (l->nclock < CLOCK_SAMPLES) {
            l->nclock++;
        }
        view_apply(b, lr.conns, lr.state);
        STATS_ADD(conn_opened_events, (uint64_t)lr.opened);
        STATS_ADD(conn_closed_events, (uint64_t)lr.closed);
        STATS_ADD(conn_close_duplicates,
                  (uint64_t)lr.closed < x->nclose ? x->nclose - (uint64_t)lr.closed : 0);
        report_moved(l, b, x, &lr);
    } else {
        log_failure(b, r, res);
    }
    batch_free(x);
    while (b->nops >= LEDGER_BATCH_OPS && b->inflight < LEDGER_PIPELINE && !l->stopped &&
           store_connected(l->store)) {
        /* full batches waiting (a storm): write them now, pipelined, not a period later */
        size_t before = b->nops;
        send_batch(b);
        if (b->nops == before) {
            break; /* not sent (the store refused): the timer retries */
        }
    }
    if (b->nops > 0 && !l->stopped) {
        flush_soon(l);
    }
}

static int scratch_reserve(struct ledger *l, size_t argc, size_t nkeys)
{
    if (argc > l->argv_cap) {
        const char **v = realloc(l->argv, argc * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        l->argv = v;
        size_t *n = realloc(l->argvlen, argc * sizeof(*n));
        if (n == NULL) {
            return -1;
        }
        l->argvlen = n;
        l->argv_cap = argc;
    }
    if (nkeys > l->keys_cap) {
        char(*k)[MODEL_KEY_MAX] = realloc(l->keys, nkeys * sizeof(*k));
        if (k == NULL) {
            return -1;
        }
        l->keys = k;
        l->keys_cap = nkeys;
    }
    return 0;
}

/* Remove the first n ops from the queue, keeping the arena compact. */
static void queue_consume(struct lback *b, size_t n)
{
    if (n >= b->nops) {
        b->nops = 0;
        b->alen = 0;
        return;
    }
    uint32_t base = b->ops[n].id_off;
    memmove(b->arena, b->arena + base, b->alen - base);
    b->alen -= base;
    memmove(b->ops, b->ops + n, (b->nops - n) * sizeof(*b->ops));
    b->nops -= n;
    for (size_t i = 0; i < b->nops; i++) {
        b->ops[i].id_off -= base;
        if (b->ops[i].srv_len > 0) {
            b->ops[i].srv_off -= base;
        }
    }
}

static void arg(struct ledger *l, size_t *i, const char *p, size_t n)
{
    l->argv[*i] = p;
    l->argvlen[*i] = n;
    (*i)++;
}

/* Cluster: the record touches of ops[idx[0..k)] (one slot: the same record, as
 * when a Socket.IO session polls, or records that share a slot) as one ledger.lua
 * run without count keys, on that slot. Dropped and counted when the store cannot
 * take it: a record is adopted again at the session's next touch. */
static void send_touches(struct lback *b, const uint32_t *idx, size_t k)
{
    struct ledger *l = b->l;
    const struct cfg *c = l->cfg;
    static const char modes[] = "narf";
    char ttl[24];
    size_t argc = k + 7 + 2 * k, strs_len = 0;
    for (size_t j = 0; j < k; j++) {
        strs_len += b->ops[idx[j]].id_len + 1u;
    }
    struct lbatch *x = calloc(1, sizeof(*x));
    char *strs = malloc(strs_len);
    if (x == NULL || strs == NULL || scratch_reserve(l, argc, k) != 0) {
        goto drop;
    }
    x->b = b;
    x->touch_only = true;
    x->ntouch = k;
    x->strs = strs;
    *util_u64_dec(ttl, (uint64_t)c->session_ttl_ms) = '\0';
    size_t ai = 0;
    char *sp = strs;
    for (size_t j = 0; j < k; j++) {
        const struct lop *o = &b->ops[idx[j]];
        const char *id = b->arena + o->id_off;
        int kl = model_record_key(l->keys[j], c, b->name, id, o->id_len);
        if (kl < 0) {
            goto drop;
        }
        arg(l, &ai, l->keys[j], (size_t)kl);
        memcpy(sp, id, o->id_len);
        sp += o->id_len;
        *sp++ = '\0';
    }
    arg(l, &ai, c->instance, strlen(c->instance));
    arg(l, &ai, "0", 1); /* heartbeat and open-map TTLs: no count keys */
    arg(l, &ai, "0", 1);
    arg(l, &ai, ttl, strlen(ttl));
    arg(l, &ai, "0", 1); /* opens, closes */
    arg(l, &ai, "0", 1);
    arg(l, &ai, "0", 1); /* count keys */
    for (size_t j = 0; j < k; j++) {
        const struct lop *o = &b->ops[idx[j]];
        const char *m = strchr(modes, o->mode);
        arg(l, &ai, b->arena + o->srv_off, o->srv_len);
        arg(l, &ai, m != NULL ? m : "a", 1);
    }
    if (store_eval(l->store, l->script, (int)k, (int)ai, l->argv, l->argvlen, LEDGER_TIMEOUT_MS,
                   batch_reply, x) != 0) {
        goto drop;
    }
    x->next_live = l->live;
    l->live = x;
    STATS_INC(ledger_batches);
    return;
drop:
    if (x != NULL) {
        x->strs = strs;
        batch_free(x);
    } else {
        free(strs);
    }
    STATS_ADD(ledger_dropped, k);
}

struct touch_slot {
    uint16_t slot;
    uint32_t idx; /* the op's index: ties keep the queue's order */
};

static int touch_slot_cmp(const void *a, const void *b)
{
    const struct touch_slot *x = a, *y = b;
    if (x->slot != y->slot) {
        return x->slot < y->slot ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Cluster: the touches among the first n ops, one script run per slot. */
static void send_cluster_touches(struct lback *b, size_t n)
{
    struct ledger *l = b->l;
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        nt += b->ops[i].kind == 't';
    }
    if (nt == 0) {
        return;
    }
    struct touch_slot *ts = malloc(nt * sizeof(*ts));
    uint32_t *idx = malloc(nt * sizeof(*idx));
    if (ts == NULL || idx == NULL) {
        free(ts);
        free(idx);
        STATS_ADD(ledger_dropped, nt);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        char key[MODEL_KEY_MAX];
        int kl;
        if (o->kind != 't') {
            continue;
        }
        kl = model_record_key(key, l->cfg, b->name, b->arena + o->id_off, o->id_len);
        ts[k++] = (struct touch_slot){.slot = kl > 0 ? (uint16_t)slots_key_slot(key, (size_t)kl)
                                                     : 0,
                                      .idx = (uint32_t)i};
    }
    qsort(ts, k, sizeof(*ts), touch_slot_cmp);
    for (size_t i = 0; i < k;) {
        size_t j = i;
        while (j < k && ts[j].slot == ts[i].slot) {
            idx[j - i] = ts[j].idx;
            j++;
        }
        send_touches(b, idx, j - i);
        i = j;
    }
    free(ts);
    free(idx);
}

/* Send the first LEDGER_BATCH_OPS queued ops of b (or just the heartbeat and
 * the view when none are queued) as one script run (in a cluster: the counts in
 * one, and each record touch in its own, on the record's slot). */
/* How many of each op the first n of b's queue hold. */
struct op_counts {
    size_t nopen, nclose, ntouch;
    size_t strs_len; /* the touches' rids and the opened servers' names, NUL-terminated */
};

static struct op_counts count_ops(const struct lback *b, size_t n)
{
    struct op_counts k = {0};
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        k.nopen += o->kind == 'o';
        k.nclose += o->kind == 'c';
        k.ntouch += o->kind == 't';
        k.strs_len += o->kind == 't' ? o->id_len + 1u : o->kind == 'o' ? o->srv_len + 1u : 0;
    }
    return k;
}

/* ledger.lua's count keys of backend b for this instance into l->keys[0..7):
 * conns, share, open, insts, state, pids, old. 0 or -1 (a name too long). */
static int count_keys(struct ledger *l, const char *backend)
{
    const char *prefix = l->cfg->redis_prefix, *inst = l->cfg->instance;
    size_t bl = strlen(backend), il = strlen(inst);
    if (model_key(l->keys[0], MODEL_KEY_MAX, prefix, backend, bl, "conns") < 0 ||
        model_key_id(l->keys[1], prefix, backend, "i:", inst, il) < 0 ||
        model_key_id(l->keys[2], prefix, backend, "o:", inst, il) < 0 ||
        model_key(l->keys[3], MODEL_KEY_MAX, prefix, backend, bl, "insts") < 0 ||
        model_key(l->keys[4], MODEL_KEY_MAX, prefix, backend, bl, "state") < 0 ||
        model_key_id(l->keys[5], prefix, backend, "p:", inst, il) < 0 ||
        model_key_id(l->keys[6], prefix, backend, "o2:", inst, il) < 0) {
        return -1;
    }
    return 0;
}

/* KEYS after the count keys: each touch's record key (standalone: one run holds
 * counts and records), its rid kept at *sp for the reply. 0 or -1. */
static int push_record_keys(struct ledger *l, struct lback *b, size_t n, size_t *ai, char **sp)
{
    size_t tk = LEDGER_COUNT_KEYS;
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        if (o->kind != 't') {
            continue;
        }
        const char *id = b->arena + o->id_off;
        int kl = model_record_key(l->keys[tk], l->cfg, b->name, id, o->id_len);
        if (kl < 0) {
            return -1;
        }
        arg(l, ai, l->keys[tk], (size_t)kl);
        tk++;
        memcpy(*sp, id, o->id_len);
        *sp += o->id_len;
        *(*sp)++ = '\0';
    }
    return 0;
}

/* ARGV[1..7]: instance, heartbeat TTL, open map lifetime, record TTL, the op
 * counts and the number of count keys (the numbers in l->num, which the store
 * copies when the batch is sent). */
static void push_header(struct ledger *l, const struct op_counts *k, size_t *ai)
{
    const struct cfg *c = l->cfg;
    *util_u64_dec(l->num[0], (uint64_t)c->heartbeat_ttl_ms) = '\0';
    *util_u64_dec(l->num[1], (uint64_t)model_open_ttl_ms(c)) = '\0';
    *util_u64_dec(l->num[2], (uint64_t)c->session_ttl_ms) = '\0';
    *util_u64_dec(l->num[3], k->nopen) = '\0';
    *util_u64_dec(l->num[4], k->nclose) = '\0';
    arg(l, ai, c->instance, strlen(c->instance));
    for (size_t i = 0; i < 5; i++) {
        arg(l, ai, l->num[i], strlen(l->num[i]));
    }
    arg(l, ai, LEDGER_COUNT_KEYS_STR, 1);
}

/* The opens (uid, server), moved from queued to flying in the view, and counted
 * per distinct server into x (names at *sp, after the rids) for the reply. */
static void push_opens(struct ledger *l, struct lback *b, size_t n, struct lbatch *x,
                       size_t *ai, char **sp)
{
    char *srv_names = *sp;
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        if (o->kind != 'o') {
            continue;
        }
        const char *srv = b->arena + o->srv_off;
        arg(l, ai, b->arena + o->id_off, o->id_len);
        arg(l, ai, srv, o->srv_len);
        struct lsrv *s = srv_find(b, srv, o->srv_len);
        if (s != NULL) {
            s->queued--;
            s->flying++;
        }
        const char *q = srv_names;
        size_t t = 0;
        for (; t < x->nsrv; t++) {
            if (strlen(q) == o->srv_len && memcmp(q, srv, o->srv_len) == 0) {
                break;
            }
            q += strlen(q) + 1;
        }
        if (t == x->nsrv) {
            memcpy(*sp, srv, o->srv_len);
            *sp += o->srv_len;
            *(*sp)++ = '\0';
            x->nsrv++;
        }
        x->counts[t]++;
    }
}

/* The closes' uids, then (standalone) each touch's server and mode. */
static void push_closes_and_touches(struct ledger *l, struct lback *b, size_t n, bool touches,
                                    size_t *ai)
{
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        if (o->kind == 'c') {
            arg(l, ai, b->arena + o->id_off, o->id_len);
        }
    }
    static const char modes[] = "narf";
    for (size_t i = 0; touches && i < n; i++) {
        const struct lop *o = &b->ops[i];
        if (o->kind == 't') {
            const char *m = strchr(modes, o->mode);
            arg(l, ai, b->arena + o->srv_off, o->srv_len);
            arg(l, ai, m != NULL ? m : "a", 1);
        }
    }
}

/* A batch the store did not take: its opens go back from flying to queued (the
 * ops stay queued for the next try, the view as it was). */
static void unsend_opens(struct lback *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct lop *o = &b->ops[i];
        struct lsrv *s = o->kind == 'o' ? srv_find(b, b->arena + o->srv_off, o->srv_len) : NULL;
        if (s != NULL) {
            s->queued++;
            s->flying--;
        }
    }
}

/* One ledger.lua run for the first LEDGER_BATCH_OPS ops of b's queue:
 * KEYS = count keys [+ record keys], ARGV = header, opens, closes [, touches].
 * In a cluster the record touches go as runs of their own, on their slots. */
static void send_batch(struct lback *b)
{
    struct ledger *l = b->l;
    bool split = l->cfg->redis_cluster;
    size_t n = b->nops < LEDGER_BATCH_OPS ? b->nops : LEDGER_BATCH_OPS;
    struct op_counts k = count_ops(b, n);
    size_t nkeys = LEDGER_COUNT_KEYS + (split ? 0 : k.ntouch);
    size_t argc = nkeys + 7 + 2 * k.nopen + k.nclose + (split ? 0 : 2 * k.ntouch);
    struct lbatch *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return;
    }
    x->strs = malloc(k.strs_len + 1);
    x->counts = calloc(k.nopen + 1, sizeof(*x->counts));
    x->b = b;
    size_t ai = 0;
    char *sp = x->strs;
    if (x->strs == NULL || x->counts == NULL || scratch_reserve(l, argc, nkeys) != 0 ||
        count_keys(l, b->name) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < LEDGER_COUNT_KEYS; i++) {
        arg(l, &ai, l->keys[i], strlen(l->keys[i]));
    }
    if (!split && push_record_keys(l, b, n, &ai, &sp) != 0) {
        goto fail;
    }
    push_header(l, &k, &ai);
    push_opens(l, b, n, x, &ai, &sp);
    push_closes_and_touches(l, b, n, !split, &ai);
    x->ntouch = split ? 0 : k.ntouch;
    x->nclose = k.nclose;
    if (store_eval(l->store, l->script, (int)nkeys, (int)ai, l->argv, l->argvlen,
                   LEDGER_TIMEOUT_MS, batch_reply, x) != 0) {
        unsend_opens(b, n);
        goto fail;
    }
    b->inflight++;
    x->next_live = l->live;
    l->live = x;
    STATS_INC(ledger_batches);
    STATS_ADD(ledger_ops, n);
    if (split) {
        send_cluster_touches(b, n); /* before the queue lets go of their names */
    }
    queue_consume(b, n);
    return;
fail:
    batch_free(x);
}

static void flush(struct ledger *l, bool force)
{
    if (l->stopped || !store_connected(l->store)) {
        return;
    }
    for (struct lback *b = l->backends; b != NULL; b = b->next) {
        while (b->nops > 0 &&
               (b->inflight == 0 || (force && b->inflight < 2) ||
                (b->nops >= LEDGER_BATCH_OPS && b->inflight < LEDGER_PIPELINE))) {
            size_t before = b->nops;
            send_batch(b);
            if (b->nops == before) {
                break; /* not sent: the next period retries */
            }
        }
    }
}

void ledger_flush(struct ledger *l)
{
    flush(l, true);
}

static void flush_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct ledger *l = container_of(w, struct ledger, flush_timer);
    flush(l, false);
    if (!store_connected(l->store)) {
        /* nothing can be written: try again later, the queue keeps its bound */
        for (struct lback *b = l->backends; b != NULL; b = b->next) {
            if (b->nops > 0) {
                ev_timer_set(&l->flush_timer, 0.1, 0.);
                ev_timer_start(loop, &l->flush_timer);
                break;
            }
        }
    }
}

/* Keep the view fresh when no traffic flushes: one empty batch per backend
 * with nothing in flight (also the instance's heartbeat). */
static void view_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    ledger_refresh(container_of(w, struct ledger, view_timer));
}

void ledger_refresh(struct ledger *l)
{
    if (l->stopped || !store_connected(l->store)) {
        return;
    }
    for (size_t i = 0; i < servers_count(); i++) {
        const struct srv_backend *sb = servers_at(i);
        if (sb->http) {
            (void)back_get(l, sb->name, strlen(sb->name));
        }
    }
    for (struct lback *b = l->backends; b != NULL; b = b->next) {
        if (b->inflight == 0) {
            send_batch(b);
        }
    }
}

/* ---- life cycle ------------------------------------------------------------ */

struct ledger *ledger_new(struct ev_loop *loop, const struct cfg *c, struct store *st)
{
    struct ledger *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->loop = loop;
    l->cfg = c;
    l->store = st;
    if ((l->script = store_script_new(st, model_lua_ledger)) == NULL) {
        free(l);
        return NULL;
    }
    ev_timer_init(&l->flush_timer, flush_timer_cb, 0., 0.);
    double view = (double)c->haproxy_refresh_ms / 1000.0;
    ev_timer_init(&l->view_timer, view_timer_cb, 0.05, view > 1.0 ? 1.0 : view);
    ev_timer_start(loop, &l->view_timer);
    return l;
}

void ledger_stop(struct ledger *l)
{
    if (l == NULL) {
        return;
    }
    l->stopped = true;
    ev_timer_stop(l->loop, &l->flush_timer);
    ev_timer_stop(l->loop, &l->view_timer);
}

void ledger_free(struct ledger *l)
{
    if (l == NULL) {
        return;
    }
    ledger_stop(l);
    for (struct lbatch *x = l->live; x != NULL; x = x->next_live) {
        x->b = NULL; /* its reply (or the store's shutdown) frees it */
    }
    while (l->backends != NULL) {
        struct lback *b = l->backends;
        l->backends = b->next;
        free(b->tab);
        free(b->ops);
        free(b->arena);
        free(b);
    }
    free(l->argv);
    free(l->argvlen);
    free(l->keys);
    free(l);
}
