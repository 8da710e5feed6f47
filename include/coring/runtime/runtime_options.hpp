#pragma once

#include <coring/runtime/loop_options.hpp>

#include <signal.h>

#include <vector>

namespace coring {

/// How a runtime (several loops, one per thread) is set up.
struct runtime_options {
    /// Pin loop i to the i-th CPU of the process's affinity mask (modulo its size), before its ring exists, so that
    /// the ring's kernel-side work and the loop's caches stay on one core. Off by default: pinning is a deployment
    /// decision, and on a shared machine it can put two busy loops on one core.
    bool pin = false;
    /// The options of every loop (each builds its own ring from them, on its own thread). `loop.worker_threads`
    /// bounds the one to_thread pool the loops share (0: min(32, hardware threads + 4), as asyncio), not each loop's.
    loop_options loop;
    /// Process-directed signals that stop the runtime as runtime::stop() does (cancel and drain every loop). They are
    /// blocked in every loop thread and read by the thread that called run(), so that none of them kills the process
    /// mid-drain. Empty: the runtime leaves signals alone (a task may then wait_signal() for them itself).
    std::vector<int> stop_signals{SIGINT, SIGTERM};
};

} // namespace coring
