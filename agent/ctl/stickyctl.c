/* stickyctl.c - the operator CLI of stickyd: where is a session, how loaded is
 * each server, drain/maint/ready a server cluster-wide, move a session, watch
 * the change events.
 *
 * Owns the command line only: options, the command table, help, argument
 * checks (all before connecting, so a usage error is never reported as a Redis
 * one), the config and its overrides, the exit code. Each command lives in a
 * ctl_*.c file: ctl_status.c, ctl_session.c (lookup, move), ctl_state.c (drain,
 * undrain/ready, maint), ctl_watch.c; ctl.c has what they share and
 * ctl_redis.c the blocking-style calls over store.c.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "ctl_fmt.h"
#include "ctl_redis.h"
#include "log.h"
#include "sid.h"
#include "util.h"

#define CTL_DEFAULT_TIMEOUT_MS 2000

/* Options a command accepts besides the global ones. */
enum {
    OPT_JSON = 1u << 0,
    OPT_FORCE = 1u << 1,
    OPT_DEADLINE = 1u << 2,
    OPT_CLOSE = 1u << 3,
    OPT_KEY = 1u << 4,
};

struct command {
    const char *name;
    int min_args, max_args;
    const char *roles; /* each argument's kind: b backend, i session id, s server */
    unsigned opts;
    int (*run)(struct ctl *c, char **args, int nargs);
    const char *synopsis;
    const char *help;
};

static int cmd_status(struct ctl *c, char **args, int nargs);

/* clang-format off */
static const struct command commands[] = {
    {"status", 0, 1, "b", OPT_JSON, cmd_status, "status [<backend>] [--json]",
     "Per backend: each server's cluster state (ready, drain until T (in D) [close],\n"
     "maint, down (HAProxy); \"ready, slow start 40 %\" while it ramps), live\n"
     "connections cluster-wide (CONNS/MAX when it has a fleet-wide cap) and per live\n"
     "HAProxy instance, and weight. The ramp and configured caps need -c (limits).\n"
     "Without <backend>, every backend found under the prefix.\n"
     "--json prints one document: {version, now_ms, prefix, backends: [{name,\n"
     "total_conns, instances: [{name, heartbeat_ms, live}], servers: [{name, state,\n"
     "admin, admin_raw, deadline_ms, deadline_passed, close_at_deadline,\n"
     "haproxy_state, weight, conns, per_instance: {<inst>: n}, maxconn, slowstart_ms,\n"
     "ramp_since_ms, ramp_pct}]}]}.\n"},
    {"lookup", 2, 2, "bi", OPT_JSON | OPT_KEY, ctl_cmd_lookup,
     "lookup <backend> (<sid> | --key KEY) [--json]",
     "The session record: its record id, server (and whether an operator moved it),\n"
     "created and last renewed (UTC), the instance that renewed it, TTL left. <sid>\n"
     "is the session cookie (either format) or the record id. Exit 1 when there is\n"
     "no such session. --key KEY finds the session of an affinity key (sticky-assign's\n"
     "`key`): its id is derived with session.secret_file (and previous_secret_file)\n"
     "of -c FILE. --json: {backend, sid, record, key, server, created_ms, created,\n"
     "seen_ms, seen, reconnects (null: no longer counted), moved, inst, ttl_ms (-1: no\n"
     "expiry)}.\n"},
    {"move", 3, 3, "bis", OPT_FORCE | OPT_KEY, ctl_cmd_move,
     "move <backend> (<sid> | --key KEY) <server> [--force]",
     "Pin an existing session to another server, flag it as moved (the move wins\n"
     "over the server its cookie names) and publish a session-moved event. The\n"
     "session's open connection stays where it is; its next connection goes to\n"
     "<server> (the one after, if no agent got the event). Refuses an unknown\n"
     "backend or server unless --force.\n"},
    {"drain", 2, 2, "bs", OPT_FORCE | OPT_DEADLINE | OPT_CLOSE, ctl_cmd_drain,
     "drain <backend> <server> [--deadline DURATION [--close-at-deadline]] [--force]",
     "Drain a server on every HAProxy: no new sessions, existing ones stay. With\n"
     "--deadline, sessions pinned to it move elsewhere once the deadline passes,\n"
     "and --close-at-deadline also shuts its open connections down then. Writes\n"
     "the state hash (drain:<deadline unix ms>, 0 = none) and publishes a\n"
     "server-state event; agents apply it at once (and poll it anyway).\n"},
    {"undrain", 2, 2, "bs", OPT_FORCE, ctl_cmd_undrain, "undrain <backend> <server> [--force]",
     "Return a drained or maint server to ready on every HAProxy.\n"},
    {"ready", 2, 2, "bs", OPT_FORCE, ctl_cmd_undrain, "ready <backend> <server> [--force]",
     "The same as undrain.\n"},
    {"maint", 2, 2, "bs", OPT_FORCE, ctl_cmd_maint, "maint <backend> <server> [--force]",
     "Put a server in maintenance on every HAProxy: no traffic; sessions pinned to\n"
     "it are re-pinned elsewhere at their next connection.\n"},
    {"watch", 0, 0, "", OPT_JSON, ctl_cmd_watch, "watch [--json]",
     "Print every change event (one line each; --json: one JSON object per line)\n"
     "until Ctrl-C or SIGTERM. Messages that are not events are reported on stderr.\n"},
};
/* clang-format on */

static const char global_help[] =
    "usage: stickyctl [options] <command> [args]\n"
    "\n"
    "Operator CLI of stickyd: session affinity and server states in Redis.\n"
    "\n"
    "Commands:\n"
    "%s"
    "\n"
    "Options:\n"
    "  -c, --config FILE     stickyd's JSON configuration: redis.host/port/unix/db/\n"
    "                        prefix/user/password/cluster/nodes, events.channel\n"
    "                        (default: built-in defaults; STICKYD_REDIS_USER/PASSWORD\n"
    "                        are honoured)\n"
    "      --redis ADDR:PORT Redis address (or unix:/path), overrides the config\n"
    "                        (and its redis.sentinels; with redis.cluster: the one\n"
    "                        seed node)\n"
    "      --sentinels LIST  ask these Sentinels (ADDR:PORT,ADDR:PORT,...) for the\n"
    "                        master, overrides the config; needs --master-name or\n"
    "                        redis.master_name\n"
    "      --master-name N   the master's name at the Sentinels\n"
    "      --prefix P        key prefix, overrides the config (default sticky:)\n"
    "      --timeout DUR     deadline of the connection and of each Redis call\n"
    "                        (default 2s; e.g. 500ms, 5s)\n"
    "      --json            machine-readable output (status, lookup, watch)\n"
    "      --force           write a state or pin for a backend/server stickyd\n"
    "                        does not know (yet)\n"
    "      --key KEY         lookup, move: the session of an affinity key instead\n"
    "                        of <sid> (needs -c with session.secret_file)\n"
    "      --deadline DUR    drain: sessions leave the server after DUR\n"
    "      --close-at-deadline  drain: and its connections are closed then\n"
    "  -v, --verbose         log the Redis client's own messages (debug level)\n"
    "  -h, --help            this text; `stickyctl <command> --help` for one command\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  not found (lookup, move: no such session)\n"
    "  2  usage error: unknown command or option, missing or extra arguments, bad\n"
    "     duration, unreadable or invalid configuration file\n"
    "  3  unknown backend or server\n"
    "  4  Redis unreachable, timed out, or answered with an error (or the output\n"
    "     could not be written)\n"
    "Errors are one line on stderr starting with \"stickyctl: \".\n";

static void print_global_help(FILE *f)
{
    char list[2048];
    size_t off = 0;
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        off += (size_t)snprintf(list + off, sizeof(list) - off, "  %s\n", commands[i].synopsis);
        if (off >= sizeof(list)) {
            break;
        }
    }
    fprintf(f, global_help, list);
}

static void print_command_help(const struct command *cmd)
{
    printf("usage: stickyctl [options] %s\n\n%s\nGlobal options and exit codes: stickyctl "
           "--help\n",
           cmd->synopsis, cmd->help);
}

/* ---- shared by the commands --------------------------------------------------------- */

/* Names go inside a hash tag, so braces would change which keys they mean. */
static int check_name(const char *what, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len >= max || strpbrk(s, "{}") != NULL) {
        ctl_fail("bad %s '%s': 1..%zu characters, no braces", what, s, max - 1);
        return -1;
    }
    return 0;
}

/* ---- status (the other commands live in ctl_*.c) ------------------------------------- */

static int cmd_status(struct ctl *c, char **args, int nargs)
{
    return ctl_status(c, nargs == 1 ? args[0] : NULL);
}

/* ---- command line ---------------------------------------------------------------------------- */

enum {
    LOPT_REDIS = 256,
    LOPT_PREFIX,
    LOPT_TIMEOUT,
    LOPT_JSON,
    LOPT_FORCE,
    LOPT_DEADLINE,
    LOPT_CLOSE,
    LOPT_KEY,
    LOPT_SENTINELS,
    LOPT_MASTER_NAME,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"redis", required_argument, NULL, LOPT_REDIS},
    {"prefix", required_argument, NULL, LOPT_PREFIX},
    {"timeout", required_argument, NULL, LOPT_TIMEOUT},
    {"json", no_argument, NULL, LOPT_JSON},
    {"force", no_argument, NULL, LOPT_FORCE},
    {"deadline", required_argument, NULL, LOPT_DEADLINE},
    {"close-at-deadline", no_argument, NULL, LOPT_CLOSE},
    {"key", required_argument, NULL, LOPT_KEY},
    {"sentinels", required_argument, NULL, LOPT_SENTINELS},
    {"master-name", required_argument, NULL, LOPT_MASTER_NAME},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(unsigned bit)
{
    switch (bit) {
    case OPT_JSON:
        return "--json";
    case OPT_FORCE:
        return "--force";
    case OPT_DEADLINE:
        return "--deadline";
    case OPT_KEY:
        return "--key";
    default:
        return "--close-at-deadline";
    }
}

static int replace_str(char **dst, const char *v)
{
    char *copy = strdup(v);
    if (copy == NULL) {
        return -1;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

/* One Redis named on the command line: not the config's Sentinels. */
static int drop_sentinels(struct cfg *cfg)
{
    char err[64];
    free(cfg->redis_master_name);
    cfg->redis_master_name = NULL;
    return cfg_set_sentinels(cfg, NULL, err, sizeof(err));
}

/* --redis: "HOST:PORT", "[V6]:PORT", "unix:/path" or "/path". */
static int apply_redis_addr(struct cfg *cfg, const char *s)
{
    if (drop_sentinels(cfg) < 0) {
        return -1;
    }
    if (strncmp(s, "unix:", 5) == 0 || s[0] == '/') {
        const char *path = s[0] == '/' ? s : s + 5;
        if (path[0] == '\0' || strlen(path) > 107) {
            ctl_fail("bad --redis '%s': unix socket path empty or too long", s);
            return -1;
        }
        if (cfg->redis_cluster) {
            ctl_fail("bad --redis '%s': a Redis Cluster (redis.cluster) is reached over TCP", s);
            return -1;
        }
        return replace_str(&cfg->redis_unix, path);
    }
    const char *colon = strrchr(s, ':');
    char host[128];
    if (colon == NULL || colon == s || colon[1] == '\0') {
        ctl_fail("bad --redis '%s': expected ADDR:PORT or unix:/path", s);
        return -1;
    }
    size_t hlen = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']') {
            ctl_fail("bad --redis '%s': write an IPv6 address as [ADDR]:PORT", s);
            return -1;
        }
        h++;
        hlen -= 2;
    }
    int64_t port;
    if (hlen >= sizeof(host) || ctl_parse_i64(colon + 1, strlen(colon + 1), &port) < 0 ||
        port < 1 || port > 65535) {
        ctl_fail("bad --redis '%s': expected ADDR:PORT with a port 1..65535", s);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    cfg->redis_port = (uint16_t)port;
    free(cfg->redis_unix);
    cfg->redis_unix = NULL;
    free(cfg->redis_nodes); /* a cluster: this address is the one seed */
    cfg->redis_nodes = NULL;
    return replace_str(&cfg->redis_host, host);
}

/* --sentinels and --master-name, over the config's; both or neither in the end. */
static int apply_sentinels(struct cfg *cfg, const char *list, const char *name)
{
    char err[300];
    if (list != NULL && cfg_set_sentinels(cfg, list, err, sizeof(err)) < 0) {
        ctl_fail("bad --sentinels '%s': %s", list, err);
        return -1;
    }
    if (name != NULL) {
        if (name[0] == '\0' || strlen(name) > 255 || strpbrk(name, " \t\r\n") != NULL) {
            ctl_fail("bad --master-name '%s': 1..255 characters, no spaces", name);
            return -1;
        }
        if (replace_str(&cfg->redis_master_name, name) < 0) {
            return -1;
        }
    }
    if (cfg->redis_sentinels.n > 0 && cfg->redis_master_name == NULL) {
        ctl_fail("--sentinels needs --master-name (or redis.master_name in the config)");
        return -1;
    }
    if (cfg->redis_sentinels.n == 0 && name != NULL) {
        ctl_fail("--master-name needs --sentinels (or redis.sentinels in the config)");
        return -1;
    }
    if (cfg->redis_sentinels.n > 0) {
        free(cfg->redis_unix); /* the Sentinels give a TCP address */
        cfg->redis_unix = NULL;
    }
    return 0;
}

static int apply_prefix(struct cfg *cfg, const char *prefix)
{
    if (prefix[0] == '\0' || strlen(prefix) > 64 || strpbrk(prefix, "{} \t") != NULL) {
        ctl_fail("bad --prefix '%s': 1..64 characters, no braces or spaces", prefix);
        return -1;
    }
    /* a channel derived from the old prefix follows the new one */
    char derived[200];
    snprintf(derived, sizeof(derived), "%sevents", cfg->redis_prefix);
    if (cfg->events_channel != NULL && strcmp(cfg->events_channel, derived) == 0) {
        snprintf(derived, sizeof(derived), "%sevents", prefix);
        if (replace_str(&cfg->events_channel, derived) < 0) {
            return -1;
        }
    }
    return replace_str(&cfg->redis_prefix, prefix);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

/* --key: the "k" record id(s) of an affinity key, as the agents derive them
 * (sid.h), into c->sid and, after a rotation, c->sid_prev. 0 or -1 (reported). */
static int derive_sid(struct ctl *c, const char *key)
{
    if (c->cfg.secret_file == NULL) {
        ctl_fail("--key needs session.secret_file: give the agents' configuration with -c FILE");
        return -1;
    }
    struct sid_keys *keys = calloc(1, sizeof(*keys));
    char err[512];
    int rc = -1;
    if (keys == NULL) {
        ctl_fail("out of memory");
        return -1;
    }
    if (sid_keys_load(keys, c->cfg.secret_file, c->cfg.previous_secret_file, err, sizeof(err)) <
        0) {
        ctl_fail("%s", err);
        goto out;
    }
    if (sid_from_key(keys, false, key, strlen(key), c->sid) < 0) {
        ctl_fail("cannot derive the id of --key");
        goto out;
    }
    if (keys->prev_len > 0 && sid_from_key(keys, true, key, strlen(key), c->sid_prev) < 0) {
        c->sid_prev[0] = '\0';
    }
    c->key = key;
    rc = 0;
out:
    sid_keys_wipe(keys);
    free(keys);
    return rc;
}

static int parse_duration_opt(const char *opt, const char *v, int64_t *ms)
{
    if (util_parse_duration(v, ms) < 0) {
        ctl_fail("bad duration '%s' for %s (e.g. 250ms, 30s, 10m, 2h, 1d)", v, opt);
        return -1;
    }
    return 0;
}

/* ---- main's steps ------------------------------------------------------------------ */

/* The command line as given: values are borrowed from argv. */
struct opts {
    const char *config, *redis, *prefix, *sentinels, *master_name;
    const char *timeout, *deadline, *affinity_key;
    bool help, verbose;
    unsigned seen; /* OPT_* bits of the command options given */
};

/* The command's arguments; with --key, v points into kv, the arguments with the
 * derived id (ctl.sid) in the <sid> slot. */
struct args {
    char **v;
    int n;
    char *kv[4];
};

/* Options into *o (argv is permuted, optind left at the command). 0, or -1 reported. */
static int parse_options(int argc, char **argv, struct opts *o)
{
    opterr = 0; /* our own one-line messages */
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:hv", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case LOPT_REDIS:
            o->redis = optarg;
            break;
        case LOPT_PREFIX:
            o->prefix = optarg;
            break;
        case LOPT_SENTINELS:
            o->sentinels = optarg;
            break;
        case LOPT_MASTER_NAME:
            o->master_name = optarg;
            break;
        case LOPT_TIMEOUT:
            o->timeout = optarg;
            break;
        case LOPT_JSON:
            o->seen |= OPT_JSON;
            break;
        case LOPT_FORCE:
            o->seen |= OPT_FORCE;
            break;
        case LOPT_DEADLINE:
            o->seen |= OPT_DEADLINE;
            o->deadline = optarg;
            break;
        case LOPT_CLOSE:
            o->seen |= OPT_CLOSE;
            break;
        case LOPT_KEY:
            o->seen |= OPT_KEY;
            o->affinity_key = optarg;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            o->help = true;
            break;
        case ':':
            ctl_fail("option '%s' needs a value (see stickyctl --help)", argv[optind - 1]);
            return -1;
        default:
            ctl_fail("unknown option '%s' (see stickyctl --help)", argv[optind - 1]);
            return -1;
        }
    }
    return 0;
}

/* The command argv[optind] names, or NULL (reported). */
static const struct command *command_named(int argc, char **argv)
{
    if (optind >= argc) {
        ctl_fail("no command given (see stickyctl --help)");
        return NULL;
    }
    const struct command *cmd = find_command(argv[optind]);
    if (cmd == NULL) {
        ctl_fail("unknown command '%s' (see stickyctl --help)", argv[optind]);
    }
    return cmd;
}

/* Each command option given applies to cmd. 0, or -1 reported. */
static int check_options_apply(const struct command *cmd, unsigned seen)
{
    for (unsigned bit = 1; bit <= OPT_KEY; bit <<= 1) {
        if ((seen & bit) && !(cmd->opts & bit)) {
            ctl_fail("%s: %s does not apply to this command", cmd->name, opt_name(bit));
            return -1;
        }
    }
    return 0;
}

/* The arguments after the command into *a, --key standing for the <sid> argument
 * (the second of lookup and move; its id, c->sid, is derived once the config is
 * loaded), and their count checked. 0, or -1 reported. */
static int bind_arguments(const struct command *cmd, const char *key, char **argv, int n,
                          struct ctl *c, struct args *a)
{
    a->v = argv;
    a->n = n;
    if (key != NULL) {
        if (n < 1 || n + 1 > cmd->max_args) {
            ctl_fail("%s: %s arguments (--key replaces <sid>); usage: stickyctl %s", cmd->name,
                     n < 1 ? "missing" : "too many", cmd->synopsis);
            return -1;
        }
        if (key[0] == '\0' || strlen(key) > 4096) {
            ctl_fail("bad --key: 1..4096 bytes");
            return -1;
        }
        a->kv[0] = argv[0];
        a->kv[1] = c->sid;
        for (int i = 1; i < n; i++) {
            a->kv[i + 1] = argv[i];
        }
        a->v = a->kv;
        a->n = n + 1;
    }
    if (a->n < cmd->min_args || a->n > cmd->max_args) {
        ctl_fail("%s: %s arguments; usage: stickyctl %s", cmd->name,
                 a->n < cmd->min_args ? "missing" : "too many", cmd->synopsis);
        return -1;
    }
    return 0;
}

/* The command options' values into *c: flags and durations. 0, or -1 reported. */
static int read_option_values(const struct opts *o, struct ctl *c)
{
    c->json = o->seen & OPT_JSON;
    c->force = o->seen & OPT_FORCE;
    c->close_at_deadline = o->seen & OPT_CLOSE;
    c->has_deadline = o->deadline != NULL;
    if ((o->deadline != NULL &&
         parse_duration_opt("--deadline", o->deadline, &c->deadline_ms) < 0) ||
        (o->timeout != NULL && parse_duration_opt("--timeout", o->timeout, &c->timeout_ms) < 0)) {
        return -1;
    }
    if (c->close_at_deadline && (!c->has_deadline || c->deadline_ms <= 0)) {
        ctl_fail("--close-at-deadline needs a --deadline greater than 0");
        return -1;
    }
    return 0;
}

/* Names, ids and keys end up in Redis keys and in what other operators read: a
 * control character (an escape sequence, a newline) is refused, never stored; each
 * argument fits its role's length and hash-tag rules. 0, or -1 reported. */
static int check_argument_values(const struct command *cmd, const struct args *a, const char *key,
                                 const struct ctl *c)
{
    for (int i = 0; i < a->n; i++) {
        if (a->v[i] != c->sid && ctl_has_control(a->v[i], strlen(a->v[i]))) {
            ctl_fail("bad argument '%s': control characters are not allowed", a->v[i]);
            return -1;
        }
    }
    if (key != NULL && ctl_has_control(key, strlen(key))) {
        ctl_fail("bad --key '%s': control characters are not allowed", key);
        return -1;
    }
    for (int i = 0; i < a->n; i++) {
        static const struct {
            char role;
            const char *what;
            size_t max;
        } kinds[] = {{'b', "backend", CTL_NAME_MAX},
                     {'i', "session id", CTL_SID_MAX},
                     {'s', "server", CTL_NAME_MAX}};
        for (size_t j = 0; j < ARRAY_SIZE(kinds); j++) {
            if (cmd->roles[i] == kinds[j].role && a->v[i] != c->sid &&
                check_name(kinds[j].what, a->v[i], kinds[j].max) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Every check of the command line, all before the config is read and Redis is
 * asked, so that a usage error is never reported as another one. 0, or -1 reported. */
static int check_usage(const struct command *cmd, const struct opts *o, char **argv, int n,
                       struct ctl *c, struct args *a)
{
    if (check_options_apply(cmd, o->seen) < 0 ||
        bind_arguments(cmd, o->affinity_key, argv, n, c, a) < 0 || read_option_values(o, c) < 0 ||
        check_argument_values(cmd, a, o->affinity_key, c) < 0) {
        return -1;
    }
    if (c->timeout_ms <= 0) {
        ctl_fail("--timeout must be greater than 0");
        return -1;
    }
    return 0;
}

/* -c FILE, else the built-in defaults, into *cfg. 0, or -1 reported (then *cfg holds
 * nothing to free). */
static int load_config(const char *path, struct cfg *cfg)
{
    char err[600];
    if (path != NULL ? cfg_load(path, cfg, err, sizeof(err)) < 0 : cfg_defaults(cfg) < 0) {
        ctl_fail("%s", path != NULL ? err : "out of memory");
        return -1;
    }
    return 0;
}

/* --redis, --sentinels/--master-name and --prefix over the config. 0, or -1 reported. */
static int apply_overrides(const struct opts *o, struct cfg *cfg)
{
    if ((o->redis != NULL && (o->sentinels != NULL || o->master_name != NULL))) {
        ctl_fail("--redis and --sentinels/--master-name exclude each other");
        return -1;
    }
    if ((o->redis != NULL && apply_redis_addr(cfg, o->redis) < 0) ||
        apply_sentinels(cfg, o->sentinels, o->master_name) < 0 ||
        (o->prefix != NULL && apply_prefix(cfg, o->prefix) < 0)) {
        return -1;
    }
    return 0;
}

/* The operator's --timeout bounds everything: connect, handshake, each call; events
 * name their origin "stickyctl@<host>". */
static void set_timeouts_and_origin(struct ctl *c)
{
    c->cfg.redis_timeout_ms = c->timeout_ms;
    c->cfg.redis_connect_timeout_ms = c->timeout_ms;
    char host[256];
    if (gethostname(host, sizeof(host)) < 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    host[sizeof(host) - 1] = '\0';
    snprintf(c->origin, sizeof(c->origin), "stickyctl@%s", host);
}

/* The event loop and the Redis connection into c. 0, or -1 reported. */
static int connect_redis(struct ctl *c)
{
    char err[600];
    c->loop = ev_default_loop(0);
    if (c->loop == NULL) {
        ctl_fail("cannot initialise the event loop");
        return -1;
    }
    c->redis = ctl_redis_open(c->loop, &c->cfg, c->timeout_ms, err, sizeof(err));
    if (c->redis == NULL) {
        ctl_fail("%s", err);
        return -1;
    }
    return 0;
}

/* The command, then its output flushed. Returns the exit code. */
static int run_command(const struct command *cmd, struct ctl *c, const struct args *a)
{
    int rc = cmd->run(c, a->v, a->n);
    /* A reader that stopped early (`| head`) is not a failure; a full disk is. */
    if ((fflush(stdout) != 0 || ferror(stdout)) && errno != EPIPE && rc == CTL_OK) {
        ctl_fail("cannot write the output: %s", strerror(errno));
        rc = CTL_REDIS;
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    struct ctl c = {.timeout_ms = CTL_DEFAULT_TIMEOUT_MS};
    struct args a;

    signal(SIGPIPE, SIG_IGN); /* a dead peer or reader is an error to report, not a kill */
    log_set_level(LOG_LVL_ERR);
    if (parse_options(argc, argv, &o) < 0) {
        return CTL_USAGE;
    }
    if (optind >= argc && o.help) {
        print_global_help(stdout);
        return CTL_OK;
    }
    const struct command *cmd = command_named(argc, argv);
    if (cmd == NULL) {
        return CTL_USAGE;
    }
    if (o.help) {
        print_command_help(cmd);
        return CTL_OK;
    }
    if (check_usage(cmd, &o, argv + optind + 1, argc - optind - 1, &c, &a) < 0) {
        return CTL_USAGE;
    }
    if (o.verbose) {
        log_set_level(LOG_LVL_DEBUG);
    }
    if (load_config(o.config, &c.cfg) < 0) {
        return CTL_USAGE;
    }
    int rc = CTL_USAGE;
    if (apply_overrides(&o, &c.cfg) == 0 &&
        (o.affinity_key == NULL || derive_sid(&c, o.affinity_key) == 0)) {
        set_timeouts_and_origin(&c);
        rc = connect_redis(&c) < 0 ? CTL_REDIS : run_command(cmd, &c, &a);
    }
    ctl_redis_close(c.redis);
    cfg_release(&c.cfg);
    return rc;
}
