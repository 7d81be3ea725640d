/* config.h - stickyd's configuration: defaults, JSON loading, validation.
 *
 * One table of keys (name, type, default, range) drives parsing and the README.
 * Unknown keys and bad values are errors reported as "file:line:col: message".
 * A reload builds a new struct cfg and the caller swaps it in only when valid.
 * Durations are numbers of milliseconds or strings with a unit ("20ms", "24h").
 */
#ifndef STICKYD_CONFIG_H
#define STICKYD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

struct cfg_server {
    char *name;
    uint32_t weight; /* 0..256 as in HAProxy; 0 takes no new sessions */
};

struct cfg_backend {
    char *name;
    struct cfg_server *servers;
    size_t nservers;
};

/* Slow start and fleet-wide caps of one backend (or "*": every backend not
 * named), and per-server overrides (issue 13). */
struct cfg_limit_srv {
    char *name;
    int64_t slowstart_ms; /* -1: the backend's */
    int64_t maxconn;      /* -1: the backend's */
    int64_t new_rate;     /* -1: the backend's */
};

struct cfg_limits {
    char *backend;        /* a backend name, or "*" */
    int64_t slowstart_ms; /* 0: off */
    uint32_t maxconn;     /* 0: HAProxy's server maxconn, when it has one; else none */
    bool balance;         /* policy "balance" (move a pinned session at the cap), else "affinity" */
    uint32_t slack_pct;   /* affinity: a pinned session stays up to cap x (1 + slack %) */
    bool queue;           /* when_full "queue": answer a full server, HAProxy queues */
    uint32_t new_rate;    /* new sessions per second per server, fleet-wide; 0: no limit */
    struct cfg_limit_srv *servers;
    size_t nservers;
};

/* The limits in force for one server, resolved from the backend's (or "*") and
 * the server's entries. */
struct cfg_srv_limits {
    int64_t slowstart_ms;
    uint32_t maxconn; /* 0: none configured */
    bool balance, queue;
    uint32_t slack_pct, new_rate;
};

/* A list of strings the cfg owns (v[0..n), each strdup'd). */
struct cfg_list {
    char **v;
    size_t n;
};

struct cfg {
    /* SPOP listener */
    char *listen;            /* "127.0.0.1:12345"; NULL or "" disables TCP */
    char *unix_socket;       /* optional unix socket path */
    uint32_t max_frame_size; /* our side of the HELLO negotiation */
    uint32_t max_connections;
    int64_t idle_timeout_ms; /* an idle HAProxy connection is closed after this */
    int64_t hello_timeout_ms; /* no HAPROXY-HELLO this long after accept: closed */
    enum log_level log_level;
    char *instance;          /* this HAProxy instance's name; default: hostname */

    /* Redis */
    char *redis_host;        /* default 127.0.0.1 */
    uint16_t redis_port;     /* default 6379 */
    char *redis_unix;        /* unix socket instead of host:port */
    char *redis_user;        /* or STICKYD_REDIS_USER */
    char *redis_password;    /* or STICKYD_REDIS_PASSWORD; never on argv */
    uint32_t redis_db;
    char *redis_prefix;      /* default "sticky:" */
    int64_t redis_timeout_ms;          /* per-decision deadline, default 20 */
    int64_t redis_connect_timeout_ms;  /* default 1000 */
    int64_t redis_reconnect_min_ms;    /* backoff start, default 100 */
    int64_t redis_reconnect_max_ms;    /* backoff cap, default 5000 */
    int64_t redis_batch_interval_ms;   /* ledger batch period, default 10 */
    uint32_t redis_max_pending;        /* 0: derived from redis_timeout_ms */
    /* Redis behind Sentinel (agent/sentinel.c): the master's address is asked
     * from these instead of redis.host/port. */
    struct cfg_list redis_sentinels;   /* "host:port" each; n == 0 when none */
    char *redis_master_name;           /* required with redis_sentinels */
    char *redis_sentinel_user;         /* AUTH to the Sentinels, or STICKYD_REDIS_SENTINEL_USER */
    char *redis_sentinel_password;     /* or STICKYD_REDIS_SENTINEL_PASSWORD */
    bool redis_cluster;      /* Redis Cluster: slot map, one connection per master */
    char *redis_nodes;       /* cluster seeds "host:port ..."; NULL: redis_host:redis_port */

    /* Sessions */
    int64_t session_ttl_ms;  /* sliding TTL, default 24h */
    char *secret_file;       /* HMAC key file; required for sticky-assign */
    char *previous_secret_file; /* accepted for verification only (rotation) */
    int64_t session_refresh_ms; /* cookie reissue / record TTL renewal, default 1h */

    /* HAProxy runtime API */
    char *haproxy_socket;    /* "unix:/path", "/path" or "host:port"; NULL: static list */
    int64_t haproxy_refresh_ms; /* server state refresh, default 1000 */
    int64_t resync_ms;       /* scur resync period, default 5000 */
    int64_t heartbeat_ttl_ms; /* instance share TTL, default 15000 */

    /* Close events from HAProxy's log */
    char *syslog_udp;        /* "127.0.0.1:5514"; NULL disables */
    char *syslog_tcp;        /* octet-counted ring transport; NULL disables */
    char *syslog_unix;       /* unix datagram socket path; NULL disables */
    uint32_t syslog_unix_mode; /* its file mode, from an octal string ("0660") */
    char *syslog_unix_mode_text;
    char *syslog_allow;      /* peers believed on udp/tcp: "ADDR[/BITS] ..." */
    int64_t syslog_tcp_idle_ms; /* a silent TCP log client is closed after this */
    uint32_t syslog_tcp_per_peer; /* TCP log clients per peer address */

    /* Change events */
    char *events_channel;    /* default "<prefix>events" */
    bool events_sessions;    /* publish session-assigned/-repinned */

    /* Prometheus metrics and health endpoints over HTTP */
    char *metrics_listen;    /* "127.0.0.1:9125"; NULL disables */

    /* Static server list, used when haproxy_socket is NULL */
    struct cfg_backend *backends;
    size_t nbackends;

    /* Slow start and caps per backend ("limits") */
    struct cfg_limits *limits;
    size_t nlimits;
};

/* Fill c with the documented defaults (allocates strings). 0 or -1. */
int cfg_defaults(struct cfg *c) __attribute__((warn_unused_result));

/* Load and validate `path` over the defaults into *c. On failure returns -1,
 * leaves *c freed, and writes "path:line:col: message" into err. */
int cfg_load(const char *path, struct cfg *c, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Same, from a string (tests); `name` stands for the file in messages. */
int cfg_load_string(const char *name, const char *text, struct cfg *c, char *err, size_t errlen)
    __attribute__((warn_unused_result));

void cfg_release(struct cfg *c);

/* The cookie reissue interval in force: min(session.refresh, session.ttl / 4). */
int64_t cfg_refresh_ms(const struct cfg *c);
/* The bound on decisions waiting on Redis (redis.max_pending, or derived). */
uint32_t cfg_max_pending(const struct cfg *c);

/* Replace c's redis.sentinels with the comma-separated "ADDR:PORT" list csv (each
 * checked as in the file), or empty it when csv is NULL. 0, or -1 with the reason
 * in err and c unchanged. For stickyctl's --sentinels. */
int cfg_set_sentinels(struct cfg *c, const char *csv, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Look a backend up in the static list; NULL when absent. */
const struct cfg_backend *cfg_backend_find(const struct cfg *c, const char *name, size_t len);

/* The limits of server (NULL: the backend's own) of backend: the backend's
 * entry, else "*", else none (all zero), with the server's overrides. */
void cfg_limits_of(const struct cfg *c, const char *backend, const char *server,
                   struct cfg_srv_limits *out);

/* Write the key table as a markdown table (the README's reference). */
void cfg_print_reference(FILE *out);
/* The same table as roff paragraphs (the stickyd.json(5) man page's KEYS section). */
void cfg_print_reference_roff(FILE *out);

#endif
