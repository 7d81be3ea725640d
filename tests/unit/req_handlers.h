/* req_handlers.h - what test_req.c and test_conn_engine.c share: the message
 * handlers both register (one holds its request for the test to finish later,
 * one sets a variable of every kind, one fills a frame) and the check of one
 * encoded action. Included by one test file each (the definitions are static).
 */
#ifndef STICKYD_TEST_REQ_HANDLERS_H
#define STICKYD_TEST_REQ_HANDLERS_H

#include <stdbool.h>
#include <stdio.h>

#include "check.h"
#include "req.h"
#include "spop.h"

static struct req *held[8];
static int nheld;

static void h_async(struct req *r, const struct spop_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    held[nheld++] = r; /* completed later by the test */
}

static void h_set(struct req *r, const struct spop_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    req_set_var_str(r, "server", "s1", 2);
    req_set_var_int(r, "n", 300);
    req_unset_var(r, SPOP_SCOPE_SESS, "old");
    struct spop_data b = spop_d_bool(true);
    req_set_var(r, SPOP_SCOPE_REQ, "flag", &b);
    req_done(r);
}

static void h_fill(struct req *r, const struct spop_msg *m, void *arg)
{
    (void)m;
    (void)arg;
    for (int i = 0; i < 40; i++) {
        char name[8];
        snprintf(name, sizeof(name), "v%02d", i);
        req_set_var_int(r, name, i);
    }
    req_done(r);
}

/* The next action of rd is (type, scope, name) with a value of type vt. */
static void expect_action(struct spop_reader *rd, uint8_t type, uint8_t scope, const char *name,
                          enum spop_type vt)
{
    uint8_t t, sc;
    struct spop_str n;
    struct spop_data v;
    CHECK_EQ_INT(spop_next_action(rd, &t, &sc, &n, &v), SPOP_NEXT_ITEM);
    CHECK_EQ_INT(t, type);
    CHECK_EQ_INT(sc, scope);
    CHECK(spop_str_eq(n, name));
    CHECK_EQ_INT(v.type, vt);
}

/* How many well-formed actions rd holds from its cursor on (it is left after
 * the last one: a caller checks rd->p == rd->end for "nothing else"). */
static int count_actions(struct spop_reader *rd)
{
    int n = 0;
    uint8_t t, sc;
    struct spop_str nm;
    struct spop_data v;
    while (spop_next_action(rd, &t, &sc, &nm, &v) == SPOP_NEXT_ITEM) {
        n++;
    }
    return n;
}

/* rd holds exactly what h_set answers, in order. */
static void expect_h_set_actions(struct spop_reader *rd)
{
    expect_action(rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "server", SPOP_T_STRING);
    expect_action(rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "n", SPOP_T_INT64);
    expect_action(rd, SPOP_ACT_UNSET_VAR, SPOP_SCOPE_SESS, "old", SPOP_T_NULL);
    expect_action(rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_REQ, "flag", SPOP_T_BOOL);
    CHECK(rd->p == rd->end);
}

#endif
