#pragma once

#include <coring/detail/cancel.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/sync/event.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <coroutine>
#include <cstddef>
#include <vector>

namespace coring::detail {

/// Spawned tasks whose completion order is recorded, for as_completed() and wait(): each child runs as a root task
/// with a completion hook that appends its index to finished() and sets changed(). The results stay in the children's
/// frames, read through their join_handles.
///
/// Like task_group, each child has a small node of its own (its cancellation context), so that a watch that goes away
/// before its children (detach) leaves them running, or cancelled, without dangling pointers. Loop thread only;
/// neither copied nor moved.
class completion_watch {
public:
    completion_watch() = default;
    completion_watch(const completion_watch&) = delete;
    completion_watch& operator=(const completion_watch&) = delete;
    /// Children still running finish on their own, uncancelled (detach first to cancel them).
    ~completion_watch() { detach(false); }

    /// Starts `t` as child number `index` on the current loop. Throws std::logic_error without a loop (or for an
    /// empty or started task), std::bad_alloc.
    template <class T>
    join_handle<T> spawn(task<T> t, std::size_t index) {
        loop_core& core = require_core("as_completed/wait");
        finished_.reserve(finished_.size() + running_ + 1); // the completion hook must not allocate
        auto* m = new member;
        join_handle<T> h;
        try {
            h = spawn_root(core, std::move(t), m, &member_done);
        } catch (...) {
            delete m;
            throw;
        }
        m->watch = this;
        m->index = index;
        m->next = members_;
        if (members_) members_->prev = m;
        members_ = m;
        ++running_;
        return h;
    }

    /// Indices of the children that have finished, in the order they finished.
    [[nodiscard]] const std::vector<std::size_t>& finished() const noexcept { return finished_; }
    /// Children still running.
    [[nodiscard]] std::size_t running() const noexcept { return running_; }
    /// Set whenever a child finishes; clear it before waiting for the next.
    event& changed() noexcept { return changed_; }

    /// Requests cancellation of every running child (they still finish, and are recorded, as usual).
    void cancel_running() noexcept {
        for (member* m = members_; m; m = m->next) m->request(); // never resumes inline: the list stays as it is
    }
    /// Forgets the running children, cancelling them when `cancel`: they finish as plain spawned tasks.
    void detach(bool cancel) noexcept {
        for (member* m = members_; m;) {
            member* next = m->next;
            m->watch = nullptr;
            m->prev = m->next = nullptr;
            if (cancel) m->request();
            m = next;
        }
        members_ = nullptr;
        running_ = 0;
    }

private:
    struct member : cancel_context {
        completion_watch* watch = nullptr;
        std::size_t index = 0;
        member* prev = nullptr;
        member* next = nullptr;
    };

    static std::coroutine_handle<> member_done(promise_base& p) noexcept {
        auto* m = static_cast<member*>(p.ctx_);
        p.ctx_ = &p.own_ctx_; // the node goes away; the task ends as a plain spawned task
        if (completion_watch* w = m->watch) {
            if (m->prev) m->prev->next = m->next;
            else w->members_ = m->next;
            if (m->next) m->next->prev = m->prev;
            --w->running_;
            w->finished_.push_back(m->index); // reserved in spawn()
            w->changed_.set();
        }
        delete m;
        return root_done(p);
    }

    member* members_ = nullptr; // children still running
    std::size_t running_ = 0;
    std::vector<std::size_t> finished_;
    event changed_;
};

} // namespace coring::detail
