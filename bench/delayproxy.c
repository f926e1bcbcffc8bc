/*
 * delayproxy.c - TCP proxy on 127.0.0.1 that adds latency.
 *
 *   delayproxy --target PORT --rtt MS [--listen PORT] [--max-seconds S]
 *
 * Forwards every connection accepted on 127.0.0.1:LISTEN (default: a free
 * port, printed on stdout as the first line) to 127.0.0.1:TARGET and delays
 * each direction by RTT/2 ms: bytes read at time t are written to the other
 * side at t + RTT/2 (timestamped queues driven by ppoll), so every round
 * trip through the proxy grows by RTT ms.  End of stream is delayed the
 * same way (forwarded as shutdown(SHUT_WR)).
 *
 * What it cannot delay: the TCP three-way handshake with the client.  The
 * kernel answers the SYN on the listening socket before the proxy sees the
 * connection, so connect() through the proxy completes in loopback time; a
 * real path would add one RTT there.  Everything after connect() (TLS and
 * HTTP) sees the full delay.
 *
 * It stops by itself after --max-seconds (default 600, at most 86400) and
 * on SIGTERM/SIGINT, and prints a summary line on stderr.
 *
 * Build: cc -O2 -Wall -Wextra bench/delayproxy.c -o delayproxy
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 512
#define QUEUE_CAP (4u << 20)    /* stop reading a side with this much queued */
#define READ_SIZE 65536

struct chunk {
    struct chunk *next;
    double due;                 /* monotonic seconds */
    size_t len, off;
    int eof;                    /* forward end of stream */
    char data[];
};

struct dir {                    /* one direction: bytes read from `from` go to `to` */
    int from, to;
    struct chunk *head, *tail;
    size_t queued;
    int rd_eof;                 /* EOF read from `from` */
    int shut;                   /* EOF forwarded to `to` */
    int blocked;                /* last write to `to` hit EAGAIN */
};

struct pair {
    int used;
    int connected;              /* upstream connect() finished */
    int cfd, sfd;
    struct dir d[2];            /* 0: client -> server, 1: server -> client */
};

static struct pair pairs[MAX_PAIRS];
static volatile sig_atomic_t stop_flag;
static double half_delay;       /* seconds */
static int target_port;
static unsigned long accepted, closed_pairs, errors;
static unsigned long long bytes_fwd;
static double late_sum, late_max;  /* how late chunks went out, seconds */
static unsigned long late_n;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: delayproxy --target PORT --rtt MS [--listen PORT]"
                    " [--max-seconds S]\n");
    exit(2);
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void loopback(struct sockaddr_in *sa, int port)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void free_queue(struct dir *d)
{
    while (d->head) {
        struct chunk *c = d->head;
        d->head = c->next;
        free(c);
    }
    d->tail = NULL;
    d->queued = 0;
}

static void close_pair(struct pair *p, int failed)
{
    if (failed) {
        /* Abort both sides (RST) so neither end waits for data that
         * will never come. */
        struct linger lg = { 1, 0 };
        setsockopt(p->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        setsockopt(p->sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        errors++;
    }
    close(p->cfd);
    close(p->sfd);
    free_queue(&p->d[0]);
    free_queue(&p->d[1]);
    memset(p, 0, sizeof *p);
    closed_pairs++;
}

static int enqueue(struct dir *d, const char *buf, size_t len, int eof, double t)
{
    struct chunk *c = malloc(sizeof *c + len);
    if (!c)
        return -1;
    c->next = NULL;
    c->due = t + half_delay;
    c->len = len;
    c->off = 0;
    c->eof = eof;
    if (len)
        memcpy(c->data, buf, len);
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    d->queued += len;
    return 0;
}

static void accept_new(int lfd)
{
    for (;;) {
        struct sockaddr_in sa;
        struct pair *p = NULL;
        int i, cfd, sfd;

        for (i = 0; i < MAX_PAIRS; i++)
            if (!pairs[i].used) {
                p = &pairs[i];
                break;
            }
        if (!p)
            return;                     /* full: leave it in the backlog */
        cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;                     /* EAGAIN or a transient error */
        sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (sfd < 0) {
            close(cfd);
            errors++;
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(sfd);
        loopback(&sa, target_port);
        memset(p, 0, sizeof *p);
        p->used = 1;
        p->cfd = cfd;
        p->sfd = sfd;
        p->d[0].from = cfd;
        p->d[0].to = sfd;
        p->d[1].from = sfd;
        p->d[1].to = cfd;
        accepted++;
        if (connect(sfd, (struct sockaddr *)&sa, sizeof sa) == 0)
            p->connected = 1;
        else if (errno != EINPROGRESS)
            close_pair(p, 1);
    }
}

/* Reads what is there; returns -1 when the pair must be aborted. */
static int do_read(struct dir *d, double t)
{
    static char buf[READ_SIZE];
    while (!d->rd_eof && d->queued < QUEUE_CAP) {
        ssize_t n = read(d->from, buf, sizeof buf);
        if (n > 0) {
            if (enqueue(d, buf, (size_t)n, 0, t) < 0)
                return -1;
        } else if (n == 0) {
            d->rd_eof = 1;
            if (enqueue(d, NULL, 0, 1, t) < 0)
                return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Writes every chunk that is due; returns -1 when the pair must be aborted. */
static int do_write(struct dir *d, double t)
{
    d->blocked = 0;
    while (d->head && d->head->due <= t) {
        struct chunk *c = d->head;
        if (c->off == 0 && !c->eof) {
            double late = t - c->due;
            late_sum += late;
            late_n++;
            if (late > late_max)
                late_max = late;
        }
        if (c->eof) {
            shutdown(d->to, SHUT_WR);
            d->shut = 1;
        } else {
            ssize_t n = write(d->to, c->data + c->off, c->len - c->off);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    d->blocked = 1;
                    return 0;
                }
                if (errno == EINTR)
                    continue;
                return -1;
            }
            c->off += (size_t)n;
            bytes_fwd += (unsigned long long)n;
            d->queued -= (size_t)n;
            if (c->off < c->len)
                continue;
        }
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        free(c);
    }
    return 0;
}

static void check_connected(struct pair *p)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
        close_pair(p, 1);
    else
        p->connected = 1;
}

int main(int argc, char **argv)
{
    static struct pollfd pfd[1 + 2 * MAX_PAIRS];
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    struct sigaction act;
    sigset_t block, orig;
    double rtt_ms = -1, max_seconds = 600, start, deadline;
    int listen_port = 0, lfd, one = 1, i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--target"))
            target_port = atoi(v);
        else if (!strcmp(a, "--rtt"))
            rtt_ms = atof(v);
        else if (!strcmp(a, "--listen"))
            listen_port = atoi(v);
        else if (!strcmp(a, "--max-seconds"))
            max_seconds = atof(v);
        else
            usage();
    }
    if (target_port <= 0 || target_port > 65535 || rtt_ms < 0 || rtt_ms > 10000
        || listen_port < 0 || listen_port > 65535
        || !(max_seconds > 0 && max_seconds <= 86400))
        usage();
    half_delay = rtt_ms / 2e3;

    /* SIGTERM/SIGINT are blocked except inside ppoll, so a signal can
     * never slip in between the stop_flag test and the wait. */
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &orig);
    sigdelset(&orig, SIGTERM);
    sigdelset(&orig, SIGINT);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("delayproxy: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    loopback(&sa, listen_port);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 128) < 0
        || getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
        perror("delayproxy: bind/listen");
        return 1;
    }
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);

    start = now();
    deadline = start + max_seconds;
    while (!stop_flag) {
        double t = now(), wake = deadline;
        struct timespec ts;
        int n = 0, free_slot = 0;

        if (t >= deadline)
            break;
        for (i = 0; i < MAX_PAIRS; i++) {
            struct pair *p = &pairs[i];
            short ev[2] = { 0, 0 };     /* for cfd, sfd */
            int k;
            if (!p->used) {
                free_slot = 1;
                continue;
            }
            if (!p->connected)
                ev[1] |= POLLOUT;
            for (k = 0; k < 2; k++) {
                struct dir *d = &p->d[k];
                int from = k, to = 1 - k;   /* index into ev[] */
                if (!d->rd_eof && d->queued < QUEUE_CAP)
                    ev[from] |= POLLIN;
                if (d->head) {
                    if (d->head->due > t) {
                        if (d->head->due < wake)
                            wake = d->head->due;
                    } else if (d->blocked || (k == 0 && !p->connected)) {
                        ev[to] |= POLLOUT;
                    } else {
                        wake = t;           /* due now: loop straight back */
                    }
                }
            }
            pfd[1 + n].fd = p->cfd;
            pfd[1 + n].events = ev[0];
            n++;
            pfd[1 + n].fd = p->sfd;
            pfd[1 + n].events = ev[1];
            n++;
        }
        pfd[0].fd = lfd;
        pfd[0].events = free_slot ? POLLIN : 0;
        for (i = 0; i <= n; i++)
            pfd[i].revents = 0;

        if (wake < t)
            wake = t;
        ts.tv_sec = (time_t)(wake - t);
        ts.tv_nsec = (long)((wake - t - (double)ts.tv_sec) * 1e9);
        if (ppoll(pfd, (nfds_t)(1 + n), &ts, &orig) < 0 && errno != EINTR) {
            perror("delayproxy: ppoll");
            break;
        }
        if (stop_flag)
            break;
        t = now();
        if (pfd[0].revents & POLLIN)
            accept_new(lfd);

        for (i = 0; i < MAX_PAIRS; i++) {
            struct pair *p = &pairs[i];
            if (!p->used)
                continue;
            if (!p->connected) {
                struct pollfd q = { p->sfd, POLLOUT, 0 };
                if (poll(&q, 1, 0) == 1)
                    check_connected(p);
                if (!p->used)
                    continue;
            }
            if (do_read(&p->d[0], t) < 0 || (p->connected && do_read(&p->d[1], t) < 0)
                || (p->connected && do_write(&p->d[0], t) < 0)
                || do_write(&p->d[1], t) < 0) {
                close_pair(p, 1);
                continue;
            }
            if (p->d[0].shut && p->d[1].shut)
                close_pair(p, 0);
        }
    }

    for (i = 0; i < MAX_PAIRS; i++)
        if (pairs[i].used)
            close_pair(&pairs[i], 0);
    close(lfd);
    fprintf(stderr, "delayproxy: %s after %.1f s: %lu connections, %lu closed, "
            "%lu errors, %llu bytes forwarded, chunks sent late by %.3f ms on average, %.3f ms at most\n",
            stop_flag ? "stopped by signal" : "max-seconds reached",
            now() - start, accepted, closed_pairs, errors, bytes_fwd,
            late_n ? late_sum / (double)late_n * 1e3 : 0.0, late_max * 1e3);
    return 0;
}
