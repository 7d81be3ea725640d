/* slots.c - hash slots, slot-map ranges and redirects (see slots.h).
 *
 * Pure string and integer work; must not know about sockets or hiredis.
 */
#include "slots.h"

#include <stdio.h>
#include <string.h>

/* CRC16-CCITT (XMODEM): poly 0x1021, init 0, no reflection - Redis Cluster's. */
static uint16_t crc16(const char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)p[i] << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

unsigned slots_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close != NULL && close > key + from) {
            return crc16(key + from, (size_t)(close - key) - from) & (SLOTS_COUNT - 1);
        }
    }
    return crc16(key, len) & (SLOTS_COUNT - 1);
}

int slots_check(const struct slots_range *r, size_t n, char *err, size_t errlen)
{
    static unsigned char seen[SLOTS_COUNT / 8];
    memset(seen, 0, sizeof(seen));
    int covered = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].lo > r[i].hi || r[i].hi >= SLOTS_COUNT) {
            snprintf(err, errlen, "bad slot range %u-%u", r[i].lo, r[i].hi);
            return -1;
        }
        if (r[i].host_len == 0 || r[i].host_len >= SLOTS_HOST_MAX || r[i].port == 0 ||
            r[i].port > 65535) {
            snprintf(err, errlen, "bad master address for slots %u-%u", r[i].lo, r[i].hi);
            return -1;
        }
        for (unsigned s = r[i].lo; s <= r[i].hi; s++) {
            if (seen[s / 8] & (1u << (s % 8))) {
                snprintf(err, errlen, "slot %u listed twice", s);
                return -1;
            }
            seen[s / 8] |= (unsigned char)(1u << (s % 8));
            covered++;
        }
    }
    return covered;
}

/* A decimal at s[*i..len) up to max; advances *i. 0 or -1. */
static int parse_uint(const char *s, size_t len, size_t *i, unsigned max, unsigned *out)
{
    size_t j = *i;
    unsigned long v = 0;
    while (j < len && s[j] >= '0' && s[j] <= '9' && j - *i < 6) {
        v = v * 10 + (unsigned long)(s[j] - '0');
        j++;
    }
    if (j == *i || v > max || (j < len && s[j] >= '0' && s[j] <= '9')) {
        return -1;
    }
    *i = j;
    *out = (unsigned)v;
    return 0;
}

int slots_parse_hostport(const char *s, size_t len, char host[SLOTS_HOST_MAX], unsigned *port)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL) {
        return -1;
    }
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    size_t i = (size_t)(colon - s) + 1;
    if (hl == 0 || hl >= SLOTS_HOST_MAX || parse_uint(s, len, &i, 65535, port) < 0 ||
        i != len || *port == 0) {
        return -1;
    }
    for (size_t k = 0; k < hl; k++) {
        if (h[k] <= ' ' || h[k] > '~') {
            return -1; /* a NUL would cut the name, a space or control byte is no host */
        }
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    return 0;
}

int slots_parse_redirect(const char *e, size_t len, struct slots_redirect *out)
{
    memset(out, 0, sizeof(*out));
    size_t i;
    if (len > 6 && memcmp(e, "MOVED ", 6) == 0) {
        i = 6;
    } else if (len > 4 && memcmp(e, "ASK ", 4) == 0) {
        out->ask = true;
        i = 4;
    } else {
        return -1;
    }
    if (parse_uint(e, len, &i, SLOTS_COUNT - 1, &out->slot) < 0 || i >= len || e[i] != ' ') {
        return -1;
    }
    i++;
    return slots_parse_hostport(e + i, len - i, out->host, &out->port);
}
