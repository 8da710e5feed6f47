#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>

namespace coring::detail {

/// Work another thread hands to a loop: `run` is called on the loop's thread (for to_thread, it queues the waiting
/// coroutine). Lives wherever its owner keeps it (the awaiting frame, a small node), never allocated by the mailbox.
///
/// `reject`, when set, is called on the loop's thread instead of `run` for an item that was posted but will never run
/// because the loop closed its mailbox (the loop is being destroyed): it frees what the item owns. Left null, such an
/// item is simply forgotten (a to_thread job, whose frame the loop leaked anyway).
struct remote_item {
    remote_item* next = nullptr;
    void (*run)(remote_item*) noexcept = nullptr;
    void (*reject)(remote_item*) noexcept = nullptr;
};

/// The only way into a loop from another thread: a lock-free intrusive multi-producer, single-consumer stack that the
/// owner takes whole and reverses into FIFO order, plus an eventfd written only when the loop is about to sleep.
///
/// Why this shape: posting is one compare-and-swap and no system call while the loop is busy (it polls the mailbox on
/// every turn), and a sleeping loop is woken once per sleep, not once per item (Seastar's try_enter_interrupt_mode,
/// glommio's prepare_to_sleep). The consumer takes the whole list with one exchange, so there is no ABA. Other threads
/// never touch the ring (SINGLE_ISSUER, DEFER_TASKRUN: pitfalls G-1); the items themselves travel through the `head_`
/// atomic (release on push, acquire on take), so ThreadSanitizer sees every hand-off and the eventfd only wakes.
///
/// The sleep protocol is a Dekker pattern, seq_cst on both sides: the loop stores `sleeping_ = true` and then re-reads
/// `head_`; a sender pushes and then reads `sleeping_`. At least one of them sees the other's write, so either the loop
/// does not block or the sender wakes it. No fences, no membarrier (ThreadSanitizer models neither).
///
/// Shared (std::shared_ptr) with the threads that post, so that it outlives a loop torn down while a worker still
/// runs. Once closed (by its loop, at destruction) post() refuses new items.
class mailbox;

/// The calling thread's loop, as a sender of MSG_RING wake-ups (see loop_options::wake): queues one on its own ring,
/// to leave with its next io_uring_enter. Set only on an io_uring loop's thread that may use MSG_RING.
struct cross_waker {
    /// Queues a wake-up of `target`'s ring `ring_fd`; false when it cannot (no SQE), and the caller writes the eventfd.
    virtual bool msg_ring(mailbox& target, int ring_fd) noexcept = 0;

protected:
    ~cross_waker() = default;
};
inline thread_local cross_waker* current_cross_waker = nullptr;

class mailbox : public std::enable_shared_from_this<mailbox> {
public:
    // Blocking: io_uring polls it either way, and a kernel that answers a non-blocking read of an empty eventfd with
    // -EAGAIN instead of polling would have the loop re-arm the read in a busy loop.
    mailbox() : fd_(::eventfd(0, EFD_CLOEXEC)) {
        if (fd_ < 0) throw std::system_error(errno, std::system_category(), "coring: eventfd");
    }
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;
    ~mailbox() {
        ::close(fd_);
        if (const int r = ring_fd_.load(std::memory_order_relaxed); r >= 0) ::close(r);
    }

    /// Owner, before any other thread can post: the ring that MSG_RING wake-ups go to, a duplicate descriptor the
    /// mailbox owns. A duplicate keeps the io_uring file alive while any sender holds the mailbox, so a late wake can
    /// never reach another file that reused the number.
    /// Returns the descriptor it replaces (-1 when none), now the caller's to close.
    int set_ring_fd(int dup_fd) noexcept { return ring_fd_.exchange(dup_fd, std::memory_order_acq_rel); }
    /// Any thread: MSG_RING wake-ups stop (one failed with an error that will not pass); the eventfd remains.
    void disable_ring_wake() noexcept { ring_wake_ok_.store(false, std::memory_order_relaxed); }
    /// Any thread: wakes the loop through its eventfd (a MSG_RING wake-up that failed falls back to it).
    void wake_by_eventfd() noexcept { wake(); }

    /// Any thread: hands `item` to the loop, and wakes the loop if it is asleep (or about to be). Returns false,
    /// leaving `item` untouched, when the mailbox is closed (its loop is gone or going).
    bool post(remote_item* item) noexcept {
        remote_item* old = head_.load(std::memory_order_relaxed);
        do {
            if (old == closed_mark()) return false;
            item->next = old;
        } while (!head_.compare_exchange_weak(old, item, std::memory_order_seq_cst, std::memory_order_relaxed));
        // One wake per sleep: only the sender that turns `sleeping_` off wakes the loop.
        if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) {
            if (cross_waker* w = current_cross_waker) {
                const int ring = ring_fd_.load(std::memory_order_acquire);
                if (ring >= 0 && ring_wake_ok_.load(std::memory_order_relaxed) && w->msg_ring(*this, ring)) return true;
            }
            wake();
        }
        return true;
    }

    /// Any thread, async-signal-safe (always the eventfd): wakes the loop if it sleeps (runtime::stop()).
    void notify() noexcept {
        if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) wake();
    }

    /// Loop thread: whether anything was posted and not taken yet. One load; the loop calls it every turn.
    [[nodiscard]] bool has_posted() const noexcept {
        remote_item* h = head_.load(std::memory_order_acquire);
        return h != nullptr && h != closed_mark();
    }

    /// Loop thread: takes everything posted so far, oldest first (null if nothing).
    remote_item* take_all() noexcept {
        if (!has_posted()) return nullptr;
        return reversed(head_.exchange(nullptr, std::memory_order_acquire));
    }

    /// Loop thread, before blocking: announces the sleep, then re-checks. False (and not sleeping) when something was
    /// posted meanwhile: the loop must not block. True: a later post() writes the eventfd, which the loop keeps a read
    /// armed on whenever it expects a post.
    bool prepare_to_sleep() noexcept {
        sleeping_.store(true, std::memory_order_seq_cst);
        if (head_.load(std::memory_order_seq_cst) == nullptr) return true;
        sleeping_.store(false, std::memory_order_relaxed);
        return false;
    }
    /// Loop thread, after a wait: senders need not write the eventfd until the next prepare_to_sleep().
    void awake() noexcept { sleeping_.store(false, std::memory_order_relaxed); }

    /// Loop thread, once: refuses every later post() and returns what was posted and not taken, oldest first.
    remote_item* close() noexcept {
        remote_item* h = head_.exchange(closed_mark(), std::memory_order_acquire);
        return h == closed_mark() ? nullptr : reversed(h);
    }
    [[nodiscard]] bool closed() const noexcept { return head_.load(std::memory_order_acquire) == closed_mark(); }

    /// The eventfd the loop reads.
    [[nodiscard]] int fd() const noexcept { return fd_; }

private:
    // Never a real item: items are at least pointer-aligned.
    static remote_item* closed_mark() noexcept { return reinterpret_cast<remote_item*>(std::uintptr_t{1}); }

    static remote_item* reversed(remote_item* h) noexcept {
        remote_item* out = nullptr;
        while (h) {
            remote_item* next = h->next;
            h->next = out;
            out = h;
            h = next;
        }
        return out;
    }

    void wake() noexcept {
        const std::uint64_t one = 1;
        // The counter cannot saturate (the loop resets it on every read), so this never blocks.
        (void)!::write(fd_, &one, sizeof one);
    }

    alignas(64) std::atomic<remote_item*> head_{nullptr}; // newest first; closed_mark() once closed
    std::atomic<bool> sleeping_{false};                   // the loop is (about to be) blocked in a wait
    std::atomic<int> ring_fd_{-1};                        // the owner's ring (a duplicate), for MSG_RING wake-ups
    std::atomic<bool> ring_wake_ok_{true};
    int fd_;
};

} // namespace coring::detail
