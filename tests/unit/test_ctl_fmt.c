/* test_ctl_fmt.c - stickyctl's text helpers from literal values. */
#include <string.h>

#include "check.h"
#include "ctl/ctl_fmt.h"
#include "events.h"

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

static void esc_is(int line, const char *in, size_t n, const char *want)
{
    char buf[256];
    size_t len = ctl_fmt_escape(in, n, buf, sizeof(buf));
    if (strcmp(buf, want) != 0 || len != strlen(want)) {
        check_failed++;
        fprintf(stderr, "%s:%d: ctl_fmt_escape = \"%s\", want \"%s\"\n", __FILE__, line, buf,
                want);
    } else {
        check_passed++;
    }
}
#define ESC(lit, want) esc_is(__LINE__, lit, sizeof(lit) - 1, want)

static void test_escape(void)
{
    ESC("ws1", "ws1");
    ESC("a b-c_d.e:f", "a b-c_d.e:f");
    /* the names: an escape sequence that clears the screen, a forged line */
    ESC("s\x1b[2J\x1b[H", "s\\x1b[2J\\x1b[H");
    ESC("s1\n2026 web1 server-state ws/s2 maint", "s1\\x0a2026 web1 server-state ws/s2 maint");
    ESC("\r\t\x7f", "\\x0d\\x09\\x7f");
    ESC("a\\x1b", "a\\\\x1b"); /* a literal backslash cannot pass for an escape */
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ESC("\xc2\x9b" "2J", "\\xc2\\x9b2J");  /* U+009B is CSI, a C1 control */
    ESC("\xc2\xa0", "\xc2\xa0");            /* U+00A0 is printable */
    ESC("\xff\xfe", "\\xff\\xfe");         /* not UTF-8 at all */
    ESC("\xc0\xaf", "\\xc0\\xaf");         /* overlong "/" */
    ESC("\xed\xa0\x80", "\\xed\\xa0\\x80"); /* a surrogate */
    ESC("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* above U+10FFFF */
    ESC("\xe2\x82", "\\xe2\\x82");         /* cut short */
    ESC("a\0b", "a\\x00b");                  /* length-bounded, NUL shown */
    /* cut before an escape that does not fit, always terminated */
    char tiny[6];
    CHECK_EQ_INT(ctl_fmt_escape("ab\x1b", 3, tiny, sizeof(tiny)), 2);
    CHECK(strcmp(tiny, "ab") == 0);
    CHECK_EQ_INT(ctl_fmt_escape("\xc3\xa9\xc3\xa9\xc3\xa9", 6, tiny, sizeof(tiny)), 4);
    CHECK(strcmp(tiny, "\xc3\xa9\xc3\xa9") == 0);
    CHECK_EQ_INT(ctl_fmt_escape("x", 1, tiny, 1), 0);
    CHECK(tiny[0] == '\0');
    /* every single byte comes out printable ASCII or as part of kept UTF-8 */
    for (int c = 0; c < 256; c++) {
        char in = (char)c, out[8];
        ctl_fmt_escape(&in, 1, out, sizeof(out));
        for (const char *p = out; *p; p++) {
            CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
        }
    }
}

static void test_utf8_bytes(void)
{
    char buf[64];
    /* valid UTF-8 unchanged, NUL kept (JSON writes \u0000) */
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("caf\xc3\xa9", 5, buf, sizeof(buf)), 5);
    CHECK(strcmp(buf, "caf\xc3\xa9") == 0);
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("a\0b", 3, buf, sizeof(buf)), 3);
    CHECK(memcmp(buf, "a\0b", 4) == 0);
    /* each invalid byte becomes U+00NN: 0xff -> U+00FF (c3 bf), 0x80 -> U+0080 (c2 80) */
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("s\xff\x80" "1", 4, buf, sizeof(buf)), 6);
    CHECK(strcmp(buf, "s\xc3\xbf\xc2\x80" "1") == 0);
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("\xe2\x82", 2, buf, sizeof(buf)), 4);
    CHECK(strcmp(buf, "\xc3\xa2\xc2\x82") == 0);
    /* 2n + 1 always fits; less may not */
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("\xff\xff", 2, buf, 5), 4);
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("\xff\xff", 2, buf, 4), -1);
    CHECK_EQ_INT(ctl_fmt_utf8_bytes("", 0, buf, 1), 0);
    CHECK(ctl_has_control("a\x1b", 2));
    CHECK(ctl_has_control("a\n", 2));
    CHECK(ctl_has_control("\x7f", 1));
    CHECK(!ctl_has_control("ws-1.\xc3\xa9", 7));
}

static void test_score(void)
{
    int64_t ms = 7;
    CHECK(ctl_parse_score_ms("1795290155826", 13, &ms) == 0 && ms == 1795290155826LL);
    CHECK(ctl_parse_score_ms("0", 1, &ms) == 0 && ms == 0);
    CHECK(ctl_parse_score_ms("1.7952901558260000e+12", 22, &ms) == 0 && ms == 1795290155826LL);
    /* the scores: none reaches a cast or a subtraction */
    static const char *const bad[] = {"1e300", "-1e300", "nan", "NaN", "inf", "-inf", "+inf",
                                      "-1", "1.5", "", "12x", "9223372036854775807",
                                      "253402300800000", "0x10", " 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = 7;
        CHECK(ctl_parse_score_ms(bad[i], strlen(bad[i]), &ms) == -1 && ms == 0);
    }
    CHECK(ctl_parse_score_ms("253402300799999", 15, &ms) == 0 && ms == CTL_MS_MAX);
    CHECK(ctl_parse_score_ms("12", 1, &ms) == 0 && ms == 1); /* length-bounded */
    char longs[80];
    memset(longs, '1', sizeof(longs));
    CHECK(ctl_parse_score_ms(longs, sizeof(longs), &ms) == -1);
}

static void test_event_line(void)
{
    struct event e = {.kind = EVENT_SERVER_STATE, .ts_ms = 1763700000123, .origin = "lb1",
                      .backend = "ws\x1b[2J", .server = "s1\nforged line",
                      .state = MODEL_MAINT};
    char line[512];
    ctl_fmt_event(&e, line, sizeof(line));
    CHECK(strstr(line, "ws\\x1b[2J/s1\\x0aforged line maint") != NULL);
    CHECK(strchr(line, '\n') == NULL && strchr(line, '\x1b') == NULL);
    struct event n = {.kind = EVENT_INSTANCE_LEFT, .ts_ms = 5}; /* NULL strings */
    ctl_fmt_event(&n, line, sizeof(line));
    CHECK(strstr(line, "instance-left") != NULL);
}

int main(void)
{
    test_dur();
    test_times();
    test_natcmp();
    test_glob_escape();
    test_parse_i64();
    test_escape();
    test_utf8_bytes();
    test_score();
    test_event_line();
    return check_summary("test_ctl_fmt");
}
