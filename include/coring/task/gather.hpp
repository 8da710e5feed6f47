#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
#include <coring/detail/children.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/task/task.hpp>

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace coring {

namespace detail {

template <class T>
using gather_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
gather_value_t<T> take_gathered(task<T>& t) {
    if constexpr (std::is_void_v<T>) {
        t.handle().promise().take();
        return {};
    } else {
        return t.handle().promise().take();
    }
}

template <class T>
void check_unstarted(const task<T>& t) {
    if (!t.valid()) throw std::logic_error("coring: gather of an empty task");
    if (t.handle().promise().has(promise_base::started))
        throw std::logic_error("coring: gather of a task that has already started");
}

} // namespace detail

/// The awaitable of gather(a, b, ...): every child runs concurrently in its own cancellation context.
template <class... Ts>
class [[nodiscard]] gather_awaitable {
public:
    /// Takes the tasks, which start only when this is awaited (what gather() does). Throws std::logic_error for an
    /// empty task or one that has already started.
    explicit gather_awaitable(task<Ts>... tasks) : tasks_(std::move(tasks)...) {
        std::apply([](auto&... t) { (detail::check_unstarted(t), ...); }, tasks_);
        state_.slots = slots_.data();
        state_.count = sizeof...(Ts);
    }
    /// Movable until it is awaited (takes over `o`'s tasks).
    gather_awaitable(gather_awaitable&& o) noexcept : gather_awaitable(std::move(o.tasks_), 0) {}
    gather_awaitable& operator=(gather_awaitable&&) = delete;

    bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!state_.begin(h, detail::context_of(h))) return false;
        start(std::index_sequence_for<Ts...>{});
        state_.registered();
        return true;
    }

    /// The results in argument order (void becomes std::monostate), or the first exception once all have finished.
    std::tuple<detail::gather_value_t<Ts>...> await_resume() {
        state_.rethrow_if_failed();
        return std::apply(
            [](auto&... t) { return std::tuple<detail::gather_value_t<Ts>...>(detail::take_gathered(t)...); }, tasks_);
    }

private:
    gather_awaitable(std::tuple<task<Ts>...>&& tasks, int) noexcept : tasks_(std::move(tasks)) {
        state_.slots = slots_.data();
        state_.count = sizeof...(Ts);
    }

    template <std::size_t... I>
    void start(std::index_sequence<I...>) {
        (state_.start(I, std::get<I>(tasks_).handle().promise(), std::get<I>(tasks_).handle()), ...);
    }

    std::tuple<task<Ts>...> tasks_;
    std::array<detail::child_slot, sizeof...(Ts)> slots_{};
    detail::children_state state_;
};

/// The awaitable of gather(std::vector<A>).
template <class T>
class [[nodiscard]] gather_vector_awaitable {
public:
    /// Takes the tasks, which start only when this is awaited (what gather() does). Throws std::logic_error for an
    /// empty task or one that has already started; std::bad_alloc.
    explicit gather_vector_awaitable(std::vector<task<T>> tasks)
        : tasks_(std::move(tasks)), slots_(std::make_unique<detail::child_slot[]>(tasks_.size())) {
        for (const auto& t : tasks_) detail::check_unstarted(t);
        state_.slots = slots_.get();
        state_.count = tasks_.size();
    }
    /// Movable until it is awaited (takes over `o`'s tasks).
    gather_vector_awaitable(gather_vector_awaitable&& o) noexcept
        : tasks_(std::move(o.tasks_)), slots_(std::move(o.slots_)) {
        state_.slots = slots_.get();
        state_.count = tasks_.size();
    }
    gather_vector_awaitable& operator=(gather_vector_awaitable&&) = delete;

    bool await_ready() const noexcept { return tasks_.empty(); }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!state_.begin(h, detail::context_of(h))) return false;
        for (std::size_t i = 0; i < tasks_.size(); ++i)
            state_.start(i, tasks_[i].handle().promise(), tasks_[i].handle());
        state_.registered();
        return true;
    }

    /// The results in order (nothing for void), or the first exception once all have finished.
    auto await_resume() {
        state_.rethrow_if_failed();
        if constexpr (std::is_void_v<T>) {
            return;
        } else {
            std::vector<T> out;
            out.reserve(tasks_.size());
            for (auto& t : tasks_) out.push_back(t.handle().promise().take());
            return out;
        }
    }

private:
    std::vector<task<T>> tasks_;
    std::unique_ptr<detail::child_slot[]> slots_;
    detail::children_state state_;
};

/// Runs every awaitable concurrently and yields a std::tuple of their results in argument order (asyncio.gather);
/// `void` results become std::monostate. The first exception cancels the others; gather waits until all have
/// finished, then rethrows it. Cancelling the caller cancels every child. Lvalue awaitables are awaited by reference.
template <detail::awaitable... As>
[[nodiscard]] auto gather(As&&... as) {
    return gather_awaitable<typename detail::as_task_t<As>::value_type...>(detail::as_task(std::forward<As>(as))...);
}

/// Runs every awaitable of the vector concurrently and yields a std::vector of their results in order, or nothing
/// when they yield void (asyncio.gather(*aws)). Same failure and cancellation rules as the variadic form.
template <class A>
    requires detail::awaitable<A>
[[nodiscard]] auto gather(std::vector<A> as) {
    using T = typename detail::as_task_t<A>::value_type;
    if constexpr (detail::is_task_v<A>) {
        return gather_vector_awaitable<T>(std::move(as));
    } else {
        std::vector<task<T>> tasks;
        tasks.reserve(as.size());
        for (auto& a : as) tasks.push_back(detail::await_owned<A>(std::move(a)));
        return gather_vector_awaitable<T>(std::move(tasks));
    }
}

} // namespace coring
