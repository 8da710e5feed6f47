#pragma once

#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>

#include <coroutine>

namespace coring {

/// The awaitable of yield_now().
class [[nodiscard]] yield_awaitable {
public:
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        ctx_ = detail::context_of(h);
        if (ctx_ && ctx_->requested) return false;
        detail::require_core("yield_now").ready.push(h);
        return true;
    }
    /// Throws cancelled_error when the task was cancelled.
    void await_resume() const {
        if (ctx_ && ctx_->requested) throw cancelled_error();
    }

private:
    detail::cancel_context* ctx_ = nullptr;
};

/// Lets every other ready task run once, and the loop reap completions, before the caller continues
/// (asyncio.sleep(0)). A cancellation point.
[[nodiscard]] inline yield_awaitable yield_now() noexcept { return {}; }

} // namespace coring
