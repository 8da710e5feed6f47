#pragma once

#include <coring/detail/loop_inbox.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <exception>
#include <memory>
#include <stdexcept>
#include <utility>

namespace coring {

namespace detail {

/// A task on its way to another loop: the only allocation spawn_on makes (the task's frame aside).
template <class T>
struct spawn_on_node : remote_item {
    task<T> t;
    code_site site; // the caller's spawn_on, for task dumps

    spawn_on_node(task<T>&& task_, code_site s) noexcept : t(std::move(task_)), site(s) {
        run = &start;
        reject = &drop;
    }

    // Target thread: the task becomes a detached root of this loop (cancelled at its start if the loop drains).
    static void start(remote_item* item) noexcept {
        std::unique_ptr<spawn_on_node> self(static_cast<spawn_on_node*>(item));
        try {
            event_loop::current().spawn(std::move(self->t), self->site).detach();
        } catch (...) {
            require_core("spawn_on").report(std::current_exception());
        }
    }
    // Target thread, the loop closing: the task never started, so its frame is simply destroyed.
    static void drop(remote_item* item) noexcept { delete static_cast<spawn_on_node*>(item); }
};

} // namespace detail

/// Starts `t` on `loop`, detached: the way to hand work to another loop without waiting for it. The task frame made
/// here is first resumed, and finally destroyed, on `loop`'s thread; an exception it ends with goes to that loop's
/// exception handler and its result is discarded. Tasks spawned from one thread to one loop start in order. A loop
/// that is draining (its runtime stops) cancels the task at its start.
///
/// May be called from any thread for a loop of a runtime (runtime::loop), and on a loop's own thread for that loop
/// (then it is coring::spawn, detached). Throws std::runtime_error when `loop` has exited, std::logic_error for a
/// loop that is neither.
template <class T>
void spawn_on(event_loop& loop, task<T> t, detail::code_site site = detail::code_site::here()) {
    if (event_loop::try_current() == &loop) {
        loop.spawn(std::move(t), site).detach();
        return;
    }
    if (!t.handle()) throw std::logic_error("coring: spawn_on: spawning an empty task");
    std::shared_ptr<detail::mailbox> box = detail::inbox_of(loop, "spawn_on");
    auto node = std::make_unique<detail::spawn_on_node<T>>(std::move(t), site);
    if (!box->post(node.get())) throw std::runtime_error("coring: spawn_on: the target loop has exited");
    (void)node.release();
}

} // namespace coring
