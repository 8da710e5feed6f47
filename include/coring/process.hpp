#pragma once

// Child processes: spawn, pipes as streams, wait, run.
#include <coring/process/process.hpp>
