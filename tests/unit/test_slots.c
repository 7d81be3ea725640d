/* Unit tests for slots.c: hash slots (expected values are what a real
 * redis-server 7.0 answered to CLUSTER KEYSLOT), slot ranges, redirects. */
#include <string.h>

#include "check.h"
#include "slots.h"

static unsigned slot(const char *k)
{
    return slots_key_slot(k, strlen(k));
}

int main(void)
{
    static const struct {
        const char *key;
        unsigned slot;
    } known[] = {
        {"123456789", 12739},
        {"foo", 12182},
        {"bar", 5061},
        {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443},
        {"foo{}{bar}", 8363},   /* an empty tag hashes the whole key */
        {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
        {"foo{bar}{zap}", 5061}, /* the first tag only */
        {"{}", 15257},
        {"sticky:{ws}:conns", 7994},
        {"sticky:ws:s:{2AAAAAAAAAAAAAAAAAAAAAA}", 2113},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        CHECK_EQ_INT(slot(known[i].key), known[i].slot);
    }
    /* binary-safe: a NUL inside the key counts */
    CHECK(slots_key_slot("a\0b", 3) != slots_key_slot("a", 1));

    char err[128];
    struct slots_range ok[] = {{0, 5460, "127.0.0.1", 9, 7000},
                               {5461, 10922, "127.0.0.1", 9, 7001},
                               {10923, 16383, "::1", 3, 7002}};
    CHECK_EQ_INT(slots_check(ok, 3, err, sizeof(err)), SLOTS_COUNT);
    CHECK_EQ_INT(slots_check(ok, 2, err, sizeof(err)), 10923); /* a hole is not an error */
    struct slots_range overlap[] = {{0, 100, "h", 1, 1}, {100, 200, "h", 1, 2}};
    CHECK_EQ_INT(slots_check(overlap, 2, err, sizeof(err)), -1);
    CHECK(strstr(err, "slot 100") != NULL);
    struct slots_range bad[][1] = {{{5, 4, "h", 1, 1}},
                                   {{0, 16384, "h", 1, 1}},
                                   {{0, 1, "", 0, 1}},
                                   {{0, 1, "h", 1, 0}},
                                   {{0, 1, "h", 1, 65536}}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(slots_check(bad[i], 1, err, sizeof(err)), -1);
    }

    struct slots_redirect rd;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    CHECK_EQ_INT(slots_parse_redirect(m, strlen(m), &rd), 0);
    CHECK(!rd.ask);
    CHECK_EQ_INT(rd.slot, 3999);
    CHECK(strcmp(rd.host, "127.0.0.1") == 0);
    CHECK_EQ_INT(rd.port, 6381);
    const char *a = "ASK 16383 ::1:7002";
    CHECK_EQ_INT(slots_parse_redirect(a, strlen(a), &rd), 0);
    CHECK(rd.ask);
    CHECK_EQ_INT(rd.slot, 16383);
    CHECK(strcmp(rd.host, "::1") == 0);
    CHECK_EQ_INT(rd.port, 7002);
    const char *nots[] = {"ERR unknown", "MOVED", "MOVED 16384 h:1", "MOVED 1 h", "MOVED 1 h:",
                          "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED x h:1", "ASK 1 :1",
                          "MOVED 1 h:12x", "MOVED 1  h:1", "CLUSTERDOWN Hash slot not served"};
    for (size_t i = 0; i < sizeof(nots) / sizeof(nots[0]); i++) {
        CHECK_EQ_INT(slots_parse_redirect(nots[i], strlen(nots[i]), &rd), -1);
    }
    /* every truncation of a valid redirect is rejected or parses a shorter port */
    for (size_t n = 0; n < strlen(m); n++) {
        if (slots_parse_redirect(m, n, &rd) == 0) {
            CHECK(rd.port < 6381 && n > strlen("MOVED 3999 127.0.0.1:"));
        }
    }

    char host[SLOTS_HOST_MAX];
    unsigned port;
    CHECK_EQ_INT(slots_parse_hostport("10.0.0.1:7000", 13, host, &port), 0);
    CHECK(strcmp(host, "10.0.0.1") == 0 && port == 7000);
    CHECK_EQ_INT(slots_parse_hostport("[::1]:7000", 10, host, &port), 0);
    CHECK(strcmp(host, "::1") == 0 && port == 7000);
    CHECK_EQ_INT(slots_parse_hostport("nohost", 6, host, &port), -1);
    CHECK_EQ_INT(slots_parse_hostport(":7000", 5, host, &port), -1);
    /* found by fuzz_slots: a NUL or control byte in a redirect's host was kept,
     * and the C string cut at it */
    CHECK_EQ_INT(slots_parse_hostport("\0\0::7:701", 10, host, &port), -1);
    CHECK_EQ_INT(slots_parse_hostport("10.0.0.1\n:7000", 14, host, &port), -1);
    CHECK_EQ_INT(slots_parse_hostport("h\x7f:1", 4, host, &port), -1);
    return check_summary("test_slots");
}
