#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/children.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/task/gather.hpp>
#include <coring/task/task.hpp>

#include <array>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace coring {

namespace detail {

/// How a result travels in when_any's variant: void becomes std::monostate, a reference a std::reference_wrapper.
template <class T>
using any_value_t = std::conditional_t<
    std::is_void_v<T>, std::monostate,
    std::conditional_t<std::is_reference_v<T>, std::reference_wrapper<std::remove_reference_t<T>>, T>>;

template <class T>
any_value_t<T> take_any(task<T>& t) {
    if constexpr (std::is_void_v<T>) {
        t.handle().promise().take();
        return {};
    } else if constexpr (std::is_reference_v<T>) {
        return std::ref(t.handle().promise().take());
    } else {
        return t.handle().promise().take();
    }
}

} // namespace detail

/// The awaitable of when_any(a, b, ...).
template <class... Ts>
class [[nodiscard]] when_any_awaitable {
    static_assert(sizeof...(Ts) > 0, "coring::when_any needs at least one awaitable");

public:
    /// What `co_await` yields: the winner's result at its argument's index (void as std::monostate, a reference as
    /// a std::reference_wrapper).
    using result_type = std::variant<detail::any_value_t<Ts>...>;

    /// Takes the tasks, which start only when this is awaited (what when_any() does). Throws std::logic_error for an
    /// empty task or one that has already started.
    explicit when_any_awaitable(task<Ts>... tasks) : tasks_(std::move(tasks)...) {
        std::apply([](auto&... t) { (detail::check_unstarted(t), ...); }, tasks_);
        state_.slots = slots_.data();
        state_.count = sizeof...(Ts);
    }
    /// Movable until it is awaited (takes over `o`'s tasks).
    when_any_awaitable(when_any_awaitable&& o) noexcept : tasks_(std::move(o.tasks_)) {
        state_.slots = slots_.data();
        state_.count = sizeof...(Ts);
    }
    when_any_awaitable& operator=(when_any_awaitable&&) = delete;

    bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!state_.begin(h, detail::context_of(h))) return false;
        start(std::index_sequence_for<Ts...>{});
        state_.registered();
        return true;
    }

    /// The winner's result, at the variant index of its argument; or the winner's exception. Every loser has been
    /// cancelled and has finished by then; their results are discarded.
    result_type await_resume() {
        state_.rethrow_if_failed();
        return take_winner(std::index_sequence_for<Ts...>{});
    }

private:
    template <std::size_t... I>
    void start(std::index_sequence<I...>) {
        (state_.start(I, std::get<I>(tasks_).handle().promise(), std::get<I>(tasks_).handle()), ...);
    }
    template <std::size_t... I>
    result_type take_winner(std::index_sequence<I...>) {
        std::optional<result_type> out;
        ((state_.winner == I ? (void)out.emplace(std::in_place_index<I>, detail::take_any(std::get<I>(tasks_)))
                             : (void)0),
         ...);
        return std::move(*out);
    }

    std::tuple<task<Ts>...> tasks_;
    std::array<detail::child_slot, sizeof...(Ts)> slots_{};
    detail::children_state state_{detail::children_state::until::first};
};

/// The awaitable of when_any(std::vector<A>).
template <class T>
class [[nodiscard]] when_any_vector_awaitable {
public:
    /// Takes the tasks, which start only when this is awaited (what when_any() does). Throws std::invalid_argument
    /// for an empty vector, std::logic_error for an empty task or one that has already started; std::bad_alloc.
    explicit when_any_vector_awaitable(std::vector<task<T>> tasks)
        : tasks_(std::move(tasks)), slots_(std::make_unique<detail::child_slot[]>(tasks_.size())) {
        if (tasks_.empty()) throw std::invalid_argument("coring: when_any of an empty vector");
        for (const auto& t : tasks_) detail::check_unstarted(t);
        state_.slots = slots_.get();
        state_.count = tasks_.size();
    }
    /// Movable until it is awaited (takes over `o`'s tasks).
    when_any_vector_awaitable(when_any_vector_awaitable&& o) noexcept
        : tasks_(std::move(o.tasks_)), slots_(std::move(o.slots_)) {
        state_.slots = slots_.get();
        state_.count = tasks_.size();
    }
    when_any_vector_awaitable& operator=(when_any_vector_awaitable&&) = delete;

    bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!state_.begin(h, detail::context_of(h))) return false;
        for (std::size_t i = 0; i < tasks_.size(); ++i)
            state_.start(i, tasks_[i].handle().promise(), tasks_[i].handle());
        state_.registered();
        return true;
    }

    /// {index of the winner, its result}, or only the index when the awaitables yield void.
    auto await_resume() {
        state_.rethrow_if_failed();
        task<T>& w = tasks_[state_.winner];
        if constexpr (std::is_void_v<T>) {
            w.handle().promise().take();
            return state_.winner;
        } else {
            return std::pair<std::size_t, detail::any_value_t<T>>(state_.winner, detail::take_any(w));
        }
    }

private:
    std::vector<task<T>> tasks_;
    std::unique_ptr<detail::child_slot[]> slots_;
    detail::children_state state_{detail::children_state::until::first};
};

/// Runs every awaitable concurrently and yields the first to finish (asyncio.wait(FIRST_COMPLETED)): a std::variant
/// whose index() names the winner and holds its result (void becomes std::monostate, a reference a
/// std::reference_wrapper). The others are cancelled and awaited until they finished before when_any returns; their
/// results are discarded (a loser that completed anyway is still a loser). If the winner threw, that is rethrown.
/// Cancelling the caller cancels every child. Lvalue awaitables are awaited by reference.
template <detail::awaitable... As>
[[nodiscard]] auto when_any(As&&... as) {
    return when_any_awaitable<typename detail::as_task_t<As>::value_type...>(detail::as_task(std::forward<As>(as))...);
}

/// The vector form: yields {index, result} of the first awaitable to finish (just the index for void results).
/// Throws std::invalid_argument for an empty vector.
template <detail::awaitable A>
[[nodiscard]] auto when_any(std::vector<A> as) {
    using T = typename detail::as_task_t<A>::value_type;
    if constexpr (detail::is_task_v<A>) {
        return when_any_vector_awaitable<T>(std::move(as));
    } else {
        std::vector<task<T>> tasks;
        tasks.reserve(as.size());
        for (auto& a : as) tasks.push_back(detail::await_owned<A>(std::move(a)));
        return when_any_vector_awaitable<T>(std::move(tasks));
    }
}

} // namespace coring
