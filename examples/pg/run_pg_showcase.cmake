# cmake -DPG_QUERY=<path of pg_query> -DWORK=<scratch directory> -P run_pg_showcase.cmake
# The showcase's PostgreSQL part: a throwaway server (initdb, then postgres on a Unix socket in WORK only), pg_query
# against it, the server stopped. Skipped with a message when PostgreSQL is not installed. As root, the server runs as
# the postgres user (PostgreSQL refuses root).
file(GLOB _bins "/usr/lib/postgresql/*/bin/initdb")
if(NOT _bins)
    message(STATUS "showcase: PostgreSQL is not installed (Debian: postgresql), pg_query skipped")
    return()
endif()
list(SORT _bins)
list(GET _bins -1 _initdb)
get_filename_component(_bin "${_initdb}" DIRECTORY)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(_as "")
execute_process(COMMAND id -u OUTPUT_VARIABLE _uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_uid STREQUAL "0")
    file(CHMOD "${WORK}" DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_WRITE
         GROUP_EXECUTE WORLD_READ WORLD_WRITE WORLD_EXECUTE)
    set(_as runuser -u postgres --)
endif()
execute_process(COMMAND ${_as} "${_bin}/initdb" -A trust -U coring -D "${WORK}/data" WORKING_DIRECTORY "${WORK}" OUTPUT_QUIET ERROR_QUIET
                RESULT_VARIABLE _r)
if(NOT _r EQUAL 0)
    message(FATAL_ERROR "showcase: initdb failed (${_r})")
endif()
execute_process(
    WORKING_DIRECTORY "${WORK}"
    COMMAND ${_as} "${_bin}/pg_ctl" -w -t 60 -D "${WORK}/data" -l "${WORK}/server.log" -o
            "-k ${WORK} -c listen_addresses='' -p 5432" start OUTPUT_QUIET ERROR_QUIET
    RESULT_VARIABLE _r)
if(NOT _r EQUAL 0)
    message(FATAL_ERROR "showcase: the PostgreSQL server did not start (${_r}); see ${WORK}/server.log")
endif()
execute_process(
    COMMAND "${PG_QUERY}" "host=${WORK} port=5432 user=coring dbname=postgres"
    RESULT_VARIABLE _query
    OUTPUT_VARIABLE _out
    ECHO_OUTPUT_VARIABLE)
execute_process(COMMAND ${_as} "${_bin}/pg_ctl" -D "${WORK}/data" -m immediate stop OUTPUT_QUIET ERROR_QUIET)
file(REMOVE_RECURSE "${WORK}")
if(NOT _query EQUAL 0)
    message(FATAL_ERROR "showcase: pg_query failed (${_query})")
endif()
if(NOT _out MATCHES "100 of 100 queries answered right" OR NOT _out MATCHES "cancelled after")
    message(FATAL_ERROR "showcase: pg_query's output is not what it must be")
endif()
