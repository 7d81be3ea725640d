/* slog_allow.c - the syslog.allow list: which peers' log lines are believed (see
 * slog_allow.h). Pure: parses numeric addresses and compares prefixes; no sockets,
 * no libev. Shared by the config checker and the syslog receiver (slog.c). */
#include "slog_allow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SLOG_DEFAULT_ALLOW "127.0.0.0/8 ::1"

static int parse_net(const char *tok, size_t len, int *family, unsigned char addr[16],
                     unsigned *bits)
{
    char a[INET6_ADDRSTRLEN + 8];
    if (len == 0 || len >= sizeof(a)) {
        return -1;
    }
    memcpy(a, tok, len);
    a[len] = '\0';
    char *slash = strchr(a, '/');
    long b = -1;
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        if (slash[1] < '0' || slash[1] > '9') {
            return -1;
        }
        b = strtol(slash + 1, &end, 10);
        if (*end != '\0') {
            return -1;
        }
    }
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, a, addr) == 1) {
        *family = AF_INET;
        b = b < 0 ? 32 : b;
        if (b > 32) {
            return -1;
        }
    } else if (inet_pton(AF_INET6, a, addr) == 1) {
        *family = AF_INET6;
        b = b < 0 ? 128 : b;
        if (b > 128) {
            return -1;
        }
    } else {
        return -1;
    }
    *bits = (unsigned)b;
    return 0;
}

int slog_allow_parse(const char *spec, struct slog_allow *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p = spec != NULL ? spec : SLOG_DEFAULT_ALLOW;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        const char *tok = p;
        while (*p != '\0' && *p != ' ' && *p != ',') {
            p++;
        }
        size_t len = (size_t)(p - tok);
        if (len == 0) {
            break;
        }
        if (out->n == SLOG_ALLOW_MAX) {
            snprintf(err, errlen, "more than %d networks", SLOG_ALLOW_MAX);
            return -1;
        }
        if (parse_net(tok, len, &out->nets[out->n].family, out->nets[out->n].addr,
                      &out->nets[out->n].bits) < 0) {
            snprintf(err, errlen, "'%.*s' is not ADDR or ADDR/BITS (numeric IPv4 or IPv6)",
                     (int)(len > 64 ? 64 : len), tok);
            return -1;
        }
        out->n++;
    }
    return 0;
}

static bool prefix_eq(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool slog_allow_match(const struct slog_allow *a, const void *sa)
{
    const struct sockaddr *s = sa;
    int fam;
    unsigned char addr[16];
    if (s->sa_family == AF_INET) {
        fam = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (s->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            fam = AF_INET;
            memcpy(addr, in6->s6_addr + 12, 4);
        } else {
            fam = AF_INET6;
            memcpy(addr, in6->s6_addr, 16);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->nets[i].family == fam && prefix_eq(addr, a->nets[i].addr, a->nets[i].bits)) {
            return true;
        }
    }
    return false;
}
