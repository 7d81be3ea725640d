/* fuzz_reply.c - libFuzzer target for Redis replies as the decision code reads them.
 * The input is RESP bytes from Redis (semi-trusted: a Redis another program can write
 * to, or a proxy in between); hiredis' own reader (the one the agent's connection
 * uses) turns each complete reply into a tree, which goes to every parser of script
 * replies: decide.lua's (assign_reply_parse, assign.c), ledger.lua's
 * (ledger_reply_parse and ledger_reply_moved, ledger.c) and, for every field/value
 * pair of its hashes as view_apply reads them, the state and record values
 * (model_parse_state, model_record_parse). The reply tree is handed over as the
 * store does (a redisReply is a store_reply); this harness, like store.c, may
 * include hiredis.
 * Invariants: no crash, over-read or leak (ASan), no undefined behaviour (UBSan),
 * a verdict names a server of 1..SRV_NAME_MAX-1 bytes that lies inside the reply's
 * own string, and a parsed batch has no negative time or count.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "ledger.h"
#include "model.h"
#include "servers.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *p, size_t n, const struct store_reply *e)
{
    size_t len = 0;
    const char *s = store_reply_str(e, &len);
    return s != NULL && p >= s && p + n <= s + len;
}

static void check_decide(const struct store_reply *r)
{
    struct assign_reply ar;
    assign_reply_parse(r, &ar);
    if ((unsigned)ar.verdict >= ASSIGN_V_COUNT) {
        abort();
    }
    if (ar.verdict == ASSIGN_V_HIT || ar.verdict == ASSIGN_V_REPIN || ar.verdict == ASSIGN_V_NEW) {
        if (ar.server_len == 0 || ar.server_len >= SRV_NAME_MAX ||
            !inside(ar.server, ar.server_len, store_reply_elem(r, 1))) {
            abort();
        }
        if (ar.from_len >= SRV_NAME_MAX ||
            (ar.from_len > 0 && !inside(ar.from, ar.from_len, store_reply_elem(r, 2)))) {
            abort();
        }
    }
}

/* Field/value pairs as ledger.c's view_apply walks them. */
static void walk_hash(const struct store_reply *h, bool states)
{
    for (size_t i = 0; i + 1 < store_reply_len(h); i += 2) {
        size_t nl, vl;
        const char *n = store_reply_str(store_reply_elem(h, i), &nl);
        const char *v = store_reply_str(store_reply_elem(h, i + 1), &vl);
        if (n == NULL || v == NULL) {
            continue;
        }
        if (states) {
            enum model_state st;
            int64_t dl;
            bool close_at;
            if (model_parse_state(v, vl, &st, &dl, &close_at) == 0 &&
                ((unsigned)st >= MODEL_ADMIN_COUNT || dl < 0)) {
                abort();
            }
        } else {
            struct model_record rec;
            (void)model_record_parse(v, vl, &rec);
        }
    }
}

static void check_ledger(const struct store_reply *r)
{
    struct ledger_reply lr;
    if (ledger_reply_parse(r, &lr) != 0) {
        return;
    }
    if (lr.redis_ms < 0 || lr.opened < 0 || lr.closed < 0 ||
        store_reply_type(lr.conns) != STORE_R_ARRAY ||
        store_reply_type(lr.state) != STORE_R_ARRAY ||
        store_reply_type(lr.moved) != STORE_R_ARRAY) {
        abort();
    }
    walk_hash(lr.conns, false);
    walk_hash(lr.state, true);
    for (size_t i = 0; i < store_reply_len(lr.moved); i++) {
        long long k;
        const char *srv = NULL;
        size_t sl = 0;
        if (ledger_reply_moved(&lr, i, &k, &srv, &sl) == 0 && srv == NULL) {
            abort();
        }
    }
}

/* hiredis 0.14 callocs 8 bytes per element as soon as it reads an array's header
 * ("*700000123" is a 5.6 GB calloc before any element arrived: found by this target;
 * a limit of hiredis, not of the parsers under test, see the README). Inputs that
 * announce more elements than any script reply has are not fed to it. */
#define FUZZ_MAX_ELEMENTS 100000L

static bool huge_array(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '*') {
            continue;
        }
        long v = 0;
        for (size_t j = i + 1; j < n && p[j] >= '0' && p[j] <= '9'; j++) {
            v = v * 10 + (p[j] - '0');
            if (v > FUZZ_MAX_ELEMENTS) {
                return true;
            }
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (huge_array(data, size)) {
        return 0;
    }
    redisReader *rd = redisReaderCreate();
    if (rd == NULL) {
        return 0;
    }
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        for (int n = 0; n < 64; n++) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) {
                break;
            }
            const struct store_reply *r = (const struct store_reply *)reply;
            check_decide(r);
            check_ledger(r);
            /* a states or resync reply: arrays of hashes and names */
            walk_hash(r, true);
            for (size_t i = 0; i < store_reply_len(r); i++) {
                walk_hash(store_reply_elem(r, i), true);
            }
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
