#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace coring::detail {

/// The parameter type of every call that takes a path (file::open, read_file, rename, unix_listener::bind...): a
/// std::filesystem::path, a std::string, a std::string_view or a const char* all convert to it, each through a
/// constructor of its own, so no call is ambiguous and none needs a conversion the caller has to spell.
///
/// It only views the caller's characters, which live until the end of the caller's full expression: a callee copies
/// what it keeps (an io_uring operation reads the path when the kernel takes the SQE, so the awaitable owns a copy).
class path_arg {
public:
    path_arg(const char* path) noexcept : view_(path) {}
    path_arg(const std::string& path) noexcept : view_(path) {}
    path_arg(std::string_view path) noexcept : view_(path) {}
    path_arg(const std::filesystem::path& path) noexcept : view_(path.native()) {}

    /// The path's characters (not NUL-terminated).
    [[nodiscard]] std::string_view view() const noexcept { return view_; }
    /// An owned copy, NUL-terminated for the system call.
    [[nodiscard]] std::string str() const { return std::string(view_); }

private:
    std::string_view view_;
};

} // namespace coring::detail
