#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>
#include <coring/sync/mutex.hpp>
#include <coring/task/task.hpp>

#include <coroutine>
#include <cstddef>
#include <stdexcept>
#include <utility>

namespace coring {

/// A condition variable for tasks of one event loop (asyncio.Condition, std::condition_variable_any with a
/// coring::mutex): `co_await cv.wait(guard)` unlocks the guard's mutex, waits for notify_one() or notify_all(), and
/// locks the mutex again before it returns.
///
/// ```
/// auto g = co_await m.lock();
/// co_await cv.wait(g, [&] { return !jobs.empty(); });
/// ```
///
/// Notifying moves the oldest waiters from the condition straight into the mutex's queue (wait morphing): a woken
/// task never runs only to find the mutex taken, and notify_all() with the mutex held wakes one task at a time, as
/// the mutex is handed on. Waiters are notified in the order they began to wait. Waiters may use different mutexes;
/// each reacquires its own.
///
/// Cancellation: a task cancelled while it waits for a notification stops waiting, but (as in asyncio and the C++
/// standard) wait() still reacquires the mutex before it throws cancelled_error, so the guard owns the lock on every
/// exit. A task notified before the cancellation arrived returns normally with the lock (the notification is not
/// lost) and meets the cancellation at its next wait.
///
/// Single loop, like mutex: no locks, no atomics; neither copied nor moved. Destroy it only once no task waits on it.
class condition {
public:
    condition() noexcept = default;
    condition(const condition&) = delete;
    condition& operator=(const condition&) = delete;

    /// The awaitable of wait(guard).
    class [[nodiscard]] wait_awaitable : detail::waiter {
    public:
        /// A wait on `cv` with the lock `g` owns, which starts when it is awaited; condition::wait(g) is the usual way
        /// to get one. `g` must outlive the wait.
        wait_awaitable(condition& cv, mutex::guard& g) noexcept : cv_(&cv), g_(&g) {}
        /// Movable until it is awaited.
        wait_awaitable(wait_awaitable&& o) noexcept : detail::waiter(o), cv_(o.cv_), g_(o.g_) {}
        wait_awaitable& operator=(wait_awaitable&&) = delete;

        /// Always waits (a notification is only for tasks already waiting).
        bool await_ready() const noexcept { return false; }
        /// Throws std::logic_error when the guard owns no lock (before anything is unlocked).
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (!g_->owns_lock()) throw std::logic_error("coring: condition::wait with a guard that owns no lock");
            // A cancelled task does not wait, and keeps the lock.
            if (!suspend(cv_->waiters_, h, "coring::condition::wait")) return false;
            detail::cancel_point::ops = &detail::cancel_ops_of<&cancelled_while_waiting, &describe>;
            m_ = g_->release();
            m_->release(); // hands the lock to the oldest task waiting for it
            return true;
        }
        /// Returns with the lock held by the guard. Throws cancelled_error when the task was cancelled before it was
        /// notified (the guard then holds the lock again, too).
        void await_resume() {
            if (m_) *g_ = mutex::guard(m_);
            if (result() == outcome::cancelled || cancelled_) throw cancelled_error();
        }

    private:
        friend class condition;
        using outcome = detail::waiter::outcome;

        /// Leaves the condition and queues for the mutex (or takes it), as a notification would; the wait then ends
        /// with cancelled_error once the lock is back.
        static void cancelled_while_waiting(detail::cancel_point* c) noexcept {
            auto* self = static_cast<wait_awaitable*>(c);
            self->cancelled_ = true;
            if (self->linked()) self->unlink(); // not linked: orphaned by a condition destroyed under it
            self->requeue();
        }
        /// Once in the mutex's queue, the lock must be taken whatever happens: cancellation is ignored there (the
        /// chain's cancellation stays requested and is met at the next wait).
        static void cancel_ignored(detail::cancel_point* c) noexcept {
            auto* self = static_cast<wait_awaitable*>(c);
            if (self->linked()) return;
            // Orphaned by a mutex destroyed under it (a misuse): end the wait, without the lock, rather than hang.
            self->m_ = nullptr;
            self->wake(outcome::cancelled);
        }

        /// Notified (or cancelled): takes the mutex if it is free and wakes, or joins the mutex's queue, where the
        /// next unlock hands it the lock and wakes it.
        void requeue() noexcept {
            detail::cancel_point::ops = &detail::cancel_ops_of<&cancel_ignored, &describe>;
            if (!m_->locked_) {
                m_->locked_ = true;
                wake(outcome::granted);
                return;
            }
            if constexpr (detail::checks)
                if (m_->waiters_.empty()) m_->waiters_.home_ = detail::current_core;
            m_->waiters_.push_back(this);
        }

        condition* cv_;
        mutex::guard* g_;
        mutex* m_ = nullptr;     // the mutex given up while waiting
        bool cancelled_ = false; // cancelled before it was notified
    };

    /// Unlocks the mutex `g` owns, waits to be notified, locks the mutex again and returns (asyncio's
    /// Condition.wait()). A cancellation point (see the class comment: the lock is held again on every exit). Throws
    /// std::logic_error when `g` owns no lock, or when it would wait on a thread without an event loop.
    [[nodiscard]] wait_awaitable wait(mutex::guard& g) noexcept { return wait_awaitable(*this, g); }

    /// Waits until `pred()` is true (asyncio's Condition.wait_for()): checks it first, with the lock held, and again
    /// after every notification. `pred` is called with the lock held. A cancellation point while it waits.
    template <class Pred>
    task<> wait(mutex::guard& g, Pred pred) {
        while (!pred()) co_await wait(g);
    }

    /// Wakes the oldest waiting task, if any: it moves to the mutex's queue (or takes a free mutex). Loop thread only.
    void notify_one() noexcept { notify(1); }
    /// Wakes every waiting task (each gets the mutex in turn). Loop thread only.
    void notify_all() noexcept { notify(static_cast<std::size_t>(-1)); }
    /// Wakes up to `n` waiting tasks, oldest first (asyncio's Condition.notify(n)). Loop thread only.
    void notify(std::size_t n) noexcept {
        for (; n > 0 && !waiters_.empty(); --n) static_cast<wait_awaitable*>(waiters_.pop_front())->requeue();
    }

private:
    detail::wait_list waiters_; // tasks waiting to be notified, oldest first
};

} // namespace coring
