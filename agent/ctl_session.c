/* ctl_session.c - `stickyctl lookup` and `stickyctl move`: one session record
 * (<prefix>{<backend>}:s:<sid>, written by assign.c) read, or its pin rewritten
 * atomically with a session-moved event. With --key the id was derived by the
 * CLI (c->sid, c->sid_prev) before the call.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_fmt.h"
#include "events.h"
#include "fleet.h"
#include "util.h"

static const char *field(const struct ctl_reply *h, const char *name)
{
    const struct ctl_reply *v = ctl_reply_hget(h, name);
    return v != NULL ? v->str : NULL;
}

static int64_t field_i64(const struct ctl_reply *h, const char *name, bool *ok)
{
    const struct ctl_reply *v = ctl_reply_hget(h, name);
    int64_t x = 0;
    *ok = v != NULL && v->str != NULL && ctl_parse_i64(v->str, v->len, &x) == 0;
    return x;
}

int ctl_cmd_lookup(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    const char *backend = args[0], *sid = args[1];
    /* with --key, a record not yet carried over since a secret rotation still
     * lives under the previous secret's id */
    const char *ids[2] = {sid, c->sid_prev[0] ? c->sid_prev : NULL};
    struct ctl_reply h = {0}, ttl = {0};
    for (size_t i = 0; i < ARRAY_SIZE(ids) && ids[i] != NULL && h.n == 0; i++) {
        char key[CTL_KEY_MAX], suffix[CTL_SID_MAX + 4];
        snprintf(suffix, sizeof(suffix), "s:%s", ids[i]);
        if (ctl_key(c, key, backend, suffix) < 0) {
            return CTL_USAGE;
        }
        ctl_reply_free(&h);
        ctl_reply_free(&ttl);
        const char *hargv[] = {"HGETALL", key};
        const char *targv[] = {"PTTL", key};
        if (ctl_call(c, &h, 2, hargv, NULL) < 0) {
            return CTL_REDIS;
        }
        if (ctl_call(c, &ttl, 2, targv, NULL) < 0) {
            ctl_reply_free(&h);
            return CTL_REDIS;
        }
        sid = ids[i];
    }
    int rc = CTL_OK;
    if (h.n == 0) {
        /* a typo in the backend would otherwise read as "no such session" */
        rc = ctl_check_known(c, backend, NULL, false);
        if (rc == CTL_OK) {
            if (c->key != NULL) {
                ctl_fail("no session for key '%s' in backend '%s'", c->key, backend);
            } else {
                ctl_fail("no such session '%s' in backend '%s'", sid, backend);
            }
            rc = CTL_NOT_FOUND;
        }
        goto out;
    }
    bool has_created, has_seen, has_rc;
    int64_t created = field_i64(&h, "created", &has_created);
    int64_t seen = field_i64(&h, "seen", &has_seen);
    int64_t reconnects = field_i64(&h, "reconnects", &has_rc);
    const char *server = field(&h, "server"), *inst = field(&h, "inst");
    long long ttl_ms = ttl.integer; /* -1: no expiry; -2: gone since the HGETALL */
    char tc[40] = "-", ts[40] = "-", tt[40];
    if (has_created) {
        ctl_fmt_iso(created, tc, sizeof(tc));
    }
    if (has_seen) {
        ctl_fmt_iso(seen, ts, sizeof(ts));
    }
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "backend", json_string(backend));
        json_object_set_new(o, "sid", json_string(sid));
        json_object_set_new(o, "key", c->key ? json_string(c->key) : json_null());
        json_object_set_new(o, "server", server ? json_string(server) : json_null());
        json_object_set_new(o, "created_ms", has_created ? json_integer(created) : json_null());
        json_object_set_new(o, "created", has_created ? json_string(tc) : json_null());
        json_object_set_new(o, "seen_ms", has_seen ? json_integer(seen) : json_null());
        json_object_set_new(o, "seen", has_seen ? json_string(ts) : json_null());
        json_object_set_new(o, "reconnects", has_rc ? json_integer(reconnects) : json_null());
        json_object_set_new(o, "inst", inst ? json_string(inst) : json_null());
        json_object_set_new(o, "ttl_ms", json_integer(ttl_ms < -1 ? 0 : ttl_ms));
        if (o == NULL || json_dumpf(o, stdout, JSON_INDENT(2)) < 0) {
            rc = CTL_REDIS;
        }
        putchar('\n');
        json_decref(o);
        goto out;
    }
    if (ttl_ms == -1) {
        snprintf(tt, sizeof(tt), "none (no expiry)");
    } else if (ttl_ms < 0) {
        snprintf(tt, sizeof(tt), "expired");
    } else {
        ctl_fmt_dur(ttl_ms, tt, sizeof(tt));
    }
    printf("backend     %s\n", backend);
    if (c->key != NULL) {
        printf("key         %s\n", c->key);
    }
    printf("session     %s\n", sid);
    printf("server      %s\n", server ? server : "-");
    printf("created     %s\n", tc);
    printf("seen        %s\n", ts);
    printf("reconnects  %lld\n", (long long)reconnects);
    printf("instance    %s\n", inst ? inst : "-");
    printf("ttl         %s\n", tt);
out:
    ctl_reply_free(&h);
    ctl_reply_free(&ttl);
    return rc;
}

/* ---- writes ------------------------------------------------------------------------------ */

/* Atomic "repin only if the record exists": a session that expired between
 * the operator's lookup and the move must not come back as a bare pin.
 * KEYS[1] = session record, ARGV[1] = server. Returns the old server, or false. */
static const char move_lua[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
                               "local old = redis.call('HGET', KEYS[1], 'server') or ''\n"
                               "redis.call('HSET', KEYS[1], 'server', ARGV[1])\n"
                               "return old\n";

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
    enum fleet_admin adm = FLEET_READY;
    int64_t deadline = 0;
    bool close_at = false;
    const char *why = NULL;
    if (st.str != NULL && fleet_parse_state(st.str, st.len, &adm, &deadline, &close_at) == 0) {
        if (adm == FLEET_MAINT) {
            why = "is in maint";
        } else if (adm == FLEET_DRAIN && deadline > 0 && deadline <= util_now_ms()) {
            why = "is past its drain deadline";
        }
    }
    if (why == NULL && view.str != NULL && strstr(view.str, " down") != NULL) {
        why = "is down in HAProxy";
    }
    if (why != NULL) {
        printf("note: %s %s: the agents will re-pin this session elsewhere at its next "
               "connection\n",
               server, why);
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
    const char *ids[2] = {sid, c->sid_prev[0] ? c->sid_prev : NULL}; /* as in lookup */
    struct ctl_reply r = {0};
    for (size_t i = 0; i < ARRAY_SIZE(ids) && ids[i] != NULL && r.type != STORE_R_STR; i++) {
        char key[CTL_KEY_MAX], suffix[CTL_SID_MAX + 4];
        snprintf(suffix, sizeof(suffix), "s:%s", ids[i]);
        if (ctl_key(c, key, backend, suffix) < 0) {
            return CTL_USAGE;
        }
        ctl_reply_free(&r);
        const char *argv[] = {"EVAL", move_lua, "1", key, server};
        if (ctl_call(c, &r, 5, argv, NULL) < 0) {
            return CTL_REDIS;
        }
        sid = ids[i];
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
    if (strcmp(from, server) == 0) {
        printf("%s: session %s is already pinned to %s\n", backend, sid, server);
        return CTL_OK;
    }
    struct event e = {.kind = EVENT_SESSION_MOVED,
                      .ts_ms = util_now_ms(),
                      .origin = c->origin,
                      .backend = backend,
                      .sid = sid,
                      .from_server = from,
                      .server = server};
    long long receivers;
    rc = ctl_publish(c, &e, &receivers);
    printf("%s: session %s moved %s -> %s (its next connection goes there)%s\n", backend, sid,
           from[0] ? from : "-", server,
           rc == CTL_OK ? "" : "; the session-moved event was NOT published");
    if (rc == CTL_OK) {
        rc = warn_unusable(c, backend, server);
    }
    return rc;
}
