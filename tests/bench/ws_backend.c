/* ws_backend - the WebSocket servers behind HAProxy in the upgrade benchmark only.
 *
 * One single-threaded epoll process listening on several loopback ports, one per
 * named server (ws1=PORT ws2=PORT ...), so the application side is never what limits
 * the upgrade rate (the python echo server of the demo manages a few hundred per s).
 * For a WebSocket upgrade it answers "101 Switching Protocols" with the real
 * Sec-WebSocket-Accept (RFC 6455, SHA-1 + base64) and "X-Server: <name>", then reads
 * and discards until the client closes. Any other GET (HAProxy's health check) gets
 * "200 ok" and is closed. It never talks to anything but the sockets it accepted.
 *
 *     ws_backend ws1=9101 ws2=9102 ws3=9103
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_head.h"

#define MAX_SERVERS 16
#define REQ_MAX 4096

struct server {
    char name[32];
    int fd;
};

/* One accepted connection: the request bytes until the header ends, then a tunnel. */
struct client {
    int fd;
    const struct server *srv;
    bool upgraded;
    size_t len;
    char req[REQ_MAX];
};

/* Tagged epoll data: listeners and clients share one epoll set. */
struct tag {
    bool listener;
    void *ptr;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* RFC 6455 4.2.2: base64(SHA-1(key || GUID)) into out (>= 29 bytes). */
static int accept_key(const char *key, size_t klen, char *out)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char buf[128];
    if (klen > sizeof(buf) - sizeof(guid)) {
        return -1;
    }
    memcpy(buf, key, klen);
    memcpy(buf + klen, guid, sizeof(guid) - 1);
    if (EVP_Digest(buf, klen + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) != 1) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    return 0;
}

static void client_free(int ep, struct tag *t)
{
    struct client *c = t->ptr;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
    free(t);
}

/* The whole response fits the socket buffer of a fresh connection: one write. */
static bool respond(struct client *c)
{
    const char *end = memmem(c->req, c->len, "\r\n\r\n", 4);
    size_t vlen = 0;
    const char *up = http_header(c->req, end, "Upgrade", &vlen);
    char out[512];
    int n;
    if (up != NULL && vlen == 9 && strncasecmp(up, "websocket", 9) == 0) {
        size_t klen = 0;
        const char *key = http_header(c->req, end, "Sec-WebSocket-Key", &klen);
        char acc[64];
        if (key == NULL || accept_key(key, klen, acc) != 0) {
            n = snprintf(out, sizeof(out),
                         "HTTP/1.1 400 Bad Request\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n");
            (void)!write(c->fd, out, (size_t)n);
            return false;
        }
        n = snprintf(out, sizeof(out),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Server: %s\r\n\r\n",
                     acc, c->srv->name);
        c->upgraded = true;
        return write(c->fd, out, (size_t)n) == n;
    }
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Server: %s\r\n"
                 "Content-Length: 3\r\nConnection: close\r\n\r\nok\n",
                 c->srv->name);
    (void)!write(c->fd, out, (size_t)n);
    return false;
}

/* Read what is there; false when the connection is to be closed. */
static bool client_read(struct client *c)
{
    for (;;) {
        char sink[4096];
        char *dst = c->upgraded ? sink : c->req + c->len;
        size_t room = c->upgraded ? sizeof(sink) : sizeof(c->req) - c->len;
        if (room == 0) {
            return false; /* header too large */
        }
        ssize_t r = read(c->fd, dst, room);
        if (r == 0) {
            return false;
        }
        if (r < 0) {
            return errno == EAGAIN || errno == EINTR;
        }
        if (c->upgraded) {
            /* a close frame (opcode 8): the client is done; closing is our answer */
            if (r >= 1 && (sink[0] & 0x0f) == 0x8) {
                return false;
            }
            continue;
        }
        c->len += (size_t)r;
        if (memmem(c->req, c->len, "\r\n\r\n", 4) != NULL) {
            if (!respond(c)) {
                return false;
            }
            c->len = 0;
        }
    }
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4096) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct server srv[MAX_SERVERS];
    int nsrv = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (argc < 2 || argc - 1 > MAX_SERVERS || ep < 0) {
        fprintf(stderr, "usage: ws_backend NAME=PORT... (at most %d)\n", MAX_SERVERS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        int port = eq ? atoi(eq + 1) : 0;
        if (eq == NULL || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof(srv[0].name) ||
            port <= 0 || port > 65535) {
            fprintf(stderr, "ws_backend: bad server %s (NAME=PORT)\n", argv[i]);
            return 2;
        }
        struct server *s = &srv[nsrv++];
        snprintf(s->name, sizeof(s->name), "%.*s", (int)(eq - argv[i]), argv[i]);
        s->fd = listen_on(port);
        if (s->fd < 0) {
            fprintf(stderr, "ws_backend: %s: cannot listen on 127.0.0.1:%d: %s\n", s->name, port,
                    strerror(errno));
            return 1;
        }
        struct tag *t = malloc(sizeof(*t));
        if (t == NULL) {
            return 1;
        }
        *t = (struct tag){.listener = true, .ptr = s};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = t};
        epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
        printf("ws_backend: %s listening on 127.0.0.1:%d\n", s->name, port);
    }
    fflush(stdout);
    while (!stop_flag) {
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            struct tag *t = evs[i].data.ptr;
            if (t->listener) {
                const struct server *s = t->ptr;
                int fd;
                while ((fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct client *c = calloc(1, sizeof(*c));
                    struct tag *ct = malloc(sizeof(*ct));
                    int one = 1;
                    if (c == NULL || ct == NULL) {
                        free(c);
                        free(ct);
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c->fd = fd;
                    c->srv = s;
                    *ct = (struct tag){.listener = false, .ptr = c};
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ct};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (!client_read(t->ptr)) {
                client_free(ep, t);
            }
        }
    }
    return 0;
}
