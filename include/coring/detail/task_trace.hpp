#pragma once

#include <coring/detail/cancel.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

namespace coring::detail {

class promise_base;

/// What a cancel point tells a task dump about the wait it stands for (cancel_point::describe).
struct wait_note {
    std::string text;                          ///< "sleep until +3.200 s", "mutex::lock", "gather of 3 tasks"
    std::vector<const promise_base*> children; ///< tasks it waits for that were not spawned (gather's children)
};

/// A type's name for dumps: demangled, without the `coring::` and `detail::` qualifiers.
inline std::string type_label(const std::type_info& t) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
    std::string name = status == 0 && s ? s.get() : t.name();
    for (std::string_view q : {std::string_view("coring::"), std::string_view("detail::")})
        for (std::size_t at = name.find(q); at != std::string::npos; at = name.find(q, at)) name.erase(at, q.size());
    return name;
}

/// A qualified name of coring's ("coring::mutex::lock") without its namespace.
inline std::string_view without_namespace(std::string_view what) noexcept {
    constexpr std::string_view ns = "coring::";
    if (what.substr(0, ns.size()) == ns) what.remove_prefix(ns.size());
    return what;
}

/// A cancel_point::describe that says `Text`, for waits with nothing more to tell.
template <const char* Text>
void describe_as(const cancel_point*, wait_note& n) {
    n.text = Text;
}
inline constexpr char to_thread_label[] = "to_thread";
inline constexpr char run_on_label[] = "run_on (another loop)";
inline constexpr char signal_label[] = "wait_signal";
inline constexpr char receive_label[] = "stream read (multishot receive)";
inline constexpr char channel_label[] = "channel";
inline constexpr char shield_label[] = "shield";

} // namespace coring::detail
