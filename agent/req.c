/* req.c - one NOTIFY frame in flight: the handler registry, the per-request
 * action list and the completion count that triggers the ACK.
 *
 * Owns request objects (recycled through a freelist so the synchronous path
 * does not call malloc) and the encoded action bytes. Knows nothing about
 * sockets nor connections: completion goes to the creator's callback; an
 * orphaned request (its creator gone) is freed on its last req_done() and counted.
 */
#include "req_engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stats.h"

/* Most ACKs carry a handful of small variables: keep them inline. */
#define REQ_INLINE_ACTIONS 256u
/* Request objects kept for reuse; beyond this they go back to malloc. */
#define REQ_FREELIST_MAX 4096u
/* ACK header after the length prefix: type(1) + flags(4) + two varints. */
#define REQ_ACK_FIXED 5u

struct req {
    req_complete_fn on_complete; /* NULL once orphaned */
    void *arg;                   /* on_complete's */
    const char *owner_ident;     /* the creator's, borrowed until orphaned */
    struct req *prev, *next; /* the creator's in-flight list, or the freelist */
    uint64_t stream_id, frame_id;
    uint64_t start_ns; /* NOTIFY received (decision latency) */
    size_t act_limit;  /* bytes of actions that still fit one ACK frame */
    unsigned pending;  /* messages handed out and not yet done (+1 while dispatching) */
    unsigned nactions;
    size_t act_len, act_cap;
    uint8_t *act;      /* inline_act, or a heap buffer once grown */
    char ident[96];
    uint8_t inline_act[REQ_INLINE_ACTIONS];
};

struct req_handler {
    char *name;
    size_t name_len;
    req_handler_fn fn;
    void *arg;
};

static struct req_handler *handlers;
static size_t nhandlers;

static struct req *freelist;
static unsigned nfree;

/* ---- registry ---------------------------------------------------------- */

int req_register(const char *name, req_handler_fn fn, void *arg)
{
    for (size_t i = 0; i < nhandlers; i++) {
        if (strcmp(handlers[i].name, name) == 0) {
            handlers[i].fn = fn;
            handlers[i].arg = arg;
            return 0;
        }
    }
    struct req_handler *h = realloc(handlers, (nhandlers + 1) * sizeof(*h));
    if (h == NULL) {
        return -1;
    }
    handlers = h;
    char *copy = strdup(name);
    if (copy == NULL) {
        return -1;
    }
    handlers[nhandlers++] = (struct req_handler){copy, strlen(copy), fn, arg};
    return 0;
}

/* Also releases the cached request objects, so a clean exit leaks nothing. */
void req_registry_clear(void)
{
    for (size_t i = 0; i < nhandlers; i++) {
        free(handlers[i].name);
    }
    free(handlers);
    handlers = NULL;
    nhandlers = 0;
    while (freelist != NULL) {
        struct req *r = freelist;
        freelist = r->next;
        free(r);
    }
    nfree = 0;
}

static const struct req_handler *handler_find(struct spop_str name)
{
    for (size_t i = 0; i < nhandlers; i++) {
        if (handlers[i].name_len == name.len && memcmp(handlers[i].name, name.ptr, name.len) == 0) {
            return &handlers[i];
        }
    }
    return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

struct req *req_new(req_complete_fn on_complete, void *arg, const char *owner_ident,
                    uint64_t stream_id, uint64_t frame_id, uint32_t max_frame)
{
    struct req *r = freelist;
    if (r != NULL) {
        freelist = r->next;
        nfree--;
    } else {
        r = malloc(sizeof(*r));
        if (r == NULL) {
            return NULL;
        }
    }
    r->on_complete = on_complete;
    r->arg = arg;
    r->owner_ident = owner_ident;
    r->prev = r->next = NULL;
    r->stream_id = stream_id;
    r->frame_id = frame_id;
    uint8_t tmp[SPOP_VARINT_MAX];
    size_t hdr = REQ_ACK_FIXED + spop_varint_encode(stream_id, tmp) +
                 spop_varint_encode(frame_id, tmp);
    r->act_limit = max_frame > hdr ? max_frame - hdr : 0;
    r->pending = 0;
    r->nactions = 0;
    r->act_len = 0;
    r->act_cap = sizeof(r->inline_act);
    r->act = r->inline_act;
    r->ident[0] = '\0';
    r->start_ns = stats_now_ns();
    return r;
}

static void req_free(struct req *r)
{
    if (r->act != r->inline_act) {
        free(r->act);
        r->act = r->inline_act;
    }
    if (nfree < REQ_FREELIST_MAX) {
        r->next = freelist;
        freelist = r;
        nfree++;
    } else {
        free(r);
    }
}

void req_link(struct req **head, struct req *r)
{
    r->prev = NULL;
    r->next = *head;
    if (*head != NULL) {
        (*head)->prev = r;
    }
    *head = r;
}

void req_unlink(struct req **head, struct req *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else if (*head == r) {
        *head = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
}

void req_orphan(struct req *r)
{
    if (r->on_complete != NULL) {
        /* keep the identity for logs written after the creator is gone */
        (void)req_ident(r);
    }
    r->on_complete = NULL;
    r->arg = NULL;
    r->owner_ident = NULL;
}

bool req_orphaned(const struct req *r)
{
    return r->on_complete == NULL;
}

const char *req_ident(const struct req *r)
{
    struct req *w = (struct req *)r; /* lazily cached: formatting costs on the hot path */
    if (w->ident[0] == '\0') {
        snprintf(w->ident, sizeof(w->ident), "%s sid=%" PRIu64 " fid=%" PRIu64,
                 r->owner_ident != NULL ? r->owner_ident : "orphan", r->stream_id, r->frame_id);
    }
    return r->ident;
}

/* ---- actions ----------------------------------------------------------- */

/* Grow the action buffer to at least `need` bytes, never past act_limit. */
static int act_grow(struct req *r, size_t need)
{
    if (need > r->act_limit) {
        return -1;
    }
    size_t cap = r->act_cap;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > r->act_limit) {
        cap = r->act_limit;
    }
    uint8_t *p;
    if (r->act == r->inline_act) {
        p = malloc(cap);
        if (p != NULL) {
            memcpy(p, r->act, r->act_len);
        }
    } else {
        p = realloc(r->act, cap);
    }
    if (p == NULL) {
        return -1;
    }
    r->act = p;
    r->act_cap = cap;
    return 0;
}

/* Encode one action (SET-VAR when val != NULL, else UNSET-VAR) at the end of
 * the list; on overflow of the frame budget the action is dropped. */
static void act_put(struct req *r, enum spop_scope scope, const char *name,
                    const struct spop_data *val)
{
    if (r->on_complete == NULL) {
        return; /* nobody to tell */
    }
    size_t name_len = strlen(name);
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t room = r->act_cap < r->act_limit ? r->act_cap : r->act_limit;
        struct spop_writer w;
        spop_w_init(&w, r->act + r->act_len, room - r->act_len, 0);
        if (val != NULL) {
            spop_w_set_var(&w, scope, name, name_len, val);
        } else {
            spop_w_unset_var(&w, scope, name, name_len);
        }
        if (!w.failed) {
            r->act_len += w.len;
            r->nactions++;
            return;
        }
        /* Worst-case size of the action: type, nargs, scope, name, value. */
        size_t need = r->act_len + 3 + SPOP_VARINT_MAX + name_len + 1 + SPOP_VARINT_MAX;
        if (val != NULL && (val->type == SPOP_T_STRING || val->type == SPOP_T_BINARY)) {
            need += val->u.str.len;
        } else {
            need += 16;
        }
        if (need > r->act_limit) {
            need = r->act_limit;
        }
        if (attempt > 0 || need <= r->act_cap || act_grow(r, need) != 0) {
            break;
        }
    }
    STATS_INC(action_dropped);
    log_warn("%s: action on var '%s' dropped: ACK would exceed %zu bytes of actions",
             req_ident(r), name, r->act_limit);
}

void req_set_var(struct req *r, enum spop_scope scope, const char *name,
                 const struct spop_data *val)
{
    act_put(r, scope, name, val);
}

void req_set_var_str(struct req *r, const char *name, const char *s, size_t len)
{
    struct spop_data d = spop_d_str(s, len);
    act_put(r, SPOP_SCOPE_TXN, name, &d);
}

void req_set_var_int(struct req *r, const char *name, int64_t v)
{
    struct spop_data d = spop_d_i64(v);
    act_put(r, SPOP_SCOPE_TXN, name, &d);
}

void req_unset_var(struct req *r, enum spop_scope scope, const char *name)
{
    act_put(r, scope, name, NULL);
}

/* ---- dispatch and completion ------------------------------------------- */

/* UNSET-VAR txn "noop" (action type 2, 2 args, scope, raw-string name),
 * encoded once: it is the action of every ACK that has none of its own. */
static const uint8_t noop_action[] = {SPOP_ACT_UNSET_VAR, 2, SPOP_SCOPE_TXN, 4, 'n', 'o', 'o', 'p'};
_Static_assert(sizeof(noop_action) <= REQ_INLINE_ACTIONS, "noop fits the inline buffer");

static void req_complete(struct req *r)
{
    stats_observe(&stats.decision_latency, r->start_ns);
    if (r->on_complete == NULL) {
        STATS_INC(ack_dropped);
        log_debug("%s: ACK dropped, connection gone", req_ident(r));
        req_free(r);
        return;
    }
    if (r->nactions == 0) {
        /* HAProxy 3.1 stalls on an ACK without actions: add a harmless one.
         * Actions that were dropped added no bytes, so the buffer is empty. */
        memcpy(r->act, noop_action, sizeof(noop_action));
        r->act_len = sizeof(noop_action);
        r->nactions = 1;
    }
    struct req_ack ack = {r->stream_id, r->frame_id, r->act, r->act_len, r->nactions};
    r->on_complete(r, &ack, r->arg);
    req_free(r);
}

void req_dispatch(struct req *r, const struct spop_notify *n)
{
    r->pending = 1; /* guard: handlers completing inline must not finish the frame early */
    for (size_t i = 0; i < n->nmsgs; i++) {
        const struct spop_msg *m = &n->msgs[i];
        const struct req_handler *h = handler_find(m->name);
        if (h == NULL) {
            STATS_INC(msg_unknown);
            log_debug("%s: no handler for message '%.*s'", req_ident(r), (int)m->name.len,
                      m->name.ptr);
            continue;
        }
        r->pending++;
        h->fn(r, m, h->arg);
    }
    req_done(r);
}

void req_done(struct req *r)
{
    if (r->pending == 0) {
        log_err("%s: req_done called once too often", req_ident(r));
        return;
    }
    if (--r->pending == 0) {
        req_complete(r);
    }
}
