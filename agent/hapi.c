/* hapi.c - async client for HAProxy's runtime API; refreshes the servers view.
 *
 * Every exchange is one "batch" on its own connection, in the CLI's
 * non-interactive mode:
 *
 *   socket(NONBLOCK) -> connect (EINPROGRESS) -> EV_WRITE -> write "c1;c2\n"
 *     -> EV_READ until EOF (HAProxy closes) -> done(ok, output)
 *   any error, HAPI_TIMEOUT_MS elapsed or output > HAPI_MAX_OUTPUT -> done(fail)
 *
 * HAProxy ends every command's reply with an empty line, which is how a batch's
 * output is split per command. Two independent lanes use batches: the refresh
 * (at most one in flight) and the command FIFO (one at a time, so a "drain"
 * followed by a "ready" for the same server reach HAProxy in that order).
 * User callbacks only ever run from the loop (a zero timer kicks the FIFO),
 * never from inside a hapi_* call, except in hapi_free.
 */
#include "hapi.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "hapi_parse.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define HAPI_BUF_INITIAL 16384u
/* A failed refresh is retried after HAPI_RETRY_MIN_MS, doubling up to
 * min(period, HAPI_RETRY_MAX_MS), instead of a whole period later. */
#define HAPI_RETRY_MIN_MS 100u
#define HAPI_RETRY_MAX_MS 1000u
/* "show info" last: its Pid tells which process answered (after a reload the old
 * one still carries tunnels the new one's scur does not count) */
#define HAPI_REFRESH_CMD "show servers state;show stat;show info"

enum batch_phase {
    BATCH_CONNECTING = 0,
    BATCH_READING = 1,
    BATCH_PHASE_COUNT
};

/* How a command's reply is judged once the batch completed. */
enum batch_kind {
    BATCH_REFRESH = 0, /* parsed into the servers view */
    BATCH_RAW = 1,     /* any reply is ok; the caller reads it */
    BATCH_EMPTY_OK = 2, /* ok only for an empty reply (set state, shutdown) */
    BATCH_KIND_COUNT
};

struct hapi_batch {
    struct hapi *h;
    enum batch_kind kind;
    enum batch_phase phase;
    int fd;
    ev_io io;
    ev_timer deadline;
    char *line; /* command line with its '\n'; owned */
    size_t linelen, written;
    struct buf out;
    hapi_cb cb; /* user commands only */
    void *arg;
    struct hapi_batch *next; /* FIFO link */
};

/* Which kind of trouble was last logged, so a HAProxy that stays down is
 * logged once, not every refresh. */
enum hapi_health {
    HAPI_HEALTH_OK = 0,
    HAPI_HEALTH_UNREACHABLE = 1,
    HAPI_HEALTH_BAD_REPLY = 2,
    HAPI_HEALTH_COUNT
};

struct hapi_hook {
    hapi_refresh_fn fn;
    void *arg;
};

struct hapi {
    struct ev_loop *loop;
    struct sockaddr_storage addr;
    unsigned addrlen;
    char name[160]; /* the configured address, for logs */
    ev_timer refresh_timer;
    double every;               /* refresh period, seconds */
    unsigned retry_ms;          /* delay of the pending retry; 0: none (healthy) */
    ev_timer kick;              /* zero-delay: starts queued commands from the loop */
    struct hapi_batch *refresh; /* in flight, or NULL */
    struct hapi_batch *cmd_cur; /* in flight, or NULL */
    struct hapi_batch *q_head, *q_tail;
    size_t qlen;
    bool ready, healthy, closing;
    long pid; /* of the process that answered the last refresh; 0: unknown */
    enum hapi_health health;
    struct hapi_hook hooks[HAPI_MAX_HOOKS];
    size_t nhooks;
};

static void batch_finish(struct hapi_batch *b, bool ok, const char *why);
static void cmd_pump(struct hapi *h);
static void refresh_schedule(struct hapi *h);

/* ---------------------------------------------------------------------------
 * Health logging
 * ------------------------------------------------------------------------- */

static void note_failure(struct hapi *h, enum hapi_health kind, const char *what)
{
    STATS_INC(haproxy_api_errors);
    if (h->health != kind) {
        log_warn("hapi %s: %s (logged once until it changes)", h->name, what);
        h->health = kind;
    } else {
        log_debug("hapi %s: %s", h->name, what);
    }
}

static void note_success(struct hapi *h)
{
    if (h->health != HAPI_HEALTH_OK) {
        log_info("hapi %s: runtime API answering again", h->name);
        h->health = HAPI_HEALTH_OK;
    }
}

/* ---------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------- */

static struct hapi_batch *batch_new(struct hapi *h, enum batch_kind kind, const char *cmd,
                                    hapi_cb cb, void *arg)
{
    struct hapi_batch *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    size_t n = strlen(cmd);
    b->line = malloc(n + 2);
    if (b->line == NULL) {
        free(b);
        return NULL;
    }
    memcpy(b->line, cmd, n);
    b->line[n] = '\n';
    b->line[n + 1] = '\0';
    b->linelen = n + 1;
    b->h = h;
    b->kind = kind;
    b->fd = -1;
    b->cb = cb;
    b->arg = arg;
    return b;
}

/* Stops watchers, closes the fd, frees everything. The only place that does. */
static void batch_free(struct hapi_batch *b)
{
    if (b->fd >= 0) {
        ev_io_stop(b->h->loop, &b->io);
        close(b->fd);
    }
    ev_timer_stop(b->h->loop, &b->deadline);
    buf_release(&b->out);
    free(b->line);
    free(b);
}

static void batch_on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct hapi_batch *b = container_of(w, struct hapi_batch, deadline);
    char why[64];
    snprintf(why, sizeof(why), "no complete reply within %d ms", HAPI_TIMEOUT_MS);
    batch_finish(b, false, why);
}

static void batch_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(revents);
    struct hapi_batch *b = container_of(w, struct hapi_batch, io);
    char why[160];
    if (b->phase == BATCH_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            snprintf(why, sizeof(why), "connect: %s", strerror(soerr));
            batch_finish(b, false, why);
            return;
        }
        /* The command is short and the socket buffer empty, so this normally
         * completes at once; a partial write waits for the next EV_WRITE. */
        ssize_t n = send(b->fd, b->line + b->written, b->linelen - b->written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                return;
            }
            snprintf(why, sizeof(why), "write: %s", strerror(errno));
            batch_finish(b, false, why);
            return;
        }
        b->written += (size_t)n;
        if (b->written < b->linelen) {
            return;
        }
        b->phase = BATCH_READING;
        ev_io_stop(loop, &b->io);
        ev_io_set(&b->io, b->fd, EV_READ);
        ev_io_start(loop, &b->io);
        return;
    }
    for (;;) {
        /* Reads stop at HAPI_MAX_OUTPUT; the buffer's one spare byte beyond it
         * is kept for the NUL that batch_finish writes. */
        size_t room = HAPI_MAX_OUTPUT - buf_len(&b->out);
        if (room == 0) {
            snprintf(why, sizeof(why), "reply exceeds %u bytes", HAPI_MAX_OUTPUT);
            batch_finish(b, false, why);
            return;
        }
        if (buf_reserve(&b->out, room < 4096 ? room : 4096) < 0) {
            batch_finish(b, false, "out of memory");
            return;
        }
        size_t want = buf_avail(&b->out) < room ? buf_avail(&b->out) : room;
        ssize_t n = read(b->fd, buf_wptr(&b->out), want);
        if (n > 0) {
            buf_commit(&b->out, (size_t)n);
            continue;
        }
        if (n == 0) {
            batch_finish(b, true, NULL);
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        }
        snprintf(why, sizeof(why), "read: %s", strerror(errno));
        batch_finish(b, false, why);
        return;
    }
}

/* Open the socket and start connecting. 0, or -1 with the reason in why (the
 * caller finishes the batch). */
static int batch_start(struct hapi_batch *b, char *why, size_t whylen)
{
    struct hapi *h = b->h;
    if (buf_init(&b->out, HAPI_BUF_INITIAL, HAPI_MAX_OUTPUT + 1) < 0) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    ev_timer_init(&b->deadline, batch_on_timeout, HAPI_TIMEOUT_MS / 1000.0, 0.);
    ev_timer_start(h->loop, &b->deadline);
    int fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    b->fd = fd;
    ev_io_init(&b->io, batch_on_io, fd, EV_WRITE);
    b->phase = BATCH_CONNECTING;
    if (connect(fd, (const struct sockaddr *)&h->addr, h->addrlen) < 0 && errno != EINPROGRESS) {
        /* unix sockets never return EINPROGRESS; EAGAIN there means a full
         * backlog, which is a failure for this round like any other */
        snprintf(why, whylen, "connect: %s", strerror(errno));
        return -1;
    }
    ev_io_start(h->loop, &b->io);
    return 0;
}

static void refresh_complete(struct hapi *h, struct hapi_batch *b)
{
    char err[256];
    const char *text = (const char *)buf_rptr(&b->out);
    size_t len = buf_len(&b->out);
    const char *st, *stat, *rest, *rest2;
    size_t stlen, statlen, restlen, rest2len;
    struct hapi_table t = {0};
    if (hapi_parse_split_reply(text, len, &st, &stlen, &rest, &restlen) < 0 ||
        hapi_parse_split_reply(rest, restlen, &stat, &statlen, &rest2, &rest2len) < 0) {
        snprintf(err, sizeof(err), "truncated reply (%zu bytes): %.*s", len,
                 (int)(len > 80 ? 80 : len), text);
        goto fail;
    }
    if (hapi_parse_servers_state(st, stlen, &t, err, sizeof(err)) < 0 ||
        hapi_parse_stat(stat, statlen, &t, err, sizeof(err)) < 0) {
        goto fail;
    }
    if (t.skipped > 0) {
        log_debug("hapi %s: %zu servers skipped (name >= %d bytes)", h->name, t.skipped,
                  SRV_NAME_MAX);
    }
    if (hapi_parse_install(&t) < 0) {
        snprintf(err, sizeof(err), "cannot install the servers view (out of memory)");
        goto fail;
    }
    hapi_parse_table_release(&t);
    /* optional: a peer that answers only the first two leaves the pid unknown */
    const char *info, *rest3;
    size_t infolen, rest3len;
    h->pid = 0;
    if (hapi_parse_split_reply(rest2, rest2len, &info, &infolen, &rest3, &rest3len) == 0) {
        h->pid = hapi_parse_info_pid(info, infolen);
    }
    note_success(h);
    h->ready = true;
    h->healthy = true;
    for (size_t i = 0; i < h->nhooks; i++) {
        h->hooks[i].fn(h->hooks[i].arg);
    }
    return;

fail:
    hapi_parse_table_release(&t);
    h->healthy = false;
    note_failure(h, HAPI_HEALTH_BAD_REPLY, err);
}

/* Every batch ends here exactly once: detach it, report, free it. */
static void batch_finish(struct hapi_batch *b, bool ok, const char *why)
{
    struct hapi *h = b->h;
    if (b->fd >= 0) {
        ev_io_stop(h->loop, &b->io);
        close(b->fd);
        b->fd = -1;
    }
    ev_timer_stop(h->loop, &b->deadline);

    if (b->kind == BATCH_REFRESH) {
        h->refresh = NULL;
        if (ok) {
            refresh_complete(h, b);
        } else if (!h->closing) {
            h->healthy = false;
            note_failure(h, HAPI_HEALTH_UNREACHABLE, why);
        }
        batch_free(b);
        if (!h->closing) {
            refresh_schedule(h);
        }
        return;
    }

    if (h->cmd_cur == b) {
        h->cmd_cur = NULL;
    }
    const char *text = why;
    size_t tlen = why ? strlen(why) : 0;
    if (ok) {
        note_success(h);
        /* NUL-terminate in place: the byte after the reply is the '\n' we strip,
         * or the spare byte past HAPI_MAX_OUTPUT that buf_init reserved. */
        char *out = (char *)buf_rptr(&b->out);
        size_t len = buf_len(&b->out);
        const char *reply, *rest;
        size_t rlen, restlen;
        if (hapi_parse_split_reply(out, len, &reply, &rlen, &rest, &restlen) == 0) {
            if (rlen > 0) {
                rlen--; /* the reply's last '\n' */
            }
            out[rlen] = '\0';
            text = out;
            tlen = rlen;
            if (b->kind == BATCH_EMPTY_OK && rlen > 0) {
                ok = false;
                STATS_INC(haproxy_api_errors);
                log_warn("hapi %s: '%.*s' refused: %s", h->name, (int)(b->linelen - 1), b->line,
                         out);
            }
        } else if (b->kind == BATCH_EMPTY_OK) {
            ok = false;
            text = "truncated reply (no empty line)";
            tlen = strlen(text);
            STATS_INC(haproxy_api_errors);
        } else {
            /* raw command without a terminating empty line: hand over all of it */
            if (buf_reserve(&b->out, 1) < 0) {
                out[len > 0 ? len - 1 : 0] = '\0';
                tlen = len > 0 ? len - 1 : 0;
            } else {
                out = (char *)buf_rptr(&b->out);
                out[len] = '\0';
                tlen = len;
            }
            text = out;
        }
    } else if (!h->closing) {
        note_failure(h, HAPI_HEALTH_UNREACHABLE, why);
    }
    hapi_cb cb = b->cb;
    void *arg = b->arg;
    char empty[1] = {0};
    if (text == NULL) {
        text = empty;
    }
    bool changed = ok && b->kind == BATCH_EMPTY_OK;
    cb(arg, ok, text, tlen);
    batch_free(b);
    if (!h->closing) {
        /* a state change should reach the view now, not a period later */
        if (changed) {
            hapi_refresh_now(h);
        }
        cmd_pump(h);
    }
}

/* Start the next queued command if none is in flight. */
static void cmd_pump(struct hapi *h)
{
    while (h->cmd_cur == NULL && h->q_head != NULL && !h->closing) {
        struct hapi_batch *b = h->q_head;
        h->q_head = b->next;
        if (h->q_head == NULL) {
            h->q_tail = NULL;
        }
        h->qlen--;
        b->next = NULL;
        h->cmd_cur = b;
        char why[160];
        if (batch_start(b, why, sizeof(why)) < 0) {
            batch_finish(b, false, why); /* pumps again itself */
            return;
        }
    }
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    cmd_pump(container_of(w, struct hapi, kick));
}

/* After a refresh ended. A failure (HAProxy not up yet, restarting, a bad
 * reply) is retried soon: an agent started before its HAProxy must not wait a
 * whole period (which may be long) with nothing applied. The delay doubles so
 * that a HAProxy that stays down costs a connect per second at most. The timer
 * keeps its period, so the first success returns to it by itself. */
static void refresh_schedule(struct hapi *h)
{
    if (h->healthy) {
        h->retry_ms = 0;
        return;
    }
    unsigned cap = (unsigned)(h->every * 1000.0);
    if (cap > HAPI_RETRY_MAX_MS) {
        cap = HAPI_RETRY_MAX_MS;
    }
    h->retry_ms = h->retry_ms == 0 ? HAPI_RETRY_MIN_MS : h->retry_ms * 2;
    if (h->retry_ms > cap) {
        h->retry_ms = cap;
    }
    ev_timer_stop(h->loop, &h->refresh_timer);
    ev_timer_set(&h->refresh_timer, h->retry_ms / 1000.0, h->every);
    ev_timer_start(h->loop, &h->refresh_timer);
}

static void on_refresh_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    hapi_refresh_now(container_of(w, struct hapi, refresh_timer));
}

void hapi_refresh_now(struct hapi *h)
{
    if (h->refresh != NULL || h->closing) {
        return; /* at most one refresh in flight */
    }
    struct hapi_batch *b = batch_new(h, BATCH_REFRESH, HAPI_REFRESH_CMD, NULL, NULL);
    if (b == NULL) {
        note_failure(h, HAPI_HEALTH_UNREACHABLE, "out of memory");
        return;
    }
    h->refresh = b;
    char why[160];
    if (batch_start(b, why, sizeof(why)) < 0) {
        batch_finish(b, false, why);
    }
}

/* ---------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------- */

/* Parse c's address and period into h. 0, or -1 (logged) leaving h as it was. */
static int take_cfg(struct hapi *h, const struct cfg *c, double *every)
{
    char err[256];
    struct sockaddr_storage addr;
    unsigned addrlen;
    if (c->haproxy_socket == NULL || c->haproxy_socket[0] == '\0') {
        log_err("hapi: no haproxy_socket configured");
        return -1;
    }
    if (util_parse_addr(c->haproxy_socket, &addr, &addrlen, err, sizeof(err)) < 0) {
        log_err("hapi: haproxy_socket: %s", err);
        return -1;
    }
    h->addr = addr;
    h->addrlen = addrlen;
    snprintf(h->name, sizeof(h->name), "%s", c->haproxy_socket);
    *every = (c->haproxy_refresh_ms > 0 ? (double)c->haproxy_refresh_ms : 1000.0) / 1000.0;
    return 0;
}

struct hapi *hapi_new(struct ev_loop *loop, const struct cfg *c)
{
    struct hapi *h = calloc(1, sizeof(*h));
    double every;
    if (h == NULL) {
        return NULL;
    }
    if (take_cfg(h, c, &every) < 0) {
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->every = every;
    ev_timer_init(&h->refresh_timer, on_refresh_timer, 0., every);
    ev_timer_start(loop, &h->refresh_timer);
    ev_timer_init(&h->kick, on_kick, 0., 0.);
    return h;
}

int hapi_reconfigure(struct hapi *h, const struct cfg *c)
{
    double every;
    if (take_cfg(h, c, &every) < 0) {
        return -1;
    }
    /* restart the period from now, with a refresh at once on the new address */
    h->every = every;
    h->retry_ms = 0;
    ev_timer_stop(h->loop, &h->refresh_timer);
    ev_timer_set(&h->refresh_timer, 0., every);
    ev_timer_start(h->loop, &h->refresh_timer);
    return 0;
}

void hapi_free(struct hapi *h)
{
    if (h == NULL) {
        return;
    }
    h->closing = true;
    ev_timer_stop(h->loop, &h->refresh_timer);
    ev_timer_stop(h->loop, &h->kick);
    if (h->refresh != NULL) {
        batch_finish(h->refresh, false, "hapi: shutting down");
    }
    if (h->cmd_cur != NULL) {
        batch_finish(h->cmd_cur, false, "hapi: shutting down");
    }
    while (h->q_head != NULL) {
        struct hapi_batch *b = h->q_head;
        h->q_head = b->next;
        h->qlen--;
        batch_finish(b, false, "hapi: shutting down");
    }
    h->q_tail = NULL;
    free(h);
}

bool hapi_ready(const struct hapi *h)
{
    return h != NULL && h->ready;
}

bool hapi_healthy(const struct hapi *h)
{
    return h != NULL && h->healthy;
}

long hapi_pid(const struct hapi *h)
{
    return h != NULL && h->healthy ? h->pid : 0;
}

static int enqueue(struct hapi *h, enum batch_kind kind, const char *cmd, hapi_cb cb, void *arg)
{
    if (h->closing || cb == NULL || h->qlen >= HAPI_MAX_QUEUE) {
        return -1;
    }
    struct hapi_batch *b = batch_new(h, kind, cmd, cb, arg);
    if (b == NULL) {
        return -1;
    }
    if (h->q_tail != NULL) {
        h->q_tail->next = b;
    } else {
        h->q_head = b;
    }
    h->q_tail = b;
    h->qlen++;
    /* Start from the loop, so the callback never runs inside this call. */
    if (!ev_is_active(&h->kick)) {
        ev_timer_set(&h->kick, 0., 0.);
        ev_timer_start(h->loop, &h->kick);
    }
    return 0;
}

int hapi_command(struct hapi *h, const char *cmd, hapi_cb cb, void *arg)
{
    size_t n = strlen(cmd);
    if (n == 0 || n > HAPI_MAX_CMD) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)cmd[i];
        /* ';' would split it into a batch whose replies we would misattribute */
        if (ch == ';' || ch < 0x20 || ch == 0x7f) {
            return -1;
        }
    }
    return enqueue(h, BATCH_RAW, cmd, cb, arg);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= SRV_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f || ch == ';' || ch == '/' || ch == '\\' || ch == '#') {
            return false;
        }
    }
    return true;
}

int hapi_set_server_state(struct hapi *h, const char *backend, const char *server,
                          const char *state, hapi_cb cb, void *arg)
{
    if (!valid_name(backend) || !valid_name(server) ||
        (strcmp(state, "ready") != 0 && strcmp(state, "drain") != 0 &&
         strcmp(state, "maint") != 0)) {
        return -1;
    }
    char cmd[64 + 2 * SRV_NAME_MAX];
    snprintf(cmd, sizeof(cmd), "set server %s/%s state %s", backend, server, state);
    return enqueue(h, BATCH_EMPTY_OK, cmd, cb, arg);
}

int hapi_shutdown_sessions(struct hapi *h, const char *backend, const char *server, hapi_cb cb,
                           void *arg)
{
    if (!valid_name(backend) || !valid_name(server)) {
        return -1;
    }
    char cmd[64 + 2 * SRV_NAME_MAX];
    snprintf(cmd, sizeof(cmd), "shutdown sessions server %s/%s", backend, server);
    return enqueue(h, BATCH_EMPTY_OK, cmd, cb, arg);
}

int hapi_on_refresh(struct hapi *h, hapi_refresh_fn fn, void *arg)
{
    if (fn == NULL || h->nhooks >= HAPI_MAX_HOOKS) {
        return -1;
    }
    h->hooks[h->nhooks].fn = fn;
    h->hooks[h->nhooks].arg = arg;
    h->nhooks++;
    return 0;
}
