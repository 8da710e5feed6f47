#pragma once

// Tasks and the combinators that run them.
#include <coring/error.hpp>
#include <coring/task/as_completed.hpp>
#include <coring/task/future.hpp>
#include <coring/task/gather.hpp>
#include <coring/task/generator.hpp>
#include <coring/task/map_bounded.hpp>
#include <coring/task/run.hpp>
#include <coring/task/run_on.hpp>
#include <coring/task/shield.hpp>
#include <coring/task/spawn.hpp>
#include <coring/task/spawn_on.hpp>
#include <coring/task/task.hpp>
#include <coring/task/task_group.hpp>
#include <coring/task/wait.hpp>
#include <coring/task/when_any.hpp>
