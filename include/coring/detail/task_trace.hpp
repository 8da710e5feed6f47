#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/code_site.hpp>
#include <coring/detail/loop_core.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

namespace coring::detail {

class promise_base;

/// What a cancel point tells a task dump about the wait it stands for (cancel_point::describe).
struct wait_note {
    std::string text;                          ///< "sleep, due in 3.200 s", "mutex::lock", "gather of 3 tasks"
    std::vector<const promise_base*> children; ///< tasks it waits for that were not spawned (gather's children)
};

/// A type's name for dumps: demangled, without the `coring::` and `detail::` qualifiers.
inline std::string type_label(const std::type_info& t) {
    std::string name = demangle(t.name());
    for (std::string_view q : {std::string_view("coring::"), std::string_view("detail::")})
        for (std::size_t at = name.find(q); at != std::string::npos; at = name.find(q, at)) name.erase(at, q.size());
    return name;
}

/// A function's name as a dump shows it: GCC spells a coroutine's as its resumer's whole signature ("void
/// app::{anonymous}::serve(serve()::_Z...Frame*)"); this keeps the qualified name ("app::serve"). Clang already gives
/// the bare name.
inline std::string short_function_name(std::string_view f) {
    auto skip_back = [&](std::size_t end, char open, char close) {
        // `end` is at `close`: the position of its matching `open`, or npos.
        int depth = 0;
        for (std::size_t i = end + 1; i-- > 0;) {
            if (f[i] == close) ++depth;
            else if (f[i] == open && --depth == 0) return i;
        }
        return std::string_view::npos;
    };
    // GCC names a template's arguments after the signature: "T f(task<T>) [with T = void]".
    if (const std::size_t with = f.rfind(" [with "); with != std::string_view::npos && f.back() == ']')
        f = f.substr(0, with);
    constexpr std::string_view call_operator = "operator()";
    const bool bare_call_operator =
        f.size() >= call_operator.size() && f.substr(f.size() - call_operator.size()) == call_operator;
    if (!f.empty() && f.back() == ')' && !bare_call_operator)
        if (const std::size_t open = skip_back(f.size() - 1, '(', ')'); open != std::string_view::npos && open > 0)
            f = f.substr(0, open);
    // The return type ends at the last space outside brackets.
    int depth = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i < f.size(); ++i) {
        const char c = f[i];
        if (c == '(' || c == '<' || c == '[' || c == '{') ++depth;
        else if (c == ')' || c == '>' || c == ']' || c == '}') --depth;
        else if (c == ' ' && depth == 0) start = i + 1;
    }
    std::string out(f.substr(start));
    constexpr std::string_view anon = "{anonymous}::";
    for (std::size_t at = out.find(anon); at != std::string::npos; at = out.find(anon, at)) out.erase(at, anon.size());
    return out;
}

/// "server.cpp:41 in serve": a site as reports print it; "an unknown place" when it is not known.
inline std::string site_text(const code_site& s) {
    if (!s.known()) return "an unknown place";
    std::string out = s.file();
    out += ':';
    out += std::to_string(s.line());
    out += " in ";
    out += short_function_name(s.function());
    return out;
}

/// "task #3 (spawned at server.cpp:41 in serve)", or "task #3" when the spawn site is not known.
inline std::string task_label(std::uint32_t id, const code_site& spawned) {
    std::string out = "task #" + std::to_string(id);
    if (spawned.known()) out += " (spawned at " + site_text(spawned) + ")";
    return out;
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
