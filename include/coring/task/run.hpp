#pragma once

#include <coring/runtime/event_loop.hpp>
#include <coring/runtime/loop_options.hpp>
#include <coring/task/task.hpp>

#include <utility>

namespace coring {

/// Makes an event loop on this thread, runs `main` to completion, cancels and drains every task it left running, and
/// returns main's value or rethrows its exception (asyncio.run). Throws std::logic_error when this thread already has
/// a loop, and std::system_error when io_uring is unavailable (the message says why).
template <class T>
T run(task<T> main, loop_options options = {}, detail::code_site site = detail::code_site::here()) {
    event_loop loop(std::move(options));
    return loop.run(std::move(main), site);
}

} // namespace coring
