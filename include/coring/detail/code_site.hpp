#pragma once

#include <version>
#if defined(__cpp_lib_source_location)
#include <source_location>
#endif

namespace coring::detail {

/// A place in the source (a spawn, a co_await), captured by a defaulted argument at the call site, for task dumps.
///
/// Where the standard library has std::source_location (GCC 12; Clang from 15), it is one pointer to static data, so
/// recording a site is one store. Clang 14 with libstdc++ has no std::source_location (it lacks the builtin), so
/// there the three parts are kept apart.
#if defined(__cpp_lib_source_location)
class code_site {
public:
    static constexpr code_site here(std::source_location l = std::source_location::current()) noexcept {
        return code_site(l);
    }
    constexpr code_site() noexcept = default;
    [[nodiscard]] constexpr bool known() const noexcept { return loc_.line() != 0; }
    [[nodiscard]] constexpr const char* file() const noexcept { return loc_.file_name(); }
    [[nodiscard]] constexpr const char* function() const noexcept { return loc_.function_name(); }
    [[nodiscard]] constexpr unsigned line() const noexcept { return static_cast<unsigned>(loc_.line()); }

private:
    explicit constexpr code_site(std::source_location l) noexcept : loc_(l) {}
    std::source_location loc_{};
};
#else
class code_site {
public:
    static constexpr code_site here(const char* file = __builtin_FILE(), const char* function = __builtin_FUNCTION(),
                                    unsigned line = __builtin_LINE()) noexcept {
        return code_site(file, function, line);
    }
    constexpr code_site() noexcept = default;
    [[nodiscard]] constexpr bool known() const noexcept { return line_ != 0; }
    [[nodiscard]] constexpr const char* file() const noexcept { return file_; }
    [[nodiscard]] constexpr const char* function() const noexcept { return function_; }
    [[nodiscard]] constexpr unsigned line() const noexcept { return line_; }

private:
    constexpr code_site(const char* file, const char* function, unsigned line) noexcept
        : file_(file), function_(function), line_(line) {}
    const char* file_ = "";
    const char* function_ = "";
    unsigned line_ = 0;
};
#endif

} // namespace coring::detail
