/* notify.c - sd_notify() messages and the watchdog timer (see notify.h). */
#include "notify.h"

#include <ev.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "util.h"

static struct ev_loop *wd_loop;
static ev_timer wd_timer;

/* sd_notify's failures (the manager went away) must not disturb the agent. */
static void send_state(const char *state)
{
    int rc = sd_notify(0, state);
    if (rc < 0) {
        log_debug("notify: sd_notify: error %d", rc);
    }
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(loop);
    UNUSED(w);
    UNUSED(revents);
    send_state("WATCHDOG=1");
}

int notify_init(struct ev_loop *loop)
{
    uint64_t usec = 0;
    int rc = sd_watchdog_enabled(0, &usec);
    if (rc < 0) {
        log_warn("notify: ignoring malformed WATCHDOG_USEC/WATCHDOG_PID (error %d)", rc);
        return -1;
    }
    if (rc == 0 || usec == 0) {
        return 0;
    }
    wd_loop = loop;
    /* ping twice per period, as sd_watchdog_enabled(3) recommends */
    ev_tstamp period = (ev_tstamp)usec / 2e6;
    ev_timer_init(&wd_timer, on_watchdog, period, period);
    ev_timer_start(loop, &wd_timer);
    ev_unref(loop); /* the pings alone must not keep the loop alive */
    send_state("WATCHDOG=1");
    log_info("notify: watchdog every %.3fs (WatchdogSec=%.3fs)", period, (double)usec / 1e6);
    return 0;
}

void notify_ready(const char *status)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    send_state(msg);
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    send_state(msg);
}

void notify_stopping(void)
{
    send_state("STOPPING=1\nSTATUS=draining");
}

void notify_shutdown(void)
{
    if (wd_loop != NULL) {
        ev_ref(wd_loop);
        ev_timer_stop(wd_loop, &wd_timer);
        wd_loop = NULL;
    }
}
