/* Unit test of the max_connections clamp (issue 12 item 4): the SPOP limit never
 * exceeds the descriptor limit minus the reserve, and never reaches 0. */
#include <stdint.h>

#include "check.h"
#include "listener.h"

int main(void)
{
    CHECK_EQ_INT(listener_clamp_connections(4096, 1024, 32), 992);
    CHECK_EQ_INT(listener_clamp_connections(4096, 1024, 96), 928);
    CHECK_EQ_INT(listener_clamp_connections(500, 1024, 32), 500);
    CHECK_EQ_INT(listener_clamp_connections(992, 1024, 32), 992);
    CHECK_EQ_INT(listener_clamp_connections(4096, 128, 32), 96);
    CHECK_EQ_INT(listener_clamp_connections(4096, 32, 32), 1);
    CHECK_EQ_INT(listener_clamp_connections(4096, 10, 32), 1);
    CHECK_EQ_INT(listener_clamp_connections(1000000, UINT64_MAX, 32), 1000000);
    return check_summary("test_listener");
}
