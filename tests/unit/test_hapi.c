/* Unit tests of hapi_parse.c: the state mapping, reply splitting, and
 * the "show servers state" / "show stat" parsers, fed with replies captured
 * from a real HAProxy 2.6.12 (backend ws: s1 UP with one open session, s2 DOWN
 * by a failed L4 check, s3 `disabled`, s4 "set server ... state drain", s5 no
 * check with "set server ... weight 7" over a configured 50), then cut at every
 * byte and corrupted line by line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hapi_parse.h"
#include "servers.h"

/* Captured verbatim: `echo "show servers state" | socat - admin.sock`. */
static const char state_26[] =
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iw"
    "eight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_"
    "check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord s"
    "rv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
    "2 ws 1 s1 127.0.0.1 2 0 10 10 2 6 3 4 6 0 0 0 - 47811 - 0 0 - - 0\n"
    "2 ws 2 s2 127.0.0.1 0 0 20 20 2 8 2 0 6 0 0 0 - 47813 - 0 0 - - 0\n"
    "2 ws 3 s3 127.0.0.1 0 5 30 30 2 1 0 0 8 0 0 0 - 47811 - 0 0 - - 0\n"
    "2 ws 4 s4 127.0.0.1 2 8 40 40 1 6 3 4 6 0 0 0 - 47811 - 0 0 - - 0\n"
    "2 ws 5 s5 127.0.0.1 2 0 7 50 2 1 0 2 0 0 0 0 - 47811 - 0 0 - - 0\n"
    "\n";

/* Captured verbatim: `echo "show stat" | socat - admin.sock` (same moment). */
static const char stat_26[] =
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttl"
    "e,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_"
    "1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_to"
    "t,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,"
    "ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_ris"
    "e,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_"
    "rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache"
    "_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_"
    "conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,a"
    "gg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_"
    "rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors"
    ",h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,"
    "h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connection"
    "s,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spli"
    "ced_bytes_in,h1_spliced_bytes_out,\n"
    "ws,s1,0,0,1,1,,1,0,0,,0,,0,0,0,0,UP,10,1,0,0,0,2,0,,1,2,1,,1,,2,1,,1,L4OK,,0,,,,,,,,,,,0"
    ",0,,,,,1,,,0,0,0,0,,,,Layer4 check passed,,2,3,4,,,,127.0.0.1:47811,,tcp,,,,,,,,0,1,0,,,"
    "0,,0,0,0,0,0,0,0,0,1,10,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "ws,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,20,1,0,1,1,2,2,,1,2,2,,0,,2,0,,0,L4CON,,0,,,,,,,,,"
    ",,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,3,0,,,,127.0.0."
    "1:47813,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,20,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "ws,s3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,30,1,0,,,2,,,1,2,3,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,"
    ",,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:47811,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,30,,,"
    ",-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "ws,s4,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,40,1,0,0,0,1,0,,1,2,4,,0,,2,0,,0,L4OK,,0,,,,,,,,,"
    ",,0,0,,,,,-1,,,0,0,0,0,,,,Layer4 check passed,,2,3,4,,,,127.0.0.1:47811,,tcp,,,,,,,,0,0,"
    "0,,,0,,0,0,0,0,0,0,0,0,1,40,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "ws,s5,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,7,1,0,,,2,,,1,2,5,,0,,2,0,,0,,,,,,,,,,,,,,0,0,"
    ",,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:47811,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,7,,"
    ",,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "ws,BACKEND,0,0,1,1,999,1,0,0,0,0,,0,0,0,0,UP,17,2,0,,0,2,0,,1,2,0,,1,,1,1,,1,,,,,,,,,,,,"
    ",,0,0,0,0,0,0,1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,1,0,,,,,0,0,0,0,0,,,,,17,0"
    ",0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "fe,FRONTEND,,,1,1,9984,1,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,3,0,,,,0,1,0,1,,,,,,,,,,,0,0,0,,,0"
    ",0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,1,1,1,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "\n";

/* Lines captured from the same HAProxy after further commands:
 * "set server ws/s3 state ready" on the `disabled` s3 leaves CMAINT (0x04) set
 * while the server is RUNNING; "state maint" on s1 gives admin 1, op 0;
 * "state drain" on the failing s2 gives admin 8, op 0 (HAProxy shows it DOWN). */
static const char state_later[] =
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iw"
    "eight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_"
    "check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord s"
    "rv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
    "2 ws 1 s1 127.0.0.1 0 1 10 10 1 6 3 0 14 0 0 0 - 47811 - 0 0 - - 0\n"
    "2 ws 2 s2 127.0.0.1 0 8 20 20 1 8 2 0 6 0 0 0 - 47813 - 0 0 - - 0\n"
    "2 ws 3 s3 127.0.0.1 2 4 30 30 1 1 0 0 8 0 0 0 - 47811 - 0 0 - - 0\n";

static const char hdr_state[] =
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight\n";

static int parse_state(const char *text, struct hapi_table *t)
{
    char err[256] = "";
    int rc = hapi_parse_servers_state(text, strlen(text), t, err, sizeof(err));
    if (rc < 0 && getenv("VERBOSE") != NULL) {
        fprintf(stderr, "  (expected) %s\n", err);
    }
    return rc;
}

static void test_map_state(void)
{
    /* RUNNING/STARTING with no flags are in service */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_RUNNING, 0), MODEL_READY);
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_STARTING, 0), MODEL_READY);
    /* soft-stopping (e.g. disable-on-404) takes no new sessions: drain */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_STOPPING, 0), MODEL_DRAIN);
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_STOPPED, 0), MODEL_DOWN);
    /* every maintenance flag wins over everything */
    static const unsigned maint[] = {HAPI_ADMF_FMAINT, HAPI_ADMF_IMAINT, HAPI_ADMF_RMAINT,
                                     HAPI_ADMF_FMAINT | HAPI_ADMF_CMAINT,
                                     HAPI_ADMF_IMAINT | HAPI_ADMF_FDRAIN};
    for (size_t i = 0; i < sizeof(maint) / sizeof(maint[0]); i++) {
        for (unsigned op = 0; op <= HAPI_OP_STOPPING; op++) {
            CHECK_EQ_INT(hapi_parse_map_state(op, maint[i]), MODEL_MAINT);
        }
    }
    /* drain flags on a live server */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_RUNNING, HAPI_ADMF_FDRAIN), MODEL_DRAIN);
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_RUNNING, HAPI_ADMF_IDRAIN), MODEL_DRAIN);
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_STARTING, HAPI_ADMF_FDRAIN), MODEL_DRAIN);
    /* a drained server failing its checks is down (HAProxy shows DOWN too) */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_STOPPED, HAPI_ADMF_FDRAIN), MODEL_DOWN);
    /* CMAINT alone: a `disabled` server that was set ready again (captured) */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_RUNNING, HAPI_ADMF_CMAINT), MODEL_READY);
    /* HMAINT: FQDN changed from the CLI, not a maintenance state */
    CHECK_EQ_INT(hapi_parse_map_state(HAPI_OP_RUNNING, HAPI_ADMF_HMAINT), MODEL_READY);
}

static void test_split(void)
{
    const char *r, *rest;
    size_t rl, restl;
    /* a batch "show servers state;show stat" is the two replies back to back */
    size_t l1 = strlen(state_26), l2 = strlen(stat_26);
    char *batch = malloc(l1 + l2);
    memcpy(batch, state_26, l1);
    memcpy(batch + l1, stat_26, l2);
    CHECK(hapi_parse_split_reply(batch, l1 + l2, &r, &rl, &rest, &restl) == 0);
    CHECK(r == batch && rl == l1 - 1 && rest == batch + l1 && restl == l2);
    const char *r2, *rest2;
    size_t rl2, restl2;
    CHECK(hapi_parse_split_reply(rest, restl, &r2, &rl2, &rest2, &restl2) == 0);
    CHECK(rl2 == l2 - 1 && restl2 == 0);
    /* every cut before the first reply's empty line is "truncated" */
    for (size_t cut = 0; cut < l1; cut++) {
        CHECK(hapi_parse_split_reply(batch, cut, &r, &rl, &rest, &restl) == -1);
    }
    free(batch);

    /* replies captured from "set server": success is a lone empty line */
    CHECK(hapi_parse_split_reply("\n", 1, &r, &rl, &rest, &restl) == 0 && rl == 0 && restl == 0);
    CHECK(hapi_parse_split_reply("No such server.\n\n", 17, &r, &rl, &rest, &restl) == 0);
    CHECK(rl == 16 && memcmp(r, "No such server.\n", 16) == 0 && restl == 0);
    /* "set server ws/s4 state ready;set server ws/x state ready" (captured) */
    const char *two = "\nNo such server.\n\n";
    CHECK(hapi_parse_split_reply(two, strlen(two), &r, &rl, &rest, &restl) == 0 && rl == 0);
    CHECK(hapi_parse_split_reply(rest, restl, &r, &rl, &rest, &restl) == 0 && rl == 16);
    CHECK(hapi_parse_split_reply("", 0, &r, &rl, &rest, &restl) == -1);
    CHECK(hapi_parse_split_reply("No such server.\n", 16, &r, &rl, &rest, &restl) == -1);
}

static void test_state_captured(void)
{
    struct hapi_table t = {0};
    CHECK(parse_state(state_26, &t) == 0);
    CHECK_EQ_INT(t.n, 5);
    CHECK_EQ_INT(t.skipped, 0);
    if (t.n == 5) {
        static const char *const names[] = {"s1", "s2", "s3", "s4", "s5"};
        static const uint32_t weights[] = {10, 20, 30, 40, 7}; /* s5: uweight, not iweight 50 */
        static const enum model_state states[] = {MODEL_READY, MODEL_DOWN, MODEL_MAINT, MODEL_DRAIN,
                                                MODEL_READY};
        for (size_t i = 0; i < 5; i++) {
            CHECK(strcmp(t.rows[i].backend, "ws") == 0);
            CHECK(strcmp(t.rows[i].srv.name, names[i]) == 0);
            CHECK_EQ_INT(t.rows[i].srv.weight, weights[i]);
            CHECK_EQ_INT(t.rows[i].srv.state, states[i]);
            CHECK_EQ_INT(t.rows[i].srv.scur, 0);
        }
    }
    hapi_parse_table_release(&t);

    CHECK(parse_state(state_later, &t) == 0);
    CHECK_EQ_INT(t.n, 3);
    if (t.n == 3) {
        CHECK_EQ_INT(t.rows[0].srv.state, MODEL_MAINT); /* state maint from the CLI */
        CHECK_EQ_INT(t.rows[1].srv.state, MODEL_DOWN);  /* drained but failing checks */
        CHECK_EQ_INT(t.rows[2].srv.state, MODEL_READY); /* disabled, then set ready */
    }
    hapi_parse_table_release(&t);
}

static void test_state_truncated(void)
{
    /* the full parse, to compare every prefix against */
    struct hapi_table full = {0};
    CHECK(parse_state(state_26, &full) == 0);
    size_t len = strlen(state_26);
    size_t ok_cuts = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* a heap copy of exactly `cut` bytes, so ASan catches any over-read */
        char *p = malloc(cut ? cut : 1);
        memcpy(p, state_26, cut);
        struct hapi_table t = {0};
        char err[256];
        int rc = hapi_parse_servers_state(p, cut, &t, err, sizeof(err));
        if (rc == 0) {
            /* only a cut at the end of a complete line may parse, and it
             * yields exactly the rows before the cut */
            ok_cuts++;
            CHECK(cut > 0 && state_26[cut - 1] == '\n');
            CHECK(t.n <= full.n);
            for (size_t i = 0; i < t.n && i < full.n; i++) {
                CHECK(memcmp(&t.rows[i], &full.rows[i], sizeof(t.rows[i])) == 0);
            }
        } else {
            CHECK_EQ_INT(t.n, 0);
        }
        hapi_parse_table_release(&t);
        free(p);
    }
    /* after the header, after each of the 5 data lines (the 6th "" is not a cut) */
    CHECK_EQ_INT(ok_cuts, 6);
    hapi_parse_table_release(&full);
}

static void test_state_malformed(void)
{
    struct hapi_table t = {0};
    char buf[1024];
    /* not format version 1, or an error message instead of the dump (captured) */
    CHECK(parse_state("2\n# be_id be_name\n", &t) == -1);
    CHECK(parse_state("Can't find backend.\n", &t) == -1);
    CHECK(parse_state("Permission denied\n", &t) == -1);
    CHECK(parse_state("", &t) == -1);
    CHECK(parse_state("1\n", &t) == -1);
    CHECK(parse_state("1\nbe_id be_name\n", &t) == -1); /* header without '#' */
    /* a header lacking a needed column */
    CHECK(parse_state("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
                      "srv_admin_state srv_iweight\n",
                      &t) == -1);
    /* columns are found by name, not position */
    CHECK(parse_state("1\n# srv_uweight srv_name srv_admin_state be_name srv_op_state\n"
                      "12 a1 8 app 2\n",
                      &t) == 0);
    CHECK(t.n == 1 && t.rows[0].srv.weight == 12 && t.rows[0].srv.state == MODEL_DRAIN &&
          strcmp(t.rows[0].backend, "app") == 0 && strcmp(t.rows[0].srv.name, "a1") == 0);
    hapi_parse_table_release(&t);
    /* empty dump: no backends at all */
    CHECK(parse_state("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
                      "srv_admin_state srv_uweight srv_iweight\n",
                      &t) == 0 && t.n == 0);

    /* one bad line rejects the whole reply and leaves t as it was */
    static const char *const bad[] = {
        "2 ws 1 s1 127.0.0.1 2 0\n",          /* too few fields */
        "2 ws 1 s1 127.0.0.1 x 0 10 10\n",    /* op state not a number */
        "2 ws 1 s1 127.0.0.1 4 0 10 10\n",    /* op state out of range */
        "2 ws 1 s1 127.0.0.1 2 -1 10 10\n",   /* admin state negative */
        "2 ws 1 s1 127.0.0.1 2 0 1x 10\n",    /* weight garbage */
        "2 ws 1 s1 127.0.0.1 2 0 99999999999 10\n", /* weight overflow */
        "2 ws 1 s1 127.0.0.1 2 0 10 10",      /* no newline: truncated */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "1\n%s2 ws 9 ok 127.0.0.1 2 0 1 1\n%s", hdr_state, bad[i]);
        CHECK(parse_state(buf, &t) == -1);
        CHECK_EQ_INT(t.n, 0);
    }
    /* rows already in t survive a rejected reply */
    snprintf(buf, sizeof(buf), "1\n%s2 ws 9 ok 127.0.0.1 2 0 1 1\n", hdr_state);
    CHECK(parse_state(buf, &t) == 0 && t.n == 1);
    snprintf(buf, sizeof(buf), "1\n%s2 ws 9 ok2 127.0.0.1 2 0 1 1\n%s", hdr_state, bad[0]);
    CHECK(parse_state(buf, &t) == -1 && t.n == 1);
    hapi_parse_table_release(&t);

    /* names that do not fit SRV_NAME_MAX are skipped, not fatal */
    char longname[SRV_NAME_MAX + 1];
    memset(longname, 'n', SRV_NAME_MAX);
    longname[SRV_NAME_MAX] = '\0';
    snprintf(buf, sizeof(buf), "1\n%s2 ws 1 %s 127.0.0.1 2 0 1 1\n2 %s 1 s 127.0.0.1 2 0 1 1\n"
             "2 ws 2 fine 127.0.0.1 2 0 1 1\n",
             hdr_state, longname, longname);
    CHECK(parse_state(buf, &t) == 0);
    CHECK_EQ_INT(t.n, 1);
    CHECK_EQ_INT(t.skipped, 2);
    longname[SRV_NAME_MAX - 1] = '\0'; /* 63 bytes: fits */
    snprintf(buf, sizeof(buf), "1\n%s2 ws 1 %s 127.0.0.1 2 0 1 1\n", hdr_state, longname);
    CHECK(parse_state(buf, &t) == 0);
    CHECK(t.n == 2 && strcmp(t.rows[1].srv.name, longname) == 0);
    hapi_parse_table_release(&t);

    /* a NUL or control byte in a name (found by fuzz_hapi: "\0ws" was kept as backend
     * "") is skipped like a name that does not fit, never cut or kept raw */
    static const char ctl[] = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
                              "srv_admin_state srv_uweight\n2 \0ws 1 s1 127.0.0.1 2 0 1\n"
                              "2 ws 2 s\x1b[2J 127.0.0.1 2 0 1\n2 ws 3 s\x7f 127.0.0.1 2 0 1\n"
                              "2 ws 4 ok 127.0.0.1 2 0 1\n";
    char err[256];
    CHECK(hapi_parse_servers_state(ctl, sizeof(ctl) - 1, &t, err, sizeof(err)) == 0);
    CHECK(t.n == 1 && strcmp(t.rows[0].backend, "ws") == 0 &&
          strcmp(t.rows[0].srv.name, "ok") == 0);
    CHECK_EQ_INT(t.skipped, 3);
    hapi_parse_table_release(&t);
}

static int parse_stat(const char *text, struct hapi_table *t)
{
    char err[256] = "";
    int rc = hapi_parse_stat(text, strlen(text), t, err, sizeof(err));
    if (rc < 0 && getenv("VERBOSE") != NULL) {
        fprintf(stderr, "  (expected) %s\n", err);
    }
    return rc;
}

static void test_stat_captured(void)
{
    struct hapi_table t = {0};
    CHECK(parse_state(state_26, &t) == 0);
    CHECK(parse_stat(stat_26, &t) == 0);
    CHECK_EQ_INT(t.n, 5);
    if (t.n == 5) {
        CHECK_EQ_INT(t.rows[0].srv.scur, 1); /* the one open session, on s1 */
        for (size_t i = 1; i < 5; i++) {
            CHECK_EQ_INT(t.rows[i].srv.scur, 0);
        }
    }
    /* every cut: no crash, no over-read; a cut inside a line is an error */
    size_t len = strlen(stat_26);
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, stat_26, cut);
        char err[256];
        int rc = hapi_parse_stat(p, cut, &t, err, sizeof(err));
        CHECK(rc == -1 || (cut > 0 && stat_26[cut - 1] == '\n'));
        free(p);
    }
    hapi_parse_table_release(&t);
}

static void test_stat_malformed(void)
{
    struct hapi_table t = {0};
    CHECK(parse_state("1\n# be_name srv_name srv_op_state srv_admin_state srv_uweight\n"
                      "app a 2 0 1\napp b 2 0 1\nother a 2 0 1\n",
                      &t) == 0);
    CHECK_EQ_INT(t.n, 3);
    /* columns by name; quoted CSV fields with commas and "" escapes before them */
    CHECK(parse_stat("# \"x,y\",svname,check_desc,pxname,scur\n"
                     "\"q,\"\"r\",b,\"Layer7, wrong \"\"status\"\"\",app,7\n"
                     "z,a,\"\",other,3\n"
                     "z,BACKEND,,app,99\n"
                     "z,FRONTEND,,app,99\n"
                     "z,nosuch,,app,5\n",
                     &t) == 0);
    CHECK_EQ_INT(t.rows[0].srv.scur, 0);
    CHECK_EQ_INT(t.rows[1].srv.scur, 7);
    CHECK_EQ_INT(t.rows[2].srv.scur, 3);
    /* missing header or column */
    CHECK(parse_stat("", &t) == -1);
    CHECK(parse_stat("app,a,1\n", &t) == -1);
    CHECK(parse_stat("# pxname,svname,qcur\napp,a,1\n", &t) == -1);
    CHECK(parse_stat("Unknown command.\n", &t) == -1);
    /* bad rows */
    CHECK(parse_stat("# pxname,svname,qcur,qmax,scur\napp,a,0,0\n", &t) == -1);
    CHECK(parse_stat("# pxname,svname,qcur,qmax,scur\napp,a,0,0,x\n", &t) == -1);
    CHECK(parse_stat("# pxname,svname,qcur,qmax,scur\napp,a,0,0,\n", &t) == -1);
    CHECK(parse_stat("# pxname,svname,qcur,qmax,scur\napp,a,0,0,12", &t) == -1);
    /* an unknown row's bad scur does not matter: it is not looked at */
    CHECK(parse_stat("# pxname,svname,qcur,qmax,scur\nfe,FRONTEND,,,x\n", &t) == 0);
    /* with an empty table every row is ignored */
    hapi_parse_table_release(&t);
    CHECK(parse_stat(stat_26, &t) == 0);
}

/* Captured from a real HAProxy 2.6.12 (same header as stat_26): frontend fe and
 * backend web in mode http, backend agents in mode tcp (what the SPOE agents'
 * own backend is). */
static const char state_modes[] =
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iw"
    "eight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_"
    "check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord s"
    "rv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
    "3 web 1 w1 127.0.0.1 2 0 1 1 0 1 0 2 0 0 0 0 - 47312 - 0 0 - - 0\n"
    "4 agents 1 a1 127.0.0.1 2 0 1 1 0 1 0 2 0 0 0 0 - 47313 - 0 0 - - 0\n";
static const char stat_modes_rows[] =
    "fe,FRONTEND,,,0,0,9986,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0"
    ",0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0"
    ",0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "web,w1,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,0,,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,"
    ",,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:47312,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,"
    "0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "web,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,0,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,"
    "0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0"
    ",0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "agents,a1,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,0,,,1,4,1,,0,,2,0,,0,,,,,,,,,,,,,,0"
    ",0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:47313,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,"
    "1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "agents,BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,0,0,,1,4,0,,0,,1,0,,0,,,,,,,,,,,,"
    ",,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0"
    ",0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n";

/* The proxy mode: a tcp backend is recorded as not http (fleet keeps no counts
 * for it), an http one as http, and a reply without the column keeps both. */
static void test_stat_modes(void)
{
    const char *nl = strchr(stat_26, '\n');
    size_t hlen = (size_t)(nl - stat_26) + 1;
    char *stat = malloc(hlen + sizeof(stat_modes_rows));
    CHECK(stat != NULL);
    if (stat == NULL) {
        return;
    }
    memcpy(stat, stat_26, hlen);
    memcpy(stat + hlen, stat_modes_rows, sizeof(stat_modes_rows));
    struct hapi_table t = {0};
    CHECK(parse_state(state_modes, &t) == 0);
    CHECK_EQ_INT(t.n, 2);
    CHECK(t.n == 2 && t.rows[0].http && t.rows[1].http); /* unknown until show stat */
    CHECK(parse_stat(stat, &t) == 0);
    CHECK(t.n == 2 && t.rows[0].http && !t.rows[1].http);
    servers_clear();
    CHECK(hapi_parse_install(&t) == 0);
    const struct srv_backend *web = servers_find("web", 3), *agents = servers_find("agents", 6);
    CHECK(web != NULL && web->http && web->nservers == 1);
    CHECK(agents != NULL && !agents->http && agents->nservers == 1);
    CHECK(web != NULL && web->servers[0].maxconn == 0); /* slim empty: no maxconn */
    hapi_parse_table_release(&t);

    /* the server line's maxconn (slim) is read: the fleet-wide cap by default */
    const char *row = strstr(stat, "web,w1,0,0,0,0,,");
    CHECK(row != NULL);
    if (row != NULL) {
        size_t at = (size_t)(row - stat) + strlen("web,w1,0,0,0,0,");
        char *with = malloc(strlen(stat) + 8);
        CHECK(with != NULL);
        if (with != NULL) {
            memcpy(with, stat, at);
            strcpy(with + at, "250");
            strcat(with, stat + at);
            CHECK(parse_state(state_modes, &t) == 0);
            CHECK(parse_stat(with, &t) == 0);
            CHECK(t.n == 2 && t.rows[0].srv.maxconn == 250 && t.rows[1].srv.maxconn == 0);
            hapi_parse_table_release(&t);
            free(with);
        }
    }
    free(stat);

    /* the captured ws backend of stat_26 is mode tcp too */
    CHECK(parse_state(state_26, &t) == 0);
    CHECK(parse_stat(stat_26, &t) == 0);
    for (size_t i = 0; i < t.n; i++) {
        CHECK(!t.rows[i].http);
    }
    hapi_parse_table_release(&t);

    /* no mode column (an older HAProxy), an empty field or one missing from a
     * short row: unknown, which keeps the backend; any other mode is not http */
    CHECK(parse_state("1\n# be_name srv_name srv_op_state srv_admin_state srv_uweight\n"
                      "a s 2 0 1\nb s 2 0 1\nc s 2 0 1\nd s 2 0 1\ne s 2 0 1\n",
                      &t) == 0);
    CHECK(parse_stat("# pxname,svname,scur\na,s,0\nb,s,0\n", &t) == 0);
    CHECK(parse_stat("# pxname,svname,scur,mode\nc,s,0,\nd,s,0\ne,s,0,health\n", &t) == 0);
    CHECK(t.n == 5 && t.rows[0].http && t.rows[1].http && t.rows[2].http && t.rows[3].http &&
          !t.rows[4].http);
    /* a backend with one row not http is not http as a whole */
    CHECK(parse_stat("# pxname,svname,scur,mode\na,s,0,http\nb,s,0,tcp\n", &t) == 0);
    CHECK(parse_state("1\n# be_name srv_name srv_op_state srv_admin_state srv_uweight\n"
                      "b s2 2 0 1\n",
                      &t) == 0);
    CHECK(hapi_parse_install(&t) == 0);
    const struct srv_backend *a = servers_find("a", 1), *b = servers_find("b", 1);
    CHECK(a != NULL && a->http);
    CHECK(b != NULL && !b->http && b->nservers == 2);
    hapi_parse_table_release(&t);
    servers_clear();
}

static void test_install(void)
{
    servers_clear();
    struct hapi_table t = {0};
    CHECK(parse_state(state_26, &t) == 0);
    CHECK(parse_stat(stat_26, &t) == 0);
    /* a second backend after the first, and ws again (grouping must not rely
     * on contiguity) */
    CHECK(parse_state("1\n# be_name srv_name srv_op_state srv_admin_state srv_uweight\n"
                      "api a1 2 0 5\nws s6 2 0 60\napi a2 0 0 5\n",
                      &t) == 0);
    CHECK(hapi_parse_install(&t) == 0);
    CHECK_EQ_INT(servers_count(), 2);
    const struct srv_backend *ws = servers_find("ws", 2);
    CHECK(ws != NULL);
    if (ws != NULL) {
        CHECK_EQ_INT(ws->nservers, 6);
        const struct srv *s1 = servers_find_server(ws, "s1", 2);
        const struct srv *s4 = servers_find_server(ws, "s4", 2);
        const struct srv *s6 = servers_find_server(ws, "s6", 2);
        CHECK(s1 != NULL && s1->scur == 1 && s1->state == MODEL_READY && s1->weight == 10);
        CHECK(s4 != NULL && s4->state == MODEL_DRAIN && s4->weight == 40);
        CHECK(s6 != NULL && s6->weight == 60);
    }
    const struct srv_backend *api = servers_find("api", 3);
    CHECK(api != NULL && api->nservers == 2);
    hapi_parse_table_release(&t);

    /* next refresh: api vanished from HAProxy -> dropped from the view */
    CHECK(parse_state(state_26, &t) == 0);
    CHECK(hapi_parse_install(&t) == 0);
    CHECK_EQ_INT(servers_count(), 1);
    CHECK(servers_find("api", 3) == NULL);
    ws = servers_find("ws", 2);
    CHECK(ws != NULL && ws->nservers == 5);
    hapi_parse_table_release(&t);

    /* an empty HAProxy empties the view */
    CHECK(hapi_parse_install(&t) == 0);
    CHECK_EQ_INT(servers_count(), 0);
    servers_clear();
}

/* "show info": the Pid line tells which process answered (fleet.c counts an
 * older process's tunnels after a reload). Head of a real 2.6.12 reply. */
static void test_info_pid(void)
{
    static const char info_26[] = "Name: HAProxy\n"
                                  "Version: 2.6.12-1+deb12u4\n"
                                  "Nbthread: 2\n"
                                  "Nbproc: 1\n"
                                  "Process_num: 1\n"
                                  "Pid: 10695\n"
                                  "Uptime: 0d 0h00m01s\n";
    CHECK(hapi_parse_info_pid(info_26, sizeof(info_26) - 1) == 10695);
    CHECK(hapi_parse_info_pid("Pid: 7", 6) == 7); /* unterminated last line */
    CHECK(hapi_parse_info_pid("", 0) == 0);
    CHECK(hapi_parse_info_pid("Name: HAProxy\n", 14) == 0);     /* absent */
    CHECK(hapi_parse_info_pid("Pid: \n", 6) == 0);              /* empty */
    CHECK(hapi_parse_info_pid("Pid: 12x\n", 9) == 0);           /* not a number */
    CHECK(hapi_parse_info_pid("Pid: -3\n", 8) == 0);            /* negative */
    CHECK(hapi_parse_info_pid("Pid: 123456789012\n", 18) == 0); /* too long */
    CHECK(hapi_parse_info_pid("XPid: 5\nPid: 6\n", 15) == 6);   /* whole field name */
    /* every truncation of the real reply: never past the buffer, the pid only
     * once its line is complete or the buffer ends inside its digits */
    for (size_t n = 0; n < sizeof(info_26) - 1; n++) {
        char *copy = malloc(n ? n : 1);
        CHECK(copy != NULL);
        if (copy == NULL) {
            return;
        }
        memcpy(copy, info_26, n);
        long pid = hapi_parse_info_pid(copy, n);
        CHECK(pid == 0 || pid == 1 || pid == 10 || pid == 106 || pid == 1069 || pid == 10695);
        free(copy);
    }
}

int main(void)
{
    test_map_state();
    test_split();
    test_state_captured();
    test_state_truncated();
    test_state_malformed();
    test_stat_captured();
    test_stat_malformed();
    test_stat_modes();
    test_install();
    test_info_pid();
    return check_summary("test_hapi");
}
