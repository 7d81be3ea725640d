/* test_store.c - the store against real redis-server processes on loopback.
 *
 * Starts its own redis-server instances (free ports, temp dir), drives the store
 * on one libev loop and checks round trips, pipelining, EVALSHA/NOSCRIPT,
 * deadlines, kill/restart, hung-server detection, AUTH, SELECT, pub/sub and
 * store_free with requests in flight. Every redis-server is killed on exit.
 */
#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "check.h"
#include "config.h"
#include "stats.h"
#include "store.h"

#define MAX_CHILDREN 8

static pid_t children[MAX_CHILDREN];
static char tmpdir[] = "/tmp/stickyd-test-store-XXXXXX";
static bool tmpdir_made;
static struct ev_loop *loop;

/* ---- process management ------------------------------------------------ */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void kill_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGCONT);
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void cleanup(void)
{
    kill_children();
    if (tmpdir_made) {
        nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
        tmpdir_made = false;
    }
}

static void on_fatal_signal(int sig)
{
    /* Not async-signal-perfect (nftw), but this is a test driver's last gasp:
     * no redis-server and no temp dir may outlive it. */
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint16_t free_port(void)
{
    int port = itest_free_port(SOCK_STREAM);
    if (port < 0) {
        perror("free_port");
        exit(2);
    }
    return (uint16_t)port;
}

/* A raw PING: any RESP reply ('+PONG' or '-NOAUTH') means the server is up. */
static bool redis_answers(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = false;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        struct timeval tv = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char b[64];
        if (write(fd, "PING\r\n", 6) == 6 && read(fd, b, sizeof(b)) > 0) {
            ok = b[0] == '+' || b[0] == '-';
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Start redis-server on port, with an optional password and unix socket path;
 * returns the child slot. */
static int redis_start_ex(uint16_t port, const char *requirepass, const char *unixsocket)
{
    int slot = -1;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            slot = i;
            break;
        }
    }
    if (slot < 0) {
        fprintf(stderr, "too many children\n");
        exit(2);
    }
    char portbuf[16], logbuf[600], dirbuf[256];
    snprintf(portbuf, sizeof(portbuf), "%u", port);
    snprintf(dirbuf, sizeof(dirbuf), "%s/r%u", tmpdir, port);
    snprintf(logbuf, sizeof(logbuf), "%s/redis.log", dirbuf);
    (void)mkdir(dirbuf, 0700);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        const char *argv[20] = {"/usr/bin/redis-server", "--port", portbuf, "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                dirbuf, "--logfile", logbuf, "--daemonize", "no", "--enable-debug-command", "local"};
        int n = 17;
        if (requirepass != NULL) {
            argv[n++] = "--requirepass";
            argv[n++] = requirepass;
        }
        if (unixsocket != NULL) {
            argv[n++] = "--unixsocket";
            argv[n++] = unixsocket;
        }
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    children[slot] = pid;
    for (int i = 0; i < 500; i++) {
        if (redis_answers(port)) {
            return slot;
        }
        usleep(10000);
    }
    fprintf(stderr, "redis-server on %u did not start\n", port);
    exit(2);
}

static int redis_start(uint16_t port, const char *requirepass)
{
    return redis_start_ex(port, requirepass, NULL);
}

static void redis_kill(int slot)
{
    kill(children[slot], SIGKILL);
    waitpid(children[slot], NULL, 0);
    children[slot] = 0;
}

/* ---- loop helpers ------------------------------------------------------------ */

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Run the loop until *flag becomes true or ms pass; returns *flag. */
static bool run_until(const bool *flag, int ms)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    ev_now_update(loop);
    ev_tstamp end = ev_now(loop) + ms / 1000.0;
    while (!*flag && ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &tick);
    return *flag;
}

static void run_for(int ms)
{
    bool never = false;
    run_until(&never, ms);
}

static bool wait_connected(struct store *s, bool want, int ms)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    ev_now_update(loop);
    ev_tstamp end = ev_now(loop) + ms / 1000.0;
    while (store_connected(s) != want && ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &tick);
    return store_connected(s) == want;
}

/* ---- a request's outcome --------------------------------------------------------- */

struct outcome {
    int calls;
    enum store_result res;
    enum store_rtype type;
    long long ival;
    char str[256];
    size_t len;
    size_t elems;
    bool done;
    ev_tstamp at;
};

static void on_outcome(const struct store_reply *r, enum store_result res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->res = res;
    o->done = true;
    o->at = ev_time();
    if (r != NULL) {
        o->type = store_reply_type(r);
        o->ival = store_reply_int(r);
        o->elems = store_reply_len(r);
        size_t len = 0;
        const char *s = store_reply_str(r, &len);
        if (s != NULL) {
            o->len = len;
            memcpy(o->str, s, len < sizeof(o->str) - 1 ? len : sizeof(o->str) - 1);
            o->str[len < sizeof(o->str) - 1 ? len : sizeof(o->str) - 1] = '\0';
        }
    }
}

/* Run one command to completion; returns the store_command result. */
static int cmd(struct store *s, struct outcome *o, int64_t tmo, int argc, const char **argv)
{
    memset(o, 0, sizeof(*o));
    int rc = store_command(s, argc, argv, NULL, tmo, on_outcome, o);
    if (rc == 0) {
        run_until(&o->done, 5000);
    }
    return rc;
}

#define CMD(s, o, ...)                                                                             \
    cmd((s), (o), 2000, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),       \
        (const char *[]){__VA_ARGS__})

static void fill_cfg(struct cfg *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->redis_host = (char *)"127.0.0.1";
    c->redis_port = port;
    c->redis_timeout_ms = 20;
    c->redis_connect_timeout_ms = 1000;
    c->redis_reconnect_min_ms = 50;
    c->redis_reconnect_max_ms = 400;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_roundtrip(struct store *s)
{
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "SET", "k1", "hello"), 0);
    CHECK_EQ_INT(o.calls, 1);
    CHECK_EQ_INT(o.res, STORE_OK);
    CHECK_EQ_INT(o.type, STORE_R_STATUS);
    CHECK(strcmp(o.str, "OK") == 0);
    CHECK_EQ_INT(CMD(s, &o, "GET", "k1"), 0);
    CHECK_EQ_INT(o.type, STORE_R_STR);
    CHECK(strcmp(o.str, "hello") == 0);
    CHECK_EQ_INT(CMD(s, &o, "GET", "missing"), 0);
    CHECK_EQ_INT(o.type, STORE_R_NIL);
    CHECK_EQ_INT(CMD(s, &o, "NOSUCHCOMMAND"), 0);
    CHECK_EQ_INT(o.res, STORE_OK);
    CHECK_EQ_INT(o.type, STORE_R_ERR);
    CHECK_EQ_INT(CMD(s, &o, "RPUSH", "l1", "a", "b"), 0);
    CHECK_EQ_INT(o.ival, 2);
    CHECK_EQ_INT(CMD(s, &o, "LRANGE", "l1", "0", "-1"), 0);
    CHECK_EQ_INT(o.type, STORE_R_ARRAY);
    CHECK_EQ_INT(o.elems, 2);
    /* Binary-safe arguments through argvlen. */
    const char *argv[3] = {"SET", "bin", "a\0b"};
    size_t lens[3] = {3, 3, 3};
    memset(&o, 0, sizeof(o));
    CHECK_EQ_INT(store_command(s, 3, argv, lens, 2000, on_outcome, &o), 0);
    run_until(&o.done, 5000);
    CHECK_EQ_INT(CMD(s, &o, "STRLEN", "bin"), 0);
    CHECK_EQ_INT(o.ival, 3);
}

#define NPIPE 1000
static struct outcome pipe_o[NPIPE];

static void test_pipeline(struct store *s)
{
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "DEL", "ctr"), 0);
    memset(pipe_o, 0, sizeof(pipe_o));
    const char *argv[2] = {"INCR", "ctr"};
    int queued = 0;
    for (int i = 0; i < NPIPE; i++) {
        queued += store_command(s, 2, argv, NULL, 5000, on_outcome, &pipe_o[i]) == 0;
    }
    CHECK_EQ_INT(queued, NPIPE);
    run_until(&pipe_o[NPIPE - 1].done, 10000);
    run_for(20);
    int once = 0, ordered = 0;
    for (int i = 0; i < NPIPE; i++) {
        once += pipe_o[i].calls == 1 && pipe_o[i].res == STORE_OK;
        ordered += pipe_o[i].ival == i + 1;
    }
    CHECK_EQ_INT(once, NPIPE);
    CHECK_EQ_INT(ordered, NPIPE);
}

static int eval(struct store *s, struct store_script *sc, struct outcome *o, const char *key,
                const char *arg)
{
    memset(o, 0, sizeof(*o));
    const char *argv[2] = {key, arg};
    int rc = store_eval(s, sc, 1, 2, argv, NULL, 2000, on_outcome, o);
    if (rc == 0) {
        run_until(&o->done, 5000);
    }
    return rc;
}

static void test_script(struct store *s, struct store_script *sc)
{
    struct outcome o;
    CHECK(strlen(store_script_sha(sc)) == 40);
    CHECK_EQ_INT(CMD(s, &o, "DEL", "sk"), 0);
    CHECK_EQ_INT(eval(s, sc, &o, "sk", "5"), 0);
    CHECK_EQ_INT(o.calls, 1);
    CHECK_EQ_INT(o.type, STORE_R_INT);
    CHECK_EQ_INT(o.ival, 5);
    /* The server forgets every script: the store reloads and retries once. */
    CHECK_EQ_INT(CMD(s, &o, "SCRIPT", "FLUSH"), 0);
    CHECK_EQ_INT(CMD(s, &o, "SCRIPT", "EXISTS", store_script_sha(sc)), 0);
    CHECK_EQ_INT(o.elems, 1);
    CHECK_EQ_INT(eval(s, sc, &o, "sk", "2"), 0);
    run_for(30);
    CHECK_EQ_INT(o.calls, 1);
    CHECK_EQ_INT(o.res, STORE_OK);
    CHECK_EQ_INT(o.type, STORE_R_INT);
    CHECK_EQ_INT(o.ival, 7);
    /* An error raised by the script is an error reply, delivered once. */
    CHECK_EQ_INT(eval(s, sc, &o, "sk", "notanumber"), 0);
    CHECK_EQ_INT(o.calls, 1);
    CHECK_EQ_INT(o.type, STORE_R_ERR);
}

static void test_deadline(struct store *s)
{
    struct outcome sleep_o, fast_o, after;
    uint64_t timeouts0 = stats.redis_timeouts;
    memset(&sleep_o, 0, sizeof(sleep_o));
    memset(&fast_o, 0, sizeof(fast_o));
    const char *sl[3] = {"DEBUG", "SLEEP", "0.2"};
    const char *get[2] = {"GET", "k1"};
    CHECK_EQ_INT(store_command(s, 3, sl, NULL, 3000, on_outcome, &sleep_o), 0);
    ev_tstamp t0 = ev_time();
    CHECK_EQ_INT(store_command(s, 2, get, NULL, 20, on_outcome, &fast_o), 0);
    run_until(&fast_o.done, 3000);
    CHECK_EQ_INT(fast_o.calls, 1);
    CHECK_EQ_INT(fast_o.res, STORE_TIMEOUT);
    /* Ordering, not timing: the deadline fired while the server still slept. */
    CHECK(!sleep_o.done);
    printf("deadline: STORE_TIMEOUT after %.1f ms (deadline 20 ms)\n", (fast_o.at - t0) * 1000);
    run_until(&sleep_o.done, 3000);
    run_for(50); /* the late GET reply arrives now and must be swallowed */
    CHECK_EQ_INT(sleep_o.calls, 1);
    CHECK_EQ_INT(sleep_o.res, STORE_OK);
    CHECK_EQ_INT(fast_o.calls, 1);
    CHECK_EQ_INT(stats.redis_timeouts - timeouts0, 1);
    /* One slow reply is not a reason to reconnect. */
    CHECK(store_connected(s));
    CHECK_EQ_INT(CMD(s, &after, "GET", "k1"), 0);
    CHECK_EQ_INT(after.res, STORE_OK);
    CHECK(strcmp(after.str, "hello") == 0);
}

/* A SIGSTOPped server: requests time out, then the watchdog drops the
 * connection; after SIGCONT the store reconnects by itself. */
static void test_hung(struct store *s, int slot)
{
    struct outcome o[5];
    memset(o, 0, sizeof(o));
    uint64_t rec0 = stats.redis_reconnects;
    kill(children[slot], SIGSTOP);
    const char *get[2] = {"GET", "k1"};
    int sent = 0;
    for (int i = 0; i < 5; i++) {
        sent += store_command(s, 2, get, NULL, 20, on_outcome, &o[i]) == 0;
    }
    CHECK_EQ_INT(sent, 5);
    run_until(&o[4].done, 2000);
    int timeouts = 0;
    for (int i = 0; i < 5; i++) {
        timeouts += o[i].res == STORE_TIMEOUT && o[i].calls == 1;
    }
    CHECK_EQ_INT(timeouts, 5);
    CHECK(wait_connected(s, false, 5000));
    kill(children[slot], SIGCONT);
    CHECK(wait_connected(s, true, 5000));
    CHECK(stats.redis_reconnects > rec0);
    struct outcome a;
    CHECK_EQ_INT(CMD(s, &a, "GET", "k1"), 0);
    CHECK(strcmp(a.str, "hello") == 0);
    int once = 0;
    for (int i = 0; i < 5; i++) {
        once += o[i].calls == 1;
    }
    CHECK_EQ_INT(once, 5);
}

static struct {
    int count;
    char channel[64];
    uint8_t msg[64];
    size_t len;
} got;

static void on_msg(const char *channel, const uint8_t *msg, size_t len, void *arg)
{
    bool *flag = arg;
    got.count++;
    snprintf(got.channel, sizeof(got.channel), "%s", channel);
    got.len = len < sizeof(got.msg) ? len : sizeof(got.msg);
    memcpy(got.msg, msg, got.len);
    *flag = true;
}

/* PUBLISH until the subscriber got it (the subscription is asynchronous). */
static bool publish_until_received(struct store *s, bool *flag)
{
    const char *argv[3] = {"PUBLISH", "chan1", "m\0sg"};
    size_t lens[3] = {7, 5, 4};
    for (int i = 0; i < 200 && !*flag; i++) {
        struct outcome o;
        memset(&o, 0, sizeof(o));
        if (store_command(s, 3, argv, lens, 1000, on_outcome, &o) == 0) {
            run_until(&o.done, 2000);
        }
        run_for(20);
    }
    return *flag;
}

static void test_kill_restart_sub(struct store *s, struct store_script *sc, int *slot,
                                  uint16_t port)
{
    bool received = false;
    CHECK_EQ_INT(store_subscribe(s, "chan1", on_msg, &received), 0);
    CHECK(publish_until_received(s, &received));
    CHECK(strcmp(got.channel, "chan1") == 0);
    CHECK_EQ_INT(got.len, 4);
    CHECK(memcmp(got.msg, "m\0sg", 4) == 0);

    /* Pending requests when the server dies get STORE_DOWN, once. */
    struct outcome sleep_o, p[3];
    memset(&sleep_o, 0, sizeof(sleep_o));
    memset(p, 0, sizeof(p));
    const char *sl[3] = {"DEBUG", "SLEEP", "2"};
    const char *get[2] = {"GET", "k1"};
    CHECK_EQ_INT(store_command(s, 3, sl, NULL, 5000, on_outcome, &sleep_o), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(store_command(s, 2, get, NULL, 5000, on_outcome, &p[i]), 0);
    }
    run_for(30); /* let the pipeline reach the (now sleeping) server */
    redis_kill(*slot);
    run_until(&p[2].done, 3000);
    CHECK_EQ_INT(sleep_o.calls, 1);
    CHECK_EQ_INT(sleep_o.res, STORE_DOWN);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(p[i].calls, 1);
        CHECK_EQ_INT(p[i].res, STORE_DOWN);
    }
    CHECK(!store_connected(s));
    struct outcome n;
    memset(&n, 0, sizeof(n));
    CHECK_EQ_INT(store_command(s, 2, get, NULL, 1000, on_outcome, &n), -1);
    const char *ev[1] = {"x"};
    CHECK_EQ_INT(store_eval(s, sc, 1, 1, ev, NULL, 1000, on_outcome, &n), -1);
    run_for(300); /* a few failed reconnect attempts */
    CHECK_EQ_INT(n.calls, 0);
    CHECK(!store_connected(s));
    CHECK(store_last_error(s)[0] != '\0');
    printf("while down: last error \"%s\"\n", store_last_error(s));

    /* Same port again: the store reconnects and resubscribes on its own. */
    *slot = redis_start(port, NULL);
    CHECK(wait_connected(s, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "SET", "k1", "again"), 0);
    CHECK_EQ_INT(o.res, STORE_OK);
    /* Scripts are loaded on connect, before "connected". */
    CHECK_EQ_INT(CMD(s, &o, "SCRIPT", "EXISTS", store_script_sha(sc)), 0);
    CHECK_EQ_INT(o.elems, 1);
    CHECK_EQ_INT(eval(s, sc, &o, "sk2", "3"), 0);
    CHECK_EQ_INT(o.ival, 3);
    received = false;
    got.count = 0;
    CHECK(publish_until_received(s, &received));
    CHECK_EQ_INT(got.len, 4);
}

static void test_select(uint16_t port)
{
    struct cfg c0, c3;
    fill_cfg(&c0, port);
    fill_cfg(&c3, port);
    c3.redis_db = 3;
    struct store *s0 = store_new(loop, &c0), *s3 = store_new(loop, &c3);
    CHECK(wait_connected(s0, true, 5000));
    CHECK(wait_connected(s3, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(s3, &o, "SET", "dbkey", "three"), 0);
    CHECK_EQ_INT(CMD(s0, &o, "EXISTS", "dbkey"), 0);
    CHECK_EQ_INT(o.ival, 0);
    CHECK_EQ_INT(CMD(s3, &o, "GET", "dbkey"), 0);
    CHECK(strcmp(o.str, "three") == 0);
    /* A reload that changes the db reconnects with the new settings. */
    store_reconfigure(s0, &c3);
    CHECK(!store_connected(s0));
    CHECK(wait_connected(s0, true, 5000));
    CHECK_EQ_INT(CMD(s0, &o, "GET", "dbkey"), 0);
    CHECK(strcmp(o.str, "three") == 0);
    store_free(s0);
    /* main's pattern: one struct cfg overwritten in place by a reload. */
    struct cfg live = c0;
    struct store *s1 = store_new(loop, &live);
    CHECK(wait_connected(s1, true, 5000));
    store_reconfigure(s1, &live); /* nothing changed: no reconnect */
    CHECK(store_connected(s1));
    live = c3;
    store_reconfigure(s1, &live);
    CHECK(!store_connected(s1));
    CHECK(wait_connected(s1, true, 5000));
    CHECK_EQ_INT(CMD(s1, &o, "GET", "dbkey"), 0);
    CHECK(strcmp(o.str, "three") == 0);
    store_free(s1);
    store_free(s3);
}

static long long connections_received(struct store *s)
{
    struct outcome o;
    if (CMD(s, &o, "INFO", "stats") != 0) {
        return -1;
    }
    /* o.str is truncated to 255 bytes; total_connections_received is near the top. */
    const char *p = strstr(o.str, "total_connections_received:");
    return p ? atoll(p + strlen("total_connections_received:")) : -1;
}

static void test_auth(void)
{
    uint16_t port = free_port();
    int slot = redis_start(port, "s3cret-pw");
    struct cfg good, bad, acl;
    fill_cfg(&good, port);
    good.redis_password = (char *)"s3cret-pw";
    struct store *s = store_new(loop, &good);
    CHECK(wait_connected(s, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "PING"), 0);
    CHECK(strcmp(o.str, "PONG") == 0);

    /* A wrong password: reported, retried with backoff, never connected. */
    long long before = connections_received(s);
    fill_cfg(&bad, port);
    bad.redis_password = (char *)"wrong";
    struct store *b = store_new(loop, &bad);
    run_for(1500);
    CHECK(!store_connected(b));
    CHECK(strstr(store_last_error(b), "WRONGPASS") != NULL);
    CHECK(strstr(store_last_error(b), "wrong") == NULL); /* the password is never echoed */
    long long after = connections_received(s);
    /* 50 ms doubling to 400 ms over 1.5 s is about 6 attempts; a busy loop
     * would be hundreds. */
    printf("auth: %lld connection attempts in 1.5 s with a wrong password\n", after - before - 1);
    CHECK(after - before >= 2);
    CHECK(after - before <= 15);
    store_free(b);

    /* ACL user + password. */
    CHECK_EQ_INT(CMD(s, &o, "ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all"), 0);
    CHECK(strcmp(o.str, "OK") == 0);
    fill_cfg(&acl, port);
    acl.redis_user = (char *)"alice";
    acl.redis_password = (char *)"alice-pw";
    struct store *a = store_new(loop, &acl);
    CHECK(wait_connected(a, true, 5000));
    CHECK_EQ_INT(CMD(a, &o, "ACL", "WHOAMI"), 0);
    CHECK(strcmp(o.str, "alice") == 0);
    store_free(a);
    store_free(s);
    redis_kill(slot);
}

static void test_free_inflight(uint16_t port)
{
    struct cfg c;
    fill_cfg(&c, port);
    struct store *s = store_new(loop, &c);
    CHECK(wait_connected(s, true, 5000));
    struct outcome sleep_o, p[10], t;
    memset(&sleep_o, 0, sizeof(sleep_o));
    memset(p, 0, sizeof(p));
    memset(&t, 0, sizeof(t));
    const char *sl[3] = {"DEBUG", "SLEEP", "0.3"};
    const char *get[2] = {"GET", "k1"};
    CHECK_EQ_INT(store_command(s, 3, sl, NULL, 5000, on_outcome, &sleep_o), 0);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(store_command(s, 2, get, NULL, 5000, on_outcome, &p[i]), 0);
    }
    /* This one times out first; store_free must not call it again. */
    CHECK_EQ_INT(store_command(s, 2, get, NULL, 10, on_outcome, &t), 0);
    run_until(&t.done, 2000);
    CHECK_EQ_INT(t.res, STORE_TIMEOUT);
    store_free(s);
    CHECK_EQ_INT(sleep_o.calls, 1);
    CHECK_EQ_INT(sleep_o.res, STORE_DOWN);
    int down = 0;
    for (int i = 0; i < 10; i++) {
        down += p[i].calls == 1 && p[i].res == STORE_DOWN;
    }
    CHECK_EQ_INT(down, 10);
    CHECK_EQ_INT(t.calls, 1);
    run_for(400); /* nothing may fire after the free */
    CHECK_EQ_INT(t.calls, 1);
    CHECK_EQ_INT(sleep_o.calls, 1);
}

static void test_unreachable(void)
{
    /* Nothing listens here: not connected, store_command fails fast. */
    struct cfg c;
    fill_cfg(&c, free_port());
    struct store *s = store_new(loop, &c);
    run_for(200);
    CHECK(!store_connected(s));
    struct outcome o;
    memset(&o, 0, sizeof(o));
    const char *get[2] = {"GET", "x"};
    CHECK_EQ_INT(store_command(s, 2, get, NULL, 100, on_outcome, &o), -1);
    CHECK_EQ_INT(o.calls, 0);
    store_free(s);
    CHECK_EQ_INT(o.calls, 0);
}

/* A server that accepts TCP but never answers: the connect timeout (which
 * covers the handshake) tears the attempt down and retries; SIGCONT heals. */
static void test_connect_timeout(uint16_t port, int slot)
{
    kill(children[slot], SIGSTOP);
    struct cfg c;
    fill_cfg(&c, port);
    c.redis_connect_timeout_ms = 100;
    struct store *s = store_new(loop, &c);
    run_for(500);
    CHECK(!store_connected(s));
    CHECK(strstr(store_last_error(s), "timeout") != NULL);
    printf("stopped server: last error \"%s\"\n", store_last_error(s));
    kill(children[slot], SIGCONT);
    CHECK(wait_connected(s, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "PING"), 0);
    CHECK(strcmp(o.str, "PONG") == 0);
    store_free(s);
}

static void test_unix(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/redis.sock", tmpdir);
    uint16_t port = free_port();
    int slot = redis_start_ex(port, NULL, path);
    for (int i = 0; i < 200 && access(path, F_OK) != 0; i++) {
        usleep(10000);
    }
    struct cfg c;
    fill_cfg(&c, 0);
    c.redis_host = NULL;
    c.redis_unix = path;
    struct store *s = store_new(loop, &c);
    CHECK(wait_connected(s, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(s, &o, "SET", "u", "unix"), 0);
    CHECK_EQ_INT(CMD(s, &o, "GET", "u"), 0);
    CHECK(strcmp(o.str, "unix") == 0);
    store_free(s);
    redis_kill(slot);
}

/* ---- discovery hooks (store_on_event, store_set_addr, store_check_role) ----------- */

struct evlog {
    int n[STORE_EVENT_COUNT];
    bool seen_last; /* set when `want` arrives */
    enum store_event want;
};

static void on_store_event(enum store_event ev, void *arg)
{
    struct evlog *e = arg;
    e->n[ev]++;
    if (ev == e->want) {
        e->seen_last = true;
    }
}

static bool wait_event(struct evlog *e, enum store_event ev, int ms)
{
    e->want = ev;
    e->seen_last = false;
    return run_until(&e->seen_last, ms);
}

/* A primary and its replica (made one with REPLICAOF), a store told where to go:
 * it waits for an address, refuses the replica on ROLE, reports -READONLY, a
 * timeout and a drop, and does not reconnect for the address it is already on. */
static void test_discovery_hooks(void)
{
    uint16_t pa = free_port(), pb = free_port();
    int sa = redis_start(pa, NULL), sb = redis_start(pb, NULL);
    char pabuf[8];
    snprintf(pabuf, sizeof(pabuf), "%u", pa);
    struct cfg cb;
    fill_cfg(&cb, pb);
    struct store *rb = store_new(loop, &cb);
    CHECK(wait_connected(rb, true, 5000));
    struct outcome o;
    CHECK_EQ_INT(CMD(rb, &o, "REPLICAOF", "127.0.0.1", pabuf), 0);
    CHECK(o.type == STORE_R_STATUS);
    store_free(rb);

    /* A config naming Sentinels: no connection until an address is given. */
    struct cfg c;
    fill_cfg(&c, free_port());
    char *sentinels[1] = {(char *)"127.0.0.1:1"};
    c.redis_sentinels.v = sentinels;
    c.redis_sentinels.n = 1;
    struct evlog e;
    memset(&e, 0, sizeof(e));
    struct store *s = store_new(loop, &c);
    store_on_event(s, on_store_event, &e);
    store_check_role(s, true);
    run_for(200);
    CHECK(!store_connected(s));
    CHECK(store_last_error(s)[0] == '\0'); /* it never tried */
    CHECK_EQ_INT(e.n[STORE_EV_DOWN], 0);

    /* ROLE says slave: not ready, NOT_MASTER, a reason naming the node. */
    CHECK_EQ_INT(store_set_addr(s, "127.0.0.1", pb), 0);
    CHECK(wait_event(&e, STORE_EV_NOT_MASTER, 3000));
    CHECK(!store_connected(s));
    CHECK(strstr(store_last_error(s), "is not a master (ROLE: slave)") != NULL);
    CHECK_EQ_INT(e.n[STORE_EV_READY], 0);

    /* The master: READY, and commands go there. */
    CHECK_EQ_INT(store_set_addr(s, "127.0.0.1", pa), 0);
    CHECK(wait_event(&e, STORE_EV_READY, 3000));
    CHECK(store_connected(s));
    CHECK_EQ_INT(CMD(s, &o, "SET", "hook", "1"), 0);
    CHECK(o.res == STORE_OK && o.type == STORE_R_STATUS);
    /* The same address again: nothing to do, no reconnect. */
    int ready = e.n[STORE_EV_READY];
    CHECK_EQ_INT(store_set_addr(s, "127.0.0.1", pa), 0);
    run_for(300);
    CHECK(store_connected(s));
    CHECK_EQ_INT(e.n[STORE_EV_READY], ready);
    /* A request past its deadline: TIMEOUT. */
    memset(&o, 0, sizeof(o));
    const char *sleep_argv[3] = {"DEBUG", "SLEEP", "0.3"};
    CHECK_EQ_INT(store_command(s, 3, sleep_argv, NULL, 50, on_outcome, &o), 0);
    CHECK(wait_event(&e, STORE_EV_TIMEOUT, 2000));
    CHECK(o.res == STORE_TIMEOUT);
    run_for(400); /* the late reply */
    /* The master dies: DOWN. */
    redis_kill(sa);
    CHECK(wait_event(&e, STORE_EV_DOWN, 3000));
    CHECK(!store_connected(s));
    store_free(s);

    /* Without the ROLE check a write to the replica is -READONLY: READONLY. */
    struct cfg cr;
    fill_cfg(&cr, pb);
    memset(&e, 0, sizeof(e));
    s = store_new(loop, &cr);
    store_on_event(s, on_store_event, &e);
    CHECK(wait_connected(s, true, 5000));
    CHECK_EQ_INT(CMD(s, &o, "SET", "hook", "2"), 0);
    CHECK(o.type == STORE_R_ERR && strncmp(o.str, "READONLY", 8) == 0);
    CHECK_EQ_INT(e.n[STORE_EV_READONLY], 1);
    /* An ACL user without +role: the check trusts the discovery (and -READONLY
     * still shows the replica on the first write). */
    const char *acl[9] = {"ACL", "SETUSER", "norole", "on", ">pw", "~*", "&*", "+@all",
                          "-role"};
    memset(&o, 0, sizeof(o));
    CHECK_EQ_INT(store_command(s, 9, acl, NULL, 1000, on_outcome, &o), 0);
    run_until(&o.done, 2000);
    CHECK(o.type == STORE_R_STATUS);
    store_free(s);
    struct cfg cn;
    fill_cfg(&cn, pb);
    cn.redis_user = (char *)"norole";
    cn.redis_password = (char *)"pw";
    memset(&e, 0, sizeof(e));
    s = store_new(loop, &cn);
    store_on_event(s, on_store_event, &e);
    store_check_role(s, true);
    CHECK(wait_connected(s, true, 5000));
    CHECK_EQ_INT(e.n[STORE_EV_NOT_MASTER], 0);
    CHECK_EQ_INT(CMD(s, &o, "SET", "hook", "3"), 0);
    CHECK(o.type == STORE_R_ERR && strncmp(o.str, "READONLY", 8) == 0);
    CHECK_EQ_INT(e.n[STORE_EV_READONLY], 1);
    store_free(s);
    redis_kill(sb);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    tmpdir_made = true;
    atexit(cleanup);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGABRT, on_fatal_signal);
    if (getenv("STORE_TEST_DEBUG") != NULL) {
        log_set_level(LOG_LVL_DEBUG);
    }
    loop = ev_default_loop(0);

    uint16_t port = free_port();
    int slot = redis_start(port, NULL);
    struct cfg c;
    fill_cfg(&c, port);
    struct store *s = store_new(loop, &c);
    CHECK(s != NULL);
    CHECK(wait_connected(s, true, 5000));
    struct store_script *sc =
        store_script_new(s, "return redis.call('INCRBY', KEYS[1], ARGV[1])");
    CHECK(sc != NULL);

    test_roundtrip(s);
    test_pipeline(s);
    test_script(s, sc);
    test_deadline(s);
    test_hung(s, slot);
    test_kill_restart_sub(s, sc, &slot, port);
    store_free(s);
    test_select(port);
    test_free_inflight(port);
    test_unreachable();
    test_connect_timeout(port, slot);
    test_unix();
    test_auth();
    test_discovery_hooks();
    printf("stats: requests=%llu timeouts=%llu errors=%llu reconnects=%llu\n",
           (unsigned long long)stats.redis_requests, (unsigned long long)stats.redis_timeouts,
           (unsigned long long)stats.redis_errors, (unsigned long long)stats.redis_reconnects);
    redis_kill(slot);
    ev_loop_destroy(loop);
    return check_summary("test_store");
}
