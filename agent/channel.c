/* channel.c - the events channel: publish, subscribe, move on reload.
 *
 * Decodes what arrives (events.c) and hands it to the one subscriber; never acts
 * on an event itself.
 */
#include "channel.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"
#include "log.h"
#include "stats.h"
#include "store.h"
#include "util.h"

#define CHANNEL_OP_TIMEOUT_MS 1000 /* events are not on the decision path */

struct channel {
    const struct cfg *cfg;
    struct store *store;
    channel_event_fn fn;
    void *arg;
    char *name; /* the channel subscribed (a copy: cfg is swapped on reload) */
};

static void publish_cb(const struct store_reply *r, enum store_result res, void *arg)
{
    UNUSED(r);
    UNUSED(arg);
    if (res != STORE_OK) {
        log_debug("channel: event not published (%s)", res == STORE_TIMEOUT ? "timeout" : "down");
    }
}

void channel_publish(struct channel *ch, const struct event *e)
{
    uint8_t *buf;
    size_t len;
    if (ch == NULL || events_encode(e, &buf, &len) < 0) {
        return;
    }
    const char *name = ch->cfg->events_channel;
    const char *argv[] = {"PUBLISH", name, (const char *)buf};
    size_t argvlen[] = {7, strlen(name), len};
    if (store_command(ch->store, 3, argv, argvlen, CHANNEL_OP_TIMEOUT_MS, publish_cb, NULL) == 0) {
        STATS_INC(events_published);
    }
    free(buf);
}

static void on_message(const char *name, const uint8_t *msg, size_t len, void *arg)
{
    UNUSED(name);
    struct channel *ch = arg;
    struct event e;
    if (events_decode(msg, len, &e) < 0) {
        log_debug("channel: undecodable event on the channel (%zu bytes)", len);
        return;
    }
    STATS_INC(events_received);
    ch->fn(&e, ch->arg);
    events_release(&e);
}

struct channel *channel_new(const struct cfg *c, struct store *st, channel_event_fn fn,
                            void *arg)
{
    struct channel *ch = calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return NULL;
    }
    *ch = (struct channel){.cfg = c, .store = st, .fn = fn, .arg = arg};
    if ((ch->name = strdup(c->events_channel)) == NULL) {
        free(ch);
        return NULL;
    }
    if (store_subscribe(st, c->events_channel, on_message, ch) < 0) {
        log_warn("channel: cannot subscribe to %s; state changes are seen by polling only",
                 c->events_channel);
    }
    return ch;
}

int channel_reload(struct channel *ch, const struct cfg *next)
{
    if (ch == NULL || strcmp(ch->name, next->events_channel) == 0) {
        return 0;
    }
    char *name = strdup(next->events_channel);
    if (name == NULL || store_subscribe(ch->store, name, on_message, ch) < 0) {
        free(name);
        return -1;
    }
    (void)store_unsubscribe(ch->store, ch->name);
    log_info("channel: events channel %s -> %s (resubscribed)", ch->name, name);
    free(ch->name);
    ch->name = name;
    return 0;
}

void channel_free(struct channel *ch)
{
    if (ch == NULL) {
        return;
    }
    free(ch->name);
    free(ch);
}
