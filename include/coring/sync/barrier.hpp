#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstddef>
#include <stdexcept>

namespace coring {

/// What waiting on a barrier throws once it is broken: abort() was called, or reset() while tasks waited
/// (asyncio.BrokenBarrierError).
class broken_barrier : public std::runtime_error {
public:
    broken_barrier() : std::runtime_error("coring: the barrier is broken") {}
};

/// A meeting point for a fixed number of tasks of one event loop (asyncio.Barrier, std::barrier): each calls
/// `co_await b.wait()`, and all of them continue once `parties` have arrived. Cyclic: the last arrival releases the
/// others and the barrier is at once ready for the next round.
///
/// wait() returns the task's arrival index in its round, 0 for the first and parties - 1 for the last (the one that
/// did not wait), so that one task can be picked to do something once per round, as asyncio's does.
///
/// Cancellation: a task cancelled while it waits leaves the round, which then needs one more arrival (asyncio's
/// rule); a task released before the cancellation arrived returns normally and meets it at its next wait.
///
/// Single loop: no locks, no atomics; neither copied nor moved. Destroy it only once no task waits on it.
class barrier {
public:
    /// A barrier for `parties` tasks. Throws std::invalid_argument when `parties` is 0.
    explicit barrier(std::size_t parties) : parties_(parties) {
        if (parties == 0) throw std::invalid_argument("coring: a barrier needs at least one party");
    }
    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;

    /// The awaitable of wait().
    class [[nodiscard]] wait_awaitable : detail::waiter {
    public:
        /// An arrival at `b`, made when it is awaited; barrier::wait() is the usual way to get one.
        explicit wait_awaitable(barrier& b) noexcept : b_(&b) {}
        /// Movable until it is awaited.
        wait_awaitable(wait_awaitable&& o) noexcept : detail::waiter(o), b_(o.b_) {}
        wait_awaitable& operator=(wait_awaitable&&) = delete;

        /// Ready (without waiting) for the last arrival of a round, and for a broken barrier.
        bool await_ready() noexcept {
            barrier& b = *b_;
            if (b.broken_) {
                set_result(outcome::closed);
                return true;
            }
            if (b.arrived_ + 1 < b.parties_) return false;
            b.release_round();
            index_ = b.parties_ - 1;
            set_result(outcome::granted);
            return true;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (!suspend(b_->waiters_, h, "coring::barrier::wait")) return false; // cancelled: did not arrive
            ++b_->arrived_;
            detail::cancel_point::ops = &detail::cancel_ops_of<&leave, &describe>;
            return true;
        }
        /// The arrival index. Throws broken_barrier when the barrier is or gets broken, cancelled_error when the task
        /// was cancelled before its round was complete (it then left the round).
        std::size_t await_resume() const {
            switch (result()) {
            case outcome::closed:
                throw broken_barrier();
            case outcome::cancelled:
                throw cancelled_error();
            default:
                return index_;
            }
        }

    private:
        friend class barrier;
        using outcome = detail::waiter::outcome;

        /// Cancelled while waiting: leaves the round, which then needs one more arrival.
        static void leave(detail::cancel_point* c) noexcept {
            auto* self = static_cast<wait_awaitable*>(c);
            if (self->linked()) { // else orphaned by a barrier destroyed under it
                self->unlink();
                --self->b_->arrived_;
            }
            self->wake(outcome::cancelled);
        }

        barrier* b_;
        std::size_t index_ = 0; // given when the round completes: arrival order among those still waiting
    };

    /// Arrives and waits until `parties` tasks have arrived (asyncio's Barrier.wait()); returns the arrival index. A
    /// cancellation point while it waits. Throws broken_barrier on a broken barrier, std::logic_error when it would
    /// wait on a thread without an event loop.
    [[nodiscard]] wait_awaitable wait() noexcept { return wait_awaitable(*this); }

    /// Breaks the barrier (asyncio's Barrier.abort()): the waiting tasks and every later wait() throw broken_barrier
    /// until reset(). Loop thread only.
    void abort() noexcept {
        broken_ = true;
        wake_all(detail::waiter::outcome::closed);
    }
    /// Starts afresh (asyncio's Barrier.reset()): the tasks waiting now get broken_barrier, and the barrier is whole
    /// and empty again. Loop thread only.
    void reset() noexcept {
        wake_all(detail::waiter::outcome::closed);
        broken_ = false;
    }

    /// The number of tasks needed to pass (asyncio's parties).
    [[nodiscard]] std::size_t parties() const noexcept { return parties_; }
    /// The number of tasks waiting in the current round (asyncio's n_waiting).
    [[nodiscard]] std::size_t waiting() const noexcept { return arrived_; }
    /// Whether the barrier is broken (asyncio's broken).
    [[nodiscard]] bool broken() const noexcept { return broken_; }

private:
    /// The last arrival: every waiter goes, with its index (arrival order; those that left do not count), and the
    /// next round starts empty.
    void release_round() noexcept {
        arrived_ = 0;
        for (std::size_t i = 0; !waiters_.empty(); ++i) {
            auto* w = static_cast<wait_awaitable*>(waiters_.pop_front());
            w->index_ = i;
            w->wake(detail::waiter::outcome::granted);
        }
    }
    void wake_all(detail::waiter::outcome o) noexcept {
        arrived_ = 0;
        while (!waiters_.empty()) detail::waiter::from(waiters_.pop_front())->wake(o);
    }

    detail::wait_list waiters_; // tasks waiting in the current round, in arrival order
    std::size_t parties_;
    std::size_t arrived_ = 0; // tasks waiting in the current round
    bool broken_ = false;
};

} // namespace coring
