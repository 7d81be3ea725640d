/* ctl_fmt.c - stickyctl's pure text helpers (see ctl_fmt.h). */
#include "ctl_fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"

void ctl_fmt_dur(int64_t ms, char *buf, size_t len)
{
    if (ms < 0) {
        ms = ms == INT64_MIN ? INT64_MAX : -ms;
    }
    if (ms < 1000) {
        snprintf(buf, len, "%lldms", (long long)ms);
        return;
    }
    static const struct {
        char unit;
        int64_t secs;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    int64_t s = ms / 1000;
    size_t n = sizeof(units) / sizeof(units[0]);
    for (size_t i = 0; i < n; i++) {
        if (s < units[i].secs) {
            continue;
        }
        long long major = (long long)(s / units[i].secs);
        long long minor = i + 1 < n ? (long long)((s % units[i].secs) / units[i + 1].secs) : 0;
        if (minor > 0) {
            snprintf(buf, len, "%lld%c%lld%c", major, units[i].unit, minor, units[i + 1].unit);
        } else {
            snprintf(buf, len, "%lld%c", major, units[i].unit);
        }
        return;
    }
}

static void split(int64_t ms, struct tm *tm, int *millis)
{
    int64_t secs = ms / 1000;
    int64_t rem = ms % 1000;
    if (rem < 0) { /* times before 1970: floor, not truncate */
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, tm);
    *millis = (int)rem;
}

void ctl_fmt_iso(int64_t ms, char *buf, size_t len)
{
    struct tm tm;
    int millis;
    split(ms, &tm, &millis);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

void ctl_fmt_hms(int64_t ms, char *buf, size_t len)
{
    struct tm tm;
    int millis;
    split(ms, &tm, &millis);
    snprintf(buf, len, "%02d:%02d:%02dZ", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int ctl_natcmp(const char *a, const char *b)
{
    while (*a != '\0' && *b != '\0') {
        if (is_digit(*a) && is_digit(*b)) {
            /* compare the digit runs by value: skip leading zeros, then length */
            const char *ra = a, *rb = b;
            while (*ra == '0') {
                ra++;
            }
            while (*rb == '0') {
                rb++;
            }
            size_t la = 0, lb = 0;
            while (is_digit(ra[la])) {
                la++;
            }
            while (is_digit(rb[lb])) {
                lb++;
            }
            if (la != lb) {
                return la < lb ? -1 : 1;
            }
            int c = memcmp(ra, rb, la);
            if (c != 0) {
                return c < 0 ? -1 : 1;
            }
            a = ra + la;
            b = rb + lb;
            continue;
        }
        if (*a != *b) {
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        }
        a++;
        b++;
    }
    if (*a == *b) {
        return 0;
    }
    return *a == '\0' ? -1 : 1;
}

int ctl_glob_escape(const char *s, char *buf, size_t len)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (strchr("*?[]\\", *s) != NULL) {
            if (n + 1 >= len) {
                return -1;
            }
            buf[n++] = '\\';
        }
        if (n + 1 >= len) {
            return -1;
        }
        buf[n++] = *s;
    }
    if (len == 0) {
        return -1;
    }
    buf[n] = '\0';
    return (int)n;
}

int ctl_parse_i64(const char *s, size_t len, int64_t *v)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 18) { /* 18 digits cannot overflow */
        return -1;
    }
    int64_t x = 0;
    for (; i < len; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return 0;
}

int ctl_parse_score_ms(const char *s, size_t len, int64_t *ms)
{
    *ms = 0;
    char tmp[64];
    /* Redis writes a time as digits, or as a double with an exponent: no sign, space,
     * hex or words (those strtod would take) */
    if (len == 0 || len >= sizeof(tmp) || !is_digit(s[0]) || strspn(s, "0123456789.eE+-") < len) {
        return -1;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end = NULL;
    double d = strtod(tmp, &end);
    /* the range check comes before the cast: (int64_t)1e300 is undefined */
    if (end != tmp + len || !isfinite(d) || d < 0 || d > (double)CTL_MS_MAX || d != floor(d)) {
        return -1;
    }
    *ms = (int64_t)d;
    return 0;
}

size_t ctl_utf8_seq(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        return 1;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (u[0] >= 0xC2 && u[0] <= 0xDF) {
        need = 2;
    } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
        need = 3;
        lo = u[0] == 0xE0 ? 0xA0 : 0x80; /* overlong */
        hi = u[0] == 0xED ? 0x9F : 0xBF; /* surrogates */
    } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
        need = 4;
        lo = u[0] == 0xF0 ? 0x90 : 0x80; /* overlong */
        hi = u[0] == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < need || u[1] < lo || u[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < need; i++) {
        if (u[i] < 0x80 || u[i] > 0xBF) {
            return 0;
        }
    }
    return need;
}

size_t ctl_fmt_escape(const char *s, size_t n, char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = ctl_utf8_seq(s + i, n - i);
        /* U+0080..U+009F (C2 80..C2 9F) are C1 controls: CSI is one of them */
        bool keep = (k == 1 && c >= 0x20 && c < 0x7f && c != '\\') ||
                    (k > 1 && !(c == 0xC2 && (unsigned char)s[i + 1] < 0xA0));
        if (keep) {
            if (o + k >= len) {
                break;
            }
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else if (c == '\\') {
            if (o + 2 >= len) {
                break;
            }
            buf[o++] = '\\';
            buf[o++] = '\\';
            i++;
        } else {
            if (o + 4 >= len) {
                break;
            }
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
            i++;
        }
    }
    buf[o] = '\0';
    return o;
}

int ctl_fmt_utf8_bytes(const char *s, size_t n, char *buf, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = ctl_utf8_seq(s + i, n - i);
        if (k > 0) {
            if (o + k >= len) {
                return -1;
            }
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        unsigned char c = (unsigned char)s[i++]; /* 0x80..0xFF: U+00NN, two bytes */
        if (o + 2 >= len) {
            return -1;
        }
        buf[o++] = (char)(0xC0 | (c >> 6));
        buf[o++] = (char)(0x80 | (c & 0x3F));
    }
    if (o >= len) {
        return -1;
    }
    buf[o] = '\0';
    return (int)o;
}

bool ctl_has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

void ctl_fmt_event(const struct event *e, char *buf, size_t len)
{
    enum { F_ORIGIN = 0, F_BACKEND, F_SID, F_SERVER, F_FROM, F_REASON, F_INSTANCE, F_COUNT };
    char esc[F_COUNT][160];
    const char *in[F_COUNT] = {e->origin, e->backend,     e->sid,     e->server,
                               e->from_server, e->reason, e->instance};
    struct event x = *e;
    const char **out[F_COUNT] = {&x.origin,      &x.backend, &x.sid,     &x.server,
                                 &x.from_server, &x.reason,  &x.instance};
    for (int i = 0; i < F_COUNT; i++) {
        const char *v = in[i] != NULL ? in[i] : "";
        (void)ctl_fmt_escape(v, strlen(v), esc[i], sizeof(esc[i]));
        *out[i] = esc[i];
    }
    events_format(&x, buf, len);
}
