#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <string>
#include <system_error>
#include <vector>

namespace test_resolve {

using namespace std::chrono_literals;
using coring::address;
using coring::task;

// The machine running the tests may have no network and no DNS: only numeric addresses and names of /etc/hosts
// ("localhost") are relied on, plus a name under .invalid, which never resolves (RFC 6761).

TEST_CASE("resolve - numeric IPv4 and IPv6 addresses resolve to themselves", "[net][resolve]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        const std::vector<address> v4 = co_await coring::resolve("127.0.0.1", 8080);
        REQUIRE(v4.size() == 1);
        CHECK(v4[0] == address::parse("127.0.0.1:8080"));

        const std::vector<address> v6 = co_await coring::resolve("::1", 443);
        REQUIRE(v6.size() == 1);
        CHECK(v6[0] == address::parse("[::1]:443"));

        const std::vector<address> bracketed = co_await coring::resolve("[::1]", 443);
        REQUIRE(bracketed.size() == 1);
        CHECK(bracketed[0] == v6[0]);

        const std::vector<address> narrowed = co_await coring::resolve("127.0.0.1", 1, AF_INET);
        REQUIRE(narrowed.size() == 1);
        CHECK(narrowed[0].to_string() == "127.0.0.1:1");

        const std::vector<address> dgram = co_await coring::resolve("10.1.2.3", 53, AF_UNSPEC, SOCK_DGRAM);
        REQUIRE(dgram.size() == 1);
        CHECK(dgram[0].to_string() == "10.1.2.3:53");
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("resolve - localhost gives loopback addresses with the port, without duplicates", "[net][resolve]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        const std::vector<address> all = co_await coring::resolve("localhost", 8080);
        REQUIRE_FALSE(all.empty());
        bool loopback = false;
        for (std::size_t i = 0; i < all.size(); ++i) {
            INFO(all[i].to_string());
            CHECK((all[i].is_ipv4() || all[i].is_ipv6()));
            CHECK(all[i].port() == 8080);
            loopback = loopback || all[i].to_string() == "127.0.0.1:8080" || all[i].to_string() == "[::1]:8080";
            for (std::size_t j = 0; j < i; ++j) CHECK_FALSE(all[i] == all[j]);
        }
        CHECK(loopback);

        const std::vector<address> v4 = co_await coring::resolve("localhost", 80, AF_INET);
        REQUIRE_FALSE(v4.empty());
        for (const address& a : v4) CHECK(a.is_ipv4());

        const std::vector<address> dgram = co_await coring::resolve("localhost", 53, AF_UNSPEC, SOCK_DGRAM);
        CHECK_FALSE(dgram.empty());

        // Only IPv6: /etc/hosts may or may not give localhost an IPv6 address; if it does, they are all IPv6.
        bool v6_failed = false;
        std::vector<address> v6;
        try {
            v6 = co_await coring::resolve("localhost", 80, AF_INET6);
        } catch (const std::system_error&) {
            v6_failed = true;
        }
        if (!v6_failed) {
            CHECK_FALSE(v6.empty());
            for (const address& a : v6) CHECK(a.is_ipv6());
        }
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("resolve - a name that cannot resolve is a std::system_error naming it", "[net][resolve]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        std::string what;
        std::string category;
        try {
            (void)co_await coring::resolve("nonexistent.invalid", 80);
        } catch (const std::system_error& e) {
            what = e.what();
            category = e.code().category().name();
        }
        INFO(what);
        CHECK(what.find("resolve nonexistent.invalid") != std::string::npos);
        CHECK_FALSE(category.empty());

        // A numeric IPv4 address asked for as IPv6 does not quietly come back as IPv4.
        bool failed = false;
        std::vector<address> got;
        try {
            got = co_await coring::resolve("127.0.0.1", 80, AF_INET6);
        } catch (const std::system_error&) {
            failed = true;
        }
        for (const address& a : got) CHECK(a.is_ipv6());
        CHECK((failed || !got.empty()));
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("resolve - many lookups at once all finish while the loop keeps running", "[net][resolve]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        std::vector<task<std::vector<address>>> lookups;
        for (int i = 0; i < 32; ++i)
            lookups.push_back(coring::resolve("localhost", static_cast<std::uint16_t>(1000 + i)));
        int ticks = 0;
        auto ticker = coring::spawn([](int& n) -> task<> {
            for (;;) {
                ++n;
                co_await coring::sleep(1ms);
            }
        }(ticks));
        const std::vector<std::vector<address>> results = co_await coring::gather(std::move(lookups));
        ticker.cancel();
        CHECK_THROWS_AS(co_await ticker, coring::cancelled_error);
        REQUIRE(results.size() == 32);
        for (std::size_t i = 0; i < results.size(); ++i) {
            REQUIRE_FALSE(results[i].empty());
            CHECK(results[i][0].port() == 1000 + i);
        }
    }());
    CHECK(coring_test::open_fds() == fds);
}

TEST_CASE("resolve - cancelling the caller stops its wait", "[net][resolve]") {
    const int fds = coring_test::open_fds();
    coring::run([]() -> task<> {
        auto h = coring::spawn(coring::resolve("localhost", 80));
        h.cancel();
        CHECK_THROWS_AS(co_await h, coring::cancelled_error);

        // A lookup bounded by a timeout: either it finishes in time or it is a timeout_error, never a hang.
        for (auto d : {0ms, 1ms, 50ms}) {
            try {
                const std::vector<address> got = co_await coring::timeout(d, coring::resolve("localhost", 80));
                CHECK_FALSE(got.empty());
            } catch (const coring::timeout_error&) {}
        }
    }());
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_resolve
