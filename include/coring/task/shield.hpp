#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
#include <coring/detail/inner_awaiter.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>

#include <coroutine>
#include <type_traits>
#include <utility>

namespace coring {

/// The awaitable of shield(): awaits the inner awaitable in a cancellation context that nothing outside can cancel.
template <class A>
class [[nodiscard]] shield_awaitable : detail::cancel_point {
public:
    /// Holds `a` (what shield() does): moved in from an rvalue, referred to when `A` is an lvalue reference.
    explicit shield_awaitable(A&& a)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::shield_label>>},
          inner_(static_cast<A&&>(a)) {}
    /// Movable only before it is awaited.
    shield_awaitable(shield_awaitable&& o) noexcept(std::is_nothrow_move_constructible_v<detail::inner_awaiter<A>>)
        : detail::cancel_point{&detail::cancel_ops_of<&on_cancel, &detail::describe_as<detail::shield_label>>},
          inner_(std::move(o.inner_)) {}
    shield_awaitable& operator=(shield_awaitable&&) = delete;
    ~shield_awaitable() { unregister(); }

    bool await_ready() { return inner_.get().await_ready(); }

    template <class P>
    auto await_suspend(std::coroutine_handle<P> h) -> detail::suspend_result_t<detail::inner_suspend_t<A, P>> {
        using R = detail::inner_suspend_t<A, P>;
        // Runs even when the caller is already cancelled: finishing cleanup is what shield is for.
        parent_ = detail::context_of(h);
        if (parent_) parent_->point = this;
        struct undo_on_throw {
            shield_awaitable* self;
            bool armed = true;
            ~undo_on_throw() {
                if (armed) self->unregister();
            }
        } undo{this};
        if constexpr (std::is_void_v<R>) {
            inner_.suspend_under(h, &ctx_);
            undo.armed = false;
        } else if constexpr (std::is_same_v<R, bool>) {
            const bool suspended = inner_.suspend_under(h, &ctx_);
            undo.armed = !suspended;
            return suspended;
        } else {
            std::coroutine_handle<> next = inner_.suspend_under(h, &ctx_);
            undo.armed = false;
            return next;
        }
    }

    /// The inner result, even if the caller was cancelled meanwhile (its next wait throws cancelled_error).
    decltype(auto) await_resume() {
        unregister();
        return inner_.get().await_resume();
    }

private:
    void unregister() noexcept {
        if (parent_ && parent_->point == this) parent_->point = nullptr;
    }
    // The caller's cancellation stays with the caller (level-triggered, it is still requested when shield returns).
    static void on_cancel(detail::cancel_point*) noexcept {}

    detail::inner_awaiter<A> inner_;
    detail::cancel_context ctx_;               // never requested: nothing outside can reach it
    detail::cancel_context* parent_ = nullptr; // the caller's
};

/// Awaits `aw` so that cancelling the caller does not reach it (asyncio.shield): the way for a cancelled task to
/// finish cleanup that must wait (flush, close, commit). The caller's cancellation is not lost: its next wait after
/// the shield throws cancelled_error. An awaitable that never finishes keeps its task alive until the loop's shutdown
/// timeout. Must be awaited from a coring::task; an lvalue awaitable is awaited by reference.
template <detail::awaitable A>
[[nodiscard]] auto shield(A&& aw) {
    return shield_awaitable<A>(std::forward<A>(aw));
}

} // namespace coring
