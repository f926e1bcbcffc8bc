/*
 * tcserver.c - a small OpenSSL TLS server for the hardening specs: it does
 * on purpose what servers do that broke other client session caches, and
 * what openssl s_server cannot be told to do.
 *
 *   tcserver -accept PORT -cert FILE -key FILE [options]
 *
 *   -tls 1.2|1.3        only that version (default: both)
 *   -num_tickets N      TLS 1.3 tickets sent right after the handshake (default 2)
 *   -late N             TLS 1.3 tickets sent after the response ...
 *   -late_delay MS      ... this many milliseconds after it (default 0)
 *   -lifetime S         session timeout, which is also the ticket lifetime
 *                       hint the server sends; 0 (RFC 8446: "discard at
 *                       once") only with -tls 1.3, and with stateful tickets
 *   -no_ticket          SSL_OP_NO_TICKET (TLS 1.2 session IDs, TLS 1.3 stateful)
 *   -ticket_key STRING  ticket keys derived from STRING, so that tickets
 *                       survive a restart of the server
 *   -renew              ask for a new ticket on each ticket resumption
 *                       (the ticket key callback returns 2; TLS 1.2 renews)
 *   -alpn LIST          comma separated, chosen by the server's order
 *   -no_close_notify    end connections without close_notify (TCP FIN only)
 *   -anti_replay        TLS 1.3: accept each ticket once (OpenSSL's anti-replay)
 *   -fail_resumed       accept a resumption, then break the handshake: the
 *                       first encrypted record of the server's flight gets a
 *                       flipped bit (the client sees a bad record MAC)
 *   -flood S            after the handshake, send 'x' as fast as the client
 *                       takes it for S seconds (no request, no answer)
 *   -sink MS            after the handshake, read nothing for MS ms, then
 *                       read to the end and print "sink BYTES RUNS", RUNS
 *                       being the bytes as runs "A*3948544,B*1032192"
 *   -answer             with -sink: whenever nothing has come for 200 ms,
 *                       answer "got BYTES\n" (the bytes read so far)
 *
 * Listens on 127.0.0.1 only, serves one connection at a time, prints ACCEPT
 * once it listens and one line per connection:
 *   conn N reused=0|1 proto=TLSv1.3 sni=NAME alpn=PROTO corrupted=0|1
 * Each request (read up to an empty line) gets an HTTP/1.0 answer whose body
 * says "Reused, TLSv1.3" or "New, TLSv1.3", as openssl s_server -www does.
 *
 * Every write goes through a memory BIO that we empty into the socket, which
 * is what lets -fail_resumed change bytes on the wire.
 *
 * Build: cc -O1 -g spec/tools/tcserver.c -o tcserver -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

static struct {
  int port, tls, num_tickets, late, late_delay, no_ticket, renew;
  long lifetime;               /* -1: OpenSSL's default */
  int no_close_notify, fail_resumed, anti_replay, flood, sink, answer;
  const char *cert, *key, *ticket_key;
  unsigned char alpn[256];
  size_t alpnlen;
} opt = { 0, 0, 2, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, { 0 }, 0 };

static unsigned char tk_name[16], tk_aes[32], tk_hmac[32];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stdout, "tcserver: %s\n", what);
  ERR_print_errors_fp(stdout);
  fflush(stdout);
  exit(1);
}

/* ---- one connection ---- */

typedef struct {
  int fd;
  SSL *ssl;
  BIO *out;                    /* memory BIO: everything the SSL writes */
  double deadline;
  int handshaked, corrupted, failed;
} conn;

static int wait_fd(conn *c, short events) {
  struct pollfd p;
  double left = c->deadline - now();
  if (left <= 0) return 0;
  p.fd = c->fd;
  p.events = events;
  p.revents = 0;
  return poll(&p, 1, (int)(left * 1000) + 1) > 0;
}

/* -fail_resumed: in the server's first flight of a resumed handshake, the
 * ServerHello record comes first, then maybe a ChangeCipherSpec; the next
 * record is encrypted (TLS 1.2: Finished, TLS 1.3: EncryptedExtensions).
 * Flip the last bit of it: part of the MAC or AEAD tag. */
static void corrupt(conn *c, unsigned char *p, size_t n) {
  size_t pos = 0;
  int rec = 0;
  while (pos + 5 <= n) {
    size_t len = ((size_t)p[pos + 3] << 8) | p[pos + 4];
    if (pos + 5 + len > n) break;
    if (rec > 0 && p[pos] != 20 && len > 0) {
      p[pos + 5 + len - 1] ^= 1;
      c->corrupted = 1;
      return;
    }
    rec++;
    pos += 5 + len;
  }
}

/* Write what the SSL produced to the socket. */
static int flush_out(conn *c) {
  char *data;
  long n = BIO_get_mem_data(c->out, &data);
  size_t off = 0;
  if (n <= 0) return 1;
  if (opt.fail_resumed && !c->handshaked && !c->corrupted && SSL_session_reused(c->ssl))
    corrupt(c, (unsigned char *)data, (size_t)n);
  while (off < (size_t)n) {
    ssize_t w = send(c->fd, data + off, (size_t)n - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(c, POLLOUT)) break;
    } else {
      break;
    }
  }
  (void)BIO_reset(c->out);
  return off == (size_t)n;
}

/* After an SSL call: flush, then wait as it asks. 1: call it again. */
static int again(conn *c, int r) {
  int err = SSL_get_error(c->ssl, r);
  if (!flush_out(c)) return 0;
  if (err == SSL_ERROR_WANT_READ) return wait_fd(c, POLLIN);
  if (err == SSL_ERROR_WANT_WRITE) return 1;
  return 0;
}

/* -flood: write until the time is up or the client is gone */
static void flood(conn *c) {
  char chunk[16384];
  double end = now() + opt.flood;
  int r;
  memset(chunk, 'x', sizeof chunk);
  c->deadline = end + 5;
  while (now() < end) {
    r = SSL_write(c->ssl, chunk, (int)sizeof chunk);
    if (r <= 0 && !again(c, r)) return;
    if (!flush_out(c)) return;
  }
}

/* -sink: late reader; the log line shows what came, in order */
static void sink(conn *c) {
  char buf[16384], runs[4096] = "";
  size_t total = 0, len = 0, rl = 0, answered = 0;
  int cur = -1, r;
  usleep((useconds_t)opt.sink * 1000);
  c->deadline = now() + 10;
  for (;;) {
    int i;
    r = SSL_read(c->ssl, buf, sizeof buf);
    if (r <= 0) {
      struct pollfd p;
      p.fd = c->fd;
      p.events = POLLIN;
      p.revents = 0;
      if (opt.answer && total != answered && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ &&
          poll(&p, 1, 200) == 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "got %zu\n", total);
        if (SSL_write(c->ssl, line, n) != n || !flush_out(c)) break;
        answered = total;
        continue;
      }
      if (!again(c, r)) break;
      continue;
    }
    for (i = 0; i < r; i++) {
      if (buf[i] != cur) {
        if (cur >= 0) rl += (size_t)snprintf(runs + rl, rl < sizeof runs ? sizeof runs - rl : 0,
                                             "%s%c*%zu", rl ? "," : "", cur, len);
        cur = (unsigned char)buf[i];
        len = 0;
      }
      len++;
    }
    total += (size_t)r;
  }
  if (cur >= 0) rl += (size_t)snprintf(runs + rl, rl < sizeof runs ? sizeof runs - rl : 0,
                                       "%s%c*%zu", rl ? "," : "", cur, len);
  printf("sink %zu %s\n", total, runs);
}

static void serve(SSL_CTX *ctx, int fd, int n) {
  conn c;
  char req[8192], proto[32];
  size_t got = 0;
  const unsigned char *alpn = NULL;
  unsigned int alpnlen = 0;
  const char *sni;
  int r;
  memset(&c, 0, sizeof c);
  c.fd = fd;
  c.deadline = now() + 5;
  c.ssl = SSL_new(ctx);
  c.out = BIO_new(BIO_s_mem());
  if (c.ssl == NULL || c.out == NULL) die("SSL_new");
  SSL_set_bio(c.ssl, BIO_new_socket(fd, BIO_NOCLOSE), c.out);
  BIO_up_ref(c.out);                   /* ours too, for flush_out */
  while ((r = SSL_accept(c.ssl)) != 1)
    if (!again(&c, r)) break;
  flush_out(&c);
  if (r != 1) {
    printf("conn %d handshake failed reused=%d corrupted=%d\n", n,
           SSL_session_reused(c.ssl), c.corrupted);
    ERR_print_errors_fp(stdout);
    goto done;
  }
  c.handshaked = 1;
  SSL_get0_alpn_selected(c.ssl, &alpn, &alpnlen);
  sni = SSL_get_servername(c.ssl, TLSEXT_NAMETYPE_host_name);
  snprintf(proto, sizeof proto, "%s", SSL_get_version(c.ssl));
  printf("conn %d reused=%d proto=%s sni=%s alpn=%.*s corrupted=%d\n", n,
         SSL_session_reused(c.ssl), proto, sni ? sni : "-",
         (int)alpnlen, alpn ? (const char *)alpn : "", c.corrupted);
  fflush(stdout);
  if (opt.flood || opt.sink) {
    if (opt.flood) flood(&c); else sink(&c);
    goto done;
  }
  /* the request: up to an empty line, or the end of the stream */
  for (;;) {
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    if (got == sizeof req - 1) break;
    r = SSL_read(c.ssl, req + got, (int)(sizeof req - 1 - got));
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (!again(&c, r)) break;
  }
  if (got == 0) goto shutdown;
  {
    char page[256];
    int len = snprintf(page, sizeof page,
                       "HTTP/1.0 200 ok\r\nContent-Type: text/plain\r\n\r\n%s, %s\nalpn=%.*s\n",
                       SSL_session_reused(c.ssl) ? "Reused" : "New", proto,
                       (int)alpnlen, alpn ? (const char *)alpn : "");
    while ((r = SSL_write(c.ssl, page, len)) <= 0)
      if (!again(&c, r)) goto done;
    flush_out(&c);
  }
  if (opt.late > 0) {
    int i;
    if (opt.late_delay > 0) usleep((useconds_t)opt.late_delay * 1000);
    for (i = 0; i < opt.late; i++) SSL_new_session_ticket(c.ssl);
    while ((r = SSL_do_handshake(c.ssl)) != 1)
      if (!again(&c, r)) break;
    flush_out(&c);
  }
shutdown:
  if (opt.no_close_notify) {
    /* as if close_notify had been exchanged: our own cache keeps the session */
    SSL_set_shutdown(c.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  } else {
    SSL_shutdown(c.ssl);
    flush_out(&c);
  }
  shutdown(fd, SHUT_WR);
  /* and close at once: the next client may be waiting (connections opened
   * back to back), and everything the client sent was read */
done:
  fflush(stdout);
  SSL_free(c.ssl);
  BIO_free(c.out);
  close(fd);
  ERR_clear_error();
}

/* ---- callbacks ---- */

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  (void)s;
  (void)arg;
  if (SSL_select_next_proto((unsigned char **)out, outlen, opt.alpn, (unsigned)opt.alpnlen,
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  return SSL_TLSEXT_ERR_OK;
}

/* The lifetime hint OpenSSL writes is the session's timeout. */
static int gen_ticket_cb(SSL *s, void *arg) {
  (void)arg;
  if (opt.lifetime >= 0) SSL_SESSION_set_timeout(SSL_get0_session(s), opt.lifetime);
  return 1;
}

static int ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc) {
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, tk_hmac, sizeof tk_hmac);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
  params[2] = OSSL_PARAM_construct_end();
  if (enc) {
    memcpy(key_name, tk_name, 16);
    if (RAND_bytes(iv, 16) != 1) return -1;
    if (!EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, tk_aes, iv)) return -1;
    if (!EVP_MAC_CTX_set_params(hctx, params)) return -1;
    return 1;
  }
  if (memcmp(key_name, tk_name, 16) != 0) return 0;     /* not ours: full handshake */
  if (!EVP_MAC_CTX_set_params(hctx, params)) return -1;
  if (!EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, tk_aes, iv)) return -1;
  /* 2 = renew: TLS 1.3 sends new tickets after a resumption only then,
   * which is what OpenSSL's own ticket keys do */
  return opt.renew || SSL_version(s) == TLS1_3_VERSION ? 2 : 1;
}

static void derive(unsigned char *out, size_t n, const char *label, const char *secret) {
  unsigned char md[32];
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_DigestInit_ex(m, EVP_sha256(), NULL);
  EVP_DigestUpdate(m, label, strlen(label));
  EVP_DigestUpdate(m, secret, strlen(secret));
  EVP_DigestFinal_ex(m, md, NULL);
  EVP_MD_CTX_free(m);
  memcpy(out, md, n);
}

static void set_alpn(const char *list) {
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || n > 255 || opt.alpnlen + 1 + n > sizeof opt.alpn) die("bad -alpn");
    opt.alpn[opt.alpnlen++] = (unsigned char)n;
    memcpy(opt.alpn + opt.alpnlen, p, n);
    opt.alpnlen += n;
    p += n;
    if (*p == ',') p++;
  }
}

int main(int argc, char **argv) {
  SSL_CTX *ctx;
  struct sockaddr_in sa;
  int i, lfd, one = 1, n = 0;
  static const unsigned char sid_ctx[] = "tcserver";
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (ARG("-accept")) opt.port = atoi(v);
    else if (ARG("-cert")) opt.cert = v;
    else if (ARG("-key")) opt.key = v;
    else if (ARG("-tls")) opt.tls = strcmp(v, "1.2") == 0 ? 12 : 13;
    else if (ARG("-num_tickets")) opt.num_tickets = atoi(v);
    else if (ARG("-late")) opt.late = atoi(v);
    else if (ARG("-late_delay")) opt.late_delay = atoi(v);
    else if (ARG("-lifetime")) opt.lifetime = atol(v);
    else if (ARG("-ticket_key")) opt.ticket_key = v;
    else if (ARG("-alpn")) set_alpn(v);
    else if (ARG("-flood")) opt.flood = atoi(v);
    else if (ARG("-sink")) opt.sink = atoi(v);
    else if (strcmp(a, "-answer") == 0) opt.answer = 1;
    else if (strcmp(a, "-no_ticket") == 0) opt.no_ticket = 1;
    else if (strcmp(a, "-renew") == 0) opt.renew = 1;
    else if (strcmp(a, "-no_close_notify") == 0) opt.no_close_notify = 1;
    else if (strcmp(a, "-fail_resumed") == 0) opt.fail_resumed = 1;
    else if (strcmp(a, "-anti_replay") == 0) opt.anti_replay = 1;
    else {
      fprintf(stdout, "tcserver: bad argument %s\n", a);
      return 2;
    }
#undef ARG
  }
  if (!opt.port || !opt.cert || !opt.key) die("usage: tcserver -accept PORT -cert F -key F ...");
  signal(SIGPIPE, SIG_IGN);

  ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) die("SSL_CTX_new");
  if (SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, opt.key, SSL_FILETYPE_PEM) != 1)
    die("certificate or key");
  SSL_CTX_set_min_proto_version(ctx, opt.tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, opt.tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
  SSL_CTX_set_num_tickets(ctx, (size_t)opt.num_tickets);
  /* OpenSSL cannot encode a stateless ticket whose session timeout is 0
   * (d2i turns 0 into 3 and the re-encoding grows): lifetime 0 is sent with
   * stateful tickets, which TLS 1.3 has and TLS 1.2 has not */
  if (opt.lifetime == 0 && opt.tls == 12) die("-lifetime 0 needs TLS 1.3");
  if (opt.no_ticket || opt.lifetime == 0) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  if (opt.lifetime > 0) SSL_CTX_set_timeout(ctx, opt.lifetime);
  SSL_CTX_set_session_ticket_cb(ctx, gen_ticket_cb, NULL, NULL);
  if (opt.ticket_key || opt.renew) {
    const char *k = opt.ticket_key ? opt.ticket_key : "tcserver";
    derive(tk_name, sizeof tk_name, "name", k);
    derive(tk_aes, sizeof tk_aes, "aes", k);
    derive(tk_hmac, sizeof tk_hmac, "hmac", k);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
  }
  if (opt.alpnlen) SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
  /* early data on turns OpenSSL's anti-replay on: TLS 1.3 tickets become
   * stateful and each is accepted once */
  if (opt.anti_replay) SSL_CTX_set_max_early_data(ctx, 1024);

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)opt.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind: address already in use");
  if (listen(lfd, 16) < 0) die("listen");
  printf("ACCEPT 127.0.0.1:%d\n", opt.port);
  fflush(stdout);
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    serve(ctx, fd, ++n);
  }
}
