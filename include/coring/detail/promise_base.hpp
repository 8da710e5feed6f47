#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/code_site.hpp>
#include <coring/detail/frame_allocator.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/owner_check.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <utility>

namespace coring::detail {

/// Whether tasks record where they wait, for task dumps (CORING_TASK_TRACE): one store per co_await, and where each
/// coroutine is defined. The fields exist in every build, so that translation units built either way agree on every
/// layout; only those stores (and await_transform) depend on the macro. The link from a task to the task it awaits
/// (awaiting_) is kept in every build: the stall detector follows it too.
inline constexpr bool task_trace = CORING_TASK_TRACE != 0;
// Without it the promise has no await_transform at all: co_await is then exactly what it was before task dumps.

/// What promise_base::await_transform gives the compiler for an awaiter operand: the awaiter, by reference.
template <class A>
struct awaiter_ref {
    A& a;
    decltype(auto) await_ready() { return a.await_ready(); }
    template <class P>
    decltype(auto) await_suspend(std::coroutine_handle<P> h) {
        return a.await_suspend(h);
    }
    decltype(auto) await_resume() { return a.await_resume(); }
};

/// The part of a task's promise that does not depend on its result type.
///
/// A task finishes in one of three ways, chosen by whoever started it:
/// - awaited by a parent (`on_done_` null): final_suspend transfers to `continuation_`;
/// - spawned (a root): `on_done_` unregisters it from the loop and resumes a waiting joiner, or, when the
///   join_handle is gone, reports an exception and lets the frame destroy itself;
/// - started by a combinator (gather): `on_done_` is the combinator's bookkeeping.
class promise_base {
public:
    using done_fn = std::coroutine_handle<> (*)(promise_base&) noexcept;

    enum flag : std::uint8_t {
        started = 1,    // resumed once (awaiting or starting it again is a logic error)
        root = 2,       // spawned: registered in the loop's root list
        detached = 4,   // spawned and its join_handle is gone: the frame frees itself at the end
        finished = 8,   // reached final_suspend
        observed = 16,  // the result or exception was delivered through a join_handle
        moved_out = 32, // the result was moved out through a join_handle
        joined = 64,    // a join_handle awaiter waits for (or is queued to read) the result
        handed = 128    // given to an awaiter, spawn or a combinator (a never-awaited report would be wrong)
    };

    /// A task the loop starts (spawned, or a combinator's child) that was cancelled before it ran never runs its body:
    /// cancelled_error is thrown at its start, which C++20 routes to unhandled_exception. A task awaited directly
    /// starts like a function call and meets the cancellation at its first wait.
    struct initial_awaiter {
        promise_base& p;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        void await_resume() const {
            if constexpr (checks) {
                if (!p.home_) p.home_ = current_core;
                else if (p.home_ != current_core)
                    throw_sharing_violation("a task spawned on one event loop was started on another");
            }
            if (p.on_done_ && p.ctx_->requested) throw cancelled_error();
        }
    };

    struct final_awaiter {
        promise_base& p;
        std::coroutine_handle<> next{};

        bool await_ready() noexcept {
            if constexpr (checks)
                if (p.home_ && p.home_ != current_core)
                    sharing_violation("a task started on one event loop was resumed on another's thread");
            p.set(finished);
            if (!p.on_done_) {
                next = p.continuation_;
                return false;
            }
            next = p.on_done_(p);
            // A null handle means "nobody will look at this frame again": let the coroutine run off its end, which
            // frees it, instead of calling destroy() from inside await_suspend (llvm#62335, GCC PR 121961).
            return !next;
        }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept {
            return next ? transfer(next) : std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };

    initial_awaiter initial_suspend() noexcept { return {*this}; }

#if CORING_TASK_TRACE
    /// Every co_await in a task passes through here: it notes where the coroutine waits (for task dumps) and hands on
    /// an awaiter that refers to the operand, which stays where it is. The site is a defaulted argument, so it is the
    /// co_await's own.
    ///
    /// Not the operand itself: GCC 12 copies an lvalue that await_transform returns, and moves an xvalue into a new
    /// temporary, so `co_await op;` would have waited on a copy (or not compiled, for a move-only awaiter). A small
    /// wrapper holding a reference is what GCC copies instead. An operand with an operator co_await has it applied
    /// here, as the compiler would have.
    template <class A>
    decltype(auto) await_transform(A&& a, code_site at = code_site::here()) {
        if constexpr (task_trace) await_site_ = at;
        if constexpr (requires { static_cast<A&&>(a).operator co_await(); })
            return static_cast<A&&>(a).operator co_await();
        else if constexpr (requires { operator co_await(static_cast<A&&>(a)); })
            return operator co_await(static_cast<A&&>(a));
        else if constexpr (requires { a.await_ready(); }) return awaiter_ref<std::remove_reference_t<A>>{a};
        // Anything else (an operator co_await only the caller's scope can see) goes back as it came, for the
        // compiler to look up there.
        else return static_cast<A&&>(a);
    }
#endif

    final_awaiter final_suspend() noexcept { return {*this}; }
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // Frames come from a per-thread cache of recently freed frames: spawn-and-await of short tasks is dominated by
    // the allocator otherwise.
#if CORING_TASK_TRACE
    // The defaulted site is filled in inside the coroutine whose frame this is: its name and a line of its definition
    // (the opening line with Clang, the closing one with GCC). Handed to the promise's constructor through the
    // thread, which reads and clears it, so that a frame whose allocation the compiler elided records nothing rather
    // than another's site.
    static void* operator new(std::size_t n, code_site created = code_site::here()) {
        void* p = frame_allocate(n);
        created_site = created;
        return p;
    }
    promise_base() noexcept : await_site_(std::exchange(created_site, code_site{})) {}
#else
    static void* operator new(std::size_t n) { return frame_allocate(n); }
#endif
    static void operator delete(void* p, std::size_t n) noexcept { frame_free(p, n); }

    [[nodiscard]] bool has(unsigned f) const noexcept { return (own_ctx_.flags & f) != 0; }
    void set(unsigned f) noexcept { own_ctx_.flags = static_cast<std::uint8_t>(own_ctx_.flags | f); }
    void clear(unsigned f) noexcept { own_ctx_.flags = static_cast<std::uint8_t>(own_ctx_.flags & ~f); }
    /// Marks the coroutine as handed to whoever runs it (`started`, with `extra`): from now on await_site_ is where
    /// it waits, no longer where it is defined.
    void mark_started(unsigned extra = 0) noexcept {
        if constexpr (task_trace)
            if (!has(started)) await_site_ = code_site{};
        set(started | extra);
    }

    std::coroutine_handle<> continuation_{}; // who resumes when this task finishes (plain await or joiner)
    cancel_context* ctx_ = nullptr;          // cancellation state of the chain this task runs in
    done_fn on_done_ = nullptr;              // non-null for spawned and combinator-started tasks
    std::exception_ptr exception_;           // how the body ended, if it threw
    loop_core* home_ = nullptr;              // the loop it runs on: set when spawned or first resumed (CORING_CHECKS)
    promise_base* prev_ = nullptr;           // links in loop_core::roots
    promise_base* next_ = nullptr;
    // The context of a spawned task's chain, the flags and the task's id; one struct so that they fill its padding.
    struct own_state : cancel_context {
        std::uint8_t flags = 0;
        std::uint32_t id = 0; // spawned tasks: numbered per loop from 1
    } own_ctx_;
    // Task dumps: where the coroutine last awaited (CORING_TASK_TRACE), where it was spawned (roots) and the task it
    // awaits now (a plain co_await of a task, set and cleared by task's awaiter).
    // Until the coroutine starts, await_site_ holds where it is defined (CORING_TASK_TRACE): a never-awaited task's
    // report (CORING_DEBUG) names it.
    code_site await_site_{};
    code_site spawn_site_{};

    promise_base* awaiting_ = nullptr;

private:
    static inline thread_local code_site created_site{}; // operator new to the constructor, see there
};

inline void loop_core::add_root(promise_base& p) noexcept {
    p.prev_ = nullptr;
    p.next_ = roots;
    if (roots) roots->prev_ = &p;
    roots = &p;
    ++root_count;
}

inline void loop_core::remove_root(promise_base& p) noexcept {
    if (!p.has(promise_base::root)) return; // forgotten by a loop that was torn down with it still running
    p.clear(promise_base::root);
    if (p.prev_) p.prev_->next_ = p.next_;
    else roots = p.next_;
    if (p.next_) p.next_->prev_ = p.prev_;
    p.prev_ = p.next_ = nullptr;
    --root_count;
    // A task that ends a resume the stall detector flagged is gone by the time the loop reports it: note its name.
    if (const std::uint64_t beat = stall.beat.load(std::memory_order_relaxed);
        stall.flagged.load(std::memory_order_relaxed) == beat) [[unlikely]] {
        finished_beat = beat;
        finished_id = p.own_ctx_.id;
        finished_site = p.spawn_site_;
    }
}

/// The cancellation context of the coroutine behind `h`, or null when it is not a coring task.
template <class Promise>
cancel_context* context_of(std::coroutine_handle<Promise> h) noexcept {
    if constexpr (std::is_base_of_v<promise_base, Promise>) return h.promise().ctx_;
    else return nullptr;
}

/// `co_await cancellation_check{}`: throws cancelled_error, without suspending, when the awaiting chain was cancelled
/// (a loop that must not start its next step once cancelled, and would otherwise reach no wait first).
struct cancellation_check {
    bool requested = false;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
        cancel_context* c = context_of(h);
        requested = c && c->requested;
        return false;
    }
    void await_resume() const {
        if (requested) throw cancelled_error();
    }
};

} // namespace coring::detail
