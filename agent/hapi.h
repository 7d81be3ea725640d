/* hapi.h - an async client for the local HAProxy's runtime API (stats socket).
 *
 * Owns the periodic refresh of the servers view (servers.h) from "show servers
 * state" + "show stat", and a FIFO of admin commands for the fleet module. It
 * speaks the non-interactive CLI only: one connection per batch ("c1;c2\n",
 * read to EOF), nonblocking connect, a deadline per batch and a bounded output
 * buffer, so a dead or stuck HAProxy costs the loop nothing. No Redis here. The
 * replies are parsed and installed by hapi_parse.[ch], which does no I/O.
 */
#ifndef STICKYD_HAPI_H
#define STICKYD_HAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
