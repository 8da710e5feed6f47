#pragma once

#include <coring/detail/byte_buffer.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/error.hpp>
#include <coring/http/detail/ws_deflate.hpp>
#include <coring/http/detail/ws_frame.hpp>
#include <coring/sync/event.hpp>
#include <coring/task/shield.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace coring::http {

/// Close codes (RFC 6455 section 7.4.1).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;         ///< the purpose of the connection was fulfilled
inline constexpr std::uint16_t going_away = 1001;     ///< a server shutting down, a page navigated away
inline constexpr std::uint16_t protocol_error = 1002; ///< a frame broke RFC 6455
inline constexpr std::uint16_t unsupported = 1003;    ///< a type of data the endpoint does not take
inline constexpr std::uint16_t no_status = 1005;      ///< reported (never sent) for a close frame without a code
inline constexpr std::uint16_t abnormal = 1006;       ///< reported (never sent): the connection ended without a close
inline constexpr std::uint16_t invalid_data = 1007;   ///< text that is not UTF-8
inline constexpr std::uint16_t policy = 1008;         ///< a message that violates the endpoint's policy
inline constexpr std::uint16_t too_big = 1009;        ///< a frame or message over the limits
inline constexpr std::uint16_t internal_error = 1011; ///< the endpoint failed (also: no pong to a keep-alive ping)
} // namespace close_code

/// A WebSocket connection that failed: the peer broke the protocol (the connection was then closed with `code`, 1002,
/// 1007 or 1009), or went away without a close handshake (1006).
class websocket_error : public std::runtime_error {
public:
    /// A failure described by close code `code`; what() is `what` prefixed with "coring: websocket: ".
    websocket_error(std::uint16_t code, const std::string& what)
        : std::runtime_error("coring: websocket: " + what), code_(code) {}
    /// The close code that describes the failure.
    [[nodiscard]] std::uint16_t code() const noexcept { return code_; }

private:
    std::uint16_t code_;
};

/// One message received (aiohttp's WSMessage).
struct ws_message {
    /// What a message can be: a text or binary data message, or the peer's close frame.
    enum class kind { text, binary, close };
    kind type = kind::text; ///< which of the three this message is
    std::string data;       ///< the text (valid UTF-8) or bytes; for close, the peer's reason
    std::uint16_t code = 0; ///< for close: the peer's code (close_code::no_status when it sent none)

    /// Whether it is a text message.
    [[nodiscard]] bool is_text() const noexcept { return type == kind::text; }
    /// Whether it is a binary message.
    [[nodiscard]] bool is_binary() const noexcept { return type == kind::binary; }
    /// Whether the peer closed the connection (`code` and `data` say why).
    [[nodiscard]] bool is_close() const noexcept { return type == kind::close; }
};

/// Limits and timers of a WebSocket connection.
struct websocket_options {
    std::size_t max_message = 16u << 20; ///< a larger message (reassembled) closes the connection with 1009
    std::size_t max_frame = 16u << 20;   ///< a larger frame closes the connection with 1009
    /// When nothing arrives for this long, receive() sends a ping; when nothing (the pong) arrives for as long again,
    /// the connection is closed with 1011 and receive() throws. Zero: no keep-alive pings.
    std::chrono::milliseconds ping_interval{0};
    /// How long close() waits for the peer's close frame before it closes the connection anyway.
    std::chrono::milliseconds close_timeout{2000};
    /// The send buffer's high-water mark (Python websockets' write_limit, asyncio's drain()): a send returns once its
    /// frame is queued, unless more than this many bytes wait to be written; then it waits until a quarter of it
    /// is left (or its own frame is out).
    std::size_t write_limit = 64 * 1024;
    /// Offer (a client) or accept (a server's route) permessage-deflate (RFC 7692): messages of at least
    /// deflate_threshold bytes then go compressed when the peer agreed, and compressed messages from the peer are
    /// inflated (max_message bounds the inflated size: 1009 beyond). Off by default: it costs CPU and about 300 KiB
    /// of zlib state per connection that uses it (see the README's WebSocket benchmark). Needs coring built with zlib
    /// (CORING_HTTP_ZLIB); asking for it otherwise is std::invalid_argument.
    bool permessage_deflate = false;
    /// The smallest message worth compressing; smaller ones go as they are (a message may be either).
    std::size_t deflate_threshold = 128;
};

namespace detail {

/// The byte stream under a WebSocket: coring's tcp_stream, unix_stream or tls::stream, behind one small interface so
/// that websocket is one class whatever the transport (a virtual call per read or write, against a system call).
struct ws_transport {
    virtual ~ws_transport() = default;
    virtual task<std::size_t> read(std::span<char> buf) = 0;
    virtual task<> write(std::string_view bytes) = 0;
    /// Ends the connection from this side (closes the stream).
    virtual task<> end() = 0;
};

/// The stream, owned by the websocket's state (the HTTP server hands its connection over at the 101).
template <class S>
class ws_transport_own final : public ws_transport {
public:
    explicit ws_transport_own(S s) noexcept : s_(std::move(s)) {}
    task<std::size_t> read(std::span<char> buf) override { co_return co_await s_.read(buf); }
    task<> write(std::string_view bytes) override { co_await s_.write_all(bytes); }
    task<> end() override { co_await s_.close(); }

private:
    S s_;
};

} // namespace detail

/// A WebSocket connection (RFC 6455), server or client side: what a websocket route's handler gets
/// (server::websocket) and what client::websocket returns. Messages come whole (fragments reassembled, text checked to
/// be UTF-8); pings are answered while receive() runs; close() performs the closing handshake.
///
/// ```
/// app.websocket("/echo", [](http::request&, http::websocket& ws) -> task<> {
///     for (;;) {
///         http::ws_message m = co_await ws.receive();
///         if (m.is_close()) break;
///         if (m.is_text()) co_await ws.send_text(m.data);
///     }
/// });
/// ```
///
/// A peer that breaks the protocol (an unmasked client frame, a reserved bit or opcode, a fragmented or oversized
/// control frame, a continuation with nothing to continue, text that is not UTF-8, a frame or message over the limits,
/// a bad close code) gets a close frame with the matching code (1002, 1007, 1009), the connection is ended, and
/// receive() throws websocket_error with that code; a peer that disappears without a close frame is websocket_error
/// 1006.
///
/// Sending is asyncio's write() and drain(): send_text(), send_binary() and ping() queue the whole frame in the
/// connection's send buffer and return at once while it holds at most websocket_options::write_limit bytes (else they
/// wait for it to drain); a task of the connection's own writes the buffer out, everything queued meanwhile in one
/// system call, so a burst of small messages (a broadcast) costs one write, not one each. Frames go out whole and
/// in the order they were queued, whatever happens to the tasks that queued them: a send cancelled (or timed out)
/// while it waits for the buffer to drain has still queued its message, which is sent. A write that fails ends the
/// connection's sending for good: later sends throw websocket_error (1006). close() waits until everything queued,
/// then its close frame, is written (within close_timeout).
///
/// One task may receive while others send. Loop thread only; movable (its state is on the heap).
class websocket {
public:
    /// Which end of the connection this is: clients mask their frames, servers must not (section 5.1).
    enum class role { server, client };

    /// No connection.
    websocket() = default;
    /// Moves the connection; the source is left with none.
    websocket(websocket&&) noexcept = default;
    /// Takes over another websocket's connection; the source is left with none.
    websocket& operator=(websocket&&) noexcept = default;

    /// Over a transport whose opening handshake is done; `buffered` holds bytes already read past the handshake.
    /// `deflate`: the permessage-deflate parameters agreed in the handshake, if it was.
    websocket(std::unique_ptr<detail::ws_transport> io, role r, std::string buffered, websocket_options options,
              std::string subprotocol = {}, std::optional<detail::ws_deflate_params> deflate = std::nullopt)
        : st_(std::make_shared<state>()) {
        st_->io = std::move(io);
        st_->role = r;
        st_->in.append(buffered);
        st_->opts = options;
        st_->subprotocol = std::move(subprotocol);
        if (deflate) st_->deflate = std::make_unique<detail::ws_deflate>(*deflate, r == role::server);
        st_->self = st_;
    }

    /// The next message: text, binary, or close (then the closing handshake is answered, and every later receive()
    /// gives the same close message). Answers pings meanwhile. Throws websocket_error (see the class comment),
    /// cancelled_error (nothing is lost: a frame half read stays buffered for the next call), std::logic_error when
    /// another receive() is under way.
    task<ws_message> receive() {
        const std::shared_ptr<state> keep = shared();
        state& st = *keep;
        if (st.receiving) throw std::logic_error("coring: websocket: receive() while another receive() is under way");
        st.receiving = true;
        struct done_receiving {
            state& st;
            ~done_receiving() { st.receiving = false; }
        } guard{st};
        if (st.got_close || st.ended || st.peer_ended) co_return st.close_message;
        for (;;) {
            detail::ws_frame_header h;
            while (!detail::ws_parse_header(st.in.view().substr(st.pos), h)) co_await fill(st);
            std::uint16_t bad = check_header(st, h);
            if (bad) {
                // Named first: a temporary string inside a co_await operand is what GCC 12 mis-relocates.
                const std::string why = header_problem(st, h);
                co_await fail(st, bad, why);
            }
            const std::size_t frame_end = st.pos + h.header_size + static_cast<std::size_t>(h.length);
            while (st.in.size() < frame_end) co_await fill(st, frame_end - st.in.size());
            char* payload = st.in.data() + st.pos + h.header_size;
            const auto n = static_cast<std::size_t>(h.length);
            if (h.masked) detail::ws_apply_mask(payload, n, h.mask);
            const std::string_view body(payload, n);
            const auto op = static_cast<detail::ws_opcode>(h.opcode);
            if (op == detail::ws_opcode::ping) {
                const std::string echo(body);
                consume(st, frame_end);
                if (!st.sent_close) {
                    // Queued like a send, and like a send it waits while the buffer is over write_limit: a peer that
                    // sends pings and reads nothing must not grow the buffer without bound.
                    const std::uint64_t end = queue_frame(st, detail::ws_opcode::pong, echo);
                    if (st.queued - st.written > st.opts.write_limit) co_await wait_written(st, end, true);
                }
                continue;
            }
            if (op == detail::ws_opcode::pong) {
                consume(st, frame_end);
                continue;
            }
            if (op == detail::ws_opcode::close) {
                ws_message m;
                m.type = ws_message::kind::close;
                m.code = close_code::no_status;
                std::uint16_t problem = 0;
                if (n == 1) problem = close_code::protocol_error;
                if (n >= 2) {
                    m.code = static_cast<std::uint16_t>((static_cast<unsigned char>(body[0]) << 8) |
                                                        static_cast<unsigned char>(body[1]));
                    m.data = std::string(body.substr(2));
                    if (!detail::ws_valid_close_code(m.code)) problem = close_code::protocol_error;
                    else if (!detail::ws_valid_utf8(m.data)) problem = close_code::invalid_data;
                }
                consume(st, frame_end);
                if (problem) co_await fail(st, problem, "a close frame with an invalid code or reason");
                st.got_close = true;
                st.close_message = m;
                if (!st.sent_close) {
                    // Echo the code (section 5.5.1); none for a close that had none.
                    std::string reply;
                    if (m.code != close_code::no_status) {
                        reply.push_back(static_cast<char>(m.code >> 8));
                        reply.push_back(static_cast<char>(m.code & 0xFF));
                    }
                    try {
                        co_await timeout(st.opts.close_timeout, send_close_frame(st, reply));
                    } catch (const std::exception&) {
                        // The peer may already be gone: its close is what counts.
                    }
                }
                st.peer_closed.set();
                co_await end_transport(st);
                co_return m;
            }
            // Data.
            if (op == detail::ws_opcode::continuation) {
                if (!st.assembling)
                    co_await fail(st, close_code::protocol_error, "a continuation frame with nothing to continue");
            } else {
                if (st.assembling)
                    co_await fail(st, close_code::protocol_error, "a new message before the last one's final fragment");
                st.assembling = true;
                st.message_kind = op == detail::ws_opcode::text ? ws_message::kind::text : ws_message::kind::binary;
                st.message_compressed = (h.rsv & 0x4) != 0; // RSV1 on the first frame (check_header allowed it)
                st.message.clear();
            }
            if (st.message.size() + n > st.opts.max_message) {
                consume(st, frame_end);
                co_await fail(st, close_code::too_big, "a message over max_message");
            }
            st.message.append(body);
            consume(st, frame_end);
            if (!h.fin) continue;
            st.assembling = false;
            if (st.message_compressed) {
                std::string plain;
                const auto r = st.deflate->decompress(st.message, plain, st.opts.max_message);
                if (r == detail::ws_deflate::inflated::too_big)
                    co_await fail(st, close_code::too_big, "a compressed message over max_message once inflated");
                if (r == detail::ws_deflate::inflated::bad_data)
                    co_await fail(st, close_code::invalid_data, "a compressed message that does not inflate");
                st.message = std::move(plain);
            }
            if (st.message_kind == ws_message::kind::text && !detail::ws_valid_utf8(st.message))
                co_await fail(st, close_code::invalid_data, "a text message that is not UTF-8");
            ws_message m;
            m.type = st.message_kind;
            m.data = std::move(st.message);
            st.message = std::string();
            co_return m;
        }
    }

    /// Sends a text message (one frame): queues it, and waits only while the send buffer is over write_limit (see
    /// the class comment). Throws std::invalid_argument for text that is not UTF-8, websocket_error once the
    /// connection is closing or closed or an earlier write failed.
    task<> send_text(std::string_view text) {
        const std::shared_ptr<state> keep = shared();
        state& st = *keep;
        if (!detail::ws_valid_utf8(text))
            throw std::invalid_argument("coring: websocket: send_text of text that is not UTF-8");
        co_await send_data(st, detail::ws_opcode::text, text);
    }
    /// Sends a binary message (one frame).
    task<> send_binary(std::string_view bytes) {
        const std::shared_ptr<state> keep = shared();
        state& st = *keep;
        co_await send_data(st, detail::ws_opcode::binary, bytes);
    }
    /// Sends a ping (at most 125 bytes of payload: std::invalid_argument otherwise); its pong is consumed by receive().
    task<> ping(std::string_view payload = {}) {
        const std::shared_ptr<state> keep = shared();
        state& st = *keep;
        if (payload.size() > 125)
            throw std::invalid_argument("coring: websocket: a ping's payload is at most 125 bytes");
        co_await send_data(st, detail::ws_opcode::ping, payload);
    }

    /// The closing handshake: sends a close frame with `code` and `reason` (at most 123 bytes, UTF-8), waits for the
    /// peer's (at most websocket_options::close_timeout; a task in receive() meanwhile gets it as a close message),
    /// then ends the connection. Harmless once closed. Throws std::invalid_argument for a code a peer may not send.
    task<> close(std::uint16_t code = close_code::normal, std::string_view reason = {}) {
        if (!st_) co_return;
        const std::shared_ptr<state> keep = st_;
        state& st = *keep;
        if (!detail::ws_valid_close_code(code))
            throw std::invalid_argument("coring: websocket: " + std::to_string(code) + " is not a close code to send");
        if (reason.size() > 123 || !detail::ws_valid_utf8(reason))
            throw std::invalid_argument("coring: websocket: a close reason is at most 123 bytes of UTF-8");
        if (st.closer) {
            try {
                co_await shield(*st.closer);
            } catch (...) {}
            st.closer.reset();
        }
        if (st.ended) co_return;
        if (st.peer_ended) {
            // The peer's stream ended without a close frame: nothing to shake hands with.
            co_await end_transport(st);
            co_return;
        }
        if (!st.sent_close && !st.broken) {
            std::string payload;
            payload.push_back(static_cast<char>(code >> 8));
            payload.push_back(static_cast<char>(code & 0xFF));
            payload.append(reason);
            try {
                // Bounded too: a peer that reads nothing must not hold the close (and a server's shutdown) for ever.
                co_await timeout(st.opts.close_timeout, send_close_frame(st, payload));
            } catch (const std::exception&) {
                st.got_close = true; // the peer is gone, or the frame could not go: nothing to wait for
            }
        }
        if (!st.got_close) {
            // Whether the peer answers in time or not, the transport ends next.
            try {
                if (st.receiving) {
                    co_await timeout(st.opts.close_timeout, st.peer_closed.wait());
                } else {
                    // Read (and drop) what comes until the peer's close frame.
                    task<> draining = drain_until_close();
                    co_await timeout(st.opts.close_timeout, std::move(draining));
                }
            } catch (const std::exception&) {}
        }
        co_await end_transport(st);
    }

    /// Whether a close frame was sent or received, or the connection failed.
    [[nodiscard]] bool closed() const noexcept {
        return st_ && (st_->sent_close || st_->got_close || st_->ended || st_->peer_ended);
    }
    /// The subprotocol agreed on in the handshake (Sec-WebSocket-Protocol), empty when none.
    [[nodiscard]] const std::string& subprotocol() const { return get().subprotocol; }
    /// Which end this is.
    [[nodiscard]] role side() const { return get().role; }
    /// Whether permessage-deflate was agreed in the handshake.
    [[nodiscard]] bool compressed() const { return get().deflate != nullptr; }

private:
    friend class server;

    /// The server going away (1001): the close frame is sent by a task of its own (close() waits for it), and the
    /// peer's answer reaches receive(). Loop thread; never throws.
    void start_close(std::uint16_t code = close_code::going_away) noexcept {
        if (!st_ || st_->sent_close || st_->ended || st_->peer_ended || st_->closer) return;
        try {
            std::string payload;
            payload.push_back(static_cast<char>(code >> 8));
            payload.push_back(static_cast<char>(code & 0xFF));
            st_->closer.emplace(spawn(send_close_quietly(st_, std::move(payload))));
        } catch (...) {}
    }

    struct state {
        std::unique_ptr<detail::ws_transport> io;
        websocket::role role = websocket::role::server;
        websocket_options opts;
        std::string subprotocol;
        coring::detail::byte_buffer in; // received bytes; frames are parsed in place from `pos`
        std::size_t pos = 0;            // the first byte not consumed
        std::string message;            // the message being reassembled
        ws_message::kind message_kind = ws_message::kind::text;
        bool assembling = false;
        bool message_compressed = false;             // the message being reassembled came with RSV1
        std::unique_ptr<detail::ws_deflate> deflate; // permessage-deflate, when agreed
        std::string deflated;                        // a message being sent, compressed (reused)
        std::string pending;                         // whole frames queued and not yet handed to a write
        std::string writing;                         // the frames of the write under way (swapped with `pending`)
        std::uint64_t queued = 0;                    // bytes ever queued
        std::uint64_t written = 0;
        bool writer_active = false;               // write_out() runs (in the flusher or inline)
        std::optional<join_handle<void>> flusher; // the last flusher task started
        event progress;                           // pulsed after every write and when a writer stops
        std::string write_failure;                // why sending broke
        std::weak_ptr<state> self;                // for the flusher (a weak reference: see flush())
        bool sent_close = false;
        bool got_close = false;
        bool ended = false;      // the transport was ended (end_transport)
        bool peer_ended = false; // the peer's stream ended (no close frame came)
        bool receiving = false;
        bool ping_outstanding = false;
        bool broken = false; // a write stopped with bytes unwritten: the stream can carry no more frames
        ws_message close_message;
        event peer_closed; // the peer's close frame arrived, or receiving ended for good (end of stream, an error)
        std::optional<join_handle<void>> closer; // start_close()'s task
        std::array<std::uint8_t, 256> keys{};    // clients' masking keys, from getrandom, 64 frames per call
        std::size_t keys_used = 256;
    };

    state& get() const {
        if (!st_) throw std::logic_error("coring: websocket: no connection (moved from, or default-constructed)");
        return *st_;
    }
    std::shared_ptr<state> shared() const {
        if (!st_) throw std::logic_error("coring: websocket: no connection (moved from, or default-constructed)");
        return st_;
    }

    static std::uint16_t check_header(const state& st, const detail::ws_frame_header& h) noexcept {
        if (!detail::ws_is_known(h.opcode)) return close_code::protocol_error;
        // RSV1 marks a compressed message when permessage-deflate was agreed: on its first frame only.
        const bool rsv1_allowed = st.deflate && !detail::ws_is_control(h.opcode) && h.opcode != 0;
        if ((h.rsv & 0x3) != 0 || ((h.rsv & 0x4) != 0 && !rsv1_allowed)) return close_code::protocol_error;
        // Section 5.1: clients mask every frame, servers none.
        if (h.masked != (st.role == role::server)) return close_code::protocol_error;
        if (detail::ws_is_control(h.opcode) && (!h.fin || h.length > 125)) return close_code::protocol_error;
        if (h.length_invalid) return close_code::protocol_error;
        if (h.length > st.opts.max_frame) return close_code::too_big;
        return 0;
    }
    static std::string header_problem(const state& st, const detail::ws_frame_header& h) {
        if ((h.rsv & 0x3) != 0 || ((h.rsv & 0x4) != 0 && !st.deflate))
            return "a frame with a reserved bit set (no extension was agreed)";
        if ((h.rsv & 0x4) != 0) return "RSV1 on a control or continuation frame";
        if (!detail::ws_is_known(h.opcode)) return "a frame with reserved opcode " + std::to_string(h.opcode);
        if (h.masked != (st.role == role::server))
            return st.role == role::server ? "an unmasked frame from a client" : "a masked frame from a server";
        if (detail::ws_is_control(h.opcode) && !h.fin) return "a fragmented control frame";
        if (detail::ws_is_control(h.opcode)) return "a control frame over 125 bytes";
        if (h.length_invalid) return "a 64-bit length with its most significant bit set";
        return "a frame of " + std::to_string(h.length) + " bytes, over max_frame";
    }

    static void consume(state& st, std::size_t frame_end) {
        st.pos = frame_end;
        // Keep the buffer from growing: drop what was consumed once it is most of it.
        if (st.pos == st.in.size()) {
            st.in.clear();
            st.pos = 0;
        } else if (st.pos > 64 * 1024 && st.pos * 2 > st.in.size()) {
            st.in.erase_front(st.pos);
            st.pos = 0;
        }
    }

    /// Reads more into the buffer (at least `want` bytes' room). End of stream without a close frame: 1006.
    static task<> fill(state& st, std::size_t want = 0) {
        // Room for the read, not zeroed (a 16 KiB memset per read cost more than a small message's whole read); a
        // read that does not return keeps none of it.
        const std::span<char> room =
            st.in.prepare(std::max<std::size_t>(16 * 1024, std::min<std::size_t>(want, 1u << 20)));
        std::size_t n = 0;
        bool silent = false;
        try {
            if (st.opts.ping_interval.count() > 0) {
                task<std::size_t> reading = st.io->read(room);
                n = co_await timeout(st.opts.ping_interval, std::move(reading));
            } else {
                n = co_await st.io->read(room);
            }
        } catch (const timeout_error&) {
            silent = true;
        } catch (const std::system_error&) {
            if (!st.ended) throw;
            // Our own close() ended the transport under this read.
            st.peer_closed.set();
            throw websocket_error(close_code::abnormal, "the connection was closed");
        }
        st.in.commit(n);
        if (silent) {
            if (st.ping_outstanding) co_await fail(st, close_code::internal_error, "no pong to a keep-alive ping");
            st.ping_outstanding = true;
            if (!st.sent_close) (void)queue_frame(st, detail::ws_opcode::ping, "coring");
            co_return;
        }
        st.ping_outstanding = false;
        if (n == 0) {
            st.peer_ended = true;
            st.close_message =
                ws_message{ws_message::kind::close, "the connection ended without a close frame", close_code::abnormal};
            st.peer_closed.set();
            throw websocket_error(close_code::abnormal, "the connection ended without a close frame");
        }
    }

    static websocket_error broken_error(const state& st) {
        return websocket_error(close_code::abnormal, "sending failed earlier: " + st.write_failure);
    }

    static task<> send_data(state& st, detail::ws_opcode op, std::string_view payload) {
        if (st.broken) throw broken_error(st);
        if (st.sent_close || st.got_close || st.ended || st.peer_ended)
            throw websocket_error(close_code::normal, "send on a connection that is closing or closed");
        const std::uint64_t end = queue_frame(st, op, payload);
        // drain(): past the high-water mark, wait for the low one (or for this frame to be out).
        if (st.queued - st.written > st.opts.write_limit) co_await wait_written(st, end, true);
    }

    /// Appends one whole frame to the send buffer and makes sure someone writes it; returns the buffer position just
    /// past the frame. Nothing is queued when it throws.
    static std::uint64_t queue_frame(state& st, detail::ws_opcode op, std::string_view payload) {
        if (st.broken) throw broken_error(st);
        std::array<std::uint8_t, 4> key{};
        const bool mask = st.role == role::client;
        if (mask) {
            // Unpredictable keys (section 10.3): the kernel's generator, a call per 64 frames.
            if (st.keys_used + 4 > st.keys.size()) {
                if (::getrandom(st.keys.data(), st.keys.size(), 0) != static_cast<ssize_t>(st.keys.size()))
                    throw std::system_error(errno, std::system_category(), "coring: websocket: getrandom");
                st.keys_used = 0;
            }
            for (std::size_t i = 0; i < 4; ++i) key[i] = st.keys[st.keys_used++];
        }
        // Compressed here, at queue time: with context takeover the compressor's state must follow the wire's order.
        std::uint8_t rsv = 0;
        const std::size_t before = st.pending.size();
        try {
            if (st.deflate && (op == detail::ws_opcode::text || op == detail::ws_opcode::binary) &&
                payload.size() >= st.opts.deflate_threshold && st.deflate->worth_compressing(payload.size())) {
                rsv = 0x4;
                st.deflated.clear();
                st.deflate->compress(payload, st.deflated);
                payload = st.deflated;
            }
            detail::ws_append_header(st.pending, true, static_cast<std::uint8_t>(op), payload.size(),
                                     mask ? key.data() : nullptr, rsv);
            const std::size_t at = st.pending.size();
            st.pending.append(payload);
            if (mask) detail::ws_apply_mask(st.pending.data() + at, payload.size(), key);
            // A loop that is shutting down cancels new tasks before they run: then the waiters write (wait_written).
            if (!st.writer_active && !flusher_pending(st) && !loop_draining()) {
                st.flusher.reset(); // a finished task's handle
                st.flusher.emplace(spawn(flush(st.self)));
            }
        } catch (...) {
            st.pending.resize(before); // no half frame left behind
            // The compressor has taken in a message the peer will not see: the next must not refer to it.
            if (rsv) st.deflate->reset_compressor();
            throw;
        }
        st.queued += st.pending.size() - before;
        return st.queued;
    }

    /// Whether a flusher task was started and has not finished (it may not have begun yet).
    static bool flusher_pending(const state& st) noexcept { return st.flusher && !st.flusher->done(); }
    static bool loop_draining() noexcept {
        const coring::detail::loop_core* core = coring::detail::current_core;
        return core && core->draining;
    }

    /// The flusher: a task of its own that writes what sends queued, so that they need not wait. It holds the state
    /// through a weak reference and a local: the state keeps the task's handle, and a parameter would live as long as
    /// the finished task's frame, so the two would keep each other alive for ever.
    static task<> flush(std::weak_ptr<state> weak) {
        const std::shared_ptr<state> hold = weak.lock();
        if (!hold) co_return;
        try {
            co_await write_out(*hold);
        } catch (const cancelled_error&) {
            // The loop's shutdown or end_transport(): write_out() has marked sending broken.
        }
    }

    static void break_sending(state& st, const char* why) noexcept {
        st.broken = true;
        try {
            st.write_failure = why;
        } catch (...) {}
    }

    /// Writes the send buffer out until it is empty, everything queued since the last write in one call. Run by the
    /// flusher, and inline by a task that must see its bytes out when no writer runs (close(), or a send waiting for
    /// room during the loop's shutdown); one writer at a time, others return at once. A write that fails or is
    /// cancelled may have sent part of a frame, so nothing may follow it: sending is broken. Throws only
    /// cancelled_error (after marking sending broken).
    static task<> write_out(state& st) {
        if (st.writer_active || st.broken) co_return;
        st.writer_active = true;
        struct stop_writing {
            state& st;
            ~stop_writing() {
                st.writer_active = false;
                st.progress.set(); // whoever waits sees what happened
                st.progress.clear();
            }
        } guard{st};
        bool cancelled = false;
        try {
            while (!st.pending.empty()) {
                st.writing.clear();
                std::swap(st.writing, st.pending);
                co_await st.io->write(st.writing);
                st.written += st.writing.size();
                st.progress.set(); // wake the senders waiting for room
                st.progress.clear();
            }
            // A large message's buffers are not kept for the connection's whole life.
            if (st.writing.capacity() > 4 * st.opts.write_limit) st.writing = std::string();
            if (st.pending.capacity() > 4 * st.opts.write_limit) st.pending = std::string();
        } catch (const cancelled_error&) {
            cancelled = true;
            break_sending(st, "a write was cancelled");
        } catch (const std::exception& e) {
            break_sending(st, e.what());
        } catch (...) {
            break_sending(st, "a write failed");
        }
        if (cancelled) throw cancelled_error();
    }

    /// Waits until the send buffer has been written up to `end`, or (`for_room`) until at most a quarter of
    /// write_limit is left. Writes inline when no writer runs and none is coming. Throws websocket_error when sending
    /// broke first.
    static task<> wait_written(state& st, std::uint64_t end, bool for_room) {
        for (;;) {
            if (st.written >= end) co_return;
            if (for_room && st.queued - st.written <= st.opts.write_limit / 4) co_return;
            if (st.broken) throw broken_error(st);
            // A send waiting for room leaves the writing to the flusher (a timeout on the send then stops no write);
            // close() does not wait for one that may never start.
            const bool writer_coming = st.writer_active || (for_room && flusher_pending(st) && !loop_draining());
            if (writer_coming) co_await st.progress.wait();
            else co_await write_out(st);
        }
    }

    static task<> send_close_frame(state& st, std::string_view payload) {
        st.sent_close = true;
        const std::uint64_t end = queue_frame(st, detail::ws_opcode::close, payload);
        co_await wait_written(st, end, false);
    }

    static task<> send_close_quietly(std::shared_ptr<state> keep, std::string payload) {
        state& st = *keep;
        // receive() may have answered the peer's own close meanwhile.
        if (st.sent_close || st.got_close || st.ended || st.peer_ended || st.broken) co_return;
        try {
            co_await timeout(st.opts.close_timeout, send_close_frame(st, payload));
        } catch (...) {}
    }

    task<> drain_until_close() {
        for (;;) {
            ws_message m = co_await receive();
            if (m.is_close()) co_return;
        }
    }

    static task<> end_transport(state& st) {
        if (st.ended) co_return;
        st.ended = true;
        // A write still under way (to a peer that reads nothing) would hold the connection open: stop it first.
        if (flusher_pending(st)) {
            st.flusher->cancel();
            try {
                co_await shield(std::move(*st.flusher));
            } catch (...) {}
        }
        st.flusher.reset();
        try {
            co_await shield(st.io->end());
        } catch (...) {}
        // Frames still queued never go; whoever waits for them hears so.
        if (st.written < st.queued && !st.broken) break_sending(st, "the connection was closed with frames unsent");
        st.progress.set();
        st.progress.clear();
    }

    /// The peer broke the protocol: a close frame with `code` (best effort), the connection ended, websocket_error.
    static task<> fail(state& st, std::uint16_t code, std::string_view why) {
        if (!st.sent_close && !st.ended && !st.broken) {
            std::string payload;
            payload.push_back(static_cast<char>(code >> 8));
            payload.push_back(static_cast<char>(code & 0xFF));
            try {
                co_await shield(timeout(st.opts.close_timeout, send_close_frame(st, payload)));
            } catch (...) {}
        }
        st.got_close = true;
        st.peer_closed.set();
        st.close_message = ws_message{ws_message::kind::close, std::string(why), code};
        co_await end_transport(st);
        throw websocket_error(code, std::string(why));
    }

    // Shared with the operations under way: a send still running in another task when the websocket goes (a
    // handler that returned while a broadcaster was mid-send) keeps the state, and the transport it owns, alive.
    std::shared_ptr<state> st_;
};

} // namespace coring::http
