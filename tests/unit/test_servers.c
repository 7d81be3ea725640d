/* Unit tests for servers.c: set/replace a backend, lookups by (ptr, len) as SPOP
 * views give them, retain after a refresh, the static list from a config, and
 * rejection of bad input without touching the view. */
#include <string.h>

#include "check.h"
#include "config.h"
#include "servers.h"

static struct srv mk(const char *name, uint32_t weight, enum model_state st, uint32_t scur)
{
    struct srv s;
    memset(&s, 0, sizeof(s));
    strncpy(s.name, name, sizeof(s.name) - 1);
    s.weight = weight;
    s.state = st;
    s.scur = scur;
    return s;
}

static void test_set_and_find(void)
{
    servers_clear();
    CHECK_EQ_INT(servers_count(), 0);
    CHECK(servers_find("ws", 2) == NULL);
    CHECK(servers_at(0) == NULL);

    struct srv list[] = {mk("s1", 10, MODEL_READY, 3), mk("s2", 5, MODEL_DRAIN, 0),
                         mk("s3", 1, MODEL_DOWN, 7)};
    CHECK_EQ_INT(servers_set_backend("ws", list, 3), 0);
    CHECK_EQ_INT(servers_count(), 1);

    /* the name comes from a frame: not NUL-terminated, length explicit */
    const char frame[] = "wsXs2Ys1";
    const struct srv_backend *b = servers_find(frame, 2);
    CHECK(b != NULL);
    CHECK(servers_find(frame, 1) == NULL);
    CHECK(servers_find(frame, 3) == NULL);
    CHECK(servers_find("", 0) == NULL);
    if (b == NULL) {
        return;
    }
    CHECK(strcmp(b->name, "ws") == 0);
    CHECK_EQ_INT(b->nservers, 3);
    const struct srv *s2 = servers_find_server(b, frame + 3, 2);
    CHECK(s2 != NULL && s2 == &b->servers[1]);
    if (s2 != NULL) {
        CHECK_EQ_INT(s2->weight, 5);
        CHECK_EQ_INT(s2->state, MODEL_DRAIN);
    }
    const struct srv *s1 = servers_find_server(b, frame + 6, 2);
    CHECK(s1 != NULL && s1->scur == 3);
    CHECK(servers_find_server(b, "s", 1) == NULL);
    CHECK(servers_find_server(b, "s10", 3) == NULL);
    CHECK(servers_find_server(NULL, "s1", 2) == NULL);
    CHECK(servers_at(0) == b);
    CHECK(servers_at(1) == NULL);

    /* the list was copied: changing the caller's array changes nothing */
    list[0].weight = 99;
    CHECK_EQ_INT(servers_find_server(servers_find("ws", 2), "s1", 2)->weight, 10);

    /* replacing keeps one backend and swaps its servers */
    struct srv list2[] = {mk("s4", 2, MODEL_MAINT, 1)};
    CHECK_EQ_INT(servers_set_backend("ws", list2, 1), 0);
    CHECK_EQ_INT(servers_count(), 1);
    b = servers_find("ws", 2);
    CHECK(b != NULL && b->nservers == 1);
    CHECK(servers_find_server(b, "s1", 2) == NULL);
    CHECK(servers_find_server(b, "s4", 2) != NULL);

    /* an empty list is a valid (empty) backend */
    CHECK_EQ_INT(servers_set_backend("empty", NULL, 0), 0);
    CHECK_EQ_INT(servers_count(), 2);
    b = servers_find("empty", 5);
    CHECK(b != NULL && b->nservers == 0);
    CHECK(servers_find_server(b, "s4", 2) == NULL);
}

static void test_rejects(void)
{
    servers_clear();
    struct srv ok[] = {mk("a", 1, MODEL_READY, 0)};
    CHECK_EQ_INT(servers_set_backend("be", ok, 1), 0);

    /* backend names must fit the fixed field */
    char longname[SRV_NAME_MAX + 1];
    memset(longname, 'x', SRV_NAME_MAX);
    longname[SRV_NAME_MAX] = '\0';
    CHECK_EQ_INT(servers_set_backend(longname, ok, 1), -1);
    longname[SRV_NAME_MAX - 1] = '\0'; /* 63 bytes fit */
    CHECK_EQ_INT(servers_set_backend(longname, ok, 1), 0);
    CHECK(servers_find(longname, SRV_NAME_MAX - 1) != NULL);
    CHECK(servers_find(longname, SRV_NAME_MAX) == NULL);
    CHECK_EQ_INT(servers_set_backend("", ok, 1), -1);

    /* duplicate, empty or unterminated server names, bad states: rejected, view intact */
    struct srv dup[] = {mk("a", 1, MODEL_READY, 0), mk("a", 2, MODEL_READY, 0)};
    CHECK_EQ_INT(servers_set_backend("be", dup, 2), -1);
    struct srv empty[] = {mk("", 1, MODEL_READY, 0)};
    CHECK_EQ_INT(servers_set_backend("be", empty, 1), -1);
    struct srv unterminated = mk("a", 1, MODEL_READY, 0);
    memset(unterminated.name, 'y', sizeof(unterminated.name));
    CHECK_EQ_INT(servers_set_backend("be", &unterminated, 1), -1);
    struct srv badstate = mk("a", 1, MODEL_STATE_COUNT, 0);
    CHECK_EQ_INT(servers_set_backend("be", &badstate, 1), -1);
    const struct srv_backend *b = servers_find("be", 2);
    CHECK(b != NULL && b->nservers == 1 && b->servers[0].weight == 1);
    CHECK_EQ_INT(servers_count(), 2);
}

static void test_retain(void)
{
    servers_clear();
    struct srv one[] = {mk("s", 1, MODEL_READY, 0)};
    CHECK_EQ_INT(servers_set_backend("a", one, 1), 0);
    CHECK_EQ_INT(servers_set_backend("b", one, 1), 0);
    CHECK_EQ_INT(servers_set_backend("c", one, 1), 0);
    const char *const keep[] = {"c", "a", "zz"};
    servers_retain(keep, 3);
    CHECK_EQ_INT(servers_count(), 2);
    CHECK(servers_find("a", 1) != NULL);
    CHECK(servers_find("b", 1) == NULL);
    CHECK(servers_find("c", 1) != NULL);
    /* order of the survivors is kept */
    CHECK(servers_at(0) != NULL && strcmp(servers_at(0)->name, "a") == 0);
    CHECK(servers_at(1) != NULL && strcmp(servers_at(1)->name, "c") == 0);
    servers_retain(NULL, 0);
    CHECK_EQ_INT(servers_count(), 0);
    CHECK(servers_find("a", 1) == NULL);
    /* usable again after everything was dropped */
    CHECK_EQ_INT(servers_set_backend("d", one, 1), 0);
    CHECK_EQ_INT(servers_count(), 1);
}

static void test_static(void)
{
    servers_clear();
    struct srv one[] = {mk("old", 1, MODEL_DOWN, 0)};
    CHECK_EQ_INT(servers_set_backend("stale", one, 1), 0);

    struct cfg c;
    char err[256];
    int rc = cfg_load_string("t.json",
                             "{\"backends\": {\"ws\": {\"servers\": {\"s1\": {\"weight\": 3}, "
                             "\"s2\": {\"weight\": 0}}}, \"api\": {\"servers\": {\"a1\": {}}}}}",
                             &c, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_EQ_INT(servers_load_static(&c), 0);
    cfg_release(&c); /* the view holds copies */
    CHECK_EQ_INT(servers_count(), 2);
    CHECK(servers_find("stale", 5) == NULL); /* the whole view was replaced */
    const struct srv_backend *ws = servers_find("ws", 2);
    CHECK(ws != NULL && ws->nservers == 2);
    if (ws != NULL && ws->nservers == 2) {
        CHECK(strcmp(ws->servers[0].name, "s1") == 0);
        CHECK_EQ_INT(ws->servers[0].weight, 3);
        CHECK_EQ_INT(ws->servers[0].state, MODEL_READY);
        CHECK_EQ_INT(ws->servers[0].scur, 0);
        CHECK_EQ_INT(ws->servers[1].weight, 0);
    }
    const struct srv_backend *api = servers_find("api", 3);
    CHECK(api != NULL && api->nservers == 1 && api->servers[0].weight == 1);

    /* a config with no backends empties the view */
    CHECK_EQ_INT(cfg_defaults(&c), 0);
    CHECK_EQ_INT(servers_load_static(&c), 0);
    cfg_release(&c);
    CHECK_EQ_INT(servers_count(), 0);

    /* a hand-built config with a name too long fails and keeps the old view */
    CHECK_EQ_INT(servers_set_backend("keep", one, 1), 0);
    char longname[SRV_NAME_MAX + 8];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    char ok_name[] = "ok", be_name[] = "be";
    struct cfg_server cs[] = {{ok_name, 1}, {longname, 1}};
    struct cfg_backend cb[] = {{be_name, cs, 2}};
    struct cfg bad;
    memset(&bad, 0, sizeof(bad));
    bad.backends = cb;
    bad.nbackends = 1;
    CHECK_EQ_INT(servers_load_static(&bad), -1);
    CHECK_EQ_INT(servers_count(), 1);
    CHECK(servers_find("keep", 4) != NULL);
}

/* A name fits a view field whole, or not at all: never cut to another server's. */
static void test_copy_name(void)
{
    char dst[SRV_NAME_MAX];
    char name[SRV_NAME_MAX + 1];
    memset(name, 'w', sizeof(name));
    CHECK_EQ_INT(servers_copy_name(dst, "ws1", 3), 0);
    CHECK(strcmp(dst, "ws1") == 0);
    CHECK_EQ_INT(servers_copy_name(dst, "ws12345", 2), 0); /* n bytes, not the C string */
    CHECK(strcmp(dst, "ws") == 0);
    CHECK_EQ_INT(servers_copy_name(dst, name, SRV_NAME_MAX - 1), 0);
    CHECK_EQ_INT((int)strlen(dst), SRV_NAME_MAX - 1);
    strcpy(dst, "kept");
    CHECK_EQ_INT(servers_copy_name(dst, name, SRV_NAME_MAX), -1);
    CHECK(strcmp(dst, "kept") == 0);
}

int main(void)
{
    test_copy_name();
    test_set_and_find();
    test_rejects();
    test_retain();
    test_static();
    servers_clear();
    return check_summary("test_servers");
}
