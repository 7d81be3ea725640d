/* pace.c - loop pacing under a flood of small SPOP batches (see pace.h).
 *
 * Each wakeup costs two context switches and a poll, several microseconds on a busy
 * host; a frame costs well under one. HAProxy 3.1+ writes each NOTIFY in its own
 * send(), and an agent that answers at once keeps it that way: ~3 frames per
 * wakeup, against ~15 from 2.6, which batches its writes. Waiting PACE_COLLECT_S before polling
 * lets the frames of many streams and connections pile up, read and answered in one
 * pass, one write per connection. At low rates pacing stays off: no wait, no
 * extra sleep per wakeup. A peer that keeps only a few frames in flight cannot
 * batch more (it waits for our ACKs): pacing would only slow it, so the first
 * sample after switching on checks that the frame rate held, else it backs off.
 */
#include "pace.h"

#include <ev.h>

#include "log.h"
#include "stats.h"
#include "util.h"

static struct ev_loop *pace_loop;
static ev_timer sample_w;
static bool active;
static bool on_trial;        /* on since the last sample: is it paying off? */
static double rate_before;   /* NOTIFY frames/s in the sample that switched it on */
static ev_tstamp hold_until; /* no pacing before this (it cost throughput) */
static ev_tstamp last_at;
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
    ev_tstamp now = ev_now(loop);
    double dt = now - last_at;
    if (dt <= 0.0) {
        return;
    }
    unsigned iter = ev_iteration(loop);
    /* unsigned arithmetic: a wrapped counter still gives the right difference */
    double wakeups = (double)(iter - iter_last) / dt;
    double frames = (double)(stats.notify - notify_last) / dt;
    iter_last = iter;
    notify_last = stats.notify;
    last_at = now;
    bool trial = on_trial;
    on_trial = false;
    if (!active) {
        if (now >= hold_until && frames >= PACE_ON_FRAMES &&
            frames < PACE_ON_FRAMES_PER_WAKEUP * wakeups) {
            set_active(true);
            on_trial = true;
            rate_before = frames;
        }
    } else if (frames < PACE_OFF_FRAMES) {
        set_active(false);
    } else if (trial && frames < PACE_KEEP_RATE * rate_before) {
        /* latency-bound peer: the wait lowered its rate instead of batching it */
        STATS_INC(pace_holdoff);
        hold_until = now + PACE_HOLDOFF_S;
        set_active(false);
    }
}

void pace_init(struct ev_loop *loop)
{
    pace_loop = loop;
    last_at = ev_now(loop);
    iter_last = ev_iteration(loop);
    notify_last = stats.notify;
    ev_timer_init(&sample_w, sample_cb, PACE_PERIOD_S, PACE_PERIOD_S);
    ev_timer_start(loop, &sample_w);
}

void pace_shutdown(void)
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
