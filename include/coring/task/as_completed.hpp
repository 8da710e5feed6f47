#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/completion_watch.hpp>
#include <coring/error.hpp>
#include <coring/task/gather.hpp> // detail::check_unstarted
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

namespace coring {

/// Tasks started together whose results are taken in the order they finish (asyncio.as_completed): made by
/// as_completed(tasks).
///
/// ```
/// auto results = coring::as_completed(std::move(fetches));
/// while (results.remaining() > 0) {
///     page p = co_await results.next();          // the next one to finish; rethrows its exception
///     std::size_t which = results.last_index(); // its position in `fetches`
/// }
/// ```
///
/// Every task starts at once, on the current loop, and runs concurrently. Abandoning the set (destroying it with
/// results not taken, or leaving the loop above by an exception) cancels the tasks still running; they finish in the
/// background, drained by the loop like any spawned task. An exception a task ended with that nobody took goes to the
/// loop's exception handler, as for a dropped join_handle. Loop thread only; neither copied nor moved.
template <class T>
class as_completed_set {
public:
    /// Starts every task. Throws std::logic_error without a loop on this thread or for an empty or started task.
    explicit as_completed_set(std::vector<task<T>> tasks) {
        for (const auto& t : tasks) detail::check_unstarted(t); // all or nothing, as gather
        handles_.reserve(tasks.size());
        try {
            for (std::size_t i = 0; i < tasks.size(); ++i) handles_.push_back(watch_.spawn(std::move(tasks[i]), i));
        } catch (...) {
            watch_.detach(true); // no destructor runs for a half-built set: cancel what did start (bad_alloc)
            throw;
        }
    }
    as_completed_set(const as_completed_set&) = delete;
    as_completed_set& operator=(const as_completed_set&) = delete;
    /// Cancels the tasks still running.
    ~as_completed_set() { watch_.detach(true); }

    /// Results not taken yet: next() may be awaited this many more times.
    [[nodiscard]] std::size_t remaining() const noexcept { return handles_.size() - taken_; }
    /// How many tasks the set started.
    [[nodiscard]] std::size_t size() const noexcept { return handles_.size(); }
    /// The position, among the tasks given, of the one whose result (or exception) next() gave last.
    [[nodiscard]] std::size_t last_index() const noexcept { return last_; }

    /// Waits for the next task to finish (or takes one that already has) and returns its result, or rethrows its
    /// exception (a task cancelled on its own gives cancelled_error). A cancellation point while it waits; the tasks
    /// are not cancelled by that, only by abandoning the set. Throws std::logic_error when no result remains.
    [[nodiscard]] task<T> next() {
        if (taken_ == handles_.size()) throw std::logic_error("coring: as_completed: every result was already taken");
        while (watch_.finished().size() == taken_) {
            watch_.changed().clear();
            co_await watch_.changed().wait();
            // Another next() may have taken the last result meanwhile.
            if (taken_ == handles_.size())
                throw std::logic_error("coring: as_completed: every result was already taken");
        }
        last_ = watch_.finished()[taken_++];
        co_return handles_[last_].result();
    }

private:
    detail::completion_watch watch_;
    std::vector<join_handle<T>> handles_; // in the order given
    std::size_t taken_ = 0;               // results next() gave
    std::size_t last_ = 0;
};

/// Starts every awaitable of the vector concurrently and gives their results in the order they finish
/// (asyncio.as_completed); see as_completed_set. Lvalue awaitables are awaited by reference.
template <class A>
    requires detail::awaitable<A>
[[nodiscard]] auto as_completed(std::vector<A> as) {
    using T = typename detail::as_task_t<A>::value_type;
    if constexpr (detail::is_task_v<A>) {
        return as_completed_set<T>(std::move(as));
    } else {
        std::vector<task<T>> tasks;
        tasks.reserve(as.size());
        for (auto& a : as) tasks.push_back(detail::await_owned<A>(std::move(a)));
        return as_completed_set<T>(std::move(tasks));
    }
}

} // namespace coring
