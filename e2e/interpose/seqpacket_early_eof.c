/* Makes a race in Linux's SOCK_SEQPACKET receive happen on every handoff, for the tests.
 *
 * A non-blocking read checks the socket's queue, lets go of it, then checks whether the peer
 * has shut down. When the peer sends its last record and closes between the two checks, the
 * read reports end-of-stream although the record is queued. Loaded into Apache with LD_PRELOAD
 * (e2e/test_faults.py), this library gives that answer whenever it could happen: the first
 * non-blocking recv(2) on a SEQPACKET socket that finds a record queued, once the peer has
 * closed behind it, returns 0; the next recv on that descriptor reads normally. Per process,
 * not thread-safe: for prefork only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*recv_function)(int, void *, size_t, int);

static int reported_early = -1;

/* Whether a record is queued on SEQPACKET socket `fd` and its peer has closed behind it. A
 * record whose sender has not closed yet is waited for (up to a second), so the race is made
 * to happen whenever the peer sends and closes, not only when the close happened to come first. */
static int closed_behind_a_record(int fd, recv_function real_recv)
{
    int type = 0;
    socklen_t size = sizeof(type);
    struct pollfd entry = {fd, POLLRDHUP, 0};
    char byte;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_SEQPACKET) return 0;
    if (real_recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 1) return 0;
    return poll(&entry, 1, 1000) == 1 && (entry.revents & (POLLHUP | POLLRDHUP));
}

ssize_t recv(int fd, void *buffer, size_t length, int flags)
{
    static recv_function real_recv;
    if (real_recv == NULL) real_recv = (recv_function)dlsym(RTLD_NEXT, "recv");
    if (fd == reported_early) {
        reported_early = -1;
    } else if ((flags & MSG_DONTWAIT) && closed_behind_a_record(fd, real_recv)) {
        reported_early = fd;
        return 0;
    }
    return real_recv(fd, buffer, length, flags);
}
