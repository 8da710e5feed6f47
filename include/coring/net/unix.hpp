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
    /// stream's constructors: `unix_stream(fd, peer)` adopts a connected Unix-domain socket (as connect() and accept()
    /// do); moving is stream's move.
    using stream::stream;

    /// Connects to the socket at `path` ("/run/app.sock", or "@name" for an abstract socket), a
    /// std::filesystem::path, std::string, std::string_view or const char*. Throws std::system_error ("connect
    /// unix:/run/app.sock: No such file or directory"), cancelled_error, std::invalid_argument (an empty or too long
    /// path).
    [[nodiscard]] static connect_awaitable<unix_stream> connect(detail::path_arg path) {
        return connect_awaitable<unix_stream>(address::from_path(path));
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
    /// Listens at `path` ("/run/app.sock", or "@name" for an abstract socket), a std::filesystem::path,
    /// std::string, std::string_view or const char*. A socket file left behind by an earlier run is removed first, as
    /// asyncio does; any other file at `path` is an error (EADDRINUSE), never removed. Throws std::system_error
    /// ("bind unix:/run/app.sock: Permission denied"), std::invalid_argument (an empty or too long path).
    [[nodiscard]] static unix_listener bind(detail::path_arg path, const listen_options& options = {}) {
        const address at = address::from_path(path);
        std::string p = path.str();
        if (p.front() != '@') {
            struct stat st {};
            if (::lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(p.c_str());
        }
        unix_listener l;
        l.open(at, options);
        l.path_ = std::move(p);
        return l;
    }

    /// The path it listens at (as given).
    [[nodiscard]] const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

} // namespace coring
