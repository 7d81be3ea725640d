/* jsonpos.c - a second, minimal JSON scanner that only counts lines and columns.
 *
 * It skips values without decoding them (strings, nested objects and arrays, bare
 * numbers and literals) and compares keys, decoding through jansson only the rare
 * key written with escapes. It owns no data and must not judge the JSON: jansson
 * did that first. Every read is bounded by the end of the text.
 */
#include "jsonpos.h"

#include <jansson.h>
#include <string.h>

struct scan {
    const char *p, *end;
    int line, col; /* col: characters consumed on this line */
};

static void sc_adv(struct scan *s)
{
    unsigned char c = (unsigned char)*s->p++;
    if (c == '\n') {
        s->line++;
        s->col = 0;
    } else if ((c & 0xC0) != 0x80) {
        s->col++;
    }
}

static struct jsonpos sc_pos(const struct scan *s)
{
    return (struct jsonpos){s->line, s->col + 1};
}

static void sc_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        sc_adv(s);
    }
}

static void sc_string(struct scan *s)
{
    sc_adv(s); /* opening quote */
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            sc_adv(s);
            if (s->p >= s->end) {
                return;
            }
        }
        sc_adv(s);
    }
    if (s->p < s->end) {
        sc_adv(s);
    }
}

/* Skip one value of any kind. The text already parsed, so it is well formed. */
static void sc_value(struct scan *s)
{
    sc_ws(s);
    if (s->p >= s->end) {
        return;
    }
    if (*s->p == '"') {
        sc_string(s);
        return;
    }
    if (*s->p == '{' || *s->p == '[') {
        int depth = 0;
        do {
            char c = *s->p;
            if (c == '"') {
                sc_string(s);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                depth--;
            }
            sc_adv(s);
        } while (depth > 0 && s->p < s->end);
        return;
    }
    while (s->p < s->end && strchr(",]} \t\r\n", *s->p) == NULL) {
        sc_adv(s);
    }
}

/* Does the raw quoted token [q, q+n) decode to `key`? Escapes are rare in keys,
 * so they are decoded by jansson itself rather than by a second decoder here. */
static bool sc_key_eq(const char *q, size_t n, const char *key)
{
    size_t klen = strlen(key);
    if (n < 2) {
        return false;
    }
    if (memchr(q, '\\', n) == NULL) {
        return n - 2 == klen && memcmp(q + 1, key, klen) == 0;
    }
    json_t *j = json_loadb(q, n, JSON_DECODE_ANY, NULL);
    bool eq = j != NULL && json_is_string(j) && json_string_length(j) == klen &&
              memcmp(json_string_value(j), key, klen) == 0;
    json_decref(j);
    return eq;
}

/* Find the member at path[0..depth) (depth >= 1) in the object at the scanner.
 * Fills *key (its opening quote) and *val (the value's first character) for the
 * deepest member matched; returns true when the whole path matched. */
static bool sc_find(struct scan *s, const char *const *path, size_t depth, struct jsonpos *key,
                    struct jsonpos *val)
{
    sc_ws(s);
    if (s->p >= s->end || *s->p != '{') {
        return false;
    }
    sc_adv(s);
    for (;;) {
        sc_ws(s);
        if (s->p >= s->end || *s->p != '"') {
            return false; /* '}' or malformed: not here */
        }
        struct jsonpos kp = sc_pos(s);
        const char *kstart = s->p;
        sc_string(s);
        size_t klen = (size_t)(s->p - kstart);
        sc_ws(s);
        if (s->p >= s->end || *s->p != ':') {
            return false;
        }
        sc_adv(s);
        sc_ws(s);
        if (sc_key_eq(kstart, klen, path[0])) {
            *key = kp;
            *val = sc_pos(s);
            return depth == 1 || sc_find(s, path + 1, depth - 1, key, val);
        }
        sc_value(s);
        sc_ws(s);
        if (s->p < s->end && *s->p == ',') {
            sc_adv(s);
        }
    }
}

bool jsonpos_find(const char *text, size_t len, const char *const *path, size_t depth,
                  struct jsonpos *key, struct jsonpos *val)
{
    struct scan s = {text, text + len, 1, 0};
    sc_ws(&s);
    struct jsonpos top = sc_pos(&s);
    *key = *val = top;
    if (depth == 0) {
        return true;
    }
    if (!sc_find(&s, path, depth, key, val)) {
        *key = *val = top;
        return false;
    }
    return true;
}
