#pragma once

// Fixtures of the HTTPS tests (coring::http over coring::tls): client options trusting the test CA, a GET to await
// outside Catch's macros, and what an awaited request threw.

#include "support/tls_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#if CORING_HTTP_TLS

#include <coring/tls.hpp>

#include <exception>
#include <string>
#include <system_error>
#include <utility>

namespace coring_test {

/// Client options whose TLS context trusts the test CA (besides the system store).
inline coring::http::client_options trusting_options() {
    coring::http::client_options o;
    o.tls = test_client_context();
    return o;
}

/// c.get(url), awaited.
inline coring::task<coring::http::client_response> get(coring::http::client& c, std::string url) {
    coring::task<coring::http::client_response> t = c.get(std::move(url));
    co_return co_await std::move(t);
}

/// What an awaited request threw: its kind and what().
struct caught {
    std::string kind; // "" when nothing was thrown
    std::string what;
};

/// Awaits `aw` and says what it threw: "truncated" (tls::truncated), "tls_error", "protocol_error", "system_error",
/// "other"; an empty kind when it threw nothing.
template <class Awaitable>
coring::task<caught> failure(Awaitable aw) {
    caught c;
    try {
        (void)co_await std::move(aw);
    } catch (const coring::tls::truncated& e) {
        c = {"truncated", e.what()};
    } catch (const coring::tls::error& e) {
        c = {"tls_error", e.what()};
    } catch (const coring::http::protocol_error& e) {
        c = {"protocol_error", e.what()};
    } catch (const std::system_error& e) {
        c = {"system_error", e.what()};
    } catch (const std::exception& e) {
        c = {"other", e.what()};
    }
    co_return c;
}

} // namespace coring_test

#endif // CORING_HTTP_TLS
