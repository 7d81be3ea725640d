/* events.h - change events (proto/events.proto) as plain C structs.
 *
 * The only module that includes the generated *.pb-c.h: the rest of the agent
 * and stickyctl see `struct event`, encode it to bytes for PUBLISH, decode
 * bytes from SUBSCRIBE, and format it for humans. No I/O here.
 */
#ifndef STICKYD_EVENTS_H
#define STICKYD_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define EVENTS_VERSION 1u

enum event_kind {
    EVENT_NONE = 0,
    EVENT_SESSION_ASSIGNED = 1,
    EVENT_SESSION_REPINNED = 2,
    EVENT_SESSION_MOVED = 3,
    EVENT_SERVER_STATE = 4,
    EVENT_INSTANCE_JOINED = 5,
    EVENT_INSTANCE_LEFT = 6,
    EVENT_KIND_COUNT
};

/* Strings are borrowed: for encoding, from the caller; after events_decode,
 * owned by the event until events_release. Unused strings may be NULL. */
struct event {
    enum event_kind kind;
    uint32_t version;
    int64_t ts_ms;
    const char *origin;
    const char *backend;
    const char *sid;
    const char *server;      /* assigned server / state's server */
    const char *from_server; /* repinned, moved */
    const char *reason;      /* repinned, instance left */
    const char *instance;    /* instance joined / left */
    enum model_state state;
    int64_t deadline_ms;
    bool close_at_deadline;
    void *owner_; /* the unpacked protobuf message after decode */
};

/* Encode e into a new buffer (*out, to free()) of *len bytes. 0 or -1. */
int events_encode(const struct event *e, uint8_t **out, size_t *len)
    __attribute__((warn_unused_result));

/* Decode bytes into *e (strings owned by e). 0, or -1 when the bytes are not
 * an event (or a kind this build does not know: e->kind == EVENT_NONE, still 0).
 * Call events_release(e) after a successful decode. */
int events_decode(const uint8_t *p, size_t len, struct event *e)
    __attribute__((warn_unused_result));
void events_release(struct event *e);

/* One human-readable line, e.g.
 * "12:00:01.123 web1 server-state ws/s2 drain until 12:10:00 (close at deadline)". */
void events_format(const struct event *e, char *buf, size_t len);

const char *events_kind_name(enum event_kind k);
const char *model_state_name(enum model_state s);

#endif
