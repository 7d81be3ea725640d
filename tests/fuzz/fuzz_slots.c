/* fuzz_slots.c - libFuzzer target for what a Redis Cluster tells the agent
 * (slots.c): MOVED/ASK redirect texts, "host:port" seeds and node addresses, and
 * CLUSTER SLOTS ranges as store.c hands them to slots_check (here one range per
 * input line, "lo hi host:port"). Also the hash slot of the input as a key.
 * Invariants: no crash or over-read (ASan); a parsed redirect or address has a
 * non-empty host that fits SLOTS_HOST_MAX, a port of 1..65535 and a slot below
 * 16384; a key's slot is its hash tag's; ranges that pass slots_check cover
 * exactly the slots they say, without overlap.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_host(const char *host, unsigned port)
{
    size_t hl = strnlen(host, SLOTS_HOST_MAX);
    if (hl == 0 || hl >= SLOTS_HOST_MAX || port == 0 || port > 65535) {
        abort();
    }
}

static void ranges(const char *s, size_t size)
{
    struct slots_range r[64];
    size_t n = 0;
    char hosts[64][SLOTS_HOST_MAX];
    for (size_t off = 0; off < size && n < 64;) {
        const char *nl = memchr(s + off, '\n', size - off);
        size_t len = nl != NULL ? (size_t)(nl - (s + off)) : size - off;
        char line[128];
        unsigned lo, hi;
        int used = 0;
        snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1),
                 s + off);
        if (sscanf(line, "%u %u %n", &lo, &hi, &used) == 2 &&
            slots_parse_hostport(line + used, strlen(line + used), hosts[n], &r[n].port) == 0) {
            r[n].lo = lo;
            r[n].hi = hi;
            r[n].host = hosts[n];
            r[n].host_len = strlen(hosts[n]);
            n++;
        }
        off += len + 1;
    }
    char err[128];
    int covered = slots_check(r, n, err, sizeof(err));
    if (covered < -1 || covered > (int)SLOTS_COUNT) {
        abort();
    }
    if (covered >= 0) {
        size_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            if (r[i].lo > r[i].hi || r[i].hi >= SLOTS_COUNT) {
                abort();
            }
            sum += r[i].hi - r[i].lo + 1;
        }
        if (sum != (size_t)covered) {
            abort(); /* an overlap slipped through */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, exactly size bytes: ASan sees any read past it */
    char *s = malloc(size ? size : 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    struct slots_redirect rd;
    if (slots_parse_redirect(s, size, &rd) == 0) {
        check_host(rd.host, rd.port);
        if (rd.slot >= SLOTS_COUNT) {
            abort();
        }
    }
    char host[SLOTS_HOST_MAX];
    unsigned port = 0;
    if (slots_parse_hostport(s, size, host, &port) == 0) {
        check_host(host, port);
    }
    unsigned slot = slots_key_slot(s, size);
    if (slot >= SLOTS_COUNT) {
        abort();
    }
    const char *open = memchr(s, '{', size);
    if (open != NULL) {
        const char *close = memchr(open + 1, '}', size - (size_t)(open + 1 - s));
        if (close != NULL && close > open + 1 &&
            slots_key_slot(open + 1, (size_t)(close - open - 1)) != slot) {
            abort(); /* the hash tag decides */
        }
    }
    ranges(s, size);
    free(s);
    return 0;
}
