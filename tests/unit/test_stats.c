/* test_stats.c - the counter dumps generated from stats.h's lists: names, labels,
 * histogram buckets (placement at each bound, cumulative output), and the SIGUSR1
 * text and Prometheus exposition agreeing on the same values. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stats.h"

static char *dump(void (*fn)(FILE *))
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fn(f);
    fclose(f);
    return out;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) {
            return true;
        }
    }
    return false;
}

/* A duration of ns nanoseconds, observed now. */
static void observe_ns(struct stats_hist *h, uint64_t ns)
{
    stats_observe(h, stats_now_ns() - ns);
}

static void test_families_and_codes(void)
{
    memset(&stats, 0, sizeof(stats));
    STATS_INC(decision_hit);
    STATS_INC(decision_hit);
    STATS_INC(decision_fallback);
    (*STATS_REF(fallback_redis_timeout))++;
    STATS_INC_CODE(spop_disconnects_sent, 4);
    STATS_INC_CODE(spop_disconnects_sent, 99); /* unknown codes count as "other" */
    stats.redis_pending = 3;
    char *p = dump(stats_dump_prometheus);
    CHECK(has_line(p, "# TYPE stickyd_decisions_total counter"));
    CHECK(has_line(p, "stickyd_decisions_total{action=\"hit\"} 2"));
    CHECK(has_line(p, "stickyd_decisions_total{action=\"fallback\"} 1"));
    CHECK(has_line(p, "stickyd_decisions_total{action=\"none\"} 0"));
    CHECK(has_line(p, "stickyd_fallbacks_total{cause=\"redis_timeout\"} 1"));
    CHECK(has_line(p, "stickyd_fallbacks_total{cause=\"redis_down\"} 0"));
    CHECK(has_line(p, "stickyd_spop_disconnects_sent_total{code=\"4\"} 1"));
    CHECK(has_line(p, "stickyd_spop_disconnects_sent_total{code=\"other\"} 1"));
    CHECK(has_line(p, "stickyd_spop_disconnects_sent_total{code=\"13\"} 0"));
    CHECK(!has_line(p, "stickyd_spop_disconnects_sent_total{code=\"14\"} 0"));
    CHECK(has_line(p, "# TYPE stickyd_redis_pending gauge"));
    CHECK(has_line(p, "stickyd_redis_pending 3"));
    CHECK(has_line(p, "stickyd_redis_requests_total 0"));
    char *t = dump(stats_dump_text);
    CHECK(has_line(t, "decision_hit 2"));
    CHECK(has_line(t, "fallback_redis_timeout 1"));
    CHECK(has_line(t, "spop_disconnects_sent_4 1"));
    CHECK(has_line(t, "spop_disconnects_sent_15 1"));
    CHECK(!has_line(t, "spop_disconnects_sent_0 0")); /* zero codes are left out */
    CHECK(has_line(t, "redis_pending 3"));
    /* the scalar counters close the dump: readers wait for its last line */
    size_t tl = strlen(t);
    CHECK(tl > 20 && strcmp(t + tl - strlen("events_received 0\n"), "events_received 0\n") == 0);
    char *j = stats_dump_json();
    CHECK(j != NULL && j[0] == '{' && j[strlen(j) - 1] == '}');
    CHECK(j != NULL && strstr(j, "\"decision_hit\":2") != NULL);
    CHECK(j != NULL && strstr(j, "\"redis_pending\":3") != NULL);
    free(p);
    free(t);
    free(j);
}

static void test_histogram(void)
{
    memset(&stats, 0, sizeof(stats));
    struct stats_hist *h = &stats.decision_latency;
    observe_ns(h, 10000);       /* 10 us: first bucket (<= 50 us) */
    observe_ns(h, 2000000);     /* 2 ms: <= 2.5 ms */
    observe_ns(h, 3000000000u); /* 3 s: +Inf */
    CHECK_EQ_INT(h->count, 3);
    CHECK_EQ_INT(h->bucket[0], 1);
    CHECK_EQ_INT(h->bucket[STATS_HIST_NBOUNDS], 1);
    CHECK(h->sum_ns >= 3002010000u);
    char *p = dump(stats_dump_prometheus);
    CHECK(has_line(p, "# TYPE stickyd_decision_latency_seconds histogram"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_bucket{le=\"5e-05\"} 1"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_bucket{le=\"0.001\"} 1"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_bucket{le=\"0.0025\"} 2"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_bucket{le=\"1\"} 2"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_bucket{le=\"+Inf\"} 3"));
    CHECK(has_line(p, "stickyd_decision_latency_seconds_count 3"));
    CHECK(strstr(p, "stickyd_decision_latency_seconds_sum 3.00") != NULL);
    CHECK(has_line(p, "stickyd_redis_round_trip_seconds_count 0"));
    free(p);
}

int main(void)
{
    test_families_and_codes();
    test_histogram();
    return check_summary("test_stats");
}
