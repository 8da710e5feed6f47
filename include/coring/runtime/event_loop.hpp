#pragma once

#include <coring/detail/epoll_reactor.hpp>
#include <coring/detail/loop_core.hpp>
#include <coring/detail/mailbox.hpp>
#include <coring/detail/op.hpp>
#include <coring/detail/promise_base.hpp>
#include <coring/detail/provided_buffers.hpp>
#include <coring/detail/ring.hpp>
#include <coring/detail/stall_watch.hpp>
#include <coring/detail/timer_queue.hpp>
#include <coring/runtime/loop_options.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/task.hpp>

#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <signal.h>
#include <sys/utsname.h>
#if CORING_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace coring {

class event_loop;
class callback_handle;
class loop_handle;

namespace detail {
/// The event loop of this thread, if any.
inline thread_local event_loop* current_loop = nullptr;

/// CPUs the calling thread may run on (its affinity mask); 1 when that cannot be told.
inline int cpus_available() noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return CPU_COUNT(&set);
}

/// A pause inside a spin: lets the other hyper-thread run and keeps the spin off the memory bus.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}
} // namespace detail

/// Counters an event_loop keeps about itself, for tests, benchmarks and the curious.
struct loop_stats {
    std::uint64_t turns = 0;              ///< passes over the ready queue
    std::uint64_t enters = 0;             ///< io_uring_enter calls, for every reason (epoll: epoll_wait calls)
    std::uint64_t sqes = 0;               ///< SQEs prepared (operations, cancellations, timers; epoll: attempts begun)
    std::uint64_t cqes = 0;               ///< CQEs reaped (epoll: operations ended)
    std::uint64_t sq_full = 0;            ///< times the submission queue was full and flushed before the end of a turn
    std::uint64_t overflow = 0;           ///< times the kernel held overflowed completions that had to be flushed
    std::uint64_t wakes_msg_ring = 0;     ///< other loops woken with IORING_OP_MSG_RING (loop_options::wake)
    std::uint64_t msg_ring_fallbacks = 0; ///< of those, the ones that failed and were sent by eventfd instead
    std::uint64_t inbox_reads =
        0;                    ///< reads armed on the inbox's eventfd (wake-ups by other threads; SQEs among `sqes`)
    std::uint64_t stalls = 0; ///< resumes that held the loop longer than loop_options::slow_callback (reported or not)
    std::uint64_t cached_reads = 0;       ///< file reads served from the page cache on the loop's thread (cached_reads)
    std::uint64_t cached_read_misses = 0; ///< of those tried so, the ones not cached, which then went the usual way
    std::uint64_t remote_spins = 0;       ///< waits for other threads' work that ended while spinning (remote_spin)

    // Gauges: what stands now, when stats() was called.
    std::size_t in_flight = 0;      ///< operations whose final completion has not arrived (event_loop::in_flight())
    std::size_t timers = 0;         ///< timers armed: sleepers, timeouts, call_later callbacks
    std::size_t tasks = 0;          ///< spawned tasks that have not finished (event_loop::task_count())
    std::size_t ready = 0;          ///< coroutines queued to run on the next turn
    std::size_t remote_pending = 0; ///< work handed to other threads (to_thread jobs, run_on calls) not back yet
};

struct task_info;

/// The event loop (asyncio's event loop): one io_uring and the tasks it drives, on one thread.
///
/// Each turn resumes the coroutines that were ready when it began, then makes one io_uring_enter that submits
/// everything they prepared and reaps completions in bulk (waiting, when nothing is ready, until the first completion
/// or the earliest timer). Timers live in user space; the kernel only ever sees one wait deadline.
///
/// Where io_uring cannot be set up (a seccomp filter, kernel.io_uring_disabled, an old kernel) the loop runs on epoll
/// instead, with the same API and semantics, and says why once on stderr (see loop_options::backend, backend()).
///
/// One loop per thread, used only on that thread. Leaving run() and destroying the loop cancel every task still running
/// and wait until they and every operation have finished (see loop_options::shutdown_timeout). Not fork-safe: a forked
/// child must not touch it.
class event_loop {
public:
    /// Sets up the ring, or epoll (see loop_options::backend). Throws std::system_error (io_uring unavailable when
    /// it was required, with the reason; epoll_create1 failed), std::logic_error (this thread already has a loop) or
    /// std::invalid_argument (bad options, a CORING_BACKEND value that names no backend).
    explicit event_loop(loop_options options = {})
        : claim_(), opts_(std::move(options)), owner_(std::this_thread::get_id()) {
        open_backend();
        use_ext_arg_ = ring_ && opts_.wait_timeout_arg && (ring_->features() & IORING_FEAT_EXT_ARG);
        core_.exception_handler = opts_.exception_handler;
        core_.timers = &timers_;
        if (opts_.slow_callback.count() > 0) {
            core_.stall.threshold = opts_.slow_callback;
            stall_registration_.emplace(core_.stall);
        }
        msg_ring_wakes_ = wakes_by_msg_ring();
        spin_ = opts_.remote_spin.count() > 0 && detail::cpus_available() > 1;
        detail::current_core = &core_;
        detail::current_loop = this;
        core_slot_ = &detail::current_core;
        loop_slot_ = &detail::current_loop;
    }
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;

    /// Cancels and drains what is left (bounded by loop_options::shutdown_timeout), then closes the ring.
    ~event_loop() {
        if (std::this_thread::get_id() == owner_) {
            try {
                if (!drain()) leak_leftovers();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "coring: error while shutting the event loop down: %s\n", e.what());
                leak_leftovers();
            }
        } else {
            std::fputs("coring: an event_loop was destroyed on a thread other than its own\n", stderr);
            leak_leftovers();
        }
        // Nothing posted from now on runs: a later post() fails, and what was posted but not run is rejected.
        if (remote_) reject_remote_items();
        // Newest first, after the drain: the worker pool joins (or lets a stuck worker finish on its own).
        while (!services_.empty()) services_.pop_back();
        // Streams that outlive the loop keep their receivers, now without a loop; what the kernel still holds (a
        // failed drain) is never freed.
        while (detail::standing_op* op = standing_.front()) {
            standing_.erase(op);
            op->loop = nullptr;
        }
        if (rx_bufs_ && inflight_ > 0) rx_bufs_->leak();
        if (reactor_) {
            // Nothing is in a kernel on epoll: a read still parked (a failed drain) is simply taken off its descriptor.
            if (reactor_->unpark(reader_.get())) reader_->state_ = detail::op_base::state::completed;
            core_.forget_fd = nullptr;
        }
        if (reader_->in_kernel()) {
            // The kernel may still write the eventfd count into it: never free it (B-8).
#if CORING_ASAN
            __lsan_ignore_object(reader_.get());
#endif
            (void)reader_.release();
        }
        // Through the owner thread's own slots, so that a loop destroyed elsewhere does not stay "current" there.
        if (*loop_slot_ == this) {
            *loop_slot_ = nullptr;
            *core_slot_ = nullptr;
        }
    }

    /// The loop of the calling thread. Throws std::logic_error when there is none.
    static event_loop& current() {
        if (!detail::current_loop) throw std::logic_error("coring: no event_loop on this thread");
        return *detail::current_loop;
    }
    /// The loop of the calling thread, or null.
    static event_loop* try_current() noexcept { return detail::current_loop; }

    /// Runs `main` to completion (asyncio's run_until_complete), then cancels and drains every task it left running,
    /// and returns main's value or rethrows its exception. Throws std::runtime_error when main can never finish
    /// (nothing ready, nothing in flight, no timer) and std::logic_error when called from inside the loop.
    template <class T>
    T run(task<T> main, detail::code_site site = detail::code_site::here());

    /// Queues `t` on this loop (see coring::spawn); usable before run().
    template <class T>
    join_handle<T> spawn(task<T> t, detail::code_site site = detail::code_site::here()) {
        check_owner("spawn");
        return detail::spawn_root(core_, std::move(t), nullptr, nullptr, site);
    }

    /// Calls `fn()` on this loop soon, after the tasks that are ready now (asyncio's call_soon). Returns a handle
    /// that can cancel the call. An exception `fn` throws goes to the exception handler. Loop thread only; the call
    /// is a small task of its own (one frame, no other allocation). Defined in runtime/callbacks.hpp.
    template <class F>
    callback_handle call_soon(F&& fn);
    /// Calls `fn()` on this loop after `delay` (asyncio's call_later); zero or negative: on the next timer pass. No
    /// kernel object: a timer in the loop's queue, like sleep().
    template <class Rep, class Period, class F>
    callback_handle call_later(std::chrono::duration<Rep, Period> delay, F&& fn);
    /// Calls `fn()` on this loop at `when` (asyncio's call_at; compare with time()). Time points of other clocks are
    /// converted once, now.
    template <class Clock, class Duration, class F>
    callback_handle call_at(std::chrono::time_point<Clock, Duration> when, F&& fn);
    /// Calls `fn()` on this loop, from any thread (asyncio's call_soon_threadsafe): the way for a thread coring did
    /// not start (a library's callback thread) to hand a result to the loop, e.g. by setting a promise. On the loop's
    /// own thread it is call_soon. From another thread the loop must belong to a runtime (coring::runtime or
    /// run_on_cores, whose loops always listen to other threads); for any other loop (coring::run's, a plain
    /// event_loop) call through a loop_handle taken on the loop's thread (handle()), since without one the loop may be
    /// asleep with nobody to wake it: std::logic_error. One allocation; `fn` runs at the top of a turn; if the loop
    /// goes away first, `fn` is destroyed uncalled. Throws std::runtime_error when the loop has exited.
    template <class F>
    void call_soon_threadsafe(F&& fn);
    /// A handle through which any thread may call into this loop (loop_handle::call_soon_threadsafe), tokio's
    /// runtime::Handle. While a copy of it lives, the loop listens to other threads: a task waiting for such a call is
    /// waiting, not deadlocked. Loop thread only; defined in runtime/loop_handle.hpp.
    [[nodiscard]] loop_handle handle();
    /// The loop's clock (asyncio's loop.time()): steady_clock::now(), the clock of call_at and sleep_until.
    [[nodiscard]] static std::chrono::steady_clock::time_point time() noexcept { return detail::clock::now(); }

    /// Replaces the handler for exceptions that end detached tasks; an empty function restores the default.
    void set_exception_handler(std::function<void(std::exception_ptr)> handler) {
        core_.exception_handler = std::move(handler);
    }

    /// The backend this loop runs on: backend::io_uring or backend::epoll.
    [[nodiscard]] coring::backend backend() const noexcept {
        return reactor_ ? coring::backend::epoll : coring::backend::io_uring;
    }
    /// The IORING_SETUP_* flags the kernel accepted (0 on epoll).
    [[nodiscard]] unsigned setup_flags() const noexcept { return ring_ ? ring_->setup_flags() : 0; }
    /// The IORING_FEAT_* flags the kernel reported (0 on epoll).
    [[nodiscard]] unsigned features() const noexcept { return ring_ ? ring_->features() : 0; }
    /// Whether the loop can perform an IORING_OP_* opcode: probed once at construction on io_uring; on epoll, the
    /// socket operations it performs itself (file operations then run on the worker pool, as on an old kernel).
    [[nodiscard]] bool supports(unsigned opcode) const noexcept {
        if (ring_) return ring_->supports(opcode);
        if (detail::epoll_reactor::performs(opcode)) {
            for (unsigned op : opts_.unsupported_opcodes)
                if (op == opcode) return false;
            return true;
        }
        return false;
    }
    /// Counters about the loop's work so far, and gauges of what stands now (asyncio has no equivalent; tokio's
    /// RuntimeMetrics). A snapshot: call again for fresh figures.
    [[nodiscard]] loop_stats stats() const noexcept {
        loop_stats s = stats_;
        s.in_flight = inflight_;
        s.timers = timers_.size();
        s.tasks = core_.root_count;
        s.ready = core_.ready.size();
        s.remote_pending = remote_expected_;
        return s;
    }
    /// Every spawned task that has not been freed, newest first, with where it was spawned, its state and the chain of
    /// awaits it is suspended in (see coring::dump_tasks, which prints this). Loop thread only. Defined in
    /// runtime/task_dump.hpp.
    [[nodiscard]] std::vector<task_info> tasks() const;
    /// Spawned tasks that have not finished yet.
    [[nodiscard]] std::size_t task_count() const noexcept { return core_.root_count; }
    /// Operations (and cancellations, the loop's own timer and streams' standing multishot receives) whose final
    /// completion has not arrived yet.
    [[nodiscard]] std::size_t in_flight() const noexcept { return inflight_; }
    /// The options the loop was made with.
    [[nodiscard]] const loop_options& options() const noexcept { return opts_; }

    // ---- The interface coring's awaitables use; not meant for applications. ----

    /// The provided-buffer ring multishot receives share, registered on first use; null when the kernel (or
    /// loop_options::multishot_receive) says no.
    detail::provided_buffers* receive_buffers() noexcept {
        if (!rx_tried_) {
            rx_tried_ = true;
            if (ring_ && opts_.multishot_receive && supports(IORING_OP_RECV)) {
                auto b = std::unique_ptr<detail::provided_buffers>(new (std::nothrow) detail::provided_buffers(
                    ring_->get(), opts_.receive_buffers, opts_.receive_buffer_size));
                if (b && b->usable()) rx_bufs_ = std::move(b);
            }
        }
        return rx_bufs_.get();
    }
    /// Lists an operation that stays in the kernel between awaits (see detail::standing_op).
    void add_standing(detail::standing_op* op) noexcept {
        op->loop = this;
        standing_.push(op);
    }
    /// Takes a listed operation off that list (its owner no longer needs the loop to stop it).
    void remove_standing(detail::standing_op* op) noexcept { standing_.erase(op); }

    /// For an operation that can be done by a system call that never blocks (a file read served from the page
    /// cache, loop_options::cached_reads): whether doing it now, on the loop's thread, is better than submitting it.
    /// True when it would be the only operation of the turn (nothing else is ready to run or waiting to be
    /// submitted, so there is no batch to join) and the task being resumed has inline budget left, which this takes
    /// one of: a task whose calls always succeed at once still gives way to timers and completions every 32 of them.
    [[nodiscard]] bool take_lone_inline() noexcept {
        if (inline_budget_ == 0 || !core_.ready.empty() || !pending_.empty()) return false;
        if (ring_ && io_uring_sq_ready(ring_->get()) != 0) return false;
        --inline_budget_;
        return true;
    }
    /// Counts a file read that take_lone_inline() let run on the loop's thread: served (`hit`) or not (EAGAIN).
    void count_cached_read(bool hit) noexcept { ++(hit ? stats_.cached_reads : stats_.cached_read_misses); }

    /// Queues a coroutine to be resumed on this turn's successor.
    void schedule(std::coroutine_handle<> h) {
        check_owner("schedule");
        core_.ready.push(h);
    }

    /// Starts an operation: prepares its SQE now, or queues it when the submission queue is full and cannot be
    /// flushed. Never fails and never drops it.
    void start(detail::op_base* op) noexcept {
        if (reactor_) [[unlikely]]
            return epoll_start(op);
        if (pending_.empty())
            if (io_uring_sqe* sqe = get_sqe()) return submit_to(op, sqe);
        op->state_ = detail::op_base::state::queued;
        pending_.push_back(op);
    }

    /// Asks for an operation to end early. Its own CQE still ends it (see op_base); a queued one ends at once.
    /// The cancel request is queued like any operation when no SQE is free, never dropped.
    void cancel(detail::op_base* op) noexcept {
        using st = detail::op_base::state;
        if (op->state_ == st::queued) {
            pending_.erase(op);
            op->state_ = st::completed;
            op->complete_(op, -ECANCELED, 0);
        } else if (op->state_ == st::submitted) {
            if (reactor_) [[unlikely]] {
                // Parked on its descriptor: it leaves before any system call, having done nothing.
                if (reactor_->unpark(op)) epoll_done(this, op, -ECANCELED);
                return;
            }
            if (pending_.empty())
                if (io_uring_sqe* sqe = get_sqe()) return send_cancel(op, sqe);
            op->state_ = st::cancel_queued;
            pending_.push_back(op);
        }
    }

    /// Cancels a submitted operation before returning (IORING_REGISTER_SYNC_CANCEL, Linux 6.0), submitting what the
    /// turn prepared first so that the operation is in the kernel to be found: true when the kernel no longer runs it
    /// (it holds none of its files any more; its final CQE is still to be reaped as usual). False on epoll, on older
    /// kernels, or when the kernel did not find it or could not stop it within 100 ms: then use cancel().
    bool cancel_now(detail::op_base* op) noexcept {
        if (!ring_ || op->state_ != detail::op_base::state::submitted || !pending_.empty()) return false;
        try {
            if (io_uring_sq_ready(ring_->get()) > 0) enter(ring_->flush_sq(), 0, 0, nullptr);
        } catch (const std::system_error&) {
            return false;
        }
        io_uring_sync_cancel_reg reg{};
        reg.addr = reinterpret_cast<std::uint64_t>(op);
        reg.timeout.tv_nsec = 100'000'000;
        if (io_uring_register_sync_cancel(ring_->get(), &reg) != 0) return false;
        // A request parked on readiness (an accept, a receive) ends through task work, which frees it and puts its
        // file: run it now (a DEFER_TASKRUN ring runs it only inside io_uring_enter with GETEVENTS).
        try {
            enter(0, 0, IORING_ENTER_GETEVENTS, nullptr);
        } catch (const std::system_error&) {}
        return true;
    }

    /// Arms a timer: its `fire` is called once its deadline has passed. May throw std::bad_alloc.
    void add_timer(detail::timer_node* n) { timers_.insert(n); }
    /// Disarms a timer; nothing happens if it is not armed (it fired already, or was never added).
    void remove_timer(detail::timer_node* n) noexcept { timers_.remove(n); }

    /// The loop's inbox for other threads (see detail::mailbox), created on first use. Loop thread only.
    const std::shared_ptr<detail::mailbox>& remote() {
        if (!remote_) {
            remote_ = std::make_shared<detail::mailbox>();
            detail::fresh_fd(remote_->fd()); // epoll: no state left from an earlier descriptor with this number
        }
        return remote_;
    }
    /// Loop thread, before handing work to another thread: one more remote_item will be posted. While any is expected
    /// the loop keeps a read armed on the inbox's eventfd, and waits for it instead of reporting a deadlock.
    void remote_begin() {
        (void)remote();
        ++remote_expected_;
        arm_reader();
    }
    /// Loop thread: an expected remote_item arrived (called from its run()) or will never come (its job was withdrawn
    /// before it started).
    /// The inbox's read stays armed until the loop would wait (retire_reader).
    void remote_end() noexcept { --remote_expected_; }
    /// Loop thread: a loop_handle now exists (listen_begin) or the last copy of one is gone (listen_end). Unlike an
    /// expected item, a handle is not work run() must wait for: a drain stops listening, and the next run() resumes.
    void listen_begin() {
        (void)remote();
        ++listeners_;
        if (reader_wanted()) arm_reader();
    }
    /// Loop thread: the last copy of a loop_handle is gone (see listen_begin); the inbox's read is cancelled, unless
    /// something else still needs it, when the loop next would wait (retire_reader).
    void listen_end() noexcept { --listeners_; }

    /// For a loop of a runtime: a duplicate of its ring's descriptor, for other loops' MSG_RING wake-ups (-1 on
    /// epoll, or when the kernel has no MSG_RING, or the duplicate cannot be made).
    [[nodiscard]] int duplicate_ring_fd() const noexcept {
        if (!ring_ || !ring_->supports(IORING_OP_MSG_RING)) return -1;
        return ::fcntl(ring_->fd(), F_DUPFD_CLOEXEC, 0);
    }

    /// A loop-thread service created on first use and destroyed after the loop has drained (the to_thread worker
    /// pool): `Service` is constructed from (const loop_options&, const std::shared_ptr<detail::mailbox>&), unless
    /// one was given with use_service.
    template <class Service>
    Service& service() {
        for (auto& [k, s] : services_)
            if (k == service_key<Service>()) return *static_cast<Service*>(s.get());
        services_.emplace_back(service_key<Service>(), std::make_shared<Service>(opts_, remote()));
        return *static_cast<Service*>(services_.back().second.get());
    }
    /// Makes `s` this loop's `Service` (a runtime's worker pool, shared by its loops), before the loop makes one of
    /// its own. The loop drops its reference after it drained, as for its own services. Throws std::logic_error when
    /// the loop already has one.
    template <class Service>
    void use_service(std::shared_ptr<Service> s) {
        for (auto& entry : services_)
            if (entry.first == service_key<Service>())
                throw std::logic_error("coring: event_loop::use_service: the loop already has this service");
        services_.emplace_back(service_key<Service>(), std::move(s));
    }

private:
    template <class Service>
    static const void* service_key() noexcept {
        static constexpr char key = 0; // one address per Service type
        return &key;
    }

    // user_data values that are not op_base pointers (those are 8-aligned, so the low 3 bits are free).
    static constexpr std::uint64_t tag_mask = 7;
    static constexpr std::uint64_t tag_ignore = 1; // cancel and timer-remove CQEs: informational only
    static constexpr std::uint64_t tag_timer = 2;  // the loop's own IORING_OP_TIMEOUT (no EXT_ARG), generation above
    static constexpr std::uint64_t tag_wake = 3;   // a MSG_RING wake-up from another loop: the mailbox says the rest
    static constexpr std::uint64_t tag_wake_failed = 4; // our MSG_RING to the mailbox above failed (skip on success)

    /// Whether this loop sends MSG_RING wake-ups (loop_options::wake, CORING_CROSS_WAKE).
    [[nodiscard]] bool wakes_by_msg_ring() const {
        if (!ring_ || !ring_->supports(IORING_OP_MSG_RING)) return false;
        cross_wake w = opts_.wake;
        if (w == cross_wake::automatic) w = detail::cross_wake_from_environment();
        if (w == cross_wake::automatic)
            // Before 6.2 a MSG_RING to a DEFER_TASKRUN ring posted its completion from the sender's context, and
            // wake-ups were reported lost (axboe/liburing#839, 6.1).
            return !detail::kernel_older_than(6, 2);
        return w == cross_wake::msg_ring;
    }
    /// Queues a MSG_RING wake-up of `target` on this loop's ring (the sender's own ring: SINGLE_ISSUER holds).
    bool send_wake(detail::mailbox& target, int ring_fd) noexcept {
        const auto box = reinterpret_cast<std::uintptr_t>(&target);
        if (box & tag_mask) return false;
        io_uring_sqe* sqe = get_sqe();
        if (!sqe) return false;
        // Keep the target's mailbox (and its ring descriptor) alive until a failure completion could name it.
        bool known = false;
        for (const auto& t : wake_targets_) known = known || t.get() == &target;
        if (!known) {
            try {
                wake_targets_.push_back(target.shared_from_this());
            } catch (...) {
                io_uring_prep_nop(sqe); // the SQE is taken: make it harmless
                sqe->user_data = tag_ignore;
                return false;
            }
        }
        io_uring_prep_msg_ring(sqe, ring_fd, 0, tag_wake, 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        sqe->user_data = box | tag_wake_failed;
        ++stats_.sqes;
        ++stats_.wakes_msg_ring;
        return true;
    }
    /// Submits the MSG_RING wake-ups queued since the last enter, without waiting: a loop that leaves run() must not
    /// keep them (another loop sleeps until they arrive).
    void submit_wakes() noexcept {
        if (!ring_ || io_uring_sq_ready(ring_->get()) == 0) return;
        ++stats_.enters;
        (void)ring_->enter(ring_->flush_sq(), 0, IORING_ENTER_GETEVENTS, nullptr);
        // A MSG_RING refused at submission (EBADFD, a full CQ) posts its failure at once: fall back to the eventfd
        // now, not at the next run(), which may never come. Completions reaped here queue their tasks as usual.
        reap();
    }
    struct msg_ring_waker final : detail::cross_waker {
        event_loop* loop;
        explicit msg_ring_waker(event_loop* l) noexcept : loop(l) {}
        bool msg_ring(detail::mailbox& target, int ring_fd) noexcept override {
            return loop->send_wake(target, ring_fd);
        }
    };

    /// Refuses a second loop on a thread before any ring is created; released once the loop is fully built.
    struct thread_claim {
        thread_claim() {
            if (detail::current_core)
                throw std::logic_error("coring: this thread already has an event_loop (one per thread)");
        }
    };

    /// CORING_CHECKS: the loop's queues belong to its thread; another thread must go through its mailbox.
    void check_owner(const char* what) const {
        if constexpr (detail::checks)
            if (std::this_thread::get_id() != owner_)
                detail::throw_sharing_violation(
                    detail::str_cat("event_loop::", what, " from a thread other than the loop's own"));
    }
    template <class Pred>
    bool run_until(Pred&& done);
    void run_ready();
    /// The stall detector's report, after a resume of `frame` the watchdog flagged (runtime/stall_report.hpp).
    [[gnu::cold]] void report_stall(const void* frame, std::uint64_t beat) noexcept;
    bool poll(bool block);
    bool poll_epoll();
    void open_backend();
    void epoll_start(detail::op_base* op) noexcept {
        // An io_op may be performed right here (its awaiter then does not suspend), within a budget per resumed
        // task so that a stream that is always ready cannot keep one task running for ever; others, and io_ops over
        // budget, are performed at the end of the turn, as io_uring would.
        if (op->inline_ok_ && inline_budget_ > 0) {
            --inline_budget_;
            return epoll_perform(op);
        }
        op->state_ = detail::op_base::state::queued;
        pending_.push_back(op);
    }
    void epoll_perform(detail::op_base* op) noexcept {
        op->state_ = detail::op_base::state::submitted;
        ++stats_.sqes;
        const int r = reactor_->perform(op);
        if (r == detail::epoll_reactor::parked) {
            ++inflight_;
            return;
        }
        op->state_ = detail::op_base::state::completed;
        ++stats_.cqes;
        op->complete_(op, r, 0);
    }
    /// A parked operation ended (retried after an edge, cancelled, or its descriptor closed).
    static void epoll_done(void* self, detail::op_base* op, int res) noexcept {
        auto* l = static_cast<event_loop*>(self);
        --l->inflight_;
        ++l->stats_.cqes;
        op->state_ = detail::op_base::state::completed;
        op->complete_(op, res, 0);
    }
    static void epoll_forget(void* self, int fd) noexcept { static_cast<event_loop*>(self)->reactor_->forget(fd); }
    void wait(detail::clock::time_point deadline);
    /// Whether the loop, about to sleep, waits for work out on other threads and for nothing else but timers: no
    /// operation of its own in flight or queued but the inbox's read. A loop that also waits for a socket never spins:
    /// its completions would wait for the spin to end.
    [[nodiscard]] bool waits_only_for_remote() const noexcept {
        if (!spin_ || remote_expected_ == 0 || !pending_.empty()) return false;
        return inflight_ - own_ops() == (reader_->armed ? 1u : 0u);
    }
    /// Watches the inbox for up to loop_options::remote_spin, never past the earliest timer or the drain's deadline;
    /// true when something arrived (loop_stats::remote_spins).
    bool spin_for_remote() noexcept {
        auto until = std::min(detail::clock::now() + opts_.remote_spin, drain_deadline_);
        if (!timers_.empty()) until = std::min(until, timers_.earliest());
        do {
            for (int i = 0; i < 64; ++i) {
                if (remote_->has_posted()) {
                    ++stats_.remote_spins;
                    return true;
                }
                detail::cpu_relax();
            }
        } while (detail::clock::now() < until);
        return false;
    }
    void enter(unsigned to_submit, unsigned min_complete, unsigned flags, const __kernel_timespec* ts);
    void reap();
    void dispatch(std::uint64_t user_data, int res, unsigned flags) noexcept;
    void fire_timers();
    void submit_pending() noexcept;
    bool arm_kernel_timer(detail::clock::time_point deadline) noexcept;
    void disarm_kernel_timer() noexcept;
    bool drain();
    void warn_unfinished() const noexcept;
    /// In-flight SQEs that are the loop's own bookkeeping rather than work: the armed wait timer.
    [[nodiscard]] std::size_t own_ops() const noexcept { return timer_armed_ ? 1 : 0; }
    void leak_leftovers() noexcept;

    io_uring_sqe* get_sqe() noexcept {
        if (io_uring_sqe* sqe = io_uring_get_sqe(ring_->get())) return sqe;
        // Full: flush what is queued and retry. Submission only, no GETEVENTS, so that no completion runs
        // here; an error from this enter shows up again on the loop's own enter, where it is handled.
        ++stats_.sq_full;
        ++stats_.enters;
        (void)ring_->enter(ring_->flush_sq(), 0, 0, nullptr);
        return io_uring_get_sqe(ring_->get());
    }
    void submit_to(detail::op_base* op, io_uring_sqe* sqe) noexcept {
        op->prep_(op, sqe);
        sqe->user_data = reinterpret_cast<std::uint64_t>(op);
        op->state_ = detail::op_base::state::submitted;
        ++inflight_;
        ++stats_.sqes;
    }
    void send_cancel(detail::op_base* op, io_uring_sqe* sqe) noexcept {
        io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(op), 0);
        sqe->user_data = tag_ignore;
        op->state_ = detail::op_base::state::cancelling;
        ++inflight_;
        ++stats_.sqes;
    }

    thread_claim claim_;                             // first member: checked before the ring exists
    loop_options opts_;                              // as given
    std::optional<detail::ring> ring_;               // the io_uring, unless the loop runs on epoll
    std::unique_ptr<detail::epoll_reactor> reactor_; // the epoll backend, when the loop runs on it
    std::thread::id owner_;                          // the only thread that may use the loop
    detail::loop_core** core_slot_ = nullptr;        // the owner thread's current_core and current_loop
    event_loop** loop_slot_ = nullptr;
    detail::loop_core core_;       // ready queue, spawned tasks
    detail::timer_queue timers_;   // every sleeper and deadline
    detail::pending_list pending_; // operations and cancellations waiting for an SQE
    std::size_t inflight_ = 0;     // SQEs whose final CQE has not been reaped
    loop_stats stats_;
    std::optional<detail::stall_registration> stall_registration_; // with the watchdog, while slow_callback > 0
    std::chrono::steady_clock::time_point last_stall_report_{};    // for one line per second at most
    std::uint64_t unreported_stalls_ = 0;                          // since that line
    bool use_ext_arg_ = false;                                     // wait deadlines go to io_uring_enter directly
    unsigned inline_budget_ = 0; // operations the task being resumed may still complete without suspending
    bool spin_ = false;          // loop_options::remote_spin applies (and the thread may run on more than one CPU)
    bool running_ = false;       // inside run()

    /// The read the loop keeps armed on the remote inbox's eventfd while remote work is expected.
    struct inbox_reader : detail::op_base {
        event_loop* loop;
        std::uint64_t count = 0; // the eventfd's counter, read by the kernel
        bool armed = false;
        explicit inbox_reader(event_loop* l) noexcept : op_base(&prep, &complete), loop(l) {}
        static void prep(detail::op_base* op, io_uring_sqe* sqe) noexcept {
            auto* r = static_cast<inbox_reader*>(op);
            io_uring_prep_read(sqe, r->loop->remote_->fd(), &r->count, sizeof r->count, 0);
        }
        // Only notes the wake-up: the items run at the top of the next turn (run_remote_items, which also re-arms the
        // read), never from inside reap(), since an item may do anything a task does (cancel a sleeper, start an
        // operation) and the turn's reap and timer pass must not have their state changed under them.
        static void complete(detail::op_base* op, int, unsigned) noexcept {
            static_cast<inbox_reader*>(op)->armed = false;
        }
    };
    /// Stops the standing operations once no task is left to read what they would deliver (drain).
    void stop_standing() noexcept {
        for (detail::standing_op* op = standing_.front(); op; op = op->next_standing)
            if (op->current_state() == detail::op_base::state::submitted) cancel(op);
        // A queued one completes (and may unlist itself) inside cancel(): restart after each.
        for (detail::standing_op* op = standing_.front(); op;) {
            detail::standing_op* next = op->next_standing;
            if (op->current_state() == detail::op_base::state::queued) {
                cancel(op);
                next = standing_.front();
            }
            op = next;
        }
    }
    /// At the top of every turn: runs what other threads posted, at most remote_batch items (the rest next turn, and
    /// the turn does not block meanwhile, so that a flood of posts cannot starve local I/O), oldest first. With
    /// nothing posted this is one null check and one load.
    void run_remote_items() noexcept {
        if (!remote_) return;
        if (!remote_backlog_) remote_backlog_ = remote_->take_all();
        for (std::size_t n = remote_batch; remote_backlog_ && n > 0; --n) {
            detail::remote_item* item = remote_backlog_;
            remote_backlog_ = item->next; // run() may end the item's lifetime
            item->run(item);
        }
        if (reader_wanted()) arm_reader();
    }
    /// Whether the inbox read should be armed: an expected item is on its way, or a loop_handle may call in (while a
    /// drain has tasks left: it must not wait for a handle that may never be dropped once they are gone).
    [[nodiscard]] bool reader_wanted() const noexcept {
        return remote_expected_ > 0 || (listeners_ > 0 && (!core_.draining || core_.root_count > 0));
    }
    /// Cancels the inbox read once nothing wants it. Only when the loop is about to wait or leaves run(), not when the
    /// last expected item arrives: a task that hands job after job to another thread then keeps one read armed
    /// instead of cancelling and re-arming it per job (two SQEs, and a cancellation in flight is an operation of its
    /// own, which kept waits_only_for_remote false and made the loop sleep rather than spin).
    void retire_reader() noexcept {
        if (reader_->armed && !reader_wanted()) [[unlikely]]
            cancel(reader_.get());
    }
    void arm_reader() noexcept {
        if (reader_->armed) return;
        reader_->armed = true;
        ++stats_.inbox_reads;
        start(reader_.get());
    }
    /// At destruction: closes the inbox and hands whatever will now never run to its reject hook.
    void reject_remote_items() noexcept {
        auto reject_all = [](detail::remote_item* item) noexcept {
            while (item) {
                detail::remote_item* next = item->next;
                if (item->reject) item->reject(item);
                item = next;
            }
        };
        reject_all(std::exchange(remote_backlog_, nullptr));
        reject_all(remote_->close());
    }
    /// Whether the loop must not block now: posted items it has taken but not run yet, or an inbox read that ended
    /// (epoll may perform it inside the turn's final pass) and is re-armed only by the next turn.
    [[nodiscard]] bool remote_backlog() const noexcept {
        return remote_backlog_ != nullptr || (reader_wanted() && !reader_->armed);
    }
    static constexpr std::size_t remote_batch = 1024; // remote items run per turn at most
    std::shared_ptr<detail::mailbox> remote_;         // shared with the threads that post into it
    msg_ring_waker waker_{this};
    bool msg_ring_wakes_ = false; // wakes_by_msg_ring(), decided once
    // Mailboxes this loop woke by MSG_RING, kept for the loop's life (a failure completion names one by address); a
    // loop that posts into runtime after runtime keeps each one's mailboxes (and their rings) until it goes.
    std::vector<std::shared_ptr<detail::mailbox>> wake_targets_;
    detail::remote_item* remote_backlog_ = nullptr; // taken from remote_ and not run yet, oldest first
    std::size_t remote_expected_ = 0;               // remote_items announced by remote_begin and not yet arrived
    std::size_t listeners_ = 0;                     // live loop_handles (listen_begin, listen_end)
    std::unique_ptr<inbox_reader> reader_ = std::make_unique<inbox_reader>(this); // leaked if the kernel keeps it
    std::vector<std::pair<const void*, std::shared_ptr<void>>> services_; // by type, type-erased (the worker pool)
    std::unique_ptr<detail::provided_buffers> rx_bufs_; // after ring_: unregistered while the ring still exists
    bool rx_tried_ = false;
    detail::standing_list standing_; // multishot receives of live streams, and orphans awaiting their final CQE
    detail::clock::time_point drain_deadline_ = detail::clock::time_point::max(); // bounds waits while draining
    // The single kernel timeout armed when EXT_ARG is unavailable.
    bool timer_armed_ = false;
    std::uint64_t timer_gen_ = 0;
    detail::clock::time_point timer_deadline_{};
    __kernel_timespec timer_ts_{}; // read by the kernel when it consumes the SQE, so it lives in the loop (B-3)
};

template <class Pred>
bool event_loop::run_until(Pred&& done) {
    // Posts from this thread wake sleeping loops by MSG_RING only while this loop turns, since only a turn submits
    // them; outside (before run, after it, in the destructor's rejections) they write the target's eventfd.
    struct waker_scope {
        detail::cross_waker* saved;
        explicit waker_scope(detail::cross_waker* w) noexcept : saved(detail::current_cross_waker) {
            if (w) detail::current_cross_waker = w;
        }
        ~waker_scope() { detail::current_cross_waker = saved; }
    } scope(msg_ring_wakes_ ? &waker_ : nullptr);
    for (;;) {
        run_remote_items();
        run_ready();
        if (done()) {
            retire_reader(); // nothing left in the kernel for a job that has ended, while the loop is not run
            submit_wakes();  // what this turn posted to sleeping loops must not wait for the next run()
            return true;
        }
        if (!poll(core_.ready.empty() && !remote_backlog())) return false;
    }
}

inline void event_loop::run_ready() {
    ++stats_.turns;
    // Only what was ready when the turn began: a task that yields goes behind everyone else and behind the next
    // reap of completions.
    core_.stack_base = detail::stack_position();
    // The stall detector's beat: a new odd value before each resume, even again after the turn's last. The watchdog
    // flags a beat it sees unchanged for too long; the comparison after the resume is all the loop pays otherwise.
    std::uint64_t beat = core_.stall.beat.load(std::memory_order_relaxed) - 1;
    for (std::size_t n = core_.ready.size(); n > 0; --n) {
        inline_budget_ = 32;
        const std::coroutine_handle<> h = core_.ready.pop();
        beat += 2;
        core_.stall.beat.store(beat, std::memory_order_relaxed);
        h.resume();
        if (core_.stall.flagged.load(std::memory_order_relaxed) == beat) [[unlikely]]
            report_stall(h.address(), beat);
    }
    core_.stall.beat.store(beat + 1, std::memory_order_relaxed);
    // A burst (a million spawns) must not pin its queue for the loop's lifetime.
    if (core_.ready.empty()) core_.ready.shrink();
}

/// Submits, waits when `block` (nothing is ready), reaps, fires due timers. Returns false when nothing at all can
/// happen any more: no operation in flight, no timer, nothing ready.
inline bool event_loop::poll(bool block) {
    if (reactor_) [[unlikely]]
        return poll_epoll();
    if (block) retire_reader(); // before the cancellation could be queued behind pending_
    if (!pending_.empty()) submit_pending();
    const bool have_timers = !timers_.empty();
    // The loop's own kernel timer is not work: it only bounds a wait.
    const std::size_t work = inflight_ - own_ops();
    if (block && work == 0 && pending_.empty() && !have_timers) {
        submit_wakes();
        return false;
    }
    // Waiting for another thread (a to_thread job, a run_on call): look at the inbox for a while before sleeping, since
    // a wake-up through the kernel costs far more than a short job on a virtual machine. What this turn prepared (the
    // inbox's read, other I/O) goes to the kernel first, so that the spin delays none of it.
    if (block && waits_only_for_remote()) {
        if (io_uring_sq_ready(ring_->get()) > 0) enter(ring_->flush_sq(), 0, 0, nullptr);
        if (spin_for_remote()) block = false;
    }
    // Another thread may post from now on: it wakes the wait through the inbox's eventfd, or the wait does not happen.
    if (block && remote_ && !remote_->prepare_to_sleep()) block = false;
    if (block) {
        detail::clock::time_point deadline = drain_deadline_;
        if (have_timers) deadline = std::min(deadline, timers_.earliest());
        wait(deadline);
        if (remote_) remote_->awake();
    } else if (inflight_ > 0 || io_uring_sq_ready(ring_->get()) > 0) { // MSG_RING wakes are not in inflight_
        enter(ring_->flush_sq(), 0, IORING_ENTER_GETEVENTS, nullptr);
    }
    reap(); // also a failed wake-up's completion, or another loop's, which inflight_ does not count
    if (have_timers) fire_timers();
    return true;
}

namespace detail {
/// Says once per process that loops run on epoll, and why (unless CORING_BACKEND_NOTICE=0). By process id, so that a
/// forked child that makes its own loop says it too.
inline void announce_epoll(const std::string& why) noexcept {
    static std::atomic<pid_t> said_by{0};
    const pid_t me = ::getpid();
    if (said_by.exchange(me) == me) return;
    if (const char* v = std::getenv("CORING_BACKEND_NOTICE"); v && std::string_view(v) == "0") return;
    std::fprintf(stderr, "coring: running on epoll instead of io_uring: %s\n", why.c_str());
}
} // namespace detail

/// Chooses the backend (see loop_options::backend): io_uring unless it was refused, lacks an operation coring needs,
/// or epoll was asked for.
inline void event_loop::open_backend() {
    using coring::backend;
    // Bad options are refused whichever backend runs (the ring checks them too), so that CORING_BACKEND=epoll does
    // not make a mistake pass.
    if (opts_.entries == 0) throw std::invalid_argument("coring: loop_options::entries must be at least 1");
    if (opts_.slow_callback.count() < 0 || opts_.slow_callback > std::chrono::hours(24))
        throw std::invalid_argument("coring: loop_options::slow_callback must be between 0 (off) and 24 hours");
    if (opts_.remote_spin.count() < 0 || opts_.remote_spin > std::chrono::seconds(1))
        throw std::invalid_argument("coring: loop_options::remote_spin must be between 0 (off) and 1 second");
    if (const int s = opts_.dump_on_signal; s != 0 && (s < 1 || s > SIGRTMAX || s == SIGKILL || s == SIGSTOP))
        throw std::invalid_argument("coring: loop_options::dump_on_signal: " + std::to_string(s) +
                                    " is no signal that can be waited for");
    backend want = opts_.backend;
    if (want == backend::automatic) want = detail::backend_from_environment();
    std::string why;
    if (want != backend::epoll) {
        try {
            ring_.emplace(opts_);
        } catch (const std::system_error& e) {
            if (want == backend::io_uring || !detail::io_uring_refused(e.code().value())) throw;
            why = e.what();
            constexpr std::string_view prefix = "coring: cannot create an event loop: ";
            if (why.compare(0, prefix.size(), prefix) == 0) why.erase(0, prefix.size());
        }
        if (ring_) {
            const char* missing = ring_->missing_required();
            if (!missing) return;
            std::string lacks = detail::str_cat("this kernel's io_uring lacks ", missing, ", which coring needs");
            if (want == backend::io_uring)
                throw std::system_error(EOPNOTSUPP, std::system_category(),
                                        detail::str_cat("coring: cannot create an event loop: ", lacks));
            why = std::move(lacks);
            ring_.reset();
        }
    } else {
        why = opts_.backend == backend::epoll ? "loop_options::backend is backend::epoll" : "CORING_BACKEND=epoll";
    }
    reactor_ = std::make_unique<detail::epoll_reactor>(&epoll_done, this);
    core_.forget_fd = &epoll_forget;
    core_.forget_ctx = this;
    if (opts_.backend_notice) detail::announce_epoll(why);
}

/// The epoll backend's turn: performs the operations the turn deferred, in order, then waits for readiness (only when
/// nothing is ready: up to the earliest timer) and retries what became ready. False when nothing at all can happen.
inline bool event_loop::poll_epoll() {
    if (core_.ready.empty() && !remote_backlog()) retire_reader(); // as poll() does when it would block
    while (!pending_.empty()) {
        detail::op_base* op = pending_.front();
        pending_.erase(op);
        epoll_perform(op);
    }
    const bool have_timers = !timers_.empty();
    bool block = core_.ready.empty() && !remote_backlog();
    if (block && inflight_ == 0 && !have_timers) return false;
    if (block && waits_only_for_remote() && spin_for_remote()) block = false; // as poll() does
    if (block && remote_ && !remote_->prepare_to_sleep()) block = false;
    if (block) {
        detail::clock::time_point deadline = drain_deadline_;
        if (have_timers) deadline = std::min(deadline, timers_.earliest());
        timespec ts{};
        const timespec* tp = nullptr;
        if (deadline != detail::clock::time_point::max()) {
            // Compared before subtracting: time_point::min() minus now would wrap around to a wait of centuries.
            const auto now = detail::clock::now();
            const long long ns =
                deadline <= now ? 0LL : std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
            ts.tv_sec = static_cast<time_t>(ns / 1000000000LL);
            ts.tv_nsec = static_cast<long>(ns % 1000000000LL);
            tp = &ts;
        }
        ++stats_.enters;
        reactor_->wait(tp);
        if (remote_) remote_->awake();
    } else if (inflight_ > 0) {
        const timespec zero{};
        ++stats_.enters;
        reactor_->wait(&zero);
    }
    if (have_timers) fire_timers();
    return true;
}

/// Waits for the first completion or `deadline` (max: no deadline), in one io_uring_enter that also submits.
///
/// A far deadline (10 ms or more away) gets an IORING_OP_TIMEOUT that stays armed across turns: a stream of
/// timeouts that all end later than the armed one (every request's 30 s deadline) then costs no kernel work per
/// wait. A near one goes to the wait itself (EXT_ARG): an absolute time where the kernel takes one, else relative to
/// a clock read. A deadline already passed makes the wait return at once in every case.
inline void event_loop::wait(detail::clock::time_point deadline) {
    using namespace std::chrono_literals;
    constexpr auto far = 10ms;
    const bool bounded = deadline != detail::clock::time_point::max();
    if (!bounded || (timer_armed_ && timer_deadline_ <= deadline))
        return enter(ring_->flush_sq(), 1, IORING_ENTER_GETEVENTS, nullptr);
    if (use_ext_arg_ && detail::maybe_due(deadline, far)) {
        if (ring_->abs_timer()) {
            // CLOCK_MONOTONIC, like steady_clock; a deadline before the clock's start is simply due.
            const auto ns = std::max<long long>(
                0, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count());
            const __kernel_timespec ts{ns / 1000000000LL, ns % 1000000000LL};
            return enter(ring_->flush_sq(), 1, IORING_ENTER_GETEVENTS | detail::ring::enter_abs_timer, &ts);
        }
        const auto now = detail::clock::now();
        if (deadline <= now) return enter(ring_->flush_sq(), 0, IORING_ENTER_GETEVENTS, nullptr);
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count();
        const __kernel_timespec ts{ns / 1000000000LL, ns % 1000000000LL};
        return enter(ring_->flush_sq(), 1, IORING_ENTER_GETEVENTS, &ts);
    }
    // If even the timer's SQE cannot be had, do not sleep at all rather than risk sleeping past the deadline.
    const bool armed = arm_kernel_timer(deadline);
    enter(ring_->flush_sq(), armed ? 1 : 0, IORING_ENTER_GETEVENTS, nullptr);
}

inline void event_loop::enter(unsigned to_submit, unsigned min_complete, unsigned flags, const __kernel_timespec* ts) {
    ++stats_.enters;
    const int r = ring_->enter(to_submit, min_complete, flags, ts);
    if (r >= 0) return;
    switch (-r) {
    case EINTR:  // a signal interrupted the wait: go round again
    case ETIME:  // the wait deadline passed
    case EAGAIN: // the kernel is short of memory for requests: reap, then retry on the next turn
    case EBUSY:  // overflowed completions must be reaped first (older kernels): the same
        return;
    case EBADR:
        throw std::system_error(EBADR, std::system_category(),
                                "coring: io_uring_enter: the kernel dropped completions it could not store");
    case EEXIST:
        throw std::system_error(EEXIST, std::system_category(),
                                "coring: io_uring_enter from a thread other than the event loop's own");
    default:
        throw std::system_error(-r, std::system_category(), "coring: io_uring_enter");
    }
}

inline void event_loop::reap() {
    io_uring* r = ring_->get();
    for (;;) {
        unsigned head = 0, count = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(r, head, cqe) {
            ++count;
            dispatch(cqe->user_data, cqe->res, cqe->flags);
        }
        io_uring_cq_advance(r, count);
        stats_.cqes += count;
        // Completions the CQ had no room for wait in the kernel until an enter flushes them.
        if (!(__atomic_load_n(r->sq.kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW)) break;
        ++stats_.overflow;
        enter(0, 0, IORING_ENTER_GETEVENTS, nullptr);
    }
    if (!(ring_->features() & IORING_FEAT_NODROP) && *r->cq.koverflow != 0)
        throw std::system_error(EBADR, std::system_category(),
                                "coring: the completion queue overflowed and this kernel (before 5.5) dropped "
                                "completions; use a larger loop_options::cq_entries");
}

inline void event_loop::dispatch(std::uint64_t user_data, int res, unsigned flags) noexcept {
    const bool final = !(flags & IORING_CQE_F_MORE);
    const std::uint64_t tag = user_data & tag_mask;
    // Wake-ups are not in inflight_: another loop's arrive here, and ours complete here only when they fail.
    if (final && tag != tag_wake && tag != tag_wake_failed) --inflight_;
    switch (tag) {
    case 0: {
        auto* op = reinterpret_cast<detail::op_base*>(user_data);
        if (!op) return;
        if (final) {
            if (op->state_ == detail::op_base::state::cancel_queued) pending_.erase(op);
            op->state_ = detail::op_base::state::completed;
        }
        op->complete_(op, res, flags);
        return;
    }
    case tag_timer:
        if ((user_data >> 3) == timer_gen_) timer_armed_ = false;
        return;
    case tag_wake_failed: {
        // The target was asleep and is still owed its wake-up: the eventfd it also waits on. A full CQ (EOVERFLOW)
        // or a short allocation pass; anything else (the ring gone, EBADFD) will not, so that target gets eventfd.
        auto* box = reinterpret_cast<detail::mailbox*>(user_data & ~tag_mask);
        ++stats_.msg_ring_fallbacks;
        if (res != -EOVERFLOW && res != -ENOMEM && res != -EAGAIN) box->disable_ring_wake();
        box->wake_by_eventfd();
        return;
    }
    default: // tag_ignore, tag_wake (the mailbox is polled every turn anyway)
        return;
    }
}

inline void event_loop::fire_timers() {
    // Most turns end long before the earliest deadline: the coarse clock says so for a fraction of a precise read.
    if (!detail::maybe_due(timers_.earliest())) return;
    const auto now = detail::clock::now();
    while (detail::timer_node* n = timers_.pop_due(now)) n->fire(n);
}

inline void event_loop::submit_pending() noexcept {
    using st = detail::op_base::state;
    while (!pending_.empty()) {
        io_uring_sqe* sqe = get_sqe();
        if (!sqe) return;
        detail::op_base* op = pending_.front();
        pending_.erase(op);
        if (op->state_ == st::queued) submit_to(op, sqe);
        else send_cancel(op, sqe);
    }
}

inline bool event_loop::arm_kernel_timer(detail::clock::time_point deadline) noexcept {
    if (timer_armed_ && timer_deadline_ <= deadline) return true;
    if (timer_armed_) disarm_kernel_timer();
    io_uring_sqe* sqe = get_sqe();
    if (!sqe) return false;
    const auto ns = std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count());
    timer_ts_.tv_sec = ns / 1000000000LL;
    timer_ts_.tv_nsec = ns % 1000000000LL;
    // steady_clock is CLOCK_MONOTONIC, the clock io_uring timeouts use by default.
    io_uring_prep_timeout(sqe, &timer_ts_, 0, IORING_TIMEOUT_ABS);
    sqe->user_data = (++timer_gen_ << 3) | tag_timer;
    ++inflight_;
    ++stats_.sqes;
    timer_armed_ = true;
    timer_deadline_ = deadline;
    return true;
}

inline void event_loop::disarm_kernel_timer() noexcept {
    io_uring_sqe* sqe = get_sqe();
    if (!sqe) return; // it fires on its own later; its CQE is ignored by generation
    io_uring_prep_timeout_remove(sqe, (timer_gen_ << 3) | tag_timer, 0);
    sqe->user_data = tag_ignore;
    ++inflight_;
    ++stats_.sqes;
    timer_armed_ = false;
    ++timer_gen_; // the old timer's own CQE no longer matches
}

/// Cancels every spawned task and runs the loop until they and every operation have finished, for at most the
/// shutdown timeout. True when everything finished.
inline bool event_loop::drain() {
    struct restore {
        event_loop& l;
        ~restore() {
            l.core_.draining = false;
            l.drain_deadline_ = detail::clock::time_point::max();
        }
    } guard{*this};
    core_.draining = true;
    drain_deadline_ = detail::clock::now() + opts_.shutdown_timeout;
    for (detail::promise_base* p = core_.roots; p; p = p->next_) p->ctx_->request();
    // The loop's own kernel timer only bounds a wait, it is not work; the inbox read is work while remote items are
    // expected (and then a task is waiting for them), so it never counts here. The read that loop_handles keep armed
    // stays while tasks remain (a cancelled task's clean-up may wait for another thread's call), and then goes like
    // the standing operations: a handle is not work to wait for (the next run() listens again).
    auto idle = [this] {
        if (core_.root_count == 0 && core_.ready.empty()) {
            stop_standing();
            if (reader_->armed && !reader_wanted()) cancel(reader_.get());
        }
        return core_.root_count == 0 && inflight_ == own_ops() && pending_.empty() && core_.ready.empty();
    };
    run_until([&] { return idle() || detail::clock::now() >= drain_deadline_; });
    if (!idle()) return false;
    if (timer_armed_) {
        // Leave nothing in the kernel: remove the loop's timer and reap both completions.
        disarm_kernel_timer();
        drain_deadline_ = detail::clock::time_point::max();
        run_until([this] { return inflight_ == 0; });
    }
    return true;
}

/// After run() drained for its whole timeout: the stragglers stay on the loop (the next run() or the destructor
/// cancels them again); only say so.
inline void event_loop::warn_unfinished() const noexcept {
    std::fprintf(stderr,
                 "coring: %zu task(s) did not finish within the shutdown timeout after being cancelled (%zu "
                 "operation(s) still in the kernel); they stay on the loop\n",
                 core_.root_count, inflight_);
}

/// At destruction, after a failed drain: whatever is left may still be referenced by the kernel or by join_handles,
/// so it is never freed. Says so, once, and forgets it (nothing can resume it once the ring is gone).
inline void event_loop::leak_leftovers() noexcept {
    if (core_.root_count == 0 && inflight_ == 0) return;
    std::fprintf(stderr,
                 "coring: %zu task(s) did not finish after being cancelled and %zu operation(s) are still in the "
                 "kernel; their memory is leaked rather than freed under them\n",
                 core_.root_count, inflight_);
    while (!core_.ready.empty()) (void)core_.ready.pop();
    for (detail::promise_base* p = core_.roots; p;) {
        detail::promise_base* next = p->next_;
        p->clear(detail::promise_base::root);
#if CORING_ASAN
        // Deliberate: tell LeakSanitizer, so that a sanitizer run reports real leaks only.
        __lsan_ignore_object(p);
#endif
        p = next;
    }
    core_.roots = nullptr;
    core_.root_count = 0;
}

namespace detail {
/// Prints a task dump each time `signal` arrives (loop_options::dump_on_signal); in signal/wait_signal.hpp.
inline task<> dump_tasks_on(int signal);
} // namespace detail
inline void dump_tasks(std::FILE* out); // runtime/task_dump.hpp

template <class T>
T event_loop::run(task<T> main, detail::code_site site) {
    if (std::this_thread::get_id() != owner_)
        throw std::logic_error("coring: event_loop::run called from a thread other than the loop's own");
    if (running_) throw std::logic_error("coring: event_loop::run is not reentrant (called from inside a task?)");
    running_ = true;
    struct reset {
        bool& flag;
        ~reset() { flag = false; }
    } guard{running_};
    join_handle<T> h = spawn(std::move(main), site);
    if (opts_.dump_on_signal != 0) (void)spawn(detail::dump_tasks_on(opts_.dump_on_signal));
    const bool finished = run_until([&] { return h.done(); });
    if (!finished && debug_enabled()) { // before the drain cancels them: what every task waits for
        std::fputs("coring: deadlock in run(); the tasks and what they wait for (debug mode):\n", stderr);
        try {
            dump_tasks(stderr);
        } catch (const std::exception& e) { // the deadlock is the error to report
            std::fprintf(stderr, "coring: no task dump: %s\n", e.what());
        }
    }
    if (!drain()) warn_unfinished();
    if (!finished)
        throw std::runtime_error("coring: deadlock: the main task waits for something that can never happen (no task "
                                 "is ready, no operation is in flight and no timer is armed)");
    return h.result();
}

} // namespace coring

// The definitions of call_soon, call_later, call_at and call_soon_threadsafe (and, through callbacks.hpp, of handle()).
#include <coring/runtime/callbacks.hpp>
// event_loop::tasks() and dump_tasks().
#include <coring/runtime/task_dump.hpp>
// event_loop::report_stall (loop_options::slow_callback).
#include <coring/runtime/stall_report.hpp>
// wait_signal, and detail::dump_tasks_on (loop_options::dump_on_signal), which run() uses.
#include <coring/signal/wait_signal.hpp>
