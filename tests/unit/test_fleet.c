/* Unit tests for the pure parts of fleet.c: state values and key names. */
#include <string.h>

#include "check.h"
#include "fleet.h"

static int st(const char *v, enum fleet_admin *a, int64_t *dl, bool *close)
{
    return fleet_parse_state(v, strlen(v), a, dl, close);
}

int main(void)
{
    enum fleet_admin a;
    int64_t dl;
    bool close;

    CHECK_EQ_INT(st("maint", &a, &dl, &close), 0);
    CHECK_EQ_INT(a, FLEET_MAINT);
    CHECK_EQ_INT(st("drain:0", &a, &dl, &close), 0);
    CHECK_EQ_INT(a, FLEET_DRAIN);
    CHECK_EQ_INT(dl, 0);
    CHECK(!close);
    CHECK_EQ_INT(st("drain:1763700600000", &a, &dl, &close), 0);
    CHECK_EQ_INT(dl, 1763700600000LL);
    CHECK_EQ_INT(st("drain:1763700600000:close", &a, &dl, &close), 0);
    CHECK(close);
    CHECK_EQ_INT(dl, 1763700600000LL);

    const char *bad[] = {"", "drain", "drain:", "drain:x", "drain:12:open", "drain:12:close:x",
                         "Maint", "maint ", "ready", "drain:99999999999999999999", "drain:-5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(st(bad[i], &a, &dl, &close), -1);
    }

    char k[64];
    CHECK_EQ_INT(fleet_key(k, sizeof(k), "sticky:", "ws", 2, "conns"), 17);
    CHECK(strcmp(k, "sticky:{ws}:conns") == 0);
    CHECK(fleet_key(k, sizeof(k), "sticky:", "wsXXX", 2, "s:abc") > 0);
    CHECK(strcmp(k, "sticky:{ws}:s:abc") == 0);
    CHECK_EQ_INT(fleet_key(k, 10, "sticky:", "ws", 2, "conns"), -1);

    return check_summary("test_fleet");
}
