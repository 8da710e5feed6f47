#pragma once

// The event loop and the raw io_uring escape hatch.
#include <coring/runtime/event_loop.hpp>
#include <coring/runtime/loop_options.hpp>
#include <coring/runtime/submit.hpp>
