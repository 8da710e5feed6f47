// Catch2's main, after two things the reruns of the suite need:
// - It silences the epoll backend's one-line notice (CORING_BACKEND_NOTICE=0, unless set): tests that capture stderr
//   must not find it there. The notice itself is tested in children that unset it (tests/runtime/test_setup_errors.cpp)
//   and by the seccomp tests of the examples.
// - CORING_TEST_SECCOMP=epoll (the "epoll: " rerun of every test, tests/CMakeLists.txt) installs the seccomp filter of
//   the no_io_uring launcher (io_uring_filter.hpp) before any test runs and selects CORING_BACKEND=epoll, so the whole
//   suite runs on epoll where io_uring is refused, as in a Docker container: a call to io_uring left on any epoll path
//   fails there instead of quietly working. CORING_TEST_SECCOMP=automatic installs the filter only, leaving the
//   choice to the loop's fallback.
// And under ThreadSanitizer it hands TSan the suppressions below.
#define CATCH_CONFIG_RUNNER
#include "io_uring_filter.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#if defined(__SANITIZE_THREAD__)
// OpenSSL is not built with ThreadSanitizer, so TSan sees its malloc, free and memcpy calls but not the C11 atomics of
// its reference counts. An object that connections on two threads share (a TLS session handed from the context's
// cache to the other thread's connection, a certificate inside it) is freed by whichever thread drops the last
// reference, and that free looked like a race with the other thread's earlier reads (OPENSSL_sk_dup of the session's
// certificate chain, tests/tls/test_tls_resume.cpp). A race is exempt when either side's stack runs inside OpenSSL;
// coring's own state around a connection (the stream, the session cache and its lock) is still checked.
extern "C" const char* __tsan_default_suppressions() { // NOLINT(bugprone-reserved-identifier): TSan's hook
    return "race:libcrypto.so\n"
           "race:libssl.so\n";
}
#endif

int main(int argc, char* argv[]) {
    ::setenv("CORING_BACKEND_NOTICE", "0", 0);
    if (const char* mode = std::getenv("CORING_TEST_SECCOMP"); mode && *mode) {
        const std::string_view m = mode;
        if (m != "epoll" && m != "automatic") {
            std::fprintf(stderr, "coring_tests: CORING_TEST_SECCOMP=%s: expected epoll or automatic\n", mode);
            return 2;
        }
        if (!coring_test::seccomp::install_filter()) {
            std::fprintf(stderr, "coring_tests: cannot install the seccomp filter: %s\n", std::strerror(errno));
            return 125;
        }
        if (m == "epoll") ::setenv("CORING_BACKEND", "epoll", 1);
    }
    return Catch::Session().run(argc, argv);
}
