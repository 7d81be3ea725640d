/* channel.h - the cluster's events channel (Redis pub/sub, cfg events_channel).
 *
 * Publishes the events other modules describe (decisions, joins, leaves) and hands
 * every decoded event received to one subscriber (main.c wires it to the admin
 * state and the decisions). Owns the subscription and its move on reload; the
 * event codec is events.c's. No counting and no HAProxy here.
 */
#ifndef STICKYD_CHANNEL_H
#define STICKYD_CHANNEL_H

struct cfg;
struct store;
struct event;

struct channel;

/* An event received on the channel: e is borrowed for the call. */
typedef void (*channel_event_fn)(const struct event *e, void *arg);

/* Subscribe to c->events_channel through st; fn(e, arg) receives each event.
 * c is read live (main swaps it on reload); st must outlive the channel. A failed
 * subscription is logged and not fatal (states are then seen by polling only).
 * NULL when out of memory. */
struct channel *channel_new(const struct cfg *c, struct store *st, channel_event_fn fn,
                            void *arg);

/* On reload, before the running configuration is replaced by next: a changed
 * events.channel is subscribed and the old one unsubscribed. 0, or -1 when the
 * new subscription failed (the old one is kept then). ch may be NULL (0). */
int channel_reload(struct channel *ch, const struct cfg *next) __attribute__((warn_unused_result));

/* Publish e on the configured channel (best effort: a failure is counted and
 * logged at debug level). e is borrowed. ch may be NULL (nothing sent). */
void channel_publish(struct channel *ch, const struct event *e);

/* Free; the subscription ends with the store (store_free). NULL is fine. */
void channel_free(struct channel *ch);

#endif
