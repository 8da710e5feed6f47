#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_inbox.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/detail/outcome.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {

/// What run_on's caller gets for a function returning R: R itself, or T for a function returning task<T>.
template <class R>
struct run_on_result {
    using type = R;
    static constexpr bool is_task = false;
};
template <class T>
struct run_on_result<task<T>> {
    using type = T;
    static constexpr bool is_task = true;
};

} // namespace detail

/// The awaitable of run_on(): the call, its arguments, its outcome and the three messages of the protocol, all in the
/// awaiting coroutine's frame (run_on allocates nothing but the remote task's frame).
///
/// Protocol (every message is a remote_item posted to a loop's mailbox and run on that loop's thread; frames are
/// resumed and destroyed only on their own loop's thread):
/// - `start` (to the target): the target spawns the body as a root of its own, in a cancellation context that lives
///   here; a draining target cancels it at its start.
/// - The body's completion hook stores the outcome and, if `phase` goes running -> finished, posts `done` (to the
///   caller), which resumes the caller with the outcome.
/// - Cancelling the caller moves `phase` running -> cancel_requested and posts `cancel` (to the target), which
///   requests the body's cancellation, or posts `done` if the body had already finished. If that move fails, `done`
///   is on its way: completion wins.
/// So `done` is posted exactly once, after the body has finished and after `cancel` (if it was sent) has run: no
/// message points into this frame once the caller resumes. The caller always waits for the remote body to end (as
/// a join_handle does), then gets what it produced: its value (the cancellation is then met at the next wait),
/// its exception, or cancelled_error.
///
/// Movable only before it is awaited; awaited once.
template <class F, class... Args>
class [[nodiscard]] run_on_awaitable : detail::cancel_point {
    using call_result = std::invoke_result_t<F, Args...>;
    using unwrap = detail::run_on_result<call_result>;

public:
    /// What `co_await` yields: f's result, or T when f returns task<T>.
    using result_type = typename unwrap::type;

    /// Stores the target, the callable and the arguments (what run_on() does).
    template <class G, class... A>
    explicit run_on_awaitable(event_loop& target, std::in_place_t, G&& f, A&&... args)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::run_on_label>>},
          target_(&target),
          f_(std::forward<G>(f)),
          args_(std::forward<A>(args)...) {
        init();
    }
    /// Movable until it is awaited (takes over `o`'s callable and arguments).
    run_on_awaitable(run_on_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<F> &&
                                                    (std::is_nothrow_move_constructible_v<Args> && ...))
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::run_on_label>>},
          target_(o.target_),
          f_(std::move(o.f_)),
          args_(std::move(o.args_)) {
        init();
    }
    run_on_awaitable(const run_on_awaitable&) = delete;
    run_on_awaitable& operator=(const run_on_awaitable&) = delete;
    run_on_awaitable& operator=(run_on_awaitable&&) = delete;

    bool await_ready() const noexcept { return false; }

    /// Caller's loop thread. Throws std::logic_error (no loop on this thread, a target nobody shared, awaited twice)
    /// and std::runtime_error (the target loop has exited).
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (awaited_) throw std::logic_error("coring: a run_on awaitable can be awaited only once");
        awaited_ = true;
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) {
            cancelled_ = true; // nothing is sent
            return false;
        }
        event_loop& home = event_loop::current();
        target_box_ = detail::inbox_of(*target_, "run_on");
        home_box_ = home.remote();
        home_ = &home;
        h_ = h;
        // The done message is expected: the loop keeps its inbox read armed and does not report a deadlock.
        home.remote_begin();
        if (ctx_) ctx_->point = this;
        // Publish last: everything the target reads is written above.
        if (!target_box_->post(&start_)) {
            if (ctx_) ctx_->point = nullptr;
            home.remote_end();
            throw std::runtime_error("coring: run_on: the target loop has exited");
        }
        return true;
    }

    /// Caller's loop thread: the body's value, or rethrows its exception; cancelled_error when the caller was
    /// cancelled before anything was sent, or the body was cancelled before it produced a value.
    result_type await_resume() {
        if (cancelled_) throw cancelled_error();
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
        return result_.take();
    }

private:
    enum phase : std::uint8_t { running, cancel_requested, finished };

    /// A message of the protocol, pointing back at its awaitable.
    struct item : detail::remote_item {
        run_on_awaitable* self = nullptr;
    };
    /// The body's cancellation context, pointing back at its awaitable (for the completion hook).
    struct body_context : detail::cancel_context {
        run_on_awaitable* self = nullptr;
    };

    void init() noexcept {
        start_.self = cancel_.self = done_.self = body_ctx_.self = this;
        start_.run = &on_start;
        start_.reject = &on_start_rejected;
        cancel_.run = &on_cancel_item;
        cancel_.reject = &on_cancel_rejected;
        done_.run = &on_done_item;
    }

    // Target thread: the body. Its exceptions are stored here; a cancellation before it starts reaches the hook.
    static task<> body(run_on_awaitable* self) {
        try {
            if constexpr (unwrap::is_task) {
                call_result t = self->call();
                if constexpr (std::is_void_v<result_type>) {
                    co_await std::move(t);
                    self->result_.store([] {});
                } else {
                    result_type v = co_await std::move(t);
                    self->result_.store([&v]() -> result_type { return std::forward<result_type>(v); });
                }
            } else {
                self->result_.store([self]() -> result_type { return self->call(); });
            }
        } catch (...) {
            self->error_ = std::current_exception();
        }
    }

    call_result call() {
        return std::apply([this](Args&... a) -> call_result { return std::invoke(std::move(f_), std::move(a)...); },
                          args_);
    }

    // Target thread, from the mailbox.
    static void on_start(detail::remote_item* it) noexcept {
        run_on_awaitable* self = static_cast<item*>(it)->self;
        try {
            (void)detail::spawn_root(detail::require_core("run_on"), body(self), &self->body_ctx_, &on_body_done);
        } catch (...) {
            // Not started (no memory for the ready queue): end as if the body had thrown.
            self->error_ = std::current_exception();
            self->body_ended();
        }
    }

    // Target thread, the loop closing its mailbox (it is being destroyed): the body will never run.
    static void on_start_rejected(detail::remote_item* it) noexcept {
        run_on_awaitable* self = static_cast<item*>(it)->self;
        self->error_ = std::make_exception_ptr(std::runtime_error("coring: run_on: the target loop has exited"));
        self->body_ended();
    }

    // Target thread, likewise for a cancel that came after the start (both are rejected, in order).
    static void on_cancel_rejected(detail::remote_item* it) noexcept {
        run_on_awaitable* self = static_cast<item*>(it)->self;
        self->cancel_seen_ = true;
        if (self->body_finished_) self->post_done();
    }

    // Target thread, inside the body's final suspend. The frame frees itself once this returns null.
    static std::coroutine_handle<> on_body_done(detail::promise_base& p) noexcept {
        run_on_awaitable* self = static_cast<body_context*>(p.ctx_)->self;
        if (detail::current_core) detail::current_core->remove_root(p);
        if (p.exception_ && !self->error_) self->error_ = p.exception_; // cancelled before it started
        self->body_ended();
        return nullptr;
    }

    // Target thread: the body is over. Posts done unless a cancel is on its way, which then posts it.
    void body_ended() noexcept {
        body_finished_ = true;
        std::uint8_t expected = running;
        if (phase_.compare_exchange_strong(expected, finished) || cancel_seen_) post_done();
    }

    // Target thread, from the mailbox: the caller was cancelled.
    static void on_cancel_item(detail::remote_item* it) noexcept {
        run_on_awaitable* self = static_cast<item*>(it)->self;
        self->cancel_seen_ = true;
        if (self->body_finished_) self->post_done();
        else self->body_ctx_.request();
    }

    // Target thread, last touch of this frame from there.
    void post_done() noexcept {
        // The caller's loop is gone only if it gave up draining and leaked this frame: nobody waits any more.
        (void)home_box_->post(&done_);
    }

    // Caller's thread, from the mailbox: the outcome is here.
    static void on_done_item(detail::remote_item* it) noexcept {
        run_on_awaitable* self = static_cast<item*>(it)->self;
        if (self->ctx_ && self->ctx_->point == self) self->ctx_->point = nullptr;
        self->home_->remote_end();
        self->home_->schedule(self->h_);
    }

    // Caller's thread, from cancel_context::request().
    static void on_cancel(detail::cancel_point* c) noexcept {
        auto* self = static_cast<run_on_awaitable*>(c);
        std::uint8_t expected = running;
        if (!self->phase_.compare_exchange_strong(expected, cancel_requested)) return; // done is on its way
        if (self->target_box_->post(&self->cancel_)) return;
        // The target exited (it gave up draining and leaked the body): nothing will ever come back.
        self->cancelled_ = true;
        self->ctx_->point = nullptr;
        self->home_->remote_end();
        self->home_->schedule(self->h_);
    }

    event_loop* target_;                             // where the body runs
    [[no_unique_address]] F f_;                      // the callable, invoked once as an rvalue on the target
    [[no_unique_address]] std::tuple<Args...> args_; // its arguments, passed as rvalues
    detail::thread_result<result_type> result_;      // written on the target before done is posted
    std::exception_ptr error_;                       // likewise
    item start_, cancel_, done_;                     // the protocol's messages
    body_context body_ctx_;                          // the body's cancellation state (target thread)
    std::atomic<std::uint8_t> phase_{running};       // the caller's cancel against the body's completion
    bool body_finished_ = false;                     // target thread only
    bool cancel_seen_ = false;                       // target thread only
    std::shared_ptr<detail::mailbox> target_box_;    // set before start is posted
    std::shared_ptr<detail::mailbox> home_box_;      // the caller's inbox, where done goes
    event_loop* home_ = nullptr;                     // the caller's loop
    detail::cancel_context* ctx_ = nullptr;          // the caller's chain
    std::coroutine_handle<> h_{};                    // the caller, resumed once by its own loop
    bool awaited_ = false;                           // co_await began (single use)
    bool cancelled_ = false;                         // caller thread only: end with cancelled_error
};

/// Runs `f(args...)` on `loop` and resumes the caller on its own loop with the result, or rethrows what f threw: the
/// way to use something that belongs to another loop (its streams, its state) without sharing it. `f` may return a
/// value (void, references and move-only types too) or a task<T>, which is awaited there.
///
/// `f` and `args` are decay-copied (or moved) into the awaitable, as to_thread does; pass the data as arguments, or
/// name a lambda before the co_await (GCC 12 mishandles a capturing lambda written inside a co_await operand, PR
/// 100611). Cancelling the caller cancels the remote call, and the caller still waits until it has ended (see
/// run_on_awaitable); spawn_on is the way to detach.
template <class F, class... Args>
    requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
        run_on_awaitable<std::decay_t<F>, std::decay_t<Args>...> run_on(event_loop& loop, F&& f, Args&&... args) {
        return run_on_awaitable<std::decay_t<F>, std::decay_t<Args>...>(loop, std::in_place, std::forward<F>(f),
                                                                        std::forward<Args>(args)...);
    }

namespace detail {
/// run_on(loop, task): the task is the "function's" result.
template <class T>
struct pass_task {
    task<T> operator()(task<T>&& t) const noexcept { return std::move(t); }
};
} // namespace detail

/// Runs the task `t` on `loop` (its frame is made here, first resumed and destroyed there) and resumes the caller on
/// its own loop with its result (see run_on above).
template <class T>
run_on_awaitable<detail::pass_task<T>, task<T>> run_on(event_loop& loop, task<T> t) {
    return run_on_awaitable<detail::pass_task<T>, task<T>>(loop, std::in_place, detail::pass_task<T>{}, std::move(t));
}

} // namespace coring
