/* itest.h - helpers shared by the C integration drivers (header-only: each
 * driver is its own program). */
#ifndef STICKYD_ITEST_H
#define STICKYD_ITEST_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback port that was free a moment ago (bind port 0, read it back), for
 * a socket of the given type (SOCK_STREAM or SOCK_DGRAM). -1 on failure. */
static inline int itest_free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0) {
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

#endif
