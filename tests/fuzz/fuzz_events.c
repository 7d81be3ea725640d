/* fuzz_events.c - libFuzzer target for the change events (events.c): the input
 * as a protobuf message from the events channel, as stickyd's subscriber and
 * `stickyctl watch` decode it, then formatted for humans as `stickyctl watch` prints it (ctl_fmt_event)
 * and re-encoded.
 * Invariants: no crash, over-read or leak (ASan), a decoded event formats to one
 * line of printable text (names from the wire are escaped, never raw control
 * bytes), and re-encoding it decodes to the same event.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl_fmt.h"
#include "events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return (a == NULL || a[0] == 0) && (b == NULL || b[0] == 0);
    }
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL) {
        return 0;
    }
    memcpy(p, data, size);
    struct event e;
    if (events_decode(p, size, &e) == 0) {
        char line[512];
        ctl_fmt_event(&e, line, sizeof(line));
        for (const char *c = line; *c != '\0'; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                abort(); /* a control byte would reach the operator's terminal */
            }
        }
        if (e.kind != EVENT_NONE) {
            uint8_t *again = NULL;
            size_t alen = 0;
            if (events_encode(&e, &again, &alen) != 0) {
                abort();
            }
            struct event f;
            if (events_decode(again, alen, &f) != 0 || f.kind != e.kind ||
                f.ts_ms != e.ts_ms || !same(f.origin, e.origin) ||
                !same(f.backend, e.backend) || !same(f.server, e.server) ||
                !same(f.sid, e.sid) || !same(f.instance, e.instance)) {
                abort();
            }
            events_release(&f);
            free(again);
        }
        events_release(&e);
    }
    free(p);
    return 0;
}
