#pragma once

// Compiler requirements. Clang before 14 only ships the Coroutines TS in std::experimental, which coring does not
// support; GCC needs 11 (coroutines enabled by -std=c++20).
#if !__has_include(<coroutine>)
#error "coring needs <coroutine>: compile with -std=c++20 (GCC 11+, Clang 14+)"
#endif
#if defined(__clang__) && __clang_major__ < 14
#error "coring needs Clang 14 or newer"
#endif
#if !defined(__clang__) && defined(__GNUC__) && __GNUC__ < 11
#error "coring needs GCC 11 or newer"
#endif

#include <cstdint>

/// How far (in bytes) the stack may grow under chained symmetric transfers (a task starting its child, a child
/// resuming its parent) before the next transfer bounces through the loop's ready queue instead. Symmetric transfer
/// is meant to be a tail call, but GCC and Clang do not emit it at -O0, nor always under sanitizers or in some
/// releases (llvm#49888, libcoro#273): a long chain of tasks that complete without suspending would overflow the
/// stack. Measuring the stack itself costs nothing where the tail call works, since the stack then does not grow.
#ifndef CORING_MAX_INLINE_STACK
#define CORING_MAX_INLINE_STACK (32 * 1024)
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CORING_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORING_ASAN 1
#endif
#endif
#ifndef CORING_ASAN
#define CORING_ASAN 0
#endif

/// Debug checks of coring's sharing rules (streams, sync primitives and tasks belong to one loop; only channels and
/// run_on/spawn_on cross loops): a misuse throws std::logic_error (or, where nothing may throw, says so and aborts)
/// instead of corrupting another loop's queues. On by default unless NDEBUG, like assert(). The fields the checks use
/// exist in every build, so translation units built with and without the checks agree on every layout (no ODR trap);
/// only the comparisons depend on the macro.
#ifndef CORING_CHECKS
#ifdef NDEBUG
#define CORING_CHECKS 0
#else
#define CORING_CHECKS 1
#endif
#endif

/// Task dumps (coring::dump_tasks) with the chain of awaits each task is suspended in (Python's `asyncio pstree`):
/// every co_await in a task notes its source location, and every await of a task links the two. On by default unless
/// NDEBUG, like CORING_CHECKS. Its time is within noise (spawn + await, TCP echo; a bare yield +5%), but GCC keeps a
/// reference to each awaited operand in the frame: a million sleepers take 284 MB instead of 253 (see
/// benchmarks/results/task-trace.txt). Without it, dumps still list every task with its spawn site, state and what it
/// waits for, but not the co_awaits in between. Define it to 1 to have the chains in a release build.
#ifndef CORING_TASK_TRACE
#ifdef NDEBUG
#define CORING_TASK_TRACE 0
#else
#define CORING_TASK_TRACE 1
#endif
#endif
