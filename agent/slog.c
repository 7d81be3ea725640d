/* slog.c - syslog receiver (UDP datagrams, TCP octet-counted or newline
 * framing) that extracts stickyd's close fields from HAProxy log lines.
 * Owns its sockets and watchers; never blocks the loop. */
#include "slog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define SLOG_UDP_BURST 64 /* datagrams per wake-up, so one flood cannot starve SPOP */
#define SLOG_PAUSE_S 0.1  /* after EMFILE/ENFILE, stop accepting this long (as listener.c) */
#define SLOG_DEFAULT_IDLE_MS (5 * 60 * 1000)
#define SLOG_DEFAULT_PER_PEER 8u
#define SLOG_EVICT_QUIET_S 1.0 /* silent this long, a client may be closed for a new one */

struct slog_client {
    ev_io io;
    ev_timer idle;
    struct buf in;
    struct slog *owner;
    struct slog_client *next;
    struct sockaddr_storage peer;
    ev_tstamp last_rx; /* when it last sent anything (or connected) */
};

struct slog {
    struct ev_loop *loop;
    ev_io udp_io;
    ev_io tcp_io;
    ev_io unix_io;
    ev_timer pause_w;
    int udp_fd;
    int tcp_fd;
    int unix_fd;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    slog_close_fn fn;
    void *arg;
    struct slog_client *clients;
    unsigned nclients;
    struct slog_allow allow;
    double idle_s;
    unsigned per_peer;
    ev_tstamp refused_logged; /* refusals are logged at most once a second */
    uint64_t refused_quiet;
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

/* ---- peers ---------------------------------------------------------------- */

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
    }
    snprintf(out, n, "%s", host);
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return false;
    }
    if (a->ss_family == AF_INET) {
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    }
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* A peer outside the allow-list: counted always, logged at most once a second. */
static void refuse(struct slog *s, const struct sockaddr_storage *ss, const char *what)
{
    STATS_INC(syslog_refused);
    ev_tstamp now = ev_now(s->loop);
    if (now - s->refused_logged < 1.0) {
        s->refused_quiet++;
        return;
    }
    char peer[INET6_ADDRSTRLEN];
    peer_text(ss, peer, sizeof(peer));
    log_warn("slog: refused %s from %s: not in syslog.allow (%llu more refused since the last "
             "such line)", what, peer, (unsigned long long)s->refused_quiet);
    s->refused_logged = now;
    s->refused_quiet = 0;
}

/* ---- sockets ------------------------------------------------------------ */

static int open_socket(const char *addr, int type, unsigned mode, char *path, size_t pathlen,
                       char *err, size_t errlen)
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
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        struct stat st;
        /* a socket file left by a previous run would make bind fail */
        if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(un->sun_path);
        }
        if (path != NULL && pathlen >= sizeof(un->sun_path)) {
            memcpy(path, un->sun_path, sizeof(un->sun_path)); /* NUL-terminated by parse */
        }
    } else {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (type == SOCK_DGRAM) {
        int rcvbuf = 4 << 20; /* absorb bursts of close lines */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        snprintf(err, errlen, "bind %s: %s", addr, strerror(errno));
        goto err_close;
    }
    if (ss.ss_family == AF_UNIX && chmod(((const struct sockaddr_un *)&ss)->sun_path,
                                         (mode_t)mode) < 0) {
        snprintf(err, errlen, "chmod %s: %s", addr, strerror(errno));
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
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(s->udp_fd, dgram, sizeof(dgram), 0, (struct sockaddr *)&ss, &sl);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log_warn("slog: udp recv: %s", strerror(errno));
            }
            return;
        }
        if (!slog_allow_match(&s->allow, &ss)) {
            refuse(s, &ss, "a datagram");
            continue;
        }
        deliver(s, dgram, (size_t)n);
    }
}

/* The unix datagram socket: its file mode is the boundary, every sender is believed. */
static void unix_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct slog *s = container_of(w, struct slog, unix_io);
    char dgram[SLOG_MAX_LINE];
    for (int i = 0; i < SLOG_UDP_BURST; i++) {
        ssize_t n = recv(s->unix_fd, dgram, sizeof(dgram), 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log_warn("slog: unix recv: %s", strerror(errno));
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
    ev_timer_stop(s->loop, &c->idle);
    close(c->io.fd);
    buf_release(&c->in);
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
    ev_timer_again(loop, &c->idle);
    c->last_rx = ev_now(loop);
    buf_commit(&c->in, (size_t)n);
    if (client_parse(c) < 0) {
        log_warn("slog: tcp client broke syslog framing; closing it");
        client_free(c);
    }
}

static void client_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct slog_client *c = container_of(w, struct slog_client, idle);
    char peer[INET6_ADDRSTRLEN];
    peer_text(&c->peer, peer, sizeof(peer));
    STATS_INC(syslog_tcp_idle_closed);
    log_info("slog: tcp log client %s silent for %.0f s; closing it", peer, c->owner->idle_s);
    client_free(c);
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(revents);
    struct slog *s = container_of(w, struct slog, pause_w);
    ev_io_start(loop, &s->tcp_io);
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(revents);
    struct slog *s = container_of(w, struct slog, tcp_io);
    for (int k = 0; k < SLOG_MAX_CLIENTS; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->tcp_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and kin: the pending connection stays readable, so
                 * retrying at once spins; pause as the SPOP listener does */
                log_warn("slog: accept: %s; pausing %.1f s", strerror(errno), SLOG_PAUSE_S);
                ev_io_stop(loop, &s->tcp_io);
                ev_timer_set(&s->pause_w, SLOG_PAUSE_S, 0.0);
                ev_timer_start(loop, &s->pause_w);
            }
            return;
        }
        if (!slog_allow_match(&s->allow, &ss)) {
            refuse(s, &ss, "a tcp log client");
            close(fd);
            continue;
        }
        unsigned same = 0;
        struct slog_client *quiet = NULL; /* the longest silent client */
        for (struct slog_client *o = s->clients; o != NULL; o = o->next) {
            same += same_host(&o->peer, &ss);
            quiet = quiet == NULL || o->last_rx < quiet->last_rx ? o : quiet;
        }
        /* full: a client silent for a while makes room, so idle sockets cannot
         * lock HAProxy's ring out until the idle timeout */
        if (s->nclients >= SLOG_MAX_CLIENTS && same < s->per_peer && quiet != NULL &&
            ev_now(loop) - quiet->last_rx >= SLOG_EVICT_QUIET_S) {
            char qp[INET6_ADDRSTRLEN];
            peer_text(&quiet->peer, qp, sizeof(qp));
            STATS_INC(syslog_tcp_idle_closed);
            log_info("slog: %d tcp log clients: closing the one silent longest (%s) for a "
                     "new one", SLOG_MAX_CLIENTS, qp);
            client_free(quiet);
        }
        struct slog_client *c = NULL;
        if (s->nclients >= SLOG_MAX_CLIENTS || same >= s->per_peer ||
            (c = calloc(1, sizeof(*c))) == NULL || buf_init(&c->in, 4096, 4 * SLOG_MAX_LINE) < 0) {
            char peer[INET6_ADDRSTRLEN];
            peer_text(&ss, peer, sizeof(peer));
            STATS_INC(syslog_tcp_refused);
            log_warn("slog: refusing a tcp log client from %s (%u of %u from it, %u of %d in "
                     "all, or no memory)", peer, same, s->per_peer, s->nclients,
                     SLOG_MAX_CLIENTS);
            free(c);
            close(fd);
            continue;
        }
        c->owner = s;
        c->peer = ss;
        c->last_rx = ev_now(loop);
        c->next = s->clients;
        s->clients = c;
        s->nclients++;
        ev_io_init(&c->io, client_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
        ev_init(&c->idle, client_idle_cb);
        c->idle.repeat = s->idle_s;
        ev_timer_again(loop, &c->idle);
    }
}

struct slog *slog_new(struct ev_loop *loop, const char *udp, const char *tcp, slog_close_fn fn,
                      void *arg, char *err, size_t errlen)
{
    struct slog_opts o = {.udp = udp, .tcp = tcp};
    return slog_new_opts(loop, &o, fn, arg, err, errlen);
}

struct slog *slog_new_opts(struct ev_loop *loop, const struct slog_opts *o, slog_close_fn fn,
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
    s->udp_fd = s->tcp_fd = s->unix_fd = -1;
    s->idle_s = (double)(o->tcp_idle_ms > 0 ? o->tcp_idle_ms : SLOG_DEFAULT_IDLE_MS) / 1000.0;
    s->per_peer = o->tcp_per_peer > 0 ? o->tcp_per_peer : SLOG_DEFAULT_PER_PEER;
    s->refused_logged = -10.0;
    ev_init(&s->pause_w, pause_cb);
    char why[160];
    if (slog_allow_parse(o->allow, &s->allow, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "syslog.allow: %s", why);
        goto err_free;
    }
    if (o->udp != NULL && o->udp[0] != '\0') {
        s->udp_fd = open_socket(o->udp, SOCK_DGRAM, 0, NULL, 0, err, errlen);
        if (s->udp_fd < 0) {
            goto err_free;
        }
        ev_io_init(&s->udp_io, udp_cb, s->udp_fd, EV_READ);
        ev_io_start(loop, &s->udp_io);
    }
    if (o->tcp != NULL && o->tcp[0] != '\0') {
        s->tcp_fd = open_socket(o->tcp, SOCK_STREAM, 0, NULL, 0, err, errlen);
        if (s->tcp_fd < 0) {
            goto err_free;
        }
        ev_io_init(&s->tcp_io, tcp_accept_cb, s->tcp_fd, EV_READ);
        ev_io_start(loop, &s->tcp_io);
    }
    if (o->unix_path != NULL && o->unix_path[0] != '\0') {
        char addr[sizeof(s->unix_path) + 8];
        snprintf(addr, sizeof(addr), "%s%s", o->unix_path[0] == '/' ? "" : "unix:", o->unix_path);
        s->unix_fd = open_socket(addr, SOCK_DGRAM, o->unix_mode ? o->unix_mode : 0660,
                                 s->unix_path, sizeof(s->unix_path), err, errlen);
        if (s->unix_fd < 0) {
            s->unix_path[0] = '\0';
            goto err_free;
        }
        ev_io_init(&s->unix_io, unix_cb, s->unix_fd, EV_READ);
        ev_io_start(loop, &s->unix_io);
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
    ev_timer_stop(s->loop, &s->pause_w);
    if (s->udp_fd >= 0) {
        ev_io_stop(s->loop, &s->udp_io);
        close(s->udp_fd);
    }
    if (s->tcp_fd >= 0) {
        ev_io_stop(s->loop, &s->tcp_io);
        close(s->tcp_fd);
    }
    if (s->unix_fd >= 0) {
        ev_io_stop(s->loop, &s->unix_io);
        close(s->unix_fd);
        if (s->unix_path[0] != '\0') {
            unlink(s->unix_path);
        }
    }
    free(s);
}
