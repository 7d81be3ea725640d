/* servers.c - the registry of backends and their servers (weight, state, scur).
 *
 * Pure data: filled from the config's static list or by hapi_parse_install, read by the
 * decision code. No I/O. Lookups take explicit lengths because names arrive as
 * views into SPOP frames. Every update may move the arrays (see servers.h).
 */
#include "servers.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct srv_backend *view;
static size_t nview;

static bool name_eq(const char name[SRV_NAME_MAX], const char *s, size_t len)
{
    return len < SRV_NAME_MAX && memcmp(name, s, len) == 0 && name[len] == '\0';
}

/* A name fits the fixed field: 1..SRV_NAME_MAX-1 bytes, no NUL inside. */
static bool name_ok(const char *s, size_t len)
{
    return len > 0 && len < SRV_NAME_MAX && memchr(s, '\0', len) == NULL;
}

static void backend_free(struct srv_backend *b)
{
    free(b->servers);
    b->servers = NULL;
    b->nservers = 0;
}

static void view_free(struct srv_backend *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        backend_free(&v[i]);
    }
    free(v);
}

/* Copy srvs[0..n) into a new array after checking every name; NULL for n == 0
 * is a valid empty list, so failure is reported through *ok. */
static struct srv *servers_copy(const struct srv *srvs, size_t n, bool *ok)
{
    *ok = false;
    for (size_t i = 0; i < n; i++) {
        if (memchr(srvs[i].name, '\0', SRV_NAME_MAX) == NULL || srvs[i].name[0] == '\0' ||
            (unsigned)srvs[i].state >= MODEL_STATE_COUNT) {
            return NULL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(srvs[i].name, srvs[j].name) == 0) {
                return NULL; /* a duplicate would make lookups ambiguous */
            }
        }
    }
    struct srv *copy = NULL;
    if (n > 0) {
        copy = malloc(n * sizeof(*copy));
        if (copy == NULL) {
            return NULL;
        }
        memcpy(copy, srvs, n * sizeof(*copy));
    }
    *ok = true;
    return copy;
}

int servers_set_backend(const char *backend, const struct srv *srvs, size_t n)
{
    size_t blen = strlen(backend);
    if (!name_ok(backend, blen)) {
        return -1;
    }
    bool ok;
    struct srv *copy = servers_copy(srvs, n, &ok);
    if (!ok) {
        return -1;
    }
    for (size_t i = 0; i < nview; i++) {
        if (name_eq(view[i].name, backend, blen)) {
            free(view[i].servers);
            view[i].servers = copy;
            view[i].nservers = n;
            return 0;
        }
    }
    struct srv_backend *v = realloc(view, (nview + 1) * sizeof(*v));
    if (v == NULL) {
        free(copy);
        return -1;
    }
    view = v;
    struct srv_backend *b = &view[nview++];
    memset(b, 0, sizeof(*b));
    memcpy(b->name, backend, blen + 1);
    b->servers = copy;
    b->nservers = n;
    b->http = true;
    return 0;
}

int servers_set_http(const char *backend, bool http)
{
    size_t blen = strlen(backend);
    for (size_t i = 0; i < nview; i++) {
        if (name_eq(view[i].name, backend, blen)) {
            view[i].http = http;
            return 0;
        }
    }
    return -1;
}

void servers_retain(const char *const *keep, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < nview; i++) {
        bool kept = false;
        for (size_t k = 0; k < n && !kept; k++) {
            kept = strcmp(view[i].name, keep[k]) == 0;
        }
        if (kept) {
            view[w++] = view[i];
        } else {
            backend_free(&view[i]);
        }
    }
    nview = w;
    if (nview == 0) {
        free(view);
        view = NULL;
    }
}

int servers_load_static(const struct cfg *c)
{
    /* build the whole new view aside, so a failure leaves the old one intact */
    struct srv_backend *v = NULL;
    size_t nv = 0;
    if (c->nbackends > 0 && (v = calloc(c->nbackends, sizeof(*v))) == NULL) {
        return -1;
    }
    for (; nv < c->nbackends; nv++) {
        const struct cfg_backend *cb = &c->backends[nv];
        struct srv_backend *b = &v[nv];
        size_t blen = strlen(cb->name);
        if (!name_ok(cb->name, blen)) {
            goto err_free;
        }
        memcpy(b->name, cb->name, blen + 1);
        b->http = true; /* the static list names the WebSocket backends */
        if (cb->nservers > 0 && (b->servers = calloc(cb->nservers, sizeof(*b->servers))) == NULL) {
            goto err_free;
        }
        for (size_t j = 0; j < cb->nservers; j++) {
            size_t slen = strlen(cb->servers[j].name);
            if (!name_ok(cb->servers[j].name, slen)) {
                goto err_free_backend;
            }
            memcpy(b->servers[j].name, cb->servers[j].name, slen + 1);
            b->servers[j].weight = cb->servers[j].weight;
            b->servers[j].state = MODEL_READY;
            b->servers[j].scur = 0;
        }
        b->nservers = cb->nservers;
    }
    servers_clear();
    view = v;
    nview = nv;
    return 0;

err_free_backend:
    backend_free(&v[nv]);
err_free:
    view_free(v, nv);
    return -1;
}

const struct srv_backend *servers_find(const char *backend, size_t len)
{
    for (size_t i = 0; i < nview; i++) {
        if (name_eq(view[i].name, backend, len)) {
            return &view[i];
        }
    }
    return NULL;
}

const struct srv *servers_find_server(const struct srv_backend *b, const char *name, size_t len)
{
    if (b == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < b->nservers; i++) {
        if (name_eq(b->servers[i].name, name, len)) {
            return &b->servers[i];
        }
    }
    return NULL;
}

size_t servers_count(void)
{
    return nview;
}

const struct srv_backend *servers_at(size_t i)
{
    return i < nview ? &view[i] : NULL;
}

void servers_clear(void)
{
    view_free(view, nview);
    view = NULL;
    nview = 0;
}

int servers_copy_name(char dst[SRV_NAME_MAX], const char *s, size_t n)
{
    if (n >= SRV_NAME_MAX) {
        return -1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}
