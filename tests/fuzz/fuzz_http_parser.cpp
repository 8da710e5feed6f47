// libFuzzer target: coring's llhttp wrapper, as a request parser and as a response parser, fed the input in pieces
// whose sizes come from the input itself (so the fuzzer also explores how a message is split across reads).
// Checks that parsing never crashes, never reads out of bounds (ASan), and that the bookkeeping stays consistent.
#include <coring/http/detail/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

void must(bool ok) {
    if (!ok) std::abort();
}

template <class Parser>
void drive(Parser& p, const std::uint8_t* data, std::size_t size, std::size_t step_seed) {
    const char* in = reinterpret_cast<const char*>(data);
    std::size_t pos = 0;
    int messages = 0;
    while (pos < size) {
        const std::size_t step = 1 + (step_seed * 2654435761u + pos) % 61;
        const std::size_t n = std::min(step, size - pos);
        std::size_t off = 0;
        while (off < n) {
            const auto r = p.feed(in + pos + off, n - off);
            must(r.consumed <= n - off);
            off += r.consumed;
            if (r.state == coring::http::detail::parse_state::error) {
                const int st = p.error_status();
                must(st == 400 || st == 413 || st == 414 || st == 431 || st == 505);
                return;
            }
            if (r.state == coring::http::detail::parse_state::need_more) {
                must(off == n);
                break;
            }
            ++messages;
            p.next();
        }
        pos += n;
    }
    (void)p.finish();
    (void)messages;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t seed = data[0];
    coring::http::detail::parse_limits limits;
    limits.max_target = 256;
    limits.max_header_bytes = 1024;
    limits.max_headers = 16;
    limits.max_body = 4096;
    {
        coring::http::request req;
        coring::http::detail::message_parser p(req, limits);
        drive(p, data + 1, size - 1, seed);
        must(req.target.size() <= limits.max_target);
        must(req.headers.size() <= limits.max_headers);
        must(req.body.size() <= limits.max_body);
    }
    {
        coring::http::headers h;
        std::string body;
        coring::http::detail::message_parser p(h, body, limits);
        p.expect_no_body(seed % 7 == 0);
        drive(p, data + 1, size - 1, seed);
    }
    return 0;
}
