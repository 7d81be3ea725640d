/* ctl_watch.c - `stickyctl watch`: every change event on the events channel,
 * decoded and printed as one line (or one JSON object) until SIGINT/SIGTERM.
 * Undecodable messages and a lost Redis connection are reported on stderr and
 * are not fatal: the store resubscribes by itself.
 */
#include <ev.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_fmt.h"
#include "events.h"
#include "util.h"

struct watch {
    struct ctl *c;
    ev_signal sig_int, sig_term;
    ev_timer health; /* reports a lost / regained Redis connection */
    char last_err[200];
    bool out_broken;
};

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v != NULL) {
        json_object_set_new(o, k, ctl_json_cstr(v)); /* invalid UTF-8 kept as U+00NN */
    }
}

static json_t *event_json(const struct event *e)
{
    char ts[40];
    ctl_fmt_iso(e->ts_ms, ts, sizeof(ts));
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "kind",
                        json_string(e->kind == EVENT_NONE ? "unknown" : events_kind_name(e->kind)));
    json_object_set_new(o, "version", json_integer(e->version));
    json_object_set_new(o, "ts_ms", json_integer(e->ts_ms));
    json_object_set_new(o, "time", json_string(ts));
    set_str(o, "origin", e->origin);
    switch (e->kind) {
    case EVENT_SESSION_ASSIGNED:
    case EVENT_SESSION_REPINNED:
    case EVENT_SESSION_MOVED:
        set_str(o, "backend", e->backend);
        set_str(o, "sid", e->sid);
        set_str(o, "server", e->server);
        if (e->kind != EVENT_SESSION_ASSIGNED) {
            set_str(o, "from_server", e->from_server);
        }
        if (e->kind == EVENT_SESSION_REPINNED) {
            set_str(o, "reason", e->reason);
        }
        break;
    case EVENT_SERVER_STATE:
        set_str(o, "backend", e->backend);
        set_str(o, "server", e->server);
        json_object_set_new(o, "state", json_string(model_state_name(e->state)));
        json_object_set_new(o, "deadline_ms", json_integer(e->deadline_ms));
        json_object_set_new(o, "close_at_deadline", json_boolean(e->close_at_deadline));
        break;
    case EVENT_INSTANCE_JOINED:
    case EVENT_INSTANCE_LEFT:
        set_str(o, "instance", e->instance);
        if (e->kind == EVENT_INSTANCE_LEFT) {
            set_str(o, "reason", e->reason);
        }
        break;
    default:
        break;
    }
    return o;
}

static void on_message(const char *channel, const uint8_t *msg, size_t len, void *arg)
{
    struct watch *w = arg;
    struct event e;
    if (events_decode(msg, len, &e) < 0) {
        ctl_fail("undecodable message on %s (%zu bytes), skipped", channel, len);
        return;
    }
    if (w->c->json) {
        json_t *o = event_json(&e);
        char *line = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (line != NULL) {
            printf("%s\n", line);
        }
        free(line);
        json_decref(o);
    } else {
        char line[1024];
        ctl_fmt_event(&e, line, sizeof(line)); /* names escaped: one line, no terminal codes */
        printf("%s\n", line);
    }
    events_release(&e);
    /* one event, one line, now: the reader is often a pipe or a script */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        w->out_broken = true;
        ev_break(w->c->loop, EVBREAK_ALL);
    }
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    UNUSED(s);
    UNUSED(revents);
    ev_break(loop, EVBREAK_ALL);
}

static void on_health(struct ev_loop *loop, ev_timer *t, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct watch *w = container_of(t, struct watch, health);
    const char *err = store_last_error(ctl_redis_store(w->c->redis));
    if (strcmp(err, w->last_err) == 0) {
        return;
    }
    if (err[0] != '\0') {
        ctl_fail("redis: %s; reconnecting (events published meanwhile are lost)", err);
    } else {
        ctl_fail("redis: reconnected");
    }
    snprintf(w->last_err, sizeof(w->last_err), "%s", err);
}

int ctl_cmd_watch(struct ctl *c, char **args, int nargs)
{
    UNUSED(args);
    UNUSED(nargs);
    struct watch w = {.c = c};
    if (store_subscribe(ctl_redis_store(c->redis), c->cfg.events_channel, on_message, &w) < 0) {
        ctl_fail("cannot subscribe to %s: out of memory", c->cfg.events_channel);
        return CTL_REDIS;
    }
    ev_signal_init(&w.sig_int, on_stop_signal, SIGINT);
    ev_signal_init(&w.sig_term, on_stop_signal, SIGTERM);
    ev_signal_start(c->loop, &w.sig_int);
    ev_signal_start(c->loop, &w.sig_term);
    ev_timer_init(&w.health, on_health, 1., 1.);
    ev_timer_start(c->loop, &w.health);
    ev_run(c->loop, 0);
    ev_timer_stop(c->loop, &w.health);
    ev_signal_stop(c->loop, &w.sig_int);
    ev_signal_stop(c->loop, &w.sig_term);
    return CTL_OK; /* Ctrl-C, SIGTERM or a closed stdout: all normal ends */
}
