#pragma once

// coring: asyncio for C++20, on io_uring. This umbrella header includes every module header.
#include <coring/config.hpp>
#include <coring/error.hpp>
#include <coring/fs.hpp>
#include <coring/net.hpp>
#include <coring/process.hpp>
#include <coring/runtime.hpp>
#include <coring/signal.hpp>
#include <coring/sync.hpp>
#include <coring/task.hpp>
#include <coring/thread.hpp>
#include <coring/time.hpp>
#include <coring/version.hpp>
