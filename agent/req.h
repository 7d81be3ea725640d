/* req.h - the message-handler interface: what a handler of one NOTIFY message
 * sees of the request it belongs to. (Creating and dispatching requests is the
 * engine's side: req_engine.h.)
 *
 * A handler is registered for a message name. For each message of a NOTIFY it
 * receives the message decoded and validated (m->args[0 .. m->nargs): names and
 * values are views into the frame, BORROWED: valid only during the call; copy
 * what you keep) and must later call req_done() exactly once, possibly
 * from another callback (a Redis reply, a timer). Before req_done it may add
 * actions. The ACK is sent when every message of the frame is done, echoing the
 * frame's stream-id and frame-id, and always carries at least one action.
 *
 * If the HAProxy connection dies first, the request is orphaned: actions are
 * dropped, req_done() still must be called and frees it. Handlers never see a
 * connection pointer.
 */
#ifndef STICKYD_REQ_H
#define STICKYD_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "spop.h"

struct req;

typedef void (*req_handler_fn)(struct req *r, const struct spop_msg *m, void *arg);

/* Register fn for message `name` (copied). A later registration of the same
 * name replaces the earlier one. 0 or -1. */
int req_register(const char *name, req_handler_fn fn, void *arg) __attribute__((warn_unused_result));
/* Forget every handler and release cached request objects (shutdown, tests). */
void req_registry_clear(void);

/* Actions. `name` is the variable name without HAProxy's var-prefix. Values are
 * copied immediately. An action that does not fit the negotiated frame size is
 * dropped and logged; the ACK still goes out. */
void req_set_var(struct req *r, enum spop_scope scope, const char *name,
                 const struct spop_data *val);
void req_set_var_str(struct req *r, const char *name, const char *s, size_t len); /* txn */
void req_set_var_int(struct req *r, const char *name, int64_t v);                 /* txn */
void req_unset_var(struct req *r, enum spop_scope scope, const char *name);

/* One call per message handed to a handler. */
void req_done(struct req *r);

/* True when the HAProxy connection is gone (actions will be dropped). */
bool req_orphaned(const struct req *r);

/* A short identity for logs: "<creator's ident> sid=.. fid=..", e.g.
 * "peer fd=N sid=.. fid=..". Borrowed, valid until req_done. */
const char *req_ident(const struct req *r);

#endif
