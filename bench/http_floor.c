/*
 * The floor for http_2xx's cost: the same GET a health check makes, on a
 * fresh TCP connection each time, in plain C with blocking sockets and no
 * library. bench/http_fresh.sh runs it at the rate anycastd checks at and
 * compares CPU per request.
 *
 * Usage: http_floor HOST PORT SERVICES SECONDS
 *   GETs /svc/1 .. /svc/SERVICES in turn, SERVICES per second, for SECONDS;
 *   each on a new connection (connect, send, read the whole response until
 *   the server closes it, check for a 2xx status line, close).
 * Prints: requests, failures, CPU seconds (user+system), CPU per request.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int get(const struct sockaddr_in *addr, const char *host, int port, int n) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        close(fd);
        return -1;
    }
    char request[256];
    int len = snprintf(request, sizeof request,
                       "GET /svc/%d HTTP/1.1\r\nHost: %s:%d\r\n"
                       "User-Agent: http_floor\r\nConnection: close\r\n\r\n",
                       n, host, port);
    if (write(fd, request, len) != len) {
        close(fd);
        return -1;
    }
    char buf[4096];
    ssize_t got, total = 0;
    int ok = 0;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        if (total == 0 && got >= 12 && memcmp(buf, "HTTP/1.1 2", 10) == 0)
            ok = 1;
        total += got;
    }
    close(fd);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT SERVICES SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int services = atoi(argv[3]);
    int seconds = atoi(argv[4]);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || services <= 0 || seconds <= 0) {
        fprintf(stderr, "http_floor: bad arguments\n");
        return 2;
    }
    long requests = 0, failures = 0;
    double start = now();
    double gap = 1.0 / services;
    for (long i = 0; i < (long)services * seconds; i++) {
        double due = start + i * gap;
        double wait = due - now();
        if (wait > 0) {
            struct timespec t = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&t, NULL);
        }
        if (get(&addr, host, port, (int)(i % services) + 1) != 0)
            failures++;
        requests++;
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                 usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    printf("requests %ld failures %ld cpu_s %.3f cpu_per_request_us %.1f wall_s %.1f\n",
           requests, failures, cpu, cpu / requests * 1e6, now() - start);
    return failures ? 1 : 0;
}
