# Builds and runs one of coring's consumer projects from scratch.
#
#   cmake -DMODE=add_subdirectory|fetch_content|find_package|plain
#         -DCORING_DIR=<coring source tree> -DWORK_DIR=<scratch directory> -DCXX=<C++ compiler>
#         [-DCONSUMER_ARGS=<extra -D arguments for the consumer's configure, ;-separated>]
#         -P run_consumer.cmake
#
# add_subdirectory, fetch_content: configure tests/package/<MODE>, which pulls coring in from CORING_DIR.
# find_package: configure coring itself with only CORING_INSTALL on, install it to WORK_DIR/prefix, then configure
#               tests/package/find_package with CMAKE_PREFIX_PATH=WORK_DIR/prefix.
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
    run("configure coring"
        "${CMAKE_COMMAND}" -S "${CORING_DIR}" -B "${WORK_DIR}/coring-build" ${_generator_args}
        "-DCMAKE_CXX_COMPILER=${CXX}" -DCMAKE_BUILD_TYPE=Release
        -DCORING_BUILD_TESTS=OFF -DCORING_BUILD_EXAMPLES=OFF -DCORING_BUILD_BENCHMARKS=OFF -DCORING_INSTALL=ON)
    run("build coring" "${CMAKE_COMMAND}" --build "${WORK_DIR}/coring-build")
    run("install coring" "${CMAKE_COMMAND}" --install "${WORK_DIR}/coring-build" --prefix "${WORK_DIR}/prefix")
    foreach(_file IN ITEMS include/coring/coring.hpp share/cmake/coring/coringConfig.cmake
                           share/cmake/coring/coringConfigVersion.cmake share/cmake/coring/coringTargets.cmake
                           share/cmake/coring/Findliburing.cmake)
        if(NOT EXISTS "${WORK_DIR}/prefix/${_file}")
            message(FATAL_ERROR "[${MODE}] the install is missing ${_file}")
        endif()
    endforeach()
    list(APPEND _consumer_args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" "-DCORING_EXPECTED_PREFIX=${WORK_DIR}/prefix")
endif()

run("configure the consumer"
    "${CMAKE_COMMAND}" -S "${_here}/${MODE}" -B "${WORK_DIR}/build" ${_generator_args} ${_consumer_args})
run("build the consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
run_app("${WORK_DIR}/build/consumer")
