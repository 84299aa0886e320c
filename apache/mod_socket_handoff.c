/*
 * mod_socket_handoff: hand the client's TCP connection to a streaming daemon.
 *
 * An application (PHP, CGI, a proxied backend) answers a request with
 *
 *     X-Socket-Handoff: /run/handoffd/handoffd.sock
 *     X-Handoff-Data: {"prompt":"...","user_id":42}
 *
 * and this output filter, instead of sending that response, connects to the named
 * AF_UNIX/SOCK_SEQPACKET socket and sends one message: the data header's bytes (a single NUL
 * when there is none) with the client socket attached as SCM_RIGHTS. The daemon now owns the
 * connection and writes the whole HTTP response itself; the Apache worker is free at once.
 *
 * Once sendmsg() has succeeded the handoff is committed: Apache never writes to the client
 * again. The client's descriptor number is pointed at a dead stand-in socket with dup2(), so
 * whatever Apache still does with "its" socket (lingering close, shutdown) cannot touch the
 * daemon's connection. The stand-in (an unconnected datagram socket) is made once per child
 * process, before any request, and shared: Apache closing its copy leaves ours.
 *
 * Before that point every failure gets a real answer: 403 for a socket path outside
 * SocketHandoffAllowedPrefix, 503 when the daemon cannot be reached within the deadline,
 * 500 for internal failures and for requests that cannot be handed off (HTTP/2, TLS).
 * The two handoff headers never reach the client.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_ssl.h"
#include "util_filter.h"

#include "apr_atomic.h"
#include "apr_portable.h"
#include "apr_strings.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

module AP_MODULE_DECLARE_DATA socket_handoff_module;


#define HANDOFF_FILTER "SOCKET_HANDOFF"
#define STRIP_FILTER "SOCKET_HANDOFF_STRIP"
#define HDR_SOCKET "X-Socket-Handoff"
#define HDR_DATA "X-Handoff-Data"

#define UNSET -1
#define HANDOFF_DEFAULT_PREFIX "/run/"
#define DEFAULT_CONNECT_TIMEOUT_MS 100
#define DEFAULT_SEND_TIMEOUT_MS 200
#define DEFAULT_MAX_RETRIES 2
#define FIRST_BACKOFF_MS 10

typedef struct {
    int enabled;              /* On/Off, UNSET when not configured here */
    const char *prefix;       /* normalised, ends with '/'; NULL when unset */
    const char *prefix_real;  /* the prefix after realpath(3) at startup, '/'-terminated; NULL
                                 when it did not exist then (resolved per request instead) */
    int connect_timeout_ms;   /* 1..60000 */
    int send_timeout_ms;      /* 1..60000 */
    int max_retries;          /* 0..10 */
    int ack;                  /* On/Off: wait for the daemon's acknowledgement, UNSET when unset */
    int daemon_uid;           /* required peer uid, UNSET when not checked */
    const char *daemon_user;  /* for messages */
} handoff_config;

/* This process's stand-in socket, made in child_init; -1 if that failed (then one is made per
 * handoff). */
static int standin_fd = -1;

static int make_standin(void)
{
    return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

typedef enum {
    STATE_DISCARD = 1         /* handed off or answered: drop everything that follows */
} filter_state;

typedef struct {
    filter_state state;
} filter_ctx;

/* ------------------------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------------------------- */

static void *create_config(apr_pool_t *p, char *dir)
{
    handoff_config *conf = apr_pcalloc(p, sizeof(*conf));
    (void)dir;
    conf->enabled = UNSET;
    conf->prefix = NULL;
    conf->prefix_real = NULL;
    conf->connect_timeout_ms = UNSET;
    conf->send_timeout_ms = UNSET;
    conf->max_retries = UNSET;
    conf->ack = UNSET;
    conf->daemon_uid = UNSET;
    conf->daemon_user = NULL;
    return conf;
}

static void *create_server_config(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return create_config(p, NULL);
}

static void *merge_config(apr_pool_t *p, void *base_conf, void *add_conf)
{
    const handoff_config *base = base_conf;
    const handoff_config *add = add_conf;
    handoff_config *conf = apr_pcalloc(p, sizeof(*conf));
    conf->enabled = add->enabled != UNSET ? add->enabled : base->enabled;
    conf->prefix = add->prefix != NULL ? add->prefix : base->prefix;
    conf->prefix_real = add->prefix != NULL ? add->prefix_real : base->prefix_real;
    conf->connect_timeout_ms =
        add->connect_timeout_ms != UNSET ? add->connect_timeout_ms : base->connect_timeout_ms;
    conf->send_timeout_ms = add->send_timeout_ms != UNSET ? add->send_timeout_ms : base->send_timeout_ms;
    conf->max_retries = add->max_retries != UNSET ? add->max_retries : base->max_retries;
    conf->ack = add->ack != UNSET ? add->ack : base->ack;
    if (add->daemon_uid != UNSET) {
        conf->daemon_uid = add->daemon_uid;
        conf->daemon_user = add->daemon_user;
    } else {
        conf->daemon_uid = base->daemon_uid;
        conf->daemon_user = base->daemon_user;
    }
    return conf;
}

/* The effective configuration of a request: per-directory, then virtual host, then defaults. */
static handoff_config effective_config(const request_rec *r)
{
    const handoff_config *dir = ap_get_module_config(r->per_dir_config, &socket_handoff_module);
    const handoff_config *srv = ap_get_module_config(r->server->module_config, &socket_handoff_module);
    handoff_config conf = *(const handoff_config *)merge_config(r->pool, (void *)srv, (void *)dir);
    if (conf.enabled == UNSET) conf.enabled = 1;
    if (conf.prefix == NULL) {
        conf.prefix = HANDOFF_DEFAULT_PREFIX;
        conf.prefix_real = NULL;
    }
    if (conf.connect_timeout_ms == UNSET) conf.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (conf.send_timeout_ms == UNSET) conf.send_timeout_ms = DEFAULT_SEND_TIMEOUT_MS;
    if (conf.max_retries == UNSET) conf.max_retries = DEFAULT_MAX_RETRIES;
    if (conf.ack == UNSET) conf.ack = 1;
    return conf;
}

/* Server-scope directives store into the server config, directory-scope ones into the
 * directory config; the request merges both (see effective_config). */
static handoff_config *config_for(cmd_parms *cmd, void *mconfig)
{
    if (cmd->path == NULL) {
        return ap_get_module_config(cmd->server->module_config, &socket_handoff_module);
    }
    return mconfig;
}

static const char *parse_int(cmd_parms *cmd, const char *arg, int min, int max, int *out)
{
    char *end = NULL;
    long value;
    if (arg == NULL || *arg == '\0') {
        return apr_psprintf(cmd->pool, "%s needs a number from %d to %d", cmd->cmd->name, min, max);
    }
    errno = 0;
    value = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || value < min || value > max) {
        return apr_psprintf(cmd->pool, "%s must be a whole number from %d to %d, got '%s'",
                            cmd->cmd->name, min, max, arg);
    }
    *out = (int)value;
    return NULL;
}

static const char *set_enabled(cmd_parms *cmd, void *mconfig, int flag)
{
    config_for(cmd, mconfig)->enabled = flag ? 1 : 0;
    return NULL;
}

static const char *set_ack(cmd_parms *cmd, void *mconfig, int flag)
{
    config_for(cmd, mconfig)->ack = flag ? 1 : 0;
    return NULL;
}

static const char *set_connect_timeout(cmd_parms *cmd, void *mconfig, const char *arg)
{
    return parse_int(cmd, arg, 1, 60000, &config_for(cmd, mconfig)->connect_timeout_ms);
}

static const char *set_send_timeout(cmd_parms *cmd, void *mconfig, const char *arg)
{
    return parse_int(cmd, arg, 1, 60000, &config_for(cmd, mconfig)->send_timeout_ms);
}

static const char *set_max_retries(cmd_parms *cmd, void *mconfig, const char *arg)
{
    return parse_int(cmd, arg, 0, 10, &config_for(cmd, mconfig)->max_retries);
}

/* Resolves "." and ".." and repeated slashes in an absolute path, without touching the
 * filesystem. Returns NULL for a relative path or one that climbs above "/". */
static char *normalise_path(apr_pool_t *p, const char *path)
{
    size_t len = strlen(path);
    char *out = apr_palloc(p, len + 2);
    size_t used = 0;
    const char *cursor = path;

    if (path[0] != '/') return NULL;
    out[used++] = '/';
    while (*cursor != '\0') {
        const char *segment;
        size_t seglen;
        while (*cursor == '/') cursor++;
        segment = cursor;
        while (*cursor != '\0' && *cursor != '/') cursor++;
        seglen = (size_t)(cursor - segment);
        if (seglen == 0 || (seglen == 1 && segment[0] == '.')) continue;
        if (seglen == 2 && segment[0] == '.' && segment[1] == '.') {
            if (used == 1) return NULL;
            used--; /* drop the trailing slash, then the segment */
            while (used > 1 && out[used - 1] != '/') used--;
            continue;
        }
        memcpy(out + used, segment, seglen);
        used += seglen;
        out[used++] = '/';
    }
    if (used > 1 && path[len - 1] != '/') used--; /* keep a trailing slash only if given */
    out[used] = '\0';
    return out;
}

static const char *set_prefix(cmd_parms *cmd, void *mconfig, const char *arg)
{
    char *normal;
    if (arg == NULL || arg[0] != '/') {
        return apr_psprintf(cmd->pool, "%s must be an absolute directory path, got '%s'",
                            cmd->cmd->name, arg ? arg : "");
    }
    normal = normalise_path(cmd->pool, arg);
    if (normal == NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s' climbs above /", cmd->cmd->name, arg);
    }
    if (normal[strlen(normal) - 1] != '/') normal = apr_pstrcat(cmd->pool, normal, "/", NULL);
    config_for(cmd, mconfig)->prefix = normal;
    {
        /* Resolve once at startup; a prefix created later is resolved per request. */
        char resolved[PATH_MAX];
        config_for(cmd, mconfig)->prefix_real =
            realpath(normal, resolved) != NULL ? apr_pstrcat(cmd->pool, resolved, resolved[strlen(resolved) - 1] == '/' ? "" : "/", NULL) : NULL;
    }
    return NULL;
}

static const char *set_daemon_user(cmd_parms *cmd, void *mconfig, const char *arg)
{
    handoff_config *conf = config_for(cmd, mconfig);
    char *end = NULL;
    long uid;

    if (arg == NULL || *arg == '\0') {
        return apr_psprintf(cmd->pool, "%s needs a user name or uid", cmd->cmd->name);
    }
    errno = 0;
    uid = strtol(arg, &end, 10);
    if (errno == 0 && end != arg && *end == '\0' && uid >= 0 && uid <= INT_MAX) {
        conf->daemon_uid = (int)uid;
    } else {
        const struct passwd *pw = getpwnam(arg);
        if (pw == NULL) {
            return apr_psprintf(cmd->pool, "%s: no user named '%s'", cmd->cmd->name, arg);
        }
        conf->daemon_uid = (int)pw->pw_uid;
    }
    conf->daemon_user = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

static const command_rec handoff_commands[] = {
    AP_INIT_FLAG("SocketHandoffEnabled", set_enabled, NULL, RSRC_CONF | ACCESS_CONF,
                 "On (default) to hand off requests that ask for it; Off only strips the headers"),
    AP_INIT_TAKE1("SocketHandoffAllowedPrefix", set_prefix, NULL, RSRC_CONF | ACCESS_CONF,
                  "Directory every handoff socket must live under (default /run/)"),
    AP_INIT_TAKE1("SocketHandoffConnectTimeoutMs", set_connect_timeout, NULL, RSRC_CONF | ACCESS_CONF,
                  "Milliseconds for connecting, retries and backoff included, 1-60000 (default 100)"),
    AP_INIT_TAKE1("SocketHandoffSendTimeoutMs", set_send_timeout, NULL, RSRC_CONF | ACCESS_CONF,
                  "Milliseconds for sending the handoff once connected, 1-60000 (default 200)"),
    AP_INIT_TAKE1("SocketHandoffMaxRetries", set_max_retries, NULL, RSRC_CONF | ACCESS_CONF,
                  "Retries after a transient connect failure, 0-10 (default 2)"),
    AP_INIT_FLAG("SocketHandoffAck", set_ack, NULL, RSRC_CONF | ACCESS_CONF,
                  "On (default) to keep the client until the daemon acknowledges it, and answer 503 "
                  "when it does not; Off for the original fire-and-forget handoff"),
    AP_INIT_TAKE1("SocketHandoffDaemonUser", set_daemon_user, NULL, RSRC_CONF | ACCESS_CONF,
                  "Only hand off to a daemon running as this user (checked with SO_PEERCRED)"),
    {NULL}
};

/* ------------------------------------------------------------------------------------------
 * Socket path validation
 * ---------------------------------------------------------------------------------------- */

static int under_prefix(const char *path, const char *prefix)
{
    size_t plen = strlen(prefix);
    return strncmp(path, prefix, plen) == 0 && path[plen] != '\0';
}

/* Returns the path to connect to, or NULL (and a reason) when the path is not allowed.
 * The lexical check catches "..". When the path exists, realpath(3) resolves every symlink
 * and the result must still lie under the prefix resolved the same way; we then connect to
 * the resolved path, so a symlink swapped in after the check is not followed. */
static const char *checked_socket_path(request_rec *r, const char *requested, const char *prefix,
                                       const char *prefix_real, const char **reason)
{
    char resolved[PATH_MAX];
    const char *normal;
    const char *cursor;
    struct sockaddr_un probe;

    for (cursor = requested; *cursor != '\0'; cursor++) {
        if ((unsigned char)*cursor < 0x20 || *cursor == 0x7f) {
            *reason = "contains a control character";
            return NULL;
        }
    }
    if (requested[0] != '/') {
        *reason = "is not absolute";
        return NULL;
    }
    normal = normalise_path(r->pool, requested);
    if (normal == NULL || !under_prefix(normal, prefix)) {
        *reason = "is outside the allowed prefix";
        return NULL;
    }
    if (realpath(normal, resolved) != NULL) {
        char resolved_prefix[PATH_MAX];
        if (prefix_real != NULL) {
            apr_cpystrn(resolved_prefix, prefix_real, sizeof(resolved_prefix));
        } else {
            size_t len;
            if (realpath(prefix, resolved_prefix) == NULL) {
                *reason = "exists but the allowed prefix cannot be resolved";
                return NULL;
            }
            len = strlen(resolved_prefix);
            if (len == 0 || resolved_prefix[len - 1] != '/') {
                if (len + 1 >= sizeof(resolved_prefix)) {
                    *reason = "has an over-long prefix";
                    return NULL;
                }
                resolved_prefix[len] = '/';
                resolved_prefix[len + 1] = '\0';
            }
        }
        if (!under_prefix(resolved, resolved_prefix)) {
            *reason = "resolves (through a symlink) outside the allowed prefix";
            return NULL;
        }
        normal = apr_pstrdup(r->pool, resolved);
    }
    if (strlen(normal) >= sizeof(probe.sun_path)) {
        *reason = "is too long for a Unix socket";
        return NULL;
    }
    return normal;
}

/* ------------------------------------------------------------------------------------------
 * Connecting and sending, all under one deadline
 * ---------------------------------------------------------------------------------------- */

static int remaining_ms(apr_time_t deadline)
{
    apr_time_t left = deadline - apr_time_now();
    if (left <= 0) return 0;
    return (int)((left + 999) / 1000);
}

static int is_transient(int error)
{
    /* ENOENT: the daemon is (re)starting; ECONNREFUSED: stale socket, daemon not yet
     * listening; EAGAIN: Linux's answer to a full SEQPACKET listen backlog. */
    return error == ENOENT || error == ECONNREFUSED || error == EAGAIN;
}

/* Waits for `events` on fd until the deadline. Returns 0, or an errno value. */
static int wait_for(int fd, short events, apr_time_t deadline)
{
    for (;;) {
        struct pollfd pfd;
        int ready;
        int timeout = remaining_ms(deadline);
        if (timeout == 0) return ETIMEDOUT;
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        ready = poll(&pfd, 1, timeout);
        if (ready > 0) return 0;
        if (ready == 0) return ETIMEDOUT;
        if (errno != EINTR) return errno;
    }
}

/* The acknowledged handoff (README, "Acknowledged handoff"). The module asks for it by binding
 * its end of the Unix connection to an abstract address that starts with ACK_MARKER; the daemon
 * sees the address in accept(2) (an original daemon never looks) and answers the record with
 * one byte: ACK_BYTE once it owns the client, NAK_BYTE when the record was unusable. */
#define ACK_MARKER "socket-handoff-ack.1."
#define ACK_BYTE 0x06
#define NAK_BYTE 0x15
#ifndef ACK_SPIN_US
#define ACK_SPIN_US 200
#endif

static apr_uint32_t ack_sequence;

/* Binds fd to "\0" ACK_MARKER "<pid>.<thread>.<n>", unique in this network namespace.
 * Returns 0 or an errno value. */
static int bind_ack_marker(int fd)
{
    int attempt;
    for (attempt = 0; attempt < 4; attempt++) {
        struct sockaddr_un addr;
        int length;
        memset(&addr, 0, sizeof(addr));
        addr.sun_family = AF_UNIX;
        length = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, ACK_MARKER "%ld.%lu.%u", (long)getpid(),
                          (unsigned long)apr_os_thread_current(), (unsigned)apr_atomic_inc32(&ack_sequence));
        if (length < 0 || (size_t)length >= sizeof(addr.sun_path) - 1) return ENAMETOOLONG;
        if (bind(fd, (const struct sockaddr *)&addr,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)length)) == 0) {
            return 0;
        }
        if (errno != EADDRINUSE) return errno;
    }
    return EADDRINUSE;
}

/* What connecting produced: a descriptor, or why there is none. */
typedef struct {
    const char *path;    /* the checked path of the last attempt */
    const char *refusal; /* set when the path was refused (answer 403) */
    int error;           /* errno of the last failure */
    int attempts;
    int ack_requested;   /* the connection carries the ack marker */
    int ack_error;       /* errno when the marker could not be bound (then no ack is asked) */
} connect_result;

/* One connection attempt. Returns a connected descriptor, or -1 with out->error set. */
static int connect_once(const struct sockaddr_un *addr, int want_ack, apr_time_t deadline, connect_result *out)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        out->error = errno;
        return -1;
    }
    out->ack_requested = 0;
    if (want_ack) {
        out->ack_error = bind_ack_marker(fd);
        out->ack_requested = out->ack_error == 0;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) return fd;
    out->error = errno;
    if (out->error == EINPROGRESS || out->error == EINTR) {
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        out->error = wait_for(fd, POLLOUT, deadline);
        if (out->error == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) out->error = errno;
        if (out->error == 0) out->error = so_error;
        if (out->error == 0) return fd;
    }
    close(fd);
    return -1;
}

/* Connects with retries and exponential backoff, never past connect_deadline. The path is
 * checked again before every attempt, so a symlink planted between attempts is refused.
 * Returns a connected descriptor or -1 (out->refusal or out->error says why). */
static int connect_with_retries(request_rec *r, const char *requested, const handoff_config *conf,
                                apr_time_t connect_deadline, connect_result *out)
{
    apr_interval_time_t backoff = apr_time_from_msec(FIRST_BACKOFF_MS);

    for (;;) {
        struct sockaddr_un addr;
        int fd;
        apr_interval_time_t left;

        out->path = checked_socket_path(r, requested, conf->prefix, conf->prefix_real, &out->refusal);
        if (out->path == NULL) return -1;
        memset(&addr, 0, sizeof(addr));
        addr.sun_family = AF_UNIX;
        apr_cpystrn(addr.sun_path, out->path, sizeof(addr.sun_path));
        out->attempts++;
        fd = connect_once(&addr, conf->ack, connect_deadline, out);
        if (fd >= 0) return fd;
        if (!is_transient(out->error) || out->attempts > conf->max_retries) return -1;
        left = connect_deadline - apr_time_now();
        if (left <= 0) {
            out->error = ETIMEDOUT;
            return -1;
        }
        apr_sleep(backoff < left ? backoff : left);
        backoff *= 2;
        if (apr_time_now() >= connect_deadline) {
            out->error = ETIMEDOUT;
            return -1;
        }
    }
}

/* Sends the payload with the client descriptor attached. Returns 0 or an errno value; on
 * any error nothing was sent (SEQPACKET messages are atomic). */
static int send_handoff(int sock, const char *payload, size_t length, int client_fd, apr_time_t deadline)
{
    struct msghdr msg;
    struct iovec iov;
    union {
        struct cmsghdr align;
        char buffer[CMSG_SPACE(sizeof(int))];
    } control;
    struct cmsghdr *cmsg;

    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    iov.iov_base = (void *)payload;
    iov.iov_len = length;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buffer;
    msg.msg_controllen = sizeof(control.buffer);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &client_fd, sizeof(int));

    for (;;) {
        int rc;
        if (sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
        rc = wait_for(sock, POLLOUT, deadline);
        if (rc != 0) return rc;
    }
}

/* How an acknowledged handoff ended (the same table as HandoffAckExchange in Swift). */
typedef enum {
    ACK_COMMITTED,     /* the daemon acknowledged: it owns the client */
    ACK_LEGACY_DAEMON, /* clean close without a byte: an original daemon read and took it */
    ACK_REFUSED,       /* the daemon refused the record and closed the client unanswered */
    ACK_NOT_TAKEN      /* the daemon died, hung or was too slow: it will never write */
} ack_outcome;

typedef enum { SEEN_ACK, SEEN_NAK, SEEN_OTHER, SEEN_EOF, SEEN_FAILURE, SEEN_NOTHING } ack_event;

static ack_event seen_byte(unsigned char byte)
{
    return byte == ACK_BYTE ? SEEN_ACK : byte == NAK_BYTE ? SEEN_NAK : SEEN_OTHER;
}

/* One look at the connection, waiting until `deadline` (0: not at all). */
static ack_event look_for_ack(int sock, apr_time_t deadline)
{
    for (;;) {
        unsigned char byte = 0;
        ssize_t count;
        if (deadline != 0 && wait_for(sock, POLLIN, deadline) != 0) return SEEN_NOTHING;
        count = recv(sock, &byte, 1, MSG_DONTWAIT);
        if (count == 1) return seen_byte(byte);
        if (count == 0) {
            /* Linux checks a SEQPACKET socket's queue, lets go of it, then checks for the
             * peer's shutdown: a daemon that answers and closes between the two makes this
             * read report the end with the answer queued. Once the end shows, everything sent
             * before it is queued, so a second look is definitive. */
            return recv(sock, &byte, 1, MSG_DONTWAIT) == 1 ? seen_byte(byte) : SEEN_EOF;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return SEEN_FAILURE;
        if (deadline == 0) return SEEN_NOTHING;
    }
}

/* Waits for the daemon's answer to a record that asked for one. With no answer by the deadline
 * the connection is shut down (from then on the daemon's ack fails with EPIPE and it closes its
 * copy unwritten) and looked at once more: an ack queued before the shutdown still counts. */
static ack_outcome await_ack(int sock, apr_time_t deadline)
{
    ack_event first = SEEN_NOTHING;
    /* A healthy daemon answers within tens of microseconds: look without sleeping for a
     * moment first, since going to sleep in poll(2) and being woken again costs about as much
     * as the answer itself on a busy or virtualised host. Between looks the core goes to
     * whatever else is runnable on it (often the daemon's thread that is about to answer). */
    apr_time_t spin_until = apr_time_now() + ACK_SPIN_US;
    while (first == SEEN_NOTHING && apr_time_now() < spin_until) {
        first = look_for_ack(sock, 0);
        if (first == SEEN_NOTHING) sched_yield();
    }
    if (first == SEEN_NOTHING) first = look_for_ack(sock, deadline);
    switch (first) {
    case SEEN_ACK: return ACK_COMMITTED;
    case SEEN_NAK: return ACK_REFUSED;
    case SEEN_EOF: return ACK_LEGACY_DAEMON;
    case SEEN_NOTHING: break;
    default: return ACK_NOT_TAKEN; /* ECONNRESET: the daemon died with the record unread */
    }
    shutdown(sock, SHUT_RDWR);
    return look_for_ack(sock, 0) == SEEN_ACK ? ACK_COMMITTED : ACK_NOT_TAKEN;
}

static int peer_is(int sock, int uid, int *actual)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        *actual = -1;
        return 0;
    }
    *actual = (int)cred.uid;
    return (int)cred.uid == uid;
}

/* ------------------------------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------------------------- */

static void strip_handoff_headers(request_rec *r)
{
    apr_table_unset(r->headers_out, HDR_SOCKET);
    apr_table_unset(r->headers_out, HDR_DATA);
    apr_table_unset(r->err_headers_out, HDR_SOCKET);
    apr_table_unset(r->err_headers_out, HDR_DATA);
}

/* Replaces whatever the application produced with a small HTML error page. */
static apr_status_t send_error(ap_filter_t *f, int status, const char *explanation)
{
    request_rec *r = f->r;
    conn_rec *c = r->connection;
    apr_bucket_brigade *out = apr_brigade_create(r->pool, c->bucket_alloc);
    const char *line = ap_get_status_line(status);
    const char *body = apr_psprintf(r->pool,
                                    "<!DOCTYPE html>\n<html><head><title>%s</title></head>"
                                    "<body><h1>%s</h1><p>%s</p></body></html>\n",
                                    line + 4, line + 4, explanation);
    size_t length = strlen(body);

    r->status = status;
    r->status_line = line;
    apr_table_unset(r->headers_out, "Content-Length");
    apr_table_unset(r->headers_out, "Content-Encoding");
    apr_table_unset(r->headers_out, "Last-Modified");
    apr_table_unset(r->headers_out, "ETag");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_set_content_length(r, (apr_off_t)length);
    if (status == HTTP_SERVICE_UNAVAILABLE) apr_table_setn(r->headers_out, "Retry-After", "1");
    r->connection->keepalive = AP_CONN_CLOSE;

    if (r->header_only) {
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(c->bucket_alloc));
    } else {
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_pool_create(body, length, r->pool, c->bucket_alloc));
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(c->bucket_alloc));
    }
    return ap_pass_brigade(f->next, out);
}

/* ------------------------------------------------------------------------------------------
 * The filter
 * ---------------------------------------------------------------------------------------- */

/* The handoff proper, with a stand-in ready. Returns OK when the connection now belongs to
 * the daemon, or the HTTP status to answer with (the daemon will not write in that case). */
static int hand_off_with(request_rec *r, const handoff_config *conf, const char *requested, const char *data,
                         int standin, const char **explanation)
{
    conn_rec *c = r->connection;
    apr_socket_t *csd = ap_get_conn_socket(c);
    apr_os_sock_t client_fd = -1;
    apr_time_t start = apr_time_now();
    apr_time_t connect_deadline = start + apr_time_from_msec(conf->connect_timeout_ms);
    apr_time_t deadline = connect_deadline + apr_time_from_msec(conf->send_timeout_ms);
    /* A lone NUL when there is no (or an empty) data header: a zero-length SEQPACKET record
     * reads like end-of-stream to a daemon. */
    const char *payload = data != NULL && data[0] != '\0' ? data : "";
    size_t length = data != NULL && data[0] != '\0' ? strlen(data) : 1;
    connect_result link;
    ack_outcome acked = ACK_LEGACY_DAEMON;
    int sock;
    int error;
    int peer = -1;

    *explanation = "The streaming service is unavailable. Please retry shortly.";
    if (r->proto_num >= 2000 || c->master != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "socket handoff refused on an HTTP/2 request: its connection carries other streams");
        *explanation = "This request cannot be handed off over HTTP/2.";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ap_ssl_conn_is_ssl(c)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "socket handoff refused on a TLS connection: the daemon would write plaintext "
                      "into it; terminate TLS in front of this server or serve this route over HTTP");
        *explanation = "This request cannot be handed off over TLS.";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (csd == NULL || apr_os_sock_get(&client_fd, csd) != APR_SUCCESS || client_fd < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "socket handoff: the client socket is not available");
        *explanation = "The server could not hand off this request.";
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    memset(&link, 0, sizeof(link));
    sock = connect_with_retries(r, requested, conf, connect_deadline, &link);
    if (sock < 0 && link.refusal != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "socket handoff refused: socket path '%s' %s (prefix %s)",
                      requested, link.refusal, conf->prefix);
        *explanation = "The handoff target is not allowed.";
        return HTTP_FORBIDDEN;
    }
    if (sock < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, link.error, r,
                      "socket handoff: daemon at %s unreachable after %d attempt(s) in %" APR_TIME_T_FMT " ms",
                      link.path, link.attempts, apr_time_as_msec(apr_time_now() - start));
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (conf->ack && !link.ack_requested) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, link.ack_error, r,
                      "socket handoff: cannot ask %s for an acknowledgement; handing off without one", link.path);
    }
    if (conf->daemon_uid != UNSET && !peer_is(sock, conf->daemon_uid, &peer)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "socket handoff refused: %s is served by uid %d, not SocketHandoffDaemonUser %s",
                      link.path, peer, conf->daemon_user);
        close(sock);
        return HTTP_SERVICE_UNAVAILABLE;
    }

    error = send_handoff(sock, payload, length, client_fd, deadline);
    if (error == 0 && link.ack_requested) acked = await_ack(sock, deadline);
    close(sock);
    if (error == EMSGSIZE) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, error, r,
                      "socket handoff: %lu bytes of X-Handoff-Data do not fit one record for %s",
                      (unsigned long)length, link.path);
        *explanation = "The request is too large to be handed off.";
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    if (error != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, error, r, "socket handoff: sending to %s failed (%lu bytes)",
                      link.path, (unsigned long)length);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (acked == ACK_REFUSED) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "socket handoff: the daemon at %s refused the record", link.path);
        *explanation = "The server could not hand off this request.";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (acked == ACK_NOT_TAKEN) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "socket handoff: the daemon at %s did not take the connection within %" APR_TIME_T_FMT " ms",
                      link.path, apr_time_as_msec(apr_time_now() - start));
        return HTTP_SERVICE_UNAVAILABLE;
    }

    /* Committed: the daemon owns the connection. Point our descriptor number at the dead
     * stand-in so Apache's own close/shutdown cannot reach the client. */
    while (dup2(standin, client_fd) < 0 && errno == EINTR) {
    }
    c->aborted = 1;
    c->keepalive = AP_CONN_CLOSE;
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "socket handoff to %s (%lu bytes of data, %d attempt(s), %s, %" APR_TIME_T_FMT " us)", link.path,
                  (unsigned long)(payload[0] != '\0' ? length : 0), link.attempts,
                  acked == ACK_COMMITTED ? "acknowledged" : "unacknowledged", apr_time_now() - start);
    return OK;
}

/* Performs the handoff. Returns OK when the connection now belongs to the daemon, or the
 * HTTP status to answer with (nothing has left the process in that case). */
static int hand_off(request_rec *r, const handoff_config *conf, const char *requested, const char *data,
                    const char **explanation)
{
    int standin = standin_fd;
    int status;

    /* The stand-in first: once the descriptor may have left, nothing else may fail. */
    if (standin < 0 && (standin = make_standin()) < 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, errno, r, "socket handoff: cannot create stand-in socket");
        *explanation = "The server could not hand off this request.";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    status = hand_off_with(r, conf, requested, data, standin, explanation);
    if (standin != standin_fd) close(standin);
    return status;
}

static apr_status_t handoff_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    filter_ctx *ctx = f->ctx;
    const char *requested;
    const char *data;
    const char *explanation = NULL;
    handoff_config conf;
    int status;

    if (ctx != NULL) {
        apr_brigade_cleanup(bb);
        return APR_SUCCESS;
    }

    requested = apr_table_get(r->headers_out, HDR_SOCKET);
    if (requested == NULL) requested = apr_table_get(r->err_headers_out, HDR_SOCKET);
    data = apr_table_get(r->headers_out, HDR_DATA);
    if (data == NULL) data = apr_table_get(r->err_headers_out, HDR_DATA);
    if (requested == NULL) {
        if (data != NULL) strip_handoff_headers(r);
        ap_remove_output_filter(f);
        return ap_pass_brigade(f->next, bb);
    }
    /* Copy before stripping: the table owns the strings. */
    requested = apr_pstrdup(r->pool, requested);
    data = data != NULL ? apr_pstrdup(r->pool, data) : NULL;
    strip_handoff_headers(r);

    conf = effective_config(r);
    if (!conf.enabled) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "socket handoff requested but SocketHandoffEnabled is Off here; headers stripped");
        ap_remove_output_filter(f);
        return ap_pass_brigade(f->next, bb);
    }

    ctx = f->ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->state = STATE_DISCARD;
    apr_brigade_cleanup(bb); /* the application's body never reaches the client */

    if (r->header_only) {
        /* HEAD: the daemon cannot know the method and would send a body. Answer with the
         * head a streamed GET would get, without handing off. */
        apr_bucket_brigade *out = apr_brigade_create(r->pool, r->connection->bucket_alloc);
        apr_table_unset(r->headers_out, "Content-Length");
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        ap_set_content_type(r, "text/event-stream");
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(r->connection->bucket_alloc));
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "socket handoff: HEAD request answered without a handoff");
        return ap_pass_brigade(f->next, out);
    }

    status = hand_off(r, &conf, requested, data, &explanation);
    if (status == OK) return APR_SUCCESS;
    return send_error(f, status, explanation);
}

/* Runs just before the HTTP header filter: whatever a later content filter (mod_headers'
 * "Header always set", say) added, the handoff headers never reach the client. */
static apr_status_t strip_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    strip_handoff_headers(f->r);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void insert_filter(request_rec *r)
{
    /* Main requests only; a subrequest's headers are not the response's. */
    if (r->main != NULL) return;
    ap_add_output_filter(HANDOFF_FILTER, NULL, r, r->connection);
    ap_add_output_filter(STRIP_FILTER, NULL, r, r->connection);
}

static void insert_error_filter(request_rec *r)
{
    if (r->main != NULL) return;
    ap_add_output_filter(STRIP_FILTER, NULL, r, r->connection);
}

static void child_init(apr_pool_t *p, server_rec *s)
{
    (void)p;
    standin_fd = make_standin();
    if (standin_fd < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, "socket handoff: no stand-in socket; making one per handoff");
    }
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(HANDOFF_FILTER, handoff_filter, NULL, AP_FTYPE_CONTENT_SET);
    ap_register_output_filter(STRIP_FILTER, strip_filter, NULL, (ap_filter_type)(AP_FTYPE_PROTOCOL - 1));
    ap_hook_insert_filter(insert_filter, NULL, NULL, APR_HOOK_LAST);
    ap_hook_insert_error_filter(insert_error_filter, NULL, NULL, APR_HOOK_LAST);
}

AP_DECLARE_MODULE(socket_handoff) = {
    STANDARD20_MODULE_STUFF,
    create_config,        /* per-directory config */
    merge_config,         /* merge per-directory */
    create_server_config, /* per-server config */
    merge_config,         /* merge per-server */
    handoff_commands,
    register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_NONE
#endif
};
