/* test_req.c - requests driven directly, without the engine: a test creator
 * with its own completion callback, and NOTIFY payloads decoded by
 * spop_notify_parse. Empty ACKs get the noop action, actions are encoded
 * exactly and in order, the ids are echoed, an async handler holds up only its
 * own request, a frame completes only after its last message, an action that
 * would overflow the frame is dropped, and an orphaned request is freed and
 * counted on req_done without calling back. (test_conn_engine.c runs the same
 * through the real engine on a socketpair.) */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "req_engine.h"
#include "spop.h"
#include "stats.h"

#include "req_handlers.h"

/* Echoes its first arg's value as txn.<key>, and the handler's own arg. */
static void h_args(struct req *r, const struct spop_msg *m, void *arg)
{
    CHECK(arg == (void *)h_args);
    if (m->nargs > 0) {
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)m->args[0].key.len, m->args[0].key.ptr);
        req_set_var(r, SPOP_SCOPE_TXN, name, &m->args[0].val);
    }
    req_set_var_int(r, "nargs", m->nargs);
    req_done(r);
}

/* ---- the test creator --------------------------------------------------- */

static int completions;
static void *last_arg;
static struct req *last_req;
static uint64_t last_sid, last_fid;
static uint8_t last_act[1024];
static size_t last_act_len;
static unsigned last_nactions;
static struct req *list; /* the creator's list of requests in flight */

static void on_complete(struct req *r, const struct req_ack *ack, void *arg)
{
    completions++;
    last_req = r;
    last_arg = arg;
    last_sid = ack->stream_id;
    last_fid = ack->frame_id;
    CHECK(ack->actions_len <= sizeof(last_act));
    memcpy(last_act, ack->actions, ack->actions_len);
    last_act_len = ack->actions_len;
    last_nactions = ack->nactions;
    req_unlink(&list, r);
}

static char creator_ident[] = "unit fd=7";

/* A NOTIFY payload with messages named in `names` (NULL-terminated), no args,
 * decoded into n's arrays. */
static uint8_t payload[1024];
static struct spop_msg msgs[8];
static struct spop_kv kvs[8];

static void decode(const uint8_t *p, size_t len, struct spop_notify *n)
{
    *n = (struct spop_notify){msgs, 8, kvs, 8, 0, 0};
    CHECK_EQ_INT(spop_notify_parse(p, len, n), SPOP_NOTIFY_OK);
}

static void notify_of(const char *const *names, struct spop_notify *n)
{
    struct spop_writer w;
    spop_w_init(&w, payload, sizeof(payload), 0);
    for (; *names != NULL; names++) {
        spop_w_msg(&w, *names, strlen(*names), 0);
    }
    CHECK(!w.failed);
    decode(payload, w.len, n);
}

/* New request on the test creator's list, dispatched with the messages named. */
static struct req *run(uint64_t sid, uint64_t fid, uint32_t max_frame, const char *const *names)
{
    struct spop_notify n;
    notify_of(names, &n);
    struct req *r = req_new(on_complete, &list, creator_ident, sid, fid, max_frame);
    CHECK(r != NULL);
    req_link(&list, r);
    req_dispatch(r, &n);
    return r;
}

static struct spop_reader last_actions(void)
{
    return (struct spop_reader){last_act, last_act + last_act_len};
}

int main(void)
{
    CHECK(req_register("async", h_async, NULL) == 0);
    CHECK(req_register("set", h_set, NULL) == 0);
    CHECK(req_register("fill", h_fill, NULL) == 0);
    CHECK(req_register("args", h_args, (void *)h_args) == 0);

    /* empty NOTIFY -> one UNSET-VAR txn.noop, at once, ids echoed, unlinked */
    static const char *const none[] = {NULL};
    run(1, 1, 16380, none);
    CHECK_EQ_INT(completions, 1);
    CHECK(last_arg == &list);
    CHECK_EQ_INT(last_sid, 1);
    CHECK_EQ_INT(last_fid, 1);
    CHECK_EQ_INT(last_nactions, 1);
    CHECK(list == NULL);
    struct spop_reader rd = last_actions();
    expect_action(&rd, SPOP_ACT_UNSET_VAR, SPOP_SCOPE_TXN, "noop", SPOP_T_NULL);
    CHECK(rd.p == rd.end);

    /* four actions of each kind, in order */
    static const char *const set[] = {"set", NULL};
    run(2, 2, 16380, set);
    CHECK_EQ_INT(completions, 2);
    CHECK_EQ_INT(last_nactions, 4);
    rd = last_actions();
    expect_h_set_actions(&rd);

    /* async first, sync second: the second completes first */
    static const char *const as[] = {"async", NULL};
    static const char *const unknown[] = {"nobody-handles-this", NULL};
    uint64_t unknown_before = stats.msg_unknown;
    struct req *ra = run(3, 10, 16380, as);
    CHECK_EQ_INT(completions, 2);
    CHECK(list == ra);
    run(3, 11, 16380, unknown);
    CHECK_EQ_INT(stats.msg_unknown, unknown_before + 1);
    CHECK_EQ_INT(completions, 3);
    CHECK_EQ_INT(last_fid, 11);
    rd = last_actions();
    expect_action(&rd, SPOP_ACT_UNSET_VAR, SPOP_SCOPE_TXN, "noop", SPOP_T_NULL);
    CHECK_EQ_INT(nheld, 1);
    CHECK(held[0] == ra);
    req_set_var_int(held[0], "late", 7);
    CHECK(!req_orphaned(held[0]));
    CHECK(strstr(req_ident(held[0]), "unit") != NULL);
    CHECK(strcmp(req_ident(held[0]), "unit fd=7 sid=3 fid=10") == 0);
    req_done(held[0]);
    nheld = 0;
    CHECK_EQ_INT(completions, 4);
    CHECK(last_req == ra);
    CHECK_EQ_INT(last_sid, 3);
    CHECK_EQ_INT(last_fid, 10);
    rd = last_actions();
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "late", SPOP_T_INT64);
    CHECK(list == NULL);

    /* a frame completes after its last message only: an inline handler's
     * req_done does not finish a frame whose other message is still out */
    static const char *const set_async[] = {"set", "async", NULL};
    run(4, 12, 16380, set_async);
    CHECK_EQ_INT(completions, 4);
    CHECK_EQ_INT(nheld, 1);
    req_set_var_int(held[0], "second", 2);
    req_done(held[0]);
    nheld = 0;
    CHECK_EQ_INT(completions, 5);
    CHECK_EQ_INT(last_nactions, 5);
    rd = last_actions();
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "server", SPOP_T_STRING);
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "n", SPOP_T_INT64);
    expect_action(&rd, SPOP_ACT_UNSET_VAR, SPOP_SCOPE_SESS, "old", SPOP_T_NULL);
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_REQ, "flag", SPOP_T_BOOL);
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "second", SPOP_T_INT64);
    CHECK(rd.p == rd.end);

    /* handlers see the decoded args (views into the frame) and their own arg */
    {
        struct spop_writer w;
        spop_w_init(&w, payload, sizeof(payload), 0);
        spop_w_msg(&w, "args", 4, 2);
        struct spop_data v = spop_d_str("s9", 2), i = spop_d_i64(5);
        spop_w_kv(&w, "srv", &v);
        spop_w_kv(&w, "i", &i);
        spop_w_msg(&w, "args", 4, 0);
        CHECK(!w.failed);
        struct spop_notify n;
        decode(payload, w.len, &n);
        CHECK_EQ_INT(n.nmsgs, 2);
        struct req *r = req_new(on_complete, &list, creator_ident, 5, 13, 16380);
        CHECK(r != NULL);
        req_link(&list, r);
        req_dispatch(r, &n);
        CHECK_EQ_INT(completions, 6);
        rd = last_actions();
        uint8_t t, sc;
        struct spop_str nm;
        struct spop_data d;
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &d), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "srv") && d.type == SPOP_T_STRING && spop_str_eq(d.u.str, "s9"));
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &d), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "nargs") && d.type == SPOP_T_INT64 && d.u.i64 == 2);
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &d), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "nargs") && d.type == SPOP_T_INT64 && d.u.i64 == 0);
        CHECK(rd.p == rd.end);
    }

    /* orphaning: the creator goes away while a request is held */
    struct req *ro = run(4, 20, 16380, as);
    CHECK_EQ_INT(nheld, 1);
    req_unlink(&list, ro);
    req_orphan(ro);
    CHECK(req_orphaned(held[0]));
    /* its identity outlives the creator's */
    creator_ident[0] = 'X';
    CHECK(strcmp(req_ident(ro), "unit fd=7 sid=4 fid=20") == 0);
    creator_ident[0] = 'u';
    uint64_t dropped = stats.ack_dropped;
    req_set_var_int(held[0], "ignored", 1); /* harmless on an orphan */
    req_done(held[0]);
    nheld = 0;
    CHECK_EQ_INT(stats.ack_dropped, dropped + 1);
    CHECK_EQ_INT(completions, 6); /* no call back */

    /* overflow: max-frame 256 leaves 256 - 7 = 249 bytes of actions; 40
     * actions of 9 bytes ("vNN" int64 small) want 360: 27 fit, 13 dropped */
    uint64_t adrop = stats.action_dropped;
    static const char *const fill[] = {"fill", NULL};
    run(5, 30, 256, fill);
    CHECK_EQ_INT(completions, 7);
    CHECK_EQ_INT(last_fid, 30);
    CHECK(last_act_len <= 256 - 7);
    CHECK_EQ_INT(stats.action_dropped, adrop + 13);
    rd = last_actions();
    CHECK_EQ_INT(count_actions(&rd), 27);
    CHECK_EQ_INT(last_nactions, 27);
    CHECK(rd.p == rd.end);
    /* bigger ids leave fewer bytes: 256 - 5 - 2 - 3 = 246 for sid 300, fid 70000 */
    run(300, 70000, 256, fill);
    CHECK(last_act_len <= 246);
    CHECK_EQ_INT(last_sid, 300);
    CHECK_EQ_INT(last_fid, 70000);

    CHECK(list == NULL);
    req_registry_clear();
    return check_summary("test_req");
}
