#pragma once

// Blocking work on the event loop's worker threads.
#include <coring/thread/to_thread.hpp>
