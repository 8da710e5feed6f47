#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstddef>
#include <limits>
#include <stdexcept>

namespace coring {

/// A counting semaphore for tasks of one event loop (asyncio.Semaphore): acquire() takes a permit, waiting while there
/// is none; release() gives one back.
///
/// Fair: waiters get permits in the order they asked. release() with waiters hands the permit straight to the oldest
/// one (available() stays 0), so a task that calls acquire() later cannot take it first, and try_acquire() fails while
/// anyone waits. Like asyncio.Semaphore (not BoundedSemaphore), release() may raise the count above its initial value.
///
/// Single loop: used only on the thread of the event loop whose tasks use it (no locks, no atomics). It can be
/// neither copied nor moved (waiters point into it). Destroy it only once no task waits on it: tasks still
/// waiting then are orphaned and stay suspended until they are cancelled.
class semaphore {
public:
    /// A semaphore with `initial` permits. Throws std::invalid_argument when `initial` is negative.
    explicit semaphore(std::ptrdiff_t initial) : count_(initial) {
        if (initial < 0) throw std::invalid_argument("coring: semaphore with a negative number of permits");
    }
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;

    /// The awaitable of acquire().
    class [[nodiscard]] acquire_awaitable : detail::waiter {
    public:
        /// An acquisition of a permit of `s`, which starts when it is awaited; semaphore::acquire() is the usual way
        /// to get one.
        explicit acquire_awaitable(semaphore& s) noexcept : s_(&s) {}
        /// Movable until it is awaited (a spawned acquire() is moved into its task's frame).
        acquire_awaitable(acquire_awaitable&& o) noexcept : detail::waiter(o), s_(o.s_) {}
        acquire_awaitable& operator=(acquire_awaitable&&) = delete;

        /// Takes a permit at once when one is available, even for a cancelled task (it does not wait).
        bool await_ready() noexcept {
            if (s_->count_ == 0) return false;
            --s_->count_;
            return true;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(s_->waiters_, h, "coring::semaphore::acquire");
        }
        /// Throws cancelled_error when the task was cancelled while it waited (it then holds no permit). A waiter
        /// that was handed a permit and cancelled before it ran still holds it, and must release it.
        void await_resume() const {
            if (result() == outcome::cancelled) throw cancelled_error();
        }

    private:
        semaphore* s_;
    };

    /// Takes a permit, waiting until one is handed over when none is available (asyncio's Semaphore.acquire()).
    /// A cancellation point while it waits: throws cancelled_error there (leaving the queue, holding no permit), or at
    /// once when the task was already cancelled and no permit is available. Throws std::logic_error when it would wait
    /// on a thread without an event loop.
    [[nodiscard]] acquire_awaitable acquire() noexcept { return acquire_awaitable(*this); }

    /// Takes a permit if one is available; never waits. False when none is (in particular while tasks wait).
    [[nodiscard]] bool try_acquire() noexcept {
        if (count_ == 0) return false;
        --count_;
        return true;
    }

    /// Gives a permit back: to the oldest waiter if there is one (it runs once the caller suspends), else to the
    /// count. Loop thread only. Throws std::overflow_error when the count is already at its maximum.
    void release() {
        if (!waiters_.empty()) {
            detail::waiter::from(waiters_.pop_front())->wake(outcome::granted);
            return;
        }
        if (count_ == std::numeric_limits<std::ptrdiff_t>::max())
            throw std::overflow_error("coring: semaphore::release beyond the largest count");
        ++count_;
    }

    /// Whether acquire() would wait: no permit is available (asyncio's Semaphore.locked()).
    [[nodiscard]] bool locked() const noexcept { return count_ == 0; }

    /// Permits that acquire() could take without waiting (0 while tasks wait).
    [[nodiscard]] std::ptrdiff_t available() const noexcept { return count_; }

private:
    using outcome = detail::waiter::outcome;

    detail::wait_list waiters_; // tasks suspended in acquire(), oldest first; non-empty only while count_ == 0
    std::ptrdiff_t count_;      // permits not held by any task
};

} // namespace coring
