#pragma once

#include <coring/detail/awaitable.hpp>
#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/error.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace coring {

/// Structured concurrency (asyncio.TaskGroup): tasks spawned into a group run concurrently; `co_await join()` waits
/// for all of them. The first failure cancels the others, and join() rethrows it once they have all finished. A child
/// cancelled on its own (through its handle) does not fail the group. Cancelling the task that waits in join()
/// cancels every child and still waits for them.
///
/// Always join a group. A group destroyed with children still running (an exception skipped the join) cancels them;
/// they finish in the background, drained by the loop like any spawned task. Used on the loop's thread only;
/// neither copyable nor movable (the children point to it).
class task_group : detail::cancel_point {
public:
    task_group() noexcept : detail::cancel_point{&detail::cancel_ops_of<&on_cancel>} {}
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group() {
        for (member* m = members_; m;) {
            member* next = m->next;
            m->group = nullptr; // finishes on its own now
            m->prev = m->next = nullptr;
            m->request();
            m = next;
        }
        if (join_ctx_ && join_ctx_->point == this) join_ctx_->point = nullptr;
        // A failure nobody joined must not vanish (the children marked it observed for join() to deliver).
        if (error_ && !error_delivered_) {
            if (detail::current_core) detail::current_core->report(error_);
            else detail::default_exception_report(error_);
        }
    }

    /// Starts `t` in the group (queued on the current loop, like coring::spawn) and returns its handle, which may be
    /// awaited or dropped. Throws std::logic_error once the group has failed or been cancelled (it is shutting down).
    template <class T>
    join_handle<T> spawn(task<T> t, detail::code_site site = detail::code_site::here()) {
        if (failed_ || cancelled_) {
            (void)t.handle(); // refused loudly: not also a never-awaited report in debug mode
            throw std::logic_error("coring: task_group::spawn on a group that is shutting down");
        }
        detail::loop_core& core = detail::require_core("task_group::spawn");
        auto* m = new member; // one small node per child: it outlives the group if the group is not joined
        join_handle<T> h;
        try {
            h = detail::spawn_root(core, std::move(t), m, &member_done, site);
        } catch (...) {
            delete m;
            throw;
        }
        m->group = this;
        m->next = members_;
        if (members_) members_->prev = m;
        members_ = m;
        ++running_;
        return h;
    }

    /// Starts any awaitable coring returns as a task of the group.
    template <detail::awaitable A>
        requires(!detail::is_task_v<std::remove_cvref_t<A>>)
    auto spawn(A&& a, detail::code_site site = detail::code_site::here()) {
        static_assert(!std::is_lvalue_reference_v<A> || std::copy_constructible<std::remove_cvref_t<A>>,
                      "coring::task_group::spawn: pass the awaitable as an rvalue (std::move), the task takes it");
        return spawn(detail::await_owned<std::remove_cvref_t<A>>(std::forward<A>(a)), site);
    }

    /// Cancels every child still running (the group then refuses new ones).
    void cancel() noexcept {
        cancelled_ = true;
        cancel_members();
    }

    /// Children still running.
    [[nodiscard]] std::size_t size() const noexcept { return running_; }

    /// One wait for running_ to reach 0 (join() repeats it: a child may spawn another one before the joiner runs).
    class [[nodiscard]] wait_awaiter {
    public:
        /// A wait on `g`, which must outlive it (join() makes these).
        explicit wait_awaiter(task_group& g) noexcept : g_(g) {}
        bool await_ready() const noexcept { return g_.running_ == 0; }
        template <class P>
        void await_suspend(std::coroutine_handle<P> h) {
            if (g_.joiner_) throw std::logic_error("coring: a task_group can be joined by one task at a time");
            g_.joiner_ = h;
            g_.join_ctx_ = detail::context_of(h);
            if (!g_.join_ctx_) return;
            // Children are part of the waiting task: its cancellation cancels them, and join still waits for them.
            if (g_.join_ctx_->requested) g_.cancel();
            else g_.join_ctx_->point = &g_;
        }
        void await_resume() noexcept {
            if (g_.join_ctx_ && g_.join_ctx_->point == &g_) g_.join_ctx_->point = nullptr;
            if (g_.join_ctx_ && g_.join_ctx_->requested) g_.join_cancelled_ = true;
            g_.joiner_ = {};
            g_.join_ctx_ = nullptr;
        }

    private:
        task_group& g_;
    };

    /// Waits until every child has finished, including children spawned meanwhile; then rethrows the first failure,
    /// or cancelled_error when the joining task was cancelled while it waited (its children were cancelled too).
    /// A join that does not have to wait does not throw cancelled_error (a cancellation is met where a task waits).
    [[nodiscard]] task<> join() {
        join_cancelled_ = false;
        while (running_ > 0) co_await wait_awaiter(*this);
        if (error_) {
            error_delivered_ = true;
            std::rethrow_exception(error_);
        }
        if (join_cancelled_) throw cancelled_error();
    }

private:
    /// A child's membership: its cancellation context, and its link back to the group.
    struct member : detail::cancel_context {
        task_group* group = nullptr;
        member* prev = nullptr;
        member* next = nullptr;
    };

    void cancel_members() noexcept {
        for (member* m = members_; m;) {
            member* next = m->next; // request() never resumes inline, so the list stays as it is
            m->request();
            m = next;
        }
    }

    static void on_cancel(detail::cancel_point* c) noexcept { static_cast<task_group*>(c)->cancel(); }

    /// on_done of a child: leaves the group (reporting a failure), then finishes like any spawned task.
    static std::coroutine_handle<> member_done(detail::promise_base& p) noexcept {
        auto* m = static_cast<member*>(p.ctx_);
        p.ctx_ = &p.own_ctx_; // the node goes away; the task ends as a plain spawned task
        if (task_group* g = m->group) {
            if (m->prev) m->prev->next = m->next;
            else g->members_ = m->next;
            if (m->next) m->next->prev = m->prev;
            --g->running_;
            if (p.exception_ && !g->error_ && !detail::is_cancellation(p.exception_)) {
                g->error_ = p.exception_;
                g->failed_ = true;
                p.set(detail::promise_base::observed); // join() delivers it
                g->cancel_members();
            }
            if (g->running_ == 0 && g->joiner_) detail::current_core->ready.push(g->joiner_);
        }
        delete m;
        return detail::root_done(p);
    }

    member* members_ = nullptr;                  // children still running
    std::size_t running_ = 0;                    // length of members_
    std::exception_ptr error_;                   // the first failure
    std::coroutine_handle<> joiner_{};           // the task waiting in join()
    detail::cancel_context* join_ctx_ = nullptr; // its cancellation context
    bool failed_ = false;                        // a child failed: the others were cancelled
    bool cancelled_ = false;                     // cancel() or the joiner's cancellation
    bool join_cancelled_ = false;                // the joining task was cancelled while it waited
    bool error_delivered_ = false;               // join() rethrew error_
};

} // namespace coring
