/* hapi.h - an async client for the local HAProxy's runtime API (stats socket).
 *
 * Owns the periodic refresh of the servers view (servers.h) from "show servers
 * state" + "show stat", and a FIFO of admin commands for the fleet module. It
 * speaks the non-interactive CLI only: one connection per batch ("c1;c2\n",
 * read to EOF), nonblocking connect, a deadline per batch and a bounded output
 * buffer, so a dead or stuck HAProxy costs the loop nothing. No Redis here.
 */
#ifndef STICKYD_HAPI_H
#define STICKYD_HAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "servers.h"

struct ev_loop;
struct cfg;
struct hapi;

/* Deadline of one batch (connect + write + read to EOF). */
#define HAPI_TIMEOUT_MS 2000
/* Largest output accepted from one batch ("show stat" is ~1 KiB per server). */
#define HAPI_MAX_OUTPUT (16u * 1024 * 1024)
/* Commands waiting beyond this are refused (hapi_command returns -1). */
#define HAPI_MAX_QUEUE 4096
/* Longest command line accepted (without the trailing newline). */
#define HAPI_MAX_CMD 1024
#define HAPI_MAX_HOOKS 8

/* Completion of one command. ok=false on transport failure (refused, timeout,
 * oversized output, shutting down) or, for the commands whose success is an
 * empty reply (set state, shutdown sessions), when HAProxy answered with a
 * message. text/len: HAProxy's reply without its terminating empty line, or a
 * description of the failure; borrowed for the duration of the call, always
 * NUL-terminated. The callback may submit new commands; it must not call
 * hapi_free. */
typedef void (*hapi_cb)(void *arg, bool ok, const char *text, size_t len);

/* Called after each successful refresh, once the servers view was installed
 * (the fleet module resyncs its counts from srv.scur there). It may submit
 * commands; it must not call hapi_free. */
typedef void (*hapi_refresh_fn)(void *arg);

/* Connect lazily to c->haproxy_socket ("unix:/path", "/path" or "host:port")
 * and start refreshing every c->haproxy_refresh_ms, the first refresh at the
 * next loop iteration. A failed refresh is retried after 100 ms, doubling up to
 * min(period, 1 s), until one succeeds. c is only read during the call. NULL
 * when the address does not parse (logged) or memory is short. */
struct hapi *hapi_new(struct ev_loop *loop, const struct cfg *c);

/* Stop everything. Pending and in-flight commands complete with ok=false
 * ("hapi: shutting down") from inside this call; their callbacks must not
 * submit new commands (they would be refused). Does not touch the view. */
void hapi_free(struct hapi *h);

/* SIGHUP: take c's haproxy_socket and haproxy_refresh_ms (batches in flight
 * finish on the old address). c is only read during the call. 0, or -1 when
 * c has no usable address (logged; the old settings stay). */
int hapi_reconfigure(struct hapi *h, const struct cfg *c) __attribute__((warn_unused_result));

/* At least one refresh has succeeded since hapi_new. */
bool hapi_ready(const struct hapi *h);
/* The last refresh succeeded (false while HAProxy is unreachable). */
bool hapi_healthy(const struct hapi *h);

/* Pid of the HAProxy process that answered the last refresh ("show info"), so
 * that the servers view's scur can be told apart from an older process's after a
 * reload; 0 when unknown or unhealthy. */
long hapi_pid(const struct hapi *h);

/* Queue a raw command (no ';' or newline: one command per batch). ok means
 * HAProxy answered and closed; the reply text is for the caller to judge.
 * 0 when queued (cb will run exactly once, always from the loop, never from
 * inside this call); -1 when refused (cb will never run). */
int hapi_command(struct hapi *h, const char *cmd, hapi_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* "set server <backend>/<server> state <state>", state one of "ready",
 * "drain", "maint". ok only when HAProxy replied with an empty line; a
 * refresh then starts at once (unless one is in flight). Names
 * must be non-empty, < SRV_NAME_MAX and free of spaces, ';', '/' and control
 * characters. 0 or -1 as hapi_command. */
int hapi_set_server_state(struct hapi *h, const char *backend, const char *server,
                          const char *state, hapi_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* "shutdown sessions server <backend>/<server>". As above. */
int hapi_shutdown_sessions(struct hapi *h, const char *backend, const char *server, hapi_cb cb,
                           void *arg) __attribute__((warn_unused_result));

/* Register a hook run after each successful refresh. 0, or -1 when full. */
int hapi_on_refresh(struct hapi *h, hapi_refresh_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Start a refresh now unless one is in flight (tests, SIGHUP). */
void hapi_refresh_now(struct hapi *h);

/* ---- pure parsers (no I/O), exposed for the unit tests ---- */

/* The "Pid: N" line of a "show info" reply; 0 when absent or malformed. */
long hapi_parse_info_pid(const char *text, size_t len);

/* HAProxy 2.6 srv_op_state / srv_admin_state (include/haproxy/server-t.h). */
#define HAPI_OP_STOPPED 0u
#define HAPI_OP_STARTING 1u
#define HAPI_OP_RUNNING 2u
#define HAPI_OP_STOPPING 3u
#define HAPI_ADMF_FMAINT 0x01u
#define HAPI_ADMF_IMAINT 0x02u
#define HAPI_ADMF_CMAINT 0x04u /* "disabled" in the config; stays after "state ready" */
#define HAPI_ADMF_FDRAIN 0x08u
#define HAPI_ADMF_IDRAIN 0x10u
#define HAPI_ADMF_RMAINT 0x20u
#define HAPI_ADMF_HMAINT 0x40u /* FQDN set from the CLI: not a maintenance state */
#define HAPI_ADMF_MAINT (HAPI_ADMF_FMAINT | HAPI_ADMF_IMAINT | HAPI_ADMF_RMAINT)
#define HAPI_ADMF_DRAIN (HAPI_ADMF_FDRAIN | HAPI_ADMF_IDRAIN)

/* MAINT if any maintenance flag; else DOWN if stopped; else DRAIN if any drain
 * flag or soft-stopping; else READY. Pure. */
enum srv_state hapi_map_state(unsigned op_state, unsigned admin_state);

/* One server as parsed: the backend it belongs to and its view entry. */
struct hapi_row {
    char backend[SRV_NAME_MAX];
    bool http; /* the backend's mode is http or unknown (srv_backend.http) */
    struct srv srv;
};

/* Rows in the order HAProxy listed them. Owns rows; free with hapi_table_free. */
struct hapi_table {
    struct hapi_row *rows;
    size_t n, cap;
    size_t skipped; /* rows whose names do not fit SRV_NAME_MAX */
};

void hapi_table_free(struct hapi_table *t);

/* Split the output of a batch into the reply of its first command (lines up
 * to the first empty line, which ends every reply) and the rest. Returns 0
 * with *reply, *rlen (without the empty line) and *rest, *restlen, or -1 when
 * no empty line terminates the first reply (truncated output). Pure. */
int hapi_split_reply(const char *text, size_t len, const char **reply, size_t *rlen,
                     const char **rest, size_t *restlen) __attribute__((warn_unused_result));

/* Append the servers of a "show servers state" reply (format version 1,
 * columns found by their header names) to t. 0, or -1 with a message in err
 * and t unchanged (a malformed line rejects the whole reply: a partial view
 * would look like vanished servers). Pure. */
int hapi_parse_servers_state(const char *text, size_t len, struct hapi_table *t, char *err,
                             size_t errlen) __attribute__((warn_unused_result));

/* Fill srv.scur and http in t from a "show stat" CSV reply (columns pxname,
 * svname, scur and, when present, mode found by header name; http is cleared
 * only for a mode other than "http", so a version without the column keeps
 * every backend). FRONTEND/BACKEND rows and rows absent from t are ignored.
 * 0, or -1 with a message in err (t's scur values then unspecified). Pure. */
int hapi_parse_stat(const char *text, size_t len, struct hapi_table *t, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Install t into the servers view: one servers_set_backend + servers_set_http
 * per backend (http unless one of its rows says otherwise), then
 * servers_retain of exactly those backends. 0 or -1. */
int hapi_install(const struct hapi_table *t) __attribute__((warn_unused_result));

#endif
