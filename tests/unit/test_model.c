/* Unit tests for model.c: state values, key names, session records. */
#include <string.h>

#include "check.h"
#include "config.h"
#include "model.h"

static int st(const char *v, enum model_state *a, int64_t *dl, bool *close)
{
    return model_parse_state(v, strlen(v), a, dl, close);
}

/* One enum and one table of names for a server's state: the servers view,
 * the :state hash and the events all print through it. */
static void test_state_names(void)
{
    CHECK(strcmp(model_state_name(MODEL_READY), "ready") == 0);
    CHECK(strcmp(model_state_name(MODEL_DRAIN), "drain") == 0);
    CHECK(strcmp(model_state_name(MODEL_MAINT), "maint") == 0);
    CHECK(strcmp(model_state_name(MODEL_DOWN), "down") == 0);
    CHECK(strcmp(model_state_name(MODEL_STATE_COUNT), "unknown") == 0);
    CHECK(strcmp(model_state_name((enum model_state)-1), "unknown") == 0);
    CHECK_EQ_INT(MODEL_ADMIN_COUNT, 3); /* the admin states: the wire's three */
}

int main(void)
{
    enum model_state a;
    int64_t dl;
    bool close;

    test_state_names();

    CHECK_EQ_INT(st("maint", &a, &dl, &close), 0);
    CHECK_EQ_INT(a, MODEL_MAINT);
    CHECK_EQ_INT(st("drain:0", &a, &dl, &close), 0);
    CHECK_EQ_INT(a, MODEL_DRAIN);
    CHECK_EQ_INT(dl, 0);
    CHECK(!close);
    CHECK_EQ_INT(st("drain:1763700600000", &a, &dl, &close), 0);
    CHECK_EQ_INT(dl, 1763700600000LL);
    CHECK_EQ_INT(st("drain:1763700600000:close", &a, &dl, &close), 0);
    CHECK(close);
    CHECK_EQ_INT(dl, 1763700600000LL);

    /* slow start: ready since a moment (Redis ms), or seen unusable (0) */
    dl = 7;
    CHECK_EQ_INT(st("ready:1763700600000", &a, &dl, &close), 0);
    CHECK_EQ_INT(a, MODEL_READY);
    CHECK_EQ_INT(dl, 0);
    CHECK_EQ_INT(model_state_since("ready:1763700600000", 19), 1763700600000LL);
    CHECK_EQ_INT(model_state_since("ready:0", 7), 0);
    CHECK_EQ_INT(model_state_since("maint", 5), MODEL_SINCE_NONE);
    CHECK_EQ_INT(model_state_since("drain:5", 7), MODEL_SINCE_NONE);
    CHECK_EQ_INT(model_state_since("ready:", 6), MODEL_SINCE_NONE);
    CHECK_EQ_INT(model_state_since("ready:12x", 9), MODEL_SINCE_NONE);
    CHECK_EQ_INT(model_state_since("ready:12", 7), 1); /* only len bytes are read */

    const char *bad[] = {"", "drain", "drain:", "drain:x", "drain:12:open", "drain:12:close:x",
                         "Maint", "maint ", "ready", "drain:99999999999999999999", "drain:-5",
                         "ready:", "ready:-1", "ready:1 ", "ready:99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(st(bad[i], &a, &dl, &close), -1);
    }

    char k[MODEL_KEY_MAX];
    CHECK_EQ_INT(model_key(k, sizeof(k), "sticky:", "ws", 2, "conns"), 17);
    CHECK(strcmp(k, "sticky:{ws}:conns") == 0);
    CHECK(model_key(k, sizeof(k), "sticky:", "wsXXX", 2, "s:abc") > 0);
    CHECK(strcmp(k, "sticky:{ws}:s:abc") == 0);
    CHECK_EQ_INT(model_key(k, 10, "sticky:", "ws", 2, "conns"), -1);

    /* session records: format, parse, and what is refused */
    const char v[] = "ws1 1700000000000 1700000005000 - lb 1"; /* as ledger.lua writes it */
    struct model_record r;
    int n = (int)strlen(v);
    CHECK_EQ_INT(model_record_parse(v, (size_t)n, &r), 0);
    CHECK(r.server_len == 3 && memcmp(r.server, "ws1", 3) == 0);
    CHECK(r.created_ms == 1700000000000 && r.seen_ms == 1700000005000 && !r.moved);
    CHECK(r.inst_len == 4 && memcmp(r.inst, "lb 1", 4) == 0);
    CHECK_EQ_INT(model_record_parse("ws2 1 2 m", 9, &r), 0);
    CHECK(r.moved && r.inst_len == 0);
    const char *rbad[] = {"", "ws1", "ws1 1", "ws1 1 2", "ws1 1 2 x", "ws1 a 2 -", " 1 2 -",
                          "ws1 1 2 -x", "ws1 1  2 -"};
    for (size_t i = 0; i < sizeof(rbad) / sizeof(rbad[0]); i++) {
        CHECK_EQ_INT(model_record_parse(rbad[i], strlen(rbad[i]), &r), -1);
    }
    /* every truncation of a good record either parses as a shorter one or fails cleanly */
    for (int cut = 0; cut < n; cut++) {
        int rc = model_record_parse(v, (size_t)cut, &r);
        CHECK(rc == 0 || rc == -1);
        CHECK(rc != 0 || (size_t)(r.inst - v) + r.inst_len == (size_t)cut);
    }
    CHECK_EQ_INT(model_key_id(k, "sticky:", "be", "s:", "2abc", 4),
                 (int)strlen("sticky:{be}:s:2abc"));
    CHECK(strcmp(k, "sticky:{be}:s:2abc") == 0);

    /* record keys: standalone keeps the backend's tag, a cluster gives the record its own */
    struct cfg cc;
    memset(&cc, 0, sizeof(cc));
    cc.redis_prefix = (char *)"sticky:";
    CHECK_EQ_INT(model_record_key(k, &cc, "be", "2abc", 4), (int)strlen("sticky:{be}:s:2abc"));
    CHECK(strcmp(k, "sticky:{be}:s:2abc") == 0);
    cc.redis_cluster = true;
    CHECK_EQ_INT(model_record_key(k, &cc, "be", "2abc", 4), (int)strlen("sticky:be:s:{2abc}"));
    CHECK(strcmp(k, "sticky:be:s:{2abc}") == 0);
    CHECK_EQ_INT(model_record_key(k, &cc, "be", "2a}c", 4), -1); /* would end the tag early */
    char longid[MODEL_KEY_MAX];
    memset(longid, 'x', sizeof(longid));
    CHECK_EQ_INT(model_record_key(k, &cc, "be", longid, MODEL_KEY_MAX - 14), -1);
    CHECK(model_record_key(k, &cc, "be", longid, MODEL_KEY_MAX - 16) > 0);

    return check_summary("test_model");
}
