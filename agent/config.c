/* config.c - defaults, JSON loading and validation of struct cfg.
 *
 * One table (cfg_keys) names every key with its type, default, range and place in
 * struct cfg; parsing, defaults, validation and the README reference all read it.
 * Errors are "file:line:col: message"; jansson keeps no positions for values, so
 * jsonpos.c finds a member's key and value in the source text again.
 * This file does no I/O beyond reading the config file itself.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "jsonpos.h"
#include "names.h"
#include "slog_allow.h"
#include "slots.h"
#include "util.h"

#define MS_SEC INT64_C(1000)
#define MS_MIN (60 * MS_SEC)
#define MS_HOUR (60 * MS_MIN)
#define MS_DAY (24 * MS_HOUR)

#define CFG_MAX_FILE (1u << 20) /* a config larger than 1 MiB is a mistake */
#define CFG_MAX_DEPTH 6         /* backends.<b>.servers.<s>.weight is 5 deep */
#define NAME_MAX_LEN (NAMES_MAX - 1)

enum key_type {
    KT_SECTION = 0, /* an object whose members are further table entries */
    KT_STR,         /* any string (credentials), length in [min, max] */
    KT_TOKEN,       /* printable ASCII without spaces (names, key prefixes) */
    KT_PATH,        /* a file or socket path */
    KT_INET,        /* ADDR:PORT or [IPv6]:PORT, checked by util_parse_addr */
    KT_ADDR,        /* KT_INET, or "unix:/path" / "/path" */
    KT_HOST,        /* numeric IPv4/IPv6 or "localhost": no DNS in the event loop */
    KT_U32,         /* integer in [min, max], stored as uint32_t */
    KT_PORT,        /* integer in [min, max], stored as uint16_t */
    KT_DUR,         /* milliseconds or "20ms"/"5s"/..., in [min, max], int64_t */
    KT_LEVEL,       /* "error" | "warn" | "info" | "debug" */
    KT_BACKENDS,    /* the static server list, each backend parsed by parse_backend() */
    KT_BOOL,        /* true | false, stored as bool */
    KT_LIMITS,      /* slow start and caps per backend, each parsed by parse_limit() */
    KT_HOSTS,       /* array of KT_HOST:PORT strings, [min, max] entries, char ** + count */
    KT_COUNT
};

static const char *const kt_doc_names[] = {
    [KT_SECTION] = "object", [KT_STR] = "string",   [KT_TOKEN] = "string", [KT_PATH] = "path",
    [KT_INET] = "address",   [KT_ADDR] = "address", [KT_HOST] = "address", [KT_U32] = "integer",
    [KT_PORT] = "integer",   [KT_DUR] = "duration", [KT_LEVEL] = "string", [KT_BACKENDS] = "object",
    [KT_BOOL] = "boolean",   [KT_LIMITS] = "object",
    [KT_HOSTS] = "list of addresses",
};
_Static_assert(ARRAY_SIZE(kt_doc_names) == KT_COUNT, "a doc name per key type");

struct cfg_key {
    const char *path[3]; /* JSON path; unused tail entries are NULL */
    enum key_type type;
    bool nullable;    /* null (and "") leave the field NULL */
    bool derived;     /* def is prose for the README; the value is computed */
    const char *def;  /* default in JSON-ish text; NULL means null */
    int64_t min, max; /* value range (numbers, ms) or byte length (strings) */
    size_t off;       /* offsetof(struct cfg, field); unused for sections */
    const char *doc;
};

#define F(field) offsetof(struct cfg, field)

/* One key per entry reads better than one field per line. */
/* clang-format off */
static const struct cfg_key cfg_keys[] = {
    {{"listen"}, KT_INET, true, false, "127.0.0.1:12345", 0, 0, F(listen),
     "SPOP listener for HAProxy; null or `\"\"` disables TCP"},
    {{"unix_socket"}, KT_PATH, true, false, NULL, 1, 107, F(unix_socket),
     "SPOP listener on a unix socket path as well (or instead)"},
    {{"max_frame_size"}, KT_U32, false, false, "16380", 256, 16777216, F(max_frame_size),
     "largest SPOP frame we accept, offered in AGENT-HELLO (HAProxy's default is 16380)"},
    {{"max_connections"}, KT_U32, false, false, "4096", 1, 1000000, F(max_connections),
     "most HAProxy connections served at once; clamped (and logged) to the descriptor "
     "limit minus 32 kept for Redis, the runtime API and metrics (96 with `syslog.tcp`)"},
    {{"idle_timeout"}, KT_DUR, false, false, "60s", 100, 7 * MS_DAY, F(idle_timeout_ms),
     "an HAProxy connection idle for this long is closed (only whole frames count as "
     "activity, and a request still in the agent's hands)"},
    {{"hello_timeout"}, KT_DUR, false, false, "5s", 100, 60 * MS_SEC, F(hello_timeout_ms),
     "an SPOP connection that has not sent HAPROXY-HELLO this long after it was accepted is "
     "closed (bytes do not extend it)"},
    {{"log_level"}, KT_LEVEL, false, false, "info", 0, 0, F(log_level),
     "error, warn, info or debug (debug adds frame hex dumps)"},
    {{"instance"}, KT_TOKEN, false, true, "the host name", 1, NAME_MAX_LEN, F(instance),
     "this HAProxy instance's name in Redis (its connection shares, heartbeat); 1..63 "
     "bytes, the bound of backend and server names (a longer host name must be replaced)"},

    {{"redis"}, KT_SECTION, false, false, NULL, 0, 0, 0, "the shared session store"},
    {{"redis", "host"}, KT_HOST, false, false, "127.0.0.1", 1, 127, F(redis_host),
     "Redis address, numeric so that no DNS lookup blocks the event loop"},
    {{"redis", "port"}, KT_PORT, false, false, "6379", 1, 65535, F(redis_port), "Redis port"},
    {{"redis", "unix"}, KT_PATH, true, false, NULL, 1, 107, F(redis_unix),
     "Redis unix socket path; when set, host and port are not used"},
    {{"redis", "user"}, KT_STR, true, false, NULL, 1, 1024, F(redis_user),
     "ACL user for AUTH; the environment variable STICKYD_REDIS_USER overrides it"},
    {{"redis", "password"}, KT_STR, true, false, NULL, 1, 1024, F(redis_password),
     "password for AUTH; STICKYD_REDIS_PASSWORD overrides it (never put it on argv)"},
    {{"redis", "db"}, KT_U32, false, false, "0", 0, 2147483647, F(redis_db),
     "database number (SELECT)"},
    {{"redis", "prefix"}, KT_TOKEN, false, false, "sticky:", 1, 64, F(redis_prefix),
     "prefix of every key stickyd writes"},
    {{"redis", "timeout"}, KT_DUR, false, false, "20ms", 1, 60 * MS_SEC, F(redis_timeout_ms),
     "deadline of one decision's Redis round trip"},
    {{"redis", "connect_timeout"}, KT_DUR, false, false, "1s", 10, 5 * MS_MIN,
     F(redis_connect_timeout_ms), "deadline of a Redis connection attempt"},
    {{"redis", "reconnect_min"}, KT_DUR, false, false, "100ms", 1, MS_HOUR,
     F(redis_reconnect_min_ms), "first delay of the reconnect backoff"},
    {{"redis", "reconnect_max"}, KT_DUR, false, false, "5s", 1, MS_HOUR,
     F(redis_reconnect_max_ms), "cap of the reconnect backoff; must be >= reconnect_min"},
    {{"redis", "batch_interval"}, KT_DUR, false, false, "10ms", 1, MS_SEC,
     F(redis_batch_interval_ms),
     "how long opens, closes and record touches are gathered before one batched write"},
    {{"redis", "max_pending"}, KT_U32, false, true, "`0`: 100 per ms of `redis.timeout`, "
     "at least 256", 0, 10000000, F(redis_max_pending),
     "most decisions waiting on Redis at once (and 2 KiB each of command bytes); past "
     "it a decision is answered at once from the cookie or the hash"},
    {{"redis", "sentinels"}, KT_HOSTS, true, false, NULL, 1, 16, F(redis_sentinels),
     "Sentinels to ask for the master, e.g. `[\"10.0.0.1:26379\", \"10.0.0.2:26379\"]`; "
     "replaces `redis.host`/`redis.port` (see \"Redis behind Sentinel\"); a change takes a "
     "restart"},
    {{"redis", "master_name"}, KT_TOKEN, true, false, NULL, 1, 255, F(redis_master_name),
     "the master's name in the Sentinels' configuration; required with `redis.sentinels`"},
    {{"redis", "sentinel_user"}, KT_STR, true, false, NULL, 1, 1024, F(redis_sentinel_user),
     "ACL user for the Sentinels (or `STICKYD_REDIS_SENTINEL_USER`); the data nodes use "
     "`redis.user`"},
    {{"redis", "sentinel_password"}, KT_STR, true, false, NULL, 1, 1024,
     F(redis_sentinel_password),
     "password for the Sentinels (or `STICKYD_REDIS_SENTINEL_PASSWORD`); null: no AUTH"},
    {{"redis", "cluster"}, KT_BOOL, false, false, "false", 0, 0, F(redis_cluster),
     "Redis Cluster: follow its slot map, one connection per master, MOVED/ASK; takes "
     "a restart to change; needs `redis.db` 0 and no `redis.unix`"},
    {{"redis", "nodes"}, KT_STR, true, false, NULL, 1, 4096, F(redis_nodes),
     "Cluster seed nodes, `\"ADDR:PORT ADDR:PORT ...\"` (numeric, space or comma "
     "separated); null: `redis.host`:`redis.port` is the one seed"},

    {{"session"}, KT_SECTION, false, false, NULL, 0, 0, 0, "session records"},
    {{"session", "ttl"}, KT_DUR, false, false, "24h", MS_SEC, 365 * MS_DAY, F(session_ttl_ms),
     "sliding lifetime of a session's affinity; each use renews it"},
    {{"session", "secret_file"}, KT_PATH, true, false, NULL, 1, 4095, F(secret_file),
     "file holding the HMAC key that signs session ids; required for sticky-assign"},
    {{"session", "previous_secret_file"}, KT_PATH, true, false, NULL, 1, 4095,
     F(previous_secret_file), "the key before a rotation: still accepted, never used to sign"},
    {{"session", "refresh"}, KT_DUR, false, false, "1h", MS_SEC, 365 * MS_DAY,
     F(session_refresh_ms),
     "a cookie older than this (or than a quarter of `session.ttl`) is reissued and its "
     "record's TTL renewed; in between, a hit costs Redis no TTL write"},

    {{"haproxy"}, KT_SECTION, false, false, NULL, 0, 0, 0, "the local HAProxy's runtime API"},
    {{"haproxy", "stats_socket"}, KT_ADDR, true, false, NULL, 0, 0, F(haproxy_socket),
     "HAProxy runtime API (stats socket); null: use the static `backends`"},
    {{"haproxy", "refresh"}, KT_DUR, false, false, "1s", 10, MS_HOUR, F(haproxy_refresh_ms),
     "period of the server state refresh from the runtime API"},
    {{"haproxy", "resync"}, KT_DUR, false, false, "5s", 100, MS_HOUR, F(resync_ms),
     "period of the resync of per-server session counts (scur)"},
    {{"haproxy", "heartbeat_ttl"}, KT_DUR, false, false, "15s", MS_SEC, MS_DAY,
     F(heartbeat_ttl_ms), "TTL of this instance's share (heartbeat) in Redis"},

    {{"syslog"}, KT_SECTION, false, false, NULL, 0, 0, 0, "tunnel-close lines from HAProxy"},
    {{"syslog", "udp"}, KT_INET, true, false, NULL, 0, 0, F(syslog_udp),
     "UDP syslog listener for HAProxy's log; null disables"},
    {{"syslog", "tcp"}, KT_INET, true, false, NULL, 0, 0, F(syslog_tcp),
     "TCP syslog listener, octet-counted as HAProxy's ring sends; null disables"},
    {{"syslog", "unix"}, KT_PATH, true, false, NULL, 1, 107, F(syslog_unix),
     "unix datagram socket for HAProxy's log (`log /path local0`); its file mode is the "
     "trust boundary; null disables"},
    {{"syslog", "unix_mode"}, KT_TOKEN, false, false, "0660", 3, 4, F(syslog_unix_mode_text),
     "file mode of `syslog.unix`, in octal: who may write close lines there"},
    {{"syslog", "allow"}, KT_STR, false, false, "127.0.0.0/8 ::1", 0, 1024, F(syslog_allow),
     "peers whose lines `syslog.udp` and `syslog.tcp` believe: numeric `ADDR[/BITS]`, space "
     "separated; lines from anyone else are dropped (a forged close removes a live tunnel "
     "from the counts)"},
    {{"syslog", "tcp_idle_timeout"}, KT_DUR, false, false, "5m", MS_SEC, MS_DAY,
     F(syslog_tcp_idle_ms), "a TCP log client that sends nothing this long is closed"},
    {{"syslog", "tcp_per_peer"}, KT_U32, false, false, "8", 1, 64, F(syslog_tcp_per_peer),
     "TCP log clients accepted at once from one address (64 in all)"},

    {{"events"}, KT_SECTION, false, false, NULL, 0, 0, 0, "change events"},
    {{"events", "channel"}, KT_TOKEN, true, true, "prefix + \"events\"", 1, 128,
     F(events_channel), "Redis pub/sub channel of the protobuf change events"},
    {{"events", "sessions"}, KT_BOOL, false, false, "false", 0, 0, F(events_sessions),
     "also publish session-assigned and session-repinned events (one per new session)"},

    {{"metrics"}, KT_SECTION, false, false, NULL, 0, 0, 0, "Prometheus metrics and health"},
    {{"metrics", "listen"}, KT_INET, true, false, NULL, 0, 0, F(metrics_listen),
     "HTTP listener for `/metrics`, `/healthz` and `/readyz`, e.g. `\"127.0.0.1:9125\"`; "
     "null disables; a change takes a restart"},

    {{"backends"}, KT_BACKENDS, false, false, NULL, 0, 0, 0,
     "static server list, used when haproxy.stats_socket is null: "
     "`{\"<backend>\": {\"servers\": {\"<server>\": {\"weight\": 1}}}}`; weight 0..256, "
     "default 1 (0 takes no new sessions); names 1..63 characters of `A-Z a-z 0-9 . - _ :`"},
    {{"limits"}, KT_LIMITS, false, false, NULL, 0, 0, 0,
     "slow start and fleet-wide connection caps per backend (`\"*\"`: every backend not "
     "named): `{\"<backend>\": {\"slowstart\": \"10s\", \"maxconn\": 500, \"policy\": "
     "\"affinity\", \"slack\": 20, \"when_full\": \"refuse\", \"new_rate\": 0, "
     "\"servers\": {\"<server>\": {\"slowstart\": ..., \"maxconn\": ..., "
     "\"new_rate\": ...}}}}`; see \"Slow start and connection caps\""},
};

/* clang-format on */

#undef F

#define WEIGHT_MAX 256
#define WEIGHT_DEFAULT 1

/* ---- the loader ----------------------------------------------------------- */

struct loader {
    const char *name; /* the file name in messages */
    const char *text;
    size_t len;
    struct cfg *c;
    char *err;
    size_t errlen;
    const char *path[CFG_MAX_DEPTH]; /* the member being parsed */
    size_t depth;
};

enum at { AT_KEY = 0, AT_VALUE = 1 };

/* Report an error located at the current member: its key for errors about the
 * key itself (unknown key, bad name), its value for errors about the value. With
 * depth 0, or when the member is not in the text (a cross-check against a default),
 * it points at the top-level object. Always returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(struct loader *ld, enum at at,
                                                      const char *fmt, ...)
{
    struct jsonpos kp, vp;
    (void)jsonpos_find(ld->text, ld->len, ld->path, ld->depth, &kp, &vp); /* else the top */
    struct jsonpos p = at == AT_KEY ? kp : vp;
    int n = snprintf(ld->err, ld->errlen, "%s:%d:%d: ", ld->name, p.line, p.col);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The current member's dotted name, e.g. "redis.timeout". */
static const char *dotted(const struct loader *ld, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < ld->depth && k < len; i++) {
        int n = snprintf(buf + k, len - k, "%s%s", i ? "." : "", ld->path[i]);
        if (n < 0) {
            break;
        }
        k += (size_t)n;
    }
    return buf;
}

/* Optimal string alignment distance (edits and adjacent swaps), capped at 3:
 * enough to tell "tmeout" or "wieght" from a real key. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32) {
        return 3;
    }
    size_t d[33][33];
    for (size_t i = 0; i <= la; i++) {
        d[i][0] = i;
    }
    for (size_t j = 0; j <= lb; j++) {
        d[0][j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v) {
                v = d[i - 1][j] + 1;
            }
            if (d[i][j - 1] + 1 < v) {
                v = d[i][j - 1] + 1;
            }
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v) {
                v = d[i - 2][j - 2] + 1;
            }
            d[i][j] = v;
        }
    }
    return d[la][lb] < 3 ? d[la][lb] : 3;
}

/* Keep `cand` in *best if it is a closer plausible spelling of `bad`. */
static void suggest(const char *bad, const char *cand, const char **best, size_t *bestd)
{
    size_t limit = strlen(bad) <= 4 ? 1 : 2;
    size_t dist = edit_distance(bad, cand);
    if (dist <= limit && dist < *bestd) {
        *best = cand;
        *bestd = dist;
    }
}

/* Fail with "unknown key" for the current member, naming the closest valid
 * sibling from cands[0..n) or, with cands NULL, from the key table. */
static int fail_unknown(struct loader *ld, const char *const *cands, size_t n)
{
    char name[256];
    const char *bad = ld->path[ld->depth - 1], *best = NULL;
    size_t bestd = SIZE_MAX;
    if (cands != NULL) {
        for (size_t i = 0; i < n; i++) {
            suggest(bad, cands[i], &best, &bestd);
        }
    } else {
        for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
            const struct cfg_key *k = &cfg_keys[i];
            size_t d = 0;
            while (d < ld->depth && d < ARRAY_SIZE(k->path) && k->path[d] != NULL &&
                   (d + 1 == ld->depth || strcmp(k->path[d], ld->path[d]) == 0)) {
                d++;
            }
            if (d == ld->depth && (d == ARRAY_SIZE(k->path) || k->path[d] == NULL)) {
                suggest(bad, k->path[d - 1], &best, &bestd);
            }
        }
    }
    dotted(ld, name, sizeof(name));
    if (best != NULL) {
        return fail(ld, AT_KEY, "unknown key \"%s\" (did you mean \"%s\"?)", name, best);
    }
    return fail(ld, AT_KEY, "unknown key \"%s\"", name);
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Owns the one wording of a JSON type mismatch, "<key>: expected <what>, got
 * <type>", located at the current member's value. Always returns -1. */
static int fail_type(struct loader *ld, const char *what, const json_t *v)
{
    char name[256];
    return fail(ld, AT_VALUE, "%s: expected %s, got %s", dotted(ld, name, sizeof(name)), what,
                json_type_name(v));
}

/* Owns the integer check shared by table keys and server weights: v must be an
 * integer in [min, max]. 0 with it in *out; -1 with the type or range error
 * located at the current member's value. */
__attribute__((warn_unused_result)) static int get_int(struct loader *ld, const json_t *v,
                                                       int64_t min, int64_t max, json_int_t *out)
{
    char name[256];
    if (!json_is_integer(v)) {
        return fail_type(ld, "an integer", v);
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        return fail(ld, AT_VALUE,
                    "%s: %" JSON_INTEGER_FORMAT " is out of range %" PRId64 "..%" PRId64,
                    dotted(ld, name, sizeof(name)), n, min, max);
    }
    *out = n;
    return 0;
}

/* "90000" ms -> "90s": the largest unit that divides it, for range messages. */
static const char *fmt_dur(int64_t ms, char *buf, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{MS_DAY, "d"}, {MS_HOUR, "h"}, {MS_MIN, "m"}, {MS_SEC, "s"}};
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRId64 "ms", ms);
    return buf;
}

static bool valid_token(const char *s)
{
    for (; *s; s++) {
        if (*s <= ' ' || *s >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* HAProxy's own rule for proxy and server names (invalid_char()). */
static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':')) {
            return false;
        }
    }
    return true;
}

static const struct cfg_key *key_find(const char *const *path, size_t depth)
{
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        const struct cfg_key *k = &cfg_keys[i];
        size_t d = 0;
        while (d < ARRAY_SIZE(k->path) && k->path[d] != NULL) {
            d++;
        }
        if (d != depth) {
            continue;
        }
        size_t j = 0;
        while (j < depth && strcmp(k->path[j], path[j]) == 0) {
            j++;
        }
        if (j == depth) {
            return k;
        }
    }
    return NULL;
}

/* Owns the list of key types stored as a char * that struct cfg owns (strdup'd,
 * freed by cfg_release). A switch with no default, so a new type must be sorted. */
static bool kt_is_string(enum key_type t)
{
    switch (t) {
    case KT_STR:
    case KT_TOKEN:
    case KT_PATH:
    case KT_INET:
    case KT_ADDR:
    case KT_HOST:
        return true;
    case KT_SECTION:
    case KT_U32:
    case KT_PORT:
    case KT_DUR:
    case KT_LEVEL:
    case KT_BACKENDS:
    case KT_BOOL:
    case KT_LIMITS:
    case KT_HOSTS:
    case KT_COUNT:
        return false;
    }
    return false;
}

static char **str_field(struct cfg *c, const struct cfg_key *k)
{
    return (char **)(void *)((char *)c + k->off);
}

static void *field(struct cfg *c, const struct cfg_key *k)
{
    return (char *)c + k->off;
}

/* Check a string value of type k->type; writes the reason into why. */
static int check_string(const struct cfg_key *k, const char *s, uint16_t port, char *why,
                        size_t whylen)
{
    size_t len = strlen(s);
    struct sockaddr_storage ss;
    unsigned sslen;
    char addr[160];
    switch (k->type) {
    case KT_INET:
    case KT_ADDR:
        if (util_parse_addr(s, &ss, &sslen, why, whylen) < 0) {
            return -1;
        }
        if (k->type == KT_INET && ss.ss_family == AF_UNIX) {
            snprintf(why, whylen, "'%s' must be ADDR:PORT, not a unix socket", s);
            return -1;
        }
        return 0;
    case KT_HOST:
        /* the same rules as every other address, with the configured port */
        if (strchr(s, ':') != NULL) {
            snprintf(addr, sizeof(addr), "[%s]:%u", s, (unsigned)port);
        } else {
            snprintf(addr, sizeof(addr), "%s:%u", s, (unsigned)port);
        }
        if (len == 0 || len > (size_t)k->max || s[0] == '/' || strncmp(s, "unix:", 5) == 0 ||
            util_parse_addr(addr, &ss, &sslen, why, whylen) < 0) {
            snprintf(why, whylen,
                     "'%s' is not a numeric IPv4/IPv6 address or localhost (use redis.unix "
                     "for a socket)",
                     s);
            return -1;
        }
        return 0;
    case KT_TOKEN:
        if (!valid_token(s)) {
            snprintf(why, whylen, "\"%s\" must be printable ASCII without spaces", s);
            return -1;
        }
        break;
    default:
        break;
    }
    if ((int64_t)len < k->min || (int64_t)len > k->max) {
        snprintf(why, whylen, "must be %" PRId64 "..%" PRId64 " bytes long, not %zu", k->min,
                 k->max, len);
        return -1;
    }
    return 0;
}

static int set_string(struct loader *ld, const struct cfg_key *k, const char *s)
{
    char **dst = str_field(ld->c, k);
    char *copy = NULL;
    if (s != NULL && (copy = strdup(s)) == NULL) {
        return fail(ld, AT_VALUE, "out of memory");
    }
    free(*dst);
    *dst = copy;
    return 0;
}

static void list_free(struct cfg_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* One KT_HOSTS entry: "HOST:PORT" with a numeric (or localhost) host and a
 * port 1..65535. 0, or -1 with the reason in why. */
static int check_hostport(const char *s, char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    unsigned sslen;
    if (util_parse_addr(s, &ss, &sslen, why, whylen) < 0) {
        return -1;
    }
    if (ss.ss_family == AF_UNIX) {
        snprintf(why, whylen, "'%s' must be ADDR:PORT, not a unix socket", s);
        return -1;
    }
    in_port_t port = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                             : ((struct sockaddr_in6 *)&ss)->sin6_port;
    if (port == 0) {
        snprintf(why, whylen, "'%s': port must be 1..65535", s);
        return -1;
    }
    return 0;
}

/* KT_HOSTS: null, or an array of min..max distinct "HOST:PORT" strings whose host
 * is numeric or localhost (no DNS in the event loop) and whose port is not 0. */
static int apply_hosts(struct loader *ld, const struct cfg_key *k, json_t *v)
{
    char name[256], why[256];
    struct cfg_list *l = field(ld->c, k);
    dotted(ld, name, sizeof(name));
    list_free(l);
    if (json_is_null(v) && k->nullable) {
        return 0;
    }
    if (!json_is_array(v)) {
        return fail_type(ld, "an array of \"ADDR:PORT\" strings or null", v);
    }
    size_t n = json_array_size(v);
    if (n < (size_t)k->min || n > (size_t)k->max) {
        return fail(ld, AT_VALUE, "%s: %zu entries; expected %" PRId64 "..%" PRId64, name, n,
                    k->min, k->max);
    }
    if ((l->v = calloc(n, sizeof(*l->v))) == NULL) {
        return fail(ld, AT_VALUE, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) {
            return fail(ld, AT_VALUE, "%s[%zu]: expected an \"ADDR:PORT\" string, got %s", name,
                        i, json_type_name(e));
        }
        const char *s = json_string_value(e);
        if (check_hostport(s, why, sizeof(why)) < 0) {
            return fail(ld, AT_VALUE, "%s[%zu]: %s", name, i, why);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(l->v[j], s) == 0) {
                return fail(ld, AT_VALUE, "%s[%zu]: '%s' is listed twice", name, i, s);
            }
        }
        if ((l->v[i] = strdup(s)) == NULL) {
            return fail(ld, AT_VALUE, "out of memory");
        }
        l->n = i + 1;
    }
    return 0;
}

static int apply_key(struct loader *ld, const struct cfg_key *k, json_t *v)
{
    char name[256], why[256], b1[32], b2[32];
    dotted(ld, name, sizeof(name));
    switch (k->type) {
    case KT_STR:
    case KT_TOKEN:
    case KT_PATH:
    case KT_INET:
    case KT_ADDR:
    case KT_HOST: {
        if (json_is_null(v) && k->nullable) {
            return set_string(ld, k, NULL);
        }
        if (!json_is_string(v)) {
            return fail_type(ld, k->nullable ? "a string or null" : "a string", v);
        }
        const char *s = json_string_value(v);
        if (s[0] == '\0' && k->nullable) {
            return set_string(ld, k, NULL); /* "" means the same as null */
        }
        /* redis.host is checked after the whole file, when redis.port is known */
        if (k->type != KT_HOST && check_string(k, s, 0, why, sizeof(why)) < 0) {
            return fail(ld, AT_VALUE, "%s: %s", name, why);
        }
        return set_string(ld, k, s);
    }
    case KT_U32:
    case KT_PORT: {
        json_int_t n;
        if (get_int(ld, v, k->min, k->max, &n) < 0) {
            return -1;
        }
        if (k->type == KT_U32) {
            *(uint32_t *)field(ld->c, k) = (uint32_t)n;
        } else {
            *(uint16_t *)field(ld->c, k) = (uint16_t)n;
        }
        return 0;
    }
    case KT_DUR: {
        int64_t ms;
        if (json_is_integer(v)) {
            ms = json_integer_value(v);
        } else if (json_is_string(v)) {
            if (util_parse_duration(json_string_value(v), &ms) < 0) {
                return fail(ld, AT_VALUE,
                            "%s: \"%s\" is not a duration (milliseconds, or a string such as "
                            "\"20ms\", \"5s\", \"10m\", \"24h\", \"7d\")",
                            name, json_string_value(v));
            }
        } else {
            return fail_type(ld, "a duration (integer milliseconds or a string such as \"5s\")",
                             v);
        }
        if (ms < k->min || ms > k->max) {
            char b0[32];
            return fail(ld, AT_VALUE, "%s: %s is out of range %s..%s", name,
                        fmt_dur(ms, b0, sizeof(b0)), fmt_dur(k->min, b1, sizeof(b1)),
                        fmt_dur(k->max, b2, sizeof(b2)));
        }
        *(int64_t *)field(ld->c, k) = ms;
        return 0;
    }
    case KT_LEVEL: {
        enum log_level lvl;
        if (!json_is_string(v)) {
            return fail_type(ld, "a string", v);
        }
        if (log_parse_level(json_string_value(v), &lvl) < 0) {
            return fail(ld, AT_VALUE, "%s: \"%s\" is not one of error, warn, info, debug", name,
                        json_string_value(v));
        }
        *(enum log_level *)field(ld->c, k) = lvl;
        return 0;
    }
    case KT_BOOL:
        if (!json_is_boolean(v)) {
            return fail_type(ld, "true or false", v);
        }
        *(bool *)field(ld->c, k) = json_is_true(v);
        return 0;
    case KT_HOSTS:
        return apply_hosts(ld, k, v);
    case KT_SECTION:
    case KT_BACKENDS:
    case KT_LIMITS:
    case KT_COUNT:
        break;
    }
    return fail(ld, AT_VALUE, "%s: internal error: bad key type", name);
}

/* Enter member `k` of the current object: path bookkeeping for fail(). */
static int push(struct loader *ld, const char *k)
{
    if (ld->depth >= CFG_MAX_DEPTH) {
        return fail(ld, AT_VALUE, "too deeply nested");
    }
    ld->path[ld->depth++] = k;
    return 0;
}

/* Enter member k of an object whose one allowed member is `only`; any other
 * name is an unknown key (with a spelling hint). */
__attribute__((warn_unused_result)) static int push_only(struct loader *ld, const char *k,
                                                         const char *only)
{
    if (push(ld, k) < 0) {
        return -1;
    }
    if (strcmp(k, only) != 0) {
        return fail_unknown(ld, &only, 1);
    }
    return 0;
}

/* Owns the checks a backend or server entry (the current member) starts with:
 * its name follows HAProxy's rules (error at the key), its value is an object
 * (error at the value, with `example` shown), then a new copy of the name goes
 * into *dst, which the caller's struct owns. */
__attribute__((warn_unused_result)) static int start_entry(struct loader *ld, const char *kind,
                                                           const char *nm, const char *example,
                                                           const json_t *v, char **dst)
{
    char name[256];
    if (!valid_name(nm, strlen(nm))) {
        return fail(ld, AT_KEY, "%s: %s name must be 1..%d characters of A-Z a-z 0-9 . - _ :",
                    dotted(ld, name, sizeof(name)), kind, NAME_MAX_LEN);
    }
    if (!json_is_object(v)) {
        return fail_type(ld, example, v);
    }
    if ((*dst = strdup(nm)) == NULL) {
        return fail(ld, AT_KEY, "out of memory");
    }
    return 0;
}

/* How one member of an object of entries is parsed: into entry i of the array
 * arr (struct cfg_backend, cfg_server, cfg_limits or cfg_limit_srv). */
typedef int (*member_fn)(struct loader *ld, void *arr, size_t i, const char *name, json_t *v);

/* Owns what the four objects of named entries share (backends, limits, and the
 * servers of each): v must be an object (else "expected <what>"); a zeroed
 * array of one entry of `size` bytes per member (NULL for none) is returned in
 * *arr, and each member, entered in file order (jansson keeps insertion order),
 * is handed to parse with its index. *arr is set and *count counts a member even
 * when parsing fails, so that the caller stores both and cfg_release frees the
 * names the entries may already hold. */
__attribute__((warn_unused_result)) static int
parse_entries(struct loader *ld, json_t *v, const char *what, size_t size, void **arr,
              size_t *count, member_fn parse)
{
    *arr = NULL;
    if (!json_is_object(v)) {
        return fail_type(ld, what, v);
    }
    size_t n = json_object_size(v);
    if (n > 0 && (*arr = calloc(n, size)) == NULL) {
        return fail(ld, AT_VALUE, "out of memory");
    }
    const char *k;
    json_t *m;
    json_object_foreach (v, k, m) {
        if (push(ld, k) < 0) {
            return -1;
        }
        int rc = parse(ld, *arr, *count, k, m);
        (*count)++;
        if (rc < 0) {
            return -1;
        }
        ld->depth--;
    }
    return 0;
}

static int parse_server(struct loader *ld, void *arr, size_t i, const char *sname, json_t *v)
{
    struct cfg_server *srv = (struct cfg_server *)arr + i;
    if (start_entry(ld, "server", sname, "an object such as {\"weight\": 1}", v, &srv->name) <
        0) {
        return -1;
    }
    srv->weight = WEIGHT_DEFAULT;
    const char *k;
    json_t *m;
    json_object_foreach (v, k, m) {
        json_int_t w;
        if (push_only(ld, k, "weight") < 0 || get_int(ld, m, 0, WEIGHT_MAX, &w) < 0) {
            return -1;
        }
        srv->weight = (uint32_t)w;
        ld->depth--;
    }
    return 0;
}

static int parse_backend(struct loader *ld, void *arr, size_t i, const char *bname, json_t *v)
{
    struct cfg_backend *be = (struct cfg_backend *)arr + i;
    char name[256];
    if (start_entry(ld, "backend", bname, "an object such as {\"servers\": {...}}", v,
                    &be->name) < 0) {
        return -1;
    }
    const char *k;
    json_t *m;
    json_object_foreach (v, k, m) {
        void *servers;
        if (push_only(ld, k, "servers") < 0) {
            return -1;
        }
        int rc = parse_entries(ld, m, "an object of servers", sizeof(*be->servers), &servers,
                               &be->nservers, parse_server);
        be->servers = servers;
        if (rc < 0) {
            return -1;
        }
        ld->depth--;
    }
    if (be->nservers == 0) {
        return fail(ld, AT_KEY, "%s: backend has no servers", dotted(ld, name, sizeof(name)));
    }
    return 0;
}

/* ---- limits: slow start and caps (issue 13) ---------------------------------- */

#define LIMIT_MAXCONN_MAX 100000000
#define LIMIT_RATE_MAX 1000000
#define LIMIT_SLACK_MAX 1000
#define LIMIT_SLOWSTART_MAX (MS_HOUR)

/* A duration member of limits into *out (0..LIMIT_SLOWSTART_MAX). */
static int get_dur(struct loader *ld, const json_t *v, int64_t *out)
{
    char name[256], b0[32], b1[32];
    int64_t ms;
    dotted(ld, name, sizeof(name));
    if (json_is_integer(v)) {
        ms = json_integer_value(v);
    } else if (json_is_string(v) && util_parse_duration(json_string_value(v), &ms) == 0) {
        /* parsed */
    } else {
        return fail_type(ld, "a duration (integer milliseconds or a string such as \"10s\")", v);
    }
    if (ms < 0 || ms > LIMIT_SLOWSTART_MAX) {
        return fail(ld, AT_VALUE, "%s: %s is out of range 0..%s", name,
                    ms < 0 ? "a negative duration" : fmt_dur(ms, b0, sizeof(b0)),
                    fmt_dur(LIMIT_SLOWSTART_MAX, b1, sizeof(b1)));
    }
    *out = ms;
    return 0;
}

/* One of the allowed words into *out (its index). */
static int get_word(struct loader *ld, const json_t *v, const char *const *words, size_t n,
                    unsigned *out)
{
    char name[256];
    if (!json_is_string(v)) {
        return fail_type(ld, "a string", v);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(json_string_value(v), words[i]) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    }
    return fail(ld, AT_VALUE, "%s: \"%s\" is not one of %s, %s", dotted(ld, name, sizeof(name)),
                json_string_value(v), words[0], words[1]);
}

/* The keys a backend's limits and a server's override share: slowstart, maxconn
 * and new_rate, each into its out-parameter. false when k is none of them (then
 * nothing is read), else true with get_*'s result in *rc. */
static bool parse_limit_key(struct loader *ld, const char *k, json_t *m, int64_t *slowstart_ms,
                            int64_t *maxconn, int64_t *new_rate, int *rc)
{
    json_int_t n = 0;
    if (strcmp(k, "slowstart") == 0) {
        *rc = get_dur(ld, m, slowstart_ms);
    } else if (strcmp(k, "maxconn") == 0) {
        *rc = get_int(ld, m, 0, LIMIT_MAXCONN_MAX, &n);
        *maxconn = *rc < 0 ? *maxconn : n;
    } else if (strcmp(k, "new_rate") == 0) {
        *rc = get_int(ld, m, 0, LIMIT_RATE_MAX, &n);
        *new_rate = *rc < 0 ? *new_rate : n;
    } else {
        return false;
    }
    return true;
}

static int parse_limit_srv(struct loader *ld, void *arr, size_t i, const char *sname, json_t *v)
{
    static const char *const keys[] = {"slowstart", "maxconn", "new_rate"};
    struct cfg_limit_srv *srv = (struct cfg_limit_srv *)arr + i;
    srv->slowstart_ms = srv->maxconn = srv->new_rate = -1;
    if (start_entry(ld, "server", sname, "an object such as {\"maxconn\": 100}", v,
                    &srv->name) < 0) {
        return -1;
    }
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m)
    {
        int rc;
        if (push(ld, k) < 0) {
            return -1;
        }
        if (!parse_limit_key(ld, k, m, &srv->slowstart_ms, &srv->maxconn, &srv->new_rate, &rc)) {
            return fail_unknown(ld, keys, ARRAY_SIZE(keys));
        }
        if (rc < 0) {
            return -1;
        }
        ld->depth--;
    }
    return 0;
}

static int parse_limit(struct loader *ld, void *arr, size_t i, const char *bname, json_t *v)
{
    static const char *const keys[] = {"slowstart", "maxconn",  "policy", "slack",
                                       "when_full", "new_rate", "servers"};
    static const char *const policies[] = {"affinity", "balance"};
    static const char *const full[] = {"refuse", "queue"};
    struct cfg_limits *lim = (struct cfg_limits *)arr + i;
    lim->slack_pct = 20;
    bool any = strcmp(bname, "*") == 0; /* the default of every backend not named */
    if (start_entry(ld, "backend", any ? "any" : bname,
                    "an object such as {\"slowstart\": \"10s\"}", v, &lim->backend) < 0) {
        return -1;
    }
    if (any) {
        strcpy(lim->backend, "*");
    }
    const char *k;
    json_t *m;
    json_object_foreach (v, k, m) {
        json_int_t n = 0;
        unsigned w = 0;
        int rc;
        if (push(ld, k) < 0) {
            return -1;
        }
        int64_t maxconn = lim->maxconn, new_rate = lim->new_rate;
        if (parse_limit_key(ld, k, m, &lim->slowstart_ms, &maxconn, &new_rate, &rc)) {
            lim->maxconn = (uint32_t)maxconn; /* both bounded by parse_limit_key */
            lim->new_rate = (uint32_t)new_rate;
        } else if (strcmp(k, "slack") == 0) {
            rc = get_int(ld, m, 0, LIMIT_SLACK_MAX, &n);
            lim->slack_pct = (uint32_t)n;
        } else if (strcmp(k, "policy") == 0) {
            rc = get_word(ld, m, policies, ARRAY_SIZE(policies), &w);
            lim->balance = w == 1;
        } else if (strcmp(k, "when_full") == 0) {
            rc = get_word(ld, m, full, ARRAY_SIZE(full), &w);
            lim->queue = w == 1;
        } else if (strcmp(k, "servers") == 0) {
            void *servers;
            rc = parse_entries(ld, m, "an object of servers", sizeof(*lim->servers), &servers,
                               &lim->nservers, parse_limit_srv);
            lim->servers = servers;
        } else {
            return fail_unknown(ld, keys, ARRAY_SIZE(keys));
        }
        if (rc < 0) {
            return -1;
        }
        ld->depth--;
    }
    return 0;
}

void cfg_limits_of(const struct cfg *c, const char *backend, const char *server,
                   struct cfg_srv_limits *out)
{
    const struct cfg_limits *lim = NULL;
    *out = (struct cfg_srv_limits){.slack_pct = 20};
    for (size_t i = 0; i < c->nlimits; i++) {
        if (strcmp(c->limits[i].backend, backend) == 0) {
            lim = &c->limits[i];
            break;
        }
        if (strcmp(c->limits[i].backend, "*") == 0) {
            lim = &c->limits[i]; /* unless the backend has its own, later */
        }
    }
    if (lim == NULL) {
        return;
    }
    *out = (struct cfg_srv_limits){.slowstart_ms = lim->slowstart_ms,
                                   .maxconn = lim->maxconn,
                                   .balance = lim->balance,
                                   .queue = lim->queue,
                                   .slack_pct = lim->slack_pct,
                                   .new_rate = lim->new_rate};
    for (size_t i = 0; server != NULL && i < lim->nservers; i++) {
        const struct cfg_limit_srv *s = &lim->servers[i];
        if (strcmp(s->name, server) == 0) {
            out->slowstart_ms = s->slowstart_ms >= 0 ? s->slowstart_ms : out->slowstart_ms;
            out->maxconn = s->maxconn >= 0 ? (uint32_t)s->maxconn : out->maxconn;
            out->new_rate = s->new_rate >= 0 ? (uint32_t)s->new_rate : out->new_rate;
            break;
        }
    }
}

static int parse_object(struct loader *ld, json_t *obj)
{
    const char *k;
    json_t *v;
    json_object_foreach (obj, k, v) {
        if (push(ld, k) < 0) {
            return -1;
        }
        const struct cfg_key *key = key_find(ld->path, ld->depth);
        if (key == NULL) {
            return fail_unknown(ld, NULL, 0);
        }
        int rc;
        void *arr;
        if (key->type == KT_SECTION) {
            if (!json_is_object(v)) {
                return fail_type(ld, "an object", v);
            }
            rc = parse_object(ld, v);
        } else if (key->type == KT_BACKENDS) {
            rc = parse_entries(ld, v, "an object of backends", sizeof(*ld->c->backends), &arr,
                               &ld->c->nbackends, parse_backend);
            ld->c->backends = arr;
        } else if (key->type == KT_LIMITS) {
            rc = parse_entries(ld, v, "an object of backends", sizeof(*ld->c->limits), &arr,
                               &ld->c->nlimits, parse_limit);
            ld->c->limits = arr;
        } else {
            rc = apply_key(ld, key, v);
        }
        if (rc < 0) {
            return -1;
        }
        ld->depth--;
    }
    return 0;
}

/* Point the loader at a key by its table path, for checks made after parsing. */
static void at_key(struct loader *ld, const struct cfg_key *k)
{
    ld->depth = 0;
    while (ld->depth < ARRAY_SIZE(k->path) && k->path[ld->depth] != NULL) {
        ld->path[ld->depth] = k->path[ld->depth];
        ld->depth++;
    }
}

static const struct cfg_key *key_by_off(size_t off)
{
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        if (cfg_keys[i].type != KT_SECTION && cfg_keys[i].type != KT_BACKENDS &&
            cfg_keys[i].type != KT_LIMITS && cfg_keys[i].off == off) {
            return &cfg_keys[i];
        }
    }
    return NULL;
}

/* Is the key present in the text? (Cross-checks blame a key the user wrote.) */
static bool in_text(struct loader *ld, const struct cfg_key *k)
{
    at_key(ld, k);
    struct jsonpos kp, vp;
    return jsonpos_find(ld->text, ld->len, ld->path, ld->depth, &kp, &vp);
}

int64_t cfg_refresh_ms(const struct cfg *c)
{
    int64_t q = c->session_ttl_ms / 4;
    return c->session_refresh_ms < q ? c->session_refresh_ms : q;
}

uint32_t cfg_max_pending(const struct cfg *c)
{
    if (c->redis_max_pending > 0) {
        return c->redis_max_pending;
    }
    int64_t n = c->redis_timeout_ms * 100;
    return n < 256 ? 256u : n > 10000000 ? 10000000u : (uint32_t)n;
}

/* redis.sentinels and redis.master_name go together, and not with redis.unix. */
static int check_sentinel(struct loader *ld)
{
    struct cfg *c = ld->c;
    const struct cfg_key *ks = key_by_off(offsetof(struct cfg, redis_sentinels));
    const struct cfg_key *km = key_by_off(offsetof(struct cfg, redis_master_name));
    if (c->redis_sentinels.n > 0 && c->redis_master_name == NULL) {
        at_key(ld, ks);
        return fail(ld, AT_VALUE, "redis.sentinels needs redis.master_name (the name the "
                                  "Sentinels monitor the master under)");
    }
    if (c->redis_sentinels.n == 0 && c->redis_master_name != NULL) {
        at_key(ld, km);
        return fail(ld, AT_VALUE, "redis.master_name is set but redis.sentinels is not");
    }
    if (c->redis_sentinels.n > 0 && c->redis_unix != NULL) {
        at_key(ld, ks);
        return fail(ld, AT_VALUE, "redis.sentinels and redis.unix exclude each other: the "
                                  "Sentinels give a TCP address");
    }
    if (c->redis_sentinels.n > 0 && c->redis_cluster) {
        at_key(ld, ks);
        return fail(ld, AT_VALUE, "redis.sentinels and redis.cluster exclude each other: a "
                                  "Redis Cluster fails over by itself");
    }
    return 0;
}

static int cross_check(struct loader *ld)
{
    struct cfg *c = ld->c;
    char why[256], b1[32], b2[32];
    const struct cfg_key *kmin = key_by_off(offsetof(struct cfg, redis_reconnect_min_ms));
    const struct cfg_key *kmax = key_by_off(offsetof(struct cfg, redis_reconnect_max_ms));
    if (c->redis_reconnect_min_ms > c->redis_reconnect_max_ms) {
        at_key(ld, in_text(ld, kmin) ? kmin : kmax);
        return fail(ld, AT_VALUE,
                    "redis.reconnect_min (%s) must not exceed "
                    "redis.reconnect_max (%s)",
                    fmt_dur(c->redis_reconnect_min_ms, b1, sizeof(b1)),
                    fmt_dur(c->redis_reconnect_max_ms, b2, sizeof(b2)));
    }
    /* Every resync renews this instance's heartbeat; a TTL not spanning two of
     * them lets live instances (and their shares) drop out of conns between beats. */
    if (c->heartbeat_ttl_ms < 2 * c->resync_ms) {
        const struct cfg_key *khb = key_by_off(offsetof(struct cfg, heartbeat_ttl_ms));
        const struct cfg_key *krs = key_by_off(offsetof(struct cfg, resync_ms));
        at_key(ld, in_text(ld, khb) ? khb : krs);
        return fail(ld, AT_VALUE,
                    "haproxy.heartbeat_ttl (%s) must be at least twice haproxy.resync (%s)",
                    fmt_dur(c->heartbeat_ttl_ms, b1, sizeof(b1)),
                    fmt_dur(c->resync_ms, b2, sizeof(b2)));
    }
    /* One bound for every name that goes into a key: a default host name past it
     * is refused here, never cut later (a cut name splits one instance's keys). */
    const struct cfg_key *kinst = key_by_off(offsetof(struct cfg, instance));
    if (strlen(c->instance) > NAME_MAX_LEN) {
        at_key(ld, kinst);
        return fail(ld, AT_VALUE,
                    "instance: the host name '%.80s' is %zu bytes, longer than %d: set instance",
                    c->instance, strlen(c->instance), NAME_MAX_LEN);
    }
    const struct cfg_key *kallow = key_by_off(offsetof(struct cfg, syslog_allow));
    static struct slog_allow allow; /* checked here, parsed again by slog.c */
    if (slog_allow_parse(c->syslog_allow, &allow, why, sizeof(why)) < 0) {
        at_key(ld, kallow);
        return fail(ld, AT_VALUE, "syslog.allow: %s", why);
    }
    const struct cfg_key *kmode = key_by_off(offsetof(struct cfg, syslog_unix_mode_text));
    char *mend;
    unsigned long mode = strtoul(c->syslog_unix_mode_text, &mend, 8);
    if (*mend != '\0' || c->syslog_unix_mode_text[0] < '0' || c->syslog_unix_mode_text[0] > '7' ||
        mode > 0777 || (mode & 0200) == 0) {
        at_key(ld, kmode);
        return fail(ld, AT_VALUE,
                    "syslog.unix_mode: \"%s\" is not an octal file mode the owner can write "
                    "(e.g. \"0660\")", c->syslog_unix_mode_text);
    }
    c->syslog_unix_mode = (uint32_t)mode;
    if (check_sentinel(ld) < 0) {
        return -1;
    }
    const struct cfg_key *khost = key_by_off(offsetof(struct cfg, redis_host));
    if (c->redis_unix == NULL &&
        check_string(khost, c->redis_host, c->redis_port, why, sizeof(why)) < 0) {
        at_key(ld, khost);
        return fail(ld, AT_VALUE, "redis.host: %s", why);
    }
    if (c->redis_cluster && (c->redis_db != 0 || c->redis_unix != NULL)) {
        at_key(ld, key_by_off(offsetof(struct cfg, redis_cluster)));
        return fail(ld, AT_VALUE, "redis.cluster: a Redis Cluster has only db 0 and no unix "
                                  "socket: unset redis.db and redis.unix");
    }
    if (c->redis_nodes != NULL) {
        const struct cfg_key *kn = key_by_off(offsetof(struct cfg, redis_nodes));
        const char *p = c->redis_nodes;
        size_t nseeds = 0;
        while (*p != '\0') {
            size_t n = strcspn(p, " ,");
            char host[SLOTS_HOST_MAX], addr[SLOTS_HOST_MAX + 16];
            unsigned port;
            struct sockaddr_storage ss;
            unsigned sslen;
            if (n > 0) {
                if (slots_parse_hostport(p, n, host, &port) < 0 ||
                    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                             port) >= (int)sizeof(addr) ||
                    util_parse_addr(addr, &ss, &sslen, why, sizeof(why)) < 0) {
                    at_key(ld, kn);
                    return fail(ld, AT_VALUE,
                                "redis.nodes: '%.*s' is not a numeric ADDR:PORT", (int)n, p);
                }
                nseeds++;
            }
            p += n;
            p += strspn(p, " ,");
        }
        if (nseeds == 0) {
            at_key(ld, kn);
            return fail(ld, AT_VALUE, "redis.nodes: no ADDR:PORT given");
        }
    }
    const struct cfg_key *klisten = key_by_off(offsetof(struct cfg, listen));
    if (c->listen == NULL && c->unix_socket == NULL) {
        at_key(ld, klisten);
        return fail(ld, AT_VALUE, "listen: nothing to listen on: set listen or unix_socket");
    }
    return 0;
}

/* STICKYD_REDIS_USER / STICKYD_REDIS_PASSWORD, when set and non-empty, win over
 * the file, so a secret need not be written into it (nor ever onto argv). */
static int apply_env(struct cfg *c)
{
    static const struct {
        const char *var;
        size_t off;
    } envs[] = {
        {"STICKYD_REDIS_USER", offsetof(struct cfg, redis_user)},
        {"STICKYD_REDIS_PASSWORD", offsetof(struct cfg, redis_password)},
        {"STICKYD_REDIS_SENTINEL_USER", offsetof(struct cfg, redis_sentinel_user)},
        {"STICKYD_REDIS_SENTINEL_PASSWORD", offsetof(struct cfg, redis_sentinel_password)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(envs); i++) {
        const char *v = getenv(envs[i].var);
        if (v == NULL || v[0] == '\0') {
            continue;
        }
        char *copy = strdup(v);
        if (copy == NULL) {
            return -1;
        }
        char **dst = (char **)(void *)((char *)c + envs[i].off);
        free(*dst);
        *dst = copy;
    }
    return 0;
}

static int derive_channel(struct cfg *c)
{
    if (c->events_channel != NULL) {
        return 0;
    }
    size_t n = strlen(c->redis_prefix) + sizeof("events");
    if ((c->events_channel = malloc(n)) == NULL) {
        return -1;
    }
    snprintf(c->events_channel, n, "%sevents", c->redis_prefix);
    return 0;
}

int cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->derived || k->def == NULL) {
            continue;
        }
        int64_t ms;
        enum log_level lvl;
        if (kt_is_string(k->type)) {
            if ((*str_field(c, k) = strdup(k->def)) == NULL) {
                goto err_free;
            }
            continue;
        }
        switch (k->type) {
        case KT_U32:
            *(uint32_t *)field(c, k) = (uint32_t)strtoul(k->def, NULL, 10);
            break;
        case KT_PORT:
            *(uint16_t *)field(c, k) = (uint16_t)strtoul(k->def, NULL, 10);
            break;
        case KT_DUR:
            if (util_parse_duration(k->def, &ms) < 0) {
                goto err_free;
            }
            *(int64_t *)field(c, k) = ms;
            break;
        case KT_LEVEL:
            if (log_parse_level(k->def, &lvl) < 0) {
                goto err_free;
            }
            *(enum log_level *)field(c, k) = lvl;
            break;
        case KT_BOOL:
            *(bool *)field(c, k) = strcmp(k->def, "true") == 0;
            break;
        default: /* strings above; sections hold no value */
            break;
        }
    }
    char host[256];
    if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0' || !valid_token(host)) {
        snprintf(host, sizeof(host), "stickyd");
    }
    host[sizeof(host) - 1] = '\0';
    if ((c->instance = strdup(host)) == NULL || derive_channel(c) < 0 || apply_env(c) < 0) {
        goto err_free;
    }
    return 0;

err_free:
    cfg_release(c);
    return -1;
}

int cfg_load_string(const char *name, const char *text, struct cfg *c, char *err, size_t errlen)
{
    struct loader ld = {
        .name = name, .text = text, .len = strlen(text), .c = c, .err = err, .errlen = errlen};
    if (errlen > 0) {
        err[0] = '\0';
    }
    if (cfg_defaults(c) < 0) {
        snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, ld.len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jansson's column is the last character of the offending token */
        snprintf(err, errlen, "%s:%d:%d: %s", name, jerr.line, jerr.column, jerr.text);
        goto err_free;
    }
    if (!json_is_object(root)) {
        fail(&ld, AT_VALUE, "the top level must be an object, got %s", json_type_name(root));
        goto err_decref;
    }
    /* events.channel defaults to the prefix the file sets, so derive it last */
    free(c->events_channel);
    c->events_channel = NULL;
    if (parse_object(&ld, root) < 0 || cross_check(&ld) < 0) {
        goto err_decref;
    }
    if (apply_env(c) < 0 || derive_channel(c) < 0) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto err_decref;
    }
    json_decref(root);
    return 0;

err_decref:
    json_decref(root);
err_free:
    cfg_release(c);
    return -1;
}

int cfg_load(const char *path, struct cfg *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *text = malloc(CFG_MAX_FILE + 1);
    if (text == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto err_close;
    }
    size_t n = fread(text, 1, CFG_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto err_free_text;
    }
    if (n > CFG_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %u bytes", path, CFG_MAX_FILE);
        goto err_free_text;
    }
    if (memchr(text, '\0', n) != NULL) {
        snprintf(err, errlen, "%s: contains a NUL byte", path);
        goto err_free_text;
    }
    text[n] = '\0';
    rc = cfg_load_string(path, text, c, err, errlen);

err_free_text:
    free(text);
err_close:
    fclose(f);
    return rc;
}

void cfg_release(struct cfg *c)
{
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        if (kt_is_string(cfg_keys[i].type)) {
            free(*str_field(c, &cfg_keys[i]));
        }
    }
    for (size_t i = 0; i < c->nbackends; i++) {
        for (size_t j = 0; j < c->backends[i].nservers; j++) {
            free(c->backends[i].servers[j].name);
        }
        free(c->backends[i].servers);
        free(c->backends[i].name);
    }
    free(c->backends);
    for (size_t i = 0; i < c->nlimits; i++) {
        for (size_t j = 0; j < c->limits[i].nservers; j++) {
            free(c->limits[i].servers[j].name);
        }
        free(c->limits[i].servers);
        free(c->limits[i].backend);
    }
    free(c->limits);
    list_free(&c->redis_sentinels);
    memset(c, 0, sizeof(*c));
}

int cfg_set_sentinels(struct cfg *c, const char *csv, char *err, size_t errlen)
{
    struct cfg_list l = {NULL, 0};
    char why[256];
    const char *p = csv;
    while (csv != NULL && *p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char *one = strndup(p, len);
        char **v = realloc(l.v, (l.n + 1) * sizeof(*l.v));
        if (one == NULL || v == NULL) {
            free(one);
            if (v != NULL) {
                l.v = v;
            }
            snprintf(err, errlen, "out of memory");
            goto err_free;
        }
        l.v = v;
        l.v[l.n++] = one;
        if (check_hostport(one, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s", why);
            goto err_free;
        }
        if (l.n > 16) {
            snprintf(err, errlen, "more than 16 Sentinels");
            goto err_free;
        }
        p = end != NULL ? end + 1 : p + len;
    }
    if (csv != NULL && l.n == 0) {
        snprintf(err, errlen, "no Sentinel address");
        goto err_free;
    }
    list_free(&c->redis_sentinels);
    c->redis_sentinels = l;
    return 0;

err_free:
    list_free(&l);
    return -1;
}

const struct cfg_backend *cfg_backend_find(const struct cfg *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nbackends; i++) {
        const char *n = c->backends[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) {
            return &c->backends[i];
        }
    }
    return NULL;
}

/* One reference row, formatted once for both outputs (markdown and roff). */
struct ref_row {
    char name[128], type[32], def[64], range[64];
    bool section;
};

static void ref_row(const struct cfg_key *k, struct ref_row *r)
{
    char b1[32], b2[32];
    memset(r, 0, sizeof(*r));
    for (size_t d = 0; d < ARRAY_SIZE(k->path) && k->path[d] != NULL; d++) {
        strncat(r->name, d ? "." : "", sizeof(r->name) - strlen(r->name) - 1);
        strncat(r->name, k->path[d], sizeof(r->name) - strlen(r->name) - 1);
    }
    r->section = k->type == KT_SECTION;
    snprintf(r->type, sizeof(r->type), "%s%s", kt_doc_names[k->type],
             k->nullable ? " \\| null" : "");
    if (k->type == KT_SECTION || k->type == KT_BACKENDS || k->type == KT_LIMITS) {
        snprintf(r->def, sizeof(r->def), k->type != KT_SECTION ? "`{}`" : "");
    } else if (k->derived) {
        snprintf(r->def, sizeof(r->def), "%s", k->def);
    } else if (k->def == NULL) {
        snprintf(r->def, sizeof(r->def), "`null`");
    } else if (k->type == KT_U32 || k->type == KT_PORT || k->type == KT_BOOL) {
        snprintf(r->def, sizeof(r->def), "`%s`", k->def);
    } else {
        snprintf(r->def, sizeof(r->def), "`\"%s\"`", k->def);
    }
    switch (k->type) {
    case KT_INET:
        snprintf(r->range, sizeof(r->range), "`ADDR:PORT`, `[IPv6]:PORT`");
        break;
    case KT_ADDR:
        snprintf(r->range, sizeof(r->range), "`ADDR:PORT`, `unix:/path`, `/path`");
        break;
    case KT_HOST:
        snprintf(r->range, sizeof(r->range), "IPv4, IPv6, `localhost`");
        break;
    case KT_LEVEL:
        snprintf(r->range, sizeof(r->range), "`error` `warn` `info` `debug`");
        break;
    case KT_BOOL:
        snprintf(r->range, sizeof(r->range), "`true` `false`");
        break;
    case KT_HOSTS:
        snprintf(r->range, sizeof(r->range), "%" PRId64 "..%" PRId64 " of `ADDR:PORT`", k->min,
                 k->max);
        break;
    case KT_U32:
    case KT_PORT:
        snprintf(r->range, sizeof(r->range), "%" PRId64 "..%" PRId64, k->min, k->max);
        break;
    case KT_DUR:
        snprintf(r->range, sizeof(r->range), "%s..%s", fmt_dur(k->min, b1, sizeof(b1)),
                 fmt_dur(k->max, b2, sizeof(b2)));
        break;
    case KT_STR:
    case KT_TOKEN:
    case KT_PATH:
        snprintf(r->range, sizeof(r->range), "%" PRId64 "..%" PRId64 " bytes", k->min, k->max);
        break;
    default:
        break;
    }
}

/* Markdown text as roff: `code` in bold, markdown's "\|" as "|", and the
 * characters roff would read as requests or escapes made literal. */
static void roff_text(FILE *out, const char *s)
{
    const char *start = s;
    bool code = false;
    for (; *s; s++) {
        if (*s == '`') {
            fputs(code ? "\\fR" : "\\fB", out);
            code = !code;
        } else if (s[0] == '\\' && s[1] == '|') {
            fputc('|', out);
            s++;
        } else if (*s == '\\') {
            fputs("\\e", out);
        } else if (*s == '-') {
            fputs("\\-", out);
        } else if ((*s == '.' || *s == '\'') && s == start) {
            fputs("\\&", out); /* a control character at a line start */
            fputc(*s, out);
        } else {
            fputc(*s, out);
        }
    }
    if (code) {
        fputs("\\fR", out);
    }
}

void cfg_print_reference(FILE *out)
{
    fprintf(out, "| Key | Type | Default | Range | Meaning |\n");
    fprintf(out, "|-----|------|---------|-------|---------|\n");
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        struct ref_row r;
        ref_row(&cfg_keys[i], &r);
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", r.name, r.type, r.def, r.range,
                cfg_keys[i].doc);
    }
}

void cfg_print_reference_roff(FILE *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
        struct ref_row r;
        ref_row(&cfg_keys[i], &r);
        if (r.section) {
            fputs(".SS \"", out);
            roff_text(out, r.name);
            fputs("\"\n", out);
            roff_text(out, cfg_keys[i].doc);
            fputs(".\n", out);
            continue;
        }
        fputs(".TP\n.B ", out);
        roff_text(out, r.name);
        fputs("\n", out);
        roff_text(out, r.type);
        if (r.def[0] != '\0') {
            fputs("; default ", out);
            roff_text(out, r.def);
        }
        if (r.range[0] != '\0') {
            fputs("; ", out);
            roff_text(out, r.range);
        }
        fputs(".\n.br\n", out);
        roff_text(out, cfg_keys[i].doc);
        fputs(".\n", out);
    }
}
