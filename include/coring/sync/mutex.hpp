#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <stdexcept>
#include <utility>

namespace coring {

class condition;

/// A lock for tasks of one event loop (asyncio.Lock): `auto g = co_await m.lock();` waits without blocking the loop
/// and returns a guard that unlocks when it goes out of scope.
///
/// Fair: waiters get the lock in the order they asked for it. unlock() with waiters hands the lock straight to the
/// oldest one (the mutex stays locked through the hand-off), so no task can barge in between, and try_lock() fails
/// while anyone waits. Not recursive: a task that locks twice waits for itself forever.
///
/// Single loop: used only on the thread of the event loop whose tasks use it (no locks, no atomics). It can be
/// neither copied nor moved (waiters point into it). Destroy it only once no task waits on it: tasks still
/// waiting then are orphaned and stay suspended until they are cancelled.
class mutex {
public:
    mutex() noexcept = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;

    /// Ownership of a locked mutex (like std::unique_lock): move-only, unlocks when destroyed. An empty guard owns
    /// nothing (a failed try_lock(), a moved-from or unlocked guard).
    class guard {
    public:
        /// An empty guard.
        guard() noexcept = default;
        /// Takes over `o`'s lock; `o` is left empty.
        guard(guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
        /// Unlocks what this guard owned, then takes over `o`'s lock.
        guard& operator=(guard&& o) noexcept {
            if (this != &o) {
                unlock();
                m_ = std::exchange(o.m_, nullptr);
            }
            return *this;
        }
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;
        /// Unlocks, if it owns the lock (see mutex::unlock for the hand-off).
        ~guard() { unlock(); }

        /// True when the guard owns its mutex's lock.
        [[nodiscard]] bool owns_lock() const noexcept { return m_ != nullptr; }
        /// owns_lock(): `if (auto g = m.try_lock()) { ... }`.
        explicit operator bool() const noexcept { return m_ != nullptr; }

        /// Unlocks now (handing the lock to the oldest waiter, if any) and leaves the guard empty; does nothing on an
        /// empty guard. Loop thread only.
        void unlock() noexcept {
            if (m_) std::exchange(m_, nullptr)->release();
        }

        /// Gives up ownership without unlocking: the mutex stays locked and the caller must call mutex::unlock().
        /// Returns the mutex, or null for an empty guard.
        mutex* release() noexcept { return std::exchange(m_, nullptr); }

    private:
        friend class mutex;
        friend class condition;
        explicit guard(mutex* m) noexcept : m_(m) {}

        mutex* m_ = nullptr; // the mutex whose lock this guard owns, or null
    };

    /// The awaitable of lock().
    class [[nodiscard]] lock_awaitable : detail::waiter {
    public:
        /// A request for the lock of `m`, made when it is awaited; mutex::lock() is the usual way to get one.
        explicit lock_awaitable(mutex& m) noexcept : m_(&m) {}
        /// Movable until it is awaited (a spawned lock() is moved into its task's frame).
        lock_awaitable(lock_awaitable&& o) noexcept : detail::waiter(o), m_(o.m_) {}
        lock_awaitable& operator=(lock_awaitable&&) = delete;

        /// Takes a free mutex at once, even for a cancelled task (it does not wait).
        bool await_ready() noexcept {
            if (m_->locked_) return false;
            m_->locked_ = true;
            return true;
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return suspend(m_->waiters_, h, "coring::mutex::lock");
        }
        /// The guard of the lock; throws cancelled_error when the task was cancelled while it waited (it then holds
        /// nothing). A waiter that was handed the lock and cancelled before it ran still gets the lock.
        guard await_resume() const {
            if (result() == outcome::cancelled) throw cancelled_error();
            return guard(m_);
        }

    private:
        mutex* m_;
    };

    /// Waits until the lock is free and this task is first in line, takes it and returns its guard (asyncio's
    /// Lock.acquire()). Returns at once when the mutex is free. A cancellation point while it waits: throws
    /// cancelled_error there (leaving the queue, holding nothing), or at once when the task was already cancelled and
    /// the mutex is locked. Throws std::logic_error when it would wait on a thread without an event loop.
    [[nodiscard]] lock_awaitable lock() noexcept { return lock_awaitable(*this); }

    /// Takes the lock if it is free and returns its guard; otherwise returns an empty guard. Never waits. Fails while
    /// tasks wait for the lock (they are first in line), since the mutex stays locked while they do.
    [[nodiscard]] guard try_lock() noexcept {
        if (locked_) return guard();
        locked_ = true;
        return guard(this);
    }

    /// Unlocks: with waiters, the oldest one gets the lock (it runs once the caller suspends; the mutex stays locked),
    /// otherwise the mutex becomes free. For a lock taken without a guard (guard::release()). Throws std::logic_error
    /// when the mutex is not locked. Must not be used on a lock a guard still owns (that guard would unlock again).
    void unlock() {
        if (!locked_) throw std::logic_error("coring: mutex::unlock of a mutex that is not locked");
        release();
    }

    /// Whether the mutex is locked (asyncio's Lock.locked()).
    [[nodiscard]] bool locked() const noexcept { return locked_; }

private:
    friend class condition; // hands waiters over from its own queue (wait morphing)
    using outcome = detail::waiter::outcome;

    /// unlock() without the check: hand the lock over, or free it.
    void release() noexcept {
        if (waiters_.empty()) {
            locked_ = false;
            return;
        }
        detail::waiter::from(waiters_.pop_front())->wake(outcome::granted);
    }

    detail::wait_list waiters_; // tasks suspended in lock(), oldest first; non-empty only while locked
    bool locked_ = false;       // held by a task (or handed to a woken waiter that has not run yet)
};

} // namespace coring
