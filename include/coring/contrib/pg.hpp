#pragma once

// PostgreSQL on the loop through libpq's non-blocking API: a thin example of how a C library with its own socket runs
// on coring (wait_readable / wait_writable whenever libpq would block, release_fd before libpq closes the socket).
// Not part of <coring/coring.hpp>; needs libpq (Debian: libpq-dev) and linking with -lpq.

#include <coring/error.hpp>
#include <coring/net/address.hpp>
#include <coring/net/resolve.hpp>
#include <coring/runtime/wait_ready.hpp>
#include <coring/task/shield.hpp>
#include <coring/task/task.hpp>
#include <coring/thread/to_thread.hpp>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace coring::pg {

namespace detail {
/// Clears a busy flag when the query's frame ends (a named type: GCC 12 crashes on a local class of a coroutine when a
/// precompiled header is in use).
struct idle_again {
    bool& busy;
    ~idle_again() { busy = false; }
};
} // namespace detail

/// A failed connection or statement; what() is PostgreSQL's message (and the SQLSTATE in sqlstate()).
class error : public std::runtime_error {
public:
    /// what() is "coring::pg: " followed by `what`; `sqlstate` is the server's SQLSTATE, if it sent one.
    explicit error(const std::string& what, std::string sqlstate = {})
        : std::runtime_error("coring::pg: " + what), sqlstate_(std::move(sqlstate)) {}
    /// The five-character SQLSTATE code ("42601" for a syntax error), empty when there is none.
    [[nodiscard]] const std::string& sqlstate() const noexcept { return sqlstate_; }

private:
    std::string sqlstate_;
};

namespace detail {

/// A connection string's own options (PQconninfoParse: what the string says, without libpq's defaults), as the
/// keyword and value arrays of PQconnectStartParams.
class conn_params {
public:
    explicit conn_params(const std::string& conninfo) {
        char* err = nullptr;
        PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
        if (!opts) {
            const std::string why = err ? trimmed(err) : std::string("out of memory");
            PQfreemem(err);
            throw error("invalid connection string: " + why);
        }
        for (PQconninfoOption* o = opts; o->keyword; ++o)
            if (o->val) set(o->keyword, o->val);
        PQconninfoFree(opts);
    }
    /// The value given for `key`, or the environment variable libpq would read instead (empty when neither).
    [[nodiscard]] std::string get(std::string_view key, const char* env_name) const {
        for (std::size_t i = 0; i < keys_.size(); ++i)
            if (keys_[i] == key) return values_[i];
        const char* v = env_name ? std::getenv(env_name) : nullptr;
        return v ? v : "";
    }
    void set(std::string_view key, std::string value) {
        for (std::size_t i = 0; i < keys_.size(); ++i)
            if (keys_[i] == key) {
                values_[i] = std::move(value);
                return;
            }
        keys_.emplace_back(key);
        values_.push_back(std::move(value));
    }
    /// Null-terminated arrays for PQconnectStartParams, valid while this object is unchanged.
    [[nodiscard]] std::vector<const char*> keywords() const { return pointers(keys_); }
    [[nodiscard]] std::vector<const char*> values() const { return pointers(values_); }

private:
    static std::string trimmed(const char* s) {
        std::string m = s;
        while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
        return m;
    }
    static std::vector<const char*> pointers(const std::vector<std::string>& v) {
        std::vector<const char*> out;
        out.reserve(v.size() + 1);
        for (const std::string& s : v) out.push_back(s.c_str());
        out.push_back(nullptr);
        return out;
    }
    std::vector<std::string> keys_, values_;
};

inline std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    for (std::size_t start = 0;;) {
        const std::size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) return out;
        start = comma + 1;
    }
}

/// Whether libpq would look `host` up in DNS: not a socket directory, an abstract socket or a numeric address.
inline bool is_host_name(const std::string& host) {
    if (host.empty() || host.front() == '/' || host.front() == '@') return false;
    in_addr a4;
    in6_addr a6;
    return ::inet_pton(AF_INET, host.c_str(), &a4) != 1 && ::inet_pton(AF_INET6, host.c_str(), &a6) != 1;
}

inline std::string numeric_ip(const address& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (a.is_ipv4()) ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr, buf, sizeof buf);
    else ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_addr, buf, sizeof buf);
    return buf;
}

/// libpq resolves host names with a blocking getaddrinfo inside PQconnectStart: resolve them first, on coring's
/// resolver (off the loop), and hand libpq the numbers as hostaddr. A name with several addresses becomes as many
/// host entries, each with one address (and its port), so that libpq still tries them in turn; `host` stays the name,
/// for authentication and certificate checks. Nothing changes when hostaddr is already given.
inline task<> resolve_hosts(conn_params& p) {
    const std::string host = p.get("host", "PGHOST");
    if (host.empty() || !p.get("hostaddr", "PGHOSTADDR").empty()) co_return;
    const std::vector<std::string> hosts = split_commas(host);
    bool any_name = false;
    for (const std::string& h : hosts) any_name = any_name || is_host_name(h);
    if (!any_name) co_return;
    const std::vector<std::string> ports = split_commas(p.get("port", "PGPORT"));
    const bool port_per_host = ports.size() > 1;
    if (port_per_host && ports.size() != hosts.size())
        throw error("invalid connection string: " + std::to_string(ports.size()) + " ports for " +
                    std::to_string(hosts.size()) + " hosts");
    std::string out_hosts, out_addrs, out_ports;
    std::size_t entries = 0;
    auto add = [&](const std::string& h, const std::string& a, std::size_t i) {
        if (entries++ > 0) {
            out_hosts += ',';
            out_addrs += ',';
            if (port_per_host) out_ports += ',';
        }
        out_hosts += h;
        out_addrs += a;
        if (port_per_host) out_ports += ports[i];
    };
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::string& h = hosts[i];
        if (!is_host_name(h)) {
            add(h, "", i);
            continue;
        }
        std::vector<address> found;
        std::string failure;
        try {
            found = co_await resolve(h, 5432);
        } catch (const std::system_error& e) {
            failure = e.what();
        }
        if (!failure.empty()) throw error("could not resolve host name \"" + h + "\": " + failure);
        std::size_t used = 0;
        for (const address& a : found) {
            if (!a.is_ipv4() && !a.is_ipv6()) continue;
            add(h, numeric_ip(a), i);
            if (++used == 8) break; // as many as anyone lists for one name
        }
        if (used == 0) throw error("could not resolve host name \"" + h + "\": no IP address");
    }
    p.set("host", out_hosts);
    p.set("hostaddr", out_addrs);
    if (port_per_host) p.set("port", out_ports);
}

} // namespace detail

/// The rows of one statement (a PGresult, cleared on destruction).
class result {
public:
    /// Takes ownership of `r` (PQclear on destruction).
    explicit result(PGresult* r) noexcept : r_(r) {}
    /// The number of rows (PQntuples); 0 for a command that returns none.
    [[nodiscard]] int rows() const noexcept { return PQntuples(r_.get()); }
    /// The number of columns of each row (PQnfields).
    [[nodiscard]] int columns() const noexcept { return PQnfields(r_.get()); }
    /// The value at (row, column) as text; empty for NULL (see is_null).
    [[nodiscard]] std::string_view get(int row, int column) const noexcept {
        return {PQgetvalue(r_.get(), row, column), static_cast<std::size_t>(PQgetlength(r_.get(), row, column))};
    }
    /// Whether the value at (row, column) is NULL (get() returns it as empty, like an empty string).
    [[nodiscard]] bool is_null(int row, int column) const noexcept { return PQgetisnull(r_.get(), row, column) != 0; }
    /// The number of rows a command affected ("" → 0).
    [[nodiscard]] long affected() const noexcept {
        const char* s = PQcmdTuples(r_.get());
        return s && *s ? std::stol(s) : 0;
    }
    /// libpq's PGresult, for what coring does not wrap; still owned (and cleared) by this result.
    [[nodiscard]] PGresult* native_handle() const noexcept { return r_.get(); }

private:
    struct clear {
        void operator()(PGresult* r) const noexcept { PQclear(r); }
    };
    std::unique_ptr<PGresult, clear> r_;
};

/// One connection, used by one task at a time (libpq runs one statement at a time per connection). Loop thread only.
class connection {
public:
    connection() noexcept = default;
    /// Moves the connection; `o` is left without one. Moving it while a query on it runs aborts the process.
    connection(connection&& o) noexcept : c_(std::exchange(o.c_, nullptr)) { o.check_idle("moved"); }
    /// Closes this connection (PQfinish), then takes `o`'s; `o` is left without one. Aborts the process if a query
    /// runs on either.
    connection& operator=(connection&& o) noexcept {
        if (this != &o) {
            o.check_idle("moved");
            finish();
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection() { finish(); }

    /// Connects (PQconnectStart, then PQconnectPoll with a wait each time libpq asks for one). `conninfo` is libpq's
    /// ("host=/tmp port=5432 dbname=app" or a postgresql:// URI). Throws pg::error with libpq's message; cancellable.
    /// Host names are resolved on coring's resolver first (libpq's own lookup would block the loop); libpq then gets
    /// the addresses as hostaddr and tries them in turn.
    [[nodiscard]] static task<connection> connect(std::string conninfo) {
        detail::conn_params params(conninfo);
        co_await detail::resolve_hosts(params);
        const std::vector<const char*> keywords = params.keywords();
        const std::vector<const char*> values = params.values();
        connection c;
        c.c_ = PQconnectStartParams(keywords.data(), values.data(), 0);
        if (!c.c_) throw error("out of memory starting a connection");
        if (PQstatus(c.c_) == CONNECTION_BAD) throw error(c.message());
        if (PQsetnonblocking(c.c_, 1) != 0) throw error(c.message());
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        for (;;) {
            if (st == PGRES_POLLING_OK) break;
            if (st == PGRES_POLLING_FAILED) throw error(c.message());
            const int fd = PQsocket(c.c_);
            // The socket may change from one poll to the next (another host of the list): no wait stays armed across
            // PQconnectPoll, and a poll (re)registers its descriptor on epoll, so a reused number is no trouble.
            (void)co_await wait_ready(fd, st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
            st = PQconnectPoll(c.c_);
        }
        co_return c;
    }

    /// Runs one statement with parameters ($1, $2, ... as text; std::nullopt is NULL) and returns its rows. A failed
    /// statement is a pg::error with the server's message and SQLSTATE. Cancelling the awaiting task sends the server
    /// a cancel request (PQcancel, on a worker thread: it opens a connection of its own), waits for the statement to
    /// end, and throws cancelled_error: the connection stays usable.
    [[nodiscard]] task<result> query(std::string sql, std::vector<std::optional<std::string>> params = {}) {
        if (!c_) throw std::logic_error("coring::pg: query on a closed connection");
        if (busy_) throw std::logic_error("coring::pg: a query is already running on this connection");
        busy_ = true;
        detail::idle_again guard{busy_};
        std::vector<const char*> values;
        values.reserve(params.size());
        for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
        if (!PQsendQueryParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                               nullptr, 0))
            throw error(message());
        bool cancelled = false;
        try {
            co_await send_all();
            co_await until_idle();
        } catch (const cancelled_error&) {
            cancelled = true;
        }
        if (cancelled) {
            // The task stays cancelled (every later wait of it would throw): the clean-up runs shielded.
            co_await shield(cancel_running());
            throw cancelled_error();
        }
        // The statement's results, the last of which counts (one per statement; PQgetResult then returns null). Each
        // PQgetResult may need more input (ReadyForQuery can come in a later read): wait until libpq would not block.
        result res(nullptr);
        bool copy = false;
        for (;;) {
            co_await until_idle();
            PGresult* r = PQgetResult(c_);
            if (!r) break;
            const ExecStatusType st = PQresultStatus(r);
            res = result(r);
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                // COPY would return a new COPY result forever here: end it from our side and report it.
                if (st == PGRES_COPY_IN) PQputCopyEnd(c_, "coring::pg does not support COPY");
                copy = true;
                break;
            }
        }
        if (copy) throw error("COPY is not supported by coring::pg (the connection should be closed)");
        PGresult* last = res.native_handle();
        if (!last) throw error("no result");
        const ExecStatusType st = PQresultStatus(last);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            const char* state = PQresultErrorField(last, PG_DIAG_SQLSTATE);
            throw error(trimmed(PQresultErrorMessage(last)), state ? state : "");
        }
        co_return res;
    }

    /// The libpq connection, for what this wrapper does not cover.
    [[nodiscard]] PGconn* native_handle() const noexcept { return c_; }

private:
    /// Flushes the outgoing query: PQflush returns 1 while libpq still holds data the socket did not take.
    task<> send_all() {
        for (;;) {
            const int r = PQflush(c_);
            if (r == 0) co_return;
            if (r < 0) throw error(message());
            // Wait for room, but read too: the server may answer (or complain) before taking the whole query.
            const unsigned ev = co_await wait_ready(PQsocket(c_), POLLIN | POLLOUT);
            if ((ev & POLLIN) && !PQconsumeInput(c_)) throw error(message());
        }
    }

    /// Reads until the statement's results are all in (PQisBusy false).
    task<> until_idle() {
        while (PQisBusy(c_)) {
            (void)co_await wait_readable(PQsocket(c_));
            if (!PQconsumeInput(c_)) throw error(message());
        }
    }

    /// After a cancellation: asks the server to cancel the running statement, then takes its (failed) results so the
    /// connection is ready for the next one.
    task<> cancel_running() {
        if (PGcancel* cancel = PQgetCancel(c_)) {
            auto send = [cancel] {
                char buf[256];
                PQcancel(cancel, buf, sizeof buf); // best effort: the statement may have ended meanwhile
            };
            bool sent = true;
            try {
                co_await to_thread(std::move(send));
            } catch (const std::exception&) {
                sent = false; // no worker thread: the statement runs to its end below
            }
            (void)sent;
            PQfreeCancel(cancel);
        }
        try {
            co_await send_all();
            for (;;) {
                co_await until_idle();
                PGresult* r = PQgetResult(c_);
                if (!r) break;
                const ExecStatusType st = PQresultStatus(r);
                PQclear(r);
                if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) break;
            }
        } catch (const std::exception&) {
            // A connection that broke meanwhile reports it on its next use.
        }
    }

    std::string message() const { return c_ ? trimmed(PQerrorMessage(c_)) : std::string("no connection"); }
    static std::string trimmed(const char* m) {
        std::string s = m ? m : "";
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return s;
    }

    /// A query in flight uses this object: moving or destroying it then would leave it writing into freed memory.
    void check_idle(const char* what) const noexcept {
        if (!busy_) return;
        std::fprintf(stderr, "coring::pg: fatal: a connection was %s while a query on it was running\n", what);
        std::abort();
    }

    void finish() noexcept {
        check_idle("destroyed");
        if (!c_) return;
        // libpq closes its socket inside PQfinish: end any wait on it first (the kernel would keep the old file).
        if (const int fd = PQsocket(c_); fd >= 0) release_fd(fd);
        PQfinish(std::exchange(c_, nullptr));
    }

    PGconn* c_ = nullptr;
    bool busy_ = false;
};

} // namespace coring::pg
