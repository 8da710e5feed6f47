#pragma once

#include <coring/task/task.hpp>

#include <concepts>
#include <type_traits>
#include <utility>

namespace coring::detail {

template <class A>
concept has_member_co_await = requires(A&& a) {
    static_cast<A&&>(a).operator co_await();
};
template <class A>
concept has_free_co_await = requires(A&& a) {
    operator co_await(static_cast<A&&>(a));
};

/// The awaiter that `co_await a` would use (coring's promise applies operator co_await the same way).
template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (has_member_co_await<A>) return static_cast<A&&>(a).operator co_await();
    else if constexpr (has_free_co_await<A>) return operator co_await(static_cast<A&&>(a));
    else return static_cast<A&&>(a);
}

template <class A>
using awaiter_of_t = decltype(get_awaiter(std::declval<A>()));

/// The type of `co_await std::declval<A>()`.
template <class A>
using await_result_t = decltype(std::declval<awaiter_of_t<A>&>().await_resume());

template <class A>
concept awaitable = requires {
    typename await_result_t<A>;
};

/// What a task wrapping an awaitable with result R returns: R&& decays to R, R& stays a reference.
template <class R>
using task_value_t = std::conditional_t<std::is_rvalue_reference_v<R>, std::remove_cvref_t<R>, R>;

template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;

// Wrappers are free function templates taking the awaitable as a parameter, never lambdas with captures: GCC 12
// destroys captures of temporary lambdas in co_await expressions twice (PR 100611, PR 107288).
// The awaitable is moved into a local of the body: locals are destroyed before final_suspend, parameter copies only
// with the frame. A combinator's completion hook (task_group, completion_watch) frees the child's cancellation
// context at final_suspend, and gather frees its slots before the tasks; an awaitable whose destructor looks at the
// context it recorded (sleep, timeout) must be gone by then.
template <class A, class R = task_value_t<await_result_t<A>>>
task<R> await_owned(A a) {
    A own(std::move(a));
    if constexpr (std::is_void_v<R>) co_await std::move(own);
    else co_return co_await std::move(own);
}

template <class A, class R = task_value_t<await_result_t<A&>>>
task<R> await_ref(A& a) {
    if constexpr (std::is_void_v<R>) co_await a;
    else co_return co_await a;
}

/// Turns any awaitable into a task: a task rvalue is taken as it is, an lvalue is awaited by reference (it must
/// outlive the task), any other rvalue is moved into the wrapper's frame.
template <class A>
auto as_task(A&& a) {
    using D = std::remove_cvref_t<A>;
    if constexpr (is_task_v<D> && !std::is_lvalue_reference_v<A>) return D(std::move(a));
    else if constexpr (std::is_lvalue_reference_v<A>) return await_ref(a);
    else return await_owned<D>(std::move(a));
}

template <class A>
using as_task_t = decltype(as_task(std::declval<A>()));

} // namespace coring::detail
