#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
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

struct gather_state;

/// The cancellation context of one gathered child, which also leads back to the gather.
struct gather_slot : cancel_context {
    gather_state* state = nullptr;
};

/// What every gather shares: the waiting parent, the count of running children, the first failure.
/// It is the parent's cancel point, so cancelling the parent cancels every child.
struct gather_state : cancel_point {
    gather_state() noexcept : cancel_point{&on_cancel} {}

    std::coroutine_handle<> parent{};
    cancel_context* parent_ctx = nullptr;
    gather_slot* slots = nullptr;
    std::size_t count = 0;
    std::size_t remaining = 0;
    std::exception_ptr error;     // the first exception a child ended with
    bool cancelled_early = false; // the parent was already cancelled: no child was started

    void cancel_children() noexcept {
        for (std::size_t i = 0; i < count; ++i) slots[i].request();
    }

    /// Starts child `i`: it runs in its own cancellation context and reports here when done.
    void start(std::size_t i, promise_base& p, std::coroutine_handle<> h) {
        slots[i].state = this;
        p.set(promise_base::started);
        p.ctx_ = &slots[i];
        p.on_done_ = &child_done;
        current_core->ready.push(h); // cannot fail: begin() made room
    }

    /// Suspends the parent until every child is done; false when the parent was already cancelled.
    bool begin(std::coroutine_handle<> h, cancel_context* ctx) {
        // Room for every child first: a child queued and then abandoned because a later push failed would be
        // resumed after its frame was freed.
        require_core("gather").ready.reserve(count);
        parent = h;
        parent_ctx = ctx;
        if (ctx && ctx->requested) {
            cancelled_early = true;
            return false;
        }
        remaining = count;
        return true;
    }
    void registered() noexcept {
        if (parent_ctx) parent_ctx->point = this;
    }

    void rethrow_if_failed() const {
        if (cancelled_early) throw cancelled_error();
        if (error) std::rethrow_exception(error);
    }

    static void on_cancel(cancel_point* c) noexcept { static_cast<gather_state*>(c)->cancel_children(); }

    static std::coroutine_handle<> child_done(promise_base& p) noexcept {
        gather_state* st = static_cast<gather_slot*>(p.ctx_)->state;
        if (p.exception_ && !st->error) {
            // The first failure cancels the siblings; gather still waits for all of them (no orphans).
            st->error = p.exception_;
            st->cancel_children();
        }
        if (--st->remaining != 0) return std::noop_coroutine();
        if (st->parent_ctx && st->parent_ctx->point == st) st->parent_ctx->point = nullptr;
        return st->parent;
    }
};

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
    explicit gather_awaitable(task<Ts>... tasks) : tasks_(std::move(tasks)...) {
        std::apply([](auto&... t) { (detail::check_unstarted(t), ...); }, tasks_);
        state_.slots = slots_.data();
        state_.count = sizeof...(Ts);
    }
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
    std::array<detail::gather_slot, sizeof...(Ts)> slots_{};
    detail::gather_state state_;
};

/// The awaitable of gather(std::vector<A>).
template <class T>
class [[nodiscard]] gather_vector_awaitable {
public:
    explicit gather_vector_awaitable(std::vector<task<T>> tasks)
        : tasks_(std::move(tasks)), slots_(std::make_unique<detail::gather_slot[]>(tasks_.size())) {
        for (const auto& t : tasks_) detail::check_unstarted(t);
        state_.slots = slots_.get();
        state_.count = tasks_.size();
    }
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
    std::unique_ptr<detail::gather_slot[]> slots_;
    detail::gather_state state_;
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
