/* main.c - stickyd: parse the command line, load the configuration, set up the
 * event loop, listeners and signals, call each module's init and teardown.
 * Nothing else lives here: every behaviour belongs to a module.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "assign.h"
#include "builtin.h"
#include "channel.h"
#include "config.h"
#include "conn.h"
#include "events.h"
#include "fleet.h"
#include "hapi.h"
#include "ledger.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "pace.h"
#include "req.h"
#include "sentinel.h"
#include "servers.h"
#include "sid.h"
#include "stats.h"
#include "slog.h"
#include "store.h"
#include "util.h"
#include "version.h"

/* SIGTERM: in-flight work gets this long before every connection is cut. */
#define DRAIN_TIMEOUT_S 1.5

static struct ev_loop *loop;
static struct cfg cfg;          /* the live configuration; swapped on reload */
static const char *cfg_path;    /* NULL: defaults only */
static const char *cli_listen;  /* command-line overrides survive reloads */
static const char *cli_level;
static bool stopping;
static ev_signal sig_term, sig_int, sig_hup, sig_usr1;
static ev_timer drain_w;
static struct hapi *hapi;      /* NULL: static server list */
static struct store *store;    /* Redis */
static struct sentinel *sentinel; /* finds the master when redis.sentinels is set */
static struct channel *channel; /* the events channel */
static struct admin *admin;    /* drain/maint applied to HAProxy; NULL: static list */
static struct fleet *fleet;    /* live counts */
static struct ledger *ledger;  /* batched writes, the fleet view */
static struct slog *slog;      /* close lines from HAProxy's log */
static struct metrics *metrics; /* NULL: metrics.listen is null */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stickyd [--config FILE] [--listen ADDR:PORT] [--check-config]\n"
            "               [--log-level error|warn|info|debug] [--version] [--help]\n"
            "\n"
            "  -c, --config FILE     JSON configuration (default: built-in defaults,\n"
            "                        SPOP on 127.0.0.1:12345)\n"
            "  -l, --listen ADDR     SPOP listen address, overrides the file's \"listen\"\n"
            "      --check-config    load and validate the configuration, then exit\n"
            "      --log-level LVL   overrides the file's \"log_level\"\n"
            "      --dump-assign-script  print the sticky-assign Lua script (benchmarks)\n"
            "      --config-reference[=markdown|roff]  print the configuration keys\n"
            "                        (README table, or the stickyd.json(5) man page's)\n"
            "      --server-cookie BACKEND/SERVER  print the server's tag under the config's\n"
            "                        session secret: its HAProxy \"cookie\" value (see README)\n"
            "  -V, --version         print the version\n"
            "  -h, --help            this text\n"
            "\n"
            "Signals: TERM/INT drain and exit (twice: at once), HUP reloads the\n"
            "configuration, USR1 logs the counters. Under systemd (Type=notify) it\n"
            "reports READY/RELOADING/STOPPING and honours WatchdogSec.\n");
}

/* Command-line values win over the file, at start-up and on every reload. */
static int apply_overrides(struct cfg *c)
{
    if (cli_listen != NULL) {
        char *s = strdup(cli_listen);
        if (s == NULL) {
            return -1;
        }
        free(c->listen);
        c->listen = s;
    }
    if (cli_level != NULL && log_parse_level(cli_level, &c->log_level) != 0) {
        return -1;
    }
    return 0;
}

static int load_config(struct cfg *c, char *err, size_t errlen)
{
    if (cfg_path != NULL) {
        if (cfg_load(cfg_path, c, err, errlen) != 0) {
            return -1;
        }
    } else if (cfg_defaults(c) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (apply_overrides(c) != 0) {
        snprintf(err, errlen, "bad --log-level or out of memory");
        cfg_release(c);
        return -1;
    }
    return 0;
}

static bool str_same(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* What the events channel brings: a state changed (apply it to HAProxy and to the
 * decisions' view now rather than at the next poll), or an operator moved a
 * session (the decisions forget their cached pin). */
static void on_event(const struct event *e, void *arg)
{
    UNUSED(arg);
    if (e->kind == EVENT_SERVER_STATE) {
        admin_poll(admin);
        ledger_refresh(ledger);
    } else if (e->kind == EVENT_SESSION_MOVED && e->backend != NULL && e->sid != NULL &&
               e->server != NULL) {
        assign_session_moved(e->backend, strlen(e->backend), e->sid, strlen(e->sid), e->server,
                             strlen(e->server));
    }
}

/* assign announces its decisions on the events channel. */
static void publish_event(const struct event *e, void *arg)
{
    channel_publish(arg, e);
}

/* ---- metrics hooks ------------------------------------------------------ */

/* The gauges other modules know, into struct stats before any dump. */
static void gauges_refresh(void *arg)
{
    UNUSED(arg);
    stats.spop_connections = conn_count();
    stats.redis_connected = store != NULL && store_connected(store);
    stats.redis_pending = store != NULL ? (int64_t)store_pending(store) : 0;
}

static bool redis_up(void *arg)
{
    UNUSED(arg);
    return store != NULL && store_connected(store);
}

/* ---- signals ----------------------------------------------------------- */

/* SIGTERM ends the loop once both the SPOP connections and the fleet's
 * goodbye (its share removed from Redis) are done, or at the drain timeout. */
static bool conns_drained, fleet_gone;

static void maybe_exit(void)
{
    if (conns_drained && fleet_gone) {
        ev_break(loop, EVBREAK_ALL);
    }
}

static void drained(void)
{
    log_info("all SPOP connections closed");
    conns_drained = true;
    maybe_exit();
}

static void fleet_left(void *arg)
{
    UNUSED(arg);
    fleet_gone = true;
    maybe_exit();
}

static void drain_timeout_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    UNUSED(w);
    UNUSED(revents);
    log_warn("drain timeout: %u connections cut", conn_count());
    ev_break(l, EVBREAK_ALL);
}

static void term_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    UNUSED(revents);
    if (stopping) {
        log_warn("second %s: exiting now", strsignal(w->signum));
        ev_break(l, EVBREAK_ALL);
        return;
    }
    stopping = true;
    notify_stopping();
    metrics_set_ready(metrics, false);
    log_info("%s: draining %u connections", strsignal(w->signum), conn_count());
    fleet_leave(fleet, fleet_left, NULL); /* while the loop runs, so the goodbye is sent */
    listener_shutdown();
    ev_timer_init(&drain_w, drain_timeout_cb, DRAIN_TIMEOUT_S, 0.0);
    ev_timer_start(l, &drain_w);
    conn_shutdown_all(drained);
}

/* The syslog listener as c describes it; NULL (and nothing to listen on) is fine
 * when no syslog key is set. -1 with a message in err when a socket fails. */
static int slog_start(const struct cfg *c, struct slog **out, char *err, size_t errlen)
{
    *out = NULL;
    if ((c->syslog_udp == NULL || c->syslog_udp[0] == '\0') &&
        (c->syslog_tcp == NULL || c->syslog_tcp[0] == '\0') &&
        (c->syslog_unix == NULL || c->syslog_unix[0] == '\0')) {
        return 0;
    }
    struct slog_opts so = {.udp = c->syslog_udp,
                           .tcp = c->syslog_tcp,
                           .unix_path = c->syslog_unix,
                           .unix_mode = c->syslog_unix_mode,
                           .allow = c->syslog_allow,
                           .tcp_idle_ms = c->syslog_tcp_idle_ms,
                           .tcp_per_peer = c->syslog_tcp_per_peer};
    *out = slog_new_opts(loop, &so, fleet_on_close, fleet, err, errlen);
    return *out != NULL ? 0 : -1;
}

static bool slog_same(const struct cfg *a, const struct cfg *b)
{
    return str_same(a->syslog_udp, b->syslog_udp) && str_same(a->syslog_tcp, b->syslog_tcp) &&
           str_same(a->syslog_unix, b->syslog_unix) &&
           a->syslog_unix_mode == b->syslog_unix_mode &&
           str_same(a->syslog_allow, b->syslog_allow) &&
           a->syslog_tcp_idle_ms == b->syslog_tcp_idle_ms &&
           a->syslog_tcp_per_peer == b->syslog_tcp_per_peer;
}

/* Apply next's syslog.* on reload: the old sockets are closed first (the same
 * port may be kept), then the new ones opened; when that fails the old ones are
 * reopened and -1 refuses the reload, naming the key in err. */
static int slog_reload(const struct cfg *next, char *err, size_t errlen)
{
    if (slog_same(next, &cfg)) {
        return 0;
    }
    slog_free(slog);
    slog = NULL;
    char why[256];
    if (slog_start(next, &slog, why, sizeof(why)) == 0) {
        log_info("reload: syslog listener reopened (udp %s, tcp %s, unix %s)",
                 next->syslog_udp ? next->syslog_udp : "off",
                 next->syslog_tcp ? next->syslog_tcp : "off",
                 next->syslog_unix ? next->syslog_unix : "off");
        return 0;
    }
    snprintf(err, errlen, "syslog: %s; the running syslog settings are kept", why);
    char again[256];
    if (slog_start(&cfg, &slog, again, sizeof(again)) != 0) {
        log_err("reload: cannot reopen the previous syslog listener either (%s): closes "
                "are not received until a restart; resyncs correct the counts", again);
    }
    return -1;
}

static void hup_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    UNUSED(l);
    UNUSED(w);
    UNUSED(revents);
    if (cfg_path == NULL) {
        log_info("SIGHUP: no configuration file, nothing to reload");
        return;
    }
    notify_reloading();
    stats.config_last_reload_timestamp_seconds = util_now_ms() / 1000;
    struct cfg next;
    char err[512];
    if (load_config(&next, err, sizeof(err)) != 0) {
        log_err("reload failed, keeping the running configuration: %s", err);
        STATS_INC(reload_failed);
        stats.config_last_reload_success = 0;
        notify_ready("reload failed, running configuration kept");
        return;
    }
    /* first, so that a refusal leaves every module on the running configuration */
    if (slog_reload(&next, err, sizeof(err)) != 0) {
        log_err("reload failed, keeping the running configuration: %s", err);
        cfg_release(&next);
        STATS_INC(reload_failed);
        stats.config_last_reload_success = 0;
        notify_ready("reload failed, running configuration kept");
        return;
    }
    if (!str_same(next.metrics_listen, cfg.metrics_listen)) {
        log_warn("reload: metrics.listen changed; this needs a restart (still on %s)",
                 cfg.metrics_listen != NULL ? cfg.metrics_listen : "nothing");
    }
    if (!str_same(next.listen, cfg.listen) || !str_same(next.unix_socket, cfg.unix_socket)) {
        log_warn("reload: listen/unix_socket changed; this needs a restart (still on %s%s%s)",
                 cfg.listen != NULL ? cfg.listen : "", cfg.unix_socket != NULL ? " " : "",
                 cfg.unix_socket != NULL ? cfg.unix_socket : "");
    }
    log_set_level(next.log_level);
    conn_configure(&next);
    listener_set_max_connections(&next);

    /* Each module takes what it needs from `next` here, before the old
     * configuration is freed (nothing may keep pointers into it). */
    if (assign_reload(&next) != 0) {
        log_warn("reload: session secrets not reloaded, keeping the previous ones");
    }
    if (hapi != NULL && hapi_reconfigure(hapi, &next) != 0) {
        log_warn("reload: keeping haproxy_socket %s (switching to the static list needs a "
                 "restart)", cfg.haproxy_socket);
    }
    if (channel_reload(channel, &next) != 0) {
        log_warn("reload: could not subscribe to %s; state changes are seen by polling only",
                 next.events_channel);
    }
    if (hapi == NULL && servers_load_static(&next) != 0) {
        log_warn("reload: the new static server list was refused; keeping the old one");
    }

    if (sentinel != NULL) {
        sentinel_reconfigure(sentinel, &next); /* a new Sentinel list needs a restart */
    } else if (next.redis_sentinels.n > 0) {
        log_warn("reload: redis.sentinels set; this needs a restart (still on redis.host)");
    }
    cfg_release(&cfg);
    cfg = next;
    if (store != NULL) {
        store_reconfigure(store, &cfg); /* reconnects if the Redis settings changed */
    }
    STATS_INC(reload_ok);
    stats.config_last_reload_success = 1;
    log_info("configuration reloaded from %s", cfg_path);
    notify_ready("serving; configuration reloaded");
}

static void usr1_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    UNUSED(l);
    UNUSED(w);
    UNUSED(revents);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        log_err("SIGUSR1: open_memstream: %s", strerror(errno));
        return;
    }
    gauges_refresh(NULL);
    stats_dump_text(f);
    fclose(f);
    log_msg(LOG_LVL_INFO, "stats: %u live SPOP connections", conn_count());
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        log_msg(LOG_LVL_INFO, "stats: %s", line);
    }
    free(text);
}

static void signals_start(void)
{
    signal(SIGPIPE, SIG_IGN);
    ev_signal_init(&sig_term, term_cb, SIGTERM);
    ev_signal_init(&sig_int, term_cb, SIGINT);
    ev_signal_init(&sig_hup, hup_cb, SIGHUP);
    ev_signal_init(&sig_usr1, usr1_cb, SIGUSR1);
    ev_signal_start(loop, &sig_term);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_hup);
    ev_signal_start(loop, &sig_usr1);
    /* signal watchers must not keep the loop alive on their own */
    ev_unref(loop);
    ev_unref(loop);
    ev_unref(loop);
    ev_unref(loop);
}

static void signals_stop(void)
{
    ev_ref(loop);
    ev_ref(loop);
    ev_ref(loop);
    ev_ref(loop);
    ev_signal_stop(loop, &sig_term);
    ev_signal_stop(loop, &sig_int);
    ev_signal_stop(loop, &sig_hup);
    ev_signal_stop(loop, &sig_usr1);
    ev_timer_stop(loop, &drain_w);
}

/* --server-cookie BACKEND/SERVER: the tag HAProxy's fallback cookie carries
 * for that server (the same one the session cookies bind). 0, 1 or 2. */
static int print_server_cookie(const struct cfg *c, const char *arg)
{
    static struct sid_keys keys; /* 8 KiB: not on the stack */
    const char *slash = strchr(arg, '/');
    char err[512], text[SID_BUF];
    uint8_t tag[SID_STAG_LEN];
    if (slash == NULL || slash == arg || slash[1] == '\0') {
        fprintf(stderr, "stickyd: --server-cookie takes BACKEND/SERVER\n");
        return 2;
    }
    if (sid_keys_load(&keys, c->secret_file, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "stickyd: %s\n", err);
        return 1;
    }
    int rc = sid_server_tag(&keys, false, arg, (size_t)(slash - arg), slash + 1,
                            strlen(slash + 1), tag);
    sid_keys_wipe(&keys);
    if (rc != 0) {
        return 1;
    }
    sid_b64url_encode(tag, sizeof(tag), text);
    printf("%s\n", text);
    return 0;
}

/* What the command line asks for besides serving. */
struct opts {
    bool check_only;           /* --check-config */
    const char *server_cookie; /* --server-cookie BACKEND/SERVER */
};

/* Read the command line into o, cfg_path and the overrides. -1 to go on, or the
 * exit status of an option that is done at once (--version, --help, a mistake). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'C'},
        {"log-level", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"dump-assign-script", no_argument, NULL, 'D'},
        {"config-reference", optional_argument, NULL, 'R'},
        {"server-cookie", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'l':
            cli_listen = optarg;
            break;
        case 'C':
            o->check_only = true;
            break;
        case 'L': {
            enum log_level lvl;
            if (log_parse_level(optarg, &lvl) != 0) {
                fprintf(stderr, "stickyd: unknown log level '%s'\n", optarg);
                return 2;
            }
            cli_level = optarg;
            break;
        }
        case 'V':
            printf("stickyd %s (SPOP %s)\n", STICKYD_VERSION, SPOP_VERSION);
            return 0;
        case 'R':
            if (optarg != NULL && strcmp(optarg, "roff") == 0) {
                cfg_print_reference_roff(stdout);
            } else if (optarg != NULL && strcmp(optarg, "markdown") != 0) {
                fprintf(stderr, "stickyd: --config-reference=markdown|roff\n");
                return 2;
            } else {
                cfg_print_reference(stdout);
            }
            return 0;
        case 'D':
            fputs(assign_script(), stdout);
            return 0;
        case 'S':
            o->server_cookie = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "stickyd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The modules behind the decisions, bottom up: the servers view, Redis (and
 * Sentinel), the batched writer, the decisions, the events channel, the admin
 * state, the counts, the close lines. 0, or -1 logged (modules_stop undoes what
 * was started). */
static int modules_start(void)
{
    char err[512];
    /* The servers view: the local HAProxy's runtime API when configured (hapi
     * refreshes it), else the config's static list. */
    if (cfg.haproxy_socket != NULL && cfg.haproxy_socket[0] != '\0') {
        hapi = hapi_new(loop, &cfg);
        if (hapi == NULL) {
            log_err("cannot start the HAProxy runtime API client for %s", cfg.haproxy_socket);
            return -1;
        }
    } else if (servers_load_static(&cfg) != 0) {
        log_err("cannot load the static server list");
        return -1;
    }
    if ((store = store_new(loop, &cfg)) == NULL) {
        log_err("cannot set up the Redis store");
        return -1;
    }
    if (cfg.redis_sentinels.n > 0 && (sentinel = sentinel_new(loop, &cfg, store)) == NULL) {
        log_err("cannot set up Sentinel discovery");
        return -1;
    }
    if ((ledger = ledger_new(loop, &cfg, store)) == NULL) {
        log_err("cannot set up the batched writer");
        return -1;
    }
    if (assign_init(loop, &cfg, store, ledger) != 0) {
        return -1;
    }
    if ((channel = channel_new(&cfg, store, on_event, NULL)) == NULL) {
        log_err("cannot set up the events channel");
        return -1;
    }
    assign_set_publisher(publish_event, channel);
    if (hapi != NULL && (admin = admin_new(&cfg, store, ledger, hapi)) == NULL) {
        log_err("cannot set up the drain/maint state");
        return -1;
    }
    if ((fleet = fleet_new(loop, &cfg, store, ledger, hapi, channel)) == NULL) {
        log_err("cannot start connection counting");
        return -1;
    }
    if (slog_start(&cfg, &slog, err, sizeof(err)) != 0) {
        log_err("syslog listener: %s", err);
        return -1;
    }
    return 0;
}

/* Teardown in reverse order of modules_start. Each module completes (or fails)
 * its outstanding requests, so that orphaned ones are freed. */
static void modules_stop(void)
{
    conn_free_all(); /* orphans requests still in flight before modules go */
    slog_free(slog);
    slog = NULL;
    assign_set_publisher(NULL, NULL); /* the channel goes below */
    assign_shutdown(); /* its in-flight decisions finish in store_free's callbacks */
    hapi_free(hapi);   /* before admin and fleet, which hook its refreshes */
    hapi = NULL;
    ledger_stop(ledger); /* nothing new for the store from here */
    sentinel_free(sentinel); /* before the store it steers */
    sentinel = NULL;
    if (store != NULL) {
        store_free(store); /* fails what is still pending, once each */
        store = NULL;
    }
    ledger_free(ledger);
    ledger = NULL;
    fleet_free(fleet);
    fleet = NULL;
    admin_free(admin);
    admin = NULL;
    channel_free(channel);
    channel = NULL;
}

/* Listen, serve until SIGTERM's drain ends the loop, stop listening. 0, or 1
 * when a listener cannot be opened. */
static int serve(void)
{
    char err[512];
    if (listener_init(loop, &cfg, err, sizeof(err)) != 0) {
        log_err("%s", err);
        return 1;
    }
    int status = 1;
    if (cfg.metrics_listen != NULL) {
        struct metrics_hooks mh = {.refresh = gauges_refresh, .ledger = ledger, .cfg = &cfg,
                                   .redis_up = redis_up, .version = STICKYD_VERSION};
        metrics = metrics_new(loop, cfg.metrics_listen, &mh, err, sizeof(err));
        if (metrics == NULL) {
            log_err("%s", err);
            goto out;
        }
        metrics_set_ready(metrics, true);
    }
    if (notify_init(loop) != 0) {
        log_warn("running without watchdog pings");
    }
    log_info("stickyd %s started (max-frame-size %u, max %u connections)", STICKYD_VERSION,
             cfg.max_frame_size, listener_max_connections());
    notify_ready("serving");
    ev_run(loop, 0);
    status = 0;
out:
    listener_shutdown();
    metrics_free(metrics);
    metrics = NULL;
    notify_shutdown();
    return status;
}

/* The event loop, its signals and the engine's handlers around modules and serve. */
static int run(void)
{
    log_detect_journal();
    log_set_level(cfg.log_level);
    loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        log_err("cannot initialise libev");
        return 1;
    }
    signals_start();
    conn_configure(&cfg);
    pace_init(loop);
    listener_set_max_connections(&cfg);
    int status = 1;
    if (builtin_register() != 0) {
        log_err("cannot register the built-in handlers");
    } else if (modules_start() == 0) {
        status = serve();
    }
    modules_stop();
    pace_shutdown();
    req_registry_clear();
    signals_stop();
    ev_loop_destroy(loop);
    return status;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        return rc;
    }
    char err[512];
    if (load_config(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (o.check_only) {
        printf("configuration OK\n");
        rc = 0;
    } else if (o.server_cookie != NULL) {
        rc = print_server_cookie(&cfg, o.server_cookie);
    } else {
        rc = run();
        log_info("stickyd exiting (status %d)", rc);
    }
    cfg_release(&cfg);
    return rc;
}
