// Zero-copy sends measured raw, before building them into coring (issue 17): liburing alone, write_all-like sends of
// BLOCK-byte buffers at depth 1 over TCP, IORING_OP_SEND against IORING_OP_SEND_ZC (which waits for the notification
// CQE before the buffer is used again, as write_all would have to), to a receiver that reads and discards. With
// IORING_SEND_ZC_REPORT_USAGE (Linux 6.2) each notification says whether the kernel had to copy after all.
//
//   g++ -O2 -std=gnu++20 benchmarks/compare/send_zc_raw.cpp -o /tmp/send_zc_raw -luring
//   taskset -c 1 /tmp/send_zc_raw recv 7811 &                          # loopback
//   taskset -c 0 /tmp/send_zc_raw send 127.0.0.1 7811 plain|zc BLOCK TOTAL_MIB
//
// Over a veth pair into a network namespace (no NIC here): ip netns add zcns; ip link add zcv0 type veth peer name
// zcv1; ip link set zcv1 netns zcns; ip addr add 10.77.0.1/24 dev zcv0; ip link set zcv0 up; ip netns exec zcns ip
// addr add 10.77.0.2/24 dev zcv1; ip netns exec zcns ip link set zcv1 up; then the receiver under
// `ip netns exec zcns` and the sender to 10.77.0.2. Results: benchmarks/results/send-zc-raw.txt.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>
static double cpu() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char** argv) {
    if (argc >= 3 && !strcmp(argv[1], "recv")) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, 4);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(atoi(argv[2]));
        a.sin_addr.s_addr = INADDR_ANY;
        if (bind(l, (sockaddr*)&a, sizeof a) || listen(l, 16)) {
            perror("bind");
            return 1;
        }
        for (;;) {
            int c = accept(l, nullptr, nullptr);
            std::vector<char> b(1 << 20);
            long long n = 0;
            ssize_t r;
            while ((r = recv(c, b.data(), b.size(), 0)) > 0) n += r;
            close(c);
        }
    }
    // send HOST PORT zc|plain BLOCK TOTAL_MIB
    const char* host = argv[2];
    int port = atoi(argv[3]);
    bool zc = !strcmp(argv[4], "zc");
    size_t block = strtoul(argv[5], nullptr, 0);
    long long total = atoll(argv[6]) << 20;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(s, (sockaddr*)&a, sizeof a)) {
        perror("connect");
        return 1;
    }
    io_uring ring;
    io_uring_queue_init(64, &ring, 0);
    std::vector<char> buf(block, 'x');
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu();
    long long sent = 0;
    long long notifs = 0, copied = 0;
    while (sent < total) {
        size_t off = 0;
        while (off < block) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            if (zc) {
                io_uring_prep_send_zc(sqe, s, buf.data() + off, block - off, MSG_NOSIGNAL, 1U << 3);
            } else io_uring_prep_send(sqe, s, buf.data() + off, block - off, MSG_NOSIGNAL);
            io_uring_submit(&ring);
            bool got_res = false, need_notif = zc;
            int res = 0;
            while (!got_res || need_notif) {
                io_uring_cqe* cqe;
                io_uring_wait_cqe(&ring, &cqe);
                if (cqe->flags & IORING_CQE_F_NOTIF) {
                    need_notif = false;
                    ++notifs;
                    if (cqe->res & (1U << 31)) ++copied;
                } else {
                    got_res = true;
                    res = cqe->res;
                    if (!(cqe->flags & IORING_CQE_F_MORE)) need_notif = false;
                }
                io_uring_cqe_seen(&ring, cqe);
            }
            if (res <= 0) {
                fprintf(stderr, "send: %s\n", strerror(-res));
                return 1;
            }
            off += res;
        }
        sent += block;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), cs = cpu() - c0;
    printf("%-5s block %7zu: %6.2f GB/s, sender CPU %.2f s per GiB (notifs %lld, copied %lld)\n", zc ? "zc" : "plain",
           block, sent / secs / 1e9, cs / (sent / double(1 << 30)), notifs, copied);
    close(s);
}
