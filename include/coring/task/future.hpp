#pragma once

#include <coring/detail/wait_list.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

/// What awaiting a future throws when its promise was destroyed before it was given a value or an exception (the
/// producer went away: a callback that was never called, a connection torn down).
class broken_promise : public std::logic_error {
public:
    broken_promise() : std::logic_error("coring: the promise of this future was destroyed before it was set") {}
};

template <class T>
class future;
template <class T>
class promise;

namespace detail {

/// The state a promise and its futures share: the outcome, and the tasks waiting for it. One allocation per promise;
/// counted without atomics, since a promise and its futures belong to one loop (as an event does).
template <class T>
struct future_state {
    /// What `co_await` on a future<void> holds in place of a value.
    struct unit {};
    using stored = std::conditional_t<std::is_void_v<T>, unit, T>;
    enum class status : std::uint8_t { pending, value, error, broken };

    wait_list waiters;           // tasks suspended in co_await, oldest first
    std::optional<stored> value; // engaged once set with a value
    std::exception_ptr error;    // set with an exception
    status st = status::pending; //
    bool promise_alive = true;   // the promise (which never reads the value) still holds a reference
    std::uint32_t refs = 1;      // the promise, every future and every awaitable in use
    loop_core* home = nullptr;   // the loop of the tasks that wait, set by each wait

    void release() noexcept {
        if (--refs == 0) delete this;
    }

    /// Whether finishing would wake tasks of a loop other than this thread's (a promise set or dropped on a thread
    /// that is not its waiters' loop): their coroutines would be queued on the wrong thread, or on none.
    [[nodiscard]] bool foreign_thread() const noexcept { return !waiters.empty() && home != current_core; }

    /// Marks the state finished with `s` and wakes every waiter; they are queued on the loop, never resumed inline.
    void finish(status s) noexcept {
        st = s;
        while (!waiters.empty()) waiter::from(waiters.pop_front())->wake(waiter::outcome::granted);
    }

    /// The outcome for a finished state: the value, or what to throw.
    const stored& get() const {
        switch (st) {
        case status::value:
            return *value;
        case status::error:
            std::rethrow_exception(error);
        case status::broken:
            throw broken_promise();
        case status::pending:
            break;
        }
        throw std::logic_error("coring: future::result() before the future is done");
    }
};

} // namespace detail

/// The result of an operation that finishes later (asyncio.Future): a value or an exception, set once through its
/// promise<T>, awaited by any number of tasks. Bridges callback APIs to coroutines: hand the promise to the callback,
/// `co_await` the future.
///
/// ```
/// coring::promise<int> p;
/// coring::future<int> f = p.get_future();
/// library.on_done([p = std::move(p)](int v) mutable { p.set_value(v); });
/// int v = co_await f;
/// ```
///
/// Copies share one state (an asyncio future is one object, however many names it has): every copy sees the same
/// outcome. `co_await f` on a named future gives a const reference to the value, valid while `f` lives; on a
/// temporary (`co_await p.get_future()`) or `co_await std::move(f)` it gives the value itself (copied, or for a
/// move-only type moved out of the last future), so that no reference outlives the state. Both rethrow the
/// exception the future was set with, and throw broken_promise when the promise was destroyed unset. A task
/// cancelled while it waits gets cancelled_error and the future is untouched: the other waiters, and later ones, still
/// get its outcome.
///
/// Single loop: a future and its promise belong to the thread of the event loop whose tasks use them, like an event.
/// To set one from another thread, hand the call to the loop (`loop.call_soon_threadsafe([&] { p.set_value(v); })`).
/// Setting a promise whose tasks wait on another thread's loop throws std::logic_error, and destroying it there unset
/// aborts with a message (checked in every build: it would otherwise queue coroutines on the wrong thread). A promise
/// is move-only, like std::promise: to keep one in a std::function (which must be copyable), hold it in a
/// std::shared_ptr. Debug builds (CORING_CHECKS) throw std::logic_error when two loops wait on one future at once.
template <class T>
class future {
    using state = detail::future_state<T>;
    using outcome = detail::waiter::outcome;

public:
    /// A future with no state (valid() is false), to assign later.
    future() noexcept = default;
    /// Another future of `o`'s state (shared, not copied).
    future(const future& o) noexcept : s_(o.s_) {
        if (s_) ++s_->refs;
    }
    /// Takes over `o`'s state; `o` is left without one.
    future(future&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    /// Drops this future's state and shares `o`'s instead (takes it over when `o` is an rvalue).
    future& operator=(future o) noexcept {
        std::swap(s_, o.s_);
        return *this;
    }
    ~future() {
        if (s_) s_->release();
    }

    /// Whether this future has a state (not default-constructed or moved from).
    [[nodiscard]] bool valid() const noexcept { return s_ != nullptr; }
    /// Whether the outcome is known: a value, an exception, or a destroyed promise. False without a state.
    [[nodiscard]] bool done() const noexcept { return s_ && s_->st != state::status::pending; }

    /// The value (asyncio's Future.result()): rethrows the exception the future was set with, throws broken_promise
    /// when its promise was destroyed unset, and std::logic_error when it is not done yet or has no state.
    decltype(auto) result() const {
        if (!s_) throw std::logic_error("coring: future::result() on a future with no state");
        const auto& v = s_->get();
        if constexpr (std::is_void_v<T>) {
            (void)v;
            return;
        } else {
            return static_cast<const T&>(v);
        }
    }
    /// The exception the future was set with, or null (a value, not done yet, no state, or a destroyed promise).
    [[nodiscard]] std::exception_ptr exception() const noexcept { return s_ ? s_->error : nullptr; }

    /// The awaitable of `co_await f`: `by_value` false for a named future (a const reference to the value), true for
    /// a temporary or std::move(f) (the value itself). Keeps the state alive until the co_await ends.
    template <bool by_value>
    class [[nodiscard]] basic_awaitable : detail::waiter {
    public:
        /// Adopts one reference to `s`.
        explicit basic_awaitable(state* s) noexcept : s_(s) {}
        /// Movable until it is awaited.
        basic_awaitable(basic_awaitable&& o) noexcept : detail::waiter(o), s_(std::exchange(o.s_, nullptr)) {}
        basic_awaitable& operator=(basic_awaitable&&) = delete;
        ~basic_awaitable() {
            if (s_) s_->release();
        }

        /// Ready at once when the future is done, even for a cancelled task (it does not wait).
        bool await_ready() const noexcept { return s_->st != state::status::pending; }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            if (!suspend(s_->waiters, h, "coring::future")) return false;
            s_->home = detail::current_core;
            return true;
        }
        /// The value, or what the future was set with. Throws cancelled_error when the task was cancelled before the
        /// future was done; a task woken by the outcome and cancelled before it ran gets the outcome (its next wait
        /// throws).
        decltype(auto) await_resume() const {
            if (result() == outcome::cancelled) throw cancelled_error();
            const auto& v = s_->get();
            if constexpr (std::is_void_v<T>) {
                (void)v;
                return;
            } else if constexpr (!by_value) {
                return static_cast<const T&>(v);
            } else {
                if constexpr (std::is_copy_constructible_v<T>) {
                    if (s_->refs == 1) return T(std::move(*s_->value)); // nobody, not even the promise, can read it
                    return T(v);
                } else {
                    // The only way to take a move-only value: allowed when no other future or awaitable shares it
                    // (the promise cannot read it; a future it makes later finds the moved-from value).
                    if (s_->refs - (s_->promise_alive ? 1 : 0) == 1) return T(std::move(*s_->value));
                    throw std::logic_error("coring: co_await std::move(f) on a future of a move-only type that other "
                                           "copies of the future share; only the last copy can take the value");
                }
            }
        }

    private:
        state* s_;
    };
    using awaitable = basic_awaitable<false>; ///< what `co_await f` on a named future uses

    /// Waits for the outcome and gives a const reference to the value, valid while this future lives (see the class
    /// comment). A cancellation point while it waits. Throws std::logic_error on a future with no state, or when it
    /// would wait on a thread without an event loop.
    awaitable operator co_await() const& {
        if (!s_) throw std::logic_error("coring: co_await on a future with no state");
        ++s_->refs;
        return awaitable(s_);
    }
    /// For a temporary future (`co_await p.get_future()`, `co_await std::move(f)`): the same wait, but gives the value
    /// itself, never a reference that would outlive the temporary. A copyable value is copied (moved when nothing else
    /// holds the state). A move-only value is moved out, which needs this to be the last future (else
    /// std::logic_error); the promise may still make futures, which then see the moved-from value. Leaves this
    /// future without a state.
    basic_awaitable<true> operator co_await() && {
        if (!s_) throw std::logic_error("coring: co_await on a future with no state");
        return basic_awaitable<true>(std::exchange(s_, nullptr));
    }

private:
    friend class promise<T>;

    explicit future(state* s) noexcept : s_(s) { ++s_->refs; }

    state* s_ = nullptr;
};

/// The producer's side of a future<T> (the part of asyncio.Future that calls set_result and set_exception): set it
/// once, with set_value() or set_exception(); every task awaiting one of its futures is then woken. Destroying a
/// promise that was never set makes its futures throw broken_promise, so a waiter never hangs on a producer that
/// went away. Movable, not copyable; one allocation, at construction. Same single-loop rule as future<T>.
template <class T>
class promise {
    using state = detail::future_state<T>;

public:
    /// A promise with a fresh state. Throws std::bad_alloc.
    promise() : s_(new state) {}
    /// Takes over `o`'s state; `o` is left moved-from (get_future() and the setters throw on it).
    promise(promise&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    /// Drops this promise's state as the destructor does (waiters of an unset one get broken_promise), then takes
    /// over `o`'s; `o` is left moved-from.
    promise& operator=(promise&& o) noexcept {
        if (this != &o) {
            abandon();
            s_ = std::exchange(o.s_, nullptr);
        }
        return *this;
    }
    promise(const promise&) = delete;
    promise& operator=(const promise&) = delete;
    /// Unset: its futures' waiters wake and throw broken_promise.
    ~promise() { abandon(); }

    /// A future of this promise's state; call it as often as needed (the futures are copies of one another). Throws
    /// std::logic_error on a moved-from promise.
    [[nodiscard]] future<T> get_future() const { return future<T>(checked()); }

    /// Sets the value and wakes every waiter (queued on the loop; they run after the caller suspends). Throws
    /// std::logic_error when the promise is already set (or moved from), and what constructing the value throws (the
    /// promise then stays unset).
    template <class... A>
        requires(!std::is_void_v<T> && std::is_constructible_v<T, A...>)
    void set_value(A&&... args) {
        state* s = checked_unset();
        s->value.emplace(std::forward<A>(args)...);
        s->finish(state::status::value);
    }
    /// future<void>'s set_value().
    void set_value() requires std::is_void_v<T> {
        state* s = checked_unset();
        s->value.emplace();
        s->finish(state::status::value);
    }
    /// Sets the exception awaiting the future rethrows, and wakes every waiter. Throws std::logic_error when already
    /// set, or when `e` is null.
    void set_exception(std::exception_ptr e) {
        if (!e) throw std::logic_error("coring: promise::set_exception with a null exception_ptr");
        state* s = checked_unset();
        s->error = std::move(e);
        s->finish(state::status::error);
    }
    /// Whether set_value() or set_exception() has been called. False on a moved-from promise.
    [[nodiscard]] bool is_set() const noexcept { return s_ && s_->st != state::status::pending; }

private:
    state* checked() const {
        if (!s_) throw std::logic_error("coring: use of a moved-from promise");
        return s_;
    }
    state* checked_unset() const {
        state* s = checked();
        if (s->st != state::status::pending) throw std::logic_error("coring: promise already set");
        if (s->foreign_thread())
            detail::throw_sharing_violation("promise set on a thread that is not its waiters' event loop (from "
                                            "another thread, use the loop's call_soon_threadsafe)");
        return s;
    }
    void abandon() noexcept {
        if (!s_) return;
        if (s_->st == state::status::pending) {
            // Checked always, not only with CORING_CHECKS: the alternative is a crash on a null or foreign loop.
            if (s_->foreign_thread())
                detail::sharing_violation("a promise with waiting tasks was destroyed unset on a thread that is not "
                                          "their event loop (hand it back with call_soon_threadsafe)");
            s_->finish(state::status::broken);
        }
        s_->promise_alive = false;
        std::exchange(s_, nullptr)->release();
    }

    state* s_;
};

} // namespace coring
