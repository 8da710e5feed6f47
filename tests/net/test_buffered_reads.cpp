// The read-ahead buffer shared by streams that are not sockets of their own (TLS, pipes): what a move leaves behind.
#include <coring/coring.hpp>
#include <coring/net/detail/buffered_reads.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <utility>

namespace test_buffered_reads {

using coring::task;

namespace {

/// A source that hands out a fixed text, as much as asked for at a time.
class text_source : public coring::detail::buffered_reads<text_source> {
public:
    explicit text_source(std::string text) : text_(std::move(text)) {}
    task<std::size_t> fill(std::span<char> into) {
        const std::size_t n = std::min(into.size(), text_.size() - pos_);
        std::memcpy(into.data(), text_.data() + pos_, n);
        pos_ += n;
        co_return n;
    }

private:
    std::string text_;
    std::size_t pos_ = 0;
};

} // namespace

TEST_CASE("buffered reads - a move takes the read-ahead bytes and leaves none behind", "[net][buffered_reads]") {
    coring::run([]() -> task<> {
        text_source a("hello world");
        char three[3];
        co_await a.read_exact(std::span<char>(three, 3)); // fills the buffer with all 11 bytes, takes 3
        CHECK(std::string(three, 3) == "hel");
        CHECK(a.buffered() == 8);

        text_source b(std::move(a));
        CHECK(b.buffered() == 8);
        CHECK(a.buffered() == 0); // not the 8 it had (nor 0 - 3, once the buffer's size is reset)
        std::string line = co_await b.read_until("d");
        CHECK(line == "lo world"); // with its delimiter

        text_source c("abc");
        co_await c.read_exact(std::span<char>(three, 1));
        CHECK(c.buffered() == 2);
        c = std::move(b);
        CHECK(c.buffered() == 0); // b's were all read
        CHECK(b.buffered() == 0);
        text_source d("xyz");
        co_await d.read_exact(std::span<char>(three, 1));
        c = std::move(d);
        CHECK(c.buffered() == 2);
        CHECK(d.buffered() == 0);
        const std::size_t n = co_await c.read(std::span<char>(three, 3));
        CHECK(std::string(three, n) == "yz");
    }());
}

} // namespace test_buffered_reads
