#pragma once

#include <coring/detail/io_op.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/thread/to_thread.hpp>

#include <liburing.h>

#include <coroutine>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace coring::detail {

/// The error of a file operation: errno, and "<operation> <path>" in what() ("open /x/y: No such file or
/// directory"), with an optional hint in parentheses before the system's text.
inline std::system_error fs_error(int err, std::string_view op, std::string_view path, std::string_view hint = {}) {
    return std::system_error(err, std::system_category(),
                             hint.empty() ? str_cat("coring: ", op, " ", path)
                                          : str_cat("coring: ", op, " ", path, " (", hint, ")"));
}

/// The largest transfer one read or write system call makes (Linux's MAX_RW_COUNT); a longer request is short.
inline constexpr std::size_t max_rw_count = 0x7ffff000;

/// One file or filesystem operation: an io_uring operation when the running kernel has the opcode, otherwise the
/// same work done by a blocking system call on the loop's worker pool (pitfalls: probe, then fall back). Either way
/// its state lives in the awaiting frame and cancellation behaves as for to_thread() or any io_uring operation.
///
/// `Derived` provides, besides io_op's prep() (and step(), which by default keeps the single CQE's res):
///   bool uses_ring(const event_loop&) const noexcept   whether the kernel can do it (probed opcodes);
///   int blocking() noexcept                             the fallback, on a worker thread: what the CQE would say
///                                                        (a result, or -errno);
/// and calls result() in its await_resume.
template <class Derived>
class fs_op : public io_op<Derived> {
public:
    fs_op() noexcept = default;
    /// A copy (a move before awaiting) is a fresh operation.
    fs_op(const fs_op& o) noexcept : io_op<Derived>(o) {}
    fs_op& operator=(const fs_op&) = delete;

    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        auto& self = static_cast<Derived&>(*this);
        if (self.uses_ring(event_loop::current())) return io_op<Derived>::await_suspend(h);
        fallback_.emplace(std::in_place, blocking_call{&self});
        return fallback_->await_suspend(h);
    }

    bool step(int res) noexcept {
        res_ = res;
        return true;
    }

protected:
    /// The operation's result or -errno. Throws cancelled_error when the task was cancelled and the operation
    /// stopped for it (a completion that won the race is returned).
    int result() {
        if (fallback_) return fallback_->await_resume();
        if (this->cancelled()) throw cancelled_error();
        return res_;
    }
    /// Whether the worker pool did the work.
    [[nodiscard]] bool fell_back() const noexcept { return fallback_.has_value(); }

    int res_ = -ECANCELED; // the CQE's res (ring path)

private:
    struct blocking_call {
        Derived* self;
        int operator()() const noexcept { return self->blocking(); }
    };
    std::optional<to_thread_awaitable<blocking_call>> fallback_;
};

} // namespace coring::detail
