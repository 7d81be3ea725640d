/* pace.h - loop pacing: when HAProxy sends its NOTIFYs a few at a time (3.1+'s SPOP
 * multiplexer does, 2.6 sends bigger batches), let the event loop collect for a short
 * while before each poll, so that one wakeup reads and answers many frames.
 *
 * Owns one timer and the loop's io collect interval; reads the notify counter and the
 * loop's iteration count. Must not touch connections: frames stay whole, they are
 * only gathered longer.
 */
#ifndef STICKYD_PACE_H
#define STICKYD_PACE_H

#include <stdbool.h>

struct ev_loop;

/* Sample the load every PACE_PERIOD_S and switch pacing on or off. */
#define PACE_PERIOD_S 0.1
/* On when at least this many NOTIFY frames arrive per second (a WebSocket fleet's
 * decisions stay below: their latency is not traded)... */
#define PACE_ON_FRAMES 20000.0
/* ...at fewer than this many per wakeup (2.6's batches are larger: left alone). */
#define PACE_ON_FRAMES_PER_WAKEUP 8.0
/* Off again when fewer NOTIFY frames than this arrive per second. */
#define PACE_OFF_FRAMES 10000.0
/* A peer with few frames in flight answers the wait with fewer frames, not bigger
 * batches: when the first sample after switching on shows the frame rate below this
 * share of the rate before, pacing goes off and stays off PACE_HOLDOFF_S. */
#define PACE_KEEP_RATE 0.8
#define PACE_HOLDOFF_S 5.0
/* While on: at most one poll per this many seconds; a frame waits at most this long
 * more (against the SPOE's "timeout processing", 50 ms in the reference config). */
#define PACE_COLLECT_S 0.0002

/* Start sampling on loop. Pacing starts off. */
void pace_init(struct ev_loop *loop);

/* Stop sampling and switch pacing off. Safe to call twice or before pace_init. */
void pace_shutdown(void);

/* True while the loop collects before polling. */
bool pace_active(void);

#endif
