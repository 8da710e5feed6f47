#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
#include <coring/detail/promise_base.hpp>

#include <coroutine>
#include <optional>
#include <type_traits>
#include <utility>

namespace coring::detail {

/// An awaitable held by a wrapper (timeout, shield), with its awaiter made on first use: the wrapper may be moved
/// (into a spawned task's frame, say) before it is awaited, and an awaiter may point into its awaitable.
/// `A` is the awaitable's own type (held by value) or an lvalue reference (held by reference).
template <class A>
class inner_awaiter {
    using raw = decltype(get_awaiter(std::declval<A&&>()));
    static constexpr bool is_self = std::is_reference_v<raw>; // the awaitable is its own awaiter
    using stored = std::conditional_t<is_self, char, raw>;    // unused when the awaitable is its own awaiter

public:
    /// The awaiter's type (the awaitable's own type when it is its own awaiter).
    using awaiter_type = std::remove_reference_t<raw>;
    using result_type = decltype(std::declval<std::remove_reference_t<raw>&>().await_resume());

    explicit inner_awaiter(A&& a) : aw_(static_cast<A&&>(a)) {}
    inner_awaiter(inner_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<std::remove_cvref_t<A>>)
        : aw_(static_cast<A&&>(o.aw_)) {}
    inner_awaiter& operator=(inner_awaiter&&) = delete;

    /// The awaiter, made from the awaitable the first time it is needed.
    auto& get() {
        // A task a wrapper holds is the wrapper's to run or drop (timeout() refuses to start it in a cancelled task):
        // never a never-awaited report.
        if constexpr (requires { aw_.handle().promise().set(promise_base::handed); }) (void)aw_.handle();
        if constexpr (is_self) {
            return static_cast<awaiter_type&>(aw_);
        } else {
            if (!awaiter_) awaiter_.emplace(get_awaiter(static_cast<A&&>(aw_)));
            return *awaiter_;
        }
    }

    /// Calls the inner await_suspend with the awaiting task's cancellation context replaced by `ctx` for the
    /// duration of the call: whatever the inner awaiter registers (an operation, a sleep, a child task's chain) then
    /// listens to `ctx`. The context is restored before returning, also when the inner await_suspend throws.
    template <class P>
    auto suspend_under(std::coroutine_handle<P> h, cancel_context* ctx) {
        static_assert(std::is_base_of_v<promise_base, P>,
                      "coring: timeout() and shield() must be awaited from a coring::task");
        promise_base& p = h.promise();
        struct restore {
            promise_base& p;
            cancel_context* saved;
            ~restore() { p.ctx_ = saved; }
        } guard{p, p.ctx_};
        p.ctx_ = ctx;
        return get().await_suspend(h);
    }

private:
    A aw_;
    std::optional<stored> awaiter_;
};

/// How a wrapper's await_suspend returns what the inner one returned: void, bool or a handle to transfer to.
template <class R>
using suspend_result_t = std::conditional_t<std::is_void_v<R>, void,
                                            std::conditional_t<std::is_same_v<R, bool>, bool, std::coroutine_handle<>>>;

/// What `A`'s awaiter's await_suspend returns when called with `h`.
template <class A, class P>
using inner_suspend_t = decltype(std::declval<typename inner_awaiter<A>::awaiter_type&>().await_suspend(
    std::declval<std::coroutine_handle<P>>()));

} // namespace coring::detail
