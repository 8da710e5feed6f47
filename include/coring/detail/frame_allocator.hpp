#pragma once

#include <coring/config.hpp>

#include <cstddef>
#include <new>

namespace coring::detail {

/// A per-thread cache of coroutine frames, by size class. Spawning and awaiting a short task costs two allocator
/// calls otherwise, which is most of its price; the cache turns them into a pop and a push.
///
/// Blocks come from ::operator new and go back to it, so a frame freed on another thread is simply cached there.
/// Each class holds at most `max_cached_bytes` so that a million finished sleepers do not stay hoarded.
/// Disabled under AddressSanitizer (it would hide use-after-free) and with CORING_NO_FRAME_CACHE.
class frame_cache {
public:
    static constexpr std::size_t granule = 16;
    static constexpr std::size_t max_block = 1024;
    static constexpr std::size_t classes = max_block / granule;
    static constexpr std::size_t max_cached_bytes = 64 * 1024;

    /// Set when this thread's cache has been destroyed (thread exit): frames freed later by other thread-local
    /// destructors go straight back to operator delete.
    static inline thread_local bool gone = false;

    frame_cache() = default;
    frame_cache(const frame_cache&) = delete;
    frame_cache& operator=(const frame_cache&) = delete;
    ~frame_cache() {
        gone = true;
        for (std::size_t c = 0; c < classes; ++c)
            while (node* n = free_[c]) {
                free_[c] = n->next;
                ::operator delete(n);
            }
    }

    void* allocate(std::size_t n) {
        const std::size_t c = (n - 1) / granule;
        if (node* b = free_[c]) {
            free_[c] = b->next;
            --count_[c];
            return b;
        }
        return ::operator new((c + 1) * granule);
    }

    void deallocate(void* p, std::size_t n) noexcept {
        const std::size_t c = (n - 1) / granule;
        if ((count_[c] + 1) * (c + 1) * granule > max_cached_bytes) return ::operator delete(p);
        auto* b = static_cast<node*>(p);
        b->next = free_[c];
        free_[c] = b;
        ++count_[c];
    }

private:
    struct node {
        node* next;
    };
    node* free_[classes] = {};     // one LIFO free list per size class
    unsigned count_[classes] = {}; // blocks held per class
};

#if CORING_ASAN || defined(CORING_NO_FRAME_CACHE)
inline void* frame_allocate(std::size_t n) { return ::operator new(n); }
inline void frame_free(void* p, std::size_t) noexcept { ::operator delete(p); }
#else
inline thread_local frame_cache tls_frame_cache;

inline void* frame_allocate(std::size_t n) {
    if (n > frame_cache::max_block || frame_cache::gone) return ::operator new(n);
    return tls_frame_cache.allocate(n);
}
inline void frame_free(void* p, std::size_t n) noexcept {
    if (n > frame_cache::max_block || frame_cache::gone) return ::operator delete(p);
    tls_frame_cache.deallocate(p, n);
}
#endif

} // namespace coring::detail
