#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/task/gather.hpp>
#include <coring/task/task.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

/// Options of gather(tasks, options).
struct gather_options {
    /// At most this many of the tasks run at once; 0 means no bound (all at once, as gather(tasks)).
    std::size_t limit = 0;
};
// Written as a braced argument inside co_await (`gather(tasks, {.limit = 16})`), which GCC 12 handles only for types
// without a destructor to run (PR 100611): keep it so.
static_assert(std::is_trivially_destructible_v<gather_options>);

namespace detail {

/// How map_bounded hands an item to fn: as an lvalue (a reference into the range, or a local copy of a prvalue).
template <class Range>
using map_item_t = std::remove_reference_t<std::ranges::range_reference_t<Range>>&;

/// What map_bounded's function gives for one item: the result type of the task (or awaitable) it returns.
template <class F, class Range>
using map_result_t = typename as_task_t<std::invoke_result_t<F&, map_item_t<Range>>>::value_type;

/// What the workers of one map_bounded share: the next item to take, and the results in item order.
template <class Range, class F>
struct map_state {
    using R = map_result_t<F, Range>;
    using slot = std::conditional_t<std::is_void_v<R>, char, std::optional<R>>;

    std::ranges::iterator_t<Range> next;
    std::ranges::sentinel_t<Range> end;
    std::size_t index = 0;
    std::vector<slot> results;
    F* fn;
};

/// One of `limit` workers: takes the next item while there is one, awaits fn(item), stores the result in its slot.
/// The first failure ends gather(), which cancels the other workers; a worker checks for that before each item (its
/// last item may have finished in the same turn as the failure), so no further item starts.
template <class Range, class F>
task<> map_worker(map_state<Range, F>& s) {
    using R = typename map_state<Range, F>::R;
    for (;;) {
        co_await cancellation_check{};
        if (s.next == s.end) co_return;
        const std::size_t i = s.index++;
        decltype(auto) item = *s.next; // a reference into the range (a forward range: still valid after ++)
        ++s.next;
        if (s.results.size() <= i) s.results.resize(i + 1);
        auto t = as_task(std::invoke(*s.fn, item));
        if constexpr (std::is_void_v<R>) {
            co_await std::move(t);
        } else {
            // Not `s.results[i].emplace(co_await ...)`: that evaluates s.results[i] before suspending (Clang does), and
            // another worker's resize() may reallocate s.results meanwhile (ranges without size()).
            R r = co_await std::move(t);
            s.results[i].emplace(std::move(r));
        }
    }
}

template <class Range, class F>
auto map_bounded_impl(Range items, std::size_t limit, F fn)
    -> task<std::conditional_t<std::is_void_v<map_result_t<F, Range>>, void, std::vector<map_result_t<F, Range>>>> {
    using R = map_result_t<F, Range>;
    map_state<Range, F> s{std::ranges::begin(items), std::ranges::end(items), 0, {}, &fn};
    std::size_t workers = limit;
    if constexpr (std::ranges::sized_range<Range>) {
        const auto n = static_cast<std::size_t>(std::ranges::size(items));
        s.results.reserve(n);
        workers = std::min(workers, n);
    }
    std::vector<task<>> ws;
    ws.reserve(workers);
    for (std::size_t w = 0; w < workers; ++w) ws.push_back(map_worker(s));
    co_await gather(std::move(ws));
    if constexpr (!std::is_void_v<R>) {
        std::vector<R> out;
        out.reserve(s.results.size());
        for (auto& r : s.results) out.push_back(std::move(*r));
        co_return out;
    }
}

} // namespace detail

/// Awaits `fn(item)` for every item of `items`, at most `limit` at a time, and gives the results in item order
/// (asyncio's semaphore idiom, or a worker pool): `co_await map_bounded(urls, 16, fetch)`. `fn` returns a task or
/// any awaitable; for void results map_bounded gives nothing. Items are taken in order, as workers free up, so at
/// most `limit` tasks exist at once however long the range. The first exception stops the rest (running ones are
/// cancelled, no new one starts) and is rethrown once they have stopped; cancelling the caller does the same.
/// `items` is kept (moved or copied) for the whole call and must be a forward range; `fn` is called with a reference
/// to each item in it. Throws std::invalid_argument when `limit` is 0.
template <std::ranges::forward_range Range, class F>
    requires std::invocable<F&, detail::map_item_t<Range>>
[[nodiscard]] auto map_bounded(Range items, std::size_t limit, F fn) {
    if (limit == 0) throw std::invalid_argument("coring: map_bounded with a limit of 0");
    return detail::map_bounded_impl(std::move(items), limit, std::move(fn));
}

namespace detail {
/// map_bounded's function for gather(tasks, options): awaits the task (or awaitable) itself.
struct take_awaitable {
    template <class A>
    auto operator()(A& a) const {
        return as_task(std::move(a));
    }
};
} // namespace detail

/// gather(tasks) with options (`co_await gather(std::move(tasks), {.limit = 16})`): at most `limit` of the tasks run
/// at once, started in order as others finish; results in order (nothing for void). The failure and cancellation
/// rules are gather's, and tasks not started yet when one fails never start.
template <class A>
    requires detail::awaitable<A>
[[nodiscard]] auto gather(std::vector<A> as, gather_options options) {
    using T = typename detail::as_task_t<A>::value_type;
    using out = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
    if (options.limit == 0) options.limit = std::max<std::size_t>(as.size(), 1);
    // Handed over, all of them: those a failure leaves unstarted are dropped here, not forgotten by the caller (no
    // never-awaited report in debug mode).
    for (A& a : as)
        if constexpr (requires { a.handle(); }) (void)a.handle();
    return task<out>(detail::map_bounded_impl(std::move(as), options.limit, detail::take_awaitable{}));
}

} // namespace coring
