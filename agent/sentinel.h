/* sentinel.h - finds the Redis master through Sentinel and keeps a store on it.
 *
 * Follows the Sentinel client guidelines: asks the Sentinels in turn for the
 * master (SENTINEL get-master-addr-by-name), moves the first one that answers to
 * the front of its list, points the data store at the answer (store_set_addr,
 * with the ROLE check on), and listens for +switch-master on that Sentinel. A
 * disconnect, a -READONLY reply, a timeout or a failed ROLE check on the data
 * store starts a new discovery. It talks to Sentinels only through struct store
 * (store.c stays the only file that includes hiredis) and never issues data
 * commands itself.
 */
#ifndef STICKYD_SENTINEL_H
#define STICKYD_SENTINEL_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct cfg;
struct store;
struct sentinel;

/* Start following c's redis.master_name through c's redis.sentinels (at least
 * one; the config checked them) and keep `data` on the master. data must have
 * been made with the same c (so it waits for an address) and must outlive the
 * handle. The Sentinel settings are copied: c need not outlive the handle.
 * Returns a new handle, or NULL when out of memory. */
struct sentinel *sentinel_new(struct ev_loop *loop, const struct cfg *c, struct store *data);
/* Close the Sentinel connections and unhook the data store (which stays on its
 * last address). Not from inside a store callback. NULL is a no-op. */
void sentinel_free(struct sentinel *sn);
/* A reload: the Sentinel list, master name and Sentinel credentials are kept
 * (a change is logged as needing a restart); the timeouts are taken. */
void sentinel_reconfigure(struct sentinel *sn, const struct cfg *c);

/* The master's address, once a Sentinel named one: its host (borrowed, valid
 * until the next discovery) and *port; NULL before. */
const char *sentinel_master(const struct sentinel *sn, uint16_t *port);
/* Every Sentinel was asked once and none named the master (a CLI's cue to
 * give up); sentinel_last_error says why. */
bool sentinel_gave_up(const struct sentinel *sn);
/* The last discovery problem, "" when none; never contains a password. */
const char *sentinel_last_error(const struct sentinel *sn);

#endif
