/* pace.c - loop pacing under a flood of small SPOP batches (see pace.h).
 *
 * Each wakeup costs two context switches and a poll, several microseconds on a busy
 * host; a frame costs well under one. HAProxy 3.1+ writes a NOTIFY or two per
 * connection at a time, and an agent that answers at once keeps it that way: ~3
 * frames per wakeup, against ~15 from 2.6. Waiting PACE_COLLECT_S before polling
 * lets the frames of many streams and connections pile up, read and answered in one
 * pass, one write per connection. At low rates pacing stays off: no wait, no
 * extra sleep per wakeup.
 */
#include "pace.h"

#include <ev.h>

#include "log.h"
#include "stats.h"
#include "util.h"

static struct ev_loop *pace_loop;
static ev_timer sample_w;
static bool active;
static unsigned iter_last;
static uint64_t notify_last;

static void set_active(bool on)
{
    if (on == active) {
        return;
    }
    active = on;
    ev_set_io_collect_interval(pace_loop, on ? PACE_COLLECT_S : 0.0);
    if (on) {
        STATS_INC(pace_on);
    } else {
        STATS_INC(pace_off);
    }
    log_debug("pace: %s", on ? "on, collecting before each poll" : "off");
}

static void sample_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    UNUSED(w);
    UNUSED(revents);
    unsigned iter = ev_iteration(loop);
    /* unsigned arithmetic: a wrapped counter still gives the right difference */
    double wakeups = (double)(iter - iter_last) / PACE_PERIOD_S;
    double frames = (double)(stats.notify - notify_last) / PACE_PERIOD_S;
    iter_last = iter;
    notify_last = stats.notify;
    if (!active) {
        set_active(frames >= PACE_ON_FRAMES && frames < PACE_ON_FRAMES_PER_WAKEUP * wakeups);
    } else if (frames < PACE_OFF_FRAMES) {
        set_active(false);
    }
}

void pace_start(struct ev_loop *loop)
{
    pace_loop = loop;
    iter_last = ev_iteration(loop);
    notify_last = stats.notify;
    ev_timer_init(&sample_w, sample_cb, PACE_PERIOD_S, PACE_PERIOD_S);
    ev_timer_start(loop, &sample_w);
}

void pace_stop(void)
{
    if (pace_loop == NULL) {
        return;
    }
    set_active(false);
    ev_timer_stop(pace_loop, &sample_w);
    pace_loop = NULL;
}

bool pace_active(void)
{
    return active;
}
