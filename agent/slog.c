/* slog.c - syslog receiver (UDP datagrams, TCP octet-counted or newline
 * framing) that extracts stickyd's close fields from HAProxy log lines.
 * Owns its sockets and watchers; never blocks the loop. */
#include "slog.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define SLOG_MAX_CLIENTS 64
#define SLOG_UDP_BURST 64 /* datagrams per wake-up, so one flood cannot starve SPOP */

struct slog_client {
    ev_io io;
    struct buf in;
    struct slog *owner;
    struct slog_client *next;
};

struct slog {
    struct ev_loop *loop;
    ev_io udp_io;
    ev_io tcp_io;
    int udp_fd;
    int tcp_fd;
    slog_close_fn fn;
    void *arg;
    struct slog_client *clients;
    unsigned nclients;
};

/* ---- parsing ---------------------------------------------------------- */

static const char *find_marker(const char *p, size_t len)
{
    const size_t mlen = sizeof(SLOG_MARKER) - 1;
    while (len >= mlen) {
        const char *hit = memchr(p, SLOG_MARKER[0], len - mlen + 1);
        if (hit == NULL) {
            return NULL;
        }
        /* the marker must start a word, so "xstickyd:" in a URL is not ours */
        if (memcmp(hit, SLOG_MARKER, mlen) == 0 &&
            (hit == p || hit[-1] == ' ' || hit[-1] == '"')) {
            return hit + mlen;
        }
        len -= (size_t)(hit + 1 - p);
        p = hit + 1;
    }
    return NULL;
}

/* The first occurrence wins: anything after our fields (a field HAProxy adds,
 * or text a client controls in a custom format) cannot override them. */
static void set_field(struct spop_str *f, const char *v, size_t n)
{
    if (f->ptr != NULL) {
        return;
    }
    if (n == 1 && v[0] == '-') {
        n = 0;
    }
    f->ptr = v;
    f->len = n;
}

int slog_parse_line(const char *line, size_t len, struct slog_close *out)
{
    memset(out, 0, sizeof(*out));
    out->status = -1;
    const char *p = find_marker(line, len);
    if (p == NULL) {
        return 0;
    }
    const char *end = line + len;
    while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\0')) {
        end--;
    }
    while (p < end) {
        while (p < end && *p == ' ') {
            p++;
        }
        const char *tok = p;
        while (p < end && *p != ' ') {
            p++;
        }
        size_t tlen = (size_t)(p - tok);
        if (tlen == 0) {
            break;
        }
        const char *eq = memchr(tok, '=', tlen);
        if (eq == NULL) {
            continue; /* a field HAProxy added after ours: ignore */
        }
        size_t klen = (size_t)(eq - tok);
        const char *v = eq + 1;
        size_t vlen = tlen - klen - 1;
        if (klen == 3 && memcmp(tok, "uid", 3) == 0) {
            set_field(&out->uid, v, vlen);
        } else if (klen == 2 && memcmp(tok, "be", 2) == 0) {
            set_field(&out->backend, v, vlen);
        } else if (klen == 3 && memcmp(tok, "srv", 3) == 0) {
            set_field(&out->server, v, vlen);
        } else if (klen == 3 && memcmp(tok, "sid", 3) == 0) {
            set_field(&out->sid, v, vlen);
        } else if (klen == 2 && memcmp(tok, "st", 2) == 0 && out->status < 0) {
            int st = 0;
            if (vlen == 0 || vlen > 3) {
                return -1;
            }
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    return -1;
                }
                st = st * 10 + (v[i] - '0');
            }
            out->status = st;
        }
    }
    if (out->uid.len == 0 || out->backend.len == 0) {
        return -1;
    }
    return 1;
}

static void deliver(struct slog *s, const char *line, size_t len)
{
    struct slog_close c;
    STATS_INC(syslog_lines);
    int rc = slog_parse_line(line, len, &c);
    if (rc == 1) {
        STATS_INC(syslog_closes);
        s->fn(&c, s->arg);
    } else if (rc < 0) {
        STATS_INC(syslog_bad_lines);
        log_debug("slog: malformed stickyd line: %.*s", (int)(len > 200 ? 200 : len), line);
    }
}

/* ---- sockets ------------------------------------------------------------ */

static int open_socket(const char *addr, int type, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    if (util_parse_addr(addr, &ss, &sslen, err, errlen) < 0) {
        return -1;
    }
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        int rcvbuf = 4 << 20; /* absorb bursts of close lines */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        snprintf(err, errlen, "bind %s: %s", addr, strerror(errno));
        goto err_close;
    }
    if (type == SOCK_STREAM && listen(fd, 64) < 0) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        goto err_close;
    }
    return fd;
err_close:
    close(fd);
    return -1;
}

static void udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct slog *s = container_of(w, struct slog, udp_io);
    char dgram[SLOG_MAX_LINE];
    for (int i = 0; i < SLOG_UDP_BURST; i++) {
        ssize_t n = recv(s->udp_fd, dgram, sizeof(dgram), 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log_warn("slog: udp recv: %s", strerror(errno));
            }
            return;
        }
        deliver(s, dgram, (size_t)n);
    }
}

static void client_free(struct slog_client *c)
{
    struct slog *s = c->owner;
    for (struct slog_client **pp = &s->clients; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    s->nclients--;
    ev_io_stop(s->loop, &c->io);
    close(c->io.fd);
    buf_free(&c->in);
    free(c);
}

int slog_frame(const char *p, size_t len, const char **msg, size_t *mlen)
{
    if (len == 0) {
        return 0;
    }
    if (p[0] >= '0' && p[0] <= '9') {
        /* octet counting: MSG-LEN SP SYSLOG-MSG */
        size_t i = 0, n = 0;
        while (i < len && i < 6 && p[i] >= '0' && p[i] <= '9') {
            n = n * 10 + (size_t)(p[i] - '0');
            i++;
        }
        if (i == len) {
            return 0;
        }
        if (p[i] != ' ' || n == 0 || n > SLOG_MAX_LINE) {
            return -1;
        }
        if (len < i + 1 + n) {
            return 0;
        }
        *msg = p + i + 1;
        *mlen = n;
        return (int)(i + 1 + n);
    }
    /* non-transparent framing: one message per line */
    const char *nl = memchr(p, '\n', len);
    if (nl == NULL) {
        return len >= SLOG_MAX_LINE ? -1 : 0;
    }
    *msg = p;
    *mlen = (size_t)(nl - p);
    return (int)(nl - p) + 1;
}

/* Consume every complete message in the client's buffer. -1: bad framing. */
static int client_parse(struct slog_client *c)
{
    for (;;) {
        const char *msg = NULL;
        size_t mlen = 0;
        int n = slog_frame((const char *)buf_rptr(&c->in), buf_len(&c->in), &msg, &mlen);
        if (n <= 0) {
            return n;
        }
        deliver(c->owner, msg, mlen);
        buf_consume(&c->in, (size_t)n);
    }
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct slog_client *c = container_of(w, struct slog_client, io);
    if (buf_reserve(&c->in, 4096) < 0) {
        log_warn("slog: tcp client sent an oversized message; closing it");
        client_free(c);
        return;
    }
    ssize_t n = read(w->fd, buf_wptr(&c->in), buf_avail(&c->in));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        client_free(c);
        return;
    }
    buf_commit(&c->in, (size_t)n);
    if (client_parse(c) < 0) {
        log_warn("slog: tcp client broke syslog framing; closing it");
        client_free(c);
    }
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(revents);
    struct slog *s = container_of(w, struct slog, tcp_io);
    for (;;) {
        int fd = accept4(s->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log_warn("slog: accept: %s", strerror(errno));
            }
            return;
        }
        struct slog_client *c = NULL;
        if (s->nclients >= SLOG_MAX_CLIENTS || (c = calloc(1, sizeof(*c))) == NULL ||
            buf_init(&c->in, 4096, 4 * SLOG_MAX_LINE) < 0) {
            log_warn("slog: refusing a tcp log client (limit %d or no memory)",
                     SLOG_MAX_CLIENTS);
            free(c);
            close(fd);
            continue;
        }
        c->owner = s;
        c->next = s->clients;
        s->clients = c;
        s->nclients++;
        ev_io_init(&c->io, client_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

struct slog *slog_new(struct ev_loop *loop, const char *udp, const char *tcp, slog_close_fn fn,
                      void *arg, char *err, size_t errlen)
{
    struct slog *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->fn = fn;
    s->arg = arg;
    s->udp_fd = s->tcp_fd = -1;
    if (udp != NULL && udp[0] != '\0') {
        s->udp_fd = open_socket(udp, SOCK_DGRAM, err, errlen);
        if (s->udp_fd < 0) {
            goto err_free;
        }
        ev_io_init(&s->udp_io, udp_cb, s->udp_fd, EV_READ);
        ev_io_start(loop, &s->udp_io);
    }
    if (tcp != NULL && tcp[0] != '\0') {
        s->tcp_fd = open_socket(tcp, SOCK_STREAM, err, errlen);
        if (s->tcp_fd < 0) {
            goto err_free;
        }
        ev_io_init(&s->tcp_io, tcp_accept_cb, s->tcp_fd, EV_READ);
        ev_io_start(loop, &s->tcp_io);
    }
    return s;
err_free:
    slog_free(s);
    return NULL;
}

void slog_free(struct slog *s)
{
    if (s == NULL) {
        return;
    }
    while (s->clients != NULL) {
        client_free(s->clients);
    }
    if (s->udp_fd >= 0) {
        ev_io_stop(s->loop, &s->udp_io);
        close(s->udp_fd);
    }
    if (s->tcp_fd >= 0) {
        ev_io_stop(s->loop, &s->tcp_io);
        close(s->tcp_fd);
    }
    free(s);
}
