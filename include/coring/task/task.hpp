#pragma once

#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/runtime/debug_mode.hpp>

#include <concepts>
#include <coroutine>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace coring {

template <class T = void>
class task;

namespace detail {

/// A task destroyed before anything started it (debug mode): says so, with where its coroutine is defined.
[[gnu::cold]] inline void report_never_awaited(const promise_base& p) noexcept {
    if (!debug_enabled()) return;
    try {
        const std::string where = p.await_site_.known()
                                      ? short_function_name(p.await_site_.function()) + ", defined at " +
                                            p.await_site_.file() + ":" + std::to_string(p.await_site_.line())
                                      : std::string("(where it is defined is unknown: build with CORING_TASK_TRACE=1)");
        std::fprintf(stderr, "coring: a task was destroyed without ever being awaited: %s\n", where.c_str());
    } catch (...) {
        std::fputs("coring: a task was destroyed without ever being awaited\n", stderr);
    }
}

template <class T>
class task_promise final : public promise_base {
public:
    task<T> get_return_object() noexcept;

    // U defaults to T so that `co_return {a, b};` constructs a T.
    template <class U = T>
        requires std::convertible_to<U&&, T>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) { value_.emplace(std::forward<U>(v)); }

    /// The result, moved out; rethrows what the body threw.
    T take() {
        if (exception_) std::rethrow_exception(exception_);
        return std::move(*value_);
    }
    /// A copy of the result, leaving it in place.
    T copy() const requires std::copy_constructible<T> {
        if (exception_) std::rethrow_exception(exception_);
        return *value_;
    }

private:
    std::optional<T> value_;
};

template <class T>
class task_promise<T&> final : public promise_base {
public:
    task<T&> get_return_object() noexcept;
    void return_value(T& v) noexcept { value_ = std::addressof(v); }
    T& take() {
        if (exception_) std::rethrow_exception(exception_);
        return *value_;
    }
    T& copy() const { return const_cast<task_promise*>(this)->take(); }

private:
    T* value_ = nullptr;
};

template <>
class task_promise<void> final : public promise_base {
public:
    task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take() const {
        if (exception_) std::rethrow_exception(exception_);
    }
    void copy() const { take(); }
};

} // namespace detail

/// A lazy coroutine (asyncio's coroutine object): it runs only when awaited, spawned or handed to a combinator.
///
/// `co_await t` runs the task to completion and yields its `T` or rethrows its exception; the awaiting coroutine is
/// resumed by symmetric transfer. A task is move-only and single-use; destroying a task that never ran frees it
/// (debug mode reports it as never awaited, unless it was handed to spawn or a combinator).
/// Coroutine parameters should be taken by value: a lazy task outlives the full expression that created it.
template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::task_promise<T>; ///< makes a function returning task<T> a coroutine
    using value_type = T;                         ///< what `co_await` on the task yields

    /// An empty task; awaiting it throws std::logic_error.
    task() noexcept = default;
    /// Takes over `o`'s coroutine; `o` is left empty.
    task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    /// Destroys the coroutine this task held, then takes over `o`'s; `o` is left empty.
    task& operator=(task&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { reset(); }

    /// True when the task holds a coroutine.
    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(h_); }
    /// True when the coroutine has run to its end.
    [[nodiscard]] bool done() const noexcept { return h_ && h_.promise().has(detail::promise_base::finished); }

    /// The awaiter that starts the task and returns its result.
    class [[nodiscard]] awaiter {
    public:
        /// Awaits the coroutine `h`, which the task keeps owning.
        explicit awaiter(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
        bool await_ready() const {
            if (!h_) throw std::logic_error("coring: awaiting an empty task");
            if (h_.promise().has(detail::promise_base::started))
                throw std::logic_error("coring: a task can be awaited only once");
            return false;
        }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
            auto& p = h_.promise();
            p.mark_started();
            p.continuation_ = parent;
            p.ctx_ = detail::context_of(parent);
            // In every build: task dumps and the stall detector follow the chain through it.
            if constexpr (std::is_base_of_v<detail::promise_base, P>) {
                parent_ = &parent.promise();
                parent_->awaiting_ = &p;
            }
            return detail::transfer(h_);
        }
        T await_resume() {
            // Unconditionally: a suspend compiled with tracing may meet a resume compiled without (mixed builds).
            if (parent_) parent_->awaiting_ = nullptr;
            return h_.promise().take();
        }

    private:
        std::coroutine_handle<promise_type> h_;
        detail::promise_base* parent_ = nullptr; // a task awaiting this one, linked to it for task dumps
    };

    /// Starts the task and waits for it to finish: yields its result or rethrows its exception. Throws
    /// std::logic_error on an empty task, or one that was already awaited.
    awaiter operator co_await() & noexcept { return awaiter(h_); }
    /// The same, for an rvalue task (`co_await f()`).
    awaiter operator co_await() && noexcept { return awaiter(h_); }

    /// The coroutine, still owned by the task (used by spawn and the combinators). Marks the task as handed over:
    /// if it is then destroyed without having run, debug mode does not report it as never awaited.
    [[nodiscard]] std::coroutine_handle<promise_type> handle() const noexcept {
        if (h_) h_.promise().set(detail::promise_base::handed);
        return h_;
    }
    /// Gives up ownership of the coroutine (used by spawn and the combinators).
    [[nodiscard]] std::coroutine_handle<promise_type> release() noexcept {
        (void)handle();
        return std::exchange(h_, {});
    }

private:
    friend promise_type;
    explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    void reset() noexcept {
        if (h_) {
            if (!h_.promise().has(detail::promise_base::started | detail::promise_base::handed)) [[unlikely]]
                detail::report_never_awaited(h_.promise());
            h_.destroy();
        }
        h_ = {};
    }

    std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
    return task<T>(std::coroutine_handle<task_promise>::from_promise(*this));
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
    return task<T&>(std::coroutine_handle<task_promise>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
    return task<void>(std::coroutine_handle<task_promise>::from_promise(*this));
}
} // namespace detail

} // namespace coring
