/* fleet.h - cluster-wide live connection counts.
 *
 * Owns the counting side of the keys model.h names (i:, o:, insts, conns, servers,
 * a:): opens (decided by assign.c) and closes (HAProxy's log, slog.c) are counted
 * once per unique-id through the ledger (ledger.h); every resync period the
 * instance's share is reset from HAProxy's own scur, dead instances are dropped
 * and `conns` is recomputed as the sum of live shares, so a lost event never
 * leaves drift. Without HAProxy's runtime API (no scur), the open map rotates
 * (resync.lua) and the tunnels a retired generation still lists (lost closes) are
 * taken off the share: drift lasts at most about the open map's lifetime.
 * Joins and leaves are announced on the events channel (channel.h). The drain/
 * maint state applied to HAProxy is admin.h's.
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
struct ledger;
struct channel;

struct fleet;

/* Start counting for this agent's instance (cfg->instance): starts the resync
 * timer and, with h, resets the shares from HAProxy's scur after its refreshes.
 * h may be NULL (static server list: heartbeats and the open map only); ch may
 * be NULL (joins and leaves not announced). c is read live; st, l, h and ch must
 * outlive the fleet. NULL on failure. */
struct fleet *fleet_new(struct ev_loop *loop, const struct cfg *c, struct store *st,
                        struct ledger *l, struct hapi *h, struct channel *ch);

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

/* slog callback: a tunnel closed (arg is the struct fleet). */
void fleet_on_close(const struct slog_close *c, void *arg);

#endif
