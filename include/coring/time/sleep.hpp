#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/error.hpp>

#include <chrono>
#include <cmath>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <ratio>
#include <type_traits>

namespace coring {

namespace detail {

/// `d` in the loop clock's unit, rounded up (a sleep never ends early) and saturated instead of overflowing, for any
/// representation (int, int16_t, double, unsigned...). The range check is done in long double, which holds every
/// int64 nanosecond count exactly (x86-64, AArch64).
template <class Rep, class Period>
clock::duration to_clock_duration(std::chrono::duration<Rep, Period> d) noexcept {
    using D = clock::duration;
    const long double ns = std::chrono::duration<long double, std::nano>(d).count();
    if (ns != ns) return D::zero(); // NaN
    if (ns >= static_cast<long double>(D::max().count())) return D::max();
    if (ns <= static_cast<long double>(D::min().count())) return D::min();
    if constexpr (std::chrono::treat_as_floating_point_v<Rep>) {
        return D(static_cast<D::rep>(std::ceil(ns)));
    } else {
        // In range: widen the count first so that the unit conversion cannot overflow a narrow Rep.
        using wide = std::conditional_t<std::is_signed_v<Rep>, std::intmax_t, std::uintmax_t>;
        return std::chrono::ceil<D>(std::chrono::duration<wide, Period>(d.count()));
    }
}

/// t + d, clamped to the representable range.
inline clock::time_point saturating_add(clock::time_point t, clock::duration d) noexcept {
    const auto since = t.time_since_epoch();
    if (d > clock::duration::zero() && since > clock::duration::max() - d) return clock::time_point::max();
    if (d < clock::duration::zero() && since < clock::duration::min() - d) return clock::time_point::min();
    return t + d;
}

/// `t` on the loop's clock (steady_clock), saturated; a time point of another clock is converted through its own
/// now(), once, here (a later change of the system clock does not move it).
template <class Clock, class Duration>
clock::time_point to_loop_clock(std::chrono::time_point<Clock, Duration> t) noexcept {
    if constexpr (std::is_same_v<Clock, clock>) {
        return saturating_add(clock::time_point{}, to_clock_duration(t.time_since_epoch()));
    } else {
        const auto now = Clock::now();
        if (t <= now) return clock::now(); // due (no overflow for min())
        return saturating_add(clock::now(), to_clock_duration(t - now));
    }
}

} // namespace detail

/// The awaitable of sleep() and sleep_until(): a timer node in the awaiting frame, no kernel object of its own.
// Field order matters for the million-sleeper case: the flags fill timer_node's tail padding.
class [[nodiscard]] sleep_awaitable : detail::cancel_point, detail::timer_node {
public:
    /// Sleeps for `delay`, measured from the moment it is awaited; zero or negative yields once.
    static sleep_awaitable after(detail::clock::duration delay) noexcept {
        return sleep_awaitable(detail::clock::time_point(delay), true);
    }
    /// Sleeps until `deadline` on the steady clock.
    static sleep_awaitable until(detail::clock::time_point deadline) noexcept {
        return sleep_awaitable(deadline, false);
    }

    /// Movable only before it is awaited (a spawned or gathered sleep is moved into its task's frame).
    sleep_awaitable(sleep_awaitable&& o) noexcept : sleep_awaitable(o.deadline, o.relative_) {}
    sleep_awaitable(const sleep_awaitable&) = delete;
    sleep_awaitable& operator=(const sleep_awaitable&) = delete;
    sleep_awaitable& operator=(sleep_awaitable&&) = delete;
    ~sleep_awaitable() {
        if (linked()) detail::current_core->timers->remove(this);
        if (ctx_ && ctx_->point == this) ctx_->point = nullptr;
    }

    bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return false;
        }
        detail::loop_core& core = detail::require_core("sleep");
        h_ = h;
        if (relative_) {
            const detail::clock::duration delay = deadline.time_since_epoch(); // stored there until now
            if (delay <= detail::clock::duration::zero()) {
                yielded_ = true;
                core.ready.push(h);
                return true;
            }
            deadline = detail::deadline_after(delay);
        }
        core.timers->insert(this);
        if (ctx_) ctx_->point = this;
        return true;
    }

    /// Throws cancelled_error when the sleep was cancelled.
    void await_resume() const {
        if (cancelled_ || (yielded_ && ctx_ && ctx_->requested)) throw cancelled_error();
    }

private:
    sleep_awaitable(detail::clock::time_point t, bool relative) noexcept
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &describe>},
          detail::timer_node{t, &on_fire},
          relative_(relative) {}

    static void describe(const detail::cancel_point* c, detail::wait_note& n) {
        const auto* self = static_cast<const sleep_awaitable*>(c);
        const double left = std::chrono::duration<double>(self->deadline - detail::clock::now()).count();
        char buf[64];
        // A due sleeper waits for the loop's next timer pass (a task that holds the loop delays it).
        if (left >= 0) std::snprintf(buf, sizeof buf, "sleep, due in %.3f s", left);
        else std::snprintf(buf, sizeof buf, "sleep, due %.3f s ago", -left);
        n.text = buf;
    }

    // Both run on the loop's thread, from the loop, so the thread's loop is this sleeper's loop.
    static void on_fire(detail::timer_node* n) noexcept {
        auto* self = static_cast<sleep_awaitable*>(n);
        if (self->ctx_) self->ctx_->point = nullptr;
        detail::current_core->ready.push(self->h_);
    }
    static void on_cancel(detail::cancel_point* c) noexcept {
        auto* self = static_cast<sleep_awaitable*>(c);
        detail::current_core->timers->remove(self);
        self->cancelled_ = true;
        self->ctx_->point = nullptr;
        detail::current_core->ready.push(self->h_);
    }

    bool relative_;                         // `deadline` holds a delay until awaited
    bool yielded_ = false;                  // a non-positive delay: queued behind the ready tasks instead
    bool cancelled_ = false;                // left the timer queue because of cancellation
    detail::cancel_context* ctx_ = nullptr; // the awaiting chain's cancellation state
    std::coroutine_handle<> h_{};           // the sleeper
};

/// Suspends the calling task for at least `d` without blocking the loop (asyncio.sleep). Zero or negative `d` lets the
/// other ready tasks run once, like yield_now(). Cancellable; durations too large to represent sleep "forever".
template <class Rep, class Period>
[[nodiscard]] sleep_awaitable sleep(std::chrono::duration<Rep, Period> d) noexcept {
    return sleep_awaitable::after(detail::to_clock_duration(d));
}

/// Suspends the calling task until `t` (at the earliest). Time points of other clocks are converted once, now.
template <class Clock, class Duration>
[[nodiscard]] sleep_awaitable sleep_until(std::chrono::time_point<Clock, Duration> t) noexcept {
    return sleep_awaitable::until(detail::to_loop_clock(t));
}

} // namespace coring
