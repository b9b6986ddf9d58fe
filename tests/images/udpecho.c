/* udpecho: the test guest's UDP server and client (busybox's nc there is
 * TCP only).  `udpecho -l PORT` echoes every datagram back to its sender;
 * `udpecho HOST PORT MSG` sends MSG once a second up to 3 times and prints
 * the first reply, or exits 1 when none came.  Built statically by
 * build.sh, started on port 7 by initramfs/etc/rc.sh. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    char buf[2048];
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0)
        return 2;
    if (argc == 3 && strcmp(argv[1], "-l") == 0) {
        a.sin_port = htons(atoi(argv[2]));
        if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
            return perror("udpecho: bind"), 2;
        for (;;) {
            struct sockaddr_in p;
            socklen_t pl = sizeof p;
            ssize_t n = recvfrom(s, buf, sizeof buf, 0,
                                 (struct sockaddr *)&p, &pl);
            if (n >= 0)
                sendto(s, buf, n, 0, (struct sockaddr *)&p, pl);
        }
    }
    if (argc != 4 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1)
        return fprintf(stderr, "usage: udpecho -l PORT | "
                               "udpecho IPV4 PORT MSG\n"), 2;
    a.sin_port = htons(atoi(argv[2]));
    struct timeval tv = {.tv_sec = 1};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0)
        return perror("udpecho: connect"), 1;
    for (int i = 0; i < 3; i++) {
        send(s, argv[3], strlen(argv[3]), 0);
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n >= 0) {
            buf[n] = 0;
            printf("%s\n", buf);
            return 0;
        }
    }
    return 1;
}
