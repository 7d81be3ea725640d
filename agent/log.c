/* log.c - leveled, one-line-per-event logging to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum log_level log_level_cur = LOG_LVL_INFO;
static bool journal;

/* sd-daemon(3) priority prefixes: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const char *const journal_prio[] = {"<3>", "<4>", "<6>", "<7>"};
_Static_assert(sizeof(journal_prio) / sizeof(journal_prio[0]) == LOG_LVL_COUNT, "priorities");

void log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    journal = js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
              fstat(2, &st) == 0 && (unsigned long long)st.st_dev == dev &&
              (unsigned long long)st.st_ino == ino;
}

bool log_to_journal(void)
{
    return journal;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};
_Static_assert(sizeof(level_names) / sizeof(level_names[0]) == LOG_LVL_COUNT, "level names");

void log_set_level(enum log_level lvl)
{
    log_level_cur = lvl;
}

int log_parse_level(const char *s, enum log_level *out)
{
    for (int i = 0; i < LOG_LVL_COUNT; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level lvl)
{
    return (unsigned)lvl < LOG_LVL_COUNT ? level_names[lvl] : "?";
}

size_t log_escape(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch >= 0x20 && ch != 0x7f) {
            if (o + 1 > cap) {
                break;
            }
            out[o++] = (char)ch;
        } else {
            if (o + 4 > cap) {
                break;
            }
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    return o;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl)) {
        return;
    }
    char line[2048];
    int n;
    if (journal) {
        n = snprintf(line, sizeof(line), "%s%s ", journal_prio[lvl], log_level_name(lvl));
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_level_name(lvl));
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m >= sizeof(msg) ? sizeof(msg) - 1 : (size_t)m;
    size_t len = log_escape(line + n, sizeof(line) - (size_t)n - 1, msg, mlen) + (size_t)n;
    line[len++] = '\n';
    /* one write per line so concurrent writers never interleave mid-line */
    fwrite(line, 1, len, stderr);
}

void log_hexdump(enum log_level lvl, const char *prefix, const void *p, size_t n)
{
    if (!log_enabled(lvl)) {
        return;
    }
    const unsigned char *b = p;
    char hex[16 * 3 + 1];
    for (size_t off = 0; off < n; off += 16) {
        size_t k = 0;
        for (size_t i = off; i < n && i < off + 16; i++) {
            k += (size_t)snprintf(hex + k, sizeof(hex) - k, "%02x ", b[i]);
        }
        hex[k] = '\0';
        log_msg(lvl, "%s %04zx: %s", prefix, off, hex);
    }
}
