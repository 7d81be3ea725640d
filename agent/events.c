/* events.c - struct event <-> protobuf-c (proto/events.proto). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.pb-c.h"

static const char *const kind_names[] = {
    "none", "session-assigned", "session-repinned", "session-moved",
    "server-state", "instance-joined", "instance-left",
};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == EVENT_KIND_COUNT, "kind names");

const char *events_kind_name(enum event_kind k)
{
    return (unsigned)k < EVENT_KIND_COUNT ? kind_names[k] : "unknown";
}

/* protobuf-c wants char * for strings it will not modify when packing. */
static char *s_or_empty(const char *s)
{
    return (char *)(s != NULL ? s : "");
}

int events_encode(const struct event *e, uint8_t **out, size_t *len)
{
    Stickyd__V1__Event env = STICKYD__V1__EVENT__INIT;
    Stickyd__V1__SessionAssigned sa = STICKYD__V1__SESSION_ASSIGNED__INIT;
    Stickyd__V1__SessionRepinned sr = STICKYD__V1__SESSION_REPINNED__INIT;
    Stickyd__V1__SessionMoved sm = STICKYD__V1__SESSION_MOVED__INIT;
    Stickyd__V1__ServerStateChanged ss = STICKYD__V1__SERVER_STATE_CHANGED__INIT;
    Stickyd__V1__InstanceJoined ij = STICKYD__V1__INSTANCE_JOINED__INIT;
    Stickyd__V1__InstanceLeft il = STICKYD__V1__INSTANCE_LEFT__INIT;

    env.version = EVENTS_VERSION;
    env.ts_ms = e->ts_ms;
    env.origin = s_or_empty(e->origin);
    switch (e->kind) {
    case EVENT_SESSION_ASSIGNED:
        sa.backend = s_or_empty(e->backend);
        sa.sid = s_or_empty(e->sid);
        sa.server = s_or_empty(e->server);
        env.kind_case = STICKYD__V1__EVENT__KIND_SESSION_ASSIGNED;
        env.session_assigned = &sa;
        break;
    case EVENT_SESSION_REPINNED:
        sr.backend = s_or_empty(e->backend);
        sr.sid = s_or_empty(e->sid);
        sr.from_server = s_or_empty(e->from_server);
        sr.to_server = s_or_empty(e->server);
        sr.reason = s_or_empty(e->reason);
        env.kind_case = STICKYD__V1__EVENT__KIND_SESSION_REPINNED;
        env.session_repinned = &sr;
        break;
    case EVENT_SESSION_MOVED:
        sm.backend = s_or_empty(e->backend);
        sm.sid = s_or_empty(e->sid);
        sm.from_server = s_or_empty(e->from_server);
        sm.to_server = s_or_empty(e->server);
        env.kind_case = STICKYD__V1__EVENT__KIND_SESSION_MOVED;
        env.session_moved = &sm;
        break;
    case EVENT_SERVER_STATE:
        ss.backend = s_or_empty(e->backend);
        ss.server = s_or_empty(e->server);
        ss.state = (Stickyd__V1__ServerStateChanged__State)e->state;
        ss.deadline_ms = e->deadline_ms;
        ss.close_at_deadline = e->close_at_deadline;
        env.kind_case = STICKYD__V1__EVENT__KIND_SERVER_STATE_CHANGED;
        env.server_state_changed = &ss;
        break;
    case EVENT_INSTANCE_JOINED:
        ij.instance = s_or_empty(e->instance);
        env.kind_case = STICKYD__V1__EVENT__KIND_INSTANCE_JOINED;
        env.instance_joined = &ij;
        break;
    case EVENT_INSTANCE_LEFT:
        il.instance = s_or_empty(e->instance);
        il.reason = s_or_empty(e->reason);
        env.kind_case = STICKYD__V1__EVENT__KIND_INSTANCE_LEFT;
        env.instance_left = &il;
        break;
    default:
        return -1;
    }
    size_t n = stickyd__v1__event__get_packed_size(&env);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return -1;
    }
    *len = stickyd__v1__event__pack(&env, buf);
    *out = buf;
    return 0;
}

int events_decode(const uint8_t *p, size_t len, struct event *e)
{
    memset(e, 0, sizeof(*e));
    Stickyd__V1__Event *env = stickyd__v1__event__unpack(NULL, len, p);
    if (env == NULL) {
        return -1;
    }
    e->owner_ = env;
    e->version = env->version;
    e->ts_ms = env->ts_ms;
    e->origin = env->origin;
    switch (env->kind_case) {
    case STICKYD__V1__EVENT__KIND_SESSION_ASSIGNED:
        e->kind = EVENT_SESSION_ASSIGNED;
        e->backend = env->session_assigned->backend;
        e->sid = env->session_assigned->sid;
        e->server = env->session_assigned->server;
        break;
    case STICKYD__V1__EVENT__KIND_SESSION_REPINNED:
        e->kind = EVENT_SESSION_REPINNED;
        e->backend = env->session_repinned->backend;
        e->sid = env->session_repinned->sid;
        e->from_server = env->session_repinned->from_server;
        e->server = env->session_repinned->to_server;
        e->reason = env->session_repinned->reason;
        break;
    case STICKYD__V1__EVENT__KIND_SESSION_MOVED:
        e->kind = EVENT_SESSION_MOVED;
        e->backend = env->session_moved->backend;
        e->sid = env->session_moved->sid;
        e->from_server = env->session_moved->from_server;
        e->server = env->session_moved->to_server;
        break;
    case STICKYD__V1__EVENT__KIND_SERVER_STATE_CHANGED:
        e->kind = EVENT_SERVER_STATE;
        e->backend = env->server_state_changed->backend;
        e->server = env->server_state_changed->server;
        e->state = (unsigned)env->server_state_changed->state < MODEL_ADMIN_COUNT
                       ? (enum model_state)env->server_state_changed->state
                       : MODEL_READY;
        e->deadline_ms = env->server_state_changed->deadline_ms;
        e->close_at_deadline = env->server_state_changed->close_at_deadline;
        break;
    case STICKYD__V1__EVENT__KIND_INSTANCE_JOINED:
        e->kind = EVENT_INSTANCE_JOINED;
        e->instance = env->instance_joined->instance;
        break;
    case STICKYD__V1__EVENT__KIND_INSTANCE_LEFT:
        e->kind = EVENT_INSTANCE_LEFT;
        e->instance = env->instance_left->instance;
        e->reason = env->instance_left->reason;
        break;
    default:
        e->kind = EVENT_NONE; /* a newer publisher's kind: ignore, not an error */
        break;
    }
    return 0;
}

void events_release(struct event *e)
{
    if (e->owner_ != NULL) {
        stickyd__v1__event__free_unpacked(e->owner_, NULL);
        e->owner_ = NULL;
    }
}

static void fmt_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%02d:%02d:%02d.%03dZ", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ms % 1000));
}

void events_format(const struct event *e, char *buf, size_t len)
{
    char ts[32], dl[32];
    fmt_time(e->ts_ms, ts, sizeof(ts));
    const char *origin = e->origin != NULL && e->origin[0] ? e->origin : "?";
    const char *kind = events_kind_name(e->kind);
    switch (e->kind) {
    case EVENT_SESSION_ASSIGNED:
        snprintf(buf, len, "%s %s %s %s sid=%s -> %s", ts, origin, kind, e->backend, e->sid,
                 e->server);
        break;
    case EVENT_SESSION_REPINNED:
    case EVENT_SESSION_MOVED:
        snprintf(buf, len, "%s %s %s %s sid=%s %s -> %s%s%s", ts, origin, kind, e->backend,
                 e->sid, e->from_server, e->server, e->reason && e->reason[0] ? " reason=" : "",
                 e->reason ? e->reason : "");
        break;
    case EVENT_SERVER_STATE:
        if (e->state == MODEL_DRAIN && e->deadline_ms > 0) {
            fmt_time(e->deadline_ms, dl, sizeof(dl));
            snprintf(buf, len, "%s %s %s %s/%s drain until %s%s", ts, origin, kind, e->backend,
                     e->server, dl, e->close_at_deadline ? " (close at deadline)" : "");
        } else {
            snprintf(buf, len, "%s %s %s %s/%s %s", ts, origin, kind, e->backend, e->server,
                     model_state_name(e->state));
        }
        break;
    case EVENT_INSTANCE_JOINED:
    case EVENT_INSTANCE_LEFT:
        snprintf(buf, len, "%s %s %s %s%s%s", ts, origin, kind, e->instance,
                 e->reason && e->reason[0] ? " reason=" : "", e->reason ? e->reason : "");
        break;
    default:
        snprintf(buf, len, "%s %s event of a kind this build does not know", ts, origin);
        break;
    }
}
