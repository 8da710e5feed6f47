#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

namespace coring::detail {

/// A growable run of received bytes for read-ahead buffers. Unlike std::string, making room for a read does not
/// zero it: a read-ahead buffer asks for 16 KiB or more before every read and keeps only what arrived, and zeroing
/// that room cost more than a small message's whole read. Not copyable (it holds a connection's bytes).
class byte_buffer {
public:
    byte_buffer() = default;
    /// Takes `o`'s bytes; `o` is left empty (no memory, size and capacity 0).
    byte_buffer(byte_buffer&& o) noexcept
        : data_(std::move(o.data_)), size_(std::exchange(o.size_, 0)), capacity_(std::exchange(o.capacity_, 0)) {}
    /// Frees this buffer's bytes and takes `o`'s; `o` is left empty.
    byte_buffer& operator=(byte_buffer&& o) noexcept {
        if (this != &o) {
            data_ = std::move(o.data_);
            size_ = std::exchange(o.size_, 0);
            capacity_ = std::exchange(o.capacity_, 0);
        }
        return *this;
    }

    [[nodiscard]] char* data() noexcept { return data_.get(); }
    [[nodiscard]] const char* data() const noexcept { return data_.get(); }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::string_view view() const noexcept { return {data_.get(), size_}; }

    /// Forgets the bytes and keeps the room, so that the next read allocates nothing.
    void clear() noexcept { size_ = 0; }
    /// Drops the first n bytes (n ≤ size()).
    void erase_front(std::size_t n) noexcept {
        if (n >= size_) {
            size_ = 0;
            return;
        }
        std::memmove(data_.get(), data_.get() + n, size_ - n);
        size_ -= n;
    }
    /// Room for at least n more bytes after the last one, uninitialised; all the room there is (a read may take
    /// more than it asked for). Fill a prefix of it, then commit() that many bytes.
    [[nodiscard]] std::span<char> prepare(std::size_t n) {
        if (capacity_ - size_ < n) {
            const std::size_t want = std::max(size_ + n, capacity_ * 2);
            std::unique_ptr<char[]> grown(new char[want]);
            if (size_ > 0) std::memcpy(grown.get(), data_.get(), size_);
            data_ = std::move(grown);
            capacity_ = want;
        }
        return {data_.get() + size_, capacity_ - size_};
    }
    /// Keeps n bytes written into what prepare() gave.
    void commit(std::size_t n) noexcept { size_ += std::min(n, capacity_ - size_); }
    /// Appends bytes.
    void append(std::string_view bytes) {
        if (bytes.empty()) return;
        std::memcpy(prepare(bytes.size()).data(), bytes.data(), bytes.size());
        size_ += bytes.size();
    }

private:
    std::unique_ptr<char[]> data_;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

} // namespace coring::detail
