/* metrics.c - libmicrohttpd in external epoll mode under libev: /metrics, /healthz, /readyz.
 * Owns the HTTP daemon and its two watchers; builds bodies from stats.c and servers.c.
 * Must never block: MHD's sockets are non-blocking and MHD_run() only does ready work. */
#include "metrics.h"

#include <errno.h>
#include <ev.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "affinity.h"
#include "config.h"
#include "ledger.h"
#include "log.h"
#include "model.h"
#include "servers.h"
#include "stats.h"
#include "util.h"

/* Enough for a few scrapers and a health checker; the rest wait in the backlog. */
#define METRICS_MAX_CONNECTIONS 32u
#define METRICS_IDLE_TIMEOUT_S 5u
#define METRICS_CONN_MEMORY (32u * 1024u)
#define METRICS_BACKLOG 16u

struct metrics {
    struct ev_loop *loop;
    struct MHD_Daemon *d;
    ev_io io;    /* MHD's epoll fd: readable when any of its sockets has work */
    ev_timer tm; /* MHD_get_timeout(): idle timeouts, buffered work */
    struct metrics_hooks hooks;
    bool ready;
    unsigned port;
};

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    UNUSED(cls);
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    log_warn("metrics: %s", line);
}

static unsigned live_connections(struct metrics *m)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i != NULL ? i->num_connections : 0;
}

/* One MHD_run, then sleep no longer than MHD allows. MHD takes its listening
 * socket out of its epoll set while at the connection limit and puts it back only
 * at the start of a later run; when this run closed connections, nothing would
 * wake us for that later run (no timeout is due, the backlog's sockets are not
 * watched), so run again at once. */
static void run_and_rearm(struct metrics *m)
{
    unsigned before = live_connections(m);
    MHD_run(m->d);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    ev_timer_stop(m->loop, &m->tm);
    if (live_connections(m) < before) {
        ev_timer_set(&m->tm, 0.0, 0.0);
        ev_timer_start(m->loop, &m->tm);
    } else if (MHD_get_timeout(m->d, &ms) == MHD_YES) {
        ev_timer_set(&m->tm, (ev_tstamp)ms / 1000.0, 0.0);
        ev_timer_start(m->loop, &m->tm);
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    run_and_rearm(container_of(w, struct metrics, io));
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    run_and_rearm(container_of(w, struct metrics, tm));
}

/* Label values come from HAProxy names (A-Z a-z 0-9 . - _ :), but escape anyway. */
static void put_label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            fputc('\\', f);
            fputc(*s, f);
        } else if (*s == '\n') {
            fputs("\\n", f);
        } else {
            fputc(*s, f);
        }
    }
}

static void put_server(FILE *f, const char *metric, const struct srv_backend *b,
                       const struct srv *s)
{
    fprintf(f, "stickyd_%s{backend=\"", metric);
    put_label(f, b->name);
    fputs("\",server=\"", f);
    put_label(f, s->name);
    fputs("\"", f);
}

static int64_t srv_weight(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    UNUSED(m);
    UNUSED(b);
    return s->weight;
}

static int64_t srv_scur(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    UNUSED(m);
    UNUSED(b);
    return s->scur;
}

static int64_t srv_conns(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    struct ledger_srv v;
    ledger_server(m->hooks.ledger, b->name, s->name, &v);
    return v.conns;
}

/* The fleet-wide cap: limits.<backend>.maxconn, else HAProxy's server maxconn; 0 none. */
static int64_t srv_maxconn(const struct metrics *m, const struct srv_backend *b,
                           const struct srv *s)
{
    struct cfg_srv_limits lim = {0};
    if (m->hooks.cfg != NULL) {
        cfg_limits_of(m->hooks.cfg, b->name, s->name, &lim);
    }
    return lim.maxconn > 0 ? (int64_t)lim.maxconn : (int64_t)s->maxconn;
}

/* Slow start: the share of its weight a server gets now, in percent (100: none). */
static int64_t srv_ramp(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    struct cfg_srv_limits lim = {0};
    struct ledger_srv v;
    if (m->hooks.cfg != NULL) {
        cfg_limits_of(m->hooks.cfg, b->name, s->name, &lim);
    }
    ledger_server(m->hooks.ledger, b->name, s->name, &v);
    int64_t now = ledger_redis_now_ms(m->hooks.ledger);
    return aff_ramp_permille(v.since_ms, now > 0 ? now : util_now_ms(), lim.slowstart_ms) / 10;
}

/* One value per server: the servers view, then the ledger's fleet view. */
static const struct {
    const char *metric, *help;
    int64_t (*value)(const struct metrics *m, const struct srv_backend *b, const struct srv *s);
    bool fleet; /* read from the ledger: shown only with one */
} server_gauges[] = {
    {"server_weight", "This agent's view of a server's configured weight", srv_weight, false},
    {"server_local_sessions", "The local HAProxy's current sessions (scur)", srv_scur, false},
    {"server_connections",
     "Cluster-wide live connections as this agent's decisions see them (last batch plus "
     "its own unacknowledged opens and closes)",
     srv_conns, true},
    {"server_maxconn",
     "Fleet-wide cap of a server's live connections (limits.maxconn, else HAProxy's server "
     "maxconn); 0: none",
     srv_maxconn, false},
    {"server_slowstart_percent",
     "Slow start: the share of its weight a server takes new sessions at now (100: full)",
     srv_ramp, true},
};

static const char *const admin_names[] = {
    [MODEL_READY] = "ready", [MODEL_DRAIN] = "drain", [MODEL_MAINT] = "maint"};
_Static_assert(ARRAY_SIZE(admin_names) == MODEL_ADMIN_COUNT, "a name per admin state");

/* A one-hot family: for each server, one series per state, 1 for its current one. */
static void render_states(struct metrics *m, FILE *f, const char *metric, const char *help,
                          const char *const *names, int count,
                          int (*current)(const struct metrics *m, const struct srv_backend *b,
                                         const struct srv *s))
{
    fprintf(f, "# HELP stickyd_%s %s\n# TYPE stickyd_%s gauge\n", metric, help, metric);
    for (size_t i = 0; i < servers_count(); i++) {
        const struct srv_backend *b = servers_at(i);
        for (size_t j = 0; j < b->nservers; j++) {
            int cur = current(m, b, &b->servers[j]);
            for (int st = 0; st < count; st++) {
                put_server(f, metric, b, &b->servers[j]);
                fprintf(f, ",state=\"%s\"} %d\n", names[st], cur == st);
            }
        }
    }
}

static int haproxy_state(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    UNUSED(m);
    UNUSED(b);
    return (int)s->state;
}

static int admin_state(const struct metrics *m, const struct srv_backend *b, const struct srv *s)
{
    struct ledger_srv v;
    ledger_server(m->hooks.ledger, b->name, s->name, &v);
    return (int)v.admin;
}

/* This agent's view of each server. */
static void render_servers(struct metrics *m, FILE *f)
{
    static const char *srv_names[MODEL_STATE_COUNT];
    for (int st = 0; st < MODEL_STATE_COUNT; st++) {
        srv_names[st] = model_state_name((enum model_state)st);
    }
    render_states(m, f, "server_state",
                  "This agent's view of a server's HAProxy state (1: current)", srv_names,
                  MODEL_STATE_COUNT, haproxy_state);
    if (m->hooks.ledger != NULL) {
        render_states(m, f, "server_admin_state",
                      "The cluster's admin state of a server (stickyctl drain/maint), as this "
                      "agent last read it (1: current)",
                      admin_names, MODEL_ADMIN_COUNT, admin_state);
    }
    for (size_t g = 0; g < ARRAY_SIZE(server_gauges); g++) {
        if (server_gauges[g].fleet && m->hooks.ledger == NULL) {
            continue;
        }
        fprintf(f, "# HELP stickyd_%s %s\n# TYPE stickyd_%s gauge\n", server_gauges[g].metric,
                server_gauges[g].help, server_gauges[g].metric);
        for (size_t i = 0; i < servers_count(); i++) {
            const struct srv_backend *b = servers_at(i);
            for (size_t j = 0; j < b->nservers; j++) {
                put_server(f, server_gauges[g].metric, b, &b->servers[j]);
                fprintf(f, "} %lld\n", (long long)server_gauges[g].value(m, b, &b->servers[j]));
            }
        }
    }
}

int metrics_render(struct metrics *m, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = open_memstream(out, len);
    if (f == NULL) {
        return -1;
    }
    if (m->hooks.refresh != NULL) {
        m->hooks.refresh(m->hooks.arg);
    }
    fprintf(f,
            "# HELP stickyd_build_info The running stickyd's version\n"
            "# TYPE stickyd_build_info gauge\n"
            "stickyd_build_info{version=\"%s\"} 1\n",
            m->hooks.version != NULL ? m->hooks.version : "unknown");
    stats_dump_prometheus(f);
    render_servers(m, f);
    if (fclose(f) != 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* Queue body (copied by MHD) with the given status and content type. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    enum MHD_Result rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (rc == MHD_YES) {
        rc = MHD_queue_response(conn, status, resp);
    }
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    UNUSED(version);
    UNUSED(upload_data);
    struct metrics *m = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    if (*con_cls == NULL) {
        *con_cls = m; /* first call: headers only; answer on the next one */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a GET with a body: ignore it */
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") == 0) {
        char *body;
        size_t len;
        if (metrics_render(m, &body, &len) != 0) {
            return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        enum MHD_Result rc =
            reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len);
        free(body);
        return rc;
    }
    if (strcmp(url, "/healthz") == 0) {
        return reply_text(conn, MHD_HTTP_OK, "ok\n");
    }
    if (strcmp(url, "/readyz") == 0) {
        bool up = m->hooks.redis_up != NULL && m->hooks.redis_up(m->hooks.arg);
        char text[64];
        snprintf(text, sizeof(text), "%s\nredis: %s\n", m->ready ? "ready" : "not ready",
                 up ? "connected" : "fallback");
        return reply_text(conn, m->ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n");
}

struct metrics *metrics_new(struct ev_loop *loop, const char *addr,
                            const struct metrics_hooks *hooks, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    if (util_parse_addr(addr, &ss, &sslen, err, errlen) < 0) {
        return NULL;
    }
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
        snprintf(err, errlen, "metrics.listen: '%s' must be ADDR:PORT", addr);
        return NULL;
    }
    struct metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->hooks = *hooks;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_SUPPRESS_DATE_NO_CLOCK;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    /* The logger first, so that MHD reports even its option errors through it. */
    m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,                             //
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,                       //
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,                    //
                            MHD_OPTION_CONNECTION_LIMIT, METRICS_MAX_CONNECTIONS,            //
                            MHD_OPTION_CONNECTION_TIMEOUT, METRICS_IDLE_TIMEOUT_S,           //
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_CONN_MEMORY, //
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, METRICS_BACKLOG,                 //
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (m->d == NULL) {
        snprintf(err, errlen, "metrics.listen: cannot listen on %s (%s)", addr,
                 errno != 0 ? strerror(errno) : "libmicrohttpd refused");
        free(m);
        return NULL;
    }
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    if (ei == NULL || ei->epoll_fd < 0) {
        snprintf(err, errlen, "metrics: libmicrohttpd has no epoll fd");
        MHD_stop_daemon(m->d);
        free(m);
        return NULL;
    }
    m->port = pi != NULL ? pi->port : 0;
    ev_io_init(&m->io, on_io, ei->epoll_fd, EV_READ);
    ev_io_start(loop, &m->io);
    ev_init(&m->tm, on_timer);
    run_and_rearm(m);
    /* serving scrapes must not keep the loop alive when everything else is done */
    ev_unref(loop);
    log_info("metrics: serving /metrics, /healthz, /readyz on %s (port %u)", addr, m->port);
    return m;
}

void metrics_set_ready(struct metrics *m, bool ready)
{
    if (m != NULL) {
        m->ready = ready;
    }
}

unsigned metrics_port(const struct metrics *m)
{
    return m != NULL ? m->port : 0;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL) {
        return;
    }
    ev_ref(m->loop);
    ev_io_stop(m->loop, &m->io);
    ev_timer_stop(m->loop, &m->tm);
    MHD_stop_daemon(m->d);
    free(m);
}
