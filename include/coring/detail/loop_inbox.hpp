#pragma once

#include <coring/detail/mailbox.hpp>
#include <coring/detail/runtime_state.hpp>
#include <coring/runtime/event_loop.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring::detail {

/// The mailbox through which the calling thread may reach `target` (spawn_on, run_on):
/// - the current loop's own inbox;
/// - for a loop of the calling loop's runtime, the runtime's table, which keeps the mailbox after the loop has exited
///   (a post is then refused, instead of touching a destroyed loop);
/// - from any other thread, a loop of any live runtime, looked up in the process's runtime registry (a mutex and a
///   scan: foreign threads are not the hot path).
/// Throws std::logic_error (naming `what`) for a standalone loop of another thread: its inbox may not exist yet, and
/// creating it from another thread would race with the loop.
inline std::shared_ptr<mailbox> inbox_of(event_loop& target, const char* what) {
    if (event_loop::try_current() == &target) return target.remote();
    if (runtime_state* rs = current_runtime)
        if (runtime_member* m = rs->find(&target)) return m->box;
    if (std::shared_ptr<mailbox> box = registered_inbox(&target)) return box;
    std::string msg =
        std::string("coring: ") + what + ": the target is neither the current loop nor a loop of a runtime";
    if (std::string_view(what) == "call_soon_threadsafe")
        msg += " (take a coring::loop_handle on the loop's thread, event_loop::handle(), and call through it)";
    throw std::logic_error(msg);
}

} // namespace coring::detail
