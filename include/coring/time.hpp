#pragma once

// Sleeping, yielding and deadlines.
#include <coring/time/sleep.hpp>
#include <coring/time/timeout.hpp>
#include <coring/time/yield_now.hpp>
