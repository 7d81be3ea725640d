/* test_affinity.c - HRW hash, ranking, weighted fallback choice, flags.
 * The hash vectors were computed by an independent Python transcription of the
 * algorithm documented in affinity.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "affinity.h"
#include "check.h"

static struct aff_cand cand(const char *name, uint32_t w, unsigned flags)
{
    struct aff_cand c = {.name = name, .name_len = strlen(name), .weight = w, .flags = flags};
    return c;
}

static void test_flags(void)
{
    CHECK_EQ_INT(aff_flags(MODEL_READY, 1), AFF_F_UP | AFF_F_NEW);
    CHECK_EQ_INT(aff_flags(MODEL_READY, 256), AFF_F_UP | AFF_F_NEW);
    CHECK_EQ_INT(aff_flags(MODEL_READY, 0), AFF_F_UP);
    CHECK_EQ_INT(aff_flags(MODEL_DRAIN, 10), AFF_F_UP | AFF_F_DRAIN);
    CHECK_EQ_INT(aff_flags(MODEL_MAINT, 10), 0);
    CHECK_EQ_INT(aff_flags(MODEL_DOWN, 10), 0);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_READY, 0, 1000), AFF_PIN_STAY);
    CHECK_EQ_INT(aff_pinned(MODEL_DRAIN, MODEL_READY, 0, 1000), AFF_PIN_DRAINING);
    CHECK_EQ_INT(aff_pinned(MODEL_MAINT, MODEL_READY, 0, 1000), AFF_PIN_DOWN);
    CHECK_EQ_INT(aff_pinned(MODEL_DOWN, MODEL_READY, 0, 1000), AFF_PIN_DOWN);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_DRAIN, 0, 1000), AFF_PIN_DRAINING);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_DRAIN, 2000, 1000), AFF_PIN_DRAINING);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_DRAIN, 1000, 1000), AFF_PIN_DEADLINE);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_DRAIN, 1000, 0), AFF_PIN_DRAINING); /* no clock */
    CHECK_EQ_INT(aff_pinned(MODEL_DOWN, MODEL_DRAIN, 0, 1000), AFF_PIN_DOWN);
    CHECK_EQ_INT(aff_pinned(MODEL_READY, MODEL_MAINT, 0, 1000), AFF_PIN_MAINT);
    CHECK(strcmp(aff_pin_reason(AFF_PIN_DEADLINE), "drain-deadline") == 0);
    CHECK_EQ_INT(aff_flags_admin(MODEL_READY, 1, MODEL_DRAIN), AFF_F_UP | AFF_F_DRAIN);
    CHECK_EQ_INT(aff_flags_admin(MODEL_READY, 1, MODEL_MAINT), AFF_F_UP);
    CHECK_EQ_INT(aff_flags_admin(MODEL_READY, 1, MODEL_READY), AFF_F_UP | AFF_F_NEW);
    {
        struct aff_cand l[4] = {cand("a", 1, AFF_F_UP | AFF_F_NEW),
                                cand("b", 2, AFF_F_UP | AFF_F_NEW), cand("c", 1, AFF_F_UP),
                                cand("d", 1, AFF_F_UP | AFF_F_NEW)};
        l[0].conns = 4;
        l[1].conns = 6; /* 3 per weight: the least loaded */
        l[2].conns = 0; /* cannot take new sessions */
        l[3].conns = 3;
        CHECK_EQ_INT(aff_least_loaded(l, 4), 1);
        l[3].conns = 2; /* 2 per weight */
        CHECK_EQ_INT(aff_least_loaded(l, 4), 3);
        l[0].conns = 2; /* a tie: the first in HRW order wins */
        CHECK_EQ_INT(aff_least_loaded(l, 4), 0);
        CHECK_EQ_INT(aff_least_loaded(l + 2, 1), -1);
    }
}

static void test_hash_vectors(void)
{
    CHECK(aff_hash("", 0, "", 0) == 0x25fc6dd36ce04b20ull);
    CHECK(aff_hash("abc", 3, "srv1", 4) == 0xd3345a14b297ce65ull);
    const char *sid = "1AAECAwQFBgcICQoLDA0OD1AC8CxgfxHswJrdpovXiIo";
    CHECK(aff_hash(sid, strlen(sid), "ws2", 3) == 0x1f05e68d19e5f025ull);
    /* the separator keeps (ab, c) and (a, bc) apart */
    CHECK(aff_hash("ab", 2, "c", 1) != aff_hash("a", 1, "bc", 2));
    CHECK(aff_score(0, 0) == 0.0);
    CHECK(aff_score(1ull << 63, 2) > aff_score(1ull << 63, 1));
    CHECK(aff_score(~0ull, 1) > aff_score(1ull << 62, 1)); /* larger h, larger score */
    CHECK(aff_score(0, 1) > 0.0 && aff_score(~0ull, 1) > 0.0);
}

static void test_rank_order_independent(void)
{
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    enum { N = sizeof(names) / sizeof(names[0]) };
    struct aff_cand ref[N], c[N];
    for (int i = 0; i < N; i++) {
        ref[i] = cand(names[i], 1, AFF_F_UP | AFF_F_NEW);
    }
    aff_rank("sid-1", 5, ref, N);
    unsigned bad = 0;
    for (int i = 1; i < N; i++) {
        bad += ref[i - 1].hash < ref[i].hash;
    }
    CHECK_EQ_INT(bad, 0);
    srand(3);
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < N; i++) {
            c[i] = cand(names[i], 1, 0);
        }
        for (int i = N - 1; i > 0; i--) { /* Fisher-Yates */
            int j = rand() % (i + 1);
            struct aff_cand t = c[i];
            c[i] = c[j];
            c[j] = t;
        }
        aff_rank("sid-1", 5, c, N);
        for (int i = 0; i < N; i++) {
            bad += strcmp(c[i].name, ref[i].name) != 0;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* different ids give different orders somewhere */
    unsigned differ = 0;
    for (int s = 0; s < 20; s++) {
        char id[16];
        snprintf(id, sizeof(id), "id-%d", s);
        for (int i = 0; i < N; i++) {
            c[i] = cand(names[i], 1, 0);
        }
        aff_rank(id, strlen(id), c, N);
        differ += strcmp(c[0].name, ref[0].name) != 0;
    }
    CHECK(differ > 0);
    aff_rank("x", 1, c, 0); /* empty list is fine */
}

static void test_pick(void)
{
    struct aff_cand c[4] = {
        cand("s1", 1, AFF_F_UP | AFF_F_NEW),
        cand("s2", 2, AFF_F_UP | AFF_F_NEW),
        cand("s3", 3, AFF_F_UP | AFF_F_NEW),
        cand("s4", 5, AFF_F_UP | AFF_F_DRAIN),
    };
    unsigned count[4] = {0};
    const int rounds = 30000;
    for (int i = 0; i < rounds; i++) {
        char id[32];
        snprintf(id, sizeof(id), "session-%d", i);
        int p = aff_pick(id, strlen(id), c, 4, AFF_F_UP | AFF_F_NEW);
        CHECK(p >= 0 && p < 3);
        if (p >= 0) {
            count[p]++;
        }
    }
    CHECK_EQ_INT(count[3], 0); /* draining: never chosen */
    /* shares proportional to weight 1:2:3 (expected 5000/10000/15000) */
    printf("weighted shares: %u %u %u\n", count[0], count[1], count[2]);
    CHECK(count[0] > 4500 && count[0] < 5500);
    CHECK(count[1] > 9300 && count[1] < 10700);
    CHECK(count[2] > 14200 && count[2] < 15800);

    /* order of the list does not matter */
    struct aff_cand r[4] = {c[3], c[2], c[0], c[1]};
    unsigned bad = 0;
    for (int i = 0; i < 2000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "session-%d", i);
        int a = aff_pick(id, strlen(id), c, 4, AFF_F_NEW);
        int b = aff_pick(id, strlen(id), r, 4, AFF_F_NEW);
        bad += strcmp(c[a].name, r[b].name) != 0;
    }
    CHECK_EQ_INT(bad, 0);

    /* removing a server moves only the ids it held */
    struct aff_cand less[2] = {c[0], c[2]};
    unsigned moved_wrongly = 0;
    for (int i = 0; i < 5000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "session-%d", i);
        int a = aff_pick(id, strlen(id), c, 3, AFF_F_NEW);
        int b = aff_pick(id, strlen(id), less, 2, AFF_F_NEW);
        if (a != 1) {
            moved_wrongly += strcmp(c[a].name, less[b].name) != 0;
        }
    }
    CHECK_EQ_INT(moved_wrongly, 0);

    /* nothing eligible */
    struct aff_cand none[2] = {cand("d", 3, AFF_F_UP | AFF_F_DRAIN), cand("z", 0, AFF_F_UP)};
    CHECK_EQ_INT(aff_pick("id", 2, none, 2, AFF_F_NEW), -1);
    CHECK_EQ_INT(aff_pick("id", 2, none, 0, AFF_F_NEW), -1);
    /* weight 0 never picked even when flags match */
    struct aff_cand w0[2] = {cand("a", 0, AFF_F_NEW), cand("b", 1, AFF_F_NEW)};
    CHECK_EQ_INT(aff_pick("id", 2, w0, 2, AFF_F_NEW), 1);
}

/* Slow start: linear from the recorded moment, never 0, full when off or over. */
static void test_ramp(void)
{
    CHECK_EQ_INT(aff_ramp_permille(AFF_SINCE_NONE, 5000, 10000), 1000); /* nothing recorded */
    CHECK_EQ_INT(aff_ramp_permille(1000, 1500, 0), 1000);               /* slow start off */
    CHECK_EQ_INT(aff_ramp_permille(0, 123456, 10000), 1);               /* seen, not recorded */
    CHECK_EQ_INT(aff_ramp_permille(1000, 1000, 10000), 1);              /* the first moment */
    CHECK_EQ_INT(aff_ramp_permille(1000, 900, 10000), 1); /* a clock behind the record */
    CHECK_EQ_INT(aff_ramp_permille(1000, 1001, 10000), 1);
    CHECK_EQ_INT(aff_ramp_permille(1000, 5000, 10000), 400);
    CHECK_EQ_INT(aff_ramp_permille(1000, 6000, 10000), 500);
    CHECK_EQ_INT(aff_ramp_permille(1000, 10999, 10000), 999);
    CHECK_EQ_INT(aff_ramp_permille(1000, 11000, 10000), 1000);
    CHECK_EQ_INT(aff_ramp_permille(1000, 99999999, 10000), 1000);
    /* monotonic over the whole ramp */
    uint32_t last = 0;
    for (int64_t t = 0; t <= 8000; t += 8) {
        uint32_t p = aff_ramp_permille(100, 100 + t, 8000);
        CHECK(p >= last && p >= 1 && p <= 1000);
        last = p;
    }
    CHECK_EQ_INT(last, 1000);
}

/* A ramping server's live count tracks its share: with three peers at 90, one
 * at 40 % of its weight is least loaded below 36, and not at 36. */
static void test_least_loaded_ramp(void)
{
    struct aff_cand c[4] = {
        cand("a", 100, AFF_F_UP | AFF_F_NEW), cand("b", 100, AFF_F_UP | AFF_F_NEW),
        cand("c", 100, AFF_F_UP | AFF_F_NEW), cand("d", 100, AFF_F_UP | AFF_F_NEW)};
    for (int i = 0; i < 3; i++) {
        c[i].conns = 90;
    }
    c[3].ramp = 400;
    c[3].conns = 35;
    CHECK_EQ_INT(aff_least_loaded(c, 4), 3);
    c[3].conns = 36; /* 36 / 0.4 = 90: a tie, the first in order wins */
    CHECK_EQ_INT(aff_least_loaded(c, 4), 0);
    c[3].conns = 0;
    c[3].ramp = 1; /* the first moment of a ramp still takes a first session */
    CHECK_EQ_INT(aff_least_loaded(c, 4), 3);
    c[3].conns = 1;
    CHECK_EQ_INT(aff_least_loaded(c, 4), 0);
    /* every server ramping together: same order as none ramping */
    for (int i = 0; i < 4; i++) {
        c[i].ramp = 250;
        c[i].conns = 10 + i;
    }
    CHECK_EQ_INT(aff_least_loaded(c, 4), 0);
    /* past its rate: skipped while another has room, else still taken */
    c[0].paced = true;
    CHECK_EQ_INT(aff_least_loaded(c, 4), 1);
    c[1].paced = c[2].paced = c[3].paced = true;
    CHECK_EQ_INT(aff_least_loaded(c, 4), 0); /* all paced, same room: least loaded */
    c[2].room = 5; /* all paced: the most room wins over the least loaded */
    CHECK_EQ_INT(aff_least_loaded(c, 4), 2);
    c[2].room = 0;
    c[1].paced = c[2].paced = c[3].paced = false;
    c[0].paced = false;
    /* a full server is skipped however empty; all full: none */
    c[0].full = true;
    CHECK_EQ_INT(aff_least_loaded(c, 4), 1);
    c[1].full = c[2].full = c[3].full = true;
    CHECK_EQ_INT(aff_least_loaded(c, 4), -1);
}

/* The room rule: n agents' shares of a cap's remaining room add up to it exactly. */
static void test_room(void)
{
    CHECK(aff_room(500, 0, 0, 2, 0) == INT64_MAX); /* no cap */
    CHECK(aff_room(100, 0, 100, 1, 0) == 0);
    CHECK(aff_room(120, 0, 100, 1, 0) == -20);
    CHECK(aff_room(90, 3, 100, 1, 0) == 7);
    CHECK(aff_room(90, 0, 100, 0, 0) == 10); /* no instance known yet: alone */
    CHECK(aff_room(-4, 0, 10, 1, 0) == 10);  /* a transient negative count */
    for (unsigned n = 1; n <= 5; n++) {
        for (int64_t left = 0; left <= 13; left++) {
            int64_t sum = 0;
            for (unsigned r = 0; r < n; r++) {
                int64_t share = aff_room(100 - left, 0, 100, n, r);
                CHECK(share >= 0 && share <= (left + n - 1) / n);
                sum += share;
            }
            CHECK(sum == left);
        }
    }
    /* one room left, two agents: only rank 0 may use it */
    CHECK(aff_room(99, 0, 100, 2, 0) == 1);
    CHECK(aff_room(99, 0, 100, 2, 1) == 0);
    CHECK(aff_room(99, 1, 100, 2, 0) == 0); /* and once used, until the next view, no more */
    /* the others' opens in flight: none alone, (n - 1) x this one's peak otherwise */
    CHECK(aff_unseen(7, 1) == 0 && aff_unseen(7, 0) == 0 && aff_unseen(0, 3) == 0);
    CHECK(aff_unseen(7, 3) == 14 && aff_unseen(-2, 3) == 0);
    /* 2 agents, 10 left, this one's 5 just acknowledged (in the view now): without
     * the estimate it would take half of the 5 left again while the other may still
     * be placing its 5; with it, it waits for the other's to show */
    CHECK(aff_room(95, 0, 100, 2, 0) == 3);
    CHECK(aff_room(95 + aff_unseen(5, 2), 0, 100, 2, 0) == 0);
}

static void test_pin_cap(void)
{
    CHECK(aff_pin_cap(0, AFF_CAP_AFFINITY, 20) == 0);
    CHECK(aff_pin_cap(100, AFF_CAP_AFFINITY, 20) == 120);
    CHECK(aff_pin_cap(100, AFF_CAP_AFFINITY, 0) == 100);
    CHECK(aff_pin_cap(100, AFF_CAP_BALANCE, 20) == 100);
    CHECK(aff_pin_cap(7, AFF_CAP_AFFINITY, 10) == 7); /* rounds down, never below the cap */
    enum aff_cap_policy p = AFF_CAP_COUNT;
    CHECK(aff_cap_policy_parse("balance", &p) == 0 && p == AFF_CAP_BALANCE);
    CHECK(aff_cap_policy_parse("affinity", &p) == 0 && p == AFF_CAP_AFFINITY);
    CHECK(aff_cap_policy_parse("Balance", &p) == -1);
    CHECK(aff_cap_policy_parse("", &p) == -1);
    CHECK(strcmp(aff_cap_policy_name(AFF_CAP_BALANCE), "balance") == 0);
    CHECK(strcmp(aff_cap_policy_name(AFF_CAP_COUNT), "?") == 0);
}

int main(void)
{
    test_ramp();
    test_least_loaded_ramp();
    test_room();
    test_pin_cap();
    test_flags();
    test_hash_vectors();
    test_rank_order_independent();
    test_pick();
    return check_summary("test_affinity");
}
