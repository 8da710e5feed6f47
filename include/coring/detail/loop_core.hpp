#pragma once

#include <coring/config.hpp>
#include <coring/detail/code_site.hpp>
#include <coring/detail/ready_queue.hpp>
#include <coring/detail/stall_beat.hpp>
#include <coring/detail/timer_queue.hpp>

#include <cxxabi.h>
#include <unistd.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>

namespace coring::detail {

class promise_base;
struct fd_wait_node;

/// The part of the event loop that tasks themselves need: the ready queue, the registry of spawned tasks and the
/// inline-resume budget. Kept apart from event_loop so that task.hpp does not depend on io_uring.
struct loop_core {
    ready_queue ready;                                         // coroutines to resume on this turn or the next
    timer_queue* timers = nullptr;                             // the loop's, so sleeping needs no event_loop.hpp
    promise_base* roots = nullptr;                             // live spawned tasks (intrusive doubly-linked list)
    std::size_t root_count = 0;                                // length of `roots`
    std::uint32_t last_task_id = 0;                            // the id given to the newest spawned task
    std::uintptr_t stack_base = 0;                             // stack position where the loop resumes coroutines
    std::uintptr_t stack_limit = CORING_MAX_INLINE_STACK;      // growth allowed before a transfer bounces (tests: 0)
    bool draining = false;                                     // run() is cancelling its leftovers
    std::function<void(std::exception_ptr)> exception_handler; // reports exceptions of detached tasks
    void (*forget_fd)(void*, int) noexcept = nullptr;          // epoll backend: a descriptor closes or is new
    void* forget_ctx = nullptr;
    fd_wait_node* fd_waits = nullptr; // armed wait_readable/wait_writable/wait_ready (release_fd ends them)
    stall_beat stall;                 // the stall detector's view of the loop (loop_options::slow_callback)
    // The spawned task that finished in a resume the stall detector flagged, and that resume's beat: the stall is
    // blamed on it, since the coroutine that held the loop is gone by the time it is reported.
    std::uint64_t finished_beat = 0;
    std::uint32_t finished_id = 0;
    code_site finished_site{};

    inline void add_root(promise_base& p) noexcept;
    inline void remove_root(promise_base& p) noexcept;
    /// Hands the exception that ended a detached task to the handler (loop_options::exception_handler) or prints it;
    /// `who` names the task for the printed line.
    inline void report(std::exception_ptr e, const std::string& who = {}) noexcept;
};

/// The loop core of the event loop that lives on this thread, if any.
inline thread_local loop_core* current_core = nullptr;

/// The current thread's loop core; throws std::logic_error naming `what` when the thread has no loop.
inline loop_core& require_core(const char* what) {
    if (!current_core) throw std::logic_error(std::string("coring: ") + what + " needs an event_loop on this thread");
    return *current_core;
}

/// Closes a descriptor coring's operations may have used (a socket, a signalfd): on the epoll backend the loop first
/// forgets what it knew about that number, which the next descriptor to get it must not inherit.
inline void close_fd(int fd) noexcept {
    if (loop_core* c = current_core; c && c->forget_fd) c->forget_fd(c->forget_ctx, fd);
    ::close(fd);
}

/// A descriptor coring did not have before (a new socket): on the epoll backend the loop drops any stale state for
/// that number (one closed behind coring's back).
inline void fresh_fd(int fd) noexcept {
    if (loop_core* c = current_core; c && c->forget_fd) c->forget_fd(c->forget_ctx, fd);
}

/// The current stack position (the stack grows down on every platform coring supports).
[[gnu::always_inline]] inline std::uintptr_t stack_position() noexcept {
    return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

/// Symmetric transfer to `h`, bounded: once the stack has grown CORING_MAX_INLINE_STACK bytes below where the loop
/// resumed the chain, `h` is queued instead and the stack unwinds to the loop (H-1 in the pitfalls: no tail call at
/// -O0). Where the compiler does emit the tail call the stack never grows, so this never bounces.
[[gnu::always_inline]] inline std::coroutine_handle<> transfer(std::coroutine_handle<> h) noexcept {
    loop_core* c = current_core;
    if (c && c->stack_base - stack_position() > c->stack_limit) {
        c->ready.push(h);
        return std::noop_coroutine();
    }
    return h;
}

/// A type's name as C++ spells it, from its mangled name (typeid(x).name()); the mangled name if that fails.
inline std::string demangle(const char* mangled) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
    return std::string(status == 0 && s ? s.get() : mangled);
}

/// "std::runtime_error: boom" for any exception, including ones not derived from std::exception.
inline std::string describe_exception(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return demangle(typeid(ex).name()) + ": " + ex.what();
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        return t ? demangle(t->name()) : std::string("unknown exception");
    }
}

/// The default report for an exception that ended a detached task: one line on stderr, naming the task when `who`
/// says which ("task #3 (spawned at server.cpp:41 in serve)").
inline void default_exception_report(std::exception_ptr e, const std::string& who = {}) noexcept {
    try {
        std::fprintf(stderr, "coring: %s ended with an exception: %s\n", who.empty() ? "a detached task" : who.c_str(),
                     describe_exception(e).c_str());
    } catch (...) {
        std::fputs("coring: a detached task ended with an exception\n", stderr);
    }
}

inline void loop_core::report(std::exception_ptr e, const std::string& who) noexcept {
    if (!exception_handler) return default_exception_report(std::move(e), who);
    try {
        exception_handler(e);
    } catch (...) {
        // A throwing handler must not take the loop down; say what happened instead.
        std::fputs("coring: the exception handler threw; the original exception follows\n", stderr);
        default_exception_report(std::move(e), who);
    }
}

} // namespace coring::detail
