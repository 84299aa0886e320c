// What Swift cannot import from the C headers: the CMSG_* macros, `struct ucred`
// (hidden behind _GNU_SOURCE), the packed `struct epoll_event`, and accept4/SOCK_* flag
// values that Glibc exposes as enums. Kept tiny on purpose; all logic lives in Swift.
#ifndef HANDOFF_SHIM_H
#define HANDOFF_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bytes of control buffer needed for `count` file descriptors in one SCM_RIGHTS cmsg.
size_t handoff_cmsg_space_for_fds(size_t count);

/// Fills `control` (of `control_len` bytes, at least handoff_cmsg_space_for_fds(count)) with
/// one SCM_RIGHTS cmsg carrying `count` descriptors, and points `msg` at it.
void handoff_msg_set_fds(struct msghdr *msg, void *control, size_t control_len, const int *fds,
                         size_t count);

/// Walks every cmsg in `msg`, copying every SCM_RIGHTS descriptor into `out` (up to
/// `out_capacity`). Returns the total number of descriptors found, which may exceed
/// `out_capacity`; `*other_cmsgs` counts cmsgs that were not SCM_RIGHTS.
size_t handoff_msg_collect_fds(const struct msghdr *msg, int *out, size_t out_capacity,
                               size_t *other_cmsgs);

/// SO_PEERCRED of a connected Unix socket. Returns 0 or -1 with errno set.
int handoff_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC.
int handoff_accept_nonblocking(int fd);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC that also reports, in `*wants_ack`, whether the
/// peer bound its end to an abstract address starting with HANDOFF_ACK_MARKER (the
/// acknowledged-handoff opt-in). The address comes back from accept4 itself: no extra syscall.
int handoff_accept_nonblocking_marked(int fd, int *wants_ack);

/// Binds `fd` (an unbound AF_UNIX socket) to the abstract address
/// "\0" HANDOFF_ACK_MARKER "<pid>.<unique>": the sender's request for an acknowledgement.
/// Returns 0 or -1 with errno set (EADDRINUSE: pick another `unique`).
int handoff_bind_ack_marker(int fd, uint64_t unique);

/// The abstract-name prefix that asks for an acknowledged handoff (without the leading NUL).
#define HANDOFF_ACK_MARKER "socket-handoff-ack.1."

/// socket(2) with SOCK_NONBLOCK | SOCK_CLOEXEC added to `type`.
int handoff_socket_nonblocking(int domain, int type, int protocol);

/// socketpair(2) with SOCK_CLOEXEC (and SOCK_NONBLOCK when `nonblocking`).
int handoff_socketpair(int domain, int type, int nonblocking, int sv[2]);

/// pipe2(2) with O_CLOEXEC (pipe2 is a GNU extension Swift's Glibc does not export).
int handoff_pipe_cloexec(int fds[2]);

/// 1 when `text` is exactly an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 or asctime).
int handoff_is_http_date(const char *text);

/// epoll without the packed struct: one event is (events, data.u64).
int handoff_epoll_create(void);
int handoff_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/// Waits for at most `max` events, writing their masks and data into the two arrays.
int handoff_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int max, int timeout_ms);

/// eventfd(2) with EFD_NONBLOCK | EFD_CLOEXEC.
int handoff_eventfd(void);

/// The file type bits of a stat mode: 1 when `mode` describes a socket.
int handoff_mode_is_socket(unsigned int mode);

extern const int handoff_SOCK_STREAM;
extern const int handoff_SOCK_SEQPACKET;
extern const int handoff_MSG_CMSG_CLOEXEC;
extern const int handoff_MSG_TRUNC;
extern const int handoff_MSG_CTRUNC;
extern const int handoff_MSG_NOSIGNAL;
extern const int handoff_MSG_DONTWAIT;
extern const uint32_t handoff_EPOLLIN;
extern const uint32_t handoff_EPOLLOUT;
extern const uint32_t handoff_EPOLLERR;
extern const uint32_t handoff_EPOLLHUP;
extern const uint32_t handoff_EPOLLRDHUP;
extern const uint32_t handoff_EPOLLET;
extern const int handoff_EPOLL_CTL_ADD;
extern const int handoff_EPOLL_CTL_DEL;
extern const int handoff_EPOLL_CTL_MOD;

#ifdef __cplusplus
}
#endif

/// posix_spawn_file_actions_addclosefrom_np: the child closes every descriptor from `lowest` up,
/// whatever the parent inherited without close-on-exec. `actions` is a
/// `posix_spawn_file_actions_t *`.
int handoff_spawn_close_from(void *actions, int lowest);

/// futex(2) FUTEX_WAIT_BITSET, process-private, with an absolute CLOCK_MONOTONIC `deadline`:
/// sleeps while `*word == expected` until woken or the deadline. 0, or -1 with errno
/// (ETIMEDOUT, EAGAIN when `*word` differed, EINTR).
int handoff_futex_wait_until(uint32_t *word, uint32_t expected, const struct timespec *deadline);

/// futex(2) FUTEX_WAKE, process-private: wakes one thread waiting on `word`.
int handoff_futex_wake_one(uint32_t *word);

/// pthread_setname_np for the calling thread: `name` at most 15 bytes (the kernel's limit).
int handoff_name_current_thread(const char *name);

#endif
