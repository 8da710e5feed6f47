#pragma once

// Task dumps: what every task of a loop is waiting for (Python 3.14's `asyncio ps` / `pstree`, tokio's task dumps).
// Included at the end of runtime/event_loop.hpp.

#include <coring/detail/promise_base.hpp>
#include <coring/detail/task_trace.hpp>
#include <coring/runtime/event_loop.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace coring {

/// A place in the source: where a task was spawned, or the co_await a coroutine is suspended at.
struct code_location {
    std::string file;     ///< as the compiler spelled it (__FILE__); empty when unknown
    std::string function; ///< the enclosing function (for a co_await: the coroutine)
    unsigned line = 0;    ///< 0 when unknown
};

/// What a task is doing at the moment of a dump.
enum class task_state : std::uint8_t {
    scheduled, ///< queued to run on the next turn (just spawned, or woken and not resumed yet)
    running,   ///< on the stack now: the task that asked for the dump (or a wait coring cannot see, see task_info)
    waiting    ///< suspended on a wait coring knows (an operation, a timer, a lock, a queue, a join, a gather)
};

/// One task of a dump (event_loop::tasks()).
struct task_info {
    std::uint32_t id = 0;  ///< the loop's number for a spawned task, from 1; 0 for a gather's or when_any's child
    code_location spawned; ///< where spawn() (or task_group::spawn, or run()) was called; empty for a child
    task_state state = task_state::running; ///< scheduled, running or waiting at the moment of the dump
    /// The chain of coroutines, outermost first: for each, the co_await it is suspended at (the task's own body,
    /// then each task it awaits in turn). For a running task the last entry is where it last waited. Empty when
    /// the task has not started, or when coring was built with CORING_TASK_TRACE=0.
    std::vector<code_location> awaits;
    /// What the innermost coroutine waits for ("sleep, due in 3.200 s", "mutex::lock", "join task #4", "gather of 2
    /// tasks", "stream::read_awaitable"); empty unless `state` is waiting.
    std::string waiting_for;
    /// Tasks it waits for that were not spawned (the children of a gather or when_any), with their own chains.
    std::vector<task_info> children;
};

namespace detail {

inline code_location to_location(const code_site& s) {
    if (!s.known()) return {};
    return code_location{s.file(), short_function_name(s.function()), s.line()};
}

/// Follows one task's chain of awaits down to its innermost coroutine, and asks the wait there what it is.
inline task_info describe_task(const promise_base& top, const std::unordered_set<const void*>& ready, int depth) {
    // `ready` holds promise addresses.
    task_info t;
    t.id = top.has(promise_base::root) ? top.own_ctx_.id : 0;
    t.spawned = to_location(top.spawn_site_);
    const promise_base* p = &top;
    for (;;) {
        if (p->await_site_.known()) t.awaits.push_back(to_location(p->await_site_));
        // A child that has finished is no longer waited in: its parent is queued to resume (the transfer bounced
        // through the ready queue) and clears the link when it does.
        if (!p->awaiting_ || p->awaiting_->has(promise_base::finished)) break;
        p = p->awaiting_;
    }
    // The innermost coroutine registers its wait as the chain's cancel point, and unregisters it before it resumes:
    // a registered point is a live awaiter.
    const cancel_context* ctx = p->ctx_;
    if (ctx && ctx->point) {
        t.state = task_state::waiting;
        if (ctx->point->ops->describe) {
            wait_note note;
            ctx->point->ops->describe(ctx->point, note);
            t.waiting_for = std::move(note.text);
            // Bounded, in case of a cycle nobody should be able to build.
            if (depth < 64)
                for (const promise_base* c : note.children) t.children.push_back(describe_task(*c, ready, depth + 1));
        } else {
            t.waiting_for = "a wait";
        }
    } else if (ready.count(p) != 0) {
        t.state = task_state::scheduled;
    } else {
        t.state = task_state::running;
    }
    return t;
}

inline const char* state_name(task_state s) noexcept {
    switch (s) {
    case task_state::scheduled:
        return "scheduled";
    case task_state::running:
        return "running";
    case task_state::waiting:
        return "waiting";
    }
    return "?";
}

inline void format_location(std::string& out, const code_location& l) {
    if (l.line == 0) {
        out += "?";
        return;
    }
    out += l.file;
    out += ':';
    out += std::to_string(l.line);
    if (!l.function.empty()) {
        out += " in ";
        out += l.function;
    }
}

inline void format_task(std::string& out, const task_info& t, const std::string& indent) {
    out += indent;
    if (t.id != 0) {
        out += "task #";
        out += std::to_string(t.id);
    } else {
        out += "child task";
    }
    out += " (";
    out += state_name(t.state);
    out += ")";
    if (t.spawned.line != 0) {
        out += " spawned at ";
        format_location(out, t.spawned);
    }
    out += '\n';
    for (const code_location& a : t.awaits) {
        out += indent;
        out += "    at ";
        format_location(out, a);
        out += '\n';
    }
    if (!t.waiting_for.empty()) {
        out += indent;
        out += "    waiting for ";
        out += t.waiting_for;
        out += '\n';
    }
    const std::string inner = indent + "    | ";
    for (const task_info& c : t.children) format_task(out, c, inner);
}

} // namespace detail

/// A task dump as text, one block per task (what dump_tasks prints):
///
///     task #3 (waiting) spawned at server.cpp:41 in serve
///         at server.cpp:60 in handle
///         at server.cpp:22 in read_request
///         waiting for stream::read_awaitable
inline std::string format_tasks(const std::vector<task_info>& tasks) {
    std::string out;
    for (const task_info& t : tasks) detail::format_task(out, t, "");
    return out;
}

/// Prints every task of the calling thread's loop, what it waits for and the chain of awaits that leads there, to
/// `out` (stderr by default), under a header line with the count. Loop thread only; std::logic_error without a loop.
/// See loop_options::dump_on_signal for a dump on SIGUSR1 from outside.
inline void dump_tasks(std::FILE* out = stderr) {
    const std::vector<task_info> tasks = event_loop::current().tasks();
    std::string text = "coring: " + std::to_string(tasks.size()) + (tasks.size() == 1 ? " task" : " tasks") + "\n";
    text += format_tasks(tasks);
    std::fwrite(text.data(), 1, text.size(), out);
    std::fflush(out);
}

inline std::vector<task_info> event_loop::tasks() const {
    check_owner("tasks");
    // The promises of the queued coroutines: where a coring task keeps its promise in a frame (after the two
    // resumption pointers, for any promise aligned to at most 16 bytes; a task of an over-aligned result shows as
    // running when it is queued). A queued coroutine that is no task gives an address no task has.
    std::unordered_set<const void*> ready;
    core_.ready.for_each([&](std::coroutine_handle<> h) {
        ready.insert(&std::coroutine_handle<detail::promise_base>::from_address(h.address()).promise());
    });
    std::vector<task_info> out;
    out.reserve(core_.root_count);
    for (const detail::promise_base* p = core_.roots; p; p = p->next_)
        out.push_back(detail::describe_task(*p, ready, 0));
    return out;
}

} // namespace coring
