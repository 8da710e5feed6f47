#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/frame_allocator.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/owner_check.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <type_traits>

namespace coring::detail {

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
        joined = 64     // a join_handle awaiter waits for (or is queued to read) the result
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
    final_awaiter final_suspend() noexcept { return {*this}; }
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // Frames come from a per-thread cache of recently freed frames: spawn-and-await of short tasks is dominated by
    // the allocator otherwise.
    static void* operator new(std::size_t n) { return frame_allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { frame_free(p, n); }

    [[nodiscard]] bool has(unsigned f) const noexcept { return (own_ctx_.flags & f) != 0; }
    void set(unsigned f) noexcept { own_ctx_.flags = static_cast<std::uint8_t>(own_ctx_.flags | f); }
    void clear(unsigned f) noexcept { own_ctx_.flags = static_cast<std::uint8_t>(own_ctx_.flags & ~f); }

    std::coroutine_handle<> continuation_{}; // who resumes when this task finishes (plain await or joiner)
    cancel_context* ctx_ = nullptr;          // cancellation state of the chain this task runs in
    done_fn on_done_ = nullptr;              // non-null for spawned and combinator-started tasks
    std::exception_ptr exception_;           // how the body ended, if it threw
    loop_core* home_ = nullptr;              // the loop it runs on: set when spawned or first resumed (CORING_CHECKS)
    promise_base* prev_ = nullptr;           // links in loop_core::roots
    promise_base* next_ = nullptr;
    // The context of a spawned task's chain, and the flags; one struct so that the flags fill its padding.
    struct own_state : cancel_context {
        std::uint8_t flags = 0;
    } own_ctx_;
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
