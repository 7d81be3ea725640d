/* fuzz_hapi.c - libFuzzer target for the runtime-API reply parsers (hapi_parse.c): the
 * split of a batch's output into replies, "show servers state", the "show stat"
 * CSV and "show info", fed the input as the refresh batch sends it (state reply,
 * empty line, stat reply, empty line, info reply) and each parser the whole input.
 * Invariants: no crash or over-read (ASan), views inside the input, a failed parse
 * leaves the table unchanged, and every parsed name is a NUL-terminated string
 * that fits SRV_NAME_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hapi_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_table(const struct hapi_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct hapi_row *r = &t->rows[i];
        if (memchr(r->backend, 0, SRV_NAME_MAX) == NULL ||
            memchr(r->srv.name, 0, SRV_NAME_MAX) == NULL || r->backend[0] == 0 ||
            r->srv.name[0] == 0 || (unsigned)r->srv.state >= MODEL_STATE_COUNT) {
            abort();
        }
    }
}

static void parse_pair(const char *st, size_t stlen, const char *stat, size_t statlen)
{
    struct hapi_table t = {0};
    char err[256];
    if (hapi_parse_servers_state(st, stlen, &t, err, sizeof(err)) == 0) {
        check_table(&t);
        size_t n = t.n;
        if (hapi_parse_stat(stat, statlen, &t, err, sizeof(err)) == 0 && t.n != n) {
            abort(); /* show stat never adds servers */
        }
        check_table(&t);
    } else if (t.n != 0) {
        abort(); /* a rejected reply leaves the table as it was */
    }
    hapi_parse_table_release(&t);
}

static bool within(const char *p, size_t n, const char *s, size_t len)
{
    return n == 0 || (p >= s && p + n <= s + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    (void)hapi_parse_info_pid(s, size);
    parse_pair(s, size, s, size);

    const char *r1, *rest, *r2, *rest2;
    size_t l1, restlen, l2, restlen2;
    if (hapi_parse_split_reply(s, size, &r1, &l1, &rest, &restlen) == 0) {
        if (!within(r1, l1, s, size) || !within(rest, restlen, s, size)) {
            abort();
        }
        if (hapi_parse_split_reply(rest, restlen, &r2, &l2, &rest2, &restlen2) == 0) {
            if (!within(r2, l2, rest, restlen) || !within(rest2, restlen2, rest, restlen)) {
                abort();
            }
            parse_pair(r1, l1, r2, l2);
            long pid = hapi_parse_info_pid(rest2, restlen2);
            if (pid < 0) {
                abort();
            }
        }
    }
    free(s);
    return 0;
}
