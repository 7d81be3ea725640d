/* ctl_redis.c - blocking-style Redis calls for stickyctl (see ctl_redis.h).
 *
 * Every wait is a loop of ev_run(EVRUN_ONCE) until a flag set by a callback or
 * a timer flips, so store.c's own deadlines bound each call and nothing here
 * can hang longer than the timeout the operator gave.
 */
#include "ctl_redis.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "sentinel.h"
#include "util.h"

struct ctl_redis {
    struct ev_loop *loop;
    struct store *st;
    struct sentinel *sn; /* with redis.sentinels: finds the master for st */
    const struct cfg *cfg;
};

static void on_expired(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    *(bool *)w->data = true;
}

/* Where the CLI talks to, for messages ("127.0.0.1:6379", "unix:/path",
 * "master mymaster at 10.0.0.2:6379"). sn may be NULL. */
static void target(const struct cfg *c, const struct sentinel *sn, char *buf, size_t len)
{
    uint16_t port = 0;
    const char *host = sn != NULL ? sentinel_master(sn, &port) : NULL;
    if (sn != NULL && host != NULL) {
        snprintf(buf, len, "master %s at %s:%u", c->redis_master_name, host, (unsigned)port);
    } else if (sn != NULL) {
        snprintf(buf, len, "master %s (via %zu Sentinel%s)", c->redis_master_name,
                 c->redis_sentinels.n, c->redis_sentinels.n == 1 ? "" : "s");
    } else if (c->redis_unix != NULL && c->redis_unix[0] != '\0') {
        snprintf(buf, len, "unix:%s", c->redis_unix);
    } else {
        snprintf(buf, len, "%s:%u", c->redis_host ? c->redis_host : "127.0.0.1",
                 (unsigned)c->redis_port);
    }
}

struct ctl_redis *ctl_redis_open(struct ev_loop *loop, const struct cfg *c, int64_t timeout_ms,
                                 char *err, size_t errlen)
{
    struct ctl_redis *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->cfg = c;
    r->st = store_new(loop, c);
    if (r->st == NULL) {
        snprintf(err, errlen, "out of memory");
        free(r);
        return NULL;
    }
    if (c->redis_sentinels.n > 0 && (r->sn = sentinel_new(loop, c, r->st)) == NULL) {
        snprintf(err, errlen, "out of memory");
        ctl_redis_close(r);
        return NULL;
    }
    /* The store retries forever with backoff; a CLI gives up at the first
     * failure the store records (refused, handshake error) or at the deadline. */
    bool expired = false;
    ev_timer deadline;
    ev_timer_init(&deadline, on_expired, (ev_tstamp)timeout_ms / 1000.0, 0.);
    deadline.data = &expired;
    ev_timer_start(loop, &deadline);
    /* Behind Sentinel a refused master is not final: during a failover a Sentinel
     * may still name the old one, and the next discovery names the new one. A
     * cluster: until the slot map is read and every master answered (one seed
     * refusing is no reason to stop: another may answer). */
    while (!store_settled(r->st) && !expired &&
           (r->sn != NULL ? !sentinel_gave_up(r->sn)
                          : store_is_cluster(r->st) || store_last_error(r->st)[0] == '\0')) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &deadline);
    if (store_settled(r->st)) {
        return r;
    }
    char where[160];
    target(c, r->sn, where, sizeof(where));
    if (r->sn != NULL && sentinel_master(r->sn, &(uint16_t){0}) == NULL) {
        const char *why = sentinel_last_error(r->sn);
        snprintf(err, errlen, "redis %s: %s", where,
                 why[0] != '\0' ? why : "no Sentinel answered in time");
    } else if (store_last_error(r->st)[0] != '\0') {
        snprintf(err, errlen, "redis %s: %s", where, store_last_error(r->st));
    } else {
        snprintf(err, errlen, "redis %s: not connected within %lld ms", where,
                 (long long)timeout_ms);
    }
    ctl_redis_close(r);
    return NULL;
}

void ctl_redis_close(struct ctl_redis *r)
{
    if (r == NULL) {
        return;
    }
    sentinel_free(r->sn);
    store_free(r->st);
    free(r);
}

struct store *ctl_redis_store(struct ctl_redis *r)
{
    return r->st;
}

/* ---- replies ---------------------------------------------------------------- */

static int copy_reply(const struct store_reply *in, struct ctl_reply *out)
{
    memset(out, 0, sizeof(*out));
    out->type = store_reply_type(in);
    switch (out->type) {
    case STORE_R_INT:
        out->integer = store_reply_int(in);
        return 0;
    case STORE_R_STR:
    case STORE_R_ERR:
    case STORE_R_STATUS: {
        size_t len = 0;
        const char *s = store_reply_str(in, &len);
        out->str = malloc(len + 1);
        if (out->str == NULL) {
            return -1;
        }
        if (len > 0) {
            memcpy(out->str, s, len);
        }
        out->str[len] = '\0';
        out->len = len;
        return 0;
    }
    case STORE_R_ARRAY: {
        size_t n = store_reply_len(in);
        out->elem = calloc(n ? n : 1, sizeof(*out->elem));
        if (out->elem == NULL) {
            return -1;
        }
        out->n = n;
        for (size_t i = 0; i < n; i++) {
            if (copy_reply(store_reply_elem(in, i), &out->elem[i]) < 0) {
                return -1; /* the caller frees the partial tree */
            }
        }
        return 0;
    }
    default:
        return 0;
    }
}

void ctl_reply_free(struct ctl_reply *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        ctl_reply_free(&r->elem[i]);
    }
    free(r->elem);
    free(r->str);
    memset(r, 0, sizeof(*r));
}

const struct ctl_reply *ctl_reply_hget(const struct ctl_reply *hash, const char *field)
{
    if (hash->type != STORE_R_ARRAY) {
        return NULL;
    }
    size_t flen = strlen(field);
    for (size_t i = 0; i + 1 < hash->n; i += 2) {
        const struct ctl_reply *k = &hash->elem[i];
        if (k->str != NULL && k->len == flen && memcmp(k->str, field, flen) == 0) {
            return &hash->elem[i + 1];
        }
    }
    return NULL;
}

/* ---- calls ------------------------------------------------------------------ */

struct call {
    bool done;
    bool oom;
    enum store_result res;
    struct ctl_reply *out;
};

static void on_reply(const struct store_reply *r, enum store_result res, void *arg)
{
    struct call *c = arg;
    c->done = true;
    c->res = res;
    if (res == STORE_OK && copy_reply(r, c->out) < 0) {
        c->oom = true;
    }
}

/* Send through the store (node: SIZE_MAX routes by key) and wait for the reply. */
static int call(struct ctl_redis *r, size_t node, struct ctl_reply *out, char *err, size_t errlen,
                int argc, const char **argv, const size_t *argvlen)
{
    memset(out, 0, sizeof(*out));
    struct call c = {.out = out};
    char where[160];
    int sent;
    if (node != SIZE_MAX) {
        store_node_name(r->st, node, where, sizeof(where));
        sent = store_command_node(r->st, node, argc, argv, argvlen, 0, on_reply, &c);
    } else if (argc >= 4 &&
               (strcasecmp(argv[0], "EVAL") == 0 || strcasecmp(argv[0], "EVALSHA") == 0) &&
               strcmp(argv[2], "0") != 0) {
        /* a script runs where its first key lives (a cluster) */
        target(r->cfg, r->sn, where, sizeof(where));
        sent = store_command_key(r->st, argv[3], argvlen != NULL ? argvlen[3] : strlen(argv[3]),
                                 argc, argv, argvlen, 0, on_reply, &c);
    } else {
        target(r->cfg, r->sn, where, sizeof(where));
        sent = store_command(r->st, argc, argv, argvlen, 0, on_reply, &c);
    }
    if (sent < 0) {
        const char *why = store_last_error(r->st);
        snprintf(err, errlen, "redis %s: not connected%s%s", where, why[0] ? ": " : "", why);
        return -1;
    }
    while (!c.done) {
        ev_run(r->loop, EVRUN_ONCE);
    }
    switch (c.res) {
    case STORE_OK:
        break;
    case STORE_TIMEOUT:
        snprintf(err, errlen, "redis %s: no reply to %s within %lld ms", where, argv[0],
                 (long long)r->cfg->redis_timeout_ms);
        return -1;
    default: {
        const char *why = store_last_error(r->st);
        snprintf(err, errlen, "redis %s: connection lost during %s%s%s", where, argv[0],
                 why[0] ? ": " : "", why);
        return -1;
    }
    }
    if (c.oom) {
        ctl_reply_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (out->type == STORE_R_ERR) {
        snprintf(err, errlen, "redis %s: %s: %s", where, argv[0], out->str);
        ctl_reply_free(out);
        return -1;
    }
    return 0;
}

int ctl_redis_call(struct ctl_redis *r, struct ctl_reply *out, char *err, size_t errlen, int argc,
                   const char **argv, const size_t *argvlen)
{
    return call(r, SIZE_MAX, out, err, errlen, argc, argv, argvlen);
}

size_t ctl_redis_nodes(struct ctl_redis *r)
{
    return store_nodes(r->st);
}

int ctl_redis_call_node(struct ctl_redis *r, size_t node, struct ctl_reply *out, char *err,
                        size_t errlen, int argc, const char **argv, const size_t *argvlen)
{
    return call(r, node, out, err, errlen, argc, argv, argvlen);
}
