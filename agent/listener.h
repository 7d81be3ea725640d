/* listener.h - the SPOP listening sockets (TCP and unix) and the accept loop.
 *
 * Owns the listening fds and the connection limit; hands each accepted socket
 * to conn_new(). Knows nothing of SPOP itself.
 */
#ifndef STICKYD_LISTENER_H
#define STICKYD_LISTENER_H

#include <stddef.h>
#include <stdint.h>

struct cfg;
struct ev_loop;

/* Open cfg->listen (unless NULL or "") and cfg->unix_socket (unless NULL or
 * ""), and start accepting on loop. At least one must be configured. A stale
 * unix socket file is replaced. 0, or -1 with a message in err (everything
 * opened so far is closed again). */
int listener_init(struct ev_loop *loop, const struct cfg *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stop accepting and close every listening socket (removing the unix socket
 * file). Live connections are not touched. Safe to call twice. */
void listener_shutdown(void);

/* Connections beyond cfg->max_connections, clamped to RLIMIT_NOFILE (the soft
 * limit raised to the hard one first) minus a reserve for Redis, the runtime
 * API, syslog and metrics, are accepted and closed at once (conn_rejected).
 * Logs the limit in force when it changes. */
void listener_set_max_connections(const struct cfg *c);

/* The connection limit for want connections under nofile descriptors with
 * reserve kept: min(want, nofile - reserve), at least 1. Pure. */
uint32_t listener_clamp_connections(uint32_t want, uint64_t nofile, unsigned reserve);

/* The port the TCP listener is bound to (useful with port 0), or 0. */
unsigned listener_tcp_port(void);

/* The connection limit in force (after the clamp). */
uint32_t listener_max_connections(void);

#endif
