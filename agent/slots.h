/* slots.h - Redis Cluster's key space, pure: hash slots, the slot map, redirects.
 *
 * CRC16 (XMODEM) of a key's hash tag, the map slot -> node built from CLUSTER
 * SLOTS ranges, and the MOVED/ASK error text. No I/O, no hiredis: store.c feeds
 * it what the server said and asks it where a key lives.
 */
#ifndef STICKYD_SLOTS_H
#define STICKYD_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLOTS_COUNT 16384u
#define SLOTS_HOST_MAX 64u /* a numeric IPv6 address fits */
#define SLOTS_NONE 0xffffu /* no node owns the slot (yet) */

/* The hash slot of key[0..len): CRC16 of the part between the first '{' and the
 * first '}' after it when that part is not empty, else of the whole key. */
unsigned slots_key_slot(const char *key, size_t len);

/* One line of CLUSTER SLOTS: slots [lo, hi] served by the master host:port. */
struct slots_range {
    unsigned lo, hi;
    const char *host; /* borrowed */
    size_t host_len;
    unsigned port;
};

/* Check the ranges (lo <= hi < 16384, no overlap, host not empty and short
 * enough, port 1..65535). Returns the number of slots they cover (all of them:
 * SLOTS_COUNT), or -1 with the reason in err. */
int slots_check(const struct slots_range *r, size_t n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* A redirect error: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"
 * (host may be an IPv6 address; the port follows the last ':'). */
struct slots_redirect {
    bool ask;
    unsigned slot;
    char host[SLOTS_HOST_MAX];
    unsigned port;
};

/* Parse a redirect error text e[0..len). 0, or -1 when it is none (or malformed). */
int slots_parse_redirect(const char *e, size_t len, struct slots_redirect *out)
    __attribute__((warn_unused_result));

/* One "<host>:<port>" (or "[v6]:port") seed at s[0..len) into host/port. 0 or -1. */
int slots_parse_hostport(const char *s, size_t len, char host[SLOTS_HOST_MAX], unsigned *port)
    __attribute__((warn_unused_result));

#endif
