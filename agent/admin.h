/* admin.h - the cluster's drain/maint state, applied to the local HAProxy.
 *
 * Reads each backend's :state hash (set by stickyctl and decide.lua) after every
 * HAProxy refresh and on demand, sets the matching admin state on the local
 * HAProxy through its runtime API, records in a:<inst> what it set (so that a
 * restarted agent undoes only its own), and shuts a drained server's sessions
 * at its deadline, judged on Redis' clock. Counts are fleet.c's; the decisions
 * read the same hash through the ledger's view.
 */
#ifndef STICKYD_ADMIN_H
#define STICKYD_ADMIN_H

struct cfg;
struct store;
struct ledger;
struct hapi;

struct admin;

/* Apply the cluster's states to h's HAProxy after each of its refreshes. c is read
 * live; st, l and h must outlive the admin (free h first: the refresh hook cannot
 * be removed). NULL when h is NULL (a static server list has no HAProxy to
 * steer) or out of memory. */
struct admin *admin_new(const struct cfg *c, struct store *st, struct ledger *l, struct hapi *h);

/* A state changed somewhere in the cluster: read and apply it now rather than at
 * the next refresh. a may be NULL. */
void admin_poll(struct admin *a);

/* Free. Pending store callbacks must have run (store_free) first. NULL is fine. */
void admin_free(struct admin *a);

#endif
