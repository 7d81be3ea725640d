/* ctl.c - helpers shared by stickyctl's commands (see ctl.h): errors, keys,
 * name lists, backend discovery, known-name checks and event publishing. */
#include "ctl.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_fmt.h"
#include "events.h"
#include "model.h"
#include "util.h"

const char *ctl_esc(const char *s, char buf[CTL_ESC_MAX])
{
    (void)ctl_fmt_escape(s, strlen(s), buf, CTL_ESC_MAX);
    return buf;
}

json_t *ctl_json_str(const char *s, size_t n)
{
    char small[256];
    char *buf = n < sizeof(small) / 2 ? small : malloc(2 * n + 1);
    if (buf == NULL) {
        return NULL;
    }
    int len = ctl_fmt_utf8_bytes(s, n, buf, 2 * n + 1);
    json_t *j = len >= 0 ? json_stringn(buf, (size_t)len) : NULL;
    if (buf != small) {
        free(buf);
    }
    return j;
}

json_t *ctl_json_cstr(const char *s)
{
    return s != NULL ? ctl_json_str(s, strlen(s)) : NULL;
}

void ctl_fail(const char *fmt, ...)
{
    char line[1024], esc[CTL_ESC_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* one line whatever the message carries (a Redis error, a name): a newline or an
     * escape sequence in it is shown as \xNN, never acted on by the terminal */
    fprintf(stderr, "stickyctl: %s\n", ctl_esc(line, esc));
}

int ctl_call(struct ctl *c, struct ctl_reply *out, int argc, const char **argv,
             const size_t *argvlen)
{
    char err[512];
    if (ctl_redis_call(c->redis, out, err, sizeof(err), argc, argv, argvlen) < 0) {
        ctl_fail("%s", err);
        return -1;
    }
    return 0;
}

int ctl_key(const struct ctl *c, char *buf, const char *backend, const char *suffix)
{
    if (model_key(buf, CTL_KEY_MAX, c->cfg.redis_prefix, backend, strlen(backend), suffix) < 0) {
        ctl_fail("key name too long for backend '%s'", backend);
        return -1;
    }
    return 0;
}

int ctl_record_key(const struct ctl *c, char *buf, const char *backend, const char *id)
{
    _Static_assert(CTL_KEY_MAX >= MODEL_KEY_MAX, "a record key fits");
    if (model_record_key(buf, &c->cfg, backend, id, strlen(id)) < 0) {
        ctl_fail("key name too long (or not a record id) for backend '%s'", backend);
        return -1;
    }
    return 0;
}

/* ---- name lists --------------------------------------------------------------- */

bool ctl_names_has(const struct ctl_names *ns, const char *s)
{
    for (size_t i = 0; i < ns->n; i++) {
        if (strcmp(ns->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

int ctl_names_add(struct ctl_names *ns, const char *s, size_t len)
{
    for (size_t i = 0; i < ns->n; i++) {
        if (strlen(ns->v[i]) == len && memcmp(ns->v[i], s, len) == 0) {
            return 0;
        }
    }
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 16;
        char **v = realloc(ns->v, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        ns->v = v;
        ns->cap = cap;
    }
    char *copy = strndup(s, len);
    if (copy == NULL) {
        return -1;
    }
    ns->v[ns->n++] = copy;
    return 0;
}

static int names_cmp(const void *a, const void *b)
{
    return ctl_natcmp(*(char *const *)a, *(char *const *)b);
}

void ctl_names_sort(struct ctl_names *ns)
{
    if (ns->n > 1) {
        qsort(ns->v, ns->n, sizeof(*ns->v), names_cmp);
    }
}

void ctl_names_join(const struct ctl_names *ns, char *buf, size_t len)
{
    static const char more[] = ", ...";
    size_t off = 0;
    buf[0] = '\0';
    if (ns->n == 0) {
        snprintf(buf, len, "none");
        return;
    }
    for (size_t i = 0; i < ns->n; i++) {
        size_t need = strlen(ns->v[i]) + (i ? 2 : 0);
        if (off + need + sizeof(more) > len) {
            snprintf(buf + off, len - off, "%s", more);
            return;
        }
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", ns->v[i]);
    }
}

void ctl_names_release(struct ctl_names *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        free(ns->v[i]);
    }
    free(ns->v);
    memset(ns, 0, sizeof(*ns));
}

/* ---- discovery ------------------------------------------------------------------ */

/* key == "<prefix>{<backend>}<tail>": add the backend. */
static int add_backend_of(struct ctl_names *out, const char *prefix, const char *key, size_t klen,
                          const char *tail)
{
    size_t plen = strlen(prefix), tlen = strlen(tail);
    if (klen <= plen + 1 + tlen || memcmp(key, prefix, plen) != 0 || key[plen] != '{' ||
        memcmp(key + klen - tlen, tail, tlen) != 0) {
        return 0;
    }
    return ctl_names_add(out, key + plen + 1, klen - plen - 1 - tlen);
}

int ctl_scan_backends(struct ctl *c, struct ctl_names *out)
{
    /* One pass for both kinds of key: s[et][ra][vt]e* matches ":servers" and
     * ":state" but not the session keys (":s:<sid>"), which are the bulk. */
    char esc[256], pat[CTL_KEY_MAX], cursor[32] = "0";
    if (ctl_glob_escape(c->cfg.redis_prefix, esc, sizeof(esc)) < 0) {
        ctl_fail("prefix too long");
        return CTL_USAGE;
    }
    snprintf(pat, sizeof(pat), "%s{*}:s[et][ra][vt]e*", esc);
    /* a cluster's keys are spread over its masters: SCAN each one */
    size_t nodes = ctl_redis_nodes(c->redis);
    for (size_t node = 0; node < nodes; node++) {
        snprintf(cursor, sizeof(cursor), "0");
        do {
            const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
            struct ctl_reply r;
            char err[512];
            if (ctl_redis_call_node(c->redis, node, &r, err, sizeof(err), 6, argv, NULL) < 0) {
                ctl_fail("%s", err);
                return CTL_REDIS;
            }
            if (r.type != STORE_R_ARRAY || r.n != 2 || r.elem[0].str == NULL ||
                r.elem[1].type != STORE_R_ARRAY) {
                ctl_reply_free(&r);
                ctl_fail("unexpected reply to SCAN");
                return CTL_REDIS;
            }
            snprintf(cursor, sizeof(cursor), "%s", r.elem[0].str);
            for (size_t i = 0; i < r.elem[1].n; i++) {
                const struct ctl_reply *k = &r.elem[1].elem[i];
                if (k->str == NULL) {
                    continue;
                }
                if (add_backend_of(out, c->cfg.redis_prefix, k->str, k->len, "}:servers") < 0 ||
                    add_backend_of(out, c->cfg.redis_prefix, k->str, k->len, "}:state") < 0) {
                    ctl_reply_free(&r);
                    ctl_fail("out of memory");
                    return CTL_REDIS;
                }
            }
            ctl_reply_free(&r);
        } while (strcmp(cursor, "0") != 0);
    }
    ctl_names_sort(out);
    return CTL_OK;
}

int ctl_known_servers(struct ctl *c, const char *backend, struct ctl_names *out, bool *exists)
{
    static const char *const suffixes[] = {"servers", "conns", "state"};
    *exists = false;
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char key[CTL_KEY_MAX];
        if (ctl_key(c, key, backend, suffixes[i]) < 0) {
            return CTL_USAGE;
        }
        const char *argv[] = {"HKEYS", key};
        struct ctl_reply r;
        if (ctl_call(c, &r, 2, argv, NULL) < 0) {
            return CTL_REDIS;
        }
        if (r.n > 0) {
            *exists = true; /* Redis drops empty hashes: fields mean the key exists */
        }
        for (size_t j = 0; j < r.n; j++) {
            if (r.elem[j].str != NULL && ctl_names_add(out, r.elem[j].str, r.elem[j].len) < 0) {
                ctl_reply_free(&r);
                ctl_fail("out of memory");
                return CTL_REDIS;
            }
        }
        ctl_reply_free(&r);
    }
    ctl_names_sort(out);
    return CTL_OK;
}

int ctl_check_known(struct ctl *c, const char *backend, const char *server, bool force_hint)
{
    const char *hint = force_hint ? "; --force writes it anyway" : "";
    struct ctl_names srv = {0}, bes = {0};
    char list[600];
    bool exists = false;
    int rc = ctl_known_servers(c, backend, &srv, &exists);
    if (rc != CTL_OK) {
        goto out;
    }
    if (!exists) {
        rc = ctl_scan_backends(c, &bes);
        if (rc != CTL_OK) {
            goto out;
        }
        ctl_names_join(&bes, list, sizeof(list));
        ctl_fail("unknown backend '%s' under prefix '%s' (known: %s)%s", backend,
                 c->cfg.redis_prefix, list, hint);
        rc = CTL_UNKNOWN;
        goto out;
    }
    if (server != NULL && !ctl_names_has(&srv, server)) {
        ctl_names_join(&srv, list, sizeof(list));
        ctl_fail("unknown server '%s' in backend '%s' (known: %s)%s", server, backend, list, hint);
        rc = CTL_UNKNOWN;
    }
out:
    ctl_names_release(&srv);
    ctl_names_release(&bes);
    return rc;
}

int ctl_publish(struct ctl *c, const struct event *e, long long *receivers)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *receivers = 0;
    if (events_encode(e, &buf, &len) < 0) {
        ctl_fail("cannot encode the event");
        return CTL_REDIS;
    }
    const char *argv[] = {"PUBLISH", c->cfg.events_channel, (const char *)buf};
    size_t argvlen[] = {7, strlen(c->cfg.events_channel), len};
    struct ctl_reply r;
    int rc = ctl_call(c, &r, 3, argv, argvlen) < 0 ? CTL_REDIS : CTL_OK;
    free(buf);
    if (rc == CTL_OK) {
        *receivers = r.integer;
        ctl_reply_free(&r);
    }
    return rc;
}
