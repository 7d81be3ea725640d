/* notify.h - the service manager's notification protocol (systemd Type=notify).
 *
 * Through libsystemd's sd_notify(): READY=1 once listening, RELOADING=1 and READY=1
 * around a reload, STOPPING=1 on shutdown, STATUS= lines, and WATCHDOG=1 from a
 * timer on the event loop itself, so a wedged loop stops the pings and the manager
 * restarts the agent. Without NOTIFY_SOCKET (not under systemd) every call is a
 * no-op. Owns one ev_timer; calls nothing above it.
 */
#ifndef STICKYD_NOTIFY_H
#define STICKYD_NOTIFY_H

struct ev_loop;

/* Start the watchdog pings when the manager asked for them (WATCHDOG_USEC, and
 * WATCHDOG_PID naming this process when set): every half period. 0, or -1 when
 * the watchdog settings are malformed (logged; the agent runs on without pings). */
int notify_init(struct ev_loop *loop) __attribute__((warn_unused_result));
/* The agent serves: READY=1 with a STATUS line. */
void notify_ready(const char *status);
/* A reload starts: RELOADING=1 (with MONOTONIC_USEC, as systemd 253 expects). */
void notify_reloading(void);
/* Shutdown starts: STOPPING=1; the watchdog keeps pinging until notify_shutdown. */
void notify_stopping(void);
/* Stop the watchdog timer. */
void notify_shutdown(void);

#endif
