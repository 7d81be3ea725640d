/* conn.h - one HAProxy SPOP connection: its state machine, buffers and watchers.
 *
 * The engine reads frames, answers HELLO and DISCONNECT itself and turns each
 * NOTIFY into a struct req (req.h) whose completion queues an ACK. It never
 * decodes bytes itself (spop.c does) and never knows what handlers do.
 */
#ifndef STICKYD_CONN_H
#define STICKYD_CONN_H

#include <stdbool.h>
#include <stdint.h>

struct conn;
struct cfg;
struct ev_loop;

/* Output above this stops reading from the peer; below the low mark resumes. */
#define CONN_OUT_HIGH_WATER (256u * 1024u)
#define CONN_OUT_LOW_WATER (64u * 1024u)
/* Bytes asked of the kernel per read. */
#define CONN_READ_CHUNK (64u * 1024u)
/* A closing connection gets this long to flush its DISCONNECT and see EOF. */
#define CONN_CLOSE_TIMEOUT 1.0

/* Take the engine's settings from c: our max-frame-size (clamped to the SPOP
 * range) and the idle timeout. Applies the idle timeout to live connections
 * too; the frame size only to connections accepted from now on. */
void conn_configure(const struct cfg *c);

/* A new connection on accepted socket fd (non-blocking; ownership taken: the
 * fd is closed on failure too). peer is copied, for logs. NULL on ENOMEM. */
struct conn *conn_new(struct ev_loop *loop, int fd, const char *peer);

/* The only place that stops the watchers, closes the fd, frees the buffers and
 * orphans the requests still in flight. */
void conn_free(struct conn *c);

/* Live connections. */
unsigned conn_count(void);

/* Graceful stop: every connection stops reading, lets its requests in flight
 * finish, sends AGENT-DISCONNECT(0) and closes. on_idle runs (once) when the
 * last connection is gone, possibly before this returns. */
void conn_shutdown_all(void (*on_idle)(void));

/* Immediate stop: free every connection now (requests in flight are orphaned);
 * connections that have not been told yet get a best-effort AGENT-DISCONNECT(0). */
void conn_free_all(void);

#endif
