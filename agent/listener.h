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
int lsn_start(struct ev_loop *loop, const struct cfg *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stop accepting and close every listening socket (removing the unix socket
 * file). Live connections are not touched. Safe to call twice. */
void lsn_stop(void);

/* Connections beyond this are accepted and closed at once (conn_rejected). */
void lsn_set_max_connections(uint32_t n);

/* The port the TCP listener is bound to (useful with port 0), or 0. */
unsigned lsn_tcp_port(void);

#endif
