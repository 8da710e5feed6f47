#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coring::http::detail {

/// How the body of a message is delimited, as the parser decided at the end of its header block.
enum class body_framing : std::uint8_t {
    none,        ///< no body (a GET, a 204, a response to HEAD)
    length,      ///< Content-Length bytes
    chunked,     ///< Transfer-Encoding: chunked, then trailer fields
    until_close, ///< a response without a length: everything until the peer closes
};

// Character classes (RFC 9110 sections 5.6.2 and 5.5).
inline constexpr std::uint8_t framing_tchar = 1; // token characters
inline constexpr std::uint8_t framing_value = 2; // field-value characters: VCHAR, obs-text, SP, HTAB
inline constexpr std::uint8_t framing_line = 4;  // start-line characters: the same as values
inline constexpr std::uint8_t framing_host = 8;  // reg-name characters of a Host (RFC 3986: unreserved, sub-delims, %)

constexpr std::array<std::uint8_t, 256> make_framing_classes() noexcept {
    std::array<std::uint8_t, 256> c{};
    for (std::size_t i = 0x21; i < 0x100; ++i)
        if (i != 0x7f) c[i] = framing_value | framing_line;
    c[' '] = c['\t'] = framing_value | framing_line;
    constexpr std::string_view tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const char ch : tchars) c[static_cast<unsigned char>(ch)] |= framing_tchar;
    constexpr std::string_view host = "-._~%!$&'()*+,;=0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const char ch : host) c[static_cast<unsigned char>(ch)] |= framing_host;
    return c;
}
inline constexpr std::array<std::uint8_t, 256> framing_classes = make_framing_classes();

/// A second, deliberately narrow reading of a message's framing, over exactly the bytes llhttp consumed.
///
/// llhttp 8.x (the version Debian ships, and so the one coring builds against by default) accepts a header block
/// ended by "\r\n\rX", takes any two bytes after chunk data as its CRLF, and lets whitespace stand between a field
/// name and its colon. Each of those makes coring see a message boundary where a front-end in front of it sees
/// none: request smuggling. Rather than chase each quirk, this checker holds every byte of the start line, the
/// header and trailer sections and the chunk framing to RFC 9112's grammar (CRLF only, token field names with the
/// colon right after them, no control characters in values, 1*HEXDIG chunk sizes, CRLF after chunk data), counts
/// the body itself, and insists that it and llhttp agree on where each message ends. Any disagreement is an error,
/// so a future llhttp quirk of the same kind becomes a 400 rather than a second request.
///
/// The bytes of a message may arrive split anywhere: the checker is a byte-level state machine carried across
/// calls. Field contents (method, target, version, Content-Length values, Host) are left to llhttp and to the
/// parser's own checks; this class is only about where lines, fields, chunks and messages begin and end.
class framing_checker {
public:
    /// Where a message's header block ended, the parser says how its body is delimited (llhttp has passed that point
    /// already, so its decision is known).
    struct body_decision {
        bool known = false; ///< false: llhttp did not see the header block end where this checker did
        body_framing framing = body_framing::none;
        std::uint64_t length = 0; ///< for body_framing::length
    };

    /// A checker for requests (`request`: the request line is held to method SP target SP version) or responses.
    explicit framing_checker(bool request) noexcept : request_(request) {}

    /// Prepares for the next message on the connection.
    void start() noexcept {
        st_ = st::start;
        trailers_ = false;
        remaining_ = 0;
        digits_ = 0;
        seen_digit_ = false;
    }

    /// Checks `n` bytes that llhttp consumed. `llhttp_done`: llhttp completed a message exactly at the end of them.
    /// `decision` is read when the header block ends. Returns null when the bytes are well framed and both readings
    /// agree, otherwise why not.
    const char* scan(const char* p, std::size_t n, bool llhttp_done, const body_decision& decision) noexcept {
        const char* const end = p + n;
        while (p < end) {
            if (st_ == st::field) {
                // The common case, a whole field line in the buffer, in two tight loops and no state change.
                const char* q = p;
                while (q < end && (cls(*q) & k_tchar)) ++q;
                if (q != p && q < end && *q == ':') {
                    ++q;
                    while (q < end && (cls(*q) & k_value)) ++q;
                    if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
                        p = q + 2;
                        continue;
                    }
                }
            } else if (st_ == st::start && request_) {
                // A whole request line: method SP target SP version CRLF.
                const char* q = p;
                while (q < end && (cls(*q) & k_tchar)) ++q;
                if (q != p && q < end && *q == ' ') {
                    const char* t = ++q;
                    while (q<end&& static_cast<unsigned char>(*q)> 0x20 && *q != 0x7f) ++q;
                    if (q != t && q < end && *q == ' ') {
                        const char* v = ++q;
                        while (q<end&& static_cast<unsigned char>(*q)> 0x20 && *q != 0x7f) ++q;
                        if (q != v && end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
                            p = q + 2;
                            st_ = st::field;
                            continue;
                        }
                    }
                }
            }
            if (st_ == st::done) return "bytes after the end of a message (the framing is ambiguous)";
            if (const char* why = step(p, end, decision)) return why;
        }
        if (llhttp_done && st_ != st::done) return "the message ended early (the framing is ambiguous)";
        if (!llhttp_done && st_ == st::done) return "the message did not end where its framing says";
        return nullptr;
    }

    /// The peer closed: true when the message in progress may end here (a body delimited by the close, or nothing
    /// begun).
    [[nodiscard]] bool may_end_at_close() const noexcept {
        return st_ == st::until_close || st_ == st::done || st_ == st::start;
    }

    /// Whether the start line has begun (blank lines before it do not count).
    [[nodiscard]] bool started() const noexcept { return st_ != st::start && st_ != st::start_cr; }

private:
    enum class st : std::uint8_t {
        start,       // before the start line; blank lines (CRLF) are skipped, as RFC 9112 section 2.2 allows
        start_cr,    // a CR before the start line
        line,        // in a status line, up to its status code
        reason,      // in its reason phrase
        method,      // in the method of a request line
        target,      // in its target
        version,     // in its version
        line_cr,     // CR at the end of the start line
        field,       // at the beginning of a field line (or of the blank line that ends the section)
        name,        // in a field name
        value,       // in a field value (after the colon)
        value_cr,    // CR at the end of a field line
        end_cr,      // CR of the blank line that ends the header or trailer section
        length,      // Content-Length body
        size,        // chunk size
        size_bws,    // whitespace after a chunk size, before ';'
        ext,         // chunk extension
        size_cr,     // CR after a chunk-size line
        data,        // chunk data
        data_cr,     // the CR that must follow chunk data
        data_lf,     // the LF that must follow it
        until_close, // body delimited by the close
        done         // the message is complete
    };

    static constexpr std::uint8_t k_tchar = framing_tchar;
    static constexpr std::uint8_t k_value = framing_value;
    static constexpr std::uint8_t k_line = framing_line;
    static std::uint8_t cls(char ch) noexcept { return framing_classes[static_cast<unsigned char>(ch)]; }
    static int hex(char c) noexcept {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    /// Consumes one or more bytes at `p`; returns why the input is refused, or null.
    const char* step(const char*& p, const char* end, const body_decision& decision) noexcept {
        const char c = *p;
        switch (st_) {
        case st::start:
            ++p;
            if (c == '\r') st_ = st::start_cr;
            else if (request_ && (cls(c) & k_tchar)) st_ = st::method;
            else if (!request_ && c == 'H') {
                st_ = st::line;
                remaining_ = 1; // position in the status line
            } else return "invalid character before the start line";
            return nullptr;
        // The request line is method SP request-target SP HTTP-version, with single spaces (RFC 9112 section 3):
        // a parser that splits on runs of whitespace reads "GET  /a b HTTP/1.1" differently from one that does not.
        case st::method:
            while (p < end && (cls(*p) & k_tchar)) ++p;
            if (p == end) return nullptr;
            if (*p++ != ' ') return "invalid character in the method";
            st_ = st::target;
            remaining_ = 0;
            return nullptr;
        case st::target:
            while (p<end&& static_cast<unsigned char>(*p)> 0x20 && *p != 0x7f) {
                ++p;
                remaining_ = 1; // the target is not empty
            }
            if (p == end) return nullptr;
            if (*p++ != ' ' || remaining_ == 0) return "invalid request target";
            st_ = st::version;
            return nullptr;
        case st::version:
            while (p<end&& static_cast<unsigned char>(*p)> 0x20 && *p != 0x7f) ++p;
            if (p == end) return nullptr;
            if (*p++ != '\r') return "invalid character after the HTTP version";
            st_ = st::line_cr;
            return nullptr;
        case st::start_cr:
            ++p;
            if (c != '\n') return "CR not followed by LF";
            st_ = st::start;
            return nullptr;
        // The status line is HTTP-version SP 3DIGIT [SP reason-phrase] (RFC 9112 section 4): llhttp 8 reads
        // "HTTP/1.1  204" as status 0 with a body, where a reader that splits on whitespace sees a 204 without one.
        case st::line: {
            ++p;
            constexpr std::string_view shape = "HTTP/0.0 000"; // '0': any digit
            const auto at = static_cast<std::size_t>(remaining_);
            if (at < shape.size()) {
                const bool ok = shape[at] == '0' ? (c >= '0' && c <= '9') : c == shape[at];
                if (!ok) return "malformed status line (HTTP/x.y, one space, three digits)";
                ++remaining_;
                return nullptr;
            }
            if (c == '\r') st_ = st::line_cr;
            else if (c == ' ') st_ = st::reason;
            else return "malformed status line (HTTP/x.y, one space, three digits)";
            return nullptr;
        }
        case st::reason:
            while (p < end && (cls(*p) & k_line)) ++p; // the common bytes in one tight loop
            if (p == end) return nullptr;
            if (*p++ != '\r') return "invalid character in the reason phrase (bare LF, NUL or a control)";
            st_ = st::line_cr;
            return nullptr;
        case st::line_cr:
            ++p;
            if (c != '\n') return "CR not followed by LF in the start line";
            st_ = st::field;
            return nullptr;
        case st::field:
            ++p;
            if (c == '\r') st_ = st::end_cr;
            else if (cls(c) & k_tchar) st_ = st::name;
            else if (c == ' ' || c == '\t') return "a field line begins with whitespace (obs-fold)";
            else return "invalid character at the start of a field name";
            return nullptr;
        case st::name:
            while (p < end && (cls(*p) & k_tchar)) ++p;
            if (p == end) return nullptr;
            if (*p++ != ':') return "invalid character in a field name (or whitespace before the colon)";
            st_ = st::value;
            return nullptr;
        case st::value:
            while (p < end && (cls(*p) & k_value)) ++p;
            if (p == end) return nullptr;
            if (*p++ != '\r') return "invalid character in a field value (bare LF, NUL or a control)";
            st_ = st::value_cr;
            return nullptr;
        case st::value_cr:
            ++p;
            if (c != '\n') return "CR not followed by LF in a field line";
            st_ = st::field;
            return nullptr;
        case st::end_cr:
            ++p;
            if (c != '\n') return "the header section does not end with CRLF CRLF";
            if (trailers_) {
                st_ = st::done;
                return nullptr;
            }
            return begin_body(decision);
        case st::length: {
            const auto avail = static_cast<std::uint64_t>(end - p);
            const std::uint64_t take = avail < remaining_ ? avail : remaining_;
            p += take;
            remaining_ -= take;
            if (remaining_ == 0) st_ = st::done;
            return nullptr;
        }
        case st::size: {
            const int h = hex(c);
            if (h >= 0) {
                ++p;
                seen_digit_ = true;
                if (remaining_ != 0 || h != 0) ++digits_; // leading zeros do not count towards the limit
                if (digits_ > 15) return "chunk size too large";
                remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(h);
                return nullptr;
            }
            if (!seen_digit_) return "invalid chunk size";
            ++p;
            if (c == '\r') st_ = st::size_cr;
            else if (c == ';') st_ = st::ext;
            else if (c == ' ' || c == '\t') st_ = st::size_bws;
            else return "invalid character after a chunk size";
            return nullptr;
        }
        case st::size_bws:
            ++p;
            if (c == ';') st_ = st::ext;
            else if (c != ' ' && c != '\t') return "invalid character after a chunk size";
            return nullptr;
        case st::ext:
            while (p < end && (cls(*p) & k_value)) ++p;
            if (p == end) return nullptr;
            if (*p++ != '\r') return "invalid character in a chunk extension";
            st_ = st::size_cr;
            return nullptr;
        case st::size_cr:
            ++p;
            if (c != '\n') return "CR not followed by LF after a chunk size";
            if (remaining_ == 0) {
                trailers_ = true; // the last chunk: trailer fields follow, then a blank line
                st_ = st::field;
            } else {
                st_ = st::data;
            }
            return nullptr;
        case st::data: {
            const auto avail = static_cast<std::uint64_t>(end - p);
            const std::uint64_t take = avail < remaining_ ? avail : remaining_;
            p += take;
            remaining_ -= take;
            if (remaining_ == 0) st_ = st::data_cr;
            return nullptr;
        }
        case st::data_cr:
            ++p;
            if (c != '\r') return "chunk data not followed by CRLF";
            st_ = st::data_lf;
            return nullptr;
        case st::data_lf:
            ++p;
            if (c != '\n') return "chunk data not followed by CRLF";
            st_ = st::size;
            digits_ = 0;
            seen_digit_ = false;
            return nullptr;
        case st::until_close:
            p = end;
            return nullptr;
        case st::done:
            break;
        }
        return "bytes after the end of a message";
    }

    const char* begin_body(const body_decision& d) noexcept {
        if (!d.known) return "the header section ended where the parser saw no end (the framing is ambiguous)";
        switch (d.framing) {
        case body_framing::none:
            st_ = st::done;
            break;
        case body_framing::length:
            remaining_ = d.length;
            st_ = remaining_ == 0 ? st::done : st::length;
            break;
        case body_framing::chunked:
            remaining_ = 0;
            digits_ = 0;
            seen_digit_ = false;
            st_ = st::size;
            break;
        case body_framing::until_close:
            st_ = st::until_close;
            break;
        }
        return nullptr;
    }

    st st_ = st::start;
    bool request_;
    bool trailers_ = false;
    std::uint64_t remaining_ = 0; // body or chunk bytes still to come; the chunk size while it is read
    unsigned digits_ = 0;         // significant hex digits of the chunk size so far
    bool seen_digit_ = false;     // the chunk size has at least one digit
};

} // namespace coring::http::detail
