#pragma once

#include <coring/detail/mailbox.hpp>
#include <coring/runtime/loop_options.hpp>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace coring::detail {

/// One piece of blocking work for a worker pool (what to_thread() awaits). Lives in the awaiting coroutine's frame,
/// never allocated by the pool.
///
/// Lifecycle (state_, written under the pool's lock except running -> finished):
/// - idle: not submitted.
/// - queued: in the pool's FIFO. The loop thread may withdraw it (under the lock): it then never runs.
/// - running: a worker took it and runs `execute` outside the lock. Nothing can stop it.
/// - finished: `execute` returned and the outcome is stored. The worker posts the job to `home` (as a remote_item,
///   whose `run` the loop calls on its own thread) right after and never touches it again.
/// - withdrawn: taken out of the FIFO by the loop thread before any worker saw it.
struct pool_job : remote_item {
    enum class state : std::uint8_t { idle, queued, running, finished, withdrawn };

    /// Worker thread: runs the user's function and stores its result or exception. Must not throw.
    void (*execute)(pool_job*) noexcept = nullptr;
    /// The inbox of the loop that submitted the job, where it goes back. Attached to the pool (worker_pool::attach),
    /// which keeps it alive as long as any worker may post to it.
    mailbox* home = nullptr;
    pool_job* prev_job = nullptr; // links in the pool's FIFO (under its lock)
    pool_job* next_job = nullptr;
    std::atomic<state> state_{state::idle}; // read by the loop thread while a worker may be finishing the job
};

/// The threads that run to_thread() jobs (asyncio's default ThreadPoolExecutor): one pool per standalone event_loop,
/// created on first use through event_loop::service<worker_pool>() and destroyed by ~event_loop after the loop
/// drained; or one pool shared by every loop of a runtime, so that its bound holds for the whole process rather than
/// per loop (a runtime of 16 loops does not start 16 x 20 threads), destroyed after the last loop.
///
/// Threads are started lazily, one at a time: a submit that finds more queued jobs than idle workers starts one more
/// thread, up to the limit (loop_options::worker_threads; 0 means min(32, hardware threads + 4), as asyncio). Started
/// threads stay until the pool is destroyed. Each is created with every signal blocked (it inherits the mask, so no
/// signal can land on it even for an instant): process-directed signals go to the loop thread or the application's
/// own threads, never to a worker in the middle of someone's blocking call.
///
/// Hand-off: a locked FIFO and a condition variable to the workers; results go back through the submitting loop's
/// mailbox (pool_job::home). Workers never touch a ring (SINGLE_ISSUER: pitfalls G-1) nor resume a coroutine
/// (llvm#56301): the loop does.
///
/// The state the workers use (FIFO, lock, the attached mailboxes) is shared with them (std::shared_ptr), so that a
/// worker that outlives the pool, or a loop, still has somewhere to post its job. submit() and withdraw() may be called
/// from several loop threads at once; the destructor runs once no loop uses the pool.
class worker_pool {
public:
    /// What withdraw() found.
    enum class withdraw_result : std::uint8_t {
        withdrawn, ///< it was still queued and now never runs
        running,   ///< a worker runs it; its completion will be posted
        finished   ///< it has run; its completion is posted or about to be
    };

    /// A standalone loop's pool of `options.worker_threads` threads (none started yet), posting completions to
    /// `remote` (what event_loop::service builds).
    worker_pool(const loop_options& options, const std::shared_ptr<mailbox>& remote)
        : worker_pool(thread_limit(options.worker_threads)) {
        attach(remote);
    }
    /// A pool of at most `max_threads` threads (none started yet) for several loops, each of which attach()es its
    /// inbox before it submits.
    explicit worker_pool(std::size_t max_threads) : state_(std::make_shared<shared_state>()), max_(max_threads) {}
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

    /// Stops the workers and joins the idle ones. Called once every loop using the pool has drained, so normally no
    /// job is left. A worker still inside a job (a loop gave up waiting after loop_options::shutdown_timeout and leaked
    /// the frame that awaits it) is detached instead of joined, so that a stuck function cannot hang the destructor: it
    /// finishes on its own later, posts into its loop's mailbox (kept alive by the shared state), which the destroyed
    /// loop has closed (the post is refused), and exits. Jobs still queued are dropped unrun (their frames were leaked
    /// too).
    ~worker_pool() {
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->stop = true;
            state_->head = state_->tail = nullptr;
            state_->queued = 0;
        }
        state_->wake.notify_all();
        std::lock_guard<std::mutex> lock(threads_mutex_);
        for (worker& w : workers_) {
            // A worker that is not inside a job now never starts one (stop is set): it exits at once.
            if (w.busy->load(std::memory_order_acquire)) w.thread.detach();
            else w.thread.join();
        }
    }

    /// Makes `box` a valid pool_job::home for as long as any worker lives. Once per loop, before its first submit.
    void attach(const std::shared_ptr<mailbox>& box) {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->homes.push_back(box);
    }

    /// Makes `pool` the worker pool of `loop` (an event_loop, before anything used its own): attaches the loop's inbox,
    /// then hands the pool to the loop, which drops its reference once it drained.
    template <class Loop>
    static void install(const std::shared_ptr<worker_pool>& pool, Loop& loop) {
        pool->attach(loop.remote());
        loop.use_service(pool);
    }

    /// Queues `job` (its `execute`, `home` and remote_item::run set) and starts a thread if every started one is busy.
    /// Throws std::system_error when no thread can be started and none exists (the job is then not queued).
    void submit(pool_job* job) {
        bool wake;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            job->state_.store(pool_job::state::queued, std::memory_order_relaxed);
            state_->push_back(job);
            const std::size_t idle = state_->idle.load(std::memory_order_relaxed);
            wake = idle > 0;
            if (state_->queued > idle && state_->started < max_) {
                // Started under the lock (at most max_ times in the pool's life): a submit from another loop meanwhile
                // waits, and never counts on a thread that may yet fail to start, so every queued job always has a
                // live worker to take it. The new thread itself waits for the lock before it looks at the queue.
                try {
                    start_worker();
                    ++state_->started;
                    state_->idle.fetch_add(1, std::memory_order_relaxed);
                } catch (...) {
                    // With a worker running, the job is taken sooner or later; with none it would wait forever.
                    if (state_->started == 0) {
                        state_->erase(job);
                        job->state_.store(pool_job::state::withdrawn, std::memory_order_relaxed);
                        throw;
                    }
                }
            }
        }
        if (wake) state_->wake.notify_one();
    }

    /// Takes `job` back if no worker has taken it yet. Does not wait for a running job.
    withdraw_result withdraw(pool_job* job) noexcept {
        std::lock_guard<std::mutex> lock(state_->mutex);
        const pool_job::state s = job->state_.load(std::memory_order_acquire);
        if (s == pool_job::state::queued) {
            state_->erase(job);
            job->state_.store(pool_job::state::withdrawn, std::memory_order_relaxed);
            return withdraw_result::withdrawn;
        }
        return s == pool_job::state::running ? withdraw_result::running : withdraw_result::finished;
    }

    /// The most threads this pool starts.
    [[nodiscard]] std::size_t max_threads() const noexcept { return max_; }
    /// Threads started so far.
    [[nodiscard]] std::size_t threads() const noexcept {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->started;
    }

    /// The thread limit for loop_options::worker_threads `n`: n, or min(32, hardware threads + 4) for 0.
    [[nodiscard]] static std::size_t thread_limit(unsigned n) noexcept {
        if (n != 0) return n;
        return std::min<std::size_t>(32, std::size_t{std::thread::hardware_concurrency()} + 4);
    }

private:
    /// What the pool shares with its threads.
    struct shared_state {
        mutable std::mutex mutex;     // guards everything below
        std::condition_variable wake; // a job was queued, or stop
        pool_job* head = nullptr;     // FIFO of queued jobs
        pool_job* tail = nullptr;     //
        std::size_t queued = 0;       // length of the FIFO
        std::size_t started = 0;      // threads started
        // Workers not inside a job (waiting, about to wait, or just started). Counted up by a worker as soon as its job
        // is done, before it posts the job and relocks: a submit that follows the completion at once must not start
        // a thread for nothing. Counted down under the lock when a worker takes a job. Atomic for the lock-free
        // increment; read under the lock.
        std::atomic<std::size_t> idle{0};
        bool stop = false; // the pool is gone: exit instead of taking jobs
        // The inboxes jobs go back to (pool_job::home), one per attached loop: they outlive their loops while a worker
        // that may still post to them lives.
        std::vector<std::shared_ptr<mailbox>> homes;

        void push_back(pool_job* j) noexcept {
            j->next_job = nullptr;
            j->prev_job = tail;
            if (tail) tail->next_job = j;
            else head = j;
            tail = j;
            ++queued;
        }
        void erase(pool_job* j) noexcept {
            if (j->prev_job) j->prev_job->next_job = j->next_job;
            else head = j->next_job;
            if (j->next_job) j->next_job->prev_job = j->prev_job;
            else tail = j->prev_job;
            j->prev_job = j->next_job = nullptr;
            --queued;
        }
    };

    /// A started thread and whether it is inside a job (read by the destructor to choose join or detach).
    struct worker {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> busy; // shared: a detached worker still writes it
    };

    void start_worker() {
        auto busy = std::make_shared<std::atomic<bool>>(false);
        std::lock_guard<std::mutex> lock(threads_mutex_);
        workers_.reserve(workers_.size() + 1); // so that push_back cannot throw after the thread exists
        // The new thread inherits the creator's signal mask: block everything around its creation, so that it never
        // runs a single instruction with a signal unblocked, then give the loop thread its own mask back.
        sigset_t all, old;
        ::sigfillset(&all);
        ::pthread_sigmask(SIG_BLOCK, &all, &old);
        struct restore_mask {
            const sigset_t* old;
            ~restore_mask() { ::pthread_sigmask(SIG_SETMASK, old, nullptr); }
        } restore{&old};
        workers_.push_back(worker{std::thread(&worker_pool::work, state_, busy), busy});
    }

    /// A worker's life: take the oldest job, run it outside the lock, post it to its loop, until stop.
    static void work(std::shared_ptr<shared_state> s, std::shared_ptr<std::atomic<bool>> busy) noexcept {
        ::pthread_setname_np(::pthread_self(), "coring-worker");
        std::unique_lock<std::mutex> lock(s->mutex);
        for (;;) {
            while (!s->stop && !s->head) s->wake.wait(lock);
            if (s->stop) return;
            pool_job* job = s->head;
            s->erase(job);
            s->idle.fetch_sub(1, std::memory_order_relaxed);
            // Under the lock: from here on withdraw() can no longer take it back, and the destructor sees busy.
            job->state_.store(pool_job::state::running, std::memory_order_relaxed);
            busy->store(true, std::memory_order_relaxed);
            lock.unlock();
            mailbox* home = job->home;
            job->execute(job);
            busy->store(false, std::memory_order_release);
            s->idle.fetch_add(1, std::memory_order_relaxed);
            // Release: the outcome `execute` stored is visible to whoever reads `finished` (withdraw(), the loop).
            job->state_.store(pool_job::state::finished, std::memory_order_release);
            // After this the loop may resume the coroutine and free the job at any moment: do not touch it again.
            (void)home->post(job); // refused only once the loop is gone: the frame was leaked with it
            lock.lock();
        }
    }

    std::shared_ptr<shared_state> state_; // shared with every worker
    std::mutex threads_mutex_;            // guards workers_ (submits from several loops start threads)
    std::vector<worker> workers_;         // started threads
    std::size_t max_;                     // thread limit
};

} // namespace coring::detail
