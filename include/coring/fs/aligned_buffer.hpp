#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <utility>

namespace coring {

/// A zero-filled byte buffer whose address is a multiple of `alignment`: what reads and writes on a file opened with
/// open_mode::direct need (with offsets and lengths that are multiples of the device's block size, 4096 is safe).
class aligned_buffer {
public:
    /// The alignment used when none is given: 4096, enough for open_mode::direct on common devices.
    static constexpr std::size_t default_alignment = 4096;

    /// No memory.
    aligned_buffer() noexcept = default;
    /// `size` bytes at an address that is a multiple of `alignment` (a power of two). Throws std::invalid_argument
    /// for a bad alignment, std::bad_alloc.
    explicit aligned_buffer(std::size_t size, std::size_t alignment = default_alignment)
        : size_(size), alignment_(alignment) {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            throw std::invalid_argument("coring: aligned_buffer: the alignment must be a power of two");
        if (size == 0) return;
        data_ = static_cast<std::byte*>(::operator new(size, std::align_val_t(alignment)));
        std::memset(data_, 0, size);
    }
    /// Takes `o`'s memory; `o` is left empty (no memory, size 0).
    aligned_buffer(aligned_buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), alignment_(o.alignment_) {}
    /// Frees this buffer's memory and takes `o`'s; `o` is left empty (no memory, size 0).
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            alignment_ = o.alignment_;
        }
        return *this;
    }
    aligned_buffer(const aligned_buffer&) = delete;
    aligned_buffer& operator=(const aligned_buffer&) = delete;
    ~aligned_buffer() { release(); }

    /// The first byte; null for an empty buffer.
    [[nodiscard]] std::byte* data() noexcept { return data_; }
    /// The first byte, read-only; null for an empty buffer.
    [[nodiscard]] const std::byte* data() const noexcept { return data_; }
    /// The length in bytes, as given to the constructor (0 once moved from).
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    /// The alignment the memory was allocated with, as given to the constructor.
    [[nodiscard]] std::size_t alignment() const noexcept { return alignment_; }
    /// The whole buffer, to pass to read_at and write_at.
    [[nodiscard]] std::span<std::byte> span() noexcept { return {data_, size_}; }
    /// The whole buffer, read-only, to pass to write_at.
    [[nodiscard]] std::span<const std::byte> span() const noexcept { return {data_, size_}; }
    /// The whole buffer, so the buffer can be passed where a span is expected.
    operator std::span<std::byte>() noexcept { return span(); }
    /// The whole buffer, read-only, so the buffer can be passed where a read-only span is expected.
    operator std::span<const std::byte>() const noexcept { return span(); }

private:
    void release() noexcept {
        if (data_) ::operator delete(data_, std::align_val_t(alignment_));
        data_ = nullptr;
    }

    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t alignment_ = default_alignment;
};

} // namespace coring
