#pragma once

namespace coring::detail {

struct wait_note;

/// Something a suspended chain of tasks waits on that knows how to stop waiting early: a sleeper leaves the timer
/// queue, an io_uring operation asks the kernel to cancel it, a combinator cancels its children.
///
/// on_cancel must not resume the waiting coroutine inline: it arranges for the wait to end (the coroutine goes to the
/// ready queue, now or when the kernel has answered) and returns.
struct cancel_point;

/// What a kind of cancel point does, one static table per awaiter type (cancel_ops_of), so that a cancel point costs
/// its awaiter one pointer.
struct cancel_ops {
    void (*cancel)(cancel_point*) noexcept;
    /// Says what the chain waits for, for task dumps (detail/task_trace.hpp); null: the dump says "a wait". Called on
    /// the loop's thread while the point is registered, so the awaiter is live.
    void (*describe)(const cancel_point*, wait_note&);
};

/// The table of the awaiter whose static member functions are `Cancel` and `Describe`.
template <void (*Cancel)(cancel_point*) noexcept, void (*Describe)(const cancel_point*, wait_note&) = nullptr>
inline constexpr cancel_ops cancel_ops_of{Cancel, Describe};

struct cancel_point {
    const cancel_ops* ops;

    void on_cancel(cancel_point* self) const noexcept { ops->cancel(self); }
};

/// Cancellation state of one logical thread of execution: a spawned task with every task it awaits, or one child of a
/// combinator. Exactly one leaf of such a chain is suspended at a time, and it registers itself in `point`.
///
/// Cancellation is level-triggered: once requested it stays requested, and every later cancellable await in the chain
/// throws cancelled_error without suspending.
struct cancel_context {
    cancel_point* point = nullptr; // what the chain is suspended on right now, if that can be cancelled
    bool requested = false;        // cancellation was requested

    /// Requests cancellation; idempotent.
    void request() noexcept {
        if (requested) return;
        requested = true;
        if (point) {
            cancel_point* p = point;
            p->on_cancel(p);
        }
    }
};

} // namespace coring::detail
