/* ctl_fmt.c - stickyctl's pure text helpers (see ctl_fmt.h). */
#include "ctl_fmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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
