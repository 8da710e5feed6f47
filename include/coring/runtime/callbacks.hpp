#pragma once

// Plain functions scheduled on the loop (asyncio's call_soon, call_later, call_at, call_soon_threadsafe). Included at
// the end of event_loop.hpp, whose members these are.

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/loop_inbox.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>
#include <coring/time/sleep.hpp>

#include <chrono>
#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {

// Declared again here: when loop_inbox.hpp is the header included first, this one is reached (through event_loop.hpp)
// before loop_inbox.hpp has got as far as defining it.
inline std::shared_ptr<mailbox> inbox_of(event_loop& target, const char* what);

/// The function a callback task calls, destroyed as soon as the call is over (as asyncio drops a handle's callback):
/// the task's frame lives on until the handle goes, and should not keep what the function captured meanwhile. (A
/// callback cancelled before its task started never enters the body: its function goes with the frame.)
template <class F>
struct callback_fn {
    std::optional<F> f;

    struct release {
        std::optional<F>& f;
        ~release() { f.reset(); }
    };
};

/// Calls `f`; what it throws goes to the loop's exception handler now, as asyncio does, not when the handle goes.
template <class F>
void call_reporting(F& f, const char* what) noexcept {
    try {
        std::invoke(f);
    } catch (...) {
        require_core(what).report(std::current_exception());
    }
}

template <class F>
task<> call_soon_body(callback_fn<F> c) {
    typename callback_fn<F>::release guard{c.f};
    call_reporting(*c.f, "call_soon"); // a spawned task cancelled before it starts never gets here
    co_return;
}

template <class F>
task<> call_at_body(clock::time_point when, callback_fn<F> c) {
    typename callback_fn<F>::release guard{c.f};
    co_await sleep_awaitable::until(when);
    co_await cancellation_check(); // cancelled after its timer fired, before it ran: asyncio skips it too
    call_reporting(*c.f, "call_at");
}

/// A function on its way to a loop from another thread: the only allocation call_soon_threadsafe makes.
template <class F>
struct threadsafe_call : remote_item {
    F f;

    explicit threadsafe_call(F&& fn) : f(std::move(fn)) {
        run = &call;
        reject = &drop;
    }
    // The loop's thread, at the top of a turn.
    static void call(remote_item* item) noexcept {
        std::unique_ptr<threadsafe_call> self(static_cast<threadsafe_call*>(item));
        call_reporting(self->f, "call_soon_threadsafe");
    }
    // The loop closed before it got to the call: the function is destroyed without being called.
    static void drop(remote_item* item) noexcept { delete static_cast<threadsafe_call*>(item); }
};

template <class F>
constexpr void check_callback() {
    static_assert(std::is_invocable_v<std::decay_t<F>&>, "coring: a callback is called with no arguments");
    static_assert(!is_task_v<std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>&>>>,
                  "coring: a callback returning a task would never run it; spawn the task instead");
}

} // namespace detail

/// A callback scheduled with call_soon, call_later or call_at (asyncio's Handle and TimerHandle): cancel it before it
/// runs. Dropping the handle does not cancel the callback (as in asyncio); an exception the callback throws goes to
/// the loop's exception handler at once.
///
/// Belongs to the loop's thread, like the task that runs the callback (a callback is a small task of its own: it
/// shows in task_count(), and a loop that drains at the end of run() cancels callbacks that have not run yet).
class callback_handle {
public:
    /// A handle to no callback.
    callback_handle() noexcept = default;

    /// Prevents the callback from running, if it has not run yet: true then, false when it has already run (or
    /// thrown, or was cancelled before). Called by the callback itself, it returns true and has no other effect, as
    /// asyncio's Handle.cancel().
    bool cancel() noexcept {
        if (!task_.cancel()) return false;
        cancelled_ = true;
        return true;
    }
    /// Whether cancel() returned true.
    [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }
    /// Whether the callback has run (or thrown), or been cancelled and dropped by the loop.
    [[nodiscard]] bool done() const noexcept { return task_.done(); }
    /// When the callback is due: the deadline of call_later and call_at, the time of the call for call_soon
    /// (asyncio's TimerHandle.when()).
    [[nodiscard]] std::chrono::steady_clock::time_point when() const noexcept { return when_; }
    /// Whether the handle refers to a callback.
    [[nodiscard]] bool valid() const noexcept { return task_.valid(); }

private:
    friend class event_loop;
    callback_handle(join_handle<void> t, std::chrono::steady_clock::time_point when) noexcept
        : task_(std::move(t)), when_(when) {}

    join_handle<void> task_;
    std::chrono::steady_clock::time_point when_{};
    bool cancelled_ = false;
};

template <class F>
callback_handle event_loop::call_soon(F&& fn) {
    detail::check_callback<F>();
    check_owner("call_soon");
    return callback_handle(
        detail::spawn_root(core_, detail::call_soon_body(detail::callback_fn<std::decay_t<F>>{std::forward<F>(fn)})),
        detail::clock::now());
}

template <class Rep, class Period, class F>
callback_handle event_loop::call_later(std::chrono::duration<Rep, Period> delay, F&& fn) {
    return call_at(detail::deadline_after(detail::to_clock_duration(delay)), std::forward<F>(fn));
}

template <class Clock, class Duration, class F>
callback_handle event_loop::call_at(std::chrono::time_point<Clock, Duration> when, F&& fn) {
    detail::check_callback<F>();
    check_owner("call_at");
    const detail::clock::time_point t = detail::to_loop_clock(when);
    return callback_handle(
        detail::spawn_root(core_, detail::call_at_body(t, detail::callback_fn<std::decay_t<F>>{std::forward<F>(fn)})),
        t);
}

template <class F>
void event_loop::call_soon_threadsafe(F&& fn) {
    detail::check_callback<F>();
    if (try_current() == this) {
        (void)call_soon(std::forward<F>(fn)); // a dropped handle: the callback runs
        return;
    }
    std::shared_ptr<detail::mailbox> box = detail::inbox_of(*this, "call_soon_threadsafe");
    auto item = std::make_unique<detail::threadsafe_call<std::decay_t<F>>>(std::decay_t<F>(std::forward<F>(fn)));
    if (!box->post(item.get())) throw std::runtime_error("coring: call_soon_threadsafe: the loop has exited");
    (void)item.release();
}

} // namespace coring

// event_loop::handle() and the loop_handle it returns, which use the definitions above.
#include <coring/runtime/loop_handle.hpp>
