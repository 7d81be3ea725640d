/* slog.h - the syslog listener that learns when WebSocket tunnels close.
 *
 * HAProxy logs each stream when it ends. The reference config appends to its
 * log-format a marker and key=value fields (see SLOG_MARKER); this module
 * receives those lines over UDP (one datagram, one line) and over TCP in the
 * octet-counted framing of RFC 6587 that HAProxy's `ring` servers use (newline
 * framing is accepted too), finds the marker and hands the fields to a
 * callback. It knows nothing of Redis or counts.
 *
 * Line contract (anything before the marker is ignored, so any syslog header
 * and any access-log prefix works; fields are space separated, "-" = empty):
 *   ... stickyd: uid=<unique-id> be=<backend> srv=<server> st=<http status> sid=<sid>
 */
#ifndef STICKYD_SLOG_H
#define STICKYD_SLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slog_allow.h"
#include "spop.h"

#define SLOG_MARKER "stickyd:"
#define SLOG_MAX_LINE 8192u
#define SLOG_MAX_CLIENTS 64 /* TCP log clients at once (HAProxy rings) */

struct ev_loop;
struct slog;

/* Fields of one close line: views into the received bytes, valid during the
 * callback only. Missing or "-" fields have len 0. status is -1 if absent. */
struct slog_close {
    struct spop_str uid;
    struct spop_str backend;
    struct spop_str server;
    struct spop_str sid;
    int status;
};

typedef void (*slog_close_fn)(const struct slog_close *c, void *arg);

/* Listener settings; zeroed fields take the defaults noted. */
struct slog_opts {
    const char *udp;          /* "ADDR:PORT" or NULL */
    const char *tcp;          /* "ADDR:PORT" or NULL */
    const char *unix_path;    /* unix datagram socket path, or NULL */
    unsigned unix_mode;       /* its file mode (0: 0660) */
    const char *allow;        /* peers believed on udp and tcp (NULL: "127.0.0.0/8 ::1") */
    int64_t tcp_idle_ms;      /* a TCP client silent this long is closed (0: 5 min) */
    unsigned tcp_per_peer;    /* TCP clients per peer address (0: 8) */
};

/* Parse one log line. Returns 1 with *out filled when the line carries the
 * marker and a uid and backend; 0 when it has no marker (not ours); -1 when
 * it has the marker but is malformed. Pure. */
int slog_parse_line(const char *line, size_t len, struct slog_close *out)
    __attribute__((warn_unused_result));

/* Cut the first message off a TCP stream p[0..len): octet-counted ("LEN SP MSG",
 * RFC 6587 3.4.1) when it starts with a digit, else newline-terminated. Returns
 * the bytes consumed (> 0) with *msg, *mlen a view of the message; 0 when more
 * bytes are needed; -1 on bad framing (a length that is 0, above SLOG_MAX_LINE or
 * not followed by a space, or a line longer than SLOG_MAX_LINE). Pure. */
int slog_frame(const char *p, size_t len, const char **msg, size_t *mlen)
    __attribute__((warn_unused_result));

/* Listen on udp and/or tcp ("ADDR:PORT"; NULL to skip each) with the default
 * options. NULL on failure with a message in err. */
struct slog *slog_new(struct ev_loop *loop, const char *udp, const char *tcp, slog_close_fn fn,
                      void *arg, char *err, size_t errlen);
/* Same with every option: lines from peers outside o->allow are dropped and
 * counted (syslog_refused); the unix socket's file is replaced and chmod'ed. */
struct slog *slog_new_opts(struct ev_loop *loop, const struct slog_opts *o, slog_close_fn fn,
                           void *arg, char *err, size_t errlen);
void slog_free(struct slog *s);

#endif
