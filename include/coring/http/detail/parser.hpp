#pragma once

#include <coring/http/detail/framing.hpp>
#include <coring/http/message.hpp>

#include <llhttp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace coring::http::detail {

/// What a parser accepts before it gives up, and the status a server answers with when it does.
struct parse_limits {
    std::size_t max_target = 8 * 1024;        ///< request target (414)
    std::size_t max_header_bytes = 32 * 1024; ///< names and values of all header fields together (431)
    std::size_t max_headers = 100;            ///< header fields (431)
    std::size_t max_body = 1024 * 1024;       ///< body (413), Content-Length or chunked
};

/// Where a parse stands after feed().
enum class parse_state {
    need_more,    ///< everything given was consumed; the message is not complete
    message_done, ///< one message is complete (more bytes may follow: pipelining); call next() before feeding on
    error,        ///< the input is not acceptable HTTP/1.1; error_status() says how to answer
};

/// Whether `v` is a valid Host field value (RFC 9110 section 7.2: uri-host [ ":" port ], which may be empty).
inline bool valid_host(std::string_view v) noexcept {
    std::size_t i = 0;
    if (!v.empty() && v[0] == '[') { // IP-literal: the address itself is not parsed, only its characters
        const std::size_t close = v.find(']');
        if (close == std::string_view::npos || close < 2) return false;
        for (i = 1; i < close; ++i) {
            const char c = v[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.' ||
                  c == 'v' || c == 'V'))
                return false;
        }
        i = close + 1;
    } else { // reg-name or IPv4address: unreserved / pct-encoded / sub-delims
        for (; i < v.size() && v[i] != ':'; ++i) {
            if (!(framing_classes[static_cast<unsigned char>(v[i])] & framing_host)) return false;
            // ',' is a sub-delim, but two Host fields joined by a proxy look like that: refused. '%' must be an escape.
            if (v[i] == ',') return false;
            if (v[i] == '%' && (i + 2 >= v.size() || hex_value(v[i + 1]) < 0 || hex_value(v[i + 2]) < 0)) return false;
        }
    }
    if (i == v.size()) return true;
    if (v[i] != ':') return false;
    std::uint32_t port = 0;
    for (++i; i < v.size(); ++i) {
        if (v[i] < '0' || v[i] > '9') return false;
        port = port * 10 + static_cast<std::uint32_t>(v[i] - '0');
        if (port > 65535) return false;
    }
    return true;
}

/// llhttp (the parser behind Node.js), strict: no lenient flag is ever set, so request smuggling vectors (both
/// Content-Length and Transfer-Encoding, duplicate Content-Length, invalid chunk sizes) are errors. llhttp 8's own
/// framing quirks are closed by a framing_checker over the same bytes (see framing.hpp): obs-fold, a header block
/// not ended by CRLF CRLF, chunk data not followed by CRLF, whitespace before a colon are all errors. Requests also
/// need exactly one valid Host (HTTP/1.1) and may not use Transfer-Encoding with HTTP/1.0.
///
/// It collects one message at a time into the sinks it is bound to: the start line, the header fields, the body
/// (which a streaming reader may drain between feeds) and the trailer fields of a chunked body, which are kept apart
/// from the header fields (a trailer never becomes a header). It pauses after each complete message, so that
/// pipelined requests are answered one by one, in order.
class message_parser {
public:
    /// A request parser (server side).
    message_parser(request& into, const parse_limits& limits) noexcept
        : limits_(limits),
          headers_(&into.headers),
          trailers_(&into.trailers),
          target_(&into.target),
          body_(&into.body),
          request_(&into) {
        llhttp_init(&p_, HTTP_REQUEST, &settings());
        p_.data = this;
    }
    /// A response parser (client side): status, headers and body go to the given sinks; trailer fields are dropped
    /// unless set_trailers() names a sink for them.
    message_parser(http::headers& headers, std::string& body, const parse_limits& limits) noexcept
        : limits_(limits), headers_(&headers), trailers_(&dropped_trailers_), body_(&body) {
        llhttp_init(&p_, HTTP_RESPONSE, &settings());
        p_.data = this;
    }
    message_parser(const message_parser&) = delete;
    /// Where the trailer fields of a chunked response go (from the next message on).
    void set_trailers(http::headers& sink) noexcept { trailers_ = &sink; }
    message_parser& operator=(const message_parser&) = delete;

    struct result {
        std::size_t consumed;
        parse_state state;
    };

    /// Parses `n` bytes; returns how many were consumed and the state. After message_done, the bytes not consumed
    /// belong to the next message.
    result feed(const char* data, std::size_t n) noexcept {
        if (failed_) return {0, parse_state::error};
        if (done_) return {0, parse_state::message_done};
        const llhttp_errno_t err = llhttp_execute(&p_, data, n);
        std::size_t used = n;
        bool done = false;
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            const char* pos = llhttp_get_error_pos(&p_);
            used = pos ? static_cast<std::size_t>(pos - data) : n;
            done = true;
            if (err == HPE_PAUSED_UPGRADE) keep_alive_ = false; // no upgrades: answer, then close
        } else if (err != HPE_OK) {
            fail(err);
            return {0, parse_state::error};
        }
        // llhttp has run its callbacks over these bytes (so the body decision is known); nothing is acted on before
        // the checker agrees with it.
        if (const char* why = framing_.scan(data, used, done, decision_)) {
            refuse_framing(why);
            return {0, parse_state::error};
        }
        return {used, done ? parse_state::message_done : parse_state::need_more};
    }

    /// The input ended (the peer closed): completes a message delimited by the end of the connection (a response
    /// without length). Returns message_done, need_more (nothing was in progress), or error (a truncated message).
    parse_state finish() noexcept {
        if (failed_) return parse_state::error;
        if (done_) return parse_state::message_done;
        if (!in_message_ && !framing_.started()) return parse_state::need_more; // nothing begun since next()
        const bool was_in_message = in_message_;
        const llhttp_errno_t err = llhttp_finish(&p_);
        if (done_) {
            if (!framing_.may_end_at_close()) {
                refuse_framing("the message ended at the close where its framing says it goes on");
                return parse_state::error;
            }
            return parse_state::message_done;
        }
        if (err == HPE_OK && !was_in_message) return parse_state::need_more;
        fail(err == HPE_OK ? HPE_INVALID_EOF_STATE : err);
        return parse_state::error;
    }

    /// After message_done: ready for the next message on the same connection.
    void next() noexcept {
        if (!done_) return; // only between messages: llhttp and the framing checker must restart together
        done_ = false;
        headers_done_ = false;
        expect_continue_ = false;
        framing_.start();
        llhttp_resume(&p_);
    }

    /// The message was cut short by the peer closing: for a request, a client that gave up.
    [[nodiscard]] bool in_message() const noexcept { return in_message_; }
    /// The header block is complete (the body may still be arriving).
    [[nodiscard]] bool headers_done() const noexcept { return headers_done_; }
    /// The request asked for "Expect: 100-continue" and its body has not been read yet.
    [[nodiscard]] bool expect_continue() const noexcept { return expect_continue_; }
    void continue_sent() noexcept { expect_continue_ = false; }
    /// Whether the connection may carry another message after this one.
    [[nodiscard]] bool keep_alive() const noexcept { return keep_alive_; }
    /// The status code of a parsed response.
    [[nodiscard]] int status_code() const noexcept { return p_.status_code; }
    /// HTTP/1.<minor> of the message.
    [[nodiscard]] int version_minor() const noexcept { return p_.http_minor; }
    /// For a response to HEAD (or any message known to have no body): skip the body whatever the headers say.
    void expect_no_body(bool yes) noexcept { no_body_ = yes; }

    /// The status a server answers a bad request with (400, 413, 414, 431, 505) and why.
    [[nodiscard]] int error_status() const noexcept { return error_status_; }
    [[nodiscard]] const std::string& error_reason() const noexcept { return error_reason_; }

private:
    static const llhttp_settings_t& settings() noexcept {
        static const llhttp_settings_t s = [] {
            llhttp_settings_t st;
            llhttp_settings_init(&st);
            st.on_message_begin = &on_message_begin;
            st.on_url = &on_url;
            st.on_header_field = &on_header_field;
            st.on_header_value = &on_header_value;
            st.on_headers_complete = &on_headers_complete;
            st.on_body = &on_body;
            st.on_message_complete = &on_message_complete;
            return st;
        }();
        return s;
    }
    /// llhttp's name of a method, measured once.
    static std::string_view method_name(unsigned method) noexcept {
        static const auto names = [] {
            std::array<std::string_view, 64> n{};
#define CORING_HTTP_METHOD_NAME(NUM, NAME, STRING)                                                                     \
    if ((NUM) < n.size()) n[(NUM)] = #STRING;
            HTTP_ALL_METHOD_MAP(CORING_HTTP_METHOD_NAME)
#undef CORING_HTTP_METHOD_NAME
            return n;
        }();
        if (method < names.size() && !names[method].empty()) return names[method];
        return llhttp_method_name(static_cast<llhttp_method_t>(method));
    }
    static message_parser& self(llhttp_t* p) noexcept { return *static_cast<message_parser*>(p->data); }

    int refuse(int status, const char* reason) noexcept {
        error_status_ = status;
        refuse_reason_ = reason; // llhttp reports a callback's error as "User callback error"; keep ours
        llhttp_set_error_reason(&p_, reason);
        return HPE_USER;
    }

    void refuse_framing(const char* why) noexcept {
        failed_ = true;
        error_status_ = 400;
        try {
            error_reason_ = std::string("framing: ") + why;
        } catch (...) {}
    }

    void fail(llhttp_errno_t err) noexcept {
        failed_ = true;
        if (error_status_ == 0) error_status_ = 400; // refuse() chose a status already
        const char* reason = refuse_reason_ ? refuse_reason_ : llhttp_get_error_reason(&p_);
        try {
            error_reason_ = std::string(llhttp_errno_name(err)) + ": " + (reason ? reason : "");
        } catch (...) {}
    }

    static int on_message_begin(llhttp_t* p) noexcept {
        auto& s = self(p);
        s.in_message_ = true;
        s.headers_->clear();
        s.trailers_->clear();
        s.fields_ = s.headers_;
        s.decision_ = {};
        s.close_after_ = false;
        if (s.target_) s.target_->clear();
        s.body_->clear();
        if (s.request_) s.request_->params.clear();
        s.header_bytes_ = 0;
        s.in_field_ = false;
        return 0;
    }
    static int on_url(llhttp_t* p, const char* at, std::size_t n) noexcept {
        auto& s = self(p);
        if (s.target_->size() + n > s.limits_.max_target) return s.refuse(414, "request target too long");
        s.target_->append(at, n);
        return 0;
    }
    static int on_header_field(llhttp_t* p, const char* at, std::size_t n) noexcept {
        auto& s = self(p);
        if (!s.in_field_) {
            if (s.fields_->size() >= s.limits_.max_headers) return s.refuse(431, "too many header fields");
            s.fields_->add({}, {});
            s.in_field_ = true;
        }
        s.header_bytes_ += n;
        if (s.header_bytes_ > s.limits_.max_header_bytes) return s.refuse(431, "header fields too large");
        s.fields_->back().name.append(at, n);
        return 0;
    }
    static int on_header_value(llhttp_t* p, const char* at, std::size_t n) noexcept {
        auto& s = self(p);
        // obs-fold (a value continued on a line that starts with whitespace), which llhttp 8 joins to the value, is
        // refused by the framing checker once llhttp returns.
        if (!s.in_field_ && s.fields_->empty()) return s.refuse(400, "a field value without a name");
        s.in_field_ = false;
        s.header_bytes_ += n;
        if (s.header_bytes_ > s.limits_.max_header_bytes) return s.refuse(431, "header fields too large");
        s.fields_->back().value.append(at, n);
        return 0;
    }
    /// Trailing whitespace is not part of a field value (RFC 9110 section 5.5), but llhttp 8 keeps it: "Host: a "
    /// would not compare equal to "a". (Leading whitespace never reaches on_header_value.) One pass at the end of
    /// the section rather than a callback per field.
    static void trim_values(http::headers& fields) noexcept {
        for (std::size_t i = 0; i < fields.size(); ++i) {
            std::string& v = fields.edit(i).value;
            if (v.empty() || (v.back() != ' ' && v.back() != '\t')) continue;
            while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
        }
    }
    static int on_headers_complete(llhttp_t* p) noexcept {
        auto& s = self(p);
        s.headers_done_ = true;
        trim_values(*s.headers_);
        s.fields_ = s.trailers_; // any field from here on is a trailer
        s.in_field_ = false;
        if (p->http_major != 1) return s.refuse(505, "not HTTP/1.x");
        if (!s.request_ && (p->status_code < 100 || p->status_code > 599)) return s.refuse(400, "invalid status code");
        // One pass over the fields for Host and Transfer-Encoding, found by name: llhttp 8 does not flag an empty
        // Transfer-Encoding, and then frames by Content-Length where a front-end would not.
        std::size_t hosts = 0, te_fields = 0, chunked = 0, other = 0;
        for (const field& f : *s.headers_) {
            if (f.name.size() == 4 && s.request_ && detail::iequals(f.name, "Host")) {
                if (++hosts > 1) return s.refuse(400, "more than one Host field");
                if (!valid_host(f.value)) return s.refuse(400, "invalid Host field");
            } else if (f.name.size() == 17 && detail::iequals(f.name, "Transfer-Encoding")) {
                ++te_fields;
                if (!s.request_) continue; // a response's codings are the caller's (its framing is checked below)
                std::string_view v = f.value;
                while (!v.empty()) {
                    const std::size_t comma = v.find(',');
                    std::string_view e = v.substr(0, comma);
                    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
                    while (!e.empty() && (e.front() == ' ' || e.front() == '\t')) e.remove_prefix(1);
                    while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.remove_suffix(1);
                    if (e.empty()) continue;
                    if (!detail::is_token(e)) return s.refuse(400, "malformed Transfer-Encoding");
                    if (detail::iequals(e, "chunked")) ++chunked;
                    else ++other;
                }
            }
        }
        if (s.request_) {
            // Exactly one Host with a valid value in HTTP/1.1 (RFC 9112 section 3.2); at most one in HTTP/1.0.
            if (hosts == 0 && p->http_minor >= 1) return s.refuse(400, "HTTP/1.1 request without Host");
            if (te_fields > 0) {
                // Transfer-Encoding means nothing in HTTP/1.0 (RFC 9112 section 6.1). In HTTP/1.1 a request's codings
                // must end in exactly one chunked (section 6.3), which is all coring decodes: anything else is a
                // framing a front-end may read differently.
                if (p->http_minor == 0) return s.refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
                if (chunked > 1) return s.refuse(400, "chunked applied more than once");
                if (other > 0) return s.refuse(501, "unsupported transfer coding");
                if (chunked == 0 || !(p->flags & F_CHUNKED)) return s.refuse(400, "Transfer-Encoding without chunked");
            }
        } else if (te_fields > 0) {
            // A response: Transfer-Encoding in HTTP/1.0 is read as framed and the connection not reused; one that
            // llhttp did not see as chunked must not be framed by a Content-Length beside it.
            if (p->http_minor == 0) s.close_after_ = true;
            if (!(p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH))
                return s.refuse(400, "Transfer-Encoding and Content-Length");
        }
        if (s.request_) {
            const std::string_view name = method_name(p->method);
            if (s.request_->method != name) s.request_->method.assign(name); // a keep-alive client's next GET: kept
            s.request_->version_minor = p->http_minor;
            if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s.limits_.max_body)
                return s.refuse(413, "request body too large");
            if (p->http_minor >= 1)
                if (auto e = s.headers_->get("Expect"))
                    s.expect_continue_ =
                        detail::iequals(*e, "100-continue") &&
                        ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length != 0));
        }
        // llhttp skips the body of 1xx, 204 and 304 responses only when they have no Content-Length or
        // Transfer-Encoding; with one, it would take the next response's first bytes as this one's body.
        const bool skip =
            !s.request_ && (s.no_body_ || p->status_code / 100 == 1 || p->status_code == 204 || p->status_code == 304);
        s.decision_.known = true;
        if (skip) s.decision_.framing = body_framing::none;
        else if (p->flags & F_CHUNKED) s.decision_.framing = body_framing::chunked;
        else if (p->flags & F_CONTENT_LENGTH) {
            s.decision_.framing = body_framing::length;
            s.decision_.length = p->content_length;
        } else s.decision_.framing = s.request_ ? body_framing::none : body_framing::until_close;
        return skip ? 1 : 0;
    }
    static int on_body(llhttp_t* p, const char* at, std::size_t n) noexcept {
        auto& s = self(p);
        s.expect_continue_ = false; // the client sent the body without waiting
        // Requests only: a client drains a streamed response body between feeds and applies its own limit.
        if (s.request_ && s.body_->size() + n > s.limits_.max_body) return s.refuse(413, "request body too large");
        s.body_->append(at, n);
        return 0;
    }
    static int on_message_complete(llhttp_t* p) noexcept {
        auto& s = self(p);
        if (!s.trailers_->empty()) trim_values(*s.trailers_);
        s.in_message_ = false;
        s.done_ = true;
        s.expect_continue_ = false;
        // An upgrade (or CONNECT) is not served: the connection ends after the answer. llhttp reports it with
        // HPE_PAUSED_UPGRADE only on the next execute, after this pause.
        s.keep_alive_ = llhttp_should_keep_alive(p) != 0 && !s.close_after_ && !p->upgrade;
        return HPE_PAUSED;
    }

    llhttp_t p_{};
    parse_limits limits_;
    http::headers* headers_;
    http::headers* trailers_;
    http::headers* fields_ = headers_; // where header callbacks go: the headers, then the trailers
    http::headers dropped_trailers_;   // a response's trailers when nobody asked for them
    std::string* target_ = nullptr;
    std::string* body_;
    request* request_ = nullptr;
    std::size_t header_bytes_ = 0;
    framing_checker framing_{request_ != nullptr};
    framing_checker::body_decision decision_;
    std::string error_reason_;
    const char* refuse_reason_ = nullptr;
    int error_status_ = 0;
    bool in_field_ = false;
    bool in_message_ = false;
    bool headers_done_ = false;
    bool done_ = false;
    bool failed_ = false;
    bool keep_alive_ = false;
    bool expect_continue_ = false;
    bool no_body_ = false;
    bool close_after_ = false; // Transfer-Encoding in an HTTP/1.0 response
};

} // namespace coring::http::detail
