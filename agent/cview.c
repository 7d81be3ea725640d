/* cview.c - the cluster-wide connection counts as last read from Redis (see cview.h). */
#include "cview.h"

#include <ev.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "log.h"
#include "servers.h"
#include "store.h"
#include "util.h"

#define CVIEW_KEY_MAX 256

struct cv_entry {
    char server[SRV_NAME_MAX];
    long long conns;
};

struct cv_backend {
    char name[SRV_NAME_MAX];
    struct cv_entry *e;
    size_t n;
};

struct cview {
    struct ev_loop *loop;
    struct store *st;
    char *prefix;
    ev_timer poll;
    struct cv_backend *be;
    size_t nbe;
    unsigned inflight; /* replies due: the cview lives until they ran */
    bool stopped;
};

/* One HGETALL in flight: which backend it was for. */
struct cv_req {
    struct cview *v;
    char backend[SRV_NAME_MAX];
};

static struct cv_backend *backend_slot(struct cview *v, const char *name)
{
    for (size_t i = 0; i < v->nbe; i++) {
        if (strcmp(v->be[i].name, name) == 0) {
            return &v->be[i];
        }
    }
    struct cv_backend *nb = realloc(v->be, (v->nbe + 1) * sizeof(*nb));
    if (nb == NULL) {
        return NULL;
    }
    v->be = nb;
    struct cv_backend *b = &v->be[v->nbe++];
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    return b;
}

static void on_conns(const struct store_reply *r, enum store_result res, void *arg)
{
    struct cv_req *q = arg;
    struct cview *v = q->v;
    v->inflight--;
    if (v->stopped || res != STORE_OK || store_reply_type(r) != STORE_R_ARRAY) {
        free(q);
        return;
    }
    struct cv_backend *b = backend_slot(v, q->backend);
    size_t n = store_reply_len(r) / 2;
    struct cv_entry *e = n > 0 ? calloc(n, sizeof(*e)) : NULL;
    if (b == NULL || (n > 0 && e == NULL)) {
        free(e);
        free(q);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t kl = 0, vl = 0;
        const char *k = store_reply_str(store_reply_elem(r, 2 * i), &kl);
        const char *c = store_reply_str(store_reply_elem(r, 2 * i + 1), &vl);
        char num[24];
        snprintf(e[i].server, sizeof(e[i].server), "%.*s", k != NULL ? (int)kl : 0,
                 k != NULL ? k : "");
        snprintf(num, sizeof(num), "%.*s", c != NULL ? (int)vl : 0, c != NULL ? c : "0");
        e[i].conns = strtoll(num, NULL, 10);
    }
    free(b->e);
    b->e = e;
    b->n = n;
    free(q);
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(revents);
    struct cview *v = container_of(w, struct cview, poll);
    if (v->inflight > 0 || !store_connected(v->st)) {
        return; /* the last round is still out, or nobody to ask: keep the old counts */
    }
    for (size_t i = 0; i < servers_count(); i++) {
        const struct srv_backend *b = servers_at(i);
        char key[CVIEW_KEY_MAX];
        if (!b->http ||
            model_key(key, sizeof(key), v->prefix, b->name, strlen(b->name), "conns") < 0) {
            continue;
        }
        struct cv_req *q = calloc(1, sizeof(*q));
        if (q == NULL) {
            return;
        }
        q->v = v;
        snprintf(q->backend, sizeof(q->backend), "%s", b->name);
        const char *argv[] = {"HGETALL", key};
        if (store_command(v->st, 2, argv, NULL, 0, on_conns, q) != 0) {
            free(q);
            return;
        }
        v->inflight++;
    }
}

struct cview *cview_new(struct ev_loop *loop, struct store *st, const char *prefix,
                        int64_t period_ms)
{
    struct cview *v = calloc(1, sizeof(*v));
    if (v == NULL || (v->prefix = strdup(prefix)) == NULL) {
        free(v);
        return NULL;
    }
    v->loop = loop;
    v->st = st;
    ev_tstamp p = (ev_tstamp)(period_ms > 0 ? period_ms : 1000) / 1000.0;
    ev_timer_init(&v->poll, on_poll, 0.0, p);
    ev_timer_start(loop, &v->poll);
    ev_unref(loop);
    return v;
}

void cview_dump_prometheus(struct cview *v, FILE *f)
{
    fputs("# HELP stickyd_server_connections Cluster-wide live connections (this agent's last "
          "read of Redis)\n# TYPE stickyd_server_connections gauge\n",
          f);
    for (size_t i = 0; v != NULL && i < servers_count(); i++) {
        const struct srv_backend *sb = servers_at(i);
        const struct cv_backend *b = NULL;
        for (size_t k = 0; k < v->nbe; k++) {
            if (strcmp(v->be[k].name, sb->name) == 0) {
                b = &v->be[k];
            }
        }
        for (size_t j = 0; sb->http && j < sb->nservers; j++) {
            long long c = 0;
            for (size_t k = 0; b != NULL && k < b->n; k++) {
                if (strcmp(b->e[k].server, sb->servers[j].name) == 0) {
                    c = b->e[k].conns;
                }
            }
            fprintf(f, "stickyd_server_connections{backend=\"%s\",server=\"%s\"} %lld\n", sb->name,
                    sb->servers[j].name, c);
        }
    }
}

void cview_stop(struct cview *v)
{
    if (v != NULL && !v->stopped) {
        v->stopped = true;
        ev_ref(v->loop);
        ev_timer_stop(v->loop, &v->poll);
    }
}

void cview_free(struct cview *v)
{
    if (v == NULL) {
        return;
    }
    cview_stop(v);
    for (size_t i = 0; i < v->nbe; i++) {
        free(v->be[i].e);
    }
    free(v->be);
    free(v->prefix);
    free(v);
}
