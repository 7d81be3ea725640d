/* affinity.c - rendezvous hashing and candidate flags (see affinity.h).
 *
 * Pure: the same inputs give the same answer on every agent, which is what lets
 * agents that cannot reach Redis still agree with each other.
 */
#include "affinity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

unsigned aff_flags(enum srv_state st, uint32_t weight)
{
    switch (st) {
    case SRV_READY:
        return AFF_F_UP | (weight > 0 ? AFF_F_NEW : 0u);
    case SRV_DRAIN:
        return AFF_F_UP | AFF_F_DRAIN;
    case SRV_MAINT:
    case SRV_DOWN:
    case SRV_STATE_COUNT:
        break;
    }
    return 0;
}

bool aff_pinned_usable(enum srv_state st)
{
    return st == SRV_READY || st == SRV_DRAIN;
}

bool aff_pinned_draining(enum srv_state st)
{
    return st == SRV_DRAIN;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t aff_hash(const char *id, size_t id_len, const char *srv, size_t srv_len)
{
    static const uint8_t sep = 0;
    uint64_t z = 0xcbf29ce484222325ull;
    z = fnv1a(z, id, id_len);
    z = fnv1a(z, &sep, 1);
    z = fnv1a(z, srv, srv_len);
    /* FNV alone mixes its last bytes poorly; splitmix64's finalizer spreads
     * every input bit over the whole word. */
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z;
}

double aff_score(uint64_t h, uint32_t weight)
{
    if (weight == 0) {
        return 0.0;
    }
    /* 52 bits keep u + 0.5 exact in a double, so u < 1 always (ln(u) != 0) */
    double u = ((double)(h >> 12) + 0.5) / 4503599627370496.0; /* 2^52 */
    return -(double)weight / log(u);
}

static int name_cmp(const struct aff_cand *a, const struct aff_cand *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c != 0) {
        return c;
    }
    return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static int rank_cmp(const void *pa, const void *pb)
{
    const struct aff_cand *a = pa, *b = pb;
    if (a->hash != b->hash) {
        return a->hash > b->hash ? -1 : 1;
    }
    return name_cmp(a, b);
}

void aff_rank(const char *id, size_t id_len, struct aff_cand *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c[i].hash = aff_hash(id, id_len, c[i].name, c[i].name_len);
    }
    if (n > 1) {
        qsort(c, n, sizeof(*c), rank_cmp);
    }
}

int aff_pick(const char *id, size_t id_len, const struct aff_cand *c, size_t n, unsigned need)
{
    int best = -1;
    double best_score = 0.0;
    uint64_t best_hash = 0;
    for (size_t i = 0; i < n; i++) {
        if ((c[i].flags & need) != need || c[i].weight == 0) {
            continue;
        }
        uint64_t h = aff_hash(id, id_len, c[i].name, c[i].name_len);
        double s = aff_score(h, c[i].weight);
        bool better = best < 0 || s > best_score;
        if (!better && s == best_score) {
            struct aff_cand tmp = c[i];
            tmp.hash = h;
            struct aff_cand cur = c[best];
            cur.hash = best_hash;
            better = rank_cmp(&tmp, &cur) < 0;
        }
        if (better) {
            best = (int)i;
            best_score = s;
            best_hash = h;
        }
    }
    return best;
}
