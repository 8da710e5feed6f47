#pragma once

// RFC 6455's pieces that need no I/O: frame headers (parse and encode), masking, UTF-8 validation, close codes, and
// the handshake's accept key (SHA-1 and base64, written here so that plain ws:// needs no OpenSSL).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace coring::http::detail {

/// Frame opcodes (RFC 6455 section 5.2).
enum class ws_opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

[[nodiscard]] constexpr bool ws_is_control(std::uint8_t op) noexcept { return (op & 0x8) != 0; }
[[nodiscard]] constexpr bool ws_is_known(std::uint8_t op) noexcept { return op <= 0x2 || (op >= 0x8 && op <= 0xA); }

/// A parsed frame header.
struct ws_frame_header {
    bool fin = false;
    std::uint8_t rsv = 0; ///< the three reserved bits (RSV1..3), as bits 2..0
    std::uint8_t opcode = 0;
    bool masked = false;
    std::array<std::uint8_t, 4> mask{};
    std::uint64_t length = 0;        ///< the payload length
    std::size_t header_size = 0;     ///< bytes the header took (2 to 14)
    bool length_invalid = false;     ///< a 64-bit length with its most significant bit set (section 5.2)
    bool length_not_minimal = false; ///< a length that a shorter encoding could carry (tolerated: browsers never do it)
};

/// Parses a frame header at the start of `in`. Returns false when `in` does not hold all of it yet.
[[nodiscard]] inline bool ws_parse_header(std::string_view in, ws_frame_header& h) noexcept {
    if (in.size() < 2) return false;
    const auto b0 = static_cast<std::uint8_t>(in[0]);
    const auto b1 = static_cast<std::uint8_t>(in[1]);
    h.fin = (b0 & 0x80) != 0;
    h.rsv = static_cast<std::uint8_t>((b0 >> 4) & 0x7);
    h.opcode = static_cast<std::uint8_t>(b0 & 0x0F);
    h.masked = (b1 & 0x80) != 0;
    const std::uint8_t len7 = b1 & 0x7F;
    std::size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (h.masked ? 4 : 0);
    if (in.size() < need) return false;
    std::size_t at = 2;
    h.length_invalid = false;
    h.length_not_minimal = false;
    if (len7 == 126) {
        h.length = (std::uint64_t{static_cast<std::uint8_t>(in[2])} << 8) | static_cast<std::uint8_t>(in[3]);
        h.length_not_minimal = h.length < 126;
        at = 4;
    } else if (len7 == 127) {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<std::uint8_t>(in[static_cast<std::size_t>(2 + i)]);
        h.length_invalid = (v >> 63) != 0;
        h.length_not_minimal = v <= 0xFFFF;
        h.length = v;
        at = 10;
    } else {
        h.length = len7;
    }
    if (h.masked) {
        for (std::size_t i = 0; i < 4; ++i) h.mask[i] = static_cast<std::uint8_t>(in[at + i]);
        at += 4;
    }
    h.header_size = at;
    return true;
}

/// Appends a frame header to `out` (`mask` null: unmasked; `rsv`: the reserved bits RSV1..3 as bits 2..0).
inline void ws_append_header(std::string& out, bool fin, std::uint8_t opcode, std::uint64_t length,
                             const std::uint8_t* mask, std::uint8_t rsv = 0) {
    out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | ((rsv & 0x7) << 4) | (opcode & 0x0F)));
    const std::uint8_t mbit = mask ? 0x80 : 0x00;
    if (length < 126) {
        out.push_back(static_cast<char>(mbit | length));
    } else if (length <= 0xFFFF) {
        out.push_back(static_cast<char>(mbit | 126));
        out.push_back(static_cast<char>((length >> 8) & 0xFF));
        out.push_back(static_cast<char>(length & 0xFF));
    } else {
        out.push_back(static_cast<char>(mbit | 127));
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((length >> shift) & 0xFF));
    }
    if (mask) out.append(reinterpret_cast<const char*>(mask), 4);
}

/// XORs `n` bytes with the mask, starting at mask position `offset` (masking and unmasking are the same).
inline void ws_apply_mask(char* data, std::size_t n, const std::array<std::uint8_t, 4>& mask,
                          std::size_t offset = 0) noexcept {
    std::size_t i = 0;
    // Eight bytes at a time through a rotated 64-bit key: the byte loop alone is a measurable cost at 64 KiB.
    std::uint8_t k[8];
    for (std::size_t j = 0; j < 8; ++j) k[j] = mask[(offset + j) & 3];
    std::uint64_t key;
    std::memcpy(&key, k, 8);
    for (; i + 8 <= n; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, data + i, 8);
        v ^= key;
        std::memcpy(data + i, &v, 8);
    }
    for (; i < n; ++i) data[i] = static_cast<char>(static_cast<std::uint8_t>(data[i]) ^ mask[(offset + i) & 3]);
}

/// Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
[[nodiscard]] inline bool ws_valid_utf8(std::string_view s) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    while (p < end) {
        // ASCII runs eight bytes at a time.
        while (end - p >= 8) {
            std::uint64_t v;
            std::memcpy(&v, p, 8);
            if (v & 0x8080808080808080ULL) break;
            p += 8;
        }
        if (p >= end) break;
        const unsigned c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        int n = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;      // overlong
            else if (c == 0xED) hi = 0x9F; // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;      // overlong
            else if (c == 0xF4) hi = 0x8F; // above U+10FFFF
        } else {
            return false;
        }
        if (end - p <= n) return false;
        if (p[1] < lo || p[1] > hi) return false;
        for (int i = 2; i <= n; ++i)
            if (p[i] < 0x80 || p[i] > 0xBF) return false;
        p += n + 1;
    }
    return true;
}

/// Whether a peer may send `code` in a close frame (RFC 6455 section 7.4; 1004-1006 and 1015 are never sent).
[[nodiscard]] constexpr bool ws_valid_close_code(unsigned code) noexcept {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/// SHA-1 (FIPS 180-4) of `data`: only for the handshake's accept key, where it is what RFC 6455 specifies.
[[nodiscard]] inline std::array<std::uint8_t, 20> sha1(std::string_view data) {
    std::uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    std::string m(data);
    const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
    m.push_back(static_cast<char>(0x80));
    while (m.size() % 64 != 56) m.push_back('\0');
    for (int shift = 56; shift >= 0; shift -= 8) m.push_back(static_cast<char>((bits >> shift) & 0xFF));
    auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
    for (std::size_t block = 0; block < m.size(); block += 64) {
        std::uint32_t w[80];
        for (std::size_t i = 0; i < 16; ++i) {
            const auto* b = reinterpret_cast<const unsigned char*>(m.data() + block + i * 4);
            w[i] = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
        }
        for (std::size_t i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (std::size_t i = 0; i < 80; ++i) {
            std::uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rotl(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    std::array<std::uint8_t, 20> out{};
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 4; ++j) out[i * 4 + j] = static_cast<std::uint8_t>(h[i] >> (24 - 8 * j));
    return out;
}

[[nodiscard]] inline std::string base64_encode(const std::uint8_t* data, std::size_t n) {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (std::size_t i = 0; i < n; i += 3) {
        const std::uint32_t v = (std::uint32_t{data[i]} << 16) | (i + 1 < n ? std::uint32_t{data[i + 1]} << 8 : 0) |
                                (i + 2 < n ? std::uint32_t{data[i + 2]} : 0);
        out.push_back(table[(v >> 18) & 63]);
        out.push_back(table[(v >> 12) & 63]);
        out.push_back(i + 1 < n ? table[(v >> 6) & 63] : '=');
        out.push_back(i + 2 < n ? table[v & 63] : '=');
    }
    return out;
}

/// The number of bytes `s` decodes to when it is valid base64 (padded), or -1.
[[nodiscard]] inline long base64_decoded_size(std::string_view s) noexcept {
    if (s.empty() || s.size() % 4 != 0) return -1;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (alnum || c == '+' || c == '/') {
            if (pad) return -1; // data after padding
            continue;
        }
        if (c == '=' && i >= s.size() - 2) {
            ++pad;
            continue;
        }
        return -1;
    }
    return static_cast<long>(s.size() / 4 * 3 - pad);
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
[[nodiscard]] inline std::string ws_accept_key(std::string_view key) {
    std::string k(key);
    k += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const std::array<std::uint8_t, 20> digest = sha1(k);
    return base64_encode(digest.data(), digest.size());
}

} // namespace coring::http::detail
