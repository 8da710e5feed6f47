// rename, remove, remove_directory, create_directory: success, and the errors users meet, each naming the path.

#include "support/fs_helpers.hpp"
#include "support/helpers.hpp"

#include <coring/coring.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace test_filesystem {

using coring::task;
using coring_test::exists;
using coring_test::failure_of;
using coring_test::io_failure;
using coring_test::temp_dir;

namespace {

task<> directories(const temp_dir& dir) {
    const std::string d = dir / "sub";
    co_await coring::create_directory(d);
    struct stat st {};
    REQUIRE(::stat(d.c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));

    const io_failure again = co_await failure_of(coring::create_directory(d));
    CHECK(again.code == EEXIST);
    CHECK(again.what == "coring: create_directory " + d + ": File exists");
    const io_failure parent = co_await failure_of(coring::create_directory(dir / "a/b/c"));
    CHECK(parent.code == ENOENT);

    // Permissions are applied less the umask.
    co_await coring::create_directory(dir / "private", 0700);
    REQUIRE(::stat((dir / "private").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);

    coring_test::spit(d + "/inside", "x");
    const io_failure not_empty = co_await failure_of(coring::remove_directory(d));
    CHECK(not_empty.code == ENOTEMPTY);
    CHECK(not_empty.what.find("remove_directory " + d) != std::string::npos);
    const io_failure is_dir = co_await failure_of(coring::remove(d));
    CHECK(is_dir.code == EISDIR);
    CHECK(is_dir.what.find("remove " + d) != std::string::npos);

    co_await coring::remove(d + "/inside");
    CHECK_FALSE(exists(d + "/inside"));
    co_await coring::remove_directory(d);
    CHECK_FALSE(exists(d));
    const io_failure gone = co_await failure_of(coring::remove_directory(d));
    CHECK(gone.code == ENOENT);
    const io_failure not_a_dir = co_await failure_of(coring::remove_directory(dir / "private/../missing"));
    CHECK(not_a_dir.code == ENOENT);
}

TEST_CASE("filesystem - create_directory and remove_directory, EEXIST, ENOENT, ENOTEMPTY, EISDIR", "[fs][filesystem]") {
    temp_dir dir;
    coring::run(directories(dir));
}

task<> renames_and_removes(const temp_dir& dir) {
    const std::string a = dir / "a.txt", b = dir / "b.txt";
    coring_test::spit(a, "first");
    co_await coring::rename(a, b);
    CHECK_FALSE(exists(a));
    CHECK(coring_test::slurp(b) == "first");

    // Renaming over an existing file replaces it (the atomic-replace idiom).
    coring_test::spit(a, "second");
    co_await coring::rename(a, b);
    CHECK(coring_test::slurp(b) == "second");

    const io_failure missing = co_await failure_of(coring::rename(a, dir / "c.txt"));
    CHECK(missing.code == ENOENT);
    CHECK(missing.what == "coring: rename " + a + " to " + (dir / "c.txt") + ": No such file or directory");

    // A directory cannot replace a file, nor go inside itself.
    co_await coring::create_directory(dir / "d");
    const io_failure over_file = co_await failure_of(coring::rename(dir / "d", b));
    CHECK(over_file.code == ENOTDIR);
    const io_failure into_self = co_await failure_of(coring::rename(dir / "d", dir / "d/e"));
    CHECK(into_self.code == EINVAL);

    co_await coring::remove(b);
    CHECK_FALSE(exists(b));
    const io_failure twice = co_await failure_of(coring::remove(b));
    CHECK(twice.code == ENOENT);
    CHECK(twice.what == "coring: remove " + b + ": No such file or directory");

    // remove takes a symbolic link away, not what it points to.
    coring_test::spit(a, "target");
    REQUIRE(::symlink(a.c_str(), (dir / "link").c_str()) == 0);
    co_await coring::remove(dir / "link");
    CHECK_FALSE(exists(dir / "link"));
    CHECK(exists(a));
}

TEST_CASE("filesystem - rename replaces, remove takes files and links, errors name both paths", "[fs][filesystem]") {
    temp_dir dir;
    coring::run(renames_and_removes(dir));
}

task<bool> read_only_directory(std::string d) {
    bool ok = true;
    const io_failure a = co_await failure_of(coring::remove(d + "/f"));
    ok &= a.code == EACCES && a.what == "coring: remove " + d + "/f: Permission denied";
    const io_failure b = co_await failure_of(coring::create_directory(d + "/x"));
    ok &= b.code == EACCES;
    const io_failure c = co_await failure_of(coring::write_file(d + "/new", std::string_view("x")));
    ok &= c.code == EACCES && c.what.find(d + "/new") != std::string::npos;
    const io_failure e = co_await failure_of(coring::rename(d + "/f", d + "/g"));
    ok &= e.code == EACCES;
    co_return ok;
}

TEST_CASE("filesystem - a read-only directory refuses changes with EACCES naming the path", "[fs][filesystem]") {
    temp_dir dir;
    coring_test::spit(dir / "f", "x");
    REQUIRE(::chmod(dir.path().c_str(), 0555) == 0);
    if (::geteuid() != 0) {
        const bool ok = coring::run(read_only_directory(dir.path()));
        CHECK(ok);
    } else {
        // Root bypasses permissions: check as nobody, in a child.
        const int r = coring_test::as_nobody([&] { return coring::run(read_only_directory(dir.path())); });
        if (r < 0) WARN("cannot drop privileges to uid 65534 here: permission check skipped");
        else CHECK(r == 0);
    }
    CHECK(coring_test::exists(dir / "f"));
    CHECK_FALSE(coring_test::exists(dir / "x"));
}

} // namespace

namespace {

// The four ways callers name a path (issue 10): each must reach every call that takes one.
using coring_test::as_c_str;
using coring_test::as_fs_path;
using coring_test::as_string;
using coring_test::as_string_view;

} // namespace

TEMPLATE_TEST_CASE("filesystem - every call takes a std::filesystem::path, std::string, std::string_view or "
                   "const char*",
                   "[fs][filesystem][path]", as_fs_path, as_string, as_string_view, as_c_str) {
    temp_dir dir;
    coring::run([](const temp_dir& d) -> task<> {
        const std::string sub = d / "sub";
        co_await coring::create_directory(TestType{}(sub));
        CHECK(exists(sub));
        coring_test::spit(sub + "/a", "x");
        co_await coring::rename(TestType{}(sub + "/a"), TestType{}(sub + "/b"));
        CHECK_FALSE(exists(sub + "/a"));
        CHECK(exists(sub + "/b"));
        co_await coring::remove(TestType{}(sub + "/b"));
        CHECK_FALSE(exists(sub + "/b"));

        // The awaitables keep their own copies: the caller's strings are gone before the kernel reads them.
        auto removing = coring::remove_directory(TestType{}(std::string(sub)));
        co_await std::move(removing);
        CHECK_FALSE(exists(sub));
        auto creating = coring::create_directory(TestType{}(std::string(sub)));
        co_await std::move(creating);
        CHECK(exists(sub));
        coring_test::spit(sub + "/c", "x");
        auto renaming = coring::rename(TestType{}(std::string(sub + "/c")), TestType{}(std::string(sub + "/d")));
        co_await std::move(renaming);
        CHECK(exists(sub + "/d"));
        const io_failure missing = co_await failure_of(coring::remove(TestType{}(sub + "/c")));
        CHECK(missing.code == ENOENT);
        CHECK(missing.what.find("remove " + sub + "/c") != std::string::npos);
    }(dir));
}

} // namespace test_filesystem
