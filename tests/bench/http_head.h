/* http_head.h - header lookup in an HTTP/1.1 message head, shared by the
 * WebSocket bench client (responses) and its 101 responder (requests).
 * Header-only: each bench tool is its own program. */
#ifndef STICKYD_HTTP_HEAD_H
#define STICKYD_HTTP_HEAD_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Value of header `name` (case-insensitive) in the head [h, end), skipping
 * the start line, with spaces and tabs around it trimmed; its length in
 * *vlen. NULL when absent. A last line without '\n' still counts. */
static inline const char *http_header(const char *h, const char *end, const char *name,
                                      size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *line = memchr(h, '\n', (size_t)(end - h));
    while (line != NULL && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) {
            eol = end;
        }
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) {
                v++;
            }
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol < end ? eol : NULL;
    }
    return NULL;
}

#endif
