#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/time/sleep.hpp>

#include <chrono>
#include <coroutine>
#include <type_traits>
#include <utility>

namespace coring {

/// The awaitable of timeout() and timeout_at(): awaits the inner awaitable directly (no extra task, no allocation),
/// in a cancellation context of its own that a timer node cancels at the deadline.
template <class A>
class [[nodiscard]] timeout_awaitable : detail::cancel_point, detail::timer_node {
public:
    /// Made by timeout() (`relative`: `t` since the epoch is the duration, counted from when it is awaited) and
    /// timeout_at() (`t` is the deadline). An lvalue `a` is held by reference, an rvalue is moved in.
    timeout_awaitable(detail::clock::time_point t, bool relative, A&& a)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel>},
          detail::timer_node{t, &on_fire},
          inner_(static_cast<A&&>(a)),
          relative_(relative) {}
    /// Movable only before it is awaited.
    timeout_awaitable(timeout_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<detail::inner_awaiter<A>>)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel>},
          detail::timer_node{o.deadline, &on_fire},
          inner_(std::move(o.inner_)),
          relative_(o.relative_) {}
    timeout_awaitable& operator=(timeout_awaitable&&) = delete;
    ~timeout_awaitable() {
        if (linked()) detail::current_loop->remove_timer(this);
        if (parent_ && parent_->point == this) parent_->point = nullptr;
    }

    /// An inner awaitable that is ready at once wins without a timer.
    bool await_ready() { return inner_.get().await_ready(); }

    template <class P>
    auto await_suspend(std::coroutine_handle<P> h) -> detail::suspend_result_t<detail::inner_suspend_t<A, P>> {
        using R = detail::inner_suspend_t<A, P>;
        parent_ = detail::context_of(h);
        // Already cancelled (level-triggered): do not start the inner awaitable at all.
        if (parent_ && parent_->requested) throw cancelled_error();
        event_loop& loop = event_loop::current();
        if (relative_) deadline = detail::deadline_after(deadline.time_since_epoch());
        loop.add_timer(this);
        if (parent_) parent_->point = this;
        struct undo_on_throw {
            timeout_awaitable* self;
            bool armed = true;
            ~undo_on_throw() {
                if (armed) self->disarm();
            }
        } undo{this};
        if constexpr (std::is_void_v<R>) {
            inner_.suspend_under(h, &ctx_);
            undo.armed = false;
        } else if constexpr (std::is_same_v<R, bool>) {
            const bool suspended = inner_.suspend_under(h, &ctx_);
            undo.armed = !suspended; // finished without suspending: no timer, no cancel point
            return suspended;
        } else {
            std::coroutine_handle<> next = inner_.suspend_under(h, &ctx_);
            undo.armed = false;
            return next;
        }
    }

    /// The inner result; timeout_error when the deadline cancelled it; cancelled_error when the caller was cancelled.
    decltype(auto) await_resume() {
        disarm();
        try {
            return inner_.get().await_resume();
        } catch (const cancelled_error&) {
            // A cancellation that came from outside stays a cancellation, even if the deadline passed as well.
            if (timed_out_ && !(parent_ && parent_->requested)) throw timeout_error();
            throw;
        }
    }

private:
    void disarm() noexcept {
        if (linked()) detail::current_loop->remove_timer(this);
        if (parent_ && parent_->point == this) parent_->point = nullptr;
    }
    // The deadline: cancel the inner awaitable; its own completion (whatever it says) still ends the wait.
    static void on_fire(detail::timer_node* n) noexcept {
        auto* self = static_cast<timeout_awaitable*>(n);
        self->timed_out_ = true;
        self->ctx_.request();
    }
    // The caller was cancelled: pass it on.
    static void on_cancel(detail::cancel_point* c) noexcept { static_cast<timeout_awaitable*>(c)->ctx_.request(); }

    detail::inner_awaiter<A> inner_;
    detail::cancel_context ctx_;               // the inner awaitable's cancellation context
    detail::cancel_context* parent_ = nullptr; // the caller's
    bool relative_;                            // `deadline` holds a duration until awaited
    bool timed_out_ = false;                   // the deadline passed before the inner awaitable finished
};

/// Awaits `aw` for at most `d` (asyncio.wait_for): if it has not finished by then, it is cancelled (an io_uring
/// operation in the kernel), awaited until it really stopped, and timeout_error is thrown. When completion and
/// deadline coincide, the completion wins: a result that arrived is returned, never dropped. A cancellation of the
/// caller stays a cancelled_error. Timeouts nest. A shield()ed awaitable ignores the deadline (timeout then returns
/// its result when it finishes). No allocation and no kernel object: a timer node in the frame.
/// Must be awaited from a coring::task; an lvalue awaitable is awaited by reference.
template <class Rep, class Period, detail::awaitable A>
[[nodiscard]] auto timeout(std::chrono::duration<Rep, Period> d, A&& aw) {
    return timeout_awaitable<A>(detail::clock::time_point(detail::to_clock_duration(d)), true, std::forward<A>(aw));
}

/// Awaits `aw` until the steady-clock time point `t` at the latest (asyncio.timeout_at); otherwise as timeout().
template <class Clock, class Duration, detail::awaitable A>
[[nodiscard]] auto timeout_at(std::chrono::time_point<Clock, Duration> t, A&& aw) {
    detail::clock::time_point at;
    if constexpr (std::is_same_v<Clock, detail::clock>)
        at = detail::saturating_add(detail::clock::time_point{}, detail::to_clock_duration(t.time_since_epoch()));
    else if (const auto now = Clock::now(); t <= now) at = detail::clock::now(); // due (no overflow for min())
    else at = detail::saturating_add(detail::clock::now(), detail::to_clock_duration(t - now));
    return timeout_awaitable<A>(at, false, std::forward<A>(aw));
}

} // namespace coring
