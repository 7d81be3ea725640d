/* ctl.h - what every stickyctl command shares: the run context, exit codes,
 * error reporting, key names and the "is this backend/server known" checks.
 *
 * Only stickyctl uses these (agent/ctl/stickyctl.c and agent/ctl/ctl_*.c). The helpers
 * here read the key layout of model.h; only ctl_publish writes (an event).
 */
#ifndef STICKYD_CTL_H
#define STICKYD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ctl_redis.h"

/* Exit codes scripts can rely on (printed by `stickyctl --help`). */
enum ctl_exit {
    CTL_OK = 0,
    CTL_NOT_FOUND = 1, /* lookup: no such session */
    CTL_USAGE = 2,     /* unknown command/option, bad duration, missing args, bad config */
    CTL_UNKNOWN = 3,   /* unknown backend or server */
    CTL_REDIS = 4,     /* Redis unreachable, timed out, or answered an error */
    CTL_EXIT_COUNT
};

#define CTL_KEY_MAX 512
#define CTL_NAME_MAX 64 /* backend and server names, as servers.h (SRV_NAME_MAX) */
#define CTL_SID_MAX 256 /* session ids: the agents' are at most 64 (sid.h) */

struct ctl {
    struct cfg cfg;
    struct ev_loop *loop;
    struct ctl_redis *redis;
    bool json, force, close_at_deadline, has_deadline;
    int64_t deadline_ms; /* --deadline, a duration */
    int64_t timeout_ms;  /* --timeout */
    char origin[300];    /* "stickyctl@<host>", the events' origin */
    const char *key;     /* --key: the affinity key, else NULL */
    char sid[72];        /* --key: its record id under the current secret */
    char sid_prev[72];   /* --key: under the previous secret, or "" */
};

/* Names from Redis and from events are bytes someone else wrote. Text output passes
 * them through ctl_esc (ctl_fmt_escape: control bytes and invalid UTF-8 as \xNN), JSON
 * output through ctl_json_str (invalid bytes as U+00NN, never a dropped field). */
#define CTL_ESC_MAX 1024
/* s (a C string) escaped into buf (CTL_ESC_MAX); returns buf, for printf. */
const char *ctl_esc(const char *s, char buf[CTL_ESC_MAX]);
/* A new JSON string of s[0..n) (ctl_fmt_utf8_bytes), or NULL on out of memory. */
struct json_t;
struct json_t *ctl_json_str(const char *s, size_t n);
/* The same of a C string; NULL gives NULL. */
struct json_t *ctl_json_cstr(const char *s);

/* "stickyctl: <message>" on stderr, one line, escaped as ctl_esc does. */
void ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One command, waited for; on failure prints the reason (ctl_fail) and
 * returns -1, which callers turn into CTL_REDIS. */
int ctl_call(struct ctl *c, struct ctl_reply *out, int argc, const char **argv,
             const size_t *argvlen) __attribute__((warn_unused_result));

/* "<prefix>{<backend>}:<suffix>" into buf (CTL_KEY_MAX). 0 or -1 (too long,
 * reported). */
int ctl_key(const struct ctl *c, char *buf, const char *backend, const char *suffix)
    __attribute__((warn_unused_result));
/* The session record key of id in backend (model_record_key: its own slot with
 * redis.cluster) into buf (CTL_KEY_MAX). 0 or -1 (too long, reported). */
int ctl_record_key(const struct ctl *c, char *buf, const char *backend, const char *id)
    __attribute__((warn_unused_result));

/* A sorted, de-duplicated list of names (owned copies). */
struct ctl_names {
    char **v;
    size_t n, cap;
};
int ctl_names_add(struct ctl_names *ns, const char *s, size_t len)
    __attribute__((warn_unused_result));
bool ctl_names_has(const struct ctl_names *ns, const char *s);
void ctl_names_sort(struct ctl_names *ns); /* natural order: ws2 before ws10 */
/* "a, b, c" (or "none"), cut with ", ..." when it does not fit. */
void ctl_names_join(const struct ctl_names *ns, char *buf, size_t len);
void ctl_names_release(struct ctl_names *ns);

/* Every backend with a servers or state key under the prefix (SCAN). Returns
 * CTL_OK or CTL_REDIS. */
int ctl_scan_backends(struct ctl *c, struct ctl_names *out);

/* The servers stickyd knows in a backend: fields of its servers, conns and
 * state hashes. *exists tells whether any of those keys exists (the backend is
 * known). CTL_OK or CTL_REDIS. */
int ctl_known_servers(struct ctl *c, const char *backend, struct ctl_names *out, bool *exists);

/* CTL_OK when backend (and server, unless NULL) are known; otherwise reports
 * them with the known names (and the --force hint when force_hint) and returns
 * CTL_UNKNOWN, or CTL_REDIS. */
int ctl_check_known(struct ctl *c, const char *backend, const char *server, bool force_hint);

/* PUBLISH an event on the configured channel; *receivers gets the number of
 * subscribers that got it. CTL_OK or CTL_REDIS. */
struct event;
int ctl_publish(struct ctl *c, const struct event *e, long long *receivers);

/* The commands: CTL_* exit codes; args were checked by the CLI (count, names). */
int ctl_status(struct ctl *c, const char *backend);         /* ctl_status.c */
int ctl_cmd_lookup(struct ctl *c, char **args, int nargs);  /* ctl_session.c */
int ctl_cmd_move(struct ctl *c, char **args, int nargs);    /* ctl_session.c */
int ctl_cmd_drain(struct ctl *c, char **args, int nargs);   /* ctl_state.c */
int ctl_cmd_undrain(struct ctl *c, char **args, int nargs); /* ctl_state.c */
int ctl_cmd_maint(struct ctl *c, char **args, int nargs);   /* ctl_state.c */
int ctl_cmd_watch(struct ctl *c, char **args, int nargs);   /* ctl_watch.c */

#endif
