#pragma once

// permessage-deflate (RFC 7692) for coring's WebSockets: the negotiation of its parameters (both sides) and the
// compressor and decompressor of one connection, over zlib. Compiled in when CORING_HTTP_ZLIB is 1 (CMake sets it
// when it finds zlib); the negotiation code is always here, so that a build without zlib can say so clearly.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if CORING_HTTP_ZLIB
#include <coring/detail/byte_buffer.hpp>

#include <zlib.h>

#include <span>
#endif

namespace coring::http::detail {

/// Whether this build can compress WebSocket messages (zlib was found).
inline constexpr bool ws_deflate_available =
#if CORING_HTTP_ZLIB
    true;
#else
    false;
#endif

/// The agreed parameters of permessage-deflate (RFC 7692 section 7.1).
struct ws_deflate_params {
    bool server_no_context_takeover = false; ///< the server resets its compressor after each message
    bool client_no_context_takeover = false; ///< the client resets its compressor after each message
    int server_max_window_bits = 15;         ///< the server compresses with at most this window (8 to 15)
    int client_max_window_bits = 15;         ///< the client compresses with at most this window (8 to 15)
};

/// One extension of a Sec-WebSocket-Extensions list: its name and parameters (a parameter without a value has an
/// empty optional).
struct ws_extension {
    std::string name;
    std::vector<std::pair<std::string, std::optional<std::string>>> params;
};

inline bool ws_ext_token_char(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127) return false;
    return std::string_view("()<>@,;:\\\"/[]?={}").find(c) == std::string_view::npos;
}

/// Parses the header lines of Sec-WebSocket-Extensions (RFC 6455 section 9.1: extension *(";" param), params are
/// token [= token | quoted-string]). std::nullopt when the syntax is broken.
inline std::optional<std::vector<ws_extension>> ws_parse_extensions(const std::vector<std::string_view>& lines) {
    std::vector<ws_extension> out;
    for (std::string_view v : lines) {
        std::size_t i = 0;
        const auto skip_ws = [&] {
            while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) ++i;
        };
        const auto token = [&]() -> std::string {
            const std::size_t b = i;
            while (i < v.size() && ws_ext_token_char(v[i])) ++i;
            return std::string(v.substr(b, i - b));
        };
        for (;;) {
            skip_ws();
            if (i == v.size()) break;
            if (v[i] == ',') { // empty list elements are allowed (#rule)
                ++i;
                continue;
            }
            ws_extension e;
            e.name = token();
            if (e.name.empty()) return std::nullopt;
            skip_ws();
            while (i < v.size() && v[i] == ';') {
                ++i;
                skip_ws();
                std::string name = token();
                if (name.empty()) return std::nullopt;
                skip_ws();
                std::optional<std::string> value;
                if (i < v.size() && v[i] == '=') {
                    ++i;
                    skip_ws();
                    if (i < v.size() && v[i] == '"') {
                        ++i;
                        std::string q;
                        while (i < v.size() && v[i] != '"') {
                            if (v[i] == '\\' && i + 1 < v.size()) ++i;
                            q.push_back(v[i++]);
                        }
                        if (i == v.size()) return std::nullopt; // unterminated
                        ++i;
                        value = std::move(q);
                    } else {
                        value = token();
                        if (value->empty()) return std::nullopt;
                    }
                    skip_ws();
                }
                e.params.emplace_back(std::move(name), std::move(value));
            }
            out.push_back(std::move(e));
            if (i == v.size()) break;
            if (v[i] != ',') return std::nullopt;
            ++i;
        }
    }
    return out;
}

/// A window size parameter: 8 to 15 in decimal, nothing else.
inline std::optional<int> ws_window_bits(const std::optional<std::string>& v) {
    if (!v || v->empty() || v->size() > 2) return std::nullopt;
    int n = 0;
    for (char c : *v) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + (c - '0');
    }
    if (n < 8 || n > 15) return std::nullopt;
    return n;
}

/// The parameters of one permessage-deflate offer or answer, checked: known names once each, valid values. In an
/// offer (`offer`) client_max_window_bits may come without a value. std::nullopt when not acceptable.
inline std::optional<ws_deflate_params> ws_deflate_read(const ws_extension& e, bool offer) {
    if (e.name != "permessage-deflate") return std::nullopt;
    ws_deflate_params p;
    bool seen[4] = {false, false, false, false};
    for (const auto& [name, value] : e.params) {
        int k = -1;
        if (name == "server_no_context_takeover") k = 0;
        else if (name == "client_no_context_takeover") k = 1;
        else if (name == "server_max_window_bits") k = 2;
        else if (name == "client_max_window_bits") k = 3;
        if (k < 0 || seen[k]) return std::nullopt;
        seen[k] = true;
        if (k < 2) {
            if (value) return std::nullopt;
            (k == 0 ? p.server_no_context_takeover : p.client_no_context_takeover) = true;
        } else if (k == 2) {
            const auto bits = ws_window_bits(value);
            if (!bits) return std::nullopt;
            p.server_max_window_bits = *bits;
        } else {
            if (!value && offer) continue; // "I can take a client_max_window_bits answer"
            const auto bits = ws_window_bits(value);
            if (!bits) return std::nullopt;
            p.client_max_window_bits = *bits;
        }
    }
    return p;
}

/// The server's choice: the first permessage-deflate offer it can accept, and the answer's header value.
inline std::optional<std::pair<ws_deflate_params, std::string>>
ws_deflate_accept(const std::vector<std::string_view>& lines) {
    const auto list = ws_parse_extensions(lines);
    if (!list) return std::nullopt;
    for (const ws_extension& e : *list) {
        const auto p = ws_deflate_read(e, true);
        if (!p) continue;
        std::string answer = "permessage-deflate";
        if (p->server_no_context_takeover) answer += "; server_no_context_takeover";
        if (p->client_no_context_takeover) answer += "; client_no_context_takeover";
        if (p->server_max_window_bits != 15)
            answer += "; server_max_window_bits=" + std::to_string(p->server_max_window_bits);
        // A client's own limit needs no answer; the server never asks for a smaller client window.
        ws_deflate_params agreed = *p;
        agreed.client_max_window_bits = 15;
        for (const auto& [name, value] : e.params)
            if (name == "client_max_window_bits" && value) agreed.client_max_window_bits = *ws_window_bits(value);
        return std::make_pair(agreed, std::move(answer));
    }
    return std::nullopt;
}

/// What the client offers.
inline constexpr std::string_view ws_deflate_offer = "permessage-deflate; client_max_window_bits";

/// The client's check of the server's answer: exactly one permessage-deflate, with parameters it may send.
inline std::optional<ws_deflate_params> ws_deflate_check_answer(const std::vector<std::string_view>& lines) {
    const auto list = ws_parse_extensions(lines);
    if (!list || list->size() != 1) return std::nullopt;
    return ws_deflate_read(list->front(), false);
}

/// The compressor and decompressor of one connection. Messages are compressed whole (one frame each, RSV1 set),
/// ending in a sync flush whose 00 00 FF FF tail is taken off (section 7.2.1); decompression puts it back.
class ws_deflate {
public:
    enum class inflated { ok, too_big, bad_data };

    ws_deflate(const ws_deflate_params& p, bool server) noexcept
        : bits_(server ? p.server_max_window_bits : p.client_max_window_bits),
          reset_(server ? p.server_no_context_takeover : p.client_no_context_takeover) {}
    ws_deflate(const ws_deflate&) = delete;
    ws_deflate& operator=(const ws_deflate&) = delete;
    ~ws_deflate() {
#if CORING_HTTP_ZLIB
        if (d_ready_) deflateEnd(&d_);
        if (i_ready_) inflateEnd(&i_);
#endif
    }

    /// Whether messages may go compressed. zlib cannot make a raw deflate stream with a 256-byte window (it uses 512
    /// instead), so a peer that asked for window bits 8 gets every message uncompressed, which is always allowed.
    [[nodiscard]] bool can_compress() const noexcept { return ws_deflate_available && bits_ >= 9; }
    /// Whether a message of `n` bytes goes compressed: never an empty one (a sync flush of nothing, after another
    /// message, is no bytes at all, which the peer cannot read as a block), nor one beyond a zlib call's reach.
    [[nodiscard]] bool worth_compressing(std::size_t n) const noexcept {
        return can_compress() && n > 0 && n <= (std::size_t{1} << 31);
    }

    /// Appends the compressed form of `in` to `out`. Throws std::bad_alloc, std::runtime_error on a zlib failure.
    void compress([[maybe_unused]] std::string_view in, [[maybe_unused]] std::string& out) {
#if CORING_HTTP_ZLIB
        if (!d_ready_) {
            // Level 1: most of the size gain on text for a fraction of the default level's time (measured in
            // benchmarks/compare/ws_vs_peers.py --deflate); memLevel 8 is zlib's default.
            if (deflateInit2(&d_, 1, Z_DEFLATED, -bits_, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                throw std::runtime_error("coring: websocket: deflateInit2 failed");
            d_ready_ = true;
        }
        // Into a buffer that grows without zeroing, then appended: resizing `out` by a computed amount made GCC 12
        // (-O1, sanitizers) see a memset of up to SIZE_MAX and fail the build with -Wstringop-overflow.
        zbuf_.clear();
        d_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        d_.avail_in = static_cast<uInt>(in.size());
        do {
            const std::span<char> room = zbuf_.prepare(std::max<std::size_t>(256, in.size() / 2 + 64));
            const auto avail = static_cast<uInt>(std::min<std::size_t>(room.size(), std::size_t{1} << 30));
            d_.next_out = reinterpret_cast<Bytef*>(room.data());
            d_.avail_out = avail;
            const int r = deflate(&d_, Z_SYNC_FLUSH);
            zbuf_.commit(avail - d_.avail_out);
            if (r != Z_OK && r != Z_BUF_ERROR) throw std::runtime_error("coring: websocket: deflate failed");
        } while (d_.avail_out == 0 || d_.avail_in > 0);
        std::string_view made = zbuf_.view();
        if (made.size() >= 4 && made.substr(made.size() - 4) == std::string_view("\x00\x00\xff\xff", 4))
            made.remove_suffix(4);
        out.append(made.data(), made.size());
        if (zbuf_.capacity() > keep_bytes) zbuf_ = coring::detail::byte_buffer(); // one large message: not kept
        if (reset_) deflateReset(&d_);
#endif
    }

    /// Replaces `out` with the decompressed form of `in`; too_big as soon as it would exceed `limit` bytes, bad_data
    /// for anything that is not a message's deflate data ending at a block boundary (a sync flush, as section 7.2.1
    /// has it, or a final block).
    inflated decompress([[maybe_unused]] std::string_view in, std::string& out, [[maybe_unused]] std::size_t limit) {
        out.clear();
#if CORING_HTTP_ZLIB
        if (in.size() > (std::size_t{1} << 31)) return inflated::too_big; // beyond what one zlib call takes
        if (!i_ready_) {
            // The largest window: the peer's is at most that, and a larger window reads a smaller one's stream.
            if (inflateInit2(&i_, -15) != Z_OK) throw std::runtime_error("coring: websocket: inflateInit2 failed");
            i_ready_ = true;
        }
        static constexpr char tail[4] = {'\x00', '\x00', '\xff', '\xff'};
        const std::string_view parts[2] = {in, std::string_view(tail, 4)};
        // Into a buffer that grows without zeroing (see compress()), then copied out.
        ibuf_.clear();
        bool final_block = false;
        for (const std::string_view part : parts) {
            if (final_block) break; // the message ended its deflate stream: the tail belongs to no block
            i_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
            i_.avail_in = static_cast<uInt>(part.size());
            while (i_.avail_in > 0) {
                if (ibuf_.size() > limit) return too_big(out);
                // Room for more, but never much past the limit: a bomb stops at limit + 1 bytes.
                const std::size_t want =
                    std::min<std::size_t>(std::max<std::size_t>(4096, in.size() * 2), limit + 1 - ibuf_.size());
                const std::span<char> room = ibuf_.prepare(std::max<std::size_t>(want, 1));
                const auto avail = static_cast<uInt>(
                    std::min<std::size_t>({room.size(), limit + 1 - ibuf_.size(), std::size_t{1} << 30}));
                i_.next_out = reinterpret_cast<Bytef*>(room.data());
                i_.avail_out = avail;
                const int r = inflate(&i_, Z_SYNC_FLUSH);
                ibuf_.commit(avail - i_.avail_out);
                if (ibuf_.size() > limit) return too_big(out);
                if (r == Z_STREAM_END) {
                    // A final block (section 7.2.3.4): the next message starts a new stream, over the same window
                    // when the context is kept. Anything after it in this message is not deflate data.
                    if (i_.avail_in > 0) return fail(out);
                    keep_window_across_reset();
                    final_block = true;
                    break;
                }
                if (r == Z_BUF_ERROR && i_.avail_out > 0) break; // no progress possible: the input is used up
                if (r != Z_OK && r != Z_BUF_ERROR) return fail(out);
            }
        }
        // Between blocks, or the data was cut short (and the next message would be read from the middle of a block).
        if (!final_block && (i_.data_type & 128) == 0) return fail(out);
        out.assign(ibuf_.data(), ibuf_.size());
        if (ibuf_.capacity() > keep_bytes) ibuf_ = coring::detail::byte_buffer(); // one large message: not kept
#endif
        return inflated::ok;
    }

    /// Forgets the compressor's history, so that the next message refers to nothing before it: what a message that
    /// was compressed and then not sent needs (the peer never saw it). Always decodable by the peer.
    void reset_compressor() noexcept {
#if CORING_HTTP_ZLIB
        if (d_ready_) deflateReset(&d_);
#endif
    }

private:
#if CORING_HTTP_ZLIB
    static inflated fail(std::string& out) noexcept {
        out.clear();
        return inflated::bad_data;
    }
    static inflated too_big(std::string& out) noexcept {
        out.clear();
        return inflated::too_big;
    }
    /// inflateReset forgets the window; a peer that keeps its context still refers to it.
    void keep_window_across_reset() {
        std::string dict(32768, '\0');
        uInt n = static_cast<uInt>(dict.size());
        if (inflateGetDictionary(&i_, reinterpret_cast<Bytef*>(dict.data()), &n) != Z_OK) n = 0;
        inflateReset(&i_);
        if (n > 0) inflateSetDictionary(&i_, reinterpret_cast<const Bytef*>(dict.data()), n);
    }
#endif

    int bits_;
    bool reset_;
#if CORING_HTTP_ZLIB
    z_stream d_{};
    z_stream i_{};
    static constexpr std::size_t keep_bytes = 256 * 1024; // the most of either buffer kept between messages
    coring::detail::byte_buffer zbuf_;                    // compress()'s output, reused
    coring::detail::byte_buffer ibuf_;                    // decompress()'s output, reused
    bool d_ready_ = false;
    bool i_ready_ = false;
#endif
};

} // namespace coring::http::detail
