#pragma once

// The event loop, runtimes of several loops, and the raw io_uring escape hatch.
#include <coring/runtime/callbacks.hpp>
#include <coring/runtime/event_loop.hpp>
#include <coring/runtime/loop_options.hpp>
#include <coring/runtime/runtime.hpp>
#include <coring/runtime/runtime_options.hpp>
#include <coring/runtime/submit.hpp>
#include <coring/runtime/wait_ready.hpp>
