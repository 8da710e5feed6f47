#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/net.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace test_address {

using coring::address;

namespace {

const sockaddr_in& v4(const address& a) { return *reinterpret_cast<const sockaddr_in*>(a.data()); }
const sockaddr_in6& v6(const address& a) { return *reinterpret_cast<const sockaddr_in6*>(a.data()); }
const sockaddr_un& un(const address& a) { return *reinterpret_cast<const sockaddr_un*>(a.data()); }

/// The message of the std::invalid_argument that parsing `text` throws ("" when it does not throw).
std::string parse_error(const std::string& text) {
    try {
        (void)address::parse(text);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_CASE("address - an empty address has no family, port or text", "[net][address]") {
    const address a;
    CHECK(a.empty());
    CHECK(a.family() == AF_UNSPEC);
    CHECK_FALSE(a.is_ipv4());
    CHECK_FALSE(a.is_ipv6());
    CHECK_FALSE(a.is_unix());
    CHECK(a.port() == 0);
    CHECK(a.size() == 0);
    CHECK(a.to_string().empty());
    CHECK(a.with_port(80).empty());
    CHECK(a == address{});
}

TEST_CASE("address - IPv4 parse, to_string, port, with_port and family", "[net][address]") {
    const address a = address::parse("127.0.0.1:8080");
    CHECK_FALSE(a.empty());
    CHECK(a.family() == AF_INET);
    CHECK(a.is_ipv4());
    CHECK_FALSE(a.is_ipv6());
    CHECK_FALSE(a.is_unix());
    CHECK(a.port() == 8080);
    CHECK(a.size() == sizeof(sockaddr_in));
    CHECK(v4(a).sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(v4(a).sin_port == htons(8080));
    CHECK(a.to_string() == "127.0.0.1:8080");
    CHECK(address::parse(a.to_string()) == a);

    const address b = a.with_port(9);
    CHECK(b.port() == 9);
    CHECK(b.to_string() == "127.0.0.1:9");
    CHECK(a.port() == 8080); // the original is unchanged
    CHECK_FALSE(a == b);
    CHECK(b.with_port(8080) == a);

    CHECK(address::parse("0.0.0.0:0").port() == 0);
    CHECK(address::parse("0.0.0.0:0").to_string() == "0.0.0.0:0");
    CHECK(address::parse("255.255.255.255:65535").port() == 65535);
    CHECK(address::parse("10.1.2.3:00080").port() == 80); // leading zeros in the port are fine
    CHECK(address::from("10.0.0.1", 53) == address::parse("10.0.0.1:53"));
}

TEST_CASE("address - IPv6 parse, to_string, port, with_port and family", "[net][address]") {
    const address a = address::parse("[::1]:80");
    CHECK(a.family() == AF_INET6);
    CHECK(a.is_ipv6());
    CHECK_FALSE(a.is_ipv4());
    CHECK(a.port() == 80);
    CHECK(a.size() == sizeof(sockaddr_in6));
    CHECK(std::memcmp(&v6(a).sin6_addr, &in6addr_loopback, sizeof(in6_addr)) == 0);
    CHECK(v6(a).sin6_scope_id == 0);
    CHECK(a.to_string() == "[::1]:80");
    CHECK(a.with_port(443).to_string() == "[::1]:443");
    CHECK(a.with_port(443).port() == 443);

    // The text is the canonical form, whatever form was parsed.
    CHECK(address::parse("[2001:0db8:0000:0000:0000:0000:0000:0001]:65535").to_string() == "[2001:db8::1]:65535");
    CHECK(address::parse("[::]:0").to_string() == "[::]:0");
    CHECK(address::parse("[::ffff:127.0.0.1]:5").to_string() == "[::ffff:127.0.0.1]:5");
    CHECK(address::from("::1", 7) == a.with_port(7));
    CHECK(address::from("2001:db8::1", 1).to_string() == "[2001:db8::1]:1");
    CHECK_FALSE(address::parse("[::1]:80") == address::parse("127.0.0.1:80"));
}

TEST_CASE("address - IPv6 with a scope: by interface name or number, kept by with_port", "[net][address]") {
    const unsigned lo = ::if_nametoindex("lo");
    REQUIRE(lo != 0);

    const address named = address::parse("[fe80::1%lo]:80");
    CHECK(named.is_ipv6());
    CHECK(v6(named).sin6_scope_id == lo);
    CHECK(named.to_string() == "[fe80::1%lo]:80");
    CHECK(address::parse(named.to_string()) == named);
    CHECK(named.with_port(81).to_string() == "[fe80::1%lo]:81");
    CHECK(v6(named.with_port(81)).sin6_scope_id == lo);

    // A numeric scope of a known interface is written back with its name; an unknown one stays a number.
    const address numeric = address::parse("[fe80::1%" + std::to_string(lo) + "]:80");
    CHECK(numeric == named);
    const address unknown = address::parse("[fe80::2%4000]:1");
    CHECK(v6(unknown).sin6_scope_id == 4000);
    CHECK(unknown.to_string() == "[fe80::2%4000]:1");
    CHECK(address::from("fe80::1%lo", 80) == named);

    CHECK_THROWS_AS(address::parse("[fe80::1%no-such-interface]:80"), std::invalid_argument);
    CHECK_THROWS_AS(address::parse("[fe80::1%]:80"), std::invalid_argument);
}

TEST_CASE("address - Unix path and abstract addresses", "[net][address]") {
    const address path = address::parse("unix:/run/app.sock");
    CHECK(path.family() == AF_UNIX);
    CHECK(path.is_unix());
    CHECK(path.port() == 0);
    CHECK(path.to_string() == "unix:/run/app.sock");
    CHECK(std::string(un(path).sun_path) == "/run/app.sock");
    // A filesystem path counts its terminating NUL.
    CHECK(path.size() == offsetof(sockaddr_un, sun_path) + std::strlen("/run/app.sock") + 1);
    CHECK(path.with_port(80) == path); // no port to change
    CHECK(address::parse(path.to_string()) == path);
    CHECK(address::parse("unix:relative.sock").to_string() == "unix:relative.sock");

    const address abstract = address::parse("unix:@name");
    CHECK(abstract.is_unix());
    CHECK(un(abstract).sun_path[0] == '\0');
    CHECK(std::memcmp(un(abstract).sun_path + 1, "name", 4) == 0);
    // An abstract name has no terminating NUL: the length counts exactly the leading NUL and the name.
    CHECK(abstract.size() == offsetof(sockaddr_un, sun_path) + 5);
    CHECK(abstract.to_string() == "unix:@name");
    CHECK(address::parse(abstract.to_string()) == abstract);
    CHECK_FALSE(abstract == address::parse("unix:/name"));

    // The longest path that fits sun_path with its NUL; one more character does not fit.
    const std::string longest(sizeof(sockaddr_un::sun_path) - 1, 'p');
    CHECK(address::parse("unix:" + longest).to_string() == "unix:" + longest);
    CHECK_THROWS_AS(address::parse("unix:" + longest + "p"), std::invalid_argument);

    // The unnamed address of a connecting Unix socket (only the family, as accept reports it).
    sockaddr_un unnamed{};
    unnamed.sun_family = AF_UNIX;
    const address anon(reinterpret_cast<const sockaddr*>(&unnamed), sizeof(sa_family_t));
    CHECK(anon.is_unix());
    CHECK(anon.to_string() == "unix:");
}

TEST_CASE("address - a sockaddr from the kernel is copied, one too long is rejected", "[net][address]") {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(4242);
    in.sin_addr.s_addr = htonl(0x0a000001);
    const address a(reinterpret_cast<const sockaddr*>(&in), sizeof in);
    CHECK(a.to_string() == "10.0.0.1:4242");

    address room;
    CHECK(address::capacity() == sizeof(sockaddr_storage));
    std::memcpy(room.data(), &in, sizeof in);
    room.resize(sizeof in);
    CHECK(room == a);

    alignas(sockaddr_storage) char big[sizeof(sockaddr_storage) + 8]{};
    CHECK_THROWS_AS(address(reinterpret_cast<const sockaddr*>(big), sizeof big), std::invalid_argument);
}

TEST_CASE("address - bad inputs are std::invalid_argument naming the text", "[net][address]") {
    for (const char* text : {"",
                             "127.0.0.1",
                             "127.0.0.1:",
                             ":80",
                             "127.0.0.1:65536",
                             "127.0.0.1:-1",
                             "127.0.0.1:80x",
                             "127.0.0.1: 80",
                             "127.0.0.1:+80",
                             "127.0.0.1:0x50",
                             "256.0.0.1:80",
                             "1.2.3:80",
                             "localhost:80",
                             "example.com:443",
                             "::1:80",
                             "[::1]",
                             "[::1]:",
                             "[::1]80",
                             "[::1",
                             "::1]:80",
                             "[]:80",
                             "[::g]:80",
                             "[::1]:99999",
                             "unix:",
                             "tcp:1.2.3.4:5"}) {
        INFO("text: \"" << text << "\"");
        const std::string message = parse_error(text);
        CHECK_FALSE(message.empty());
        if (*text) CHECK(message.find(text) != std::string::npos);
    }
    // Host names are not addresses: they must be resolved.
    CHECK_THROWS_AS(address::from("localhost", 80), std::invalid_argument);
    CHECK_THROWS_AS(address::from("[::1]", 80), std::invalid_argument);
    CHECK_THROWS_AS(address::from("", 80), std::invalid_argument);
}

TEST_CASE("address - from_path: a Unix address from a std::filesystem::path, string, string_view or const char*",
          "[net][address][path]") {
    const std::string p = "/run/app.sock";
    const address expected = address::parse("unix:/run/app.sock");
    CHECK(address::from_path(std::filesystem::path(p)) == expected);
    CHECK(address::from_path(p) == expected);
    CHECK(address::from_path(std::string_view(p)) == expected);
    CHECK(address::from_path(p.c_str()) == expected);
    CHECK(address::from_path("@name") == address::parse("unix:@name"));
    CHECK(address::from_path(std::filesystem::path("rel.sock")).to_string() == "unix:rel.sock");
    CHECK_THROWS_AS(address::from_path(""), std::invalid_argument);
    CHECK_THROWS_AS(address::from_path(std::string(200, 'x')), std::invalid_argument);
}

} // namespace test_address
