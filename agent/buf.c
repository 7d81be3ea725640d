/* buf.c - byte buffer with cursors, compaction and a hard cap. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_init(struct buf *b, size_t initial, size_t max)
{
    if (initial == 0 || initial > max) {
        errno = EINVAL;
        return -1;
    }
    b->data = malloc(initial);
    if (b->data == NULL) {
        return -1;
    }
    b->cap = initial;
    b->rpos = b->wpos = 0;
    b->max = max;
    return 0;
}

void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->rpos = b->wpos = 0;
}

void buf_consume(struct buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos >= b->wpos) {
        b->rpos = b->wpos = 0;
    }
}

void buf_commit(struct buf *b, size_t n)
{
    b->wpos += n;
}

void buf_compact(struct buf *b)
{
    if (b->rpos == 0) {
        return;
    }
    size_t len = buf_len(b);
    memmove(b->data, b->data + b->rpos, len);
    b->rpos = 0;
    b->wpos = len;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (buf_avail(b) >= n) {
        return 0;
    }
    size_t len = buf_len(b);
    if (n > b->max - len) { /* not len + n: a huge n would wrap around */
        errno = ENOBUFS;
        return -1;
    }
    if (b->cap - len >= n) {
        buf_compact(b);
        return 0;
    }
    size_t cap = b->cap;
    while (cap < len + n) {
        cap = cap * 2 > b->max ? b->max : cap * 2;
    }
    buf_compact(b);
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(buf_wptr(b), p, n);
    buf_commit(b, n);
    return 0;
}
