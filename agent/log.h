/* log.h - one line per event on stderr, with level filtering.
 *
 * Printf-checked; debug lines cost one branch when disabled. Hex dumps of
 * frames are for debug level only. When stderr is systemd's journal stream
 * (JOURNAL_STREAM names it), lines carry a "<N>" syslog priority prefix and no
 * timestamp of their own: the journal stamps them, and filters by priority.
 */
#ifndef STICKYD_LOG_H
#define STICKYD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LVL_ERR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
    LOG_LVL_COUNT
};

extern enum log_level log_level_cur;

void log_set_level(enum log_level lvl);
/* Look at JOURNAL_STREAM once at start-up: is stderr the journal? */
void log_detect_journal(void);
/* True after log_detect_journal found the journal (tests, status). */
bool log_to_journal(void);
/* "error", "warn", "info", "debug" -> 0 and *out; else -1. */
int log_parse_level(const char *s, enum log_level *out) __attribute__((warn_unused_result));
const char *log_level_name(enum log_level lvl);

/* One line per event: control bytes (a newline in a name a peer sent, an escape
 * sequence) in the formatted message are written as \xNN, so no value can forge
 * a second line or drive a terminal. Lines past 2 KiB are cut. */
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The escaping log_msg applies: in[len] into out[cap], bytes < 0x20 and 0x7f as
 * "\xNN", stopping before a sequence that would not fit. Returns bytes written
 * (no NUL). Pure. */
size_t log_escape(char *out, size_t cap, const char *in, size_t len);
void log_hexdump(enum log_level lvl, const char *prefix, const void *p, size_t n);

#define log_enabled(lvl) ((lvl) <= log_level_cur)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_INFO))                                                             \
            log_msg(LOG_LVL_INFO, __VA_ARGS__);                                                    \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
