/* Integration test of hapi.c against a real HAProxy ($HAPROXY, by default
 * /usr/sbin/haproxy: the test matrix runs it on every version) started in a
 * temp dir: backend ws (mode tcp) with s1 UP (a listener this test opens), s2
 * DOWN (a closed port, check inter 100), s3 `disabled`; backend web (mode
 * http). Checks the refreshed view and each backend's mode over the unix and
 * the TCP stats socket, set server state round trips, shutdown
 * sessions on a live session, HAProxy's error messages, a stopped HAProxy
 * (timeout), a killed one (failures counted, loop still turning), a
 * restarted one (recovery) and one started after the agent (retried soon
 * despite a long period). HAProxy is killed on every exit path. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "check.h"
#include "config.h"
#include "hapi.h"
#include "servers.h"
#include "stats.h"

static char tmpdir[] = "/tmp/stickyd-hapi-XXXXXX";
static char cfgpath[256], sockpath[256];
static pid_t haproxy_pid = -1;
static const char *haproxy_bin = "/usr/sbin/haproxy";
static int stats_port, fe_port, up_port, down_port;

static void haproxy_stop(void)
{
    if (haproxy_pid > 0) {
        kill(haproxy_pid, SIGCONT);
        kill(haproxy_pid, SIGKILL);
        waitpid(haproxy_pid, NULL, 0);
        haproxy_pid = -1;
    }
}

static void cleanup(void)
{
    haproxy_stop();
    char path[300];
    unlink(cfgpath);
    unlink(sockpath);
    snprintf(path, sizeof(path), "%s/haproxy.log", tmpdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/stderr.log", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

static void on_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int listen_on(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static int haproxy_start(void)
{
    unlink(sockpath);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        char logpath[300];
        snprintf(logpath, sizeof(logpath), "%s/haproxy.log", tmpdir);
        int lfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (lfd >= 0) {
            dup2(lfd, 1);
            dup2(lfd, 2);
        }
        execl(haproxy_bin, "haproxy", "-db", "-f", cfgpath, (char *)NULL);
        _exit(127);
    }
    haproxy_pid = pid;
    /* wait (bounded) until both stats sockets accept */
    for (int i = 0; i < 500; i++) {
        struct stat st;
        if (stat(sockpath, &st) == 0) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)stats_port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
            close(fd);
            if (rc == 0) {
                return 0;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            haproxy_pid = -1;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

/* ---- loop helpers ---- */

static struct ev_loop *loop;

static void on_wake(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

/* Run the loop until pred() holds or `secs` of loop time passed (a bound for
 * a broken run, not a timed assertion). */
static bool run_until(bool (*pred)(void), double secs)
{
    ev_timer wake;
    ev_timer_init(&wake, on_wake, 0.05, 0.05);
    ev_timer_start(loop, &wake);
    ev_now_update(loop);
    double end = ev_now(loop) + secs;
    bool ok = pred();
    while (!ok && ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE);
        ok = pred();
    }
    ev_timer_stop(loop, &wake);
    return ok;
}

/* ---- command completions ---- */

struct done {
    int calls;
    bool ok;
    char text[512];
};

static void on_done(void *arg, bool ok, const char *text, size_t len)
{
    struct done *d = arg;
    d->calls++;
    d->ok = ok;
    snprintf(d->text, sizeof(d->text), "%.*s", (int)len, text);
    CHECK(text[len] == '\0');
}

static struct done *want_done;
static bool is_done(void)
{
    return want_done->calls > 0;
}

static void wait_done(struct done *d)
{
    want_done = d;
    run_until(is_done, 8.0);
    want_done = NULL;
}

/* ---- view predicates ---- */

static const struct srv *view_srv(const char *name)
{
    const struct srv_backend *b = servers_find("ws", 2);
    return b ? servers_find_server(b, name, strlen(name)) : NULL;
}

static enum model_state want_state;
static const char *want_name;
static bool srv_in_state(void)
{
    const struct srv *s = view_srv(want_name);
    return s != NULL && s->state == want_state;
}

static bool wait_state(const char *name, enum model_state st)
{
    want_name = name;
    want_state = st;
    return run_until(srv_in_state, 8.0);
}

static uint32_t want_scur;
static bool s1_scur(void)
{
    const struct srv *s = view_srv("s1");
    return s != NULL && s->scur == want_scur;
}

static struct hapi *cur;
static bool is_ready(void)
{
    return hapi_ready(cur);
}
static bool is_healthy(void)
{
    return hapi_healthy(cur);
}
static bool is_unhealthy(void)
{
    return !hapi_healthy(cur);
}

static int refreshes;
static void on_refresh(void *arg)
{
    (void)arg;
    refreshes++;
}

static int refreshes_base;
static bool more_refreshes_2(void)
{
    return refreshes >= refreshes_base + 2;
}

static int accepted_fd = -1;
static void on_accept(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    (void)revents;
    int fd = accept(w->fd, NULL, NULL);
    if (fd >= 0) {
        if (accepted_fd >= 0) {
            close(accepted_fd);
        }
        accepted_fd = fd;
    }
}

static int client_fd = -1;
static bool client_eof(void)
{
    char c;
    ssize_t n = recv(client_fd, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static uint64_t want_errors;
static bool errors_reached(void)
{
    return stats.haproxy_api_errors >= want_errors;
}

static bool never(void)
{
    return false;
}

/* Every thread of HAProxy is stopped: kill(SIGSTOP) returns before they are,
 * and one still running may answer the next command (seen on a loaded host). */
static bool haproxy_stopped(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)haproxy_pid);
    DIR *d = opendir(path);
    if (d == NULL) {
        return false;
    }
    bool all = true, any = false;
    struct dirent *e;
    while (all && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char stat[sizeof(path) + sizeof(e->d_name) + 8], line[256];
        snprintf(stat, sizeof(stat), "%s/%s/stat", path, e->d_name);
        FILE *f = fopen(stat, "r");
        const char *close_paren = NULL;
        if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            close_paren = strrchr(line, ')');
        }
        if (f != NULL) {
            fclose(f);
        }
        /* "pid (comm) S ...": T is stopped by a signal */
        all = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'T';
        any = true;
    }
    closedir(d);
    return all && any;
}

static int ticks;
static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    ticks++;
}
static bool ticked(void)
{
    return ticks >= 3;
}

static struct hapi *open_hapi(const char *addr, struct cfg *c, int64_t refresh_ms)
{
    if (cfg_defaults(c) < 0) {
        return NULL;
    }
    free(c->haproxy_socket);
    c->haproxy_socket = strdup(addr);
    c->haproxy_refresh_ms = refresh_ms;
    return hapi_new(loop, c);
}

static void test_view(struct hapi *h)
{
    cur = h;
    CHECK(run_until(is_ready, 8.0));
    CHECK(hapi_healthy(h));
    /* s2's checks need `fall` failures before HAProxy calls it DOWN */
    CHECK(wait_state("s2", MODEL_DOWN));
    const struct srv *s1 = view_srv("s1"), *s2 = view_srv("s2"), *s3 = view_srv("s3");
    CHECK(s1 != NULL && s1->state == MODEL_READY && s1->weight == 10);
    CHECK(s2 != NULL && s2->state == MODEL_DOWN && s2->weight == 20);
    CHECK(s3 != NULL && s3->state == MODEL_MAINT && s3->weight == 30);
    const struct srv_backend *b = servers_find("ws", 2);
    CHECK(b != NULL && b->nservers == 3);
    /* the proxy mode from "show stat": ws inherits mode tcp from defaults */
    CHECK(b != NULL && !b->http);
    const struct srv_backend *web = servers_find("web", 3);
    CHECK(web != NULL && web->http && web->nservers == 1);
    /* the frontend has no servers and is not a backend */
    CHECK(servers_find("fe", 2) == NULL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("HAPROXY") != NULL) {
        haproxy_bin = getenv("HAPROXY");
    }
    if (access(haproxy_bin, X_OK) != 0) {
        fprintf(stderr, "test_hapi: %s missing\n", haproxy_bin);
        return 1;
    }
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGABRT, on_signal);
    snprintf(cfgpath, sizeof(cfgpath), "%s/haproxy.cfg", tmpdir);
    snprintf(sockpath, sizeof(sockpath), "%s/admin.sock", tmpdir);
    loop = ev_default_loop(0);

    int lfd = listen_on(&up_port);
    stats_port = itest_free_port(SOCK_STREAM);
    fe_port = itest_free_port(SOCK_STREAM);
    down_port = itest_free_port(SOCK_STREAM); /* nothing listens there */
    CHECK(lfd >= 0 && stats_port > 0 && fe_port > 0 && down_port > 0);
    ev_io accept_w;
    ev_io_init(&accept_w, on_accept, lfd, EV_READ);
    ev_io_start(loop, &accept_w);

    FILE *f = fopen(cfgpath, "w");
    if (f == NULL) {
        return 1;
    }
    fprintf(f,
            "global\n"
            "    stats socket %s level admin\n"
            "    stats socket 127.0.0.1:%d level admin\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 1s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "frontend fe\n"
            "    bind 127.0.0.1:%d\n"
            "    default_backend ws\n"
            "backend ws\n"
            "    server s1 127.0.0.1:%d check inter 100 weight 10\n"
            "    server s2 127.0.0.1:%d check inter 100 weight 20\n"
            "    server s3 127.0.0.1:%d disabled weight 30\n"
            "backend web\n"
            "    mode http\n"
            "    server w1 127.0.0.1:%d\n",
            sockpath, stats_port, fe_port, up_port, down_port, up_port, up_port);
    fclose(f);
    if (haproxy_start() < 0) {
        fprintf(stderr, "test_hapi: haproxy did not start (see %s/haproxy.log)\n", tmpdir);
        CHECK(0);
        return check_summary("test_hapi_haproxy");
    }

    /* ---- TCP socket ---- */
    char taddr[64];
    snprintf(taddr, sizeof(taddr), "127.0.0.1:%d", stats_port);
    struct cfg ct;
    /* a refresh period far beyond the test: after the first refresh, only
     * the refresh that follows each successful state change updates the view */
    struct hapi *ht = open_hapi(taddr, &ct, 600000);
    CHECK(ht != NULL);
    if (ht != NULL) {
        servers_clear();
        cur = ht;
        CHECK(run_until(is_ready, 8.0));
        CHECK(view_srv("s1") != NULL && view_srv("s3") != NULL &&
              view_srv("s3")->state == MODEL_MAINT);
        struct done d = {0};
        CHECK(hapi_set_server_state(ht, "ws", "s1", "drain", on_done, &d) == 0);
        wait_done(&d);
        CHECK(d.calls == 1 && d.ok);
        CHECK(wait_state("s1", MODEL_DRAIN));
        struct done d2 = {0};
        CHECK(hapi_set_server_state(ht, "ws", "s1", "ready", on_done, &d2) == 0);
        wait_done(&d2);
        CHECK(d2.ok && wait_state("s1", MODEL_READY));
        hapi_free(ht);
    }

    /* ---- unix socket ---- */
    char addr[300];
    snprintf(addr, sizeof(addr), "unix:%s", sockpath);
    struct cfg cu;
    struct hapi *h = open_hapi(addr, &cu, 100);
    CHECK(h != NULL);
    if (h == NULL) {
        return check_summary("test_hapi_haproxy");
    }
    CHECK(!hapi_ready(h));
    CHECK(hapi_on_refresh(h, on_refresh, NULL) == 0);
    test_view(h);
    CHECK(refreshes > 0);

    /* set server state round trips, each seen by a later refresh */
    static const struct {
        const char *state;
        enum model_state want;
    } steps[] = {{"drain", MODEL_DRAIN}, {"ready", MODEL_READY}, {"maint", MODEL_MAINT},
                 {"ready", MODEL_READY}};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct done d = {0};
        CHECK(hapi_set_server_state(h, "ws", "s1", steps[i].state, on_done, &d) == 0);
        CHECK_EQ_INT(d.calls, 0); /* never from inside the call */
        wait_done(&d);
        CHECK_EQ_INT(d.calls, 1);
        CHECK(d.ok);
        CHECK_EQ_INT(strlen(d.text), 0);
        CHECK(wait_state("s1", steps[i].want));
    }

    /* HAProxy's own error messages come back as failures */
    uint64_t errs0 = stats.haproxy_api_errors;
    struct done nosrv = {0}, nobe = {0}, bad = {0}, info = {0};
    CHECK(hapi_set_server_state(h, "ws", "nosuch", "drain", on_done, &nosrv) == 0);
    CHECK(hapi_shutdown_sessions(h, "nobe", "s1", on_done, &nobe) == 0);
    CHECK(hapi_set_server_state(h, "ws", "s1", "sideways", on_done, &bad) == -1);
    CHECK(hapi_set_server_state(h, "ws;x", "s1", "drain", on_done, &bad) == -1);
    CHECK(hapi_set_server_state(h, "ws", "s1 state maint", "drain", on_done, &bad) == -1);
    CHECK(hapi_command(h, "show info;show stat", on_done, &bad) == -1);
    CHECK(hapi_command(h, "show info", on_done, &info) == 0);
    wait_done(&nosrv);
    wait_done(&nobe);
    wait_done(&info);
    CHECK(nosrv.calls == 1 && !nosrv.ok && strcmp(nosrv.text, "No such server.") == 0);
    CHECK(nobe.calls == 1 && !nobe.ok && strstr(nobe.text, "backend") != NULL);
    CHECK(info.calls == 1 && info.ok && strstr(info.text, "Name: HAProxy") != NULL);
    CHECK_EQ_INT(bad.calls, 0);
    CHECK(stats.haproxy_api_errors >= errs0 + 2);

    /* reload onto the TCP socket (what SIGHUP does), then back */
    struct cfg cr;
    CHECK(cfg_defaults(&cr) == 0);
    free(cr.haproxy_socket);
    cr.haproxy_socket = strdup("not-an-address");
    CHECK(hapi_reconfigure(h, &cr) == -1);
    free(cr.haproxy_socket);
    char tcp_addr[64];
    snprintf(tcp_addr, sizeof(tcp_addr), "127.0.0.1:%d", stats_port);
    cr.haproxy_socket = strdup(tcp_addr);
    CHECK(hapi_reconfigure(h, &cr) == 0);
    refreshes_base = refreshes;
    CHECK(run_until(more_refreshes_2, 8.0));
    CHECK(hapi_healthy(h));
    /* a closed port: proves the new address is the one in use */
    free(cr.haproxy_socket);
    snprintf(tcp_addr, sizeof(tcp_addr), "127.0.0.1:%d", down_port);
    cr.haproxy_socket = strdup(tcp_addr);
    CHECK(hapi_reconfigure(h, &cr) == 0);
    CHECK(run_until(is_unhealthy, 8.0));
    cfg_release(&cr);
    CHECK(hapi_reconfigure(h, &cu) == 0);
    refreshes_base = refreshes;
    CHECK(run_until(more_refreshes_2, 8.0));
    CHECK(hapi_healthy(h));

    /* a live session through HAProxy to s1, then shutdown sessions */
    client_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in fe = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fe_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(client_fd, (struct sockaddr *)&fe, sizeof(fe)) == 0);
    want_scur = 1;
    CHECK(run_until(s1_scur, 8.0));
    struct done shut = {0};
    CHECK(hapi_shutdown_sessions(h, "ws", "s1", on_done, &shut) == 0);
    wait_done(&shut);
    CHECK(shut.calls == 1 && shut.ok);
    CHECK(run_until(client_eof, 8.0));
    want_scur = 0;
    CHECK(run_until(s1_scur, 8.0));
    close(client_fd);

    /* FIFO order: drain then ready queued back to back end up ready */
    struct done q1 = {0}, q2 = {0};
    CHECK(hapi_set_server_state(h, "ws", "s1", "drain", on_done, &q1) == 0);
    CHECK(hapi_set_server_state(h, "ws", "s1", "ready", on_done, &q2) == 0);
    wait_done(&q2);
    CHECK(q1.calls == 1 && q1.ok && q2.calls == 1 && q2.ok);
    CHECK(wait_state("s1", MODEL_READY));

    cur = h;

    /* ---- a stopped HAProxy: the unix connect succeeds, no reply comes ---- */
    kill(haproxy_pid, SIGSTOP);
    CHECK(run_until(haproxy_stopped, 8.0));
    struct done slow = {0};
    CHECK(hapi_command(h, "show info", on_done, &slow) == 0);
    ticks = 0;
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    CHECK(run_until(ticked, 8.0)); /* the loop keeps turning meanwhile */
    wait_done(&slow);
    CHECK(slow.calls == 1 && !slow.ok && strstr(slow.text, "no complete reply") != NULL);
    CHECK(run_until(is_unhealthy, 8.0)); /* the refresh in flight times out too */
    kill(haproxy_pid, SIGCONT);
    CHECK(run_until(is_healthy, 8.0));

    /* ---- a killed HAProxy ---- */
    /* capture our stderr meanwhile, to count the log lines */
    char errlog[300];
    snprintf(errlog, sizeof(errlog), "%s/stderr.log", tmpdir);
    fflush(stderr);
    int saved_err = dup(2);
    int errfd = open(errlog, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(saved_err >= 0 && errfd >= 0);
    dup2(errfd, 2);
    haproxy_stop();
    errs0 = stats.haproxy_api_errors;
    CHECK(run_until(is_unhealthy, 8.0));
    want_errors = errs0 + 10;
    CHECK(run_until(errors_reached, 8.0)); /* ten failed refreshes... */
    struct done dead = {0};
    CHECK(hapi_set_server_state(h, "ws", "s1", "drain", on_done, &dead) == 0);
    wait_done(&dead);
    CHECK(dead.calls == 1 && !dead.ok && strstr(dead.text, "connect") != NULL);
    ticks = 0;
    CHECK(run_until(ticked, 8.0));
    CHECK(stats.haproxy_api_errors >= errs0 + 2);
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    char logbuf[8192];
    ssize_t ln = pread(errfd, logbuf, sizeof(logbuf) - 1, 0);
    close(errfd);
    logbuf[ln > 0 ? ln : 0] = '\0';
    int warns = 0;
    for (const char *q = logbuf; (q = strstr(q, " warn ")) != NULL; q++) {
        warns++;
    }
    CHECK_EQ_INT(warns, 1); /* ...logged once */
    CHECK(strstr(logbuf, "Connection refused") != NULL);
    unlink(errlog);
    CHECK(hapi_ready(h)); /* it did succeed once; the last view stays */
    CHECK(view_srv("s1") != NULL);
    ev_timer_stop(loop, &tick);

    /* ---- restarted: recovers on its own ---- */
    CHECK(haproxy_start() == 0);
    CHECK(run_until(is_healthy, 8.0));
    CHECK(wait_state("s2", MODEL_DOWN));
    CHECK(wait_state("s3", MODEL_MAINT));

    /* ---- free with commands pending: each callback runs once, failed ---- */
    struct done p1 = {0}, p2 = {0};
    CHECK(hapi_command(h, "show info", on_done, &p1) == 0);
    CHECK(hapi_command(h, "show info", on_done, &p2) == 0);
    hapi_free(h);
    CHECK(p1.calls == 1 && !p1.ok && strstr(p1.text, "shutting down") != NULL);
    CHECK(p2.calls == 1 && !p2.ok);

    /* ---- started before HAProxy, with a period far beyond the test: the
     * failed first look is retried soon, not 600 s later ---- */
    haproxy_stop();
    unlink(sockpath); /* no HAProxy at all: connect fails with ENOENT */
    servers_clear();
    struct cfg cl;
    struct hapi *hl = open_hapi(addr, &cl, 600000);
    CHECK(hl != NULL);
    if (hl != NULL) {
        cur = hl;
        CHECK(hapi_on_refresh(hl, on_refresh, NULL) == 0);
        errs0 = stats.haproxy_api_errors;
        /* HAProxy starts 300 ms after the agent */
        run_until(never, 0.3);
        CHECK(stats.haproxy_api_errors >= errs0 + 2); /* the first look and a retry */
        CHECK(!hapi_ready(hl) && servers_count() == 0);
        CHECK(haproxy_start() == 0);
        /* bound: the longest retry delay (1 s) plus slack */
        CHECK(run_until(is_ready, 3.0));
        CHECK(view_srv("s1") != NULL && servers_find("web", 3) != NULL);
        /* back to the period once a refresh succeeded: no more retries */
        refreshes_base = refreshes;
        run_until(never, 1.5);
        CHECK_EQ_INT(refreshes, refreshes_base);
        CHECK(hapi_healthy(hl));
        hapi_free(hl);
    }
    cfg_release(&cl);

    /* a bad address is refused at creation */
    struct cfg cb;
    CHECK(open_hapi("not-an-address", &cb, 100) == NULL);
    cfg_release(&cb);

    cfg_release(&cu);
    cfg_release(&ct);
    ev_io_stop(loop, &accept_w);
    close(lfd);
    if (accepted_fd >= 0) {
        close(accepted_fd);
    }
    servers_clear();
    cleanup();
    return check_summary("test_hapi_haproxy");
}
