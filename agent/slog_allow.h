/* slog_allow.h - the syslog.allow list: the networks whose syslog lines are believed.
 * Pure (no sockets, no libev), so that the config check and stickyctl can parse it
 * without linking the syslog receiver (slog.c), which applies it to each peer. */
#ifndef STICKYD_SLOG_ALLOW_H
#define STICKYD_SLOG_ALLOW_H

#include <stdbool.h>
#include <stddef.h>

/* The peers whose lines are believed (syslog.allow): networks of either family.
 * An IPv4-mapped IPv6 peer is judged as the IPv4 address. */
#define SLOG_ALLOW_MAX 32
struct slog_allow {
    size_t n;
    struct {
        int family; /* AF_INET or AF_INET6 */
        unsigned bits;
        unsigned char addr[16];
    } nets[SLOG_ALLOW_MAX];
};

/* Parse "ADDR[/BITS] ..." (space or comma separated, numeric addresses only;
 * "" allows no network peer at all) into *out. 0, or -1 with a message in err.
 * Pure. */
int slog_allow_parse(const char *spec, struct slog_allow *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Is the peer address (struct sockaddr_in or _in6) in the list? Pure. */
bool slog_allow_match(const struct slog_allow *a, const void *sa);

#endif
