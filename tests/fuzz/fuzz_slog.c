/* fuzz_slog.c - libFuzzer target for the syslog listener's parsers (slog.c): the
 * TCP stream's framing (octet counting and newline framing, slog_frame) and each
 * message it cuts, and the whole input as one UDP datagram (slog_parse_line).
 * Invariants: no crash or over-read (ASan), a frame stays inside the stream and
 * consumes at least its message, and a parsed close's views lie inside its line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct spop_str f, const char *line, size_t len)
{
    if (f.len != 0 && (f.ptr < line || f.ptr + f.len > line + len)) {
        abort();
    }
}

static void parse(const char *line, size_t len)
{
    struct slog_close c;
    int rc = slog_parse_line(line, len, &c);
    if (rc < -1 || rc > 1) {
        abort();
    }
    if (rc == 1) {
        inside(c.uid, line, len);
        inside(c.backend, line, len);
        inside(c.server, line, len);
        inside(c.sid, line, len);
        if (c.uid.len == 0 || c.backend.len == 0 || c.status < -1) {
            abort(); /* the contract: uid and backend always present */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, exactly size bytes: ASan sees any read past it */
    char *s = malloc(size ? size : 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    parse(s, size);
    size_t off = 0;
    for (;;) {
        const char *msg = NULL;
        size_t mlen = 0;
        int n = slog_frame(s + off, size - off, &msg, &mlen);
        if (n <= 0) {
            if (n < -1 || (size - off == 0 && n != 0)) {
                abort();
            }
            break;
        }
        if ((size_t)n > size - off || msg < s + off || msg + mlen > s + off + (size_t)n ||
            mlen > SLOG_MAX_LINE) {
            abort();
        }
        parse(msg, mlen);
        off += (size_t)n;
    }
    free(s);
    return 0;
}
