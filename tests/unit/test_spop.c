/* test_spop.c - the SPOP codec against literal bytes.
 *
 * Vectors are either spelled out from SPOE.txt or captured from a real
 * HAProxy 2.6. Every decoder input that matters is also placed at the very end
 * of a readable page followed by a PROT_NONE page, so an over-read crashes.
 */
#include "check.h"
#include "spop.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- guard page ------------------------------------------------------------ */

static uint8_t *guard_base;
static size_t guard_page;

static void guard_init(void)
{
    guard_page = (size_t)sysconf(_SC_PAGESIZE);
    void *m =
        mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect((uint8_t *)m + guard_page, guard_page, PROT_NONE) != 0) {
        perror("guard page");
        exit(2);
    }
    guard_base = m;
}

/* Copy n bytes so that they end exactly where the inaccessible page begins. */
static const uint8_t *guard_put(const void *p, size_t n)
{
    if (n > guard_page) {
        fprintf(stderr, "guard_put: %zu bytes do not fit a page\n", n);
        exit(2);
    }
    uint8_t *dst = guard_base + guard_page - n;
    if (n != 0) {
        memcpy(dst, p, n);
    }
    return dst;
}

/* The guard is real: a child reading one byte past the page dies (SIGSEGV, or
 * a non-zero exit when ASan's handler reports it). */
static void test_guard_works(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, STDERR_FILENO); /* the expected crash report is noise */
        }
        /* the kernel's default action: under ASan (run with allow_user_segv_handler=1
         * by the sanitizer tier) this intended crash then files no report */
        signal(SIGSEGV, SIG_DFL);
        const volatile uint8_t *past = guard_base + guard_page;
        uint8_t b = *past;
        _exit(b == 0xA5 ? 3 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) ||
          (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3));
}

/* ---- frames captured from HAProxy 2.6.12 -------------------------------------
 * Captured with tests/unit/capture_spop.py: a python agent on 127.0.0.1 behind
 * /usr/sbin/haproxy 2.6.12 (Debian), frontend `filter spoe engine e`, agent
 * `messages m`, `option var-prefix sticky`, `timeout idle 1s`, message
 *   args sid=str(abc) n=int(-5) big=int(1000) t=bool(1) ip=ipv4(10.1.2.3)
 *        ip6=ipv6(::1) src nothing=var(txn.none)
 * and `option spop-check` on the SPOE backend. One request through haproxy
 * (the agent answered SET-VAR txn.sticky.server "s1" and haproxy returned it),
 * then 2.5 s of silence for the idle DISCONNECT. */

/* connection 1: the health check's HAPROXY-HELLO (healthcheck true, no engine-id) */
static const uint8_t cap_hello_check[] = {
    0x00, 0x00, 0x00, 0x4e, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x12, 0x73, 0x75,
    0x70, 0x70, 0x6f, 0x72, 0x74, 0x65, 0x64, 0x2d, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f,
    0x6e, 0x73, 0x08, 0x03, 0x32, 0x2e, 0x30, 0x0e, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x72,
    0x61, 0x6d, 0x65, 0x2d, 0x73, 0x69, 0x7a, 0x65, 0x03, 0xfc, 0xf0, 0x06, 0x0c, 0x63,
    0x61, 0x70, 0x61, 0x62, 0x69, 0x6c, 0x69, 0x74, 0x69, 0x65, 0x73, 0x08, 0x00, 0x0b,
    0x68, 0x65, 0x61, 0x6c, 0x74, 0x68, 0x63, 0x68, 0x65, 0x63, 0x6b, 0x11,
};

/* connection 2: the stream's HAPROXY-HELLO */
static const uint8_t cap_hello[] = {
    0x00, 0x00, 0x00, 0x81, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x12, 0x73, 0x75, 0x70,
    0x70, 0x6f, 0x72, 0x74, 0x65, 0x64, 0x2d, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x73,
    0x08, 0x03, 0x32, 0x2e, 0x30, 0x0e, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x72, 0x61, 0x6d, 0x65,
    0x2d, 0x73, 0x69, 0x7a, 0x65, 0x03, 0xfc, 0xf0, 0x06, 0x0c, 0x63, 0x61, 0x70, 0x61, 0x62,
    0x69, 0x6c, 0x69, 0x74, 0x69, 0x65, 0x73, 0x08, 0x10, 0x70, 0x69, 0x70, 0x65, 0x6c, 0x69,
    0x6e, 0x69, 0x6e, 0x67, 0x2c, 0x61, 0x73, 0x79, 0x6e, 0x63, 0x09, 0x65, 0x6e, 0x67, 0x69,
    0x6e, 0x65, 0x2d, 0x69, 0x64, 0x08, 0x24, 0x32, 0x65, 0x62, 0x63, 0x32, 0x64, 0x38, 0x63,
    0x2d, 0x65, 0x32, 0x37, 0x37, 0x2d, 0x34, 0x31, 0x34, 0x66, 0x2d, 0x62, 0x30, 0x64, 0x33,
    0x2d, 0x39, 0x65, 0x33, 0x61, 0x66, 0x65, 0x66, 0x61, 0x62, 0x38, 0x36, 0x32,
};

/* connection 2: NOTIFY stream 0 frame 1, message "m" with 8 args */
static const uint8_t cap_notify[] = {
    0x00, 0x00, 0x00, 0x56, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0x6d, 0x08, 0x03,
    0x73, 0x69, 0x64, 0x08, 0x03, 0x61, 0x62, 0x63, 0x01, 0x6e, 0x04, 0xfb, 0xf0, 0xfe, 0xfe,
    0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e, 0x03, 0x62, 0x69, 0x67, 0x04, 0xf8, 0x2f, 0x01, 0x74,
    0x11, 0x02, 0x69, 0x70, 0x06, 0x0a, 0x01, 0x02, 0x03, 0x03, 0x69, 0x70, 0x36, 0x07, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x06, 0x7f, 0x00, 0x00, 0x01, 0x07, 0x6e, 0x6f, 0x74, 0x68, 0x69, 0x6e, 0x67, 0x00,
};

/* connection 2: HAPROXY-DISCONNECT after `timeout idle`: status 2 */
static const uint8_t cap_disconnect[] = {
    0x00, 0x00, 0x00, 0x31, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0b, 0x73, 0x74,
    0x61, 0x74, 0x75, 0x73, 0x2d, 0x63, 0x6f, 0x64, 0x65, 0x03, 0x02, 0x07, 0x6d, 0x65,
    0x73, 0x73, 0x61, 0x67, 0x65, 0x08, 0x12, 0x61, 0x20, 0x74, 0x69, 0x6d, 0x65, 0x6f,
    0x75, 0x74, 0x20, 0x6f, 0x63, 0x63, 0x75, 0x72, 0x72, 0x65, 0x64,
};

/* An AGENT-HELLO as SPOE.txt 3.2.6 describes it, spelled out by hand:
 * version "2.0", max-frame-size 16380, capabilities "pipelining". */
static const uint8_t lit_agent_hello[] = {
    0x00, 0x00, 0x00, 0x40,                   /* length 64 */
    0x65, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* AGENT-HELLO, FIN, sid 0, fid 0 */
    0x07, 'v',  'e',  'r',  's',  'i',  'o',  'n', 0x08, 0x03, '2', '.', '0',
    0x0e, 'm',  'a',  'x',  '-',  'f',  'r',  'a', 'm',  'e',  '-', 's', 'i',
    'z',  'e',  0x03, 0xfc, 0xf0, 0x06, /* UINT32 16380 */
    0x0c, 'c',  'a',  'p',  'a',  'b',  'i',  'l', 'i',  't',  'i', 'e', 's',
    0x08, 0x0a, 'p',  'i',  'p',  'e',  'l',  'i', 'n',  'i',  'n', 'g',
};

/* ACK stream 1000 frame 1: SET-VAR txn "server" = "s1"; UNSET-VAR txn "noop" */
static const uint8_t lit_ack[] = {
    0x00, 0x00, 0x00, 0x1e,                         /* length 30 */
    0x67, 0x00, 0x00, 0x00, 0x01, 0xf8, 0x2f, 0x01, /* ACK, FIN, sid 1000, fid 1 */
    0x01, 0x03, 0x02, 0x06, 's',  'e',  'r',  'v',  'e', 'r', 0x08,
    0x02, 's',  '1',  0x02, 0x02, 0x02, 0x04, 'n',  'o', 'o', 'p',
};

/* ---- varints ---------------------------------------------------------------- */

struct vcase {
    uint64_t v;
    size_t len;
};

/* Every boundary of the length classes, from SPOE.txt 3.1's scheme. */
static const struct vcase varint_bounds[] = {
    {0, 1},
    {239, 1},
    {240, 2},
    {2287, 2},
    {2288, 3},
    {264431, 3},
    {264432, 4},
    {33818863, 4},
    {33818864, 5},
    {4328786159ull, 5},
    {4328786160ull, 6},
    {554084600047ull, 6},
    {554084600048ull, 7},
    {70922828777711ull, 7},
    {70922828777712ull, 8},
    {9078122083518703ull, 8},
    {9078122083518704ull, 9},
    {1161999626690365679ull, 9},
    {1161999626690365680ull, 10},
    {UINT64_MAX, 10},
};

static void test_varint_bounds(void)
{
    for (size_t i = 0; i < ARRAY_LEN(varint_bounds); i++) {
        uint8_t buf[SPOP_VARINT_MAX];
        size_t n = spop_varint_encode(varint_bounds[i].v, buf);
        CHECK_EQ_INT(n, varint_bounds[i].len);
        /* exact bytes, at a page end */
        const uint8_t *g = guard_put(buf, n);
        uint64_t out = 0;
        CHECK_EQ_INT(spop_varint_decode(g, g + n, &out), n);
        CHECK(out == varint_bounds[i].v);
        /* every truncation needs more, never malformed */
        for (size_t k = 0; k < n; k++) {
            g = guard_put(buf, k);
            CHECK_EQ_INT(spop_varint_decode(g, g + k, &out), 0);
        }
        /* bytes after the varint are not consumed */
        uint8_t more[SPOP_VARINT_MAX + 2];
        memcpy(more, buf, n);
        more[n] = 0xff;
        more[n + 1] = 0xff;
        CHECK_EQ_INT(spop_varint_decode(more, more + n + 2, &out), n);
        CHECK(out == varint_bounds[i].v);
        /* the writer produces the same bytes */
        uint8_t wb[16];
        struct spop_writer w;
        spop_w_init(&w, wb, sizeof(wb), 0);
        spop_w_varint(&w, varint_bounds[i].v);
        CHECK(!w.failed && w.len == n && memcmp(wb, buf, n) == 0);
    }
}

struct vlit {
    uint64_t v;
    uint8_t bytes[SPOP_VARINT_MAX];
    size_t len;
};

static const struct vlit varint_lits[] = {
    {0, {0x00}, 1},
    {1, {0x01}, 1},
    {239, {0xef}, 1},
    {240, {0xf0, 0x00}, 2},
    {1000, {0xf8, 0x2f}, 2}, /* SPOE.txt's own example */
    {2287, {0xff, 0x7f}, 2},
    {2288, {0xf0, 0x80, 0x00}, 3},
    {16380, {0xfc, 0xf0, 0x06}, 3}, /* HAProxy's max-frame-size, as captured */
    {UINT64_MAX - 4, {0xfb, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e}, 10}, /* -5 */
    {UINT64_MAX, {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e}, 10},
    {(uint64_t)INT64_MAX, {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x06}, 10},
};

static void test_varint_literals(void)
{
    for (size_t i = 0; i < ARRAY_LEN(varint_lits); i++) {
        const struct vlit *l = &varint_lits[i];
        uint8_t buf[SPOP_VARINT_MAX];
        size_t n = spop_varint_encode(l->v, buf);
        CHECK(n == l->len && memcmp(buf, l->bytes, n) == 0);
        uint64_t out = 0;
        const uint8_t *g = guard_put(l->bytes, l->len);
        CHECK_EQ_INT(spop_varint_decode(g, g + l->len, &out), l->len);
        CHECK(out == l->v);
    }
}

static void test_varint_malformed(void)
{
    uint64_t out = 42;
    /* 11 bytes: ten continuation bytes then a terminator. Malformed at the
     * 10th byte already, whatever follows. */
    static const uint8_t eleven[] = {0xf0, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x00};
    const uint8_t *g = guard_put(eleven, sizeof(eleven));
    CHECK_EQ_INT(spop_varint_decode(g, g + sizeof(eleven), &out), -1);
    g = guard_put(eleven, 10);
    CHECK_EQ_INT(spop_varint_decode(g, g + 10, &out), -1);
    /* but nine continuation bytes just need more */
    g = guard_put(eleven, 9);
    CHECK_EQ_INT(spop_varint_decode(g, g + 9, &out), 0);
    /* 10th byte carrying more than the 4 bits left of a uint64 */
    static const uint8_t wrap[] = {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x10};
    g = guard_put(wrap, sizeof(wrap));
    CHECK_EQ_INT(spop_varint_decode(g, g + sizeof(wrap), &out), -1);
    /* in range of the last byte but the sum wraps past UINT64_MAX */
    static const uint8_t wrap2[] = {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f};
    g = guard_put(wrap2, sizeof(wrap2));
    CHECK_EQ_INT(spop_varint_decode(g, g + sizeof(wrap2), &out), -1);
    CHECK(out == 42); /* untouched on failure */
    /* empty input needs more */
    CHECK_EQ_INT(spop_varint_decode(g + sizeof(wrap2), g + sizeof(wrap2), &out), 0);
}

/* ---- typed data ------------------------------------------------------------- */

struct dcase {
    const char *what;
    uint8_t bytes[24];
    size_t len;
    struct spop_data d;
};

static struct spop_data mk_ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t e)
{
    struct spop_data d = {.type = SPOP_T_IPV4};
    d.u.ipv4[0] = a;
    d.u.ipv4[1] = b;
    d.u.ipv4[2] = c;
    d.u.ipv4[3] = e;
    return d;
}

static void test_data_types(void)
{
    struct dcase cases[] = {
        {"null", {0x00}, 1, {.type = SPOP_T_NULL}},
        {"false", {0x01}, 1, spop_d_bool(false)},
        {"true", {0x11}, 1, spop_d_bool(true)},
        {"int32 5", {0x02, 0x05}, 2, {.type = SPOP_T_INT32, .u.i32 = 5}},
        {"int32 -1",
         {0x02, 0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e},
         11,
         {.type = SPOP_T_INT32, .u.i32 = -1}},
        {"int32 max",
         {0x02, 0xff, 0xf0, 0xfe, 0xfe, 0x3e},
         6,
         {.type = SPOP_T_INT32, .u.i32 = INT32_MAX}},
        {"uint32 1000", {0x03, 0xf8, 0x2f}, 3, spop_d_u32(1000)},
        {"uint32 max", {0x03, 0xff, 0xf0, 0xfe, 0xfe, 0x7e}, 6, spop_d_u32(UINT32_MAX)},
        {"int64 -5",
         {0x04, 0xfb, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e},
         11,
         spop_d_i64(-5)},
        {"int64 1000", {0x04, 0xf8, 0x2f}, 3, spop_d_i64(1000)},
        {"uint64 max",
         {0x05, 0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e},
         11,
         {.type = SPOP_T_UINT64, .u.u64 = UINT64_MAX}},
        {"ipv4", {0x06, 10, 1, 2, 3}, 5, mk_ipv4(10, 1, 2, 3)},
        {"ipv6 ::1",
         {0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
         17,
         {.type = SPOP_T_IPV6}},
        {"string", {0x08, 0x03, 'a', 'b', 'c'}, 5, spop_d_str("abc", 3)},
        {"empty string", {0x08, 0x00}, 2, spop_d_str("", 0)},
        {"binary", {0x09, 0x02, 0x00, 0xff}, 4, {.type = SPOP_T_BINARY, .u.str = {"\x00\xff", 2}}},
    };
    cases[12].d.u.ipv6[15] = 1;
    bool seen[SPOP_T_COUNT] = {false};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct dcase *c = &cases[i];
        seen[c->d.type] = true;
        /* encode to the literal bytes */
        uint8_t buf[32];
        struct spop_writer w;
        spop_w_init(&w, buf, sizeof(buf), 0);
        spop_w_data(&w, &c->d);
        CHECK(!w.failed && w.len == c->len && memcmp(buf, c->bytes, c->len) == 0);
        if (w.len != c->len || memcmp(buf, c->bytes, c->len) != 0) {
            fprintf(stderr, "  case %s\n", c->what);
        }
        /* decode from the page end */
        const uint8_t *g = guard_put(c->bytes, c->len);
        struct spop_reader r = {g, g + c->len};
        struct spop_data d;
        CHECK(spop_read_data(&r, &d));
        CHECK(r.p == g + c->len);
        CHECK(spop_data_eq(&d, &c->d));
        /* each truncation is malformed and leaves the cursor alone */
        for (size_t k = 0; k < c->len; k++) {
            g = guard_put(c->bytes, k);
            r.p = g;
            r.end = g + k;
            CHECK(!spop_read_data(&r, &d));
            CHECK(r.p == g);
        }
    }
    for (int t = 0; t < SPOP_T_COUNT; t++) {
        CHECK(seen[t]);
    }
}

static void test_data_malformed(void)
{
    struct spop_data d;
    /* reserved types 10..15, with or without flags */
    for (unsigned t = 10; t < 16; t++) {
        uint8_t b[4] = {(uint8_t)t, 0, 0, 0};
        const uint8_t *g = guard_put(b, sizeof(b));
        struct spop_reader r = {g, g + sizeof(b)};
        CHECK(!spop_read_data(&r, &d));
        b[0] = (uint8_t)(0x30 | t);
        g = guard_put(b, sizeof(b));
        r.p = g;
        r.end = g + sizeof(b);
        CHECK(!spop_read_data(&r, &d));
    }
    /* string length past the end (by one) */
    static const uint8_t longstr[] = {0x08, 0x04, 'a', 'b', 'c'};
    const uint8_t *g = guard_put(longstr, sizeof(longstr));
    struct spop_reader r = {g, g + sizeof(longstr)};
    CHECK(!spop_read_data(&r, &d));
    /* string length a huge varint */
    static const uint8_t hugestr[] = {0x09, 0xff, 0xf0, 0xfe, 0xfe, 0xfe,
                                      0xfe, 0xfe, 0xfe, 0xfe, 0x0e, 'x'};
    g = guard_put(hugestr, sizeof(hugestr));
    r.p = g;
    r.end = g + sizeof(hugestr);
    CHECK(!spop_read_data(&r, &d));
    /* INT32 / UINT32 out of range */
    static const uint8_t i32big[] = {0x02, 0xf0, 0xf1, 0xfe, 0xfe, 0x3e}; /* 2^31 */
    uint64_t v;
    CHECK_EQ_INT(spop_varint_decode(i32big + 1, i32big + sizeof(i32big), &v), 5);
    CHECK(v == 0x80000000ull);
    g = guard_put(i32big, sizeof(i32big));
    r.p = g;
    r.end = g + sizeof(i32big);
    CHECK(!spop_read_data(&r, &d));
    static const uint8_t u32big[] = {0x03, 0xf0, 0xf1, 0xfe, 0xfe, 0x7e}; /* 2^32 */
    CHECK_EQ_INT(spop_varint_decode(u32big + 1, u32big + sizeof(u32big), &v), 5);
    CHECK(v == 0x100000000ull);
    g = guard_put(u32big, sizeof(u32big));
    r.p = g;
    r.end = g + sizeof(u32big);
    CHECK(!spop_read_data(&r, &d));
    /* flags on other types are ignored; true without BOOL is not a bool */
    static const uint8_t flagged[] = {0x23, 0x07};
    g = guard_put(flagged, sizeof(flagged));
    r.p = g;
    r.end = g + sizeof(flagged);
    CHECK(spop_read_data(&r, &d));
    CHECK(d.type == SPOP_T_UINT32 && d.u.u32 == 7);
    /* empty input */
    r.p = r.end;
    CHECK(!spop_read_data(&r, &d));
}

/* ---- frames ------------------------------------------------------------------ */

struct fcase {
    const char *what;
    const uint8_t *bytes;
    size_t len;
    uint8_t type;
    uint64_t sid, fid;
};

static const struct fcase frames[] = {
    {"hello-check", cap_hello_check, sizeof(cap_hello_check), SPOP_FRAME_HAPROXY_HELLO, 0, 0},
    {"hello", cap_hello, sizeof(cap_hello), SPOP_FRAME_HAPROXY_HELLO, 0, 0},
    {"notify", cap_notify, sizeof(cap_notify), SPOP_FRAME_NOTIFY, 0, 1},
    {"disconnect", cap_disconnect, sizeof(cap_disconnect), SPOP_FRAME_HAPROXY_DISCONNECT, 0, 0},
    {"agent-hello", lit_agent_hello, sizeof(lit_agent_hello), SPOP_FRAME_AGENT_HELLO, 0, 0},
    {"ack", lit_ack, sizeof(lit_ack), SPOP_FRAME_ACK, 1000, 1},
};

static void test_frames_truncation(void)
{
    for (size_t i = 0; i < ARRAY_LEN(frames); i++) {
        const struct fcase *c = &frames[i];
        struct spop_frame f;
        enum spop_status st = SPOP_ST_NONE;
        /* one byte at a time: need more until the last byte, never malformed */
        for (size_t k = 0; k < c->len; k++) {
            const uint8_t *g = guard_put(c->bytes, k);
            CHECK_EQ_INT(spop_frame_decode(g, k, SPOP_DEFAULT_FRAME_SIZE, &f, &st), 0);
        }
        CHECK(st == SPOP_ST_NONE);
        const uint8_t *g = guard_put(c->bytes, c->len);
        CHECK_EQ_INT(spop_frame_decode(g, c->len, SPOP_DEFAULT_FRAME_SIZE, &f, &st), c->len);
        CHECK_EQ_INT(f.type, c->type);
        CHECK_EQ_INT(f.flags, SPOP_FL_FIN);
        CHECK(f.stream_id == c->sid && f.frame_id == c->fid);
        CHECK(f.payload + f.payload_len == g + c->len);
        /* with a following frame's first bytes: still exactly one frame */
        uint8_t two[512];
        memcpy(two, c->bytes, c->len);
        memcpy(two + c->len, c->bytes, 3);
        CHECK_EQ_INT(spop_frame_decode(two, c->len + 3, SPOP_DEFAULT_FRAME_SIZE, &f, &st), c->len);
        /* max_frame_size equal to the length is fine, one less is too big */
        uint32_t flen = (uint32_t)(c->len - SPOP_LEN_SIZE);
        CHECK_EQ_INT(spop_frame_decode(g, c->len, flen, &f, &st), c->len);
        st = SPOP_ST_NONE;
        const uint8_t *g4 = guard_put(c->bytes, SPOP_LEN_SIZE);
        CHECK_EQ_INT(spop_frame_decode(g4, SPOP_LEN_SIZE, flen - 1, &f, &st), -1);
        CHECK_EQ_INT(st, SPOP_ST_TOO_BIG);
    }
}

static void test_frames_malformed(void)
{
    struct spop_frame f;
    enum spop_status st;
    /* too big: rejected from the 4 length bytes alone */
    static const uint8_t big[] = {0x00, 0x00, 0x40, 0x00};
    const uint8_t *g = guard_put(big, sizeof(big));
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(big), SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_TOO_BIG);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    g = guard_put(huge, sizeof(huge));
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(huge), SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_TOO_BIG);
    /* ... and with max_frame_size 0 (no negotiated size), SPOP_MAX_FRAME_SIZE caps it */
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(huge), 0, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_TOO_BIG);
    /* too short: lengths 0..6, with and without body bytes behind */
    for (uint8_t l = 0; l < SPOP_FRAME_MIN_LEN; l++) {
        uint8_t b[4 + 16] = {0, 0, 0, l, SPOP_FRAME_NOTIFY, 0, 0, 0, 1, 1, 1};
        g = guard_put(b, 4);
        st = SPOP_ST_NONE;
        CHECK_EQ_INT(spop_frame_decode(g, 4, SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
        CHECK_EQ_INT(st, SPOP_ST_INVALID);
        g = guard_put(b, 4u + l);
        st = SPOP_ST_NONE;
        CHECK_EQ_INT(spop_frame_decode(g, 4u + l, SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
        CHECK_EQ_INT(st, SPOP_ST_INVALID);
    }
    /* the minimum is a valid empty-payload frame */
    static const uint8_t min[] = {0, 0, 0, 7, SPOP_FRAME_NOTIFY, 0, 0, 0, 1, 5, 6};
    g = guard_put(min, sizeof(min));
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(min), SPOP_DEFAULT_FRAME_SIZE, &f, &st), 11);
    CHECK(f.stream_id == 5 && f.frame_id == 6 && f.payload_len == 0);
    /* stream-id varint running past the frame (bytes after it are the next frame) */
    static const uint8_t sid_over[] = {0, 0, 0, 7, 3, 0, 0, 0, 1, 0xf0, 0x80, 0x00, 0x00};
    g = guard_put(sid_over, sizeof(sid_over));
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(sid_over), SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_INVALID);
    /* frame-id varint running past the frame, at a page end */
    static const uint8_t fid_over[] = {0, 0, 0, 8, 3, 0, 0, 0, 1, 0x01, 0xf0, 0x80};
    g = guard_put(fid_over, sizeof(fid_over));
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(fid_over), SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_INVALID);
    /* an 11-byte stream-id varint */
    static const uint8_t sid_11[] = {0,    0,    0,    17,   3,    0,    0,
                                     0,    1,    0xf0, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00};
    g = guard_put(sid_11, sizeof(sid_11));
    st = SPOP_ST_NONE;
    CHECK_EQ_INT(spop_frame_decode(g, sizeof(sid_11), SPOP_DEFAULT_FRAME_SIZE, &f, &st), -1);
    CHECK_EQ_INT(st, SPOP_ST_INVALID);
}

/* ---- payloads ---------------------------------------------------------------- */

static void payload_of(const uint8_t *frame, size_t len, struct spop_frame *f)
{
    enum spop_status st;
    if (spop_frame_decode(frame, len, SPOP_DEFAULT_FRAME_SIZE, f, &st) != (ssize_t)len) {
        fprintf(stderr, "payload_of: frame does not decode\n");
        exit(2);
    }
}

static void test_hello(void)
{
    struct spop_frame f;
    struct spop_hello h;
    payload_of(cap_hello_check, sizeof(cap_hello_check), &f);
    const uint8_t *g = guard_put(f.payload, f.payload_len);
    CHECK_EQ_INT(spop_hello_parse(g, f.payload_len, &h), 0);
    CHECK(h.has_versions && spop_str_eq(h.versions, "2.0"));
    CHECK(h.has_frame_size && h.max_frame_size == 16380);
    CHECK(h.has_caps && h.caps.len == 0);
    CHECK(h.healthcheck);
    CHECK(h.engine_id.len == 0);

    payload_of(cap_hello, sizeof(cap_hello), &f);
    g = guard_put(f.payload, f.payload_len);
    CHECK_EQ_INT(spop_hello_parse(g, f.payload_len, &h), 0);
    CHECK(h.has_versions && spop_list_has(h.versions, SPOP_VERSION));
    CHECK(h.has_frame_size && h.max_frame_size == SPOP_DEFAULT_FRAME_SIZE);
    CHECK(h.has_caps && spop_str_eq(h.caps, "pipelining,async"));
    CHECK(spop_list_has(h.caps, "pipelining") && spop_list_has(h.caps, "async"));
    CHECK(!spop_list_has(h.caps, "fragmentation"));
    CHECK(!h.healthcheck);
    CHECK(spop_str_eq(h.engine_id, "2ebc2d8c-e277-414f-b0d3-9e3afefab862"));

    /* unknown keys of every type are skipped; missing keys reported by has_* */
    uint8_t buf[256];
    struct spop_writer w;
    spop_w_init(&w, buf, sizeof(buf), 0);
    struct spop_data d = {.type = SPOP_T_IPV6};
    spop_w_kv(&w, "future-key", &d);
    d = spop_d_str("1.0, 2.0", 8);
    spop_w_kv(&w, "supported-versions", &d);
    d.type = SPOP_T_NULL;
    spop_w_kv(&w, "", &d);
    CHECK(!w.failed);
    g = guard_put(buf, w.len);
    CHECK_EQ_INT(spop_hello_parse(g, w.len, &h), 0);
    CHECK(h.has_versions && spop_list_has(h.versions, "2.0") && !h.has_frame_size && !h.has_caps);
    /* a known key with the wrong type is malformed */
    spop_w_init(&w, buf, sizeof(buf), 0);
    d = spop_d_str("16380", 5);
    spop_w_kv(&w, "max-frame-size", &d);
    g = guard_put(buf, w.len);
    CHECK_EQ_INT(spop_hello_parse(g, w.len, &h), -1);
    /* max-frame-size as INT64 is accepted, negative is not */
    spop_w_init(&w, buf, sizeof(buf), 0);
    d = spop_d_i64(1024);
    spop_w_kv(&w, "max-frame-size", &d);
    g = guard_put(buf, w.len);
    CHECK_EQ_INT(spop_hello_parse(g, w.len, &h), 0);
    CHECK(h.max_frame_size == 1024);
    spop_w_init(&w, buf, sizeof(buf), 0);
    d = spop_d_i64(-1);
    spop_w_kv(&w, "max-frame-size", &d);
    g = guard_put(buf, w.len);
    CHECK_EQ_INT(spop_hello_parse(g, w.len, &h), -1);
    /* empty payload: valid, nothing found */
    CHECK_EQ_INT(spop_hello_parse(g + w.len, 0, &h), 0);
    CHECK(!h.has_versions && !h.has_frame_size && !h.has_caps);
}

/* Truncate a KV-list payload at every point: only KV boundaries parse. */
static void test_kv_truncation(const uint8_t *frame, size_t flen,
                               int (*parse)(const uint8_t *, size_t, void *), void *out)
{
    struct spop_frame f;
    payload_of(frame, flen, &f);
    bool boundary[512] = {false};
    struct spop_reader r = {f.payload, f.payload + f.payload_len};
    struct spop_str k;
    struct spop_data d;
    boundary[0] = true;
    while (spop_next_kv(&r, &k, &d) == SPOP_NEXT_ITEM) {
        boundary[r.p - f.payload] = true;
    }
    CHECK(r.p == f.payload + f.payload_len);
    for (size_t n = 0; n <= f.payload_len; n++) {
        const uint8_t *g = guard_put(f.payload, n);
        CHECK_EQ_INT(parse(g, n, out), boundary[n] ? 0 : -1);
    }
}

static int hello_parse_cb(const uint8_t *p, size_t n, void *out)
{
    return spop_hello_parse(p, n, out);
}

static int disconnect_parse_cb(const uint8_t *p, size_t n, void *out)
{
    return spop_disconnect_parse(p, n, out);
}

static void test_disconnect(void)
{
    struct spop_frame f;
    struct spop_disconnect dc;
    payload_of(cap_disconnect, sizeof(cap_disconnect), &f);
    const uint8_t *g = guard_put(f.payload, f.payload_len);
    CHECK_EQ_INT(spop_disconnect_parse(g, f.payload_len, &dc), 0);
    CHECK(dc.has_status && dc.status == SPOP_ST_TIMEOUT);
    CHECK(spop_str_eq(dc.message, "a timeout occurred"));
    CHECK(spop_str_eq(dc.message, spop_status_str(dc.status)));

    /* our encoder: message truncated to 255 bytes */
    char msg[400];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    uint8_t buf[512];
    struct spop_writer w;
    spop_w_init(&w, buf, sizeof(buf), 0);
    CHECK_EQ_INT(spop_w_agent_disconnect(&w, SPOP_ST_TOO_BIG, msg), 0);
    struct spop_frame f2;
    enum spop_status st;
    g = guard_put(buf, w.len);
    CHECK_EQ_INT(spop_frame_decode(g, w.len, SPOP_DEFAULT_FRAME_SIZE, &f2, &st), w.len);
    CHECK(f2.type == SPOP_FRAME_AGENT_DISCONNECT && f2.flags == SPOP_FL_FIN);
    CHECK(f2.stream_id == 0 && f2.frame_id == 0);
    CHECK_EQ_INT(spop_disconnect_parse(f2.payload, f2.payload_len, &dc), 0);
    CHECK(dc.has_status && dc.status == SPOP_ST_TOO_BIG && dc.message.len == SPOP_MAX_MSG_LEN);
    /* literal bytes of a short one */
    static const uint8_t lit[] = {
        0x00, 0x00, 0x00, 0x1f, 0x66, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0b,
        's',  't',  'a',  't',  'u',  's',  '-',  'c',  'o',  'd',  'e',  0x03,
        0x04, 0x07, 'm',  'e',  's',  's',  'a',  'g',  'e',  0x08, 0x00,
    };
    spop_w_init(&w, buf, sizeof(buf), 0);
    CHECK_EQ_INT(spop_w_agent_disconnect(&w, SPOP_ST_INVALID, NULL), 0);
    CHECK(w.len == sizeof(lit) && memcmp(buf, lit, sizeof(lit)) == 0);
    /* status-code of the wrong type */
    spop_w_init(&w, buf, sizeof(buf), 0);
    struct spop_data d = spop_d_str("3", 1);
    spop_w_kv(&w, "status-code", &d);
    CHECK_EQ_INT(spop_disconnect_parse(buf, w.len, &dc), -1);
}

struct expect_arg {
    const char *key;
    struct spop_data d;
};

/* Decode a NOTIFY payload with room for everything. */
static struct spop_msg nt_msgs[16];
static struct spop_kv nt_kvs[64];
static enum spop_notify_result notify_parse(const uint8_t *p, size_t len, struct spop_notify *n)
{
    *n = (struct spop_notify){nt_msgs, ARRAY_LEN(nt_msgs), nt_kvs, ARRAY_LEN(nt_kvs), 0, 0};
    return spop_notify_parse(p, len, n);
}

static void test_notify(void)
{
    struct spop_frame f;
    payload_of(cap_notify, sizeof(cap_notify), &f);
    const uint8_t *g = guard_put(f.payload, f.payload_len);
    struct spop_notify n;
    CHECK_EQ_INT(notify_parse(g, f.payload_len, &n), SPOP_NOTIFY_OK);
    CHECK_EQ_INT(n.nmsgs, 1);
    CHECK_EQ_INT(n.nkvs, 8);
    const struct spop_msg *m = &n.msgs[0];
    CHECK(spop_str_eq(m->name, "m"));
    CHECK_EQ_INT(m->nargs, 8);
    struct expect_arg exp[] = {
        {"sid", spop_d_str("abc", 3)},      {"n", spop_d_i64(-5)},
        {"big", spop_d_i64(1000)},          {"t", spop_d_bool(true)},
        {"ip", mk_ipv4(10, 1, 2, 3)},       {"ip6", {.type = SPOP_T_IPV6}},
        {"", mk_ipv4(127, 0, 0, 1)}, /* `src` given without a name */
        {"nothing", {.type = SPOP_T_NULL}},
    };
    exp[5].d.u.ipv6[15] = 1;
    CHECK(m->args == n.kvs);
    for (size_t i = 0; i < ARRAY_LEN(exp); i++) {
        CHECK(spop_str_eq(m->args[i].key, exp[i].key));
        CHECK(spop_data_eq(&m->args[i].val, &exp[i].d));
        /* views into the frame, not copies */
        CHECK(m->args[i].key.len == 0 ||
              (m->args[i].key.ptr >= (const char *)g &&
               m->args[i].key.ptr < (const char *)g + f.payload_len));
    }
    CHECK(m->name.ptr >= (const char *)g && m->name.ptr < (const char *)g + f.payload_len);

    /* every truncation of the message list is malformed, except empty */
    for (size_t k = 0; k < f.payload_len; k++) {
        g = guard_put(f.payload, k);
        CHECK_EQ_INT(notify_parse(g, k, &n), k == 0 ? SPOP_NOTIFY_OK : SPOP_NOTIFY_MALFORMED);
        if (k == 0) {
            CHECK_EQ_INT(n.nmsgs, 0);
        }
        /* without any room too: malformed is never mistaken for "grow and retry" */
        struct spop_notify none = {NULL, 0, NULL, 0, 0, 0};
        CHECK_EQ_INT(spop_notify_parse(g, k, &none),
                     k == 0 ? SPOP_NOTIFY_OK : SPOP_NOTIFY_MALFORMED);
    }

    /* arrays too small: the whole payload is still validated and counted */
    g = guard_put(f.payload, f.payload_len);
    struct spop_msg one[1];
    struct spop_kv seven[7];
    n = (struct spop_notify){one, 1, seven, 7, 0, 0};
    CHECK_EQ_INT(spop_notify_parse(g, f.payload_len, &n), SPOP_NOTIFY_NO_ROOM);
    CHECK(n.nmsgs == 1 && n.nkvs == 8);
    n = (struct spop_notify){NULL, 0, NULL, 0, 0, 0};
    CHECK_EQ_INT(spop_notify_parse(g, f.payload_len, &n), SPOP_NOTIFY_NO_ROOM);
    CHECK(n.nmsgs == 1 && n.nkvs == 8);
    /* malformed wins over no room: a bad frame is never "grow and retry" */
    g = guard_put(f.payload, f.payload_len - 1);
    n = (struct spop_notify){NULL, 0, NULL, 0, 0, 0};
    CHECK_EQ_INT(spop_notify_parse(g, f.payload_len - 1, &n), SPOP_NOTIFY_MALFORMED);
    n = (struct spop_notify){NULL, 0, NULL, 0, 0, 0};
    CHECK_EQ_INT(spop_notify_parse(g, 0, &n), SPOP_NOTIFY_OK);
}

static void test_notify_malformed(void)
{
    struct spop_notify n;
    /* nargs larger than present */
    static const uint8_t more_args[] = {0x01, 'm', 0x02, 0x01, 'a', 0x00};
    const uint8_t *g = guard_put(more_args, sizeof(more_args));
    CHECK_EQ_INT(notify_parse(g, sizeof(more_args), &n), SPOP_NOTIFY_MALFORMED);
    /* name length past end */
    static const uint8_t long_name[] = {0x05, 'm', 'x'};
    g = guard_put(long_name, sizeof(long_name));
    CHECK_EQ_INT(notify_parse(g, sizeof(long_name), &n), SPOP_NOTIFY_MALFORMED);
    /* no nargs byte */
    static const uint8_t no_nargs[] = {0x01, 'm'};
    g = guard_put(no_nargs, sizeof(no_nargs));
    CHECK_EQ_INT(notify_parse(g, sizeof(no_nargs), &n), SPOP_NOTIFY_MALFORMED);
    /* an arg of reserved type */
    static const uint8_t bad_type[] = {0x01, 'm', 0x01, 0x01, 'a', 0x0c};
    g = guard_put(bad_type, sizeof(bad_type));
    CHECK_EQ_INT(notify_parse(g, sizeof(bad_type), &n), SPOP_NOTIFY_MALFORMED);
    /* a good message, then a bad one: the whole list is malformed */
    static const uint8_t good_bad[] = {0x01, 'a', 0x00, 0x01, 'm', 0x01, 0x01, 'a', 0x0c};
    g = guard_put(good_bad, sizeof(good_bad));
    CHECK_EQ_INT(notify_parse(g, sizeof(good_bad), &n), SPOP_NOTIFY_MALFORMED);
    /* two messages, zero args and an empty name: both fine */
    static const uint8_t two[] = {0x01, 'a', 0x00, 0x00, 0x01, 0x00, 0x11};
    g = guard_put(two, sizeof(two));
    CHECK_EQ_INT(notify_parse(g, sizeof(two), &n), SPOP_NOTIFY_OK);
    CHECK_EQ_INT(n.nmsgs, 2);
    CHECK(spop_str_eq(n.msgs[0].name, "a") && n.msgs[0].nargs == 0);
    CHECK(n.msgs[1].name.len == 0 && n.msgs[1].nargs == 1);
    CHECK(n.msgs[1].args == &n.kvs[0]);
    CHECK(n.msgs[1].args[0].key.len == 0 && n.msgs[1].args[0].val.type == SPOP_T_BOOL &&
          n.msgs[1].args[0].val.u.b);
    /* a KV key running past the end */
    struct spop_reader r;
    struct spop_str k;
    struct spop_data d;
    static const uint8_t bad_key[] = {0x09, 'a'};
    g = guard_put(bad_key, sizeof(bad_key));
    r = (struct spop_reader){g, g + sizeof(bad_key)};
    CHECK_EQ_INT(spop_next_kv(&r, &k, &d), SPOP_NEXT_MALFORMED);
    CHECK(r.p == g);
    /* an empty KV-list ends at once */
    r = (struct spop_reader){g, g};
    CHECK_EQ_INT(spop_next_kv(&r, &k, &d), SPOP_NEXT_END);
}

/* ---- ACK and actions ----------------------------------------------------------- */

static void test_ack(void)
{
    /* encode the actions, then the frame, and compare with the literal */
    uint8_t act[64];
    struct spop_writer w;
    spop_w_init(&w, act, sizeof(act), 0);
    struct spop_data s1 = spop_d_str("s1", 2);
    spop_w_set_var(&w, SPOP_SCOPE_TXN, "server", 6, &s1);
    spop_w_unset_var(&w, SPOP_SCOPE_TXN, "noop", 4);
    CHECK(!w.failed);
    size_t alen = w.len;
    uint8_t buf[128];
    spop_w_init(&w, buf, sizeof(buf), SPOP_DEFAULT_FRAME_SIZE);
    CHECK_EQ_INT(spop_w_ack(&w, 1000, 1, act, alen), 0);
    CHECK(w.len == sizeof(lit_ack) && memcmp(buf, lit_ack, sizeof(lit_ack)) == 0);

    /* decode the actions back */
    struct spop_frame f;
    payload_of(lit_ack, sizeof(lit_ack), &f);
    const uint8_t *g = guard_put(f.payload, f.payload_len);
    struct spop_reader r = {g, g + f.payload_len};
    uint8_t type, scope;
    struct spop_str name;
    struct spop_data val;
    CHECK_EQ_INT(spop_next_action(&r, &type, &scope, &name, &val), SPOP_NEXT_ITEM);
    CHECK(type == SPOP_ACT_SET_VAR && scope == SPOP_SCOPE_TXN && spop_str_eq(name, "server"));
    CHECK(val.type == SPOP_T_STRING && spop_str_eq(val.u.str, "s1"));
    CHECK_EQ_INT(spop_next_action(&r, &type, &scope, &name, &val), SPOP_NEXT_ITEM);
    CHECK(type == SPOP_ACT_UNSET_VAR && scope == SPOP_SCOPE_TXN && spop_str_eq(name, "noop"));
    CHECK(val.type == SPOP_T_NULL);
    CHECK_EQ_INT(spop_next_action(&r, &type, &scope, &name, &val), SPOP_NEXT_END);

    /* truncations: only the action boundary (14) and 0 parse cleanly */
    for (size_t n = 0; n < f.payload_len; n++) {
        g = guard_put(f.payload, n);
        r = (struct spop_reader){g, g + n};
        enum spop_next rc;
        int count = 0;
        while ((rc = spop_next_action(&r, &type, &scope, &name, &val)) == SPOP_NEXT_ITEM) {
            count++;
        }
        CHECK_EQ_INT(rc, (n == 0 || n == 14) ? SPOP_NEXT_END : SPOP_NEXT_MALFORMED);
        CHECK_EQ_INT(count, n >= 14 ? 1 : 0);
    }

    /* malformed: unknown action type, wrong nargs, bad scope */
    static const uint8_t unknown[] = {0x03, 0x02, 0x02, 0x01, 'a'};
    static const uint8_t set_nargs[] = {0x01, 0x02, 0x02, 0x01, 'a', 0x00};
    static const uint8_t unset_nargs[] = {0x02, 0x03, 0x02, 0x01, 'a'};
    static const uint8_t bad_scope[] = {0x02, 0x02, 0x05, 0x01, 'a'};
    static const uint8_t bad_val[] = {0x01, 0x03, 0x02, 0x01, 'a', 0x0f};
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {{unknown, sizeof(unknown)},
               {set_nargs, sizeof(set_nargs)},
               {unset_nargs, sizeof(unset_nargs)},
               {bad_scope, sizeof(bad_scope)},
               {bad_val, sizeof(bad_val)}};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        g = guard_put(bad[i].p, bad[i].n);
        r = (struct spop_reader){g, g + bad[i].n};
        CHECK_EQ_INT(spop_next_action(&r, &type, &scope, &name, &val), SPOP_NEXT_MALFORMED);
        CHECK(r.p == g);
    }
    /* every scope encodes as its byte; a scope outside the enum fails the writer */
    for (int sc = 0; sc < SPOP_SCOPE_COUNT; sc++) {
        spop_w_init(&w, act, sizeof(act), 0);
        spop_w_unset_var(&w, (enum spop_scope)sc, "v", 1);
        CHECK(!w.failed && w.len == 5 && act[2] == sc);
    }
    spop_w_init(&w, act, sizeof(act), 0);
    spop_w_unset_var(&w, SPOP_SCOPE_COUNT, "v", 1);
    CHECK(w.failed);
}

/* ---- writer ------------------------------------------------------------------ */

static void test_writer(void)
{
    uint8_t buf[128];
    struct spop_writer w;

    /* AGENT-HELLO, literal */
    spop_w_init(&w, buf, sizeof(buf), SPOP_DEFAULT_FRAME_SIZE);
    CHECK_EQ_INT(spop_w_agent_hello(&w, 16380, "pipelining"), 0);
    CHECK(w.len == sizeof(lit_agent_hello) && memcmp(buf, lit_agent_hello, w.len) == 0);

    /* max_frame counts the length field's value: 64 fits 64, not 63 */
    spop_w_init(&w, buf, sizeof(buf), 64);
    CHECK_EQ_INT(spop_w_agent_hello(&w, 16380, "pipelining"), 0);
    spop_w_init(&w, buf, sizeof(buf), 63);
    CHECK_EQ_INT(spop_w_agent_hello(&w, 16380, "pipelining"), -1);
    CHECK(w.failed);
    /* the cap counts everything: 68 fits, 67 does not */
    spop_w_init(&w, buf, sizeof(lit_agent_hello), 0);
    CHECK_EQ_INT(spop_w_agent_hello(&w, 16380, "pipelining"), 0);
    spop_w_init(&w, buf, sizeof(lit_agent_hello) - 1, 0);
    CHECK_EQ_INT(spop_w_agent_hello(&w, 16380, "pipelining"), -1);

    /* failure sticks: a later small put does nothing, end still fails */
    spop_w_init(&w, buf, 20, 0);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 1, 1);
    spop_w_str(&w, "0123456789abcdef", 16);
    CHECK(w.failed);
    size_t at = w.len;
    spop_w_u8(&w, 1);
    CHECK(w.len == at);
    CHECK_EQ_INT(spop_w_frame_end(&w), -1);

    /* end without begin, nested begin */
    spop_w_init(&w, buf, sizeof(buf), 0);
    CHECK_EQ_INT(spop_w_frame_end(&w), -1);
    spop_w_init(&w, buf, sizeof(buf), 0);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 1, 1);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 1, 2);
    CHECK_EQ_INT(spop_w_frame_end(&w), -1);

    /* two frames back to back in one buffer, under one max_frame each */
    spop_w_init(&w, buf, sizeof(buf), 32);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 7, 1);
    spop_w_msg(&w, "check", 5, 1);
    struct spop_data d = spop_d_str("0123456789", 10);
    spop_w_kv(&w, "sid", &d);
    CHECK_EQ_INT(spop_w_frame_end(&w), 0);
    size_t first = w.len;
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 7, 2);
    spop_w_msg(&w, "check", 5, 0);
    CHECK_EQ_INT(spop_w_frame_end(&w), 0);
    struct spop_frame f;
    enum spop_status st;
    CHECK_EQ_INT(spop_frame_decode(buf, w.len, 32, &f, &st), first);
    CHECK(f.frame_id == 1);
    struct spop_notify n;
    CHECK_EQ_INT(notify_parse(f.payload, f.payload_len, &n), SPOP_NOTIFY_OK);
    CHECK_EQ_INT(n.nmsgs, 1);
    CHECK(spop_str_eq(n.msgs[0].name, "check") && n.msgs[0].nargs == 1);
    CHECK(spop_str_eq(n.msgs[0].args[0].key, "sid") &&
          spop_str_eq(n.msgs[0].args[0].val.u.str, "0123456789"));
    CHECK_EQ_INT(spop_frame_decode(buf + first, w.len - first, 32, &f, &st), w.len - first);
    CHECK(f.frame_id == 2);

    /* an unknown type has no wire form */
    spop_w_init(&w, buf, sizeof(buf), 0);
    d.type = SPOP_T_COUNT;
    spop_w_data(&w, &d);
    CHECK(w.failed);
}

static void test_helpers(void)
{
    struct spop_str s = {"pipelining, async ,  fragmentation", 34};
    CHECK(spop_list_has(s, "pipelining"));
    CHECK(spop_list_has(s, "async"));
    CHECK(spop_list_has(s, "fragmentation"));
    CHECK(!spop_list_has(s, "pipe"));
    CHECK(!spop_list_has(s, ""));
    struct spop_str empty = {"", 0};
    CHECK(!spop_list_has(empty, "2.0"));
    struct spop_str one = {"2.0", 3};
    CHECK(spop_list_has(one, "2.0"));
    CHECK(!spop_list_has(one, "2"));
    CHECK(spop_str_eq(empty, ""));
    CHECK(!spop_str_eq(one, "2.00"));
    CHECK(strcmp(spop_status_str(SPOP_ST_TOO_BIG), "frame is too big") == 0);
    CHECK(strcmp(spop_status_str(SPOP_ST_UNKNOWN), "an unknown error occurred") == 0);
    CHECK(strcmp(spop_status_str(50), "unknown status code") == 0);
}

/* The equality every round trip below relies on must tell values apart. */
static void test_data_eq(void)
{
    struct spop_data a = spop_d_str("abc", 3), b = spop_d_str("abd", 3);
    struct spop_data bin = {.type = SPOP_T_BINARY, .u.str = {"abc", 3}};
    CHECK(spop_data_eq(&a, &a));
    CHECK(!spop_data_eq(&a, &b));
    CHECK(!spop_data_eq(&a, &bin)); /* same bytes, another type */
    struct spop_data e1 = spop_d_str("", 0), e2 = spop_d_str(NULL, 0);
    CHECK(spop_data_eq(&e1, &e2));
    struct spop_data t = spop_d_bool(true), f = spop_d_bool(false);
    CHECK(!spop_data_eq(&t, &f));
    struct spop_data i1 = spop_d_i64(-5), i2 = spop_d_i64(5), u = spop_d_u32(5);
    CHECK(!spop_data_eq(&i1, &i2));
    CHECK(!spop_data_eq(&i2, &u));
    struct spop_data n1 = {.type = SPOP_T_NULL}, n2 = {.type = SPOP_T_NULL};
    CHECK(spop_data_eq(&n1, &n2));
}

int main(void)
{
    guard_init();
    test_data_eq();
    test_guard_works();
    test_varint_bounds();
    test_varint_literals();
    test_varint_malformed();
    test_data_types();
    test_data_malformed();
    test_frames_truncation();
    test_frames_malformed();
    test_hello();
    struct spop_hello h;
    test_kv_truncation(cap_hello, sizeof(cap_hello), hello_parse_cb, &h);
    test_kv_truncation(cap_hello_check, sizeof(cap_hello_check), hello_parse_cb, &h);
    struct spop_disconnect dc;
    test_kv_truncation(cap_disconnect, sizeof(cap_disconnect), disconnect_parse_cb, &dc);
    test_disconnect();
    test_notify();
    test_notify_malformed();
    test_ack();
    test_writer();
    test_helpers();
    return check_summary("test_spop");
}
