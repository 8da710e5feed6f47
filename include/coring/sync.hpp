#pragma once

// Synchronisation between the tasks of one event loop: event, mutex, condition, semaphore, barrier and the queues
// (asyncio's Event, Lock, Condition, Semaphore, Barrier, Queue, LifoQueue and PriorityQueue). Single loop: no locks, no
// atomics; use them only on the loop's thread. The exception is channel, a bounded channel whose handles may cross
// loops and threads.
#include <coring/sync/barrier.hpp>
#include <coring/sync/channel.hpp>
#include <coring/sync/condition.hpp>
#include <coring/sync/event.hpp>
#include <coring/sync/lifo_queue.hpp>
#include <coring/sync/mutex.hpp>
#include <coring/sync/priority_queue.hpp>
#include <coring/sync/queue.hpp>
#include <coring/sync/semaphore.hpp>
