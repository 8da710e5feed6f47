// wait_readable / wait_writable / wait_ready on descriptors coring does not own, and release_fd before a close.
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace test_wait_ready {

using namespace std::chrono_literals;
using coring::task;

namespace {

struct raw_pipe {
    int r = -1, w = -1;
    raw_pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        r = fds[0];
        w = fds[1];
    }
    raw_pipe(const raw_pipe&) = delete;
    raw_pipe& operator=(const raw_pipe&) = delete;
    ~raw_pipe() {
        if (r >= 0) ::close(r);
        if (w >= 0) ::close(w);
    }
};

} // namespace

TEST_CASE("wait_ready - a pipe: readable once written, writable at once, the wait consumes nothing", "[wait_ready]") {
    raw_pipe p;
    unsigned in = 0, out = 0;
    std::string got;
    coring::run([&]() -> task<> {
        out = co_await coring::wait_writable(p.w);
        auto writer = [](int fd) -> task<> {
            co_await coring::sleep(20ms);
            REQUIRE(::write(fd, "hi", 2) == 2);
        };
        auto h = coring::spawn(writer(p.w));
        in = co_await coring::wait_readable(p.r);
        char buf[8];
        const ssize_t n = ::read(p.r, buf, sizeof buf);
        if (n > 0) got.assign(buf, static_cast<std::size_t>(n));
        co_await h;
    }());
    CHECK((out & POLLOUT) != 0);
    CHECK((in & POLLIN) != 0);
    CHECK(got == "hi");
}

TEST_CASE("wait_ready - a closed peer shows as POLLHUP, events of wait_ready are the ones asked for", "[wait_ready]") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
    unsigned ev = 0;
    coring::run([&]() -> task<> {
        auto closer = [](int fd) -> task<> {
            co_await coring::sleep(10ms);
            ::close(fd);
        };
        auto h = coring::spawn(closer(fds[1]));
        ev = co_await coring::wait_ready(fds[0], POLLIN | POLLRDHUP);
        co_await h;
    }());
    ::close(fds[0]);
    CHECK((ev & (POLLRDHUP | POLLHUP)) != 0);
}

TEST_CASE("wait_ready - a wait for input or output wakes when only output becomes possible", "[wait_ready]") {
    // libpq's flush wait: the socket's send buffer is full and nothing comes in; the peer then drains it.
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
    std::size_t filled = 0;
    while (true) {
        char chunk[4096] = {};
        const ssize_t n = ::send(fds[0], chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n <= 0) break;
        filled += static_cast<std::size_t>(n);
    }
    REQUIRE(filled > 0);
    unsigned ev = 0;
    bool waited = false;
    coring::run([&]() -> task<> {
        auto drainer = [](int fd, std::size_t bytes) -> task<> {
            co_await coring::sleep(20ms);
            char buf[65536];
            std::size_t got = 0;
            while (got < bytes) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n > 0) got += static_cast<std::size_t>(n);
                else (void)co_await coring::wait_readable(fd);
            }
        };
        auto h = coring::spawn(drainer(fds[1], filled));
        coring_test::stopwatch sw;
        ev = co_await coring::wait_ready(fds[0], POLLIN | POLLOUT);
        waited = sw.seconds() >= 0.015;
        co_await h;
    }());
    ::close(fds[0]);
    ::close(fds[1]);
    CHECK((ev & POLLOUT) != 0);
    CHECK((ev & POLLIN) == 0);
    CHECK(waited);
}

TEST_CASE("wait_ready - POLLPRI: TCP urgent data wakes the wait and is reported", "[wait_ready]") {
    // The epoll backend must watch EPOLLPRI too (a sysfs or cgroup file signals a change only that way): urgent data
    // alone makes no EPOLLIN, so before it did, this wait hung there. (POLLIN is asked for as well because io_uring
    // on 6.18 does not wake a POLLPRI-only poll of a TCP socket for urgent data, while poll(2) does.)
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(l >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(l, 1) == 0);
    REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const int s = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    REQUIRE(s >= 0);
    unsigned ev = 0;
    bool waited = false;
    coring::run([](int s, int c, unsigned& ev, bool& waited) -> task<> {
        auto sender = [](int c) -> task<> {
            co_await coring::sleep(20ms);
            const char urgent = '!';
            (void)::send(c, &urgent, 1, MSG_OOB | MSG_NOSIGNAL);
        };
        auto h = coring::spawn(sender(c));
        coring_test::stopwatch sw;
        ev = co_await coring::timeout(5s, coring::wait_ready(s, POLLPRI | POLLIN));
        waited = sw.seconds() >= 0.015;
        co_await h;
    }(s, c, ev, waited));
    ::close(s);
    ::close(c);
    ::close(l);
    CHECK((ev & POLLPRI) != 0);
    CHECK(waited);
}

TEST_CASE("wait_ready - cancelled by a timeout, then the data that comes is still there", "[wait_ready][cancel]") {
    raw_pipe p;
    bool timed_out = false;
    unsigned later = 0;
    coring::run([&]() -> task<> {
        try {
            (void)co_await coring::timeout(20ms, coring::wait_readable(p.r));
        } catch (const coring::timeout_error&) {
            timed_out = true;
        }
        REQUIRE(::write(p.w, "x", 1) == 1);
        later = co_await coring::wait_readable(p.r);
    }());
    CHECK(timed_out);
    CHECK((later & POLLIN) != 0);
    char c = 0;
    CHECK(::read(p.r, &c, 1) == 1);
    CHECK(c == 'x');
}

TEST_CASE("wait_ready - release_fd ends the waits on a descriptor about to close, its number is reused cleanly",
          "[wait_ready]") {
    const int fds_before = coring_test::open_fds();
    int released = 0;
    int err = 0;
    unsigned reused = 0;
    bool other_woke = false;
    coring::run([&]() -> task<> {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        raw_pipe other;
        auto waiter = [](int fd, int& code) -> task<> {
            try {
                (void)co_await coring::wait_readable(fd);
            } catch (const std::system_error& e) {
                code = e.code().value();
            }
        };
        auto a = coring::spawn(waiter(fds[0], err));
        auto b = coring::spawn(waiter(fds[0], released));
        auto other_wait = [](int fd, bool& woke) -> task<> {
            (void)co_await coring::wait_readable(fd);
            woke = true;
        };
        auto c = coring::spawn(other_wait(other.r, other_woke));
        co_await coring::sleep(10ms);
        // A library's close hook: release, then close. The waits on other descriptors are untouched.
        coring::release_fd(fds[0]);
        ::close(fds[0]);
        co_await a;
        co_await b;
        // A new descriptor with the same number must wait like any other (on epoll: no stale registration).
        int again[2];
        REQUIRE(::pipe2(again, O_CLOEXEC | O_NONBLOCK) == 0);
        CHECK(again[0] == fds[0]);
        auto writer = [](int fd) -> task<> {
            co_await coring::sleep(10ms);
            REQUIRE(::write(fd, "y", 1) == 1);
        };
        auto d = coring::spawn(writer(again[1]));
        reused = co_await coring::wait_readable(again[0]);
        co_await d;
        REQUIRE(::write(other.w, "z", 1) == 1);
        co_await c;
        coring::release_fd(again[0]);
        ::close(again[0]);
        ::close(again[1]);
        ::close(fds[1]);
    }());
    CHECK(err == EBADF);
    CHECK(released == EBADF);
    CHECK((reused & POLLIN) != 0);
    CHECK(other_woke);
    CHECK(coring_test::open_fds() == fds_before);
}

TEST_CASE("wait_ready - a foreign non-blocking client (as a C library drives one) talks to a coring server",
          "[wait_ready][net]") {
    // What libpq or libcurl do on the loop: their own socket, non-blocking calls, and a wait whenever one says EAGAIN.
    std::string answer;
    coring::run([&]() -> task<> {
        auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
        auto server = [](coring::tcp_listener& l) -> task<> {
            auto s = co_await l.accept();
            std::string line = co_await s.read_until("\n");
            co_await s.write_all("echo: " + line);
            co_await s.close();
        };
        auto h = coring::spawn(server(listener));
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in sa{};
        std::memcpy(&sa, listener.local_address().data(), sizeof sa);
        const int r = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        if (r != 0) {
            REQUIRE(errno == EINPROGRESS);
            (void)co_await coring::wait_writable(fd);
        }
        const std::string request = "ping\n";
        std::size_t sent = 0;
        while (sent < request.size()) {
            const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
            if (n > 0) sent += static_cast<std::size_t>(n);
            else if (errno == EAGAIN) (void)co_await coring::wait_writable(fd);
            else FAIL("send: " << std::strerror(errno));
        }
        for (;;) {
            char buf[256];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n > 0) answer.append(buf, static_cast<std::size_t>(n));
            else if (n == 0) break;
            else if (errno == EAGAIN) (void)co_await coring::wait_readable(fd);
            else FAIL("recv: " << std::strerror(errno));
        }
        coring::release_fd(fd);
        ::close(fd);
        co_await h;
    }());
    CHECK(answer == "echo: ping\n");
}

TEST_CASE("wait_ready - a hundred descriptors waited at once each wake once, a bad descriptor is an exception",
          "[wait_ready]") {
    std::vector<int> woke(100, 0);
    bool invalid = false;
    coring::run([&]() -> task<> {
        std::vector<std::unique_ptr<raw_pipe>> pipes;
        for (int i = 0; i < 100; ++i) pipes.push_back(std::make_unique<raw_pipe>());
        std::vector<task<>> waits;
        for (int i = 0; i < 100; ++i) {
            waits.push_back([](int fd, int& n) -> task<> {
                (void)co_await coring::wait_readable(fd);
                ++n;
            }(pipes[static_cast<std::size_t>(i)]->r, woke[static_cast<std::size_t>(i)]));
        }
        auto all = coring::spawn(coring::gather(std::move(waits)));
        co_await coring::sleep(5ms);
        for (int i = 99; i >= 0; --i) REQUIRE(::write(pipes[static_cast<std::size_t>(i)]->w, "!", 1) == 1);
        co_await all;
        try {
            (void)co_await coring::wait_readable(-1);
        } catch (const std::invalid_argument&) {
            invalid = true;
        }
    }());
    int total = 0;
    for (int n : woke) total += n;
    CHECK(total == 100);
    CHECK(invalid);
}

} // namespace test_wait_ready
