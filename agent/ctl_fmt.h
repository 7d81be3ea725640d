/* ctl_fmt.h - pure text helpers of stickyctl: times, durations, name order.
 *
 * No I/O, no Redis: what the operator reads is computed here so that it can be
 * unit-tested from literal values. The agent never uses these.
 */
#ifndef STICKYD_CTL_FMT_H
#define STICKYD_CTL_FMT_H

#include <stddef.h>
#include <stdint.h>

/* "4m10s", "1h5m", "2d3h", "59s", "850ms": the two most significant units, so
 * a countdown stays short. Negative values are formatted as their magnitude. */
void ctl_fmt_dur(int64_t ms, char *buf, size_t len);

/* "2026-11-21T19:40:01.123Z" (UTC) of a unix-ms time. */
void ctl_fmt_iso(int64_t ms, char *buf, size_t len);

/* "19:40:01Z" (UTC) of a unix-ms time: the drain deadline in tables. */
void ctl_fmt_hms(int64_t ms, char *buf, size_t len);

/* Natural order for server and backend names: "ws2" < "ws10". strcmp-like. */
int ctl_natcmp(const char *a, const char *b);

/* Copy s into buf with Redis glob specials (* ? [ ] \) backslash-escaped, for a
 * SCAN MATCH pattern built around a literal prefix. Returns the length, or -1
 * when it does not fit. */
int ctl_glob_escape(const char *s, char *buf, size_t len) __attribute__((warn_unused_result));

/* Parse a whole decimal int64 (optional '-'); 0 and *v, or -1. */
int ctl_parse_i64(const char *s, size_t len, int64_t *v) __attribute__((warn_unused_result));

#endif
