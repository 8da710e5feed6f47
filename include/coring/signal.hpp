#pragma once

// Waiting for POSIX signals.
#include <coring/signal/wait_signal.hpp>
