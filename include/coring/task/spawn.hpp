#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/error.hpp>
#include <coring/task/task.hpp>

#include <concepts>
#include <coroutine>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace coring {

template <class T>
class join_handle;

namespace detail {

inline bool is_cancellation(const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const cancelled_error&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// Reports the exception a finished task ended with, unless nobody could have missed it.
inline void report_unobserved(promise_base& p) noexcept {
    if (!p.exception_ || p.has(promise_base::observed) || is_cancellation(p.exception_)) return;
    std::string who;
    try {
        who = task_label(p.own_ctx_.id, p.spawn_site_);
    } catch (...) { // out of memory: the report goes out without the name
    }
    if (current_core) current_core->report(p.exception_, who);
    else default_exception_report(p.exception_, who);
}

/// on_done of a spawned task: leaves the loop's registry, then hands over to the joiner, to nobody (the frame waits
/// for its join_handle), or frees itself when the handle is gone.
inline std::coroutine_handle<> root_done(promise_base& p) noexcept {
    if (current_core) current_core->remove_root(p);
    if (p.continuation_) return p.continuation_;
    if (p.has(promise_base::detached)) {
        report_unobserved(p);
        return nullptr;
    }
    return std::noop_coroutine();
}

template <class T>
join_handle<T> spawn_root(loop_core& core, task<T> t, cancel_context* ctx = nullptr,
                          promise_base::done_fn on_done = nullptr, code_site site = {});

} // namespace detail

/// A spawned task (asyncio.Task): await it for its result, cancel() it, or drop it to let it run on detached.
///
/// Belongs to the thread of the loop that runs the task. Awaiting a handle as an lvalue yields a copy of the result
/// when T is copyable (it may be awaited again), else moves it out; awaiting an rvalue handle moves it out.
/// Awaiting a finished task never suspends and returns its result. If the awaiting task is cancelled while it waits,
/// the awaited task is cancelled too and still awaited until it has finished (asyncio's rule); a task that was already
/// cancelled gets cancelled_error at once and leaves the awaited task alone.
template <class T>
class join_handle {
public:
    using promise_type = detail::task_promise<T>; ///< the promise of the task's coroutine, as in task<T>

    join_handle() noexcept = default;
    /// Takes over `o`'s task; `o` is left empty.
    join_handle(join_handle&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    /// Detaches the task this handle referred to, then takes over `o`'s; `o` is left empty.
    join_handle& operator=(join_handle&& o) noexcept {
        if (this != &o) {
            detach();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    join_handle(const join_handle&) = delete;
    join_handle& operator=(const join_handle&) = delete;
    /// Detaches: the task runs on, and an exception it ends with goes to the loop's exception handler.
    ~join_handle() { detach(); }

    /// True when the handle refers to a task.
    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(h_); }
    /// True when the task has finished (returned, thrown or been cancelled).
    [[nodiscard]] bool done() const noexcept { return h_ && h_.promise().has(detail::promise_base::finished); }

    /// Requests cancellation: cancelled_error is thrown where the task waits (now, or at its next wait). Returns false
    /// when the task had already finished.
    bool cancel() noexcept {
        if (!h_ || done()) return false;
        h_.promise().ctx_->request();
        return true;
    }

    /// Lets the task run on without a handle (what dropping the handle does).
    void detach() noexcept {
        if (!h_) return;
        auto& p = h_.promise();
        if (p.has(detail::promise_base::finished) && !p.has(detail::promise_base::joined)) {
            if (!p.has(detail::promise_base::observed)) detail::report_unobserved(p);
            h_.destroy();
        } else {
            // Still running, or finished with its joiner queued to read the result: whoever comes last frees it.
            p.set(detail::promise_base::detached);
        }
        h_ = {};
    }

    /// The awaitable of `co_await` on a join_handle: yields the task's result once it has finished.
    class [[nodiscard]] awaiter : detail::cancel_point {
    public:
        /// Joins the task of `h`, which the handle keeps owning; `move` moves the result out rather than copying it.
        awaiter(std::coroutine_handle<promise_type> h, bool move) noexcept
            : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &describe>}, h_(h), move_(move) {}

        bool await_ready() const {
            if (!h_) throw std::logic_error("coring: awaiting an empty join_handle");
            // Another task's join is pending (waiting, or queued to read the result): only it may take the result.
            if (h_.promise().has(detail::promise_base::joined))
                throw std::logic_error("coring: a join_handle can be awaited by one task at a time");
            return h_.promise().has(detail::promise_base::finished);
        }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> waiting) {
            auto& p = h_.promise();
            if (p.has(detail::promise_base::joined))
                throw std::logic_error("coring: a join_handle can be awaited by one task at a time");
            ctx_ = detail::context_of(waiting);
            if (ctx_ && ctx_->requested) {
                // Already cancelled (level-triggered): do not wait, and leave the other task alone.
                cancelled_ = true;
                return false;
            }
            p.continuation_ = waiting;
            p.set(detail::promise_base::joined);
            if (ctx_) ctx_->point = this;
            return true;
        }
        T await_resume() {
            if (cancelled_) throw cancelled_error();
            if (ctx_ && ctx_->point == this) ctx_->point = nullptr;
            h_.promise().clear(detail::promise_base::joined);
            // The handle was dropped while this awaiter waited or was queued: the frame is ours to free once the
            // result is out.
            struct release_if_detached {
                std::coroutine_handle<promise_type> h;
                ~release_if_detached() {
                    if (h.promise().has(detail::promise_base::detached)) h.destroy();
                }
            } guard{h_};
            return take_result(h_, move_);
        }

    private:
        static void on_cancel(detail::cancel_point* cp) noexcept {
            static_cast<awaiter*>(cp)->h_.promise().ctx_->request();
        }
        static void describe(const detail::cancel_point* cp, detail::wait_note& n) {
            n.text = "join task #" + std::to_string(static_cast<const awaiter*>(cp)->h_.promise().own_ctx_.id);
        }

        std::coroutine_handle<promise_type> h_;
        detail::cancel_context* ctx_ = nullptr;
        bool move_;
        bool cancelled_ = false;
    };

    /// The result of a finished task (asyncio's Task.result()): moved out, or copied when T is copyable and `move`
    /// is false; rethrows the task's exception. Throws std::logic_error when the task has not finished.
    T result(bool move = true) {
        if (!done()) throw std::logic_error("coring: join_handle::result() on a task that has not finished");
        return take_result(h_, move);
    }

    /// The exception a finished task ended with (asyncio's Task.exception()), cancelled_error's for a cancelled task,
    /// null for a value; does not take the result, nor count as having seen the exception (dropping the handle still
    /// reports one nobody took). Throws std::logic_error when the task has not finished.
    [[nodiscard]] std::exception_ptr exception() const {
        if (!done()) throw std::logic_error("coring: join_handle::exception() on a task that has not finished");
        return h_.promise().exception_;
    }

    /// Waits for the task to finish (see the class comment for cancellation) and yields a copy of its result when T
    /// is copyable, else moves it out; rethrows the task's exception. Throws std::logic_error on an empty handle,
    /// while another task awaits it, or when the result was already moved out.
    awaiter operator co_await() & noexcept { return awaiter(h_, false); }
    /// The same, but always moves the result out.
    awaiter operator co_await() && noexcept { return awaiter(h_, true); }

private:
    template <class U>
    friend join_handle<U> detail::spawn_root(detail::loop_core&, task<U>, detail::cancel_context*,
                                             detail::promise_base::done_fn, detail::code_site);
    explicit join_handle(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

    static T take_result(std::coroutine_handle<promise_type> h, bool move) {
        auto& p = h.promise();
        p.set(detail::promise_base::observed);
        if constexpr (std::is_void_v<T> || std::is_reference_v<T>) {
            return p.take();
        } else {
            if (p.exception_) std::rethrow_exception(p.exception_);
            if constexpr (std::copy_constructible<T>)
                if (!move) return p.copy();
            if (p.has(detail::promise_base::moved_out))
                throw std::logic_error("coring: the task's result was already moved out of its join_handle");
            p.set(detail::promise_base::moved_out);
            return p.take();
        }
    }

    std::coroutine_handle<promise_type> h_;
};

namespace detail {

/// Registers `t` as a root of `core` and queues it. A combinator (task_group) may give it its own cancellation
/// context and completion hook; by default it runs in its own context and finishes with root_done.
template <class T>
join_handle<T> spawn_root(loop_core& core, task<T> t, cancel_context* ctx, promise_base::done_fn on_done,
                          code_site site) {
    auto h = t.handle();
    if (!h) throw std::logic_error("coring: spawning an empty task");
    auto& p = h.promise();
    if (p.has(promise_base::started)) throw std::logic_error("coring: spawning a task that has already started");
    core.ready.push(h); // the only step that can throw: `t` still owns the frame if it does
    (void)t.release();
    p.mark_started(promise_base::root);
    p.ctx_ = ctx ? ctx : &p.own_ctx_;
    p.on_done_ = on_done ? on_done : &root_done;
    p.home_ = &core;
    p.spawn_site_ = site;
    if (++core.last_task_id == 0) core.last_task_id = 1; // 0 means "not a spawned task"
    p.own_ctx_.id = core.last_task_id;
    if (core.draining) p.ctx_->requested = true; // a loop that is shutting down cancels new tasks at once
    core.add_root(p);
    return join_handle<T>(h);
}

} // namespace detail

/// Starts `t` on the current thread's event loop (asyncio.create_task): it is queued now and runs when the loop gets
/// to it. Throws std::logic_error without a loop on this thread.
///
/// For a task from a coroutine lambda, pass the data as parameters (`spawn([](std::string s) -> task<> {...}(s))`):
/// captures stay in the closure, which must outlive the task, and GCC 12 destroys them twice when the lambda is
/// written inside a co_await expression (PR 100611).
template <class T>
join_handle<T> spawn(task<T> t, detail::code_site site = detail::code_site::here()) {
    return detail::spawn_root(detail::require_core("spawn"), std::move(t), nullptr, nullptr, site);
}

/// Starts any awaitable coring returns (an operation, a join_handle, a combinator) as a task of its own.
template <class A>
    requires(!detail::is_task_v<std::remove_cvref_t<A>> && detail::awaitable<A>)
auto spawn(A&& a, detail::code_site site = detail::code_site::here()) {
    static_assert(!std::is_lvalue_reference_v<A> || std::copy_constructible<std::remove_cvref_t<A>>,
                  "coring::spawn: pass the awaitable as an rvalue (std::move), the spawned task takes it");
    return spawn(detail::await_owned<std::remove_cvref_t<A>>(std::forward<A>(a)), site);
}

} // namespace coring
