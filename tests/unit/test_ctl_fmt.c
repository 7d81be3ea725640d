/* test_ctl_fmt.c - stickyctl's text helpers from literal values. */
#include <string.h>

#include "check.h"
#include "ctl_fmt.h"

static void dur(int64_t ms, const char *want)
{
    char buf[32];
    ctl_fmt_dur(ms, buf, sizeof(buf));
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "ctl_fmt_dur(%lld) = %s, want %s\n", (long long)ms, buf, want);
    }
    CHECK(strcmp(buf, want) == 0);
}

static void test_dur(void)
{
    dur(0, "0ms");
    dur(999, "999ms");
    dur(1000, "1s");
    dur(59999, "59s");
    dur(60000, "1m");
    dur(250000, "4m10s");
    dur(-250000, "4m10s");
    dur(3600000, "1h");
    dur(3661000, "1h1m");
    dur(86400000 + 3 * 3600000, "1d3h");
    dur(INT64_MIN, "106751991167d7h");
    char tiny[4];
    ctl_fmt_dur(250000, tiny, sizeof(tiny)); /* truncated, still terminated */
    CHECK(strlen(tiny) == 3);
}

static void test_times(void)
{
    char buf[40];
    ctl_fmt_iso(0, buf, sizeof(buf));
    CHECK(strcmp(buf, "1970-01-01T00:00:00.000Z") == 0);
    ctl_fmt_iso(1795290155826LL, buf, sizeof(buf));
    CHECK(strcmp(buf, "2026-11-21T19:42:35.826Z") == 0);
    ctl_fmt_iso(-1, buf, sizeof(buf));
    CHECK(strcmp(buf, "1969-12-31T23:59:59.999Z") == 0);
    ctl_fmt_hms(1795290155826LL, buf, sizeof(buf));
    CHECK(strcmp(buf, "19:42:35Z") == 0);
}

static void test_natcmp(void)
{
    CHECK(ctl_natcmp("ws2", "ws10") < 0);
    CHECK(ctl_natcmp("ws10", "ws2") > 0);
    CHECK(ctl_natcmp("ws02", "ws2") == 0);
    CHECK(ctl_natcmp("ws1", "ws1") == 0);
    CHECK(ctl_natcmp("a", "b") < 0);
    CHECK(ctl_natcmp("ws", "ws1") < 0);
    CHECK(ctl_natcmp("ws1a", "ws1b") < 0);
    CHECK(ctl_natcmp("be_api", "be_ws") < 0);
    CHECK(ctl_natcmp("99999999999999999999999", "100000000000000000000000") < 0);
}

static void test_glob_escape(void)
{
    char buf[16];
    CHECK_EQ_INT(ctl_glob_escape("sticky:", buf, sizeof(buf)), 7);
    CHECK(strcmp(buf, "sticky:") == 0);
    CHECK_EQ_INT(ctl_glob_escape("a*b?[c]\\", buf, sizeof(buf)), 13);
    CHECK(strcmp(buf, "a\\*b\\?\\[c\\]\\\\") == 0);
    CHECK_EQ_INT(ctl_glob_escape("0123456789abcdef", buf, sizeof(buf)), -1);
    CHECK_EQ_INT(ctl_glob_escape("*", buf, 2), -1); /* the escape alone fills it */
    CHECK_EQ_INT(ctl_glob_escape("", buf, 1), 0);
}

static void test_parse_i64(void)
{
    int64_t v = 7;
    CHECK(ctl_parse_i64("1795290155826", 13, &v) == 0 && v == 1795290155826LL);
    CHECK(ctl_parse_i64("-2", 2, &v) == 0 && v == -2);
    CHECK(ctl_parse_i64("12", 1, &v) == 0 && v == 1); /* length-bounded */
    CHECK(ctl_parse_i64("", 0, &v) < 0);
    CHECK(ctl_parse_i64("-", 1, &v) < 0);
    CHECK(ctl_parse_i64("1x", 2, &v) < 0);
    CHECK(ctl_parse_i64(" 1", 2, &v) < 0);
    CHECK(ctl_parse_i64("1234567890123456789", 19, &v) < 0); /* refuses, never overflows */
}

int main(void)
{
    test_dur();
    test_times();
    test_natcmp();
    test_glob_escape();
    test_parse_i64();
    return check_summary("test_ctl_fmt");
}
