#pragma once

#include <coring/detail/runtime_state.hpp>
#include <coring/detail/worker_pool.hpp>
#include <coring/error.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/runtime/runtime_options.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <concepts>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

namespace detail {
/// The CPUs of the calling thread's affinity mask, in order (what runtime's `n == 0` and `pin` follow).
inline std::vector<int> affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0)
        throw std::system_error(errno, std::system_category(), "coring: sched_getaffinity");
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    return cpus;
}
} // namespace detail

/// Several event loops, one per thread (Seastar's and glommio's thread-per-core model): each loop owns its ring, its
/// tasks, its streams and its timers, and the only things that cross loops are messages (run_on, spawn_on).
///
/// The constructor starts the threads, and each builds its loop on its own thread (a ring with SINGLE_ISSUER belongs
/// to the thread that made it); run(fn) then runs fn(i) as a task on loop i. Every loop keeps serving messages until
/// all fn(i) have finished, or until the first failure, stop() or a stop signal: then every loop cancels its tasks and
/// drains them, as coring::run does for one loop, and run() returns or rethrows.
///
/// to_thread() on any of the loops uses one worker pool, shared by them and bounded by runtime_options::loop.
/// worker_threads as a whole; each job comes back to the loop that submitted it.
///
/// Not done yet: a runtime whose loops all wait for each other for ever is not reported as deadlocked (it waits for
/// stop() or a signal).
class runtime {
public:
    /// Starts `n` threads (0: one per CPU of the process's affinity mask) and builds a loop on each. Throws what a
    /// loop's construction threw (std::system_error when io_uring and epoll are both unavailable, ...) after joining
    /// the threads already started, and std::system_error when a thread cannot be started or pinned.
    explicit runtime(std::size_t n = 0, runtime_options options = {}) : opts_(std::move(options)) {
        std::vector<int> cpus = detail::affinity_cpus();
        if (n == 0) n = cpus.empty() ? 1 : cpus.size();
        state_ = std::make_unique<detail::runtime_state>(n);
        pool_ = std::make_shared<detail::worker_pool>(detail::worker_pool::thread_limit(opts_.loop.worker_threads));
        loops_.reset(new std::optional<event_loop>[n]);
        threads_.reserve(n);
        {
            // The loop threads inherit the mask: with the stop signals blocked in all of them, a process-directed stop
            // signal waits for the thread in run(), which reads it through a signalfd.
            sigset_t block = stop_set(), old;
            ::pthread_sigmask(SIG_BLOCK, &block, &old);
            struct restore_mask {
                const sigset_t* old;
                ~restore_mask() { ::pthread_sigmask(SIG_SETMASK, old, nullptr); }
            } restore{&old};
            try {
                for (std::size_t i = 0; i < n; ++i) {
                    const int cpu = opts_.pin && !cpus.empty() ? cpus[i % cpus.size()] : -1;
                    threads_.emplace_back(&runtime::thread_main, this, i, cpu);
                }
            } catch (...) {
                quit_and_join();
                throw;
            }
        }
        std::unique_lock<std::mutex> lock(gate_.mutex);
        gate_.cv.wait(lock, [&] { return gate_.built + gate_.failed == threads_.size(); });
        if (gate_.failed == 0) {
            detail::register_runtime(state_.get());
            return;
        }
        std::exception_ptr e = gate_.error;
        lock.unlock();
        quit_and_join();
        std::rethrow_exception(e);
    }
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;
    /// Without run(): tears the loops down on their threads and joins them. After run(): nothing is left to do.
    ~runtime() {
        quit_and_join();
        detail::unregister_runtime(state_.get());
    }

    /// Runs `fn(i)` as a task on loop i's thread, for every i at once (so `fn` must be callable as const; it lives
    /// until run returns). Returns once every fn(i) has finished and every loop has drained; rethrows the first
    /// exception an fn(i) ended with (cancellation aside), after stopping and draining every loop. Once per runtime.
    /// Throws std::logic_error when called again or from one of the runtime's own loops.
    template <class F>
        requires std::invocable<const F&, std::size_t> &&
            std::same_as<std::invoke_result_t<const F&, std::size_t>, task<>>
    void run(const F& fn) {
        if (detail::current_runtime == state_.get())
            throw std::logic_error("coring: runtime::run called from one of the runtime's own loops");
        if (ran_) throw std::logic_error("coring: runtime::run can be called once per runtime");
        ran_ = true;
        sigset_t block = stop_set(), old;
        ::pthread_sigmask(SIG_BLOCK, &block, &old);
        struct restore_mask {
            const sigset_t* old;
            int fd = -1;
            ~restore_mask() {
                if (fd >= 0) {
                    // Stop signals that came during the drain were part of this stop: consume them rather than let
                    // them take their default action (kill the process) once unblocked.
                    signalfd_siginfo si;
                    while (::read(fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {}
                    ::close(fd);
                }
                ::pthread_sigmask(SIG_SETMASK, old, nullptr);
            }
        } restore{&old};
        if (!opts_.stop_signals.empty()) {
            restore.fd = ::signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC);
            if (restore.fd < 0) throw std::system_error(errno, std::system_category(), "coring: signalfd");
        }
        {
            std::lock_guard<std::mutex> lock(gate_.mutex);
            gate_.fn = &fn;
            gate_.call = [](const void* f, std::size_t i) -> task<> { return (*static_cast<const F*>(f))(i); };
            gate_.command = gate::go;
        }
        gate_.cv.notify_all();
        coordinate(restore.fd);
        for (std::size_t i = 0; i < state_->size; ++i) (void)state_->members[i].box->post(&state_->members[i].exit);
        for (std::thread& t : threads_) t.join();
        threads_.clear();
        if (state_->failure) std::rethrow_exception(state_->failure);
    }

    /// Loop `i`, for run_on and spawn_on. Valid from construction until run() returns (each loop is destroyed when
    /// its thread exits). Throws std::out_of_range.
    [[nodiscard]] event_loop& loop(std::size_t i) {
        if (i >= state_->size) throw std::out_of_range("coring: runtime::loop index out of range");
        return *state_->members[i].loop;
    }
    /// How many loops (threads) the runtime has.
    [[nodiscard]] std::size_t size() const noexcept { return state_->size; }

    /// Any thread, async-signal-safe (an atomic store and an eventfd write): stops the runtime as a stop signal does.
    /// Every loop cancels its tasks and drains them; run() then returns (or rethrows a failure that came first).
    void stop() noexcept {
        state_->stop_requested.store(true);
        state_->poke();
    }

    /// The runtime whose loop runs on the calling thread, or null.
    [[nodiscard]] static runtime* current() noexcept { return current_; }
    /// The index of the calling thread's loop in its runtime. Throws std::logic_error on a thread that is not one of a
    /// runtime's loops.
    [[nodiscard]] static std::size_t index() {
        if (!current_) throw std::logic_error("coring: runtime::index() on a thread that is not a runtime's loop");
        return detail::current_runtime_index;
    }

private:
    /// Start-up hand-shake between the constructor, run() and the loop threads.
    struct gate {
        enum cmd : std::uint8_t { wait, go, quit };
        std::mutex mutex;
        std::condition_variable cv;
        cmd command = wait;
        std::size_t built = 0;  // loops built
        std::size_t failed = 0; // loops whose construction threw
        std::exception_ptr error;
        const void* fn = nullptr;                           // run()'s fn
        task<> (*call)(const void*, std::size_t) = nullptr; // calls it
    };

    sigset_t stop_set() const noexcept {
        sigset_t s;
        ::sigemptyset(&s);
        for (int sig : opts_.stop_signals) ::sigaddset(&s, sig);
        return s;
    }

    void quit_and_join() noexcept {
        {
            std::lock_guard<std::mutex> lock(gate_.mutex);
            if (gate_.command == gate::wait) gate_.command = gate::quit;
        }
        gate_.cv.notify_all();
        for (std::thread& t : threads_)
            if (t.joinable()) t.join();
        threads_.clear();
    }

    /// The coordinator: sleeps until every main has finished, one failed, stop() was called or a stop signal came.
    void coordinate(int signal_fd) {
        detail::runtime_state& s = *state_;
        for (;;) {
            if (s.stop_requested.load() || s.mains_done.load() == s.size || s.failed()) return;
            pollfd fds[2] = {{s.control_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
            const int r = ::poll(fds, signal_fd >= 0 ? 2 : 1, -1);
            if (r < 0 && errno != EINTR) {
                s.fail(std::make_exception_ptr(std::system_error(errno, std::system_category(), "coring: poll")));
                return;
            }
            std::uint64_t count;
            (void)!::read(s.control_fd, &count, sizeof count);
            signalfd_siginfo si;
            while (signal_fd >= 0 && ::read(signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si))
                s.stop_requested.store(true);
        }
    }

    /// Loop thread i: pins itself, builds its loop, waits for run() (or the end), runs its main, drains, and destroys
    /// the loop on its own thread.
    void thread_main(std::size_t i, int cpu) noexcept {
        detail::runtime_member& m = state_->members[i];
        std::optional<event_loop>& slot = loops_[i];
        try {
            if (cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                if (const int e = ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set); e != 0)
                    throw std::system_error(e, std::system_category(),
                                            "coring: pinning a loop thread to CPU " + std::to_string(cpu));
            }
            const std::string name = "coring-loop-" + std::to_string(i);
            ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
            slot.emplace(opts_.loop);
            // One to_thread pool for every loop, so that loop_options::worker_threads bounds the process's threads.
            detail::worker_pool::install(pool_, *slot);
            m.loop = &*slot;
            m.box = slot->remote();
            (void)m.box->set_ring_fd(slot->duplicate_ring_fd()); // before any other loop can post to it
            m.exit.self = &m;
            m.exit.run = &on_exit;
        } catch (...) {
            slot.reset();
            std::lock_guard<std::mutex> lock(gate_.mutex);
            ++gate_.failed;
            if (!gate_.error) gate_.error = std::current_exception();
            gate_.cv.notify_all();
            return;
        }
        std::unique_lock<std::mutex> lock(gate_.mutex);
        ++gate_.built;
        gate_.cv.notify_all();
        gate_.cv.wait(lock, [this] { return gate_.command != gate::wait; });
        const bool go = gate_.command == gate::go;
        lock.unlock();
        if (go) {
            current_ = this;
            detail::current_runtime = state_.get();
            detail::current_runtime_index = i;
            try {
                slot->run(member_main(this, i));
            } catch (...) {
                state_->fail(std::current_exception());
            }
        }
        slot.reset();
        current_ = nullptr;
        detail::current_runtime = nullptr;
    }

    /// The exit item ran: the member's main may return (and its loop drains).
    static void on_exit(detail::remote_item* item) noexcept {
        detail::runtime_member* m = static_cast<detail::runtime_member::exit_item*>(item)->self;
        m->exit_seen = true;
        if (m->exit_waiter) m->loop->schedule(std::exchange(m->exit_waiter, {}));
    }

    struct exit_awaiter {
        detail::runtime_member* m;
        bool await_ready() const noexcept { return m->exit_seen; }
        void await_suspend(std::coroutine_handle<> h) noexcept { m->exit_waiter = h; }
        void await_resume() const noexcept {}
    };

    /// Loop i's main: fn(i) runs as a task of its own while the loop serves messages, until the coordinator says
    /// exit. The inbox read stays armed meanwhile (a loop waiting for messages is not deadlocked).
    static task<> member_main(runtime* rt, std::size_t i) {
        event_loop& loop = event_loop::current();
        loop.remote_begin();
        spawn(member_body(rt, i)).detach();
        co_await exit_awaiter{&rt->state_->members[i]};
        loop.remote_end();
    }

    /// fn(i), reported to the coordinator when it ends.
    static task<> member_body(runtime* rt, std::size_t i) {
        detail::runtime_state& s = *rt->state_;
        try {
            task<> body = rt->gate_.call(rt->gate_.fn, i);
            co_await std::move(body);
        } catch (const cancelled_error&) {
        } catch (...) {
            // A later failure (one loop's main failing while the runtime already stops for another) is not rethrown:
            // report it like a detached task's, so that it is not lost either.
            std::exception_ptr e = std::current_exception();
            if (!s.fail(e)) detail::require_core("runtime").report(e);
        }
        s.mains_done.fetch_add(1);
        s.poke();
    }

    inline static thread_local runtime* current_ = nullptr;

    runtime_options opts_;
    std::unique_ptr<detail::runtime_state> state_;
    std::shared_ptr<detail::worker_pool> pool_;          // to_thread's threads, shared by the loops; joined after them
    std::unique_ptr<std::optional<event_loop>[]> loops_; // loop i lives in loops_[i], built and destroyed by thread i
    std::vector<std::thread> threads_;
    gate gate_;
    bool ran_ = false;
};

/// Runs `fn(i)` on `n` loops, one per thread (0: one per CPU of the affinity mask), and returns when all have
/// finished, or rethrows the first failure after stopping the others (see runtime).
template <class F>
    requires std::invocable<const F&, std::size_t> && std::same_as<std::invoke_result_t<const F&, std::size_t>, task<>>
void run_on_cores(std::size_t n, const F& fn, runtime_options options = {}) {
    runtime rt(n, std::move(options));
    rt.run(fn);
}

} // namespace coring
