/* stats.c - the counters, and their dumps generated from the X-macro lists in stats.h.
 * Writes only to the FILE it is given; never blocks on anything else. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spop.h"

struct stats stats = {.config_last_reload_success = 1};

static const uint64_t hist_bounds_us[STATS_HIST_NBOUNDS] = {STATS_HIST_BOUNDS_US};
_Static_assert(sizeof(hist_bounds_us) / sizeof(hist_bounds_us[0]) == STATS_HIST_NBOUNDS,
               "STATS_HIST_NBOUNDS counts STATS_HIST_BOUNDS_US");
_Static_assert(SPOP_ST_RES < STATS_SPOP_CODE_OTHER, "every SPOP status code has its counter");

uint64_t stats_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void stats_observe(struct stats_hist *h, uint64_t start_ns)
{
    uint64_t now = stats_now_ns();
    uint64_t ns = now > start_ns ? now - start_ns : 0;
    size_t i = 0;
    while (i < STATS_HIST_NBOUNDS && ns > hist_bounds_us[i] * 1000u) {
        i++;
    }
    h->bucket[i]++;
    h->count++;
    h->sum_ns += ns;
}

/* Both flat dumps name things the same way; only the punctuation differs. */
struct flat {
    FILE *f;
    const char *sep; /* JSON: "{" then "," */
    int json;
};

static void flat_u(struct flat *o, const char *a, const char *b, unsigned long long v)
{
    if (o->json) {
        fprintf(o->f, "%s\"%s%s\":%llu", o->sep, a, b, v);
        o->sep = ",";
    } else {
        fprintf(o->f, "%s%s %llu\n", a, b, v);
    }
}

static void flat_i(struct flat *o, const char *a, long long v)
{
    if (o->json) {
        fprintf(o->f, "%s\"%s\":%lld", o->sep, a, v);
        o->sep = ",";
    } else {
        fprintf(o->f, "%s %lld\n", a, v);
    }
}

static void flat_dump(struct flat *o)
{
    char name[96];
#define FLAT_COUNTER(n, help) flat_u(o, #n, "", stats.n);
#define FLAT_MEMBER(f, v, help) flat_u(o, #f "_" #v, "", stats.f##_##v);
#define FLAT_FAMILY(f, metric, label, list, help) list(FLAT_MEMBER, f)
#define FLAT_CODED(n, help)                                                                        \
    for (unsigned c = 0; c < STATS_SPOP_CODES; c++) {                                              \
        if (stats.n[c] != 0) {                                                                     \
            snprintf(name, sizeof(name), "%s_%u", #n, c);                                          \
            flat_u(o, name, "", stats.n[c]);                                                       \
        }                                                                                          \
    }
#define FLAT_GAUGE(n, help) flat_i(o, #n, (long long)stats.n);
#define FLAT_HIST(n, help)                                                                         \
    flat_u(o, #n, "_count", stats.n.count);                                                        \
    flat_u(o, #n, "_sum_us", stats.n.sum_ns / 1000u);
    /* scalar counters last: readers of the SIGUSR1 lines wait for the list's last one */
    STATS_FAMILIES(FLAT_FAMILY)
    STATS_CODED(FLAT_CODED)
    STATS_GAUGES(FLAT_GAUGE)
    STATS_HISTOGRAMS(FLAT_HIST)
    STATS_COUNTERS(FLAT_COUNTER)
#undef FLAT_COUNTER
#undef FLAT_MEMBER
#undef FLAT_FAMILY
#undef FLAT_CODED
#undef FLAT_GAUGE
#undef FLAT_HIST
}

void stats_dump_text(FILE *f)
{
    struct flat o = {f, "", 0};
    flat_dump(&o);
}

char *stats_dump_json(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL) {
        return NULL;
    }
    struct flat o = {f, "{", 1};
    flat_dump(&o);
    fputs(o.sep[0] == '{' ? "{}" : "}", f);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- Prometheus ---------------------------------------------------------- */

static void prom_head(FILE *f, const char *name, const char *suffix, const char *type,
                      const char *help)
{
    fprintf(f, "# HELP stickyd_%s%s %s\n# TYPE stickyd_%s%s %s\n", name, suffix, help, name,
            suffix, type);
}

static void prom_hist(FILE *f, const char *name, const char *help, const struct stats_hist *h)
{
    prom_head(f, name, "_seconds", "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i <= STATS_HIST_NBOUNDS; i++) {
        cum += h->bucket[i];
        if (i < STATS_HIST_NBOUNDS) {
            fprintf(f, "stickyd_%s_seconds_bucket{le=\"%g\"} %llu\n", name,
                    (double)hist_bounds_us[i] / 1e6, (unsigned long long)cum);
        } else {
            fprintf(f, "stickyd_%s_seconds_bucket{le=\"+Inf\"} %llu\n", name,
                    (unsigned long long)cum);
        }
    }
    fprintf(f, "stickyd_%s_seconds_sum %.9f\n", name, (double)h->sum_ns / 1e9);
    fprintf(f, "stickyd_%s_seconds_count %llu\n", name, (unsigned long long)h->count);
}

void stats_dump_prometheus(FILE *f)
{
#define PROM_COUNTER(n, help)                                                                      \
    prom_head(f, #n, "_total", "counter", help);                                                   \
    fprintf(f, "stickyd_" #n "_total %llu\n", (unsigned long long)stats.n);
#define PROM_MEMBER(fam, v, help)                                                                  \
    fprintf(f, "stickyd_%s_total{%s=\"" #v "\"} %llu\n", metric_, label_,                         \
            (unsigned long long)stats.fam##_##v);
#define PROM_FAMILY(fam, metric, label, list, help)                                                \
    {                                                                                              \
        const char *metric_ = #metric, *label_ = #label;                                           \
        prom_head(f, metric_, "_total", "counter", help);                                          \
        list(PROM_MEMBER, fam)                                                                     \
    }
#define PROM_CODED(n, help)                                                                        \
    prom_head(f, #n, "_total", "counter", help);                                                   \
    for (unsigned c = 0; c < STATS_SPOP_CODES; c++) {                                              \
        if (c == STATS_SPOP_CODE_OTHER) {                                                          \
            fprintf(f, "stickyd_" #n "_total{code=\"other\"} %llu\n",                              \
                    (unsigned long long)stats.n[c]);                                               \
        } else if (c <= SPOP_ST_RES) {                                                             \
            fprintf(f, "stickyd_" #n "_total{code=\"%u\"} %llu\n", c,                              \
                    (unsigned long long)stats.n[c]);                                               \
        }                                                                                          \
    }
#define PROM_GAUGE(n, help)                                                                        \
    prom_head(f, #n, "", "gauge", help);                                                           \
    fprintf(f, "stickyd_" #n " %lld\n", (long long)stats.n);
#define PROM_HIST(n, help) prom_hist(f, #n, help, &stats.n);
    STATS_COUNTERS(PROM_COUNTER)
    STATS_FAMILIES(PROM_FAMILY)
    STATS_CODED(PROM_CODED)
    STATS_GAUGES(PROM_GAUGE)
    STATS_HISTOGRAMS(PROM_HIST)
#undef PROM_COUNTER
#undef PROM_MEMBER
#undef PROM_FAMILY
#undef PROM_CODED
#undef PROM_GAUGE
#undef PROM_HIST
}
