/* Unit tests for slog_parse_line: HAProxy log lines in RFC3164 and RFC5424
 * form, with and without an access-log prefix, malformed and foreign lines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "slog.h"

static int parse(const char *line, struct slog_close *c)
{
    return slog_parse_line(line, strlen(line), c);
}

static int eq(struct spop_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static bool allowed(const struct slog_allow *a, const char *ip)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, ip, &in.sin_addr) == 1) {
        return slog_allow_match(a, &in);
    }
    if (inet_pton(AF_INET6, ip, &in6.sin6_addr) == 1) {
        return slog_allow_match(a, &in6);
    }
    return false;
}

/* syslog.allow (issue 12 item 2): the default is loopback only; prefixes of any
 * length, IPv4-mapped peers judged as IPv4, bad specs refused with the token. */
static void test_allow(void)
{
    struct slog_allow a;
    char err[160];
    CHECK(slog_allow_parse(NULL, &a, err, sizeof(err)) == 0);
    CHECK_EQ_INT(a.n, 2);
    CHECK(allowed(&a, "127.0.0.1"));
    CHECK(allowed(&a, "127.255.0.9"));
    CHECK(allowed(&a, "::1"));
    CHECK(allowed(&a, "::ffff:127.0.0.1"));
    CHECK(!allowed(&a, "128.0.0.1"));
    CHECK(!allowed(&a, "10.0.0.1"));
    CHECK(!allowed(&a, "::2"));
    CHECK(!allowed(&a, "::ffff:10.0.0.1"));
    CHECK(slog_allow_parse("10.1.2.0/23, 192.0.2.7 2001:db8::/33", &a, err, sizeof(err)) == 0);
    CHECK_EQ_INT(a.n, 3);
    CHECK(allowed(&a, "10.1.3.255"));
    CHECK(!allowed(&a, "10.1.4.0"));
    CHECK(allowed(&a, "192.0.2.7"));
    CHECK(!allowed(&a, "192.0.2.8"));
    CHECK(!allowed(&a, "127.0.0.1"));
    CHECK(allowed(&a, "2001:db8:7fff::1"));
    CHECK(!allowed(&a, "2001:db8:8000::1"));
    CHECK(slog_allow_parse("0.0.0.0/0", &a, err, sizeof(err)) == 0);
    CHECK(allowed(&a, "203.0.113.5"));
    CHECK(!allowed(&a, "::1"));
    CHECK(slog_allow_parse("", &a, err, sizeof(err)) == 0);
    CHECK_EQ_INT(a.n, 0);
    CHECK(!allowed(&a, "127.0.0.1"));
    CHECK(slog_allow_parse("127.0.0.1/33", &a, err, sizeof(err)) == -1);
    CHECK(strcmp(err, "'127.0.0.1/33' is not ADDR or ADDR/BITS (numeric IPv4 or IPv6)") == 0);
    CHECK(slog_allow_parse("localhost", &a, err, sizeof(err)) == -1);
    CHECK(slog_allow_parse("::1/129", &a, err, sizeof(err)) == -1);
    CHECK(slog_allow_parse("10.0.0.0/", &a, err, sizeof(err)) == -1);
    CHECK(slog_allow_parse("10.0.0.0/-1", &a, err, sizeof(err)) == -1);
    CHECK(slog_allow_parse("10.0.0.0/8x", &a, err, sizeof(err)) == -1);
}

int main(void)
{
    test_allow();
    struct slog_close c;

    /* RFC3164 header as HAProxy sends over UDP by default */
    CHECK_EQ_INT(parse("<134>Nov 21 19:20:00 lb1 haproxy[42]: 127.0.0.1:5000 [21/Nov/2026:19:19:"
                       "59.001] fe ws/s1 0/0/0/1/6000 101 150 - - ---- 1/1/0/0/0 0/0 \"GET /ws "
                       "HTTP/1.1\" stickyd: uid=7F000001:A3F2_0A0B0C0D be=ws srv=s1 st=101 "
                       "sid=1AbC-_x\n",
                       &c),
                 1);
    CHECK(eq(c.uid, "7F000001:A3F2_0A0B0C0D"));
    CHECK(eq(c.backend, "ws"));
    CHECK(eq(c.server, "s1"));
    CHECK(eq(c.sid, "1AbC-_x"));
    CHECK_EQ_INT(c.status, 101);

    /* RFC5424 header, fields in another order, empty sid as "-" */
    CHECK_EQ_INT(parse("<134>1 2026-11-21T19:20:00.000Z lb1 haproxy 42 - - stickyd: sid=- st=200 "
                       "srv=<NOSRV> be=api uid=abc",
                       &c),
                 1);
    CHECK(eq(c.uid, "abc"));
    CHECK(eq(c.backend, "api"));
    CHECK(eq(c.server, "<NOSRV>"));
    CHECK_EQ_INT(c.sid.len, 0);
    CHECK_EQ_INT(c.status, 200);

    /* unknown fields after ours are ignored; status absent */
    CHECK_EQ_INT(parse("stickyd: uid=u1 be=b extra=1 trailing", &c), 1);
    CHECK_EQ_INT(c.status, -1);
    CHECK_EQ_INT(c.server.len, 0);

    /* not ours: no marker, marker inside a word, empty line */
    CHECK_EQ_INT(parse("<134>Nov 21 19:20:00 lb1 haproxy[42]: Proxy fe started.", &c), 0);
    CHECK_EQ_INT(parse("GET /xstickyd: uid=1 be=2", &c), 0);
    CHECK_EQ_INT(parse("", &c), 0);
    CHECK_EQ_INT(slog_parse_line("stickyd", 7, &c), 0);

    /* ours but malformed: no uid, no backend, bad status */
    CHECK_EQ_INT(parse("stickyd: be=ws srv=s1 st=101", &c), -1);
    CHECK_EQ_INT(parse("stickyd: uid=u1 srv=s1", &c), -1);
    CHECK_EQ_INT(parse("stickyd: uid=- be=ws", &c), -1);
    CHECK_EQ_INT(parse("stickyd: uid=u be=ws st=1x1", &c), -1);
    CHECK_EQ_INT(parse("stickyd: uid=u be=ws st=1011", &c), -1);

    /* the line need not be NUL-terminated: parse a prefix of a longer buffer */
    const char *buf = "stickyd: uid=u9 be=ws srv=s2 st=101GARBAGE";
    CHECK_EQ_INT(slog_parse_line(buf, strlen(buf) - 7, &c), 1);
    CHECK_EQ_INT(c.status, 101);
    CHECK(eq(c.server, "s2"));

    /* the first occurrence of a field wins: a later one cannot forge it */
    CHECK_EQ_INT(parse("stickyd: uid=real be=ws srv=s1 st=101 sid=a uid=forged srv=s9 st=200", &c),
                 1);
    CHECK(eq(c.uid, "real"));
    CHECK(eq(c.server, "s1"));
    CHECK_EQ_INT(c.status, 101);

    return check_summary("test_slog");
}
