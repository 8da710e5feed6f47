// libFuzzer target: coring's llhttp wrapper, as a request parser and as a response parser, fed the input in pieces
// whose sizes come from the input itself (so the fuzzer also explores how a message is split across reads).
// Checks that parsing never crashes, never reads out of bounds (ASan), that the bookkeeping stays consistent, and
// that where the input is split never changes what it means: the requests parsed from it fed whole and fed in
// pieces are the same, field for field (a framing check that depended on read boundaries would be a smuggling
// vector of its own).
#include <coring/http/detail/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void must(bool ok) {
    if (!ok) std::abort();
}

/// What a request parse produced: each complete message flattened, and whether it ended in an error.
struct requests_seen {
    std::vector<std::string> messages;
    bool failed = false;
};

std::string flatten(const coring::http::request& r) {
    std::string s = r.method + ' ' + r.target + '\n';
    for (const auto& f : r.headers) s += "H " + f.name + ": " + f.value + '\n';
    for (const auto& f : r.trailers) s += "T " + f.name + ": " + f.value + '\n';
    return s + "B " + r.body;
}

/// Feeds the input in pieces of 1-61 bytes (sizes from `step_seed`), or whole when step_seed is 0.
template <class Parser>
void drive(Parser& p, const std::uint8_t* data, std::size_t size, std::size_t step_seed,
           const coring::http::request* req = nullptr, requests_seen* seen = nullptr) {
    const char* in = reinterpret_cast<const char*>(data);
    std::size_t pos = 0;
    int messages = 0;
    while (pos < size) {
        const std::size_t step = step_seed == 0 ? size : 1 + (step_seed * 2654435761u + pos) % 61;
        const std::size_t n = std::min(step, size - pos);
        std::size_t off = 0;
        while (off < n) {
            const auto r = p.feed(in + pos + off, n - off);
            must(r.consumed <= n - off);
            off += r.consumed;
            if (r.state == coring::http::detail::parse_state::error) {
                const int st = p.error_status();
                must(st == 400 || st == 413 || st == 414 || st == 431 || st == 501 || st == 505);
                if (seen) seen->failed = true;
                return;
            }
            if (r.state == coring::http::detail::parse_state::need_more) {
                must(off == n);
                break;
            }
            ++messages;
            if (seen) seen->messages.push_back(flatten(*req));
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
    requests_seen split, whole;
    {
        coring::http::request req;
        coring::http::detail::message_parser p(req, limits);
        drive(p, data + 1, size - 1, seed + 1, &req, &split);
        must(req.target.size() <= limits.max_target);
        must(req.headers.size() <= limits.max_headers);
        must(req.trailers.size() <= limits.max_headers);
        must(req.body.size() <= limits.max_body);
    }
    {
        coring::http::request req;
        coring::http::detail::message_parser p(req, limits);
        drive(p, data + 1, size - 1, 0, &req, &whole);
    }
    // The status of a refusal may differ (a check that sees a defect earlier answers 400 where a later one would
    // have said 501), but never whether the input is refused, nor any message accepted before that.
    must(split.messages == whole.messages);
    must(split.failed == whole.failed);
    {
        coring::http::headers h;
        std::string body;
        coring::http::detail::message_parser p(h, body, limits);
        p.expect_no_body(seed % 7 == 0);
        drive(p, data + 1, size - 1, seed);
    }
    return 0;
}
