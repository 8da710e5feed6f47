#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>

namespace coring {

/// A flag tasks can wait for (asyncio.Event): wait() suspends until set() is called; while the event is set, wait()
/// returns at once.
///
/// Single loop: an event belongs to the thread of the event loop whose tasks use it, and is used only there (no
/// locks, no atomics). It can be neither copied nor moved (waiters point into it). Destroy it only once no task waits
/// on it: tasks still waiting then are orphaned and stay suspended until they are cancelled.
class event {
public:
    /// An event that starts cleared (usable as a default-initialised member: `S s{};`).
    event() noexcept = default;
    /// An event that starts set when `initially_set`.
    explicit event(bool initially_set) noexcept : set_(initially_set) {}
    event(const event&) = delete;
    event& operator=(const event&) = delete;

    /// The awaitable of wait().
    class [[nodiscard]] wait_awaitable : detail::waiter {
    public:
        /// A wait on `e`, which starts when it is awaited; event::wait() is the usual way to get one.
        explicit wait_awaitable(event& e) noexcept : e_(&e) {}
        /// Movable until it is awaited (a spawned wait() is moved into its task's frame).
        wait_awaitable(wait_awaitable&& o) noexcept : detail::waiter(o), e_(o.e_) {}
        wait_awaitable& operator=(wait_awaitable&&) = delete;

        /// Ready at once when the event is set, even for a cancelled task (it does not wait).
        bool await_ready() const noexcept { return e_->set_; }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(e_->waiters_, h, "coring::event::wait");
        }
        /// Throws cancelled_error when the task was cancelled before the event was set. A task woken by set() and
        /// cancelled before it ran returns normally (the wake-up is not lost); its next wait throws.
        void await_resume() const {
            if (result() == outcome::cancelled) throw cancelled_error();
        }

    private:
        event* e_;
    };

    /// Sets the event and wakes every task waiting for it; they are queued on the loop and run after the caller
    /// suspends. Waiters woken here return from wait() even if the event is cleared before they run. Loop thread only;
    /// never throws (a ready queue that cannot grow terminates, like every wake-up in coring).
    void set() noexcept {
        if (set_) return;
        set_ = true;
        while (!waiters_.empty()) detail::waiter::from(waiters_.pop_front())->wake(outcome::granted);
    }

    /// Clears the event: later wait()s suspend until the next set(). Loop thread only.
    void clear() noexcept { set_ = false; }

    /// Whether the event is set.
    [[nodiscard]] bool is_set() const noexcept { return set_; }

    /// Waits until the event is set (asyncio's Event.wait()); returns at once when it is set. A cancellation point
    /// while it waits: throws cancelled_error there, or at once when the task was already cancelled and the event is
    /// not set. Throws std::logic_error when it would wait on a thread without an event loop.
    [[nodiscard]] wait_awaitable wait() noexcept { return wait_awaitable(*this); }

private:
    using outcome = detail::waiter::outcome;

    detail::wait_list waiters_; // tasks suspended in wait(), oldest first
    bool set_ = false;          // the flag itself
};

} // namespace coring
