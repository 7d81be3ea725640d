/* Unit tests for util.c (addresses, durations, clock) and buf.c (cursors,
 * compaction, growth up to the hard cap). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "buf.h"
#include "check.h"
#include "util.h"

static char err[256];

static int addr(const char *s, struct sockaddr_storage *ss, unsigned *len)
{
    err[0] = '\0';
    return util_parse_addr(s, ss, len, err, sizeof(err));
}

static void test_addr(void)
{
    struct sockaddr_storage ss;
    unsigned len = 0;
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;

    CHECK_EQ_INT(addr("127.0.0.1:12345", &ss, &len), 0);
    CHECK_EQ_INT(ss.ss_family, AF_INET);
    CHECK_EQ_INT(len, sizeof(struct sockaddr_in));
    CHECK_EQ_INT(ntohs(in4->sin_port), 12345);
    CHECK_EQ_INT(ntohl(in4->sin_addr.s_addr), 0x7f000001);

    CHECK_EQ_INT(addr("0.0.0.0:0", &ss, &len), 0); /* port 0: let the kernel pick */
    CHECK_EQ_INT(ntohs(in4->sin_port), 0);
    CHECK_EQ_INT(addr("1.2.3.4:65535", &ss, &len), 0);
    CHECK_EQ_INT(ntohs(in4->sin_port), 65535);

    CHECK_EQ_INT(addr("localhost:80", &ss, &len), 0);
    CHECK_EQ_INT(ss.ss_family, AF_INET);
    CHECK_EQ_INT(ntohl(in4->sin_addr.s_addr), INADDR_LOOPBACK);

    CHECK_EQ_INT(addr("[::1]:6379", &ss, &len), 0);
    CHECK_EQ_INT(ss.ss_family, AF_INET6);
    CHECK_EQ_INT(len, sizeof(struct sockaddr_in6));
    CHECK_EQ_INT(ntohs(in6->sin6_port), 6379);
    CHECK(memcmp(&in6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)) == 0);
    CHECK_EQ_INT(addr("[fe80::1:2]:1", &ss, &len), 0);

    CHECK_EQ_INT(addr("unix:/run/x.sock", &ss, &len), 0);
    CHECK_EQ_INT(ss.ss_family, AF_UNIX);
    CHECK(strcmp(un->sun_path, "/run/x.sock") == 0);
    CHECK_EQ_INT(len, sizeof(struct sockaddr_un));
    CHECK_EQ_INT(addr("/tmp/y.sock", &ss, &len), 0);
    CHECK(strcmp(un->sun_path, "/tmp/y.sock") == 0);

    /* a path that just fits sun_path (107 bytes + NUL), and one byte more */
    char path[sizeof(un->sun_path) + 2];
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[sizeof(un->sun_path) - 1] = '\0';
    CHECK_EQ_INT(addr(path, &ss, &len), 0);
    CHECK_EQ_INT(strlen(un->sun_path), sizeof(un->sun_path) - 1);
    path[sizeof(un->sun_path) - 1] = 'p';
    path[sizeof(un->sun_path)] = '\0';
    CHECK_EQ_INT(addr(path, &ss, &len), -1);

    /* errors, with the message a config error will show */
    CHECK_EQ_INT(addr("127.0.0.1", &ss, &len), -1);
    CHECK(strcmp(err, "'127.0.0.1' is not ADDR:PORT") == 0);
    CHECK_EQ_INT(addr(":80", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4:", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4:65536", &ss, &len), -1);
    CHECK(strcmp(err, "'65536': port must be 0..65535") == 0);
    CHECK_EQ_INT(addr("1.2.3.4:-1", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4:+80", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4: 80", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4:80x", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3.4:99999999999999999999", &ss, &len), -1);
    CHECK_EQ_INT(addr("1.2.3:80", &ss, &len), -1);
    CHECK(strcmp(err, "'1.2.3' is not a numeric IPv4/IPv6 address") == 0);
    CHECK_EQ_INT(addr("example.com:80", &ss, &len), -1);
    CHECK_EQ_INT(addr("[::1:80", &ss, &len), -1);
    CHECK_EQ_INT(addr("[::1]", &ss, &len), -1);
    CHECK_EQ_INT(addr("[]:80", &ss, &len), -1);
    CHECK_EQ_INT(addr("[1.2.3.4]:80", &ss, &len), 0); /* inet_pton takes v4 in brackets */
    /* "::1:80" is ambiguous (an address, or ::1 port 80?): brackets required */
    CHECK_EQ_INT(addr("::1:80", &ss, &len), -1);
    CHECK(strcmp(err, "'::1:80': IPv6 address must be written [ADDR]:PORT") == 0);
    CHECK_EQ_INT(addr("unix:", &ss, &len), -1);
    CHECK_EQ_INT(addr("", &ss, &len), -1);

    /* a host longer than the parser's buffer */
    char lng[300];
    memset(lng, '1', sizeof(lng));
    memcpy(lng + sizeof(lng) - 4, ":80", 4);
    CHECK_EQ_INT(addr(lng, &ss, &len), -1);
}

static int64_t dur(const char *s)
{
    int64_t ms = -12345;
    if (util_parse_duration(s, &ms) < 0) {
        return -1;
    }
    return ms;
}

static void test_duration(void)
{
    CHECK_EQ_INT(dur("0"), 0);
    CHECK_EQ_INT(dur("250"), 250);
    CHECK_EQ_INT(dur("250ms"), 250);
    CHECK_EQ_INT(dur("20s"), 20000);
    CHECK_EQ_INT(dur("1.5s"), 1500);
    CHECK_EQ_INT(dur("10m"), 600000);
    CHECK_EQ_INT(dur("24h"), 86400000);
    CHECK_EQ_INT(dur("7d"), 7LL * 86400000);
    CHECK_EQ_INT(dur("0.4"), 0); /* rounds to the nearest ms */
    CHECK_EQ_INT(dur("0.5"), 1);
    CHECK_EQ_INT(dur("100000d"), 100000LL * 86400000);

    CHECK_EQ_INT(dur(""), -1);
    CHECK_EQ_INT(dur("s"), -1);
    CHECK_EQ_INT(dur("-1"), -1);
    CHECK_EQ_INT(dur("-1s"), -1);
    CHECK_EQ_INT(dur("5 s"), -1);
    CHECK_EQ_INT(dur("5sec"), -1);
    CHECK_EQ_INT(dur("5S"), -1);
    CHECK_EQ_INT(dur("1w"), -1);
    CHECK_EQ_INT(dur("5s "), -1);
    CHECK_EQ_INT(dur("nan"), -1);
    CHECK_EQ_INT(dur("nans"), -1);
    CHECK_EQ_INT(dur("inf"), -1);
    CHECK_EQ_INT(dur("1e300"), -1);
    CHECK_EQ_INT(dur("1000000000000000d"), -1);

    /* *ms is left alone on failure */
    int64_t ms = 77;
    CHECK_EQ_INT(util_parse_duration("bogus", &ms), -1);
    CHECK_EQ_INT(ms, 77);
}

static void test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000;
    int64_t now = util_now_ms();
    /* unix milliseconds, not seconds or a monotonic clock: compare with the wall clock */
    CHECK(now >= before);
    CHECK(now < before + 3600 * 1000);
    CHECK(util_now_ms() >= now - 1000);
}

static void test_buf(void)
{
    struct buf b;
    CHECK_EQ_INT(buf_init(&b, 0, 16), -1);
    CHECK_EQ_INT(buf_init(&b, 32, 16), -1);
    CHECK_EQ_INT(buf_init(&b, 8, 32), 0);
    CHECK_EQ_INT(buf_len(&b), 0);
    CHECK_EQ_INT(buf_avail(&b), 8);

    CHECK_EQ_INT(buf_append(&b, "abcdef", 6), 0);
    CHECK_EQ_INT(buf_len(&b), 6);
    CHECK_EQ_INT(buf_avail(&b), 2);
    CHECK(memcmp(buf_rptr(&b), "abcdef", 6) == 0);

    /* consume moves the read cursor only */
    buf_consume(&b, 4);
    CHECK_EQ_INT(buf_len(&b), 2);
    CHECK_EQ_INT(b.rpos, 4);
    CHECK(memcmp(buf_rptr(&b), "ef", 2) == 0);

    /* reserving 6 fits after compaction without growing */
    uint8_t *before = b.data;
    CHECK_EQ_INT(buf_reserve(&b, 6), 0);
    CHECK_EQ_INT(b.cap, 8);
    CHECK(b.data == before);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK(memcmp(buf_rptr(&b), "ef", 2) == 0);
    memcpy(buf_wptr(&b), "ghijkl", 6);
    buf_commit(&b, 6);
    CHECK_EQ_INT(buf_len(&b), 8);
    CHECK(memcmp(buf_rptr(&b), "efghijkl", 8) == 0);

    /* growth doubles up to max, keeping the unread bytes */
    buf_consume(&b, 1);
    CHECK_EQ_INT(buf_append(&b, "0123456789", 10), 0);
    CHECK_EQ_INT(b.cap, 32);
    CHECK_EQ_INT(buf_len(&b), 17);
    CHECK(memcmp(buf_rptr(&b), "fghijkl0123456789", 17) == 0);

    /* the cap is hard: 17 + 16 > 32, 17 + 15 == 32 */
    errno = 0;
    CHECK_EQ_INT(buf_reserve(&b, 16), -1);
    CHECK_EQ_INT(errno, ENOBUFS);
    CHECK_EQ_INT(buf_len(&b), 17);
    CHECK_EQ_INT(buf_append(&b, "ABCDEFGHIJKLMNO", 15), 0);
    CHECK_EQ_INT(buf_len(&b), 32);
    CHECK_EQ_INT(buf_append(&b, "x", 1), -1);
    /* a size that would wrap len + n around must not pass the cap check */
    CHECK_EQ_INT(buf_reserve(&b, SIZE_MAX), -1);
    CHECK_EQ_INT(buf_reserve(&b, SIZE_MAX - 16), -1);
    CHECK(memcmp(buf_rptr(&b), "fghijkl0123456789ABCDEFGHIJKLMNO", 32) == 0);

    /* consuming everything resets both cursors */
    buf_consume(&b, 32);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 0);
    CHECK_EQ_INT(buf_avail(&b), 32);

    /* compact on an already-compact buffer is a no-op */
    CHECK_EQ_INT(buf_append(&b, "xyz", 3), 0);
    buf_compact(&b);
    CHECK(memcmp(buf_rptr(&b), "xyz", 3) == 0);
    buf_consume(&b, 1);
    buf_compact(&b);
    CHECK_EQ_INT(b.rpos, 0);
    CHECK_EQ_INT(b.wpos, 2);
    CHECK(memcmp(buf_rptr(&b), "yz", 2) == 0);

    CHECK_EQ_INT(buf_reserve(&b, 0), 0);
    buf_release(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.cap, 0);
    CHECK_EQ_INT(buf_len(&b), 0);

    /* growth that is not a power of two of the start hits max exactly */
    CHECK_EQ_INT(buf_init(&b, 3, 10), 0);
    CHECK_EQ_INT(buf_append(&b, "0123456789", 10), 0);
    CHECK_EQ_INT(b.cap, 10);
    CHECK(memcmp(buf_rptr(&b), "0123456789", 10) == 0);
    buf_release(&b);

    /* byte-at-a-time writes and reads keep order across many compactions */
    CHECK_EQ_INT(buf_init(&b, 4, 4), 0);
    int ok = 1;
    uint8_t next_in = 0, next_out = 0;
    for (int i = 0; i < 1000; i++) {
        for (int k = 0; k < 3; k++) {
            ok &= buf_append(&b, &next_in, 1) == 0;
            next_in++;
        }
        for (int k = 0; k < 3; k++) {
            ok &= buf_len(&b) > 0 && *buf_rptr(&b) == next_out;
            buf_consume(&b, 1);
            next_out++;
        }
    }
    CHECK(ok);
    CHECK_EQ_INT(b.cap, 4);
    buf_release(&b);
}

int main(void)
{
    test_addr();
    test_duration();
    test_now();
    test_buf();
    /* util_u64_dec: the decimal writer the Redis command builders share */
    {
        static const struct {
            uint64_t v;
            const char *want;
        } dec[] = {{0, "0"}, {9, "9"}, {10, "10"}, {86400000, "86400000"},
                   {UINT64_MAX, "18446744073709551615"}};
        for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
            char out[24];
            char *end = util_u64_dec(out, dec[i].v);
            CHECK_EQ_INT(end - out, strlen(dec[i].want));
            CHECK(memcmp(out, dec[i].want, strlen(dec[i].want)) == 0);
        }
    }
    return check_summary("test_util");
}
