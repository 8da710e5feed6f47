#pragma once

#include <coring/http/message.hpp>
#include <coring/task/task.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

/// A request handler: a coroutine from the request to the response. It is kept (and its captures with it) for as
/// long as the router, so a lambda handler may capture by value or refer to objects that outlive the server.
using handler = std::function<task<response>(request&)>;

/// Maps a method and a path to a handler. Patterns are paths whose segments are literal ("/users") or parameters
/// ("/users/{id}", which matches any one non-empty segment and hands it, percent-decoded, to request::param("id")).
/// The first route added that matches wins. A path that matches no route is a 404; one that matches a route for
/// other methods only is a 405 with an Allow header; HEAD is served by the GET route (without the body).
class router {
public:
    /// Adds a route. Throws std::invalid_argument for a pattern that does not start with '/' or has a malformed
    /// parameter.
    void add(std::string_view method, std::string_view pattern, handler h) {
        if (pattern.empty() || pattern.front() != '/')
            throw std::invalid_argument("coring: http: a route pattern must start with '/': \"" + std::string(pattern) +
                                        "\"");
        route r;
        r.method = std::string(method);
        r.h = std::move(h);
        for (std::string_view seg : split(pattern)) {
            segment s;
            if (!seg.empty() && seg.front() == '{') {
                if (seg.size() < 3 || seg.back() != '}' ||
                    seg.substr(1, seg.size() - 2).find_first_of("{}/") != std::string_view::npos)
                    throw std::invalid_argument("coring: http: malformed parameter \"" + std::string(seg) +
                                                "\" in route \"" + std::string(pattern) + "\"");
                s.param = true;
                s.text = std::string(seg.substr(1, seg.size() - 2));
            } else {
                s.text = std::string(seg);
            }
            r.segments.push_back(std::move(s));
        }
        routes_.push_back(std::move(r));
    }

    /// The outcome of a lookup.
    struct match {
        const handler* h = nullptr; ///< the handler, or null
        int status = 404;           ///< 404 (no route has this path) or 405 (not with this method) when h is null
        std::string allow;          ///< for a 405: the methods the path has
    };

    /// Finds the handler for `method` and `path`, filling `params` with the path's parameters.
    [[nodiscard]] match find(std::string_view method, std::string_view path, std::vector<field>& params) const {
        match m;
        const bool head = method == "HEAD";
        for (int pass = 0; pass < (head ? 2 : 1); ++pass) {
            const std::string_view want = pass == 0 ? method : std::string_view("GET");
            for (const route& r : routes_) {
                if (!matches(r, path, nullptr)) continue;
                if (r.method == want) {
                    params.clear();
                    matches(r, path, &params);
                    m.h = &r.h;
                    return m;
                }
                if (pass == 0 && m.allow.find(r.method) == std::string::npos) {
                    if (!m.allow.empty()) m.allow += ", ";
                    m.allow += r.method;
                }
                m.status = 405;
            }
        }
        return m;
    }

    /// Whether no route has been added.
    [[nodiscard]] bool empty() const noexcept { return routes_.empty(); }

private:
    struct segment {
        std::string text;
        bool param = false;
    };
    struct route {
        std::string method;
        std::vector<segment> segments;
        handler h;
    };

    /// "/a/b/" -> "a", "b", "" (a trailing slash is a segment of its own: "/a/" and "/a" differ).
    static std::vector<std::string_view> split(std::string_view path) {
        std::vector<std::string_view> out;
        path.remove_prefix(1);
        for (;;) {
            const std::size_t slash = path.find('/');
            out.push_back(path.substr(0, slash));
            if (slash == std::string_view::npos) break;
            path.remove_prefix(slash + 1);
        }
        return out;
    }

    static bool matches(const route& r, std::string_view path, std::vector<field>* params) {
        if (path.empty() || path.front() != '/') return false;
        path.remove_prefix(1);
        for (std::size_t i = 0; i < r.segments.size(); ++i) {
            const std::size_t slash = path.find('/');
            const std::string_view seg = path.substr(0, slash);
            const segment& s = r.segments[i];
            if (s.param) {
                if (seg.empty()) return false;
                if (params) params->push_back({s.text, percent_decode(seg)});
            } else if (seg != s.text) {
                return false;
            }
            const bool last = i + 1 == r.segments.size();
            if (last != (slash == std::string_view::npos)) return false;
            if (!last) path.remove_prefix(slash + 1);
        }
        return true;
    }

    std::vector<route> routes_;
};

} // namespace coring::http
