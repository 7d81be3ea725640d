/* Unit tests for log.c's escaping (issue 12 item 1): a value with a newline or an
 * escape sequence must not forge a second log line or reach a terminal raw. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

static size_t esc(const char *in, char *out, size_t cap)
{
    size_t n = log_escape(out, cap, in, strlen(in));
    out[n] = '\0';
    return n;
}

int main(void)
{
    char out[64];
    CHECK_EQ_INT(esc("plain text: a/b=c", out, sizeof(out) - 1), 17);
    CHECK(strcmp(out, "plain text: a/b=c") == 0);
    esc("ws1\n2026-01-01T00:00:00.000Z error forged", out, sizeof(out) - 1);
    CHECK(strcmp(out, "ws1\\x0a2026-01-01T00:00:00.000Z error forged") == 0);
    esc("\x1b[2J\r\t\x7f", out, sizeof(out) - 1);
    CHECK(strcmp(out, "\\x1b[2J\\x0d\\x09\\x7f") == 0);
    /* UTF-8 and other high bytes pass: names are ASCII, messages may quote text */
    esc("caf\xc3\xa9", out, sizeof(out) - 1);
    CHECK(strcmp(out, "caf\xc3\xa9") == 0);
    /* a sequence that does not fit whole is left out, never cut */
    CHECK_EQ_INT(log_escape(out, 5, "ab\ncd", 5), 2);
    CHECK_EQ_INT(log_escape(out, 6, "ab\ncd", 5), 6);
    CHECK_EQ_INT(log_escape(out, 0, "x", 1), 0);

    /* log_msg itself: one line for a message carrying newlines */
    char path[] = "/tmp/stickyd-test-log-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    log_set_level(LOG_LVL_INFO);
    log_info("server %s", "ws1\nforged line\r\n");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[512] = {0};
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    CHECK(n > 0);
    CHECK(strstr(text, "info server ws1\\x0aforged line\\x0d\\x0a\n") != NULL);
    CHECK(strchr(text, '\n') == text + n - 1);
    return check_summary("test_log");
}
