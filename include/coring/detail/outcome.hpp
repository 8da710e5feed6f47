#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace coring::detail {

/// Where a to_thread job or a run_on call keeps what the function returned: the object itself (moved out on
/// resumption).
template <class R>
struct thread_result {
    std::optional<std::remove_cv_t<R>> value; // engaged once the function returned

    template <class Call>
    void store(Call&& call) {
        value.emplace(call());
    }
    R take() { return std::move(*value); }
    void reset() noexcept { value.reset(); }
};

/// A reference result: its address.
template <class R>
    requires std::is_reference_v<R>
struct thread_result<R> {
    std::remove_reference_t<R>* ptr = nullptr; // what the returned reference refers to

    template <class Call>
    void store(Call&& call) {
        R r = call();
        ptr = std::addressof(r);
    }
    R take() noexcept { return static_cast<R>(*ptr); }
    void reset() noexcept {}
};

/// A void result: nothing to keep.
template <class R>
    requires std::is_void_v<R>
struct thread_result<R> {
    template <class Call>
    void store(Call&& call) {
        call();
    }
    void take() noexcept {}
    void reset() noexcept {}
};

} // namespace coring::detail
