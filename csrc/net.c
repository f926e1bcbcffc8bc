/*
 * Networking: resolve, connect with a deadline, wait for readiness, and the
 * BIO that carries TLS records over the socket.
 *
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
 * the peer has gone; a library must not kill its host process nor change its
 * signal dispositions, so our BIO sends with MSG_NOSIGNAL instead.
 */
#define _GNU_SOURCE
#include "tlscache.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int tc_net_wait(int fd, int forwrite, double deadline) {
  struct pollfd p;
  int r;
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      double left = deadline - tc_now();
      if (left <= 0) return 0;
      /* settimeout(math.huge) and the like: converting a double beyond
       * INT_MAX to int is undefined; poll at most ~24 days, then loop */
      ms = left * 1000.0 < (double)INT_MAX ? (int)ceil(left * 1000.0) : INT_MAX;
    }
    p.fd = fd;
    p.events = forwrite ? POLLOUT : POLLIN;
    p.revents = 0;
    r = poll(&p, 1, ms);
    if (r > 0) return 1;               /* errors and hang-ups surface on the next call */
    if (r < 0 && errno != EINTR) return -1;
    if (r == 0 && deadline >= 0 && tc_now() >= deadline) return 0;
  }
}

/* One address: returns the socket, or -1 with *e set (e->code "timeout"
 * means the deadline passed and no other address is worth trying). */
static int connect_one(const struct addrinfo *ai, double deadline, tc_err *e) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  int one = 1, err = 0, r;
  socklen_t len = sizeof err;
  if (fd < 0) {
    tc_seterr(e, "connect", "%s", strerror(errno));
    return -1;
  }
  /* handshakes are small request/response flights: Nagle only adds delay */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  do r = connect(fd, ai->ai_addr, ai->ai_addrlen); while (r < 0 && errno == EINTR);
  if (r == 0) return fd;
  if (errno != EINPROGRESS) {
    tc_seterr(e, "connect", "%s", strerror(errno));
    close(fd);
    return -1;
  }
  r = tc_net_wait(fd, 1, deadline);
  if (r == 0) {
    tc_seterr(e, "timeout", "connection timed out");
    close(fd);
    return -1;
  }
  if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err != 0) {
    tc_seterr(e, "connect", "%s", strerror(err));
    close(fd);
    return -1;
  }
  return fd;
}

int tc_net_connect(const char *host, int port, double deadline, tc_err *e) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  int r, fd = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(service, sizeof service, "%d", port);
  /* getaddrinfo cannot be interrupted: its time is bounded by the system
   * resolver's own timeouts (resolv.conf), not by `deadline` */
  r = getaddrinfo(host, service, &hints, &res);
  if (r != 0) {
    tc_seterr(e, "resolve", "%s: %s", host, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return -1;
  }
  tc_seterr(e, "connect", "%s: no address", host);
  for (ai = res; ai; ai = ai->ai_next) {
    if (deadline >= 0 && tc_now() >= deadline) {
      tc_seterr(e, "timeout", "connection timed out");
      break;
    }
    fd = connect_one(ai, deadline, e);
    if (fd >= 0 || strcmp(e->code, "timeout") == 0) break;
  }
  freeaddrinfo(res);
  return fd;
}

/* ---- the socket BIO ---- */

typedef struct sockbio {
  int fd;
  int eof;                     /* the last read saw end of stream */
} sockbio;

/* Shared by every Lua state that loaded the module (each holds one
 * reference through its sentinel, module.c) and by every live BIO (each
 * holds one too, so a connection that outlives a reloaded module's sentinel
 * still finds it); freed with the last user (lua_close unloads the library,
 * so a process-lifetime object would leak). The lock: Lua states may live
 * in several threads. */
static BIO_METHOD *bio_method;
static int bio_users;
static pthread_mutex_t bio_lock = PTHREAD_MUTEX_INITIALIZER;

static int sb_write(BIO *b, const char *buf, int len) {
  sockbio *sb = (sockbio *)BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  do n = send(sb->fd, buf, (size_t)len, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return -1;
  }
  return (int)n;
}

static int sb_read(BIO *b, char *buf, int len) {
  sockbio *sb = (sockbio *)BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  if (buf == NULL || len <= 0) return 0;
  do n = recv(sb->fd, buf, (size_t)len, 0); while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    return -1;
  }
  if (n == 0) sb->eof = 1;
  return (int)n;
}

static int sb_puts(BIO *b, const char *s) { return sb_write(b, s, (int)strlen(s)); }

static long sb_ctrl(BIO *b, int cmd, long num, void *ptr) {
  sockbio *sb = (sockbio *)BIO_get_data(b);
  (void)num;
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return sb && sb->eof;   /* lets OpenSSL tell EOF from errors */
    case BIO_C_GET_FD:
      if (sb == NULL) return -1;
      if (ptr) *(int *)ptr = sb->fd;
      return sb->fd;
    default: return 0;
  }
}

static int sb_create(BIO *b) {
  BIO_set_data(b, NULL);
  BIO_set_init(b, 0);
  return 1;
}

static int sb_destroy(BIO *b) {
  OPENSSL_free(BIO_get_data(b));   /* the socket is not ours to close */
  BIO_set_data(b, NULL);
  return 1;
}

void tc_net_done(void) {
  pthread_mutex_lock(&bio_lock);
  if (bio_users > 0 && --bio_users == 0) {
    BIO_meth_free(bio_method);
    bio_method = NULL;
  }
  pthread_mutex_unlock(&bio_lock);
}

int tc_net_init(void) {
  int ok = 1;
  pthread_mutex_lock(&bio_lock);
  if (bio_method) {
    bio_users++;
  } else {
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                              "tlscache socket");
    if (bio_method == NULL) {
      ok = 0;
    } else {
      BIO_meth_set_write(bio_method, sb_write);
      BIO_meth_set_read(bio_method, sb_read);
      BIO_meth_set_puts(bio_method, sb_puts);
      BIO_meth_set_ctrl(bio_method, sb_ctrl);
      BIO_meth_set_create(bio_method, sb_create);
      BIO_meth_set_destroy(bio_method, sb_destroy);
      bio_users = 1;
    }
  }
  pthread_mutex_unlock(&bio_lock);
  return ok;
}

BIO *tc_net_bio(int fd) {
  BIO *b;
  sockbio *sb;
  if (!tc_net_init()) return NULL;     /* the BIO's reference on the method */
  sb = (sockbio *)OPENSSL_zalloc(sizeof *sb);
  b = sb ? BIO_new(bio_method) : NULL;
  if (b == NULL) {
    OPENSSL_free(sb);
    tc_net_done();
    return NULL;
  }
  sb->fd = fd;
  BIO_set_data(b, sb);             /* b owns sb */
  BIO_set_init(b, 1);
  return b;
}
