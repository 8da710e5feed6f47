#pragma once

#include <coring/config.hpp>
#include <coring/detail/op.hpp>

#include <liburing.h>
#include <sys/mman.h>
#if CORING_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace coring::detail {

/// An operation that stays in the kernel between awaits (a stream's multishot receive), owned by an object rather
/// than by an awaiting frame. The loop lists them so that its drain can stop them once no task is left to read what
/// they deliver, and so that it can tell their owners when it is gone.
struct standing_op : op_base {
    using op_base::op_base;
    standing_op* prev_standing = nullptr;
    standing_op* next_standing = nullptr;
    void* loop = nullptr; // the event_loop, null once it has been destroyed
};

/// Intrusive list of standing operations.
class standing_list {
public:
    void push(standing_op* op) noexcept {
        op->prev_standing = nullptr;
        op->next_standing = head_;
        if (head_) head_->prev_standing = op;
        head_ = op;
    }
    void erase(standing_op* op) noexcept {
        if (op->prev_standing) op->prev_standing->next_standing = op->next_standing;
        else head_ = op->next_standing;
        if (op->next_standing) op->next_standing->prev_standing = op->prev_standing;
        op->prev_standing = op->next_standing = nullptr;
    }
    [[nodiscard]] standing_op* front() const noexcept { return head_; }

private:
    standing_op* head_ = nullptr;
};

/// A ring of buffers the kernel picks from when a receive completes (a provided-buffer ring, Linux 5.19), shared by
/// every multishot receive of one loop. Each buffer goes back to the ring as soon as its bytes have been copied into
/// the receiving stream, so the ring only has to cover the completions of one loop turn; when it runs dry anyway the
/// kernel ends the receives that found it empty (-ENOBUFS) and they are re-armed on demand.
///
/// liburing 2.3 has no io_uring_setup_buf_ring: the ring is mapped here (page-aligned, as the kernel requires).
class provided_buffers {
public:
    static constexpr std::uint16_t group = 0x6372; // the buffer group id: one per loop, chosen unlikely to collide

    /// Registers `count` (a power of two) buffers of `size` bytes. usable() is false when the kernel refuses.
    provided_buffers(io_uring* ring, unsigned count, unsigned size) noexcept : ring_(ring), count_(count), size_(size) {
        if (count == 0 || (count & (count - 1)) != 0 || count > 32768 || size == 0) return;
        ring_bytes_ = count * sizeof(io_uring_buf);
        void* mem = ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED) return;
        br_ = static_cast<io_uring_buf_ring*>(mem);
        data_.reset(new (std::nothrow) char[std::size_t(count) * size]);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
        reg.ring_entries = count;
        reg.bgid = group;
        if (!data_ || io_uring_register_buf_ring(ring, &reg, 0) != 0) {
            ::munmap(br_, ring_bytes_);
            br_ = nullptr;
            return;
        }
        io_uring_buf_ring_init(br_);
        for (unsigned i = 0; i < count; ++i)
            io_uring_buf_ring_add(br_, data_.get() + std::size_t(i) * size, size, static_cast<unsigned short>(i),
                                  io_uring_buf_ring_mask(count), static_cast<int>(i));
        io_uring_buf_ring_advance(br_, static_cast<int>(count));
        usable_ = true;
    }
    provided_buffers(const provided_buffers&) = delete;
    provided_buffers& operator=(const provided_buffers&) = delete;
    ~provided_buffers() {
        if (leak_) {
            // The kernel may still fill a buffer: never free them under it (the ring's own teardown is asynchronous).
#if CORING_ASAN
            __lsan_ignore_object(data_.get());
#endif
            (void)data_.release();
            return;
        }
        if (!br_) return;
        if (usable_) (void)io_uring_unregister_buf_ring(ring_, group);
        ::munmap(br_, ring_bytes_);
    }

    /// Whether the kernel accepted the ring.
    [[nodiscard]] bool usable() const noexcept { return usable_; }
    /// Whether receives may be multishot (cleared when the kernel rejects IORING_RECV_MULTISHOT: Linux 5.19).
    [[nodiscard]] bool multishot() const noexcept { return multishot_; }
    void disable_multishot() noexcept { multishot_ = false; }
    [[nodiscard]] unsigned buffer_size() const noexcept { return size_; }

    /// The bytes of buffer `id`.
    [[nodiscard]] const char* data(unsigned id) const noexcept { return data_.get() + std::size_t(id) * size_; }
    /// Gives buffer `id` back to the kernel.
    void recycle(unsigned id) noexcept {
        io_uring_buf_ring_add(br_, data_.get() + std::size_t(id) * size_, size_, static_cast<unsigned short>(id),
                              io_uring_buf_ring_mask(count_), 0);
        io_uring_buf_ring_advance(br_, 1);
    }
    /// Keep the memory forever (the loop is going away with receives still in the kernel).
    void leak() noexcept { leak_ = true; }

private:
    io_uring* ring_;
    unsigned count_;
    unsigned size_;
    std::size_t ring_bytes_ = 0;
    io_uring_buf_ring* br_ = nullptr;
    std::unique_ptr<char[]> data_;
    bool usable_ = false;
    bool multishot_ = true;
    bool leak_ = false;
};

} // namespace coring::detail
