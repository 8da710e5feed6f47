#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <system_error>

namespace coring::detail {

/// Work another thread hands to the loop: `run` is called on the loop's thread (for to_thread, it queues the waiting
/// coroutine). Lives wherever its owner keeps it (the awaiting frame), never allocated by the queue.
struct remote_item {
    remote_item* next = nullptr;
    void (*run)(remote_item*) noexcept = nullptr;
};

/// The only way into a loop from another thread: a locked FIFO plus an eventfd the loop keeps a read armed on.
/// Other threads never touch the ring (SINGLE_ISSUER, DEFER_TASKRUN: pitfalls G-1); the loop drains the whole FIFO
/// on every wake-up (G-4). Shared (std::shared_ptr) with the threads that post, so that it outlives a loop torn down
/// while a worker still runs.
class remote_queue {
public:
    // Blocking: io_uring polls it either way, and a kernel that answers a non-blocking read of an empty eventfd with
    // -EAGAIN instead of polling would have the loop re-arm the read in a busy loop.
    remote_queue() : fd_(::eventfd(0, EFD_CLOEXEC)) {
        if (fd_ < 0) throw std::system_error(errno, std::system_category(), "coring: eventfd");
    }
    remote_queue(const remote_queue&) = delete;
    remote_queue& operator=(const remote_queue&) = delete;
    ~remote_queue() { ::close(fd_); }

    /// Any thread: hands `item` to the loop and wakes it (one eventfd write per batch, not per item).
    void post(remote_item* item) noexcept {
        bool wake;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            item->next = nullptr;
            if (tail_) tail_->next = item;
            else head_ = item;
            tail_ = item;
            wake = !wake_pending_;
            wake_pending_ = true;
        }
        if (wake) {
            const std::uint64_t one = 1;
            // The counter cannot saturate (the loop resets it on every read), so this never blocks.
            (void)!::write(fd_, &one, sizeof one);
        }
    }

    /// Loop thread: takes everything posted so far, in order.
    remote_item* take_all() noexcept {
        std::lock_guard<std::mutex> lock(mutex_);
        remote_item* items = head_;
        head_ = tail_ = nullptr;
        wake_pending_ = false;
        return items;
    }

    /// The eventfd the loop reads.
    [[nodiscard]] int fd() const noexcept { return fd_; }

private:
    std::mutex mutex_;
    remote_item* head_ = nullptr;
    remote_item* tail_ = nullptr;
    bool wake_pending_ = false; // an eventfd write is on its way and not yet consumed by take_all
    int fd_;
};

} // namespace coring::detail
