/* stats.c - dumps of the X-macro counter list. */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>

struct stats stats;

void stats_dump_text(FILE *f)
{
#define STATS_TEXT(name, desc) fprintf(f, "%s %llu\n", #name, (unsigned long long)stats.name);
    STATS_COUNTERS(STATS_TEXT)
#undef STATS_TEXT
}

char *stats_dump_json(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL) {
        return NULL;
    }
    const char *sep = "{";
#define STATS_JSON(name, desc)                                                                     \
    fprintf(f, "%s\"%s\":%llu", sep, #name, (unsigned long long)stats.name);                       \
    sep = ",";
    STATS_COUNTERS(STATS_JSON)
#undef STATS_JSON
    fputs("}", f);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
