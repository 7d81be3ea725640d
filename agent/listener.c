/* listener.c - TCP and unix listening sockets, the accept loop and the
 * connection limit. Must not parse SPOP: each socket goes to conn_new().
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "slog.h"
#include "stats.h"
#include "util.h"

/* Accepts per readiness event: bounded so that a connection storm cannot
 * starve established connections. */
#define LSN_ACCEPT_BATCH 64
/* After EMFILE/ENFILE, pause accepting for this long instead of spinning. */
#define LSN_PAUSE_S 0.1

struct lsn {
    struct ev_loop *loop;
    int fd;
    bool is_unix;
    ev_io w;
    ev_timer pause_w;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* unix only */
    char name[128];
};

static struct lsn lsns[2];
static unsigned nlsns;
static uint32_t max_conns = 1000;
static unsigned tcp_port;

/* Descriptors kept for everything but SPOP connections: Redis (decisions, pub/sub),
 * the runtime API, the listeners, syslog sockets, metrics, stdio. */
#define LSN_FD_RESERVE 32

uint32_t listener_clamp_connections(uint32_t want, uint64_t nofile, unsigned reserve)
{
    if (nofile <= reserve + 1) {
        return 1;
    }
    uint64_t room = nofile - reserve;
    return want < room ? want : (uint32_t)room;
}

void listener_set_max_connections(const struct cfg *c)
{
    static uint32_t logged_want, logged_n;
    struct rlimit rl;
    unsigned reserve = LSN_FD_RESERVE;
    if (c->syslog_tcp != NULL && c->syslog_tcp[0] != '\0') {
        reserve += SLOG_MAX_CLIENTS;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        max_conns = c->max_connections;
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) { /* take what the hard limit allows */
        struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
            rl.rlim_cur = rl.rlim_max;
        }
    }
    uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    max_conns = listener_clamp_connections(c->max_connections, nofile, reserve);
    if (max_conns == logged_n && c->max_connections == logged_want) {
        return;
    }
    logged_want = c->max_connections;
    logged_n = max_conns;
    if (max_conns < c->max_connections) {
        log_warn("max_connections %u clamped to %u: RLIMIT_NOFILE is %llu and %u descriptors "
                 "are kept for Redis, the runtime API, syslog and metrics",
                 c->max_connections, max_conns, (unsigned long long)nofile, reserve);
    } else {
        log_info("max_connections %u (RLIMIT_NOFILE %llu, %u descriptors kept in reserve)",
                 max_conns, (unsigned long long)nofile, reserve);
    }
}

uint32_t listener_max_connections(void)
{
    return max_conns;
}

unsigned listener_tcp_port(void)
{
    return tcp_port;
}

static void peer_name(const struct sockaddr_storage *ss, bool is_unix, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (is_unix) {
        snprintf(out, n, "unix");
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, n, "%s:%u", host, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, n, "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(revents);
    struct lsn *l = container_of(w, struct lsn, pause_w);
    ev_io_start(loop, &l->w);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(revents);
    struct lsn *l = container_of(w, struct lsn, w);
    for (int i = 0; i < LSN_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }
            log_err("%s: accept: %s; pausing %.1f s", l->name, strerror(errno), LSN_PAUSE_S);
            ev_io_stop(loop, &l->w);
            ev_timer_set(&l->pause_w, LSN_PAUSE_S, 0.0);
            ev_timer_start(loop, &l->pause_w);
            return;
        }
        char peer[64];
        peer_name(&ss, l->is_unix, peer, sizeof(peer));
        if (conn_count() >= max_conns) {
            STATS_INC(conn_rejected);
            log_warn("%s: refusing %s: %u connections already (max_connections)", l->name, peer,
                     conn_count());
            close(fd);
            continue;
        }
        if (!l->is_unix) {
            int one = 1;
            /* ACKs are small and latency-bound: never wait for Nagle */
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
                log_warn("%s: TCP_NODELAY: %s", peer, strerror(errno));
            }
        }
        (void)conn_new(loop, fd, peer); /* logs and closes fd itself on failure */
    }
}

static int listener_open(struct ev_loop *loop, const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    char perr[200];
    if (util_parse_addr(addr, &ss, &sslen, perr, sizeof(perr)) != 0) {
        snprintf(err, errlen, "listen address: %s", perr);
        return -1;
    }
    struct lsn *l = &lsns[nlsns];
    memset(l, 0, sizeof(*l));
    l->loop = loop;
    l->is_unix = ss.ss_family == AF_UNIX;
    snprintf(l->name, sizeof(l->name), "listener %s", addr);
    l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", addr, strerror(errno));
        return -1;
    }
    if (l->is_unix) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        struct stat st;
        /* A socket file left by a previous run would make bind fail. */
        if (stat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(un->sun_path);
        }
        _Static_assert(sizeof(l->path) == sizeof(un->sun_path), "path size");
        memcpy(l->path, un->sun_path, sizeof(l->path)); /* util_parse_addr NUL-terminated it */
    } else {
        int one = 1;
        (void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (bind(l->fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "%s: bind: %s", addr, strerror(errno));
        goto err_close_fd;
    }
    if (listen(l->fd, 1024) != 0) {
        snprintf(err, errlen, "%s: listen: %s", addr, strerror(errno));
        goto err_close_fd;
    }
    if (!l->is_unix) {
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);
        if (getsockname(l->fd, (struct sockaddr *)&bound, &blen) == 0) {
            tcp_port = ntohs(bound.ss_family == AF_INET
                                 ? ((struct sockaddr_in *)&bound)->sin_port
                                 : ((struct sockaddr_in6 *)&bound)->sin6_port);
        }
        log_info("listening for SPOP on %s (port %u)", addr, tcp_port);
    } else {
        log_info("listening for SPOP on unix socket %s", l->path);
    }
    ev_io_init(&l->w, accept_cb, l->fd, EV_READ);
    ev_init(&l->pause_w, pause_cb);
    ev_io_start(loop, &l->w);
    nlsns++;
    return 0;

err_close_fd:
    close(l->fd);
    l->fd = -1;
    return -1;
}

int listener_init(struct ev_loop *loop, const struct cfg *cfg, char *err, size_t errlen)
{
    listener_set_max_connections(cfg);
    bool want_tcp = cfg->listen != NULL && cfg->listen[0] != '\0';
    bool want_unix = cfg->unix_socket != NULL && cfg->unix_socket[0] != '\0';
    if (!want_tcp && !want_unix) {
        snprintf(err, errlen, "neither listen nor unix_socket is set");
        return -1;
    }
    if (want_tcp && listener_open(loop, cfg->listen, err, errlen) != 0) {
        goto err_stop;
    }
    if (want_unix) {
        char addr[256];
        snprintf(addr, sizeof(addr), "%s%s", cfg->unix_socket[0] == '/' ? "" : "unix:",
                 cfg->unix_socket);
        if (listener_open(loop, addr, err, errlen) != 0) {
            goto err_stop;
        }
    }
    return 0;

err_stop:
    listener_shutdown();
    return -1;
}

void listener_shutdown(void)
{
    for (unsigned i = 0; i < nlsns; i++) {
        struct lsn *l = &lsns[i];
        ev_io_stop(l->loop, &l->w);
        ev_timer_stop(l->loop, &l->pause_w);
        close(l->fd);
        if (l->is_unix && l->path[0] != '\0') {
            unlink(l->path);
        }
    }
    nlsns = 0;
    tcp_port = 0;
}
