#pragma once

// Synchronisation between the tasks of one event loop: event, mutex, semaphore and queue (asyncio's Event, Lock,
// Semaphore and Queue). Single loop: no locks, no atomics; use them only on the loop's thread. The exception is
// channel, a bounded channel whose handles may cross loops and threads.
#include <coring/sync/channel.hpp>
#include <coring/sync/event.hpp>
#include <coring/sync/mutex.hpp>
#include <coring/sync/queue.hpp>
#include <coring/sync/semaphore.hpp>
