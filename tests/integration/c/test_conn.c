/* test_conn.c - drives the built agent/stickyd over real loopback sockets with
 * hand-encoded SPOP frames (independent of agent/spop.c): HELLO negotiation,
 * health checks, every DISCONNECT status the engine produces (others must be
 * unaffected), NOTIFY with 0/1/several messages checked byte for byte,
 * pipelining, one-byte writes, HAPROXY-DISCONNECT, abrupt closes, connection
 * limit, idle timeout, SIGHUP with a bad file, SIGTERM drain.
 *
 * STICKYD_BIN overrides the binary (e.g. a sanitizer build).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "check.h"

/* ---- a hand-written SPOP encoder/decoder (test-only) ------------------- */

struct fb {
    uint8_t b[70000];
    size_t len;
};

static void put_u8(struct fb *f, uint8_t v)
{
    f->b[f->len++] = v;
}

static void put_bytes(struct fb *f, const void *p, size_t n)
{
    memcpy(f->b + f->len, p, n);
    f->len += n;
}

/* SPOE.txt 3.1: values < 240 in one byte, then 4 bits + 7 bits per byte. */
static void put_varint(struct fb *f, uint64_t v)
{
    if (v < 240) {
        put_u8(f, (uint8_t)v);
        return;
    }
    put_u8(f, (uint8_t)(v | 240));
    v = (v - 240) >> 4;
    while (v >= 128) {
        put_u8(f, (uint8_t)(v | 128));
        v = (v - 128) >> 7;
    }
    put_u8(f, (uint8_t)v);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    if (*p >= end) {
        return -1;
    }
    uint64_t v = **p;
    (*p)++;
    if (v < 240) {
        *out = v;
        return 0;
    }
    unsigned shift = 4;
    for (;;) {
        if (*p >= end || shift > 63) {
            return -1;
        }
        uint8_t b = **p;
        (*p)++;
        v += (uint64_t)b << shift;
        shift += 7;
        if (b < 128) {
            break;
        }
    }
    *out = v;
    return 0;
}

static void put_str(struct fb *f, const char *s)
{
    put_varint(f, strlen(s));
    put_bytes(f, s, strlen(s));
}

static void kv_str(struct fb *f, const char *k, const char *v)
{
    put_str(f, k);
    put_u8(f, 8);
    put_str(f, v);
}

static void kv_u32(struct fb *f, const char *k, uint32_t v)
{
    put_str(f, k);
    put_u8(f, 3);
    put_varint(f, v);
}

static void kv_bool(struct fb *f, const char *k, bool v)
{
    put_str(f, k);
    put_u8(f, v ? 0x11 : 0x01);
}

/* Open a frame: 4-byte length placeholder, type, flags, ids. */
static size_t frame_begin(struct fb *f, uint8_t type, uint32_t flags, uint64_t sid, uint64_t fid)
{
    size_t start = f->len;
    f->len += 4;
    put_u8(f, type);
    uint32_t nf = htonl(flags);
    put_bytes(f, &nf, 4);
    put_varint(f, sid);
    put_varint(f, fid);
    return start;
}

static void frame_end(struct fb *f, size_t start)
{
    uint32_t n = htonl((uint32_t)(f->len - start - 4));
    memcpy(f->b + start, &n, 4);
}

enum { HELLO_VSN = 1, HELLO_MFS = 2, HELLO_CAPS = 4, HELLO_ALL = 7 };

static void hello(struct fb *f, unsigned what, const char *vsn, uint32_t mfs, bool hc)
{
    size_t s = frame_begin(f, 1, 1, 0, 0);
    if (what & HELLO_VSN) {
        kv_str(f, "supported-versions", vsn);
    }
    if (what & HELLO_MFS) {
        kv_u32(f, "max-frame-size", mfs);
    }
    if (what & HELLO_CAPS) {
        kv_str(f, "capabilities", "pipelining,async");
    }
    if (hc) {
        kv_bool(f, "healthcheck", true);
    }
    kv_str(f, "engine-id", "test-engine");
    frame_end(f, s);
}

struct frame {
    uint8_t type;
    uint32_t flags;
    uint64_t sid, fid;
    uint8_t payload[70000];
    size_t plen;
};

/* ---- sockets ------------------------------------------------------------ */

static int port;
static pid_t agent;
static char tmpdir[64];
static char no_redis[160];

static int connect_agent(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes within ms. 1 ok, 0 EOF/reset before, -1 timeout. */
static int read_n(int fd, uint8_t *p, size_t n, int ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int rc = poll(&pfd, 1, ms);
        if (rc == 0) {
            return -1;
        }
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return 0;
        }
        got += (size_t)r;
    }
    return 1;
}

/* 1 frame read, 0 EOF, -1 timeout/garbage. */
static int read_frame(int fd, struct frame *fr)
{
    uint8_t hdr[4];
    int rc = read_n(fd, hdr, 4, 3000);
    if (rc <= 0) {
        return rc;
    }
    uint32_t len;
    memcpy(&len, hdr, 4);
    len = ntohl(len);
    if (len < 7 || len > sizeof(fr->payload)) {
        return -1;
    }
    uint8_t body[70000];
    if (read_n(fd, body, len, 3000) != 1) {
        return -1;
    }
    const uint8_t *p = body, *end = body + len;
    fr->type = *p++;
    uint32_t fl;
    memcpy(&fl, p, 4);
    fr->flags = ntohl(fl);
    p += 4;
    if (get_varint(&p, end, &fr->sid) != 0 || get_varint(&p, end, &fr->fid) != 0) {
        return -1;
    }
    fr->plen = (size_t)(end - p);
    memcpy(fr->payload, p, fr->plen);
    return 1;
}

/* True when the peer closes (EOF or reset) within 3 s, with no more data. */
static bool expect_eof(int fd)
{
    uint8_t b[256];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 3000) <= 0) {
        return false;
    }
    ssize_t r = recv(fd, b, sizeof(b), 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* A decoded KV value, enough for HELLO/DISCONNECT replies. */
struct kv {
    char key[64];
    uint8_t type;
    uint64_t num;
    char str[300];
};

static int kv_find(const struct frame *fr, const char *key, struct kv *out)
{
    const uint8_t *p = fr->payload, *end = fr->payload + fr->plen;
    while (p < end) {
        uint64_t kl, v;
        if (get_varint(&p, end, &kl) != 0 || kl >= sizeof(out->key) || kl > (size_t)(end - p)) {
            return -1;
        }
        memcpy(out->key, p, kl);
        out->key[kl] = '\0';
        p += kl;
        if (p >= end) {
            return -1;
        }
        out->type = *p++ & 0x0f;
        out->num = 0;
        out->str[0] = '\0';
        switch (out->type) {
        case 0:
        case 1:
            out->num = (p[-1] & 0x10) != 0;
            break;
        case 2:
        case 3:
        case 4:
        case 5:
            if (get_varint(&p, end, &out->num) != 0) {
                return -1;
            }
            break;
        case 8:
        case 9:
            if (get_varint(&p, end, &v) != 0 || v >= sizeof(out->str) || v > (size_t)(end - p)) {
                return -1;
            }
            memcpy(out->str, p, v);
            out->str[v] = '\0';
            p += v;
            break;
        default:
            return -1;
        }
        if (strcmp(out->key, key) == 0) {
            return 0;
        }
    }
    return -1;
}

/* Connect and complete a HELLO with the given max-frame-size. -1 on failure. */
static int open_ready(int p, uint32_t mfs)
{
    int fd = connect_agent(p);
    if (fd < 0) {
        return -1;
    }
    static struct fb f;
    f.len = 0;
    hello(&f, HELLO_ALL, "2.0", mfs, false);
    static struct frame fr;
    if (send_all(fd, f.b, f.len) != 0 || read_frame(fd, &fr) != 1 || fr.type != 101) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Expect AGENT-DISCONNECT with `status`, then EOF. */
static void expect_disconnect(int fd, uint32_t status, const char *what)
{
    static struct frame fr;
    int rc = read_frame(fd, &fr);
    CHECK(rc == 1);
    if (rc != 1) {
        fprintf(stderr, "  %s: no frame (rc %d)\n", what, rc);
        return;
    }
    CHECK_EQ_INT(fr.type, 102);
    CHECK_EQ_INT(fr.flags & 1, 1);
    CHECK_EQ_INT(fr.sid, 0);
    CHECK_EQ_INT(fr.fid, 0);
    struct kv kv;
    CHECK(kv_find(&fr, "status-code", &kv) == 0);
    if (kv.num != status) {
        fprintf(stderr, "  %s: status %llu, expected %u\n", what, (unsigned long long)kv.num,
                (unsigned)status);
    }
    CHECK_EQ_INT(kv.num, status);
    CHECK(kv_find(&fr, "message", &kv) == 0 && kv.str[0] != '\0');
    CHECK(expect_eof(fd));
}

/* A NOTIFY with one "ping" message on fd; the ACK must come back. */
static bool ping_ok(int fd, uint64_t sid, uint64_t fid)
{
    static struct fb f;
    f.len = 0;
    size_t s = frame_begin(&f, 3, 1, sid, fid);
    put_str(&f, "ping");
    put_u8(&f, 0);
    frame_end(&f, s);
    static struct frame fr;
    if (send_all(fd, f.b, f.len) != 0 || read_frame(fd, &fr) != 1) {
        return false;
    }
    /* SET-VAR txn "pong" = int64 1 */
    static const uint8_t want[] = {1, 3, 2, 4, 'p', 'o', 'n', 'g', 4, 1};
    return fr.type == 103 && fr.sid == sid && fr.fid == fid && fr.plen == sizeof(want) &&
           memcmp(fr.payload, want, sizeof(want)) == 0;
}

/* ---- the agent process -------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* Start the agent with config text on a free port; waits until it accepts. */
static pid_t start_agent(const char *name, const char *config, int *out_port)
{
    const char *bin = getenv("STICKYD_BIN") ? getenv("STICKYD_BIN") : "agent/stickyd";
    char cfgpath[128], logpath[128], listen[64];
    snprintf(cfgpath, sizeof(cfgpath), "%s/%s.json", tmpdir, name);
    snprintf(logpath, sizeof(logpath), "%s/%s.log", tmpdir, name);
    write_file(cfgpath, config);
    int p = itest_free_port(SOCK_STREAM);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", p);
    pid_t pid = fork();
    if (pid == 0) {
        int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lfd >= 0) {
            dup2(lfd, 2);
        }
        execl(bin, bin, "--config", cfgpath, "--listen", listen, "--log-level",
              getenv("STICKYD_LOG_LEVEL") ? getenv("STICKYD_LOG_LEVEL") : "info", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = connect_agent(p);
        if (fd >= 0) {
            close(fd);
            *out_port = p;
            return pid;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            break;
        }
        usleep(10000);
    }
    fprintf(stderr, "agent %s did not start; see %s\n", name, logpath);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static bool alive(pid_t pid)
{
    return waitpid(pid, NULL, WNOHANG) == 0;
}

static void stop_agent(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* ---- tests --------------------------------------------------------------- */

static void test_hello(void)
{
    static const uint32_t offers[] = {16380, 1000, 256, 100000};
    for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
        int fd = connect_agent(port);
        CHECK(fd >= 0);
        static struct fb f;
        f.len = 0;
        hello(&f, HELLO_ALL, "1.0, 2.0", offers[i], false);
        static struct frame fr;
        CHECK(send_all(fd, f.b, f.len) == 0);
        CHECK_EQ_INT(read_frame(fd, &fr), 1);
        CHECK_EQ_INT(fr.type, 101);
        CHECK_EQ_INT(fr.flags, 1);
        CHECK_EQ_INT(fr.sid, 0);
        CHECK_EQ_INT(fr.fid, 0);
        struct kv kv;
        CHECK(kv_find(&fr, "version", &kv) == 0 && strcmp(kv.str, "2.0") == 0);
        CHECK(kv_find(&fr, "capabilities", &kv) == 0 && strcmp(kv.str, "pipelining") == 0);
        CHECK(kv_find(&fr, "max-frame-size", &kv) == 0);
        /* min(ours = 16380 by default, theirs) */
        uint32_t want = offers[i] < 16380 ? offers[i] : 16380;
        CHECK_EQ_INT(kv.num, want);
        CHECK(kv.num >= 256 && kv.num <= offers[i]);
        CHECK(ping_ok(fd, 1, 1));
        close(fd);
    }
}

static void test_healthcheck(void)
{
    int fd = connect_agent(port);
    static struct fb f;
    f.len = 0;
    hello(&f, HELLO_ALL, "2.0", 16380, true);
    static struct frame fr;
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK_EQ_INT(fr.type, 101);
    struct kv kv;
    CHECK(kv_find(&fr, "version", &kv) == 0 && strcmp(kv.str, "2.0") == 0);
    /* vanish with a reset, as HAProxy's checks do */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

struct errcase {
    const char *name;
    uint32_t status;
    void (*build)(struct fb *f);
};

static void b_bad_version(struct fb *f)
{
    hello(f, HELLO_ALL, "1.0", 16380, false);
}
static void b_no_version(struct fb *f)
{
    hello(f, HELLO_MFS | HELLO_CAPS, NULL, 16380, false);
}
static void b_no_mfs(struct fb *f)
{
    hello(f, HELLO_VSN | HELLO_CAPS, "2.0", 0, false);
}
static void b_no_caps(struct fb *f)
{
    hello(f, HELLO_VSN | HELLO_MFS, "2.0", 16380, false);
}
static void b_small_mfs(struct fb *f)
{
    hello(f, HELLO_ALL, "2.0", 100, false);
}
static void b_too_big_before_hello(struct fb *f)
{
    static const uint8_t len[4] = {0, 1, 0, 0}; /* 65536 > our 16380; no body sent */
    put_bytes(f, len, 4);
}
static void b_too_big_after_hello(struct fb *f)
{
    hello(f, HELLO_ALL, "2.0", 1000, false);
    size_t s = frame_begin(f, 3, 1, 1, 1);
    put_str(f, "ping");
    put_u8(f, 0);
    for (int i = 0; i < 1100; i++) {
        put_u8(f, 0); /* padding past the negotiated 1000 */
    }
    frame_end(f, s);
}
static void b_short_frame(struct fb *f)
{
    static const uint8_t fr[] = {0, 0, 0, 3, 1, 0, 0};
    put_bytes(f, fr, sizeof(fr));
}
static void b_bad_varint(struct fb *f)
{
    /* type HELLO, flags FIN, stream-id varint that never ends inside the frame */
    static const uint8_t fr[] = {0, 0, 0, 8, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff};
    put_bytes(f, fr, sizeof(fr));
}
static void b_notify_before_hello(struct fb *f)
{
    size_t s = frame_begin(f, 3, 1, 1, 1);
    put_str(f, "ping");
    put_u8(f, 0);
    frame_end(f, s);
}
static void b_not_fin(struct fb *f)
{
    hello(f, HELLO_ALL, "2.0", 16380, false);
    size_t s = frame_begin(f, 3, 0, 1, 1);
    put_str(f, "ping");
    put_u8(f, 0);
    frame_end(f, s);
}
static void b_unset(struct fb *f)
{
    hello(f, HELLO_ALL, "2.0", 16380, false);
    size_t s = frame_begin(f, 0, 1, 1, 1);
    put_str(f, "ping");
    put_u8(f, 0);
    frame_end(f, s);
}
static void b_bad_notify(struct fb *f)
{
    hello(f, HELLO_ALL, "2.0", 16380, false);
    size_t s = frame_begin(f, 3, 1, 1, 1);
    put_str(f, "echo");
    put_u8(f, 2); /* two args announced, one given */
    kv_str(f, "a", "x");
    frame_end(f, s);
    /* and a good NOTIFY after it that must not be answered */
    s = frame_begin(f, 3, 1, 1, 2);
    put_str(f, "ping");
    put_u8(f, 0);
    frame_end(f, s);
}

static void test_errors(void)
{
    static const struct errcase cases[] = {
        {"bad version", 8, b_bad_version},
        {"no supported-versions", 5, b_no_version},
        {"no max-frame-size", 6, b_no_mfs},
        {"no capabilities", 7, b_no_caps},
        {"max-frame-size < 256", 9, b_small_mfs},
        {"too big before HELLO", 3, b_too_big_before_hello},
        {"too big after HELLO", 3, b_too_big_after_hello},
        {"frame too short", 4, b_short_frame},
        {"bad varint", 4, b_bad_varint},
        {"NOTIFY before HELLO", 4, b_notify_before_hello},
        {"NOTIFY without FIN", 10, b_not_fin},
        {"frame type UNSET", 10, b_unset},
        {"malformed NOTIFY", 4, b_bad_notify},
    };
    int bystander = open_ready(port, 16380);
    CHECK(bystander >= 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = connect_agent(port);
        CHECK(fd >= 0);
        static struct fb f;
        f.len = 0;
        cases[i].build(&f);
        CHECK(send_all(fd, f.b, f.len) == 0);
        static struct frame fr;
        /* cases that start with a valid HELLO get an AGENT-HELLO first */
        bool valid_hello_first = cases[i].build == b_too_big_after_hello ||
                                 cases[i].build == b_not_fin || cases[i].build == b_unset ||
                                 cases[i].build == b_bad_notify;
        if (valid_hello_first) {
            CHECK_EQ_INT(read_frame(fd, &fr), 1);
            CHECK_EQ_INT(fr.type, 101);
        }
        expect_disconnect(fd, cases[i].status, cases[i].name);
        close(fd);
        if (!ping_ok(bystander, 7, i + 1)) {
            fprintf(stderr, "  bystander broken after '%s'\n", cases[i].name);
            CHECK(false);
        }
    }
    close(bystander);
}

static void test_notify(void)
{
    int fd = open_ready(port, 16380);
    CHECK(fd >= 0);
    static struct fb f;
    static struct frame fr;

    /* no message at all: one harmless UNSET-VAR txn.noop */
    f.len = 0;
    size_t s = frame_begin(&f, 3, 1, 5, 9);
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    static const uint8_t noop[] = {2, 2, 2, 4, 'n', 'o', 'o', 'p'};
    CHECK_EQ_INT(fr.type, 103);
    CHECK_EQ_INT(fr.flags, 1);
    CHECK_EQ_INT(fr.sid, 5);
    CHECK_EQ_INT(fr.fid, 9);
    CHECK(fr.plen == sizeof(noop) && memcmp(fr.payload, noop, sizeof(noop)) == 0);

    /* one echo message, four typed args, large ids */
    f.len = 0;
    s = frame_begin(&f, 3, 1, 300000, 70000);
    put_str(&f, "echo");
    put_u8(&f, 4);
    kv_str(&f, "s", "hello");
    kv_u32(&f, "u", 70000);
    kv_bool(&f, "b", true);
    put_str(&f, "i");
    put_u8(&f, 4); /* int64 12345 */
    put_varint(&f, 12345);
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    struct fb want = {.len = 0};
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "s");
    put_u8(&want, 8), put_str(&want, "hello");
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "u");
    put_u8(&want, 3), put_varint(&want, 70000);
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "b");
    put_u8(&want, 0x11);
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "i");
    put_u8(&want, 4), put_varint(&want, 12345);
    CHECK_EQ_INT(fr.type, 103);
    CHECK_EQ_INT(fr.sid, 300000);
    CHECK_EQ_INT(fr.fid, 70000);
    CHECK_EQ_INT(fr.plen, want.len);
    CHECK(fr.plen == want.len && memcmp(fr.payload, want.b, want.len) == 0);

    /* several: ping, an unknown message, echo */
    f.len = 0;
    s = frame_begin(&f, 3, 1, 6, 10);
    put_str(&f, "ping");
    put_u8(&f, 0);
    put_str(&f, "no-such-message");
    put_u8(&f, 1);
    kv_str(&f, "x", "ignored");
    put_str(&f, "echo");
    put_u8(&f, 1);
    kv_str(&f, "k", "v");
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    want.len = 0;
    static const uint8_t pong[] = {1, 3, 2, 4, 'p', 'o', 'n', 'g', 4, 1};
    put_bytes(&want, pong, sizeof(pong));
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "k");
    put_u8(&want, 8), put_str(&want, "v");
    CHECK_EQ_INT(fr.sid, 6);
    CHECK_EQ_INT(fr.fid, 10);
    CHECK(fr.plen == want.len && memcmp(fr.payload, want.b, want.len) == 0);

    /* only unknown messages: still one harmless action */
    f.len = 0;
    s = frame_begin(&f, 3, 1, 6, 11);
    put_str(&f, "no-such-message");
    put_u8(&f, 0);
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK(fr.plen == sizeof(noop) && memcmp(fr.payload, noop, sizeof(noop)) == 0);

    /* an unknown frame type after HELLO is skipped */
    f.len = 0;
    s = frame_begin(&f, 42, 1, 0, 0);
    put_u8(&f, 0);
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK(ping_ok(fd, 8, 12));

    close(fd);
}

static void test_overflow(void)
{
    /* Negotiated 400: actions may take 400 - 7 (ACK header with 1-byte ids)
     * = 393 bytes. 60 "ping" messages fit a 400-byte NOTIFY (6 bytes each) but
     * ask for 60 x 10 bytes of actions: 39 fit, the rest are dropped, and the
     * ACK still goes out. */
    int fd = open_ready(port, 400);
    CHECK(fd >= 0);
    static struct fb f;
    static struct frame fr;
    f.len = 0;
    size_t s = frame_begin(&f, 3, 1, 1, 1);
    for (int i = 0; i < 60; i++) {
        put_str(&f, "ping");
        put_u8(&f, 0);
    }
    frame_end(&f, s);
    CHECK(f.len - 4 <= 400);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK_EQ_INT(fr.type, 103);
    CHECK_EQ_INT(fr.plen, 390);
    static const uint8_t pong[] = {1, 3, 2, 4, 'p', 'o', 'n', 'g', 4, 1};
    int n = 0;
    for (size_t off = 0; off + sizeof(pong) <= fr.plen; off += sizeof(pong)) {
        n += memcmp(fr.payload + off, pong, sizeof(pong)) == 0;
    }
    CHECK_EQ_INT(n, 39);
    CHECK(ping_ok(fd, 1, 2));
    close(fd);
}

static void test_pipelined(void)
{
    int fd = open_ready(port, 16380);
    CHECK(fd >= 0);
    static struct fb f;
    static struct frame fr;
    f.len = 0;
    enum { N = 32 };
    for (int i = 0; i < N; i++) {
        size_t s = frame_begin(&f, 3, 1, 1000 + (uint64_t)i, 1 + (uint64_t)i);
        put_str(&f, "ping");
        put_u8(&f, 0);
        frame_end(&f, s);
    }
    CHECK(send_all(fd, f.b, f.len) == 0);
    bool seen[N] = {false};
    int got = 0;
    for (int i = 0; i < N; i++) {
        if (read_frame(fd, &fr) != 1 || fr.type != 103) {
            break;
        }
        if (fr.fid >= 1 && fr.fid <= N && fr.sid == 1000 + fr.fid - 1 && !seen[fr.fid - 1]) {
            seen[fr.fid - 1] = true;
            got++;
        }
    }
    CHECK_EQ_INT(got, N);
    close(fd);
}

static void test_byte_at_a_time(void)
{
    int fd = connect_agent(port);
    static struct fb f;
    static struct frame fr;
    f.len = 0;
    hello(&f, HELLO_ALL, "2.0", 16380, false);
    size_t s = frame_begin(&f, 3, 1, 77, 88);
    put_str(&f, "echo");
    put_u8(&f, 1);
    kv_str(&f, "one", "byte");
    frame_end(&f, s);
    bool ok = true;
    for (size_t i = 0; i < f.len && ok; i++) {
        ok = send_all(fd, f.b + i, 1) == 0;
        usleep(500);
    }
    CHECK(ok);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK_EQ_INT(fr.type, 101);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK_EQ_INT(fr.type, 103);
    CHECK_EQ_INT(fr.sid, 77);
    CHECK_EQ_INT(fr.fid, 88);
    struct fb want = {.len = 0};
    put_u8(&want, 1), put_u8(&want, 3), put_u8(&want, 2), put_str(&want, "one");
    put_u8(&want, 8), put_str(&want, "byte");
    CHECK(fr.plen == want.len && memcmp(fr.payload, want.b, want.len) == 0);
    close(fd);
}

static void test_haproxy_disconnect(void)
{
    int fd = open_ready(port, 16380);
    CHECK(fd >= 0);
    static struct fb f;
    f.len = 0;
    size_t s = frame_begin(&f, 2, 1, 0, 0);
    kv_u32(&f, "status-code", 0);
    kv_str(&f, "message", "normal");
    frame_end(&f, s);
    CHECK(send_all(fd, f.b, f.len) == 0);
    expect_disconnect(fd, 0, "HAPROXY-DISCONNECT");
    close(fd);
}

static void test_abrupt(void)
{
    static struct fb f;
    for (int mode = 0; mode < 3; mode++) {
        int fd = connect_agent(port);
        f.len = 0;
        hello(&f, HELLO_ALL, "2.0", 16380, false);
        size_t s = frame_begin(&f, 3, 1, 1, 1);
        put_str(&f, "echo");
        put_u8(&f, 1);
        kv_str(&f, "a", "b");
        frame_end(&f, s);
        /* mode 0: close mid-HELLO; 1: mid-NOTIFY; 2: mid-NOTIFY with a reset */
        size_t cut = mode == 0 ? 10 : f.len - 3;
        CHECK(send_all(fd, f.b, cut) == 0);
        usleep(20000);
        if (mode == 2) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(fd);
    }
    /* many NOTIFYs sent, connection gone before reading ACKs */
    int fd = open_ready(port, 16380);
    f.len = 0;
    for (int i = 0; i < 200; i++) {
        size_t s = frame_begin(&f, 3, 1, 1, (uint64_t)i + 1);
        put_str(&f, "ping");
        put_u8(&f, 0);
        frame_end(&f, s);
    }
    CHECK(send_all(fd, f.b, f.len) == 0);
    close(fd);
    usleep(50000);
    fd = open_ready(port, 16380);
    CHECK(fd >= 0 && ping_ok(fd, 2, 2));
    close(fd);
    CHECK(alive(agent));
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

/* A peer that sends up to 60 MB of NOTIFYs and reads no ACK: the agent must stop
 * reading (its memory does not grow by the ACKs it would otherwise queue),
 * keep serving others, and resume once the peer reads: every NOTIFY is ACKed. */
static void test_backpressure(void)
{
    int fd = connect_agent(port);
    CHECK(fd >= 0);
    static struct fb f;
    static struct frame fr;
    f.len = 0;
    hello(&f, HELLO_ALL, "2.0", 16380, false);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    long rss0 = rss_kb(agent);
    char big[1001];
    memset(big, 'q', 1000);
    big[1000] = '\0';
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    enum { N = 60000 };
    int sent = 0;
    size_t rest_off = 0, rest_len = 0;
    for (int i = 0; i < N; i++) {
        f.len = 0;
        size_t s = frame_begin(&f, 3, 1, 1, (uint64_t)i + 1);
        put_str(&f, "echo");
        put_u8(&f, 1);
        kv_str(&f, "v", big);
        frame_end(&f, s);
        ssize_t w = send(fd, f.b, f.len, MSG_NOSIGNAL);
        if (w < 0) {
            w = 0;
        }
        if ((size_t)w != f.len) {
            if (w > 0) {
                sent++; /* the rest of this frame is sent while draining */
                rest_off = (size_t)w;
                rest_len = f.len - (size_t)w;
            }
            break;
        }
        sent++;
    }
    usleep(100000);
    long rss1 = rss_kb(agent);
    printf("back-pressure: stalled after %d NOTIFYs (%.1f MB), agent RSS %+ld kB\n", sent,
           sent * 1.0e-3, rss1 - rss0);
    CHECK(sent < N);
    /* without back-pressure the agent would hold ~1 kB of ACK per NOTIFY read */
    CHECK(rss1 - rss0 < 24 * 1024);
    int other = open_ready(port, 16380);
    CHECK(other >= 0 && ping_ok(other, 3, 3));
    close(other);

    /* read every ACK (finishing the partial frame as the agent reads again) */
    int acked = 0;
    uint64_t next_fid = 1;
    bool in_order = true;
    static uint8_t rb[1 << 16];
    size_t rlen = 0;
    for (int idle = 0; acked < sent && idle < 300;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (rest_len ? POLLOUT : 0)};
        if (poll(&pfd, 1, 10) <= 0) {
            idle++;
            continue;
        }
        if ((pfd.revents & POLLOUT) && rest_len > 0) {
            ssize_t w = send(fd, f.b + rest_off, rest_len, MSG_NOSIGNAL);
            if (w > 0) {
                rest_off += (size_t)w;
                rest_len -= (size_t)w;
            }
        }
        if (pfd.revents & POLLIN) {
            ssize_t r = recv(fd, rb + rlen, sizeof(rb) - rlen, 0);
            if (r <= 0) {
                break;
            }
            rlen += (size_t)r;
            size_t off = 0;
            while (rlen - off >= 4) {
                uint32_t len;
                memcpy(&len, rb + off, 4);
                len = ntohl(len);
                if (rlen - off < 4 + len) {
                    break;
                }
                const uint8_t *p = rb + off + 5 + 4, *end = rb + off + 4 + len;
                uint64_t sid, fid;
                if (rb[off + 4] != 103 || get_varint(&p, end, &sid) != 0 ||
                    get_varint(&p, end, &fid) != 0 || fid != next_fid) {
                    in_order = false;
                }
                next_fid = fid + 1;
                acked++;
                off += 4 + len;
            }
            memmove(rb, rb + off, rlen - off);
            rlen -= off;
        }
    }
    CHECK_EQ_INT(acked, sent);
    CHECK(in_order);
    close(fd);
    CHECK(alive(agent));
}

static void test_limit_and_idle(void)
{
    int p2;
    char text[256];
    snprintf(text, sizeof(text),
             "{\"max_connections\": 2, \"idle_timeout\": \"300ms\", %s}\n", no_redis);
    pid_t a2 = start_agent("limits", text, &p2);
    CHECK(a2 > 0);
    if (a2 <= 0) {
        return;
    }
    /* start_agent's probe connection may still count for an instant */
    usleep(50000);
    int a = open_ready(p2, 16380);
    int b = open_ready(p2, 16380);
    CHECK(a >= 0 && b >= 0);
    int c = connect_agent(p2);
    CHECK(c >= 0);
    CHECK(expect_eof(c)); /* accepted, then closed at once */
    close(c);
    CHECK(ping_ok(a, 1, 1));
    /* idle: nothing for 300 ms -> AGENT-DISCONNECT(2 timeout) */
    expect_disconnect(b, 2, "idle timeout");
    close(a);
    close(b);
    kill(a2, SIGTERM);
    int st = -1;
    CHECK(waitpid(a2, &st, 0) == a2 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_sighup_bad_config(void)
{
    int fd = open_ready(port, 16380);
    CHECK(fd >= 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/main.json", tmpdir);
    write_file(path, "{ \"max_connections\": \n");
    kill(agent, SIGHUP);
    usleep(200000);
    CHECK(alive(agent));
    CHECK(ping_ok(fd, 4, 4));
    int fd2 = open_ready(port, 16380);
    CHECK(fd2 >= 0 && ping_ok(fd2, 5, 5));
    close(fd2);
    /* a good file reloads */
    char text[512];
    snprintf(text, sizeof(text), "{\"max_connections\": 100, %s, \"unix_socket\": \"%s/spop.sock\"}\n",
             no_redis, tmpdir);
    write_file(path, text);
    kill(agent, SIGHUP);
    usleep(100000);
    CHECK(alive(agent));
    CHECK(ping_ok(fd, 4, 6));
    kill(agent, SIGUSR1);
    usleep(50000);
    CHECK(ping_ok(fd, 4, 7));
    close(fd);
}

/* Many HAProxy connections at once, each with a frame in flight. */
static void test_many(void)
{
    enum { M = 100 };
    int fds[M];
    int ok = 0;
    for (int i = 0; i < M; i++) {
        fds[i] = open_ready(port, 16380);
    }
    static struct fb f;
    for (int i = 0; i < M; i++) {
        f.len = 0;
        size_t s = frame_begin(&f, 3, 1, (uint64_t)i, 1);
        put_str(&f, "ping");
        put_u8(&f, 0);
        frame_end(&f, s);
        if (fds[i] >= 0) {
            (void)send_all(fds[i], f.b, f.len);
        }
    }
    static struct frame fr;
    for (int i = 0; i < M; i++) {
        if (fds[i] >= 0 && read_frame(fds[i], &fr) == 1 && fr.type == 103 &&
            fr.sid == (uint64_t)i) {
            ok++;
        }
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    CHECK_EQ_INT(ok, M);
}

/* The optional unix socket listener speaks the same protocol. */
static void test_unix(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%.60s/spop.sock", tmpdir);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0);
    static struct fb f;
    static struct frame fr;
    f.len = 0;
    hello(&f, HELLO_ALL, "2.0", 16380, false);
    CHECK(send_all(fd, f.b, f.len) == 0);
    CHECK_EQ_INT(read_frame(fd, &fr), 1);
    CHECK_EQ_INT(fr.type, 101);
    CHECK(ping_ok(fd, 9, 9));
    close(fd);
}

/* --check-config: "configuration OK" and 0, or file:line:col and 1. */
static void test_check_config(void)
{
    const char *bin = getenv("STICKYD_BIN") ? getenv("STICKYD_BIN") : "agent/stickyd";
    char good[128], bad[128], cmd[512], out[512];
    snprintf(good, sizeof(good), "%s/good.json", tmpdir);
    snprintf(bad, sizeof(bad), "%s/bad.json", tmpdir);
    write_file(good, "{\"max_connections\": 10}\n");
    write_file(bad, "{\n  \"max_connections\": 0\n}\n");
    snprintf(cmd, sizeof(cmd), "%s --check-config --config %s 2>&1", bin, good);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    int st = p ? pclose(p) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strstr(out, "configuration OK") != NULL);
    snprintf(cmd, sizeof(cmd), "%s --check-config -c %s 2>&1", bin, bad);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
    out[n] = '\0';
    st = p ? pclose(p) : -1;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char want[160];
    snprintf(want, sizeof(want), "%s:2:", bad);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "configuration OK") == NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_sigterm(void)
{
    int fd = open_ready(port, 16380);
    int fd2 = open_ready(port, 16380);
    CHECK(fd >= 0 && fd2 >= 0);
    double t0 = now_s();
    kill(agent, SIGTERM);
    expect_disconnect(fd, 0, "SIGTERM");
    expect_disconnect(fd2, 0, "SIGTERM 2");
    close(fd);
    close(fd2);
    int st = -1;
    pid_t w = 0;
    while ((w = waitpid(agent, &st, WNOHANG)) == 0 && now_s() - t0 < 5.0) {
        usleep(10000);
    }
    double dt = now_s() - t0;
    CHECK(w == agent && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the drain bound is part of the contract, not a speed figure */
    CHECK(dt < 2.0);
    printf("SIGTERM to exit: %.3f s\n", dt);
    agent = -1;
    /* listener is gone */
    CHECK(connect_agent(port) < 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_conn.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    /* Redis is never needed here: point the store at a socket that does not exist */
    snprintf(no_redis, sizeof(no_redis), "\"redis\": {\"unix\": \"%s/no-redis.sock\"}", tmpdir);
    char maincfg[512];
    snprintf(maincfg, sizeof(maincfg), "{\"unix_socket\": \"%s/spop.sock\", %s}\n", tmpdir,
             no_redis);
    agent = start_agent("main", maincfg, &port);
    CHECK(agent > 0);
    if (agent > 0) {
        test_hello();
        test_healthcheck();
        test_errors();
        test_notify();
        test_overflow();
        test_pipelined();
        test_byte_at_a_time();
        test_haproxy_disconnect();
        test_abrupt();
        test_backpressure();
        test_unix();
        test_many();
        test_sighup_bad_config();
        CHECK(alive(agent));
        test_sigterm();
    }
    test_limit_and_idle();
    test_check_config();
    stop_agent(agent);
    if (check_failed == 0 && getenv("KEEP_LOGS") == NULL) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0) {
            fprintf(stderr, "cleanup of %s failed\n", tmpdir);
        }
    } else {
        fprintf(stderr, "agent logs kept in %s\n", tmpdir);
    }
    return check_summary("test_conn");
}
