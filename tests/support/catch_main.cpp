// Catch2's main, after silencing the epoll backend's one-line notice (CORING_BACKEND_NOTICE=0, unless set): the suite
// runs again with CORING_BACKEND=epoll, and tests that capture stderr must not find it there. The notice itself is
// tested in children that unset it (tests/runtime/test_setup_errors.cpp) and by the seccomp tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

int main(int argc, char* argv[]) {
    ::setenv("CORING_BACKEND_NOTICE", "0", 0);
    return Catch::Session().run(argc, argv);
}
