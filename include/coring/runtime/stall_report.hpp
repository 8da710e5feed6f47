#pragma once

// The stall detector's report (loop_options::slow_callback): which task held the loop, for how long, and where it
// waits now. Included at the end of runtime/event_loop.hpp; the watchdog is in detail/stall_watch.hpp.

#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/runtime/event_loop.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace coring {

namespace detail {

/// Whether `target` (a promise's address, never dereferenced) is a coroutine of the chain that starts at `top`: the
/// tasks it awaits in turn, and the children of a gather or when_any it waits in. Sets `innermost` to the chain's
/// innermost coroutine.
inline bool chain_holds(const promise_base& top, const void* target, const promise_base*& innermost, int depth) {
    const promise_base* p = &top;
    bool found = false;
    for (;;) {
        found = found || p == target;
        if (!p->awaiting_ || p->awaiting_->has(promise_base::finished)) break;
        p = p->awaiting_;
    }
    innermost = p;
    if (found) return true;
    const cancel_context* ctx = p->ctx_;
    if (depth >= 64 || !ctx || !ctx->point || !ctx->point->ops->describe) return false;
    wait_note note;
    ctx->point->ops->describe(ctx->point, note);
    const promise_base* ignored = nullptr;
    for (const promise_base* c : note.children)
        if (chain_holds(*c, target, ignored, depth + 1)) return true;
    return false;
}

} // namespace detail

inline void event_loop::report_stall(const void* frame, std::uint64_t beat) noexcept {
    using namespace std::chrono;
    ++stats_.stalls;
    const auto now = steady_clock::now();
    if (last_stall_report_.time_since_epoch().count() != 0 && now - last_stall_report_ < seconds(1)) {
        ++unreported_stalls_;
        return;
    }
    try {
        // Pairs with the watchdog's release store of `flagged`, which published `since` (the hot path reads it
        // relaxed: no ordering is needed to see that the beat matches).
        (void)core_.stall.flagged.load(std::memory_order_acquire);
        const auto since = steady_clock::time_point(nanoseconds(core_.stall.since.load(std::memory_order_relaxed)));
        const auto held = duration_cast<milliseconds>(now - since).count();
        // The frame's promise, where a coring task keeps it (see tasks()); only compared, since the frame may be gone.
        const void* promise =
            &std::coroutine_handle<detail::promise_base>::from_address(const_cast<void*>(frame)).promise();
        std::string who;
        std::string now_at;
        for (const detail::promise_base* r = core_.roots; r && who.empty(); r = r->next_) {
            const detail::promise_base* innermost = nullptr;
            if (!detail::chain_holds(*r, promise, innermost, 0)) continue;
            who = detail::task_label(r->own_ctx_.id, r->spawn_site_);
            if (innermost->await_site_.known())
                now_at = "; it now waits at " + detail::site_text(innermost->await_site_);
        }
        if (who.empty() && core_.finished_beat == beat && core_.finished_id != 0) {
            who = detail::task_label(core_.finished_id, core_.finished_site);
            now_at = "; it finished in that resume";
        }
        if (who.empty()) who = "a coroutine coring cannot tie to a live task (one that finished, or coring's own)";
        std::string line = "coring: " + who + " held the loop for at least " + std::to_string(held) +
                           " ms without yielding (loop_options::slow_callback is " +
                           std::to_string(opts_.slow_callback.count()) + " ms)" + now_at;
        if (unreported_stalls_ > 0)
            line += "; " + std::to_string(unreported_stalls_) + " more since the last report, not shown";
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stderr);
    } catch (...) {
        std::fputs("coring: a task held the loop longer than loop_options::slow_callback\n", stderr);
    }
    last_stall_report_ = now;
    unreported_stalls_ = 0;
}

} // namespace coring
