#define _GNU_SOURCE
#include "handoff_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

size_t handoff_cmsg_space_for_fds(size_t count) {
    return CMSG_SPACE(sizeof(int) * count);
}

void handoff_msg_set_fds(struct msghdr *msg, void *control, size_t control_len, const int *fds,
                         size_t count) {
    memset(control, 0, control_len);
    msg->msg_control = control;
    msg->msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
}

size_t handoff_msg_collect_fds(const struct msghdr *msg, int *out, size_t out_capacity,
                               size_t *other_cmsgs) {
    size_t found = 0;
    *other_cmsgs = 0;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL;
         cmsg = CMSG_NXTHDR((struct msghdr *)msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
            *other_cmsgs += 1;
            continue;
        }
        size_t payload = cmsg->cmsg_len - CMSG_LEN(0);
        size_t count = payload / sizeof(int);
        const unsigned char *data = CMSG_DATA(cmsg);
        for (size_t i = 0; i < count; i++) {
            if (found < out_capacity) {
                memcpy(&out[found], data + i * sizeof(int), sizeof(int));
            }
            found += 1;
        }
    }
    return found;
}

int handoff_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int handoff_accept_nonblocking(int fd) {
    return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int handoff_accept_nonblocking_marked(int fd, int *wants_ack) {
    struct sockaddr_un peer;
    socklen_t length = sizeof(peer);
    static const char marker[] = HANDOFF_ACK_MARKER;
    const size_t marker_length = sizeof(marker) - 1;
    int accepted = accept4(fd, (struct sockaddr *)&peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *wants_ack = 0;
    if (accepted >= 0 && length >= offsetof(struct sockaddr_un, sun_path) + 1 + marker_length &&
        peer.sun_path[0] == '\0' && memcmp(peer.sun_path + 1, marker, marker_length) == 0) {
        *wants_ack = 1;
    }
    return accepted;
}

int handoff_bind_ack_marker(int fd, uint64_t unique) {
    struct sockaddr_un address;
    int length;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    length = snprintf(address.sun_path + 1, sizeof(address.sun_path) - 1, "%s%ld.%llu", HANDOFF_ACK_MARKER,
                      (long)getpid(), (unsigned long long)unique);
    if (length < 0 || (size_t)length >= sizeof(address.sun_path) - 1) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return bind(fd, (struct sockaddr *)&address, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)length));
}

int handoff_socket_nonblocking(int domain, int type, int protocol) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}

int handoff_socketpair(int domain, int type, int nonblocking, int sv[2]) {
    int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    return socketpair(domain, type | flags, 0, sv);
}

int handoff_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int handoff_is_http_date(const char *text) {
    static const char *const formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        struct tm parts;
        const char *end;
        memset(&parts, 0, sizeof(parts));
        end = strptime(text, formats[i], &parts);
        if (end != NULL && *end == '\0') return 1;
    }
    return 0;
}

int handoff_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int handoff_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int handoff_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms) {
    struct epoll_event ready[256];
    if (max > 256) {
        max = 256;
    }
    int n = epoll_wait(epfd, ready, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i] = ready[i].events;
        data[i] = ready[i].data.u64;
    }
    return n;
}

int handoff_eventfd(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int handoff_mode_is_socket(unsigned int mode) {
    return S_ISSOCK(mode) ? 1 : 0;
}

const int handoff_SOCK_STREAM = SOCK_STREAM;
const int handoff_SOCK_SEQPACKET = SOCK_SEQPACKET;
const int handoff_MSG_CMSG_CLOEXEC = MSG_CMSG_CLOEXEC;
const int handoff_MSG_TRUNC = MSG_TRUNC;
const int handoff_MSG_CTRUNC = MSG_CTRUNC;
const int handoff_MSG_NOSIGNAL = MSG_NOSIGNAL;
const int handoff_MSG_DONTWAIT = MSG_DONTWAIT;
const uint32_t handoff_EPOLLIN = EPOLLIN;
const uint32_t handoff_EPOLLOUT = EPOLLOUT;
const uint32_t handoff_EPOLLERR = EPOLLERR;
const uint32_t handoff_EPOLLHUP = EPOLLHUP;
const uint32_t handoff_EPOLLRDHUP = EPOLLRDHUP;
const uint32_t handoff_EPOLLET = EPOLLET;
const int handoff_EPOLL_CTL_ADD = EPOLL_CTL_ADD;
const int handoff_EPOLL_CTL_DEL = EPOLL_CTL_DEL;
const int handoff_EPOLL_CTL_MOD = EPOLL_CTL_MOD;

#include <spawn.h>

int handoff_spawn_close_from(void *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowest);
}

#include <pthread.h>

int handoff_name_current_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int handoff_futex_wait_until(uint32_t *word, uint32_t expected, const struct timespec *deadline) {
    return (int)syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, deadline, NULL,
                        FUTEX_BITSET_MATCH_ANY);
}

int handoff_futex_wake_one(uint32_t *word) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}
