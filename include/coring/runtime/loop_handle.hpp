#pragma once

// A loop's door for other threads (tokio's runtime::Handle): call_soon_threadsafe into any loop, standalone ones
// included. Included at the end of callbacks.hpp (itself at the end of event_loop.hpp); event_loop::handle() is
// defined here.

#include <coring/detail/mailbox.hpp>
#include <coring/runtime/callbacks.hpp>
#include <coring/runtime/event_loop.hpp>

#include <memory>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {

/// What the copies of a loop_handle share: the loop's inbox, and the message that tells the loop, once the last copy
/// is gone, that it may stop listening. Allocated when the handle is made, so that dropping the last copy (on any
/// thread, in a destructor) never allocates and never fails.
struct loop_listener : remote_item {
    event_loop* loop;
    std::shared_ptr<mailbox> box;

    loop_listener(event_loop* l, std::shared_ptr<mailbox> b) noexcept : loop(l), box(std::move(b)) {
        run = &release;
        reject = &drop;
    }
    /// The shared_ptr's deleter, on whichever thread drops the last copy: the loop learns it by message (its
    /// listener count is the loop thread's alone). A closed inbox means the loop is gone: nothing to tell.
    static void last_copy_gone(loop_listener* self) noexcept {
        // Kept here: once posted, the loop may free `self` (and its reference to the inbox) before post() returns.
        const std::shared_ptr<mailbox> b = self->box;
        if (!b->post(self)) delete self;
    }
    static void release(remote_item* item) noexcept {
        auto* self = static_cast<loop_listener*>(item);
        self->loop->listen_end();
        delete self;
    }
    static void drop(remote_item* item) noexcept { delete static_cast<loop_listener*>(item); }
};

} // namespace detail

/// A way into one loop from any thread, made on that loop's thread by event_loop::handle(); copyable, and usable from
/// any thread at once. It is what a thread coring did not start (a library's callback thread, a GUI thread) keeps to
/// hand results to the loop:
///
///     coring::promise<int> p;
///     std::thread t([h = coring::event_loop::current().handle(), &p] {
///         const int v = slow_library_call();
///         h.call_soon_threadsafe([&p, v] { p.set_value(v); });
///     });
///     int v = co_await p.get_future();
///
/// While any copy lives the loop listens to other threads (a read stays armed on its inbox), so a task that waits for
/// such a call waits instead of ending run() with "deadlock". A drain (the end of run()) listens while cancelled tasks
/// are still finishing, but does not wait for handles: run() returns once its tasks are done, and calls made later run
/// at the next run(), or never if the loop is destroyed first (their functions are then destroyed uncalled).
class loop_handle {
public:
    /// A handle to no loop.
    loop_handle() noexcept = default;

    /// Calls `fn()` on the loop soon, at the top of one of its turns, through the loop's inbox (one allocation), from
    /// any thread, the loop's own included (then never inline, and, unlike call_soon, not a task a drain would cancel
    /// before it runs). An exception `fn` throws goes to the loop's exception handler. Throws std::runtime_error when
    /// the loop has exited (then `fn` was not called) and std::logic_error for an empty handle.
    template <class F>
    void call_soon_threadsafe(F&& fn) const {
        detail::check_callback<F>();
        if (!st_) throw std::logic_error("coring: loop_handle::call_soon_threadsafe on an empty handle");
        const detail::loop_listener& st = *st_;
        auto item = std::make_unique<detail::threadsafe_call<std::decay_t<F>>>(std::decay_t<F>(std::forward<F>(fn)));
        if (!st.box->post(item.get())) throw std::runtime_error("coring: call_soon_threadsafe: the loop has exited");
        (void)item.release();
    }

    /// Whether the handle refers to a loop (which may have exited since).
    [[nodiscard]] bool valid() const noexcept { return st_ != nullptr; }
    /// Whether the loop has exited: calls are refused from now on. False for an empty handle.
    [[nodiscard]] bool exited() const noexcept { return st_ && st_->box->closed(); }
    /// Drops this copy; the loop stops listening when the last one goes.
    void reset() noexcept { st_.reset(); }

private:
    friend class event_loop;
    explicit loop_handle(std::shared_ptr<detail::loop_listener> st) noexcept : st_(std::move(st)) {}

    std::shared_ptr<detail::loop_listener> st_;
};

inline loop_handle event_loop::handle() {
    // Always checked (not only with CORING_CHECKS): on another thread this would race with the loop on its counters.
    if (std::this_thread::get_id() != owner_)
        throw std::logic_error("coring: event_loop::handle called from a thread other than the loop's own");
    auto listener = std::make_unique<detail::loop_listener>(this, remote());
    listen_begin();
    // From here the listener's message balances listen_begin: should the shared_ptr fail to allocate, it calls
    // last_copy_gone itself.
    return loop_handle(
        std::shared_ptr<detail::loop_listener>(listener.release(), &detail::loop_listener::last_copy_gone));
}

} // namespace coring
