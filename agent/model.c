/* model.c - key names, record and state values (see model.h).
 *
 * Pure string work; must not know about sockets, hiredis or the clock.
 */
#include "model.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "util.h"

static const char *const state_names[] = {"ready", "drain", "maint", "down"};
_Static_assert(ARRAY_SIZE(state_names) == MODEL_STATE_COUNT, "a name per state");

const char *model_state_name(enum model_state s)
{
    return (unsigned)s < MODEL_STATE_COUNT ? state_names[s] : "unknown";
}

int model_key(char *buf, size_t len, const char *prefix, const char *backend, size_t blen,
              const char *suffix)
{
    int n = snprintf(buf, len, "%s{%.*s}:%s", prefix, (int)blen, backend, suffix);
    return n < 0 || (size_t)n >= len ? -1 : n;
}

int model_key_id(char *buf, const char *prefix, const char *backend, const char *suffix,
                 const char *id, size_t id_len)
{
    size_t pl = strlen(prefix), bl = strlen(backend), sl = strlen(suffix);
    size_t n = pl + 1 + bl + 2 + sl + id_len;
    if (n >= MODEL_KEY_MAX) {
        return -1;
    }
    char *p = buf;
    memcpy(p, prefix, pl);
    p += pl;
    *p++ = '{';
    memcpy(p, backend, bl);
    p += bl;
    *p++ = '}';
    *p++ = ':';
    memcpy(p, suffix, sl);
    p += sl;
    memcpy(p, id, id_len);
    p[id_len] = '\0';
    return (int)n;
}

int model_record_key(char *buf, const struct cfg *c, const char *backend, const char *id,
                     size_t id_len)
{
    if (!c->redis_cluster) {
        return model_key_id(buf, c->redis_prefix, backend, "s:", id, id_len);
    }
    size_t pl = strlen(c->redis_prefix), bl = strlen(backend);
    size_t n = pl + bl + 4 + id_len + 1;
    if (n >= MODEL_KEY_MAX || memchr(id, '}', id_len) != NULL) {
        return -1;
    }
    char *p = buf;
    memcpy(p, c->redis_prefix, pl);
    p += pl;
    memcpy(p, backend, bl);
    p += bl;
    memcpy(p, ":s:{", 4);
    p += 4;
    memcpy(p, id, id_len);
    p += id_len;
    *p++ = '}';
    *p = '\0';
    return (int)n;
}

/* A decimal number at v[*i..len), up to a space or the end; -1 if none. */
static int parse_dec(const char *v, size_t len, size_t *i, int64_t *out)
{
    size_t j = *i;
    int64_t n = 0;
    while (j < len && v[j] >= '0' && v[j] <= '9') {
        if (n > (INT64_MAX - 9) / 10) {
            return -1;
        }
        n = n * 10 + (v[j] - '0');
        j++;
    }
    if (j == *i) {
        return -1;
    }
    *i = j;
    *out = n;
    return 0;
}

int64_t model_state_since(const char *v, size_t len)
{
    size_t i = 6;
    int64_t ms;
    if (len < 7 || memcmp(v, "ready:", 6) != 0 || parse_dec(v, len, &i, &ms) < 0 || i != len) {
        return MODEL_SINCE_NONE;
    }
    return ms;
}

int model_parse_state(const char *v, size_t len, enum model_state *st, int64_t *deadline_ms,
                      bool *close_at_deadline)
{
    *deadline_ms = 0;
    *close_at_deadline = false;
    if (len == 5 && memcmp(v, "maint", 5) == 0) {
        *st = MODEL_MAINT;
        return 0;
    }
    if (model_state_since(v, len) != MODEL_SINCE_NONE) {
        *st = MODEL_READY; /* ready, ramping since then (slow start) */
        return 0;
    }
    size_t i = 6;
    int64_t ms;
    if (len < 7 || memcmp(v, "drain:", 6) != 0 || parse_dec(v, len, &i, &ms) < 0) {
        return -1;
    }
    if (i != len) {
        if (len - i != 6 || memcmp(v + i, ":close", 6) != 0) {
            return -1;
        }
        *close_at_deadline = true;
    }
    *st = MODEL_DRAIN;
    *deadline_ms = ms;
    return 0;
}

int model_record_parse(const char *v, size_t len, struct model_record *out)
{
    memset(out, 0, sizeof(*out));
    const char *sp = memchr(v, ' ', len);
    if (sp == NULL || sp == v) {
        return -1;
    }
    out->server = v;
    out->server_len = (size_t)(sp - v);
    size_t i = out->server_len + 1;
    if (parse_dec(v, len, &i, &out->created_ms) < 0 || i >= len || v[i++] != ' ' ||
        parse_dec(v, len, &i, &out->seen_ms) < 0 || i + 2 > len || v[i] != ' ' ||
        (v[i + 1] != '-' && v[i + 1] != 'm') || (i + 2 < len && v[i + 2] != ' ')) {
        return -1;
    }
    out->moved = v[i + 1] == 'm';
    i += 2;
    if (i < len) {
        i++; /* the space before inst */
    }
    out->inst = v + i;
    out->inst_len = len - i;
    return 0;
}

int64_t model_open_ttl_ms(const struct cfg *c)
{
    return c->session_ttl_ms > 86400000 ? c->session_ttl_ms : 86400000;
}
