/* udpflood.c: small UDP datagrams as fast as one core sends them, for
 * bench/net's packet rates (iperf3 paces UDP and answers its client, so it
 * can neither saturate nor keep a flow unreplied).
 *
 *   udpflood sink PORT SECONDS [reply]
 *       binds PORT and holds it (so nothing answers with ICMP); with
 *       "reply", answers the first datagram once, to its sender, which
 *       makes the flow established in every conntrack on the way.  It
 *       reads nothing after that: what passed is counted on the path's
 *       interfaces by the bench, not here.
 *   udpflood send SRC_PORT DST_IP DST_PORT SECONDS SIZE [wait-reply]
 *       sends SIZE-byte datagrams (sendmmsg, 64 at a time) from SRC_PORT
 *       for SECONDS; with "wait-reply", first sends one and waits for the
 *       sink's answer (up to 3 s).  Prints {"sent": N, "seconds": S,
 *       "errors": E, "replied": 0|1}.
 *
 * Without a reply, every datagram of the flow is "ct state new" to
 * conntrack, so a stateful filter walks its rules for each one: the
 * worst case of a rule set.  With one, only the first walked them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int bound(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("bind");
        close(fd);
        return -1;
    }
    return fd;
}

static int sink(int port, double seconds, int reply)
{
    int fd = bound(port);
    if (fd < 0)
        return 1;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    printf("ready\n");
    fflush(stdout);
    double end = now() + seconds;
    char buf[2048];
    while (reply && now() < end) {
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n =
            recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n >= 0) {
            sendto(fd, "ok", 2, 0, (struct sockaddr *)&from, fl);
            break;
        }
    }
    while (now() < end)
        usleep(100000);
    close(fd);
    return 0;
}

static int send_flood(int sport, const char *dst, int dport, double seconds,
                      int size, int wait_reply)
{
    int fd = bound(sport);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)dport)};
    if (fd < 0 || inet_pton(AF_INET, dst, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("udpflood");
        return 1;
    }
    int replied = 0;
    if (wait_reply) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char b[16];
        for (int i = 0; i < 30 && !replied; i++) {
            send(fd, "hello", 5, 0);
            replied = recv(fd, b, sizeof(b), 0) > 0;
        }
    }
    static char payload[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    if (size < 1 || size > 2048)
        size = 18;
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        memset(payload[i], 'k', (size_t)size);
        iov[i] = (struct iovec){payload[i], (size_t)size};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long long sent = 0, errors = 0;
    double t0 = now(), end = t0 + seconds, t = t0;
    while (t < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0)
            sent += n;
        else
            errors++;
        t = now();
    }
    printf("{\"sent\": %lld, \"seconds\": %.4f, \"errors\": %lld, "
           "\"replied\": %d}\n",
           sent, t - t0, errors, replied);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "sink") == 0)
        return sink(atoi(argv[2]), atof(argv[3]),
                    argc > 4 && strcmp(argv[4], "reply") == 0);
    if (argc >= 7 && strcmp(argv[1], "send") == 0)
        return send_flood(atoi(argv[2]), argv[3], atoi(argv[4]), atof(argv[5]),
                          atoi(argv[6]),
                          argc > 7 && strcmp(argv[7], "wait-reply") == 0);
    fprintf(stderr, "usage: udpflood sink PORT SECONDS [reply]\n"
                    "       udpflood send SRC_PORT DST_IP DST_PORT SECONDS "
                    "SIZE [wait-reply]\n");
    return 2;
}
