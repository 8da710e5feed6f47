// Registered descriptors measured raw, before building them into coring (issue 17): liburing alone, a 64-byte send
// on one end of a TCP loopback connection and a receive on the other, both in one submission, repeated 200,000 times;
// a registered table with IOSQE_FIXED_FILE against plain descriptors, the ring set up as coring's
// (SINGLE_ISSUER | DEFER_TASKRUN). CPU time per pair, five alternating repetitions.
//
//   g++ -O2 -std=gnu++20 benchmarks/compare/fixed_files_raw.cpp -o /tmp/fixed_files_raw -luring
//   taskset -c 0 /tmp/fixed_files_raw
//
// Results: benchmarks/results/fixed-files-raw.txt.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
static double cpu() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static double run(bool fixed, int a, int b, int rounds) {
    io_uring ring;
    io_uring_queue_init(64, &ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    int fa = a, fb = b;
    if (fixed) {
        int fds[2] = {a, b};
        if (io_uring_register_files(&ring, fds, 2)) {
            perror("register");
            return 0;
        }
        fa = 0;
        fb = 1;
    }
    char out[64] = {}, in[64];
    double c0 = cpu();
    for (int i = 0; i < rounds; ++i) {
        io_uring_sqe* s = io_uring_get_sqe(&ring);
        io_uring_prep_send(s, fa, out, sizeof out, MSG_NOSIGNAL);
        if (fixed) s->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe* r = io_uring_get_sqe(&ring);
        io_uring_prep_recv(r, fb, in, sizeof in, MSG_WAITALL);
        if (fixed) r->flags |= IOSQE_FIXED_FILE;
        io_uring_submit_and_wait(&ring, 2);
        unsigned head, n = 0;
        io_uring_cqe* c;
        io_uring_for_each_cqe(&ring, head, c) {
            if (c->res < 0) {
                fprintf(stderr, "op: %s\n", strerror(-c->res));
                return 0;
            }
            ++n;
        }
        io_uring_cq_advance(&ring, n);
        if (n < 2) {
            io_uring_wait_cqe(&ring, &c);
            io_uring_cqe_seen(&ring, c);
        }
    }
    double per = (cpu() - c0) / rounds * 1e9;
    io_uring_queue_exit(&ring);
    return per;
}
int main() {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, (sockaddr*)&a, sizeof a);
    listen(l, 1);
    socklen_t len = sizeof a;
    getsockname(l, (sockaddr*)&a, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (sockaddr*)&a, sizeof a);
    int s = accept(l, nullptr, nullptr);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, 4);
    const int rounds = 200000;
    run(false, c, s, 20000);
    run(true, c, s, 20000);
    for (int rep = 0; rep < 5; ++rep) {
        double p = run(false, c, s, rounds), f = run(true, c, s, rounds);
        printf("plain %.0f ns, fixed %.0f ns CPU per send+recv pair (fixed/plain %.3f)\n", p, f, f / p);
    }
}
