#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/str_cat.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/error.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>

namespace coring::detail {

struct children_state;

/// The cancellation context of one gathered child, which also leads back to the gather.
struct child_slot : cancel_context {
    children_state* state = nullptr;
    promise_base* task = nullptr; // the child, for task dumps
};

/// The bookkeeping of a combinator that runs tasks concurrently (gather, when_any): the waiting parent, the count of
/// running children, the first failure or the winner. It is the parent's cancel point, so cancelling the parent
/// cancels every child; the parent resumes only when every child has finished (no orphans).
struct children_state : cancel_point {
    enum class until : unsigned char {
        all,  // gather: the first failure cancels the others
        first // when_any: the first child to finish, however it finishes, wins and cancels the others
    };
    static constexpr std::size_t no_winner = static_cast<std::size_t>(-1);

    explicit children_state(until u = until::all) noexcept
        : cancel_point{&cancel_ops_of<&on_cancel, &describe>}, mode(u) {}

    std::coroutine_handle<> parent{};
    cancel_context* parent_ctx = nullptr;
    child_slot* slots = nullptr;
    std::size_t count = 0;
    std::size_t remaining = 0;
    std::exception_ptr error;       // the first exception a child ended with (all), the winner's (first)
    std::size_t winner = no_winner; // the first child to finish (first)
    until mode;
    bool cancelled_early = false; // the parent was already cancelled: no child was started

    void cancel_children() noexcept {
        for (std::size_t i = 0; i < count; ++i) slots[i].request();
    }

    /// Starts child `i`: it runs in its own cancellation context and reports here when done.
    void start(std::size_t i, promise_base& p, std::coroutine_handle<> h) {
        slots[i].state = this;
        slots[i].task = &p;
        p.mark_started();
        p.ctx_ = &slots[i];
        p.on_done_ = &child_done;
        current_core->ready.push(h); // cannot fail: begin() made room
    }

    /// Suspends the parent until every child is done; false when the parent was already cancelled.
    bool begin(std::coroutine_handle<> h, cancel_context* ctx) {
        // Room for every child first: a child queued and then abandoned because a later push failed would be
        // resumed after its frame was freed.
        require_core("gather and when_any").ready.reserve(count);
        parent = h;
        parent_ctx = ctx;
        if (ctx && ctx->requested) {
            cancelled_early = true;
            return false;
        }
        remaining = count;
        return true;
    }
    void registered() noexcept {
        if (parent_ctx) parent_ctx->point = this;
    }

    void rethrow_if_failed() const {
        if (cancelled_early) throw cancelled_error();
        if (error) std::rethrow_exception(error);
    }

    static void on_cancel(cancel_point* c) noexcept { static_cast<children_state*>(c)->cancel_children(); }
    static void describe(const cancel_point* c, wait_note& n) {
        const auto* self = static_cast<const children_state*>(c);
        n.text = str_cat(self->mode == until::all ? "gather" : "when_any", " of ", std::to_string(self->count),
                         self->count == 1 ? " task" : " tasks");
        for (std::size_t i = 0; i < self->count; ++i)
            if (self->slots[i].task && !self->slots[i].task->has(promise_base::finished))
                n.children.push_back(self->slots[i].task);
    }

    static std::coroutine_handle<> child_done(promise_base& p) noexcept {
        auto* slot = static_cast<child_slot*>(p.ctx_);
        children_state* st = slot->state;
        if (st->mode == until::first) {
            if (st->winner == no_winner) {
                st->winner = static_cast<std::size_t>(slot - st->slots);
                st->error = p.exception_;
                st->cancel_children();
            }
        } else if (p.exception_ && !st->error) {
            st->error = p.exception_;
            st->cancel_children();
        }
        if (--st->remaining != 0) return std::noop_coroutine();
        if (st->parent_ctx && st->parent_ctx->point == st) st->parent_ctx->point = nullptr;
        return st->parent;
    }
};

} // namespace coring::detail
