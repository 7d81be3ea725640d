/* Socket-level test of slog.c: real UDP and TCP loopback sockets, syslog
 * frames split at every byte, octet-counted and newline framing, a client
 * that breaks framing is closed without affecting the others. */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "itest.h"
#include "check.h"
#include "slog.h"

static char seen[64][64];
static int nseen;

static void on_close(const struct slog_close *c, void *arg)
{
    (void)arg;
    if (nseen < 64) {
        snprintf(seen[nseen++], sizeof(seen[0]), "%.*s/%.*s/%d", (int)c->uid.len, c->uid.ptr,
                 (int)c->server.len, c->server.ptr, c->status);
    }
}

static int connect_to(int type, int port)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        return -1;
    }
    return fd;
}

/* Run the loop until n events were seen or 2 s passed. */
static void run_until(struct ev_loop *loop, int n)
{
    for (int i = 0; i < 200 && nseen < n; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(10000);
    }
    ev_run(loop, EVRUN_NOWAIT);
}

int main(void)
{
    struct ev_loop *loop = ev_default_loop(0);
    char udp[64], tcp[64], err[256];
    snprintf(udp, sizeof(udp), "127.0.0.1:%d", itest_free_port(SOCK_DGRAM));
    int tport = itest_free_port(SOCK_STREAM);
    snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", tport);
    struct slog *s = slog_new(loop, udp, tcp, on_close, NULL, err, sizeof(err));
    CHECK(s != NULL);
    if (s == NULL) {
        fprintf(stderr, "slog_new: %s\n", err);
        return check_summary("test_slog_sockets");
    }

    /* UDP: one datagram per line, foreign lines ignored */
    int u = connect_to(SOCK_DGRAM, atoi(strrchr(udp, ':') + 1));
    const char *l1 = "<134>Nov 21 19:20:00 lb1 haproxy[1]: x stickyd: uid=u1 be=ws srv=s1 st=101";
    const char *l2 = "<134>Nov 21 19:20:00 lb1 haproxy[1]: Proxy fe started.";
    CHECK(send(u, l1, strlen(l1), 0) > 0);
    CHECK(send(u, l2, strlen(l2), 0) > 0);
    run_until(loop, 1);
    CHECK_EQ_INT(nseen, 1);
    CHECK(strcmp(seen[0], "u1/s1/101") == 0);

    /* TCP octet counting, two frames written one byte at a time */
    char frames[512];
    const char *m1 = "<134>1 2026-11-21T19:20:00Z lb1 haproxy 1 - - stickyd: uid=u2 be=ws srv=s2 st=101";
    const char *m2 = "<134>1 2026-11-21T19:20:00Z lb1 haproxy 1 - - stickyd: uid=u3 be=ws srv=s3 st=101";
    int flen = snprintf(frames, sizeof(frames), "%zu %s%zu %s", strlen(m1), m1, strlen(m2), m2);
    int t = connect_to(SOCK_STREAM, tport);
    CHECK(t >= 0);
    run_until(loop, 1); /* accept */
    for (int i = 0; i < flen; i++) {
        CHECK(write(t, frames + i, 1) == 1);
        ev_run(loop, EVRUN_NOWAIT);
    }
    run_until(loop, 3);
    CHECK_EQ_INT(nseen, 3);
    CHECK(strcmp(seen[1], "u2/s2/101") == 0);
    CHECK(strcmp(seen[2], "u3/s3/101") == 0);

    /* newline framing on another connection */
    int t2 = connect_to(SOCK_STREAM, tport);
    const char *nl = "<134>Nov 21 19:20:00 lb1 haproxy[1]: stickyd: uid=u4 be=ws srv=s1 st=101\n";
    CHECK(write(t2, nl, strlen(nl)) == (ssize_t)strlen(nl));
    run_until(loop, 4);
    CHECK_EQ_INT(nseen, 4);

    /* broken framing closes that client only: read() on it sees EOF */
    const char *bad = "99999999 x";
    CHECK(write(t2, bad, strlen(bad)) == (ssize_t)strlen(bad));
    run_until(loop, 5);
    char b;
    CHECK(read(t2, &b, 1) == 0);
    char again[256];
    int alen = snprintf(again, sizeof(again), "%zu %s", strlen(m1), m1);
    CHECK(write(t, again, (size_t)alen) == alen);
    run_until(loop, 5);
    CHECK_EQ_INT(nseen, 5);

    close(u);
    close(t);
    close(t2);
    slog_free(s);
    ev_loop_destroy(loop);
    return check_summary("test_slog_sockets");
}
