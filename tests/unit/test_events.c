/* Unit tests for events.c: every kind round-trips through protobuf bytes,
 * garbage is refused, unknown kinds decode as EVENT_NONE, formatting. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "events.h"

static void roundtrip(const struct event *in)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(events_encode(in, &buf, &len) == 0);
    struct event out;
    CHECK(events_decode(buf, len, &out) == 0);
    CHECK_EQ_INT(out.kind, in->kind);
    CHECK_EQ_INT(out.version, EVENTS_VERSION);
    CHECK_EQ_INT(out.ts_ms, in->ts_ms);
    CHECK(strcmp(out.origin, in->origin) == 0);
#define SAME(f) CHECK(in->f == NULL || strcmp(out.f, in->f) == 0)
    SAME(backend);
    SAME(sid);
    SAME(server);
    SAME(from_server);
    SAME(reason);
    SAME(instance);
#undef SAME
    CHECK_EQ_INT(out.state, in->state);
    CHECK_EQ_INT(out.deadline_ms, in->deadline_ms);
    CHECK_EQ_INT(out.close_at_deadline, in->close_at_deadline);
    char line[256];
    events_format(&out, line, sizeof(line));
    CHECK(strstr(line, events_kind_name(in->kind)) != NULL);
    events_release(&out);
    free(buf);
}

int main(void)
{
    struct event e = {.ts_ms = 1763700000123, .origin = "lb1"};

    e.kind = EVENT_SESSION_ASSIGNED;
    e.backend = "ws";
    e.sid = "1abc";
    e.server = "s1";
    roundtrip(&e);

    e.kind = EVENT_SESSION_REPINNED;
    e.from_server = "s2";
    e.reason = "down";
    roundtrip(&e);

    e.kind = EVENT_SESSION_MOVED;
    e.reason = NULL;
    roundtrip(&e);

    struct event st = {.kind = EVENT_SERVER_STATE, .ts_ms = 5, .origin = "stickyctl@h",
                       .backend = "ws", .server = "s3", .state = MODEL_DRAIN,
                       .deadline_ms = 1763700600000, .close_at_deadline = true};
    roundtrip(&st);
    char line[256];
    events_format(&st, line, sizeof(line));
    CHECK(strstr(line, "ws/s3 drain until") != NULL);
    CHECK(strstr(line, "(close at deadline)") != NULL);
    st.state = MODEL_MAINT;
    st.deadline_ms = 0;
    st.close_at_deadline = false;
    roundtrip(&st);

    struct event ij = {.kind = EVENT_INSTANCE_JOINED, .ts_ms = 7, .origin = "lb2",
                       .instance = "lb2"};
    roundtrip(&ij);
    ij.kind = EVENT_INSTANCE_LEFT;
    ij.reason = "heartbeat-expired";
    roundtrip(&ij);

    /* Not an event: a field 1 with wire type 7 does not exist. */
    static const uint8_t garbage[] = {0x0f, 0xff, 0xff, 0xff};
    struct event out;
    CHECK(events_decode(garbage, sizeof(garbage), &out) == -1);

    /* A newer publisher's kind (field 99, length-delimited, empty) decodes as NONE. */
    static const uint8_t future[] = {0x08, 0x01, 0x9a, 0x06, 0x00};
    CHECK(events_decode(future, sizeof(future), &out) == 0);
    CHECK_EQ_INT(out.kind, EVENT_NONE);
    events_release(&out);

    /* Encoding an event with no kind is refused. */
    struct event none = {.kind = EVENT_NONE};
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(events_encode(&none, &buf, &len) == -1);

    return check_summary("test_events");
}
