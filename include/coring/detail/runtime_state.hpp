#pragma once

#include <coring/detail/mailbox.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

namespace coring {
class event_loop;
}

namespace coring::detail {

struct runtime_state;

/// What the runtime knows about one of its loops. `loop` and `box` are set on the loop's thread before the runtime's
/// constructor returns and never change; the mailbox outlives the loop (closed with it), so that a message to a loop
/// that has exited is refused instead of lost in freed memory.
struct runtime_member {
    event_loop* loop = nullptr;
    std::shared_ptr<mailbox> box;
    // Loop thread only: the coordinator's `exit` item has run, and the member's main task waits for it.
    struct exit_item : remote_item {
        runtime_member* self = nullptr;
    } exit;
    bool exit_seen = false;
    std::coroutine_handle<> exit_waiter{};
};

/// The state the runtime's threads share: the member table, the failure to rethrow, the counters and the control
/// eventfd the coordinator (the thread in runtime::run) sleeps on. Lives in the runtime object, which joins every
/// thread before it goes.
struct runtime_state {
    explicit runtime_state(std::size_t n) : members(new runtime_member[n]), size(n) {
        control_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (control_fd < 0) throw std::system_error(errno, std::system_category(), "coring: eventfd");
    }
    runtime_state(const runtime_state&) = delete;
    runtime_state& operator=(const runtime_state&) = delete;
    ~runtime_state() { ::close(control_fd); }

    std::unique_ptr<runtime_member[]> members;
    std::size_t size;
    int control_fd = -1; // written by loops (a main finished) and stop(); read by the coordinator
    std::atomic<bool> stop_requested{false};
    std::atomic<std::size_t> mains_done{0}; // fn(i) that finished, in any way
    std::mutex failure_mutex;
    std::exception_ptr failure; // the first failure of a main or a loop (not a cancellation)

    /// Any thread, async-signal-safe: wakes the coordinator.
    void poke() noexcept {
        const std::uint64_t one = 1;
        (void)!::write(control_fd, &one, sizeof one);
    }
    /// Records `e` if it is the first failure (true), and wakes the coordinator.
    bool fail(std::exception_ptr e) noexcept {
        bool first = false;
        {
            std::lock_guard<std::mutex> lock(failure_mutex);
            if (!failure) {
                failure = std::move(e);
                first = true;
            }
        }
        poke();
        return first;
    }
    [[nodiscard]] bool failed() noexcept {
        std::lock_guard<std::mutex> lock(failure_mutex);
        return failure != nullptr;
    }
    /// The member whose loop is `l`, or null. Compares addresses only: `l` may be a loop that has exited.
    [[nodiscard]] runtime_member* find(const event_loop* l) const noexcept {
        for (std::size_t i = 0; i < size; ++i)
            if (members[i].loop == l) return &members[i];
        return nullptr;
    }
};

/// The runtimes alive in the process, for spawn_on from a thread that is no loop: their tables keep every member's
/// mailbox until the runtime goes, so a loop that has exited is recognised (by address) and refused, never touched.
struct runtime_registry {
    std::mutex mutex;
    std::vector<runtime_state*> live;
};
inline runtime_registry& runtimes() {
    static runtime_registry r;
    return r;
}
inline void register_runtime(runtime_state* s) {
    std::lock_guard<std::mutex> lock(runtimes().mutex);
    runtimes().live.push_back(s);
}
inline void unregister_runtime(runtime_state* s) noexcept {
    std::lock_guard<std::mutex> lock(runtimes().mutex);
    std::erase(runtimes().live, s);
}
/// The mailbox of `l` if it is (or was) a loop of a live runtime, else null.
inline std::shared_ptr<mailbox> registered_inbox(const event_loop* l) {
    std::lock_guard<std::mutex> lock(runtimes().mutex);
    for (runtime_state* s : runtimes().live)
        if (runtime_member* m = s->find(l)) return m->box;
    return nullptr;
}

/// The runtime whose loop runs on this thread, and that loop's index in it.
inline thread_local runtime_state* current_runtime = nullptr;
inline thread_local std::size_t current_runtime_index = 0;

} // namespace coring::detail
