#pragma once

#include <coring/net/address.hpp>
#include <coring/net/connect.hpp>
#include <coring/net/listener.hpp>
#include <coring/net/stream.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace coring {

/// A Unix-domain stream connection: see stream for reading, writing and closing.
class unix_stream : public stream {
public:
    using stream::stream;

    /// Connects to the socket at `path` ("/run/app.sock", or "@name" for an abstract socket). Throws
    /// std::system_error ("connect unix:/run/app.sock: No such file or directory"), cancelled_error.
    [[nodiscard]] static connect_awaitable<unix_stream> connect(std::string_view path) {
        return connect_awaitable<unix_stream>(address::parse(detail::str_cat("unix:", path)));
    }
    /// Connects to a unix: address.
    [[nodiscard]] static connect_awaitable<unix_stream> connect(address to) {
        if (!to.is_unix()) throw std::invalid_argument("coring: unix_stream::connect needs a unix: address");
        return connect_awaitable<unix_stream>(std::move(to));
    }
};

/// A listening Unix-domain socket (asyncio.start_unix_server).
class unix_listener : public basic_listener<unix_stream> {
public:
    /// Listens at `path` ("/run/app.sock", or "@name" for an abstract socket). A socket file left behind by an earlier
    /// run is removed first, as asyncio does; any other file at `path` is an error (EADDRINUSE), never removed.
    /// Throws std::system_error ("bind unix:/run/app.sock: Permission denied").
    [[nodiscard]] static unix_listener bind(std::string_view path, const listen_options& options = {}) {
        const address at = address::parse(detail::str_cat("unix:", path));
        if (!path.empty() && path.front() != '@') {
            struct stat st {};
            const std::string p(path);
            if (::lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(p.c_str());
        }
        unix_listener l;
        l.open(at, options);
        l.path_ = path;
        return l;
    }

    /// The path it listens at (as given).
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

} // namespace coring
