# Builds and runs one of coring's consumer projects from scratch.
#
#   cmake -DMODE=add_subdirectory|fetch_content|find_package|plain
#         -DCORING_DIR=<coring source tree> -DWORK_DIR=<scratch directory> -DCXX=<C++ compiler>
#         [-DWITH_HTTP=ON] [-DCONSUMER_ARGS=<extra -D arguments for the consumer's configure, ;-separated>]
#         -P run_consumer.cmake
#
# add_subdirectory, fetch_content: configure tests/package/<MODE>, which pulls coring in from CORING_DIR.
# find_package: the README's install sequence, into WORK_DIR/prefix. Configure coring (Release, tests, examples and
#               benchmarks off) and install it at once, without a build: the install must hold coring::coring's headers
#               and package files, and tests/package/find_package (find_package(coring), coring::coring) must build
#               and run against it. With WITH_HTTP (coring::http configured), that install must also say that
#               coring::http needs a build, hold no llhttp archive, and make tests/package/find_package_http
#               (find_package(coring COMPONENTS http)) fail to configure with a message saying to build; then build
#               coring, install again, and find_package_http must build and run (a server and a client on loopback).
# plain:        `<CXX> -std=c++20 -I<CORING_DIR>/include consumer_main.cpp -o app -luring -pthread`.
# Every step must succeed, and so must the program (it prints 42). Any failure prints the step's output.
cmake_minimum_required(VERSION 3.25)

foreach(_var IN ITEMS MODE CORING_DIR WORK_DIR CXX)
    if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
        message(FATAL_ERROR "run_consumer.cmake: -D${_var}=... is required")
    endif()
endforeach()
if(NOT MODE MATCHES "^(add_subdirectory|fetch_content|find_package|plain)$")
    message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}' "
                        "(use add_subdirectory, fetch_content, find_package or plain)")
endif()

get_filename_component(CORING_DIR "${CORING_DIR}" ABSOLUTE)
get_filename_component(WORK_DIR "${WORK_DIR}" ABSOLUTE)
set(_here "${CMAKE_CURRENT_LIST_DIR}")
set(_main "${_here}/consumer_main.cpp")

# A clean start every time.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(_generator_args "")
find_program(_ninja NAMES ninja ninja-build)
if(_ninja)
    set(_generator_args -G Ninja "-DCMAKE_MAKE_PROGRAM=${_ninja}")
endif()

# run(<description> <command>...): runs the command in WORK_DIR and stops with its output if it fails.
function(run description)
    message(STATUS "[${MODE}] ${description}")
    execute_process(
        COMMAND ${ARGN}
        WORKING_DIRECTORY "${WORK_DIR}"
        RESULT_VARIABLE _result
        OUTPUT_VARIABLE _output
        ERROR_VARIABLE _output)
    if(NOT _result EQUAL 0)
        string(REPLACE ";" " " _command "${ARGN}")
        message(FATAL_ERROR "[${MODE}] ${description} failed (${_result}):\n  ${_command}\n${_output}")
    endif()
    set(last_output "${_output}" PARENT_SCOPE)
endfunction()

# The program must print 42 and exit 0.
function(run_app app)
    run("run ${app}" "${app}")
    if(NOT last_output MATCHES "42")
        message(FATAL_ERROR "[${MODE}] ${app} ran but did not print 42:\n${last_output}")
    endif()
    message(STATUS "[${MODE}] ${app} printed: ${last_output}")
endfunction()

if(MODE STREQUAL "plain")
    run("compile with the plain command" "${CXX}" -std=c++20 "-I${CORING_DIR}/include" "${_main}" -o app -luring -pthread)
    run_app("${WORK_DIR}/app")
    return()
endif()

set(_consumer_args "-DCMAKE_CXX_COMPILER=${CXX}" ${CONSUMER_ARGS})
if(NOT MODE STREQUAL "find_package")
    list(APPEND _consumer_args "-DCORING_DIR=${CORING_DIR}")
endif()

if(MODE STREQUAL "find_package")
    # The README's install sequence, step by step: configure; install (coring::coring needs no build); build (the
    # llhttp archive of coring::http); install again.
    set(_prefix "${WORK_DIR}/prefix")
    set(_cmakedir "${_prefix}/share/cmake/coring")
    run("configure coring"
        "${CMAKE_COMMAND}" -S "${CORING_DIR}" -B "${WORK_DIR}/coring-build" ${_generator_args}
        "-DCMAKE_CXX_COMPILER=${CXX}" -DCMAKE_BUILD_TYPE=Release
        -DCORING_BUILD_TESTS=OFF -DCORING_BUILD_EXAMPLES=OFF -DCORING_BUILD_BENCHMARKS=OFF)
    set(_http "${WITH_HTTP}")
    if(_http AND NOT EXISTS "${WORK_DIR}/coring-build/coringHttpTargets.cmake")
        message(FATAL_ERROR "[${MODE}] coring configured without coring::http (llhttp not found?):\n${last_output}")
    endif()

    run("install coring before any build" "${CMAKE_COMMAND}" --install "${WORK_DIR}/coring-build" --prefix "${_prefix}")
    foreach(_file IN ITEMS include/coring/coring.hpp share/cmake/coring/coringConfig.cmake
                           share/cmake/coring/coringConfigVersion.cmake share/cmake/coring/coringTargets.cmake
                           share/cmake/coring/Findliburing.cmake)
        if(NOT EXISTS "${_prefix}/${_file}")
            message(FATAL_ERROR "[${MODE}] the install before a build is missing ${_file}")
        endif()
    endforeach()
    if(_http)
        file(GLOB _archives "${_prefix}/lib*/*coring_llhttp*")
        if(_archives)
            message(FATAL_ERROR "[${MODE}] an install before any build holds an llhttp archive: ${_archives}")
        endif()
        if(NOT last_output MATCHES "coring::http is not, its llhttp archive is not built yet")
            message(FATAL_ERROR "[${MODE}] the install before a build did not say that coring::http needs a build:\n"
                                "${last_output}")
        endif()
    endif()
    list(APPEND _consumer_args "-DCMAKE_PREFIX_PATH=${_prefix}" "-DCORING_EXPECTED_PREFIX=${_prefix}")

    # coring::coring from that install.
    run("configure the consumer of coring::coring (install without build)"
        "${CMAKE_COMMAND}" -S "${_here}/find_package" -B "${WORK_DIR}/build-nobuild" ${_generator_args}
        ${_consumer_args})
    run("build the consumer of coring::coring (install without build)"
        "${CMAKE_COMMAND}" --build "${WORK_DIR}/build-nobuild")
    run_app("${WORK_DIR}/build-nobuild/consumer")

    if(_http)
        # coring::http is not there yet, and find_package(coring COMPONENTS http) says why.
        message(STATUS "[${MODE}] configure the consumer of coring::http (install without build): must fail")
        execute_process(
            COMMAND "${CMAKE_COMMAND}" -S "${_here}/find_package_http" -B "${WORK_DIR}/build-http-nobuild"
                    ${_generator_args} ${_consumer_args}
            WORKING_DIRECTORY "${WORK_DIR}"
            RESULT_VARIABLE _result
            OUTPUT_VARIABLE _output
            ERROR_VARIABLE _output)
        string(REGEX REPLACE "[ \t\r\n]+" " " _flat "${_output}") # CMake wraps the message's lines
        if(_result EQUAL 0 OR NOT _flat MATCHES "not its component http.*cmake --build")
            message(FATAL_ERROR "[${MODE}] find_package(coring COMPONENTS http) before coring was built should fail, "
                                "saying to build coring (result ${_result}):\n${_output}")
        endif()
    endif()

    run("build coring" "${CMAKE_COMMAND}" --build "${WORK_DIR}/coring-build")
    run("install coring after the build" "${CMAKE_COMMAND}" --install "${WORK_DIR}/coring-build" --prefix "${_prefix}")
    if(_http)

        file(GLOB _archives "${_prefix}/lib*/*coring_llhttp*")
        if(NOT _archives OR NOT EXISTS "${_prefix}/include/coring/http.hpp"
           OR NOT EXISTS "${_prefix}/include/coring/llhttp/llhttp.h"
           OR NOT EXISTS "${_cmakedir}/coringHttpTargets.cmake")
            message(FATAL_ERROR "[${MODE}] the install after a build lacks coring::http's files:\n${last_output}")
        endif()
        run("configure the consumer of coring::http"
            "${CMAKE_COMMAND}" -S "${_here}/find_package_http" -B "${WORK_DIR}/build-http" ${_generator_args}
            ${_consumer_args})
        run("build the consumer of coring::http" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build-http")
        run_app("${WORK_DIR}/build-http/consumer")
    endif()
    return()
endif()

run("configure the consumer"
    "${CMAKE_COMMAND}" -S "${_here}/${MODE}" -B "${WORK_DIR}/build" ${_generator_args} ${_consumer_args})
run("build the consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
run_app("${WORK_DIR}/build/consumer")
