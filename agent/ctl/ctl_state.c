/* ctl_state.c - `stickyctl drain|undrain|ready|maint`: a server's cluster-wide
 * admin state in <prefix>{<backend>}:state (the values model_parse_state reads),
 * then a server-state event so every agent applies it at once (they also poll).
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "ctl_fmt.h"
#include "events.h"
#include "model.h"
#include "util.h"

static void fmt_state(enum model_state st, int64_t deadline, bool close_at, int64_t now, char *buf,
                      size_t len)
{
    char t[32], d[32];
    switch (st) {
    case MODEL_MAINT:
        snprintf(buf, len, "maint");
        break;
    case MODEL_DRAIN:
        if (deadline == 0) {
            snprintf(buf, len, "drain (no deadline)");
        } else {
            ctl_fmt_hms(deadline, t, sizeof(t));
            ctl_fmt_dur(deadline - now, d, sizeof(d));
            snprintf(buf, len, "drain until %s (%s %s%s)%s", t, deadline > now ? "in" : "passed", d,
                     deadline > now ? "" : " ago", close_at ? ", then close" : "");
        }
        break;
    default:
        snprintf(buf, len, "ready");
        break;
    }
}

/* Write (or with value NULL, remove) a server's state and tell the agents. */
static int set_state(struct ctl *c, const char *backend, const char *server, const char *value,
                     const struct event *e)
{
    int rc = c->force ? CTL_OK : ctl_check_known(c, backend, server, true);
    if (rc != CTL_OK) {
        return rc;
    }
    char key[CTL_KEY_MAX];
    if (ctl_key(c, key, backend, "state") < 0) {
        return CTL_USAGE;
    }
    struct ctl_reply prev, r;
    const char *gargv[] = {"HGET", key, server};
    if (ctl_call(c, &prev, 3, gargv, NULL) < 0) {
        return CTL_REDIS;
    }
    int64_t now = util_now_ms();
    char was[404] = "ready";
    enum model_state pst;
    int64_t pdl;
    bool pclose;
    if (prev.str != NULL) {
        if (model_parse_state(prev.str, prev.len, &pst, &pdl, &pclose) == 0) {
            fmt_state(pst, pdl, pclose, now, was, sizeof(was));
        } else {
            /* at most 100 bytes of it, escaped: 4 x 100 + quotes fit was */
            _Static_assert(sizeof(was) >= 3, "room for the quotes");
            size_t n = ctl_fmt_escape(prev.str, prev.len < 100 ? prev.len : 100, was + 1,
                                      sizeof(was) - 2);
            was[0] = '\'';
            was[n + 1] = '\'';
            was[n + 2] = '\0';
        }
    }
    ctl_reply_free(&prev);
    const char *sargv[] = {"HSET", key, server, value};
    const char *dargv[] = {"HDEL", key, server};
    if (value != NULL ? ctl_call(c, &r, 4, sargv, NULL) < 0 : ctl_call(c, &r, 3, dargv, NULL) < 0) {
        return CTL_REDIS;
    }
    ctl_reply_free(&r);
    long long receivers;
    rc = ctl_publish(c, e, &receivers);
    char now_txt[160];
    fmt_state((enum model_state)e->state, e->deadline_ms, e->close_at_deadline, now, now_txt,
              sizeof(now_txt));
    char eb[CTL_ESC_MAX], es[CTL_ESC_MAX];
    if (rc == CTL_OK) {
        printf("%s/%s: %s (was %s); event sent to %lld subscriber%s\n", ctl_esc(backend, eb),
               ctl_esc(server, es), now_txt, was, receivers, receivers == 1 ? "" : "s");
    } else {
        printf("%s/%s: %s (was %s); event NOT published, agents apply it at their next poll\n",
               ctl_esc(backend, eb), ctl_esc(server, es), now_txt, was);
    }
    return rc;
}


/* Owns the server-state event the three commands publish: args[0]/args[1]
 * (backend, server) go to state st, written to Redis as value (NULL removes
 * the entry, which reads as ready). Returns set_state's CTL_* code. */
__attribute__((warn_unused_result)) static int send_state(struct ctl *c, char **args,
                                                          const char *value,
                                                          enum model_state st,
                                                          int64_t deadline, bool close_at)
{
    struct event e = {.kind = EVENT_SERVER_STATE,
                      .ts_ms = util_now_ms(),
                      .origin = c->origin,
                      .backend = args[0],
                      .server = args[1],
                      .state = st,
                      .deadline_ms = deadline,
                      .close_at_deadline = close_at};
    return set_state(c, args[0], args[1], value, &e);
}

int ctl_cmd_drain(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    int64_t deadline = 0;
    if (c->has_deadline && c->deadline_ms > 0) {
        deadline = util_now_ms() + c->deadline_ms;
    }
    char value[64];
    snprintf(value, sizeof(value), "drain:%lld%s", (long long)deadline,
             c->close_at_deadline ? ":close" : "");
    return send_state(c, args, value, MODEL_DRAIN, deadline, c->close_at_deadline);
}

int ctl_cmd_undrain(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    return send_state(c, args, NULL, MODEL_READY, 0, false);
}

int ctl_cmd_maint(struct ctl *c, char **args, int nargs)
{
    UNUSED(nargs);
    return send_state(c, args, "maint", MODEL_MAINT, 0, false);
}
