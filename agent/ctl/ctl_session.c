/* ctl_session.c - `stickyctl lookup` and `stickyctl move`: one session record
 * (<prefix>{<backend>}:s:<record id>, or <prefix><backend>:s:{<record id>} in a
 * Redis Cluster: model.h) read, or its pin rewritten
 * atomically (move.lua) with a session-moved event. The operator names a session
 * by its cookie (either format) or its record id; with --key the id was derived
 * by the CLI (c->sid, c->sid_prev) before the call.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_fmt.h"
#include "events.h"
#include "model.h"
#include "sid.h"
#include "util.h"

/* The record ids an operator's sid names (sid_record_of), or --key's. */
struct ids {
    const char *v[2];
    char rid[SID_BUF], legacy[SID_BUF];
};

static void ids_of(const struct ctl *c, const char *sid, struct ids *out)
{
    memset(out, 0, sizeof(*out));
    if (c->key != NULL) { /* a record not yet carried over since a rotation */
        out->v[0] = c->sid;
        out->v[1] = c->sid_prev[0] ? c->sid_prev : NULL;
        return;
    }
    (void)sid_record_of(sid, strlen(sid), out->rid, out->legacy);
    out->v[0] = out->rid;
    out->v[1] = out->legacy[0] ? out->legacy : NULL;
}

/* One session as stickyctl shows it, from either record format. */
struct shown {
    char server[CTL_NAME_MAX * 2], inst[256];
    int64_t created, seen;
    bool has_times, moved;
};

/* Read record key: the string record, or a "1" session's hash (before its
 * first connection since the upgrade). 1 found, 0 not, -1 Redis failed. */
static int read_record(struct ctl *c, const char *key, struct shown *o, long long *ttl_ms)
{
    struct ctl_reply t = {0}, v = {0}, ttl = {0};
    const char *targv[] = {"TYPE", key};
    int found = 0;
    if (ctl_call(c, &t, 2, targv, NULL) < 0) {
        return -1;
    }
    bool is_str = t.str != NULL && strcmp(t.str, "string") == 0;
    bool is_hash = t.str != NULL && strcmp(t.str, "hash") == 0;
    ctl_reply_free(&t);
    const char *gargv[] = {is_str ? "GET" : "HGETALL", key};
    const char *pargv[] = {"PTTL", key};
    if ((is_str || is_hash) &&
        (ctl_call(c, &v, 2, gargv, NULL) < 0 || ctl_call(c, &ttl, 2, pargv, NULL) < 0)) {
        ctl_reply_free(&v);
        return -1;
    }
    struct model_record rec;
    if (is_str && v.str != NULL && model_record_parse(v.str, v.len, &rec) == 0) {
        snprintf(o->server, sizeof(o->server), "%.*s", (int)rec.server_len, rec.server);
        snprintf(o->inst, sizeof(o->inst), "%.*s", (int)rec.inst_len, rec.inst);
        o->created = rec.created_ms;
        o->seen = rec.seen_ms;
        o->has_times = true;
        o->moved = rec.moved;
        found = 1;
    } else if (is_hash && v.n > 0) {
        const struct ctl_reply *f = ctl_reply_hget(&v, "server");
        const struct ctl_reply *i = ctl_reply_hget(&v, "inst");
        const struct ctl_reply *cr = ctl_reply_hget(&v, "created");
        const struct ctl_reply *se = ctl_reply_hget(&v, "seen");
        snprintf(o->server, sizeof(o->server), "%s", f != NULL && f->str ? f->str : "");
        snprintf(o->inst, sizeof(o->inst), "%s", i != NULL && i->str ? i->str : "");
        o->has_times = cr != NULL && se != NULL && cr->str != NULL && se->str != NULL &&
                       ctl_parse_i64(cr->str, cr->len, &o->created) == 0 &&
                       ctl_parse_i64(se->str, se->len, &o->seen) == 0;
        found = 1;
    }
    *ttl_ms = ttl.integer;
    ctl_reply_free(&v);
    ctl_reply_free(&ttl);
    return found;
}

int ctl_cmd_lookup(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    const char *backend = args[0], *sid = args[1];
    struct ids ids;
    struct shown o = {0};
    long long ttl_ms = 0; /* -1: no expiry; -2: gone since the read */
    int found = 0;
    const char *found_id = NULL;
    ids_of(c, sid, &ids);
    for (size_t i = 0; i < ARRAY_SIZE(ids.v) && ids.v[i] != NULL && found == 0; i++) {
        found_id = ids.v[i];
        char key[CTL_KEY_MAX];
        if (ctl_record_key(c, key, backend, ids.v[i]) < 0) {
            return CTL_USAGE;
        }
        if ((found = read_record(c, key, &o, &ttl_ms)) < 0) {
            return CTL_REDIS;
        }
    }
    if (found == 0) {
        /* a typo in the backend would otherwise read as "no such session" */
        int rc = ctl_check_known(c, backend, NULL, false);
        if (rc == CTL_OK) {
            if (c->key != NULL) {
                ctl_fail("no session for key '%s' in backend '%s'", c->key, backend);
            } else {
                ctl_fail("no such session '%s' in backend '%s'", sid, backend);
            }
            rc = CTL_NOT_FOUND;
        }
        return rc;
    }
    char tc[40] = "-", ts[40] = "-", tt[40];
    if (o.has_times) {
        ctl_fmt_iso(o.created, tc, sizeof(tc));
        ctl_fmt_iso(o.seen, ts, sizeof(ts));
    }
    if (c->json) {
        int rc = CTL_OK;
        json_t *j = json_object();
        json_object_set_new(j, "backend", ctl_json_cstr(backend));
        json_object_set_new(j, "sid", ctl_json_cstr(c->key != NULL ? found_id : sid));
        json_object_set_new(j, "record", ctl_json_cstr(found_id));
        json_object_set_new(j, "key", c->key ? ctl_json_cstr(c->key) : json_null());
        json_object_set_new(j, "server", o.server[0] ? ctl_json_cstr(o.server) : json_null());
        json_object_set_new(j, "created_ms", o.has_times ? json_integer(o.created) : json_null());
        json_object_set_new(j, "created", o.has_times ? json_string(tc) : json_null());
        json_object_set_new(j, "seen_ms", o.has_times ? json_integer(o.seen) : json_null());
        json_object_set_new(j, "seen", o.has_times ? json_string(ts) : json_null());
        json_object_set_new(j, "reconnects", json_null()); /* no longer counted */
        json_object_set_new(j, "moved", json_boolean(o.moved));
        json_object_set_new(j, "inst", o.inst[0] ? ctl_json_cstr(o.inst) : json_null());
        json_object_set_new(j, "ttl_ms", json_integer(ttl_ms < -1 ? 0 : ttl_ms));
        if (j == NULL || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) < 0) {
            rc = CTL_REDIS;
        }
        putchar('\n');
        json_decref(j);
        return rc;
    }
    if (ttl_ms == -1) {
        snprintf(tt, sizeof(tt), "none (no expiry)");
    } else if (ttl_ms < 0) {
        snprintf(tt, sizeof(tt), "expired");
    } else {
        ctl_fmt_dur(ttl_ms, tt, sizeof(tt));
    }
    char esc[CTL_ESC_MAX];
    printf("backend     %s\n", ctl_esc(backend, esc));
    if (c->key != NULL) {
        printf("key         %s\n", ctl_esc(c->key, esc));
    }
    printf("session     %s\n", ctl_esc(c->key != NULL ? found_id : sid, esc));
    printf("record      %s\n", ctl_esc(found_id, esc));
    printf("server      %s%s\n", o.server[0] ? ctl_esc(o.server, esc) : "-",
           o.moved ? " (moved by an operator)" : "");
    printf("created     %s\n", tc);
    printf("seen        %s\n", ts);
    printf("instance    %s\n", o.inst[0] ? ctl_esc(o.inst, esc) : "-");
    printf("ttl         %s\n", tt);
    return CTL_OK;
}

/* ---- writes ------------------------------------------------------------------------------ */

/* After a move: say so when the agents will not keep the pin (the target is in
 * maint, past its drain deadline, or down in HAProxy). CTL_OK or CTL_REDIS. */
static int warn_unusable(struct ctl *c, const char *backend, const char *server)
{
    char skey[CTL_KEY_MAX], vkey[CTL_KEY_MAX];
    if (ctl_key(c, skey, backend, "state") < 0 || ctl_key(c, vkey, backend, "servers") < 0) {
        return CTL_USAGE;
    }
    const char *sargv[] = {"HGET", skey, server};
    const char *vargv[] = {"HGET", vkey, server};
    struct ctl_reply st, view;
    if (ctl_call(c, &st, 3, sargv, NULL) < 0) {
        return CTL_REDIS;
    }
    if (ctl_call(c, &view, 3, vargv, NULL) < 0) {
        ctl_reply_free(&st);
        return CTL_REDIS;
    }
    enum model_state adm = MODEL_READY;
    int64_t deadline = 0;
    bool close_at = false;
    const char *why = NULL;
    if (st.str != NULL && model_parse_state(st.str, st.len, &adm, &deadline, &close_at) == 0) {
        if (adm == MODEL_MAINT) {
            why = "is in maint";
        } else if (adm == MODEL_DRAIN && deadline > 0 && deadline <= util_now_ms()) {
            why = "is past its drain deadline";
        }
    }
    if (why == NULL && view.str != NULL && strstr(view.str, " down") != NULL) {
        why = "is down in HAProxy";
    }
    if (why != NULL) {
        char esc[CTL_ESC_MAX];
        printf("note: %s %s: the agents will re-pin this session elsewhere at its next "
               "connection\n",
               ctl_esc(server, esc), why);
    }
    ctl_reply_free(&st);
    ctl_reply_free(&view);
    return CTL_OK;
}

int ctl_cmd_move(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    const char *backend = args[0], *sid = args[1], *server = args[2];
    int rc = c->force ? CTL_OK : ctl_check_known(c, backend, server, true);
    if (rc != CTL_OK) {
        return rc;
    }
    struct ids ids;
    ids_of(c, sid, &ids);
    struct ctl_reply r = {0};
    char key[CTL_KEY_MAX], legacy[CTL_KEY_MAX];
    if (ctl_record_key(c, key, backend, ids.v[0]) < 0) {
        return CTL_USAGE;
    }
    /* move.lua touches one slot: in a cluster the legacy record has another */
    const char *lid = ids.v[1] != NULL && !c->cfg.redis_cluster ? ids.v[1] : ids.v[0];
    if (ctl_record_key(c, legacy, backend, lid) < 0) {
        return CTL_USAGE;
    }
    const char *argv[] = {"EVAL", model_lua_move, "2", key, legacy, server};
    if (ctl_call(c, &r, 6, argv, NULL) < 0) {
        return CTL_REDIS;
    }
    if (r.type != STORE_R_STR) { /* false comes back as nil */
        ctl_reply_free(&r);
        if (c->key != NULL) {
            ctl_fail("no session for key '%s' in backend '%s'", c->key, backend);
        } else {
            ctl_fail("no such session '%s' in backend '%s'", sid, backend);
        }
        return CTL_NOT_FOUND;
    }
    char from[CTL_NAME_MAX * 2];
    snprintf(from, sizeof(from), "%s", r.str);
    ctl_reply_free(&r);
    char eb[CTL_ESC_MAX], es[CTL_ESC_MAX], ef[CTL_ESC_MAX], et[CTL_ESC_MAX];
    if (strcmp(from, server) == 0) {
        printf("%s: session %s is already pinned to %s\n", ctl_esc(backend, eb),
               ctl_esc(sid, es), ctl_esc(server, et));
        return CTL_OK;
    }
    struct event e = {.kind = EVENT_SESSION_MOVED,
                      .ts_ms = util_now_ms(),
                      .origin = c->origin,
                      .backend = backend,
                      .sid = ids.v[0], /* the agents know records by this id */
                      .from_server = from,
                      .server = server};
    long long receivers;
    rc = ctl_publish(c, &e, &receivers);
    printf("%s: session %s moved %s -> %s (its next connection goes there)%s\n",
           ctl_esc(backend, eb), ctl_esc(sid, es), from[0] ? ctl_esc(from, ef) : "-",
           ctl_esc(server, et),
           rc == CTL_OK ? "" : "; the session-moved event was NOT published");
    if (rc == CTL_OK) {
        rc = warn_unusable(c, backend, server);
    }
    return rc;
}
