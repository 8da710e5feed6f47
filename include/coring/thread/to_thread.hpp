#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/outcome.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/detail/worker_pool.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>

#include <concepts>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace coring {

/// The awaitable of to_thread(): one job for the loop's worker pool, kept with the callable, its arguments and the
/// outcome in the awaiting coroutine's frame (no allocation per job).
///
/// Awaiting it queues the job (starting a worker thread if all are busy), suspends the caller and lets the loop serve
/// other tasks; a worker calls `std::invoke(std::move(f), std::move(args)...)` and hands the job back through the
/// loop's inbox (detail::mailbox), and the loop resumes the caller on its own thread with the result or the
/// exception f threw. The callable and the arguments are destroyed with the awaitable, on the loop thread.
///
/// Cancellation of the awaiting task (cancel(), a timeout, a failing sibling), by the job's state:
/// - already requested when the co_await begins: cancelled_error at once, f never runs (level-triggered);
/// - the job is still queued (every worker busy): it is withdrawn from the pool's queue, f never runs, and the caller
///   gets cancelled_error on the loop's next turn;
/// - f is running: a running thread cannot be stopped (pitfalls G-3), so the caller keeps waiting until f returns,
///   then f's result (or exception) is destroyed on the loop thread and cancelled_error is thrown;
/// - f has already returned and its completion is on its way to the loop: completion wins, the caller gets the result
///   (and its next cancellable wait throws), as for an io_uring operation that completed before its cancellation.
///
/// Movable only before it is awaited; awaited once.
template <class F, class... Args>
class [[nodiscard]] to_thread_awaitable : detail::cancel_point, detail::pool_job {
public:
    /// What `co_await` yields: f's return type, references and void included.
    using result_type = std::invoke_result_t<F, Args...>;

    /// Stores the callable and the arguments, decay-copied or moved (what to_thread() does).
    template <class G, class... A>
    explicit to_thread_awaitable(std::in_place_t, G&& f, A&&... args)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::to_thread_label>>},
          f_(std::forward<G>(f)),
          args_(std::forward<A>(args)...) {
        init();
    }
    /// Movable only before it is awaited (spawn() and gather() move an awaitable into a task's frame).
    to_thread_awaitable(to_thread_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<F> &&
                                                          (std::is_nothrow_move_constructible_v<Args> && ...))
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::to_thread_label>>},
          f_(std::move(o.f_)),
          args_(std::move(o.args_)) {
        init();
    }
    to_thread_awaitable(const to_thread_awaitable&) = delete;
    to_thread_awaitable& operator=(const to_thread_awaitable&) = delete;
    to_thread_awaitable& operator=(to_thread_awaitable&&) = delete;
    /// A worker may write into a job until it has been handed back: destroying one before that would let it write
    /// into freed memory. The runtime never destroys a frame suspended here, so this only checks the invariant.
    ~to_thread_awaitable() {
        const auto s = state_.load(std::memory_order_acquire);
        if (s == state::queued || s == state::running) {
            std::fputs("coring: fatal: a to_thread job was destroyed while a worker could still use it\n", stderr);
            std::abort();
        }
    }

    bool await_ready() const noexcept { return false; }

    /// Loop thread. Throws std::logic_error (no event_loop on this thread, or awaited twice) and std::system_error
    /// (no worker thread could be started, or the loop's inbox could not be created).
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (awaited_) throw std::logic_error("coring: a to_thread awaitable can be awaited only once");
        awaited_ = true;
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true;
            return false;
        }
        event_loop& loop = event_loop::current();
        detail::worker_pool& pool = loop.service<detail::worker_pool>();
        loop_ = &loop;
        pool_ = &pool;
        home = loop.remote().get();
        h_ = h;
        // Announce the remote completion before a worker can post it: the loop then keeps its inbox read armed and
        // does not mistake the wait for a deadlock.
        loop.remote_begin();
        try {
            pool.submit(this);
        } catch (...) {
            loop.remote_end();
            throw;
        }
        if (ctx_) ctx_->point = this;
        return true;
    }

    /// Loop thread: f's result, or rethrows what f threw. Throws cancelled_error when the task was cancelled before f
    /// returned (see the class comment).
    result_type await_resume() {
        if (cancelled_) {
            // Discarded here, on the loop thread, rather than whenever the frame goes.
            result_.reset();
            error_ = nullptr;
            throw cancelled_error();
        }
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
        return result_.take();
    }

private:
    void init() noexcept {
        run = &on_done;
        execute = &do_execute;
    }

    result_type call() {
        return std::apply([this](Args&... a) -> result_type { return std::invoke(std::move(f_), std::move(a)...); },
                          args_);
    }

    // Worker thread: the only code that runs there. It writes result_ and error_, nothing the loop reads before the
    // job comes back through the mailbox (whose head pointer, release then acquire, orders the two threads).
    static void do_execute(detail::pool_job* j) noexcept {
        auto* self = static_cast<to_thread_awaitable*>(j);
        try {
            self->result_.store([self]() -> result_type { return self->call(); });
        } catch (...) {
            self->error_ = std::current_exception();
        }
    }

    // Loop thread, from the loop's inbox: the job is back.
    static void on_done(detail::remote_item* item) noexcept {
        auto* self = static_cast<to_thread_awaitable*>(static_cast<detail::pool_job*>(item));
        if (self->ctx_) self->ctx_->point = nullptr;
        self->loop_->remote_end();
        self->loop_->schedule(self->h_);
    }

    // Loop thread, from cancel_context::request().
    static void on_cancel(detail::cancel_point* c) noexcept {
        auto* self = static_cast<to_thread_awaitable*>(c);
        switch (self->pool_->withdraw(self)) {
        case detail::worker_pool::withdraw_result::withdrawn:
            // f never runs and nothing will be posted: end the wait now.
            self->cancelled_ = true;
            self->ctx_->point = nullptr;
            self->loop_->remote_end();
            self->loop_->schedule(self->h_);
            break;
        case detail::worker_pool::withdraw_result::running:
            self->cancelled_ = true; // keep waiting for f; its outcome is discarded on resumption
            break;
        case detail::worker_pool::withdraw_result::finished:
            break; // completion wins
        }
    }

    [[no_unique_address]] F f_;                      // the callable, invoked once as an rvalue
    [[no_unique_address]] std::tuple<Args...> args_; // its arguments, passed as rvalues
    detail::thread_result<result_type> result_;      // written by the worker
    std::exception_ptr error_;                       // what f threw; written by the worker
    event_loop* loop_ = nullptr;                     // set when awaited
    detail::worker_pool* pool_ = nullptr;            // the loop's pool
    detail::cancel_context* ctx_ = nullptr;          // the awaiting chain's cancellation state
    std::coroutine_handle<> h_{};                    // resumed once, by the loop
    bool awaited_ = false;                           // co_await began (single use)
    bool cancelled_ = false;                         // loop thread only: end with cancelled_error
};

/// Runs `f(args...)` on the event loop's worker threads and resumes the caller on the loop thread with its result, or
/// rethrows the exception it threw (asyncio.to_thread). The loop keeps serving other tasks meanwhile.
///
/// `f` and `args` are decay-copied (or moved) into the awaitable, as std::thread does: pass std::ref to share an
/// object, which must then outlive the co_await. Any result type works: values (move-only ones too), references and
/// void. `f` runs on a pool thread that has every signal blocked; it must not use the event loop or await anything.
/// Cancelling the caller withdraws a job that has not started; one that has started is waited for and its result
/// discarded before cancelled_error is thrown (see to_thread_awaitable).
///
/// The pool belongs to the loop (loop_options::worker_threads; threads start on demand), or, for the loops of a
/// runtime, is shared by all of them with one bound. Destroying the loop while a job still runs after
/// loop_options::shutdown_timeout leaves that thread running, detached; it finishes on its own.
///
/// Call from a task on the loop thread. GCC 12 destroys twice each capture of a lambda written inside a co_await
/// expression (PR 100611): the calling coroutine copies the capture into a frame temporary of its own and destroys
/// both, whatever to_thread does with the closure. With GCC 12, write `to_thread([](std::string s) { ... }, s)` (the
/// data as arguments, decay-copied here) or bind the lambda to a named local and `co_await to_thread(std::move(f))`.
template <class F, class... Args>
    requires std::invocable<std::decay_t<F>, std::decay_t<Args>...> && std::constructible_from<std::decay_t<F>, F> &&
        (std::constructible_from<std::decay_t<Args>, Args>&&...) &&
        (std::is_void_v<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> ||
         std::is_reference_v<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> ||
         std::move_constructible<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>>)
            [[nodiscard]] to_thread_awaitable<std::decay_t<F>, std::decay_t<Args>...> to_thread(F&& f, Args&&... args) {
        return to_thread_awaitable<std::decay_t<F>, std::decay_t<Args>...>(std::in_place, std::forward<F>(f),
                                                                           std::forward<Args>(args)...);
    }

} // namespace coring
