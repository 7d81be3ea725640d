/* util.c - time, address and duration parsing shared by every module. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *util_u64_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) {
        *out++ = tmp[--n];
    }
    return out;
}

int util_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *sslen, char *err,
                    size_t errlen)
{
    memset(ss, 0, sizeof(*ss));
    if (strncmp(s, "unix:", 5) == 0 || s[0] == '/') {
        const char *path = s[0] == '/' ? s : s + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(path) == 0 || strlen(path) >= sizeof(un->sun_path)) {
            snprintf(err, errlen, "unix socket path '%s' is empty or too long", path);
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        *sslen = (unsigned)sizeof(*un);
        return 0;
    }
    char host[128];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0') {
        snprintf(err, errlen, "'%s' is not ADDR:PORT", s);
        return -1;
    }
    size_t hlen = (size_t)(colon - s);
    int bracketed = s[0] == '[';
    if (bracketed) {
        if (hlen < 2 || s[hlen - 1] != ']') {
            snprintf(err, errlen, "'%s': IPv6 address must be written [ADDR]:PORT", s);
            return -1;
        }
        s++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        snprintf(err, errlen, "'%s': address too long", s);
        return -1;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (!bracketed && strchr(host, ':') != NULL) {
        /* "::1:80" could be an address without a port: make the writer say which */
        snprintf(err, errlen, "'%s': IPv6 address must be written [ADDR]:PORT", s);
        return -1;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || colon[1] < '0' || colon[1] > '9' || port > 65535) {
        snprintf(err, errlen, "'%s': port must be 0..65535", colon + 1);
        return -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *sslen = (unsigned)sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *sslen = (unsigned)sizeof(*in6);
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *sslen = (unsigned)sizeof(*in4);
        return 0;
    }
    snprintf(err, errlen, "'%s' is not a numeric IPv4/IPv6 address", host);
    return -1;
}

int util_parse_duration(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* !(v >= 0) also rejects "nan", whose conversion to int64_t is undefined */
    if (errno != 0 || end == s || !(v >= 0)) {
        return -1;
    }
    double mult;
    if (*end == '\0' || strcmp(end, "ms") == 0) {
        mult = 1;
    } else if (strcmp(end, "s") == 0) {
        mult = 1000;
    } else if (strcmp(end, "m") == 0) {
        mult = 60e3;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600e3;
    } else if (strcmp(end, "d") == 0) {
        mult = 86400e3;
    } else {
        return -1;
    }
    double r = v * mult;
    if (r > 9.0e15) {
        return -1;
    }
    *ms = (int64_t)(r + 0.5);
    return 0;
}
