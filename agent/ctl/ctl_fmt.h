/* ctl_fmt.h - pure text helpers of stickyctl: times, durations, name order, escapes.
 *
 * No I/O, no Redis: what the operator reads is computed here so that it can be
 * unit-tested from literal values. The agent never uses these.
 */
#ifndef STICKYD_CTL_FMT_H
#define STICKYD_CTL_FMT_H

#include <stdbool.h>
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

/* A sorted-set score as Redis prints it (an integer, or a double such as "1e300",
 * "inf", "nan") that must be a unix-ms time: 0 and *ms when it is a finite whole
 * number in [0, CTL_MS_MAX], else -1 and *ms = 0. Never converts an out-of-range
 * double to an integer (undefined behaviour). */
#define CTL_MS_MAX 253402300799999LL /* 9999-12-31T23:59:59.999Z */
int ctl_parse_score_ms(const char *s, size_t len, int64_t *ms) __attribute__((warn_unused_result));

/* The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 when the byte at s does not start
 * one. n > 0. */
size_t ctl_utf8_seq(const char *s, size_t n);

/* s[0..n) made safe for a terminal, NUL-terminated into buf: printable ASCII and
 * well-formed UTF-8 from U+00A0 on are kept; a backslash becomes "\\"; any other
 * byte (control characters, DEL, C1 controls, bytes that are not valid UTF-8) becomes
 * "\xNN". Cut before an escape or character that does not fit. Returns the length
 * written. The result is what stickyctl prints for every name it did not write. */
size_t ctl_fmt_escape(const char *s, size_t n, char *buf, size_t len);

/* s[0..n) as valid UTF-8 for JSON, NUL-terminated into buf: well-formed UTF-8 is
 * copied unchanged (a NUL too: JSON writes it \u0000), and each byte that is not
 * becomes the character U+00NN (JSON "\u00NN" with --json's ASCII output), so that no
 * byte vanishes and the JSON writer never refuses the string. buf needs 2 * n + 1
 * bytes; returns the length written, or -1 when it does not fit. */
int ctl_fmt_utf8_bytes(const char *s, size_t n, char *buf, size_t len)
    __attribute__((warn_unused_result));

/* events_format's line for e, every string of the event (names from the wire)
 * escaped as ctl_fmt_escape does: one line of text, whatever the event carries. */
struct event;
void ctl_fmt_event(const struct event *e, char *buf, size_t len);

/* True when s[0..n) holds a control character (below 0x20, or DEL): such an
 * argument is refused, never sent to Redis. */
bool ctl_has_control(const char *s, size_t n);

#endif
