#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/completion_watch.hpp>
#include <coring/error.hpp>
#include <coring/task/gather.hpp> // detail::check_unstarted
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>
#include <coring/time/timeout.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

namespace coring {

/// When wait() returns (asyncio's FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class return_when {
    first_completed, ///< as soon as any task finishes
    first_exception, ///< as soon as a task ends with an exception (not a cancellation), else when all have finished
    all_completed    ///< when every task has finished
};

/// What wait() gives: every task's handle, in the order given, and which have finished.
template <class T>
struct wait_result {
    wait_result() = default;
    /// Takes over the other result's handles and indices.
    wait_result(wait_result&&) noexcept = default;
    /// Takes over the other result's handles and indices; the handles this one held are dropped (their tasks run on,
    /// detached).
    wait_result& operator=(wait_result&&) noexcept = default;
    // Said explicitly: std::vector of a move-only type still claims to be copyable, which would send an awaited
    // join_handle<wait_result> down the copying path.
    wait_result(const wait_result&) = delete;
    wait_result& operator=(const wait_result&) = delete;

    std::vector<join_handle<T>> tasks; ///< one per task given, in that order; await or cancel them as usual
    std::vector<std::size_t> done;     ///< indices into `tasks` of those that finished, in the order they finished
    std::vector<std::size_t> pending;  ///< indices of those still running, in the order given
};

namespace detail {

template <class T>
bool ended_with_exception(const join_handle<T>& h) {
    const std::exception_ptr e = h.exception();
    return e && !is_cancellation(e);
}

template <class T>
bool wait_satisfied(return_when when, completion_watch& w, std::vector<join_handle<T>>& hs, std::size_t& checked) {
    if (w.running() == 0) return true;
    switch (when) {
    case return_when::first_completed:
        return !w.finished().empty();
    case return_when::first_exception:
        for (; checked < w.finished().size(); ++checked)
            if (ended_with_exception(hs[w.finished()[checked]])) return true;
        return false;
    case return_when::all_completed:
        break;
    }
    return false;
}

template <class T>
task<wait_result<T>> wait_tasks(std::vector<task<T>> tasks, return_when when, std::optional<clock::duration> timeout) {
    // From the await, as coring::timeout measures, not from the call that made the awaitable.
    std::optional<clock::time_point> deadline;
    if (timeout) deadline = deadline_after(*timeout);
    for (const auto& t : tasks) check_unstarted(t); // all or nothing, as gather
    completion_watch w;
    wait_result<T> r;
    // The caller's cancellation (or a failure to start them all) cancels the tasks: their handles, in `r`, would
    // otherwise be lost with it.
    struct cancel_unless_returned {
        completion_watch& w;
        bool returned = false;
        ~cancel_unless_returned() { w.detach(!returned); }
    } guard{w};
    r.tasks.reserve(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) r.tasks.push_back(w.spawn(std::move(tasks[i]), i));
    std::size_t checked = 0;
    while (!wait_satisfied(when, w, r.tasks, checked)) {
        w.changed().clear();
        if (!deadline) {
            co_await w.changed().wait();
            continue;
        }
        bool timed_out = false;
        try {
            co_await timeout_at(*deadline, w.changed().wait());
        } catch (const timeout_error&) {
            timed_out = true;
        }
        if (timed_out) break;
    }
    r.done = w.finished();
    std::vector<bool> finished(r.tasks.size(), false);
    for (std::size_t i : r.done) finished[i] = true;
    for (std::size_t i = 0; i < r.tasks.size(); ++i)
        if (!finished[i]) r.pending.push_back(i);
    guard.returned = true;
    co_return r;
}

template <class A>
auto wait_owned_tasks(std::vector<A>& as) {
    using T = typename as_task_t<A>::value_type;
    if constexpr (is_task_v<A>) {
        return std::move(as);
    } else {
        std::vector<task<T>> tasks;
        tasks.reserve(as.size());
        for (auto& a : as) tasks.push_back(await_owned<A>(std::move(a)));
        return tasks;
    }
}

} // namespace detail

/// Starts every awaitable of the vector concurrently and returns when `when` says (asyncio.wait): the handles of all
/// of them, and which are done and which still pending. Pending tasks keep running: await them, cancel them, or drop
/// their handles to let them run on. A task's exception is not thrown here: it is in its handle. An empty vector
/// returns at once. A cancellation point; cancelling the caller cancels the tasks (their handles would be lost).
template <class A>
    requires detail::awaitable<A>
[[nodiscard]] auto wait(std::vector<A> as, return_when when = return_when::all_completed) {
    return detail::wait_tasks(detail::wait_owned_tasks(as), when, std::nullopt);
}

/// wait() for at most `timeout` (from when it is awaited): returns then with whatever is done (the rest pending, still
/// running; unlike coring::timeout, nothing is cancelled and no timeout_error is thrown).
template <class A, class Rep, class Period>
    requires detail::awaitable<A>
[[nodiscard]] auto wait(std::vector<A> as, return_when when, std::chrono::duration<Rep, Period> timeout) {
    return detail::wait_tasks(detail::wait_owned_tasks(as), when, detail::to_clock_duration(timeout));
}

} // namespace coring
