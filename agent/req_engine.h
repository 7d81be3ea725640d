/* req_engine.h - the creator's side of a request (the SPOP engine, and tests):
 * make one for a NOTIFY, dispatch its decoded messages, keep it on a list, and
 * hear through a callback of the creator's when every message is done. req.c
 * calls nothing of its creator but that callback. Handlers include req.h only.
 */
#ifndef STICKYD_REQ_ENGINE_H
#define STICKYD_REQ_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "req.h"
#include "spop.h"

/* The ACK a completed request asks its creator to send. Borrowed: valid during
 * the completion callback only. */
struct req_ack {
    uint64_t stream_id, frame_id; /* the NOTIFY's, to echo */
    const uint8_t *actions;       /* encoded action list: at least one action */
    size_t actions_len;
    unsigned nactions;
};

/* Every message of r is done: send ack (or not). The callback must unlink r
 * from any list of the creator's and must not keep r: req.c frees it when the
 * callback returns. Never called for an orphaned request. */
typedef void (*req_complete_fn)(struct req *r, const struct req_ack *ack, void *arg);

/* New request for a NOTIFY (stream_id, frame_id), whose ACK frames may not
 * exceed max_frame bytes. on_complete(r, ack, arg) runs once, when the last
 * message is done. owner_ident prefixes req_ident() (e.g. "peer fd=N"); borrowed,
 * it must stay valid until the request completes or is orphaned. NULL when out
 * of memory. */
struct req *req_new(req_complete_fn on_complete, void *arg, const char *owner_ident,
                    uint64_t stream_id, uint64_t frame_id, uint32_t max_frame);

/* Dispatch every message of a NOTIFY decoded and validated by
 * spop_notify_parse to its handler, in order; unknown messages are acknowledged
 * harmlessly. n is borrowed for the call only. May complete (and run
 * on_complete, and free r) before returning. */
void req_dispatch(struct req *r, const struct spop_notify *n);

/* The creator is going away: detach the request from it. on_complete will not
 * run; actions are dropped from now on, and the last req_done frees it (counted
 * as ack_dropped). */
void req_orphan(struct req *r);

/* The creator's intrusive list of requests in flight; the creator owns the head. */
void req_link(struct req **head, struct req *r);
void req_unlink(struct req **head, struct req *r);

#endif
