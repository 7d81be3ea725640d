/* test_conn_engine.c - the SPOP engine (conn.c) end to end on a socketpair (no
 * network), with requests and ACK assembly behind it: empty ACKs get the noop
 * action, actions are encoded exactly, an async handler does not hold up later
 * frames, an action that would overflow the negotiated frame is dropped, a
 * request whose connection died is orphaned, then freed and counted on
 * req_done, and a graceful stop lets the request in flight finish first.
 * (test_req.c drives req.c alone, without the engine.) */
#include <ev.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "conn.h"
#include "req.h"
#include "spop.h"
#include "stats.h"

#include "req_handlers.h"

static struct ev_loop *loop;

/* Answers txn.nargs = its arg count, and txn.last = its last arg's value. */
static void h_count(struct req *r, const struct spop_msg *m, void *arg)
{
    (void)arg;
    req_set_var_int(r, "nargs", m->nargs);
    if (m->nargs > 0) {
        req_set_var(r, SPOP_SCOPE_TXN, "last", &m->args[m->nargs - 1].val);
    }
    req_done(r);
}

static int idle_calls;
static void on_idle(void)
{
    idle_calls++;
}

static uint8_t inbuf[1 << 16];
static size_t inlen;

/* Run the loop a little and collect what the engine wrote. */
static void pump(int fd)
{
    for (int i = 0; i < 5; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t n;
        while ((n = recv(fd, inbuf + inlen, sizeof(inbuf) - inlen, MSG_DONTWAIT)) > 0) {
            inlen += (size_t)n;
        }
        usleep(1000);
    }
}

/* Pop the next complete frame into f (payload copied into keep). */
static bool next_frame(struct spop_frame *f, uint8_t *keep)
{
    enum spop_status st;
    ssize_t n = spop_frame_decode(inbuf, inlen, 1u << 20, f, &st);
    if (n <= 0) {
        return false;
    }
    memcpy(keep, f->payload, f->payload_len);
    f->payload = keep;
    memmove(inbuf, inbuf + n, inlen - (size_t)n);
    inlen -= (size_t)n;
    return true;
}

static void send_hello(int fd, uint32_t mfs)
{
    uint8_t b[512];
    struct spop_writer w;
    spop_w_init(&w, b, sizeof(b), 0);
    spop_w_frame_begin(&w, SPOP_FRAME_HAPROXY_HELLO, SPOP_FL_FIN, 0, 0);
    struct spop_data v = spop_d_str("2.0", 3), caps = spop_d_str("pipelining", 10);
    struct spop_data m = spop_d_u32(mfs);
    spop_w_kv(&w, "supported-versions", &v);
    spop_w_kv(&w, "max-frame-size", &m);
    spop_w_kv(&w, "capabilities", &caps);
    CHECK(spop_w_frame_end(&w) == 0);
    CHECK(send(fd, b, w.len, 0) == (ssize_t)w.len);
}

/* A NOTIFY with messages named in `names` (NULL-terminated), no args. */
static void send_notify(int fd, uint64_t sid, uint64_t fid, const char *const *names)
{
    uint8_t b[1024];
    struct spop_writer w;
    spop_w_init(&w, b, sizeof(b), 0);
    spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, sid, fid);
    for (; *names != NULL; names++) {
        spop_w_msg(&w, *names, strlen(*names), 0);
    }
    CHECK(spop_w_frame_end(&w) == 0);
    CHECK(send(fd, b, w.len, 0) == (ssize_t)w.len);
}

static int open_conn(int *peer, uint32_t mfs)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
        return -1;
    }
    CHECK(conn_new(loop, sv[0], "unit") != NULL);
    *peer = sv[1];
    inlen = 0;
    send_hello(sv[1], mfs);
    pump(sv[1]);
    struct spop_frame f;
    static uint8_t keep[1 << 16];
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.type, SPOP_FRAME_AGENT_HELLO);
    return 0;
}

int main(void)
{
    loop = ev_default_loop(0);
    struct cfg cf;
    memset(&cf, 0, sizeof(cf));
    cf.max_frame_size = 16380;
    cf.idle_timeout_ms = 0;
    conn_configure(&cf);
    CHECK(req_register("async", h_async, NULL) == 0);
    CHECK(req_register("set", h_set, NULL) == 0);
    CHECK(req_register("fill", h_fill, NULL) == 0);
    CHECK(req_register("count", h_count, NULL) == 0);

    int fd;
    CHECK(open_conn(&fd, 16380) == 0);
    struct spop_frame f;
    static uint8_t keep[1 << 16];

    /* empty NOTIFY -> one UNSET-VAR txn.noop */
    static const char *const none[] = {NULL};
    send_notify(fd, 1, 1, none);
    pump(fd);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.type, SPOP_FRAME_ACK);
    CHECK_EQ_INT(f.flags, SPOP_FL_FIN);
    struct spop_reader rd = {f.payload, f.payload + f.payload_len};
    expect_action(&rd, SPOP_ACT_UNSET_VAR, SPOP_SCOPE_TXN, "noop", SPOP_T_NULL);
    CHECK(rd.p == rd.end);

    /* four actions of each kind, in order */
    static const char *const set[] = {"set", NULL};
    send_notify(fd, 2, 2, set);
    pump(fd);
    CHECK(next_frame(&f, keep));
    rd = (struct spop_reader){f.payload, f.payload + f.payload_len};
    expect_h_set_actions(&rd);

    /* async first, sync second: the second is ACKed first */
    static const char *const as[] = {"async", NULL};
    static const char *const unknown[] = {"nobody-handles-this", NULL};
    uint64_t unknown_before = stats.msg_unknown;
    send_notify(fd, 3, 10, as);
    send_notify(fd, 3, 11, unknown);
    pump(fd);
    CHECK_EQ_INT(stats.msg_unknown, unknown_before + 1);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.frame_id, 11);
    CHECK(!next_frame(&f, keep));
    CHECK_EQ_INT(nheld, 1);
    req_set_var_int(held[0], "late", 7);
    CHECK(!req_orphaned(held[0]));
    CHECK(strstr(req_ident(held[0]), "unit") != NULL);
    req_done(held[0]);
    nheld = 0;
    pump(fd);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.stream_id, 3);
    CHECK_EQ_INT(f.frame_id, 10);
    rd = (struct spop_reader){f.payload, f.payload + f.payload_len};
    expect_action(&rd, SPOP_ACT_SET_VAR, SPOP_SCOPE_TXN, "late", SPOP_T_INT64);

    /* orphaning: the connection dies while a request is held */
    send_notify(fd, 4, 20, as);
    pump(fd);
    CHECK_EQ_INT(nheld, 1);
    close(fd);
    pump(-1);
    CHECK_EQ_INT(conn_count(), 0);
    CHECK(req_orphaned(held[0]));
    uint64_t dropped = stats.ack_dropped;
    req_set_var_int(held[0], "ignored", 1); /* harmless on an orphan */
    req_done(held[0]);
    nheld = 0;
    CHECK_EQ_INT(stats.ack_dropped, dropped + 1);

    /* overflow: max-frame 256 leaves 256 - 7 = 249 bytes of actions; 40
     * actions of 9 bytes ("vNN" int64 small) want 360: 27 fit, 13 dropped */
    CHECK(open_conn(&fd, 256) == 0);
    uint64_t adrop = stats.action_dropped;
    static const char *const fill[] = {"fill", NULL};
    send_notify(fd, 5, 30, fill);
    pump(fd);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.frame_id, 30);
    CHECK(f.payload_len <= 256 - 7);
    CHECK_EQ_INT(stats.action_dropped, adrop + 13);
    rd = (struct spop_reader){f.payload, f.payload + f.payload_len};
    CHECK_EQ_INT(count_actions(&rd), 27);
    CHECK(rd.p == rd.end);

    close(fd);
    pump(-1);

    /* a frame with more messages and args than the engine's static decode
     * arrays hold (16, 128): 30 unknown messages, then one of 200 args; the
     * arrays grow, every message is seen, and a small frame after still works */
    CHECK(open_conn(&fd, 16380) == 0);
    {
        static uint8_t b[8192];
        struct spop_writer w;
        spop_w_init(&w, b, sizeof(b), 0);
        spop_w_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FL_FIN, 7, 50);
        for (int i = 0; i < 30; i++) {
            spop_w_msg(&w, "nobody", 6, 0);
        }
        spop_w_msg(&w, "count", 5, 200);
        for (int i = 0; i < 200; i++) {
            struct spop_data d = spop_d_i64(i);
            spop_w_kv(&w, "k", &d);
        }
        CHECK(spop_w_frame_end(&w) == 0);
        uint64_t unk = stats.msg_unknown;
        CHECK(send(fd, b, w.len, 0) == (ssize_t)w.len);
        pump(fd);
        CHECK_EQ_INT(stats.msg_unknown, unk + 30);
        CHECK(next_frame(&f, keep));
        CHECK_EQ_INT(f.type, SPOP_FRAME_ACK);
        CHECK_EQ_INT(f.frame_id, 50);
        rd = (struct spop_reader){f.payload, f.payload + f.payload_len};
        uint8_t t, sc;
        struct spop_str nm;
        struct spop_data v;
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &v), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "nargs") && v.type == SPOP_T_INT64 && v.u.i64 == 200);
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &v), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "last") && v.type == SPOP_T_INT64 && v.u.i64 == 199);
        CHECK(rd.p == rd.end);
        static const char *const count[] = {"count", NULL};
        send_notify(fd, 7, 51, count);
        pump(fd);
        CHECK(next_frame(&f, keep));
        CHECK_EQ_INT(f.frame_id, 51);
        rd = (struct spop_reader){f.payload, f.payload + f.payload_len};
        CHECK_EQ_INT(spop_next_action(&rd, &t, &sc, &nm, &v), SPOP_NEXT_ITEM);
        CHECK(spop_str_eq(nm, "nargs") && v.u.i64 == 0);
    }
    close(fd);
    pump(-1);

    /* graceful stop: the request in flight finishes and is ACKed first, then
     * AGENT-DISCONNECT(0); the callback runs when the last connection is gone */
    CHECK(open_conn(&fd, 16380) == 0);
    send_notify(fd, 6, 40, as);
    pump(fd);
    CHECK_EQ_INT(nheld, 1);
    conn_shutdown_all(on_idle);
    pump(fd);
    CHECK(!next_frame(&f, keep));
    CHECK_EQ_INT(idle_calls, 0);
    req_done(held[0]);
    nheld = 0;
    pump(fd);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.type, SPOP_FRAME_ACK);
    CHECK_EQ_INT(f.frame_id, 40);
    CHECK(next_frame(&f, keep));
    CHECK_EQ_INT(f.type, SPOP_FRAME_AGENT_DISCONNECT);
    struct spop_disconnect d;
    CHECK(spop_disconnect_parse(f.payload, f.payload_len, &d) == 0);
    CHECK(d.has_status && d.status == 0);
    close(fd);
    pump(-1);
    CHECK_EQ_INT(idle_calls, 1);
    CHECK_EQ_INT(conn_count(), 0);

    conn_free_all();
    req_registry_clear();
    ev_loop_destroy(loop);
    return check_summary("test_conn_engine");
}
