#pragma once

// Sleeping and yielding.
#include <coring/time/sleep.hpp>
#include <coring/time/yield_now.hpp>
