/* ctl_status.c - `stickyctl status`: one table (or JSON document) per backend
 * built from the keys of model.h: servers (weight, HAProxy state), state
 * (drain/maint), conns (cluster-wide), insts + i:<inst> (each live instance's
 * share). Reads only.
 *
 * JSON shape (stable; fields are only ever added):
 *   {"version": 1, "now_ms": N, "prefix": "sticky:", "backends": [
 *     {"name": "be_ws", "total_conns": N,
 *      "instances": [{"name": "web1", "heartbeat_ms": N (0: the score is not a time),
 *                     "live": true}],
 *      "servers": [{"name": "ws1", "state": "ready|drain|maint|down|unknown",
 *                   "admin": "ready|drain|maint|unknown", "admin_raw": "drain:..."|null,
 *                   "deadline_ms": N (0: none), "deadline_passed": bool,
 *                   "close_at_deadline": bool, "haproxy_state": "ready|drain|maint|down"|null,
 *                   "weight": N|null, "conns": N, "per_instance": {"web1": N},
 *                   "maxconn": N|null, "slowstart_ms": N, "ramp_since_ms": N|null,
 *                   "ramp_pct": N (100: no ramp or done)}]}]}
 * maxconn: the fleet-wide cap (the config's limits, else HAProxy's server maxconn
 * as the last agent reported it); the ramp: the state hash's "ready:<ms>" and the
 * config's limits.<backend>.slowstart (read with --config). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"
#include "ctl.h"
#include "ctl_fmt.h"
#include "model.h"
#include "util.h"

#define CTL_STATUS_VERSION 1

struct inst_view {
    const char *name; /* borrowed from the insts reply */
    int64_t hb_ms; /* 0 when hb_bad */
    bool hb_bad;   /* the score is not a unix-ms time (1e300, nan, -inf, ...) */
    bool live;
    struct ctl_reply share; /* HGETALL i:<inst>, live instances only */
};

struct srv_view {
    const char *name;                  /* borrowed from the names list */
    const struct ctl_reply *admin_raw; /* state hash value, or NULL (ready) */
    enum model_state admin;
    bool admin_bad;
    int64_t deadline_ms;
    bool close_at_deadline;
    long long weight; /* -1: not in the servers hash */
    char hastate[16]; /* "" when not in the servers hash */
    long long conns;
    long long maxconn;    /* the fleet-wide cap, 0: none */
    int64_t slowstart_ms; /* limits.<backend>.slowstart for it (the config read) */
    int64_t since_ms;     /* "ready:<ms>", or MODEL_SINCE_NONE */
    unsigned ramp_pct;    /* 100: no ramp, or over */
};

struct bview {
    const char *name;
    struct ctl_reply servers, conns, state, insts;
    struct inst_view *inst;
    size_t ninst, nlive;
    struct ctl_names names;
    struct srv_view *srv;
    size_t nsrv;
    long long total;
};

static void bview_free(struct bview *b)
{
    ctl_reply_free(&b->servers);
    ctl_reply_free(&b->conns);
    ctl_reply_free(&b->state);
    ctl_reply_free(&b->insts);
    for (size_t i = 0; i < b->ninst; i++) {
        ctl_reply_free(&b->inst[i].share);
    }
    free(b->inst);
    ctl_names_release(&b->names);
    free(b->srv);
}

static long long reply_ll(const struct ctl_reply *r)
{
    int64_t v = 0;
    if (r == NULL || r->str == NULL || ctl_parse_i64(r->str, r->len, &v) < 0) {
        return 0;
    }
    return v;
}

static int inst_cmp(const void *a, const void *b)
{
    return ctl_natcmp(((const struct inst_view *)a)->name, ((const struct inst_view *)b)->name);
}

static int hgetall(struct ctl *c, const char *backend, const char *suffix, struct ctl_reply *out)
{
    char key[CTL_KEY_MAX];
    if (ctl_key(c, key, backend, suffix) < 0) {
        return CTL_USAGE;
    }
    const char *argv[] = {"HGETALL", key};
    return ctl_call(c, out, 2, argv, NULL) < 0 ? CTL_REDIS : CTL_OK;
}

static int add_fields(struct ctl_names *ns, const struct ctl_reply *hash)
{
    for (size_t i = 0; i + 1 < hash->n; i += 2) {
        if (hash->elem[i].str != NULL &&
            ctl_names_add(ns, hash->elem[i].str, hash->elem[i].len) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Read every key of the backend and join them into rows. */
static int load_backend(struct ctl *c, const char *name, int64_t now, struct bview *b)
{
    memset(b, 0, sizeof(*b));
    b->name = name;
    int rc;
    if ((rc = hgetall(c, name, "servers", &b->servers)) != CTL_OK ||
        (rc = hgetall(c, name, "conns", &b->conns)) != CTL_OK ||
        (rc = hgetall(c, name, "state", &b->state)) != CTL_OK) {
        return rc;
    }
    char key[CTL_KEY_MAX];
    if (ctl_key(c, key, name, "insts") < 0) {
        return CTL_USAGE;
    }
    const char *zargv[] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
    if (ctl_call(c, &b->insts, 5, zargv, NULL) < 0) {
        return CTL_REDIS;
    }
    b->inst = calloc(b->insts.n / 2 + 1, sizeof(*b->inst));
    if (b->inst == NULL) {
        goto oom;
    }
    for (size_t i = 0; i + 1 < b->insts.n; i += 2) {
        struct inst_view *iv = &b->inst[b->ninst++];
        iv->name = b->insts.elem[i].str ? b->insts.elem[i].str : "?";
        /* scores print as integers for unix ms, but any double can be stored: one
         * that is not a time never reaches an integer cast or a subtraction */
        const struct ctl_reply *sc = &b->insts.elem[i + 1];
        iv->hb_bad = sc->str == NULL || ctl_parse_score_ms(sc->str, sc->len, &iv->hb_ms) < 0;
        /* the agents drop an instance once its heartbeat is older than the
         * TTL; until the next resync it is listed but its share is gone */
        iv->live = !iv->hb_bad && now - iv->hb_ms <= c->cfg.heartbeat_ttl_ms;
        if (!iv->live) {
            continue;
        }
        b->nlive++;
        char suffix[CTL_KEY_MAX];
        snprintf(suffix, sizeof(suffix), "i:%s", iv->name);
        if ((rc = hgetall(c, name, suffix, &iv->share)) != CTL_OK) {
            return rc;
        }
    }
    /* by name: the zset's heartbeat order changes with every resync */
    if (b->ninst > 1) {
        qsort(b->inst, b->ninst, sizeof(*b->inst), inst_cmp);
    }
    if (add_fields(&b->names, &b->servers) < 0 || add_fields(&b->names, &b->conns) < 0 ||
        add_fields(&b->names, &b->state) < 0) {
        goto oom;
    }
    for (size_t i = 0; i < b->ninst; i++) {
        if (b->inst[i].live && add_fields(&b->names, &b->inst[i].share) < 0) {
            goto oom;
        }
    }
    ctl_names_sort(&b->names);
    b->srv = calloc(b->names.n + 1, sizeof(*b->srv));
    if (b->srv == NULL) {
        goto oom;
    }
    for (size_t i = 0; i < b->names.n; i++) {
        struct srv_view *s = &b->srv[b->nsrv++];
        s->name = b->names.v[i];
        s->admin = MODEL_READY;
        s->weight = -1;
        s->admin_raw = ctl_reply_hget(&b->state, s->name);
        if (s->admin_raw != NULL && s->admin_raw->str != NULL &&
            model_parse_state(s->admin_raw->str, s->admin_raw->len, &s->admin, &s->deadline_ms,
                              &s->close_at_deadline) < 0) {
            s->admin_bad = true;
            s->admin = MODEL_READY;
        }
        const struct ctl_reply *sv = ctl_reply_hget(&b->servers, s->name);
        long long hamax = 0;
        if (sv != NULL && sv->str != NULL) {
            /* "<weight> <haproxy state>[ <HAProxy maxconn>]" */
            char st[16] = "";
            long long w = -1;
            if (sscanf(sv->str, "%lld %15s %lld", &w, st, &hamax) >= 1) {
                s->weight = w;
                snprintf(s->hastate, sizeof(s->hastate), "%s", st);
            }
        }
        struct cfg_srv_limits lim;
        cfg_limits_of(&c->cfg, name, s->name, &lim);
        s->maxconn = lim.maxconn > 0 ? (long long)lim.maxconn : hamax > 0 ? hamax : 0;
        s->slowstart_ms = lim.slowstart_ms;
        s->since_ms = s->admin_raw != NULL && s->admin_raw->str != NULL
                          ? model_state_since(s->admin_raw->str, s->admin_raw->len)
                          : MODEL_SINCE_NONE;
        s->ramp_pct = aff_ramp_permille(s->since_ms, now, s->slowstart_ms) / 10;
        s->conns = reply_ll(ctl_reply_hget(&b->conns, s->name));
        b->total += s->conns;
    }
    return CTL_OK;
oom:
    ctl_fail("out of memory");
    return CTL_REDIS;
}

static const char *admin_name(const struct srv_view *s)
{
    return s->admin_bad ? "unknown" : model_state_name(s->admin);
}

/* What the operator should read: the cluster's admin state wins, then
 * HAProxy's own view (a server failing its checks is down everywhere). */
static const char *effective_state(const struct srv_view *s)
{
    if (s->admin_bad || s->admin != MODEL_READY) {
        return admin_name(s);
    }
    if (strcmp(s->hastate, "down") == 0) {
        return "down";
    }
    return "ready";
}

static void state_text(const struct srv_view *s, int64_t now, char *buf, size_t len)
{
    char t[32], d[32], esc[CTL_ESC_MAX];
    if (s->admin_bad) {
        snprintf(buf, len, "unknown (%s)", ctl_esc(s->admin_raw->str, esc));
        return;
    }
    switch (s->admin) {
    case MODEL_MAINT:
        snprintf(buf, len, "maint");
        return;
    case MODEL_DRAIN:
        if (s->deadline_ms == 0) {
            snprintf(buf, len, "drain");
            return;
        }
        ctl_fmt_hms(s->deadline_ms, t, sizeof(t));
        ctl_fmt_dur(s->deadline_ms - now, d, sizeof(d));
        snprintf(buf, len, "drain until %s (%s %s%s)%s", t, s->deadline_ms > now ? "in" : "passed",
                 d, s->deadline_ms > now ? "" : " ago", s->close_at_deadline ? " close" : "");
        return;
    default:
        break;
    }
    if (s->hastate[0] != '\0' && strcmp(s->hastate, "ready") != 0) {
        /* down from health checks, or drain/maint set on one HAProxy by hand */
        snprintf(buf, len, "%s (HAProxy)", ctl_esc(s->hastate, esc));
    } else if (s->slowstart_ms > 0 && s->since_ms == 0) {
        snprintf(buf, len, "ready, slow start pending"); /* an agent saw it unusable */
    } else if (s->ramp_pct < 100) {
        snprintf(buf, len, "ready, slow start %u %%", s->ramp_pct);
    } else {
        snprintf(buf, len, "ready");
    }
}

/* ---- table ---------------------------------------------------------------------- */

#define CELL 96

static void print_table(struct ctl *c, const struct bview *b, int64_t now)
{
    UNUSED(c);
    size_t ncol = 4 + b->nlive, nrow = b->nsrv + 1;
    char(*cells)[CELL] = calloc(ncol * nrow, CELL);
    size_t *width = calloc(ncol, sizeof(*width));
    if (cells == NULL || width == NULL) {
        ctl_fail("out of memory");
        goto out;
    }
#define AT(r, col) cells[(r)*ncol + (col)]
    snprintf(AT(0, 0), CELL, "SERVER");
    snprintf(AT(0, 1), CELL, "STATE");
    snprintf(AT(0, 2), CELL, "CONNS");
    for (size_t i = 0, k = 0; i < b->ninst; i++) {
        if (b->inst[i].live) {
            (void)ctl_fmt_escape(b->inst[i].name, strlen(b->inst[i].name), AT(0, 3 + k++), CELL);
        }
    }
    snprintf(AT(0, ncol - 1), CELL, "WEIGHT");
    for (size_t r = 0; r < b->nsrv; r++) {
        const struct srv_view *s = &b->srv[r];
        (void)ctl_fmt_escape(s->name, strlen(s->name), AT(r + 1, 0), CELL);
        state_text(s, now, AT(r + 1, 1), CELL);
        if (s->maxconn > 0) { /* CONNS/MAX: the fleet-wide cap */
            snprintf(AT(r + 1, 2), CELL, "%lld/%lld", s->conns, s->maxconn);
        } else {
            snprintf(AT(r + 1, 2), CELL, "%lld", s->conns);
        }
        for (size_t i = 0, k = 0; i < b->ninst; i++) {
            if (b->inst[i].live) {
                snprintf(AT(r + 1, 3 + k++), CELL, "%lld",
                         reply_ll(ctl_reply_hget(&b->inst[i].share, s->name)));
            }
        }
        if (s->weight >= 0) {
            snprintf(AT(r + 1, ncol - 1), CELL, "%lld", s->weight);
        } else {
            snprintf(AT(r + 1, ncol - 1), CELL, "-");
        }
    }
    for (size_t r = 0; r < nrow; r++) {
        for (size_t col = 0; col < ncol; col++) {
            size_t l = strlen(AT(r, col));
            width[col] = l > width[col] ? l : width[col];
        }
    }
    char esc[CTL_ESC_MAX];
    printf("backend %s: %zu server%s, %lld live connection%s, %zu live instance%s\n",
           ctl_esc(b->name, esc),
           b->nsrv, b->nsrv == 1 ? "" : "s", b->total, b->total == 1 ? "" : "s", b->nlive,
           b->nlive == 1 ? "" : "s");
    for (size_t r = 0; r < nrow; r++) {
        for (size_t col = 0; col < ncol; col++) {
            bool left = col < 2; /* names and states left, numbers right */
            bool last = col + 1 == ncol;
            if (left) {
                printf("%-*s", last ? 0 : (int)width[col], AT(r, col));
            } else {
                printf("%*s", (int)width[col], AT(r, col));
            }
            printf("%s", last ? "\n" : "  ");
        }
    }
    for (size_t i = 0; i < b->ninst; i++) {
        if (b->inst[i].hb_bad) {
            printf("(instance %s: heartbeat score is not a time, not counted)\n",
                   ctl_esc(b->inst[i].name, esc));
        } else if (!b->inst[i].live) {
            char d[32];
            ctl_fmt_dur(now - b->inst[i].hb_ms, d, sizeof(d));
            printf("(instance %s: last heartbeat %s ago, not counted)\n",
                   ctl_esc(b->inst[i].name, esc), d);
        }
    }
#undef AT
out:
    free(cells);
    free(width);
}

/* ---- JSON ----------------------------------------------------------------------- */

static json_t *backend_json(const struct bview *b, int64_t now)
{
    json_t *jb = json_object(), *insts = json_array(), *srvs = json_array();
    if (jb == NULL || insts == NULL || srvs == NULL) {
        json_decref(jb);
        json_decref(insts);
        json_decref(srvs);
        return NULL;
    }
    json_object_set_new(jb, "name", ctl_json_cstr(b->name));
    json_object_set_new(jb, "total_conns", json_integer(b->total));
    for (size_t i = 0; i < b->ninst; i++) {
        json_array_append_new(insts,
                              json_pack("{s:o, s:I, s:b}", "name", ctl_json_cstr(b->inst[i].name),
                                        "heartbeat_ms", (json_int_t)b->inst[i].hb_ms, "live",
                                        b->inst[i].live));
    }
    json_object_set_new(jb, "instances", insts);
    for (size_t r = 0; r < b->nsrv; r++) {
        const struct srv_view *s = &b->srv[r];
        json_t *js = json_object(), *per = json_object();
        if (js == NULL || per == NULL) {
            json_decref(js);
            json_decref(per);
            continue;
        }
        json_object_set_new(js, "name", ctl_json_cstr(s->name));
        json_object_set_new(js, "state", json_string(effective_state(s)));
        json_object_set_new(js, "admin", json_string(admin_name(s)));
        json_object_set_new(js, "admin_raw",
                            s->admin_raw && s->admin_raw->str
                                ? ctl_json_str(s->admin_raw->str, s->admin_raw->len)
                                : json_null());
        json_object_set_new(js, "deadline_ms", json_integer(s->deadline_ms));
        json_object_set_new(
            js, "deadline_passed",
            json_boolean(s->admin == MODEL_DRAIN && s->deadline_ms > 0 && s->deadline_ms <= now));
        json_object_set_new(js, "close_at_deadline", json_boolean(s->close_at_deadline));
        json_object_set_new(js, "haproxy_state",
                            s->hastate[0] ? ctl_json_cstr(s->hastate) : json_null());
        json_object_set_new(js, "weight", s->weight >= 0 ? json_integer(s->weight) : json_null());
        json_object_set_new(js, "conns", json_integer(s->conns));
        json_object_set_new(js, "maxconn", s->maxconn > 0 ? json_integer(s->maxconn) : json_null());
        json_object_set_new(js, "slowstart_ms", json_integer(s->slowstart_ms));
        json_object_set_new(js, "ramp_since_ms", s->since_ms != MODEL_SINCE_NONE
                                                     ? json_integer(s->since_ms)
                                                     : json_null());
        json_object_set_new(js, "ramp_pct", json_integer(s->ramp_pct));
        for (size_t i = 0; i < b->ninst; i++) {
            if (b->inst[i].live) {
                /* a key must be UTF-8 too, or jansson drops the entry */
                char key[2 * CTL_ESC_MAX];
                const char *n = b->inst[i].name;
                size_t nl = strlen(n);
                if (nl >= CTL_ESC_MAX || ctl_fmt_utf8_bytes(n, nl, key, sizeof(key)) < 0) {
                    continue;
                }
                json_object_set_new(
                    per, key,
                    json_integer(reply_ll(ctl_reply_hget(&b->inst[i].share, s->name))));
            }
        }
        json_object_set_new(js, "per_instance", per);
        json_array_append_new(srvs, js);
    }
    json_object_set_new(jb, "servers", srvs);
    return jb;
}

/* ---- command ---------------------------------------------------------------------- */

int ctl_status(struct ctl *c, const char *backend)
{
    struct ctl_names bes = {0};
    json_t *root = NULL, *jbes = NULL;
    int rc = CTL_OK;
    if (backend != NULL) {
        rc = ctl_check_known(c, backend, NULL, false);
        if (rc == CTL_OK && ctl_names_add(&bes, backend, strlen(backend)) < 0) {
            ctl_fail("out of memory");
            rc = CTL_REDIS;
        }
    } else {
        rc = ctl_scan_backends(c, &bes);
    }
    if (rc != CTL_OK) {
        goto out;
    }
    int64_t now = util_now_ms();
    if (c->json) {
        root = json_object();
        jbes = json_array();
        if (root == NULL || jbes == NULL) {
            json_decref(jbes);
            ctl_fail("out of memory");
            rc = CTL_REDIS;
            goto out;
        }
        json_object_set_new(root, "version", json_integer(CTL_STATUS_VERSION));
        json_object_set_new(root, "now_ms", json_integer(now));
        json_object_set_new(root, "prefix", ctl_json_cstr(c->cfg.redis_prefix));
        json_object_set_new(root, "backends", jbes);
    } else if (bes.n == 0) {
        printf("no backends under prefix %s (no agent has reported yet?)\n", c->cfg.redis_prefix);
    }
    for (size_t i = 0; i < bes.n; i++) {
        struct bview b;
        rc = load_backend(c, bes.v[i], now, &b);
        if (rc == CTL_OK) {
            if (c->json) {
                json_t *jb = backend_json(&b, now);
                if (jb != NULL) {
                    json_array_append_new(jbes, jb);
                }
            } else {
                printf("%s", i ? "\n" : "");
                print_table(c, &b, now);
            }
        }
        bview_free(&b);
        if (rc != CTL_OK) {
            goto out;
        }
    }
    if (c->json) {
        if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) < 0) {
            rc = CTL_REDIS;
            goto out;
        }
        putchar('\n');
    }
out:
    json_decref(root);
    ctl_names_release(&bes);
    return rc;
}
