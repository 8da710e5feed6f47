# coring where io_uring is refused, as in a Docker container under the default seccomp profile: io_uring_setup fails
# with EPERM, the event loop falls back to epoll and says so in one line on stderr. These tests run the examples and
# part of the unit tests that way, under tests/support/no_io_uring.cpp (a launcher that installs such a seccomp filter
# and execs its command), and check that they work, and that the examples print the notice.
#
#   include("${CMAKE_CURRENT_SOURCE_DIR}/seccomp.cmake")     from tests/CMakeLists.txt, anywhere in it
#   ctest --preset dev -L seccomp
#
# The launcher is built where the file is included. The tests are registered once the whole tree is configured, by a
# call deferred to the end of the top-level directory (so they belong to the build directory's root: run ctest there),
# because the examples are added after tests/ and coring_tests may be defined below the include. Each test exists only
# if what it runs is built: coring_tests and the directories of tests/ it draws from (CORING_TEST_DIRS), each example,
# and Python 3 for the driver (tests/support/seccomp_driver.py) that runs and checks them.
include_guard(GLOBAL)

# The filter names system calls by number, so the launcher knows the system call tables of the architectures it
# supports (and fails to compile on others); elsewhere these tests are left out.
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|aarch64|arm64)$")
    message(STATUS "coring: the seccomp tests support x86_64 and aarch64 only; "
                   "not built for ${CMAKE_SYSTEM_NAME} on ${CMAKE_SYSTEM_PROCESSOR}")
    return()
endif()

# no_io_uring CMD ARGS...: CMD runs with io_uring_setup, io_uring_enter and io_uring_register refused with EPERM.
add_executable(coring_no_io_uring "${CMAKE_CURRENT_LIST_DIR}/support/no_io_uring.cpp")
set_target_properties(coring_no_io_uring PROPERTIES OUTPUT_NAME no_io_uring)
target_compile_features(coring_no_io_uring PRIVATE cxx_std_20)
if(TARGET coring_developer_flags)
    target_link_libraries(coring_no_io_uring PRIVATE coring_developer_flags)
endif()

# _coring_seccomp_unit_tests(<dir> <filter>...): one test running the Catch2 filters (OR-ed) of tests/<dir>/ under
# the launcher, if that directory is part of coring_tests. `-w NoTests` fails the run when a filter matches nothing
# (a renamed tag), instead of passing without running it. Filters leave out the cases that use io_uring itself:
# coring::submit with a raw SQE, SQE and io_uring_enter counts (loop.stats()), loop_options::unsupported_opcodes,
# io_uring's own behaviour (a FIFO that opens without its other end), a descriptor count that expects the loop to
# hold one (its ring), and every case tagged [io_uring-only]; and cases of a pure function with no event loop (the
# timer queue, deadline_after), which no backend changes and the main run has. No filter may name a case with a
# comma in its quoted part: Catch2 splits filters at commas.
# The notice is silenced here (--notice off): some cases capture stderr and compare it, and the notice, printed once
# per process by its first loop, would land in the first capture. The examples check the notice.
function(_coring_seccomp_unit_tests dir)
    if(CORING_TEST_DIRS AND NOT dir IN_LIST CORING_TEST_DIRS)
        return()
    endif()
    # One argument: Catch2 ANDs separate arguments; filters are OR-ed when joined with commas.
    list(TRANSFORM ARGN APPEND "~[io_uring-only]")
    list(JOIN ARGN "," _spec)
    add_test(
        NAME "seccomp: unit tests in tests/${dir}"
        COMMAND
            "${_coring_seccomp_python}" "${_coring_seccomp_driver}" $<TARGET_FILE:coring_no_io_uring> run --notice off
            -- $<TARGET_FILE:coring_tests> -w NoTests "${_spec}"
        WORKING_DIRECTORY "${_coring_seccomp_work_dir}")
    set_tests_properties("seccomp: unit tests in tests/${dir}" PROPERTIES LABELS seccomp TIMEOUT 120)
endfunction()

# _coring_seccomp_example(<example>... -- <driver arguments>...): one test, if every example named is built.
function(_coring_seccomp_example)
    list(FIND ARGN "--" _split)
    list(SUBLIST ARGN 0 ${_split} _examples)
    math(EXPR _split "${_split} + 1")
    list(SUBLIST ARGN ${_split} -1 _driver_args)
    foreach(_example IN LISTS _examples)
        if(NOT TARGET ${_example})
            return()
        endif()
    endforeach()
    list(JOIN _examples " and " _name)
    add_test(
        NAME "seccomp: example ${_name}"
        COMMAND "${_coring_seccomp_python}" "${_coring_seccomp_driver}" $<TARGET_FILE:coring_no_io_uring>
                ${_driver_args}
        WORKING_DIRECTORY "${_coring_seccomp_work_dir}")
    set_tests_properties("seccomp: example ${_name}" PROPERTIES LABELS seccomp TIMEOUT 120)
endfunction()

# _coring_threads_example(<server> <client> <scenario>): the server with --threads 2 (a runtime of two loops, each
# with its own SO_REUSEPORT listener on the port), talked to and stopped with SIGINT, twice: under the launcher
# (epoll) and with env as the launcher (io_uring, and no line about epoll), if both programs are built.
function(_coring_threads_example server client scenario)
    if(NOT TARGET ${server} OR NOT TARGET ${client})
        return()
    endif()
    set(_args ${scenario} --threads 2 --signal INT)
    add_test(
        NAME "seccomp: example ${server} --threads 2"
        COMMAND "${_coring_seccomp_python}" "${_coring_seccomp_driver}" $<TARGET_FILE:coring_no_io_uring> ${_args}
                $<TARGET_FILE:${server}> $<TARGET_FILE:${client}>
        WORKING_DIRECTORY "${_coring_seccomp_work_dir}")
    set_tests_properties("seccomp: example ${server} --threads 2" PROPERTIES LABELS seccomp TIMEOUT 120)
    add_test(
        NAME "example: ${server} --threads 2"
        COMMAND "${_coring_seccomp_python}" "${_coring_seccomp_driver}" env ${_args} --notice none
                $<TARGET_FILE:${server}> $<TARGET_FILE:${client}>
        WORKING_DIRECTORY "${_coring_seccomp_work_dir}")
    set_tests_properties("example: ${server} --threads 2" PROPERTIES LABELS examples TIMEOUT 120)
endfunction()

# The tests, registered at the end of the top-level directory (see the top of this file). Runs in that directory's
# scope: what it needs from here comes as arguments.
function(_coring_seccomp_add_tests tests_source_dir work_dir)
    # The launcher on its own: the filter refuses the three calls with EPERM and allows the rest (--check, in the
    # launcher's process), and it is still there after execve in the command the launcher runs (--probe, run by it).
    add_test(
        NAME "seccomp: filter self-check"
        COMMAND coring_no_io_uring --check
        WORKING_DIRECTORY "${work_dir}")
    add_test(
        NAME "seccomp: filter kept across exec"
        COMMAND coring_no_io_uring $<TARGET_FILE:coring_no_io_uring> --probe
        WORKING_DIRECTORY "${work_dir}")
    set_tests_properties("seccomp: filter self-check" "seccomp: filter kept across exec" PROPERTIES LABELS seccomp
                                                                                                   TIMEOUT 120)

    find_package(Python3 COMPONENTS Interpreter QUIET)
    if(NOT Python3_Interpreter_FOUND)
        message(STATUS "coring: no Python 3, so the seccomp tests of the examples and unit tests are left out")
        return()
    endif()
    set(_coring_seccomp_python "${Python3_EXECUTABLE}")
    set(_coring_seccomp_driver "${tests_source_dir}/support/seccomp_driver.py")
    set(_coring_seccomp_work_dir "${work_dir}")

    # A command that cannot be executed: exit status 127, named on stderr.
    add_test(NAME "seccomp: launcher names a command it cannot run"
             COMMAND "${_coring_seccomp_python}" "${_coring_seccomp_driver}" $<TARGET_FILE:coring_no_io_uring> run
                     --exit 127 --stderr "cannot run coring-no-such-program" --notice none -- coring-no-such-program)
    set_tests_properties("seccomp: launcher names a command it cannot run" PROPERTIES LABELS seccomp TIMEOUT 120)

    # The examples, as the showcase runs them (examples/CMakeLists.txt) and the servers as their comments say; each
    # must succeed and print the notice exactly once (every example makes one event loop).
    _coring_seccomp_example(hello -- run --expect "finished in [0-9.]+ s" -- $<TARGET_FILE:hello>)
    _coring_seccomp_example(sync_vs_async -- run --expect "speed-up: [0-9.]+x" -- $<TARGET_FILE:sync_vs_async>)
    _coring_seccomp_example(copy -- copy $<TARGET_FILE:copy>)
    _coring_seccomp_example(
        hash_files
        --
        run
        --expect
        "^[0-9]+ files, [0-9]+ bytes"
        --
        $<TARGET_FILE:hash_files>
        "${PROJECT_SOURCE_DIR}/examples")
    _coring_seccomp_example(
        subprocess
        --
        run
        --expect
        "at once: [0-9.]+ s"
        --expect
        "sorted: apple, cherry, fig, pear \\(sort exited 0\\)"
        --expect
        "stopped by a 200 ms timeout"
        --
        $<TARGET_FILE:subprocess>)
    _coring_seccomp_example(port_scan -- port_scan $<TARGET_FILE:port_scan>)
    _coring_seccomp_example(echo_server echo_client -- echo $<TARGET_FILE:echo_server> $<TARGET_FILE:echo_client>)
    _coring_seccomp_example(chat_server -- chat $<TARGET_FILE:chat_server>)
    _coring_seccomp_example(hello_server fetch -- http $<TARGET_FILE:hello_server> $<TARGET_FILE:fetch>)
    _coring_threads_example(echo_server echo_client echo)
    _coring_threads_example(hello_server fetch http)
    # weather and crawler: the showcase's checks (three answers, gathered at least 1.5x faster; 196 pages and 4 404s).
    _coring_seccomp_example(
        weather
        --
        run
        --expect
        "{\"city\": \"London\", \"temperature_c\": [0-9]+}"
        --expect
        "{\"city\": \"Paris\", \"temperature_c\": [0-9]+}"
        --expect
        "{\"city\": \"Tokyo\", \"temperature_c\": [0-9]+}"
        --expect
        "speed-up: ([2-9]|1\\.[5-9])[0-9.]*x"
        --
        $<TARGET_FILE:weather>)
    _coring_seccomp_example(
        crawler
        --
        run
        --expect
        "fetched 200 URLs in"
        --expect
        "HTTP 200: 196[^0-9]"
        --expect
        "HTTP 404: 4[^0-9]"
        --
        $<TARGET_FILE:crawler>
        --local
        200)

    # A subset of the unit tests: what any backend must do (streams, sockets, timers, timeouts, the worker pool,
    # signals, files, tasks and their synchronisation), without io_uring's own features (see
    # _coring_seccomp_unit_tests). One test per directory of tests/, so that each stays well within its timeout.
    if(NOT TARGET coring_tests)
        return()
    endif()
    _coring_seccomp_unit_tests(
        net
        "[net][stream]"
        "[net][tcp]"
        "[net][unix]"
        "[net][udp]"
        "[net][faults]"
        "[net][resolve]"
        "\"net - *\"")
    _coring_seccomp_unit_tests(
        time
        "[sleep]~[timer_queue]~\"sleep - far deadlines*\"~\"sleep - one hundred thousand*\"~\"sleep - extreme time*\""
        "\"timeout - an awaitable still running at the deadline*\""
        "[timeout][cancel]"
        "[yield]~\"yield_now - a busy yielder*\"")
    _coring_seccomp_unit_tests(thread "[thread]~\"to_thread - a loop waiting only for a job*\"")
    _coring_seccomp_unit_tests(signal "[signal]")
    _coring_seccomp_unit_tests(
        fs
        "[fs][file]~\"file - two sequential*\"~\"file - open takes*\"~\"file - a FIFO opens*\"~\"file - the destr*\""
        "[fs][whole_file]"
        "[fs][filesystem]")
    _coring_seccomp_unit_tests(
        task
        "[task]"
        "[spawn]~\"spawn - accepts any awaitable*\""
        "[gather]~\"gather - join handles and other awaitables*\""
        "[when_any]~\"when_any - void*\""
        "[task_group]~\"task_group - accepts any awaitable*\""
        "[shield]~\"shield - of an operation*\""
        "\"cancel - *\"~\"cancel - an io_uring operation*\""
        "[lambda]~[submit]")
    _coring_seccomp_unit_tests(sync "[sync]")
endfunction()

# EVAL: the arguments of a deferred call are read when it runs; these must be this directory's, read now.
set(_coring_seccomp_arguments "[[${CMAKE_CURRENT_LIST_DIR}]] [[${CMAKE_CURRENT_BINARY_DIR}]]")
cmake_language(EVAL CODE "cmake_language(DEFER DIRECTORY [[${PROJECT_SOURCE_DIR}]] CALL _coring_seccomp_add_tests
                                          ${_coring_seccomp_arguments})")
