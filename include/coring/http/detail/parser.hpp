#pragma once

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

/// llhttp (the parser behind Node.js), strict: no lenient flag is ever set, so request smuggling vectors (both
/// Content-Length and Transfer-Encoding, duplicate Content-Length, obs-fold, invalid chunk sizes) are errors.
///
/// It collects one message at a time into the sinks it is bound to: the start line, the header fields and the body
/// (which a streaming reader may drain between feeds). It pauses after each complete message, so that pipelined
/// requests are answered one by one, in order.
class message_parser {
public:
    /// A request parser (server side).
    message_parser(request& into, const parse_limits& limits) noexcept
        : limits_(limits), headers_(&into.headers), target_(&into.target), body_(&into.body), request_(&into) {
        llhttp_init(&p_, HTTP_REQUEST, &settings());
        p_.data = this;
    }
    /// A response parser (client side): status, headers and body go to the given sinks.
    message_parser(http::headers& headers, std::string& body, const parse_limits& limits) noexcept
        : limits_(limits), headers_(&headers), body_(&body) {
        llhttp_init(&p_, HTTP_RESPONSE, &settings());
        p_.data = this;
    }
    message_parser(const message_parser&) = delete;
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
        buf_ = data;
        const llhttp_errno_t err = llhttp_execute(&p_, data, n);
        for (std::size_t i = n; i > 0; --i)
            if (data[i - 1] != ' ' && data[i - 1] != '\t') {
                prev_tail_ = data[i - 1];
                break;
            }
        if (err == HPE_OK) return {n, parse_state::need_more};
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            const char* pos = llhttp_get_error_pos(&p_);
            const std::size_t used = pos ? static_cast<std::size_t>(pos - data) : n;
            if (err == HPE_PAUSED_UPGRADE) keep_alive_ = false; // no upgrades: answer, then close
            return {used, parse_state::message_done};
        }
        fail(err);
        return {0, parse_state::error};
    }

    /// The input ended (the peer closed): completes a message delimited by the end of the connection (a response
    /// without length). Returns message_done, need_more (nothing was in progress), or error (a truncated message).
    parse_state finish() noexcept {
        if (failed_) return parse_state::error;
        if (done_) return parse_state::message_done;
        const bool was_in_message = in_message_;
        const llhttp_errno_t err = llhttp_finish(&p_);
        if (done_) return parse_state::message_done;
        if (err == HPE_OK && !was_in_message) return parse_state::need_more;
        fail(err == HPE_OK ? HPE_INVALID_EOF_STATE : err);
        return parse_state::error;
    }

    /// After message_done: ready for the next message on the same connection.
    void next() noexcept {
        done_ = false;
        headers_done_ = false;
        expect_continue_ = false;
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
        llhttp_set_error_reason(&p_, reason);
        return HPE_USER;
    }

    void fail(llhttp_errno_t err) noexcept {
        failed_ = true;
        if (error_status_ == 0) error_status_ = 400; // refuse() chose a status already
        const char* reason = llhttp_get_error_reason(&p_);
        try {
            error_reason_ = std::string(llhttp_errno_name(err)) + ": " + (reason ? reason : "");
        } catch (...) {}
    }

    static int on_message_begin(llhttp_t* p) noexcept {
        auto& s = self(p);
        s.in_message_ = true;
        s.headers_->clear();
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
            if (s.headers_->size() >= s.limits_.max_headers) return s.refuse(431, "too many header fields");
            s.headers_->add({}, {});
            s.in_field_ = true;
        }
        s.header_bytes_ += n;
        if (s.header_bytes_ > s.limits_.max_header_bytes) return s.refuse(431, "header fields too large");
        s.headers_->back().name.append(at, n);
        return 0;
    }
    static int on_header_value(llhttp_t* p, const char* at, std::size_t n) noexcept {
        auto& s = self(p);
        // llhttp 8 accepts obs-fold (a value continued on a line that starts with whitespace) and hands the
        // continuation over as more of the value. RFC 9112 lets a server reject it, and joining lines is how
        // front-ends and back-ends come to disagree about a message: refuse it. A continuation is a value span
        // whose preceding non-blank byte (in this buffer, or at the end of the previous one) is a line break.
        const char* q = at;
        while (q > s.buf_ && (q[-1] == ' ' || q[-1] == '\t')) --q;
        const char before = q > s.buf_ ? q[-1] : s.prev_tail_;
        if (before == '\n' || before == '\r') return s.refuse(400, "line folding (obs-fold) in a header value");
        s.in_field_ = false;
        s.header_bytes_ += n;
        if (s.header_bytes_ > s.limits_.max_header_bytes) return s.refuse(431, "header fields too large");
        s.headers_->back().value.append(at, n);
        return 0;
    }
    static int on_headers_complete(llhttp_t* p) noexcept {
        auto& s = self(p);
        s.headers_done_ = true;
        if (p->http_major != 1) return s.refuse(505, "not HTTP/1.x");
        if (s.request_) {
            const std::string_view name = method_name(p->method);
            if (s.request_->method != name) s.request_->method.assign(name); // a keep-alive client's next GET: kept
            s.request_->version_minor = p->http_minor;
            if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s.limits_.max_body)
                return s.refuse(413, "request body too large");
            if (p->http_minor >= 1)
                if (auto e = s.headers_->get("Expect"))
                    s.expect_continue_ = detail::iequals(*e, "100-continue") &&
                                         ((p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) && p->content_length != 0);
        }
        // llhttp skips the body of 1xx, 204 and 304 responses only when they have no Content-Length or
        // Transfer-Encoding; with one, it would take the next response's first bytes as this one's body.
        if (!s.request_ && (p->status_code / 100 == 1 || p->status_code == 204 || p->status_code == 304)) return 1;
        return s.no_body_ ? 1 : 0;
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
        s.in_message_ = false;
        s.done_ = true;
        s.expect_continue_ = false;
        s.keep_alive_ = llhttp_should_keep_alive(p) != 0;
        return HPE_PAUSED;
    }

    llhttp_t p_{};
    parse_limits limits_;
    http::headers* headers_;
    std::string* target_ = nullptr;
    std::string* body_;
    request* request_ = nullptr;
    std::size_t header_bytes_ = 0;
    const char* buf_ = nullptr; // the buffer being parsed
    char prev_tail_ = 0;        // the last non-blank byte of the previous buffer
    std::string error_reason_;
    int error_status_ = 0;
    bool in_field_ = false;
    bool in_message_ = false;
    bool headers_done_ = false;
    bool done_ = false;
    bool failed_ = false;
    bool keep_alive_ = false;
    bool expect_continue_ = false;
    bool no_body_ = false;
};

} // namespace coring::http::detail
