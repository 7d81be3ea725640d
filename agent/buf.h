/* buf.h - a byte buffer with read/write cursors, compaction and a hard cap.
 *
 * Used for every socket's input and output. Owns its memory; never shrinks
 * below its initial size and never grows past `max`.
 */
#ifndef STICKYD_BUF_H
#define STICKYD_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data;
    size_t cap;  /* allocated bytes */
    size_t rpos; /* first unread byte */
    size_t wpos; /* first free byte */
    size_t max;  /* cap may grow up to this */
};

/* Allocate `initial` bytes (<= max). 0 or -1 (ENOMEM). */
int buf_init(struct buf *b, size_t initial, size_t max) __attribute__((warn_unused_result));
void buf_release(struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->wpos - b->rpos; }
static inline uint8_t *buf_rptr(const struct buf *b) { return b->data + b->rpos; }
static inline uint8_t *buf_wptr(const struct buf *b) { return b->data + b->wpos; }
static inline size_t buf_avail(const struct buf *b) { return b->cap - b->wpos; }

/* Drop n read bytes (n <= buf_len). Resets both cursors when empty. */
void buf_consume(struct buf *b, size_t n);
/* Mark n bytes written at buf_wptr (n <= buf_avail). */
void buf_commit(struct buf *b, size_t n);
/* Move unread bytes to the front. */
void buf_compact(struct buf *b);
/* Make at least n contiguous free bytes at buf_wptr: compact, then grow up to
 * max. 0, or -1 when n cannot fit under max or memory is short. */
int buf_reserve(struct buf *b, size_t n) __attribute__((warn_unused_result));
/* Append n bytes (reserve + copy + commit). 0 or -1. */
int buf_append(struct buf *b, const void *p, size_t n) __attribute__((warn_unused_result));

#endif
