/* util.h - tiny helpers shared by every module: container_of, time, counts. */
#ifndef STICKYD_UTIL_H
#define STICKYD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))

/* Wall clock in unix milliseconds (CLOCK_REALTIME): the time written to Redis. */
int64_t util_now_ms(void);

/* Write v in decimal at out (room for 20 digits; no NUL); returns the end.
 * For hot paths that build Redis commands without printf. */
char *util_u64_dec(char *out, uint64_t v);

/* Parse "ADDR:PORT" (IPv4, [IPv6]:PORT, or "unix:/path" / "/path") into a
 * sockaddr; 0 or -1 with a message in err. */
struct sockaddr_storage;
int util_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *sslen, char *err,
                    size_t errlen) __attribute__((warn_unused_result));

/* Parse a duration: a number of milliseconds, or a string with a unit
 * ("250ms", "20s", "10m", "24h", "7d"). 0 and *ms, or -1. */
int util_parse_duration(const char *s, int64_t *ms) __attribute__((warn_unused_result));

#endif
