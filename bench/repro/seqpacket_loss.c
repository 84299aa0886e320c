/*
 * A handoff-free reproduction of the rare fire-and-forget loss seen in `make soak --no-ack`:
 * four threads hand a socketpair end over AF_UNIX SOCK_SEQPACKET exactly as the original
 * protocol does (non-blocking connect retried on EAGAIN when the backlog is full, one sendmsg
 * with SCM_RIGHTS, close), and one thread receives as handoffd's acceptor does. It counts
 * connections that arrive with no record although every sendmsg succeeded.
 *
 *   gcc -O2 -pthread bench/repro/seqpacket_loss.c -o /tmp/seqpacket_loss && /tmp/seqpacket_loss
 *
 * Seen here (Linux 6.18, 2 cores): 1 record lost in 3 000 000 with the EAGAIN retries, none in
 * 2 000 000 with blocking connects. The acknowledged handoff turns such a loss into a 503.
 */
// Fire-and-forget SEQPACKET handoffs: does a record ever arrive missing? (socketpair fds in flight)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/epoll.h>
#include <stdatomic.h>
static const char *path = "/tmp/seqpacket_loss.sock";
static atomic_long received, eofs, sent, retries;
static volatile int stop;
static void *acceptor(void *arg) {
    int l = *(int *)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    char buf[4096]; char ctrl[CMSG_SPACE(sizeof(int) * 4)];
    while (!stop) {
        struct epoll_event out[64];
        int n = epoll_wait(ep, out, 64, 100);
        for (int i = 0; i < n; i++) {
            if (out[i].data.fd == l) {
                for (;;) {
                    int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    // As handoffd does: try the record at once, then epoll.
                    struct iovec iov = {buf, sizeof buf};
                    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
                    ssize_t r = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
                    if (r < 0 && errno == EAGAIN) {
                        struct epoll_event e2 = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e2);
                        continue;
                    }
                    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
                        if (h->cmsg_type == SCM_RIGHTS) { int fd; memcpy(&fd, CMSG_DATA(h), sizeof fd); close(fd); }
                    if (r > 0) atomic_fetch_add(&received, 1); else if (r == 0) atomic_fetch_add(&eofs, 1);
                    close(c);
                }
            } else {
                int c = out[i].data.fd;
                struct iovec iov = {buf, sizeof buf};
                struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
                ssize_t r = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
                if (r < 0 && errno == EAGAIN) continue;
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
                    if (h->cmsg_type == SCM_RIGHTS) { int fd; memcpy(&fd, CMSG_DATA(h), sizeof fd); close(fd); }
                if (r > 0) atomic_fetch_add(&received, 1); else if (r == 0) atomic_fetch_add(&eofs, 1);
                epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL);
                close(c);
            }
        }
    }
    return NULL;
}
static void *sender(void *arg) {
    int tcp = *(int *)arg;
    struct sockaddr_un a = {.sun_family = AF_UNIX}; strcpy(a.sun_path, path);
    for (long i = 0; i < 250000 && !stop; i++) {
        while (atomic_load(&sent) - atomic_load(&received) - atomic_load(&eofs) > 5000) usleep(10);
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) { perror("socketpair"); exit(1); }
        int s;
        for (;;) {
            s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
            if (s < 0) { perror("socket"); exit(1); }
            if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) break;
            if (errno != EAGAIN) { perror("connect"); exit(1); }
            atomic_fetch_add(&retries, 1);
            close(s);
            usleep(500);
        }
        char msg[] = "{\"prompt\":\"x\"}";
        struct iovec iov = {msg, sizeof msg - 1};
        char ctrl[CMSG_SPACE(sizeof(int))]; memset(ctrl, 0, sizeof ctrl);
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
        struct cmsghdr *h = CMSG_FIRSTHDR(&m); h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &pair[1], sizeof(int));
        while (sendmsg(s, &m, MSG_NOSIGNAL) < 0) { if (errno != EAGAIN) { perror("sendmsg"); exit(1); } usleep(100); }
        atomic_fetch_add(&sent, 1);
        close(s); close(pair[1]); close(pair[0]);
    }
    (void)tcp;
    return NULL;
}
int main(void) {
    unlink(path);
    int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX}; strcpy(a.sun_path, path);
    bind(l, (struct sockaddr *)&a, sizeof a); listen(l, 64);
    pthread_t t, s[4]; int zero = 0;
    pthread_create(&t, NULL, acceptor, &l);
    for (int i = 0; i < 4; i++) pthread_create(&s[i], NULL, sender, &zero);
    for (int i = 0; i < 4; i++) pthread_join(s[i], NULL);
    sleep(1); stop = 1; pthread_join(t, NULL);
    printf("sent %ld received %ld eof-without-record %ld backlog retries %ld\n", sent, received, eofs, retries);
    return 0;
}
