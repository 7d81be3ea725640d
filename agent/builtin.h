/* builtin.h - diagnostic message handlers, for tests and health probes.
 *
 *   echo: every arg comes back as a txn variable of the same name with the same
 *         typed value (args with an empty or over-long name are skipped), so an
 *         integration test can see an arg come back in a header.
 *   ping: sets txn variable "pong" = 1 (int64).
 *
 * They answer synchronously and touch nothing but the request.
 */
#ifndef STICKYD_BUILTIN_H
#define STICKYD_BUILTIN_H

/* Register "echo" and "ping" with req_register. 0 or -1. */
int builtin_register(void) __attribute__((warn_unused_result));

#endif
