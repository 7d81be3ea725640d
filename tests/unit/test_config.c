/* Unit tests for config.c: defaults, a full file, every error class with its
 * exact "name:line:col: message" (proving the position scanner), environment
 * overrides, cfg_load from a real file, and cfg_release's cleanliness. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static char err[512];

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_sa_ = (a), *check_sb_ = (b);                                             \
        if (check_sa_ != NULL && check_sb_ != NULL && strcmp(check_sa_, check_sb_) == 0) {         \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s == \"%s\" (got \"%s\")\n", __FILE__,          \
                    __LINE__, #a, check_sb_ ? check_sb_ : "(null)",                                \
                    check_sa_ ? check_sa_ : "(null)");                                             \
        }                                                                                          \
    } while (0)

/* Load `text` expecting failure with exactly `want`; the struct must come back zeroed. */
static void expect_err(int line, const char *text, const char *want)
{
    struct cfg c;
    memset(&c, 0x5a, sizeof(c));
    int rc = cfg_load_string("t.json", text, &c, err, sizeof(err));
    if (rc != -1 || strcmp(err, want) != 0) {
        check_failed++;
        fprintf(stderr, "%s:%d: expected error \"%s\", got rc=%d \"%s\"\n", __FILE__, line, want,
                rc, err);
        if (rc == 0) {
            cfg_release(&c);
        }
        return;
    }
    check_passed++;
    static const struct cfg zero;
    CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
}
#define EXPECT_ERR(text, want) expect_err(__LINE__, text, want)

/* Load `text` expecting success. */
static int load_ok(const char *text, struct cfg *c)
{
    if (cfg_load_string("t.json", text, c, err, sizeof(err)) != 0) {
        fprintf(stderr, "unexpected error: %s\n", err);
        return -1;
    }
    return 0;
}

static void test_defaults(void)
{
    struct cfg c;
    CHECK_EQ_INT(cfg_defaults(&c), 0);
    CHECK_STR(c.listen, "127.0.0.1:12345");
    CHECK(c.unix_socket == NULL);
    CHECK_EQ_INT(c.max_frame_size, 16380);
    CHECK_EQ_INT(c.max_connections, 4096);
    CHECK_EQ_INT(c.idle_timeout_ms, 60000);
    CHECK_EQ_INT(c.log_level, LOG_LVL_INFO);
    char host[256] = "";
    CHECK_EQ_INT(gethostname(host, sizeof(host)), 0);
    CHECK_STR(c.instance, host);
    CHECK_STR(c.redis_host, "127.0.0.1");
    CHECK_EQ_INT(c.redis_port, 6379);
    CHECK(c.redis_unix == NULL);
    CHECK(c.redis_user == NULL);
    CHECK(c.redis_password == NULL);
    CHECK_EQ_INT(c.redis_db, 0);
    CHECK_STR(c.redis_prefix, "sticky:");
    CHECK_EQ_INT(c.redis_timeout_ms, 20);
    CHECK_EQ_INT(c.redis_connect_timeout_ms, 1000);
    CHECK_EQ_INT(c.redis_reconnect_min_ms, 100);
    CHECK_EQ_INT(c.redis_reconnect_max_ms, 5000);
    CHECK_EQ_INT(c.session_ttl_ms, 24LL * 3600 * 1000);
    CHECK(c.secret_file == NULL);
    CHECK(c.previous_secret_file == NULL);
    CHECK(c.haproxy_socket == NULL);
    CHECK_EQ_INT(c.haproxy_refresh_ms, 1000);
    CHECK_EQ_INT(c.resync_ms, 5000);
    CHECK_EQ_INT(c.heartbeat_ttl_ms, 15000);
    CHECK(c.syslog_udp == NULL);
    CHECK(c.syslog_tcp == NULL);
    CHECK_STR(c.events_channel, "sticky:events");
    CHECK_EQ_INT(c.nbackends, 0);
    cfg_release(&c);
    static const struct cfg zero;
    CHECK(memcmp(&c, &zero, sizeof(c)) == 0);

    /* an empty object is the defaults */
    CHECK_EQ_INT(load_ok("{}", &c), 0);
    CHECK_STR(c.listen, "127.0.0.1:12345");
    CHECK_STR(c.events_channel, "sticky:events");
    cfg_release(&c);
}

static const char full[] =
    "{\n"
    "  \"listen\": \"0.0.0.0:9000\",\n"
    "  \"unix_socket\": \"/run/stickyd.sock\",\n"
    "  \"max_frame_size\": 65536,\n"
    "  \"max_connections\": 100,\n"
    "  \"idle_timeout\": 30000,\n"
    "  \"log_level\": \"debug\",\n"
    "  \"instance\": \"lb-1\",\n"
    "  \"redis\": {\"host\": \"::1\", \"port\": 6380, \"unix\": null, \"user\": \"sticky\",\n"
    "            \"password\": \"s3cret\", \"db\": 3, \"prefix\": \"app:\",\n"
    "            \"timeout\": \"15ms\",\n"
    "            \"connect_timeout\": \"2s\", \"reconnect_min\": 50, \"reconnect_max\": \"1m\"},\n"
    "  \"session\": {\"ttl\": \"7d\", \"secret_file\": \"/etc/stickyd/key\",\n"
    "              \"previous_secret_file\": \"/etc/stickyd/key.old\"},\n"
    "  \"haproxy\": {\"stats_socket\": \"unix:/run/haproxy.sock\", \"refresh\": \"500ms\",\n"
    "              \"resync\": \"10s\", \"heartbeat_ttl\": \"30s\"},\n"
    "  \"syslog\": {\"udp\": \"127.0.0.1:5514\", \"tcp\": \"[::1]:5515\"},\n"
    "  \"events\": {},\n"
    "  \"backends\": {\n"
    "    \"ws\": {\"servers\": {\"s1\": {\"weight\": 10}, \"s2\": {}, \"s0\": {\"weight\": 0}}},\n"
    "    \"api.v2\": {\"servers\": {\"a:1\": {\"weight\": 256}}}\n"
    "  }\n"
    "}\n";

static void test_full(void)
{
    struct cfg c;
    if (load_ok(full, &c) < 0) {
        CHECK(!"full file loads");
        return;
    }
    CHECK_STR(c.listen, "0.0.0.0:9000");
    CHECK_STR(c.unix_socket, "/run/stickyd.sock");
    CHECK_EQ_INT(c.max_frame_size, 65536);
    CHECK_EQ_INT(c.max_connections, 100);
    CHECK_EQ_INT(c.idle_timeout_ms, 30000);
    CHECK_EQ_INT(c.log_level, LOG_LVL_DEBUG);
    CHECK_STR(c.instance, "lb-1");
    CHECK_STR(c.redis_host, "::1");
    CHECK_EQ_INT(c.redis_port, 6380);
    CHECK(c.redis_unix == NULL);
    CHECK_STR(c.redis_user, "sticky");
    CHECK_EQ_INT(c.redis_db, 3);
    CHECK_STR(c.redis_prefix, "app:");
    CHECK_EQ_INT(c.redis_timeout_ms, 15);
    CHECK_EQ_INT(c.redis_connect_timeout_ms, 2000);
    CHECK_EQ_INT(c.redis_reconnect_min_ms, 50);
    CHECK_EQ_INT(c.redis_reconnect_max_ms, 60000);
    CHECK_EQ_INT(c.session_ttl_ms, 7LL * 86400 * 1000);
    CHECK_STR(c.secret_file, "/etc/stickyd/key");
    CHECK_STR(c.previous_secret_file, "/etc/stickyd/key.old");
    CHECK_STR(c.haproxy_socket, "unix:/run/haproxy.sock");
    CHECK_EQ_INT(c.haproxy_refresh_ms, 500);
    CHECK_EQ_INT(c.resync_ms, 10000);
    CHECK_EQ_INT(c.heartbeat_ttl_ms, 30000);
    CHECK_STR(c.syslog_udp, "127.0.0.1:5514");
    CHECK_STR(c.syslog_tcp, "[::1]:5515");
    /* the channel follows the prefix the file sets */
    CHECK_STR(c.events_channel, "app:events");

    /* backends and servers keep the file's order */
    CHECK_EQ_INT(c.nbackends, 2);
    const struct cfg_backend *ws = cfg_backend_find(&c, "wsX", 2);
    CHECK(ws != NULL && ws == &c.backends[0]);
    if (ws != NULL) {
        CHECK_EQ_INT(ws->nservers, 3);
        CHECK_STR(ws->servers[0].name, "s1");
        CHECK_EQ_INT(ws->servers[0].weight, 10);
        CHECK_STR(ws->servers[1].name, "s2");
        CHECK_EQ_INT(ws->servers[1].weight, 1); /* default weight */
        CHECK_STR(ws->servers[2].name, "s0");
        CHECK_EQ_INT(ws->servers[2].weight, 0);
    }
    const struct cfg_backend *api = cfg_backend_find(&c, "api.v2", 6);
    CHECK(api != NULL && api == &c.backends[1]);
    if (api != NULL) {
        CHECK_EQ_INT(api->nservers, 1);
        CHECK_STR(api->servers[0].name, "a:1");
        CHECK_EQ_INT(api->servers[0].weight, 256);
    }
    CHECK(cfg_backend_find(&c, "w", 1) == NULL);
    CHECK(cfg_backend_find(&c, "ws", 3) == NULL); /* "ws\0" is not "ws" */
    CHECK(cfg_backend_find(&c, "api", 3) == NULL);
    cfg_release(&c);

    /* null and "" both disable; an explicit channel is kept; escapes in keys */
    CHECK_EQ_INT(load_ok("{\"listen\": \"\", \"unix_socket\": \"/tmp/s.sock\", "
                         "\"syslog\": {\"udp\": \"\"}, \"events\": {\"channel\": \"ev\"}, "
                         "\"log_l\\u0065vel\": \"warn\", \"redis\": {\"unix\": \"/tmp/r.sock\", "
                         "\"host\": \"localhost\"}}",
                         &c),
                 0);
    CHECK(c.listen == NULL);
    CHECK(c.syslog_udp == NULL);
    CHECK_STR(c.events_channel, "ev");
    CHECK_EQ_INT(c.log_level, LOG_LVL_WARN);
    CHECK_STR(c.redis_unix, "/tmp/r.sock");
    cfg_release(&c);
}

static void test_errors(void)
{
    /* syntax errors: jansson's message and position (the token's last character) */
    EXPECT_ERR("{\"listen\": \"127.0.0.1:1\",}", "t.json:1:26: string or '}' expected near '}'");
    EXPECT_ERR("{\n  \"a\": 1\n  \"b\": 2\n}", "t.json:3:5: '}' expected near '\"b\"'");
    EXPECT_ERR("", "t.json:1:0: '[' or '{' expected near end of file");
    EXPECT_ERR("{\"max_connections\": 99999999999999999999}",
               "t.json:1:40: too big integer near '99999999999999999999'");
    /* duplicate keys, at any depth */
    EXPECT_ERR("{\"listen\": \"127.0.0.1:1\",\n \"listen\": \"127.0.0.1:2\"}",
               "t.json:2:9: duplicate object key near '\"listen\"'");
    EXPECT_ERR("{\"redis\": {\"port\": 1,\n           \"port\": 2}}",
               "t.json:2:17: duplicate object key near '\"port\"'");
    /* the top level must be an object */
    EXPECT_ERR("\n  [1, 2]", "t.json:2:3: the top level must be an object, got an array");

    /* unknown keys point at the key */
    EXPECT_ERR("{\n  \"listen\": \"127.0.0.1:1\",\n  \"lisen\": 1\n}",
               "t.json:3:3: unknown key \"lisen\" (did you mean \"listen\"?)");
    EXPECT_ERR("{\"redis\": {\n    \"host\": \"127.0.0.1\",\n\t\"tmeout\": 5}}",
               "t.json:3:2: unknown key \"redis.tmeout\" (did you mean \"timeout\"?)");
    EXPECT_ERR("{\"sesion\": {}}",
               "t.json:1:2: unknown key \"sesion\" (did you mean \"session\"?)");
    EXPECT_ERR("{\"redis\": {\"prot\": 1}}",
               "t.json:1:12: unknown key \"redis.prot\" (did you mean \"port\"?)");
    /* suggestions come from the same section only */
    EXPECT_ERR("{\"timeout\": 1}", "t.json:1:2: unknown key \"timeout\"");
    EXPECT_ERR("{\"syslog\": {\"ttl\": 1}}", "t.json:1:13: unknown key \"syslog.ttl\"");
    /* columns count characters, not bytes, as jansson does */
    EXPECT_ERR("{\"redis\": {\"password\": \"é\", \"x\": 1}}",
               "t.json:1:29: unknown key \"redis.x\"");
    /* a key spelled with an escape is found by its decoded name */
    EXPECT_ERR("{\"redis\": {\"port\": 1},\n \"sessio\\u006e\": {\"ttl\": 5}}",
               "t.json:2:26: session.ttl: 5ms is out of range 1s..365d");
    /* ... which jansson also uses to find duplicates */
    EXPECT_ERR("{\"session\": {},\n \"sessio\\u006e\": {}}",
               "t.json:2:15: duplicate object key near '\"sessio\\u006e\"'");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s1\": {\"wieght\": 2}}}}}",
               "t.json:1:41: unknown key \"backends.ws.servers.s1.wieght\" (did you mean "
               "\"weight\"?)");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"server\": {}}}}",
               "t.json:1:22: unknown key \"backends.ws.server\" (did you mean \"servers\"?)");

    /* wrong types point at the value */
    EXPECT_ERR("{\"redis\": {\"port\": \"6379\"}}",
               "t.json:1:20: redis.port: expected an integer, got a string");
    EXPECT_ERR("{\"redis\": 5}", "t.json:1:11: redis: expected an object, got an integer");
    EXPECT_ERR("{\"listen\": 12345}",
               "t.json:1:12: listen: expected a string or null, got an integer");
    EXPECT_ERR("{\"redis\": {\"prefix\": null}}",
               "t.json:1:22: redis.prefix: expected a string, got null");
    EXPECT_ERR("{\"max_frame_size\": 1.5}",
               "t.json:1:20: max_frame_size: expected an integer, got a real number");
    EXPECT_ERR("{\"idle_timeout\": true}",
               "t.json:1:18: idle_timeout: expected a duration (integer milliseconds or a string "
               "such as \"5s\"), got true");
    EXPECT_ERR("{\"log_level\": \"verbose\"}",
               "t.json:1:15: log_level: \"verbose\" is not one of error, warn, info, debug");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s1\": 3}}}}",
               "t.json:1:40: backends.ws.servers.s1: expected an object such as "
               "{\"weight\": 1}, got an integer");

    /* out of range */
    EXPECT_ERR("{\"max_frame_size\": 255}",
               "t.json:1:20: max_frame_size: 255 is out of range 256..16777216");
    EXPECT_ERR("{\"max_frame_size\": 16777217}",
               "t.json:1:20: max_frame_size: 16777217 is out of range 256..16777216");
    EXPECT_ERR("{\n  \"redis\": {\n    \"port\": 0\n  }\n}",
               "t.json:3:13: redis.port: 0 is out of range 1..65535");
    EXPECT_ERR("{\"redis\": {\"timeout\": 0}}",
               "t.json:1:23: redis.timeout: 0ms is out of range 1ms..1m");
    EXPECT_ERR("{\"session\": {\"ttl\": \"400d\"}}",
               "t.json:1:21: session.ttl: 400d is out of range 1s..365d");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s1\": {\"weight\": 257}}}}}",
               "t.json:1:51: backends.ws.servers.s1.weight: 257 is out of range 0..256");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s1\": {\"weight\": -1}}}}}",
               "t.json:1:51: backends.ws.servers.s1.weight: -1 is out of range 0..256");
    EXPECT_ERR("{\"unix_socket\": \"/"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
               "t.json:1:17: unix_socket: must be 1..107 bytes long, not 109");

    /* bad durations */
    EXPECT_ERR("{\"haproxy\": {\"refresh\": \"5 s\"}}",
               "t.json:1:25: haproxy.refresh: \"5 s\" is not a duration (milliseconds, or a "
               "string such as \"20ms\", \"5s\", \"10m\", \"24h\", \"7d\")");
    EXPECT_ERR("{\"haproxy\": {\"refresh\": \"1w\"}}",
               "t.json:1:25: haproxy.refresh: \"1w\" is not a duration (milliseconds, or a "
               "string such as \"20ms\", \"5s\", \"10m\", \"24h\", \"7d\")");
    EXPECT_ERR("{\"idle_timeout\": \"nan\"}",
               "t.json:1:18: idle_timeout: \"nan\" is not a duration (milliseconds, or a "
               "string such as \"20ms\", \"5s\", \"10m\", \"24h\", \"7d\")");
    EXPECT_ERR("{\"idle_timeout\": -5}",
               "t.json:1:18: idle_timeout: -5ms is out of range 100ms..7d");

    /* bad addresses */
    EXPECT_ERR("{\"listen\": \"127.0.0.1\"}", "t.json:1:12: listen: '127.0.0.1' is not ADDR:PORT");
    EXPECT_ERR("{\"syslog\": {\"udp\": \"1.2.3:514\"}}",
               "t.json:1:20: syslog.udp: '1.2.3' is not a numeric IPv4/IPv6 address");
    EXPECT_ERR("{\"syslog\": {\"tcp\": \"unix:/x\"}}",
               "t.json:1:20: syslog.tcp: 'unix:/x' must be ADDR:PORT, not a unix socket");
    EXPECT_ERR("{\"listen\": \"127.0.0.1:65536\"}",
               "t.json:1:12: listen: '65536': port must be 0..65535");
    EXPECT_ERR("{\"haproxy\": {\"stats_socket\": \"::1:9999\"}}",
               "t.json:1:30: haproxy.stats_socket: '::1:9999': IPv6 address must be written "
               "[ADDR]:PORT");
    EXPECT_ERR("{\"redis\": {\"host\": \"redis.example\"}}",
               "t.json:1:20: redis.host: 'redis.example' is not a numeric IPv4/IPv6 address or "
               "localhost (use redis.unix for a socket)");

    /* names */
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s 1\": {}}}}}",
               "t.json:1:34: backends.ws.servers.s 1: server name must be 1..63 characters of "
               "A-Z a-z 0-9 . - _ :");
    EXPECT_ERR("{\"backends\": {\"\": {\"servers\": {\"s1\": {}}}}}",
               "t.json:1:15: backends.: backend name must be 1..63 characters of A-Z a-z 0-9 . - "
               "_ :");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": {\"s1234567890123456789012345678901234567890"
               "12345678901234567890123\": {}}}}}",
               "t.json:1:34: backends.ws.servers.s12345678901234567890123456789012345678901234567"
               "8901234567890123: server name must be 1..63 characters of A-Z a-z 0-9 . - _ :");
    EXPECT_ERR("{\"backends\": {\"ws\": {}}}", "t.json:1:15: backends.ws: backend has no servers");
    /* issue 12 item 2: the syslog allow-list and the unix socket's mode */
    EXPECT_ERR("{\"syslog\": {\"allow\": \"127.0.0.1 bogus\"}}",
               "t.json:1:22: syslog.allow: 'bogus' is not ADDR or ADDR/BITS (numeric IPv4 or "
               "IPv6)");
    EXPECT_ERR("{\"syslog\": {\"unix_mode\": \"0444\"}}",
               "t.json:1:26: syslog.unix_mode: \"0444\" is not an octal file mode the owner can "
               "write (e.g. \"0660\")");
    EXPECT_ERR("{\"syslog\": {\"unix_mode\": \"0689\"}}",
               "t.json:1:26: syslog.unix_mode: \"0689\" is not an octal file mode the owner can "
               "write (e.g. \"0660\")");
    {
        struct cfg c;
        CHECK(load_ok("{\"syslog\": {\"unix_mode\": \"0620\", \"allow\": \"\"}}", &c) == 0);
        CHECK_EQ_INT(c.syslog_unix_mode, 0620);
        CHECK_STR(c.syslog_allow, "");
        cfg_release(&c);
        CHECK(load_ok("{}", &c) == 0);
        CHECK_EQ_INT(c.syslog_unix_mode, 0660);
        CHECK_STR(c.syslog_allow, "127.0.0.0/8 ::1");
        cfg_release(&c);
    }
    /* issue 12 item 6: one bound (63 bytes) for instance, backend and server
     * names, checked here instead of cut later; 63 still loads */
    {
        char text[256], name[80];
        memset(name, 'n', 64);
        name[64] = '\0';
        snprintf(text, sizeof(text), "{\"instance\": \"%s\"}", name);
        EXPECT_ERR(text, "t.json:1:14: instance: must be 1..63 bytes long, not 64");
        name[63] = '\0';
        snprintf(text, sizeof(text), "{\"instance\": \"%s\"}", name);
        struct cfg c;
        CHECK(load_ok(text, &c) == 0);
        CHECK_EQ_INT(strlen(c.instance), 63);
        cfg_release(&c);
    }
    EXPECT_ERR("{\"redis\": {\"prefix\": \"a b\"}}",
               "t.json:1:22: redis.prefix: \"a b\" must be printable ASCII without spaces");

    /* cross-checks blame a key that is in the file */
    EXPECT_ERR("{\"redis\": {\"reconnect_min\": \"10s\"}}",
               "t.json:1:29: redis.reconnect_min (10s) must not exceed redis.reconnect_max (5s)");
    EXPECT_ERR("{\"redis\": {\n \"reconnect_max\": \"50ms\"}}",
               "t.json:2:19: redis.reconnect_min (100ms) must not exceed redis.reconnect_max "
               "(50ms)");
    EXPECT_ERR("{\"listen\": null}",
               "t.json:1:12: listen: nothing to listen on: set listen or unix_socket");
}

static void test_env(void)
{
    struct cfg c;
    setenv("STICKYD_REDIS_PASSWORD", "from-env", 1);
    unsetenv("STICKYD_REDIS_USER");
    CHECK_EQ_INT(load_ok("{\"redis\": {\"user\": \"u\", \"password\": \"from-file\"}}", &c), 0);
    CHECK_STR(c.redis_password, "from-env");
    CHECK_STR(c.redis_user, "u");
    cfg_release(&c);

    setenv("STICKYD_REDIS_USER", "env-user", 1);
    CHECK_EQ_INT(load_ok("{}", &c), 0);
    CHECK_STR(c.redis_password, "from-env");
    CHECK_STR(c.redis_user, "env-user");
    cfg_release(&c);
    CHECK_EQ_INT(cfg_defaults(&c), 0);
    CHECK_STR(c.redis_password, "from-env");
    cfg_release(&c);

    /* set but empty: the file's value stands */
    setenv("STICKYD_REDIS_PASSWORD", "", 1);
    unsetenv("STICKYD_REDIS_USER");
    CHECK_EQ_INT(load_ok("{\"redis\": {\"password\": \"from-file\"}}", &c), 0);
    CHECK_STR(c.redis_password, "from-file");
    cfg_release(&c);
    unsetenv("STICKYD_REDIS_PASSWORD");
}

static void test_file(void)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return;
    }
    static const char text[] = "{\n  \"redis\": {\"port\": 6390},\n  \"bogus\": 1\n}\n";
    CHECK_EQ_INT(write(fd, text, sizeof(text) - 1), (long)sizeof(text) - 1);
    close(fd);

    struct cfg c;
    CHECK_EQ_INT(cfg_load(path, &c, err, sizeof(err)), -1);
    char want[600];
    snprintf(want, sizeof(want), "%s:3:3: unknown key \"bogus\"", path);
    CHECK_STR(err, want);

    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(full, f);
        fclose(f);
    }
    CHECK_EQ_INT(cfg_load(path, &c, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.redis_port, 6380);
    CHECK_EQ_INT(c.nbackends, 2);
    cfg_release(&c);
    unlink(path);

    CHECK_EQ_INT(cfg_load(path, &c, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    CHECK_STR(err, want);

    /* the example shipped for the demo stays valid */
    if (access("haproxy-conf/stickyd.json", R_OK) == 0) {
        CHECK_EQ_INT(cfg_load("haproxy-conf/stickyd.json", &c, err, sizeof(err)), 0);
        if (err[0] != '\0') {
            fprintf(stderr, "%s\n", err);
        }
        cfg_release(&c);
    }
}

/* redis.cluster and redis.nodes: seeds parsed and checked, impossible pairs refused */
static void test_cluster(void)
{
    struct cfg c;
    CHECK_EQ_INT(load_ok("{\"redis\": {\"cluster\": true, "
                         "\"nodes\": \"127.0.0.1:7000, [::1]:7001 10.0.0.3:7002\"}}",
                         &c),
                 0);
    CHECK(c.redis_cluster);
    CHECK(c.redis_nodes != NULL &&
          strcmp(c.redis_nodes, "127.0.0.1:7000, [::1]:7001 10.0.0.3:7002") == 0);
    cfg_release(&c);
    CHECK_EQ_INT(load_ok("{\"redis\": {\"cluster\": true}}", &c), 0);
    CHECK(c.redis_cluster && c.redis_nodes == NULL); /* host:port is the seed */
    cfg_release(&c);
    EXPECT_ERR("{\"redis\": {\"cluster\": true,\n \"db\": 2}}",
               "t.json:1:23: redis.cluster: a Redis Cluster has only db 0 and no unix socket: "
               "unset redis.db and redis.unix");
    EXPECT_ERR("{\"redis\": {\"cluster\": true, \"unix\": \"/tmp/r.sock\"}}",
               "t.json:1:23: redis.cluster: a Redis Cluster has only db 0 and no unix socket: "
               "unset redis.db and redis.unix");
    EXPECT_ERR("{\"redis\": {\"nodes\": \"127.0.0.1:7000 redis1:7001\"}}",
               "t.json:1:21: redis.nodes: 'redis1:7001' is not a numeric ADDR:PORT");
    EXPECT_ERR("{\"redis\": {\"nodes\": \"127.0.0.1\"}}",
               "t.json:1:21: redis.nodes: '127.0.0.1' is not a numeric ADDR:PORT");
    EXPECT_ERR("{\"redis\": {\"nodes\": \"127.0.0.1:0\"}}",
               "t.json:1:21: redis.nodes: '127.0.0.1:0' is not a numeric ADDR:PORT");
    EXPECT_ERR("{\"redis\": {\"nodes\": \" , \"}}", "t.json:1:21: redis.nodes: no ADDR:PORT given");
}

static void test_reference(void)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    CHECK(f != NULL);
    if (f == NULL) {
        return;
    }
    cfg_print_reference(f);
    fclose(f);
    CHECK(strstr(doc, "| `redis.timeout` | duration | `\"20ms\"` | 1ms..1m |") != NULL);
    CHECK(strstr(doc, "| `max_frame_size` | integer | `16380` | 256..16777216 |") != NULL);
    CHECK(strstr(doc, "| `haproxy.heartbeat_ttl` |") != NULL);
    CHECK(strstr(doc, "| `backends` |") != NULL);
    CHECK(strstr(doc, "| `redis.sentinels` | list of addresses \\| null | `null` | 1..16 of "
                      "`ADDR:PORT` |") != NULL);
    free(doc);
}

/* limits: per backend, "*" for the rest, per-server overrides, clear errors. */
static void test_limits(void)
{
    struct cfg c;
    struct cfg_srv_limits l;
    if (load_ok("{\"limits\": {\"*\": {\"maxconn\": 50},\n"
                "  \"be_ws\": {\"slowstart\": \"8s\", \"maxconn\": 100, \"policy\": \"balance\",\n"
                "    \"slack\": 5, \"when_full\": \"queue\", \"new_rate\": 30,\n"
                "    \"servers\": {\"ws4\": {\"slowstart\": 2000, \"maxconn\": 0}}}}}",
                &c) == 0) {
        CHECK_EQ_INT(c.nlimits, 2);
        cfg_limits_of(&c, "be_ws", "ws1", &l);
        CHECK(l.slowstart_ms == 8000 && l.maxconn == 100 && l.balance && l.queue &&
              l.slack_pct == 5 && l.new_rate == 30);
        cfg_limits_of(&c, "be_ws", "ws4", &l);
        CHECK(l.slowstart_ms == 2000 && l.maxconn == 0 && l.new_rate == 30);
        cfg_limits_of(&c, "be_ws", NULL, &l);
        CHECK(l.slowstart_ms == 8000 && l.maxconn == 100);
        cfg_limits_of(&c, "other", "x", &l); /* "*" */
        CHECK(l.slowstart_ms == 0 && l.maxconn == 50 && !l.balance && !l.queue &&
              l.slack_pct == 20 && l.new_rate == 0);
        cfg_release(&c);
    }
    if (load_ok("{}", &c) == 0) {
        cfg_limits_of(&c, "be_ws", "ws1", &l); /* nothing configured: all off */
        CHECK(l.slowstart_ms == 0 && l.maxconn == 0 && !l.balance && l.new_rate == 0);
        cfg_release(&c);
    }
    EXPECT_ERR("{\"limits\": {\"be\": {\"slowstrat\": \"1s\"}}}",
               "t.json:1:20: unknown key \"limits.be.slowstrat\" (did you mean \"slowstart\"?)");
    EXPECT_ERR("{\"limits\": {\"be\": {\"policy\": \"sticky\"}}}",
               "t.json:1:30: limits.be.policy: \"sticky\" is not one of affinity, balance");
    EXPECT_ERR("{\"limits\": {\"be\": {\"when_full\": 1}}}",
               "t.json:1:33: limits.be.when_full: expected a string, got an integer");
    EXPECT_ERR("{\"limits\": {\"be\": {\"slowstart\": \"2h\"}}}",
               "t.json:1:33: limits.be.slowstart: 2h is out of range 0..1h");
    EXPECT_ERR("{\"limits\": {\"be\": {\"maxconn\": -1}}}",
               "t.json:1:31: limits.be.maxconn: -1 is out of range 0..100000000");
    EXPECT_ERR(
        "{\"limits\": {\"b e\": {}}}",
        "t.json:1:13: limits.b e: backend name must be 1..63 characters of A-Z a-z 0-9 . - _ :");
    EXPECT_ERR("{\"limits\": {\"be\": {\"servers\": {\"s1\": {\"weight\": 1}}}}}",
               "t.json:1:39: unknown key \"limits.be.servers.s1.weight\"");
}

/* redis.sentinels and its companions: the list, every error at its value. */
static void test_sentinels(void)
{
    struct cfg c;
    if (load_ok("{\"redis\": {\"sentinels\": [\"127.0.0.1:26379\", \"[::1]:26380\", "
                "\"localhost:26381\"],\n \"master_name\": \"mymaster\", "
                "\"sentinel_user\": \"sn\", \"sentinel_password\": \"pw\"}}",
                &c) == 0) {
        CHECK_EQ_INT(c.redis_sentinels.n, 3);
        CHECK_STR(c.redis_sentinels.v[0], "127.0.0.1:26379");
        CHECK_STR(c.redis_sentinels.v[1], "[::1]:26380");
        CHECK_STR(c.redis_sentinels.v[2], "localhost:26381");
        CHECK_STR(c.redis_master_name, "mymaster");
        CHECK_STR(c.redis_sentinel_user, "sn");
        CHECK_STR(c.redis_sentinel_password, "pw");
        /* stickyctl's --sentinels replaces the list, or refuses and keeps it */
        CHECK(cfg_set_sentinels(&c, "127.0.0.1:1,127.0.0.1:2", err, sizeof(err)) == 0);
        CHECK_EQ_INT(c.redis_sentinels.n, 2);
        CHECK_STR(c.redis_sentinels.v[1], "127.0.0.1:2");
        CHECK(cfg_set_sentinels(&c, "127.0.0.1:1,,", err, sizeof(err)) == -1);
        CHECK(cfg_set_sentinels(&c, "127.0.0.1:1,db.example:26379", err, sizeof(err)) == -1);
        CHECK_STR(err, "'db.example' is not a numeric IPv4/IPv6 address");
        CHECK(cfg_set_sentinels(&c, "", err, sizeof(err)) == -1);
        CHECK_STR(err, "no Sentinel address");
        CHECK_EQ_INT(c.redis_sentinels.n, 2);
        CHECK(cfg_set_sentinels(&c, NULL, err, sizeof(err)) == 0);
        CHECK_EQ_INT(c.redis_sentinels.n, 0);
        cfg_release(&c);
    } else {
        check_failed++;
    }
    if (load_ok("{\"redis\": {\"sentinels\": null, \"master_name\": null}}", &c) == 0) {
        CHECK_EQ_INT(c.redis_sentinels.n, 0);
        CHECK(c.redis_sentinels.v == NULL);
        cfg_release(&c);
    } else {
        check_failed++;
    }
    EXPECT_ERR("{\"redis\": {\"sentinels\": \"127.0.0.1:26379\", \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels: expected an array of \"ADDR:PORT\" strings or null, "
               "got a string");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [], \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels: 0 entries; expected 1..16");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"127.0.0.1:1\", 7], \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels[1]: expected an \"ADDR:PORT\" string, got an integer");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"127.0.0.1:0\"], \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels[0]: '127.0.0.1:0': port must be 1..65535");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"unix:/tmp/s\"], \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels[0]: 'unix:/tmp/s' must be ADDR:PORT, not a unix "
               "socket");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"sentinel-1:26379\"], \"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels[0]: 'sentinel-1' is not a numeric IPv4/IPv6 address");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"127.0.0.1:1\", \"127.0.0.1:1\"], "
               "\"master_name\": \"m\"}}",
               "t.json:1:25: redis.sentinels[1]: '127.0.0.1:1' is listed twice");
    EXPECT_ERR("{\"redis\": {\n  \"sentinels\": [\"127.0.0.1:26379\"]}}",
               "t.json:2:16: redis.sentinels needs redis.master_name (the name the Sentinels "
               "monitor the master under)");
    EXPECT_ERR("{\"redis\": {\"master_name\": \"m\"}}",
               "t.json:1:27: redis.master_name is set but redis.sentinels is not");
    EXPECT_ERR("{\"redis\": {\"unix\": \"/tmp/r.sock\", \"sentinels\": [\"127.0.0.1:1\"], "
               "\"master_name\": \"m\"}}",
               "t.json:1:48: redis.sentinels and redis.unix exclude each other: the Sentinels "
               "give a TCP address");
    EXPECT_ERR("{\"redis\": {\"cluster\": true, \"sentinels\": [\"127.0.0.1:1\"], "
               "\"master_name\": \"m\"}}",
               "t.json:1:42: redis.sentinels and redis.cluster exclude each other: a Redis "
               "Cluster fails over by itself");
    EXPECT_ERR("{\"redis\": {\"sentinels\": [\"127.0.0.1:1\"], \"master_name\": \"my master\"}}",
               "t.json:1:57: redis.master_name: \"my master\" must be printable ASCII without "
               "spaces");
}

/* The four objects of named entries (backends, limits, and the servers of each)
 * share one walk: each refuses another type with its own wording, and a failure in
 * a later entry frees the entries before it (ASan under make sanitize). */
static void test_entries(void)
{
    EXPECT_ERR("{\"backends\": 5}",
               "t.json:1:14: backends: expected an object of backends, got an integer");
    EXPECT_ERR("{\"backends\": {\"ws\": {\"servers\": [1]}}}",
               "t.json:1:33: backends.ws.servers: expected an object of servers, got an array");
    EXPECT_ERR("{\"limits\": \"x\"}",
               "t.json:1:12: limits: expected an object of backends, got a string");
    EXPECT_ERR("{\"limits\": {\"ws\": {\"servers\": 3}}}",
               "t.json:1:31: limits.ws.servers: expected an object of servers, got an integer");
    EXPECT_ERR("{\"backends\": {\"a\": {\"servers\": {\"s\": {}}}, \"b\": 1}}",
               "t.json:1:49: backends.b: expected an object such as {\"servers\": {...}}, got an "
               "integer");
    EXPECT_ERR("{\"limits\": {\"ws\": {\"servers\": {\"s1\": {\"maxconn\": 1}, \"s2\": {\"bogus\": "
               "1}}}}}",
               "t.json:1:61: unknown key \"limits.ws.servers.s2.bogus\"");

    /* empty objects: no entries, no arrays */
    struct cfg c;
    CHECK(load_ok("{\"backends\": {}, \"limits\": {}}", &c) == 0);
    CHECK(c.nbackends == 0 && c.backends == NULL && c.nlimits == 0 && c.limits == NULL);
    cfg_release(&c);

    /* entries in file order, each with its servers */
    CHECK(load_ok("{\"backends\": {\"b2\": {\"servers\": {\"x\": {}, \"y\": {\"weight\": 3}}},"
                  " \"b1\": {\"servers\": {\"z\": {}}}},"
                  " \"limits\": {\"b1\": {\"servers\": {\"z\": {\"maxconn\": 7}}}, \"*\": {}}}",
                  &c) == 0);
    CHECK(c.nbackends == 2 && strcmp(c.backends[0].name, "b2") == 0 &&
          strcmp(c.backends[1].name, "b1") == 0);
    CHECK(c.backends[0].nservers == 2 && strcmp(c.backends[0].servers[1].name, "y") == 0 &&
          c.backends[0].servers[1].weight == 3 && c.backends[0].servers[0].weight == 1);
    CHECK(c.nlimits == 2 && strcmp(c.limits[0].backend, "b1") == 0 &&
          strcmp(c.limits[1].backend, "*") == 0);
    CHECK(c.limits[0].nservers == 1 && c.limits[0].servers[0].maxconn == 7 &&
          c.limits[1].nservers == 0 && c.limits[1].servers == NULL);
    cfg_release(&c);
}

int main(void)
{
    unsetenv("STICKYD_REDIS_USER");
    unsetenv("STICKYD_REDIS_PASSWORD");
    unsetenv("STICKYD_REDIS_SENTINEL_USER");
    unsetenv("STICKYD_REDIS_SENTINEL_PASSWORD");
    test_sentinels();
    test_defaults();
    test_full();
    test_errors();
    test_env();
    test_cluster();
    test_file();
    test_reference();
    test_limits();
    test_entries();
    return check_summary("test_config");
}
