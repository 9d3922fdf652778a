/* loadgen: a small memcached text-protocol load generator for the benchmark.
 *
 * One thread, epoll (level-triggered), non-blocking sockets with TCP_NODELAY.
 * Each connection keeps `--depth` requests in flight: at start it sends
 * `depth` requests in one send(); after that, on each readiness it does ONE
 * recv(), parses every reply completed by it (streaming: a reply may be split
 * anywhere across recvs) and sends the requests those completions freed in
 * ONE send().
 *
 *   loadgen --port P [--host 127.0.0.1] [--conns 50] [--depth 1]
 *           [--seconds 5] [--warmup 1] [--workload get90|get|set|mget]
 *           [--keys 10000] [--value-size 100] [--mget 10]
 *           [--key-prefix key:] [--pattern random|disjoint]
 *           [--server-pid PID] [--seed 1] [--mark-fd FD]
 *   loadgen --fill --port P [--keys 10000] [--value-size 100] [--depth 64]
 *           [--key-prefix key:]
 *
 * Workloads: get90 = 90% `get <k>`, 10% `set <k> 0 0 <value-size>`; get =
 * 100% get; set = 100% set; mget = `get k1 .. kN` of --mget keys. Keys are
 * <prefix><R>, R uniform over [0, --keys) from a seeded xorshift64*
 * (--pattern random), or each connection c cycling over c, c+conns, ... so
 * two connections never write the same key (--pattern disjoint).
 *
 * After --warmup seconds (not counted) comes the measured window of
 * --seconds. Per request: the time from its send to its reply's completion
 * (CLOCK_MONOTONIC), every sample of the window kept. At the window's start
 * and end: the server's utime+stime (/proc/<pid>/stat fields 14, 15) and our
 * own (getrusage), and the time each spent runnable but waiting for a CPU
 * (run_delay, /proc/<pid>/task/<tid>/schedstat, summed over the threads: other
 * programs on the same cores); with --mark-fd, "start\n" and "end\n" are written to that
 * fd at those moments (so a caller can sample the server's stats).
 *
 * Output: one JSON line on stdout. Errors (ERROR, CLIENT_ERROR,
 * SERVER_ERROR, NOT_STORED, EXISTS, NOT_FOUND, or a reply of the wrong kind)
 * are counted, not fatal; misses are keys asked by a get that got no VALUE.
 * A connection failure, the server closing a connection, or a reply that
 * cannot be parsed ends the run: a message on stderr, exit status 1.
 *
 * --fill sets every key <prefix>0 .. <prefix>(keys-1) once, pipelined on one
 * connection, waits for every STORED and exits (status 1 if any was not).
 *
 * Build: cc -O2 -Wall -o loadgen loadgen.c  (plain C99 + POSIX/Linux).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { W_GET90, W_GET, W_SET, W_MGET, W_FILL };
enum { K_GET = 0, K_SET = 1 };
enum { P_WARMUP, P_MEASURE, P_DONE };

typedef struct {
    int fd;
    int index;
    uint64_t rng;
    long next_key; /* --pattern disjoint and --fill */
    /* requests in flight, oldest first (replies come in order) */
    uint64_t *sent_ns;
    uint8_t *kind;
    uint16_t *nkeys;
    int head, count;
    /* replies */
    char *rbuf;
    size_t rlen;
    size_t skip;   /* data bytes of a VALUE still to skip */
    int want_crlf; /* the \r\n after a data block is next */
    int values;    /* VALUE lines so far in the current get reply */
    /* requests not yet sent */
    char *wbuf;
    size_t woff, wlen;
    int want_out;
} conn_t;

/* options */
static const char *host = "127.0.0.1";
static int port = 0, nconns = 50, depth = 1, workload = W_GET90, mget = 10;
static int value_size = 100, server_pid = 0, mark_fd = -1, disjoint = 0, fill = 0;
static long nkeys = 10000;
static double seconds = 5.0, warmup = 1.0;
static uint64_t seed = 1;
static const char *prefix = "key:";
static size_t prefix_len;

/* state */
static int ep;
static char *value; /* value bytes + "\r\n" */
static int phase = P_WARMUP;
static uint64_t t_window_start, t_window_end;
static long long ops, errors, misses, completed_total, fill_sent;
static uint64_t *lat;
static size_t nlat, caplat;

#define RBUF_CAP (65536 + 4096)

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s\n", what);
    exit(1);
}

static void die_errno(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t xorshift(uint64_t *s) { /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

/* -- CPU ------------------------------------------------------------------ */

static double self_cpu(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

/* utime and stime of a process (all its threads) in seconds; 0 if unknown */
static int proc_cpu(int pid, double *user, double *sys) {
    char path[64], buf[4096];
    *user = *sys = 0;
    if (pid <= 0) return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return 0;
    /* after ')' comes field 3 (the state); utime is field 14, stime 15 */
    char *save = NULL, *tok = strtok_r(p + 1, " ", &save);
    unsigned long long v[13];
    int i = 0;
    for (; tok && i < 13; tok = strtok_r(NULL, " ", &save)) v[i++] = strtoull(tok, NULL, 10);
    if (i < 13) return 0;
    long tck = sysconf(_SC_CLK_TCK);
    *user = (double)v[11] / tck;
    *sys = (double)v[12] / tck;
    return 1;
}

/* seconds the threads of a process (pid 0: this one) spent waiting for a CPU; -1 if unknown */
static double run_delay(int pid) {
    char path[96], buf[256];
    snprintf(path, sizeof path, pid > 0 ? "/proc/%d/task" : "/proc/self/task", pid);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    double total = 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char file[400];
        snprintf(file, sizeof file, "%s/%s/schedstat", path, e->d_name);
        int fd = open(file, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        unsigned long long run, wait;
        if (sscanf(buf, "%llu %llu", &run, &wait) == 2) {
            total += wait / 1e9;
            found = 1;
        }
    }
    closedir(dir);
    return found ? total : -1;
}

/* -- requests ------------------------------------------------------------------ */

static char *put_key(char *p, long k) {
    char tmp[24];
    int n = 0;
    memcpy(p, prefix, prefix_len);
    p += prefix_len;
    do {
        tmp[n++] = (char)('0' + k % 10);
        k /= 10;
    } while (k);
    while (n) *p++ = tmp[--n];
    return p;
}

static size_t max_request_len(void) {
    size_t key = prefix_len + 20;
    size_t set = 4 + key + 8 + 12 + 2 + (size_t)value_size + 2;
    size_t get = 4 + (size_t)(workload == W_MGET ? mget : 1) * (key + 1) + 2;
    return set > get ? set : get;
}

static long pick_key(conn_t *c) {
    if (disjoint) {
        long k = c->next_key;
        c->next_key += nconns;
        if (c->next_key >= nkeys) c->next_key = c->index % nkeys;
        return k;
    }
    return (long)(xorshift(&c->rng) % (uint64_t)nkeys);
}

static void push(conn_t *c, int kind, int keys, uint64_t t) {
    int slot = (c->head + c->count) % depth;
    c->sent_ns[slot] = t;
    c->kind[slot] = (uint8_t)kind;
    c->nkeys[slot] = (uint16_t)keys;
    c->count++;
}

static void add_request(conn_t *c, uint64_t t) {
    if (c->woff && c->woff == c->wlen) c->woff = c->wlen = 0;
    if (c->woff) { /* a backlog: make room at the end */
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    char *p = c->wbuf + c->wlen;
    int is_set;
    long key;
    switch (workload) {
    case W_FILL: is_set = 1; key = fill_sent++; break;
    case W_SET: is_set = 1; key = pick_key(c); break;
    case W_GET90:
        is_set = xorshift(&c->rng) % 10 == 0;
        key = pick_key(c);
        break;
    default: is_set = 0; key = pick_key(c); break;
    }
    if (is_set) {
        memcpy(p, "set ", 4);
        p = put_key(p + 4, key);
        p += sprintf(p, " 0 0 %d\r\n", value_size);
        memcpy(p, value, (size_t)value_size + 2);
        p += value_size + 2;
        push(c, K_SET, 0, t);
    } else {
        int n = workload == W_MGET ? mget : 1;
        memcpy(p, "get", 3);
        p += 3;
        for (int i = 0; i < n; i++) {
            *p++ = ' ';
            p = put_key(p, i ? pick_key(c) : key);
        }
        *p++ = '\r';
        *p++ = '\n';
        push(c, K_GET, n, t);
    }
    c->wlen = (size_t)(p - c->wbuf);
}

static void set_events(conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die_errno("epoll_ctl");
    c->want_out = out;
}

static void flush(conn_t *c) {
    if (c->woff == c->wlen) return;
    ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) die_errno("send");
        n = 0;
    }
    c->woff += (size_t)n;
    if (c->woff == c->wlen) {
        c->woff = c->wlen = 0;
        if (c->want_out) set_events(c, 0);
    } else if (!c->want_out) {
        set_events(c, 1);
    }
}

/* -- replies ------------------------------------------------------------------ */

static void record(uint64_t ns) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("out of memory");
    }
    lat[nlat++] = ns;
}

static void complete(conn_t *c, uint64_t t, int ok, int missed) {
    uint64_t sent = c->sent_ns[c->head];
    c->head = (c->head + 1) % depth;
    c->count--;
    completed_total++;
    if (workload == W_FILL) {
        if (!ok) errors++;
        return;
    }
    if (phase != P_MEASURE) return;
    misses += missed;
    if (ok) {
        ops++;
        record(t - sent);
    } else {
        errors++;
    }
}

static void protocol_error(conn_t *c, const char *line, size_t len) {
    fprintf(stderr, "loadgen: connection %d: unexpected reply line %.*s%s\n", c->index, (int)(len > 80 ? 80 : len),
            line, len > 80 ? "..." : "");
    exit(1);
}

static int starts(const char *line, size_t len, const char *word) {
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0 && (len == n || line[n] == ' ');
}

/* Parse what is buffered; returns the number of replies it completed. */
static int parse(conn_t *c, uint64_t t) {
    size_t pos = 0;
    int done = 0;
    while (pos < c->rlen) {
        if (c->skip) {
            size_t take = c->rlen - pos < c->skip ? c->rlen - pos : c->skip;
            pos += take;
            c->skip -= take;
            continue;
        }
        char *line = c->rbuf + pos;
        char *nl = memchr(line, '\n', c->rlen - pos);
        if (!nl) break;
        size_t len = (size_t)(nl - line);
        pos += len + 1;
        if (len == 0 || line[len - 1] != '\r') protocol_error(c, line, len);
        len--;
        if (c->want_crlf) {
            if (len != 0) protocol_error(c, line, len);
            c->want_crlf = 0;
            continue;
        }
        if (c->count == 0) protocol_error(c, line, len);
        int kind = c->kind[c->head];
        if (starts(line, len, "VALUE")) {
            /* VALUE <key> <flags> <bytes> [<cas>] */
            const char *p = line + 6, *end = line + len;
            int field = 0;
            while (p < end && field < 2) {
                if (*p++ == ' ') field++;
            }
            char *q;
            unsigned long long n = strtoull(p, &q, 10);
            if (kind != K_GET || field != 2 || q == p || q > end) protocol_error(c, line, len);
            c->values++;
            c->skip = (size_t)n;
            c->want_crlf = 1;
        } else if (len == 3 && memcmp(line, "END", 3) == 0) {
            if (kind != K_GET) protocol_error(c, line, len);
            int asked = c->nkeys[c->head];
            int missed = c->values < asked ? asked - c->values : 0;
            c->values = 0;
            complete(c, t, 1, missed);
            done++;
        } else if (len == 6 && memcmp(line, "STORED", 6) == 0) {
            complete(c, t, kind == K_SET, 0);
            done++;
        } else if (starts(line, len, "ERROR") || starts(line, len, "CLIENT_ERROR") ||
                   starts(line, len, "SERVER_ERROR") || starts(line, len, "NOT_STORED") ||
                   starts(line, len, "EXISTS") || starts(line, len, "NOT_FOUND")) {
            c->values = 0;
            complete(c, t, 0, 0);
            done++;
        } else {
            protocol_error(c, line, len);
        }
    }
    if (pos && pos < c->rlen) memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    if (c->rlen == RBUF_CAP) die("reply line too long");
    return done;
}

/* -- the run -------------------------------------------------------------------- */

static int connect_one(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("--host must be an IPv4 address");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die_errno("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "loadgen: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) {
    if (!nlat) return 0;
    size_t i = (size_t)(q * (double)nlat);
    if (i >= nlat) i = nlat - 1;
    return lat[i] / 1e3;
}

static void mark(const char *what) {
    if (mark_fd < 0) return;
    ssize_t n = write(mark_fd, what, strlen(what));
    (void)n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host H] [--conns N] [--depth D] [--seconds S] [--warmup W]\n"
            "               [--workload get90|get|set|mget] [--keys K] [--value-size B] [--mget M]\n"
            "               [--key-prefix P] [--pattern random|disjoint] [--server-pid PID] [--seed X]\n"
            "               [--mark-fd FD]\n"
            "       loadgen --fill --port P [--keys K] [--value-size B] [--depth D] [--key-prefix P]\n");
    exit(1);
}

static void parse_args(int argc, char **argv) {
    int depth_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--fill")) { fill = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage();
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--conns")) nconns = atoi(v);
        else if (!strcmp(a, "--depth")) { depth = atoi(v); depth_given = 1; }
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--keys")) nkeys = atol(v);
        else if (!strcmp(a, "--value-size")) value_size = atoi(v);
        else if (!strcmp(a, "--mget")) mget = atoi(v);
        else if (!strcmp(a, "--key-prefix")) prefix = v;
        else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--mark-fd")) mark_fd = atoi(v);
        else if (!strcmp(a, "--pattern")) {
            if (!strcmp(v, "random")) disjoint = 0;
            else if (!strcmp(v, "disjoint")) disjoint = 1;
            else usage();
        } else if (!strcmp(a, "--workload")) {
            if (!strcmp(v, "get90")) workload = W_GET90;
            else if (!strcmp(v, "get")) workload = W_GET;
            else if (!strcmp(v, "set")) workload = W_SET;
            else if (!strcmp(v, "mget")) workload = W_MGET;
            else usage();
        } else usage();
    }
    if (fill) {
        workload = W_FILL;
        nconns = 1;
        if (!depth_given) depth = 64;
        disjoint = 0;
    }
    prefix_len = strlen(prefix);
    if (port <= 0 || port > 65535) die("--port is required (1..65535)");
    if (nconns < 1 || depth < 1 || nkeys < 1 || value_size < 0 || mget < 1 || mget > 1000 || prefix_len > 200)
        die("bad --conns, --depth, --keys, --value-size, --mget or --key-prefix");
    if (disjoint && nkeys < nconns) die("--pattern disjoint needs --keys >= --conns");
}

static const char *workload_name(void) {
    static const char *names[] = {"get90", "get", "set", "mget", "fill"};
    return names[workload];
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    value = xmalloc((size_t)value_size + 2);
    for (int i = 0; i < value_size; i++) value[i] = (char)('a' + i % 26);
    memcpy(value + value_size, "\r\n", 2);

    ep = epoll_create1(0);
    if (ep < 0) die_errno("epoll_create1");
    size_t wcap = (size_t)depth * max_request_len() + 64;
    conn_t *conns = xmalloc(sizeof(conn_t) * (size_t)nconns);
    memset(conns, 0, sizeof(conn_t) * (size_t)nconns);
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->fd = connect_one();
        c->index = i;
        c->rng = splitmix64(seed * 1000003ull + (uint64_t)i);
        if (!c->rng) c->rng = 1;
        c->next_key = i % nkeys;
        c->sent_ns = xmalloc(sizeof(uint64_t) * (size_t)depth);
        c->kind = xmalloc((size_t)depth);
        c->nkeys = xmalloc(sizeof(uint16_t) * (size_t)depth);
        c->rbuf = xmalloc(RBUF_CAP);
        c->wbuf = xmalloc(wcap);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die_errno("epoll_ctl");
    }

    uint64_t t0 = now_ns();
    t_window_start = t0 + (uint64_t)(warmup * 1e9);
    t_window_end = t_window_start + (uint64_t)(seconds * 1e9);
    double srv_u0 = 0, srv_s0 = 0, srv_u1 = 0, srv_s1 = 0, gen_u0 = 0, gen_s0 = 0, gen_u1 = 0, gen_s1 = 0;
    int have_srv = 1;
    double srv_w0 = -1, srv_w1 = -1, gen_w0 = -1, gen_w1 = -1;
    uint64_t measured_from = 0, measured_to = 0;

    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        uint64_t t = now_ns();
        for (int j = 0; j < depth && !(workload == W_FILL && fill_sent >= nkeys); j++) add_request(c, t);
        flush(c);
    }

    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (workload == W_FILL) {
            if (completed_total >= nkeys) break;
        } else {
            if (phase == P_WARMUP && t >= t_window_start) {
                have_srv &= proc_cpu(server_pid, &srv_u0, &srv_s0);
                self_cpu(&gen_u0, &gen_s0);
                if (server_pid > 0) srv_w0 = run_delay(server_pid);
                gen_w0 = run_delay(0);
                measured_from = now_ns();
                phase = P_MEASURE;
                mark("start\n");
            }
            if (phase == P_MEASURE && t >= t_window_end) {
                measured_to = now_ns();
                have_srv &= proc_cpu(server_pid, &srv_u1, &srv_s1);
                self_cpu(&gen_u1, &gen_s1);
                if (server_pid > 0) srv_w1 = run_delay(server_pid);
                gen_w1 = run_delay(0);
                phase = P_DONE;
                mark("end\n");
                break;
            }
        }
        int timeout = 100;
        if (workload != W_FILL) {
            uint64_t next = phase == P_WARMUP ? t_window_start : t_window_end;
            uint64_t ms = next > t ? (next - t + 999999) / 1000000 : 0;
            if (ms < (uint64_t)timeout) timeout = (int)ms;
        }
        int n = epoll_wait(ep, evs, 256, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = recv(c->fd, c->rbuf + c->rlen, RBUF_CAP - c->rlen, 0);
                if (r == 0) {
                    fprintf(stderr, "loadgen: the server closed connection %d\n", c->index);
                    exit(1);
                }
                if (r < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                    die_errno("recv");
                }
                c->rlen += (size_t)r;
                uint64_t now = now_ns();
                int done = parse(c, now);
                for (int j = 0; j < done && !(workload == W_FILL && fill_sent >= nkeys); j++) add_request(c, now);
                if (done) flush(c);
            }
            if ((evs[i].events & EPOLLOUT) && c->want_out) flush(c);
        }
    }

    if (workload == W_FILL) {
        double s = (now_ns() - t0) / 1e9;
        printf("{\"workload\": \"fill\", \"filled\": %lld, \"errors\": %lld, \"seconds\": %.3f, \"ops_per_sec\": %.1f}\n",
               completed_total - errors, errors, s, s > 0 ? completed_total / s : 0.0);
        if (errors) {
            fprintf(stderr, "loadgen: %lld of %ld fill sets were not STORED\n", errors, nkeys);
            return 1;
        }
        return 0;
    }

    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    double window = (measured_to - measured_from) / 1e9;
    double srv_user = srv_u1 - srv_u0, srv_sys = srv_s1 - srv_s0;
    double gen_user = gen_u1 - gen_u0, gen_sys = gen_s1 - gen_s0;
    double per = ops ? 1e6 / (double)ops : 0;
    char srv[256], waits[128], sw[32] = "null", gw[32] = "null";
    if (have_srv && server_pid > 0)
        snprintf(srv, sizeof srv,
                 "\"server_cpu_s\": %.3f, \"server_user_s\": %.3f, \"server_sys_s\": %.3f, \"server_cpu_us_per_op\": %.3f",
                 srv_user + srv_sys, srv_user, srv_sys, (srv_user + srv_sys) * per);
    else
        snprintf(srv, sizeof srv,
                 "\"server_cpu_s\": null, \"server_user_s\": null, \"server_sys_s\": null, \"server_cpu_us_per_op\": null");
    if (srv_w0 >= 0 && srv_w1 >= srv_w0) snprintf(sw, sizeof sw, "%.3f", srv_w1 - srv_w0);
    if (gen_w0 >= 0 && gen_w1 >= gen_w0) snprintf(gw, sizeof gw, "%.3f", gen_w1 - gen_w0);
    snprintf(waits, sizeof waits, "\"server_wait_s\": %s, \"gen_wait_s\": %s", sw, gw);
    printf("{\"workload\": \"%s\", \"conns\": %d, \"depth\": %d, \"keys_per_get\": %d, \"value_size\": %d, "
           "\"ops\": %lld, \"seconds\": %.4f, \"ops_per_sec\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f, "
           "\"errors\": %lld, \"misses\": %lld, %s, %s, "
           "\"gen_cpu_s\": %.3f, \"gen_user_s\": %.3f, \"gen_sys_s\": %.3f, \"gen_cpu_us_per_op\": %.3f}\n",
           workload_name(), nconns, depth, workload == W_MGET ? mget : 1, value_size, ops, window,
           window > 0 ? ops / window : 0.0, pct_us(0.50), pct_us(0.99), pct_us(0.999), nlat ? lat[nlat - 1] / 1e3 : 0.0,
           errors, misses, srv, waits, gen_user + gen_sys, gen_user, gen_sys, (gen_user + gen_sys) * per);
    return 0;
}
