/* affinity.c - rendezvous hashing and candidate flags (see affinity.h).
 *
 * Pure: the same inputs give the same answer on every agent, which is what lets
 * agents that cannot reach Redis still agree with each other.
 */
#include "affinity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

unsigned aff_flags(enum model_state st, uint32_t weight)
{
    switch (st) {
    case MODEL_READY:
        return AFF_F_UP | (weight > 0 ? AFF_F_NEW : 0u);
    case MODEL_DRAIN:
        return AFF_F_UP | AFF_F_DRAIN;
    case MODEL_MAINT:
    case MODEL_DOWN:
    case MODEL_STATE_COUNT:
        break;
    }
    return 0;
}

unsigned aff_flags_admin(enum model_state st, uint32_t weight, enum model_state adm)
{
    unsigned f = aff_flags(st, weight);
    if (adm != MODEL_READY) {
        f &= ~AFF_F_NEW;
        f |= adm == MODEL_DRAIN ? AFF_F_DRAIN : 0u;
    }
    return f;
}

enum aff_pin aff_pinned(enum model_state st, enum model_state adm, int64_t deadline_ms,
                        int64_t now_ms)
{
    bool passed = adm == MODEL_DRAIN && deadline_ms > 0 && now_ms >= deadline_ms;
    if (adm == MODEL_MAINT) {
        return AFF_PIN_MAINT;
    }
    if (passed) {
        return AFF_PIN_DEADLINE;
    }
    if (st != MODEL_READY && st != MODEL_DRAIN) {
        return AFF_PIN_DOWN;
    }
    return adm == MODEL_DRAIN || st == MODEL_DRAIN ? AFF_PIN_DRAINING : AFF_PIN_STAY;
}

const char *aff_pin_reason(enum aff_pin p)
{
    static const char *const names[] = {"stay", "draining", "down", "maint", "drain-deadline"};
    _Static_assert(ARRAY_SIZE(names) == AFF_PIN_COUNT, "a reason per pin outcome");
    return (unsigned)p < AFF_PIN_COUNT ? names[p] : "?";
}

/* The weight in force: weight x ramp permille (a ramp of 0 reads as full). */
static int64_t eff_weight(const struct aff_cand *c)
{
    uint32_t r = c->ramp == 0 || c->ramp > AFF_RAMP_FULL ? AFF_RAMP_FULL : c->ramp;
    return (int64_t)c->weight * (int64_t)r;
}

static int least_loaded(const struct aff_cand *c, size_t n, bool paced_too)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if ((c[i].flags & AFF_F_NEW) == 0 || c[i].weight == 0 || c[i].full ||
            (c[i].paced && !paced_too)) {
            continue;
        }
        int64_t load = c[i].conns > 0 ? c[i].conns : 0;
        if (best < 0) {
            best = (int)i;
            continue;
        }
        int64_t bl = c[best].conns > 0 ? c[best].conns : 0;
        /* load / weight compared cross-multiplied (weights <= 256 x 1000, loads far
         * below 2^40: no overflow); the first minimum (HRW order) wins */
        if (load * eff_weight(&c[best]) < bl * eff_weight(&c[i])) {
            best = (int)i;
        }
    }
    return best;
}

/* Among the paced: the most room, then the least loaded. */
static int most_room(const struct aff_cand *c, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if ((c[i].flags & AFF_F_NEW) == 0 || c[i].weight == 0 || c[i].full) {
            continue;
        }
        if (best < 0 || c[i].room > c[best].room) {
            best = (int)i;
        } else if (c[i].room == c[best].room) {
            struct aff_cand two[2] = {c[best], c[i]};
            two[0].paced = two[1].paced = false;
            best = least_loaded(two, 2, false) == 1 ? (int)i : best;
        }
    }
    return best;
}

int aff_least_loaded(const struct aff_cand *c, size_t n)
{
    int best = least_loaded(c, n, false);
    return best >= 0 ? best : most_room(c, n);
}

uint32_t aff_ramp_permille(int64_t since_ms, int64_t now_ms, int64_t ramp_ms)
{
    if (ramp_ms <= 0 || since_ms == AFF_SINCE_NONE || since_ms < 0) {
        return AFF_RAMP_FULL;
    }
    int64_t el = since_ms == 0 ? 0 : now_ms - since_ms;
    if (el >= ramp_ms) {
        return AFF_RAMP_FULL;
    }
    if (el <= 0) {
        return 1;
    }
    int64_t p = el * (int64_t)AFF_RAMP_FULL / ramp_ms;
    return p < 1 ? 1u : (uint32_t)p;
}

int64_t aff_room(int64_t fleet, int64_t pending, int64_t cap, unsigned ninst, unsigned rank)
{
    if (cap <= 0) {
        return INT64_MAX;
    }
    int64_t left = cap - (fleet > 0 ? fleet : 0);
    if (left <= 0) {
        return left;
    }
    int64_t n = ninst > 0 ? (int64_t)ninst : 1;
    int64_t share = left / n + ((int64_t)(rank % (unsigned)n) < left % n ? 1 : 0);
    return share - (pending > 0 ? pending : 0);
}

int64_t aff_unseen(int64_t peak, unsigned ninst)
{
    return ninst > 1 && peak > 0 ? (int64_t)(ninst - 1) * peak : 0;
}

int64_t aff_pin_cap(int64_t cap, enum aff_cap_policy policy, unsigned slack_pct)
{
    if (cap <= 0 || policy == AFF_CAP_BALANCE) {
        return cap > 0 ? cap : 0;
    }
    return cap + cap * (int64_t)slack_pct / 100;
}

static const char *const cap_policy_names[] = {"affinity", "balance"};
_Static_assert(ARRAY_SIZE(cap_policy_names) == AFF_CAP_COUNT, "a name per cap policy");

const char *aff_cap_policy_name(enum aff_cap_policy p)
{
    return (unsigned)p < AFF_CAP_COUNT ? cap_policy_names[p] : "?";
}

int aff_cap_policy_parse(const char *s, enum aff_cap_policy *out)
{
    for (unsigned i = 0; i < AFF_CAP_COUNT; i++) {
        if (strcmp(s, cap_policy_names[i]) == 0) {
            *out = (enum aff_cap_policy)i;
            return 0;
        }
    }
    return -1;
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
