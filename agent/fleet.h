/* fleet.h - cluster-wide live connection counts and server states.
 *
 * Owns the counting side of the keys model.h names (i:, o:, insts, conns, servers,
 * a:): opens (decided by assign.c) and closes (HAProxy's log, slog.c) are counted
 * once per unique-id through the ledger (ledger.h); every resync period the
 * instance's share is reset from HAProxy's own scur, dead instances are dropped
 * and `conns` is recomputed as the sum of live shares, so a lost event never
 * leaves drift. Without HAProxy's runtime API (no scur), the open map rotates
 * (resync.lua) and the tunnels a retired generation still lists (lost closes) are
 * taken off the share: drift lasts at most about the open map's lifetime.
 * Cluster state changes (drain/maint) are applied to the local HAProxy.
 */
#ifndef STICKYD_FLEET_H
#define STICKYD_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct store;
struct hapi;
struct slog_close;
struct event;
struct ledger;

struct fleet;

/* Start counting for this agent's instance (cfg->instance): registers the
 * `sticky-established` handler, starts the resync and state-poll timers and
 * subscribes to the events channel. h may be NULL (static server list: no scur
 * resync, no state applied to HAProxy). NULL on failure. */
struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct ledger *l, struct hapi *h);

/* An operator moved a session (a session-moved event): backend, record id and
 * server, borrowed for the call. */
typedef void (*fleet_moved_fn)(const char *backend, const char *rid, const char *server,
                               void *arg);
void fleet_on_moved(struct fleet *f, fleet_moved_fn fn, void *arg);

/* Leave the cluster: drop this instance's share from every backend (sent
 * best-effort; the heartbeat TTL covers a lost one) and count nothing more.
 * Call at the start of a graceful shutdown, and keep the loop running until
 * done(arg) runs: once, when every goodbye was answered or failed (each has
 * the store's per-command deadline), possibly from inside this call. Breaking
 * the loop sooner loses the goodbye (it is still in hiredis' output buffer).
 * done may be NULL; f may be NULL (done runs at once). */
typedef void (*fleet_left_fn)(void *arg);
void fleet_leave(struct fleet *f, fleet_left_fn done, void *arg);

/* Free. Call hapi_free() first: fleet hooks HAProxy refreshes and has no way
 * to unhook; pending store callbacks must have run (store_free) too. The leave is sent
 * best-effort; the heartbeat TTL covers the case where it is lost. */
void fleet_free(struct fleet *f);

/* On reload, before the running configuration is replaced by next: a changed
 * events.channel is subscribed and the old one unsubscribed (f keeps reading
 * the live cfg for everything else). 0, or -1 when the new subscription failed
 * (the old one is kept then). */
int fleet_reload(struct fleet *f, const struct cfg *next) __attribute__((warn_unused_result));

/* slog callback: a tunnel closed (arg is the struct fleet). */
void fleet_on_close(const struct slog_close *c, void *arg);

/* Publish a change event on the configured channel (best effort). */
void fleet_publish(struct fleet *f, const struct event *e);

#endif
