/*
 * cclient.c - plain OpenSSL 3 HTTPS client: the limit a library can reach.
 *
 * It does, per connection, exactly the work the Lua clients do:
 * non-blocking TCP socket to 127.0.0.1:PORT with TCP_NODELAY, a fresh SSL
 * from one shared SSL_CTX (trust store loaded once, peer + host name
 * "localhost" verified), SSL_set_session with a kept session when resuming,
 * handshake driven by poll(), one HTTP/1.1 request, the response read to
 * EOF, SSL_shutdown (close_notify) before SSL_free, close.
 *
 * Sessions are captured with SSL_CTX_sess_set_new_cb in client cache mode
 * without OpenSSL's internal store.  TLS 1.3 tickets are single use: each
 * resumed connection takes the newest ticket and keeps the fresh one(s) the
 * server sends back.  A TLS 1.2 session is reused as long as it resumes.
 *
 * One warm-up connection (not counted) runs first, so in --resume mode every
 * counted connection should resume: resumed == conns.
 *
 * Output, one line:
 *   conns=N secs=S cps=X cpu_ms_per_conn=Y resumed=R
 * with --ttfb, these fields follow (medians over the counted connections,
 * all measured from just before connect()):
 *   ttfb_ms=  first response byte   tcp_ms= TCP connected
 *   tls_ms=   handshake done        ttfb_min_ms= / ttfb_max_ms=
 *
 * Build: cc -O2 -Wall -Wextra bench/cclient.c -o cclient -lssl -lcrypto
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HOSTNAME "localhost"
#define IO_TIMEOUT_MS 10000
#define MAX_SESSIONS 16

static const char request[] =
    "GET / HTTP/1.1\r\nHost: " HOSTNAME "\r\nConnection: close\r\n\r\n";

struct opts {
    int port;
    const char *cafile;
    int tls;            /* TLS1_2_VERSION or TLS1_3_VERSION */
    long n;             /* counted connections; 0 = until duration */
    int resume;
    double duration;    /* seconds; 0 = until n */
    int ttfb;
};

/* Kept sessions, newest last.  Each slot owns one reference. */
static SSL_SESSION *sessions[MAX_SESSIONS];
static int nsessions;

struct timing {
    double tcp, tls, first;
};

static void die(const char *what)
{
    unsigned long e = ERR_get_error();
    if (e) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "cclient: %s: %s\n", what, buf);
    } else if (errno) {
        fprintf(stderr, "cclient: %s: %s\n", what, strerror(errno));
    } else {
        fprintf(stderr, "cclient: %s\n", what);
    }
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
        + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* New-session callback: keep the session; returning 1 keeps the reference
 * OpenSSL handed us.  When full, the oldest is dropped. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (nsessions == MAX_SESSIONS) {
        SSL_SESSION_free(sessions[0]);          /* drop the oldest */
        memmove(sessions, sessions + 1, (MAX_SESSIONS - 1) * sizeof *sessions);
        nsessions--;
    }
    sessions[nsessions++] = sess;               /* owns the callback's ref */
    return 1;
}

/* The session to offer, with a reference the caller owns, or NULL.
 * TLS 1.3 tickets are taken off the list (single use), a TLS 1.2 session
 * stays for the next connection. */
static SSL_SESSION *take_session(void)
{
    while (nsessions > 0) {
        SSL_SESSION *s = sessions[nsessions - 1];
        if (!SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(s);
            nsessions--;
            continue;
        }
        if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION)
            nsessions--;                        /* ownership moves to caller */
        else
            SSL_SESSION_up_ref(s);              /* caller's own reference */
        return s;
    }
    return NULL;
}

static void wait_fd(int fd, short events)
{
    struct pollfd p;
    int r;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    do
        r = poll(&p, 1, IO_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        errno = ETIMEDOUT;
        die("poll");
    }
    if (r < 0)
        die("poll");
}

/* Waits as SSL_get_error asks; returns 0 for a clean or abrupt EOF,
 * 1 to retry, and dies on any other error. */
static int ssl_wait(SSL *ssl, int fd, int ret, const char *what)
{
    int err = SSL_get_error(ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        wait_fd(fd, POLLIN);
        return 1;
    case SSL_ERROR_WANT_WRITE:
        wait_fd(fd, POLLOUT);
        return 1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        die(what);
    }
    return 0;
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa;
    int one = 1, fd, soerr = 0;
    socklen_t len = sizeof soerr;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt TCP_NODELAY");
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EINPROGRESS)
            die("connect");
        wait_fd(fd, POLLOUT);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            die("getsockopt SO_ERROR");
        if (soerr) {
            errno = soerr;
            die("connect");
        }
    }
    return fd;
}

/* One full request; returns 1 when the session was reused. */
static int one_connection(SSL_CTX *ctx, const struct opts *o, struct timing *t)
{
    char buf[16384];
    SSL_SESSION *sess = NULL;
    size_t sent = 0, got = 0;
    double t0;
    int fd, r, reused;
    SSL *ssl;

    t0 = now();
    fd = tcp_connect(o->port);
    t->tcp = now() - t0;

    ssl = SSL_new(ctx);                         /* owned here until SSL_free */
    if (!ssl)
        die("SSL_new");
    if (!SSL_set_fd(ssl, fd))
        die("SSL_set_fd");
    if (!SSL_set_tlsext_host_name(ssl, HOSTNAME))
        die("SSL_set_tlsext_host_name");
    if (!SSL_set1_host(ssl, HOSTNAME))
        die("SSL_set1_host");
    if (o->resume && (sess = take_session()) != NULL) {
        if (!SSL_set_session(ssl, sess))        /* takes its own reference */
            die("SSL_set_session");
        SSL_SESSION_free(sess);                 /* ours */
    }

    ERR_clear_error();
    while ((r = SSL_connect(ssl)) != 1)
        if (!ssl_wait(ssl, fd, r, "handshake"))
            die("handshake: connection closed");
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        die("verify");
    t->tls = now() - t0;
    reused = SSL_session_reused(ssl);

    while (sent < sizeof request - 1) {
        size_t w = 0;
        ERR_clear_error();
        r = SSL_write_ex(ssl, request + sent, sizeof request - 1 - sent, &w);
        if (r == 1)
            sent += w;
        else if (!ssl_wait(ssl, fd, 0, "write"))
            die("write: connection closed");
    }

    t->first = 0;
    for (;;) {
        size_t rd = 0;
        ERR_clear_error();
        r = SSL_read_ex(ssl, buf, sizeof buf, &rd);
        if (r == 1) {
            if (got == 0)
                t->first = now() - t0;
            got += rd;
            continue;
        }
        if (!ssl_wait(ssl, fd, 0, "read"))
            break;                              /* close_notify: EOF */
    }
    if (got < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        die("read: no HTTP response");

    /* Our close_notify.  The server may already have closed its socket
     * (nginx does not wait for ours), so a failed send is not an error. */
    ERR_clear_error();
    while ((r = SSL_shutdown(ssl)) < 0) {
        int err = SSL_get_error(ssl, r);
        if (err == SSL_ERROR_WANT_WRITE)
            wait_fd(fd, POLLOUT);
        else
            break;
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return reused;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, long n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: cclient --port PORT --cafile FILE [--tls 1.2|1.3] "
        "[--n N] [--duration SECS] [--resume|--full] [--ttfb]\n"
        "  runs until N connections or SECS seconds, whichever first\n");
    exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->tls = TLS1_3_VERSION;
    o->resume = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--resume"))
            o->resume = 1;
        else if (!strcmp(a, "--full"))
            o->resume = 0;
        else if (!strcmp(a, "--ttfb"))
            o->ttfb = 1;
        else if (!v)
            usage();
        else if (i++, !strcmp(a, "--port"))
            o->port = atoi(v);
        else if (!strcmp(a, "--cafile"))
            o->cafile = v;
        else if (!strcmp(a, "--n"))
            o->n = atol(v);
        else if (!strcmp(a, "--duration"))
            o->duration = atof(v);
        else if (!strcmp(a, "--tls")) {
            if (!strcmp(v, "1.2"))
                o->tls = TLS1_2_VERSION;
            else if (!strcmp(v, "1.3"))
                o->tls = TLS1_3_VERSION;
            else
                usage();
        } else
            usage();
    }
    if (o->port <= 0 || o->port > 65535 || !o->cafile || o->n < 0
        || o->duration < 0 || (o->n == 0 && o->duration == 0))
        usage();
}

int main(int argc, char **argv)
{
    struct opts o;
    struct timing t;
    SSL_CTX *ctx;
    double *ttfb = NULL, *tcp = NULL, *tls = NULL, t0, c0, secs, cpu;
    long conns = 0, resumed = 0, cap = 0;

    parse(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);   /* our close_notify may meet a closed peer */

    ctx = SSL_CTX_new(TLS_client_method());     /* freed at exit */
    if (!ctx)
        die("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, o.tls)
        || !SSL_CTX_set_max_proto_version(ctx, o.tls))
        die("protocol version");
    if (!SSL_CTX_load_verify_locations(ctx, o.cafile, NULL))
        die("cafile");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o.resume) {
        SSL_CTX_set_session_cache_mode(ctx,
            SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }

    one_connection(ctx, &o, &t);                /* warm-up, primes a session */

    if (o.ttfb) {
        cap = o.n ? o.n : 1024;
        ttfb = malloc((size_t)cap * sizeof *ttfb);
        tcp = malloc((size_t)cap * sizeof *tcp);
        tls = malloc((size_t)cap * sizeof *tls);
        if (!ttfb || !tcp || !tls)
            die("malloc");
    }

    t0 = now();
    c0 = cpu_seconds();
    while ((o.n == 0 || conns < o.n)
           && (o.duration == 0 || now() - t0 < o.duration)) {
        resumed += one_connection(ctx, &o, &t);
        if (o.ttfb) {
            if (conns == cap) {
                cap *= 2;
                ttfb = realloc(ttfb, (size_t)cap * sizeof *ttfb);
                tcp = realloc(tcp, (size_t)cap * sizeof *tcp);
                tls = realloc(tls, (size_t)cap * sizeof *tls);
                if (!ttfb || !tcp || !tls)
                    die("realloc");
            }
            ttfb[conns] = t.first * 1e3;
            tcp[conns] = t.tcp * 1e3;
            tls[conns] = t.tls * 1e3;
        }
        conns++;
    }
    secs = now() - t0;
    cpu = cpu_seconds() - c0;

    printf("conns=%ld secs=%.3f cps=%.1f cpu_ms_per_conn=%.4f resumed=%ld",
           conns, secs, secs > 0 ? (double)conns / secs : 0.0,
           conns ? cpu * 1e3 / (double)conns : 0.0, resumed);
    if (o.ttfb && conns > 0) {
        double mn, mx;
        qsort(ttfb, (size_t)conns, sizeof *ttfb, cmp_double);
        mn = ttfb[0];
        mx = ttfb[conns - 1];
        printf(" ttfb_ms=%.3f tcp_ms=%.3f tls_ms=%.3f ttfb_min_ms=%.3f"
               " ttfb_max_ms=%.3f", median(ttfb, conns), median(tcp, conns),
               median(tls, conns), mn, mx);
    }
    printf("\n");

    while (nsessions > 0)
        SSL_SESSION_free(sessions[--nsessions]);
    SSL_CTX_free(ctx);
    free(ttfb);
    free(tcp);
    free(tls);
    return 0;
}
