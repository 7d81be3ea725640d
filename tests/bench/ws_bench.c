/* ws_bench - WebSocket upgrade load generator for the benchmark (tests/bench/ws_bench.sh).
 *
 * Each iteration: TCP connect to HAProxy, send an HTTP/1.1 WebSocket upgrade request
 * (a new client: no cookie; or a returning client: a cookie an earlier response set),
 * read the response head, check the 101, send a masked close frame and close. The
 * latency of an upgrade is connect() to the end of the 101's header block. One thread,
 * epoll, raw sockets; N connections in flight at once (closed loop) or new upgrades
 * started at a fixed rate (open loop, -R). Returning clients also check affinity: the
 * server that answers (X-Server, set by ws_backend) must be the one that set the cookie.
 *
 * With two targets (-T twice) the run alternates between them in short slices (-s), so
 * both see the same background load on a shared machine: a paired comparison. Each
 * upgrade is counted for the target it was started on; rates are per second of that
 * target's own slices.
 *
 *     ws_bench -T LABEL=PORT [-T LABEL=PORT] [-c CONNS] [-t SECS] [-w WARMUP] [-s SLICE]
 *              [-r RETURNING%] [-R RATE]
 *
 * Prints "LABEL.key=value" lines (rate, p50_us, p99_us, ...) and one summary line per
 * target. Talks to 127.0.0.1 (or -H, a numeric IPv4 address) only.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_head.h"

#define RESP_MAX 4096
#define COOKIE_MAX 160
#define POOL_MAX 8192
#define MAX_TARGETS 2
#define DEADLINE_NS (5 * 1000000000LL) /* one upgrade taking longer is an error */

enum slot_state { SLOT_IDLE = 0, SLOT_CONNECTING, SLOT_READING, SLOT_STATE_COUNT };

/* A cookie a response set, and the server that set it (for the affinity check). */
struct pooled {
    char cookie[COOKIE_MAX]; /* "name=value" */
    char server[32];
};

struct stats {
    uint64_t done, errors, news, returns, same, moved, no_cookie, missed;
    int64_t measured_ns; /* time spent in this target's slices while measuring */
    uint32_t *lat_us;
    size_t nlat, caplat;
};

/* One HAProxy to measure: its address, its own cookies and figures. */
struct target {
    const char *label;
    struct sockaddr_in addr;
    struct stats st;
    struct pooled pool[POOL_MAX];
    int npool;
};

struct slot {
    enum slot_state state;
    int fd;
    struct target *t;
    int64_t start_ns;
    int pool_idx; /* returning client: its pool entry; -1 for a new client */
    size_t len;
    char resp[RESP_MAX];
};

struct opts {
    const char *path;
    int conns;
    double secs;
    double warmup;
    double slice;
    int returning_pct;
    double rate; /* 0: closed loop */
};

static struct opts o = {.path = "/ws", .conns = 50, .secs = 5, .warmup = 1, .slice = 0.5};
static struct target targets[MAX_TARGETS];
static int ntargets;
static bool measuring;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void record_latency(struct stats *st, int64_t ns)
{
    if (st->nlat == st->caplat) {
        size_t cap = st->caplat ? st->caplat * 2 : 65536;
        uint32_t *p = realloc(st->lat_us, cap * sizeof(*p));
        if (p == NULL) {
            return; /* a sample lost is better than a run lost */
        }
        st->lat_us = p;
        st->caplat = cap;
    }
    st->lat_us[st->nlat++] = (uint32_t)(ns / 1000);
}

static void slot_close(int ep, struct slot *s)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
    s->state = SLOT_IDLE;
}

static void slot_fail(int ep, struct slot *s)
{
    if (measuring) {
        s->t->st.errors++;
    }
    slot_close(ep, s);
}

static void slot_start(int ep, struct slot *s, struct target *t)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    s->t = t;
    s->start_ns = now_ns();
    s->len = 0;
    s->pool_idx = -1;
    if (o.returning_pct > 0 && t->npool > 0 && (int)(rnd() % 100) < o.returning_pct) {
        s->pool_idx = (int)(rnd() % (uint64_t)t->npool);
    }
    if (fd < 0) {
        if (measuring) {
            t->st.errors++;
        }
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&t->addr, sizeof(t->addr)) != 0 && errno != EINPROGRESS) {
        close(fd);
        if (measuring) {
            t->st.errors++;
        }
        return;
    }
    s->fd = fd;
    s->state = SLOT_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void slot_send(int ep, struct slot *s)
{
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        slot_fail(ep, s);
        return;
    }
    /* A fresh random key per attempt, as a browser sends (16 bytes, base64). */
    unsigned char raw[16];
    char key[32];
    uint64_t a = rnd(), b = rnd();
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    char req[1024];
    char cookie[COOKIE_MAX + 16] = "";
    if (s->pool_idx >= 0) {
        snprintf(cookie, sizeof(cookie), "Cookie: %s\r\n", s->t->pool[s->pool_idx].cookie);
    }
    int n =
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 o.path, inet_ntoa(s->t->addr.sin_addr), ntohs(s->t->addr.sin_port), key, cookie);
    if (n <= 0 || (size_t)n >= sizeof(req) || write(s->fd, req, (size_t)n) != n) {
        slot_fail(ep, s);
        return;
    }
    s->state = SLOT_READING;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

/* The response head is complete: account for it and close the WebSocket. */
static void slot_done(int ep, struct slot *s, const char *end)
{
    int64_t lat = now_ns() - s->start_ns;
    struct target *t = s->t;
    struct stats *st = &t->st;
    if (s->len < 12 || memcmp(s->resp, "HTTP/1.1 101", 12) != 0) {
        slot_fail(ep, s);
        return;
    }
    size_t slen = 0, clen = 0;
    const char *srv = http_header(s->resp, end, "X-Server", &slen);
    const char *ck = http_header(s->resp, end, "Set-Cookie", &clen);
    if (measuring) {
        st->done++;
        record_latency(st, lat);
        if (s->pool_idx < 0) {
            st->news++;
            st->no_cookie += ck == NULL;
        } else {
            st->returns++;
            const struct pooled *p = &t->pool[s->pool_idx];
            if (srv != NULL && slen == strlen(p->server) && memcmp(srv, p->server, slen) == 0) {
                st->same++;
            } else {
                st->moved++;
            }
        }
    }
    /* Remember a new client's cookie ("name=value", attributes cut) for returning ones. */
    if (s->pool_idx < 0 && ck != NULL && srv != NULL && o.returning_pct > 0) {
        const char *semi = memchr(ck, ';', clen);
        size_t cl = semi ? (size_t)(semi - ck) : clen;
        if (cl < COOKIE_MAX && slen < sizeof(t->pool[0].server)) {
            int i = t->npool < POOL_MAX ? t->npool++ : (int)(rnd() % POOL_MAX);
            memcpy(t->pool[i].cookie, ck, cl);
            t->pool[i].cookie[cl] = '\0';
            memcpy(t->pool[i].server, srv, slen);
            t->pool[i].server[slen] = '\0';
        }
    }
    /* RFC 6455 close frame from a client: FIN + opcode 8, masked, empty payload. */
    static const unsigned char close_frame[] = {0x88, 0x80, 0x12, 0x34, 0x56, 0x78};
    (void)!write(s->fd, close_frame, sizeof(close_frame));
    slot_close(ep, s);
}

static void slot_read(int ep, struct slot *s)
{
    for (;;) {
        ssize_t r = read(s->fd, s->resp + s->len, sizeof(s->resp) - 1 - s->len);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        if (r <= 0 || s->len + (size_t)r >= sizeof(s->resp) - 1) {
            slot_fail(ep, s);
            return;
        }
        s->len += (size_t)r;
        const char *end = memmem(s->resp, s->len, "\r\n\r\n", 4);
        if (end != NULL) {
            slot_done(ep, s, end + 2);
            return;
        }
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t pct(const struct stats *st, double p)
{
    if (st->nlat == 0) {
        return 0;
    }
    size_t i = (size_t)(p / 100.0 * (double)(st->nlat - 1) + 0.5);
    return st->lat_us[i];
}

static void report(const struct target *t)
{
    const struct stats *st = &t->st;
    const char *l = t->label;
    double secs = (double)st->measured_ns / 1e9;
    double rate = secs > 0 ? (double)st->done / secs : 0;
    uint32_t max = st->nlat ? st->lat_us[st->nlat - 1] : 0;
    printf("%s.rate=%.0f\n%s.secs=%.2f\n%s.done=%llu\n%s.errors=%llu\n", l, rate, l, secs, l,
           (unsigned long long)st->done, l, (unsigned long long)st->errors);
    printf("%s.p50_us=%u\n%s.p90_us=%u\n%s.p99_us=%u\n%s.max_us=%u\n", l, pct(st, 50), l,
           pct(st, 90), l, pct(st, 99), l, max);
    printf("%s.new=%llu\n%s.new_without_cookie=%llu\n%s.returning=%llu\n%s.same_server=%llu\n"
           "%s.moved=%llu\n%s.missed_starts=%llu\n",
           l, (unsigned long long)st->news, l, (unsigned long long)st->no_cookie, l,
           (unsigned long long)st->returns, l, (unsigned long long)st->same, l,
           (unsigned long long)st->moved, l, (unsigned long long)st->missed);
    printf("%s: %.0f upgrades/s over %.1f s (%llu ok, %llu errors), latency p50 %.3f ms "
           "p90 %.3f ms p99 %.3f ms max %.3f ms; new %llu (%llu without a cookie), "
           "returning %llu (%llu on their first server, %llu moved)\n",
           l, rate, secs, (unsigned long long)st->done, (unsigned long long)st->errors,
           pct(st, 50) / 1000.0, pct(st, 90) / 1000.0, pct(st, 99) / 1000.0, max / 1000.0,
           (unsigned long long)st->news, (unsigned long long)st->no_cookie,
           (unsigned long long)st->returns, (unsigned long long)st->same,
           (unsigned long long)st->moved);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ws_bench -T LABEL=PORT [-T LABEL=PORT] [-H ADDR] [-u PATH] [-c CONNS]\n"
               "                [-t SECS] [-w WARMUP] [-s SLICE] [-r RETURNING%%] [-R RATE]\n"
               "  -T  a target (HAProxy frontend port); two: alternate in slices of -s s\n"
               "  -c  upgrades in flight at once (default 50)\n"
               "  -t  measured seconds in all (default 5), after -w warm-up seconds (1)\n"
               "  -r  share of returning clients (with a cookie from an earlier response)\n"
               "  -R  open loop: start RATE upgrades per second (default: closed loop)\n");
}

static int add_target(const char *arg)
{
    const char *eq = strrchr(arg, '=');
    int port = eq ? atoi(eq + 1) : 0;
    if (ntargets == MAX_TARGETS || eq == NULL || eq == arg || port <= 0 || port > 65535) {
        return -1;
    }
    struct target *t = &targets[ntargets++];
    char *label = strndup(arg, (size_t)(eq - arg));
    if (label == NULL) {
        return -1;
    }
    t->label = label;
    t->addr.sin_family = AF_INET;
    t->addr.sin_port = htons((uint16_t)port);
    return 0;
}

int main(int argc, char **argv)
{
    int opt;
    const char *host = "127.0.0.1";
    while ((opt = getopt(argc, argv, "H:T:u:c:t:w:s:r:R:h")) != -1) {
        switch (opt) {
        case 'H':
            host = optarg;
            break;
        case 'T':
            if (add_target(optarg) != 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'u':
            o.path = optarg;
            break;
        case 'c':
            o.conns = atoi(optarg);
            break;
        case 't':
            o.secs = atof(optarg);
            break;
        case 'w':
            o.warmup = atof(optarg);
            break;
        case 's':
            o.slice = atof(optarg);
            break;
        case 'r':
            o.returning_pct = atoi(optarg);
            break;
        case 'R':
            o.rate = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct in_addr ip;
    if (ntargets == 0 || inet_pton(AF_INET, host, &ip) != 1 || o.conns < 1 || o.conns > 10000 ||
        o.secs <= 0 || o.warmup < 0 || o.slice < 0.01 || o.returning_pct < 0 ||
        o.returning_pct > 100 || o.rate < 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < ntargets; i++) {
        targets[i].addr.sin_addr = ip;
    }
    rng ^= (uint64_t)now_ns();
    struct slot *slots = calloc((size_t)o.conns, sizeof(*slots));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (slots == NULL || ep < 0) {
        perror("ws_bench");
        return 1;
    }
    for (int i = 0; i < o.conns; i++) {
        slots[i].fd = -1;
    }
    int64_t t0 = now_ns();
    int64_t t_measure = t0 + (int64_t)(o.warmup * 1e9);
    int64_t t_end = t_measure + (int64_t)(o.secs * 1e9);
    int64_t slice_ns = ntargets > 1 ? (int64_t)(o.slice * 1e9) : t_end - t0 + 1;
    int64_t interval = o.rate > 0 ? (int64_t)(1e9 / o.rate) : 0;
    int64_t next_start = t0;
    int64_t last = t0;
    for (;;) {
        int64_t now = now_ns();
        /* The target of this slice: warm-up and measurement alike alternate. */
        struct target *cur = &targets[((now - t0) / slice_ns) % ntargets];
        if (!measuring && now >= t_measure) {
            measuring = true;
            last = now;
        }
        if (measuring) {
            /* time is charged to the slice's target, a loop turn at a time */
            cur->st.measured_ns += (now < t_end ? now : t_end) - last;
            last = now;
        }
        if (now >= t_end) {
            break;
        }
        for (int i = 0; i < o.conns; i++) {
            struct slot *s = &slots[i];
            if (s->state != SLOT_IDLE && now - s->start_ns > DEADLINE_NS) {
                slot_fail(ep, s);
            }
        }
        /* Start what the mode asks for: fill every idle slot, or keep the schedule. */
        if (interval == 0) {
            for (int i = 0; i < o.conns; i++) {
                if (slots[i].state == SLOT_IDLE) {
                    slot_start(ep, &slots[i], cur);
                }
            }
        } else {
            while (next_start <= now) {
                int i = 0;
                while (i < o.conns && slots[i].state != SLOT_IDLE) {
                    i++;
                }
                if (i < o.conns) {
                    slot_start(ep, &slots[i], cur);
                } else if (measuring) {
                    cur->st.missed++; /* every slot busy: the target rate is not reached */
                }
                next_start += interval;
            }
        }
        int timeout_ms = 10; /* short: slice changes are noticed within 10 ms */
        if (interval > 0) {
            int64_t wait = (next_start - now_ns()) / 1000000;
            timeout_ms = wait < 0 ? 0 : (int)(wait < 10 ? wait : 10);
        }
        struct epoll_event evs[512];
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        for (int i = 0; i < n; i++) {
            struct slot *s = evs[i].data.ptr;
            if (s->state == SLOT_CONNECTING) {
                slot_send(ep, s);
            } else if (s->state == SLOT_READING) {
                slot_read(ep, s);
            }
        }
    }
    for (int i = 0; i < o.conns; i++) {
        if (slots[i].state != SLOT_IDLE) {
            slot_close(ep, &slots[i]); /* cut at the end: neither done nor an error */
        }
    }
    bool ok = true;
    for (int i = 0; i < ntargets; i++) {
        struct stats *st = &targets[i].st;
        qsort(st->lat_us, st->nlat, sizeof(*st->lat_us), cmp_u32);
        report(&targets[i]);
        ok = ok && st->done > 0;
        free(st->lat_us);
    }
    free(slots);
    return ok ? 0 : 1;
}
