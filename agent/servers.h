/* servers.h - which servers exist in each backend, their weight and state.
 *
 * The agent's local view, filled either from the static list in the config or
 * by hapi.c from the local HAProxy's runtime API (refreshed periodically), and
 * overlaid with the cluster-wide drain/maint state read from Redis. Pure data:
 * no I/O here. Pointers returned are borrowed until the next servers_* update.
 */
#ifndef STICKYD_SERVERS_H
#define STICKYD_SERVERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "names.h"

struct cfg;

#define SRV_NAME_MAX NAMES_MAX /* see names.h */

struct srv {
    char name[SRV_NAME_MAX];
    uint32_t weight;      /* configured weight (not the drain-forced 0) */
    enum model_state state; /* from HAProxy or static (READY) */
    uint32_t scur;        /* HAProxy's current sessions, when known */
    uint32_t maxconn;     /* HAProxy's maxconn on the server line (show stat slim); 0: none */
};

struct srv_backend {
    char name[SRV_NAME_MAX];
    struct srv *servers;
    size_t nservers;
    /* HAProxy proxy mode http, or not known: false only for a proxy known to be
     * something else (mode tcp, such as the SPOE agents' own backend), which
     * carries no WebSocket, so fleet keeps no counts for it */
    bool http;
};

/* Replace the whole view with the static list of the config. 0 or -1. */
int servers_load_static(const struct cfg *c) __attribute__((warn_unused_result));

/* Replace one backend's server list (copied). Creates the backend if new
 * (http = true until servers_set_http says otherwise). 0/-1. */
int servers_set_backend(const char *backend, const struct srv *srvs, size_t n)
    __attribute__((warn_unused_result));

/* Record a backend's proxy mode (see srv_backend.http). 0, or -1 when no
 * backend has that name. */
int servers_set_http(const char *backend, bool http) __attribute__((warn_unused_result));

/* Drop backends not named in keep[0..n) (after a full refresh). */
void servers_retain(const char *const *keep, size_t n);

const struct srv_backend *servers_find(const char *backend, size_t len);
const struct srv *servers_find_server(const struct srv_backend *b, const char *name, size_t len);
size_t servers_count(void);
const struct srv_backend *servers_at(size_t i);
void servers_clear(void);

/* s[0..n) into a name field of SRV_NAME_MAX bytes, NUL-terminated: 0, or -1 when it
 * does not fit (a name is never cut: a cut name would be another server's). */
int servers_copy_name(char dst[SRV_NAME_MAX], const char *s, size_t n)
    __attribute__((warn_unused_result));

const char *model_state_name(enum model_state s);

#endif
