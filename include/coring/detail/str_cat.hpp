#pragma once

#include <string>
#include <string_view>

namespace coring::detail {

/// Concatenates pieces into one string with one allocation. Error messages use this rather than
/// `"literal" + std::string(...)`: GCC 12 at -O3 reports a false -Wrestrict inside std::string::insert for that
/// form (GCC bug 105651), which breaks -Werror builds of user code that includes us.
template <class... Pieces>
std::string str_cat(const Pieces&... pieces) {
    const std::string_view views[] = {std::string_view(pieces)...};
    std::size_t n = 0;
    for (auto v : views) n += v.size();
    std::string s;
    s.reserve(n);
    for (auto v : views) s.append(v);
    return s;
}

} // namespace coring::detail
