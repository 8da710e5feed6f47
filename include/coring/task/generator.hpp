#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/task/task.hpp>

#include <concepts>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

template <class T>
class generator;

namespace detail {

template <class T>
class generator_promise final : public promise_base {
public:
    generator<T> get_return_object() noexcept;

    /// co_yield: keeps the value and hands control back to the task waiting in next().
    template <class U = T>
        requires std::constructible_from<T, U&&>
    auto yield_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value_.emplace(std::forward<U>(v));
        struct to_consumer {
            promise_base& p;
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept {
                return transfer(std::exchange(p.continuation_, {}));
            }
            void await_resume() const noexcept {}
        };
        return to_consumer{*this};
    }
    void return_void() noexcept {}

    std::optional<T> value_; // the value co_yield gave, until next() takes it
    bool running_ = false;   // a next() is under way
};

} // namespace detail

/// An async generator (Python's `async def` with `yield`): a coroutine that co_yields values and co_awaits between
/// them; the consumer pulls one value at a time with `co_await g.next()`, which gives std::optional<T> (empty once the
/// generator has returned).
///
/// ```
/// coring::generator<std::string> lines(coring::tcp_stream& s) {
///     for (;;) {
///         std::string line = co_await s.read_until('\n');
///         if (line.empty()) co_return;
///         co_yield line;
///     }
/// }
/// auto g = lines(s);
/// for (;;) {
///     std::optional<std::string> line = co_await g.next(); // not in the loop's condition (GCC 12, Clang 14)
///     if (!line) break;
/// }
/// ```
///
/// Lazy: the body first runs in the first next(), and runs only inside next() calls, in the consumer's task: a
/// cancellation of the consumer reaches whatever the generator awaits, and the exception (cancelled_error included)
/// comes out of next(), after which the generator is finished. An exception the body throws comes out of next() the
/// same way. Destroying a generator that has not finished (the consumer stopped early) destroys its frame at the
/// co_yield where it waits, running its destructors (RAII cleanup; a cleanup that must co_await is not possible).
///
/// Move-only; one next() at a time; used on the consumer's loop thread. Coroutine parameters should be taken by
/// value, as for task<T>: a generator outlives the call that created it.
template <class T>
class [[nodiscard]] generator {
    static_assert(std::is_object_v<T> && !std::is_const_v<T>,
                  "coring::generator<T>: T must be a non-const object type");

public:
    using promise_type = detail::generator_promise<T>; ///< makes a function returning generator<T> a coroutine
    using value_type = T;                              ///< the type of the values the generator yields

    /// An empty generator; next() throws std::logic_error.
    generator() noexcept = default;
    /// Takes over `o`'s frame; `o` is left empty.
    generator(generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    /// Destroys this generator's frame (as the destructor does), then takes over `o`'s; `o` is left empty.
    generator& operator=(generator&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    generator(const generator&) = delete;
    generator& operator=(const generator&) = delete;
    /// Destroys the frame, at its co_yield or before it ever ran (see the class comment).
    ~generator() { reset(); }

    /// Whether the generator has returned (or thrown): next() gives no more values.
    [[nodiscard]] bool done() const noexcept { return !h_ || h_.promise().has(detail::promise_base::finished); }

    /// The awaitable of next().
    class [[nodiscard]] next_awaitable {
    public:
        /// A next() on the generator frame `h`, which the generator keeps owning; next() is the usual way to get one.
        explicit next_awaitable(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

        bool await_ready() const {
            if (!h_) throw std::logic_error("coring: generator::next on an empty generator");
            if (h_.promise().running_) throw std::logic_error("coring: generator::next while another next() runs");
            return h_.promise().has(detail::promise_base::finished);
        }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> consumer) noexcept {
            auto& p = h_.promise();
            p.running_ = true;
            p.mark_started();
            p.continuation_ = consumer;
            p.ctx_ = detail::context_of(consumer); // the body's waits are the consumer's: its cancellation reaches them
            return detail::transfer(h_);
        }
        /// The value the generator yielded, or std::nullopt once it has returned. Rethrows what the body threw (once;
        /// the generator is then finished).
        std::optional<T> await_resume() {
            auto& p = h_.promise();
            p.running_ = false;
            if (p.exception_) std::rethrow_exception(std::exchange(p.exception_, nullptr));
            if (!p.value_) return std::nullopt;
            std::optional<T> out(std::move(p.value_));
            p.value_.reset();
            return out;
        }

    private:
        std::coroutine_handle<promise_type> h_;
    };

    /// Runs the generator to its next co_yield (or its end) and gives the value, or std::nullopt once it has
    /// returned; rethrows its exception. A cancellation point wherever the generator waits. Throws std::logic_error
    /// on an empty generator or while another next() of the same generator runs.
    [[nodiscard]] next_awaitable next() noexcept { return next_awaitable(h_); }

    /// Calls `fn(value)` for every value until the generator ends (the range-for of C++ without `for co_await`);
    /// `fn` may return an awaitable (a task), which is awaited before the next value is pulled.
    template <class F>
    task<> for_each(F fn) {
        for (;;) {
            std::optional<T> v = co_await next();
            if (!v) co_return;
            using R = std::invoke_result_t<F&, T&&>;
            if constexpr (std::is_void_v<R>) {
                std::invoke(fn, std::move(*v));
            } else {
                static_assert(detail::awaitable<R>, "coring::generator::for_each: fn returns neither void nor an "
                                                    "awaitable");
                co_await std::invoke(fn, std::move(*v));
            }
        }
    }

private:
    friend promise_type;
    explicit generator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    void reset() noexcept {
        if (h_) h_.destroy();
        h_ = {};
    }

    std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
generator<T> generator_promise<T>::get_return_object() noexcept {
    return generator<T>(std::coroutine_handle<generator_promise>::from_promise(*this));
}
} // namespace detail

} // namespace coring
